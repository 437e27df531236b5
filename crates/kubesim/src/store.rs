//! The object store: every API object as JSON, one global resourceVersion, a change feed for watches and controllers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::managed::{self, Writer};
use crate::resources;

/// How many changes are kept for watches that resume from an older resourceVersion.
const DEFAULT_HISTORY_LIMIT: usize = 2000;
/// Capacity of the live change feed; a subscriber that falls further behind sees `Lagged` and must resync.
const BROADCAST_CAPACITY: usize = 8192;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    /// The watch event type on the wire.
    pub fn as_watch_type(self) -> &'static str {
        match self {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

/// One change of one object; `object` is the object after the change (for deletions: as it was, with a new
/// resourceVersion).
#[derive(Clone, Debug)]
pub struct Change {
    pub kind: ChangeKind,
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub object: Value,
    /// The object before a modification (None for additions and deletions).
    pub old: Option<Value>,
    pub resource_version: u64,
}

/// What an Event is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: String,
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl ObjectRef {
    /// The reference to a stored object (kind, apiVersion and metadata read from it).
    pub fn to(object: &Value) -> ObjectRef {
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        ObjectRef {
            kind: text("/kind"),
            api_version: text("/apiVersion"),
            namespace: text("/metadata/namespace"),
            name: text("/metadata/name"),
            uid: text("/metadata/uid"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, name: String },
    #[error("too old resource version: {requested} ({oldest})")]
    Expired { requested: u64, oldest: u64 },
}

/// The shared object store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    feed: broadcast::Sender<Change>,
}

type Key = (String, String);

struct State {
    objects: BTreeMap<String, BTreeMap<Key, Value>>,
    resource_version: u64,
    history: VecDeque<Change>,
    history_limit: usize,
    /// Every change with a resourceVersion above this one is still in `history`.
    compacted_through: u64,
    uid_counter: u64,
    event_counter: u64,
}

impl State {
    /// Copies of the objects of a resource, in one namespace or in all.
    fn items(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .get(resource)
            .map(|objects| {
                objects
                    .iter()
                    .filter(|((ns, _), _)| namespace.is_none_or(|wanted| wanted == ns))
                    .map(|(_, object)| object.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        Store::with_history_limit(DEFAULT_HISTORY_LIMIT)
    }

    /// A store that keeps only `limit` changes for resuming watches (older versions answer 410 Expired).
    pub fn with_history_limit(limit: usize) -> Store {
        let (feed, _) = broadcast::channel(BROADCAST_CAPACITY);
        Store {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    objects: BTreeMap::new(),
                    // Real clusters never hand out tiny versions; starting higher keeps "0" and "1" special.
                    resource_version: 100,
                    history: VecDeque::new(),
                    history_limit: limit.max(1),
                    compacted_through: 100,
                    uid_counter: 0,
                    event_counter: 0,
                }),
                feed,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation completes before anything that can panic, so a poisoned lock still holds consistent data.
        self.inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.state()
            .objects
            .get(resource)?
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of `resource`, in one namespace or in all (None), sorted by namespace then name.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        self.list_with_version(resource, namespace).0
    }

    /// Like `list`, plus the store's resourceVersion at that instant (the list's metadata.resourceVersion).
    pub fn list_with_version(&self, resource: &str, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let state = self.state();
        let items = state.items(resource, namespace);
        (items, state.resource_version)
    }

    pub fn resource_version(&self) -> u64 {
        self.state().resource_version
    }

    /// Stores a new object: fills apiVersion/kind, namespace, uid, creationTimestamp, generation and
    /// resourceVersion, emits ADDED.
    pub fn create(&self, resource: &str, namespace: &str, mut object: Value) -> Result<Value, StoreError> {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut state = self.state();
        let key = (namespace.to_string(), name.clone());
        if state
            .objects
            .get(resource)
            .is_some_and(|objects| objects.contains_key(&key))
        {
            return Err(StoreError::AlreadyExists {
                resource: resource.to_string(),
                name,
            });
        }
        if let Some(info) = resources::by_plural(resource) {
            object["apiVersion"] = json!(info.api_version());
            object["kind"] = json!(info.kind);
        }
        let resource_version = state.next_version();
        let uid = state.next_uid();
        let metadata = metadata_mut(&mut object);
        if !namespace.is_empty() {
            metadata.insert("namespace".into(), json!(namespace));
        } else {
            metadata.remove("namespace");
        }
        metadata.insert("uid".into(), json!(uid));
        metadata.insert("creationTimestamp".into(), json!(now_rfc3339()));
        metadata.insert("resourceVersion".into(), json!(resource_version.to_string()));
        metadata.insert("generation".into(), json!(1));
        if object.pointer("/metadata/managedFields").is_none() {
            // Created by the simulator itself (a controller, the node): recorded as the real component would be.
            let fields = managed::fields_v1(&object);
            managed::record(&mut object, &Writer::internal(resource, false), fields);
        }
        state
            .objects
            .entry(resource.to_string())
            .or_default()
            .insert(key, object.clone());
        self.emit(
            &mut state,
            ChangeKind::Added,
            (resource, namespace, &name),
            &object,
            None,
            resource_version,
        );
        Ok(object)
    }

    /// Read-modify-write; bumps resourceVersion and emits MODIFIED if the value changed. None if absent.
    /// `f` runs under the store's lock: it must not call back into the store.
    pub fn update(&self, resource: &str, namespace: &str, name: &str, f: impl FnOnce(&mut Value)) -> Option<Value> {
        self.try_update(resource, namespace, name, |object| {
            f(object);
            Ok::<(), std::convert::Infallible>(())
        })
        .map(|result| match result {
            Ok(object) => object,
            Err(never) => match never {},
        })
    }

    /// Like `update`, but `f` may refuse the change (nothing is stored then). None if absent.
    pub fn try_update<E>(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut Value) -> Result<(), E>,
    ) -> Option<Result<Value, E>> {
        let mut state = self.state();
        let key = (namespace.to_string(), name.to_string());
        let current = state.objects.get(resource)?.get(&key)?.clone();
        let mut changed = current.clone();
        if let Err(refused) = f(&mut changed) {
            return Some(Err(refused));
        }
        // Identity and bookkeeping fields belong to the store, whatever the closure did.
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "resourceVersion",
            "generation",
        ] {
            match current.pointer(&format!("/metadata/{field}")) {
                Some(value) => {
                    metadata_mut(&mut changed).insert(field.into(), value.clone());
                }
                None => {
                    metadata_mut(&mut changed).remove(field);
                }
            }
        }
        if changed == current {
            return Some(Ok(current));
        }
        if changed.pointer("/metadata/managedFields") == current.pointer("/metadata/managedFields") {
            // A write by the simulator itself (the API server records its clients' writes before this point).
            let fields = managed::changed_fields(&current, &changed);
            if let Some(sections) = fields.as_object().filter(|sections| !sections.is_empty()) {
                let status_only = sections.len() == 1 && sections.contains_key("f:status");
                managed::record(&mut changed, &Writer::internal(resource, status_only), fields);
            }
        }
        if changed.get("spec") != current.get("spec") {
            let generation = current
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            metadata_mut(&mut changed).insert("generation".into(), json!(generation + 1));
        }
        let resource_version = state.next_version();
        metadata_mut(&mut changed).insert("resourceVersion".into(), json!(resource_version.to_string()));
        if let Some(objects) = state.objects.get_mut(resource) {
            objects.insert(key, changed.clone());
        }
        self.emit(
            &mut state,
            ChangeKind::Modified,
            (resource, namespace, name),
            &changed,
            Some(current),
            resource_version,
        );
        Some(Ok(changed))
    }

    /// Removes the object now and emits DELETED (used once a deleted pod's processes are gone).
    pub fn remove(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let mut state = self.state();
        let key = (namespace.to_string(), name.to_string());
        let mut object = state.objects.get_mut(resource)?.remove(&key)?;
        let resource_version = state.next_version();
        metadata_mut(&mut object).insert("resourceVersion".into(), json!(resource_version.to_string()));
        self.emit(
            &mut state,
            ChangeKind::Deleted,
            (resource, namespace, name),
            &object,
            None,
            resource_version,
        );
        Some(object)
    }

    /// Every change, all resources, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.feed.subscribe()
    }

    /// For a watch resuming after `since`: the recorded changes after it plus the live feed from there on, taken
    /// under one lock so nothing falls between them. Err when `since` is older than the kept history.
    pub fn changes_since(&self, since: u64) -> Result<(Vec<Change>, broadcast::Receiver<Change>), StoreError> {
        let state = self.state();
        let receiver = self.inner.feed.subscribe();
        if since < state.compacted_through {
            return Err(StoreError::Expired {
                requested: since,
                oldest: state.compacted_through,
            });
        }
        let missed = state
            .history
            .iter()
            .filter(|change| change.resource_version > since)
            .cloned()
            .collect();
        Ok((missed, receiver))
    }

    /// For a watch starting "now" (with the initial state): the current objects of `resource` and the live feed.
    pub fn snapshot_and_subscribe(
        &self,
        resource: &str,
        namespace: Option<&str>,
    ) -> (Vec<Value>, u64, broadcast::Receiver<Change>) {
        let state = self.state();
        let receiver = self.inner.feed.subscribe();
        let items = state.items(resource, namespace);
        (items, state.resource_version, receiver)
    }

    /// Forgets the kept history (as etcd compaction does): older resourceVersions then answer 410 Expired.
    pub fn compact(&self) {
        let mut state = self.state();
        state.history.clear();
        state.compacted_through = state.resource_version;
    }

    /// Records a core/v1 Event (reason, message, type Normal|Warning) about an object; repeats bump `count`.
    pub fn record_event(&self, namespace: &str, involved: &ObjectRef, type_: &str, reason: &str, message: &str) {
        let now = now_rfc3339();
        let same_event = self.list("events", Some(namespace)).into_iter().find(|event| {
            event.pointer("/involvedObject/name").and_then(Value::as_str) == Some(involved.name.as_str())
                && event.pointer("/involvedObject/kind").and_then(Value::as_str) == Some(involved.kind.as_str())
                && event.pointer("/involvedObject/uid").and_then(Value::as_str) == Some(involved.uid.as_str())
                && event.get("reason").and_then(Value::as_str) == Some(reason)
                && event.get("message").and_then(Value::as_str) == Some(message)
        });
        if let Some(event) = same_event {
            let name = event
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            self.update("events", namespace, &name, |event| {
                let count = event.get("count").and_then(Value::as_i64).unwrap_or(1);
                event["count"] = json!(count + 1);
                event["lastTimestamp"] = json!(now);
            });
            return;
        }
        let suffix = {
            // As the real recorder names events: `<object>.<hex nanoseconds>`; the counter keeps names unique.
            let mut state = self.state();
            state.event_counter += 1;
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos() as u64)
                .unwrap_or_default();
            format!("{:x}", nanos.wrapping_add(state.event_counter))
        };
        let component = reporting_component(reason);
        let event = json!({
            "metadata": { "name": format!("{}.{suffix}", involved.name), "namespace": namespace },
            "involvedObject": {
                "kind": involved.kind,
                "apiVersion": involved.api_version,
                "namespace": involved.namespace,
                "name": involved.name,
                "uid": involved.uid,
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            // Only the kubelet names a host; the field is left out otherwise, as Go's omitempty does.
            "source": if component == "kubelet" {
                json!({ "component": component, "host": crate::NODE_NAME })
            } else {
                json!({ "component": component })
            },
            "reportingComponent": component,
            "reportingInstance": "",
        });
        // Event names are unique by construction, so this cannot collide.
        let _ = self.create("events", namespace, event);
    }

    fn emit(
        &self,
        state: &mut State,
        kind: ChangeKind,
        (resource, namespace, name): (&str, &str, &str),
        object: &Value,
        old: Option<Value>,
        resource_version: u64,
    ) {
        let change = Change {
            kind,
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            object: object.clone(),
            old,
            resource_version,
        };
        state.history.push_back(change.clone());
        while state.history.len() > state.history_limit {
            if let Some(dropped) = state.history.pop_front() {
                state.compacted_through = dropped.resource_version;
            }
        }
        // No subscriber is fine: nobody is watching.
        let _ = self.inner.feed.send(change);
    }
}

impl State {
    fn next_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    fn next_uid(&mut self) -> String {
        use std::hash::{BuildHasher, Hasher};
        self.uid_counter += 1;
        let mut words = [0u64; 2];
        for (i, word) in words.iter_mut().enumerate() {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(self.uid_counter);
            hasher.write_usize(i);
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_nanos())
                    .unwrap_or_default(),
            );
            *word = hasher.finish();
        }
        let hex = format!("{:016x}{:016x}", words[0], words[1]);
        format!(
            "{}-{}-4{}-a{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[13..16],
            &hex[17..20],
            &hex[20..32]
        )
    }
}

/// Which component a real cluster reports an Event from, judged by its reason.
fn reporting_component(reason: &str) -> &'static str {
    match reason {
        "Scheduled" | "FailedScheduling" => "default-scheduler",
        "FailedBinding" | "ProvisioningFailed" | "ProvisioningSucceeded" | "ExternalProvisioning" => {
            "persistentvolume-controller"
        }
        "SuccessfulCreate" | "SuccessfulDelete" | "FailedCreate" | "RecreatingFailedPod" => "statefulset-controller",
        _ => "kubelet",
    }
}

/// The object's metadata map, created if missing.
pub fn metadata_mut(object: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let metadata = object
        .as_object_mut()
        .expect("just made an object")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    if !metadata.is_object() {
        *metadata = json!({});
    }
    metadata.as_object_mut().expect("just made an object")
}

/// Now, as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configmap(name: &str) -> Value {
        json!({ "metadata": { "name": name }, "data": { "k": "v" } })
    }

    #[test]
    fn create_fills_identity_and_rejects_duplicates() {
        let store = Store::new();
        let created = store.create("configmaps", "default", configmap("a")).expect("created");
        assert_eq!(created["kind"], "ConfigMap");
        assert_eq!(created["apiVersion"], "v1");
        assert_eq!(created["metadata"]["namespace"], "default");
        assert_eq!(created["metadata"]["uid"].as_str().map(str::len), Some(36));
        let error = store
            .create("configmaps", "default", configmap("a"))
            .expect_err("duplicate");
        assert_eq!(error.to_string(), "configmaps \"a\" already exists");
        let other = store.create("configmaps", "default", configmap("b")).expect("created");
        assert_ne!(created["metadata"]["uid"], other["metadata"]["uid"]);
    }

    #[test]
    fn update_bumps_version_only_on_change_and_generation_on_spec_change() {
        let store = Store::new();
        let created = store
            .create(
                "statefulsets",
                "ns",
                json!({ "metadata": { "name": "s" }, "spec": { "replicas": 1 } }),
            )
            .expect("created");
        let same = store.update("statefulsets", "ns", "s", |_| {}).expect("present");
        assert_eq!(
            same["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
        let status = store
            .update("statefulsets", "ns", "s", |object| {
                object["status"] = json!({ "replicas": 1 })
            })
            .expect("present");
        assert_ne!(
            status["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
        assert_eq!(status["metadata"]["generation"], 1);
        let spec = store
            .update("statefulsets", "ns", "s", |object| {
                object["spec"]["replicas"] = json!(2)
            })
            .expect("present");
        assert_eq!(spec["metadata"]["generation"], 2);
        assert!(store.update("statefulsets", "ns", "missing", |_| {}).is_none());
    }

    #[test]
    fn history_resumes_and_expires() {
        let store = Store::with_history_limit(3);
        let start = store.resource_version();
        store.create("configmaps", "default", configmap("a")).expect("created");
        let (missed, _) = store.changes_since(start).expect("kept");
        assert_eq!(missed.len(), 1);
        assert_eq!(missed[0].kind, ChangeKind::Added);
        for name in ["b", "c", "d", "e"] {
            store.create("configmaps", "default", configmap(name)).expect("created");
        }
        assert!(matches!(store.changes_since(start), Err(StoreError::Expired { .. })));
        let recent = store.resource_version() - 2;
        assert_eq!(store.changes_since(recent).expect("kept").0.len(), 2);
    }

    #[test]
    fn repeated_events_bump_count() {
        let store = Store::new();
        let pod = store
            .create("pods", "default", json!({ "metadata": { "name": "p" } }))
            .expect("created");
        let involved = ObjectRef::to(&pod);
        store.record_event(
            "default",
            &involved,
            "Warning",
            "BackOff",
            "Back-off restarting failed container",
        );
        store.record_event(
            "default",
            &involved,
            "Warning",
            "BackOff",
            "Back-off restarting failed container",
        );
        let events = store.list("events", Some("default"));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["count"], 2);
        assert_eq!(events[0]["involvedObject"]["kind"], "Pod");
        assert_eq!(events[0]["source"]["component"], "kubelet");
    }
}
