//! Server flavour and version, parsed from `SELECT VERSION()`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::DbError;

/// Which server family answers: the statement dialects differ (see `Dialect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    MySql,
    MariaDb,
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::MySql => "MySQL",
            Flavor::MariaDb => "MariaDB",
        })
    }
}

/// A server version, compared numerically (`26.10.0 > 9.7.1 > 8.4.10`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerVersion {
    pub flavor: Flavor,
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// The text `VERSION()` returned, e.g. `10.11.19-MariaDB-0+deb12u1-log`.
    pub raw: String,
}

impl ServerVersion {
    /// True when this version is `major.minor.patch` or later (flavour not considered).
    pub fn at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        (self.major, self.minor, self.patch) >= (major, minor, patch)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}.{}.{}", self.flavor, self.major, self.minor, self.patch)
    }
}

/// The oldest versions `lab` drives: MySQL 8.0 (5.7 is end of life, lacks the 8.0 replication statements and
/// persisted variables `lab` uses) and MariaDB 10.5 (the REPLICA statement aliases and SHOW BINLOG STATUS arrived in
/// 10.5; mysql-notes 2.1).
pub const OLDEST_MYSQL: (u32, u32) = (8, 0);
pub const OLDEST_MARIADB: (u32, u32) = (10, 5);

/// Refuses servers older than [`OLDEST_MYSQL`] / [`OLDEST_MARIADB`] with [`DbError::UnsupportedVersion`].
pub fn check_supported(version: &ServerVersion) -> Result<(), DbError> {
    let (major, minor) = match version.flavor {
        Flavor::MySql => OLDEST_MYSQL,
        Flavor::MariaDb => OLDEST_MARIADB,
    };
    if version.at_least(major, minor, 0) {
        return Ok(());
    }
    Err(DbError::UnsupportedVersion {
        found: version.to_string(),
        oldest: format!("{} {major}.{minor}", version.flavor),
    })
}

/// Parses `SELECT VERSION()` (or a handshake version string).
///
/// MariaDB is recognised by the word `MariaDB` anywhere in the text; old clients' handshakes prefix it with
/// `5.5.5-`, which is dropped. The leading `X.Y.Z` is the version; suffixes (`-log`, `-0+deb12u1`) are ignored.
pub fn parse_version(version: &str) -> Result<ServerVersion, DbError> {
    let raw = version.trim();
    let flavor = if raw.to_ascii_lowercase().contains("mariadb") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    let numbers = match flavor {
        Flavor::MariaDb => raw.strip_prefix("5.5.5-").unwrap_or(raw),
        Flavor::MySql => raw,
    };
    let unparsable = || DbError::UnparsableVersion { raw: raw.to_string() };
    let mut parts = numbers
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()
        .unwrap_or_default()
        .split('.');
    let mut component = || -> Result<u32, DbError> {
        parts
            .next()
            .filter(|part| !part.is_empty())
            .and_then(|part| part.parse().ok())
            .ok_or_else(unparsable)
    };
    let (major, minor, patch) = (component()?, component()?, component()?);
    Ok(ServerVersion {
        flavor,
        major,
        minor,
        patch,
        raw: raw.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (Flavor, u32, u32, u32) {
        let v = parse_version(text).expect("version parses");
        assert_eq!(v.raw, text);
        (v.flavor, v.major, v.minor, v.patch)
    }

    #[test]
    fn parses_mysql_versions_including_calendar_ones() {
        assert_eq!(parsed("8.0.44"), (Flavor::MySql, 8, 0, 44));
        assert_eq!(parsed("8.4.10"), (Flavor::MySql, 8, 4, 10));
        assert_eq!(parsed("9.7.1"), (Flavor::MySql, 9, 7, 1));
        assert_eq!(parsed("26.10.0"), (Flavor::MySql, 26, 10, 0));
        assert_eq!(parsed("8.0.36-log"), (Flavor::MySql, 8, 0, 36));
    }

    #[test]
    fn parses_mariadb_versions_with_distribution_suffixes_and_the_old_handshake_prefix() {
        assert_eq!(parsed("10.11.19-MariaDB-0+deb12u1-log"), (Flavor::MariaDb, 10, 11, 19));
        assert_eq!(parsed("11.4.12-MariaDB-ubu2404"), (Flavor::MariaDb, 11, 4, 12));
        assert_eq!(parsed("5.5.5-10.11.6-MariaDB"), (Flavor::MariaDb, 10, 11, 6));
    }

    #[test]
    fn compares_numerically_not_as_text() {
        let calendar = parse_version("26.10.0").expect("parses");
        assert!(calendar.at_least(9, 7, 1));
        assert!(calendar.at_least(8, 4, 0));
        let old = parse_version("8.0.9").expect("parses");
        assert!(!old.at_least(8, 0, 22));
        assert!(parse_version("8.0.22").expect("parses").at_least(8, 0, 22));
    }

    #[test]
    fn mysql_before_8_0_and_mariadb_before_10_5_are_refused() {
        for supported in [
            "8.0.0",
            "8.0.40",
            "8.4.10",
            "26.10.0",
            "10.5.0-MariaDB",
            "10.11.19-MariaDB-log",
            "12.0.2-MariaDB",
        ] {
            assert!(
                check_supported(&parse_version(supported).unwrap()).is_ok(),
                "{supported}"
            );
        }
        for old in ["5.7.44-log", "5.6.51", "10.4.34-MariaDB", "5.5.5-10.3.39-MariaDB"] {
            assert!(check_supported(&parse_version(old).unwrap()).is_err(), "{old}");
        }
        let err = check_supported(&parse_version("5.7.44-log").unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the server is MySQL 5.7.44, older than MySQL 8.0, the oldest version lab supports: use a newer image \
             (e.g. --image mysql:8.4 or --image mariadb:11.4)"
        );
        assert_eq!(crate::exit::Classify::exit_status(&err), crate::exit::ExitStatus::Usage);
        let err = check_supported(&parse_version("10.4.34-MariaDB").unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the server is MariaDB 10.4.34, older than MariaDB 10.5"),
            "{err}"
        );
    }

    #[test]
    fn rejects_text_without_a_version_and_says_what_was_expected() {
        let err = parse_version("MariaDB").expect_err("no numbers");
        assert_eq!(
            err.to_string(),
            "cannot read the server version from \"MariaDB\": expected SELECT VERSION() to start with \
             MAJOR.MINOR.PATCH (e.g. 8.4.10 or 10.11.19-MariaDB); check that the address points to a MySQL or \
             MariaDB server"
        );
        assert!(parse_version("8.4").is_err());
        assert!(parse_version("").is_err());
    }
}
