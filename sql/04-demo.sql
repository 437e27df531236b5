-- Statements `lab demo` runs to show the tutorial's behaviours live, each undone before the demo ends.
-- Each "-- name:" section is one step; placeholders {{NAME}} are filled by src/database/dialect.rs.

-- name: stop_sql_thread
-- The lag demo: the replica keeps receiving the primary's events (IO thread) but stops applying them.
{{STOP_REPLICA}} SQL_THREAD;

-- name: start_sql_thread
{{START_REPLICA}} SQL_THREAD;

-- name: stop_io_thread
{{STOP_REPLICA}} IO_THREAD;

-- name: start_io_thread
{{START_REPLICA}} IO_THREAD;

-- name: set_server_id
-- A runtime change only (not persisted): a restart, or the same statement with the pod's own id, undoes it.
SET GLOBAL server_id = {{SERVER_ID}};
