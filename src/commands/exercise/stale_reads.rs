//! `stale-reads` (tutorial section 7, "replication lag"): someone stopped mysql-1's SQL (applier) thread, say to
//! take a consistent copy of its files, and forgot to start it again. The IO thread keeps fetching the primary's
//! events into the relay log, so the replica looks connected, but nothing is applied: reads there are stale and fall
//! further behind with every write on the primary. `Seconds_Behind_Master` is NULL while the SQL thread is stopped on
//! both flavours (MySQL: refman "SHOW REPLICA STATUS", Seconds_Behind_Source; MariaDB: "SHOW SLAVE STATUS"), so
//! a lag alert on that number stays silent. The statements differ: MySQL 8.0.22+ takes `START REPLICA SQL_THREAD`
//! (and 8.4 no longer takes `START SLAVE`), MariaDB and older MySQL `START SLAVE SQL_THREAD`; the dialect renders
//! the server's own.

use futures::future::BoxFuture;

use super::{Exercise, Lab};
use crate::commands::pod_name;

/// Rows the application "keeps writing" after the thread stopped, so that the gap is there to see.
const WRITES_AFTER_STOP: u32 = 5;

pub struct StaleReads;

impl Exercise for StaleReads {
    fn name(&self) -> &'static str {
        "stale-reads"
    }

    fn title(&self) -> &'static str {
        "reads on the replica are stale, and more so every minute"
    }

    fn section(&self) -> &'static str {
        "7"
    }

    fn symptom(&self) -> &'static str {
        "\"the dashboards that read from mysql-1 show yesterday's numbers, and the delay keeps growing; yet our lag \
         alert never fired\""
    }

    fn hints(&self) -> &'static [&'static str] {
        &[
            "Write a row on the primary and look for it on mysql-1. Then look at mysql-1's replication status: is \
             everything that should run, running?",
            "A replica has two threads: one fetches the primary's events (IO), one applies them (SQL). In `SHOW SLAVE \
             STATUS\\G` (or `SHOW REPLICA STATUS\\G`), compare Slave_IO_Running with Slave_SQL_Running, and \
             Read_Master_Log_Pos with Exec_Master_Log_Pos. Why is Seconds_Behind_Master NULL and not large?",
            "The SQL thread was stopped by hand and has no error: start it where it stopped with `START SLAVE \
             SQL_THREAD` (`START REPLICA SQL_THREAD` on MySQL 8.0.22+), and watch Exec_Master_Log_Pos catch up.",
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

async fn start(lab: &Lab<'_>) -> anyhow::Result<()> {
    let mut replica = lab.session(&pod_name(1)).await?;
    replica.db.stop_sql_thread().await?;
    replica.close().await;
    let mut primary = lab.session(crate::commands::PRIMARY_POD).await?;
    for n in 0..WRITES_AFTER_STOP {
        let marker = format!("exercise-stale-{}-{n}", jiff::Timestamp::now().as_millisecond());
        primary.db.write_marker(&marker).await?;
    }
    primary.close().await;
    Ok(())
}

/// Pure: the symptom of a replica a fresh row did not reach.
pub fn stale_symptom(pod: &str) -> String {
    format!("reads on {pod} are stale: a row written on the primary does not appear there, and the gap keeps growing")
}

async fn goal(lab: &Lab<'_>) -> anyhow::Result<Vec<String>> {
    Ok(lab
        .replicas_missing_a_fresh_row()
        .await?
        .into_iter()
        .map(|(pod, _)| stale_symptom(&pod))
        .collect())
}

async fn solve(lab: &Lab<'_>) -> anyhow::Result<()> {
    for ordinal in 1..lab.pods {
        let pod = pod_name(ordinal);
        let mut replica = lab.session(&pod).await?;
        if let Some(status) = replica.db.replica_status().await?
            && status.sql_running != crate::database::ThreadState::Yes
        {
            lab.ran(lab.sql(&pod, &replica.db.dialect().start_sql_thread()));
            replica.db.start_sql_thread().await?;
        }
        replica.db.wait_replication_running(lab.deadline).await?;
        replica.close().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_is_typed_in_each_servers_own_statement() {
        use crate::database::{Dialect, parse_version};
        // MySQL refman "START REPLICA Statement": START REPLICA from 8.0.22; START SLAVE removed in 8.4 (release
        // notes 8.4.0, "Deprecated and removed features").
        let mysql = Dialect::for_version(&parse_version("8.4.3").expect("version"));
        assert_eq!(mysql.start_sql_thread(), "START REPLICA SQL_THREAD");
        let mysql_80 = Dialect::for_version(&parse_version("8.0.21").expect("version"));
        assert_eq!(mysql_80.start_sql_thread(), "START SLAVE SQL_THREAD");
        let mariadb = Dialect::for_version(&parse_version("10.11.19-MariaDB-0+deb12u1-log").expect("version"));
        assert_eq!(mariadb.start_sql_thread(), "START SLAVE SQL_THREAD");
    }

    #[test]
    fn the_symptom_names_the_replica_and_not_the_thread() {
        let symptom = stale_symptom("mysql-1");
        assert!(symptom.starts_with("reads on mysql-1 are stale"), "{symptom}");
        assert!(!symptom.contains("SQL thread"), "a symptom, not the cause: {symptom}");
    }
}
