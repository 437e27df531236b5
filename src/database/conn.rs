//! `Db`: one TCP connection to one server, running the lab's steps in the dialect of that server.

use std::net::SocketAddr;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{ChangeUserOpts, Conn, OptsBuilder, Row, Value};
use tokio::time::{Instant, sleep, timeout};

use crate::secret::SecretString;

use super::dialect::{Account, Dialect, ReplicaProtection, Statement, holds_read_only_admin, revoke_targets};
use super::error::{login_fix, scrub, statement_fix, whole_seconds, withhold_quoted};
use super::status::{
    CONFIRM_RUNNING_AFTER, ReplicationProgress, confirm_running, is_coordinator_stop, replica_status_from_rows,
    worker_error,
};
use super::{
    BinaryLog, Coordinates, Credentials, DbError, Flavor, MAX_MARKER_LEN, ReplicaStatus, ServerFacts, ServerVersion,
    SourceConfig, check_supported, parse_version,
};

mod exercises;

/// How long one connection attempt may take before it counts as failed and is retried.
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between connection attempts, doubled up to [`CONNECT_BACKOFF_MAX`].
const CONNECT_BACKOFF_START: Duration = Duration::from_millis(250);
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// MySQL and MariaDB offer nothing to subscribe to for replication state changes, so the wait polls the status
/// statement: first after 20 ms (threads usually start within tens of milliseconds), doubling up to 250 ms. A
/// status query costs the server nothing noticeable.
const REPLICATION_POLL_FIRST: Duration = Duration::from_millis(20);
const REPLICATION_POLL_MAX: Duration = Duration::from_millis(250);
/// Extra time granted to a position-wait query beyond the server-side timeout, for the round trip.
const POSITION_WAIT_SLACK: Duration = Duration::from_secs(10);

/// The result of the replica's write test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOnlyOutcome {
    /// The write failed with error 1290: the server is read-only for this account.
    Rejected,
    /// The write was accepted (then rolled back, so nothing diverged); `explanation` says why it was allowed.
    AcceptedAndRolledBack { explanation: String },
}

/// What [`Db::protect_replica`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// MySQL: `super_read_only` is ON and persisted across restarts.
    SuperReadOnlyPersisted,
    /// MariaDB 12.0+: `read_only = NO_LOCK_NO_ADMIN` (until the next restart).
    NoLockNoAdmin,
    /// MariaDB before 12.0: READ_ONLY ADMIN is gone from the root accounts TCP logins match; `revoked` lists the
    /// accounts that lost it now (empty when an earlier run did it).
    ReadOnlyAdminRevoked { revoked: Vec<String> },
}

/// One connection to one server. Statements that depend on the default database run on this same connection.
pub struct Db {
    pub(super) conn: Conn,
    pub(super) server: String,
    user: String,
    pub(super) dialect: Dialect,
    /// Every password this connection has been given: scrubbed from all error text.
    secrets: Vec<SecretString>,
    /// `USE appdb` ran on this connection: statements that must not be binlogged need it cleared first.
    pub(super) in_appdb: bool,
}

impl Db {
    /// TCP to `addr` (a local port-forward), prefer_socket(false), our own connect timeout; retries transient errors
    /// (refused, reset, EOF, 1053, timeouts) until `deadline`; fails fast on 1045/1130.
    pub async fn connect(addr: SocketAddr, credentials: &Credentials, deadline: Instant) -> Result<Db, DbError> {
        let server = addr.to_string();
        // prefer_socket(false): otherwise mysql_async reconnects to @@socket after TCP to 127.0.0.1, which is
        // another account (root@localhost) and bypasses the port-forward. No db_name: account statements must run
        // without a default database.
        let opts = OptsBuilder::default()
            .ip_or_hostname(addr.ip().to_string())
            .tcp_port(addr.port())
            .user(Some(credentials.user.clone()))
            .pass(Some(credentials.password.expose().to_string()))
            .db_name(None::<String>)
            .prefer_socket(false)
            .stmt_cache_size(0);
        let started = Instant::now();
        let mut backoff = CONNECT_BACKOFF_START;
        let mut conn = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let last_error = match timeout(remaining.min(CONNECT_ATTEMPT_TIMEOUT), Conn::new(opts.clone())).await {
                Ok(Ok(conn)) => break conn,
                Ok(Err(err)) => match classify_connect_error(&err) {
                    ConnectFailure::Retry(message) => message,
                    ConnectFailure::Rejected { code, message } => {
                        return Err(DbError::LoginRejected {
                            server,
                            user: credentials.user.clone(),
                            code,
                            message: scrub(&message, std::slice::from_ref(&credentials.password)),
                            fix: login_fix(code),
                        });
                    }
                },
                Err(_) => format!(
                    "no answer within {}s",
                    whole_seconds(remaining.min(CONNECT_ATTEMPT_TIMEOUT))
                ),
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(DbError::Unreachable {
                    server,
                    waited_secs: whole_seconds(started.elapsed()),
                    last_error: scrub(&last_error, std::slice::from_ref(&credentials.password)),
                });
            }
            tracing::debug!(%server, %last_error, "database not reachable yet, retrying");
            sleep(backoff.min(remaining)).await;
            backoff = (backoff * 2).min(CONNECT_BACKOFF_MAX);
        };
        let raw_version = match conn.query_first::<String, _>("SELECT VERSION()").await {
            Ok(Some(version)) => version,
            Ok(None) => String::new(),
            Err(err) => {
                return Err(DbError::ConnectionLost {
                    server,
                    what: "reading the server version".into(),
                    message: err.to_string(),
                });
            }
        };
        let version = parse_version(&raw_version)?;
        if let Err(err) = check_supported(&version) {
            let _ = conn.disconnect().await;
            return Err(err);
        }
        Ok(Db {
            conn,
            server,
            user: credentials.user.clone(),
            dialect: Dialect::for_version(&version),
            secrets: vec![credentials.password.clone()],
            in_appdb: false,
        })
    }

    pub fn version(&self) -> &ServerVersion {
        self.dialect.version()
    }

    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    /// server_id, server_uuid (MariaDB: server_uid), read_only, super_read_only (MySQL), log_bin.
    pub async fn facts(&mut self) -> Result<ServerFacts, DbError> {
        let statement = self.dialect.server_facts();
        let rows = self.rows("reading the server facts", &statement).await?;
        let row = rows.first().map(Vec::as_slice).unwrap_or_default();
        parse_facts(row).map_err(|message| DbError::Statement {
            server: self.server.clone(),
            what: "reading the server facts".into(),
            code: 0,
            message,
            fix: statement_fix(0),
        })
    }

    /// CREATE USER IF NOT EXISTS, ALTER USER (so a changed Secret takes effect), GRANT REPLICATION SLAVE, with
    /// sql_log_bin = 0 (MySQL would binlog them even with no default database) and no default database.
    pub async fn ensure_replication_user(&mut self, repl: &Credentials) -> Result<(), DbError> {
        self.remember(&repl.password);
        self.leave_appdb().await?;
        let what = "creating the replication user";
        let mut statements = self.dialect.replication_user(repl);
        let binlog_on = statements
            .pop()
            .expect("the section ends with SET SESSION sql_log_bin = 1");
        let mut result = Ok(());
        for statement in &statements {
            result = self.run(what, statement).await;
            if result.is_err() {
                break;
            }
        }
        // Always back on: everything this session runs next (CREATE DATABASE appdb, ...) must be binlogged.
        self.run(what, &binlog_on).await?;
        result
    }

    /// The primary's current binlog file and position (`SHOW MASTER STATUS` / `SHOW BINARY LOG STATUS`).
    pub async fn capture_coordinates(&mut self) -> Result<Coordinates, DbError> {
        let statement = self.dialect.binlog_coordinates();
        let rows = self.rows("reading the binlog coordinates", &statement).await?;
        parse_coordinates(&rows).ok_or_else(|| DbError::BinaryLogOff {
            server: self.server.clone(),
            statement: statement.text().to_string(),
        })
    }

    /// The primary's binlog files (`SHOW BINARY LOGS`, columns read by name); empty when binary logging is off.
    pub async fn binary_logs(&mut self) -> Result<Vec<BinaryLog>, DbError> {
        let statement = self.dialect.binary_logs();
        match self.rows("listing the binary logs", &statement).await {
            Ok(rows) => Ok(parse_binary_logs(&rows)),
            // 1381: "You are not using binary logging".
            Err(DbError::Statement { code: 1381, .. }) => Ok(Vec::new()),
            Err(err) => Err(err),
        }
    }

    /// `CREATE DATABASE IF NOT EXISTS appdb`: call it AFTER [`Db::capture_coordinates`], so that replicas configured
    /// from those coordinates receive it.
    pub async fn ensure_appdb(&mut self) -> Result<(), DbError> {
        let statement = self.dialect.create_appdb();
        self.run("creating database appdb", &statement).await
    }

    /// The non-admin account `probe.user` (normally [`PROBE_USER`]) with SELECT, INSERT on appdb.*, created after
    /// `USE appdb` so that it is binlogged and replicates (the primary must already have appdb).
    pub async fn ensure_probe_user(&mut self, probe: &Credentials) -> Result<(), DbError> {
        self.remember(&probe.password);
        // Conservatively assume `USE appdb` took effect, whatever fails after it.
        self.in_appdb = true;
        for statement in self.dialect.probe_user(probe) {
            self.run("creating the read-only probe account", &statement).await?;
        }
        Ok(())
    }

    /// `None` when this server is not configured as a replica. On MySQL, when the multi-threaded applier's
    /// coordinator message hides the SQL error, the worker's error takes its place.
    pub async fn replica_status(&mut self) -> Result<Option<ReplicaStatus>, DbError> {
        let statement = self.dialect.replica_status();
        let rows = self.rows("reading the replica status", &statement).await?;
        let Some(status) = replica_status_from_rows(&rows) else {
            return Ok(None);
        };
        match self.dialect.worker_errors() {
            Some(statement) if is_coordinator_stop(&status.last_sql_error) => {
                let rows = self.rows("reading the applier workers' errors", &statement).await?;
                Ok(Some(status.with_worker_error(worker_error(&rows))))
            }
            _ => Ok(Some(status)),
        }
    }

    /// Stop, forget the previous source (`RESET ... ALL`), point at `source`, start.
    pub async fn configure_replica(&mut self, source: &SourceConfig) -> Result<(), DbError> {
        self.remember(&source.credentials.password);
        let statements = self.dialect.configure_replica(source);
        let last = statements.len().saturating_sub(1);
        for (index, statement) in statements.iter().enumerate() {
            if index == last {
                // Pointed at the source, not started yet: the next `lab up` must start it, not wait for it.
                crate::interrupt::checkpoint("configure replicas: source changed").await;
            }
            self.run("configuring the replica", statement).await?;
        }
        Ok(())
    }

    /// `START REPLICA` / `START SLAVE` on a replica that already points at its source but is stopped.
    pub async fn start_replication(&mut self) -> Result<(), DbError> {
        let statement = self.dialect.start_replication();
        self.run("starting replication", &statement).await
    }

    /// Stops the SQL (applier) thread only: events keep arriving in the relay log but are not applied.
    pub async fn stop_sql_thread(&mut self) -> Result<(), DbError> {
        let statement = self.dialect.stop_sql_thread_statement();
        self.run("stopping the SQL thread", &statement).await
    }

    /// Starts the SQL thread where it stopped.
    pub async fn start_sql_thread(&mut self) -> Result<(), DbError> {
        let statement = self.dialect.start_sql_thread_statement();
        self.run("starting the SQL thread", &statement).await
    }

    /// Stops then starts the IO thread: it reconnects to the source, which checks server ids again.
    pub async fn restart_io_thread(&mut self) -> Result<(), DbError> {
        let stop = self.dialect.stop_io_thread();
        self.run("stopping the IO thread", &stop).await?;
        let start = self.dialect.start_io_thread();
        self.run("starting the IO thread", &start).await
    }

    /// The authentication plugin of `user` (any host); `None` when there is no such account.
    pub async fn account_plugin(&mut self, user: &str) -> Result<Option<String>, DbError> {
        let statement = self.dialect.account_plugin(user);
        let rows = self
            .rows("reading an account's authentication plugin", &statement)
            .await?;
        Ok(rows
            .first()
            .and_then(|row| row.first())
            .and_then(|(_, value)| value.clone()))
    }

    /// MySQL: turns the replica's GET_SOURCE_PUBLIC_KEY option off or on, with the IO thread stopped around it.
    /// Does nothing on MariaDB, which has no such option.
    pub async fn set_get_public_key(&mut self, enabled: bool) -> Result<(), DbError> {
        let Some(change) = self.dialect.public_key_option(enabled) else {
            return Ok(());
        };
        let stop = self.dialect.stop_io_thread();
        self.run("stopping the IO thread", &stop).await?;
        self.run("changing the public-key option", &change).await?;
        let start = self.dialect.start_io_thread();
        self.run("starting the IO thread", &start).await
    }

    /// Sets `server_id` at runtime (not persisted: a restart brings back the configured one).
    pub async fn set_server_id(&mut self, server_id: u32) -> Result<(), DbError> {
        let statement = self.dialect.set_server_id(server_id);
        self.run("setting server_id", &statement).await
    }

    /// Polls the replica status until both threads run and the IO thread waits for events, twice in a row
    /// [`super::CONFIRM_RUNNING_AFTER`] apart (see [`super::confirm_running`]: a momentary `Yes` is not trusted).
    /// Neither server offers an event or notification for replication state, so a short poll is the only way.
    /// Fails at once with the error's [`super::Finding`] when a thread has a non-transient error (1236/13114, 1049,
    /// 1062, 2061, 1593/13117, 1045, ...); `Connecting` with 2003/2005 is waited out until `deadline`.
    pub async fn wait_replication_running(&mut self, deadline: Instant) -> Result<ReplicaStatus, DbError> {
        let started = Instant::now();
        let mut poll = REPLICATION_POLL_FIRST;
        let mut previous: Option<ReplicaStatus> = None;
        loop {
            let Some(status) = self.replica_status().await? else {
                return Err(DbError::NotAReplica {
                    server: self.server.clone(),
                });
            };
            let samples: Vec<ReplicaStatus> = previous.iter().cloned().chain([status.clone()]).collect();
            match confirm_running(&samples) {
                ReplicationProgress::Running => return Ok(status),
                ReplicationProgress::Failed(failure) => {
                    return Err(DbError::ReplicationFailed {
                        server: self.server.clone(),
                        thread: failure.thread,
                        errno: failure.errno,
                        message: self.scrub(&failure.message),
                        finding: failure.finding,
                    });
                }
                ReplicationProgress::Stopped(thread) => {
                    return Err(DbError::ReplicationStopped {
                        server: self.server.clone(),
                        thread,
                        status: self.scrub(&status.summary()),
                        start: self.dialect.start_replication().text().to_string(),
                    });
                }
                ReplicationProgress::Starting => {}
            }
            // A settled sample is checked again after the confirmation interval, anything else at the poll pace.
            let pause = if status.is_settled() {
                CONFIRM_RUNNING_AFTER
            } else {
                poll
            };
            if Instant::now() + pause >= deadline {
                return Err(DbError::ReplicationStartTimedOut {
                    server: self.server.clone(),
                    waited_secs: whole_seconds(started.elapsed()),
                    last_status: self.scrub(&status.summary()),
                });
            }
            sleep(pause).await;
            poll = (poll * 2).min(REPLICATION_POLL_MAX);
            previous = Some(status);
        }
    }

    /// On the primary, on this one connection: `USE appdb`, `CREATE TABLE IF NOT EXISTS lab_validation`, insert
    /// `marker`, then the coordinates just after the insert (what a replica must reach to hold the row).
    pub async fn write_marker(&mut self, marker: &str) -> Result<Coordinates, DbError> {
        validate_marker(marker)?;
        self.in_appdb = true;
        for statement in self.dialect.write_marker(marker) {
            self.run("writing the validation marker", &statement).await?;
        }
        self.capture_coordinates().await
    }

    /// On a replica: waits until its SQL thread has applied `target` (SOURCE_POS_WAIT / MASTER_POS_WAIT).
    pub async fn wait_for_coordinates(&mut self, target: &Coordinates, wait: Duration) -> Result<(), DbError> {
        let timeout_secs = whole_seconds(wait).max(1);
        let statement = self.dialect.wait_for_position(target, timeout_secs);
        let what = "waiting for the primary's position";
        let rows = match timeout(wait + POSITION_WAIT_SLACK, self.rows(what, &statement)).await {
            Ok(rows) => rows?,
            Err(_) => {
                return Err(DbError::PositionWaitTimedOut {
                    server: self.server.clone(),
                    target: target.to_string(),
                    timeout_secs,
                });
            }
        };
        let result = rows
            .first()
            .and_then(|row| row.first())
            .and_then(|(_, value)| value.clone());
        match position_wait_outcome(result.as_deref()) {
            PositionWait::Reached => Ok(()),
            PositionWait::TimedOut => Err(DbError::PositionWaitTimedOut {
                server: self.server.clone(),
                target: target.to_string(),
                timeout_secs,
            }),
            PositionWait::NotReplicating => {
                let detail = match self.replica_status().await? {
                    None => "replication is not configured on this server".to_string(),
                    Some(status) => match status.sql_finding() {
                        Some(finding) => format!(
                            "last SQL error {}: {}; cause: {}; fix: {}",
                            status.last_sql_errno,
                            self.scrub(&status.last_sql_error),
                            finding.cause,
                            finding.fix
                        ),
                        None => format!(
                            "{}; start replication with {} or re-run lab up",
                            self.scrub(&status.summary()),
                            self.dialect.start_replica()
                        ),
                    },
                };
                Err(DbError::SqlThreadNotRunning {
                    server: self.server.clone(),
                    target: target.to_string(),
                    detail,
                })
            }
        }
    }

    /// True when `appdb.lab_validation` holds `marker`. A missing database or table (1049, 1146) is `false`.
    pub async fn has_marker(&mut self, marker: &str) -> Result<bool, DbError> {
        let statement = self.dialect.has_marker(marker);
        match self.rows("reading the validation marker", &statement).await {
            Ok(rows) => {
                let count = rows
                    .first()
                    .and_then(|row| row.first())
                    .and_then(|(_, value)| value.clone());
                Ok(count.and_then(|c| c.parse::<u64>().ok()).unwrap_or(0) > 0)
            }
            Err(DbError::Statement { code: 1049 | 1146, .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Tries a write inside a transaction that is always rolled back: error 1290 = [`ReadOnlyOutcome::Rejected`];
    /// success = [`ReadOnlyOutcome::AcceptedAndRolledBack`] with the reason (MariaDB's root still has READ_ONLY
    /// ADMIN; MySQL without super_read_only lets SUPER holders write; read_only off). Needs appdb.lab_validation.
    pub async fn read_only_test(&mut self) -> Result<ReadOnlyOutcome, DbError> {
        let marker = format!("lab-read-only-check-{}", self.conn.id());
        let [begin, insert, rollback] = self.dialect.read_only_check(&marker);
        let what = "testing that the replica rejects writes";
        self.run(what, &begin).await?;
        let attempt = self.conn.query_drop(insert.text()).await;
        // Roll back whatever happened: an accepted row must not stay on the replica.
        let rolled_back = self.run(what, &rollback).await;
        let accepted = match attempt {
            Ok(()) => true,
            Err(mysql_async::Error::Server(err)) if err.code == 1290 => false,
            Err(err) => return Err(self.statement_error(what, &insert, err)),
        };
        rolled_back?;
        if !accepted {
            return Ok(ReadOnlyOutcome::Rejected);
        }
        let facts = self.facts().await?;
        Ok(ReadOnlyOutcome::AcceptedAndRolledBack {
            explanation: explain_accepted_write(&facts.version, &self.user, facts.read_only, facts.super_read_only),
        })
    }

    /// Keeps root's writes off this replica; idempotent. MySQL: `SET PERSIST super_read_only = ON` (never in the
    /// config file, where it breaks the image's first start). MariaDB 12.0+: `read_only = NO_LOCK_NO_ADMIN`. Older
    /// MariaDB: REVOKE READ_ONLY ADMIN from root@'%' and from the account this login matched, where they still hold
    /// it (not binlogged), then re-authenticates so that this session's own privileges are the revoked ones (a
    /// connected client keeps its global privileges otherwise).
    pub async fn protect_replica(&mut self) -> Result<Protection, DbError> {
        let what = "protecting the replica against writes";
        match self.dialect.replica_protection() {
            ReplicaProtection::SuperReadOnly(statement) => {
                self.run(what, &statement).await?;
                Ok(Protection::SuperReadOnlyPersisted)
            }
            ReplicaProtection::NoLockNoAdmin(statement) => {
                self.run(what, &statement).await?;
                Ok(Protection::NoLockNoAdmin)
            }
            ReplicaProtection::RevokeReadOnlyAdmin => {
                let rows = self.rows(what, &self.dialect.current_account()).await?;
                let current = rows
                    .first()
                    .and_then(|row| row.first())
                    .and_then(|(_, value)| value.as_deref())
                    .and_then(Account::parse)
                    .ok_or_else(|| DbError::Statement {
                        server: self.server.clone(),
                        what: what.to_string(),
                        code: 0,
                        message: format!("unexpected CURRENT_USER() result {rows:?}"),
                        fix: statement_fix(0),
                    })?;
                let mut revoked = Vec::new();
                for account in revoke_targets(&current) {
                    let grants = match self.rows(what, &self.dialect.account_grants(&account)).await {
                        Ok(rows) => rows,
                        // 1141: no such account (e.g. MARIADB_ROOT_HOST chose another host than '%').
                        Err(DbError::Statement { code: 1141, .. }) => continue,
                        Err(err) => return Err(err),
                    };
                    let lines: Vec<String> = grants
                        .iter()
                        .filter_map(|row| row.first().and_then(|(_, line)| line.clone()))
                        .collect();
                    if !holds_read_only_admin(&lines) {
                        continue;
                    }
                    let [off, revoke, on] = self.dialect.revoke_read_only_admin(&account);
                    self.run(what, &off).await?;
                    let result = self.run(what, &revoke).await;
                    self.run(what, &on).await?;
                    result?;
                    revoked.push(account.to_string());
                }
                if !revoked.is_empty() {
                    self.reauthenticate().await?;
                }
                Ok(Protection::ReadOnlyAdminRevoked { revoked })
            }
        }
    }

    pub async fn close(self) {
        if let Err(err) = self.conn.disconnect().await {
            tracing::debug!(server = %self.server, error = %err, "closing the database connection failed");
        }
    }

    /// Test access to the raw connection, for checks the adapter API does not offer.
    #[cfg(test)]
    pub(crate) async fn query_for_test(&mut self, sql: &str) -> Vec<Vec<(String, Option<String>)>> {
        let rows: Vec<Row> = self.conn.query(sql).await.unwrap_or_else(|err| panic!("{sql}: {err}"));
        rows.iter().map(row_texts).collect()
    }

    /// Test access: the server error code of a statement expected to fail, `None` if it succeeded.
    #[cfg(test)]
    pub(crate) async fn query_for_test_error(&mut self, sql: &str) -> Option<u16> {
        match self.conn.query_drop(sql).await {
            Ok(()) => None,
            Err(mysql_async::Error::Server(err)) => Some(err.code),
            Err(err) => panic!("{sql}: {err}"),
        }
    }

    pub(super) fn remember(&mut self, secret: &SecretString) {
        if !self.secrets.contains(secret) {
            self.secrets.push(secret.clone());
        }
    }

    pub(super) fn scrub(&self, message: &str) -> String {
        scrub(message, &self.secrets)
    }

    /// Drops the default database (COM_CHANGE_USER with the same account and no database).
    pub(super) async fn leave_appdb(&mut self) -> Result<(), DbError> {
        if self.in_appdb {
            self.change_user("clearing the default database").await?;
        }
        Ok(())
    }

    /// Logs in again on the same connection, so that privileges changed since the login apply to it.
    async fn reauthenticate(&mut self) -> Result<(), DbError> {
        self.change_user("logging in again with the changed privileges").await
    }

    /// COM_CHANGE_USER with the same account and no database: reloads privileges, clears the default database.
    async fn change_user(&mut self, what: &str) -> Result<(), DbError> {
        if let Err(err) = self.conn.change_user(ChangeUserOpts::default()).await {
            return Err(DbError::ConnectionLost {
                server: self.server.clone(),
                what: what.into(),
                message: self.scrub(&err.to_string()),
            });
        }
        self.in_appdb = false;
        Ok(())
    }

    pub(super) async fn run(&mut self, what: &str, statement: &Statement) -> Result<(), DbError> {
        tracing::trace!(server = %self.server, ?statement, "running");
        match self.conn.query_drop(statement.text()).await {
            Ok(()) => Ok(()),
            Err(err) => Err(self.statement_error(what, statement, err)),
        }
    }

    pub(super) async fn rows(
        &mut self,
        what: &str,
        statement: &Statement,
    ) -> Result<Vec<Vec<(String, Option<String>)>>, DbError> {
        tracing::trace!(server = %self.server, ?statement, "querying");
        match self.conn.query::<Row, _>(statement.text()).await {
            Ok(rows) => Ok(rows.iter().map(row_texts).collect()),
            Err(err) => Err(self.statement_error(what, statement, err)),
        }
    }

    pub(super) fn statement_error(&self, what: &str, statement: &Statement, err: mysql_async::Error) -> DbError {
        match err {
            mysql_async::Error::Server(err) => {
                let message = if statement.carries_secret() {
                    withhold_quoted(&err.message)
                } else {
                    err.message.clone()
                };
                DbError::Statement {
                    server: self.server.clone(),
                    what: what.to_string(),
                    code: err.code,
                    message: self.scrub(&message),
                    fix: statement_fix(err.code),
                }
            }
            other => DbError::ConnectionLost {
                server: self.server.clone(),
                what: what.to_string(),
                message: self.scrub(&other.to_string()),
            },
        }
    }
}

/// How a failed connection attempt is handled.
#[derive(Debug, PartialEq, Eq)]
enum ConnectFailure {
    /// Transient: refused, reset, EOF, DNS, shutdown in progress (1053), too many connections (1040).
    Retry(String),
    /// The server answered and refused this login (1045 bad password, 1130 host not allowed, ...): retrying
    /// cannot help.
    Rejected { code: u16, message: String },
}

fn classify_connect_error(err: &mysql_async::Error) -> ConnectFailure {
    match err {
        mysql_async::Error::Server(server) if matches!(server.code, 1053 | 1040) => {
            ConnectFailure::Retry(format!("error {}: {}", server.code, server.message))
        }
        mysql_async::Error::Server(server) => ConnectFailure::Rejected {
            code: server.code,
            message: server.message.clone(),
        },
        other => ConnectFailure::Retry(other.to_string()),
    }
}

/// A row as (column name, text) pairs; NULL is `None`. The text protocol sends every value as bytes.
fn row_texts(row: &Row) -> Vec<(String, Option<String>)> {
    row.columns_ref()
        .iter()
        .enumerate()
        .map(|(index, column)| (column.name_str().into_owned(), row.as_ref(index).and_then(value_text)))
        .collect()
}

fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::NULL => None,
        Value::Bytes(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::UInt(n) => Some(n.to_string()),
        Value::Float(n) => Some(n.to_string()),
        Value::Double(n) => Some(n.to_string()),
        other => Some(other.as_sql(true)),
    }
}

/// `Log_name` and `File_size` of each `SHOW BINARY LOGS` row.
fn parse_binary_logs(rows: &[Vec<(String, Option<String>)>]) -> Vec<BinaryLog> {
    rows.iter()
        .filter_map(|row| {
            let column = |name: &str| {
                row.iter()
                    .find(|(column, _)| column.eq_ignore_ascii_case(name))
                    .and_then(|(_, value)| value.clone())
            };
            Some(BinaryLog {
                name: column("Log_name")?,
                size: column("File_size")?.trim().parse().ok()?,
            })
        })
        .collect()
}

/// `File` and `Position` from the binlog status row; `None` when binary logging is off (no row).
fn parse_coordinates(rows: &[Vec<(String, Option<String>)>]) -> Option<Coordinates> {
    let row = rows.first()?;
    let column = |name: &str| {
        row.iter()
            .find(|(column, _)| column.eq_ignore_ascii_case(name))?
            .1
            .clone()
    };
    let file = column("File").filter(|file| !file.is_empty())?;
    let position = column("Position")?.trim().parse().ok()?;
    Some(Coordinates { file, position })
}

/// The row of `server_facts`: VERSION(), server_id, uuid, read_only, super_read_only (NULL on MariaDB), log_bin.
fn parse_facts(row: &[(String, Option<String>)]) -> Result<ServerFacts, String> {
    let value = |index: usize| row.get(index).and_then(|(_, value)| value.as_deref());
    let version = parse_version(value(0).unwrap_or_default()).map_err(|err| err.to_string())?;
    let server_id = value(1)
        .and_then(|id| id.trim().parse().ok())
        .ok_or_else(|| format!("unexpected @@server_id {:?}", value(1)))?;
    Ok(ServerFacts {
        version,
        server_id,
        server_uuid: value(2).unwrap_or_default().to_string(),
        read_only: value(3).is_some_and(is_on),
        super_read_only: value(4).map(is_on),
        log_bin: value(5).is_some_and(is_on),
    })
}

/// `1`, `ON`, or (MariaDB 12's enum read_only) any mode other than OFF.
fn is_on(value: &str) -> bool {
    let value = value.trim();
    !(value.is_empty() || value == "0" || value.eq_ignore_ascii_case("off"))
}

#[derive(Debug, PartialEq, Eq)]
enum PositionWait {
    Reached,
    TimedOut,
    NotReplicating,
}

/// `SOURCE_POS_WAIT`/`MASTER_POS_WAIT`: >= 0 events waited (reached), -1 timeout, NULL when the SQL thread is not
/// running or replication is not configured.
fn position_wait_outcome(result: Option<&str>) -> PositionWait {
    match result.and_then(|text| text.trim().parse::<i64>().ok()) {
        Some(n) if n >= 0 => PositionWait::Reached,
        Some(_) => PositionWait::TimedOut,
        None => PositionWait::NotReplicating,
    }
}

fn validate_marker(marker: &str) -> Result<(), DbError> {
    let reason = if marker.is_empty() {
        "it is empty".to_string()
    } else if marker.chars().count() > MAX_MARKER_LEN {
        format!("it is longer than the {MAX_MARKER_LEN} characters of lab_validation.marker; use a shorter one")
    } else {
        return Ok(());
    };
    Err(DbError::InvalidMarker {
        marker: marker.to_string(),
        reason,
    })
}

/// Why a replica accepted the test write, in plain words.
fn explain_accepted_write(
    version: &ServerVersion,
    user: &str,
    read_only: bool,
    super_read_only: Option<bool>,
) -> String {
    const ROLLED_BACK: &str = "The test write was rolled back, so the replica did not diverge.";
    if !read_only {
        return format!(
            "read_only is OFF on this replica, so every account can write to it: the replica's config needs \
             read-only=ON (check the server.cnf the init container generated). {ROLLED_BACK}"
        );
    }
    match (version.flavor, super_read_only) {
        // MDEV-29596 (10.11) separated READ_ONLY ADMIN from SUPER; before it, SUPER alone bypasses read_only.
        (Flavor::MariaDb, _) if !version.at_least(10, 11, 0) => format!(
            "MariaDB {}.{} accepts writes from {user} on this replica: before 10.11, SUPER (which root holds) bypasses \
             read_only, so revoking READ_ONLY ADMIN is not enough. Use MariaDB 10.11 or later (--image \
             mariadb:11.4), or write only through mysql-primary. {ROLLED_BACK}",
            version.major, version.minor
        ),
        (Flavor::MariaDb, _) if version.at_least(12, 0, 0) => format!(
            "MariaDB accepts writes from {user} on this replica: read_only=ON does not stop accounts with the READ_ONLY \
             ADMIN privilege (root holds it through GRANT ALL PRIVILEGES) unless it is NO_LOCK_NO_ADMIN, a runtime \
             setting a restart resets. A later write from the primary to the same row would stop replication with \
             1062. Run lab up, which sets read_only = NO_LOCK_NO_ADMIN on every replica. {ROLLED_BACK}"
        ),
        (Flavor::MariaDb, _) => format!(
            "MariaDB accepts writes from {user} on this replica: read_only=ON does not stop accounts with the READ_ONLY \
             ADMIN privilege, which root holds through GRANT ALL PRIVILEGES, and MariaDB before 12.0 has no \
             super_read_only. A later write from the primary to the same row would stop replication with 1062. Run \
             lab up, which revokes READ_ONLY ADMIN from root@'%' on every replica (locally, not replicated). \
             {ROLLED_BACK}"
        ),
        (Flavor::MySql, Some(true)) => format!(
            "MySQL accepted a write from {user} although read_only and super_read_only are ON, which only the \
             replication applier should be able to do; check the server's read-only settings. {ROLLED_BACK}"
        ),
        (Flavor::MySql, _) => format!(
            "MySQL accepts writes from {user} on this replica: read_only=ON does not stop accounts with \
             CONNECTION_ADMIN or SUPER (root has both) while super_read_only is OFF. Run SET PERSIST \
             super_read_only = ON on the replica (lab up does once the replica is configured). {ROLLED_BACK}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use mysql_async::{IoError, ServerError};

    use super::*;

    fn server_error(code: u16, message: &str) -> mysql_async::Error {
        mysql_async::Error::Server(ServerError {
            code,
            message: message.into(),
            state: "HY000".into(),
        })
    }

    #[test]
    fn connect_retries_transient_failures_and_gives_up_on_refused_logins() {
        let refused = mysql_async::Error::Io(IoError::Io(io::Error::from(io::ErrorKind::ConnectionRefused)));
        assert!(matches!(classify_connect_error(&refused), ConnectFailure::Retry(_)));
        let eof = mysql_async::Error::Io(IoError::Io(io::Error::from(io::ErrorKind::UnexpectedEof)));
        assert!(matches!(classify_connect_error(&eof), ConnectFailure::Retry(_)));
        assert_eq!(
            classify_connect_error(&server_error(1053, "Server shutdown in progress")),
            ConnectFailure::Retry("error 1053: Server shutdown in progress".into())
        );
        for code in [1045, 1130] {
            assert!(
                matches!(classify_connect_error(&server_error(code, "no")), ConnectFailure::Rejected { code: c, .. } if c == code)
            );
        }
    }

    #[test]
    fn binary_logs_are_read_by_column_name() {
        let row = |name: &str, size: &str| {
            vec![
                ("Log_name".to_string(), Some(name.to_string())),
                ("File_size".to_string(), Some(size.to_string())),
                ("Encrypted".to_string(), Some("No".to_string())),
            ]
        };
        assert_eq!(
            parse_binary_logs(&[row("mysql-bin.000001", "1177"), row("mysql-bin.000002", "385")]),
            [
                BinaryLog {
                    name: "mysql-bin.000001".into(),
                    size: 1177
                },
                BinaryLog {
                    name: "mysql-bin.000002".into(),
                    size: 385
                }
            ]
        );
    }

    #[test]
    fn coordinates_are_read_by_column_name() {
        let row = vec![
            ("File".to_string(), Some("mysql-bin.000001".to_string())),
            ("Position".to_string(), Some("328".to_string())),
            ("Binlog_Do_DB".to_string(), Some("appdb".to_string())),
        ];
        assert_eq!(
            parse_coordinates(&[row]),
            Some(Coordinates {
                file: "mysql-bin.000001".into(),
                position: 328
            })
        );
        assert_eq!(parse_coordinates(&[]), None, "no row: binary logging is off");
    }

    #[test]
    fn facts_parse_on_both_flavours() {
        let row = |values: [Option<&str>; 6]| -> Vec<(String, Option<String>)> {
            values
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("c{i}"), v.map(str::to_string)))
                .collect()
        };
        let mariadb = parse_facts(&row([
            Some("10.11.19-MariaDB-0+deb12u1-log"),
            Some("2"),
            Some("zB2ZpBFyvpHRGNfRnMAYjE5CqWg="),
            Some("1"),
            None,
            Some("0"),
        ]))
        .expect("parses");
        assert_eq!(
            (
                mariadb.server_id,
                mariadb.read_only,
                mariadb.super_read_only,
                mariadb.log_bin
            ),
            (2, true, None, false)
        );
        assert_eq!(mariadb.server_uuid, "zB2ZpBFyvpHRGNfRnMAYjE5CqWg=");
        let mysql = parse_facts(&row([
            Some("8.4.10"),
            Some("1"),
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562"),
            Some("0"),
            Some("0"),
            Some("1"),
        ]))
        .expect("parses");
        assert_eq!(
            (mysql.version.flavor, mysql.super_read_only, mysql.log_bin),
            (Flavor::MySql, Some(false), true)
        );
        assert!(parse_facts(&row([Some("8.4.10"), None, None, None, None, None])).is_err());
    }

    #[test]
    fn position_wait_results_are_distinct() {
        assert_eq!(position_wait_outcome(Some("0")), PositionWait::Reached);
        assert_eq!(position_wait_outcome(Some("3")), PositionWait::Reached);
        assert_eq!(position_wait_outcome(Some("-1")), PositionWait::TimedOut);
        assert_eq!(position_wait_outcome(None), PositionWait::NotReplicating);
    }

    #[test]
    fn markers_must_fit_the_column() {
        assert!(validate_marker("lab-2025-01-01T00:00:00Z").is_ok());
        let long = "x".repeat(65);
        assert_eq!(
            validate_marker(&long).expect_err("too long").to_string(),
            format!(
                "marker {long:?} cannot be written: it is longer than the 64 characters of lab_validation.marker; \
                 use a shorter one"
            )
        );
        assert_eq!(
            validate_marker("").expect_err("empty").to_string(),
            "marker \"\" cannot be written: it is empty"
        );
    }

    #[test]
    fn accepted_writes_are_explained_truthfully() {
        let version = |text: &str| parse_version(text).expect("parses");
        let mariadb_root = explain_accepted_write(&version("10.11.19-MariaDB"), "root", true, None);
        assert!(
            mariadb_root.starts_with(
                "MariaDB accepts writes from root on this replica: read_only=ON does not stop accounts with the \
                 READ_ONLY ADMIN privilege"
            ),
            "{mariadb_root}"
        );
        assert!(mariadb_root.contains("1062"), "{mariadb_root}");
        assert!(
            mariadb_root.contains("Run lab up, which revokes READ_ONLY ADMIN"),
            "{mariadb_root}"
        );
        assert!(
            mariadb_root.ends_with("The test write was rolled back, so the replica did not diverge."),
            "{mariadb_root}"
        );
        let mariadb_10_6 = explain_accepted_write(&version("10.6.21-MariaDB"), "root", true, None);
        assert!(mariadb_10_6.contains("before 10.11, SUPER"), "{mariadb_10_6}");
        let mariadb_12 = explain_accepted_write(&version("12.0.2-MariaDB"), "root", true, None);
        assert!(mariadb_12.contains("NO_LOCK_NO_ADMIN"), "{mariadb_12}");
        let mysql_root = explain_accepted_write(&version("8.4.10"), "root", true, Some(false));
        assert!(mysql_root.contains("SET PERSIST super_read_only = ON"), "{mysql_root}");
        let off = explain_accepted_write(&version("8.4.10"), "lab_probe", false, Some(false));
        assert!(off.starts_with("read_only is OFF on this replica"), "{off}");
    }
}
