//! `missing-rows` (tutorial sections 4 and 6D): someone "simplified" the StatefulSet's init script so that every
//! pod writes `server-id=1`. The StatefulSet rolls the pods onto the new template; the re-created replica has the
//! primary's server id, and the primary refuses it: the IO thread stops with MariaDB's error 1593 ("master and slave
//! have equal server ids"); MySQL 8 stops it with 13117 (ER_SERVER_SOURCE_FATAL_ERROR_READING_BINLOG with "replica
//! and source have equal MySQL server ids", mysql-notes 14, measured on MySQL 8.0.40;). Both are handled:
//! the goal looks at rows, not error numbers. A runtime `SET GLOBAL server_id` on the replica brings the rows back
//! but not past the next restart, so the goal also reads the server id each pod's config file gives it.

use futures::future::BoxFuture;

use super::{Exercise, Lab};
use crate::commands::{STATEFULSET, pod_name};
use crate::database::{DbError, Flavor};
use crate::exit::UsageError;

/// The init container that writes each pod's server config (manifests/03-statefulset.yaml).
const INIT_CONTAINER: &str = "init-mysql-config";
/// The line of the built-in init script that derives the server id from the pod's ordinal, and the careless edit.
const OWN_ID: &str = "SERVER_ID=$((ORDINAL + 1))";
const PRIMARY_ID: &str = "SERVER_ID=1";
/// Where the init script writes the config the server reads (the `mysql-config` volume).
const CONFIG_FILE: &str = "/etc/mysql/conf.d/server.cnf";

pub struct MissingRows;

impl Exercise for MissingRows {
    fn name(&self) -> &'static str {
        "missing-rows"
    }

    fn title(&self) -> &'static str {
        "after a change to the StatefulSet, new rows stop appearing on the replica"
    }

    fn section(&self) -> &'static str {
        "4, 6D"
    }

    fn symptom(&self) -> &'static str {
        "\"since this morning's change to the StatefulSet, rows written on the primary no longer appear on mysql-1: \
         reports read from the replica are missing everything new\""
    }

    fn hints(&self) -> &'static [&'static str] {
        &[
            "Is mysql-1 replicating at all? Look at its replication status (`SHOW SLAVE STATUS\\G` or `SHOW REPLICA \
             STATUS\\G`): which thread stopped, and with what error?",
            "The error says the primary and the replica look like the same server. Compare `SELECT @@server_id` on \
             mysql-0 and mysql-1, and read where each pod's server id comes from: \
             `kubectl get statefulset mysql -o yaml`, the init container's script.",
            "The init script writes `server-id` for every pod; it must be the pod's ordinal + 1 \
             (`SERVER_ID=$((ORDINAL + 1))`). Fix the script with `kubectl edit statefulset mysql`, let the \
             StatefulSet roll the pods (`kubectl rollout status statefulset mysql`), then check mysql-1's \
             replication again (and `lab up` puts back the role labels re-created pods lose).",
        ]
    }

    fn start<'a>(&'a self, lab: &'a Lab<'a>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(start(lab))
    }

    fn goal<'a>(&'a self, lab: &'a Lab<'a>) -> BoxFuture<'a, anyhow::Result<Vec<String>>> {
        Box::pin(goal(lab))
    }

    fn solve<'a>(&'a self, lab: &'a Lab<'a>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(solve(lab))
    }
}

/// Pure: the careless edit: every pod gets the primary's server id.
pub fn break_script(script: &str) -> Option<String> {
    script.contains(OWN_ID).then(|| script.replacen(OWN_ID, PRIMARY_ID, 1))
}

/// Pure: the fix: the id derived from the ordinal again (`None` when the careless edit is not there).
pub fn fix_script(script: &str) -> Option<String> {
    script
        .lines()
        .any(|l| l.trim_start().starts_with(PRIMARY_ID) && !l.contains(OWN_ID))
        .then(|| {
            script
                .lines()
                .map(|l| {
                    if l.trim_start().starts_with(PRIMARY_ID) {
                        l.replacen(PRIMARY_ID, OWN_ID, 1)
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + if script.ends_with('\n') { "\n" } else { "" }
        })
}

/// Pure: the `server-id` a config file sets.
pub fn configured_id(config: &str) -> Option<u32> {
    config.lines().find_map(|l| {
        let (key, value) = l.split_once('=')?;
        matches!(key.trim(), "server-id" | "server_id")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// The IO error a replica with the primary's server id stops with.
pub fn duplicate_id_errno(flavor: Flavor) -> u32 {
    match flavor {
        Flavor::MariaDb => 1593,
        Flavor::MySql => 13117,
    }
}

async fn start(lab: &Lab<'_>) -> anyhow::Result<()> {
    let script = lab
        .cluster
        .init_script(lab.namespace, STATEFULSET, INIT_CONTAINER)
        .await?;
    let Some(broken) = script.as_deref().and_then(break_script) else {
        return Err(UsageError::new(format!(
            "the StatefulSet's {INIT_CONTAINER} script does not derive the server id as the built-in manifests do \
             ({OWN_ID}): run `lab up` with the built-in manifests first"
        ))
        .into());
    };
    lab.cluster
        .set_init_script(lab.namespace, STATEFULSET, INIT_CONTAINER, &broken)
        .await?;
    crate::interrupt::checkpoint("exercise missing-rows: script edited").await;
    lab.cluster
        .wait_rolled_out(lab.namespace, STATEFULSET, lab.deadline)
        .await?;
    // Until the replica's IO thread has met the primary, the fault does not show yet.
    let mut replica = lab.session(&pod_name(1)).await?;
    match replica.db.wait_replication_running(lab.deadline).await {
        Err(DbError::ReplicationFailed { errno, .. }) if errno == duplicate_id_errno(lab.flavor) => {}
        other => tracing::warn!(
            "mysql-1 after the edit: expected IO error {}, found {other:?}",
            duplicate_id_errno(lab.flavor)
        ),
    }
    replica.close().await;
    Ok(())
}

async fn goal(lab: &Lab<'_>) -> anyhow::Result<Vec<String>> {
    let mut symptoms: Vec<String> = lab
        .replicas_missing_a_fresh_row()
        .await?
        .into_iter()
        .map(|(pod, _)| format!("rows written on the primary no longer appear on {pod}"))
        .collect();
    // The config each pod restarts with: a replica with the primary's id loses the rows again at its next restart.
    let mut ids = Vec::new();
    for ordinal in 0..lab.pods {
        let pod = pod_name(ordinal);
        let output = lab
            .cluster
            .exec(
                lab.namespace,
                &pod,
                crate::manifests::DATABASE_CONTAINER,
                &["cat", CONFIG_FILE],
                "",
            )
            .await?;
        ids.push((pod, configured_id(&output.stdout)));
    }
    let primary = ids.first().and_then(|(_, id)| *id);
    for (pod, id) in ids.iter().skip(1) {
        if id.is_none() || *id == primary {
            symptoms.push(format!(
                "once {pod} restarts, rows written on the primary stop appearing on it again"
            ));
        }
    }
    Ok(symptoms)
}

async fn solve(lab: &Lab<'_>) -> anyhow::Result<()> {
    let script = lab
        .cluster
        .init_script(lab.namespace, STATEFULSET, INIT_CONTAINER)
        .await?;
    if let Some(fixed) = script.as_deref().and_then(fix_script) {
        lab.ran(lab.kubectl(&format!(
            "edit statefulset {STATEFULSET}   # in the {INIT_CONTAINER} script: {OWN_ID}"
        )));
        lab.cluster
            .set_init_script(lab.namespace, STATEFULSET, INIT_CONTAINER, &fixed)
            .await?;
        crate::interrupt::checkpoint("exercise missing-rows: script fixed").await;
    }
    lab.ran(lab.kubectl(&format!("rollout status statefulset {STATEFULSET}")));
    lab.cluster
        .wait_rolled_out(lab.namespace, STATEFULSET, lab.deadline)
        .await?;
    // A pod still running with another pod's id (the template was fixed, the pod not restarted): restart it.
    for ordinal in 1..lab.pods {
        let pod = pod_name(ordinal);
        let mut session = lab.session(&pod).await?;
        let id = session.db.facts().await?.server_id;
        session.close().await;
        if id != ordinal + 1 {
            lab.ran(lab.kubectl(&format!("delete pod {pod}")));
            let uid = lab.cluster.pod_identity(lab.namespace, &pod).await?.map(|p| p.uid);
            lab.cluster.delete_pod(lab.namespace, &pod).await?;
            if let Some(uid) = uid {
                lab.cluster
                    .wait_pods_gone(lab.namespace, &[(pod.clone(), uid)], lab.deadline)
                    .await?;
            }
            lab.cluster
                .wait_pod_ready(lab.namespace, &pod, lab.deadline, &|_| {})
                .await?;
        }
    }
    lab.restore_role_labels().await?;
    lab.start_stopped_replicas().await?;
    for ordinal in 1..lab.pods {
        let mut replica = lab.session(&pod_name(ordinal)).await?;
        replica.db.wait_replication_running(lab.deadline).await?;
        replica.close().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "set -e\nORDINAL=\"${HOSTNAME##*-}\"\nSERVER_ID=$((ORDINAL + 1))       # mysql-0 => 1\necho \"server-id=${SERVER_ID}\" >> /work/server.cnf\n";

    #[test]
    fn the_careless_edit_gives_every_pod_id_1_and_the_fix_undoes_exactly_it() {
        let broken = break_script(SCRIPT).expect("the built-in line is there");
        assert!(broken.contains("SERVER_ID=1       # mysql-0 => 1\n"), "{broken}");
        assert!(!broken.contains(OWN_ID));
        assert_eq!(fix_script(&broken).as_deref(), Some(SCRIPT));
        assert_eq!(fix_script(SCRIPT), None, "nothing to fix");
        assert_eq!(
            break_script("echo server-id=7"),
            None,
            "a script lab did not write is left alone"
        );
    }

    #[test]
    fn the_configured_id_is_read_from_the_generated_file() {
        assert_eq!(configured_id("[mysqld]\nserver-id=2\nread-only=ON\n"), Some(2));
        assert_eq!(configured_id("[mysqld]\nserver_id = 3\n"), Some(3));
        assert_eq!(configured_id("[mysqld]\n"), None);
    }

    #[test]
    fn the_duplicate_id_stops_the_io_thread_with_each_flavours_number() {
        // MariaDB: ER_SLAVE_FATAL_ERROR 1593 "master and slave have equal MariaDB server ids" (measured on the
        // simulator's MariaDB). MySQL 8: 13117 ER_SERVER_SOURCE_FATAL_ERROR_READING_BINLOG_... "replica and source
        // have equal MySQL server ids" (refman error reference, server error 13117; measured on MySQL 8.0.40, mysql-notes 14).
        assert_eq!(duplicate_id_errno(Flavor::MariaDb), 1593);
        assert_eq!(duplicate_id_errno(Flavor::MySql), 13117);
    }
}
