//! Grading a class: one lab per student namespace, `lab list`, and `status`/`verify` with `--all-namespaces`.

use std::path::Path;

use serde_json::Value;

use crate::harness::{Run, kubeconfig, kubectl, lab, parse_junit_suites, sql, start_sim};

const STUDENTS: [&str; 3] = ["student-1", "student-2", "student-3"];

/// Namespace and verdict of each entry of a JSON list (`lab list -o json`, `status -A -o json`).
fn verdicts(run: &Run) -> Vec<(String, String)> {
    run.json()
        .as_array()
        .unwrap_or_else(|| panic!("a JSON list: {}", run.stdout))
        .iter()
        .map(|entry| {
            (
                entry["namespace"].as_str().unwrap().to_string(),
                entry["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn expected(verdicts: &[(&str, &str)]) -> Vec<(String, String)> {
    verdicts.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// Creates a namespace with the real kubectl, from a manifest: kubectl sends it as JSON (kubesim serves no
/// protobuf and no OpenAPI document to validate against).
fn create_namespace(kc: &Path, name: &str) {
    let manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n");
    kubectl(kc, &["create", "--validate=false", "-f", "-"], &manifest);
}

#[test]
fn a_class_of_three_labs_is_listed_and_graded_in_one_command() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);

    // No lab yet: status has nothing broken (0, an empty table), verify has verified nothing (1).
    let empty = lab(&kc, &["status", "-A"]);
    empty.assert_code(0).assert_stderr_contains("no lab on the cluster");
    assert_eq!(empty.stdout, "NAMESPACE  VERDICT  REASONS\n");
    lab(&kc, &["verify", "-A", "-o", "json"])
        .assert_code(1)
        .assert_stderr_contains("no lab on the cluster");
    assert_eq!(
        lab(&kc, &["list", "-o", "json"]).assert_code(0).json(),
        Value::Array(vec![])
    );

    // student-2 has a replica, whose replication is then stopped; the others are a primary alone.
    for (student, replicas) in [("student-1", "1"), ("student-2", "2"), ("student-3", "1")] {
        lab(&kc, &["up", "-n", student, "--replicas", replicas]).assert_code(0);
    }
    sql(&sim, "student-2", "mysql-1", "STOP SLAVE");
    // A namespace without lab's label is never a lab.
    create_namespace(&kc, "not-a-lab");

    let class = expected(&[
        ("student-1", "HEALTHY"),
        ("student-2", "BROKEN"),
        ("student-3", "HEALTHY"),
    ]);

    // lab list: one row per lab, with the verdict `lab status -n` gives.
    let list = lab(&kc, &["list", "-o", "json"]);
    list.assert_code(0);
    assert_eq!(verdicts(&list), class, "{}", list.stdout);
    for entry in list.json().as_array().unwrap() {
        let namespace = entry["namespace"].as_str().unwrap();
        let alone = lab(&kc, &["status", "-n", namespace, "-o", "json"]).json();
        assert_eq!(entry["verdict"], alone["verdict"], "{namespace}");
        assert_eq!(entry["image"], "mysql:8.4", "{entry:#}");
        assert_eq!(entry["pods"], if namespace == "student-2" { 2 } else { 1 }, "{entry:#}");
        assert_eq!(entry["exercise"], Value::Null, "{entry:#}");
    }
    let table = lab(&kc, &["list"]);
    table.assert_code(0);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", table.stdout);
    assert!(lines[0].starts_with("NAMESPACE  VERDICT  IMAGE"), "{}", table.stdout);
    assert!(
        lines[2].starts_with("student-2  BROKEN   mysql:8.4  2     -"),
        "{}",
        table.stdout
    );
    assert!(!table.stdout.contains("not-a-lab"), "{}", table.stdout);

    // status -A: one row per lab with its reasons; 1 because one lab is BROKEN.
    let status = lab(&kc, &["status", "-A"]);
    status.assert_code(1);
    let rows: Vec<&str> = status.stdout.lines().collect();
    assert_eq!(rows.len(), 4, "{}", status.stdout);
    assert!(rows[1].starts_with("student-1  HEALTHY  -"), "{}", status.stdout);
    assert!(rows[2].starts_with("student-2  BROKEN   "), "{}", status.stdout);
    assert!(
        rows[2].contains("mysql-1"),
        "the reason names the replica: {}",
        status.stdout
    );
    let status = lab(&kc, &["status", "-A", "-o", "json"]);
    status.assert_code(1);
    assert_eq!(verdicts(&status), class);

    // verify -A: every check of every lab; 1 unless every lab is HEALTHY.
    let verify = lab(&kc, &["verify", "-A", "-o", "json"]);
    verify.assert_code(1);
    assert_eq!(verdicts(&verify), class, "{}", verify.stdout);
    for report in verify.json().as_array().unwrap() {
        let validated = report["validation"]["ok"].as_bool();
        if report["namespace"] == "student-2" {
            assert!(
                report["problems"].as_array().is_some_and(|p| !p.is_empty()),
                "{report:#}"
            );
        } else {
            assert_eq!(validated, Some(true), "verify wrote and read back a row: {report:#}");
        }
    }

    // verify -A -o junit: one testsuite per lab, as a CI reader sees it; failures only in student-2's.
    let junit = lab(&kc, &["verify", "-A", "-o", "junit"]);
    junit.assert_code(1);
    let suites = parse_junit_suites(&junit.stdout);
    let names: Vec<&str> = suites.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, STUDENTS.map(|s| format!("lab verify {s}")), "{}", junit.stdout);
    for (name, cases) in &suites {
        let failures: Vec<&(String, Option<String>)> = cases.iter().filter(|(_, f)| f.is_some()).collect();
        assert!(!cases.is_empty(), "{name}");
        if name.ends_with("student-2") {
            assert!(
                failures
                    .iter()
                    .any(|(case, _)| case == "mysql-1 replicates from the primary"),
                "{failures:?}"
            );
        } else {
            assert!(failures.is_empty(), "{name}: {failures:?}");
        }
    }

    // -A with -n is a usage error, in either position.
    lab(&kc, &["verify", "-A", "-n", "student-1"]).assert_code(2);
    lab(&kc, &["-n", "student-1", "status", "-A"])
        .assert_code(2)
        .assert_stderr_contains("exclude each other");

    // -A on a command that does not check is a usage error too, before anything is done.
    lab(&kc, &["teardown", "-A", "--yes"])
        .assert_code(2)
        .assert_stderr_contains("--all-namespaces is for verify, status and list");

    // The class repaired, verify -A passes.
    lab(&kc, &["up", "-n", "student-2"]).assert_code(0);
    let verify = lab(&kc, &["verify", "-A", "-o", "json"]);
    verify.assert_code(0);
    assert_eq!(
        verdicts(&verify),
        expected(&[
            ("student-1", "HEALTHY"),
            ("student-2", "HEALTHY"),
            ("student-3", "HEALTHY")
        ])
    );

    // A labelled namespace whose lab cannot be checked is a BROKEN row with the error, not an abort.
    create_namespace(&kc, "student-4");
    kubectl(
        &kc,
        &["label", "namespace", "student-4", "app.kubernetes.io/managed-by=lab"],
        "",
    );
    let status = lab(&kc, &["status", "-A", "-o", "json"]);
    status.assert_code(1);
    let reports = status.json();
    assert_eq!(reports.as_array().unwrap().len(), 4, "{reports:#}");
    let gone = &reports[3];
    assert_eq!(gone["namespace"], "student-4");
    assert_eq!(gone["verdict"], "BROKEN");
    assert!(
        gone["problems"][0]["cause"]
            .as_str()
            .is_some_and(|c| c.contains("no lab in namespace student-4")),
        "{gone:#}"
    );
}
