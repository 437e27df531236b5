//! Server-side printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`): the columns kubectl shows for
//! each kind, computed as the real API server's printers compute them.

use serde_json::{Value, json};

use crate::resources::ResourceInfo;

/// Whether a request's Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let mut parts = media.split(';').map(str::trim);
        parts.next() == Some("application/json") && parts.any(|parameter| parameter == "as=Table")
    })
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn or_none(value: &str) -> String {
    if value.is_empty() {
        "<none>".to_string()
    } else {
        value.to_string()
    }
}

/// (name, type, priority): priority 1 columns show with `-o wide` only.
type Column = (&'static str, &'static str, u8);

fn columns(kind: &str) -> Vec<Column> {
    match kind {
        "Pod" => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        "StatefulSet" => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
        ],
        "PersistentVolumeClaim" => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Volume", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            ("Age", "string", 0),
            ("VolumeMode", "string", 1),
        ],
        "PersistentVolume" => vec![
            ("Name", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("Reclaim Policy", "string", 0),
            ("Status", "string", 0),
            ("Claim", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            ("Reason", "string", 0),
            ("Age", "string", 0),
            ("VolumeMode", "string", 1),
        ],
        "Service" => vec![
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        "Endpoints" => vec![("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)],
        "Namespace" => vec![("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
        "Secret" => vec![
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Data", "string", 0),
            ("Age", "string", 0),
        ],
        "ConfigMap" => vec![("Name", "string", 0), ("Data", "string", 0), ("Age", "string", 0)],
        "Node" => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        "ControllerRevision" => vec![
            ("Name", "string", 0),
            ("Controller", "string", 0),
            ("Revision", "integer", 0),
            ("Age", "string", 0),
        ],
        "StorageClass" => vec![
            ("Name", "string", 0),
            ("Provisioner", "string", 0),
            ("ReclaimPolicy", "string", 0),
            ("VolumeBindingMode", "string", 0),
            ("AllowVolumeExpansion", "string", 0),
            ("Age", "string", 0),
        ],
        "Event" => vec![
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        _ => vec![("Name", "string", 0), ("Age", "string", 0)],
    }
}

/// A duration as kubectl prints ages (`k8s.io/apimachinery/pkg/util/duration.HumanDuration`).
pub fn human_duration(seconds: i64) -> String {
    if seconds < 0 {
        return "<invalid>".into();
    }
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    let years = days / 365;
    let with = |big: i64, big_unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    };
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        with(minutes, "m", seconds % 60, "s")
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        with(hours, "h", minutes % 60, "m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        with(days, "d", hours % 24, "h")
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if years < 8 {
        with(years, "y", days % 365, "d")
    } else {
        format!("{years}y")
    }
}

fn age_of(timestamp: &str) -> String {
    match timestamp.parse::<jiff::Timestamp>() {
        Ok(then) => human_duration(jiff::Timestamp::now().as_second() - then.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

fn age(object: &Value) -> String {
    age_of(text(object, "/metadata/creationTimestamp"))
}

fn statuses<'a>(object: &'a Value, list: &str) -> Vec<&'a Value> {
    object
        .pointer(&format!("/status/{list}"))
        .and_then(Value::as_array)
        .map(|items| items.iter().collect())
        .unwrap_or_default()
}

/// The STATUS column of `kubectl get pods` (printPod in pkg/printers/internalversion).
pub fn pod_status(pod: &Value) -> String {
    let mut reason = text(pod, "/status/reason").to_string();
    if reason.is_empty() {
        reason = text(pod, "/status/phase").to_string();
    }
    let init = statuses(pod, "initContainerStatuses");
    let init_total = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let mut initializing = false;
    for (index, status) in init.iter().enumerate() {
        if status.pointer("/state/terminated/exitCode").and_then(Value::as_i64) == Some(0) {
            continue;
        }
        initializing = true;
        let terminated_reason = text(status, "/state/terminated/reason");
        let waiting_reason = text(status, "/state/waiting/reason");
        reason = if status.pointer("/state/terminated").is_some() {
            if terminated_reason.is_empty() {
                format!(
                    "Init:ExitCode:{}",
                    status
                        .pointer("/state/terminated/exitCode")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                )
            } else {
                format!("Init:{terminated_reason}")
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{index}/{init_total}")
        };
        break;
    }
    if !initializing {
        let mut has_running = false;
        for status in statuses(pod, "containerStatuses").iter().rev() {
            let waiting_reason = text(status, "/state/waiting/reason");
            let terminated_reason = text(status, "/state/terminated/reason");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if !terminated_reason.is_empty() {
                reason = terminated_reason.to_string();
            } else if status.pointer("/state/terminated").is_some() {
                reason = format!(
                    "ExitCode:{}",
                    status
                        .pointer("/state/terminated/exitCode")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                );
            } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                && status.pointer("/state/running").is_some()
            {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }
    if pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|stamp| !stamp.is_null())
    {
        reason = "Terminating".into();
    }
    reason
}

fn pod_restarts(pod: &Value) -> String {
    let mut restarts = 0;
    let mut last_restart: Option<String> = None;
    for status in statuses(pod, "containerStatuses") {
        restarts += status.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
        let finished = text(status, "/lastState/terminated/finishedAt");
        if !finished.is_empty() && last_restart.as_deref().is_none_or(|latest| finished > latest) {
            last_restart = Some(finished.to_string());
        }
    }
    match last_restart {
        Some(finished) if restarts > 0 => format!("{restarts} ({} ago)", age_of(&finished)),
        _ => restarts.to_string(),
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|item| item.as_str().map(str::to_string))
        .collect()
}

fn access_modes(value: Option<&Value>) -> String {
    strings(value)
        .iter()
        .map(|mode| match mode.as_str() {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn cells(kind: &str, object: &Value) -> Vec<Value> {
    let name = text(object, "/metadata/name").to_string();
    let row: Vec<String> = match kind {
        "Pod" => {
            let containers = object
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses(object, "containerStatuses")
                .iter()
                .filter(|status| status.get("ready").and_then(Value::as_bool) == Some(true))
                .count();
            vec![
                name,
                format!("{ready}/{containers}"),
                pod_status(object),
                pod_restarts(object),
                age(object),
                or_none(text(object, "/status/podIP")),
                or_none(text(object, "/spec/nodeName")),
                or_none(text(object, "/status/nominatedNodeName")),
                "<none>".into(),
            ]
        }
        "StatefulSet" => {
            let template = object
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let join = |field: &str| {
                template
                    .iter()
                    .map(|container| text(container, field).to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            vec![
                name,
                format!(
                    "{}/{}",
                    object
                        .pointer("/status/readyReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0),
                    object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
                ),
                age(object),
                join("/name"),
                join("/image"),
            ]
        }
        "PersistentVolumeClaim" => vec![
            name,
            text(object, "/status/phase").to_string(),
            text(object, "/spec/volumeName").to_string(),
            text(object, "/status/capacity/storage").to_string(),
            access_modes(object.pointer("/status/accessModes")),
            text(object, "/spec/storageClassName").to_string(),
            "<unset>".into(),
            age(object),
            text(object, "/spec/volumeMode").to_string(),
        ],
        "PersistentVolume" => {
            let claim = if text(object, "/spec/claimRef/name").is_empty() {
                String::new()
            } else {
                format!(
                    "{}/{}",
                    text(object, "/spec/claimRef/namespace"),
                    text(object, "/spec/claimRef/name")
                )
            };
            vec![
                name,
                text(object, "/spec/capacity/storage").to_string(),
                access_modes(object.pointer("/spec/accessModes")),
                text(object, "/spec/persistentVolumeReclaimPolicy").to_string(),
                text(object, "/status/phase").to_string(),
                claim,
                text(object, "/spec/storageClassName").to_string(),
                "<unset>".into(),
                text(object, "/status/reason").to_string(),
                age(object),
                text(object, "/spec/volumeMode").to_string(),
            ]
        }
        "Service" => {
            let ports = object
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|port| {
                    format!(
                        "{}/{}",
                        port.get("port").and_then(Value::as_i64).unwrap_or(0),
                        port.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                    )
                })
                .collect::<Vec<_>>()
                .join(",");
            let selector = crate::selectors::selector_string(object.pointer("/spec/selector"));
            vec![
                name,
                text(object, "/spec/type").to_string(),
                text(object, "/spec/clusterIP").to_string(),
                "<none>".into(),
                or_none(&ports),
                age(object),
                or_none(&selector),
            ]
        }
        "Endpoints" => {
            let mut addresses = Vec::new();
            for subset in object.get("subsets").and_then(Value::as_array).into_iter().flatten() {
                let ports: Vec<i64> = subset
                    .get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|port| port.get("port").and_then(Value::as_i64))
                    .collect();
                for address in subset.get("addresses").and_then(Value::as_array).into_iter().flatten() {
                    for port in &ports {
                        addresses.push(format!("{}:{port}", text(address, "/ip")));
                    }
                }
            }
            vec![name, or_none(&addresses.join(",")), age(object)]
        }
        "Namespace" => vec![name, text(object, "/status/phase").to_string(), age(object)],
        "Secret" => vec![
            name,
            text(object, "/type").to_string(),
            object
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |data| data.len())
                .to_string(),
            age(object),
        ],
        "ConfigMap" => vec![
            name,
            object
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |data| data.len())
                .to_string(),
            age(object),
        ],
        "Node" => vec![
            name,
            node_status(object),
            node_roles(object),
            age(object),
            text(object, "/status/nodeInfo/kubeletVersion").to_string(),
            or_none(&node_address(object, "InternalIP")),
            or_none(&node_address(object, "ExternalIP")),
            text(object, "/status/nodeInfo/osImage").to_string(),
            text(object, "/status/nodeInfo/kernelVersion").to_string(),
            text(object, "/status/nodeInfo/containerRuntimeVersion").to_string(),
        ],
        "ControllerRevision" => {
            let controller = object
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|owners| owners.iter().find(|owner| owner["controller"] == true))
                .map(|owner| {
                    let group = text(owner, "/apiVersion")
                        .split_once('/')
                        .map_or("", |(group, _)| group);
                    let kind = text(owner, "/kind").to_lowercase();
                    let resource = if group.is_empty() {
                        kind
                    } else {
                        format!("{kind}.{group}")
                    };
                    format!("{resource}/{}", text(owner, "/name"))
                });
            vec![
                name,
                or_none(controller.as_deref().unwrap_or_default()),
                object
                    .get("revision")
                    .and_then(Value::as_i64)
                    .unwrap_or_default()
                    .to_string(),
                age(object),
            ]
        }
        "StorageClass" => {
            let default = text(
                object,
                "/metadata/annotations/storageclass.kubernetes.io~1is-default-class",
            ) == "true";
            vec![
                if default { format!("{name} (default)") } else { name },
                text(object, "/provisioner").to_string(),
                text(object, "/reclaimPolicy").to_string(),
                text(object, "/volumeBindingMode").to_string(),
                object
                    .get("allowVolumeExpansion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
                age(object),
            ]
        }
        "Event" => vec![
            age_of(text(object, "/lastTimestamp")),
            text(object, "/type").to_string(),
            text(object, "/reason").to_string(),
            format!(
                "{}/{}",
                text(object, "/involvedObject/kind").to_lowercase(),
                text(object, "/involvedObject/name")
            ),
            text(object, "/message").to_string(),
        ],
        _ => vec![name, age(object)],
    };
    row.into_iter().map(Value::String).collect()
}

fn row_object(object: &Value, include: &str) -> Option<Value> {
    match include {
        "None" => None,
        "Object" => Some(object.clone()),
        _ => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
        })),
    }
}

/// A `meta.k8s.io/v1` Table of `objects`; `include` is the includeObject parameter (None|Metadata|Object).
pub fn render(info: &ResourceInfo, objects: &[Value], resource_version: Option<u64>, include: &str) -> Value {
    let column_definitions: Vec<Value> = columns(info.kind)
        .into_iter()
        .map(|(name, type_, priority)| {
            let format = if name == "Name" { "name" } else { "" };
            json!({ "name": name, "type": type_, "format": format, "description": "", "priority": priority })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut row = json!({ "cells": cells(info.kind, object) });
            if let Some(included) = row_object(object, include) {
                row["object"] = included;
            }
            row
        })
        .collect();
    let mut metadata = json!({});
    if let Some(version) = resource_version {
        metadata["resourceVersion"] = json!(version.to_string());
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

/// `Ready`, `NotReady` or `Unknown` from the Ready condition, `,SchedulingDisabled` when cordoned (as kubectl).
fn node_status(node: &Value) -> String {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["status"].as_str());
    let mut status = match ready {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    }
    .to_string();
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// The node's address of this type ("" when it has none).
fn node_address(node: &Value, type_: &str) -> String {
    node.pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|address| text(address, "/type") == type_)
        .map(|address| text(address, "/address").to_string())
        .unwrap_or_default()
}

/// The `node-role.kubernetes.io/<role>` labels, or `<none>`.
fn node_roles(node: &Value) -> String {
    let roles: Vec<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(key, _)| key.strip_prefix("node-role.kubernetes.io/"))
        .filter(|role| !role.is_empty())
        .collect();
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_print_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 120), "3h2m");
        assert_eq!(human_duration(20 * 3600), "20h");
        assert_eq!(human_duration(3 * 86400), "3d");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(100 * 86400), "100d");
    }

    #[test]
    fn pod_status_follows_the_printer() {
        let crash = json!({ "status": { "phase": "Running", "containerStatuses": [{ "name": "mysql", "ready": false, "state": { "waiting": { "reason": "CrashLoopBackOff" } } }] } });
        assert_eq!(pod_status(&crash), "CrashLoopBackOff");
        let init = json!({ "spec": { "initContainers": [{ "name": "init" }] }, "status": { "phase": "Pending", "initContainerStatuses": [{ "name": "init", "state": { "running": {} } }] } });
        assert_eq!(pod_status(&init), "Init:0/1");
        let running = json!({ "status": { "phase": "Running", "containerStatuses": [{ "ready": true, "state": { "running": {} } }] } });
        assert_eq!(pod_status(&running), "Running");
        let deleting =
            json!({ "metadata": { "deletionTimestamp": "2025-01-01T00:00:00Z" }, "status": { "phase": "Running" } });
        assert_eq!(pod_status(&deleting), "Terminating");
    }

    #[test]
    fn accept_headers_asking_for_tables() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
        assert!(!wants_table(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        ));
    }
}
