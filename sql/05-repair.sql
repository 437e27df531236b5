-- `lab repair`: re-seed one replica from a consistent copy of the primary, taken without stopping its writes.
-- Each "-- name:" section is one step; placeholders {{NAME}} are filled by src/database/dialect.rs.
--
-- Not in the tutorial, which sets replicas up once on empty servers and has no way back from a replica that
-- diverged (a write on it, 1062 at the primary's next write to that key) or whose starting binlog is gone (a
-- replica added after the primary purged its first binlog files, 1236).

-- name: reset_replica
-- First on the replica: nothing may be applied onto a half-loaded copy, and forgetting the old source makes
-- `lab up` leave it alone (it refuses a replica marked as being re-seeded; see src/commands/repair.rs).
{{STOP_REPLICA}};
{{RESET_REPLICA_ALL}};

-- name: snapshot_start
-- On one primary connection. REPEATABLE READ is what makes WITH CONSISTENT SNAPSHOT mean anything: every SELECT
-- of this transaction then reads the data as it was here, while other sessions keep writing.
SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ;
START TRANSACTION WITH CONSISTENT SNAPSHOT;

-- name: snapshot_coordinates_mariadb
-- MariaDB only: the binlog file and position that match this session's consistent snapshot, without any lock
-- (Binlog_snapshot_file, Binlog_snapshot_position; MariaDB KB "Enhancements for START TRANSACTION WITH CONSISTENT
-- SNAPSHOT", since 5.3). MySQL has no such status variables.
SHOW STATUS LIKE 'binlog_snapshot_%';

-- name: global_read_lock
-- MySQL only: no status variable ties the binlog position to the snapshot, so writes are held back for the
-- moment it takes to start the snapshot and read the position, as mysqldump --single-transaction --source-data
-- does (refman 8.4 mysqldump, "--single-transaction": FLUSH TABLES WITH READ LOCK "only for a short time at the
-- beginning"). A long-running query would make FLUSH TABLES WITH READ LOCK wait and block every writer behind
-- it: the lock wait is bounded so that the repair gives up instead.
SET SESSION lock_wait_timeout = {{LOCK_WAIT_SECONDS}};
FLUSH TABLES WITH READ LOCK;

-- name: release_read_lock
UNLOCK TABLES;

-- name: snapshot_end
-- Read-only transaction: COMMIT only ends it.
COMMIT;

-- name: user_databases
-- The databases a replica copies: every schema but the server's own.
SELECT SCHEMA_NAME FROM information_schema.SCHEMATA
  WHERE SCHEMA_NAME NOT IN ('mysql', 'sys', 'performance_schema', 'information_schema')
  ORDER BY SCHEMA_NAME;

-- name: tables
-- Tables first, views after them (a view needs its tables); TABLE_TYPE is 'BASE TABLE', 'VIEW', 'SYSTEM VERSIONED'
-- (MariaDB) or 'SEQUENCE' (MariaDB).
SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES
  WHERE TABLE_SCHEMA = {{DATABASE}}
  ORDER BY TABLE_TYPE = 'VIEW', TABLE_NAME;

-- name: insertable_columns
-- Generated columns cannot be given a value (error 3105): they are left out of the copy and recomputed.
-- EXTRA reads VIRTUAL GENERATED / STORED GENERATED on both flavours (MariaDB also says PERSISTENT); MySQL's
-- DEFAULT_GENERATED (an expression default) is an ordinary column.
SELECT COLUMN_NAME FROM information_schema.COLUMNS
  WHERE TABLE_SCHEMA = {{DATABASE}} AND TABLE_NAME = {{TABLE}}
    AND EXTRA NOT LIKE '%VIRTUAL GENERATED%' AND EXTRA NOT LIKE '%STORED GENERATED%'
    AND EXTRA NOT LIKE '%PERSISTENT GENERATED%'
  ORDER BY ORDINAL_POSITION;

-- name: open_for_seed_mysql
-- MySQL: root may write while read_only stays ON for every ordinary account (it has CONNECTION_ADMIN/SUPER);
-- only super_read_only stops it. Lifted for this runtime only: the persisted ON (SET PERSIST, from lab up) is
-- what a restart reads, and the repair persists it again as soon as the copy is in.
SET GLOBAL super_read_only = OFF;

-- name: open_for_seed_no_lock_no_admin
-- MariaDB 12.0+: read_only = ON still stops every account without READ_ONLY ADMIN; NO_LOCK_NO_ADMIN comes back
-- with the replica's protection once the copy is in.
SET GLOBAL read_only = ON;

-- name: socket_admin_exists
-- MariaDB: the break-glass account of the replicas, reachable only through the server's Unix socket by the OS
-- user that runs the server (unix_socket authentication; TCP logins fail with 1698).
SELECT COUNT(*) FROM mysql.global_priv WHERE User = 'mysql' AND Host = 'localhost';

-- name: socket_admin
-- MariaDB's own default installation has this account (mariadb-install-db creates the server's OS user's account
-- with unix_socket); the official images leave it out. On the primary it is created after USE appdb, so that it
-- is binlogged and every replica gets it through replication, which read_only does not stop: it keeps READ_ONLY
-- ADMIN on replicas where lab up took that privilege from root (the port-forward's login can match root@localhost,
-- the socket's account, so both lose it). Only someone who can exec into the pod as that OS user can use it.
USE appdb;
CREATE USER IF NOT EXISTS 'mysql'@'localhost' IDENTIFIED VIA unix_socket;
GRANT ALL PRIVILEGES ON *.* TO 'mysql'@'localhost' WITH GRANT OPTION;

-- name: socket_admin_local
-- The same on one replica only, not binlogged: for a replica that replication never gave the account (added after
-- the primary purged the binlog that created it) and whose root still holds READ_ONLY ADMIN (never protected).
SET SESSION sql_log_bin = 0;
CREATE USER IF NOT EXISTS 'mysql'@'localhost' IDENTIFIED VIA unix_socket;
GRANT ALL PRIVILEGES ON *.* TO 'mysql'@'localhost' WITH GRANT OPTION;
SET SESSION sql_log_bin = 1;
