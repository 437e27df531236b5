//! Statement rendering per server flavour and version, from the SQL files in `sql/` (embedded at build time).
//!
//! A file is split into sections by `-- name: <section>` lines; a section is a list of statements ending in `;` at
//! the end of a line. Comment lines are dropped and each statement's lines are joined with single spaces.
//! `{{NAME}}` placeholders are filled after splitting, so a `;` inside a value cannot split a statement: keywords
//! from the [`Dialect`], values as quoted, escaped string literals (or plain numbers).

use std::fmt;

use crate::secret::SecretString;

use super::{Coordinates, Credentials, Flavor, ServerVersion, SourceConfig};

mod exercises;

const SERVER_FACTS_SQL: &str = include_str!("../../sql/00-server-facts.sql");
const PRIMARY_SETUP_SQL: &str = include_str!("../../sql/01-primary-setup.sql");
const REPLICA_SETUP_SQL: &str = include_str!("../../sql/02-replica-setup.sql");
const VALIDATE_SQL: &str = include_str!("../../sql/03-validate.sql");
const DEMO_SQL: &str = include_str!("../../sql/04-demo.sql");
const REPAIR_SQL: &str = include_str!("../../sql/05-repair.sql");

/// Seconds between the replica's reconnection attempts (the server default of 60 s makes a primary restart
/// cost a minute of replication).
pub const CONNECT_RETRY_SECONDS: u32 = 5;

/// How often a MySQL replica retries a lost source connection before its IO thread stops for good: 0, no limit.
/// MySQL 8.4 lowered the default of SOURCE_RETRY_COUNT from 86400 to 10 (refman 8.4 "What Is New", mysql-notes 13):
/// with a 5 s connect retry a replica gave up after ~50 s of primary downtime and never restarted by itself. 0 means
/// unlimited: the IO thread's reconnect loop stops only when `++err_count == mi->retry_count`, which never holds for
/// 0 (mysql-server sql/rpl_replica.cc, `connect_to_master`; the refman's `--master-retry-count` entry documents 0 as
/// infinite). A lab's primary may be down for hours (a laptop asleep) and must be followed when it
/// returns. MariaDB has no such CHANGE MASTER option before 12 (1064 on 10.11, tested); its `--master-retry-count`
/// server option defaults to 100000, so it never needed one.
pub const SOURCE_RETRY_COUNT: u32 = 0;

/// One rendered statement. It may carry a password, so it has no `Display` and its `Debug` hides such text.
#[derive(Clone, PartialEq, Eq)]
pub struct Statement {
    text: String,
    carries_secret: bool,
}

impl Statement {
    /// The SQL to send to the server.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True when the text contains a password: its server errors may quote it and must be withheld.
    pub fn carries_secret(&self) -> bool {
        self.carries_secret
    }

    /// A statement built by the adapter from quoted identifiers (`SHOW CREATE TABLE`, the copy's `INSERT`s).
    pub(super) fn plain(text: String) -> Statement {
        Statement {
            text,
            carries_secret: false,
        }
    }
}

impl fmt::Debug for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.carries_secret {
            f.write_str("Statement([contains a password, redacted])")
        } else {
            f.debug_tuple("Statement").field(&self.text).finish()
        }
    }
}

/// The statements a server understands, chosen once from its flavour and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialect {
    version: ServerVersion,
}

enum Value<'a> {
    Text(&'a str),
    Secret(&'a SecretString),
    Number(u64),
}

impl Dialect {
    pub fn for_version(version: &ServerVersion) -> Dialect {
        Dialect {
            version: version.clone(),
        }
    }

    pub fn version(&self) -> &ServerVersion {
        &self.version
    }

    pub fn flavor(&self) -> Flavor {
        self.version.flavor
    }

    fn is_mysql_at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        self.version.flavor == Flavor::MySql && self.version.at_least(major, minor, patch)
    }

    /// MySQL 8.0.22 introduced START/STOP/RESET REPLICA and SHOW REPLICA STATUS; 8.4 removed the SLAVE forms.
    /// MariaDB is kept on the SLAVE forms: they work on every version and its status columns keep the old names
    /// with either spelling.
    fn replica_keyword(&self) -> &'static str {
        if self.is_mysql_at_least(8, 0, 22) {
            "REPLICA"
        } else {
            "SLAVE"
        }
    }

    /// MySQL 8.0.23 introduced CHANGE REPLICATION SOURCE TO with SOURCE_* options.
    fn uses_change_source(&self) -> bool {
        self.is_mysql_at_least(8, 0, 23)
    }

    /// Keyword placeholders, the same for every section.
    fn keyword(&self, name: &str) -> Option<String> {
        let replica = self.replica_keyword();
        let change_source = self.uses_change_source();
        let mysql = self.version.flavor == Flavor::MySql;
        Some(match name {
            "SHOW_BINLOG_STATUS" if self.is_mysql_at_least(8, 2, 0) => "SHOW BINARY LOG STATUS".into(),
            "SHOW_BINLOG_STATUS" => "SHOW MASTER STATUS".into(),
            "STOP_REPLICA" => format!("STOP {replica}"),
            "START_REPLICA" => format!("START {replica}"),
            "RESET_REPLICA_ALL" => format!("RESET {replica} ALL"),
            "SHOW_REPLICA_STATUS" => format!("SHOW {replica} STATUS"),
            "CHANGE_SOURCE_TO" if change_source => "CHANGE REPLICATION SOURCE TO".into(),
            "CHANGE_SOURCE_TO" => "CHANGE MASTER TO".into(),
            "SOURCE_OR_MASTER" if change_source => "SOURCE".into(),
            "SOURCE_OR_MASTER" => "MASTER".into(),
            "FLAVOR_SOURCE_OPTIONS" if change_source => {
                format!(", SOURCE_RETRY_COUNT = {SOURCE_RETRY_COUNT}, GET_SOURCE_PUBLIC_KEY = 1")
            }
            "FLAVOR_SOURCE_OPTIONS" if mysql => {
                format!(", MASTER_RETRY_COUNT = {SOURCE_RETRY_COUNT}, GET_MASTER_PUBLIC_KEY = 1")
            }
            "FLAVOR_SOURCE_OPTIONS" => ", MASTER_USE_GTID = no".into(),
            "POS_WAIT_FUNCTION" if self.is_mysql_at_least(8, 0, 26) => "SOURCE_POS_WAIT".into(),
            "POS_WAIT_FUNCTION" => "MASTER_POS_WAIT".into(),
            "SERVER_UUID" if mysql => "@@server_uuid".into(),
            "SERVER_UUID" => "@@server_uid".into(),
            "SUPER_READ_ONLY" if mysql => "@@super_read_only".into(),
            "SUPER_READ_ONLY" => "NULL".into(),
            "CONNECT_RETRY" => CONNECT_RETRY_SECONDS.to_string(),
            "GET_PUBLIC_KEY" if change_source => "GET_SOURCE_PUBLIC_KEY".into(),
            "GET_PUBLIC_KEY" => "GET_MASTER_PUBLIC_KEY".into(),
            _ => return None,
        })
    }

    fn render(&self, file: &str, section: &str, values: &[(&str, Value<'_>)]) -> Vec<Statement> {
        let templates = section_statements(file, section)
            .unwrap_or_else(|| panic!("the embedded SQL has no section {section:?} (the rendering tests cover all)"));
        templates
            .iter()
            .map(|template| {
                let mut carries_secret = false;
                let text = fill_placeholders(template, |name| {
                    if let Some(keyword) = self.keyword(name) {
                        return Some(keyword);
                    }
                    let (_, value) = values.iter().find(|(key, _)| *key == name)?;
                    Some(match value {
                        Value::Text(text) => quote_literal(text),
                        Value::Secret(secret) => {
                            carries_secret = true;
                            quote_literal(secret.expose())
                        }
                        Value::Number(number) => number.to_string(),
                    })
                })
                .unwrap_or_else(|missing| {
                    panic!("section {section:?} uses {{{{{missing}}}}}, which nothing fills (a bug in lab)")
                });
                Statement { text, carries_secret }
            })
            .collect()
    }

    fn render_one(&self, file: &str, section: &str, values: &[(&str, Value<'_>)]) -> Statement {
        let mut statements = self.render(file, section, values);
        assert_eq!(
            statements.len(),
            1,
            "section {section:?} must hold exactly one statement"
        );
        statements.remove(0)
    }

    /// `SELECT VERSION(), @@server_id, <uuid>, @@read_only, <super_read_only or NULL>, @@log_bin`.
    pub fn server_facts(&self) -> Statement {
        self.render_one(SERVER_FACTS_SQL, "server_facts", &[])
    }

    /// `SET SESSION sql_log_bin = 0`, CREATE USER IF NOT EXISTS, ALTER USER (password), GRANT REPLICATION SLAVE,
    /// `SET SESSION sql_log_bin = 1` (run the last one whatever happened). Run with no default database.
    pub fn replication_user(&self, repl: &Credentials) -> Vec<Statement> {
        self.render(
            PRIMARY_SETUP_SQL,
            "replication_user",
            &[
                ("REPLICATION_USER", Value::Text(&repl.user)),
                ("REPLICATION_PASSWORD", Value::Secret(&repl.password)),
            ],
        )
    }

    /// `SHOW MASTER STATUS` or `SHOW BINARY LOG STATUS`.
    pub fn binlog_coordinates(&self) -> Statement {
        self.render_one(PRIMARY_SETUP_SQL, "binlog_coordinates", &[])
    }

    /// `SHOW BINARY LOGS`.
    pub fn binary_logs(&self) -> Statement {
        self.render_one(PRIMARY_SETUP_SQL, "binary_logs", &[])
    }

    /// `CREATE DATABASE IF NOT EXISTS appdb`: run only after the coordinates were captured.
    pub fn create_appdb(&self) -> Statement {
        self.render_one(PRIMARY_SETUP_SQL, "appdb", &[])
    }

    /// The non-admin probe account, created after `USE appdb` so that it replicates.
    pub fn probe_user(&self, probe: &Credentials) -> Vec<Statement> {
        self.render(
            PRIMARY_SETUP_SQL,
            "probe_user",
            &[
                ("PROBE_USER", Value::Text(&probe.user)),
                ("PROBE_PASSWORD", Value::Secret(&probe.password)),
            ],
        )
    }

    /// Stop, forget the old source, point at the new one from the captured coordinates, start.
    pub fn configure_replica(&self, source: &SourceConfig) -> Vec<Statement> {
        self.render(
            REPLICA_SETUP_SQL,
            "configure_replica",
            &[
                ("SOURCE_HOST", Value::Text(&source.host)),
                ("SOURCE_PORT", Value::Number(u64::from(source.port))),
                ("REPLICATION_USER", Value::Text(&source.credentials.user)),
                ("REPLICATION_PASSWORD", Value::Secret(&source.credentials.password)),
                ("SOURCE_LOG_FILE", Value::Text(&source.origin.file)),
                ("SOURCE_LOG_POS", Value::Number(source.origin.position)),
            ],
        )
    }

    /// `START REPLICA` or `START SLAVE`, for a replica that points at its source but is stopped.
    pub fn start_replication(&self) -> Statement {
        self.render_one(REPLICA_SETUP_SQL, "start_replica", &[])
    }

    /// `SHOW REPLICA STATUS` or `SHOW SLAVE STATUS`.
    pub fn replica_status(&self) -> Statement {
        self.render_one(REPLICA_SETUP_SQL, "replica_status", &[])
    }

    /// MySQL: the applier workers' errors, newest first. MariaDB: `None` (its status carries the real error).
    pub fn worker_errors(&self) -> Option<Statement> {
        (self.version.flavor == Flavor::MySql).then(|| self.render_one(REPLICA_SETUP_SQL, "worker_errors", &[]))
    }

    /// `SELECT SOURCE_POS_WAIT(...)` or `SELECT MASTER_POS_WAIT(...)` with a timeout in whole seconds.
    pub fn wait_for_position(&self, target: &Coordinates, timeout_seconds: u64) -> Statement {
        self.render_one(
            REPLICA_SETUP_SQL,
            "wait_for_position",
            &[
                ("SOURCE_LOG_FILE", Value::Text(&target.file)),
                ("SOURCE_LOG_POS", Value::Number(target.position)),
                ("TIMEOUT_SECONDS", Value::Number(timeout_seconds)),
            ],
        )
    }

    /// How this server keeps root (and everyone but the replication applier) from writing on a replica.
    pub fn replica_protection(&self) -> ReplicaProtection {
        match self.version.flavor {
            Flavor::MySql => {
                ReplicaProtection::SuperReadOnly(self.render_one(REPLICA_SETUP_SQL, "protect_replica", &[]))
            }
            // MDEV-36425: read_only became an enum with NO_LOCK_NO_ADMIN in 12.0.
            Flavor::MariaDb if self.version.at_least(12, 0, 0) => ReplicaProtection::NoLockNoAdmin(self.render_one(
                REPLICA_SETUP_SQL,
                "protect_replica_no_lock_no_admin",
                &[],
            )),
            Flavor::MariaDb => ReplicaProtection::RevokeReadOnlyAdmin,
        }
    }

    /// `SELECT CURRENT_USER()`: the account this login matched, as `user@host`.
    pub fn current_account(&self) -> Statement {
        self.render_one(REPLICA_SETUP_SQL, "current_account", &[])
    }

    /// `SHOW GRANTS FOR 'user'@'host'`.
    pub fn account_grants(&self, account: &Account) -> Statement {
        self.render_one(REPLICA_SETUP_SQL, "account_grants", &account_values(account))
    }

    /// `SET SESSION sql_log_bin = 0`, `REVOKE READ_ONLY ADMIN ON *.* FROM 'user'@'host'`, `SET SESSION sql_log_bin
    /// = 1`: MariaDB before 12.0, on a replica, only while the account still holds the privilege.
    pub fn revoke_read_only_admin(&self, account: &Account) -> [Statement; 3] {
        self.render(REPLICA_SETUP_SQL, "revoke_read_only_admin", &account_values(account))
            .try_into()
            .expect("section revoke_read_only_admin holds exactly three statements (tested)")
    }

    /// `USE appdb`, `CREATE TABLE IF NOT EXISTS lab_validation`, the marker INSERT: for one connection.
    pub fn write_marker(&self, marker: &str) -> Vec<Statement> {
        self.render(VALIDATE_SQL, "write_marker", &[("MARKER", Value::Text(marker))])
    }

    /// `SELECT COUNT(*)` of rows carrying `marker`.
    pub fn has_marker(&self, marker: &str) -> Statement {
        self.render_one(VALIDATE_SQL, "has_marker", &[("MARKER", Value::Text(marker))])
    }

    /// `START TRANSACTION`, a probe INSERT, `ROLLBACK` (always run, whatever the INSERT did).
    pub fn read_only_check(&self, marker: &str) -> [Statement; 3] {
        let statements = self.render(VALIDATE_SQL, "read_only_check", &[("MARKER", Value::Text(marker))]);
        statements
            .try_into()
            .expect("section read_only_check holds exactly three statements (tested)")
    }

    /// `STOP REPLICA SQL_THREAD` or `STOP SLAVE SQL_THREAD` (the lag demo).
    pub fn stop_sql_thread_statement(&self) -> Statement {
        self.render_one(DEMO_SQL, "stop_sql_thread", &[])
    }

    /// `START REPLICA SQL_THREAD` or `START SLAVE SQL_THREAD`.
    pub fn start_sql_thread_statement(&self) -> Statement {
        self.render_one(DEMO_SQL, "start_sql_thread", &[])
    }

    /// `STOP REPLICA IO_THREAD` or `STOP SLAVE IO_THREAD`.
    pub fn stop_io_thread(&self) -> Statement {
        self.render_one(DEMO_SQL, "stop_io_thread", &[])
    }

    /// `START REPLICA IO_THREAD` or `START SLAVE IO_THREAD`.
    pub fn start_io_thread(&self) -> Statement {
        self.render_one(DEMO_SQL, "start_io_thread", &[])
    }

    /// `SET GLOBAL server_id = N` (runtime only).
    pub fn set_server_id(&self, server_id: u32) -> Statement {
        self.render_one(
            DEMO_SQL,
            "set_server_id",
            &[("SERVER_ID", Value::Number(u64::from(server_id)))],
        )
    }

    /// `SELECT plugin FROM mysql.user WHERE user = '...'`.
    pub fn account_plugin(&self, user: &str) -> Statement {
        self.render_one(DEMO_SQL, "account_plugin", &[("USER", Value::Text(user))])
    }

    /// MySQL: `CHANGE REPLICATION SOURCE TO GET_SOURCE_PUBLIC_KEY = 0|1` (`CHANGE MASTER TO GET_MASTER_PUBLIC_KEY`
    /// before 8.0.23). `None` on MariaDB, which has no such option (1064) and no caching_sha2_password.
    pub fn public_key_option(&self, enabled: bool) -> Option<Statement> {
        (self.version.flavor == Flavor::MySql).then(|| {
            self.render_one(
                DEMO_SQL,
                "public_key_option",
                &[("ENABLED", Value::Number(u64::from(enabled)))],
            )
        })
    }

    /// `START REPLICA` or `START SLAVE`, for repair hints.
    pub fn start_replica(&self) -> String {
        format!("START {}", self.replica_keyword())
    }

    /// The repair hint for a stopped SQL thread in this dialect.
    pub fn start_sql_thread(&self) -> String {
        format!("START {} SQL_THREAD", self.replica_keyword())
    }
}

/// How the primary's binlog coordinates are tied to a consistent snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotCoordinates {
    /// MariaDB: `Binlog_snapshot_file`/`_position` of the snapshot's session, no lock.
    SnapshotStatus,
    /// MySQL: `FLUSH TABLES WITH READ LOCK` while the snapshot starts and the position is read, then released.
    BriefGlobalReadLock,
}

/// How `lab repair` gets the right to write the copy into a read-only replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedAccess {
    /// Over lab's TCP session as root, after this statement (read_only stays ON for ordinary accounts); the
    /// replica's protection is put back afterwards.
    Tcp(Statement),
    /// MariaDB before 12.0: root has lost READ_ONLY ADMIN there; the copy goes in through the server's Unix socket
    /// as `'mysql'@'localhost'` (unix_socket authentication), which keeps it.
    Socket,
}

/// Seconds the primary's `FLUSH TABLES WITH READ LOCK` may wait for running statements before the repair gives
/// up (MySQL only).
pub const READ_LOCK_WAIT_SECONDS: u32 = 10;

impl Dialect {
    /// MariaDB has snapshot status variables; MySQL needs the brief global read lock.
    pub fn snapshot_coordinates(&self) -> SnapshotCoordinates {
        match self.version.flavor {
            Flavor::MariaDb => SnapshotCoordinates::SnapshotStatus,
            Flavor::MySql => SnapshotCoordinates::BriefGlobalReadLock,
        }
    }

    /// `STOP REPLICA`, `RESET REPLICA ALL` (SLAVE forms where the server needs them).
    pub fn reset_replica(&self) -> Vec<Statement> {
        self.render(REPAIR_SQL, "reset_replica", &[])
    }

    /// `SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ`, `START TRANSACTION WITH CONSISTENT SNAPSHOT`.
    pub fn snapshot_start(&self) -> Vec<Statement> {
        self.render(REPAIR_SQL, "snapshot_start", &[])
    }

    /// MariaDB: `SHOW STATUS LIKE 'binlog_snapshot_%'`.
    pub fn snapshot_status(&self) -> Statement {
        self.render_one(REPAIR_SQL, "snapshot_coordinates_mariadb", &[])
    }

    /// MySQL: a bounded lock wait, then `FLUSH TABLES WITH READ LOCK`.
    pub fn global_read_lock(&self) -> Vec<Statement> {
        self.render(
            REPAIR_SQL,
            "global_read_lock",
            &[("LOCK_WAIT_SECONDS", Value::Number(u64::from(READ_LOCK_WAIT_SECONDS)))],
        )
    }

    /// `UNLOCK TABLES`.
    pub fn release_read_lock(&self) -> Statement {
        self.render_one(REPAIR_SQL, "release_read_lock", &[])
    }

    /// `COMMIT`: ends the snapshot.
    pub fn snapshot_end(&self) -> Statement {
        self.render_one(REPAIR_SQL, "snapshot_end", &[])
    }

    /// Every schema but `mysql`, `sys`, `performance_schema`, `information_schema`.
    pub fn user_databases(&self) -> Statement {
        self.render_one(REPAIR_SQL, "user_databases", &[])
    }

    /// `TABLE_NAME`, `TABLE_TYPE` of a database, views last.
    pub fn tables(&self, database: &str) -> Statement {
        self.render_one(REPAIR_SQL, "tables", &[("DATABASE", Value::Text(database))])
    }

    /// The columns a copy can give values to (generated ones left out).
    pub fn insertable_columns(&self, database: &str, table: &str) -> Statement {
        self.render_one(
            REPAIR_SQL,
            "insertable_columns",
            &[("DATABASE", Value::Text(database)), ("TABLE", Value::Text(table))],
        )
    }

    /// How root gets to write the copy on a replica of this server version.
    pub fn seed_access(&self) -> SeedAccess {
        match self.version.flavor {
            Flavor::MySql => SeedAccess::Tcp(self.render_one(REPAIR_SQL, "open_for_seed_mysql", &[])),
            Flavor::MariaDb if self.version.at_least(12, 0, 0) => {
                SeedAccess::Tcp(self.render_one(REPAIR_SQL, "open_for_seed_no_lock_no_admin", &[]))
            }
            Flavor::MariaDb => SeedAccess::Socket,
        }
    }

    /// MariaDB before 12.0: whether `'mysql'@'localhost'` exists (a count).
    pub fn socket_admin_exists(&self) -> Statement {
        self.render_one(REPAIR_SQL, "socket_admin_exists", &[])
    }

    /// MariaDB before 12.0, on the primary: the replicated socket-only break-glass account. `None` elsewhere.
    pub fn socket_admin(&self) -> Option<Vec<Statement>> {
        (self.seed_access() == SeedAccess::Socket).then(|| self.render(REPAIR_SQL, "socket_admin", &[]))
    }

    /// The same account on one replica, not binlogged.
    pub fn socket_admin_local(&self) -> Vec<Statement> {
        self.render(REPAIR_SQL, "socket_admin_local", &[])
    }
}

/// A MySQL/MariaDB account, `'user'@'host'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub host: String,
}

impl Account {
    pub fn new(user: &str, host: &str) -> Account {
        Account {
            user: user.to_string(),
            host: host.to_string(),
        }
    }

    /// Parses `CURRENT_USER()`'s `user@host` (the host follows the last `@`).
    pub fn parse(text: &str) -> Option<Account> {
        let (user, host) = text.trim().rsplit_once('@')?;
        (!user.is_empty()).then(|| Account::new(user, host))
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", quote_literal(&self.user), quote_literal(&self.host))
    }
}

fn account_values(account: &Account) -> [(&'static str, Value<'_>); 2] {
    [
        ("ACCOUNT_USER", Value::Text(&account.user)),
        ("ACCOUNT_HOST", Value::Text(&account.host)),
    ]
}

/// How a replica is protected against writes from root, per flavour and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaProtection {
    /// MySQL: `SET PERSIST super_read_only = ON`.
    SuperReadOnly(Statement),
    /// MariaDB 12.0+: `SET GLOBAL read_only = NO_LOCK_NO_ADMIN`.
    NoLockNoAdmin(Statement),
    /// MariaDB before 12.0: take READ_ONLY ADMIN away from the root accounts TCP logins match (see
    /// [`revoke_targets`] and [`holds_read_only_admin`]).
    RevokeReadOnlyAdmin,
}

/// The accounts whose READ_ONLY ADMIN a MariaDB replica must lose: `root@'%'` (every TCP login as root on the
/// official images, which run with skip-name-resolve) and the account this very login matched (where a server
/// resolves 127.0.0.1 to `localhost`, a port-forward's login is `root@localhost`). `root@localhost` otherwise keeps
/// the privilege as the socket-only break-glass account.
pub fn revoke_targets(current: &Account) -> Vec<Account> {
    let mut targets = vec![Account::new("root", "%")];
    if !targets.contains(current) {
        targets.push(current.clone());
    }
    targets
}

/// True when `SHOW GRANTS` lines give the account READ_ONLY ADMIN on `*.*`, by name or through ALL PRIVILEGES.
pub fn holds_read_only_admin(grants: &[String]) -> bool {
    grants.iter().any(|line| {
        let upper = line.to_ascii_uppercase();
        let global = upper.contains(" ON *.* ");
        let listed = upper.contains("READ_ONLY ADMIN") || upper.contains("READ ONLY ADMIN");
        global && (listed || upper.starts_with("GRANT ALL PRIVILEGES ON *.*"))
    })
}

/// The statements of one `-- name:` section, comments dropped and lines joined; `None` if the section is absent.
fn section_statements(file: &str, section: &str) -> Option<Vec<String>> {
    let mut in_section = false;
    let mut found = false;
    let mut statements = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in file.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("-- name:") {
            in_section = name.trim() == section;
            found |= in_section;
            continue;
        }
        if !in_section || line.is_empty() || line.starts_with("--") {
            continue;
        }
        match line.strip_suffix(';') {
            Some(last) => {
                current.push(last.trim_end());
                statements.push(join_statement_lines(&current));
                current.clear();
            }
            None => current.push(line),
        }
    }
    assert!(current.is_empty(), "section {section:?} ends without ';'");
    found.then_some(statements)
}

/// Joins lines with single spaces, without a space after `(` or before `)` or `,`.
fn join_statement_lines(lines: &[&str]) -> String {
    let mut text = String::new();
    for line in lines {
        let glue = !(text.is_empty() || text.ends_with('(') || line.starts_with(')') || line.starts_with(','));
        if glue {
            text.push(' ');
        }
        text.push_str(line);
    }
    text
}

/// Replaces every `{{NAME}}`; returns the first name `lookup` cannot fill.
fn fill_placeholders(template: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| after.to_string())?;
        let name = &after[..end];
        out.push_str(&lookup(name).ok_or_else(|| name.to_string())?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A single-quoted SQL string literal. Assumes the server's default sql_mode (no NO_BACKSLASH_ESCAPES, which
/// neither image sets): backslash escapes are honoured; quotes are doubled.
pub fn quote_literal(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        match c {
            '\'' => quoted.push_str("''"),
            '\\' => quoted.push_str("\\\\"),
            '\0' => quoted.push_str("\\0"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\u{1a}' => quoted.push_str("\\Z"),
            other => quoted.push(other),
        }
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::parse_version;

    fn dialect(version: &str) -> Dialect {
        Dialect::for_version(&parse_version(version).expect("version parses"))
    }

    fn texts(statements: &[Statement]) -> Vec<&str> {
        statements.iter().map(Statement::text).collect()
    }

    fn source() -> SourceConfig {
        SourceConfig {
            host: "mysql-0.mysql-headless.database.svc.cluster.local".into(),
            port: 3306,
            credentials: Credentials {
                user: "repl".into(),
                password: SecretString::new("replpass"),
            },
            origin: Coordinates {
                file: "mysql-bin.000001".into(),
                position: 328,
            },
        }
    }

    const ALL_VERSIONS: [&str; 8] = [
        "8.0.21",
        "8.0.22",
        "8.0.30",
        "8.4.10",
        "9.7.1",
        "26.10.0",
        "10.11.19-MariaDB-0+deb12u1-log",
        "11.4.12-MariaDB-ubu2404",
    ];

    #[test]
    fn demo_statements_follow_the_replica_keyword_of_each_version() {
        let demo = |v: &str| {
            let d = dialect(v);
            [
                d.stop_sql_thread_statement(),
                d.start_sql_thread_statement(),
                d.stop_io_thread(),
                d.start_io_thread(),
                d.set_server_id(1),
            ]
            .iter()
            .map(|s| s.text().to_string())
            .collect::<Vec<_>>()
        };
        assert_eq!(
            demo("8.4.10"),
            [
                "STOP REPLICA SQL_THREAD",
                "START REPLICA SQL_THREAD",
                "STOP REPLICA IO_THREAD",
                "START REPLICA IO_THREAD",
                "SET GLOBAL server_id = 1",
            ]
        );
        assert_eq!(demo("10.11.19-MariaDB-0+deb12u1-log")[0], "STOP SLAVE SQL_THREAD");
        // The replication auth mistake (error 2061) exists on MySQL only.
        let off = |v: &str| dialect(v).public_key_option(false).map(|s| s.text().to_string());
        assert_eq!(
            off("8.4.10").as_deref(),
            Some("CHANGE REPLICATION SOURCE TO GET_SOURCE_PUBLIC_KEY = 0")
        );
        assert_eq!(
            off("8.0.22").as_deref(),
            Some("CHANGE MASTER TO GET_MASTER_PUBLIC_KEY = 0")
        );
        assert_eq!(off("11.4.12-MariaDB-ubu2404"), None);
        assert_eq!(
            dialect("8.4.10").public_key_option(true).unwrap().text(),
            "CHANGE REPLICATION SOURCE TO GET_SOURCE_PUBLIC_KEY = 1"
        );
        assert_eq!(
            dialect("8.4.10").account_plugin("repl").text(),
            "SELECT plugin FROM mysql.user WHERE user = 'repl'"
        );
        assert_eq!(demo("8.0.21")[3], "START SLAVE IO_THREAD");
        for version in ALL_VERSIONS {
            assert!(demo(version).iter().all(|text| !text.contains("{{")), "{version}");
        }
    }

    #[test]
    fn replica_setup_before_mysql_8_0_22_uses_master_and_slave_forms_with_the_public_key() {
        assert_eq!(
            texts(&dialect("8.0.21").configure_replica(&source())),
            [
                "STOP SLAVE",
                "RESET SLAVE ALL",
                "CHANGE MASTER TO MASTER_HOST = 'mysql-0.mysql-headless.database.svc.cluster.local', \
                 MASTER_PORT = 3306, MASTER_USER = 'repl', MASTER_PASSWORD = 'replpass', \
                 MASTER_LOG_FILE = 'mysql-bin.000001', MASTER_LOG_POS = 328, MASTER_CONNECT_RETRY = 5, \
                 MASTER_RETRY_COUNT = 0, GET_MASTER_PUBLIC_KEY = 1",
                "START SLAVE",
            ]
        );
    }

    #[test]
    fn mysql_8_0_22_has_replica_statements_but_still_change_master() {
        let statements = dialect("8.0.22").configure_replica(&source());
        assert_eq!(statements[0].text(), "STOP REPLICA");
        assert!(
            statements[2].text().starts_with("CHANGE MASTER TO MASTER_HOST = "),
            "{:?}",
            statements[2].text()
        );
        assert!(
            statements[2]
                .text()
                .ends_with(", MASTER_RETRY_COUNT = 0, GET_MASTER_PUBLIC_KEY = 1")
        );
    }

    #[test]
    fn replica_setup_on_mysql_8_0_23_and_later_uses_change_replication_source() {
        let expected = [
            "STOP REPLICA",
            "RESET REPLICA ALL",
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = 'mysql-0.mysql-headless.database.svc.cluster.local', \
             SOURCE_PORT = 3306, SOURCE_USER = 'repl', SOURCE_PASSWORD = 'replpass', \
             SOURCE_LOG_FILE = 'mysql-bin.000001', SOURCE_LOG_POS = 328, SOURCE_CONNECT_RETRY = 5, \
             SOURCE_RETRY_COUNT = 0, GET_SOURCE_PUBLIC_KEY = 1",
            "START REPLICA",
        ];
        for version in ["8.0.30", "8.4.10", "9.7.1", "26.10.0"] {
            assert_eq!(
                texts(&dialect(version).configure_replica(&source())),
                expected,
                "{version}"
            );
        }
    }

    #[test]
    fn replica_setup_on_mariadb_keeps_change_master_without_public_key_and_pins_position_mode() {
        let expected = [
            "STOP SLAVE",
            "RESET SLAVE ALL",
            "CHANGE MASTER TO MASTER_HOST = 'mysql-0.mysql-headless.database.svc.cluster.local', \
             MASTER_PORT = 3306, MASTER_USER = 'repl', MASTER_PASSWORD = 'replpass', \
             MASTER_LOG_FILE = 'mysql-bin.000001', MASTER_LOG_POS = 328, MASTER_CONNECT_RETRY = 5, \
             MASTER_USE_GTID = no",
            "START SLAVE",
        ];
        for version in [
            "10.11.19-MariaDB-0+deb12u1-log",
            "11.4.12-MariaDB-ubu2404",
            "5.5.5-10.5.2-MariaDB",
        ] {
            let statements = dialect(version).configure_replica(&source());
            assert_eq!(texts(&statements), expected, "{version}");
            assert!(!statements[2].text().contains("PUBLIC_KEY"));
            // CHANGE MASTER on MariaDB 10.5-11.x has no MASTER_RETRY_COUNT (1064 on 10.11, tested).
            assert!(!statements[2].text().contains("RETRY_COUNT"));
        }
    }

    #[test]
    fn binlog_status_statement_follows_the_version() {
        let rendered: Vec<_> = ALL_VERSIONS
            .iter()
            .map(|v| dialect(v).binlog_coordinates().text().to_string())
            .collect();
        assert_eq!(
            rendered,
            [
                "SHOW MASTER STATUS",
                "SHOW MASTER STATUS",
                "SHOW MASTER STATUS",
                "SHOW BINARY LOG STATUS",
                "SHOW BINARY LOG STATUS",
                "SHOW BINARY LOG STATUS",
                "SHOW MASTER STATUS",
                "SHOW MASTER STATUS",
            ]
        );
        assert_eq!(dialect("8.2.0").binlog_coordinates().text(), "SHOW BINARY LOG STATUS");
        assert_eq!(dialect("8.1.0").binlog_coordinates().text(), "SHOW MASTER STATUS");
        for version in ALL_VERSIONS {
            assert_eq!(dialect(version).binary_logs().text(), "SHOW BINARY LOGS", "{version}");
        }
    }

    #[test]
    fn status_and_position_wait_follow_the_version() {
        let target = Coordinates {
            file: "mysql-bin.000002".into(),
            position: 1044,
        };
        let rendered: Vec<_> = ALL_VERSIONS
            .iter()
            .map(|v| {
                let d = dialect(v);
                format!(
                    "{} | {}",
                    d.replica_status().text(),
                    d.wait_for_position(&target, 30).text()
                )
            })
            .collect();
        let old = "SHOW SLAVE STATUS | SELECT MASTER_POS_WAIT('mysql-bin.000002', 1044, 30)";
        let new = "SHOW REPLICA STATUS | SELECT SOURCE_POS_WAIT('mysql-bin.000002', 1044, 30)";
        assert_eq!(
            rendered,
            [
                old,
                "SHOW REPLICA STATUS | SELECT MASTER_POS_WAIT('mysql-bin.000002', 1044, 30)",
                new,
                new,
                new,
                new,
                old,
                old
            ]
        );
    }

    #[test]
    fn users_are_created_with_identified_by_on_every_flavour() {
        let repl = Credentials {
            user: "repl".into(),
            password: SecretString::new("replpass"),
        };
        for version in ALL_VERSIONS {
            let statements = dialect(version).replication_user(&repl);
            // Not binlogged on either flavour: MySQL logs account statements despite binlog-do-db (mysql-notes 14).
            assert_eq!(
                texts(&statements),
                [
                    "SET SESSION sql_log_bin = 0",
                    "CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'replpass'",
                    "ALTER USER 'repl'@'%' IDENTIFIED BY 'replpass'",
                    "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'",
                    "SET SESSION sql_log_bin = 1",
                ],
                "{version}"
            );
            assert!(statements[1].carries_secret() && statements[2].carries_secret());
            assert!(!statements[3].carries_secret());
            assert!(statements.iter().all(|s| !s.text().contains("mysql_native_password")));
        }
    }

    #[test]
    fn probe_user_is_created_inside_appdb_so_that_it_replicates() {
        let probe = Credentials {
            user: "lab_probe".into(),
            password: SecretString::new("pr0be"),
        };
        assert_eq!(
            texts(&dialect("10.11.19-MariaDB").probe_user(&probe)),
            [
                "USE appdb",
                "CREATE USER IF NOT EXISTS 'lab_probe'@'%' IDENTIFIED BY 'pr0be'",
                "ALTER USER 'lab_probe'@'%' IDENTIFIED BY 'pr0be'",
                "GRANT SELECT, INSERT ON appdb.* TO 'lab_probe'@'%'",
            ]
        );
        assert_eq!(
            dialect("8.4.10").create_appdb().text(),
            "CREATE DATABASE IF NOT EXISTS appdb"
        );
    }

    #[test]
    fn validation_runs_ddl_after_use_appdb_and_probes_in_a_rolled_back_transaction() {
        for version in ALL_VERSIONS {
            let d = dialect(version);
            assert_eq!(
                texts(&d.write_marker("lab-1")),
                [
                    "USE appdb",
                    "CREATE TABLE IF NOT EXISTS lab_validation (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
                     marker VARCHAR(64) NOT NULL UNIQUE, msg VARCHAR(64) NOT NULL DEFAULT 'written_on_primary', \
                     written_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE = InnoDB",
                    "INSERT INTO lab_validation (marker, msg) VALUES ('lab-1', 'written_on_primary')",
                ]
            );
            assert_eq!(
                d.has_marker("lab-1").text(),
                "SELECT COUNT(*) FROM appdb.lab_validation WHERE marker = 'lab-1'"
            );
            assert_eq!(
                texts(&d.read_only_check("lab-ro")),
                [
                    "START TRANSACTION",
                    "INSERT INTO appdb.lab_validation (marker, msg) VALUES ('lab-ro', 'should_fail')",
                    "ROLLBACK",
                ]
            );
        }
    }

    #[test]
    fn lab_never_writes_to_the_tutorials_table() {
        for version in ALL_VERSIONS {
            let d = dialect(version);
            let mut all = d.write_marker("m");
            all.push(d.has_marker("m"));
            all.extend(d.read_only_check("m"));
            for statement in all {
                assert!(!statement.text().contains("replication_test"), "{:?}", statement.text());
            }
        }
    }

    #[test]
    fn facts_and_protection_differ_between_mysql_and_mariadb() {
        assert_eq!(
            dialect("8.4.10").server_facts().text(),
            "SELECT VERSION(), @@server_id, @@server_uuid, @@read_only, @@super_read_only, @@log_bin"
        );
        assert_eq!(
            dialect("11.4.12-MariaDB-ubu2404").server_facts().text(),
            "SELECT VERSION(), @@server_id, @@server_uid, @@read_only, NULL, @@log_bin"
        );
        for version in ["8.0.21", "8.0.30", "8.4.10", "9.7.1", "26.10.0"] {
            let ReplicaProtection::SuperReadOnly(statement) = dialect(version).replica_protection() else {
                panic!("{version}: MySQL keeps super_read_only");
            };
            assert_eq!(statement.text(), "SET PERSIST super_read_only = ON", "{version}");
        }
        assert_eq!(dialect("10.11.19-MariaDB").start_sql_thread(), "START SLAVE SQL_THREAD");
        assert_eq!(dialect("10.11.19-MariaDB").worker_errors(), None);
        assert_eq!(
            dialect("8.0.40")
                .worker_errors()
                .map(|s| s.text().to_string())
                .as_deref(),
            Some(
                "SELECT LAST_ERROR_NUMBER, LAST_ERROR_MESSAGE FROM \
                 performance_schema.replication_applier_status_by_worker WHERE LAST_ERROR_NUMBER <> 0 ORDER BY \
                 LAST_ERROR_TIMESTAMP DESC"
            )
        );
        assert_eq!(dialect("8.4.10").start_sql_thread(), "START REPLICA SQL_THREAD");
        assert_eq!(dialect("8.0.21").start_replica(), "START SLAVE");
    }

    #[test]
    fn mariadb_replicas_lose_read_only_admin_before_12_and_use_no_lock_no_admin_from_12() {
        // MDEV-29596 (10.11): GRANT ALL includes READ_ONLY ADMIN, which read_only=ON does not stop (mysql-notes 1.4).
        // MDEV-36425 (12.0): read_only=NO_LOCK_NO_ADMIN stops its holders too (mysql-notes 4 and 13).
        for version in [
            "10.5.2-MariaDB",
            "10.11.19-MariaDB-0+deb12u1-log",
            "11.4.12-MariaDB-ubu2404",
            "11.8.3-MariaDB",
        ] {
            assert_eq!(
                dialect(version).replica_protection(),
                ReplicaProtection::RevokeReadOnlyAdmin,
                "{version}"
            );
        }
        for version in ["12.0.2-MariaDB", "12.1.1-MariaDB-ubu2404"] {
            let ReplicaProtection::NoLockNoAdmin(statement) = dialect(version).replica_protection() else {
                panic!("{version}");
            };
            assert_eq!(statement.text(), "SET GLOBAL read_only = NO_LOCK_NO_ADMIN");
        }
        let d = dialect("10.11.19-MariaDB");
        let root = Account::new("root", "%");
        assert_eq!(d.current_account().text(), "SELECT CURRENT_USER()");
        assert_eq!(d.account_grants(&root).text(), "SHOW GRANTS FOR 'root'@'%'");
        assert_eq!(
            texts(&d.revoke_read_only_admin(&root)),
            [
                "SET SESSION sql_log_bin = 0",
                "REVOKE READ_ONLY ADMIN ON *.* FROM 'root'@'%'",
                "SET SESSION sql_log_bin = 1",
            ]
        );
    }

    #[test]
    fn read_only_admin_is_revoked_from_root_at_any_host_and_from_the_account_this_login_matched() {
        assert_eq!(Account::parse("root@%"), Some(Account::new("root", "%")));
        assert_eq!(
            Account::parse("we@ird@localhost"),
            Some(Account::new("we@ird", "localhost"))
        );
        assert_eq!(Account::parse("nohost"), None);
        assert_eq!(revoke_targets(&Account::new("root", "%")), [Account::new("root", "%")]);
        assert_eq!(
            revoke_targets(&Account::new("root", "localhost")),
            [Account::new("root", "%"), Account::new("root", "localhost")]
        );
        assert_eq!(Account::new("root", "%").to_string(), "'root'@'%'");
    }

    #[test]
    fn read_only_admin_is_found_by_name_or_through_all_privileges() {
        let lines = |text: &[&str]| text.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        // As MariaDB 10.11 prints root@'%' of the official image, before and after the revoke.
        assert!(holds_read_only_admin(&lines(&[
            "GRANT ALL PRIVILEGES ON *.* TO `root`@`%` IDENTIFIED BY PASSWORD '*B69027D44F6E5EDC07F1AEAD1477967B16F28227' WITH GRANT OPTION",
            "GRANT PROXY ON ''@'%' TO 'root'@'%' WITH GRANT OPTION",
        ])));
        assert!(!holds_read_only_admin(&lines(&[
            "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, SHUTDOWN, PROCESS, FILE, REFERENCES, INDEX, \
             ALTER, SHOW DATABASES, SUPER, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, REPLICATION SLAVE, BINLOG \
             MONITOR, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, CREATE USER, EVENT, TRIGGER, CREATE \
             TABLESPACE, DELETE HISTORY, SET USER, FEDERATED ADMIN, CONNECTION ADMIN, REPLICATION SLAVE ADMIN, \
             REPLICATION MASTER ADMIN, BINLOG ADMIN, BINLOG REPLAY, SLAVE MONITOR ON *.* TO `root`@`%` WITH GRANT OPTION",
        ])));
        assert!(holds_read_only_admin(&lines(&[
            "GRANT READ_ONLY ADMIN ON *.* TO `admin`@`%`"
        ])));
        assert!(!holds_read_only_admin(&lines(&[
            "GRANT ALL PRIVILEGES ON `appdb`.* TO `u`@`%`"
        ])));
    }

    #[test]
    fn values_are_escaped_and_cannot_split_or_break_statements() {
        let repl = Credentials {
            user: "re'pl".into(),
            password: SecretString::new(r"p;w'\x"),
        };
        let statements = dialect("8.4.10").replication_user(&repl);
        assert_eq!(statements.len(), 5);
        assert_eq!(
            statements[2].text(),
            r"ALTER USER 're''pl'@'%' IDENTIFIED BY 'p;w''\\x'"
        );
        assert_eq!(quote_literal("a\nb\0c"), r"'a\nb\0c'");
    }

    #[test]
    fn debug_output_of_statements_with_passwords_hides_them() {
        let statements = dialect("10.11.19-MariaDB").configure_replica(&source());
        let debug = format!("{statements:?}");
        assert!(!debug.contains("replpass"), "{debug}");
        assert!(debug.contains("Statement(\"START SLAVE\")"), "{debug}");
    }

    #[test]
    fn every_file_comments_why_it_differs_from_the_tutorial() {
        for file in [SERVER_FACTS_SQL, PRIMARY_SETUP_SQL, REPLICA_SETUP_SQL, VALIDATE_SQL] {
            assert!(file.starts_with("-- "), "file starts with its explanation");
            assert!(file.contains("tutorial"), "file says how it differs from the tutorial");
        }
    }

    #[test]
    fn placeholder_filling_reports_what_is_missing() {
        assert_eq!(fill_placeholders("a {{X}} b", |_| None), Err("X".to_string()));
        assert_eq!(
            fill_placeholders("{{X}}{{X}}", |n| Some(n.to_lowercase())),
            Ok("xx".to_string())
        );
        assert_eq!(section_statements(PRIMARY_SETUP_SQL, "nope"), None);
    }
}
