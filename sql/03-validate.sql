-- Validation, run by `lab up` and `lab verify`. Each "-- name:" section is one step.
--
-- Why this differs from the tutorial's scripts/03-validate.sql:
-- * `lab` writes its markers to a table of its own, appdb.lab_validation, and never touches the tutorial's
--   appdb.replication_test: the tutorial's script (CREATE TABLE IF NOT EXISTS replication_test (id INT PRIMARY KEY,
--   msg VARCHAR(50)); INSERT INTO replication_test VALUES (1, 'written_on_primary')) must keep working on a lab that
--   `lab up` built. Had `lab` created replication_test with its own columns, that INSERT would fail with 1136 (column
--   count) and the student's table would be lab's. The table is still in appdb: binlog-do-db=appdb replicates only
--   appdb, and the round trip must prove what the tutorial's table relies on.
-- * write_marker runs on ONE connection, after USE appdb: binlog-do-db filters DDL by the default database, so a
--   CREATE TABLE appdb.t without USE appdb is not replicated and the replica later stops with 1146.
-- * The schema adds what repeated runs need: an AUTO_INCREMENT id (a fixed id like the tutorial's 1 fails with 1062
--   on the second run), a UNIQUE marker written per run (so a replica is checked for THIS run's row), and
--   written_at, the primary's time of the write (replicated as a value in ROW format). InnoDB, so the read-only
--   check below can be rolled back.
-- * The replica's safety test (the tutorial's INSERT of 'should_fail' on the replica) runs on lab_validation in a
--   transaction that is always rolled back: if the replica wrongly accepts the write, no row stays behind to
--   collide with the primary's next insert (error 1062 would stop replication). Expected: error 1290, as root and
--   as an ordinary account, on MySQL (super_read_only) and on MariaDB (root without READ_ONLY ADMIN).
-- * Values ({{MARKER}}) become quoted, escaped SQL literals (src/database/dialect.rs).

-- name: write_marker
USE appdb;
CREATE TABLE IF NOT EXISTS lab_validation (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  marker VARCHAR(64) NOT NULL UNIQUE,
  msg VARCHAR(64) NOT NULL DEFAULT 'written_on_primary',
  written_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB;
INSERT INTO lab_validation (marker, msg) VALUES ({{MARKER}}, 'written_on_primary');

-- name: has_marker
SELECT COUNT(*) FROM appdb.lab_validation WHERE marker = {{MARKER}};

-- name: read_only_check
START TRANSACTION;
INSERT INTO appdb.lab_validation (marker, msg) VALUES ({{MARKER}}, 'should_fail');
ROLLBACK;
