//! What the exercises in this directory share: waiting until a replica shows the error its fault causes.

use std::time::Duration;

use tokio::time::{Instant, sleep};

use crate::commands::Session;
use crate::database::{ReplicaStatus, ReplicationThread};

/// How long a fault may take to show on a replica once it is in place (a reconnect is retried every 5 s).
pub const FAULT_WAIT: Duration = Duration::from_secs(60);
/// MySQL and MariaDB offer nothing to subscribe to for replication state: the status is read at this pace.
const STATUS_POLL: Duration = Duration::from_millis(200);

/// Pure: the error a replica's status shows, IO thread first; `None` when neither thread has one.
pub fn shown_error(status: &ReplicaStatus) -> Option<(ReplicationThread, u32)> {
    if status.last_io_errno != 0 {
        Some((ReplicationThread::Io, status.last_io_errno))
    } else if status.last_sql_errno != 0 {
        Some((ReplicationThread::Sql, status.last_sql_errno))
    } else {
        None
    }
}

/// Reads the replica's status until `expected` (thread, errno) shows, at most [`FAULT_WAIT`] (or `deadline`);
/// returns the error last shown, for the caller to log when it is not the expected one.
pub async fn wait_for_error(
    replica: &mut Session,
    expected: (ReplicationThread, u32),
    deadline: Instant,
) -> anyhow::Result<Option<(ReplicationThread, u32)>> {
    let until = deadline.min(Instant::now() + FAULT_WAIT);
    loop {
        let shown = replica.db.replica_status().await?.as_ref().and_then(shown_error);
        if shown == Some(expected) || Instant::now() + STATUS_POLL >= until {
            if shown != Some(expected) {
                tracing::warn!(pod = %replica.pod, ?expected, ?shown, "the fault did not show as expected");
            }
            return Ok(shown);
        }
        sleep(STATUS_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::parse_replica_status;

    fn status(io_errno: u32, sql_errno: u32) -> ReplicaStatus {
        let column = |k: &str, v: String| (k.to_string(), Some(v));
        parse_replica_status(&[
            column("Slave_IO_Running", "Connecting".into()),
            column("Slave_SQL_Running", "Yes".into()),
            column("Last_IO_Errno", io_errno.to_string()),
            column("Last_SQL_Errno", sql_errno.to_string()),
        ])
    }

    #[test]
    fn the_io_error_shows_first_then_the_sql_error() {
        assert_eq!(shown_error(&status(0, 0)), None);
        assert_eq!(shown_error(&status(1045, 0)), Some((ReplicationThread::Io, 1045)));
        assert_eq!(shown_error(&status(0, 1049)), Some((ReplicationThread::Sql, 1049)));
        assert_eq!(shown_error(&status(2005, 1049)), Some((ReplicationThread::Io, 2005)));
    }
}
