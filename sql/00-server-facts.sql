-- Server facts for the health report, read from every server `lab` connects to.
--
-- Not in the tutorial, which only runs SHOW VARIABLES LIKE 'server_id' in its health-check script. The report also
-- needs a unique identity per server and the read-only settings:
-- * {{SERVER_UUID}}: @@server_uuid on MySQL. MariaDB has no server_uuid (error 1193); its @@server_uid (a hash of
--   host name, data directory and port) serves the same "are these two different servers?" check.
-- * {{SUPER_READ_ONLY}}: @@super_read_only on MySQL; NULL on MariaDB, which has no such variable (1193).
--
-- Placeholders {{NAME}} are filled by src/database/dialect.rs.

-- name: server_facts
SELECT VERSION(), @@server_id, {{SERVER_UUID}}, @@read_only, {{SUPER_READ_ONLY}}, @@log_bin;
