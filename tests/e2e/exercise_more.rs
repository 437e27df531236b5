//! `lab exercise` with the faults of replication setup: `missing-tables` (coordinates taken after CREATE DATABASE,
//! error 1049), `never-connects` (the replication password changed on one side, 1045) and `after-restart`
//! (the headless Service renamed: per-pod DNS gone, 2005). Each on a simulator: start, the fault seen on the real
//! servers and objects, check fails with the symptom, solve, check passes; then start, reset, verify passes.

use std::path::Path;

use serde_json::Value;

use crate::exercise::{failing, reset_and_verify};
use crate::harness::{Run, edited_manifests, kubeconfig, kubectl, lab, run_as_user, sql, sql_result, start_sim};

/// mysql-1's replication as `lab status -o json` reads it from the server: IO and SQL thread states, and the
/// last IO and SQL errors (errno, message).
fn replica_status(kc: &Path, ns: &str) -> Value {
    let status = lab(kc, &["status", "-n", ns, "-o", "json"]).json();
    status["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .find(|r| r["pod"] == "mysql-1")
        .cloned()
        .unwrap_or_else(|| panic!("no mysql-1 in {status:#}"))
}

/// Starts `name` on a fresh lab in `ns` and returns what `start` printed.
fn start(kc: &Path, ns: &str, name: &str) -> Run {
    let started = lab(kc, &["exercise", "start", name, "-n", ns]);
    started.assert_code(0);
    assert!(started.stdout.contains("A user reports: "), "{}", started.stdout);
    started
}

/// check fails with `symptom` among the failures; returns the check's JSON.
fn check_fails_with(kc: &Path, ns: &str, symptom: &str) -> Value {
    let check = lab(kc, &["exercise", "check", "-n", ns, "-o", "json"]);
    check.assert_code(1);
    let failures = failing(&check);
    assert!(
        failures.iter().any(|f| f.contains(symptom)),
        "{symptom:?} not among {failures:#?}"
    );
    check.json()
}

/// solve prints each of `commands`, then check passes.
fn solve_and_pass(kc: &Path, ns: &str, commands: &[&str]) {
    let solved = lab(kc, &["exercise", "solve", "-n", ns]);
    solved.assert_code(0);
    for command in commands {
        assert!(
            solved.stdout.contains(command),
            "the fix shows {command:?}:\n{}",
            solved.stdout
        );
    }
    assert!(!solved.stdout.contains("-proot "), "no password: {}", solved.stdout);
    let after = lab(kc, &["exercise", "check", "-n", ns, "-o", "json"]);
    after.assert_code(0);
    assert_eq!(after.json()["passed"], true);
}

#[test]
fn missing_tables_a_replica_rebuilt_from_coordinates_taken_after_create_database() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    let ns = "student-1";
    lab(&kc, &["up", "-n", ns]).assert_code(0);
    let claim_uid = |kc: &Path| {
        kubectl(
            kc,
            &["get", "pvc", "data-mysql-1", "-n", ns, "-o", "jsonpath={.metadata.uid}"],
            "",
        )
    };
    let before = claim_uid(&kc);

    let started = start(&kc, ns, "missing-tables");
    assert!(
        started.stdout.contains("new tables on the primary never appear there"),
        "{}",
        started.stdout
    );
    assert!(
        !started.stdout.contains("CREATE DATABASE") && !started.stdout.contains("1049"),
        "never the cause"
    );
    // The fault is real: mysql-1 is on a new volume, has no appdb, and its SQL thread stopped with 1049 at the
    // primary's first table; the primary has the table.
    assert_ne!(claim_uid(&kc), before, "mysql-1 was rebuilt on a new claim");
    let status = replica_status(&kc, ns);
    assert_eq!(status["sql_thread"], "No", "{status:#}");
    assert_eq!(status["last_sql_error"]["errno"], 1049, "{status:#}");
    assert!(
        status["last_sql_error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown database 'appdb'"),
        "{status:#}"
    );
    assert!(!sql(&sim, ns, "mysql-1", "SHOW DATABASES").lines().any(|l| l == "appdb"));
    assert_eq!(
        sql(&sim, ns, "mysql-0", "SELECT COUNT(*) FROM appdb.lab_exercise_orders").trim(),
        "1"
    );
    // The lab's size is back to where it was; the rebuilt replica is protected like every replica.
    assert_eq!(
        kubectl(
            &kc,
            &[
                "get",
                "statefulset",
                "mysql",
                "-n",
                ns,
                "-o",
                "jsonpath={.spec.replicas}"
            ],
            ""
        ),
        "2"
    );
    assert!(
        sql_result(&sim, ns, "mysql-1", "CREATE DATABASE student_scratch").is_err_and(|e| e.contains("1290")),
        "root cannot write on the rebuilt replica"
    );

    check_fails_with(
        &kc,
        ns,
        "table appdb.lab_exercise_orders, created on the primary, does not exist on mysql-1",
    );
    // The fix configures the replica from the origin `lab up` recorded before it created appdb.
    let annotation = r"jsonpath={.metadata.annotations.lab\.dev/binlog-origin}";
    let recorded = kubectl(&kc, &["get", "pvc", "data-mysql-0", "-n", ns, "-o", annotation], "");
    let origin: Value = serde_json::from_str(&recorded).expect("the recorded origin is JSON");
    let from_origin = format!(
        "MASTER_LOG_FILE = '{}', MASTER_LOG_POS = {}",
        origin["file"].as_str().unwrap(),
        origin["position"]
    );
    solve_and_pass(
        &kc,
        ns,
        &[
            "kubectl -n student-1 scale statefulset mysql --replicas=1",
            "kubectl -n student-1 delete pvc data-mysql-1",
            "kubectl -n student-1 scale statefulset mysql --replicas=2",
            &from_origin,
        ],
    );
    // Re-seeded from the origin recorded before appdb existed: appdb, the table and its row replayed.
    assert_eq!(
        sql(&sim, ns, "mysql-1", "SELECT COUNT(*) FROM appdb.lab_exercise_orders").trim(),
        "1"
    );
    lab(&kc, &["exercise", "reset", "-n", ns]).assert_code(0);

    start(&kc, ns, "missing-tables");
    lab(&kc, &["status", "-n", ns]).assert_code(1);
    reset_and_verify(&kc, ns, "missing-tables");
}

#[test]
fn never_connects_the_replication_password_changed_on_the_primary_alone() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    let ns = "student-2";
    lab(&kc, &["up", "-n", ns]).assert_code(0);

    let started = start(&kc, ns, "never-connects");
    assert!(
        started.stdout.contains("mysql-1 shows Connecting and never catches up"),
        "{}",
        started.stdout
    );
    assert!(
        !started.stdout.contains("password"),
        "never the cause: {}",
        started.stdout
    );
    let status = replica_status(&kc, ns);
    assert_eq!(status["io_thread"], "Connecting", "{status:#}");
    assert_eq!(status["last_io_error"]["errno"], 1045, "{status:#}");
    // The Secret was not changed: the account on the primary was.
    let secret = kubectl(
        &kc,
        &[
            "get",
            "secret",
            "mysql-secret",
            "-n",
            ns,
            "-o",
            "jsonpath={.data.REPLICATION_PASSWORD}",
        ],
        "",
    );
    assert_eq!(secret, "cmVwbHBhc3M=", "replpass, as the manifests set it");

    let check = check_fails_with(&kc, ns, "would show Connecting and never catch up either");
    assert!(
        failing_text(&check).contains("rows written on the primary do not reach mysql-1"),
        "{check:#}"
    );
    solve_and_pass(
        &kc,
        ns,
        &[
            "ALTER USER 'repl'@'%' IDENTIFIED BY '******'",
            "CHANGE MASTER TO MASTER_USER = 'repl', MASTER_PASSWORD = '******'",
        ],
    );
    assert_eq!(replica_status(&kc, ns)["io_thread"], "Yes");
    lab(&kc, &["exercise", "reset", "-n", ns]).assert_code(0);

    // A student's fix with `lab up`: one run sets the password from the Secret on the primary and gives the
    // refused replica the Secret's credentials (it used to stop at the replica's last 1045 and ask for a re-run).
    start(&kc, ns, "never-connects");
    let up = lab(&kc, &["up", "-n", ns]);
    up.assert_code(0)
        .assert_stderr_contains("mysql-1 refused by mysql-0 (error 1045): replication credentials set again");
    let check = lab(&kc, &["exercise", "check", "-n", ns, "-o", "json"]);
    check.assert_code(0);
    assert_eq!(check.json()["solved"], "yes", "solved by the student");
    lab(&kc, &["exercise", "reset", "-n", ns]).assert_code(0);

    start(&kc, ns, "never-connects");
    lab(&kc, &["status", "-n", ns]).assert_code(1);
    reset_and_verify(&kc, ns, "never-connects");
}

#[test]
fn the_other_side_a_changed_secret_reaches_replicas_that_reconnect_with_the_old_password() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    let ns = "student-4";
    lab(&kc, &["up", "-n", ns]).assert_code(0);
    // The Secret's manifest changed, and `lab up` set the new password on the primary; mysql-1, replicating on its
    // open connection, was left alone.
    let rotated = edited_manifests(&kc, |text| {
        text.replace("REPLICATION_PASSWORD: replpass", "REPLICATION_PASSWORD: rotated-pass")
    });
    let dir = rotated.path().to_str().expect("a UTF-8 path");
    lab(&kc, &["up", "-n", ns, "--manifests", dir]).assert_code(0);
    // Its next reconnect is refused: it still has the old password.
    sql(&sim, ns, "mysql-1", "STOP SLAVE IO_THREAD; START SLAVE IO_THREAD");
    lab(&kc, &["verify", "-n", ns])
        .assert_code(1)
        .assert_stderr_contains("IO thread error 1045");
    // `lab up` gives it the Secret's credentials, position kept: the round trip of verify proves no row is missing.
    lab(&kc, &["up", "-n", ns, "--manifests", dir])
        .assert_code(0)
        .assert_stderr_contains("mysql-1 refused by mysql-0 (error 1045): replication credentials set again");
    lab(&kc, &["verify", "-n", ns]).assert_code(0);
}

#[test]
fn after_restart_the_headless_service_renamed_away_from_service_name() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    let ns = "student-3";
    lab(&kc, &["up", "-n", ns]).assert_code(0);

    let started = start(&kc, ns, "after-restart");
    assert!(
        started.stdout.contains("`nslookup mysql-0.mysql-headless` fails"),
        "{}",
        started.stdout
    );
    assert!(!started.stdout.contains("mysql-hl"), "never the cause");
    let services = kubectl(&kc, &["get", "services", "-n", ns, "-o", "name"], "");
    assert!(
        services.contains("service/mysql-hl") && !services.contains("service/mysql-headless"),
        "{services}"
    );
    let status = replica_status(&kc, ns);
    assert_eq!(status["io_thread"], "Connecting", "{status:#}");
    assert_eq!(status["last_io_error"]["errno"], 2005, "{status:#}");
    // The tutorial's own check fails from the client pod, for the old name and the new one alike.
    for name in ["mysql-0.mysql-headless", "mysql-0.mysql-hl"] {
        let (code, _, _) = run_as_user(
            &kc,
            "kubectl",
            &["exec", "mysql-client", "-n", ns, "--", "nslookup", name],
            "",
        );
        assert_ne!(code, 0, "{name} must not resolve");
    }

    check_fails_with(&kc, ns, "`nslookup mysql-0.mysql-headless` fails from the client pod");
    solve_and_pass(
        &kc,
        ns,
        &[
            "apply -f manifests/01-headless-service.yaml",
            "kubectl -n student-3 delete service mysql-hl",
        ],
    );
    let services = kubectl(&kc, &["get", "services", "-n", ns, "-o", "name"], "");
    assert!(
        !services.contains("service/mysql-hl") && services.contains("service/mysql-headless"),
        "{services}"
    );
    lab(&kc, &["exercise", "reset", "-n", ns]).assert_code(0);

    // `lab up` repairs it too: it applies mysql-headless again, and the replica reconnects by itself.
    start(&kc, ns, "after-restart");
    lab(&kc, &["up", "-n", ns]).assert_code(0);
    let check = lab(&kc, &["exercise", "check", "-n", ns, "-o", "json"]);
    check.assert_code(0);
    assert_eq!(check.json()["solved"], "yes");
    lab(&kc, &["exercise", "reset", "-n", ns]).assert_code(0);

    start(&kc, ns, "after-restart");
    lab(&kc, &["status", "-n", ns]).assert_code(1);
    reset_and_verify(&kc, ns, "after-restart");
}

fn failing_text(check: &Value) -> String {
    check["checks"].to_string()
}
