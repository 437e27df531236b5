//! The tutorial's section 6C, "DNS checks", on the lab `lab up` built: from mysql-client, `nslookup
//! mysql-0.mysql-headless` and `nslookup mysql-1.mysql-headless` answer the pods' addresses (the tutorial runs
//! them in `kubectl exec -it mysql-client -n database -- sh`; here each is one non-interactive exec). After the
//! primary pod is re-created the name answers its new address and replication still works through it.

use std::time::Duration;

use crate::harness::{delete_pod_and_wait, kubeconfig, lab, run_as_user as run, start_sim};

const NS: &str = "database";

fn pod_ip(sim: &kubesim::Kubesim, name: &str) -> String {
    sim.objects("pods", Some(NS))
        .into_iter()
        .find(|p| p["metadata"]["name"] == name)
        .and_then(|p| p["status"]["podIP"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("{name} has no address"))
}

/// `kubectl exec mysql-client -n database -- nslookup <name>`: the output, failing the test when it fails.
fn nslookup(kc: &std::path::Path, name: &str) -> String {
    let (code, out, err) = run(
        kc,
        "kubectl",
        &["exec", "mysql-client", "-n", NS, "--", "nslookup", name],
        "",
    );
    assert_eq!(code, 0, "nslookup {name} failed:\n{out}\n{err}");
    out
}

#[test]
fn the_tutorials_dns_checks_answer_the_pods_addresses_from_the_client_pod() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up"]).assert_code(0);

    for pod in ["mysql-0", "mysql-1"] {
        let out = nslookup(&kc, &format!("{pod}.mysql-headless"));
        let ip = pod_ip(&sim, pod);
        assert!(
            out.contains(&format!(
                "Name:\t{pod}.mysql-headless.database.svc.cluster.local\nAddress: {ip}\n"
            )),
            "{pod}'s address {ip} expected:\n{out}"
        );
        assert_eq!(out.matches("Address: ").count(), 1, "one address: {out}");
    }

    // The primary re-created: its name follows it, and the replica reconnects through that name.
    delete_pod_and_wait(&sim, NS, "mysql-0", Duration::from_secs(120));
    let ip = pod_ip(&sim, "mysql-0");
    let out = nslookup(&kc, "mysql-0.mysql-headless");
    assert!(out.contains(&format!("Address: {ip}\n")), "{ip} expected:\n{out}");
    lab(&kc, &["up"]).assert_code(0);
    lab(&kc, &["verify"]).assert_code(0);
}
