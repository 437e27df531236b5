//! Replication errors (`Last_IO_Errno` / `Last_SQL_Errno`) explained as a cause and a fix.

use serde::{Deserialize, Serialize};

/// A replication problem in plain words: what went wrong and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub cause: String,
    pub fix: String,
}

impl Finding {
    fn new(cause: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            cause: cause.into(),
            fix: fix.into(),
        }
    }
}

/// Errors the replica's threads retry by themselves: the primary is restarting, not yet Ready in DNS, or briefly
/// unreachable. Everything else needs a person (or `lab`) to act.
pub fn is_transient_replication_error(errno: u32) -> bool {
    matches!(errno, 2003 | 2005 | 2006 | 2013 | 1053 | 1158 | 1159)
}

/// Maps a replica's last error to its usual cause and fix. `message` is the server's `Last_*_Error` text; it
/// refines the explanation where one code covers several causes (1593) and is quoted for unknown codes.
pub fn explain_replication_error(errno: u32, message: &str) -> Finding {
    // Wording: the repair statements differ per dialect (START REPLICA vs START SLAVE), so both are named.
    const START_SQL_THREAD: &str =
        "START REPLICA SQL_THREAD (START SLAVE SQL_THREAD on MariaDB and MySQL before 8.0.22)";
    match errno {
        // MySQL 8 wraps the source's errors in its own codes (mysql-notes 13 and 14, measured on 8.0.40): 13114
        // (ER_SERVER_SOURCE_FATAL_ERROR_READING_BINLOG) "Got fatal error 1236 from source when reading data from
        // binary log: ..." is MariaDB's 1236; 13117 "Fatal error: The replica I/O thread stops because source and
        // replica have equal MySQL server ids" (or server UUIDs, same number) is MariaDB's 1593.
        13114 => explain_replication_error(1236, message),
        13117 => explain_replication_error(1593, message),
        1593 if message.to_ascii_lowercase().contains("uuid") => Finding::new(
            "the replica and the primary have the same server_uuid (equal server UUIDs): one data directory was \
             copied from the other",
            "delete auto.cnf in the replica's data directory and restart it, or rebuild the replica from an empty \
             volume",
        ),
        1593 => Finding::new(
            "the replica and the primary have the same server_id (equal server ids), so the replica refuses to \
             replicate from itself",
            "give every server a unique server-id: the init container derives it from the pod ordinal \
             (mysql-0 => 1, mysql-1 => 2); check the generated server.cnf on both pods, then restart the replica",
        ),
        2061 => Finding::new(
            "the replication account uses caching_sha2_password, which needs TLS or the primary's RSA public key, \
             and the replica asked for neither",
            "configure the replica with GET_SOURCE_PUBLIC_KEY=1 (GET_MASTER_PUBLIC_KEY=1 before MySQL 8.0.23) or \
             SOURCE_SSL=1; lab up sets the public-key option on MySQL, so re-run it",
        ),
        2003 => Finding::new(
            "the replica cannot connect to the primary (host unreachable or connection refused): the primary is \
             down, restarting or not listening on port 3306",
            "check that mysql-0 is Running and Ready and listens on TCP port 3306; the replica retries on its own \
             every few seconds once the primary is back",
        ),
        2005 => Finding::new(
            "the replica cannot resolve the primary's host name (unknown host): the headless Service has no \
             address for mysql-0 yet",
            "check that the headless Service mysql-headless exists, selects app=mysql and matches the \
             StatefulSet's serviceName; DNS lists only Ready pods, so wait for mysql-0 to be Ready",
        ),
        1045 => Finding::new(
            "the primary rejected the replication account's user name or password (access denied)",
            "Secret mysql-secret is the truth: re-run lab up, which sets the account's password on the primary \
             from REPLICATION_USER and REPLICATION_PASSWORD (ALTER USER ... IDENTIFIED BY, not binlogged) and gives \
             refused replicas the same credentials (CHANGE ... TO with only the user and password: position kept)",
        ),
        1236 => Finding::new(
            "the primary no longer has the binary log file or position the replica asked for (position not \
             found): the binlogs were purged or the primary's data directory was re-initialised",
            "rebuild the replica from a consistent copy of the primary (mysqldump --source-data or mariadb-dump \
             --master-data) and configure it from that copy's coordinates; in a lab, lab teardown then lab up",
        ),
        1049 => Finding::new(
            "the replica received a statement for database appdb, which does not exist on the replica (unknown \
             database): the binlog coordinates were captured after CREATE DATABASE appdb, so the replica never \
             saw it being created",
            "capture the coordinates before CREATE DATABASE IF NOT EXISTS appdb (lab up does) and configure the \
             replica again from them; or create appdb and its tables on the replica, then run "
                .to_string()
                + START_SQL_THREAD,
        ),
        1146 => Finding::new(
            "a table written on the primary does not exist on the replica: its CREATE TABLE was not replicated, \
             usually because it ran without USE appdb (binlog-do-db filters DDL by the default database)",
            "run DDL after USE appdb on the primary; repair the replica by creating the table there, then run "
                .to_string()
                + START_SQL_THREAD,
        ),
        1062 => Finding::new(
            "a row sent by the primary already exists on the replica (duplicate key): something wrote directly to \
             the replica, e.g. root on a MariaDB replica where it still holds READ_ONLY ADMIN, which read_only does \
             not stop",
            "delete the conflicting row on the replica, then run ".to_string()
                + START_SQL_THREAD
                + "; keep writes off replicas (super_read_only on MySQL, REVOKE READ_ONLY ADMIN on MariaDB)",
        ),
        1007 => Finding::new(
            "a CREATE DATABASE from the primary failed because the database already exists on the replica \
             (created locally, e.g. by MYSQL_DATABASE on the replica pod)",
            "drop the local copy on the replica if it holds nothing the primary lacks, or remove MYSQL_DATABASE \
             from replica pods, then run "
                .to_string()
                + START_SQL_THREAD,
        ),
        // MySQL: SOURCE_PASSWORD longer than 32 characters (change-replication-source-to; mysql-notes 14).
        3056 => Finding::new(
            "the replication password is longer than the 32 characters CHANGE REPLICATION SOURCE TO accepts",
            "set a REPLICATION_PASSWORD of at most 32 characters in Secret mysql-secret, then re-run lab up",
        ),
        0 => Finding::new("no replication error is recorded", "nothing to fix"),
        other => Finding::new(
            format!("replication stopped with error {other}: {}", message.trim()),
            "read SHOW REPLICA STATUS (SHOW SLAVE STATUS) and the replica's error log, fix the cause, then run \
             START REPLICA (START SLAVE)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_server_ids_point_at_the_init_container() {
        let finding = explain_replication_error(
            1593,
            "Fatal error: The slave I/O thread stops because master and slave have equal MySQL server ids; these \
             ids must be different for replication to work",
        );
        assert_eq!(
            finding.cause,
            "the replica and the primary have the same server_id (equal server ids), so the replica refuses to \
             replicate from itself"
        );
        assert!(
            finding.fix.starts_with("give every server a unique server-id"),
            "{}",
            finding.fix
        );
        let uuid = explain_replication_error(1593, "master and slave have equal MySQL server UUIDs");
        assert!(uuid.cause.contains("same server_uuid"), "{}", uuid.cause);
        assert!(uuid.fix.contains("auto.cnf"), "{}", uuid.fix);
    }

    #[test]
    fn mysql_8_wrapped_codes_get_the_cause_and_fix_of_the_code_they_wrap() {
        // Messages as a MySQL 8.0.40 replica reported them (mysql-notes 14).
        let lost = explain_replication_error(
            13114,
            "Got fatal error 1236 from source when reading data from binary log: 'Could not find first log file \
             name in binary log index file'",
        );
        assert_eq!(lost, explain_replication_error(1236, ""));
        let ids = explain_replication_error(
            13117,
            "Fatal error: The replica I/O thread stops because source and replica have equal MySQL server ids; \
             these ids must be different for replication to work (or the --replicate-same-server-id option must \
             be used on replica but this does not always make sense; please check the manual before using it).",
        );
        assert_eq!(ids, explain_replication_error(1593, "equal MySQL server ids"));
        let uuids = explain_replication_error(
            13117,
            "Fatal error: The replica I/O thread stops because source and replica have equal MySQL server UUIDs; \
             these UUIDs must be different for replication to work.",
        );
        assert!(uuids.cause.contains("same server_uuid"), "{}", uuids.cause);
        let long = explain_replication_error(3056, "");
        assert!(long.cause.contains("32 characters"), "{}", long.cause);
        assert!(long.fix.contains("REPLICATION_PASSWORD"), "{}", long.fix);
        for permanent in [13114, 13117, 3056] {
            assert!(!is_transient_replication_error(permanent), "{permanent}");
        }
    }

    #[test]
    fn caching_sha2_needs_the_public_key_or_tls() {
        let finding = explain_replication_error(
            2061,
            "error connecting to master 'repl@mysql-0.mysql-headless.database.svc.cluster.local:3306' - \
             retry-time: 5 retries: 1 message: Authentication plugin 'caching_sha2_password' reported error: \
             Authentication requires secure connection.",
        );
        assert!(finding.cause.contains("caching_sha2_password"), "{}", finding.cause);
        assert_eq!(
            finding.fix,
            "configure the replica with GET_SOURCE_PUBLIC_KEY=1 (GET_MASTER_PUBLIC_KEY=1 before MySQL 8.0.23) or \
             SOURCE_SSL=1; lab up sets the public-key option on MySQL, so re-run it"
        );
    }

    #[test]
    fn unreachable_and_unknown_hosts_are_transient_and_explained() {
        let refused = explain_replication_error(2003, "error reconnecting to master 'repl@mysql-0:3306' (111)");
        assert!(
            refused.cause.contains("cannot connect to the primary"),
            "{}",
            refused.cause
        );
        assert!(refused.fix.contains("Running and Ready"), "{}", refused.fix);
        let unknown = explain_replication_error(2005, "Unknown server host 'mysql-0.mysql-headless' (-2)");
        assert!(
            unknown.cause.contains("cannot resolve the primary's host name"),
            "{}",
            unknown.cause
        );
        assert!(unknown.fix.contains("mysql-headless"), "{}", unknown.fix);
        assert!(is_transient_replication_error(2003));
        assert!(is_transient_replication_error(2005));
        for permanent in [1236, 1049, 1062, 2061, 1593, 1045, 1146] {
            assert!(!is_transient_replication_error(permanent), "{permanent}");
        }
    }

    #[test]
    fn bad_password_points_at_the_secret() {
        let finding = explain_replication_error(1045, "Access denied for user 'repl'@'10.0.0.2'");
        assert_eq!(
            finding.cause,
            "the primary rejected the replication account's user name or password (access denied)"
        );
        assert!(finding.fix.contains("Secret mysql-secret"), "{}", finding.fix);
    }

    #[test]
    fn missing_binlog_position_needs_a_rebuild() {
        let finding = explain_replication_error(
            1236,
            "Got fatal error 1236 from master when reading data from binary log: 'Could not find first log file \
             name in binary log index file'",
        );
        assert!(finding.cause.contains("position not found"), "{}", finding.cause);
        assert!(finding.fix.starts_with("rebuild the replica"), "{}", finding.fix);
    }

    #[test]
    fn unknown_database_explains_the_late_capture() {
        let finding = explain_replication_error(
            1049,
            "Error 'Unknown database 'appdb'' on query. Default database: 'appdb'. Query: 'CREATE TABLE ...'",
        );
        assert!(
            finding.cause.contains("captured after CREATE DATABASE appdb"),
            "{}",
            finding.cause
        );
        assert!(
            finding
                .fix
                .starts_with("capture the coordinates before CREATE DATABASE"),
            "{}",
            finding.fix
        );
    }

    #[test]
    fn duplicate_rows_and_existing_databases_name_the_local_write() {
        let duplicate = explain_replication_error(1062, "Duplicate entry '2' for key 'PRIMARY'");
        assert!(
            duplicate.cause.contains("wrote directly to the replica"),
            "{}",
            duplicate.cause
        );
        assert!(duplicate.fix.contains("START REPLICA SQL_THREAD"), "{}", duplicate.fix);
        let exists = explain_replication_error(1007, "Can't create database 'appdb'; database exists");
        assert!(
            exists.cause.contains("already exists on the replica"),
            "{}",
            exists.cause
        );
        assert!(exists.fix.contains("MYSQL_DATABASE"), "{}", exists.fix);
    }

    #[test]
    fn missing_table_points_at_the_default_database_filter() {
        let finding = explain_replication_error(1146, "Table 'appdb.t' doesn't exist");
        assert!(finding.cause.contains("without USE appdb"), "{}", finding.cause);
        assert!(finding.fix.starts_with("run DDL after USE appdb"), "{}", finding.fix);
    }

    #[test]
    fn unknown_codes_quote_the_server_message() {
        let finding = explain_replication_error(1677, " Column 1 of table 'appdb.t' cannot be converted ");
        assert_eq!(
            finding.cause,
            "replication stopped with error 1677: Column 1 of table 'appdb.t' cannot be converted"
        );
    }
}
