//! The whole life of a lab on one simulator: up from nothing, up again, verify, status, pods deleted and back,
//! a third pod, teardown keeping the data, up again, teardown.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{claim_of, delete_pod_and_wait, edited_manifests, kubeconfig, kubectl, lab, sql, start_sim};

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
    sql(sim, NS, pod, "SELECT COUNT(*) FROM appdb.lab_validation")
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

/// A run of `lab up` whose every step reports `unchanged` or `passed`.
#[track_caller]
fn assert_changed_nothing(report: &Value) {
    let changed: Vec<&Value> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "done")
        .collect();
    assert!(changed.is_empty(), "a run of `lab up` changed something: {changed:?}");
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

    // Bad input is refused before anything reaches the cluster, with exit 2 and a message naming the problem.
    lab(&kc, &["up", "--image", "nginx:1.27"])
        .assert_code(2)
        .assert_stderr_contains("\"nginx\" is not a MySQL or MariaDB server image");
    lab(&kc, &["up", "--image", "mysql:5.7"])
        .assert_code(2)
        .assert_stderr_contains("MySQL 5.7 is too old");
    lab(&kc, &["up", "--replicas", "-1"])
        .assert_code(2)
        .assert_stderr_contains("invalid value '-1' for '--replicas <N>'");
    assert!(
        sim.objects("namespaces", None)
            .iter()
            .all(|n| n["metadata"]["name"] != NS),
        "nothing was applied"
    );

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
        (&root["outcome"], &root["ok"]),
        (&Value::from("rejected"), &Value::from(true)),
        "lab up takes READ_ONLY ADMIN from root on MariaDB replicas: {root}"
    );

    // The tutorial's section 7 checklist: what a program can check, none of it changing the HEALTHY verdict.
    let checklist: Vec<(&str, &str)> = report["checklist"]
        .as_array()
        .expect("a checklist")
        .iter()
        .map(|i| (i["item"].as_str().unwrap(), i["status"].as_str().unwrap()))
        .collect();
    assert_eq!(checklist.len(), 12, "{checklist:?}");
    for ok in [
        "headless Service matches serviceName",
        "mysql-primary selects only the primary",
        "mysql-replicas excludes the primary",
        "default StorageClass",
        "access modes",
        "restarts",
    ] {
        assert!(checklist.contains(&(ok, "ok")), "{ok} is ok: {checklist:?}");
    }
    assert!(checklist.contains(&("Secret passwords", "warning")), "{checklist:?}");
    assert!(
        checklist.contains(&("backups and restore test", "not_checked")),
        "{checklist:?}"
    );

    // The tutorial's own commands, typed as it writes them, are in tutorial.rs.
    let steps = report["steps"].as_array().unwrap();
    assert!(steps.len() >= 8, "{steps:?}");
    let primary_wait = steps.iter().find(|s| s["name"] == "wait for mysql-0").unwrap();
    assert!(
        primary_wait["detail"]
            .as_str()
            .unwrap()
            .contains("the image is mysql:8.4, but the server is MariaDB"),
        "the simulator's substitution is said: {primary_wait}"
    );
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
    assert_changed_nothing(&report);
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
    // The redacted render is safe to apply: kubectl leaves the Secret's values alone, and `lab up --manifests`
    // keeps the cluster's Secret (it used to apply `<redacted>` as every password).
    let rendered = lab(&kc, &["render"]);
    rendered.assert_code(0);
    let secret_doc = rendered
        .stdout
        .split("---\n")
        .find(|doc| doc.contains("kind: Secret"))
        .expect("the render has the Secret");
    kubectl(&kc, &["apply", "--validate=false", "-f", "-"], secret_doc);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("lab.yaml"), &rendered.stdout).expect("write the render");
    let manifests = dir.path().to_str().unwrap();
    let from_render = lab(&kc, &["up", "--manifests", manifests]);
    from_render.assert_code(0).assert_stderr_contains(
        "Secret mysql-secret: the manifests withhold its values (rendered without --show-secrets), so the cluster's \
         Secret is kept",
    );
    lab(&kc, &["verify"]).assert_code(0);
    // Another root password than the servers were initialised with is refused before anything is applied.
    let changed_root = edited_manifests(&kc, |yaml| {
        yaml.replace("MYSQL_ROOT_PASSWORD: root", "MYSQL_ROOT_PASSWORD: n3w-secret")
    });
    let refused = lab(&kc, &["up", "--manifests", changed_root.path().to_str().unwrap()]);
    refused
        .assert_code(2)
        .assert_stderr_contains("sets another MYSQL_ROOT_PASSWORD than the lab in namespace database")
        .assert_stderr_contains("Nothing was applied");
    assert!(!refused.stderr.contains("n3w-secret"), "{}", refused.stderr);
    lab(&kc, &["verify"]).assert_code(0);

    let before = rows(&sim, "mysql-0");
    assert!(before >= 3, "three validation rows so far, found {before}");

    // c. Pods deleted: same name, same PVC, rows still there, replication resumes.
    let claim = claim_of(&pod(&sim, "mysql-0"));
    let (old, new) = delete_pod_and_wait(&sim, NS, "mysql-0", Duration::from_secs(120));
    assert_ne!(old, new, "mysql-0 is a new pod");
    assert_eq!(claim_of(&pod(&sim, "mysql-0")), claim, "mysql-0 keeps its PVC");
    assert!(rows(&sim, "mysql-0") >= before, "mysql-0 kept its rows");
    // The re-created primary lost its role label as a replica does: DEGRADED, named, and `lab up` puts it back.
    let unlabelled = lab(&kc, &["verify", "-o", "json"]);
    unlabelled.assert_code(1);
    let report = unlabelled.json();
    assert_eq!(report["verdict"], "DEGRADED", "{report:#}");
    assert!(
        report["problems"]
            .to_string()
            .contains("mysql-0 has lost the role label lab.dev/role=primary"),
        "{}",
        report["problems"]
    );
    lab(&kc, &["up"]).assert_code(0);
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
    // The cluster, not lab, puts objects of its own in the namespace (a real one adds service-account token
    // Secrets and the kube-root-ca.crt ConfigMap): teardown deletes them with the namespace but reports only what
    // lab created.
    kubectl(
        &kc,
        &["apply", "--validate=false", "-f", "-"],
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: default-token-x7k2p\n  namespace: database\n\
         type: Opaque\nstringData:\n  token: not-lab\n",
    );
    let teardown = lab(&kc, &["teardown", "--yes", "-o", "json"]);
    teardown.assert_code(0);
    let deleted: Vec<String> = teardown.json()["deleted"]
        .as_array()
        .expect("deleted")
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert!(deleted.contains(&"StatefulSet mysql".to_string()), "{deleted:?}");
    assert!(deleted.contains(&"Secret mysql-secret".to_string()), "{deleted:?}");
    assert!(
        deleted.contains(&"PersistentVolumeClaim data-mysql-2".to_string()),
        "{deleted:?}"
    );
    assert!(
        !deleted.iter().any(|d| d.contains("default-token")),
        "teardown reports only what lab created: {deleted:?}"
    );
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

    // A plain `lab up` keeps the policy the lab was built with (a StatefulSet cannot change it), as it keeps the
    // size, and changes nothing.
    let again = lab(&kc, &["up", "-o", "json"]);
    again
        .assert_code(0)
        .assert_stderr_contains("it was built with --parallel");
    let report = again.json();
    assert_eq!(report["verdict"], "HEALTHY");
    assert_changed_nothing(&report);
    assert_eq!(
        sim.objects("statefulsets", Some(NS))[0]["spec"]["podManagementPolicy"],
        "Parallel"
    );

    // Asking an ordered lab for --parallel is refused before anything is applied.
    lab(&kc, &["up", "-n", "ordered"]).assert_code(0);
    let version = sim.objects("statefulsets", Some("ordered"))[0]["metadata"]["resourceVersion"].clone();
    lab(&kc, &["up", "-n", "ordered", "--parallel"])
        .assert_code(2)
        .assert_stderr_contains("starts its pods OrderedReady but the manifests ask for Parallel")
        .assert_stderr_contains("leave out --parallel to keep it");
    assert_eq!(
        sim.objects("statefulsets", Some("ordered"))[0]["metadata"]["resourceVersion"],
        version
    );
}
