-- Primary setup, run by `lab up` on mysql-0 over TCP. Each "-- name:" section is one step, run by its own call.
--
-- Why this differs from the tutorial's scripts/01-primary-setup.sql:
-- * Order. The tutorial runs CREATE DATABASE appdb first and SHOW MASTER STATUS last. With binlog-do-db=appdb,
--   CREATE DATABASE appdb is itself written to the binlog, so coordinates read after it point past it: the replica
--   never creates appdb and stops with error 1049 at the first table. `lab` captures the coordinates
--   (binlog_coordinates) BEFORE running the appdb section.
-- * IDENTIFIED BY instead of IDENTIFIED WITH mysql_native_password BY: the latter is a syntax error (1064) on
--   MariaDB, disabled by default in MySQL 8.4 and removed in 9.0. On MySQL the account then uses
--   caching_sha2_password, so the replica asks for the primary's public key (see 02-replica-setup.sql).
-- * ALTER USER after CREATE USER IF NOT EXISTS: a re-run after the Secret changed sets the new password.
-- * No FLUSH PRIVILEGES: account statements take effect at once.
-- * The replication account's statements run with sql_log_bin = 0: the replica does not need that account, and
--   they must not reach it. With no default database and binlog-do-db=appdb, MariaDB does not binlog them anyway,
--   but MySQL does (account statements ignore binlog-do-db there; measured on 8.0.40, mysql-notes 14). On a re-run
--   MySQL would then log ALTER USER and GRANT but not CREATE USER IF NOT EXISTS (logged only when it creates a user,
--   refman replication-features-create-if-not-exists), and a replica without the account would stop with 1396.
-- * The probe account (not in the tutorial) is created AFTER USE appdb on purpose: then it IS binlogged on both
--   flavours and reaches every replica, where it proves that read_only stops ordinary accounts. On a re-run MySQL
--   logs its ALTER USER and GRANT (not the CREATE USER IF NOT EXISTS of an existing account): the replicas have the
--   account from the first run, so they apply.
--
-- Placeholders {{NAME}} are filled by src/database/dialect.rs: values (user names, passwords) become quoted,
-- escaped SQL string literals; keywords come from the server's flavour and version.

-- name: replication_user
SET SESSION sql_log_bin = 0;
CREATE USER IF NOT EXISTS {{REPLICATION_USER}}@'%' IDENTIFIED BY {{REPLICATION_PASSWORD}};
ALTER USER {{REPLICATION_USER}}@'%' IDENTIFIED BY {{REPLICATION_PASSWORD}};
GRANT REPLICATION SLAVE ON *.* TO {{REPLICATION_USER}}@'%';
SET SESSION sql_log_bin = 1;

-- name: binlog_coordinates
-- SHOW MASTER STATUS on MariaDB and MySQL before 8.2; SHOW BINARY LOG STATUS on MySQL 8.2+ (8.4 removed the old
-- form, MariaDB rejects the new one). Columns File and Position are read by name.
{{SHOW_BINLOG_STATUS}};

-- name: binary_logs
-- The binlog files the primary still has (both flavours; columns Log_name, File_size read by name). MySQL purges
-- files older than binlog_expire_logs_seconds (30 days), MariaDB's images may set expire_logs_days, and a primary
-- whose data directory was re-initialised starts again at mysql-bin.000001: a recorded origin can vanish.
SHOW BINARY LOGS;

-- name: appdb
-- Binlogged even when appdb already exists (Note 1007), so a re-run also repairs a replica that lacks it.
CREATE DATABASE IF NOT EXISTS appdb;

-- name: probe_user
USE appdb;
CREATE USER IF NOT EXISTS {{PROBE_USER}}@'%' IDENTIFIED BY {{PROBE_PASSWORD}};
ALTER USER {{PROBE_USER}}@'%' IDENTIFIED BY {{PROBE_PASSWORD}};
GRANT SELECT, INSERT ON appdb.* TO {{PROBE_USER}}@'%';
