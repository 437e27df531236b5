//! The database image named by `--image`: which server it is, and whether `lab` can run the tutorial on it. Pure.
//!
//! Checked before anything is applied: an image that is no MySQL or MariaDB server would crash-loop (or start
//! something else entirely) and an old server would fail at the first replication statement, both after the lab
//! was half built.

use crate::database::Flavor;

/// Image names (the last path component) that are MySQL servers with the official image's entrypoint contract.
const MYSQL_NAMES: &[&str] = &["mysql", "mysql-server", "percona-server", "percona"];
const MARIADB_NAMES: &[&str] = &["mariadb"];

/// What an image reference says about its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseImage {
    pub flavor: Flavor,
    /// `(major, minor)` when the tag starts with a version (`8.4`, `10.11.9-jammy`); `None` for `latest`, `lts`,
    /// a digest alone, and the like.
    pub version: Option<(u32, u32)>,
}

/// Why an image is refused: one sentence for the error, with the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--image {image}: {problem}; {fix}")]
pub struct ImageRefused {
    pub image: String,
    pub problem: String,
    pub fix: String,
}

/// The oldest servers `lab` supports: MySQL 8.0 (the replication statements, `caching_sha2_password` and
/// `SET PERSIST` it relies on) and MariaDB 10.5 (the first with the REPLICA statements and `SHOW BINLOG STATUS`,
/// mysql-notes section 2.1).
pub const MYSQL_OLDEST: (u32, u32) = (8, 0);
pub const MARIADB_OLDEST: (u32, u32) = (10, 5);

pub fn check_database_image(image: &str) -> Result<DatabaseImage, ImageRefused> {
    let refuse = |problem: String, fix: &str| ImageRefused {
        image: image.to_string(),
        problem,
        fix: fix.to_string(),
    };
    let (name, tag) = split_reference(image);
    let flavor = if MYSQL_NAMES.contains(&name) {
        Flavor::MySql
    } else if MARIADB_NAMES.contains(&name) {
        Flavor::MariaDb
    } else {
        return Err(refuse(
            format!("\"{name}\" is not a MySQL or MariaDB server image"),
            "the lab runs the official mysql or mariadb images (or a mirror of them with the same name, e.g. \
             registry.example.com/library/mysql:8.4): pass --image mysql:8.4 or --image mariadb:11.4",
        ));
    };
    let version = tag.and_then(leading_version);
    let oldest = match flavor {
        Flavor::MySql => MYSQL_OLDEST,
        Flavor::MariaDb => MARIADB_OLDEST,
    };
    if let Some(found) = version.filter(|v| *v < oldest) {
        let (product, suggestion) = match flavor {
            Flavor::MySql => ("MySQL", "mysql:8.4"),
            Flavor::MariaDb => ("MariaDB", "mariadb:11.4"),
        };
        return Err(refuse(
            format!(
                "{product} {}.{} is too old: lab needs {product} {}.{} or later (the replication statements and \
                 account setup it uses start there)",
                found.0, found.1, oldest.0, oldest.1
            ),
            &format!("pass --image {suggestion}"),
        ));
    }
    Ok(DatabaseImage { flavor, version })
}

/// When the server found is not the one the image names (the simulator runs every database image as MariaDB), the
/// words that say so; the SQL `lab` runs always follows the server it finds.
pub fn substitution_note(image: &str, expected: Flavor, found: Flavor, found_version: &str) -> Option<String> {
    (expected != found).then(|| {
        let found = match found {
            Flavor::MySql => "MySQL",
            Flavor::MariaDb => "MariaDB",
        };
        format!(
            "the image is {image}, but the server is {found} {found_version}: this cluster runs the image as {found} \
             (the simulator runs every database image as MariaDB), and lab speaks {found}'s SQL to it"
        )
    })
}

/// `(name, tag)` of `[registry[:port]/][path/]name[:tag][@digest]`.
fn split_reference(image: &str) -> (&str, Option<&str>) {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        Some((name, tag)) => (name, Some(tag)),
        None => (last, None),
    }
}

/// `8.4` from `8.4`, `8.0.40-debian`, `10.11.9-jammy`; `None` from `latest`, `lts`, `noble`.
fn leading_version(tag: &str) -> Option<(u32, u32)> {
    let mut parts = tag.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_images_and_mirrors_are_recognised_with_their_version() {
        let ok = |image: &str| check_database_image(image).expect(image);
        assert_eq!(
            ok("mysql:8.4"),
            DatabaseImage {
                flavor: Flavor::MySql,
                version: Some((8, 4))
            }
        );
        assert_eq!(ok("mysql:8.0.40-debian").version, Some((8, 0)));
        assert_eq!(ok("docker.io/library/mysql:9.1").version, Some((9, 1)));
        assert_eq!(ok("mysql").version, None);
        assert_eq!(ok("mysql:lts").version, None);
        assert_eq!(ok("mysql@sha256:0123abcd").flavor, Flavor::MySql);
        assert_eq!(ok("registry.local:5000/mirror/mariadb:11.4").flavor, Flavor::MariaDb);
        assert_eq!(ok("mariadb:10.11.9-jammy").version, Some((10, 11)));
        assert_eq!(ok("mariadb:10.5").version, Some((10, 5)));
        assert_eq!(ok("percona/percona-server:8.0").flavor, Flavor::MySql);
    }

    #[test]
    fn an_image_that_is_no_database_server_is_refused_with_the_images_to_use() {
        let error = check_database_image("nginx:1.27").unwrap_err();
        assert_eq!(
            error.to_string(),
            "--image nginx:1.27: \"nginx\" is not a MySQL or MariaDB server image; the lab runs the official mysql \
             or mariadb images (or a mirror of them with the same name, e.g. registry.example.com/library/mysql:8.4): \
             pass --image mysql:8.4 or --image mariadb:11.4"
        );
        assert!(check_database_image("busybox").is_err());
        assert!(check_database_image("mysql-client:8.4").is_err());
    }

    #[test]
    fn a_server_other_than_the_image_names_is_said() {
        assert_eq!(
            substitution_note("mysql:8.4", Flavor::MySql, Flavor::MySql, "8.4.5"),
            None
        );
        assert_eq!(
            substitution_note("mysql:8.4", Flavor::MySql, Flavor::MariaDb, "10.11.14-MariaDB").as_deref(),
            Some(
                "the image is mysql:8.4, but the server is MariaDB 10.11.14-MariaDB: this cluster runs the image as \
                 MariaDB (the simulator runs every database image as MariaDB), and lab speaks MariaDB's SQL to it"
            )
        );
    }

    #[test]
    fn servers_older_than_mysql_8_0_and_mariadb_10_5_are_refused() {
        let error = check_database_image("mysql:5.7").unwrap_err();
        assert_eq!(
            error.to_string(),
            "--image mysql:5.7: MySQL 5.7 is too old: lab needs MySQL 8.0 or later (the replication statements and \
             account setup it uses start there); pass --image mysql:8.4"
        );
        let error = check_database_image("mariadb:10.4").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("MariaDB 10.4 is too old: lab needs MariaDB 10.5 or later"),
            "{error}"
        );
        assert!(check_database_image("mariadb:10.3.39").is_err());
    }
}
