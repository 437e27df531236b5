//! `lab demo routing` (tutorial sections 3 and 7, "Services selectors must be correct"): many connections from the
//! client pod through `mysql-primary` (always the primary) and `mysql-replicas` (only replicas), then a temporary
//! Service with the tutorial's original replicas selector (`app: mysql`), whose answers include the primary.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use super::{Lab, Narrator, clear_repair_on_interrupt, repair_on_interrupt};
use crate::exit::UsageError;

use crate::commands::{CLIENT_CONTAINER, CLIENT_POD};
/// Connections per Service: enough for every endpoint to answer several times (the Service spreads them).
const CONNECTIONS: u32 = 12;
/// The temporary Service with the tutorial's selector.
const TUTORIAL_SERVICE: &str = "mysql-replicas-tutorial";
/// How long the temporary Service may take to route (its Endpoints are written by a controller).
const ROUTE_WAIT: Duration = Duration::from_secs(30);

pub async fn run(lab: &Lab<'_>, n: &mut Narrator) -> anyhow::Result<()> {
    if lab.pods < 2 {
        return Err(UsageError::new("demo routing needs a replica: run `lab up --replicas 2` first").into());
    }
    let replica_ids: BTreeSet<String> = (2..=lab.pods).map(|id| id.to_string()).collect();

    n.step(
        "writes through mysql-primary",
        "mysql-primary selects the pod named mysql-0 (statefulset.kubernetes.io/pod-name): every connection, and so \
         every write, reaches the primary",
        &[student_loop(lab, "mysql-primary")],
    )
    .await;
    let ids = server_ids(lab, "mysql-primary").await?;
    let (observed, matched) = judge_only(&ids, &BTreeSet::from(["1".to_string()]));
    n.observe(
        &format!("{CONNECTIONS} connections to mysql-primary"),
        "server_id 1 every time",
        observed,
        Some((ids.len() as f64, "connections")),
        matched,
    );

    n.step(
        "reads through mysql-replicas",
        "mysql-replicas selects the role label lab.dev/role=replica that lab puts on the replicas: connections are \
         spread over them and never reach the primary",
        &[student_loop(lab, "mysql-replicas")],
    )
    .await;
    let ids = server_ids(lab, "mysql-replicas").await?;
    let (observed, matched) = judge_only(&ids, &replica_ids);
    n.observe(
        &format!("{CONNECTIONS} connections to mysql-replicas"),
        &format!("only the replicas' server_ids ({})", join(&replica_ids)),
        observed,
        Some((ids.len() as f64, "connections")),
        matched,
    );

    n.step(
        "the tutorial's replicas Service (selector app: mysql)",
        "the tutorial's 05-service-replicas.yaml selects app: mysql, a label the primary has too: its \"replica\" \
         reads sometimes reach the primary, and a write sent there by mistake would succeed",
        &[
            lab.kubectl(&format!("create service clusterip {TUTORIAL_SERVICE} --tcp=3306:3306")),
            lab.kubectl(&format!("set selector service {TUTORIAL_SERVICE} app=mysql")),
            student_loop(lab, TUTORIAL_SERVICE),
        ],
    )
    .await;
    repair_on_interrupt(format!(
        "kubectl -n {} delete service {TUTORIAL_SERVICE} && lab up",
        lab.namespace
    ));
    let selector = BTreeMap::from([("app".to_string(), "mysql".to_string())]);
    lab.cluster
        .apply_service(lab.namespace, TUTORIAL_SERVICE, &selector)
        .await?;
    crate::interrupt::checkpoint("demo routing: temporary Service created").await;
    let started = Instant::now();
    let routed = wait_for_endpoints(lab, lab.pods as usize).await?;
    n.timed(
        &format!("{TUTORIAL_SERVICE} routes to {routed} pods"),
        started.elapsed(),
    );
    let ids = server_ids(lab, TUTORIAL_SERVICE).await?;
    let (observed, matched) = judge_includes_primary(&ids);
    n.observe(
        &format!("{CONNECTIONS} connections to {TUTORIAL_SERVICE}"),
        "server_id 1 (the primary) among the answers",
        observed,
        Some((ids.len() as f64, "connections")),
        matched,
    );
    lab.cluster.delete_service(lab.namespace, TUTORIAL_SERVICE).await?;
    clear_repair_on_interrupt();
    n.note(&format!(
        "{TUTORIAL_SERVICE} deleted; lab's mysql-replicas selects lab.dev/role=replica, which only replicas carry"
    ));
    Ok(())
}

/// What a student types: a loop of connections from the client pod through `service`.
fn student_loop(lab: &Lab<'_>, service: &str) -> String {
    lab.kubectl(&format!(
        "exec {CLIENT_POD} -- sh -c 'for i in $(seq {CONNECTIONS}); do {} -h {service} -uroot -p****** -N -e \
         \"SELECT @@server_id\"; done'",
        lab.client()
    ))
}

/// The server_id of each of [`CONNECTIONS`] new connections through `service`, from the client pod. The password
/// goes in on stdin (into MYSQL_PWD), never on a command line.
async fn server_ids(lab: &Lab<'_>, service: &str) -> anyhow::Result<Vec<String>> {
    let script = format!(
        "MYSQL_PWD=\"$(cat)\"; export MYSQL_PWD; for i in $(seq {CONNECTIONS}); do {} -h {service} -uroot -N -B -e \
         'SELECT @@server_id' || echo failed; done",
        lab.client()
    );
    let output = lab
        .cluster
        .exec(
            lab.namespace,
            CLIENT_POD,
            CLIENT_CONTAINER,
            &["sh", "-c", &script],
            lab.accounts.root.password.expose(),
        )
        .await?;
    Ok(output.stdout.lines().map(|l| l.trim().to_string()).collect())
}

/// Waits until the temporary Service routes to `pods` ready pods; returns how many it routes to.
async fn wait_for_endpoints(lab: &Lab<'_>, pods: usize) -> anyhow::Result<usize> {
    let started = Instant::now();
    loop {
        let snapshot = lab.cluster.snapshot(lab.namespace).await?;
        let routed = snapshot
            .services
            .iter()
            .find(|s| s.name == TUTORIAL_SERVICE)
            .map_or(0, |s| s.endpoints.len());
        if routed >= pods || started.elapsed() > ROUTE_WAIT {
            return Ok(routed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pure: every answer is one of `allowed`. Observed as the answers counted per server_id.
pub fn judge_only(ids: &[String], allowed: &BTreeSet<String>) -> (String, bool) {
    let matched = !ids.is_empty() && ids.iter().all(|id| allowed.contains(id));
    (count(ids), matched)
}

/// Pure: the primary (server_id 1) answered at least once.
pub fn judge_includes_primary(ids: &[String]) -> (String, bool) {
    (count(ids), ids.iter().any(|id| id == "1"))
}

/// `server_id 1 × 6, server_id 2 × 6`, or `failed × 2` for connections that did not answer.
fn count(ids: &[String]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in ids {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    if counts.is_empty() {
        return "no answer".to_string();
    }
    counts
        .iter()
        .map(|(id, n)| {
            if *id == "failed" {
                format!("failed × {n}")
            } else {
                format!("server_id {id} × {n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn join(ids: &BTreeSet<String>) -> String {
    ids.iter().cloned().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_primary_service_must_answer_only_server_id_1() {
        let primary = BTreeSet::from(["1".to_string()]);
        assert_eq!(
            judge_only(&ids(&["1", "1", "1"]), &primary),
            ("server_id 1 × 3".to_string(), true)
        );
        assert!(!judge_only(&ids(&["1", "2"]), &primary).1);
        assert!(
            !judge_only(&ids(&["1", "failed"]), &primary).1,
            "a failed connection is no match"
        );
        assert!(!judge_only(&[], &primary).1, "no answer is no match");
    }

    #[test]
    fn the_replicas_service_must_never_answer_the_primary_and_the_tutorials_does() {
        let replicas = BTreeSet::from(["2".to_string(), "3".to_string()]);
        assert_eq!(
            judge_only(&ids(&["2", "3", "2"]), &replicas),
            ("server_id 2 × 2, server_id 3 × 1".to_string(), true)
        );
        assert!(!judge_only(&ids(&["2", "1"]), &replicas).1);
        assert_eq!(
            judge_includes_primary(&ids(&["1", "2", "1"])),
            ("server_id 1 × 2, server_id 2 × 1".to_string(), true)
        );
        assert!(!judge_includes_primary(&ids(&["2", "2"])).1);
    }
}
