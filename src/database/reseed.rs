//! Re-seeding a replica (`lab repair`): a consistent copy of the primary's databases, the binlog coordinates that
//! match it exactly, and the SQL that loads it into a read-only replica.
//!
//! The copy is read through one primary connection inside `START TRANSACTION WITH CONSISTENT SNAPSHOT`, so the
//! primary keeps taking writes; the coordinates come from the same snapshot (see [`Dialect::snapshot_coordinates`]).
//! The load is plain SQL text (`CREATE TABLE` as `SHOW CREATE TABLE` gives it, then multi-row `INSERT`s), so that
//! it can go in over lab's TCP session or through the pod's own client on the Unix socket.

use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};

use super::dialect::{SeedAccess, SnapshotCoordinates, Statement};
use super::error::statement_fix;
use super::{Coordinates, Credentials, Db, DbError};

/// Rows per `INSERT` of the copy, and the most text one `INSERT` carries (well under the 16 MiB `max_allowed_packet`
/// of both flavours' defaults, 64 MiB on MySQL 8).
const BATCH_ROWS: usize = 500;
const BATCH_BYTES: usize = 1 << 20;

/// The settings every load session starts with, as mysqldump's output sets them:
/// - utf8mb4 both ways, and UTC for TIMESTAMP columns (the snapshot connection reads in UTC too), so nothing is
///   converted on the way;
/// - `sql_log_bin = 0`: the copy must not reach any binary log (a MySQL replica logs by default, and a replica of
///   this replica or a promoted one would replay it);
/// - no foreign key checks (tables are loaded in name order) and NO_AUTO_VALUE_ON_ZERO (a stored 0 in an
///   AUTO_INCREMENT column stays 0).
pub const LOAD_PROLOGUE: [&str; 5] = [
    "SET NAMES utf8mb4",
    "SET SESSION time_zone = '+00:00'",
    "SET SESSION sql_log_bin = 0",
    "SET SESSION foreign_key_checks = 0",
    "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'",
];

/// One table (or view) of the copy: the statements that re-create it on a replica, and how many rows they carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopy {
    pub rows: u64,
    pub statements: Vec<String>,
}

/// A table of the primary as `information_schema.TABLES` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub name: String,
    pub view: bool,
}

impl Db {
    /// On the primary: opens the consistent snapshot this connection reads the copy through, and returns the binlog
    /// coordinates that match it. MariaDB reads them from the snapshot's status variables, without a lock; MySQL
    /// holds `FLUSH TABLES WITH READ LOCK` from just before the snapshot starts until the position is read.
    pub async fn start_snapshot(&mut self) -> Result<Coordinates, DbError> {
        let what = "opening a consistent snapshot of the primary";
        self.leave_appdb().await?;
        self.run(what, &Statement::plain(LOAD_PROLOGUE[1].to_string())).await?;
        match self.dialect.snapshot_coordinates() {
            SnapshotCoordinates::SnapshotStatus => {
                for statement in self.dialect.snapshot_start() {
                    self.run(what, &statement).await?;
                }
                let statement = self.dialect.snapshot_status();
                let rows = self.rows(what, &statement).await?;
                snapshot_status_coordinates(&rows).ok_or_else(|| DbError::BinaryLogOff {
                    server: self.server.clone(),
                    statement: statement.text().to_string(),
                })
            }
            SnapshotCoordinates::BriefGlobalReadLock => {
                for statement in self.dialect.global_read_lock() {
                    self.run(what, &statement).await?;
                }
                let locked = async {
                    for statement in self.dialect.snapshot_start() {
                        self.run(what, &statement).await?;
                    }
                    self.capture_coordinates().await
                }
                .await;
                // Released whatever happened: the primary's writers wait while it is held.
                let released = self.run(what, &self.dialect.release_read_lock()).await;
                let coordinates = locked?;
                released?;
                Ok(coordinates)
            }
        }
    }

    /// Ends the snapshot transaction.
    pub async fn end_snapshot(&mut self) -> Result<(), DbError> {
        let statement = self.dialect.snapshot_end();
        self.run("ending the snapshot", &statement).await
    }

    /// The databases to copy: every schema but the server's own.
    pub async fn user_databases(&mut self) -> Result<Vec<String>, DbError> {
        let statement = self.dialect.user_databases();
        let rows = self.rows("listing the databases", &statement).await?;
        Ok(first_column(&rows))
    }

    /// `CREATE DATABASE` as the server prints it (character set and collation included).
    pub async fn database_definition(&mut self, database: &str) -> Result<String, DbError> {
        let statement = Statement::plain(format!("SHOW CREATE DATABASE {}", quote_identifier(database)));
        let rows = self.rows("reading a database's definition", &statement).await?;
        self.second_column(&rows, "SHOW CREATE DATABASE")
    }

    /// The tables and views of `database`, views last.
    pub async fn table_names(&mut self, database: &str) -> Result<Vec<TableName>, DbError> {
        let statement = self.dialect.tables(database);
        let rows = self.rows("listing the tables", &statement).await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let name = row.first()?.1.clone()?;
                let kind = row.get(1).and_then(|(_, v)| v.clone()).unwrap_or_default();
                Some(TableName {
                    name,
                    view: kind == "VIEW",
                })
            })
            .collect())
    }

    /// Reads one table through the snapshot: its `CREATE TABLE` (or `CREATE VIEW`) and its rows as `INSERT`s of at
    /// most [`BATCH_ROWS`] rows.
    pub async fn copy_table(&mut self, database: &str, table: &TableName) -> Result<TableCopy, DbError> {
        let qualified = format!("{}.{}", quote_identifier(database), quote_identifier(&table.name));
        let what = format!("copying {database}.{}", table.name);
        let show = Statement::plain(format!("SHOW CREATE TABLE {qualified}"));
        let rows = self.rows(&what, &show).await?;
        let create = self.second_column(&rows, "SHOW CREATE TABLE")?;
        let mut statements = vec![format!("USE {}", quote_identifier(database)), create];
        if table.view {
            return Ok(TableCopy { rows: 0, statements });
        }
        let columns_statement = self.dialect.insertable_columns(database, &table.name);
        let columns = first_column(&self.rows(&what, &columns_statement).await?);
        let select = Statement::plain(format!(
            "SELECT {} FROM {qualified}",
            columns
                .iter()
                .map(|c| quote_identifier(c))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        let mut count = 0u64;
        let insert = |batch: &mut Vec<String>| insert_statement(&qualified, &columns, &std::mem::take(batch));
        let mut result = match self.conn.query_iter(select.text()).await {
            Ok(result) => result,
            Err(err) => return Err(self.statement_error(&what, &select, err)),
        };
        loop {
            let row: Option<Row> = match result.next().await {
                Ok(row) => row,
                Err(err) => {
                    drop(result);
                    return Err(self.statement_error(&what, &select, err));
                }
            };
            let Some(row) = row else { break };
            let tuple = row_tuple(row.unwrap());
            batch_bytes += tuple.len();
            batch.push(tuple);
            count += 1;
            if batch.len() >= BATCH_ROWS || batch_bytes >= BATCH_BYTES {
                statements.push(insert(&mut batch));
                batch_bytes = 0;
            }
        }
        if !batch.is_empty() {
            statements.push(insert(&mut batch));
        }
        Ok(TableCopy {
            rows: count,
            statements,
        })
    }

    /// On a replica: `STOP REPLICA`, `RESET REPLICA ALL`. Nothing is applied any more, and the replica forgets its
    /// source.
    pub async fn reset_replica(&mut self) -> Result<(), DbError> {
        for statement in self.dialect.reset_replica() {
            self.run("stopping and resetting replication", &statement).await?;
        }
        Ok(())
    }

    /// On a replica reached over TCP (MySQL, MariaDB 12+): lets root write the copy while read_only stays ON for
    /// every ordinary account. [`Db::protect_replica`] puts the protection back.
    pub async fn open_for_seed(&mut self) -> Result<(), DbError> {
        if let SeedAccess::Tcp(statement) = self.dialect.seed_access() {
            self.run("letting root write the copy", &statement).await?;
        }
        Ok(())
    }

    /// Runs the load over this TCP session, after [`LOAD_PROLOGUE`]. For [`SeedAccess::Tcp`].
    pub async fn load(&mut self, statements: &[String]) -> Result<(), DbError> {
        for text in LOAD_PROLOGUE
            .iter()
            .map(|s| s.to_string())
            .chain(statements.iter().cloned())
        {
            self.run("loading the copy", &Statement::plain(text)).await?;
        }
        // The session is reused (the round trip, the protection): its defaults come back.
        self.change_user_for_load().await
    }

    /// On a replica reached over TCP: the probe account `lab verify` logs in with, not binlogged. A replica
    /// re-seeded from a snapshot may never have received it through replication (its binlog was purged).
    pub async fn ensure_probe_user_locally(&mut self, probe: &Credentials) -> Result<(), DbError> {
        self.remember(&probe.password);
        let what = "creating the probe account on the replica";
        self.run(what, &Statement::plain(LOAD_PROLOGUE[2].to_string())).await?;
        let mut result = Ok(());
        for statement in self.dialect.probe_user(probe) {
            result = self.run(what, &statement).await;
            if result.is_err() {
                break;
            }
        }
        self.change_user_for_load().await?;
        result
    }

    /// `SELECT COUNT(*)` of one table.
    pub async fn row_count(&mut self, database: &str, table: &str) -> Result<u64, DbError> {
        let statement = Statement::plain(format!(
            "SELECT COUNT(*) FROM {}.{}",
            quote_identifier(database),
            quote_identifier(table)
        ));
        let rows = self.rows("counting the copied rows", &statement).await?;
        Ok(first_column(&rows).first().and_then(|n| n.parse().ok()).unwrap_or(0))
    }

    /// `CHECKSUM TABLE` of one table: equal on two servers when they hold the same rows, for tables without
    /// generated columns (with a VIRTUAL column, MariaDB 10.11.19 gave different results for equal rows: measured in
    /// reseed_tests). `None` when the table does not exist.
    pub async fn table_checksum(&mut self, database: &str, table: &str) -> Result<Option<String>, DbError> {
        let statement = Statement::plain(format!(
            "CHECKSUM TABLE {}.{}",
            quote_identifier(database),
            quote_identifier(table)
        ));
        let rows = self.rows("comparing a table", &statement).await?;
        Ok(rows.first().and_then(|row| row.get(1)).and_then(|(_, v)| v.clone()))
    }

    /// MariaDB before 12.0: whether the replica has the socket-only account `'mysql'@'localhost'`.
    pub async fn has_socket_admin(&mut self) -> Result<bool, DbError> {
        let statement = self.dialect.socket_admin_exists();
        let rows = self.rows("looking for the socket account", &statement).await?;
        Ok(first_column(&rows)
            .first()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
            > 0)
    }

    /// MariaDB before 12.0, on a replica whose root may still write: creates the socket-only account locally.
    pub async fn create_socket_admin_locally(&mut self) -> Result<(), DbError> {
        let what = "creating the socket account on the replica";
        let statements = self.dialect.socket_admin_local();
        let (on, rest) = statements.split_last().expect("the section ends with sql_log_bin = 1");
        let mut result = Ok(());
        for statement in rest {
            result = self.run(what, statement).await;
            if result.is_err() {
                break;
            }
        }
        self.run(what, on).await?;
        result
    }

    /// MariaDB before 12.0, on the primary: the socket-only break-glass account, created after `USE appdb` so that
    /// replication brings it to every replica. Does nothing on other servers.
    pub async fn ensure_socket_admin(&mut self) -> Result<(), DbError> {
        let Some(statements) = self.dialect.socket_admin() else {
            return Ok(());
        };
        self.in_appdb = true;
        for statement in statements {
            self.run("creating the replicas' socket account", &statement).await?;
        }
        Ok(())
    }

    async fn change_user_for_load(&mut self) -> Result<(), DbError> {
        self.in_appdb = true;
        self.leave_appdb().await
    }

    fn second_column(&self, rows: &[Vec<(String, Option<String>)>], what: &str) -> Result<String, DbError> {
        rows.first()
            .and_then(|row| row.get(1))
            .and_then(|(_, value)| value.clone())
            .ok_or_else(|| DbError::Statement {
                server: self.server.clone(),
                what: what.to_string(),
                code: 0,
                message: format!("unexpected result {rows:?}"),
                fix: statement_fix(0),
            })
    }
}

/// A backquoted identifier: backquotes inside are doubled.
pub fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `DROP DATABASE IF EXISTS`, then the primary's `CREATE DATABASE`: the replica's copy is replaced whole.
pub fn replace_database(database: &str, definition: &str) -> Vec<String> {
    vec![
        format!("DROP DATABASE IF EXISTS {}", quote_identifier(database)),
        definition.to_string(),
    ]
}

/// One multi-row `INSERT` into `qualified` (already quoted) for these column names and `(...)` tuples.
pub fn insert_statement(qualified: &str, columns: &[String], tuples: &[String]) -> String {
    format!(
        "INSERT INTO {qualified} ({}) VALUES {}",
        columns
            .iter()
            .map(|c| quote_identifier(c))
            .collect::<Vec<_>>()
            .join(", "),
        tuples.join(", ")
    )
}

/// A row as an SQL tuple. The text protocol sends every value as bytes: valid UTF-8 becomes an escaped string
/// literal, anything else a hex literal (binary columns), NULL stays NULL; the server converts to the column type.
fn row_tuple(values: Vec<Value>) -> String {
    let literals: Vec<String> = values.iter().map(|v| v.as_sql(false)).collect();
    format!("({})", literals.join(", "))
}

/// `Binlog_snapshot_file` and `Binlog_snapshot_position` from `SHOW STATUS LIKE 'binlog_snapshot_%'` (rows of
/// Variable_name, Value); `None` when binary logging is off (the file is empty).
fn snapshot_status_coordinates(rows: &[Vec<(String, Option<String>)>]) -> Option<Coordinates> {
    let value = |name: &str| {
        rows.iter().find_map(|row| {
            let key = row.first()?.1.as_deref()?;
            key.eq_ignore_ascii_case(name).then(|| row.get(1)?.1.clone())?
        })
    };
    let file = value("Binlog_snapshot_file").filter(|f| !f.is_empty())?;
    let position = value("Binlog_snapshot_position")?.trim().parse().ok()?;
    Some(Coordinates { file, position })
}

fn first_column(rows: &[Vec<(String, Option<String>)>]) -> Vec<String> {
    rows.iter()
        .filter_map(|row| row.first().and_then(|(_, v)| v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::dialect::{Dialect, READ_LOCK_WAIT_SECONDS};
    use crate::database::{Flavor, parse_version};

    fn dialect(version: &str) -> Dialect {
        Dialect::for_version(&parse_version(version).expect("parses"))
    }

    fn texts(statements: &[Statement]) -> Vec<&str> {
        statements.iter().map(Statement::text).collect()
    }

    #[test]
    fn mariadb_reads_the_snapshot_position_from_status_variables_without_a_lock() {
        let d = dialect("10.11.19-MariaDB-0+deb12u1-log");
        assert_eq!(d.snapshot_coordinates(), SnapshotCoordinates::SnapshotStatus);
        assert_eq!(d.snapshot_status().text(), "SHOW STATUS LIKE 'binlog_snapshot_%'");
        let row = |k: &str, v: &str| {
            vec![
                ("Variable_name".into(), Some(k.into())),
                ("Value".into(), Some(v.into())),
            ]
        };
        assert_eq!(
            snapshot_status_coordinates(&[
                row("Binlog_snapshot_file", "mysql-bin.000003"),
                row("Binlog_snapshot_position", "1044"),
            ]),
            Some(Coordinates {
                file: "mysql-bin.000003".into(),
                position: 1044
            })
        );
        // Binary logging off: the file is empty.
        assert_eq!(
            snapshot_status_coordinates(&[row("Binlog_snapshot_file", ""), row("Binlog_snapshot_position", "0")]),
            None
        );
    }

    /// MySQL has no Binlog_snapshot_* status variables, so the position must be read while writes are held back:
    /// refman 8.4 mysqldump, "--single-transaction" with "--source-data": "a global read lock (FLUSH TABLES WITH
    /// READ LOCK) is acquired only for a short time at the beginning of the dump"; refman 8.4 "START TRANSACTION
    /// ... WITH CONSISTENT SNAPSHOT" (InnoDB, REPEATABLE READ); SHOW BINARY LOG STATUS from 8.2.0, SHOW MASTER
    /// STATUS before (refman 8.4 show-binary-log-status; mysql-notes 2.2, 14).
    #[test]
    fn mysql_takes_the_position_under_a_brief_bounded_global_read_lock() {
        for (version, show) in [
            ("8.0.40", "SHOW MASTER STATUS"),
            ("8.4.10", "SHOW BINARY LOG STATUS"),
            ("9.7.1", "SHOW BINARY LOG STATUS"),
        ] {
            let d = dialect(version);
            assert_eq!(
                d.snapshot_coordinates(),
                SnapshotCoordinates::BriefGlobalReadLock,
                "{version}"
            );
            assert_eq!(
                texts(&d.global_read_lock()),
                [
                    format!("SET SESSION lock_wait_timeout = {READ_LOCK_WAIT_SECONDS}").as_str(),
                    "FLUSH TABLES WITH READ LOCK"
                ]
            );
            assert_eq!(
                texts(&d.snapshot_start()),
                [
                    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                    "START TRANSACTION WITH CONSISTENT SNAPSHOT"
                ]
            );
            assert_eq!(d.binlog_coordinates().text(), show, "{version}");
            assert_eq!(d.release_read_lock().text(), "UNLOCK TABLES");
        }
    }

    /// MySQL: read_only does not stop CONNECTION_ADMIN/SUPER holders, super_read_only does (refman 8.4
    /// server-system-variables, read_only and super_read_only); SET GLOBAL changes the runtime value only, SET PERSIST
    /// (lab up's protection, run again after the copy) is what a restart reads (refman 8.4 persisted-system-variables).
    /// MariaDB 12.0: read_only=ON stops everyone without READ_ONLY ADMIN, NO_LOCK_NO_ADMIN its holders too
    /// (MDEV-36425). MariaDB 10.11/11.x: root lost READ_ONLY ADMIN, so the copy goes through the socket account.
    #[test]
    fn root_gets_to_write_the_copy_while_read_only_stays_on() {
        for version in ["8.0.40", "8.4.10", "9.7.1"] {
            let SeedAccess::Tcp(statement) = dialect(version).seed_access() else {
                panic!("{version}")
            };
            assert_eq!(statement.text(), "SET GLOBAL super_read_only = OFF");
        }
        let SeedAccess::Tcp(statement) = dialect("12.0.2-MariaDB").seed_access() else {
            panic!("12.0")
        };
        assert_eq!(statement.text(), "SET GLOBAL read_only = ON");
        for version in [
            "10.11.19-MariaDB-0+deb12u1-log",
            "11.4.12-MariaDB-ubu2404",
            "11.8.3-MariaDB",
        ] {
            let d = dialect(version);
            assert_eq!(d.seed_access(), SeedAccess::Socket, "{version}");
            let admin = d.socket_admin().expect("created on the primary");
            assert_eq!(
                texts(&admin),
                [
                    "USE appdb",
                    "CREATE USER IF NOT EXISTS 'mysql'@'localhost' IDENTIFIED VIA unix_socket",
                    "GRANT ALL PRIVILEGES ON *.* TO 'mysql'@'localhost' WITH GRANT OPTION",
                ]
            );
            assert_eq!(texts(&d.socket_admin_local())[0], "SET SESSION sql_log_bin = 0");
        }
        assert!(
            dialect("8.4.10").socket_admin().is_none(),
            "MySQL has no unix_socket plugin loaded"
        );
        assert_eq!(dialect("8.4.10").version().flavor, Flavor::MySql);
    }

    #[test]
    fn the_replica_is_stopped_and_forgets_its_source_in_its_own_dialect() {
        assert_eq!(
            texts(&dialect("8.4.10").reset_replica()),
            ["STOP REPLICA", "RESET REPLICA ALL"]
        );
        assert_eq!(
            texts(&dialect("8.0.21").reset_replica()),
            ["STOP SLAVE", "RESET SLAVE ALL"]
        );
        assert_eq!(
            texts(&dialect("10.11.19-MariaDB").reset_replica()),
            ["STOP SLAVE", "RESET SLAVE ALL"]
        );
    }

    #[test]
    fn only_user_databases_are_copied_and_generated_columns_are_left_out() {
        let d = dialect("10.11.19-MariaDB");
        let text = d.user_databases().text().to_string();
        for system in ["'mysql'", "'sys'", "'performance_schema'", "'information_schema'"] {
            assert!(text.contains(system), "{text}");
        }
        assert!(d.tables("app'db").text().contains("TABLE_SCHEMA = 'app''db'"));
        let columns = d.insertable_columns("appdb", "t").text().to_string();
        assert!(columns.contains("NOT LIKE '%VIRTUAL GENERATED%'"), "{columns}");
        assert!(columns.contains("NOT LIKE '%STORED GENERATED%'"), "{columns}");
    }

    #[test]
    fn identifiers_and_values_are_quoted_so_that_no_name_or_row_breaks_the_load() {
        assert_eq!(quote_identifier("odd`name"), "`odd``name`");
        assert_eq!(
            replace_database("appdb", "CREATE DATABASE `appdb`"),
            ["DROP DATABASE IF EXISTS `appdb`", "CREATE DATABASE `appdb`"]
        );
        let tuple = row_tuple(vec![
            Value::Bytes(b"1".to_vec()),
            Value::Bytes(b"it's; a \\ row\n".to_vec()),
            Value::NULL,
            Value::Bytes(vec![0xff, 0x00]),
        ]);
        assert_eq!(tuple, r"('1', 'it\'s; a \\ row\n', NULL, 0xFF00)");
        assert_eq!(
            insert_statement(
                "`appdb`.`t`",
                &["id".into(), "v".into()],
                &["('1', 'a')".into(), "('2', 'b')".into()]
            ),
            "INSERT INTO `appdb`.`t` (`id`, `v`) VALUES ('1', 'a'), ('2', 'b')"
        );
    }
}
