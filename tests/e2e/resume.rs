//! Interrupted anywhere, `lab up` resumes: an interruption at every step boundary and at the points inside each
//! step where a run leaves half-done work (`LAB_INTERRUPT_AT`, which stops the run there exactly as Ctrl-C does),
//! each followed by the next run, which must get at least to the next point; and a replica stopped by a person is
//! started by `lab up`, not waited on.

use crate::harness::{kubeconfig, kubectl, lab, lab_with_env, parse_junit, sql, start_sim};

const NS: &str = "resume";

/// Every checkpoint of a first `lab up` with two pods, in the order a run reaches them.
const CHECKPOINTS: &[&str] = &[
    "before preflight",
    "after preflight",
    "before apply manifests",
    "apply manifests: Namespace/resume applied",
    "apply manifests: StatefulSet/mysql applied",
    "after apply manifests",
    "before wait for mysql-0",
    "wait for mysql-0: pod Ready",
    "after wait for mysql-0",
    "before primary setup",
    "primary setup: replication user created",
    "primary setup: origin captured",
    "primary setup: origin recorded",
    "primary setup: appdb created",
    "after primary setup",
    "before wait for mysql-1",
    "wait for mysql-1: pod Ready",
    "after wait for mysql-1",
    "before configure replicas",
    "configure replicas: source changed",
    "configure replicas: replication running",
    "after configure replicas",
    "before role labels",
    "role labels: primary labelled",
    "after role labels",
    "before validation",
    "validation: marker written",
    "after validation",
    "before read-only test",
    "read-only test: root tested",
    "after read-only test",
];

#[test]
fn up_resumes_after_an_interruption_at_every_step_boundary_and_inside_every_step() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);

    // Each run is interrupted at the next checkpoint, so each one resumes from where the previous one stopped.
    // Exit 130 proves the run got there: a run that hung, failed or skipped the point would exit otherwise.
    for checkpoint in CHECKPOINTS {
        let run = lab_with_env(
            &kc,
            &["up", "-n", NS, "--timeout", "120"],
            &[("LAB_INTERRUPT_AT", checkpoint)],
        );
        assert_eq!(
            run.code, 130,
            "interrupted at {checkpoint:?}: expected exit 130\nstderr:\n{}",
            run.stderr
        );
        run.assert_stderr_contains("run it again to resume");
    }

    let resumed = lab(&kc, &["up", "-n", NS, "-o", "json", "--timeout", "120"]);
    resumed.assert_code(0);
    let report = resumed.json();
    assert_eq!(report["verdict"], "HEALTHY", "{report:#}");
    let replica = &report["replicas"][0];
    assert_eq!(
        (replica["io_thread"].as_str(), replica["sql_thread"].as_str()),
        (Some("Yes"), Some("Yes")),
        "{replica}"
    );
    lab(&kc, &["verify", "-n", NS]).assert_code(0);

    // A person stops replication: `up` starts it again where it stopped instead of waiting for it.
    sql(&sim, NS, "mysql-1", "STOP SLAVE");
    // CI graders read the same failure as JUnit: one failing testcase that states the symptom.
    let graded = lab(&kc, &["verify", "-n", NS, "-o", "junit", "--timeout", "60"]);
    graded.assert_code(1);
    let cases = parse_junit(&graded.stdout);
    let failed: Vec<&(String, Option<String>)> = cases.iter().filter(|(_, failure)| failure.is_some()).collect();
    assert!(
        failed
            .iter()
            .any(|(name, failure)| name == "mysql-1 replicates from the primary"
                && failure.as_deref().unwrap().contains("mysql-1: IO thread is No")),
        "{cases:?}"
    );
    assert!(cases.len() > 10, "one testcase per check: {cases:?}");
    // A stopped replica is not waited on (nothing restarts it by itself): the step says so and names the fix.
    assert!(
        failed.iter().any(|(name, failure)| name == "step: replication threads"
            && failure.as_deref().unwrap().contains("is stopped (SQL thread No")
            && failure
                .as_deref()
                .unwrap()
                .contains("run `lab up`, which starts it where it stopped")),
        "{cases:?}"
    );
    let restarted = lab(&kc, &["up", "-n", NS, "-o", "json", "--timeout", "60"]);
    restarted.assert_code(0);
    let report = restarted.json();
    let configure = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "configure replicas")
        .expect("configure replicas step");
    assert_eq!(configure["status"], "done", "{configure}");
    assert!(
        configure["detail"]
            .as_str()
            .unwrap()
            .contains("mysql-1 pointed at mysql-0 but stopped: started"),
        "{configure}"
    );
    assert_eq!(report["verdict"], "HEALTHY", "{report:#}");

    // The tutorial's section 8: someone scales the StatefulSet with kubectl. A plain `lab up` keeps that size and
    // configures the new replica instead of scaling back to the manifests' 2.
    kubectl(&kc, &["scale", "statefulset", "mysql", "-n", NS, "--replicas=3"], "");
    let scaled = lab(&kc, &["up", "-n", NS, "-o", "json", "--timeout", "120"]);
    scaled.assert_code(0);
    scaled.assert_stderr_contains("keeping the 3 pods StatefulSet mysql runs now");
    let report = scaled.json();
    assert_eq!(report["verdict"], "HEALTHY", "{report:#}");
    let replicas: Vec<&str> = report["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pod"].as_str().unwrap())
        .collect();
    assert_eq!(replicas, ["mysql-1", "mysql-2"]);
    let set = sim
        .objects("statefulsets", Some(NS))
        .into_iter()
        .find(|s| s["metadata"]["name"] == "mysql")
        .expect("the StatefulSet");
    assert_eq!(set["spec"]["replicas"], 3, "lab up kept the size kubectl set");

    // Back to 2: up waits for mysql-2 to go, does not call it a broken replica, and its claim stays.
    let shrunk = lab(
        &kc,
        &["up", "-n", NS, "--replicas", "2", "-o", "json", "--timeout", "120"],
    );
    shrunk.assert_code(0);
    let report = shrunk.json();
    assert_eq!(report["verdict"], "HEALTHY", "{report:#}");
    let scale_down = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "scale down")
        .expect("a scale-down step");
    assert!(
        scale_down["detail"]
            .as_str()
            .unwrap()
            .starts_with("mysql-2 left the lab"),
        "{scale_down}"
    );
    let pods: Vec<String> = sim
        .objects("pods", Some(NS))
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!pods.contains(&"mysql-2".to_string()), "{pods:?}");
    assert!(
        sim.objects("persistentvolumeclaims", Some(NS))
            .iter()
            .any(|c| c["metadata"]["name"] == "data-mysql-2"),
        "the claim of the pod that left stays"
    );
}
