//! What the real `kubectl` and the official Python client (`kubernetes` on PyPI) read from a lab on kubesim:
//! `kubectl get all`, the node (`-o wide`, `describe`, `list_node()`), events.k8s.io Events, the log options
//! (`--timestamps`, `--tail`, `--limit-bytes`, `--since`, `-f`, `--previous`, `-c`) and the StatefulSet's
//! revisions (`rollout history`, `rollout undo`, `rollout status`).

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{kubeconfig, kubectl, lab, read_until, run_as_user, start_sim};

const NS: &str = "database";

/// A lab brought up on a fresh simulator.
fn lab_up() -> (kubesim::Kubesim, PathBuf) {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up"]).assert_code(0);
    (sim, kc)
}

/// kubectl's exit code, stdout and stderr.
fn kubectl_seen(kc: &Path, args: &[&str]) -> (i32, String, String) {
    run_as_user(kc, "kubectl", args, "")
}

/// Runs a Python program with the official client against the lab; it prints one JSON document.
fn python(kc: &Path, program: &str) -> Value {
    let script = format!(
        "import json, sys\ntry:\n    from kubernetes import client, config\nexcept ImportError:\n    \
         sys.exit('the Kubernetes Python client is missing: pip install kubernetes')\nconfig.load_kube_config()\n{program}"
    );
    let (code, stdout, stderr) = run_as_user(kc, "python3", &["-c", &script], "");
    assert_eq!(code, 0, "the Python client failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("the program prints JSON ({e}): {stdout}"))
}

fn is_log_time(text: &str) -> bool {
    // RFC 3339 with nanoseconds, as the kubelet prefixes lines: 2025-01-01T10:00:00.123456789Z
    text.len() == 30
        && text.ends_with('Z')
        && text.as_bytes()[10] == b'T'
        && text[20..29].bytes().all(|b| b.is_ascii_digit())
}

#[test]
fn kubectl_and_the_python_client_read_the_lab_as_on_a_real_cluster() {
    let (_sim, kc) = lab_up();

    // `get all`: the kinds in the "all" category, pods first as discovery orders them; no ConfigMaps or claims.
    let all = kubectl(&kc, &["get", "all", "-n", NS], "");
    for shown in [
        "pod/mysql-0",
        "pod/mysql-1",
        "service/mysql-primary",
        "statefulset.apps/mysql",
    ] {
        assert!(all.contains(shown), "`kubectl get all` shows {shown}:\n{all}");
    }
    assert!(all.find("pod/mysql-0") < all.find("service/mysql-primary"), "{all}");
    assert!(
        !all.contains("configmap/") && !all.contains("persistentvolumeclaim/"),
        "{all}"
    );

    // The node: wide columns, the Lease and system info in `describe`.
    let wide = kubectl(&kc, &["get", "nodes", "-o", "wide"], "");
    let header = wide.lines().next().unwrap_or_default();
    for column in ["INTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"] {
        assert!(header.contains(column), "{wide}");
    }
    assert!(wide.contains(&kubesim::node::NODE_IP.to_string()), "{wide}");
    assert!(wide.contains("containerd://"), "{wide}");
    let describe = kubectl(&kc, &["describe", "node", kubesim::NODE_NAME], "");
    assert!(!describe.contains("Failed to get lease"), "{describe}");
    assert!(
        describe.contains(&format!("HolderIdentity:  {}", kubesim::NODE_NAME)),
        "{describe}"
    );
    assert!(describe.contains("KubeletReady"), "{describe}");

    // events.k8s.io Events and `kubectl events`.
    let events = kubectl(&kc, &["get", "events.events.k8s.io", "-n", NS], "");
    assert!(
        events.contains("Scheduled") && events.contains("pod/mysql-0"),
        "{events}"
    );
    let events = kubectl(&kc, &["events", "-n", NS, "--for", "pod/mysql-0"], "");
    assert!(events.contains("Created container: mysql"), "{events}");

    // The Python client deserialises strictly: the node's status, the revisions, the log with timestamps; the
    // events.k8s.io list is read raw, since the client's model rejects the null eventTime of kubelet events
    // (kubernetes-client/python#1616, the same on a real cluster).
    let seen = python(
        &kc,
        r#"
core = client.CoreV1Api()
node = core.list_node().items[0]
info = node.status.node_info
events = json.loads(client.EventsV1Api().list_namespaced_event("database", _preload_content=False).data)
scheduled = [e for e in events["items"] if e.get("reason") == "Scheduled" and e["regarding"]["name"] == "mysql-0"]
revisions = client.AppsV1Api().list_namespaced_controller_revision("database").items
log = core.read_namespaced_pod_log("mysql-0", "database", container="mysql", tail_lines=2, timestamps=True)
print(json.dumps({
    "kubelet": info.kubelet_version, "boot_id": info.boot_id, "runtime": info.container_runtime_version,
    "ready": [c.status for c in node.status.conditions if c.type == "Ready"],
    "heartbeat": all(c.last_heartbeat_time is not None for c in node.status.conditions),
    "pods": node.status.capacity["pods"], "allocatable_cpu": node.status.allocatable["cpu"],
    "addresses": [a.type for a in node.status.addresses],
    "events_kind": events["kind"], "scheduled": scheduled[0] if scheduled else None,
    "revisions": [[r.metadata.name, r.revision, r.metadata.owner_references[0].kind] for r in revisions],
    "log": log,
}))
"#,
    );
    assert!(
        seen["kubelet"].as_str().unwrap_or_default().starts_with("v1."),
        "{seen}"
    );
    assert!(!seen["boot_id"].as_str().unwrap_or_default().is_empty(), "{seen}");
    assert_eq!(seen["ready"], serde_json::json!(["True"]));
    assert_eq!(seen["heartbeat"], true);
    assert_eq!(seen["pods"], "110");
    assert_eq!(seen["addresses"], serde_json::json!(["InternalIP", "Hostname"]));
    assert_eq!(seen["events_kind"], "EventList");
    let scheduled = &seen["scheduled"];
    assert_eq!(scheduled["apiVersion"], "events.k8s.io/v1", "{seen}");
    assert_eq!(scheduled["reportingController"], "default-scheduler", "{scheduled}");
    assert_eq!(scheduled["regarding"]["kind"], "Pod", "{scheduled}");
    assert!(
        scheduled["note"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Successfully assigned database/mysql-0"),
        "{scheduled}"
    );
    assert!(
        scheduled.get("message").is_none() && scheduled["deprecatedCount"] == 1,
        "{scheduled}"
    );
    let revisions = seen["revisions"].as_array().expect("revisions");
    assert_eq!(revisions.len(), 1, "{seen}");
    assert_eq!(revisions[0][1], 1);
    assert_eq!(revisions[0][2], "StatefulSet");
    let log = seen["log"].as_str().unwrap_or_default();
    assert_eq!(log.lines().count(), 2, "{log:?}");
    assert!(
        log.lines()
            .all(|line| is_log_time(line.split(' ').next().unwrap_or_default())),
        "{log}"
    );

    // Logs as kubectl asks for them.
    let tail = kubectl(&kc, &["logs", "mysql-0", "-n", NS, "--timestamps", "--tail=5"], "");
    assert_eq!(tail.lines().count(), 5, "{tail}");
    for line in tail.lines() {
        let (time, text) = line.split_once(' ').unwrap_or_default();
        assert!(is_log_time(time) && !text.is_empty(), "{line:?}");
    }
    let limited = kubectl(&kc, &["logs", "mysql-0", "-n", NS, "--limit-bytes=100"], "");
    assert_eq!(limited.len(), 100, "{limited:?}");
    let recent = kubectl(&kc, &["logs", "mysql-0", "-n", NS, "--since=1h"], "");
    assert!(recent.contains("ready for connections"), "{recent}");
    let future = kubectl(
        &kc,
        &["logs", "mysql-0", "-n", NS, "--since-time=2999-01-01T00:00:00Z"],
        "",
    );
    assert_eq!(future, "", "no line is newer than a future time");
    let init = kubectl(&kc, &["logs", "mysql-0", "-n", NS, "-c", "init-mysql-config"], "");
    assert!(init.contains("Generated config for mysql-0"), "{init}");
    let (code, _, stderr) = kubectl_seen(&kc, &["logs", "mysql-0", "-n", NS, "-c", "nope"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("container nope is not valid for pod mysql-0"),
        "{stderr}"
    );
    let (code, _, stderr) = kubectl_seen(&kc, &["logs", "mysql-1", "-n", NS, "-c", "mysql", "--previous"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("previous terminated container \"mysql\" in pod \"mysql-1\" not found"),
        "{stderr}"
    );

    // `-f` follows mysql-1's log until its server stops, then ends on its own; `--previous` then shows that run.
    let mut follow = Command::new("kubectl")
        .args(["logs", "-f", "mysql-1", "-n", NS, "-c", "mysql", "--tail=1"])
        .env("KUBECONFIG", &kc)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let mut followed = BufReader::new(follow.stdout.take().expect("stdout"));
    // The first line shows the follow is connected before the server is stopped.
    let (_, first) = read_until(&mut followed, "");
    assert!(first.is_some(), "kubectl logs -f printed nothing");
    kubectl(
        &kc,
        &[
            "exec",
            "mysql-1",
            "-n",
            NS,
            "-c",
            "mysql",
            "--",
            "sh",
            "-c",
            "mysqladmin -uroot -p\"$MYSQL_ROOT_PASSWORD\" shutdown",
        ],
        "",
    );
    let (seen, last) = read_until(&mut followed, "Shutdown complete");
    assert!(last.is_some(), "the followed log shows the server stopping:\n{seen}");
    let (done, ended) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(follow.wait());
    });
    let status = ended
        .recv_timeout(Duration::from_secs(30))
        .expect("kubectl logs -f ends when the container stops")
        .expect("kubectl exits");
    assert!(status.success(), "kubectl logs -f exits 0: {status:?}");
    let (code, previous, stderr) = kubectl_seen(
        &kc,
        &["logs", "mysql-1", "-n", NS, "-c", "mysql", "--previous", "--tail=3"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(previous.trim_end().ends_with("Shutdown complete"), "{previous}");
}

/// The lab's ControllerRevisions as (name, number), oldest first, from `kubectl get controllerrevisions -o json`.
fn revisions(kc: &Path) -> Vec<(String, i64)> {
    let list: Value = serde_json::from_str(&kubectl(
        kc,
        &["get", "controllerrevisions", "-n", NS, "-o", "json"],
        "",
    ))
    .expect("a JSON list");
    let mut revisions: Vec<(String, i64)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            (
                item["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                item["revision"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    revisions.sort_by_key(|(_, number)| *number);
    revisions
}

fn history_rows(kc: &Path) -> Vec<String> {
    kubectl(kc, &["rollout", "history", "statefulset/mysql", "-n", NS], "")
        .lines()
        .skip(2)
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn rollout_history_undo_and_status_of_the_statefulset() {
    let (_sim, kc) = lab_up();
    let sts = ["-n", NS];

    assert_eq!(history_rows(&kc), ["1 <none>"]);
    let (code, _, stderr) = kubectl_seen(&kc, &["rollout", "undo", "statefulset/mysql", sts[0], sts[1]]);
    assert_ne!(code, 0);
    assert!(stderr.contains("no last revision to roll back to"), "{stderr}");
    let first = revisions(&kc);
    let pods_revision = |kc: &Path| {
        kubectl(
            kc,
            &[
                "get",
                "pods",
                "-n",
                NS,
                "-l",
                "app=mysql",
                "-o",
                "jsonpath={.items[*].metadata.labels.controller-revision-hash}",
            ],
            "",
        )
    };
    assert_eq!(
        pods_revision(&kc),
        format!("{0} {0}", first[0].0),
        "pods carry their revision's name"
    );

    // A template change: a second revision (the change-cause annotation is copied to it), pods rolled onto it.
    kubectl(
        &kc,
        &[
            "annotate",
            "statefulset/mysql",
            "-n",
            NS,
            "kubernetes.io/change-cause=mark the pods",
        ],
        "",
    );
    kubectl(
        &kc,
        &[
            "patch",
            "statefulset/mysql",
            "-n",
            NS,
            "--type=merge",
            "-p",
            r#"{"spec":{"template":{"metadata":{"annotations":{"lab.example/mark":"1"}}}}}"#,
        ],
        "",
    );
    let status = kubectl(
        &kc,
        &["rollout", "status", "statefulset/mysql", "-n", NS, "--timeout=180s"],
        "",
    );
    assert!(status.contains("roll out complete"), "{status}");
    assert_eq!(history_rows(&kc), ["1 <none>", "2 mark the pods"]);
    let second = revisions(&kc);
    assert_eq!(second.len(), 2);
    assert_eq!(pods_revision(&kc), format!("{0} {0}", second[1].0));
    let shown = kubectl(
        &kc,
        &["rollout", "history", "statefulset/mysql", "-n", NS, "--revision=2"],
        "",
    );
    assert!(
        shown.contains("lab.example/mark") && shown.contains("Image:\tmysql:"),
        "{shown}"
    );
    let shown = kubectl(
        &kc,
        &["rollout", "history", "statefulset/mysql", "-n", NS, "--revision=1"],
        "",
    );
    assert!(
        !shown.contains("lab.example/mark") && shown.contains("init-mysql-config"),
        "{shown}"
    );

    // Undo: the first template comes back as revision 3 (no new revision), and the pods roll back onto it.
    let undo = kubectl(&kc, &["rollout", "undo", "statefulset/mysql", "-n", NS], "");
    assert!(undo.contains("rolled back"), "{undo}");
    let status = kubectl(
        &kc,
        &["rollout", "status", "statefulset/mysql", "-n", NS, "--timeout=180s"],
        "",
    );
    assert!(status.contains("roll out complete"), "{status}");
    let third = revisions(&kc);
    assert_eq!(third, vec![second[1].clone(), (first[0].0.clone(), 3)]);
    assert_eq!(history_rows(&kc), ["2 mark the pods", "3 <none>"]);
    assert_eq!(pods_revision(&kc), format!("{0} {0}", first[0].0));
    let annotations = kubectl(
        &kc,
        &[
            "get",
            "statefulset/mysql",
            "-n",
            NS,
            "-o",
            "jsonpath={.spec.template.metadata.annotations}",
        ],
        "",
    );
    assert!(!annotations.contains("lab.example/mark"), "{annotations}");
    let again = kubectl(
        &kc,
        &["rollout", "undo", "statefulset/mysql", "-n", NS, "--to-revision=3"],
        "",
    );
    assert!(
        again.contains("skipped rollback (current template already matches revision 3)"),
        "kubectl compares the revision's data with the template byte for byte: {again}"
    );

    // revisionHistoryLimit 0: the revision no pod runs goes.
    kubectl(
        &kc,
        &[
            "patch",
            "statefulset/mysql",
            "-n",
            NS,
            "--type=merge",
            "-p",
            r#"{"spec":{"revisionHistoryLimit":0}}"#,
        ],
        "",
    );
    let old = format!("controllerrevision/{}", second[1].0);
    kubectl(&kc, &["wait", "--for=delete", &old, "-n", NS, "--timeout=30s"], "");
    assert_eq!(revisions(&kc), vec![(first[0].0.clone(), 3)]);
}
