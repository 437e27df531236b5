//! `DbError`: every failure of the database adapter, with its cause, its fix and its exit status.
//!
//! Server messages are scrubbed before they are stored: the passwords `Db` knows are replaced, and for statements
//! that carry a password everything the server quotes is withheld (MariaDB echoes a truncated prefix of a
//! too-long password in error 1470, and syntax errors quote the statement).

use std::time::Duration;

use crate::exit::{Classify, ExitStatus};
use crate::secret::SecretString;

use super::dialect::quote_literal;
use super::findings::Finding;
use super::status::ReplicationThread;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "cannot read the server version from {raw:?}: expected SELECT VERSION() to start with MAJOR.MINOR.PATCH \
         (e.g. 8.4.10 or 10.11.19-MariaDB); check that the address points to a MySQL or MariaDB server"
    )]
    UnparsableVersion { raw: String },

    #[error(
        "the server is {found}, older than {oldest}, the oldest version lab supports: use a newer image (e.g. \
         --image mysql:8.4 or --image mariadb:11.4)"
    )]
    UnsupportedVersion { found: String, oldest: String },

    #[error(
        "cannot connect to the database at {server} within {waited_secs}s (last attempt: {last_error}): check that \
         the pod is Running and Ready and the port-forward is open, or allow more time with --timeout"
    )]
    Unreachable {
        server: String,
        waited_secs: u64,
        last_error: String,
    },

    #[error("the database at {server} rejected user {user:?} (error {code}: {message}): {fix}")]
    LoginRejected {
        server: String,
        user: String,
        code: u16,
        message: String,
        fix: String,
    },

    #[error(
        "lost the connection to {server} while {what} ({message}): check that the pod is still running and the port-forward is open, then re-run"
    )]
    ConnectionLost {
        server: String,
        what: String,
        message: String,
    },

    #[error("{what} failed on {server} (error {code}: {message}): {fix}")]
    Statement {
        server: String,
        what: String,
        code: u16,
        message: String,
        fix: String,
    },

    #[error(
        "{server} has binary logging off ({statement} returned no row): the primary needs log-bin=mysql-bin in \
         its config; check the server.cnf the init container generated for mysql-0"
    )]
    BinaryLogOff { server: String, statement: String },

    #[error("{server} is not configured as a replica (its status is empty): configure it with lab up")]
    NotAReplica { server: String },

    #[error(
        "replication on {server} failed: {thread} thread error {errno} ({message}); cause: {cause}; fix: {fix}",
        cause = .finding.cause,
        fix = .finding.fix
    )]
    ReplicationFailed {
        server: String,
        thread: ReplicationThread,
        errno: u32,
        message: String,
        finding: Finding,
    },

    #[error(
        "replication on {server} is stopped ({thread} thread No; {status}): nothing restarts it by itself; run \
         `lab up`, which starts it where it stopped, or `{start}` on the replica"
    )]
    ReplicationStopped {
        server: String,
        thread: ReplicationThread,
        status: String,
        /// `START REPLICA` or `START SLAVE`, as this server spells it.
        start: String,
    },

    #[error(
        "replication on {server} was not running within {waited_secs}s (last status: {last_status}): check that \
         the replica can reach the primary and see its error log"
    )]
    ReplicationStartTimedOut {
        server: String,
        waited_secs: u64,
        last_status: String,
    },

    #[error(
        "{server} did not apply the primary's position {target} within {timeout_secs}s: replication is stalled or \
         far behind; check the replica's lag and errors, or allow more time with --timeout"
    )]
    PositionWaitTimedOut {
        server: String,
        target: String,
        timeout_secs: u64,
    },

    #[error("{server} cannot reach the primary's position {target}: its SQL thread is not running ({detail})")]
    SqlThreadNotRunning {
        server: String,
        target: String,
        detail: String,
    },

    #[error(
        "a new replica cannot start from the recorded binlog origin {origin} on {server}: {problem}. The replica \
         must be re-seeded from a consistent copy of the primary: `lab repair` does that without stopping the \
         primary's writes"
    )]
    OriginUnavailable {
        server: String,
        origin: String,
        problem: String,
    },

    #[error("marker {marker:?} cannot be written: {reason}")]
    InvalidMarker { marker: String, reason: String },
}

impl Classify for DbError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            DbError::Unreachable { .. }
            | DbError::ConnectionLost { .. }
            | DbError::ReplicationStartTimedOut { .. }
            | DbError::PositionWaitTimedOut { .. } => ExitStatus::Unreachable,
            // A bad password in the Secret, a missing privilege or a misconfigured server is configuration.
            DbError::UnparsableVersion { .. }
            | DbError::UnsupportedVersion { .. }
            | DbError::LoginRejected { .. }
            | DbError::BinaryLogOff { .. }
            | DbError::InvalidMarker { .. } => ExitStatus::Usage,
            DbError::Statement { code, .. } if is_configuration_error(*code) => ExitStatus::Usage,
            DbError::Statement { .. }
            | DbError::NotAReplica { .. }
            | DbError::ReplicationFailed { .. }
            | DbError::ReplicationStopped { .. }
            | DbError::OriginUnavailable { .. }
            | DbError::SqlThreadNotRunning { .. } => ExitStatus::Unhealthy,
        }
    }
}

/// Server errors that mean "the account or server is set up wrongly", not "the lab is broken".
fn is_configuration_error(code: u16) -> bool {
    matches!(
        code,
        1044 | 1045 | 1130 | 1142 | 1227 | 1290 | 1370 | 1470 | 1524 | 3056
    )
}

/// What to do about a failed statement, by server error code.
pub(crate) fn statement_fix(code: u16) -> String {
    match code {
        1044 | 1142 | 1227 | 1370 => "the account lacks a privilege: connect as root (MYSQL_ROOT_PASSWORD in Secret \
                                      mysql-secret)"
            .into(),
        1290 => "the server is read-only: this statement belongs on the primary (mysql-0), not on a replica".into(),
        1049 => "database appdb does not exist on this server yet: on the primary lab up creates it (after \
                 capturing the coordinates); replicas receive it through replication"
            .into(),
        1146 => "appdb.lab_validation does not exist on this server yet: lab up's validation creates it on the \
                 primary and replication brings it to the replicas"
            .into(),
        1054 => "appdb.lab_validation exists with another schema: drop it on the primary (the drop replicates) and \
                 re-run lab up"
            .into(),
        1064 | 1193 | 1305 => "the server rejected a statement of lab's dialect for this version: please report it \
                              with the output of SELECT VERSION()"
            .into(),
        3056 => "the replication password is longer than the 32 characters MySQL accepts for SOURCE_PASSWORD: set \
                 a shorter REPLICATION_PASSWORD in Secret mysql-secret"
            .into(),
        1470 => "a value is too long for the server (a host name over 255 characters or a password over 32 to 96): \
                 shorten it in Secret mysql-secret"
            .into(),
        1524 => "an authentication plugin is missing on the server: lab creates accounts with plain IDENTIFIED BY; \
                 check the server's default authentication plugin"
            .into(),
        _ => "check the server's error log, fix the cause and re-run".into(),
    }
}

/// The fix for a refused login.
pub(crate) fn login_fix(code: u16) -> String {
    match code {
        1130 => "the server has no account for this client's host: the image creates root@'%' on first start \
                 (MYSQL_ROOT_HOST); check that the data directory was initialised by the image"
            .into(),
        _ => "check MYSQL_ROOT_PASSWORD in Secret mysql-secret: the server only takes it on the first start of an \
              empty data directory, so a PVC kept from an older lab keeps its old password (lab teardown without \
              --keep-data starts fresh)"
            .into(),
    }
}

/// Removes every known password from a server message, raw and in its quoted-literal form.
pub(crate) fn scrub(message: &str, secrets: &[SecretString]) -> String {
    scrub_with(message, secrets, "[redacted]")
}

/// [`scrub`] with the text that stands in for a password.
pub(crate) fn scrub_with(message: &str, secrets: &[SecretString], replacement: &str) -> String {
    let mut text = message.to_string();
    for secret in secrets.iter().map(SecretString::expose).filter(|s| !s.is_empty()) {
        let quoted = quote_literal(secret);
        let escaped = &quoted[1..quoted.len() - 1];
        for form in [escaped, secret] {
            text = text.replace(form, replacement);
        }
    }
    text
}

/// For statements carrying a password: withholds everything between the first and the last quote of the
/// server's message, where servers quote statement text or values (possibly truncated, so no exact match).
pub(crate) fn withhold_quoted(message: &str) -> String {
    match (message.find('\''), message.rfind('\'')) {
        (Some(first), Some(last)) if first < last => {
            format!(
                "{}'[withheld: the statement carries a password]'{}",
                &message[..first],
                &message[last + 1..]
            )
        }
        (Some(first), _) => format!("{}[withheld: the statement carries a password]", &message[..first]),
        _ => message.to_string(),
    }
}

pub(crate) fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_follow_the_contract() {
        let unreachable = DbError::Unreachable {
            server: "127.0.0.1:3306".into(),
            waited_secs: 5,
            last_error: "refused".into(),
        };
        assert_eq!(unreachable.exit_status(), ExitStatus::Unreachable);
        let denied = DbError::LoginRejected {
            server: "127.0.0.1:3306".into(),
            user: "root".into(),
            code: 1045,
            message: "Access denied".into(),
            fix: login_fix(1045),
        };
        assert_eq!(denied.exit_status(), ExitStatus::Usage);
        let failed = DbError::ReplicationFailed {
            server: "mysql-1".into(),
            thread: ReplicationThread::Sql,
            errno: 1049,
            message: "Unknown database 'appdb'".into(),
            finding: super::super::explain_replication_error(1049, ""),
        };
        assert_eq!(failed.exit_status(), ExitStatus::Unhealthy);
        let timeout = DbError::PositionWaitTimedOut {
            server: "x".into(),
            target: "mysql-bin.000001:4".into(),
            timeout_secs: 1,
        };
        assert_eq!(timeout.exit_status(), ExitStatus::Unreachable);
        let privilege = DbError::Statement {
            server: "x".into(),
            what: "creating the replication user".into(),
            code: 1227,
            message: "Access denied; you need the CREATE USER privilege".into(),
            fix: statement_fix(1227),
        };
        assert_eq!(privilege.exit_status(), ExitStatus::Usage);
        let long_password = DbError::Statement {
            server: "x".into(),
            what: "configuring the replica".into(),
            code: 3056,
            message: "SOURCE_PASSWORD too long".into(),
            fix: statement_fix(3056),
        };
        assert_eq!(long_password.exit_status(), ExitStatus::Usage);
        assert!(
            long_password
                .to_string()
                .contains("REPLICATION_PASSWORD in Secret mysql-secret")
        );
    }

    #[test]
    fn messages_name_the_cause_and_the_fix() {
        let denied = DbError::LoginRejected {
            server: "127.0.0.1:40000".into(),
            user: "root".into(),
            code: 1045,
            message: "Access denied for user 'root'@'127.0.0.1' (using password: YES)".into(),
            fix: login_fix(1045),
        };
        assert_eq!(
            denied.to_string(),
            "the database at 127.0.0.1:40000 rejected user \"root\" (error 1045: Access denied for user \
             'root'@'127.0.0.1' (using password: YES)): check MYSQL_ROOT_PASSWORD in Secret mysql-secret: the \
             server only takes it on the first start of an empty data directory, so a PVC kept from an older lab \
             keeps its old password (lab teardown without --keep-data starts fresh)"
        );
        let failed = DbError::ReplicationFailed {
            server: "mysql-1".into(),
            thread: ReplicationThread::Io,
            errno: 1593,
            message: "equal MySQL server ids".into(),
            finding: super::super::explain_replication_error(1593, "equal MySQL server ids"),
        };
        let text = failed.to_string();
        assert!(text.starts_with("replication on mysql-1 failed: IO thread error 1593 (equal MySQL server ids); cause: the replica and the primary have the same server_id"), "{text}");
        assert!(text.contains("; fix: give every server a unique server-id"), "{text}");
    }

    #[test]
    fn scrub_removes_raw_and_escaped_passwords() {
        let secrets = [
            SecretString::new("it's"),
            SecretString::new("replpass"),
            SecretString::new(""),
        ];
        assert_eq!(
            scrub("near 'MASTER_PASSWORD = 'it''s', x' and replpass", &secrets),
            "near 'MASTER_PASSWORD = '[redacted]', x' and [redacted]"
        );
    }

    #[test]
    fn withholding_hides_truncated_echoes_of_a_password() {
        let message = "String 'pppppppppppppppppppp...' is too long for MASTER_PASSWORD (should be no longer than 96)";
        assert_eq!(
            withhold_quoted(message),
            "String '[withheld: the statement carries a password]' is too long for MASTER_PASSWORD (should be no \
             longer than 96)"
        );
        assert_eq!(withhold_quoted("no quotes here"), "no quotes here");
        assert_eq!(
            withhold_quoted("near 'abc"),
            "near [withheld: the statement carries a password]"
        );
    }
}
