//! How much time `lab` adds to what the cluster itself needs (run with `cargo bench`; needs what the e2e tests
//! need). Against kubesim: `lab up` from nothing with 2, 3 and 4 pods, split into the waits for pods to become
//! Ready (the cluster's own time) and everything else (lab's time); then `verify` and `status` latency on the
//! ready lab. A benchmark, not a test: it prints numbers and asserts nothing about them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kubesim::{Kubesim, Options};

fn lab(kubeconfig: &Path, args: &[&str]) -> (Duration, serde_json::Value) {
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

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    println!("lab up from nothing (kubesim, MariaDB pods)");
    println!(
        "{:>5}  {:>9}  {:>13}  {:>13}  {:>8}",
        "pods", "total ms", "pod waits ms", "lab's own ms", "lab's %"
    );
    for pods in [2u32, 3, 4] {
        let sim = Kubesim::start(Options::default()).expect("kubesim starts (root, mariadb-server, iproute2)");
        let replicas = pods.to_string();
        let (total, report) = lab(sim.kubeconfig_path(), &["up", "-o", "json", "--replicas", &replicas]);
        // A wait step is the cluster's time: the pod becoming Ready, then the server accepting TCP.
        let waits: u64 = report["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter(|s| s["name"].as_str().is_some_and(|n| n.starts_with("wait for")))
            .map(|s| s["duration_ms"].as_u64().unwrap_or(0))
            .sum();
        let own = millis(total) - waits as f64;
        println!(
            "{pods:>5}  {:>9.0}  {waits:>13}  {own:>13.0}  {:>7.1}%",
            millis(total),
            100.0 * own / millis(total)
        );
        if pods == 2 {
            let kc = sim.kubeconfig_path();
            let verify = median((0..5).map(|_| lab(kc, &["verify", "-o", "json"]).0).collect());
            let status = median((0..5).map(|_| lab(kc, &["status", "-o", "json"]).0).collect());
            let again = median((0..3).map(|_| lab(kc, &["up", "-o", "json"]).0).collect());
            println!(
                "      on the ready 2-pod lab (median): verify {:.0} ms, status {:.0} ms, up again {:.0} ms",
                millis(verify),
                millis(status),
                millis(again)
            );
        }
    }
}
