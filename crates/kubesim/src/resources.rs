//! The resource types the simulated API server serves, with what discovery says about each.

/// One served resource type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
}

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

const fn info(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    group: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> ResourceInfo {
    ResourceInfo {
        plural,
        singular,
        kind,
        group,
        version: "v1",
        namespaced,
        short_names,
    }
}

pub const RESOURCES: &[ResourceInfo] = &[
    info("namespaces", "namespace", "Namespace", "", false, &["ns"]),
    info("services", "service", "Service", "", true, &["svc"]),
    info("secrets", "secret", "Secret", "", true, &[]),
    info("configmaps", "configmap", "ConfigMap", "", true, &["cm"]),
    info("pods", "pod", "Pod", "", true, &["po"]),
    info(
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        "",
        true,
        &["pvc"],
    ),
    info(
        "persistentvolumes",
        "persistentvolume",
        "PersistentVolume",
        "",
        false,
        &["pv"],
    ),
    info("events", "event", "Event", "", true, &["ev"]),
    info("nodes", "node", "Node", "", false, &["no"]),
    info("endpoints", "endpoints", "Endpoints", "", true, &["ep"]),
    info("statefulsets", "statefulset", "StatefulSet", "apps", true, &["sts"]),
    info(
        "controllerrevisions",
        "controllerrevision",
        "ControllerRevision",
        "apps",
        true,
        &[],
    ),
    // A view of the core Events (see `events_view`): the same objects, with the newer field names.
    info("events", "event", "Event", "events.k8s.io", true, &["ev"]),
    // The node's heartbeat (`kubectl describe node` shows it).
    info("leases", "lease", "Lease", "coordination.k8s.io", true, &[]),
    info(
        "storageclasses",
        "storageclass",
        "StorageClass",
        "storage.k8s.io",
        false,
        &["sc"],
    ),
];

/// Subresources listed in discovery: (parent plural, subresource, kind, verbs).
pub const SUBRESOURCES: &[(&str, &str, &str, &[&str])] = &[
    ("pods", "log", "Pod", &["get"]),
    ("pods", "exec", "PodExecOptions", &["create", "get"]),
    ("pods", "portforward", "PodPortForwardOptions", &["create", "get"]),
    ("pods", "status", "Pod", &["get", "patch", "update"]),
    ("statefulsets", "status", "StatefulSet", &["get", "patch", "update"]),
    ("statefulsets", "scale", "Scale", &["get", "patch", "update"]),
    ("namespaces", "status", "Namespace", &["get", "patch", "update"]),
    (
        "persistentvolumeclaims",
        "status",
        "PersistentVolumeClaim",
        &["get", "patch", "update"],
    ),
];

pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub fn by_plural(plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|info| info.plural == plural)
}

/// The resource served at `group`/`version` with this plural.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|info| info.group == group && info.version == version && info.plural == plural)
}

/// The API groups besides core, each with its only version.
pub const GROUPS: &[(&str, &str)] = &[
    ("apps", "v1"),
    ("storage.k8s.io", "v1"),
    ("events.k8s.io", "v1"),
    ("coordination.k8s.io", "v1"),
];

/// The categories discovery lists for a resource, as a real server does (`kubectl get all` expands `all` to
/// the resources in that category; ConfigMaps, Secrets, claims and Events are not in it).
pub fn categories(info: &ResourceInfo) -> &'static [&'static str] {
    match (info.group, info.plural) {
        ("", "pods" | "services") | ("apps", "statefulsets") => &["all"],
        _ => &[],
    }
}

/// The verbs a resource accepts: events.k8s.io Events are served read-only here (a view of the core Events).
pub fn verbs(info: &ResourceInfo) -> &'static [&'static str] {
    if is_events_view(info) {
        &["get", "list", "watch"]
    } else {
        VERBS
    }
}

/// events.k8s.io/v1 Events: stored as core Events, shown with the events.k8s.io field names.
pub fn is_events_view(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io"
}
