//! `lab demo`: each demo on a lab `lab up` built, its observations, a Ctrl-C in the middle that `lab up` repairs,
//! and the refusal on a missing or broken lab.

use serde_json::{Value, json};

use crate::harness::{kubeconfig, lab, lab_with_env, sql, start_sim};

/// Every observation of the demo, as (what, matched, observed).
fn observations(report: &Value) -> Vec<(String, bool, String)> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .flat_map(|s| s["observations"].as_array().expect("observations").iter())
        .map(|o| {
            (
                o["what"].as_str().unwrap().to_string(),
                o["matched"].as_bool().unwrap(),
                o["observed"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn observed<'a>(all: &'a [(String, bool, String)], what: &str) -> &'a (String, bool, String) {
    all.iter()
        .find(|(w, _, _)| w == what)
        .unwrap_or_else(|| panic!("no observation {what:?} in {all:#?}"))
}

#[track_caller]
fn assert_all_matched(report: &Value) {
    let all = observations(report);
    let failed: Vec<_> = all.iter().filter(|(_, matched, _)| !matched).collect();
    assert!(
        failed.is_empty(),
        "observations that did not match: {failed:#?}\n{report:#}"
    );
    assert_eq!(report["ok"], true);
    assert_eq!(report["verdict"], "HEALTHY", "{report:#}");
    assert!(report["duration_ms"].as_u64().unwrap() > 0);
}

#[test]
fn demo_list_and_a_missing_lab() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    let list = lab(&kc, &["demo", "list"]);
    list.assert_code(0);
    for name in ["identity", "storage", "scale", "lag", "mistakes"] {
        assert!(list.stdout.lines().any(|l| l.starts_with(name)), "{}", list.stdout);
    }
    lab(&kc, &["demo", "nope"])
        .assert_code(2)
        .assert_stderr_contains("no demo called \"nope\"");
    lab(&kc, &["demo", "identity"])
        .assert_code(2)
        .assert_stderr_contains("run `lab up` first");
    // With -o json, a refused demo still prints one report: no steps, verdict BROKEN, the refusal as a problem.
    let refused = lab(&kc, &["demo", "identity", "-o", "json"]);
    refused.assert_code(2);
    let report = refused.json();
    assert_eq!(
        (
            &report["demo"],
            &report["ok"],
            &report["verdict"],
            &report["verdict_before"]
        ),
        (&json!("identity"), &json!(false), &json!("BROKEN"), &json!("BROKEN")),
        "{report:#}"
    );
    assert_eq!(report["steps"], json!([]));
    assert!(
        report["problems"][0]["cause"]
            .as_str()
            .unwrap()
            .contains("run `lab up` first"),
        "{report:#}"
    );
    // A broken lab (replication stopped on mysql-1) is refused too, with the reason, before anything is changed.
    lab(&kc, &["up"]).assert_code(0);
    sql(&sim, "database", "mysql-1", "STOP SLAVE");
    let refused = lab(&kc, &["demo", "storage", "-o", "json"]);
    refused
        .assert_code(2)
        .assert_stderr_contains("the lab in namespace database is BROKEN (mysql-1: ")
        .assert_stderr_contains("run `lab up` first");
    let report = refused.json();
    assert_eq!(
        (&report["demo"], &report["verdict_before"]),
        (&json!("storage"), &json!("BROKEN"))
    );
    assert_eq!(report["problems"][0]["subject"], "demo storage");
    assert!(
        report["problems"][0]["cause"]
            .as_str()
            .unwrap()
            .starts_with("the lab in namespace database is BROKEN (mysql-1: "),
        "{report:#}"
    );
    let status = lab(&kc, &["status", "-o", "json"]).json();
    assert!(
        status["pods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "mysql-1"),
        "the refused demo scaled nothing away"
    );
}

#[test]
fn demo_identity_shows_a_recreated_pod_keeping_its_name_claim_and_data() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up"]).assert_code(0);
    // Ctrl-C in the middle first: `lab up` (as the message says) repairs it, then the whole demo runs.
    let run = lab_with_env(
        &kc,
        &["demo", "identity"],
        &[("LAB_INTERRUPT_AT", "demo identity: pod gone")],
    );
    run.assert_code(130).assert_stderr_contains("run `lab up` to repair it");
    lab(&kc, &["up"]).assert_code(0);
    lab(&kc, &["verify"]).assert_code(0);

    let run = lab(&kc, &["demo", "identity", "-o", "json"]);
    run.assert_code(0);
    let report = run.json();
    assert_all_matched(&report);
    assert_eq!(report["demo"], "identity");
    let all = observations(&report);
    for pod in ["mysql-0", "mysql-1"] {
        let (_, _, uids) = observed(&all, "pod uid");
        assert!(uids.contains(" → "), "{uids}");
        assert!(observed(&all, &format!("the row on the new {pod}")).1);
        assert!(observed(&all, &format!("old {pod} terminated (grace period, SIGTERM)")).1);
    }
    let (_, _, io) = observed(&all, "mysql-1's IO thread while mysql-0 was away");
    assert!(io.contains("Connecting"), "{io}");
    assert!(
        run.stderr.contains("$ kubectl -n database delete pod mysql-0"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("-proot"),
        "a password was printed:\n{}",
        run.stderr
    );
    // Timed phases carry their numbers.
    let ready = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["observations"].as_array().unwrap())
        .find(|o| o["what"] == "new mysql-0 Ready")
        .expect("timed phase");
    assert_eq!(ready["unit"], "s");
    assert!(ready["value"].as_f64().unwrap() > 0.0);
    // The role labels were put back: the replicas Service routes to the re-created mysql-1 again.
    let verify = lab(&kc, &["verify", "-o", "json"]);
    verify.assert_code(0);
    let services = verify.json()["services"].clone();
    let replicas = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "mysql-replicas")
        .expect("mysql-replicas");
    assert_eq!(replicas["endpoints"], serde_json::json!(["mysql-1"]), "{services:#}");
}

#[test]
fn demo_lag_shows_the_gap_growing_the_verdict_turning_and_the_catch_up() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up"]).assert_code(0);
    // Ctrl-C in the middle first: `lab up` (as the message says) repairs it, then the whole demo runs.
    let run = lab_with_env(
        &kc,
        &["demo", "lag"],
        &[("LAB_INTERRUPT_AT", "demo lag: writes while the SQL thread is stopped")],
    );
    run.assert_code(130).assert_stderr_contains("run `lab up` to repair it");
    let status = sql(&sim, "database", "mysql-1", "SHOW SLAVE STATUS\\G");
    // Without column names (-N): Slave_IO_Running then Slave_SQL_Running, one per line.
    assert!(
        status.contains("\nYes\nNo\n"),
        "the SQL thread was left stopped:\n{status}"
    );
    lab(&kc, &["up"]).assert_code(0);
    lab(&kc, &["verify"]).assert_code(0);

    let run = lab(&kc, &["demo", "lag", "-o", "json"]);
    run.assert_code(0);
    let report = run.json();
    assert_all_matched(&report);
    let all = observations(&report);
    let (_, _, verdict) = observed(&all, "verdict");
    assert!(
        verdict.starts_with("BROKEN: ") || verdict.starts_with("DEGRADED: "),
        "{verdict}"
    );
    assert!(verdict.contains("mysql-1") && verdict.contains("SQL"), "{verdict}");
    let timeline = report["timeline"].as_array().expect("a timeline");
    let stopped: Vec<u64> = timeline
        .iter()
        .filter(|s| s["phase"] == "stopped")
        .map(|s| s["gap_bytes"].as_u64().unwrap())
        .collect();
    assert!(stopped.len() >= 5 && stopped.last() > stopped.first(), "{stopped:?}");
    assert_eq!(timeline.last().unwrap()["gap_bytes"], 0, "caught up at the end");
    assert!(run.stderr.contains("STOP SLAVE SQL_THREAD"), "{}", run.stderr);
    assert!(
        run.stderr.contains("gap ▁"),
        "the sparkline is printed:\n{}",
        run.stderr
    );
}

#[test]
fn demo_storage_shows_the_claim_outliving_its_pod_and_the_catch_up() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up"]).assert_code(0);
    // Ctrl-C in the middle first: `lab up` (as the message says) repairs it, then the whole demo runs.
    let run = lab_with_env(
        &kc,
        &["demo", "storage"],
        &[("LAB_INTERRUPT_AT", "demo storage: write 3 rows while mysql-1 is away")],
    );
    run.assert_code(130)
        .assert_stderr_contains("run `lab up --replicas 2` to repair it");
    lab(&kc, &["up", "--replicas", "2"]).assert_code(0);
    let verify = lab(&kc, &["verify", "-o", "json"]);
    verify.assert_code(0);
    let report = verify.json();
    assert_eq!(
        report["pods"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] != "mysql-client")
            .count(),
        2,
        "{report:#}"
    );

    let run = lab(&kc, &["demo", "storage", "-o", "json"]);
    run.assert_code(0);
    let report = run.json();
    assert_all_matched(&report);
    let all = observations(&report);
    assert_eq!(observed(&all, "pod mysql-1").2, "gone");
    assert!(observed(&all, "claim data-mysql-1").2.ends_with(", Bound"));
    assert_eq!(observed(&all, "rows written while it was away").2, "3 of 3");
    assert_eq!(observed(&all, "the row from before").2, "present");
    assert!(
        run.stderr
            .contains("$ kubectl -n database scale statefulset mysql --replicas=1"),
        "{}",
        run.stderr
    );
}

#[test]
fn demo_scale_adds_a_replica_from_the_recorded_origin_and_removes_it() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up"]).assert_code(0);
    let run = lab(&kc, &["demo", "scale", "-o", "json"]);
    run.assert_code(0);
    let report = run.json();
    assert_all_matched(&report);
    let all = observations(&report);
    assert_eq!(observed(&all, "mysql-2 replicates").2, "not configured");
    assert!(
        observed(&all, "mysql-2 configured from the recorded origin")
            .2
            .contains("mysql-2 now replicates from")
    );
    assert!(observed(&all, "mysql-replicas routes to mysql-2").2.contains("mysql-2"));
    let (_, _, leaving) = observed(&all, "the report on mysql-2 while it leaves");
    assert!(
        leaving.contains("leaving: true") || leaving.contains("already gone"),
        "{leaving}"
    );
    // Back to two pods, and the claim the demo created is gone.
    let status = lab(&kc, &["status", "-o", "json"]).json();
    assert!(
        status["pvcs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["name"] != "data-mysql-2"),
        "{status:#}"
    );
    assert!(
        status["pods"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["name"] != "mysql-2"),
        "{status:#}"
    );
}

#[test]
fn demo_mistakes_shows_each_error_and_undoes_it() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up"]).assert_code(0);
    // Ctrl-C in the middle first: `lab up` (as the message says) repairs it, then the whole demo runs.
    let run = lab_with_env(
        &kc,
        &["demo", "mistakes"],
        &[("LAB_INTERRUPT_AT", "demo mistakes: duplicate server id set")],
    );
    run.assert_code(130)
        .assert_stderr_contains("run `kubectl -n database delete pod mysql-1 && lab up` to repair it");
    assert_eq!(sql(&sim, "database", "mysql-1", "SELECT @@server_id").trim(), "1");
    crate::harness::kubectl(&kc, &["-n", "database", "delete", "pod", "mysql-1"], "");
    lab(&kc, &["up"]).assert_code(0);
    lab(&kc, &["verify"]).assert_code(0);
    assert_eq!(sql(&sim, "database", "mysql-1", "SELECT @@server_id").trim(), "2");

    let run = lab(&kc, &["demo", "mistakes", "--pause", "-o", "json"]);
    run.assert_code(0);
    let report = run.json();
    assert_all_matched(&report);
    let all = observations(&report);
    assert!(observed(&all, "without -h").2.starts_with("ERROR 2002"), "{all:#?}");
    assert_eq!(observed(&all, "with -h mysql-0.mysql-headless").2, "server_id 1");
    // The simulator runs MariaDB: the auth mistake is explained, not made.
    assert_eq!(
        observed(&all, "repl's authentication plugin").2,
        "mysql_native_password"
    );
    assert!(
        run.stderr
            .contains("does not apply here: MariaDB has no caching_sha2_password"),
        "{}",
        run.stderr
    );
    assert!(
        observed(&all, "mysql-1's IO thread").2.starts_with("IO error 1593"),
        "{all:#?}"
    );
    assert_eq!(sql(&sim, "database", "mysql-1", "SELECT @@server_id").trim(), "2");
    assert!(!run.stderr.contains("-proot") && !run.stdout.contains("-proot"));
}

#[test]
fn demo_routing_shows_each_service_routes_and_the_tutorials_selector_reaching_the_primary() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up"]).assert_code(0);
    let services = |sim: &kubesim::Kubesim| -> Vec<String> {
        sim.objects("services", Some("database"))
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    // Ctrl-C while the temporary Service exists: the message names the command that removes it, and -o json still
    // prints the steps so far with the interruption as a problem.
    let repair = "kubectl -n database delete service mysql-replicas-tutorial && lab up";
    let run = lab_with_env(
        &kc,
        &["demo", "routing", "-o", "json"],
        &[("LAB_INTERRUPT_AT", "demo routing: temporary Service created")],
    );
    run.assert_code(130)
        .assert_stderr_contains(&format!("run `{repair}` to repair it"));
    let report = run.json();
    assert_eq!((&report["ok"], &report["verdict"]), (&json!(false), &json!("BROKEN")));
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{report:#}");
    assert_eq!(report["problems"][0]["subject"], steps[2]["title"]);
    assert!(
        report["problems"][0]["fix"].as_str().unwrap().contains(repair),
        "{report:#}"
    );
    assert_eq!(steps[0]["observations"][0]["matched"], true, "{report:#}");
    assert!(services(&sim).contains(&"mysql-replicas-tutorial".to_string()));
    crate::harness::kubectl(
        &kc,
        &["-n", "database", "delete", "service", "mysql-replicas-tutorial"],
        "",
    );
    lab(&kc, &["up"]).assert_code(0);
    lab(&kc, &["verify"]).assert_code(0);
    let run = lab(&kc, &["demo", "routing", "-o", "json"]);
    run.assert_code(0);
    let report = run.json();
    assert_all_matched(&report);
    let all = observations(&report);
    assert_eq!(observed(&all, "12 connections to mysql-primary").2, "server_id 1 × 12");
    assert_eq!(observed(&all, "12 connections to mysql-replicas").2, "server_id 2 × 12");
    assert!(
        observed(&all, "12 connections to mysql-replicas-tutorial")
            .2
            .contains("server_id 1 ×"),
        "{all:?}"
    );
    assert!(
        !run.stderr.contains("-proot") && !run.stdout.contains("-proot"),
        "no password is shown"
    );
    // The temporary Service is gone; the lab's own Services are as before.
    let services = services(&sim);
    assert!(
        !services.contains(&"mysql-replicas-tutorial".to_string()),
        "{services:?}"
    );
}

#[test]
fn demo_dns_answers_each_name_as_the_tutorial_teaches_and_follows_a_recreated_pod() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up"]).assert_code(0);
    // Ctrl-C once mysql-1 is deleted: the re-created pod lacks its role label; `lab up` (as the message says)
    // puts it back, and the replicas Service routes to it again.
    let run = lab_with_env(
        &kc,
        &["demo", "dns", "-o", "json"],
        &[("LAB_INTERRUPT_AT", "demo dns: pod gone")],
    );
    run.assert_code(130).assert_stderr_contains("run `lab up` to repair it");
    let report = run.json();
    assert_eq!(
        report["problems"][0]["subject"],
        "delete mysql-1: its name follows the new pod"
    );
    assert!(report["steps"].as_array().unwrap().len() >= 3, "{report:#}");
    lab(&kc, &["up"]).assert_code(0);
    let verify = lab(&kc, &["verify", "-o", "json"]);
    verify.assert_code(0);
    let replicas = verify.json()["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "mysql-replicas")
        .cloned()
        .expect("mysql-replicas");
    assert_eq!(replicas["endpoints"], json!(["mysql-1"]));
    let run = lab(&kc, &["demo", "dns", "-o", "json"]);
    run.assert_code(0);
    let report = run.json();
    assert_all_matched(&report);
    let all = observations(&report);
    let pod_ip = |name: &str| -> String {
        sim.objects("pods", Some("database"))
            .into_iter()
            .find(|p| p["metadata"]["name"] == name)
            .and_then(|p| p["status"]["podIP"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    assert_eq!(observed(&all, "nslookup mysql-0.mysql-headless").2, pod_ip("mysql-0"));
    // mysql-1 was re-created by the demo: its name answers the address it has now.
    assert_eq!(observed(&all, "nslookup mysql-1.mysql-headless").2, pod_ip("mysql-1"));
    let primary = &observed(&all, "nslookup mysql-primary.database.svc.cluster.local").2;
    assert!(primary.starts_with("10.96."), "a ClusterIP: {primary}");
}
