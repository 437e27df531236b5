//! The database adapter: the only module that imports mysql_async; flavour and version dialects.
//!
//! Pure parts, tested without a server: [`parse_version`], [`Dialect`] (statements rendered from the files in
//! `sql/`), [`parse_replica_status`] and [`ReplicaStatus::progress`], [`explain_replication_error`]. The adapter,
//! [`Db`], holds one TCP connection and runs the tutorial's steps in the corrected order:
//!
//! primary: [`Db::ensure_replication_user`] → [`Db::capture_coordinates`] → [`Db::ensure_appdb`] →
//! [`Db::ensure_probe_user`]; each replica: [`Db::configure_replica`] → [`Db::wait_replication_running`] →
//! [`Db::protect_replica`]; validation: [`Db::write_marker`] (primary) → [`Db::wait_for_coordinates`] →
//! [`Db::has_marker`] → [`Db::read_only_test`] (replicas, as root and as the probe account).

mod conn;
mod dialect;
mod error;
mod findings;
mod reseed;
mod status;
mod version;

#[cfg(test)]
mod adapter_tests;
#[cfg(test)]
mod origin_tests;
#[cfg(test)]
mod reseed_tests;
#[cfg(test)]
mod test_support;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::secret::SecretString;

pub use conn::{Db, Protection, ReadOnlyOutcome};
pub use dialect::{
    Account, CONNECT_RETRY_SECONDS, Dialect, ReplicaProtection, SOURCE_RETRY_COUNT, Statement, holds_read_only_admin,
    quote_literal, revoke_targets,
};
pub use dialect::{READ_LOCK_WAIT_SECONDS, SeedAccess, SnapshotCoordinates};
pub use error::DbError;
pub(crate) use error::scrub_with;
pub use findings::{Finding, explain_replication_error, is_transient_replication_error};
pub use reseed::{LOAD_PROLOGUE, TableCopy, TableName, quote_identifier, replace_database};
pub use status::{
    CONFIRM_RUNNING_AFTER, ReplicaStatus, ReplicationFailure, ReplicationProgress, ReplicationThread, ThreadState,
    confirm_running, parse_replica_status, replica_status_from_rows,
};
pub use version::{Flavor, OLDEST_MARIADB, OLDEST_MYSQL, ServerVersion, check_supported, parse_version};

/// The database the lab replicates (`binlog-do-db=appdb` on the primary).
pub const APP_DATABASE: &str = "appdb";
/// `lab`'s own validation table in [`APP_DATABASE`]. Not the tutorial's `replication_test`, which belongs to the
/// student and which `lab` never writes to (see sql/03-validate.sql).
pub const VALIDATION_TABLE: &str = "lab_validation";
/// The non-admin account used to prove that `read_only` stops ordinary clients.
pub const PROBE_USER: &str = "lab_probe";
/// Longest marker the validation table holds (`marker VARCHAR(64)`).
pub const MAX_MARKER_LEN: usize = 64;

/// A position in the primary's binary log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coordinates {
    pub file: String,
    pub position: u64,
}

impl fmt::Display for Coordinates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.position)
    }
}

/// One file of `SHOW BINARY LOGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryLog {
    pub name: String,
    pub size: u64,
}

/// Whether a replica can start from `origin` on a primary that has `logs`: the file must still exist and be at
/// least `origin.position` bytes long (a re-initialised primary reuses the file names). Otherwise the replica's IO
/// thread would stop with 1236 (MySQL 8: 13114), and only a re-seed helps.
pub fn check_origin_available(server: &str, origin: &Coordinates, logs: &[BinaryLog]) -> Result<(), DbError> {
    let problem = match logs.iter().find(|log| log.name == origin.file) {
        None if logs.is_empty() => "the primary lists no binary logs".to_string(),
        None => format!(
            "the primary no longer has {} (it has {} to {}): the file was purged, or the primary's data was \
             re-initialised",
            origin.file,
            logs[0].name,
            logs[logs.len() - 1].name
        ),
        Some(log) if log.size < origin.position => format!(
            "{} on the primary is only {} bytes long, shorter than position {}: the primary's data was \
             re-initialised",
            origin.file, log.size, origin.position
        ),
        Some(_) => return Ok(()),
    };
    Err(DbError::OriginUnavailable {
        server: server.to_string(),
        origin: origin.to_string(),
        problem,
    })
}

/// An account and its password (never printed: see [`SecretString`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: SecretString,
}

/// Where a replica replicates from, and from which position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// The primary's stable name, e.g. `mysql-0.mysql-headless.database.svc.cluster.local`.
    pub host: String,
    pub port: u16,
    pub credentials: Credentials,
    pub origin: Coordinates,
}

/// What the health report shows per server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFacts {
    pub version: ServerVersion,
    pub server_id: u32,
    /// `@@server_uuid` on MySQL; `@@server_uid` on MariaDB, which has no server_uuid.
    pub server_uuid: String,
    pub read_only: bool,
    /// `None` on MariaDB, which has no super_read_only.
    pub super_read_only: Option<bool>,
    /// On by default on MySQL 8 replicas too (with log_replica_updates); off on MariaDB replicas unless configured.
    pub log_bin: bool,
}
