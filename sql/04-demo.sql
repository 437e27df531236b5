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

-- name: account_plugin
-- The authentication plugin of an account: caching_sha2_password (MySQL 8's default) needs TLS or the source's
-- RSA public key for a replica's first login after the source restarts; mysql_native_password (MariaDB) does not.
SELECT plugin FROM mysql.user WHERE user = {{USER}};

-- name: public_key_option
-- MySQL only, with the IO thread stopped: whether the replica asks its source for the RSA public key. Without it,
-- a caching_sha2_password account fails with IO error 2061 once the source's password cache is empty (a restart).
{{CHANGE_SOURCE_TO}} {{GET_PUBLIC_KEY}} = {{ENABLED}};
