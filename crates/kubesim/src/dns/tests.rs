//! Cluster DNS with the real clients: `dig` against the server on loopback, then `getent` and `nslookup` inside
//! pods of a running simulator, reached through the real `kubectl exec`. They need root, iproute2, MariaDB
//! (for the node) and bind9-dnsutils (dig, nslookup), and fail saying so when these are missing.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

use super::*;
use crate::{Kubesim, Options};

const WAIT: Duration = Duration::from_secs(30);

fn run(program: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("{program} does not run ({e}): apt-get install bind9-dnsutils (dig, nslookup) and kubectl")
    });
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn dig_gets_a_srv_nxdomain_and_refused_over_udp_and_tcp_from_the_server() {
    let store = Store::new();
    store
        .create("namespaces", "", json!({ "metadata": { "name": "database" } }))
        .expect("namespace");
    store
        .create(
            "services",
            "database",
            json!({ "metadata": { "name": "mysql-headless" },
                    "spec": { "clusterIP": "None", "ports": [{ "name": "mysql", "port": 3306 }] } }),
        )
        .expect("service");
    store
        .create(
            "endpoints",
            "database",
            json!({ "metadata": { "name": "mysql-headless" }, "subsets": [{
                "addresses": [{ "ip": "10.244.0.2", "hostname": "mysql-0" }, { "ip": "10.244.0.3", "hostname": "mysql-1" }],
                "ports": [{ "name": "mysql", "port": 3306, "protocol": "TCP" }] }] }),
        )
        .expect("endpoints");
    // Loopback only: the test never sends traffic to pod addresses.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let port = udp.local_addr().expect("address").port();
    let tcp = std::net::TcpListener::bind(("127.0.0.1", port)).expect("tcp on the same port");
    udp.set_nonblocking(true).expect("nonblocking");
    tcp.set_nonblocking(true).expect("nonblocking");
    let server = tokio::spawn(serve(store.clone(), udp, tcp));
    let port = port.to_string();
    let dig = |args: &[&str]| {
        let mut all = vec!["@127.0.0.1", "-p", &port, "+time=2", "+tries=1"];
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = all.iter().map(String::as_str).collect();
                run("dig", &args)
            })
            .await
            .expect("dig ran")
        }
    };

    let (_, out, err) = dig(&["+short", "mysql-headless.database.svc.cluster.local"]).await;
    assert_eq!(out, "10.244.0.2\n10.244.0.3\n", "{err}");
    let (_, out, err) = dig(&["+short", "+tcp", "MYSQL-0.mysql-headless.database.svc.cluster.local"]).await;
    assert_eq!(out, "10.244.0.2\n", "{err}");
    let (_, out, err) = dig(&["+short", "SRV", "_mysql._tcp.mysql-headless.database.svc.cluster.local"]).await;
    assert_eq!(
        out,
        "0 50 3306 mysql-0.mysql-headless.database.svc.cluster.local.\n\
         0 50 3306 mysql-1.mysql-headless.database.svc.cluster.local.\n",
        "{err}"
    );
    // dig aligns its columns with tabs and spaces: compare words.
    let words = |out: &str| out.split_whitespace().collect::<Vec<_>>().join(" ");
    let (_, out, _) = dig(&["SRV", "_mysql._tcp.mysql-headless.database.svc.cluster.local"]).await;
    let out = words(&out);
    assert!(out.contains("flags: qr aa rd ra;"), "{out}");
    assert!(
        out.contains("mysql-1.mysql-headless.database.svc.cluster.local. 5 IN A 10.244.0.3"),
        "the targets' addresses come along: {out}"
    );
    let (_, out, _) = dig(&["nothing.database.svc.cluster.local"]).await;
    let out = words(&out);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert!(
        out.contains("cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"),
        "{out}"
    );
    let (_, out, _) = dig(&["AAAA", "mysql-0.mysql-headless.database.svc.cluster.local"]).await;
    assert!(out.contains("status: NOERROR") && out.contains("ANSWER: 0,"), "{out}");
    let asked = Instant::now();
    let (_, out, _) = dig(&["example.com"]).await;
    assert!(out.contains("status: REFUSED"), "{out}");
    assert!(asked.elapsed() < Duration::from_secs(1), "refused at once");

    // Answers follow the store: a new address is served on the next query.
    store.update("endpoints", "database", "mysql-headless", |endpoints| {
        endpoints["subsets"][0]["addresses"][0]["ip"] = json!("10.244.0.9");
    });
    let (_, out, err) = dig(&["+short", "mysql-0.mysql-headless.database.svc.cluster.local"]).await;
    assert_eq!(out, "10.244.0.9\n", "{err}");
    server.abort();
}

fn client(sim: &Kubesim) -> kube::Client {
    kube::Client::try_from(kube::Config::new(sim.url().parse().expect("url"))).expect("client")
}

fn object<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

/// A pod as the StatefulSet makes them (hostname and subdomain set), running a plain `sleep`.
fn member(name: &str) -> Pod {
    object(json!({
        "metadata": { "name": name, "labels": { "app": "mysql" } },
        "spec": {
            "hostname": name,
            "subdomain": "mysql-headless",
            "terminationGracePeriodSeconds": 1,
            "containers": [{ "name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"],
                             "ports": [{ "name": "mysql", "containerPort": 3306 }] }],
        },
    }))
}

fn sleeper(name: &str, image: &str) -> Pod {
    object(json!({
        "metadata": { "name": name },
        "spec": { "terminationGracePeriodSeconds": 1,
                  "containers": [{ "name": "main", "image": image, "command": ["sleep", "3600"] }] },
    }))
}

/// Waits (on the store's change feed) until `check` holds for the pod `name`, and returns the pod.
async fn wait_pod(sim: &Kubesim, name: &str, what: &str, check: impl Fn(Option<&Value>) -> bool) -> Option<Value> {
    let mut changes = sim.store().subscribe();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pod = sim.store().get("pods", "database", name);
        if check(pod.as_ref()) {
            return pod;
        }
        if tokio::time::timeout_at(deadline, changes.recv()).await.is_err() {
            panic!("timed out waiting for {name} to be {what}: {pod:#?}");
        }
    }
}

async fn ready_ip(sim: &Kubesim, name: &str) -> String {
    let pod = wait_pod(sim, name, "Ready", |pod| pod.is_some_and(crate::controllers::is_ready))
        .await
        .expect("pod");
    pod["status"]["podIP"].as_str().expect("ip").to_string()
}

/// `kubectl exec -n database <pod> -- <argv>`, with the real kubectl.
async fn exec(kubeconfig: &Path, pod: &str, argv: &[&str]) -> (i32, String, String) {
    let mut args: Vec<String> = [
        "--kubeconfig",
        &kubeconfig.to_string_lossy(),
        "exec",
        "-n",
        "database",
        pod,
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(argv.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("kubectl", &args)
    })
    .await
    .expect("kubectl ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_resolve_cluster_names_with_getent_and_nslookup_and_follow_a_recreated_pod() {
    let sim = match Kubesim::start(Options::default()) {
        Ok(sim) => sim,
        Err(error) => panic!("kubesim cannot start: {error:#} (run as root with mariadb-server and iproute2)"),
    };
    let kubeconfig = sim.kubeconfig_path().to_path_buf();
    let client = client(&sim);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &object(json!({ "metadata": { "name": "database" } })),
        )
        .await
        .expect("namespace");
    let services: Api<Service> = Api::namespaced(client.clone(), "database");
    services
        .create(
            &PostParams::default(),
            &object(json!({ "metadata": { "name": "mysql-headless" }, "spec": {
                "clusterIP": "None", "selector": { "app": "mysql" },
                "ports": [{ "name": "mysql", "port": 3306, "targetPort": 3306 }] } })),
        )
        .await
        .expect("headless service");
    services
        .create(
            &PostParams::default(),
            &object(json!({ "metadata": { "name": "mysql-primary" }, "spec": {
                "clusterIP": "10.96.100.5", "selector": { "app": "mysql" },
                "ports": [{ "name": "mysql", "port": 3306 }] } })),
        )
        .await
        .expect("service");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "database");
    for pod in [
        member("mysql-0"),
        member("mysql-1"),
        sleeper("mysql-client", "mysql:8.0"),
    ] {
        pods.create(&PostParams::default(), &pod).await.expect("pod");
    }
    let ip0 = ready_ip(&sim, "mysql-0").await;
    let ip1 = ready_ip(&sim, "mysql-1").await;
    ready_ip(&sim, "mysql-client").await;

    let (_, resolv, _) = exec(&kubeconfig, "mysql-client", &["cat", "/etc/resolv.conf"]).await;
    assert_eq!(
        resolv,
        format!(
            "search database.svc.cluster.local svc.cluster.local cluster.local\nnameserver {}\noptions ndots:5\n",
            crate::node::DNS_IP
        )
    );
    let (_, hosts, _) = exec(&kubeconfig, "mysql-client", &["cat", "/etc/hosts"]).await;
    assert!(
        !hosts.contains("mysql-0"),
        "other pods come from DNS, not the hosts file: {hosts}"
    );

    // Short and fully qualified, per-pod and Service names, through the pod's resolver (glibc).
    for (name, expected) in [
        (
            "mysql-0.mysql-headless",
            format!("{ip0:<15} mysql-0.mysql-headless.database.svc.cluster.local\n"),
        ),
        (
            "mysql-1.mysql-headless.database.svc.cluster.local",
            format!("{ip1:<15} mysql-1.mysql-headless.database.svc.cluster.local\n"),
        ),
        (
            "mysql-primary",
            "10.96.100.5     mysql-primary.database.svc.cluster.local\n".to_string(),
        ),
        (
            "kubernetes.default",
            "10.96.0.1       kubernetes.default.svc.cluster.local\n".to_string(),
        ),
    ] {
        let (code, out, err) = exec(&kubeconfig, "mysql-client", &["getent", "hosts", name]).await;
        assert_eq!((code, out), (0, expected), "getent hosts {name}: {err}");
    }
    let (code, out, err) = exec(&kubeconfig, "mysql-client", &["getent", "ahostsv4", "mysql-headless"]).await;
    assert_eq!(code, 0, "{err}");
    for ip in [&ip0, &ip1] {
        assert!(out.contains(&format!("{ip:<15} STREAM")), "{out}");
    }

    // nslookup, on the client image's PATH as on the real image.
    let (code, out, err) = exec(&kubeconfig, "mysql-client", &["nslookup", "mysql-0.mysql-headless"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "Name:\tmysql-0.mysql-headless.database.svc.cluster.local\nAddress: {ip0}\n"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("Server:\t\t{}\n", crate::node::DNS_IP)), "{out}");
    let (_, out, _) = exec(&kubeconfig, "mysql-client", &["nslookup", "mysql-headless"]).await;
    assert!(
        out.contains(&format!("Address: {ip0}")) && out.contains(&format!("Address: {ip1}")),
        "{out}"
    );
    let (code, out, err) = exec(
        &kubeconfig,
        "mysql-client",
        &["nslookup", "-type=SRV", "_mysql._tcp.mysql-headless"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("_mysql._tcp.mysql-headless.database.svc.cluster.local\tservice = 0 50 3306 mysql-0.mysql-headless.database.svc.cluster.local."),
        "{out}"
    );

    // Missing names: NXDOMAIN through the whole search path; names outside the cluster fail at once.
    let missing = "mysql-9.mysql-headless.database.svc.cluster.local";
    let (code, out, _) = exec(&kubeconfig, "mysql-client", &["nslookup", missing]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("** server can't find {missing}: NXDOMAIN")),
        "{out}"
    );
    // The short form ends on the bare name, outside the cluster domain: refused, as nothing is forwarded.
    let (code, out, _) = exec(&kubeconfig, "mysql-client", &["nslookup", "mysql-9.mysql-headless"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("** server can't find mysql-9.mysql-headless"), "{out}");
    let (code, _, _) = exec(
        &kubeconfig,
        "mysql-client",
        &["getent", "hosts", "mysql-9.mysql-headless"],
    )
    .await;
    assert_eq!(code, 2, "getent: not found");
    let asked = Instant::now();
    let (code, _, _) = exec(&kubeconfig, "mysql-client", &["getent", "hosts", "example.com"]).await;
    assert_eq!(code, 2);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "no waiting for an upstream: {:?}",
        asked.elapsed()
    );

    // mysql-0 deleted and re-created on another address (a pod takes its old one meanwhile): the new
    // address is answered.
    pods.delete("mysql-0", &DeleteParams::default()).await.expect("delete");
    wait_pod(&sim, "mysql-0", "gone", |pod| pod.is_none()).await;
    pods.create(&PostParams::default(), &sleeper("filler", "busybox:1.36"))
        .await
        .expect("filler");
    assert_eq!(ready_ip(&sim, "filler").await, ip0, "the freed address is reused first");
    pods.create(&PostParams::default(), &member("mysql-0"))
        .await
        .expect("re-create");
    let new_ip0 = ready_ip(&sim, "mysql-0").await;
    assert_ne!(new_ip0, ip0);
    let (code, out, err) = exec(&kubeconfig, "mysql-1", &["getent", "hosts", "mysql-0.mysql-headless"]).await;
    assert_eq!(
        (code, out),
        (
            0,
            format!("{new_ip0:<15} mysql-0.mysql-headless.database.svc.cluster.local\n")
        ),
        "{err}"
    );
    // Pods that reached the server before the bridge's ports changed still reach it: the bridge keeps its MAC
    // (by default a bridge takes its ports' lowest, and pods' ARP caches would point at a vanished one).
    let (code, out, err) = exec(
        &kubeconfig,
        "mysql-client",
        &["getent", "hosts", "mysql-0.mysql-headless"],
    )
    .await;
    assert_eq!(
        (code, out.split_whitespace().next()),
        (0, Some(new_ip0.as_str())),
        "{err}"
    );
    let dns_ip = crate::node::DNS_IP.to_string();
    let (_, neighbours, _) = exec(&kubeconfig, "mysql-client", &["ip", "neigh", "show", &dns_ip]).await;
    assert!(neighbours.contains("lladdr 0a:58:0a:f4:00:01"), "{neighbours}");
    sim.stop();
}
