//! Service ClusterIPs on the lab `lab up` built: from mysql-client, `mysql -h mysql-primary` always reaches the
//! primary (server id 1), also after the primary pod is re-created, and connections to `mysql-replicas` are
//! spread over the replicas and never reach the primary.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kubesim::Kubesim;

use crate::harness::{delete_pod_and_wait, kubeconfig, lab, run_as_user as run, start_sim};

const NS: &str = "database";

/// The server ids answering `connections` connections to `host` from mysql-client, made one after the other by
/// one `kubectl exec` (a shell loop around the tutorial's `mysql -h <host> -uroot -proot` command).
fn server_ids(kc: &Path, host: &str, connections: usize) -> Vec<String> {
    let script = format!(
        "for i in $(seq {connections}); do mysql -h {host} -uroot -proot -N -e 'SELECT @@server_id' || exit 1; done"
    );
    let (code, out, err) = run(
        kc,
        "kubectl",
        &["exec", "mysql-client", "-n", NS, "--", "sh", "-c", &script],
        "",
    );
    assert_eq!(code, 0, "mysql -h {host} failed:\n{out}\n{err}");
    out.lines().map(str::to_string).collect()
}

fn counts(ids: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for id in ids {
        *counts.entry(id.clone()).or_default() += 1;
    }
    counts
}

/// Waits until the Endpoints of `service` list exactly these pods as ready addresses.
fn wait_endpoints(sim: &Kubesim, service: &str, pods: &[&str]) {
    let ready = || -> Vec<String> {
        let endpoints = sim.objects("endpoints", Some(NS));
        let mut names: Vec<String> = endpoints
            .iter()
            .filter(|e| e["metadata"]["name"] == service)
            .flat_map(|e| e["subsets"][0]["addresses"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a["targetRef"]["name"].as_str().map(str::to_string))
            .collect();
        names.sort();
        names
    };
    let handle = sim.handle().expect("the simulator runs");
    handle.block_on(async {
        let mut changes = sim.store().subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while ready() != pods {
            if tokio::time::timeout_at(deadline, changes.recv()).await.is_err() {
                panic!("{service} does not list {pods:?}: {:?}", ready());
            }
        }
    });
}

#[test]
fn cluster_ips_reach_the_primary_through_mysql_primary_and_only_replicas_through_mysql_replicas() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up"]).assert_code(0);
    wait_endpoints(&sim, "mysql-primary", &["mysql-0"]);

    // The tutorial's own command, several times: always the primary.
    for _ in 0..5 {
        let (code, out, err) = run(
            &kc,
            "kubectl",
            &[
                "exec",
                "mysql-client",
                "-n",
                NS,
                "--",
                "mysql",
                "-h",
                "mysql-primary",
                "-uroot",
                "-proot",
                "-N",
                "-e",
                "SELECT @@server_id",
            ],
            "",
        );
        assert_eq!((code, out.as_str()), (0, "1\n"), "{err}");
    }

    lab(&kc, &["up", "--replicas", "3"]).assert_code(0);
    wait_endpoints(&sim, "mysql-replicas", &["mysql-1", "mysql-2"]);
    let ids = server_ids(&kc, "mysql-replicas", 24);
    let seen = counts(&ids);
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["2", "3"],
        "both replicas and never the primary: {seen:?}"
    );

    // The primary re-created: mysql-primary follows it.
    delete_pod_and_wait(&sim, NS, "mysql-0", Duration::from_secs(120));
    wait_endpoints(&sim, "mysql-primary", &["mysql-0"]);
    assert_eq!(
        counts(&server_ids(&kc, "mysql-primary", 6)),
        BTreeMap::from([("1".to_string(), 6)])
    );
}
