//! The controllers: StatefulSet, scheduler, volume provisioner and claim protection, Endpoints, namespace
//! deletion, garbage collection. One task reacts to store changes (and fault switches) and reconciles everything;
//! every step is idempotent, so a pass that finds nothing to do changes nothing.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::task::JoinHandle;

use crate::control::{
    ControlPlane, DEFAULT_STORAGE_CLASS, DeleteOptions, PROVISIONER, PV_PROTECTION, PVC_PROTECTION, is_deleting,
    namespace_and_name, owned_by, remove_finalizer,
};
use crate::resources::{self, RESOURCES};
use crate::revisions;
use crate::scheduler;
use crate::selectors::LabelSelector;
use crate::store::{ObjectRef, metadata_mut, now_rfc3339};

/// A safety net: reconcile even without changes this often.
const RESYNC_INTERVAL: Duration = Duration::from_secs(5);

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
pub const REVISION_LABEL: &str = "controller-revision-hash";
const ENDPOINTS_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";

/// Starts the controllers on the current tokio runtime.
pub fn spawn(control: ControlPlane) -> JoinHandle<()> {
    tokio::spawn(run(control))
}

async fn run(control: ControlPlane) {
    let mut feed = control.store.subscribe();
    let mut fault_switches = control.faults.watch();
    let mut controllers = Controllers {
        control,
        reported: HashSet::new(),
    };
    controllers.reconcile();
    loop {
        let mut relevant = tokio::select! {
            received = feed.recv() => match received {
                Ok(change) => change.resource != "events",
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            switched = fault_switches.changed() => {
                if switched.is_err() {
                    return;
                }
                true
            }
            _ = tokio::time::sleep(RESYNC_INTERVAL) => true,
            // The node's not-Ready period ends: it must turn Ready then, not at the next resync.
            _ = node_ready(&controllers.control) => true,
        };
        // Coalesce a burst of changes into one pass.
        loop {
            match feed.try_recv() {
                Ok(change) => relevant |= change.resource != "events",
                Err(TryRecvError::Lagged(_)) => relevant = true,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
        if relevant {
            controllers.reconcile();
        }
    }
}

/// Completes when the node's not-Ready fault period is over (never while there is none).
async fn node_ready(control: &ControlPlane) {
    match control.faults.node_ready_at() {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

struct Controllers {
    control: ControlPlane,
    /// (uid, reason, message) of Events already recorded, so a condition that persists is reported once.
    reported: HashSet<(String, String, String)>,
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn uid_of(object: &Value) -> String {
    text(object, "/metadata/uid").to_string()
}

pub fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|condition| {
            condition.get("type").and_then(Value::as_str) == Some("Ready")
                && condition.get("status").and_then(Value::as_str) == Some("True")
        })
}

/// Claim names a pod mounts.
fn claims_of(pod: &Value) -> Vec<String> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|volume| {
            volume
                .pointer("/persistentVolumeClaim/claimName")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

/// The template's revision, as `controller-revision-hash` shows it: `<sts>-<10 chars>`.
pub fn revision_of(name: &str, template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in template.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let suffix: String = (0..10)
        .map(|_| {
            let index = (hash % ALPHABET.len() as u64) as usize;
            hash /= ALPHABET.len() as u64;
            char::from(ALPHABET[index])
        })
        .collect();
    format!("{name}-{suffix}")
}

fn ordinal_of(sts_name: &str, pod_name: &str) -> Option<usize> {
    let suffix = pod_name.strip_prefix(sts_name)?.strip_prefix('-')?;
    if suffix.is_empty() || (suffix.len() > 1 && suffix.starts_with('0')) {
        return None;
    }
    suffix.parse().ok()
}

impl Controllers {
    fn reconcile(&mut self) {
        self.nodes();
        self.storage_classes();
        self.namespaces();
        self.garbage_collect();
        for sts in self.control.store.list("statefulsets", None) {
            if !is_deleting(&sts) {
                self.statefulset(&sts);
            }
        }
        self.provision_volumes();
        self.release_claims();
        self.schedule();
        self.endpoints();
    }

    fn event_once(&mut self, object: &Value, type_: &str, reason: &str, message: &str) {
        let key = (uid_of(object), reason.to_string(), message.to_string());
        if self.reported.insert(key) {
            self.event(object, type_, reason, message);
        }
    }

    fn event(&self, object: &Value, type_: &str, reason: &str, message: &str) {
        let involved = ObjectRef::to(object);
        let namespace = if involved.namespace.is_empty() {
            "default".to_string()
        } else {
            involved.namespace.clone()
        };
        self.control
            .store
            .record_event(&namespace, &involved, type_, reason, message);
    }

    /// The default class exists unless the fault hides it.
    fn storage_classes(&mut self) {
        let store = &self.control.store;
        let present = store.get("storageclasses", "", DEFAULT_STORAGE_CLASS).is_some();
        let wanted = !self.control.faults.no_default_storage_class();
        if wanted && !present {
            let class = json!({
                "metadata": {
                    "name": DEFAULT_STORAGE_CLASS,
                    "annotations": { "storageclass.kubernetes.io/is-default-class": "true" },
                },
                "provisioner": PROVISIONER,
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "Immediate",
                "allowVolumeExpansion": false,
            });
            let _ = store.create("storageclasses", "", class);
        } else if !wanted && present {
            store.remove("storageclasses", "", DEFAULT_STORAGE_CLASS);
        }
    }

    /// Terminating namespaces: delete what is inside (pods gracefully), then the namespace itself.
    fn namespaces(&mut self) {
        for namespace in self.control.store.list("namespaces", None) {
            if !is_deleting(&namespace) {
                continue;
            }
            let name = text(&namespace, "/metadata/name").to_string();
            let mut remaining = 0;
            for info in RESOURCES.iter().filter(|info| info.namespaced) {
                for object in self.control.store.list(info.plural, Some(&name)) {
                    remaining += 1;
                    if is_deleting(&object) {
                        continue;
                    }
                    let (_, object_name) = namespace_and_name(&object);
                    if let Err(error) = self
                        .control
                        .delete(info, &name, &object_name, &DeleteOptions::default())
                    {
                        tracing::debug!(%error.message, "namespace cleanup could not delete an object");
                    }
                }
            }
            if remaining == 0 {
                self.control.forget_applied(&uid_of(&namespace));
                self.control.store.remove("namespaces", "", &name);
            }
        }
    }

    /// Objects whose every owner is gone are deleted (Background propagation).
    fn garbage_collect(&mut self) {
        let mut live_uids = HashSet::new();
        let mut dependents = Vec::new();
        for info in RESOURCES {
            for object in self.control.store.list(info.plural, None) {
                live_uids.insert(uid_of(&object));
                if object
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|owners| !owners.is_empty())
                {
                    dependents.push((info, object));
                }
            }
        }
        for (info, object) in dependents {
            if is_deleting(&object) {
                continue;
            }
            let owners = object
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let orphaned = owners
                .iter()
                .all(|owner| !live_uids.contains(owner.get("uid").and_then(Value::as_str).unwrap_or_default()));
            if orphaned {
                let (namespace, name) = namespace_and_name(&object);
                let _ = self.control.delete(info, &namespace, &name, &DeleteOptions::default());
            }
        }
    }

    fn statefulset(&mut self, sts: &Value) {
        let store = self.control.store.clone();
        let (namespace, name) = namespace_and_name(sts);
        let uid = uid_of(sts);
        let replicas = sts.pointer("/spec/replicas").and_then(Value::as_u64).unwrap_or(1) as usize;
        let ordered = text(sts, "/spec/podManagementPolicy") != "Parallel";
        let template = sts.pointer("/spec/template").cloned().unwrap_or(Value::Null);
        let revision = revision_of(&name, &revisions::normalized(&template));
        let selector = LabelSelector::from_object(sts.pointer("/spec/selector").unwrap_or(&Value::Null));
        self.sync_revision(sts, &revision);

        let mut pods: BTreeMap<usize, Value> = BTreeMap::new();
        for pod in store.list("pods", Some(&namespace)) {
            let pod_name = text(&pod, "/metadata/name").to_string();
            let Some(ordinal) = ordinal_of(&name, &pod_name) else {
                continue;
            };
            if owned_by(&pod, &uid) {
                pods.insert(ordinal, pod);
            } else if self.adopt(&pod, sts, &selector) {
                pods.insert(ordinal, store.get("pods", &namespace, &pod_name).unwrap_or(pod));
            }
        }

        // Pods that ran to completion are replaced, as the real controller does.
        for pod in pods.values() {
            if matches!(text(pod, "/status/phase"), "Failed" | "Succeeded") && !is_deleting(pod) {
                let pod_name = text(pod, "/metadata/name");
                self.event(
                    sts,
                    "Warning",
                    "RecreatingFailedPod",
                    &format!("StatefulSet {namespace}/{name} is recreating failed Pod {pod_name}"),
                );
                self.control.delete_pod(&namespace, pod_name, Some(0));
            }
        }

        for ordinal in 0..replicas {
            match pods.get(&ordinal) {
                None => {
                    self.create_pod(sts, ordinal, &revision);
                    if ordered {
                        break;
                    }
                }
                Some(pod) if ordered && (is_deleting(pod) || !is_ready(pod)) => break,
                Some(_) => {}
            }
        }

        let all_settled =
            (0..replicas).all(|ordinal| pods.get(&ordinal).is_some_and(|pod| is_ready(pod) && !is_deleting(pod)));
        let condemned: Vec<&Value> = pods.range(replicas..).map(|(_, pod)| pod).collect();
        if condemned.iter().any(|pod| is_deleting(pod)) && ordered {
            // Wait for the pod being removed before touching the next one.
        } else if let Some(highest) = condemned.last().filter(|_| all_settled || !ordered) {
            let pod_name = text(highest, "/metadata/name").to_string();
            if !is_deleting(highest) {
                self.control.delete_pod(&namespace, &pod_name, None);
                self.event(
                    sts,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("delete Pod {pod_name} in StatefulSet {name} successful"),
                );
            }
        } else if all_settled && condemned.is_empty() {
            // Rolling update: replace the highest pod still on an old revision, one at a time.
            let outdated = pods
                .values()
                .rev()
                .find(|pod| text(pod, &format!("/metadata/labels/{REVISION_LABEL}")) != revision);
            if let Some(pod) = outdated {
                let pod_name = text(pod, "/metadata/name").to_string();
                self.control.delete_pod(&namespace, &pod_name, None);
                self.event(
                    sts,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("delete Pod {pod_name} in StatefulSet {name} successful"),
                );
            }
        }

        self.statefulset_status(sts, &revision);
        self.prune_revisions(sts);
    }

    /// The StatefulSet's own ControllerRevisions.
    fn revisions_of(&self, sts: &Value) -> Vec<Value> {
        let (namespace, _) = namespace_and_name(sts);
        let uid = uid_of(sts);
        self.control
            .store
            .list("controllerrevisions", Some(&namespace))
            .into_iter()
            .filter(|revision| owned_by(revision, &uid))
            .collect()
    }

    /// The template's ControllerRevision exists and is the newest.
    fn sync_revision(&self, sts: &Value, name: &str) {
        let (namespace, _) = namespace_and_name(sts);
        let known: Vec<revisions::Known> = self.revisions_of(sts).iter().map(revisions::known).collect();
        match revisions::update_step(&known, name) {
            revisions::Step::Keep => {}
            revisions::Step::Create(number) => {
                let info = resources::by_plural("controllerrevisions").expect("controllerrevisions are served");
                if let Err(error) = self
                    .control
                    .create(info, &namespace, revisions::object(sts, name, number), false)
                {
                    tracing::debug!(%error.message, "the StatefulSet's revision could not be created");
                }
            }
            revisions::Step::Renumber(number) => {
                self.control
                    .store
                    .update("controllerrevisions", &namespace, name, |revision| {
                        revision["revision"] = json!(number);
                    });
            }
        }
    }

    /// Revisions beyond `revisionHistoryLimit` that neither the status nor any pod uses are deleted.
    fn prune_revisions(&self, sts: &Value) {
        let (namespace, name) = namespace_and_name(sts);
        let Some(sts) = self.control.store.get("statefulsets", &namespace, &name) else {
            return;
        };
        let uid = uid_of(&sts);
        let mut live: HashSet<String> = ["/status/currentRevision", "/status/updateRevision"]
            .iter()
            .map(|pointer| text(&sts, pointer).to_string())
            .collect();
        for pod in self.control.store.list("pods", Some(&namespace)) {
            if owned_by(&pod, &uid) {
                live.insert(text(&pod, &format!("/metadata/labels/{REVISION_LABEL}")).to_string());
            }
        }
        let known: Vec<revisions::Known> = self.revisions_of(&sts).iter().map(revisions::known).collect();
        for stale in revisions::to_prune(&known, &live, revisions::history_limit(&sts)) {
            self.control.store.remove("controllerrevisions", &namespace, &stale);
        }
    }

    /// Takes over an orphaned pod with the StatefulSet's name pattern and labels (as after an orphaning delete).
    fn adopt(&self, pod: &Value, sts: &Value, selector: &LabelSelector) -> bool {
        let has_controller = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|owner| owner.get("controller").and_then(Value::as_bool) == Some(true));
        if has_controller || selector.is_empty() || !selector.matches(pod) || is_deleting(pod) {
            return false;
        }
        let (namespace, name) = namespace_and_name(pod);
        let reference = owner_reference(sts);
        self.control
            .store
            .update("pods", &namespace, &name, |pod| {
                let references = metadata_mut(pod).entry("ownerReferences").or_insert_with(|| json!([]));
                if let Some(references) = references.as_array_mut() {
                    references.push(reference);
                }
            })
            .is_some()
    }

    fn create_pod(&mut self, sts: &Value, ordinal: usize, revision: &str) {
        let (namespace, name) = namespace_and_name(sts);
        let pod_name = format!("{name}-{ordinal}");
        let pods = resources::by_plural("pods").expect("pods are served");
        let claims = resources::by_plural("persistentvolumeclaims").expect("claims are served");
        let templates = sts
            .pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for template in &templates {
            let claim_name = format!("{}-{pod_name}", text(template, "/metadata/name"));
            if self
                .control
                .store
                .get("persistentvolumeclaims", &namespace, &claim_name)
                .is_some()
            {
                continue;
            }
            let claim = claim_from_template(sts, template, &claim_name);
            match self.control.create(claims, &namespace, claim, false) {
                Ok(_) => self.event(
                    sts,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("create Claim {claim_name} Pod {pod_name} in StatefulSet {name} success"),
                ),
                Err(error) => {
                    self.event_once(
                        sts,
                        "Warning",
                        "FailedCreate",
                        &format!(
                            "create Claim {claim_name} for Pod {pod_name} in StatefulSet {name} failed error: {}",
                            error.message
                        ),
                    );
                    return;
                }
            }
        }
        let pod = pod_from_template(sts, ordinal, revision);
        match self.control.create(pods, &namespace, pod, false) {
            Ok(_) => self.event(
                sts,
                "Normal",
                "SuccessfulCreate",
                &format!("create Pod {pod_name} in StatefulSet {name} successful"),
            ),
            Err(error) if error.reason == "AlreadyExists" => {}
            Err(error) => self.event_once(
                sts,
                "Warning",
                "FailedCreate",
                &format!(
                    "create Pod {pod_name} in StatefulSet {name} failed error: {}",
                    error.message
                ),
            ),
        }
    }

    fn statefulset_status(&self, sts: &Value, revision: &str) {
        let (namespace, name) = namespace_and_name(sts);
        let uid = uid_of(sts);
        let pods: Vec<Value> = self
            .control
            .store
            .list("pods", Some(&namespace))
            .into_iter()
            .filter(|pod| owned_by(pod, &uid))
            .collect();
        let live: Vec<&Value> = pods.iter().filter(|pod| !is_deleting(pod)).collect();
        let ready = live.iter().filter(|pod| is_ready(pod)).count();
        let updated = live
            .iter()
            .filter(|pod| text(pod, &format!("/metadata/labels/{REVISION_LABEL}")) == revision)
            .count();
        let replicas = sts.pointer("/spec/replicas").and_then(Value::as_u64).unwrap_or(1) as usize;
        let previous_current = text(sts, "/status/currentRevision").to_string();
        let current_revision = if updated == live.len() && live.len() >= replicas || previous_current.is_empty() {
            revision.to_string()
        } else {
            previous_current
        };
        let current = live
            .iter()
            .filter(|pod| text(pod, &format!("/metadata/labels/{REVISION_LABEL}")) == current_revision)
            .count();
        let generation = sts.pointer("/metadata/generation").cloned().unwrap_or(json!(1));
        self.control.store.update("statefulsets", &namespace, &name, |sts| {
            let mut status = json!({
                "observedGeneration": generation,
                "replicas": pods.len(),
                "readyReplicas": ready,
                "currentReplicas": current,
                "updatedReplicas": updated,
                "availableReplicas": ready,
                "currentRevision": current_revision,
                "updateRevision": revision,
                "collisionCount": 0,
            });
            // The real API omits zero counts.
            if let Some(fields) = status.as_object_mut() {
                fields
                    .retain(|key, value| key == "replicas" || key == "availableReplicas" || value.as_u64() != Some(0));
            }
            sts["status"] = status;
        });
    }

    fn provision_volumes(&mut self) {
        for claim in self.control.store.list("persistentvolumeclaims", None) {
            if is_deleting(&claim) || !text(&claim, "/spec/volumeName").is_empty() {
                continue;
            }
            let class = text(&claim, "/spec/storageClassName").to_string();
            if class.is_empty() {
                self.event_once(
                    &claim,
                    "Normal",
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set",
                );
                continue;
            }
            let Some(storage_class) = self.control.store.get("storageclasses", "", &class) else {
                self.event_once(
                    &claim,
                    "Warning",
                    "ProvisioningFailed",
                    &format!("storageclass.storage.k8s.io \"{class}\" not found"),
                );
                continue;
            };
            if self.control.faults.pvc_never_binds() {
                self.event_once(
                    &claim,
                    "Warning",
                    "ProvisioningFailed",
                    &format!("failed to provision volume with StorageClass \"{class}\": timed out waiting for the volume to be created"),
                );
                continue;
            }
            self.provision(&claim, &storage_class);
        }
    }

    fn provision(&mut self, claim: &Value, storage_class: &Value) {
        let (namespace, name) = namespace_and_name(claim);
        let uid = uid_of(claim);
        let volume_name = format!("pvc-{uid}");
        let directory = self
            .control
            .volumes_dir
            .join(format!("{volume_name}_{namespace}_{name}"));
        if let Err(error) = std::fs::create_dir_all(&directory) {
            self.event_once(
                claim,
                "Warning",
                "ProvisioningFailed",
                &format!(
                    "failed to provision volume with StorageClass \"{}\": cannot create {}: {error}",
                    text(storage_class, "/metadata/name"),
                    directory.display()
                ),
            );
            return;
        }
        let size = claim
            .pointer("/spec/resources/requests/storage")
            .cloned()
            .unwrap_or(json!("1Gi"));
        let access_modes = claim
            .pointer("/spec/accessModes")
            .cloned()
            .unwrap_or(json!(["ReadWriteOnce"]));
        let volume = json!({
            "metadata": {
                "name": volume_name,
                "annotations": { "pv.kubernetes.io/provisioned-by": PROVISIONER },
                "finalizers": [PV_PROTECTION],
            },
            "spec": {
                "capacity": { "storage": size },
                "accessModes": access_modes,
                "hostPath": { "path": directory.display().to_string(), "type": "DirectoryOrCreate" },
                "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy").cloned().unwrap_or(json!("Delete")),
                "storageClassName": text(storage_class, "/metadata/name"),
                "volumeMode": claim.pointer("/spec/volumeMode").cloned().unwrap_or(json!("Filesystem")),
                "claimRef": {
                    "kind": "PersistentVolumeClaim",
                    "apiVersion": "v1",
                    "namespace": namespace,
                    "name": name,
                    "uid": uid,
                    "resourceVersion": text(claim, "/metadata/resourceVersion"),
                },
            },
            "status": { "phase": "Bound" },
        });
        if self.control.store.get("persistentvolumes", "", &volume_name).is_none()
            && let Err(error) = self.control.store.create("persistentvolumes", "", volume)
        {
            tracing::warn!(%error, "could not store a provisioned volume");
            return;
        }
        let bound = self
            .control
            .store
            .update("persistentvolumeclaims", &namespace, &name, |claim| {
                claim["spec"]["volumeName"] = json!(volume_name);
                let annotations = metadata_mut(claim).entry("annotations").or_insert_with(|| json!({}));
                annotations["pv.kubernetes.io/bind-completed"] = json!("yes");
                annotations["pv.kubernetes.io/bound-by-controller"] = json!("yes");
                annotations["volume.beta.kubernetes.io/storage-provisioner"] = json!(PROVISIONER);
                annotations["volume.kubernetes.io/storage-provisioner"] = json!(PROVISIONER);
                claim["status"] =
                    json!({ "phase": "Bound", "accessModes": access_modes, "capacity": { "storage": size } });
            });
        if let Some(bound) = bound {
            self.event(
                &bound,
                "Normal",
                "ProvisioningSucceeded",
                &format!("Successfully provisioned volume {volume_name} using {PROVISIONER}"),
            );
        }
    }

    /// Claims being deleted go once no pod uses them; volumes of gone claims are deleted with their directory.
    fn release_claims(&mut self) {
        let store = self.control.store.clone();
        let pods = store.list("pods", None);
        for claim in store.list("persistentvolumeclaims", None) {
            if !is_deleting(&claim) {
                continue;
            }
            let (namespace, name) = namespace_and_name(&claim);
            let in_use = pods
                .iter()
                .any(|pod| text(pod, "/metadata/namespace") == namespace && claims_of(pod).contains(&name));
            if in_use {
                continue;
            }
            store.update("persistentvolumeclaims", &namespace, &name, |claim| {
                remove_finalizer(claim, PVC_PROTECTION)
            });
            if store
                .get("persistentvolumeclaims", &namespace, &name)
                .is_some_and(|claim| !crate::control::has_finalizers(&claim))
            {
                self.control.forget_applied(&uid_of(&claim));
                store.remove("persistentvolumeclaims", &namespace, &name);
            }
        }
        for volume in store.list("persistentvolumes", None) {
            let claim_namespace = text(&volume, "/spec/claimRef/namespace");
            let claim_name = text(&volume, "/spec/claimRef/name");
            let claim_uid = text(&volume, "/spec/claimRef/uid");
            let claim_alive = store
                .get("persistentvolumeclaims", claim_namespace, claim_name)
                .is_some_and(|claim| claim_uid.is_empty() || uid_of(&claim) == claim_uid);
            let reclaim = text(&volume, "/spec/persistentVolumeReclaimPolicy");
            let name = text(&volume, "/metadata/name").to_string();
            if claim_alive {
                continue;
            }
            if reclaim == "Delete" || is_deleting(&volume) {
                let path = text(&volume, "/spec/hostPath/path");
                if !path.is_empty()
                    && std::path::Path::new(path).starts_with(&self.control.volumes_dir)
                    && let Err(error) = std::fs::remove_dir_all(path)
                    && error.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(%error, path, "could not remove a deleted volume's directory");
                }
                store.remove("persistentvolumes", "", &name);
            } else if text(&volume, "/status/phase") != "Released" {
                store.update("persistentvolumes", "", &name, |volume| {
                    volume["status"]["phase"] = json!("Released")
                });
            }
        }
    }

    /// The kubelet's and the node lifecycle controller's view of the node: Ready or not (with the not-ready
    /// taint), its taints and memory, as the faults shape them; its heartbeats (the Lease, the status report).
    fn nodes(&mut self) {
        let shape = self.control.faults.node_shape();
        let store = &self.control.store;
        for node in store.list("nodes", None) {
            let mut shaped = node.clone();
            if scheduler::set_shape(&mut shaped, &shape) {
                let name = text(&node, "/metadata/name").to_string();
                store.update("nodes", "", &name, |node| {
                    scheduler::set_shape(node, &shape);
                });
            }
            self.renew_lease(&node);
            let now = jiff::Timestamp::now();
            if scheduler::report_status(&mut node.clone(), now) {
                let name = text(&node, "/metadata/name").to_string();
                store.update("nodes", "", &name, |node| {
                    scheduler::report_status(node, now);
                });
            }
        }
    }

    /// The kubelet's heartbeat: the node's Lease, renewed every ten seconds.
    fn renew_lease(&self, node: &Value) {
        let store = &self.control.store;
        let name = text(node, "/metadata/name");
        let now = jiff::Timestamp::now();
        let renew_time = now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        match store.get("leases", "kube-node-lease", name) {
            None => {
                let _ = store.create("leases", "kube-node-lease", scheduler::node_lease(node, &renew_time));
            }
            Some(lease) => {
                let due = text(&lease, "/spec/renewTime")
                    .parse::<jiff::Timestamp>()
                    .map_or(true, |renewed| {
                        now.duration_since(renewed).unsigned_abs() >= scheduler::LEASE_RENEW_INTERVAL
                    });
                if due {
                    store.update("leases", "kube-node-lease", name, |lease| {
                        lease["spec"]["renewTime"] = json!(renew_time);
                    });
                }
            }
        }
    }

    /// Binds pods to a node that takes them once every claim they use is bound; otherwise leaves them Pending
    /// with the scheduler's reason (condition PodScheduled=False, event FailedScheduling).
    fn schedule(&mut self) {
        let store = self.control.store.clone();
        let nodes = store.list("nodes", None);
        let all_pods = store.list("pods", None);
        for pod in store.list("pods", None) {
            if is_deleting(&pod) || !text(&pod, "/spec/nodeName").is_empty() {
                continue;
            }
            let (namespace, name) = namespace_and_name(&pod);
            let mut problem = None;
            for claim_name in claims_of(&pod) {
                match store.get("persistentvolumeclaims", &namespace, &claim_name) {
                    None => {
                        problem = Some(format!("persistentvolumeclaim \"{claim_name}\" not found"));
                        break;
                    }
                    Some(claim) if is_deleting(&claim) => {
                        problem = Some(format!("persistentvolumeclaim \"{claim_name}\" is being deleted"));
                        break;
                    }
                    Some(claim)
                        if text(&claim, "/status/phase") != "Bound" || text(&claim, "/spec/volumeName").is_empty() =>
                    {
                        problem = Some("pod has unbound immediate PersistentVolumeClaims".to_string());
                    }
                    Some(_) => {}
                }
            }
            let total = nodes.len();
            let placement = match problem {
                // The volume binding PreFilter refuses the pod on every node at once.
                Some(problem) => Err(format!(
                    "0/{total} nodes are available: {problem}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
                )),
                None => scheduler::place(&pod, &nodes, &all_pods).map_err(|refused| refused.message),
            };
            match placement {
                Err(message) => {
                    let updated = store.update("pods", &namespace, &name, |pod| {
                        set_condition(pod, "PodScheduled", "False", Some("Unschedulable"), Some(&message));
                    });
                    if let Some(updated) = updated {
                        self.event_once(&updated, "Warning", "FailedScheduling", &message);
                    }
                }
                Ok(node) => {
                    let updated = store.update("pods", &namespace, &name, |pod| {
                        pod["spec"]["nodeName"] = json!(node);
                        set_condition(pod, "PodScheduled", "True", None, None);
                    });
                    if let Some(updated) = updated {
                        self.event(
                            &updated,
                            "Normal",
                            "Scheduled",
                            &format!("Successfully assigned {namespace}/{name} to {node}"),
                        );
                    }
                }
            }
        }
    }

    /// Endpoints for every Service with a selector: Ready pods as addresses, the others as notReadyAddresses
    /// (all as addresses with `publishNotReadyAddresses`).
    fn endpoints(&mut self) {
        let store = self.control.store.clone();
        let services = store.list("services", None);
        for service in &services {
            let Some(selector) = service
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .filter(|selector| !selector.is_empty())
            else {
                continue;
            };
            let (namespace, name) = namespace_and_name(service);
            let selector = LabelSelector::from_map(selector);
            let mut pods: Vec<Value> = store
                .list("pods", Some(&namespace))
                .into_iter()
                .filter(|pod| selector.matches(pod) && !is_deleting(pod) && !text(pod, "/status/podIP").is_empty())
                .collect();
            pods.sort_by(|a, b| text(a, "/metadata/name").cmp(text(b, "/metadata/name")));
            let desired = desired_endpoints(service, &pods);
            match store.get("endpoints", &namespace, &name) {
                Some(existing) => {
                    store.update("endpoints", &namespace, &name, |endpoints| {
                        endpoints["metadata"]["labels"] = desired["metadata"]["labels"].clone();
                        match desired.get("subsets") {
                            Some(subsets) => endpoints["subsets"] = subsets.clone(),
                            None => {
                                if let Some(fields) = endpoints.as_object_mut() {
                                    fields.remove("subsets");
                                }
                            }
                        }
                    });
                    let _ = existing;
                }
                None => {
                    let _ = store.create("endpoints", &namespace, desired);
                }
            }
        }
        for endpoints in store.list("endpoints", None) {
            let (namespace, name) = namespace_and_name(&endpoints);
            let managed = text(
                &endpoints,
                &format!("/metadata/labels/{}", ENDPOINTS_MANAGED_BY.replace('/', "~1")),
            ) == "endpoint-controller";
            let has_service = services
                .iter()
                .any(|service| namespace_and_name(service) == (namespace.clone(), name.clone()));
            if managed && !has_service {
                store.remove("endpoints", &namespace, &name);
            }
        }
    }
}

fn desired_endpoints(service: &Value, pods: &[Value]) -> Value {
    let (namespace, name) = namespace_and_name(service);
    let mut labels = service.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    labels[ENDPOINTS_MANAGED_BY] = json!("endpoint-controller");
    let mut endpoints = json!({ "metadata": { "name": name, "namespace": namespace, "labels": labels } });
    // The endpoints controller's `tolerateUnreadyEndpoints`: cluster DNS publishes these addresses.
    let publish_not_ready = service
        .pointer("/spec/publishNotReadyAddresses")
        .and_then(Value::as_bool)
        == Some(true);
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for pod in pods {
        let mut address = json!({
            "ip": text(pod, "/status/podIP"),
            "nodeName": text(pod, "/spec/nodeName"),
            "targetRef": {
                "kind": "Pod",
                "namespace": text(pod, "/metadata/namespace"),
                "name": text(pod, "/metadata/name"),
                "uid": text(pod, "/metadata/uid"),
            },
        });
        if !text(pod, "/spec/hostname").is_empty() && text(pod, "/spec/subdomain") == name {
            address["hostname"] = json!(text(pod, "/spec/hostname"));
        }
        if is_ready(pod) || publish_not_ready {
            ready.push(address)
        } else {
            not_ready.push(address)
        }
    }
    if ready.is_empty() && not_ready.is_empty() {
        return endpoints;
    }
    let ports: Vec<Value> = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|port| {
            let number = resolve_target_port(port, &pods[0])?;
            let mut entry =
                json!({ "port": number, "protocol": port.get("protocol").cloned().unwrap_or(json!("TCP")) });
            if let Some(port_name) = port.get("name") {
                entry["name"] = port_name.clone();
            }
            Some(entry)
        })
        .collect();
    let mut subset = json!({ "ports": ports });
    if !ready.is_empty() {
        subset["addresses"] = json!(ready);
    }
    if !not_ready.is_empty() {
        subset["notReadyAddresses"] = json!(not_ready);
    }
    endpoints["subsets"] = json!([subset]);
    endpoints
}

/// A Service port's target on a pod: a number, or a named container port.
fn resolve_target_port(port: &Value, pod: &Value) -> Option<u64> {
    match port.get("targetPort").or_else(|| port.get("port"))? {
        Value::Number(number) => number.as_u64(),
        Value::String(port_name) => pod
            .pointer("/spec/containers")?
            .as_array()?
            .iter()
            .flat_map(|container| {
                container
                    .get("ports")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .find(|candidate| candidate.get("name").and_then(Value::as_str) == Some(port_name.as_str()))?
            .get("containerPort")?
            .as_u64(),
        _ => None,
    }
}

/// Sets a pod condition, keeping lastTransitionTime when the status does not change.
pub fn set_condition(pod: &mut Value, type_: &str, status: &str, reason: Option<&str>, message: Option<&str>) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let conditions = pod["status"]
        .as_object_mut()
        .expect("just made an object")
        .entry("conditions")
        .or_insert_with(|| json!([]));
    let Some(conditions) = conditions.as_array_mut() else {
        return;
    };
    let mut condition =
        json!({ "type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": now_rfc3339() });
    if let Some(reason) = reason {
        condition["reason"] = json!(reason);
    }
    if let Some(message) = message {
        condition["message"] = json!(message);
    }
    match conditions
        .iter_mut()
        .find(|existing| existing.get("type").and_then(Value::as_str) == Some(type_))
    {
        Some(existing) => {
            if existing.get("status") == condition.get("status") {
                condition["lastTransitionTime"] = existing.get("lastTransitionTime").cloned().unwrap_or(Value::Null);
            }
            *existing = condition;
        }
        None => conditions.push(condition),
    }
}

fn owner_reference(sts: &Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": text(sts, "/metadata/name"),
        "uid": text(sts, "/metadata/uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Pod `<sts>-<ordinal>` as the StatefulSet controller builds it from the template.
pub fn pod_from_template(sts: &Value, ordinal: usize, revision: &str) -> Value {
    let (namespace, name) = namespace_and_name(sts);
    let pod_name = format!("{name}-{ordinal}");
    let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut labels = template.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    labels[POD_NAME_LABEL] = json!(pod_name);
    labels[POD_INDEX_LABEL] = json!(ordinal.to_string());
    labels[REVISION_LABEL] = json!(revision);
    let mut metadata = json!({
        "name": pod_name,
        "namespace": namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(sts)],
    });
    if let Some(annotations) = template.pointer("/metadata/annotations") {
        metadata["annotations"] = annotations.clone();
    }
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    spec["hostname"] = json!(pod_name);
    if let Some(service_name) = sts
        .pointer("/spec/serviceName")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
    {
        spec["subdomain"] = json!(service_name);
    }
    let claim_templates = sts
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !claim_templates.is_empty() {
        if !spec.get("volumes").is_some_and(Value::is_array) {
            spec["volumes"] = json!([]);
        }
        let volumes = spec["volumes"].as_array_mut().expect("just made an array");
        for template in &claim_templates {
            let volume_name = text(template, "/metadata/name");
            volumes.retain(|volume| volume.get("name").and_then(Value::as_str) != Some(volume_name));
            volumes.push(json!({ "name": volume_name, "persistentVolumeClaim": { "claimName": format!("{volume_name}-{pod_name}") } }));
        }
    }
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec })
}

/// Claim `<template>-<sts>-<ordinal>`: the template's spec, its labels plus the StatefulSet's selector labels.
pub fn claim_from_template(sts: &Value, template: &Value, claim_name: &str) -> Value {
    let namespace = text(sts, "/metadata/namespace");
    let mut labels = template.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    if let Some(selector) = sts.pointer("/spec/selector/matchLabels").and_then(Value::as_object) {
        for (key, value) in selector {
            labels[key] = value.clone();
        }
    }
    let mut metadata = json!({ "name": claim_name, "namespace": namespace, "labels": labels });
    if let Some(annotations) = template.pointer("/metadata/annotations") {
        metadata["annotations"] = annotations.clone();
    }
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts() -> Value {
        json!({
            "metadata": { "name": "mysql", "namespace": "database", "uid": "u-1" },
            "spec": {
                "serviceName": "mysql-headless",
                "selector": { "matchLabels": { "app": "mysql" } },
                "template": {
                    "metadata": { "labels": { "app": "mysql" } },
                    "spec": {
                        "containers": [{ "name": "mysql", "image": "mysql:8.0" }],
                        "volumes": [{ "name": "mysql-config", "emptyDir": {} }],
                    },
                },
                "volumeClaimTemplates": [{ "metadata": { "name": "data" }, "spec": { "accessModes": ["ReadWriteOnce"] } }],
            },
        })
    }

    #[test]
    fn pods_get_stable_identity_labels_and_their_claims() {
        let pod = pod_from_template(&sts(), 1, "mysql-abc");
        assert_eq!(pod["metadata"]["name"], "mysql-1");
        assert_eq!(
            pod["metadata"]["labels"],
            json!({ "app": "mysql", POD_NAME_LABEL: "mysql-1", POD_INDEX_LABEL: "1", REVISION_LABEL: "mysql-abc" })
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(pod["spec"]["hostname"], "mysql-1");
        assert_eq!(pod["spec"]["subdomain"], "mysql-headless");
        assert_eq!(
            pod["spec"]["volumes"],
            json!([{ "name": "mysql-config", "emptyDir": {} }, { "name": "data", "persistentVolumeClaim": { "claimName": "data-mysql-1" } }])
        );
        let claim = claim_from_template(&sts(), &sts()["spec"]["volumeClaimTemplates"][0], "data-mysql-1");
        assert_eq!(claim["metadata"]["labels"], json!({ "app": "mysql" }));
        assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    }

    #[test]
    fn not_ready_pods_are_addresses_only_when_the_service_publishes_them() {
        let pod = |name: &str, ready: &str| {
            json!({ "metadata": { "name": name, "namespace": "database", "uid": name },
                    "spec": { "nodeName": "n", "hostname": name, "subdomain": "mysql-headless",
                              "containers": [{ "name": "mysql", "ports": [{ "containerPort": 3306 }] }] },
                    "status": { "podIP": format!("10.244.0.{}", name.len()),
                                "conditions": [{ "type": "Ready", "status": ready }] } })
        };
        let pods = [pod("mysql-0", "True"), pod("mysql-10", "False")];
        let mut service = json!({ "metadata": { "name": "mysql-headless", "namespace": "database" },
                                  "spec": { "clusterIP": "None", "ports": [{ "name": "mysql", "port": 3306 }] } });
        let subset = &desired_endpoints(&service, &pods)["subsets"][0];
        assert_eq!(subset["addresses"].as_array().map(Vec::len), Some(1));
        assert_eq!(subset["notReadyAddresses"][0]["hostname"], "mysql-10");
        service["spec"]["publishNotReadyAddresses"] = json!(true);
        let subset = &desired_endpoints(&service, &pods)["subsets"][0];
        assert_eq!(subset["addresses"][1]["hostname"], "mysql-10");
        assert!(subset.get("notReadyAddresses").is_none(), "{subset}");
    }

    #[test]
    fn ordinals_are_parsed_strictly() {
        assert_eq!(ordinal_of("mysql", "mysql-0"), Some(0));
        assert_eq!(ordinal_of("mysql", "mysql-12"), Some(12));
        assert_eq!(ordinal_of("mysql", "mysql-01"), None);
        assert_eq!(ordinal_of("mysql", "mysql-client"), None);
        assert_eq!(ordinal_of("mysql", "mysqlx-0"), None);
    }

    #[test]
    fn revisions_follow_the_template() {
        let a = revision_of("mysql", &json!({ "spec": { "image": "a" } }));
        assert!(a.starts_with("mysql-") && a.len() == "mysql-".len() + 10);
        assert_eq!(a, revision_of("mysql", &json!({ "spec": { "image": "a" } })));
        assert_ne!(a, revision_of("mysql", &json!({ "spec": { "image": "b" } })));
    }

    #[test]
    fn conditions_keep_their_transition_time_when_unchanged() {
        let mut pod = json!({});
        set_condition(&mut pod, "PodScheduled", "False", Some("Unschedulable"), Some("m"));
        pod["status"]["conditions"][0]["lastTransitionTime"] = json!("2020-01-01T00:00:00Z");
        set_condition(&mut pod, "PodScheduled", "False", Some("Unschedulable"), Some("m2"));
        assert_eq!(
            pod["status"]["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(pod["status"]["conditions"][0]["message"], "m2");
        set_condition(&mut pod, "PodScheduled", "True", None, None);
        assert_ne!(
            pod["status"]["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert!(pod["status"]["conditions"][0].get("reason").is_none());
    }
}
