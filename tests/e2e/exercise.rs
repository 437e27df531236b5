//! `lab exercise`: each exercise started on a working lab, checked while broken, solved (or reset) and checked
//! again, with the record every terminal sees and the grading an instructor runs.

use std::path::Path;

use serde_json::Value;

use crate::harness::{Run, kubeconfig, kubectl, lab, parse_junit_suites, sql, start_sim};

/// The record `lab exercise` keeps in the namespace, read with the real kubectl as any student would.
fn record(kc: &Path, namespace: &str) -> Option<Value> {
    let (code, out, _) = crate::harness::run_as_user(
        kc,
        "kubectl",
        &["get", "configmap", "lab-exercise", "-n", namespace, "-o", "json"],
        "",
    );
    (code == 0).then(|| serde_json::from_str::<Value>(&out).expect("kubectl prints JSON")["data"].clone())
}

/// The graded checks that failed: `name: symptom`.
pub(crate) fn failing(check: &Run) -> Vec<String> {
    check.json()["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| {
            format!(
                "{}: {}",
                c["name"].as_str().unwrap(),
                c["symptom"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// start → check fails (with `symptom` among the failures) → solve (its commands printed) → check passes; then
/// start → reset. Returns the JSON of the failing check.
fn run_exercise(kc: &Path, namespace: &str, name: &str, symptom: &str, solve_command: &str) -> Value {
    let started = lab(kc, &["exercise", "start", name, "-n", namespace]);
    started.assert_code(0);
    assert!(started.stdout.contains("A user reports: "), "{}", started.stdout);

    let check = lab(kc, &["exercise", "check", "-n", namespace, "-o", "json"]);
    check.assert_code(1);
    let failures = failing(&check);
    assert!(
        failures.iter().any(|f| f.contains(symptom)),
        "{symptom:?} not among {failures:#?}"
    );
    assert_eq!(check.json()["exercise"], name);
    assert_eq!(check.json()["passed"], false);

    let solved = lab(kc, &["exercise", "solve", "-n", namespace]);
    solved.assert_code(0);
    assert!(
        solved.stdout.contains(solve_command),
        "the fix shows {solve_command:?}:\n{}",
        solved.stdout
    );
    assert!(
        solved.stdout.contains("solved, with `lab exercise solve`"),
        "{}",
        solved.stdout
    );
    let after = lab(kc, &["exercise", "check", "-n", namespace, "-o", "json"]);
    after.assert_code(0);
    assert_eq!(after.json()["solved"], "shown", "solved by `solve`, not by the student");
    lab(kc, &["exercise", "reset", "-n", namespace]).assert_code(0);
    assert_eq!(record(kc, namespace), None, "reset ends the exercise");

    // start → reset: the lab is healthy again without the exercise's solve being asked for.
    lab(kc, &["exercise", "start", name, "-n", namespace]).assert_code(0);
    lab(kc, &["verify", "-n", namespace]).assert_code(1);
    reset_and_verify(kc, namespace, name);
    check.json()
}

/// reset from the broken state; the lab verifies again and the record is gone.
pub(crate) fn reset_and_verify(kc: &Path, namespace: &str, name: &str) {
    let reset = lab(kc, &["exercise", "reset", "-n", namespace]);
    reset.assert_code(0);
    assert!(
        reset.stdout.contains(&format!("exercise {name} reset")),
        "{}",
        reset.stdout
    );
    lab(kc, &["verify", "-n", namespace]).assert_code(0);
    assert_eq!(record(kc, namespace), None, "reset ends the exercise");
}

#[test]
fn the_exercise_loop_missing_rows_by_the_init_script_with_hints_grading_and_the_record() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    let ns = "student-1";

    let list = lab(&kc, &["exercise", "list"]);
    list.assert_code(0);
    for name in ["missing-rows", "replica-reads", "refused-writes", "stale-reads"] {
        assert!(list.stdout.contains(name), "{}", list.stdout);
    }
    // No lab: start is refused with how to build one.
    lab(&kc, &["exercise", "start", "missing-rows", "-n", ns])
        .assert_code(2)
        .assert_stderr_contains("run `lab up` first");

    lab(&kc, &["up", "-n", ns]).assert_code(0);
    lab(&kc, &["exercise", "check", "-n", ns])
        .assert_code(2)
        .assert_stderr_contains("no exercise is active in namespace student-1");
    lab(&kc, &["exercise", "start", "no-such", "-n", ns])
        .assert_code(2)
        .assert_stderr_contains("no exercise called \"no-such\"");

    let started = lab(&kc, &["exercise", "start", "missing-rows", "-n", ns]);
    started.assert_code(0);
    assert!(
        started
            .stdout
            .contains("rows written on the primary no longer appear on mysql-1"),
        "the symptom: {}",
        started.stdout
    );
    assert!(
        !started.stdout.contains("server-id") && !started.stdout.contains("server id"),
        "never the cause"
    );
    // The fault is real: the StatefulSet's script was edited and the replica's IO thread stopped with 1593.
    let script = kubectl(
        &kc,
        &[
            "get",
            "statefulset",
            "mysql",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.template.spec.initContainers[0].command[2]}",
        ],
        "",
    );
    assert!(script.contains("SERVER_ID=1"), "{script}");
    // (-N -B: values only, one per line.)
    let status = sql(&sim, ns, "mysql-1", "SHOW SLAVE STATUS\\G");
    assert!(
        status.lines().any(|l| l.trim() == "1593"),
        "Last_IO_Errno 1593: {status}"
    );
    assert_eq!(sql(&sim, ns, "mysql-1", "SELECT @@server_id").trim(), "1");

    // Any terminal sees the record; a second start names the active exercise.
    let data = record(&kc, ns).expect("the record");
    assert_eq!(
        (data["exercise"].as_str(), data["hints"].as_str()),
        (Some("missing-rows"), Some("0"))
    );
    lab(&kc, &["exercise", "start", "stale-reads", "-n", ns])
        .assert_code(2)
        .assert_stderr_contains("exercise missing-rows is already active in namespace student-1")
        .assert_stderr_contains("`lab exercise reset`");

    // check: what still fails, as symptoms; exit 1.
    let check = lab(&kc, &["exercise", "check", "-n", ns]);
    check.assert_code(1);
    assert!(
        check
            .stdout
            .contains("✗ rows written on the primary no longer appear on mysql-1"),
        "{}",
        check.stdout
    );
    assert!(!check.stdout.contains("fix:"), "symptoms, not fixes: {}", check.stdout);

    // Hints: three levels, each call the next, recorded and shown by check and list.
    for level in 1..=3 {
        let hint = lab(&kc, &["exercise", "hint", "-n", ns]);
        hint.assert_code(0);
        assert!(
            hint.stdout.starts_with(&format!("hint {level} of 3: ")),
            "{}",
            hint.stdout
        );
    }
    assert_eq!(record(&kc, ns).unwrap()["hints"], "3");
    let list = lab(&kc, &["list", "-o", "json"]).json();
    assert_eq!(list[0]["exercise"], "missing-rows", "{list:#}");
    assert_eq!(list[0]["hints"], 3);
    assert_eq!(list[0]["solved"], "no");
    let table = lab(&kc, &["list"]);
    assert!(
        table.stdout.contains("missing-rows (solved: no, hints: 3)"),
        "{}",
        table.stdout
    );

    // A second lab without an exercise; grading the class: one suite per namespace, parsed by a JUnit library.
    lab(&kc, &["up", "-n", "student-2", "--replicas", "1"]).assert_code(0);
    let junit = lab(&kc, &["exercise", "check", "-A", "-o", "junit"]);
    junit.assert_code(1);
    let suites = parse_junit_suites(&junit.stdout);
    assert_eq!(suites.len(), 2, "{}", junit.stdout);
    assert_eq!(suites[0].0, "lab exercise check student-1");
    let goal = suites[0]
        .1
        .iter()
        .find(|(name, _)| name == "exercise missing-rows: the user's problem is gone")
        .expect("the goal is a testcase");
    assert!(
        goal.1
            .as_deref()
            .is_some_and(|m| m.contains("no longer appear on mysql-1")),
        "{goal:?}"
    );
    assert!(
        suites[1]
            .1
            .iter()
            .any(|(name, failure)| name == "an exercise is active" && failure.is_some()),
        "{:?}",
        suites[1]
    );
    let table = lab(&kc, &["exercise", "check", "--all-namespaces"]);
    table.assert_code(1);
    let rows: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(
        rows[0], "NAMESPACE  EXERCISE      SOLVED  HINTS  STILL FAILING",
        "{}",
        table.stdout
    );
    assert!(
        rows[1].starts_with("student-1  missing-rows  no      3      "),
        "{}",
        table.stdout
    );
    assert!(
        rows[2].starts_with("student-2  -             -       -      "),
        "{}",
        table.stdout
    );
    // A lab without a replica is refused before anything changes: no exercise is left active there.
    lab(&kc, &["exercise", "start", "missing-rows", "-n", "student-2"])
        .assert_code(2)
        .assert_stderr_contains("needs a replica");
    assert_eq!(record(&kc, "student-2"), None);
    lab(&kc, &["teardown", "-n", "student-2", "--yes"]).assert_code(0);

    // The student fixes it by hand, as the hints say: the script, the rollout, the role labels.
    let fixed = script.replace("SERVER_ID=1 ", "SERVER_ID=$((ORDINAL + 1)) ");
    assert_ne!(fixed, script);
    let patch = serde_json::json!([{
        "op": "replace",
        "path": "/spec/template/spec/initContainers/0/command/2",
        "value": fixed,
    }]);
    kubectl(
        &kc,
        &[
            "patch",
            "statefulset",
            "mysql",
            "-n",
            ns,
            "--type=json",
            "-p",
            &patch.to_string(),
        ],
        "",
    );
    kubectl(
        &kc,
        &["rollout", "status", "statefulset", "mysql", "-n", ns, "--timeout=120s"],
        "",
    );
    lab(&kc, &["up", "-n", ns]).assert_code(0);
    let check = lab(&kc, &["exercise", "check", "-n", ns, "-o", "junit"]);
    check.assert_code(0);
    let suites = parse_junit_suites(&check.stdout);
    assert!(
        suites[0].1.iter().all(|(_, failure)| failure.is_none()),
        "{:?}",
        suites[0]
    );
    assert_eq!(record(&kc, ns).unwrap()["solved"], "yes", "solved by the student");

    // The loop through `solve` and through `reset`.
    lab(&kc, &["exercise", "reset", "-n", ns]).assert_code(0);
    run_exercise(
        &kc,
        ns,
        "missing-rows",
        "rows written on the primary no longer appear on mysql-1",
        "edit statefulset mysql",
    );
}

/// `statement` run from the client pod through `service` as root, as an application would connect: the client's
/// output, or its error text.
fn through_service(kc: &Path, namespace: &str, service: &str, statement: &str) -> Result<String, String> {
    let (code, out, err) = crate::harness::run_as_user(
        kc,
        "kubectl",
        &[
            "exec",
            "mysql-client",
            "-n",
            namespace,
            "--",
            "mariadb",
            "-h",
            service,
            "-uroot",
            "-proot",
            "-N",
            "-B",
            "-e",
            statement,
        ],
        "",
    );
    if code == 0 { Ok(out) } else { Err(err) }
}

#[test]
fn exercise_replica_reads_the_primary_behind_mysql_replicas() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    let ns = "student-2";
    lab(&kc, &["up", "-n", ns]).assert_code(0);
    let check = run_exercise(
        &kc,
        ns,
        "replica-reads",
        "reads from mysql-replicas sometimes return rows the replica should not have",
        "kubectl -n student-2 set selector service mysql-replicas app=mysql,lab.dev/role=replica",
    );
    assert!(
        check["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "Service mysql-replicas routes correctly" && c["ok"] == false),
        "{check:#}"
    );
    // The fault as a user meets it: some connections through mysql-replicas reach the primary (server_id 1).
    lab(&kc, &["exercise", "start", "replica-reads", "-n", ns]).assert_code(0);
    let selector = kubectl(
        &kc,
        &[
            "get",
            "service",
            "mysql-replicas",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.selector}",
        ],
        "",
    );
    assert_eq!(selector, r#"{"app":"mysql"}"#, "the tutorial's selector");
    let ids: Vec<String> = (0..12)
        .map(|_| through_service(&kc, ns, "mysql-replicas", "SELECT @@server_id").expect("connects"))
        .map(|out| out.trim().to_string())
        .collect();
    assert!(ids.iter().any(|id| id == "1"), "the primary answers: {ids:?}");
    lab(&kc, &["exercise", "solve", "-n", ns]).assert_code(0);
    let ids: Vec<String> = (0..12)
        .map(|_| through_service(&kc, ns, "mysql-replicas", "SELECT @@server_id").expect("connects"))
        .map(|out| out.trim().to_string())
        .collect();
    assert!(ids.iter().all(|id| id == "2"), "only the replica answers: {ids:?}");
    lab(&kc, &["exercise", "reset", "-n", ns]).assert_code(0);
}

#[test]
fn exercise_refused_writes_mysql_primary_selecting_a_replica() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    let ns = "student-3";
    lab(&kc, &["up", "-n", ns]).assert_code(0);
    run_exercise(
        &kc,
        ns,
        "refused-writes",
        "every write through mysql-primary fails with error 1290",
        "kubectl -n student-3 set selector service mysql-primary statefulset.kubernetes.io/pod-name=mysql-0",
    );
    // The fault as the application meets it: reads work, writes through mysql-primary are refused with 1290.
    let started = lab(&kc, &["exercise", "start", "refused-writes", "-n", ns]);
    started.assert_code(0);
    assert!(started.stdout.contains("ERROR 1290"), "{}", started.stdout);
    assert_eq!(
        through_service(&kc, ns, "mysql-primary", "SELECT @@server_id").map(|o| o.trim().to_string()),
        Ok("2".to_string())
    );
    let refused = through_service(&kc, ns, "mysql-primary", "CREATE TABLE appdb.exercise_t (id INT)");
    assert!(refused.as_ref().is_err_and(|e| e.contains("ERROR 1290")), "{refused:?}");
    lab(&kc, &["exercise", "solve", "-n", ns]).assert_code(0);
    through_service(&kc, ns, "mysql-primary", "CREATE TABLE appdb.exercise_t (id INT)").expect("the write works");
    lab(&kc, &["exercise", "reset", "-n", ns]).assert_code(0);
}

#[test]
fn exercise_stale_reads_a_stopped_sql_thread_and_a_growing_gap() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    let ns = "student-4";
    lab(&kc, &["up", "-n", ns]).assert_code(0);
    run_exercise(&kc, ns, "stale-reads", "reads on mysql-1 are stale", "SQL_THREAD");
    // The fault is a stopped applier with no error: the IO thread runs, the SQL thread does not, and every write
    // on the primary widens the gap.
    lab(&kc, &["exercise", "start", "stale-reads", "-n", ns]).assert_code(0);
    let threads = sql(
        &sim,
        ns,
        "mysql-1",
        "SELECT (SELECT COUNT(*) FROM information_schema.processlist WHERE command = 'Slave_SQL'), \
         (SELECT COUNT(*) FROM information_schema.processlist WHERE command = 'Slave_IO')",
    );
    assert_eq!(threads.trim(), "0\t1", "SQL thread stopped, IO thread running");
    let count = |pod: &str| {
        sql(&sim, ns, pod, "SELECT COUNT(*) FROM appdb.lab_validation")
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let behind = count("mysql-0") - count("mysql-1");
    assert!(behind >= 5, "the replica misses the rows written since: {behind}");
    sql(
        &sim,
        ns,
        "mysql-0",
        "INSERT INTO appdb.lab_validation (marker) VALUES ('one more')",
    );
    assert_eq!(
        count("mysql-0") - count("mysql-1"),
        behind + 1,
        "the gap grows with every write"
    );
    lab(&kc, &["exercise", "check", "-n", ns]).assert_code(1);
    lab(&kc, &["exercise", "reset", "-n", ns]).assert_code(0);
    assert_eq!(count("mysql-0"), count("mysql-1"), "caught up");
}

#[test]
fn an_interrupted_start_or_solve_is_repaired_by_reset_or_by_lab_up() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    let ns = "student-5";
    lab(&kc, &["up", "-n", ns]).assert_code(0);
    let interrupted = |args: &[&str], at: &str| {
        crate::harness::lab_with_env(&kc, args, &[("LAB_INTERRUPT_AT", at)])
            .assert_code(130)
            .assert_stderr_contains("run `lab exercise reset`");
    };

    // Interrupted right after the record, before anything was broken: reset ends it.
    interrupted(
        &["exercise", "start", "missing-rows", "-n", ns],
        "exercise start: recorded",
    );
    assert_eq!(record(&kc, ns).unwrap()["exercise"], "missing-rows");
    lab(&kc, &["exercise", "reset", "-n", ns]).assert_code(0);
    assert_eq!(record(&kc, ns), None);

    // Interrupted with the script edited and the rollout under way: reset undoes it.
    interrupted(
        &["exercise", "start", "missing-rows", "-n", ns],
        "exercise missing-rows: script edited",
    );
    lab(&kc, &["exercise", "reset", "-n", ns]).assert_code(0);
    lab(&kc, &["verify", "-n", ns]).assert_code(0);
    assert_eq!(sql(&sim, ns, "mysql-1", "SELECT @@server_id").trim(), "2");

    // The same, repaired by `lab up` once the pods run the edited script: it puts the script back, waits for the
    // pods to roll onto it (checking a pod about to be replaced would fail), and they replicate again.
    interrupted(
        &["exercise", "start", "missing-rows", "-n", ns],
        "exercise missing-rows: script edited",
    );
    kubectl(
        &kc,
        &["rollout", "status", "statefulset", "mysql", "-n", ns, "--timeout=120s"],
        "",
    );
    lab(&kc, &["up", "-n", ns]).assert_code(0);
    lab(&kc, &["verify", "-n", ns]).assert_code(0);
    assert_eq!(sql(&sim, ns, "mysql-1", "SELECT @@server_id").trim(), "2");
    lab(&kc, &["exercise", "reset", "-n", ns]).assert_code(0);

    // A solve interrupted with the script fixed and the pods still rolling: the next solve finishes it.
    lab(&kc, &["exercise", "start", "missing-rows", "-n", ns]).assert_code(0);
    interrupted(&["exercise", "solve", "-n", ns], "exercise missing-rows: script fixed");
    lab(&kc, &["exercise", "solve", "-n", ns]).assert_code(0);
    lab(&kc, &["exercise", "reset", "-n", ns]).assert_code(0);
    lab(&kc, &["verify", "-n", ns]).assert_code(0);
}

#[test]
fn the_exercise_stuck_replica_a_hand_fix_on_a_replica_solved_by_lab_repair() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    let ns = "student-stuck";
    lab(&kc, &["up", "-n", ns]).assert_code(0);

    let check = run_exercise(
        &kc,
        ns,
        "stuck-replica",
        "new orders written on the primary no longer appear on mysql-1",
        "lab repair -n student-stuck",
    );
    // The symptom, not the cause: the duplicate key shows only in what `lab verify` reports about replication.
    let goal = check["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "exercise stuck-replica: the user's problem is gone")
        .expect("the goal is graded");
    assert!(!goal["symptom"].as_str().unwrap().contains("1062"), "{goal}");
    // After solve and reset, the replica holds exactly the primary's orders.
    assert_eq!(
        sql(&sim, ns, "mysql-1", "CHECKSUM TABLE appdb.exercise_orders"),
        sql(&sim, ns, "mysql-0", "CHECKSUM TABLE appdb.exercise_orders")
    );
}
