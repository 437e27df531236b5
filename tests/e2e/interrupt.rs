//! Ctrl-C stops `lab up` cleanly with 130, and the next `lab up` resumes; a slow first start (the image's
//! temporary server refuses TCP) is waited out, not mistaken for a ready database.

use std::io::BufReader;
use std::process::{Command, Stdio};
use std::time::Duration;

use kubesim::Options;

use crate::harness::read_until;
use crate::harness::{kubeconfig, lab, start_sim_with};

const SLOW_START: Duration = Duration::from_secs(4);

#[test]
fn ctrl_c_exits_130_and_the_next_up_resumes_past_a_slow_first_start() {
    let sim = start_sim_with(Options {
        slow_first_start: Some(SLOW_START),
        ..Options::default()
    });
    let kc = kubeconfig(&sim);

    let mut child = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["up"])
        .env("KUBECONFIG", &kc)
        .env("CI", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lab starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let (seen, waiting) = read_until(&mut stderr, "▸ wait for mysql-0");
    assert!(waiting.is_some(), "lab never started waiting:\n{seen}");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).expect("read stderr");
    let code = child.wait().expect("lab exits").code();
    assert_eq!(code, Some(130), "stderr:\n{seen}{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    assert!(rest.contains("run it again to resume"), "{rest}");

    let resumed = lab(&kc, &["up", "-o", "json"]);
    resumed.assert_code(0);
    let report = resumed.json();
    assert_eq!(report["verdict"], "HEALTHY", "{report:#}");
    let steps = report["steps"].as_array().unwrap();
    let applied = steps.iter().find(|s| s["name"] == "apply manifests").unwrap();
    assert_eq!(
        applied["status"], "unchanged",
        "the interrupted run had applied everything: {applied}"
    );
    let primary_wait = steps.iter().find(|s| s["name"] == "wait for mysql-0").unwrap();
    assert!(primary_wait["status"] == "passed", "{primary_wait}");
}
