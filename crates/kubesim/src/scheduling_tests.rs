//! The Node object, the scheduler and pod termination through the real kube client and kubectl.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::runtime::watcher;
use serde_json::json;

use super::*;

const WAIT: Duration = Duration::from_secs(15);

fn control_plane(options: Options) -> Kubesim {
    Kubesim::start(Options {
        without_node: true,
        ..options
    })
    .expect("the control plane starts")
}

fn client(sim: &Kubesim) -> kube::Client {
    let config = kube::Config::new(sim.url().parse().expect("valid url"));
    kube::Client::try_from(config).expect("client")
}

/// `kubectl get nodes` against the simulator, its output as printed.
async fn kubectl_get_nodes(sim: &Kubesim) -> String {
    let output = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(sim.kubeconfig_path())
        .args(["get", "nodes"])
        .output()
        .await
        .expect("kubectl runs (apt-get install kubectl)");
    assert!(
        output.status.success(),
        "kubectl get nodes failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// mysql-0 as a bare pod in `database`, optionally requesting `memory`.
async fn create_pod(client: &kube::Client, memory: Option<&str>) -> Api<Pod> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": "database" } })).expect("namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace created");
    let mut container = json!({ "name": "mysql", "image": "mysql:8.4" });
    if let Some(memory) = memory {
        container["resources"] = json!({ "requests": { "memory": memory } });
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "mysql-0" },
        "spec": { "containers": [container] },
    }))
    .expect("pod");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "database");
    pods.create(&PostParams::default(), &pod).await.expect("pod created");
    pods
}

/// Waits (watching) until mysql-0's PodScheduled condition says `status`; returns the pod.
async fn scheduled_condition(pods: &Api<Pod>, status: &str, message: Option<&str>) -> Pod {
    let wanted = |pod: Option<&Pod>| {
        pod.and_then(|p| p.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
            .is_some_and(|c| c.status == status && message.is_none_or(|m| c.message.as_deref() == Some(m)))
    };
    let found = tokio::time::timeout(
        WAIT,
        kube::runtime::wait::await_condition(pods.clone(), "mysql-0", wanted),
    )
    .await
    .unwrap_or_else(|_| panic!("PodScheduled={status} ({message:?}) in time"))
    .expect("watch");
    found.expect("the pod exists")
}

fn scheduled_to(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone()
}

#[tokio::test]
async fn nodes_are_served_watched_and_printed_like_a_registered_kubelets() {
    let sim = control_plane(Options::default());
    let client = client(&sim);

    let (resource, capabilities) = discovery::pinned_kind(&client, &GroupVersionKind::gvk("", "v1", "Node"))
        .await
        .expect("discovery knows Node");
    assert_eq!(resource.plural, "nodes");
    assert_eq!(capabilities.scope, Scope::Cluster);
    for verb in ["get", "list", "watch"] {
        assert!(capabilities.supports_operation(verb), "nodes support {verb}");
    }

    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default()).await.expect("nodes list");
    assert_eq!(list.items.len(), 1);
    let node = &list.items[0];
    assert_eq!(node.metadata.name.as_deref(), Some(NODE_NAME));
    let status = node.status.as_ref().expect("status");
    let ready = status
        .conditions
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .expect("Ready condition");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("True", Some("KubeletReady"))
    );
    let allocatable = status.allocatable.as_ref().expect("allocatable");
    for resource in ["cpu", "memory", "pods"] {
        assert!(allocatable.contains_key(resource), "allocatable {resource}");
    }
    assert!(status.capacity.as_ref().is_some_and(|c| c.contains_key("memory")));
    let info = status.node_info.as_ref().expect("nodeInfo");
    assert_eq!(
        info.kubelet_version,
        format!("v{}.{}.0", api::KUBERNETES_VERSION.0, api::KUBERNETES_VERSION.1)
    );
    let addresses = status.addresses.as_ref().expect("addresses");
    assert!(
        addresses
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == node::NODE_IP.to_string())
    );
    assert!(
        node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_none(),
        "a Ready node is not tainted"
    );

    let printed = kubectl_get_nodes(&sim).await;
    let lines: Vec<Vec<&str>> = printed.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "STATUS", "ROLES", "AGE", "VERSION"], "{printed}");
    assert_eq!(lines.len(), 2, "{printed}");
    assert_eq!(
        (lines[1][0], lines[1][1], lines[1][2], lines[1][4]),
        (NODE_NAME, "Ready", "control-plane", info.kubelet_version.as_str()),
        "{printed}"
    );

    // The node goes NotReady: a watch sees it, with the lifecycle controller's taint.
    let mut watch = watcher::watcher(nodes.clone(), watcher::Config::default()).boxed();
    sim.faults().node_not_ready_for(Duration::from_secs(60));
    let not_ready = tokio::time::timeout(WAIT, async {
        while let Some(event) = watch.next().await {
            if let Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) = event
                && node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some()
            {
                return node;
            }
        }
        panic!("the watch ended")
    })
    .await
    .expect("the watch shows the node NotReady");
    let taint = &not_ready.spec.as_ref().and_then(|s| s.taints.clone()).expect("taints")[0];
    assert_eq!(
        (taint.key.as_str(), taint.effect.as_str()),
        ("node.kubernetes.io/not-ready", "NoSchedule")
    );
    let printed = kubectl_get_nodes(&sim).await;
    assert!(
        printed
            .lines()
            .nth(1)
            .is_some_and(|row| row.split_whitespace().nth(1) == Some("NotReady")),
        "{printed}"
    );
}

#[tokio::test]
async fn a_pod_waits_for_a_node_that_is_not_ready_yet_and_is_scheduled_once_it_is() {
    let sim = control_plane(Options {
        node_not_ready_for: Some(Duration::from_secs(3)),
        ..Options::default()
    });
    let client = client(&sim);
    let pods = create_pod(&client, None).await;
    let message = "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. \
                   preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
    let pending = scheduled_condition(&pods, "False", Some(message)).await;
    assert_eq!(scheduled_to(&pending), None);
    let condition = pending
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .cloned()
        .expect("condition");
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    let events: Api<Event> = Api::namespaced(client.clone(), "database");
    let failed_scheduling = events
        .list(&ListParams::default().fields("involvedObject.name=mysql-0,reason=FailedScheduling"))
        .await
        .expect("events");
    assert_eq!(
        failed_scheduling
            .items
            .iter()
            .map(|e| e.message.as_deref())
            .collect::<Vec<_>>(),
        [Some(message)]
    );
    assert_eq!(failed_scheduling.items[0].type_.as_deref(), Some("Warning"));

    let scheduled = scheduled_condition(&pods, "True", None).await;
    assert_eq!(scheduled_to(&scheduled).as_deref(), Some(NODE_NAME));
}

#[tokio::test]
async fn an_untolerated_taint_or_too_little_memory_keeps_the_pod_pending_with_the_reason() {
    let sim = control_plane(Options::default());
    sim.faults()
        .set_node_taint(Some(("dedicated", "analytics", "NoSchedule")));
    let client = client(&sim);
    let pods = create_pod(&client, Some("1Gi")).await;
    scheduled_condition(
        &pods,
        "False",
        Some(
            "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: analytics}. preemption: 0/1 nodes \
             are available: 1 Preemption is not helpful for scheduling.",
        ),
    )
    .await;

    sim.faults().set_node_memory(Some("512Mi"));
    sim.faults().set_node_taint(None);
    scheduled_condition(
        &pods,
        "False",
        Some(
            "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption \
             victims found for incoming pod.",
        ),
    )
    .await;

    sim.faults().set_node_memory(Some("4Gi"));
    let scheduled = scheduled_condition(&pods, "True", None).await;
    assert_eq!(scheduled_to(&scheduled).as_deref(), Some(NODE_NAME));
}

#[tokio::test]
async fn without_any_node_the_scheduler_says_so() {
    let sim = control_plane(Options::default());
    let client = client(&sim);
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .delete(NODE_NAME, &Default::default())
        .await
        .expect("the node can be deleted");
    let pods = create_pod(&client, None).await;
    scheduled_condition(&pods, "False", Some("no nodes available to schedule pods")).await;
}

#[tokio::test]
async fn a_deleted_pod_terminates_gracefully_before_its_statefulset_replaces_it() {
    let sim = Kubesim::start(Options::default()).expect("kubesim with its node starts");
    let client = client(&sim);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": "database" } })).expect("namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace created");
    let statefulset: k8s_openapi::api::apps::v1::StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": "mysql" },
        "spec": {
            "replicas": 1,
            "serviceName": "mysql",
            "selector": { "matchLabels": { "app": "mysql" } },
            "template": {
                "metadata": { "labels": { "app": "mysql" } },
                "spec": { "containers": [{
                    "name": "mysql",
                    "image": "mysql:8.4",
                    "env": [{ "name": "MYSQL_ROOT_PASSWORD", "value": "root" }],
                    "ports": [{ "containerPort": 3306, "name": "mysql" }],
                    "readinessProbe": { "tcpSocket": { "port": 3306 }, "periodSeconds": 2 },
                }] },
            },
        },
    }))
    .expect("statefulset");
    Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client.clone(), "database")
        .create(&PostParams::default(), &statefulset)
        .await
        .expect("statefulset created");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "database");
    let ready = |pod: Option<&Pod>| {
        pod.and_then(|p| p.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let first = tokio::time::timeout(
        Duration::from_secs(120),
        kube::runtime::wait::await_condition(pods.clone(), "mysql-0", ready),
    )
    .await
    .expect("mysql-0 Ready in time")
    .expect("watch")
    .expect("mysql-0");
    let first_uid = first.metadata.uid.clone().expect("uid");
    // Delete once the server has started for good: MariaDB (measured on 10.11) does not act on a SIGTERM that
    // arrives between its TCP socket accepting a connection and "ready for connections" (the kubelet's SIGKILL
    // after the grace period ends it), which is no question of graceful termination.
    // kubesim's log endpoint does not follow: read the log until the line is there.
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let log = pods.logs("mysql-0", &Default::default()).await.expect("log");
            if log.contains("port: 3306") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the server reports it is ready for connections");

    let mut watch = watcher::watcher(pods.clone(), watcher::Config::default()).boxed();
    let asked = std::time::Instant::now();
    let deleted = pods
        .delete("mysql-0", &Default::default())
        .await
        .expect("delete accepted")
        .left()
        .expect("the pod stays while it terminates");
    assert!(deleted.metadata.deletion_timestamp.is_some());
    // No grace period in the request or the spec: the default 30 s.
    assert_eq!(deleted.metadata.deletion_grace_period_seconds, Some(30));

    // The watch sees the old pod Terminating, then gone, and only then the replacement.
    let mut order = Vec::new();
    let gone_after = tokio::time::timeout(Duration::from_secs(60), async {
        let mut gone_after = None;
        while let Some(event) = watch.next().await {
            match event {
                Ok(watcher::Event::Apply(pod)) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    let terminating = pod.metadata.deletion_timestamp.is_some();
                    order.push(if uid == first_uid {
                        (terminating, "old")
                    } else {
                        (false, "new")
                    });
                    if uid != first_uid {
                        return gone_after.expect("the replacement came after the old pod was gone");
                    }
                }
                Ok(watcher::Event::Delete(pod)) if pod.metadata.uid.as_deref() == Some(first_uid.as_str()) => {
                    gone_after = Some(asked.elapsed());
                    order.push((true, "old gone"));
                }
                _ => {}
            }
        }
        panic!("the watch ended")
    })
    .await
    .expect("the replacement arrives");
    assert_eq!(order.last(), Some(&(false, "new")), "{order:?}");
    assert!(order.contains(&(true, "old gone")), "{order:?}");
    // MariaDB shuts down cleanly on SIGTERM well within the grace period: no SIGKILL was needed.
    assert!(gone_after < Duration::from_secs(8), "terminated after {gone_after:?}");
    let events: Api<Event> = Api::namespaced(client.clone(), "database");
    let killing = events
        .list(&ListParams::default().fields("reason=Killing"))
        .await
        .expect("events");
    assert!(
        killing
            .items
            .iter()
            .any(|e| e.message.as_deref() == Some("Stopping container mysql")),
        "{:?}",
        killing.items.iter().map(|e| e.message.clone()).collect::<Vec<_>>()
    );
}
