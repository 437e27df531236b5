-- Replica setup, run by `lab up` on every mysql-1..N over TCP. Each "-- name:" section is one step.
--
-- Why this differs from the tutorial's scripts/02-replica-setup.sql:
-- * Statement spelling follows the server: MySQL 8.0.22+ says STOP/START/RESET REPLICA and SHOW REPLICA STATUS,
--   8.0.23+ CHANGE REPLICATION SOURCE TO with SOURCE_* options, and 8.4 removed the SLAVE/MASTER forms; MariaDB
--   keeps CHANGE MASTER TO and rejects CHANGE REPLICATION SOURCE (1064).
-- * File and position are filled in by `lab` from the coordinates it captured, not typed by hand.
-- * The source host is the primary's stable headless DNS name (given by the caller), with an explicit port.
-- * {{SOURCE_OR_MASTER}}_CONNECT_RETRY is short (5 s instead of the default 60 s): after a primary restart the replica
--   reconnects within seconds instead of a minute.
-- * {{FLAVOR_SOURCE_OPTIONS}} adds, on MySQL only, SOURCE_RETRY_COUNT=0, no limit (MASTER_RETRY_COUNT before 8.0.23):
--   MySQL 8.4 lowered its default to 10, so a replica would stop for good after ~50 s of primary downtime.
--   MariaDB's CHANGE MASTER has no such option before 12 (1064); its server default is 100000 attempts.
--   It also adds, on MySQL only, GET_SOURCE_PUBLIC_KEY=1 (GET_MASTER_PUBLIC_KEY=1 before 8.0.23):
--   the replication account uses caching_sha2_password, which without TLS or the RSA public key fails with IO
--   error 2061, intermittently (it works while the password hash is cached). MariaDB rejects the option (1064) and
--   gets MASTER_USE_GTID = no instead: 10.10+ would otherwise switch file/position mode to GTID on its own (Note 4190).
-- * The tutorial's SHOW SLAVE STATUS\G is a separate step, read by column name in both spellings.
--
-- Placeholders {{NAME}} are filled by src/database/dialect.rs (values become quoted, escaped SQL literals).

-- name: configure_replica
{{STOP_REPLICA}};
{{RESET_REPLICA_ALL}};
{{CHANGE_SOURCE_TO}}
  {{SOURCE_OR_MASTER}}_HOST = {{SOURCE_HOST}},
  {{SOURCE_OR_MASTER}}_PORT = {{SOURCE_PORT}},
  {{SOURCE_OR_MASTER}}_USER = {{REPLICATION_USER}},
  {{SOURCE_OR_MASTER}}_PASSWORD = {{REPLICATION_PASSWORD}},
  {{SOURCE_OR_MASTER}}_LOG_FILE = {{SOURCE_LOG_FILE}},
  {{SOURCE_OR_MASTER}}_LOG_POS = {{SOURCE_LOG_POS}},
  {{SOURCE_OR_MASTER}}_CONNECT_RETRY = {{CONNECT_RETRY}}{{FLAVOR_SOURCE_OPTIONS}};
{{START_REPLICA}};

-- name: start_replica
-- Not in the tutorial. A replica that points at the primary but whose threads are stopped (a run interrupted between
-- CHANGE and START, a person's STOP, MySQL 8.4's IO thread giving up after its retry count) is started where it
-- stopped: configuring it again from the origin would replay rows it already applied.
{{START_REPLICA}};

-- name: replica_status
{{SHOW_REPLICA_STATUS}};

-- name: worker_errors
-- MySQL only. Its multi-threaded applier (on by default from 8.0.27, replica_parallel_workers=4) reports "Coordinator
-- stopped because there were error(s) in the worker(s). ..." as Last_SQL_Error; the worker's own error (e.g. 1049
-- Unknown database 'appdb') is only in this table (measured on MySQL 8.0.40, mysql-notes 14). MariaDB's status
-- carries the real error.
SELECT LAST_ERROR_NUMBER, LAST_ERROR_MESSAGE
  FROM performance_schema.replication_applier_status_by_worker
  WHERE LAST_ERROR_NUMBER <> 0
  ORDER BY LAST_ERROR_TIMESTAMP DESC;

-- name: wait_for_position
-- Blocks until the SQL thread has applied the primary's position: >= 0 reached, -1 timed out, NULL when the SQL
-- thread is not running (or replication is not configured). SOURCE_POS_WAIT from MySQL 8.0.26; MariaDB has only
-- MASTER_POS_WAIT (SOURCE_POS_WAIT is error 1305 there).
SELECT {{POS_WAIT_FUNCTION}}({{SOURCE_LOG_FILE}}, {{SOURCE_LOG_POS}}, {{TIMEOUT_SECONDS}});

-- name: protect_replica
-- MySQL only, after the replica is configured. Not in the config file: super-read-only=ON there at first start
-- makes the image's own init SQL fail with 1290, and MariaDB aborts on the unknown option. SET PERSIST survives
-- restarts (mysqld-auto.cnf). MariaDB has no super_read_only (1193): see the sections below.
SET PERSIST super_read_only = ON;

-- name: protect_replica_no_lock_no_admin
-- MariaDB 12.0+ (MDEV-36425): read_only=NO_LOCK_NO_ADMIN also stops READ_ONLY ADMIN holders such as root, without
-- taking the privilege away (not verified on a 12.x server: no such server here). A runtime setting: the
-- config's read-only=ON comes back after a restart, and the next `lab up` sets it again (`lab verify` reports
-- root's accepted write meanwhile).
SET GLOBAL read_only = NO_LOCK_NO_ADMIN;

-- name: current_account
-- The account this TCP login matched (root@'%' on the official images, which run with skip-name-resolve and drop
-- root@127.0.0.1/::1): the account port-forwards and `mysql -h 127.0.0.1` use.
SELECT CURRENT_USER();

-- name: account_grants
-- Error 1141 when the account does not exist.
SHOW GRANTS FOR {{ACCOUNT_USER}}@{{ACCOUNT_HOST}};

-- name: revoke_read_only_admin
-- MariaDB before 12.0: read_only=ON does not stop holders of READ_ONLY ADMIN, which root has through GRANT ALL
-- PRIVILEGES (since 10.11 SUPER no longer implies it, MDEV-29596), so the tutorial's safety test (a root INSERT on
-- the replica) succeeded and the primary's next insert stopped replication with 1062. Taking the privilege away
-- makes root's writes fail with 1290, like everyone else's; replication, STOP/START SLAVE and CHANGE MASTER keep
-- working (REPLICATION SLAVE ADMIN). Run only when SHOW GRANTS still lists the privilege: a revoked root cannot
-- revoke it again (1045). sql_log_bin = 0: the revoke is local to this replica and must not reach any binary log
-- (a MariaDB replica with log-bin would write it, and a replica of this replica or a promoted one would apply it).
-- root@'localhost' (the Unix socket, `kubectl exec ... mariadb -uroot -p` without -h) keeps the privilege unless it
-- is the account TCP logins match: it is the break-glass account for a promotion (SET GLOBAL read_only=OFF needs
-- READ_ONLY ADMIN, error 1227 without) and for repairs, since a revoked root cannot grant the privilege back.
SET SESSION sql_log_bin = 0;
REVOKE READ_ONLY ADMIN ON *.* FROM {{ACCOUNT_USER}}@{{ACCOUNT_HOST}};
SET SESSION sql_log_bin = 1;
