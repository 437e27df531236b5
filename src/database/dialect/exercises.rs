//! Statements of `lab exercise` (sql/05-exercises.sql): what a careless person runs, and the fixes.

use super::{Dialect, Statement, Value};
use crate::database::Credentials;

const EXERCISES_SQL: &str = include_str!("../../../sql/05-exercises.sql");

impl Dialect {
    /// Stop, the replica's user and password for its source changed in place (its position kept), start.
    pub fn source_credentials(&self, repl: &Credentials) -> Vec<Statement> {
        self.render(
            EXERCISES_SQL,
            "source_credentials",
            &[
                ("REPLICATION_USER", Value::Text(&repl.user)),
                ("REPLICATION_PASSWORD", Value::Secret(&repl.password)),
            ],
        )
    }

    /// `USE appdb`, then `appdb.lab_exercise_orders` dropped if it exists, created and given a row.
    pub fn new_table(&self) -> Vec<Statement> {
        self.render(EXERCISES_SQL, "new_table", &[])
    }

    /// How many tables `appdb.lab_exercise_orders` there are (0 or 1).
    pub fn has_new_table(&self) -> Statement {
        self.render_one(EXERCISES_SQL, "has_new_table", &[])
    }
}

#[cfg(test)]
mod tests {
    use crate::database::{Credentials, Dialect, parse_version};
    use crate::secret::SecretString;

    fn dialect(version: &str) -> Dialect {
        Dialect::for_version(&parse_version(version).expect("version parses"))
    }

    fn repl() -> Credentials {
        Credentials {
            user: "repl".into(),
            password: SecretString::new("s3cret"),
        }
    }

    #[test]
    fn new_credentials_name_no_host_so_the_replica_keeps_its_position() {
        let texts = |v: &str| {
            dialect(v)
                .source_credentials(&repl())
                .iter()
                .map(|s| s.text().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            texts("10.11.19-MariaDB-0+deb12u1-log"),
            [
                "STOP SLAVE",
                "CHANGE MASTER TO MASTER_USER = 'repl', MASTER_PASSWORD = 's3cret'",
                "START SLAVE"
            ]
        );
        assert_eq!(
            texts("8.4.10"),
            [
                "STOP REPLICA",
                "CHANGE REPLICATION SOURCE TO SOURCE_USER = 'repl', SOURCE_PASSWORD = 's3cret'",
                "START REPLICA"
            ]
        );
        assert_eq!(
            texts("8.0.21")[1],
            "CHANGE MASTER TO MASTER_USER = 'repl', MASTER_PASSWORD = 's3cret'"
        );
        for version in ["8.0.21", "8.4.10", "10.11.19-MariaDB-0+deb12u1-log"] {
            let statements = dialect(version).source_credentials(&repl());
            assert!(statements.iter().all(|s| !s.text().contains("_HOST")), "{version}");
            // The statement with the password hides it from Debug output and error messages.
            assert!(statements[1].carries_secret() && !format!("{:?}", statements[1]).contains("s3cret"));
        }
    }

    #[test]
    fn the_new_table_is_created_after_use_appdb_and_logged_again_on_a_second_run() {
        let texts: Vec<String> = dialect("10.11.19-MariaDB-0+deb12u1-log")
            .new_table()
            .iter()
            .map(|s| s.text().to_string())
            .collect();
        assert_eq!(
            texts,
            [
                "USE appdb",
                "DROP TABLE IF EXISTS lab_exercise_orders",
                "CREATE TABLE lab_exercise_orders (id INT PRIMARY KEY, item VARCHAR(50))",
                "INSERT INTO lab_exercise_orders VALUES (1, 'first order')",
            ]
        );
        assert_eq!(
            dialect("8.4.10").has_new_table().text(),
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'appdb' AND TABLE_NAME = \
             'lab_exercise_orders'"
        );
    }
}
