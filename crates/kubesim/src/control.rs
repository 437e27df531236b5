//! The control plane's shared state and the object lifecycle rules used by both the API and the controllers:
//! admission on create, graceful deletion, finalizers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};

use crate::defaults::{apply_defaults, validate_create};
use crate::faults::Faults;
use crate::resources::{self, ResourceInfo};
use crate::runtime::PodRuntime;
use crate::status::ApiError;
use crate::store::{Store, StoreError, metadata_mut, now_rfc3339};

/// The default StorageClass every simulated cluster has (unless the fault hides it).
pub const DEFAULT_STORAGE_CLASS: &str = "standard";
/// Who provisions `standard` volumes.
pub const PROVISIONER: &str = "kubesim.io/hostpath";
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// Everything the API server and the controllers share. Cheap to clone.
#[derive(Clone)]
pub struct ControlPlane {
    pub store: Store,
    pub faults: Faults,
    /// Where provisioned volumes live (one directory per PersistentVolume).
    pub volumes_dir: PathBuf,
    runtime: Arc<OnceLock<Arc<dyn PodRuntime>>>,
    cluster_ips: Arc<AtomicU32>,
    /// The last object each field manager applied, by (uid, manager): what it owns for server-side apply.
    applied: Arc<Mutex<HashMap<(String, String), Value>>>,
}

/// What a DELETE did.
#[derive(Debug)]
pub enum Deletion {
    /// The object is still there, being deleted (graceful pods, namespaces, finalizers).
    Pending(Value),
    /// The object is gone.
    Done(Value),
}

/// The parts of DeleteOptions the simulator honours.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub orphan: bool,
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
}

impl DeleteOptions {
    pub fn from_json(body: &Value) -> DeleteOptions {
        DeleteOptions {
            grace_period_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64),
            orphan: body.get("propagationPolicy").and_then(Value::as_str) == Some("Orphan")
                || body.get("orphanDependents").and_then(Value::as_bool) == Some(true),
            dry_run: body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|modes| !modes.is_empty()),
            precondition_uid: body
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            precondition_resource_version: body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}

impl ControlPlane {
    pub fn new(store: Store, faults: Faults, volumes_dir: PathBuf) -> ControlPlane {
        ControlPlane {
            store,
            faults,
            volumes_dir,
            runtime: Arc::new(OnceLock::new()),
            cluster_ips: Arc::new(AtomicU32::new(10)),
            applied: Arc::default(),
        }
    }

    /// Attaches the node; from then on pods on it are deleted gracefully by the node.
    pub fn attach_runtime(&self, runtime: Arc<dyn PodRuntime>) {
        let _ = self.runtime.set(runtime);
    }

    pub fn runtime(&self) -> Option<Arc<dyn PodRuntime>> {
        self.runtime.get().cloned()
    }

    fn next_cluster_ip(&self) -> String {
        let n = self.cluster_ips.fetch_add(1, Ordering::Relaxed);
        format!("10.96.{}.{}", n / 250, n % 250 + 1)
    }

    /// Fills server-side defaults (see `defaults::apply_defaults`).
    pub fn default_object(&self, resource: &str, object: &mut Value) {
        apply_defaults(resource, object, &mut || self.next_cluster_ip());
    }

    /// The StorageClass a claim without one gets, if the cluster has a default.
    pub fn default_storage_class(&self) -> Option<String> {
        if self.faults.no_default_storage_class() {
            return None;
        }
        self.store.list("storageclasses", None).into_iter().find_map(|class| {
            let is_default = class
                .pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                .and_then(Value::as_str)
                == Some("true");
            is_default.then(|| {
                class
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })?
        })
    }

    /// 404 if the namespace is missing, 403 if it is being deleted.
    pub fn check_namespace_open(&self, info: &ResourceInfo, namespace: &str, name: &str) -> Result<(), ApiError> {
        if !info.namespaced {
            return Ok(());
        }
        let namespaces = resources::by_plural("namespaces").expect("namespaces are served");
        let Some(ns) = self.store.get("namespaces", "", namespace) else {
            return Err(ApiError::not_found(namespaces, namespace));
        };
        if ns
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|stamp| !stamp.is_null())
        {
            return Err(ApiError::namespace_terminating(info, name, namespace));
        }
        Ok(())
    }

    /// Admission and storage of a new object: namespace checks, generateName, validation, defaults.
    pub fn create(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        mut object: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let namespace = if info.namespaced { namespace } else { "" };
        if object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
            && let Some(prefix) = object.pointer("/metadata/generateName").and_then(Value::as_str)
        {
            let name = format!("{prefix}{}", random_suffix());
            metadata_mut(&mut object).insert("name".into(), json!(name));
        }
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let causes = validate_create(info.plural, &object);
        if !causes.is_empty() {
            return Err(ApiError::invalid(info, &name, causes));
        }
        self.check_namespace_open(info, namespace, &name)?;
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ] {
            metadata_mut(&mut object).remove(field);
        }
        if info.plural == "persistentvolumeclaims" {
            if object.pointer("/spec/storageClassName").is_none_or(Value::is_null)
                && let Some(class) = self.default_storage_class()
            {
                object["spec"]["storageClassName"] = json!(class);
            }
            add_finalizer(&mut object, PVC_PROTECTION);
        }
        if info.plural == "persistentvolumes" {
            add_finalizer(&mut object, PV_PROTECTION);
        }
        self.default_object(info.plural, &mut object);
        if dry_run {
            return Ok(object);
        }
        self.store
            .create(info.plural, namespace, object)
            .map_err(|error| match error {
                StoreError::AlreadyExists { .. } => ApiError::already_exists(info, &name),
                StoreError::Expired { .. } => ApiError::internal(500, error.to_string()),
            })
    }

    /// Deletes the way the real API server does: pods and namespaces gracefully, objects with finalizers once
    /// those are cleared, everything else at once. Dependents are collected by the garbage collector.
    pub fn delete(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Deletion, ApiError> {
        let namespace = if info.namespaced { namespace } else { "" };
        let current = self
            .store
            .get(info.plural, namespace, name)
            .ok_or_else(|| ApiError::not_found(info, name))?;
        let uid = current
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if options.precondition_uid.as_ref().is_some_and(|wanted| *wanted != uid) {
            let mut error = ApiError::conflict(info, name);
            error.message = format!(
                "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {}, UID in object meta: {uid}",
                crate::status::qualified(info),
                options.precondition_uid.as_deref().unwrap_or_default()
            );
            return Err(error);
        }
        let version = current
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if options
            .precondition_resource_version
            .as_deref()
            .is_some_and(|wanted| wanted != version)
        {
            return Err(ApiError::conflict(info, name));
        }
        if options.dry_run {
            return Ok(Deletion::Pending(current));
        }
        if options.orphan {
            self.orphan_dependents(&uid);
        }
        match info.plural {
            "pods" => Ok(self.delete_pod(namespace, name, options.grace_period_seconds)),
            "namespaces" => Ok(Deletion::Pending(self.mark_deleted(
                info.plural,
                namespace,
                name,
                |object| {
                    object["status"]["phase"] = json!("Terminating");
                },
            ))),
            _ if has_finalizers(&current) => Ok(Deletion::Pending(self.mark_deleted(
                info.plural,
                namespace,
                name,
                |_| {},
            ))),
            _ => {
                self.forget_applied(&uid);
                Ok(Deletion::Done(
                    self.store.remove(info.plural, namespace, name).unwrap_or(current),
                ))
            }
        }
    }

    /// Sets deletionTimestamp (once) and lets `extra` adjust the object.
    fn mark_deleted(&self, resource: &str, namespace: &str, name: &str, extra: impl FnOnce(&mut Value)) -> Value {
        self.store
            .update(resource, namespace, name, |object| {
                let metadata = metadata_mut(object);
                if metadata.get("deletionTimestamp").is_none_or(Value::is_null) {
                    metadata.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                    metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
                }
                extra(object);
            })
            .unwrap_or(Value::Null)
    }

    /// Graceful pod deletion: the node stops the processes, then removes the pod. Pods no node runs go at once.
    pub fn delete_pod(&self, namespace: &str, name: &str, grace_period_seconds: Option<i64>) -> Deletion {
        let Some(current) = self.store.get("pods", namespace, name) else {
            return Deletion::Done(Value::Null);
        };
        let on_node = current
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|node| !node.is_empty());
        if !on_node || self.runtime().is_none() {
            let uid = current
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            self.forget_applied(&uid);
            let marked = self.store.update("pods", namespace, name, |pod| {
                let metadata = metadata_mut(pod);
                metadata.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
            });
            self.store.remove("pods", namespace, name);
            return Deletion::Pending(marked.unwrap_or(current));
        }
        let grace = grace_period_seconds
            .or_else(|| {
                current
                    .pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30)
            .max(0);
        let updated = self.store.update("pods", namespace, name, |pod| {
            let metadata = metadata_mut(pod);
            let already = metadata.get("deletionGracePeriodSeconds").and_then(Value::as_i64);
            // A second delete may shorten the grace period, never lengthen it.
            if metadata.get("deletionTimestamp").is_none_or(Value::is_null) || already.is_some_and(|old| grace < old) {
                let deadline = jiff::Timestamp::now()
                    .checked_add(jiff::SignedDuration::from_secs(grace))
                    .unwrap_or_else(|_| jiff::Timestamp::now());
                metadata.insert(
                    "deletionTimestamp".into(),
                    json!(deadline.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                );
                metadata.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
        });
        Deletion::Pending(updated.unwrap_or(current))
    }

    /// Drops ownerReferences to `owner_uid` everywhere (propagationPolicy Orphan).
    fn orphan_dependents(&self, owner_uid: &str) {
        for info in resources::RESOURCES {
            for object in self.store.list(info.plural, None) {
                if !owned_by(&object, owner_uid) {
                    continue;
                }
                let (namespace, name) = namespace_and_name(&object);
                self.store.update(info.plural, &namespace, &name, |object| {
                    if let Some(references) = object
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    {
                        references.retain(|reference| reference.get("uid").and_then(Value::as_str) != Some(owner_uid));
                    }
                });
            }
        }
    }

    /// What `manager` last applied to the object with this uid.
    pub fn last_applied(&self, uid: &str, manager: &str) -> Option<Value> {
        self.applied_state()
            .get(&(uid.to_string(), manager.to_string()))
            .cloned()
    }

    pub fn remember_applied(&self, uid: &str, manager: &str, applied: Value) {
        self.applied_state()
            .insert((uid.to_string(), manager.to_string()), applied);
    }

    /// Every (manager, applied object) for the object with this uid.
    pub fn applied_by_others(&self, uid: &str, manager: &str) -> Vec<(String, Value)> {
        self.applied_state()
            .iter()
            .filter(|((owner, other), _)| owner == uid && other != manager)
            .map(|((_, other), applied)| (other.clone(), applied.clone()))
            .collect()
    }

    pub fn forget_applied(&self, uid: &str) {
        self.applied_state().retain(|(owner, _), _| owner != uid);
    }

    fn applied_state(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Value>> {
        self.applied.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub fn has_finalizers(object: &Value) -> bool {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|list| !list.is_empty())
}

pub fn is_deleting(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|stamp| !stamp.is_null())
}

pub fn add_finalizer(object: &mut Value, finalizer: &str) {
    let metadata = metadata_mut(object);
    let list = metadata.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut()
        && !list.iter().any(|existing| existing == finalizer)
    {
        list.push(json!(finalizer));
    }
}

pub fn remove_finalizer(object: &mut Value, finalizer: &str) {
    if let Some(list) = object.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
        list.retain(|existing| existing != finalizer);
    }
}

pub fn owned_by(object: &Value, owner_uid: &str) -> bool {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|references| {
            references
                .iter()
                .any(|reference| reference.get("uid").and_then(Value::as_str) == Some(owner_uid))
        })
}

pub fn namespace_and_name(object: &Value) -> (String, String) {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (text("/metadata/namespace"), text("/metadata/name"))
}

/// Five characters from the alphabet Kubernetes uses for generated names.
pub fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default(),
    );
    let mut bits = hasher.finish();
    (0..5)
        .map(|_| {
            let index = (bits % ALPHABET.len() as u64) as usize;
            bits /= ALPHABET.len() as u64;
            char::from(ALPHABET[index])
        })
        .collect()
}
