//! The Node object of the simulated cluster and the scheduler's decision: which node a pod fits, or the
//! scheduler's message for why none does, as kube-scheduler words it (`0/1 nodes are available: 1 Insufficient
//! memory. preemption: ...`). Pure functions over JSON objects; the controllers apply them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::NODE_NAME;
use crate::store::now_rfc3339;

/// The taint the node lifecycle controller puts on a node whose Ready condition is not True.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// The taint kubectl cordon stands for (nodes with `spec.unschedulable`).
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// What the node offers, by default and under faults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeShape {
    pub ready: bool,
    /// Extra taints: (key, value, effect).
    pub taints: Vec<(String, String, String)>,
    /// Allocatable memory as a quantity (`"16Gi"`), capacity likewise.
    pub memory: String,
    /// Allocatable CPUs as a quantity (`"4"`).
    pub cpu: String,
}

impl Default for NodeShape {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        NodeShape {
            ready: true,
            taints: Vec::new(),
            memory: host_memory().unwrap_or_else(|| "8Gi".to_string()),
            cpu: cpus.to_string(),
        }
    }
}

/// The machine's memory as a quantity in Ki, as the kubelet reports it.
fn host_memory() -> Option<String> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib = line.split_whitespace().nth(1)?;
    Some(format!("{kib}Ki"))
}

/// The `kubesim-node` Node object as a kubelet registers it, with the node lifecycle controller's taints.
pub fn node_object(shape: &NodeShape, node_ip: &str, kubelet_version: &str) -> Value {
    let now = now_rfc3339();
    let mut node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "labels": {
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH,
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": std::env::consts::ARCH,
                "node-role.kubernetes.io/control-plane": "",
            },
        },
        "spec": { "podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"] },
        "status": {
            "capacity": { "cpu": shape.cpu, "memory": shape.memory, "pods": "110", "ephemeral-storage": "100Gi" },
            "allocatable": { "cpu": shape.cpu, "memory": shape.memory, "pods": "110", "ephemeral-storage": "100Gi" },
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available", &now),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", &now),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available", &now),
            ],
            "addresses": [
                { "type": "InternalIP", "address": node_ip },
                { "type": "Hostname", "address": NODE_NAME },
            ],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": 10250 } },
            "nodeInfo": {
                "kubeletVersion": kubelet_version,
                "kubeProxyVersion": kubelet_version,
                "containerRuntimeVersion": "containerd://1.7.18",
                "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH,
                "osImage": "kubesim",
                "kernelVersion": kernel_version(),
                "machineID": host_file("/etc/machine-id"),
                "systemUUID": host_file("/sys/class/dmi/id/product_uuid"),
                "bootID": host_file("/proc/sys/kernel/random/boot_id"),
            },
        },
    });
    set_shape(&mut node, shape);
    node
}

/// An identity of the machine the node runs on, as the kubelet reads it ("" when unreadable).
fn host_file(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_string())
        .unwrap_or_default()
}

/// How often the kubelet renews its node's Lease, and the duration it claims (the kubelet's defaults).
pub const LEASE_RENEW_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
const LEASE_DURATION_SECONDS: u64 = 40;

/// The node's Lease in `kube-node-lease`, renewed at `renew_time` (a MicroTime), owned by the node.
pub fn node_lease(node: &Value, renew_time: &str) -> Value {
    let name = node.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
    json!({
        "metadata": {
            "name": name,
            "namespace": "kube-node-lease",
            "ownerReferences": [{
                "apiVersion": "v1",
                "kind": "Node",
                "name": name,
                "uid": node.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
            }],
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": renew_time,
        },
    })
}

/// How often the kubelet reports an unchanged node status (its `nodeStatusReportFrequency`): the conditions'
/// lastHeartbeatTime is at most this old.
pub const STATUS_REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// Moves every condition's lastHeartbeatTime to `now` once the oldest is `STATUS_REPORT_INTERVAL` old; true when
/// it did.
pub fn report_status(node: &mut Value, now: jiff::Timestamp) -> bool {
    let Some(conditions) = node.pointer_mut("/status/conditions").and_then(Value::as_array_mut) else {
        return false;
    };
    let due = conditions.iter().any(|condition| {
        condition["lastHeartbeatTime"]
            .as_str()
            .and_then(|text| text.parse::<jiff::Timestamp>().ok())
            .is_none_or(|beat| now.duration_since(beat).unsigned_abs() >= STATUS_REPORT_INTERVAL)
    });
    if due {
        let stamp = crate::node::timestamp(now);
        for condition in conditions.iter_mut() {
            condition["lastHeartbeatTime"] = json!(stamp);
        }
    }
    due
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_string())
        .unwrap_or_default()
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": type_, "status": status, "reason": reason, "message": message,
        "lastHeartbeatTime": now, "lastTransitionTime": now,
    })
}

/// Brings a stored Node in line with `shape`: its Ready condition, its taints (the not-ready taint while not
/// Ready, as the node lifecycle controller sets it) and its allocatable memory and CPU. True when it changed.
pub fn set_shape(node: &mut Value, shape: &NodeShape) -> bool {
    let before = node.clone();
    let now = now_rfc3339();
    let ready = if shape.ready {
        condition("Ready", "True", "KubeletReady", "kubelet is posting ready status", &now)
    } else {
        condition(
            "Ready",
            "False",
            "KubeletNotReady",
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network \
             plugin returns error: cni plugin not initialized",
            &now,
        )
    };
    if !node["status"]["conditions"].is_array() {
        node["status"]["conditions"] = json!([]);
    }
    let conditions = node["status"]["conditions"].as_array_mut().expect("just made an array");
    match conditions.iter_mut().find(|c| c["type"] == "Ready") {
        Some(existing) if existing["status"] == ready["status"] => {}
        Some(existing) => *existing = ready,
        None => conditions.push(ready),
    }
    let mut taints: Vec<Value> = shape
        .taints
        .iter()
        .map(|(key, value, effect)| {
            let mut taint = json!({ "key": key, "effect": effect });
            if !value.is_empty() {
                taint["value"] = json!(value);
            }
            taint
        })
        .collect();
    if !shape.ready {
        taints.push(json!({ "key": NOT_READY_TAINT, "effect": "NoSchedule" }));
    }
    let old_taints = node["spec"].get("taints").cloned().unwrap_or(json!([]));
    let same_taints = old_taints.as_array().is_some_and(|old| {
        old.len() == taints.len()
            && old
                .iter()
                .zip(&taints)
                .all(|(a, b)| a["key"] == b["key"] && a["value"] == b["value"] && a["effect"] == b["effect"])
    });
    if !same_taints {
        // The lifecycle controller stamps when it added a taint.
        for taint in &mut taints {
            taint["timeAdded"] = json!(now);
        }
    }
    match node["spec"].as_object_mut() {
        Some(spec) if taints.is_empty() => {
            spec.remove("taints");
        }
        Some(spec) if !same_taints => {
            spec.insert("taints".into(), json!(taints));
        }
        _ => {}
    }
    for field in ["capacity", "allocatable"] {
        node["status"][field]["memory"] = json!(shape.memory);
        node["status"][field]["cpu"] = json!(shape.cpu);
    }
    // Heartbeats are not counted as changes: only what the scheduler or a person would notice.
    *node != before && (node["spec"] != before["spec"] || status_differs(node, &before))
}

fn status_differs(a: &Value, b: &Value) -> bool {
    let ready_status = |node: &Value| {
        node["status"]["conditions"]
            .as_array()
            .and_then(|list| list.iter().find(|c| c["type"] == "Ready"))
            .map(|c| c["status"].clone())
    };
    ready_status(a) != ready_status(b)
        || a["status"]["allocatable"] != b["status"]["allocatable"]
        || a["status"]["capacity"] != b["status"]["capacity"]
}

/// Where a pod goes: a node name, or the scheduler's message for why no node fits.
pub fn place(pod: &Value, nodes: &[Value], pods: &[Value]) -> Result<String, Unschedulable> {
    if nodes.is_empty() {
        return Err(Unschedulable {
            message: "no nodes available to schedule pods".to_string(),
        });
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut resolvable = 0;
    for node in nodes {
        match refusal(pod, node, pods) {
            None => return Ok(text(node, "/metadata/name").to_string()),
            Some((reason, by_preemption)) => {
                *reasons.entry(reason).or_default() += 1;
                if by_preemption {
                    resolvable += 1;
                }
            }
        }
    }
    let total = nodes.len();
    let mut histogram: Vec<String> = reasons
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    histogram.sort();
    // Preemption could only help on nodes short of resources, and only by evicting lower-priority pods, which
    // this cluster never has.
    let mut preemption = Vec::new();
    if resolvable > 0 {
        preemption.push(format!("{resolvable} No preemption victims found for incoming pod"));
    }
    if total > resolvable {
        preemption.push(format!(
            "{} Preemption is not helpful for scheduling",
            total - resolvable
        ));
    }
    preemption.sort();
    Err(Unschedulable {
        message: format!(
            "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {}.",
            histogram.join(", "),
            preemption.join(", ")
        ),
    })
}

/// The scheduler's reason for a pod no node takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unschedulable {
    pub message: String,
}

/// The first filter that refuses the pod on `node`, in kube-scheduler's order (NodeUnschedulable,
/// TaintToleration, NodeResourcesFit), and whether preemption could resolve it.
fn refusal(pod: &Value, node: &Value, pods: &[Value]) -> Option<(String, bool)> {
    let tolerations = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true)
        && !tolerates(
            &tolerations,
            &json!({ "key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule" }),
        )
    {
        return Some(("node(s) were unschedulable".to_string(), false));
    }
    let taints = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for taint in &taints {
        let effect = text(taint, "/effect");
        if (effect == "NoSchedule" || effect == "NoExecute") && !tolerates(&tolerations, taint) {
            return Some((
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    text(taint, "/key"),
                    text(taint, "/value")
                ),
                false,
            ));
        }
    }
    let name = text(node, "/metadata/name");
    let on_node: Vec<&Value> = pods
        .iter()
        .filter(|other| {
            text(other, "/spec/nodeName") == name
                && !matches!(text(other, "/status/phase"), "Succeeded" | "Failed")
                && text(other, "/metadata/uid") != text(pod, "/metadata/uid")
        })
        .collect();
    let allocatable = |resource: &str, parse: fn(&str) -> Option<u128>| {
        node.pointer(&format!("/status/allocatable/{resource}"))
            .and_then(Value::as_str)
            .and_then(parse)
            .unwrap_or(0)
    };
    let mut short = Vec::new();
    if on_node.len() as u128 + 1 > allocatable("pods", parse_count) {
        short.push("Too many pods".to_string());
    }
    let wanted = requests(pod);
    // A pod that requests nothing fits any node with room for one more pod.
    for (resource, parse) in [
        ("cpu", parse_millis as fn(&str) -> Option<u128>),
        ("memory", parse_bytes),
    ] {
        let asked = wanted.get(resource).copied().unwrap_or(0);
        if asked == 0 {
            continue;
        }
        let used: u128 = on_node
            .iter()
            .map(|other| requests(other).get(resource).copied().unwrap_or(0))
            .sum();
        if used + asked > allocatable(resource, parse) {
            short.push(format!("Insufficient {resource}"));
        }
    }
    // With several shortages the scheduler names each; the histogram counts them apart.
    (!short.is_empty()).then(|| (short.join(", "), true))
}

/// Whether one of `tolerations` tolerates `taint` (the API's matching rules: key, operator, value, effect).
fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    tolerations.iter().any(|toleration| {
        let key = text(toleration, "/key");
        let operator = Some(text(toleration, "/operator"))
            .filter(|o| !o.is_empty())
            .unwrap_or("Equal");
        let effect = text(toleration, "/effect");
        let key_matches = key == text(taint, "/key") || (key.is_empty() && operator == "Exists");
        let value_matches = operator == "Exists" || text(toleration, "/value") == text(taint, "/value");
        let effect_matches = effect.is_empty() || effect == text(taint, "/effect");
        key_matches && value_matches && effect_matches
    })
}

/// The pod's effective requests (millicores of cpu, bytes of memory): the sum over its containers, or the
/// largest init container's when that is more; a limit without a request counts as the request.
fn requests(pod: &Value) -> BTreeMap<&'static str, u128> {
    let of = |container: &Value, resource: &str, parse: fn(&str) -> Option<u128>| {
        container
            .pointer(&format!("/resources/requests/{resource}"))
            .or_else(|| container.pointer(&format!("/resources/limits/{resource}")))
            .and_then(|quantity| match quantity {
                Value::String(text) => parse(text),
                Value::Number(number) => parse(&number.to_string()),
                _ => None,
            })
            .unwrap_or(0)
    };
    let list = |field: &str| {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut total = BTreeMap::new();
    for (resource, parse) in [
        ("cpu", parse_millis as fn(&str) -> Option<u128>),
        ("memory", parse_bytes),
    ] {
        let main: u128 = list("containers").iter().map(|c| of(c, resource, parse)).sum();
        let init = list("initContainers")
            .iter()
            .map(|c| of(c, resource, parse))
            .max()
            .unwrap_or(0);
        total.insert(resource, main.max(init));
    }
    total
}

/// A quantity as a number of units, times `scale` (1000 for millicores): `500m`, `2`, `1.5`, `1Gi`, `512M`.
fn parse_quantity(text: &str, scale: u128) -> Option<u128> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier: u128 = match suffix {
        "" => 1,
        "m" => return parse_decimal(number, scale).map(|n| n / 1000),
        "k" => 1000,
        "M" => 1000u128.pow(2),
        "G" => 1000u128.pow(3),
        "T" => 1000u128.pow(4),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    parse_decimal(number, scale * multiplier)
}

/// `number` times `scale`, for decimals such as `1.5`.
fn parse_decimal(number: &str, scale: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut value = whole * scale;
    let mut unit = scale;
    for digit in fraction.chars() {
        unit /= 10;
        value += u128::from(digit.to_digit(10)?) * unit;
    }
    Some(value)
}

fn parse_millis(text: &str) -> Option<u128> {
    parse_quantity(text, 1000)
}

fn parse_bytes(text: &str) -> Option<u128> {
    parse_quantity(text, 1)
}

fn parse_count(text: &str) -> Option<u128> {
    parse_quantity(text, 1)
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_are_reported_every_five_minutes() {
        let mut node = json!({ "status": { "conditions": [
            { "type": "Ready", "status": "True", "lastHeartbeatTime": "2025-01-01T10:00:00Z", "lastTransitionTime": "2025-01-01T09:00:00Z" },
            { "type": "DiskPressure", "status": "False", "lastHeartbeatTime": "2025-01-01T10:00:00Z", "lastTransitionTime": "2025-01-01T09:00:00Z" },
        ] } });
        let at = |text: &str| text.parse::<jiff::Timestamp>().unwrap();
        assert!(!report_status(&mut node, at("2025-01-01T10:04:59Z")));
        assert_eq!(
            node["status"]["conditions"][0]["lastHeartbeatTime"],
            "2025-01-01T10:00:00Z"
        );
        assert!(report_status(&mut node, at("2025-01-01T10:05:00Z")));
        for condition in node["status"]["conditions"].as_array().unwrap() {
            assert_eq!(condition["lastHeartbeatTime"], "2025-01-01T10:05:00Z");
            assert_eq!(
                condition["lastTransitionTime"], "2025-01-01T09:00:00Z",
                "a heartbeat is no transition"
            );
        }
    }

    fn node(shape: &NodeShape) -> Value {
        node_object(shape, "10.244.0.1", "v1.31.0")
    }

    fn pod(memory: Option<&str>, tolerations: Value) -> Value {
        let mut container = json!({ "name": "mysql", "image": "mysql:8.4" });
        if let Some(memory) = memory {
            container["resources"] = json!({ "requests": { "memory": memory, "cpu": "500m" } });
        }
        json!({
            "metadata": { "name": "mysql-0", "namespace": "database", "uid": "p" },
            "spec": { "containers": [container], "tolerations": tolerations },
        })
    }

    #[test]
    fn quantities_parse_as_the_api_writes_them() {
        assert_eq!(parse_millis("500m"), Some(500));
        assert_eq!(parse_millis("2"), Some(2000));
        assert_eq!(parse_millis("1.5"), Some(1500));
        assert_eq!(parse_bytes("1Gi"), Some(1 << 30));
        assert_eq!(parse_bytes("512M"), Some(512_000_000));
        assert_eq!(parse_bytes("16318480Ki"), Some(16_318_480 * 1024));
        assert_eq!(parse_bytes("1e3"), None);
    }

    #[test]
    fn a_ready_node_takes_a_pod_that_fits() {
        let node = node(&NodeShape::default());
        assert_eq!(node["status"]["conditions"][3]["type"], "Ready");
        assert_eq!(node["status"]["conditions"][3]["status"], "True");
        assert!(node["spec"].get("taints").is_none());
        assert_eq!(
            place(&pod(Some("1Gi"), json!([])), &[node], &[]),
            Ok(NODE_NAME.to_string())
        );
    }

    #[test]
    fn a_node_that_is_not_ready_carries_the_not_ready_taint_until_it_is() {
        let mut node = node(&NodeShape {
            ready: false,
            ..NodeShape::default()
        });
        assert_eq!(node["spec"]["taints"][0]["key"], NOT_READY_TAINT);
        assert_eq!(node["spec"]["taints"][0]["effect"], "NoSchedule");
        assert_eq!(
            place(&pod(None, json!([])), std::slice::from_ref(&node), &[]),
            Err(Unschedulable {
                message: "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. \
                          preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
                    .into()
            })
        );
        // The default tolerations of every pod are for NoExecute only: they do not help.
        let default_tolerations = json!([
            { "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 },
        ]);
        assert!(place(&pod(None, default_tolerations), std::slice::from_ref(&node), &[]).is_err());

        assert!(set_shape(&mut node, &NodeShape::default()));
        assert!(node["spec"].get("taints").is_none());
        assert_eq!(
            place(&pod(None, json!([])), &[node.clone()], &[]),
            Ok(NODE_NAME.to_string())
        );
        assert!(!set_shape(&mut node, &NodeShape::default()), "nothing changed");
    }

    #[test]
    fn a_taint_is_tolerated_only_by_a_matching_toleration() {
        let node = node(&NodeShape {
            taints: vec![("dedicated".into(), "analytics".into(), "NoSchedule".into())],
            ..NodeShape::default()
        });
        assert_eq!(
            place(&pod(None, json!([])), std::slice::from_ref(&node), &[])
                .expect_err("untolerated")
                .message,
            "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: analytics}. preemption: 0/1 nodes \
             are available: 1 Preemption is not helpful for scheduling."
        );
        let wrong_value = json!([{ "key": "dedicated", "value": "web", "effect": "NoSchedule" }]);
        assert!(place(&pod(None, wrong_value), std::slice::from_ref(&node), &[]).is_err());
        let exists = json!([{ "key": "dedicated", "operator": "Exists" }]);
        assert!(place(&pod(None, exists), std::slice::from_ref(&node), &[]).is_ok());
    }

    #[test]
    fn memory_requests_must_fit_what_the_node_has_left() {
        let node = node(&NodeShape {
            memory: "1536Mi".into(),
            ..NodeShape::default()
        });
        let mut first = pod(Some("1Gi"), json!([]));
        assert!(place(&first, std::slice::from_ref(&node), &[]).is_ok());
        first["spec"]["nodeName"] = json!(NODE_NAME);
        first["metadata"]["uid"] = json!("other");
        let second = pod(Some("1Gi"), json!([]));
        assert_eq!(
            place(&second, std::slice::from_ref(&node), &[first.clone()])
                .expect_err("no room")
                .message,
            "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption \
             victims found for incoming pod."
        );
        // Requesting nothing, it fits.
        assert!(place(&pod(None, json!([])), &[node], &[first]).is_ok());
    }

    #[test]
    fn no_node_at_all_is_said_so() {
        assert_eq!(
            place(&pod(None, json!([])), &[], &[]).expect_err("no nodes").message,
            "no nodes available to schedule pods"
        );
    }
}
