//! How much time `lab` adds to what the cluster itself needs, and what the pods' start costs (run with
//! `cargo bench`; needs what the e2e tests need). Against kubesim, `lab up` from nothing with 2, 3 and 4 pods:
//! ordered (the default) and `--parallel`, with the built-in manifests (time zone load skipped) and with the skip
//! variables removed (each first start loads the time zone tables, as the images do by default). Each run is split
//! into the waits for pods to become Ready and answer (the cluster's own time, shown per pod) and everything else
//! (lab's time). Each case runs `SAMPLES` times on a fresh simulator and shows medians (a shared machine is noisy).
//! Then `verify`, `status` and a second `up` on the ready lab. A benchmark, not a test: it prints numbers and
//! asserts nothing about them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kubesim::{Kubesim, Options};
use lab::manifests::{ManifestSet, SecretValues};
use serde_json::Value;

fn lab(kubeconfig: &Path, args: &[&str]) -> (Duration, Value) {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("CI", "true")
        .output()
        .expect("lab runs");
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "lab {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (elapsed, serde_json::from_slice(&output.stdout).unwrap_or_default())
}

const SAMPLES: usize = 3;

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median<T: Ord + Copy>(mut samples: Vec<T>) -> T {
    samples.sort();
    samples[samples.len() / 2]
}

/// The built-in manifests without the variables that skip the time zone load, written to a directory for
/// `--manifests`.
fn manifests_loading_time_zones() -> tempfile::TempDir {
    let mut set = ManifestSet::embedded();
    for object in set.files.iter_mut().flat_map(|f| f.objects.iter_mut()) {
        let containers = object
            .data
            .pointer_mut("/spec/template/spec/containers")
            .and_then(Value::as_array_mut);
        for container in containers.into_iter().flatten() {
            if let Some(env) = container.get_mut("env").and_then(Value::as_array_mut) {
                env.retain(|e| !e["name"].as_str().is_some_and(|n| n.ends_with("_INITDB_SKIP_TZINFO")));
            }
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("lab.yaml"), set.render_yaml(SecretValues::Shown)).expect("write manifests");
    dir
}

/// The duration of each `wait for mysql-N` step: pod Ready and the server answering through a port-forward.
fn pod_waits(report: &Value) -> Vec<u64> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["name"].as_str().is_some_and(|n| n.starts_with("wait for")))
        .map(|s| s["duration_ms"].as_u64().unwrap_or(0))
        .collect()
}

fn main() {
    let tz_manifests = manifests_loading_time_zones();
    let tz_dir = tz_manifests.path().to_str().expect("utf-8 path");
    println!("lab up from nothing (kubesim, MariaDB pods; waits = pod Ready and answering, per pod in order)");
    println!(
        "{:>4}  {:<8}  {:<9}  {:>8}  {:>8}  {:>8}  {:>6}  per-pod waits ms",
        "pods", "start", "tz tables", "total ms", "waits ms", "lab's ms", "lab's%"
    );
    for pods in [2u32, 3, 4] {
        for (start, tz) in [("ordered", "skipped"), ("ordered", "loaded"), ("parallel", "skipped")] {
            let replicas = pods.to_string();
            let mut args = vec!["up", "-o", "json", "--replicas", &replicas];
            if start == "parallel" {
                args.push("--parallel");
            }
            if tz == "loaded" {
                args.extend(["--manifests", tz_dir]);
            }
            let mut ready_lab = None;
            let mut totals = Vec::new();
            let mut waits = Vec::new();
            for sample in 0..SAMPLES {
                let sim = Kubesim::start(Options::default()).expect("kubesim starts (root, mariadb-server, iproute2)");
                let (total, report) = lab(sim.kubeconfig_path(), &args);
                totals.push(total);
                waits.push(pod_waits(&report));
                if sample == 0 && pods == 2 && start == "ordered" && tz == "skipped" {
                    let kc = sim.kubeconfig_path();
                    let verify = median((0..5).map(|_| lab(kc, &["verify", "-o", "json"]).0).collect());
                    let status = median((0..5).map(|_| lab(kc, &["status", "-o", "json"]).0).collect());
                    let again = median((0..3).map(|_| lab(kc, &["up", "-o", "json"]).0).collect());
                    ready_lab = Some(format!(
                        "      on the ready 2-pod lab (median): verify {:.0} ms, status {:.0} ms, up again {:.0} ms",
                        millis(verify),
                        millis(status),
                        millis(again)
                    ));
                }
            }
            let total = millis(median(totals));
            let waited = median(waits.iter().map(|w| w.iter().sum::<u64>()).collect());
            let own = total - waited as f64;
            let per_pod: Vec<String> = (0..pods as usize)
                .map(|pod| median(waits.iter().map(|w| w.get(pod).copied().unwrap_or(0)).collect()).to_string())
                .collect();
            println!(
                "{pods:>4}  {start:<8}  {tz:<9}  {total:>8.0}  {waited:>8}  {own:>8.0}  {:>5.1}%  {}",
                100.0 * own / total,
                per_pod.join(" / ")
            );
            if let Some(line) = ready_lab {
                println!("{line}");
            }
        }
    }
}
