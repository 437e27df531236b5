-- Statements `lab exercise` runs to break a lab as a careless person would, and to fix it. Each "-- name:" section
-- is one step; placeholders {{NAME}} are filled by src/database/dialect.rs.

-- name: source_credentials
-- A replica's user and password for its source, changed in place. Without a host or port, CHANGE ... TO keeps the
-- replica's position (refman change-replication-source-to: only a new SOURCE_HOST or SOURCE_PORT makes the old file
-- and position "no longer applicable"; the same for MariaDB's CHANGE MASTER). MariaDB refuses CHANGE MASTER while
-- either thread runs (1198, "run STOP SLAVE first", tested on 10.11); MySQL 8.0.23+ needs only the receiver (IO)
-- thread stopped for these options. Stopping both, then starting both, works on every version.
{{STOP_REPLICA}};
{{CHANGE_SOURCE_TO}}
  {{SOURCE_OR_MASTER}}_USER = {{REPLICATION_USER}},
  {{SOURCE_OR_MASTER}}_PASSWORD = {{REPLICATION_PASSWORD}};
{{START_REPLICA}};

-- name: new_table
-- The first table an application creates in appdb, after USE appdb so that binlog-do-db=appdb logs it. DROP TABLE IF
-- EXISTS first: it is always logged, and a second run must log CREATE TABLE again (MariaDB does not log CREATE TABLE
-- IF NOT EXISTS of a table that exists; MySQL does, mysql-notes 14). A replica that never saw CREATE DATABASE appdb
-- stops at the first of them with SQL error 1049 "Unknown database 'appdb'" (mysql-notes 1.1).
USE appdb;
DROP TABLE IF EXISTS lab_exercise_orders;
CREATE TABLE lab_exercise_orders (
  id INT PRIMARY KEY,
  item VARCHAR(50)
);
INSERT INTO lab_exercise_orders VALUES (1, 'first order');

-- name: has_new_table
SELECT COUNT(*) FROM information_schema.TABLES
  WHERE TABLE_SCHEMA = 'appdb' AND TABLE_NAME = 'lab_exercise_orders';
