//! Faults give the documented exit code and a message naming the cause and the fix.

use std::io::Write;
use std::time::{Duration, Instant};

use kubesim::Options;
use serde_json::Value;

use crate::harness::{edited_manifests, kubeconfig, lab, start_sim, start_sim_with};

#[test]
fn an_unknown_context_exits_2_naming_the_contexts_that_exist() {
    let sim = start_sim();
    let run = lab(&kubeconfig(&sim), &["status", "--context", "no-such-context"]);
    run.assert_code(2)
        .assert_stderr_contains("no-such-context")
        .assert_stderr_contains("kubesim");
}

#[test]
fn an_unreachable_api_server_exits_3_naming_the_server() {
    // Port 1 on loopback: nothing listens there.
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(
        file,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: http://127.0.0.1:1\n\
         contexts:\n- name: gone\n  context:\n    cluster: gone\n    user: gone\ncurrent-context: gone\n\
         users:\n- name: gone\n  user: {{}}\n"
    )
    .unwrap();
    let run = lab(file.path(), &["up", "--timeout", "30"]);
    run.assert_code(3).assert_stderr_contains("http://127.0.0.1:1");
}

#[test]
fn an_image_that_cannot_be_pulled_exits_3_naming_the_image_and_the_fix() {
    let sim = start_sim();
    sim.faults().unpullable_image("mysql:8.4-typo");
    let run = lab(
        &kubeconfig(&sim),
        &["up", "--image", "mysql:8.4-typo", "--timeout", "120", "-o", "json"],
    );
    run.assert_code(3)
        .assert_stderr_contains(r#"cannot pull image "mysql:8.4-typo""#)
        .assert_stderr_contains("ErrImagePull")
        .assert_stderr_contains("not found")
        .assert_stderr_contains("imagePullSecret");
    // kubesim's context is not a kind cluster's: `kind load` would be no fix.
    assert!(!run.stderr.contains("kind load"), "{}", run.stderr);
    // Scripts still get one JSON report: the steps so far and the error.
    let report = run.json();
    assert_eq!(report["verdict"], "BROKEN");
    let failed: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "failed")
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["wait for mysql-0"]);
    assert_eq!(report["problems"][0]["subject"], "wait for mysql-0");
    assert!(
        report["problems"][0]["cause"]
            .as_str()
            .unwrap()
            .contains("mysql:8.4-typo")
    );
}

#[test]
fn a_claim_that_never_binds_exits_3_naming_the_claim() {
    let sim = start_sim();
    sim.faults().set_pvc_never_binds(true);
    let run = lab(&kubeconfig(&sim), &["up", "--timeout", "20"]);
    // The provisioner's failure may clear, so lab waits it out and names the claim and the message.
    run.assert_code(3)
        .assert_stderr_contains("timed out after")
        .assert_stderr_contains("data-mysql-0")
        .assert_stderr_contains("ProvisioningFailed");
}

#[test]
fn a_missing_default_storage_class_is_caught_before_anything_is_applied() {
    let sim = start_sim();
    sim.remove_default_storage_class();
    let run = lab(&kubeconfig(&sim), &["up", "--timeout", "60"]);
    // A cluster set up without a default StorageClass is a configuration problem: exit 2.
    run.assert_code(2)
        .assert_stderr_contains("no default StorageClass")
        .assert_stderr_contains("is-default-class");
    assert!(
        sim.objects("statefulsets", Some("database")).is_empty(),
        "nothing was applied"
    );
}

#[test]
fn the_tutorials_super_read_only_option_crash_loops_mariadb_and_the_log_says_why() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    let dir = edited_manifests(&kc, |yaml| {
        yaml.replace(
            r#"echo "read-only=ON" >> /work/server.cnf"#,
            r#"echo "read-only=ON" >> /work/server.cnf; echo "super-read-only=ON" >> /work/server.cnf"#,
        )
    });
    let run = lab(
        &kc,
        &["up", "--manifests", dir.path().to_str().unwrap(), "--timeout", "180"],
    );
    run.assert_code(3)
        .assert_stderr_contains("CrashLoopBackOff")
        .assert_stderr_contains("super-read-only");
}

#[test]
fn equal_server_ids_fail_and_verify_names_the_duplicate() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    let dir = edited_manifests(&kc, |yaml| yaml.replace("SERVER_ID=$((ORDINAL + 1))", "SERVER_ID=1"));
    let up = lab(
        &kc,
        &["up", "--manifests", dir.path().to_str().unwrap(), "--timeout", "180"],
    );
    up.assert_code(1).assert_stderr_contains("1593");
    let verify = lab(&kc, &["verify", "-o", "json", "--timeout", "60"]);
    verify.assert_code(1);
    let report = verify.json();
    assert_eq!(report["verdict"], "BROKEN");
    let problems = report["problems"].to_string();
    assert!(problems.contains("server_id 1"), "the duplicate is named: {problems}");
}

#[test]
fn dropped_watches_and_a_dropped_port_forward_do_not_stop_the_lab() {
    let sim = start_sim();
    sim.faults().drop_next_watches(3);
    sim.faults().drop_next_port_forwards(1);
    let run = lab(&kubeconfig(&sim), &["up", "-o", "json", "--timeout", "180"]);
    run.assert_code(0);
    assert_eq!(run.json()["verdict"], "HEALTHY");
    assert!(!sim.faults().take_watch_drop(), "every dropped watch was used up");
    assert!(
        !sim.faults().take_port_forward_drop(),
        "the dropped port-forward was used up"
    );
}

#[test]
fn a_crash_looping_database_container_exits_3_with_its_last_log_lines() {
    let sim = start_sim();
    sim.faults().set_crash(Some("mysql".into()));
    let run = lab(&kubeconfig(&sim), &["up", "--timeout", "120"]);
    run.assert_code(3)
        .assert_stderr_contains("CrashLoopBackOff")
        .assert_stderr_contains("injected crash")
        .assert_stderr_contains("kubectl logs -n database mysql-0 -c mysql --previous");
}

#[test]
fn a_failing_init_container_exits_3_with_its_log() {
    let sim = start_sim();
    sim.faults().set_crash(Some("init-mysql-config".into()));
    let run = lab(&kubeconfig(&sim), &["up", "--timeout", "120"]);
    run.assert_code(3)
        .assert_stderr_contains(r#"mysql-0 init container "init-mysql-config" failed"#)
        .assert_stderr_contains("injected crash");
}

#[test]
fn a_failing_api_request_stops_with_the_servers_message_and_the_next_run_resumes() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    sim.faults().fail_next_requests(1, 500);
    let failed = lab(&kc, &["up", "--timeout", "120"]);
    assert_ne!(failed.code, 0, "a failed request must fail the run:\n{}", failed.stderr);
    assert!(
        failed.stderr.contains("500") || failed.stderr.contains("Internal"),
        "{}",
        failed.stderr
    );
    lab(&kc, &["up", "--timeout", "180"]).assert_code(0);
}

#[test]
fn lab_up_waits_for_a_node_that_is_not_ready_yet_and_succeeds() {
    // As right after `kind create cluster`: the node is tainted not-ready while its network plugin starts.
    let sim = start_sim_with(Options {
        node_not_ready_for: Some(Duration::from_secs(6)),
        ..Options::default()
    });
    let run = lab(&kubeconfig(&sim), &["up", "--timeout", "300", "-v"]);
    run.assert_code(0);
    let events = sim.objects("events", Some("database"));
    assert!(
        events.iter().any(|e| e["reason"] == "FailedScheduling"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("{node.kubernetes.io/not-ready: }"))),
        "the pods met the not-ready node: {events:?}"
    );
}

#[test]
fn lab_up_fails_fast_on_a_taint_nothing_tolerates() {
    let sim = start_sim();
    sim.faults()
        .set_node_taint(Some(("dedicated", "analytics", "NoSchedule")));
    let started = Instant::now();
    let run = lab(&kubeconfig(&sim), &["up", "--timeout", "300"]);
    run.assert_code(3)
        .assert_stderr_contains("cannot be scheduled on any node")
        .assert_stderr_contains("untolerated taint {dedicated: analytics}")
        .assert_stderr_contains("kubectl taint nodes <node> dedicated-");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "failed fast, not at the timeout: {:?}",
        started.elapsed()
    );
}

#[test]
fn lab_up_fails_fast_when_no_node_has_the_memory_the_database_requests() {
    // The database container requests 512Mi (manifests/03-statefulset.yaml); this node has less to give.
    let sim = start_sim();
    sim.faults().set_node_memory(Some("256Mi"));
    let kc = kubeconfig(&sim);
    let started = Instant::now();
    let run = lab(&kc, &["up", "--timeout", "300"]);
    run.assert_code(3)
        .assert_stderr_contains("1 Insufficient memory")
        .assert_stderr_contains("no node has the memory the pod requests left");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "failed fast, not at the timeout: {:?}",
        started.elapsed()
    );
}

#[test]
fn lab_up_waits_out_a_registrys_rate_limit() {
    let sim = start_sim();
    // The first two pulls are refused with 429 Too Many Requests; the kubelet's third attempt succeeds.
    sim.faults().rate_limit_next_pulls(2);
    let run = lab(&kubeconfig(&sim), &["up", "--timeout", "300", "-v"]);
    run.assert_code(0);
    let events = sim.objects("events", Some("database"));
    let rate_limited: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Failed to pull image") && m.contains("429 Too Many Requests"))
        })
        .collect();
    assert!(!rate_limited.is_empty(), "the pulls were rate-limited: {events:?}");
}
