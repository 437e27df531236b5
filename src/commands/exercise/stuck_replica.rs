//! `stuck-replica` (tutorial section 7, "never write to a replica"): someone "fixed" an order by hand on mysql-1
//! instead of on the primary. When the application later writes that order on the primary, the replica already has a
//! row with that key: its SQL thread stops with 1062 (duplicate key) and nothing more arrives there. Skipping the
//! event or deleting the row by hand only hides it: the replica's data no longer matches the primary's. The fix is a
//! re-seed from a consistent copy of the primary, `lab repair`.
//!
//! MySQL and MariaDB differ in how the careless write gets through, not in what follows (1062 on both): on MySQL the
//! person turns super_read_only off (root's SUPER then passes read_only) and back on; on MariaDB before 12.0 root
//! lost READ_ONLY ADMIN to `lab up`'s protection, and the write goes through the replica's socket account
//! `'mysql'@'localhost'`; on MariaDB 12.0+ read_only is lowered from NO_LOCK_NO_ADMIN to ON and back.

use futures::future::BoxFuture;

use super::{Exercise, Lab};
use crate::cluster::ExecOutput;
use crate::commands::repair::{self, SOCKET_CLIENT};
use crate::commands::{PRIMARY_POD, pod_name};
use crate::database::{APP_DATABASE, SeedAccess};
use crate::manifests::DATABASE_CONTAINER;
use crate::output::Progress;
use crate::plan::Runner;
use crate::settings::ProgressStyle;

/// The application's table the exercise writes to (never the tutorial's `replication_test`).
const TABLE: &str = "exercise_orders";

pub struct StuckReplica;

impl Exercise for StuckReplica {
    fn name(&self) -> &'static str {
        "stuck-replica"
    }

    fn title(&self) -> &'static str {
        "after a hot fix, a replica no longer shows new orders"
    }

    fn section(&self) -> &'static str {
        "7"
    }

    fn symptom(&self) -> &'static str {
        "\"since last night's hot fix, new orders appear on mysql-0 but never on mysql-1, and the reports that read \
         from mysql-1 are frozen\""
    }

    fn hints(&self) -> &'static [&'static str] {
        &[
            "Write a row on the primary and look for it on mysql-1. Then look at mysql-1's replication status \
             (`SHOW SLAVE STATUS\\G`, `SHOW REPLICA STATUS\\G` on MySQL 8.0.22+): which thread stopped, with which \
             error?",
            "Error 1062 is a duplicate key: the replica already had the row the primary sent. Rows reach a replica \
             only through replication, unless someone wrote on the replica itself. Compare the order the error names \
             on mysql-0 and on mysql-1.",
            "Skipping the event or deleting the row by hand only hides it: mysql-1's data no longer matches the \
             primary's. Re-seed it from a consistent copy of the primary taken with its binlog coordinates, and \
             replicate from there: `lab repair mysql-1`.",
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

/// Pure: the SQL of each step.
fn create_table() -> String {
    format!(
        "USE {APP_DATABASE}; CREATE TABLE IF NOT EXISTS {TABLE} (id BIGINT PRIMARY KEY, item VARCHAR(60) NOT NULL); \
         INSERT IGNORE INTO {TABLE} VALUES (1000, 'an order from the application')"
    )
}

/// The order fixed by hand on the replica, then written by the application on the primary: a new one at each
/// start (a second start must not meet the first one's order).
fn new_key() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn hand_fix(key: i64) -> String {
    format!("INSERT INTO {APP_DATABASE}.{TABLE} VALUES ({key}, 'fixed by hand on the replica')")
}

fn application_write(key: i64) -> String {
    format!("INSERT INTO {APP_DATABASE}.{TABLE} VALUES ({key}, 'the order from the application')")
}

/// Pure: the careless write on a replica, as a person gets it past the replica's protection on each server.
fn careless_write(access: &SeedAccess, key: i64) -> String {
    match access {
        SeedAccess::Tcp(open) if open.text().contains("super_read_only") => {
            format!("{}; {}; SET GLOBAL super_read_only = ON", open.text(), hand_fix(key))
        }
        SeedAccess::Tcp(open) => format!(
            "{}; {}; SET GLOBAL read_only = NO_LOCK_NO_ADMIN",
            open.text(),
            hand_fix(key)
        ),
        SeedAccess::Socket => hand_fix(key),
    }
}

/// Runs `sql` in `pod` with the pod's own client: as root over TCP (the password on stdin, into MYSQL_PWD), or as
/// the socket account.
async fn client_sql(lab: &Lab<'_>, pod: &str, socket: bool, sql: &str) -> anyhow::Result<ExecOutput> {
    let output = if socket {
        let mut argv = SOCKET_CLIENT.to_vec();
        argv.extend(["-e", sql]);
        lab.cluster
            .exec(lab.namespace, pod, DATABASE_CONTAINER, &argv, "")
            .await?
    } else {
        let script = format!(
            "MYSQL_PWD=\"$(cat)\" exec {} -h127.0.0.1 -uroot -N -B -e \"$1\"",
            lab.client()
        );
        lab.cluster
            .exec(
                lab.namespace,
                pod,
                DATABASE_CONTAINER,
                &["sh", "-c", &script, "sh", sql],
                lab.accounts.root.password.expose(),
            )
            .await?
    };
    Ok(output)
}

async fn run_sql(lab: &Lab<'_>, pod: &str, socket: bool, sql: &str) -> anyhow::Result<()> {
    let output = client_sql(lab, pod, socket, sql).await?;
    if !output.success {
        anyhow::bail!("{pod}: {sql}: {}", output.stderr.trim());
    }
    Ok(())
}

async fn start(lab: &Lab<'_>) -> anyhow::Result<()> {
    let replica = pod_name(1);
    run_sql(lab, PRIMARY_POD, false, &create_table()).await?;
    // The table must be on the replica before the hand fix (a fresh row reaching it proves it applied all before).
    if let Some((pod, why)) = lab.replicas_missing_a_fresh_row().await?.into_iter().next() {
        anyhow::bail!("{pod} does not replicate, so the exercise cannot start: {why}");
    }
    let session = lab.session(&replica).await?;
    let access = session.db.dialect().seed_access();
    session.close().await;
    let key = new_key();
    run_sql(
        lab,
        &replica,
        access == SeedAccess::Socket,
        &careless_write(&access, key),
    )
    .await?;
    run_sql(lab, PRIMARY_POD, false, &application_write(key)).await?;
    Ok(())
}

/// Pure: the symptoms, from the replicas a fresh row did not reach and those whose orders differ from the primary's.
pub fn symptoms(missing: &[String], differing: &[String]) -> Vec<String> {
    missing
        .iter()
        .map(|pod| format!("new orders written on the primary no longer appear on {pod}"))
        .chain(
            differing
                .iter()
                .map(|pod| format!("{pod} shows other orders than {PRIMARY_POD}")),
        )
        .collect()
}

async fn goal(lab: &Lab<'_>) -> anyhow::Result<Vec<String>> {
    let missing: Vec<String> = lab
        .replicas_missing_a_fresh_row()
        .await?
        .into_iter()
        .map(|(pod, _)| pod)
        .collect();
    // Every other replica has applied all the primary wrote before the fresh row: its orders must be the primary's.
    let mut primary = lab.session(PRIMARY_POD).await?;
    let expected = primary.db.table_checksum(APP_DATABASE, TABLE).await?;
    primary.close().await;
    let mut differing = Vec::new();
    for pod in (1..lab.pods).map(pod_name).filter(|pod| !missing.contains(pod)) {
        let mut replica = lab.session(&pod).await?;
        let checksum = replica.db.table_checksum(APP_DATABASE, TABLE).await;
        replica.close().await;
        if checksum.ok() != Some(expected.clone()) {
            differing.push(pod);
        }
    }
    Ok(symptoms(&missing, &differing))
}

async fn solve(lab: &Lab<'_>) -> anyhow::Result<()> {
    lab.ran(format!(
        "lab repair -n {}   # re-seeds every broken or diverged replica from a consistent copy of {PRIMARY_POD}",
        lab.namespace
    ));
    let progress = Progress::new(ProgressStyle::Lines, false);
    let mut runner = Runner::new(&progress);
    let report = repair::repair_lab(
        &lab.cluster,
        lab.namespace,
        lab.pods,
        &lab.accounts,
        None,
        lab.deadline,
        &mut runner,
    )
    .await?;
    if !report.ok {
        anyhow::bail!("lab repair did not prove every re-seeded replica:\n{}", report.render());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::{Dialect, parse_version};

    fn access(version: &str) -> SeedAccess {
        Dialect::for_version(&parse_version(version).expect("parses")).seed_access()
    }

    #[test]
    fn the_careless_write_gets_past_each_server_s_protection_and_puts_it_back() {
        assert_eq!(
            careless_write(&access("8.4.10"), 1001),
            "SET GLOBAL super_read_only = OFF; INSERT INTO appdb.exercise_orders VALUES (1001, 'fixed by hand on the \
             replica'); SET GLOBAL super_read_only = ON"
        );
        assert!(careless_write(&access("12.0.2-MariaDB"), 1001).ends_with("SET GLOBAL read_only = NO_LOCK_NO_ADMIN"));
        assert_eq!(
            careless_write(&access("10.11.19-MariaDB"), 1001),
            "INSERT INTO appdb.exercise_orders VALUES (1001, 'fixed by hand on the replica')"
        );
        // The application writes the same key on the primary: that is what stops the replica with 1062.
        assert!(application_write(1001).contains("VALUES (1001,"));
        assert!(
            create_table().starts_with("USE appdb; CREATE TABLE"),
            "DDL is filtered by the default database"
        );
    }

    #[test]
    fn the_symptoms_name_the_replica_and_not_the_cause() {
        let s = symptoms(&["mysql-1".into()], &["mysql-2".into()]);
        assert_eq!(
            s,
            [
                "new orders written on the primary no longer appear on mysql-1",
                "mysql-2 shows other orders than mysql-0"
            ]
        );
        assert!(s.iter().all(|t| !t.contains("1062") && !t.contains("duplicate")));
        assert!(symptoms(&[], &[]).is_empty());
    }
}
