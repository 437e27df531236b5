//! What the health report shows of the cluster: pods, claims, Services with the pods they route to, the
//! StatefulSet. Reading is one list per kind; turning objects into rows is pure.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Endpoints, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::Cluster;
use super::error::ClusterError;
use super::preflight::default_storage_class;

/// StatefulSet whose replicas and annotations the report shows.
const STATEFULSET: &str = "mysql";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Sorted by name.
    pub pods: Vec<PodSnapshot>,
    pub pvcs: Vec<PvcSnapshot>,
    pub services: Vec<ServiceSnapshot>,
    /// The `mysql` StatefulSet, when it exists.
    pub statefulset: Option<StatefulSetSnapshot>,
    /// The cluster's StorageClasses (cluster-scoped), sorted by name.
    pub storage_classes: Vec<StorageClassSnapshot>,
    /// NetworkPolicies in the namespace; `None` when the cluster does not serve the API.
    pub network_policies: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSnapshot {
    pub name: String,
    /// `Pending`, `Running`, ...; `Terminating` while being deleted, as kubectl shows it.
    pub phase: String,
    pub ready: bool,
    /// Restarts summed over the containers.
    pub restarts: u32,
    pub node: Option<String>,
    pub ip: Option<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvcSnapshot {
    pub name: String,
    pub phase: String,
    /// e.g. `1Gi`; absent until bound.
    pub capacity: Option<String>,
    pub storage_class: Option<String>,
    /// `ReadWriteOnce`, ...
    pub access_modes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSnapshot {
    pub name: String,
    pub selector: BTreeMap<String, String>,
    /// Pods the Service routes to (ready addresses), sorted.
    pub endpoints: Vec<String>,
    /// Pods selected but not ready, sorted.
    pub not_ready: Vec<String>,
    /// `clusterIP: None`: per-pod DNS names, no load balancing.
    pub headless: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatefulSetSnapshot {
    pub name: String,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub annotations: BTreeMap<String, String>,
    /// `spec.serviceName`: the headless Service that gives the pods their DNS names.
    pub service_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageClassSnapshot {
    pub name: String,
    /// The cluster's default class (the one claims without a class get).
    pub default: bool,
    /// `allowVolumeExpansion`: claims of this class can grow.
    pub allows_expansion: bool,
}

/// Pure: a pod's report row.
pub fn pod_snapshot(pod: &Pod) -> PodSnapshot {
    let status = pod.status.as_ref();
    let phase = if pod.metadata.deletion_timestamp.is_some() {
        "Terminating".to_string()
    } else {
        status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Unknown".to_string())
    };
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let restarts = status
        .and_then(|s| s.container_statuses.as_ref())
        .map(|c| c.iter().map(|c| u32::try_from(c.restart_count).unwrap_or(0)).sum())
        .unwrap_or(0);
    PodSnapshot {
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase,
        ready,
        restarts,
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        ip: status.and_then(|s| s.pod_ip.clone()),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
    }
}

/// Pure: a claim's report row.
pub fn pvc_snapshot(pvc: &PersistentVolumeClaim) -> PvcSnapshot {
    let status = pvc.status.as_ref();
    PvcSnapshot {
        name: pvc.metadata.name.clone().unwrap_or_default(),
        phase: status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".to_string()),
        capacity: status
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage"))
            .map(|q| q.0.clone()),
        storage_class: pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone()),
        access_modes: pvc
            .spec
            .as_ref()
            .and_then(|s| s.access_modes.clone())
            .unwrap_or_default(),
    }
}

/// Pure: a Service's row, with the pods its Endpoints (same name) list. Addresses without a pod reference show
/// their IP.
pub fn service_snapshot(service: &Service, endpoints: Option<&Endpoints>) -> ServiceSnapshot {
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for subset in endpoints.and_then(|e| e.subsets.as_ref()).into_iter().flatten() {
        let name = |a: &k8s_openapi::api::core::v1::EndpointAddress| {
            a.target_ref
                .as_ref()
                .and_then(|t| t.name.clone())
                .unwrap_or_else(|| a.ip.clone())
        };
        ready.extend(subset.addresses.iter().flatten().map(name));
        not_ready.extend(subset.not_ready_addresses.iter().flatten().map(name));
    }
    for list in [&mut ready, &mut not_ready] {
        list.sort();
        list.dedup();
    }
    ServiceSnapshot {
        name: service.metadata.name.clone().unwrap_or_default(),
        selector: service
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default(),
        endpoints: ready,
        not_ready,
        headless: service
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.as_deref())
            .is_some_and(|ip| ip == "None"),
    }
}

/// Pure: the StatefulSet's row.
pub fn statefulset_snapshot(set: &StatefulSet) -> StatefulSetSnapshot {
    StatefulSetSnapshot {
        name: set.metadata.name.clone().unwrap_or_default(),
        replicas: set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready_replicas: set.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
        annotations: set.metadata.annotations.clone().unwrap_or_default(),
        service_name: set
            .spec
            .as_ref()
            .and_then(|s| s.service_name.clone())
            .filter(|n| !n.is_empty()),
    }
}

/// Pure: the StorageClasses' rows, the default marked as the API server picks it.
pub fn storage_class_snapshots(classes: &[StorageClass]) -> Vec<StorageClassSnapshot> {
    let default = default_storage_class(classes);
    let mut rows: Vec<StorageClassSnapshot> = classes
        .iter()
        .map(|class| {
            let name = class.metadata.name.clone().unwrap_or_default();
            StorageClassSnapshot {
                default: default.as_deref() == Some(name.as_str()),
                allows_expansion: class.allow_volume_expansion == Some(true),
                name,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

impl Cluster {
    /// Everything the report shows of `namespace`; an absent namespace gives an empty snapshot.
    pub async fn snapshot(&self, namespace: &str) -> Result<Snapshot, ClusterError> {
        let all = ListParams::default();
        let client = || self.client.clone();
        let (pods, pvcs, services, endpoints, set, classes, policies) = futures::try_join!(
            async {
                Api::<Pod>::namespaced(client(), namespace)
                    .list(&all)
                    .await
                    .map_err(|e| self.fail("listing pods", e))
            },
            async {
                Api::<PersistentVolumeClaim>::namespaced(client(), namespace)
                    .list(&all)
                    .await
                    .map_err(|e| self.fail("listing PersistentVolumeClaims", e))
            },
            async {
                Api::<Service>::namespaced(client(), namespace)
                    .list(&all)
                    .await
                    .map_err(|e| self.fail("listing Services", e))
            },
            async {
                Api::<Endpoints>::namespaced(client(), namespace)
                    .list(&all)
                    .await
                    .map_err(|e| self.fail("listing Endpoints", e))
            },
            async {
                Api::<StatefulSet>::namespaced(client(), namespace)
                    .get_opt(STATEFULSET)
                    .await
                    .map_err(|e| self.fail(format!("reading StatefulSet {STATEFULSET}"), e))
            },
            async {
                Api::<StorageClass>::all(client())
                    .list(&all)
                    .await
                    .map_err(|e| self.fail("listing StorageClasses", e))
            },
            async {
                // A cluster that does not serve the NetworkPolicy API has none: not an error for the report.
                match Api::<NetworkPolicy>::namespaced(client(), namespace).list(&all).await {
                    Ok(list) => Ok(Some(list.items.iter().map(|p| p.name_any()).collect::<Vec<_>>())),
                    Err(kube::Error::Api(status)) if status.is_not_found() => Ok(None),
                    Err(e) => Err(self.fail("listing NetworkPolicies", e)),
                }
            },
        )?;

        let mut snapshot = Snapshot {
            pods: pods.items.iter().map(pod_snapshot).collect(),
            pvcs: pvcs.items.iter().map(pvc_snapshot).collect(),
            services: services
                .items
                .iter()
                .map(|s| {
                    let matching = endpoints.items.iter().find(|e| e.metadata.name == s.metadata.name);
                    service_snapshot(s, matching)
                })
                .collect(),
            statefulset: set.as_ref().map(statefulset_snapshot),
            storage_classes: storage_class_snapshots(&classes.items),
            network_policies: policies,
        };
        snapshot.pods.sort_by(|a, b| a.name.cmp(&b.name));
        snapshot.pvcs.sort_by(|a, b| a.name.cmp(&b.name));
        snapshot.services.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).expect("valid object JSON")
    }

    #[test]
    fn pod_row_sums_restarts_and_reads_ready_node_and_ip() {
        let pod: Pod = from(json!({
            "metadata": {"name": "mysql-1", "labels": {"app": "mysql", "lab.dev/role": "replica"}},
            "spec": {"nodeName": "kind-control-plane", "containers": [{"name": "mysql"}]},
            "status": {
                "phase": "Running", "podIP": "10.244.0.9",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "mysql", "image": "mysql:8.4", "imageID": "", "ready": true, "restartCount": 2},
                    {"name": "sidecar", "image": "x", "imageID": "", "ready": true, "restartCount": 1}
                ]
            }
        }));
        let row = pod_snapshot(&pod);
        assert_eq!(
            row,
            PodSnapshot {
                name: "mysql-1".into(),
                phase: "Running".into(),
                ready: true,
                restarts: 3,
                node: Some("kind-control-plane".into()),
                ip: Some("10.244.0.9".into()),
                labels: [
                    ("app".to_string(), "mysql".to_string()),
                    ("lab.dev/role".to_string(), "replica".to_string())
                ]
                .into(),
            }
        );
        let deleting: Pod = from(
            json!({"metadata": {"name": "mysql-1", "deletionTimestamp": "2025-05-01T10:00:00Z"},
                                         "status": {"phase": "Running"}}),
        );
        assert_eq!(pod_snapshot(&deleting).phase, "Terminating");
        assert!(!pod_snapshot(&deleting).ready);
    }

    #[test]
    fn pvc_row_shows_capacity_once_bound() {
        let bound: PersistentVolumeClaim = from(json!({
            "metadata": {"name": "data-mysql-0"},
            "spec": {"storageClassName": "standard"},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}
        }));
        assert_eq!(
            pvc_snapshot(&bound),
            PvcSnapshot {
                name: "data-mysql-0".into(),
                phase: "Bound".into(),
                capacity: Some("1Gi".into()),
                storage_class: Some("standard".into()),
                access_modes: vec![],
            }
        );
        let pending: PersistentVolumeClaim = from(json!({"metadata": {"name": "data-mysql-1"}, "spec": {}}));
        assert_eq!(pvc_snapshot(&pending).phase, "Pending");
        assert_eq!(pvc_snapshot(&pending).capacity, None);
    }

    #[test]
    fn service_row_lists_the_pods_behind_it() {
        let service: Service = from(json!({
            "metadata": {"name": "mysql-replicas"},
            "spec": {"selector": {"app": "mysql", "lab.dev/role": "replica"}, "ports": [{"port": 3306}]}
        }));
        let endpoints: Endpoints = from(json!({
            "metadata": {"name": "mysql-replicas"},
            "subsets": [{
                "addresses": [
                    {"ip": "10.244.0.11", "targetRef": {"kind": "Pod", "name": "mysql-2"}},
                    {"ip": "10.244.0.9", "targetRef": {"kind": "Pod", "name": "mysql-1"}},
                    {"ip": "10.244.0.50"}
                ],
                "notReadyAddresses": [{"ip": "10.244.0.12", "targetRef": {"kind": "Pod", "name": "mysql-3"}}],
                "ports": [{"port": 3306}]
            }]
        }));
        let row = service_snapshot(&service, Some(&endpoints));
        assert_eq!(row.endpoints, ["10.244.0.50", "mysql-1", "mysql-2"]);
        assert_eq!(row.not_ready, ["mysql-3"]);
        assert_eq!(row.selector.get("lab.dev/role").map(String::as_str), Some("replica"));

        let empty = service_snapshot(&service, None);
        assert!(empty.endpoints.is_empty() && empty.not_ready.is_empty());
    }

    #[test]
    fn statefulset_row_carries_the_binlog_origin_annotation() {
        let set: StatefulSet = from(json!({
            "metadata": {"name": "mysql", "annotations": {"lab.dev/binlog-origin": "{\"file\":\"mysql-bin.000001\",\"position\":328}"}},
            "spec": {"replicas": 3, "serviceName": "mysql-headless", "selector": {}, "template": {}},
            "status": {"replicas": 3, "readyReplicas": 2}
        }));
        let row = statefulset_snapshot(&set);
        assert_eq!((row.replicas, row.ready_replicas), (3, 2));
        assert!(row.annotations["lab.dev/binlog-origin"].contains("mysql-bin.000001"));
    }
}
