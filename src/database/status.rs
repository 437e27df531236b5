//! `SHOW REPLICA STATUS` / `SHOW SLAVE STATUS` rows read by column name, in both spellings, and judged.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::findings::{Finding, explain_replication_error, is_transient_replication_error};

/// State of a replication thread (`Replica_IO_Running`, `Slave_SQL_Running`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThreadState {
    Yes,
    No,
    /// The IO thread is (re)connecting to the source: not healthy, maybe transient.
    Connecting,
    /// Anything else the server reports (MariaDB also says `Preparing`).
    Other(String),
}

impl ThreadState {
    fn parse(value: Option<&str>) -> ThreadState {
        match value.map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("yes") => ThreadState::Yes,
            Some(v) if v.eq_ignore_ascii_case("no") => ThreadState::No,
            Some(v) if v.eq_ignore_ascii_case("connecting") => ThreadState::Connecting,
            Some(v) if !v.is_empty() => ThreadState::Other(v.to_string()),
            _ => ThreadState::No,
        }
    }
}

impl fmt::Display for ThreadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ThreadState::Yes => "Yes",
            ThreadState::No => "No",
            ThreadState::Connecting => "Connecting",
            ThreadState::Other(text) => text,
        })
    }
}

/// One replica's replication state, independent of the server's column spelling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// What the IO thread is doing (`Slave_IO_State` / `Replica_IO_State`), e.g. "Waiting for source to send event".
    #[serde(default)]
    pub io_state: String,
    pub io_running: ThreadState,
    pub sql_running: ThreadState,
    /// `None` when the server reports NULL: a thread is stopped, so the lag is unknown (not zero).
    pub seconds_behind: Option<u64>,
    pub source_host: String,
    pub source_port: Option<u16>,
    /// The source binlog file the IO thread reads, and how far.
    pub source_log_file: String,
    pub read_source_log_pos: u64,
    /// The source binlog file and position the SQL thread has applied.
    pub relay_source_log_file: String,
    pub exec_source_log_pos: u64,
    pub last_io_errno: u32,
    pub last_io_error: String,
    pub last_sql_errno: u32,
    pub last_sql_error: String,
    /// Whether the replica connects to its source over TLS (`Source_SSL_Allowed` / `Master_SSL_Allowed`: `Yes`);
    /// `None` when the server does not report it.
    #[serde(default)]
    pub tls: Option<bool>,
}

/// Which replication thread a problem belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicationThread {
    Io,
    Sql,
}

impl fmt::Display for ReplicationThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplicationThread::Io => "IO",
            ReplicationThread::Sql => "SQL",
        })
    }
}

/// A thread that stopped (or keeps failing) with an error that will not heal by waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationFailure {
    pub thread: ReplicationThread,
    pub errno: u32,
    pub message: String,
    pub finding: Finding,
}

/// What a status row says about a replica that was just started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationProgress {
    /// Both threads `Yes`.
    Running,
    /// Not there yet, but nothing says it will not get there (connecting, a transient 2003/2005, starting).
    Starting,
    /// A thread failed with a non-transient error: waiting longer will not help.
    Failed(ReplicationFailure),
    /// A thread is stopped (`No`) without an error that explains it, or after giving up on a transient one (MySQL
    /// 8.4's IO thread after `SOURCE_RETRY_COUNT` failed reconnects): nothing restarts it by itself, so waiting
    /// will not help either; `START REPLICA` (what `lab up` does) will.
    Stopped(ReplicationThread),
}

impl ReplicaStatus {
    pub fn is_running(&self) -> bool {
        self.io_running == ThreadState::Yes && self.sql_running == ThreadState::Yes
    }

    /// The IO thread is connected and waiting for the source's events ("Waiting for source to send event" on MySQL
    /// 8.0.26+, "Waiting for master to send event" before and on MariaDB), both threads run, and no error that needs
    /// a person is recorded.
    pub fn is_settled(&self) -> bool {
        self.is_running()
            && self.io_state.to_ascii_lowercase().contains("to send event")
            && [self.last_io_errno, self.last_sql_errno]
                .iter()
                .all(|errno| *errno == 0 || is_transient_replication_error(*errno))
    }

    /// The IO thread's last error explained, if it has one.
    pub fn io_finding(&self) -> Option<Finding> {
        (self.last_io_errno != 0).then(|| explain_replication_error(self.last_io_errno, &self.last_io_error))
    }

    /// The SQL thread's last error explained, if it has one.
    pub fn sql_finding(&self) -> Option<Finding> {
        (self.last_sql_errno != 0).then(|| explain_replication_error(self.last_sql_errno, &self.last_sql_error))
    }

    /// Judges a status row while waiting for replication to run. A thread that is not `Yes` and carries an errno
    /// fails at once unless the errno is transient (2003/2005 while the primary restarts or is not in DNS yet).
    /// A non-transient errno fails even while the IO thread says `Connecting`: a bad password (1045) or a
    /// missing public key (2061) keeps it reconnecting forever.
    pub fn progress(&self) -> ReplicationProgress {
        if self.is_running() {
            return ReplicationProgress::Running;
        }
        let threads = [
            (
                ReplicationThread::Sql,
                &self.sql_running,
                self.last_sql_errno,
                &self.last_sql_error,
            ),
            (
                ReplicationThread::Io,
                &self.io_running,
                self.last_io_errno,
                &self.last_io_error,
            ),
        ];
        for (thread, state, errno, message) in threads {
            if *state != ThreadState::Yes && errno != 0 && !is_transient_replication_error(errno) {
                return ReplicationProgress::Failed(ReplicationFailure {
                    thread,
                    errno,
                    message: message.clone(),
                    finding: explain_replication_error(errno, message),
                });
            }
        }
        for (thread, state, _, _) in threads {
            if *state == ThreadState::No {
                return ReplicationProgress::Stopped(thread);
            }
        }
        ReplicationProgress::Starting
    }

    /// One line for timeouts and logs: `IO Connecting, SQL Yes, lag NULL, last IO error 2003`.
    pub fn summary(&self) -> String {
        let lag = self
            .seconds_behind
            .map_or_else(|| "NULL".to_string(), |s| format!("{s}s"));
        let mut line = format!("IO {}, SQL {}, lag {lag}", self.io_running, self.sql_running);
        if self.last_io_errno != 0 {
            line += &format!(", last IO error {}: {}", self.last_io_errno, self.last_io_error);
        }
        if self.last_sql_errno != 0 {
            line += &format!(", last SQL error {}: {}", self.last_sql_errno, self.last_sql_error);
        }
        line
    }
}

/// True for the MySQL multi-threaded applier's coordinator message, which hides the worker's real error.
pub fn is_coordinator_stop(message: &str) -> bool {
    message.contains("Coordinator stopped because there were error(s) in the worker(s)")
}

/// The first worker error of `performance_schema.replication_applier_status_by_worker` rows (read by column name).
pub fn worker_error(rows: &[Vec<(String, Option<String>)>]) -> Option<(u32, String)> {
    rows.iter().find_map(|row| {
        let column = |name: &str| {
            row.iter()
                .find(|(column, _)| column.eq_ignore_ascii_case(name))
                .and_then(|(_, value)| value.clone())
        };
        let errno = column("LAST_ERROR_NUMBER")?
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n != 0)?;
        Some((errno, column("LAST_ERROR_MESSAGE").unwrap_or_default()))
    })
}

impl ReplicaStatus {
    /// Puts a worker's error in place of the coordinator's message, so that the cause and fix are the worker's.
    pub fn with_worker_error(mut self, worker: Option<(u32, String)>) -> ReplicaStatus {
        if let Some((errno, message)) = worker.filter(|_| is_coordinator_stop(&self.last_sql_error)) {
            self.last_sql_errno = errno;
            self.last_sql_error = message;
        }
        self
    }
}

/// Judges successive status samples of a replica that was just started, oldest first, taken at least
/// [`CONFIRM_RUNNING_AFTER`] apart. A single `Yes` is not trusted: on MySQL 8.0.40, pointed at a missing binlog file or
/// at a server with the same server_id, the IO thread reports `Yes` for about a millisecond before it stops with
/// 13114/13117 (mysql-notes 14). Running needs the last two samples settled ([`ReplicaStatus::is_settled`]); a
/// failure in the last one fails at once.
pub fn confirm_running(samples: &[ReplicaStatus]) -> ReplicationProgress {
    let Some(last) = samples.last() else {
        return ReplicationProgress::Starting;
    };
    match last.progress() {
        ReplicationProgress::Running => {
            let confirmed = samples.len() >= 2 && samples[samples.len() - 2].is_settled() && last.is_settled();
            if confirmed {
                ReplicationProgress::Running
            } else {
                ReplicationProgress::Starting
            }
        }
        other => other,
    }
}

/// How long a settled sample must stay settled before replication counts as running. The failures it catches show
/// within one round trip to the primary (about 1 ms on MySQL 8.0.40); 200 ms covers slow pod networks and costs
/// `lab up` one short pause per replica, taken in parallel.
pub const CONFIRM_RUNNING_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

/// Builds a [`ReplicaStatus`] from one status row given as (column name, value) pairs. Each field is read from the
/// first column present among its spellings: MySQL's `SHOW REPLICA STATUS` (8.0.22+) uses `Replica_*`/`*_Source_*`,
/// `SHOW SLAVE STATUS` and every MariaDB use `Slave_*`/`*_Master_*`. Missing or unparsable numbers read as 0,
/// NULL lag as `None`.
pub fn parse_replica_status(columns: &[(String, Option<String>)]) -> ReplicaStatus {
    let value = |names: &[&str]| -> Option<&str> {
        names.iter().find_map(|name| {
            columns
                .iter()
                .find(|(column, _)| column.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_deref())
        })?
    };
    let text = |names: &[&str]| value(names).unwrap_or_default().to_string();
    let number = |names: &[&str]| value(names).and_then(|v| v.trim().parse::<u64>().ok());
    let errno = |name: &str| number(&[name]).and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
    ReplicaStatus {
        io_state: text(&["Replica_IO_State", "Slave_IO_State"]),
        io_running: ThreadState::parse(value(&["Replica_IO_Running", "Slave_IO_Running"])),
        sql_running: ThreadState::parse(value(&["Replica_SQL_Running", "Slave_SQL_Running"])),
        seconds_behind: number(&["Seconds_Behind_Source", "Seconds_Behind_Master"]),
        source_host: text(&["Source_Host", "Master_Host"]),
        source_port: number(&["Source_Port", "Master_Port"]).and_then(|p| u16::try_from(p).ok()),
        source_log_file: text(&["Source_Log_File", "Master_Log_File"]),
        read_source_log_pos: number(&["Read_Source_Log_Pos", "Read_Master_Log_Pos"]).unwrap_or(0),
        relay_source_log_file: text(&["Relay_Source_Log_File", "Relay_Master_Log_File"]),
        exec_source_log_pos: number(&["Exec_Source_Log_Pos", "Exec_Master_Log_Pos"]).unwrap_or(0),
        last_io_errno: errno("Last_IO_Errno"),
        last_io_error: text(&["Last_IO_Error"]),
        last_sql_errno: errno("Last_SQL_Errno"),
        last_sql_error: text(&["Last_SQL_Error"]),
        tls: value(&["Source_SSL_Allowed", "Master_SSL_Allowed"]).map(|v| v.trim().eq_ignore_ascii_case("yes")),
    }
}

/// The result of a status statement: no row (after `RESET ... ALL`, or never configured) or a row without a
/// source host means "not configured".
pub fn replica_status_from_rows(rows: &[Vec<(String, Option<String>)>]) -> Option<ReplicaStatus> {
    let status = parse_replica_status(rows.first()?);
    (!status.source_host.is_empty()).then_some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    fn mariadb_row(
        io: &str,
        sql: &str,
        lag: Option<&str>,
        io_err: (&str, &str),
        sql_err: (&str, &str),
    ) -> Vec<(String, Option<String>)> {
        row(&[
            ("Slave_IO_State", Some("Waiting for master to send event")),
            ("Master_Host", Some("mysql-0.mysql-headless.database.svc.cluster.local")),
            ("Master_User", Some("repl")),
            ("Master_Port", Some("3306")),
            ("Connect_Retry", Some("5")),
            ("Master_Log_File", Some("mysql-bin.000001")),
            ("Read_Master_Log_Pos", Some("1044")),
            ("Relay_Log_File", Some("relay-log.000002")),
            ("Relay_Master_Log_File", Some("mysql-bin.000001")),
            ("Slave_IO_Running", Some(io)),
            ("Slave_SQL_Running", Some(sql)),
            ("Last_Errno", Some(sql_err.0)),
            ("Exec_Master_Log_Pos", Some("473")),
            ("Seconds_Behind_Master", lag),
            ("Last_IO_Errno", Some(io_err.0)),
            ("Last_IO_Error", Some(io_err.1)),
            ("Last_SQL_Errno", Some(sql_err.0)),
            ("Last_SQL_Error", Some(sql_err.1)),
            ("Using_Gtid", Some("No")),
        ])
    }

    #[test]
    fn a_stopped_thread_without_an_error_is_stopped_not_starting() {
        let stopped = parse_replica_status(&mariadb_row("No", "No", None, ("0", ""), ("0", "")));
        assert_eq!(stopped.progress(), ReplicationProgress::Stopped(ReplicationThread::Sql));
        // MySQL 8.4's IO thread after its last reconnect attempt: No, with the transient 2003 kept.
        let gave_up = parse_replica_status(&mariadb_row("No", "Yes", None, ("2003", "Can't connect"), ("0", "")));
        assert_eq!(gave_up.progress(), ReplicationProgress::Stopped(ReplicationThread::Io));
        // Still trying: Connecting is waited out.
        let connecting = parse_replica_status(&mariadb_row(
            "Connecting",
            "Yes",
            None,
            ("2003", "Can't connect"),
            ("0", ""),
        ));
        assert_eq!(connecting.progress(), ReplicationProgress::Starting);
    }

    #[test]
    fn reads_the_old_spelling_of_mariadb_and_show_slave_status() {
        let status = parse_replica_status(&mariadb_row("Yes", "Yes", Some("0"), ("0", ""), ("0", "")));
        assert_eq!(
            status,
            ReplicaStatus {
                io_state: "Waiting for master to send event".into(),
                io_running: ThreadState::Yes,
                sql_running: ThreadState::Yes,
                seconds_behind: Some(0),
                source_host: "mysql-0.mysql-headless.database.svc.cluster.local".into(),
                source_port: Some(3306),
                source_log_file: "mysql-bin.000001".into(),
                read_source_log_pos: 1044,
                relay_source_log_file: "mysql-bin.000001".into(),
                exec_source_log_pos: 473,
                last_io_errno: 0,
                last_io_error: String::new(),
                last_sql_errno: 0,
                last_sql_error: String::new(),
                tls: None,
            }
        );
        assert!(status.is_running());
        assert_eq!(status.progress(), ReplicationProgress::Running);
    }

    #[test]
    fn reads_the_new_spelling_of_show_replica_status() {
        let status = parse_replica_status(&row(&[
            ("Replica_IO_State", Some("Waiting for source to send event")),
            ("Source_Host", Some("mysql-0.mysql-headless.database.svc.cluster.local")),
            ("Source_Port", Some("3306")),
            ("Source_Log_File", Some("mysql-bin.000003")),
            ("Read_Source_Log_Pos", Some("157")),
            ("Relay_Source_Log_File", Some("mysql-bin.000002")),
            ("Replica_IO_Running", Some("Yes")),
            ("Replica_SQL_Running", Some("No")),
            ("Exec_Source_Log_Pos", Some("99")),
            ("Seconds_Behind_Source", None),
            ("Last_IO_Errno", Some("0")),
            ("Last_IO_Error", Some("")),
            ("Last_SQL_Errno", Some("1049")),
            ("Last_SQL_Error", Some("Error 'Unknown database 'appdb'' on query.")),
            ("Get_Source_public_key", Some("1")),
        ]));
        assert_eq!(status.io_running, ThreadState::Yes);
        assert_eq!(status.sql_running, ThreadState::No);
        assert_eq!(status.seconds_behind, None, "NULL lag is unknown, not zero");
        assert_eq!(status.source_log_file, "mysql-bin.000003");
        assert_eq!(status.read_source_log_pos, 157);
        assert_eq!(status.relay_source_log_file, "mysql-bin.000002");
        assert_eq!(status.exec_source_log_pos, 99);
        let ReplicationProgress::Failed(failure) = status.progress() else {
            panic!("1049 on a stopped SQL thread must fail fast: {:?}", status.progress());
        };
        assert_eq!(failure.thread, ReplicationThread::Sql);
        assert_eq!(failure.errno, 1049);
        assert_eq!(failure.finding, explain_replication_error(1049, "x"));
        assert_eq!(
            status.summary(),
            "IO Yes, SQL No, lag NULL, last SQL error 1049: Error 'Unknown database 'appdb'' on query."
        );
    }

    #[test]
    fn connecting_with_a_refused_connection_is_transient() {
        let status = parse_replica_status(&mariadb_row(
            "Connecting",
            "Yes",
            None,
            (
                "2003",
                "error reconnecting to master 'repl@mysql-0:3306' - retry-time: 5 (111 \"Connection refused\")",
            ),
            ("0", ""),
        ));
        assert_eq!(status.io_running, ThreadState::Connecting);
        assert_eq!(status.seconds_behind, None);
        assert_eq!(status.progress(), ReplicationProgress::Starting);
        assert!(
            status
                .io_finding()
                .expect("has an IO error")
                .cause
                .contains("cannot connect")
        );
        assert_eq!(status.sql_finding(), None);
    }

    #[test]
    fn connecting_with_a_permanent_error_fails_fast() {
        for errno in ["2061", "1045"] {
            let status = parse_replica_status(&mariadb_row("Connecting", "Yes", None, (errno, "denied"), ("0", "")));
            let ReplicationProgress::Failed(failure) = status.progress() else {
                panic!("{errno} must fail fast");
            };
            assert_eq!(failure.thread, ReplicationThread::Io);
            assert_eq!(failure.errno.to_string(), errno);
        }
    }

    #[test]
    fn stopped_threads_with_fatal_errors_fail_with_their_finding() {
        for (errno, thread_io) in [("1236", true), ("1593", true), ("1062", false), ("1146", false)] {
            let (io, sql, io_err, sql_err) = if thread_io {
                ("No", "Yes", (errno, "fatal"), ("0", ""))
            } else {
                ("Yes", "No", ("0", ""), (errno, "fatal"))
            };
            let status = parse_replica_status(&mariadb_row(io, sql, None, io_err, sql_err));
            let ReplicationProgress::Failed(failure) = status.progress() else {
                panic!("{errno} must fail fast");
            };
            assert_eq!(failure.errno.to_string(), errno);
            assert_eq!(failure.finding, explain_replication_error(failure.errno, "fatal"));
        }
    }

    #[test]
    fn stale_errors_on_a_running_thread_are_ignored() {
        let status = parse_replica_status(&mariadb_row("Yes", "Yes", Some("3"), ("2003", "old"), ("0", "")));
        assert_eq!(status.progress(), ReplicationProgress::Running);
    }

    #[test]
    fn no_row_or_no_source_host_means_not_configured() {
        assert_eq!(replica_status_from_rows(&[]), None);
        let reset = row(&[("Master_Host", Some("")), ("Slave_IO_Running", Some("No"))]);
        assert_eq!(replica_status_from_rows(&[reset]), None);
        let configured = mariadb_row("Yes", "Yes", Some("0"), ("0", ""), ("0", ""));
        assert!(replica_status_from_rows(&[configured]).is_some());
    }

    /// A MySQL 8 row (`SHOW REPLICA STATUS` spelling).
    fn mysql_row(io_state: &str, io: &str, io_err: (&str, &str)) -> Vec<(String, Option<String>)> {
        row(&[
            ("Replica_IO_State", Some(io_state)),
            ("Source_Host", Some("mysql-0.mysql-headless.database.svc.cluster.local")),
            ("Replica_IO_Running", Some(io)),
            ("Replica_SQL_Running", Some("Yes")),
            ("Last_IO_Errno", Some(io_err.0)),
            ("Last_IO_Error", Some(io_err.1)),
            ("Last_SQL_Errno", Some("0")),
            ("Last_SQL_Error", Some("")),
        ])
    }

    #[test]
    fn a_momentary_yes_is_not_running_until_a_second_sample_confirms_it() {
        let waiting = parse_replica_status(&mysql_row("Waiting for source to send event", "Yes", ("0", "")));
        assert!(waiting.is_settled());
        assert_eq!(
            confirm_running(std::slice::from_ref(&waiting)),
            ReplicationProgress::Starting,
            "one sample is not enough"
        );
        assert_eq!(
            confirm_running(&[waiting.clone(), waiting.clone()]),
            ReplicationProgress::Running
        );
        // As on MySQL 8.0.40 pointed at a missing binlog file: Yes for a millisecond, then No with 13114.
        let stopped = parse_replica_status(&mysql_row(
            "",
            "No",
            (
                "13114",
                "Got fatal error 1236 from source when reading data from binary log: 'Could not find first log \
                 file name in binary log index file'",
            ),
        ));
        let ReplicationProgress::Failed(failure) = confirm_running(&[waiting.clone(), stopped]) else {
            panic!("the second sample shows the failure");
        };
        assert_eq!((failure.thread, failure.errno), (ReplicationThread::Io, 13114));
        assert_eq!(failure.finding, explain_replication_error(1236, ""));
        // Yes but still connecting or registering: not settled.
        let registering = parse_replica_status(&mysql_row("Registering replica on source", "Yes", ("0", "")));
        assert!(!registering.is_settled());
        assert_eq!(
            confirm_running(&[registering.clone(), waiting.clone()]),
            ReplicationProgress::Starting
        );
        assert_eq!(confirm_running(&[]), ReplicationProgress::Starting);
        // MariaDB's spelling, and a transient error left from a reconnect, are settled.
        let mariadb = parse_replica_status(&mariadb_row("Yes", "Yes", Some("0"), ("2003", "old"), ("0", "")));
        assert!(mariadb.is_settled());
        assert_eq!(
            confirm_running(&[mariadb.clone(), mariadb]),
            ReplicationProgress::Running
        );
        // A permanent error on running threads is not settled (it may be about to stop them).
        let equal_ids = parse_replica_status(&mysql_row(
            "Waiting for source to send event",
            "Yes",
            (
                "13117",
                "Fatal error: The replica I/O thread stops because source and replica have equal MySQL server ids",
            ),
        ));
        assert!(!equal_ids.is_settled());
    }

    #[test]
    fn the_coordinator_message_is_replaced_by_the_workers_error() {
        // As MySQL 8.0.40 reported a table created before the replica knew appdb (mysql-notes 14).
        let coordinator = "Coordinator stopped because there were error(s) in the worker(s). The most recent failure \
                           being: Worker 1 failed executing transaction 'ANONYMOUS' at source log mysql-bin.000001, \
                           end_log_pos 712. See error log and/or \
                           performance_schema.replication_applier_status_by_worker table for more details about this \
                           failure or others, if any.";
        let status = parse_replica_status(&row(&[
            ("Source_Host", Some("mysql-0")),
            ("Replica_IO_Running", Some("Yes")),
            ("Replica_SQL_Running", Some("No")),
            ("Last_SQL_Errno", Some("1049")),
            ("Last_SQL_Error", Some(coordinator)),
        ]));
        assert!(is_coordinator_stop(&status.last_sql_error));
        let workers = [
            row(&[("LAST_ERROR_NUMBER", Some("0")), ("LAST_ERROR_MESSAGE", Some(""))]),
            row(&[
                ("LAST_ERROR_NUMBER", Some("1049")),
                (
                    "LAST_ERROR_MESSAGE",
                    Some(
                        "Worker 1 failed executing transaction 'ANONYMOUS' at source log mysql-bin.000001, end_log_pos 712; Error 'Unknown database 'appdb'' on query. Default database: 'appdb'. Query: 'CREATE TABLE t (i INT)'",
                    ),
                ),
            ]),
        ];
        let worker = worker_error(&workers);
        assert_eq!(worker.as_ref().map(|(n, _)| *n), Some(1049));
        let fixed = status.clone().with_worker_error(worker);
        assert_eq!(fixed.last_sql_errno, 1049);
        assert!(
            fixed.last_sql_error.contains("Unknown database 'appdb'"),
            "{}",
            fixed.last_sql_error
        );
        assert!(fixed.summary().contains("Unknown database"), "{}", fixed.summary());
        // No worker error, or not the coordinator's message: unchanged.
        assert_eq!(worker_error(&workers[..1]), None);
        assert_eq!(status.clone().with_worker_error(None), status);
        let plain = parse_replica_status(&mariadb_row(
            "Yes",
            "No",
            None,
            ("0", ""),
            ("1049", "Error 'Unknown database 'appdb''"),
        ));
        assert_eq!(plain.clone().with_worker_error(Some((1146, "x".into()))), plain);
    }

    #[test]
    fn unknown_thread_states_are_kept() {
        let status = parse_replica_status(&mariadb_row("Preparing", "Yes", None, ("0", ""), ("0", "")));
        assert_eq!(status.io_running, ThreadState::Other("Preparing".into()));
        assert_eq!(status.io_running.to_string(), "Preparing");
        assert_eq!(status.progress(), ReplicationProgress::Starting);
    }
}
