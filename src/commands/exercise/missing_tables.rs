//! `missing-tables` (tutorial section 5): mysql-1 lost its volume and was set up again by the tutorial's scripts,
//! in the tutorial's order: `SHOW MASTER STATUS` on a primary that already has `appdb`, then `CHANGE MASTER TO`
//! those coordinates. With `binlog-do-db=appdb`, `CREATE DATABASE appdb` is in the primary's binlog *before* them,
//! so the rebuilt replica never creates `appdb`; it replicates happily until the first table written in `appdb`,
//! where its SQL thread stops with error 1049 "Unknown database 'appdb'" (mysql-notes 1.1).
//!
//! The break is done as a person does it: the StatefulSet scaled down to mysql-0, the claim `data-mysql-1` deleted,
//! the StatefulSet scaled back (an empty volume, the image's first start), then the tutorial's replica statements
//! with the primary's current coordinates, then a new table on the primary. No server is written behind the lab's
//! back: on MariaDB the lab took READ_ONLY ADMIN from root on the replicas, so not even root could drop `appdb` there.
//!
//! The fix re-seeds mysql-1 from coordinates consistent with its data: an empty volume again, configured from the
//! origin `lab up` recorded on `data-mysql-0` before it created `appdb` (what `lab up` does for a new replica), so
//! the replica replays `CREATE DATABASE appdb` and everything after it. `lab repair mysql-1`, where it exists, does
//! the same from a consistent copy instead of an empty volume.
//!
//! MySQL and MariaDB: both stop with `Last_SQL_Errno` 1049. MariaDB's `Last_SQL_Error` carries the text; MySQL 8's
//! multi-threaded applier says "Coordinator stopped because there were error(s) in the worker(s)" and keeps the text
//! in performance_schema.replication_applier_status_by_worker (mysql-notes 14), which `lab` reads. On MySQL a student
//! can also repair by hand (root holds SUPER, so `SET GLOBAL super_read_only = OFF`, then `CREATE DATABASE appdb` and
//! the table, then `START REPLICA SQL_THREAD`); on MariaDB only a re-seed is left. The goal looks at the table, not
//! at how it got there.

use futures::future::BoxFuture;
use std::collections::BTreeMap;

use super::replica_errors::wait_for_error;
use super::{Exercise, Lab, RECORD};
use crate::commands::up::explain::{as_typed, hidden_source};
use crate::commands::up::parse_origin;
use crate::commands::{
    ORIGIN_ANNOTATION, ORIGIN_PVC, PRIMARY_POD, STATEFULSET, Session, demo, pod_name, primary_source,
};
use crate::database::{
    Account, Coordinates, Dialect, ReplicaProtection, ReplicaStatus, ReplicationThread, SourceConfig, ThreadState,
    check_origin_available,
};
use crate::exit::UsageError;

/// The replica this exercise rebuilds.
const REBUILT: u32 = 1;
/// The record key holding the lab's size before `start` scaled it down, so that a fix after an interrupted `start`
/// scales back to it.
const SIZE_KEY: &str = "missing-tables-replicas";
/// The SQL error of a replica that receives a statement for a database it does not have (both flavours).
pub const UNKNOWN_DATABASE: u32 = 1049;

pub struct MissingTables;

impl Exercise for MissingTables {
    fn name(&self) -> &'static str {
        "missing-tables"
    }

    fn title(&self) -> &'static str {
        "after a replica was rebuilt, new tables on the primary never appear on it"
    }

    fn section(&self) -> &'static str {
        "5"
    }

    fn symptom(&self) -> &'static str {
        "\"mysql-1 lost its disk yesterday and we set it up again with the tutorial's scripts; it looked fine, but \
         now mysql-1 stopped replicating: new tables on the primary never appear there\""
    }

    fn hints(&self) -> &'static [&'static str] {
        &[
            "Look at mysql-1's replication status (`SHOW SLAVE STATUS\\G` or `SHOW REPLICA STATUS\\G`): which thread \
             stopped, with which error, on which statement? And which databases does mysql-1 have (`SHOW \
             DATABASES`)?",
            "Error 1049 says mysql-1 has no appdb, yet the primary sent it a table in appdb. mysql-1 was set up from \
             the coordinates `SHOW MASTER STATUS` gave at that moment: what had the primary written to its binlog \
             before those coordinates? Compare the order of the tutorial's 01-primary-setup.sql with what `lab up` \
             does (README, The tutorial's bugs).",
            "The coordinates were taken after CREATE DATABASE appdb, so mysql-1 never received it; nothing after \
             that point can repair it. Re-seed mysql-1 from a point before appdb existed: an empty volume \
             (`kubectl scale statefulset mysql --replicas=1`, `kubectl delete pvc data-mysql-1`, scale back), then \
             `lab up`, which configures a new replica from the origin it recorded before creating appdb (`kubectl get \
             pvc data-mysql-0 -o yaml`, annotation lab.dev/binlog-origin).",
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

/// Pure: the size to scale back to: the one recorded before `start` scaled down, unless the lab is larger now.
pub fn size_to_restore(recorded: Option<&str>, pods: u32) -> u32 {
    recorded
        .and_then(|text| text.trim().parse::<u32>().ok())
        .map_or(pods, |recorded| recorded.max(pods))
}

/// Pure: whether the replica must be re-seeded: it is not configured, its SQL thread does not apply (or stopped
/// on an error), or it lacks the table the primary has. Its IO thread is not looked at: a reconnect (a primary
/// restart) is no reason to wipe a replica.
pub fn needs_reseed(status: Option<&ReplicaStatus>, has_table: bool, primary_has_table: bool) -> bool {
    let applying = status.is_some_and(|s| s.sql_running == ThreadState::Yes && s.last_sql_errno == 0);
    !applying || (primary_has_table && !has_table)
}

/// Pure: what a user sees for each replica without the table.
pub fn symptoms(missing_on: &[String]) -> Vec<String> {
    missing_on
        .iter()
        .map(|pod| format!("table appdb.lab_exercise_orders, created on the primary, does not exist on {pod}"))
        .collect()
}

async fn start(lab: &Lab<'_>) -> anyhow::Result<()> {
    let data = BTreeMap::from([(SIZE_KEY.to_string(), lab.pods.to_string())]);
    lab.cluster.update_config_map(lab.namespace, RECORD, &data).await?;
    rebuild(lab, lab.pods, false).await?;

    // The tutorial's 01-primary-setup.sql ends with SHOW MASTER STATUS, after CREATE DATABASE appdb.
    let mut primary = lab.session(PRIMARY_POD).await?;
    let now = primary.db.capture_coordinates().await?;
    let pod = pod_name(REBUILT);
    let mut replica = lab.session(&pod).await?;
    replica.db.configure_replica(&source(lab, now)).await?;
    replica.db.wait_replication_running(lab.deadline).await?;
    // The lab's own protection, as on every replica, so that the one fault is the one this exercise is about.
    replica.db.protect_replica().await?;
    // The tutorial's 03-validate.sql, or an application's first table: the first table written in appdb.
    primary.db.write_new_table().await?;
    primary.close().await;
    wait_for_error(&mut replica, (ReplicationThread::Sql, UNKNOWN_DATABASE), lab.deadline).await?;
    replica.close().await;
    Ok(())
}

fn source(lab: &Lab<'_>, origin: Coordinates) -> SourceConfig {
    primary_source(lab.namespace, &lab.accounts.replication, origin)
}

/// mysql-1 on an empty volume: the StatefulSet scaled down to mysql-0 alone, the claim deleted, and scaled back to
/// `size`; every pod Ready again with its role label. `narrate`: record the commands (the fix), or not (the break).
async fn rebuild(lab: &Lab<'_>, size: u32, narrate: bool) -> anyhow::Result<()> {
    let claim = format!("data-{}", pod_name(REBUILT));
    let say = |command: String| {
        if narrate {
            lab.ran(command);
        }
    };
    say(lab.kubectl(&format!("scale statefulset {STATEFULSET} --replicas=1")));
    lab.cluster.scale_statefulset(lab.namespace, STATEFULSET, 1).await?;
    let leaving = lab.cluster.pods_beyond(lab.namespace, STATEFULSET, 1).await?;
    lab.cluster
        .wait_pods_gone(lab.namespace, &leaving, lab.deadline)
        .await?;
    say(lab.kubectl(&format!("delete pvc {claim}")));
    lab.cluster.delete_pvc(lab.namespace, &claim).await?;
    lab.cluster.wait_claim_gone(lab.namespace, &claim, lab.deadline).await?;
    say(lab.kubectl(&format!("scale statefulset {STATEFULSET} --replicas={size}")));
    lab.cluster.scale_statefulset(lab.namespace, STATEFULSET, size).await?;
    for ordinal in 1..size {
        lab.cluster
            .wait_pod_ready(lab.namespace, &pod_name(ordinal), lab.deadline, &|_| {})
            .await?;
    }
    // Re-created pods lose the role label `lab up` sets (mysql-replicas selects it).
    if narrate {
        lab.restore_role_labels().await?;
    } else {
        let base: &demo::Lab = lab;
        base.restore_role_labels().await?;
    }
    Ok(())
}

async fn goal(lab: &Lab<'_>) -> anyhow::Result<Vec<String>> {
    let mut primary = lab.session(PRIMARY_POD).await?;
    let on_primary = primary.db.has_new_table().await?;
    primary.close().await;
    if !on_primary {
        return Ok(Vec::new());
    }
    let mut missing = Vec::new();
    for ordinal in 1..lab.pods {
        let pod = pod_name(ordinal);
        let mut replica = lab.session(&pod).await?;
        if !replica.db.has_new_table().await? {
            missing.push(pod);
        }
        replica.close().await;
    }
    Ok(symptoms(&missing))
}

async fn solve(lab: &Lab<'_>) -> anyhow::Result<()> {
    let record = lab.cluster.config_map(lab.namespace, RECORD).await?.unwrap_or_default();
    let size = size_to_restore(record.get(SIZE_KEY).map(String::as_str), lab.pods);
    let pod = pod_name(REBUILT);
    let mut primary = lab.session(PRIMARY_POD).await?;
    let primary_has_table = primary.db.has_new_table().await?;
    let logs = primary.db.binary_logs().await?;
    primary.close().await;
    let current = lab
        .cluster
        .statefulset_replicas(lab.namespace, STATEFULSET)
        .await?
        .unwrap_or(0);
    if current == size && lab.cluster.pod_is_ready(lab.namespace, &pod).await? {
        let mut replica = lab.session(&pod).await?;
        let status = replica.db.replica_status().await?;
        let has_table = replica.db.has_new_table().await?;
        replica.close().await;
        if !needs_reseed(status.as_ref(), has_table, primary_has_table) {
            return Ok(());
        }
    }
    // Before anything is deleted: the origin must still be on the primary, or only a copy can re-seed the replica.
    let recorded = lab
        .cluster
        .pvc_annotation(lab.namespace, ORIGIN_PVC, ORIGIN_ANNOTATION)
        .await?
        .ok_or_else(|| {
            UsageError::new(format!(
                "PVC {ORIGIN_PVC} has no annotation {ORIGIN_ANNOTATION}: lab cannot tell where {pod} must start; \
                 re-seed it from a copy of the primary (`lab repair {pod}`), or `lab teardown` and `lab up`"
            ))
        })?;
    let origin = parse_origin(&recorded)?;
    check_origin_available(PRIMARY_POD, &origin, &logs)?;

    rebuild(lab, size, true).await?;
    let source = source(lab, origin);
    let mut replica: Session = lab.session(&pod).await?;
    lab.ran(lab.sql(
        &pod,
        &as_typed(&replica.db.dialect().configure_replica(&hidden_source(&source))),
    ));
    replica.db.configure_replica(&source).await?;
    replica.db.wait_replication_running(lab.deadline).await?;
    lab.ran(lab.sql(&pod, &protection_as_typed(replica.db.dialect())));
    replica.db.protect_replica().await?;
    replica.close().await;
    Ok(())
}

/// Pure: how a student keeps root's writes off the new replica, as `lab up` does it on this server.
pub fn protection_as_typed(dialect: &Dialect) -> String {
    match dialect.replica_protection() {
        ReplicaProtection::SuperReadOnly(statement) | ReplicaProtection::NoLockNoAdmin(statement) => {
            statement.text().to_string()
        }
        ReplicaProtection::RevokeReadOnlyAdmin => as_typed(&dialect.revoke_read_only_admin(&Account::new("root", "%"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::{Credentials, parse_replica_status};
    use crate::secret::SecretString;

    fn status(sql: &str, sql_errno: u32) -> ReplicaStatus {
        status_io("Yes", sql, sql_errno)
    }

    fn status_io(io: &str, sql: &str, sql_errno: u32) -> ReplicaStatus {
        let column = |k: &str, v: String| (k.to_string(), Some(v));
        parse_replica_status(&[
            column("Slave_IO_Running", io.into()),
            column("Slave_SQL_Running", sql.into()),
            column("Last_SQL_Errno", sql_errno.to_string()),
        ])
    }

    #[test]
    fn the_size_restored_is_the_one_before_start_unless_the_lab_grew() {
        assert_eq!(size_to_restore(Some("3"), 1), 3, "start interrupted while scaled down");
        assert_eq!(size_to_restore(Some("2"), 2), 2);
        assert_eq!(size_to_restore(Some("2"), 4), 4, "scaled up since");
        assert_eq!(size_to_restore(None, 2), 2);
        assert_eq!(size_to_restore(Some("nonsense"), 2), 2);
    }

    #[test]
    fn a_replica_is_reseeded_unless_it_replicates_and_has_the_primary_s_table() {
        // The fault: SQL thread stopped with 1049 (MariaDB and MySQL alike, mysql-notes 1.1 and 14).
        assert!(needs_reseed(Some(&status("No", UNKNOWN_DATABASE)), false, true));
        assert!(needs_reseed(None, false, true), "not configured");
        // Running again but without the table (a skipped event): still broken for the user.
        assert!(needs_reseed(Some(&status("Yes", 0)), false, true));
        // A student's own repair (MySQL: appdb and the table created by hand, SQL thread started): left alone.
        assert!(!needs_reseed(Some(&status("Yes", 0)), true, true));
        assert!(
            !needs_reseed(Some(&status("Yes", 0)), false, false),
            "the table was dropped on the primary"
        );
        assert!(
            !needs_reseed(Some(&status_io("Connecting", "Yes", 0)), true, true),
            "reconnecting after a primary restart"
        );
    }

    #[test]
    fn each_replica_without_the_table_is_a_symptom() {
        assert!(symptoms(&[]).is_empty());
        assert_eq!(
            symptoms(&["mysql-1".to_string()]),
            ["table appdb.lab_exercise_orders, created on the primary, does not exist on mysql-1"]
        );
    }

    #[test]
    fn the_new_replica_is_protected_as_lab_up_protects_each_flavour() {
        let dialect = |v: &str| Dialect::for_version(&crate::database::parse_version(v).unwrap());
        // MySQL: super_read_only, persisted (mysql-notes 14: root then gets 1290, replication still applies).
        assert_eq!(
            protection_as_typed(&dialect("8.4.10")),
            "SET PERSIST super_read_only = ON"
        );
        // MariaDB before 12: no super_read_only; READ_ONLY ADMIN taken from root, not binlogged (mysql-notes 1.4).
        assert_eq!(
            protection_as_typed(&dialect("10.11.19-MariaDB-0+deb12u1-log")),
            "SET SESSION sql_log_bin = 0; REVOKE READ_ONLY ADMIN ON *.* FROM 'root'@'%'; SET SESSION sql_log_bin = 1"
        );
    }

    #[test]
    fn the_reseed_is_shown_with_the_recorded_origin_and_no_password() {
        let source = SourceConfig {
            host: "mysql-0.mysql-headless.database.svc.cluster.local".into(),
            port: 3306,
            credentials: Credentials {
                user: "repl".into(),
                password: SecretString::new("s3cret"),
            },
            origin: Coordinates {
                file: "mysql-bin.000001".into(),
                position: 328,
            },
        };
        let dialect =
            crate::database::Dialect::for_version(&crate::database::parse_version("11.4.12-MariaDB").unwrap());
        let text = as_typed(&dialect.configure_replica(&hidden_source(&source)));
        assert!(
            text.contains("MASTER_LOG_FILE = 'mysql-bin.000001', MASTER_LOG_POS = 328"),
            "{text}"
        );
        assert!(
            text.contains("MASTER_PASSWORD = '******'") && !text.contains("s3cret"),
            "{text}"
        );
    }
}
