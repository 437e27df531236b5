//! The explanations per flavour and version. MariaDB's statements are also replayed on real servers by the e2e
//! test (tests/e2e/explain.rs); MySQL's cannot run here, so they are checked against the documented facts.

use super::*;
use crate::database::parse_version;

fn dialect(version: &str) -> Dialect {
    Dialect::for_version(&parse_version(version).expect("version parses"))
}

fn context(version: &str) -> Context {
    Context::new("student-1", dialect(version).flavor())
}

fn source(password: &str) -> SourceConfig {
    SourceConfig {
        host: "mysql-0.mysql-headless.student-1.svc.cluster.local".into(),
        port: 3306,
        credentials: Credentials {
            user: "repl".into(),
            password: SecretString::new(password),
        },
        origin: Coordinates {
            file: "mysql-bin.000003".into(),
            position: 1234,
        },
    }
}

fn replicas() -> Vec<String> {
    vec!["mysql-1".to_string(), "mysql-2".to_string()]
}

/// Every statement a student types at `user@pod>`, in order.
fn statements(text: &str, user: &str, pod: &str) -> Vec<String> {
    let prompt = format!("   {user}@{pod}> ");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prompt))
        .map(|l| l.split("  -- ").next().unwrap_or_default().to_string())
        .collect()
}

fn configure(version: &str) -> String {
    configure_replicas(&dialect(version), &replicas(), &source("s3cret-pass")).render(&context(version))
}

#[test]
fn mysql_8_4_replicas_get_the_8_4_statements_with_the_recorded_origin_and_no_password() {
    // MySQL 8.4 removed CHANGE MASTER, START/STOP/RESET SLAVE, SHOW SLAVE STATUS and SHOW MASTER STATUS (refman 8.4
    // "What Is New in MySQL 8.4": "Removal of deprecated syntax"); SOURCE_RETRY_COUNT defaults to 10 there
    // (mysql-notes 13), hence the explicit 0; caching_sha2_password without TLS needs GET_SOURCE_PUBLIC_KEY = 1
    // (refman "Replication and caching_sha2_password", error 2061 without it).
    let text = configure("8.4.3");
    assert_eq!(
        statements(&text, "root", "mysql-2"),
        vec![
            "SHOW REPLICA STATUS\\G",
            "STOP REPLICA;",
            "RESET REPLICA ALL;",
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = 'mysql-0.mysql-headless.student-1.svc.cluster.local', \
             SOURCE_PORT = 3306, SOURCE_USER = 'repl', SOURCE_PASSWORD = '******', SOURCE_LOG_FILE = \
             'mysql-bin.000003', SOURCE_LOG_POS = 1234, SOURCE_CONNECT_RETRY = 5, SOURCE_RETRY_COUNT = 0, \
             GET_SOURCE_PUBLIC_KEY = 1;",
            "START REPLICA;",
            "SHOW REPLICA STATUS\\G",
            "SET PERSIST super_read_only = ON;",
        ]
    );
    assert!(!text.contains("s3cret-pass"), "{text}");
    assert!(text.contains("   $ kubectl -n student-1 exec -it mysql-1 -- mysql -h127.0.0.1 -uroot -p******\n"));
    assert!(
        text.contains("expected: Replica_IO_Running: Yes, Replica_SQL_Running: Yes"),
        "{text}"
    );
    for correction in [
        "corrected: the tutorial's file and position are typed by hand",
        "here they are the recorded origin, mysql-bin.000003:1234",
        "corrected: CHANGE MASTER TO MASTER_* became CHANGE REPLICATION SOURCE TO SOURCE_* in MySQL 8.0.23",
        "corrected: STOP/START SLAVE, RESET SLAVE ALL and SHOW SLAVE STATUS became",
        "GET_SOURCE_PUBLIC_KEY = 1 lets the replica fetch the primary's RSA key",
        "SET PERSIST super_read_only = ON once the replica is configured",
    ] {
        assert!(text.contains(correction), "{correction}\n{text}");
    }
    assert!(!text.contains("MASTER_USE_GTID"), "{text}");
    let primary = primary_setup(&context("8.4.3"), &dialect("8.4.3"), "repl").render(&context("8.4.3"));
    let sql = statements(&primary, "root", "mysql-0");
    let origin = sql
        .iter()
        .position(|s| s == "SHOW BINARY LOG STATUS;")
        .expect("8.4's form");
    let appdb = sql
        .iter()
        .position(|s| s == "CREATE DATABASE IF NOT EXISTS appdb;")
        .expect("appdb");
    assert!(origin < appdb, "the origin is read before appdb exists: {sql:#?}");
    assert!(
        primary.contains("corrected: SHOW MASTER STATUS was removed in MySQL 8.4"),
        "{primary}"
    );
    assert!(sql.contains(&"CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY '******';".to_string()));
    let report = report(&context("8.4.3"), &dialect("8.4.3"), &replicas()).render(&context("8.4.3"));
    assert!(report.contains("names the columns Replica_IO_Running"), "{report}");
    assert!(
        report.contains("Seconds_Behind_Source NULL means not replicating"),
        "{report}"
    );
    assert!(
        text.contains("configured already? Source_Host mysql-0.mysql-headless"),
        "{text}"
    );
}

#[test]
fn mysql_8_0_22_has_start_replica_but_not_yet_change_replication_source() {
    // 8.0.22 added START/STOP/RESET REPLICA and SHOW REPLICA STATUS; CHANGE REPLICATION SOURCE TO came in 8.0.23;
    // SHOW BINARY LOG STATUS in 8.2 (MySQL 8.0.22, 8.0.23 and 8.2.0 release notes).
    let text = configure("8.0.22");
    let sql = statements(&text, "root", "mysql-1");
    assert_eq!(sql[1], "STOP REPLICA;");
    assert!(
        sql[3].starts_with("CHANGE MASTER TO MASTER_HOST = 'mysql-0.mysql-headless.student-1.svc.cluster.local'"),
        "{sql:#?}"
    );
    assert!(
        sql[3].ends_with(
            "MASTER_LOG_POS = 1234, MASTER_CONNECT_RETRY = 5, MASTER_RETRY_COUNT = 0, GET_MASTER_PUBLIC_KEY = 1;"
        ),
        "{sql:#?}"
    );
    assert_eq!(sql[4], "START REPLICA;");
    assert_eq!(sql[6], "SET PERSIST super_read_only = ON;");
    assert!(!text.contains("CHANGE REPLICATION SOURCE"), "{text}");
    assert!(text.contains("corrected: STOP/START SLAVE"), "{text}");
    let primary = primary_setup(&context("8.0.22"), &dialect("8.0.22"), "repl").render(&context("8.0.22"));
    assert!(statements(&primary, "root", "mysql-0").contains(&"SHOW MASTER STATUS;".to_string()));
    assert!(!primary.contains("was removed in MySQL 8.4"), "{primary}");
    // SOURCE_POS_WAIT from 8.0.26: 8.0.22 still waits with MASTER_POS_WAIT.
    let check = validation(&dialect("8.0.22"), &replicas(), "lab-1", 30).render(&context("8.0.22"));
    assert!(
        check.contains("root@mysql-1> SELECT MASTER_POS_WAIT(<File>, <Position>, 30);"),
        "{check}"
    );
    let check = validation(&dialect("8.4.3"), &replicas(), "lab-1", 30).render(&context("8.4.3"));
    assert!(
        check.contains("root@mysql-2> SELECT SOURCE_POS_WAIT(<File>, <Position>, 30);"),
        "{check}"
    );
}

#[test]
fn mariadb_keeps_the_slave_forms_pins_file_and_position_and_revokes_read_only_admin() {
    let text = configure("10.11.19-MariaDB-0+deb12u1-log");
    let sql = statements(&text, "root", "mysql-1");
    assert_eq!(sql[0], "SHOW SLAVE STATUS\\G");
    assert!(
        sql[3].ends_with("MASTER_CONNECT_RETRY = 5, MASTER_USE_GTID = no;"),
        "{sql:#?}"
    );
    assert_eq!(
        sql[6..],
        [
            "SELECT CURRENT_USER();",
            "SHOW GRANTS FOR 'root'@'%';",
            "SET SESSION sql_log_bin = 0;",
            "REVOKE READ_ONLY ADMIN ON *.* FROM 'root'@'%';",
            "SET SESSION sql_log_bin = 1;",
        ]
    );
    assert!(text.contains("   $ kubectl -n student-1 exec -it mysql-1 -- mariadb -h127.0.0.1 -uroot -p******\n"));
    assert!(
        !text.contains("GET_SOURCE_PUBLIC_KEY") && !text.contains("super_read_only = ON"),
        "{text}"
    );
    assert!(text.contains("MASTER_USE_GTID = no keeps the position given"), "{text}");
    assert!(
        text.contains("configured already? Master_Host mysql-0.mysql-headless"),
        "{text}"
    );
    assert!(
        text.contains("expected: Slave_IO_Running: Yes, Slave_SQL_Running: Yes"),
        "{text}"
    );
    // MariaDB 12.0 (MDEV-36425): read_only = NO_LOCK_NO_ADMIN instead of the revoke.
    let twelve = statements(&configure("12.0.2-MariaDB"), "root", "mysql-2");
    assert_eq!(twelve.last().unwrap(), "SET GLOBAL read_only = NO_LOCK_NO_ADMIN;");
    assert!(!twelve.iter().any(|s| s.starts_with("REVOKE")));
}

#[test]
fn the_read_only_test_expects_1290_for_root_and_the_probe_account_on_every_replica() {
    let text = read_only_test(&dialect("8.4.3"), &replicas()).render(&context("8.4.3"));
    for pod in ["mysql-1", "mysql-2"] {
        for user in ["root", PROBE_USER] {
            let expected = format!(
                "   {user}@{pod}> INSERT INTO appdb.lab_validation (marker, msg) VALUES ('lab-read-only-check', \
                 'should_fail');  -- expected: ERROR 1290 (read-only)"
            );
            assert!(text.contains(&expected), "{expected}\n{text}");
            assert_eq!(statements(&text, user, pod).last().unwrap(), "ROLLBACK;");
        }
    }
}

#[test]
fn every_step_names_its_place_in_the_tutorial_or_says_what_it_corrects() {
    let c = context("10.11.6-MariaDB");
    let d = dialect("10.11.6-MariaDB");
    let all = [
        preflight(&c),
        apply(&c, " -n student-1 --image mysql:8.4 --replicas 3"),
        wait_for(&c, "mysql-0"),
        primary_setup(&c, &d, "repl"),
        configure_replicas(&d, &replicas(), &source("x")),
        role_labels(&c, &replicas()),
        scale_down(&c, &["mysql-2".to_string()], 2),
        validation(&d, &replicas(), "lab-1", 30),
        read_only_test(&d, &replicas()),
        report(&c, &d, &replicas()),
    ];
    for explanation in &all {
        let text = explanation.render(&c);
        assert!(
            text.starts_with(&format!("\n── explain: {}", explanation.step)),
            "{text}"
        );
        assert!(
            explanation.tutorial.is_some() || !explanation.corrected.is_empty(),
            "{} neither follows the tutorial nor corrects it",
            explanation.step
        );
        assert!(!explanation.blocks.is_empty(), "{}: nothing to type", explanation.step);
        // Every command runs in the lab's namespace.
        for line in text
            .lines()
            .filter(|l| l.starts_with("   $ kubectl") && !l.contains("get storageclass"))
        {
            assert!(
                line.contains("-n student-1")
                    || line == "   $ kubectl version"
                    || line == "   $ kubectl apply -f lab.yaml"
                    || line.contains("namespace student-1"),
                "{line}"
            );
        }
    }
    assert!(
        all[1]
            .render(&c)
            .contains("$ lab render -n student-1 --image mysql:8.4 --replicas 3 --show-secrets > lab.yaml")
    );
    assert!(
        all[5]
            .render(&c)
            .contains("$ kubectl -n student-1 label pod mysql-2 lab.dev/role=replica --overwrite")
    );
}

#[test]
fn a_step_that_changed_nothing_says_it_is_already_done() {
    let record = |outcome| StepRecord {
        name: "primary setup".into(),
        outcome,
        detail: "binlog origin mysql-bin.000002:328 already recorded".into(),
        duration: std::time::Duration::from_millis(5),
    };
    assert_eq!(
        already_done(&record(StepOutcome::Unchanged)).as_deref(),
        Some(
            "   already done (binlog origin mysql-bin.000002:328 already recorded): nothing to type for \"primary \
             setup\" this time"
        )
    );
    assert_eq!(already_done(&record(StepOutcome::Done)), None);
    assert_eq!(already_done(&record(StepOutcome::Passed)), None);
}

#[test]
fn the_intro_says_where_the_hidden_passwords_are_without_printing_any() {
    let text = intro(&context("8.4.3"));
    assert!(
        text.contains("****** stands for a password from Secret mysql-secret"),
        "{text}"
    );
    assert!(
        text.contains("kubectl -n student-1 get secret mysql-secret -o jsonpath="),
        "{text}"
    );
}
