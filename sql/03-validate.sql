-- Validation, run by `lab up` and `lab verify`. Each "-- name:" section is one step.
--
-- Why this differs from the tutorial's scripts/03-validate.sql:
-- * write_marker runs on ONE connection, after USE appdb: binlog-do-db filters DDL by the default database, so a
--   CREATE TABLE appdb.t without USE appdb is not replicated and the replica later stops with 1146.
-- * The schema keeps the tutorial's msg column but adds what repeated runs need: an AUTO_INCREMENT id (the
--   tutorial's fixed id 1 fails with 1062 on the second run), a UNIQUE marker written per run (so a replica is
--   checked for THIS run's row), and written_at, the primary's time of the write (replicated as a value in ROW
--   format). InnoDB, so the read-only check below can be rolled back.
-- * The replica's safety test runs in a transaction that is always rolled back: if the replica wrongly accepts the
--   write (root on MariaDB, which read_only does not stop), no row stays behind to collide with the primary's next
--   insert (error 1062 would stop replication). Expected: error 1290.
-- * Values ({{MARKER}}) become quoted, escaped SQL literals (src/database/dialect.rs).

-- name: write_marker
USE appdb;
CREATE TABLE IF NOT EXISTS replication_test (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  marker VARCHAR(64) NOT NULL UNIQUE,
  msg VARCHAR(64) NOT NULL DEFAULT 'written_on_primary',
  written_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB;
INSERT INTO replication_test (marker, msg) VALUES ({{MARKER}}, 'written_on_primary');

-- name: has_marker
SELECT COUNT(*) FROM appdb.replication_test WHERE marker = {{MARKER}};

-- name: read_only_check
START TRANSACTION;
INSERT INTO appdb.replication_test (marker, msg) VALUES ({{MARKER}}, 'should_fail');
ROLLBACK;
