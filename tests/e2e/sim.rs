//! `lab sim`: the real binary starts its own simulated cluster, builds the lab on it, serves it to other clients
//! (`lab verify`, the real kubectl) until Ctrl-C, and then leaves nothing on the machine: no processes of its
//! simulator, no network namespaces, no files. It refuses to start, naming the fix, where it cannot run.

use std::collections::BTreeSet;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use crate::harness::lab;
use crate::harness::read_until;

/// The variable kubesim marks its node's processes with: `<prefix>/<pod uid>` (crates/kubesim/src/node/sys.rs).
const MARKER: &str = "KUBESIM_NODE";

/// `lab sim ARGS` with stdout and stderr piped, and its files under a private TMPDIR (to check nothing stays).
fn spawn_sim(args: &[&str], tmp: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .arg("sim")
        .args(args)
        .env("CI", "true")
        .env("TMPDIR", tmp)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lab sim starts")
}

/// Reads all of a pipe on a thread, so that the child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

fn marker_of(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let key = format!("{MARKER}=");
    environ.split(|b| *b == 0).find_map(|var| {
        var.strip_prefix(key.as_bytes())
            .map(|value| String::from_utf8_lossy(value).into_owned())
    })
}

fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|ppid| ppid.trim().parse().ok())
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

fn descends_from(mut pid: u32, ancestor: u32) -> bool {
    while let Some(parent) = parent_of(pid) {
        if parent == ancestor {
            return true;
        }
        if parent <= 1 {
            return false;
        }
        pid = parent;
    }
    false
}

fn command_line(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .replace('\0', " ")
}

fn net_namespace(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|link| link.to_string_lossy().into_owned())
}

/// What one simulator has on the machine: its marked processes, their network namespaces, its host links.
#[derive(Debug, Default)]
struct Footprint {
    processes: Vec<(u32, String)>,
    namespaces: BTreeSet<String>,
    links: Vec<String>,
}

/// The footprint of the simulator whose processes carry `prefix` in their marker.
fn footprint(prefix: &str, namespaces_of_interest: &BTreeSet<String>) -> Footprint {
    let ours = format!("{prefix}/");
    let processes: Vec<(u32, String)> = all_pids()
        .into_iter()
        .filter(|pid| marker_of(*pid).is_some_and(|marker| marker.starts_with(&ours)))
        .map(|pid| (pid, command_line(pid)))
        .collect();
    // Any process at all still in one of the simulator's network namespaces keeps it alive.
    let namespaces = all_pids()
        .into_iter()
        .filter_map(net_namespace)
        .filter(|ns| namespaces_of_interest.contains(ns))
        .collect();
    let links = std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|link| link.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(prefix))
        .collect();
    Footprint {
        processes,
        namespaces,
        links,
    }
}

/// The path of an `export KUBECONFIG=PATH` line.
fn kubeconfig_of(export: &str) -> PathBuf {
    PathBuf::from(
        export
            .trim()
            .strip_prefix("export KUBECONFIG=")
            .expect("an export line"),
    )
}

#[test]
fn lab_sim_serves_the_lab_to_kubectl_and_lab_until_ctrl_c_then_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut child = spawn_sim(&[], tmp.path());
    let stderr = drain(child.stderr.take().expect("stderr"));
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let (seen, export) = read_until(&mut stdout, "export KUBECONFIG=");
    let Some(export) = export else {
        let code = child.wait().expect("lab exits").code();
        panic!(
            "lab sim exited ({code:?}) before printing the export line:\n{seen}\nstderr:\n{}",
            stderr.join().unwrap()
        );
    };
    let kubeconfig = kubeconfig_of(&export);
    assert!(seen.contains("Verdict: HEALTHY"), "the up report comes first:\n{seen}");
    let stdout = drain(stdout);
    let work_dir = kubeconfig.parent().expect("work dir").to_path_buf();
    assert!(work_dir.starts_with(tmp.path()), "{work_dir:?} under TMPDIR");

    lab(&kubeconfig, &["verify"]).assert_code(0);
    let pods = Command::new("kubectl")
        .args(["get", "pods", "-n", "database"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("kubectl runs");
    let pods_out = String::from_utf8_lossy(&pods.stdout);
    assert!(pods.status.success(), "kubectl failed: {pods:?}");
    assert!(
        pods_out
            .lines()
            .any(|l| l.starts_with("mysql-0 ") && l.contains(" Running ")),
        "{pods_out}"
    );

    // The simulator's processes descend from `lab sim`; their marker names the simulator.
    let sim_pid = child.id();
    let running: Vec<u32> = all_pids()
        .into_iter()
        .filter(|pid| marker_of(*pid).is_some() && descends_from(*pid, sim_pid))
        .collect();
    let prefix = running
        .iter()
        .find_map(|pid| marker_of(*pid))
        .and_then(|marker| marker.split('/').next().map(str::to_string))
        .expect("lab sim runs marked processes");
    // Its own network namespaces: the host's, which some of its processes share, stays.
    let host = net_namespace(std::process::id());
    let namespaces: BTreeSet<String> = running
        .iter()
        .filter_map(|pid| net_namespace(*pid))
        .filter(|ns| Some(ns) != host.as_ref())
        .collect();
    let before = footprint(&prefix, &namespaces);
    assert!(
        before.processes.iter().any(|(_, command)| command.contains("mariadbd")),
        "the lab's databases run under the simulator: {before:?}"
    );
    assert!(
        before.namespaces.len() > 1,
        "the node and its pods have network namespaces of their own: {before:?}"
    );

    let killed = Command::new("kill")
        .args(["-INT", &sim_pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let code = child.wait().expect("lab sim exits").code();
    let (rest, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert_eq!(
        code,
        Some(0),
        "a clean stop after a successful up\nstdout:\n{seen}{rest}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("the simulated cluster stopped; nothing of it is left on the machine"),
        "{stderr}"
    );

    let after = footprint(&prefix, &namespaces);
    assert!(after.processes.is_empty(), "processes left: {:?}", after.processes);
    assert!(
        after.namespaces.is_empty(),
        "network namespaces left: {:?}",
        after.namespaces
    );
    assert!(after.links.is_empty(), "host links left: {:?}", after.links);
    assert!(!work_dir.exists(), "{work_dir:?} is left");
    let files: Vec<_> = std::fs::read_dir(tmp.path()).expect("tmp").flatten().collect();
    assert!(files.is_empty(), "files left in TMPDIR: {files:?}");
}

#[test]
fn lab_sim_stops_its_simulator_and_keeps_ups_exit_code_when_up_fails() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let child = spawn_sim(&["--manifests", "/nonexistent/manifests"], tmp.path());
    let pid = child.id();
    let output = child.wait_with_output().expect("lab sim exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The same exit code `lab up` gives for a manifests path that does not exist: 2 (usage).
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("note: starting a simulated cluster"),
        "it started: {stderr}"
    );
    assert!(stderr.contains("note: stopping the simulated cluster"), "{stderr}");
    assert!(
        stderr.contains("cannot read the manifests at /nonexistent/manifests"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("export KUBECONFIG"));
    // kubesim names its node `ks<pid mod 0x10000 in hex><instance>` (crates/kubesim/src/lib.rs, name_prefix).
    let prefix = format!("ks{:x}0", pid % 0x10000);
    let after = footprint(&prefix, &BTreeSet::new());
    assert!(after.processes.is_empty(), "processes left: {:?}", after.processes);
    assert!(after.links.is_empty(), "host links left: {:?}", after.links);
    let files: Vec<_> = std::fs::read_dir(tmp.path()).expect("tmp").flatten().collect();
    assert!(files.is_empty(), "files left in TMPDIR: {files:?}");
}

#[test]
fn lab_sim_refuses_to_start_without_root_and_says_how_to_run_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    // The same binary as an unprivileged user (nobody): the simulator cannot make network namespaces.
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_lab"))
        .arg("sim")
        .env("CI", "true")
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .output()
        .expect("setpriv runs (util-linux)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot run `lab sim` here, nothing was started:"),
        "{stderr}"
    );
    assert!(stderr.contains("the node must run as root"), "{stderr}");
    assert!(!stderr.contains("starting a simulated cluster"), "{stderr}");
    assert!(output.stdout.is_empty(), "{}", String::from_utf8_lossy(&output.stdout));
    let files: Vec<_> = std::fs::read_dir(tmp.path()).expect("tmp").flatten().collect();
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn ctrl_c_or_sigterm_before_the_lab_is_up_exits_130_and_leaves_nothing() {
    for signal in ["-INT", "-TERM"] {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut child = spawn_sim(&[], tmp.path());
        let pid = child.id();
        let stdout = drain(child.stdout.take().expect("stdout"));
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let (seen, waiting) = read_until(&mut stderr, "▸ wait for mysql-0");
        assert!(waiting.is_some(), "up never started waiting:\n{seen}");
        let killed = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        let rest = drain(stderr);
        let code = child.wait().expect("lab sim exits").code();
        let (stdout, rest) = (stdout.join().unwrap(), rest.join().unwrap());
        assert_eq!(code, Some(130), "{signal}\nstderr:\n{seen}{rest}");
        assert!(
            rest.contains("interrupted before the lab was up: the simulated cluster was stopped"),
            "{rest}"
        );
        assert!(!stdout.contains("export KUBECONFIG"), "{stdout}");
        let prefix = format!("ks{:x}0", pid % 0x10000);
        let after = footprint(&prefix, &BTreeSet::new());
        assert!(
            after.processes.is_empty(),
            "{signal}: processes left: {:?}",
            after.processes
        );
        let files: Vec<_> = std::fs::read_dir(tmp.path()).expect("tmp").flatten().collect();
        assert!(files.is_empty(), "{signal}: files left in TMPDIR: {files:?}");
    }
}

#[test]
fn lab_sim_takes_ups_flags_keeps_stdout_one_json_report_and_stops_cleanly_on_sigterm() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut child = spawn_sim(&["-o", "json", "-n", "db2", "--replicas", "1"], tmp.path());
    let stdout = drain(child.stdout.take().expect("stdout"));
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let (seen, export) = read_until(&mut stderr, "export KUBECONFIG=");
    let Some(export) = export else {
        let code = child.wait().expect("lab exits").code();
        panic!("lab sim exited ({code:?}) before printing the export line:\n{seen}");
    };
    let kubeconfig = kubeconfig_of(&export);
    let hints = drain(stderr);
    let status = lab(&kubeconfig, &["status", "-n", "db2", "-o", "json"]);
    status.assert_code(0);
    assert_eq!(
        status.json()["pods"].as_array().map(Vec::len),
        Some(2),
        "mysql-0 and the client pod"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let code = child.wait().expect("lab sim exits").code();
    let (stdout, rest) = (stdout.join().unwrap(), hints.join().unwrap());
    assert_eq!(code, Some(0), "stderr:\n{seen}{rest}");
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is one JSON report ({e}):\n{stdout}"));
    assert_eq!(report["verdict"], "HEALTHY", "{report:#}");
    assert!(rest.contains("kubectl get pods -n db2"), "{rest}");
    assert!(rest.contains("kubectl exec mysql-0 -n db2 --"), "{rest}");
    assert!(rest.contains("lab verify -n db2"), "{rest}");
    assert!(!kubeconfig.parent().expect("work dir").exists());
}
