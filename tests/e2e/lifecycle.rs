//! The whole life of a lab on one simulator: up from nothing, up again, verify, status, pods deleted and back,
//! a third pod, teardown keeping the data, up again, teardown.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{claim_of, delete_pod_and_wait, kubeconfig, lab, sql, start_sim};

const NS: &str = "database";

fn pods_by_name(sim: &kubesim::Kubesim) -> Vec<Value> {
    sim.objects("pods", Some(NS))
}

fn pod(sim: &kubesim::Kubesim, name: &str) -> Value {
    pods_by_name(sim)
        .into_iter()
        .find(|p| p["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no pod {name}"))
}

fn rows(sim: &kubesim::Kubesim, pod: &str) -> usize {
    sql(sim, NS, pod, "SELECT COUNT(*) FROM appdb.replication_test")
        .trim()
        .parse()
        .expect("a count")
}

fn server_ids(report: &Value) -> Vec<(String, u64)> {
    let mut ids: Vec<_> = report["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| (s["pod"].as_str().unwrap().to_string(), s["server_id"].as_u64().unwrap()))
        .collect();
    ids.sort();
    ids
}

#[track_caller]
fn assert_replicating(report: &Value, replicas: &[&str]) {
    let found: Vec<&str> = report["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pod"].as_str().unwrap())
        .collect();
    assert_eq!(found, replicas, "replicas in the report");
    for replica in report["replicas"].as_array().unwrap() {
        assert_eq!(replica["io_thread"], "Yes", "IO thread of {replica}");
        assert_eq!(replica["sql_thread"], "Yes", "SQL thread of {replica}");
        assert!(
            replica["seconds_behind"].is_u64(),
            "lag is a number, not NULL: {replica}"
        );
    }
    let read_on: Vec<&str> = report["validation"]["read_on"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(read_on, replicas, "the marker is read back on every replica");
}

#[test]
fn a_lab_lives_through_rerun_restarts_scaling_and_teardown() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);

    // a. From nothing.
    let first = lab(&kc, &["up", "-o", "json"]);
    first.assert_code(0);
    let report = first.json();
    assert_eq!(report["verdict"], "HEALTHY", "{report:#}");
    assert_eq!(
        server_ids(&report),
        vec![("mysql-0".to_string(), 1), ("mysql-1".to_string(), 2)]
    );
    assert_replicating(&report, &["mysql-1"]);
    assert!(report["validation"]["marker"].as_str().unwrap().starts_with("lab-"));
    assert_eq!(report["validation"]["ok"], true);
    let read_only = report["read_only"].as_array().unwrap();
    let probe = read_only
        .iter()
        .find(|r| r["account"] == "lab_probe")
        .expect("the non-admin account was tested");
    assert_eq!(probe["outcome"], "rejected");
    let root = read_only
        .iter()
        .find(|r| r["account"] == "root")
        .expect("root was tested");
    assert_eq!(
        root["outcome"], "accepted",
        "MariaDB lets root write on a read-only replica: reported as it is"
    );
    assert!(
        root["explanation"].as_str().unwrap().contains("READ_ONLY ADMIN"),
        "{root}"
    );
    let steps = report["steps"].as_array().unwrap();
    assert!(steps.len() >= 8, "{steps:?}");
    assert!(
        steps.iter().all(|s| s["duration_ms"].is_u64()),
        "every step has a duration: {steps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s["name"] == "primary setup" && s["status"] == "done")
    );

    // b. Again: nothing changes, still healthy; verify and status agree. With every log switched on, no
    // password from the Secret appears anywhere.
    let second = lab(&kc, &["up", "-o", "json", "-vv"]);
    second.assert_code(0);
    for secret in ["replpass", "probepass"] {
        assert!(!second.stdout.contains(secret), "{secret} printed on stdout");
        assert!(!second.stderr.contains(secret), "{secret} logged on stderr");
    }
    let report = second.json();
    assert_eq!(report["verdict"], "HEALTHY");
    let changed: Vec<&Value> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "done")
        .collect();
    assert!(changed.is_empty(), "a second `lab up` changed something: {changed:?}");
    lab(&kc, &["verify"]).assert_code(0);
    let status = lab(&kc, &["status", "-o", "json"]);
    status.assert_code(0);
    assert_eq!(status.json()["verdict"], "HEALTHY");
    // Another image on the existing data is refused before anything changes.
    let swap = lab(&kc, &["up", "--image", "mariadb:11.4"]);
    swap.assert_code(2).assert_stderr_contains("run `lab teardown` first");
    let sts = sim.objects("statefulsets", Some(NS));
    assert_eq!(
        sts[0]["spec"]["template"]["spec"]["containers"][0]["image"], "mysql:8.4",
        "nothing was applied"
    );
    let before = rows(&sim, "mysql-0");
    assert!(before >= 3, "three validation rows so far, found {before}");

    // c. Pods deleted: same name, same PVC, rows still there, replication resumes.
    let claim = claim_of(&pod(&sim, "mysql-0"));
    let (old, new) = delete_pod_and_wait(&sim, NS, "mysql-0", Duration::from_secs(120));
    assert_ne!(old, new, "mysql-0 is a new pod");
    assert_eq!(claim_of(&pod(&sim, "mysql-0")), claim, "mysql-0 keeps its PVC");
    assert!(rows(&sim, "mysql-0") >= before, "mysql-0 kept its rows");
    lab(&kc, &["verify"]).assert_code(0);

    // A re-created replica comes back without the role label `lab` set on the old pod (pod labels are not in
    // the template), so mysql-replicas does not route to it: verify says so, and `lab up` puts the label back.
    let claim = claim_of(&pod(&sim, "mysql-1"));
    let (old, new) = delete_pod_and_wait(&sim, NS, "mysql-1", Duration::from_secs(120));
    assert_ne!(old, new, "mysql-1 is a new pod");
    assert_eq!(claim_of(&pod(&sim, "mysql-1")), claim, "mysql-1 keeps its PVC");
    assert!(rows(&sim, "mysql-1") >= before, "mysql-1 kept its rows");
    let degraded = lab(&kc, &["verify", "-o", "json"]);
    degraded.assert_code(1);
    let report = degraded.json();
    assert_eq!(report["verdict"], "DEGRADED", "{report:#}");
    assert_replicating(&report, &["mysql-1"]);
    assert!(
        report["problems"].to_string().contains("run `lab up`"),
        "{}",
        report["problems"]
    );
    let repaired = lab(&kc, &["up", "-o", "json"]);
    repaired.assert_code(0);
    let steps = repaired.json()["steps"].clone();
    let relabelled = steps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "role labels")
        .unwrap();
    assert_eq!(relabelled["status"], "done", "{steps:#}");
    lab(&kc, &["verify"]).assert_code(0);

    // d. A third pod joins from the recorded origin and verifies.
    let scaled = lab(&kc, &["up", "--replicas", "3", "-o", "json"]);
    scaled.assert_code(0);
    let report = scaled.json();
    assert_eq!(report["verdict"], "HEALTHY", "{report:#}");
    assert_replicating(&report, &["mysql-1", "mysql-2"]);
    assert_eq!(
        rows(&sim, "mysql-2"),
        rows(&sim, "mysql-0"),
        "mysql-2 has every row of the primary"
    );

    // f. Teardown keeping the data, then up again: the old rows are there.
    let rows_before_teardown = rows(&sim, "mysql-0");
    lab(&kc, &["teardown", "--keep-data", "--yes"]).assert_code(0);
    assert!(pods_by_name(&sim).is_empty(), "no pods after teardown");
    let claims: Vec<String> = sim
        .objects("persistentvolumeclaims", Some(NS))
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        claims,
        vec!["data-mysql-0", "data-mysql-1", "data-mysql-2"],
        "--keep-data keeps the PVCs"
    );
    lab(&kc, &["up", "--replicas", "3"]).assert_code(0);
    assert!(
        rows(&sim, "mysql-0") > rows_before_teardown,
        "the old rows are back, plus a new marker"
    );
    lab(&kc, &["teardown", "--yes"]).assert_code(0);
    let namespaces = sim.objects("namespaces", None);
    assert!(
        namespaces.iter().all(|n| n["metadata"]["name"] != NS),
        "namespace {NS} is gone"
    );
    assert!(
        sim.objects("persistentvolumeclaims", Some(NS)).is_empty(),
        "PVCs are gone"
    );
    let leftovers = sim.leftovers();
    assert!(
        leftovers.is_empty(),
        "something of the pods is left on the machine: {leftovers:?}"
    );
}

fn ready_since(pod: &Value) -> String {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or_else(|| panic!("{} is not Ready", pod["metadata"]["name"]))
        .to_string()
}

#[test]
fn a_parallel_lab_starts_every_pod_at_once_and_keeps_its_policy() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);

    let up = lab(&kc, &["up", "--parallel", "--replicas", "3", "-o", "json"]);
    up.assert_code(0);
    let report = up.json();
    assert_eq!(report["verdict"], "HEALTHY", "{report:#}");
    assert_replicating(&report, &["mysql-1", "mysql-2"]);
    let sts = &sim.objects("statefulsets", Some(NS))[0];
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    // The last pod was created before the first was Ready (an ordered start creates it after mysql-1 is Ready).
    let created = pod(&sim, "mysql-2")["metadata"]["creationTimestamp"]
        .as_str()
        .expect("created")
        .to_string();
    assert!(
        created < ready_since(&pod(&sim, "mysql-0")),
        "mysql-2 created at {created}, mysql-0 Ready at {}",
        ready_since(&pod(&sim, "mysql-0"))
    );

    // Without --parallel the policy would change, which a StatefulSet refuses: lab refuses first, applying nothing.
    let version = sts["metadata"]["resourceVersion"].clone();
    let ordered = lab(&kc, &["up", "--replicas", "3", "-o", "json"]);
    ordered
        .assert_code(2)
        .assert_stderr_contains("starts its pods Parallel but the manifests ask for OrderedReady")
        .assert_stderr_contains("pass --parallel to keep it");
    assert_eq!(
        sim.objects("statefulsets", Some(NS))[0]["metadata"]["resourceVersion"],
        version
    );

    let again = lab(&kc, &["up", "--parallel", "--replicas", "3", "-o", "json"]);
    again.assert_code(0);
    let report = again.json();
    assert_eq!(report["verdict"], "HEALTHY");
    let changed: Vec<&Value> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "done")
        .collect();
    assert!(
        changed.is_empty(),
        "a second `lab up --parallel` changed something: {changed:?}"
    );
}
