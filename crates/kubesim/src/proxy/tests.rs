//! Service ClusterIPs with the real clients: objects created through the kube client, connections made from
//! inside a pod with bash's /dev/tcp through the real `kubectl exec`. They need root, iproute2 and MariaDB (for
//! the node), perl (the pods' servers) and kubectl, and fail saying so when these are missing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

use crate::{Kubesim, Options};

const NS: &str = "shop";
const WAIT: Duration = Duration::from_secs(30);

fn client(sim: &Kubesim) -> kube::Client {
    kube::Client::try_from(kube::Config::new(sim.url().parse().expect("url"))).expect("client")
}

fn object<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

/// A web pod answering every connection on its port 8080 (named `http`) with `hello from <hostname>`.
fn web(name: &str) -> Pod {
    let server = "exec perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalPort=>8080,Listen=>16,ReuseAddr=>1) \
                  or die $!; while($c=$s->accept){ print $c \"hello from \".`hostname`; close $c }'";
    object(json!({
        "metadata": { "name": name, "labels": { "app": "web", "pod": name } },
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{ "name": "main", "image": "busybox:1.36", "command": ["sh", "-c", server],
                             "ports": [{ "name": "http", "containerPort": 8080 }],
                             "readinessProbe": { "tcpSocket": { "port": 8080 }, "periodSeconds": 1 } }],
        },
    }))
}

fn sleeper(name: &str) -> Pod {
    object(json!({
        "metadata": { "name": name },
        "spec": { "terminationGracePeriodSeconds": 1,
                  "containers": [{ "name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"] }] },
    }))
}

/// Waits (on the store's change feed) until `check` holds for the object, and returns it.
async fn wait_for(
    sim: &Kubesim,
    resource: &str,
    name: &str,
    what: &str,
    check: impl Fn(Option<&Value>) -> bool,
) -> Option<Value> {
    let mut changes = sim.store().subscribe();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = sim.store().get(resource, NS, name);
        if check(found.as_ref()) {
            return found;
        }
        if tokio::time::timeout_at(deadline, changes.recv()).await.is_err() {
            panic!("timed out waiting for {resource} {name} to be {what}: {found:#?}");
        }
    }
}

async fn ready_ip(sim: &Kubesim, name: &str) -> String {
    let pod = wait_for(sim, "pods", name, "Ready", |pod| {
        pod.is_some_and(crate::controllers::is_ready)
    })
    .await
    .expect("pod");
    pod["status"]["podIP"].as_str().expect("ip").to_string()
}

/// Waits until the Endpoints of `service` list exactly these ready addresses.
async fn wait_endpoints(sim: &Kubesim, service: &str, ips: &[&str]) {
    let listed = |endpoints: &Value| -> Vec<String> {
        let mut ips: Vec<String> = endpoints["subsets"][0]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["ip"].as_str().map(str::to_string))
            .collect();
        ips.sort();
        ips
    };
    let mut wanted: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
    wanted.sort();
    wait_for(sim, "endpoints", service, &format!("{wanted:?}"), |e| {
        e.is_some_and(|e| listed(e) == wanted)
    })
    .await;
}

/// `kubectl exec -n shop client -- bash -c <script>`, with the real kubectl.
async fn in_client(kubeconfig: &Path, script: &str) -> (i32, String, String) {
    let args: Vec<String> = [
        "--kubeconfig",
        &kubeconfig.to_string_lossy(),
        "exec",
        "-n",
        NS,
        "client",
        "--",
        "bash",
        "-c",
        script,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    tokio::task::spawn_blocking(move || {
        let output = Command::new("kubectl")
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("kubectl does not run ({e}): install kubectl 1.30 or later"));
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .expect("kubectl ran")
}

/// Opens `count` connections to `target` (host or address) port `port` from the client pod, one after the
/// other, and returns who answered each.
async fn answers(kubeconfig: &Path, target: &str, port: u16, count: usize) -> Vec<String> {
    let script =
        format!("for i in $(seq {count}); do exec 3<>/dev/tcp/{target}/{port} || exit 1; cat <&3; exec 3<&-; done");
    let (code, out, err) = in_client(kubeconfig, &script).await;
    assert_eq!(code, 0, "connections to {target}:{port} failed: {out}{err}");
    out.lines()
        .map(|line| line.trim_start_matches("hello from ").to_string())
        .collect()
}

/// Retries a connection from the client pod until it is refused (the proxy follows the store's change feed
/// on its own task, a moment after the Endpoints change the test waited for).
async fn wait_refused(kubeconfig: &Path, address: &str, port: u16) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (code, out, err) = in_client(kubeconfig, &format!("exec 3<>/dev/tcp/{address}/{port}")).await;
        if code != 0 && err.contains("Connection refused") {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{address}:{port} is still served: {code} {out}{err}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ips_spread_over_ready_endpoints_follow_a_recreated_pod_and_refuse_without_one() {
    let mut sim = match Kubesim::start(Options::default()) {
        Ok(sim) => sim,
        Err(error) => panic!("kubesim cannot start: {error:#} (run as root with mariadb-server and iproute2)"),
    };
    let kubeconfig = sim.kubeconfig_path().to_path_buf();
    let client = client(&sim);
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &object(json!({ "metadata": { "name": NS } })))
        .await
        .expect("namespace");
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    // Service port 80 to the pods' port named `http` (8080); `first` selects web-0 alone.
    let mut cluster_ips = Vec::new();
    for (name, selector) in [("web", json!({ "app": "web" })), ("first", json!({ "pod": "web-0" }))] {
        let created = services
            .create(
                &PostParams::default(),
                &object(json!({ "metadata": { "name": name }, "spec": {
                    "selector": selector, "ports": [{ "name": "http", "port": 80, "targetPort": "http" }] } })),
            )
            .await
            .expect("service");
        cluster_ips.push(created.spec.and_then(|spec| spec.cluster_ip).expect("a ClusterIP"));
    }
    let [web_ip, first_ip] = <[String; 2]>::try_from(cluster_ips).expect("two Services");
    // A ClusterIP outside the Service range is refused, as the API server's allocator does.
    let outside = services
        .create(
            &PostParams::default(),
            &object(json!({ "metadata": { "name": "outside" }, "spec": {
                "clusterIP": "1.1.1.1", "ports": [{ "port": 80 }] } })),
        )
        .await;
    match outside {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert!(
                status.message.ends_with(
                    "spec.clusterIPs: Invalid value: []string{\"1.1.1.1\"}: failed to allocate IP 1.1.1.1: the \
                     provided IP (1.1.1.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12"
                ),
                "{}",
                status.message
            );
        }
        other => panic!("a ClusterIP outside the range must be refused: {other:?}"),
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    for pod in [web("web-0"), web("web-1"), sleeper("client")] {
        pods.create(&PostParams::default(), &pod).await.expect("pod");
    }
    let ip0 = ready_ip(&sim, "web-0").await;
    let ip1 = ready_ip(&sim, "web-1").await;
    ready_ip(&sim, "client").await;
    wait_endpoints(&sim, "web", &[&ip0, &ip1]).await;
    wait_endpoints(&sim, "first", &[&ip0]).await;

    // Connections to the ClusterIP, and to the Service's name through cluster DNS, take the endpoints in turn.
    let mut seen = answers(&kubeconfig, &web_ip, 80, 6).await;
    seen.sort();
    assert_eq!(seen, ["web-0", "web-0", "web-0", "web-1", "web-1", "web-1"]);
    let mut seen = answers(&kubeconfig, "web", 80, 4).await;
    seen.sort();
    assert_eq!(seen, ["web-0", "web-0", "web-1", "web-1"]);
    assert_eq!(answers(&kubeconfig, &first_ip, 80, 4).await, ["web-0"; 4]);
    // Only the Service's own ports are served.
    wait_refused(&kubeconfig, &web_ip, 8080).await;

    // web-1 re-created on another address (a pod takes its old one meanwhile): the Service follows it.
    pods.delete("web-1", &DeleteParams::default()).await.expect("delete");
    wait_for(&sim, "pods", "web-1", "gone", |pod| pod.is_none()).await;
    pods.create(&PostParams::default(), &sleeper("filler"))
        .await
        .expect("filler");
    assert_eq!(ready_ip(&sim, "filler").await, ip1, "the freed address is reused first");
    pods.create(&PostParams::default(), &web("web-1"))
        .await
        .expect("re-create");
    let new_ip1 = ready_ip(&sim, "web-1").await;
    assert_ne!(new_ip1, ip1);
    wait_endpoints(&sim, "web", &[&ip0, &new_ip1]).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = answers(&kubeconfig, &web_ip, 80, 4).await;
        if seen.iter().filter(|who| *who == "web-1").count() == 2
            && seen.iter().filter(|who| *who == "web-0").count() == 2
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new web-1 is not reached: {seen:?}"
        );
    }

    // A deleted Service stops answering; the other keeps going.
    services
        .delete("first", &DeleteParams::default())
        .await
        .expect("delete");
    wait_refused(&kubeconfig, &first_ip, 80).await;
    assert_eq!(answers(&kubeconfig, &web_ip, 80, 2).await.len(), 2);

    // No ready endpoint: refused, as kube-proxy rejects.
    for name in ["web-0", "web-1"] {
        pods.delete(name, &DeleteParams::default()).await.expect("delete");
    }
    for name in ["web-0", "web-1"] {
        wait_for(&sim, "pods", name, "gone", |pod| pod.is_none()).await;
    }
    wait_endpoints(&sim, "web", &[]).await;
    wait_refused(&kubeconfig, &web_ip, 80).await;

    sim.shutdown();
    assert_eq!(
        sim.leftovers(),
        Vec::<String>::new(),
        "the simulator left things behind"
    );
}
