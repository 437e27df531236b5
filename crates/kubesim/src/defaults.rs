//! What the API server adds to and checks in objects on their way in: defaults and validation.

use serde_json::{Value, json};

use crate::selectors::{LabelSelector, labels_of};
use crate::status::Cause;

/// Fills the fields a real API server defaults, leaving every field the client set alone. Idempotent, so
/// re-applying an unchanged object changes nothing. `next_cluster_ip` hands out Service addresses.
pub fn apply_defaults(resource: &str, object: &mut Value, next_cluster_ip: &mut dyn FnMut() -> String) {
    match resource {
        "namespaces" => {
            let name = object.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
            set_missing(object, &["metadata", "labels", "kubernetes.io/metadata.name"], name);
            set_missing(object, &["spec", "finalizers"], json!(["kubernetes"]));
            set_missing(object, &["status", "phase"], json!("Active"));
        }
        "services" => default_service(object, next_cluster_ip),
        "secrets" => {
            set_missing(object, &["type"], json!("Opaque"));
            fold_string_data(object);
        }
        "pods" => {
            if let Some(spec) = object.get_mut("spec") {
                default_pod_spec(spec);
                default_pod_only(spec);
            }
            set_missing(object, &["status", "phase"], json!("Pending"));
            let qos_class = object.get("spec").map_or("BestEffort", qos_class);
            set_missing(object, &["status", "qosClass"], json!(qos_class));
        }
        "persistentvolumes" => {
            set_missing(object, &["spec", "persistentVolumeReclaimPolicy"], json!("Retain"));
            set_missing(object, &["spec", "volumeMode"], json!("Filesystem"));
            set_missing(object, &["status", "phase"], json!("Pending"));
        }
        "storageclasses" => {
            set_missing(object, &["reclaimPolicy"], json!("Delete"));
            set_missing(object, &["volumeBindingMode"], json!("Immediate"));
        }
        "persistentvolumeclaims" => {
            set_missing(object, &["spec", "volumeMode"], json!("Filesystem"));
            set_missing(object, &["status", "phase"], json!("Pending"));
        }
        "statefulsets" => default_statefulset(object),
        _ => {}
    }
}

fn default_service(object: &mut Value, next_cluster_ip: &mut dyn FnMut() -> String) {
    set_missing(object, &["spec", "type"], json!("ClusterIP"));
    set_missing(object, &["spec", "sessionAffinity"], json!("None"));
    if object.pointer("/spec/sessionAffinity") == Some(&json!("ClientIP")) {
        set_missing(
            object,
            &["spec", "sessionAffinityConfig", "clientIP", "timeoutSeconds"],
            json!(10800),
        );
    }
    let service_type = object["spec"]["type"].as_str().unwrap_or_default().to_string();
    if matches!(service_type.as_str(), "NodePort" | "LoadBalancer") {
        set_missing(object, &["spec", "externalTrafficPolicy"], json!("Cluster"));
    }
    if service_type == "LoadBalancer" {
        set_missing(object, &["spec", "allocateLoadBalancerNodePorts"], json!(true));
    }
    // An ExternalName Service is a DNS alias: no address, no address families, no traffic policy.
    if service_type != "ExternalName" {
        default_service_address(object, next_cluster_ip);
    }
    if let Some(ports) = object.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for port in ports {
            set_missing(port, &["protocol"], json!("TCP"));
            let number = port.get("port").cloned().unwrap_or(Value::Null);
            set_missing(port, &["targetPort"], number);
        }
    }
    set_missing(object, &["status", "loadBalancer"], json!({}));
}

/// The ClusterIP (allocated unless the client chose one or `None`), its families and the internal traffic policy.
fn default_service_address(object: &mut Value, next_cluster_ip: &mut dyn FnMut() -> String) {
    if object
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        object["spec"]["clusterIP"] = json!(next_cluster_ip());
    }
    let cluster_ip = object["spec"]["clusterIP"].clone();
    set_missing(object, &["spec", "clusterIPs"], json!([cluster_ip]));
    set_missing(object, &["spec", "ipFamilies"], json!(["IPv4"]));
    set_missing(object, &["spec", "ipFamilyPolicy"], json!("SingleStack"));
    set_missing(object, &["spec", "internalTrafficPolicy"], json!("Cluster"));
}

/// `stringData` is write-only: the API server folds it into base64 `data`.
fn fold_string_data(object: &mut Value) {
    let Some(Value::Object(string_data)) = object.as_object_mut().and_then(|fields| fields.remove("stringData")) else {
        return;
    };
    if !object.get("data").is_some_and(Value::is_object) {
        object["data"] = json!({});
    }
    for (key, value) in string_data {
        let text = match value {
            Value::String(text) => text,
            other => other.to_string(),
        };
        object["data"][key] = json!(base64(text.as_bytes()));
    }
}

pub fn default_pod_spec(spec: &mut Value) {
    set_missing(spec, &["restartPolicy"], json!("Always"));
    set_missing(spec, &["terminationGracePeriodSeconds"], json!(30));
    set_missing(spec, &["dnsPolicy"], json!("ClusterFirst"));
    set_missing(spec, &["schedulerName"], json!("default-scheduler"));
    set_missing(spec, &["securityContext"], json!({}));
    for list in ["initContainers", "containers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for container in containers {
                let image = container.get("image").and_then(Value::as_str).unwrap_or_default();
                let pull_policy = if image_tag(image) == "latest" {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                set_missing(container, &["imagePullPolicy"], json!(pull_policy));
                set_missing(container, &["terminationMessagePath"], json!("/dev/termination-log"));
                set_missing(container, &["terminationMessagePolicy"], json!("File"));
                set_missing(container, &["resources"], json!({}));
                if let Some(ports) = container.get_mut("ports").and_then(Value::as_array_mut) {
                    for port in ports {
                        set_missing(port, &["protocol"], json!("TCP"));
                    }
                }
                for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                    if let Some(probe) = container.get_mut(probe).filter(|probe| probe.is_object()) {
                        default_probe(probe);
                    }
                }
                if let Some(env) = container.get_mut("env").and_then(Value::as_array_mut) {
                    for variable in env {
                        if let Some(field_ref) = variable.pointer_mut("/valueFrom/fieldRef") {
                            set_missing(field_ref, &["apiVersion"], json!("v1"));
                        }
                    }
                }
            }
        }
    }
    if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for volume in volumes {
            default_volume(volume);
        }
    }
}

/// Probe timings and HTTP probe defaults (`SetDefaults_Probe`, `SetDefaults_HTTPGetAction`).
fn default_probe(probe: &mut Value) {
    set_missing(probe, &["timeoutSeconds"], json!(1));
    set_missing(probe, &["periodSeconds"], json!(10));
    set_missing(probe, &["successThreshold"], json!(1));
    set_missing(probe, &["failureThreshold"], json!(3));
    if let Some(http_get) = probe.get_mut("httpGet").filter(|action| action.is_object()) {
        set_missing(http_get, &["path"], json!("/"));
        set_missing(http_get, &["scheme"], json!("HTTP"));
    }
}

/// Volume sources that project files get mode 0644 (420), downward API fields their API version.
fn default_volume(volume: &mut Value) {
    for source in ["secret", "configMap", "projected", "downwardAPI"] {
        if let Some(source) = volume.get_mut(source).filter(|source| source.is_object()) {
            set_missing(source, &["defaultMode"], json!(420));
        }
    }
    if let Some(items) = volume.pointer_mut("/downwardAPI/items").and_then(Value::as_array_mut) {
        for item in items {
            if let Some(field_ref) = item.get_mut("fieldRef") {
                set_missing(field_ref, &["apiVersion"], json!("v1"));
            }
        }
    }
}

/// Defaults of pods that pod templates do not get (`SetDefaults_Pod`): service links on, and requests equal to
/// the limits where only limits are set.
fn default_pod_only(spec: &mut Value) {
    set_missing(spec, &["enableServiceLinks"], json!(true));
    for list in ["initContainers", "containers"] {
        for container in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(limits) = container
                .pointer("/resources/limits")
                .and_then(Value::as_object)
                .cloned()
            else {
                continue;
            };
            for (resource, quantity) in limits {
                set_missing(container, &["resources", "requests", resource.as_str()], quantity);
            }
        }
    }
}

/// The pod's quality-of-service class from its containers' requests and limits: Guaranteed when every container
/// limits cpu and memory with requests equal to the limits, BestEffort when none asks for anything, else Burstable.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|list| spec.get(*list).and_then(Value::as_array))
        .flatten()
        .collect();
    let resources = |container: &Value, kind: &str| -> serde_json::Map<String, Value> {
        container
            .pointer(&format!("/resources/{kind}"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let asks_nothing = containers
        .iter()
        .all(|container| resources(container, "requests").is_empty() && resources(container, "limits").is_empty());
    if asks_nothing {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|container| {
        let (requests, limits) = (resources(container, "requests"), resources(container, "limits"));
        ["cpu", "memory"].iter().all(|name| {
            limits.contains_key(*name)
                && requests
                    .get(*name)
                    .is_none_or(|request| Some(request) == limits.get(*name))
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

fn image_tag(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split_once(':').map(|(_, tag)| tag).unwrap_or("latest")
}

fn default_statefulset(object: &mut Value) {
    set_missing(object, &["spec", "replicas"], json!(1));
    set_missing(object, &["spec", "podManagementPolicy"], json!("OrderedReady"));
    set_missing(object, &["spec", "updateStrategy", "type"], json!("RollingUpdate"));
    if object.pointer("/spec/updateStrategy/type") == Some(&json!("RollingUpdate")) {
        set_missing(
            object,
            &["spec", "updateStrategy", "rollingUpdate", "partition"],
            json!(0),
        );
    }
    // A StatefulSet without labels takes its pod template's.
    if object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .is_none_or(serde_json::Map::is_empty)
        && let Some(labels) = object.pointer("/spec/template/metadata/labels").cloned()
    {
        object["metadata"]["labels"] = labels;
    }
    set_missing(
        object,
        &["spec", "revisionHistoryLimit"],
        json!(crate::revisions::DEFAULT_HISTORY_LIMIT),
    );
    set_missing(
        object,
        &["spec", "persistentVolumeClaimRetentionPolicy"],
        json!({ "whenDeleted": "Retain", "whenScaled": "Retain" }),
    );
    if let Some(spec) = object.pointer_mut("/spec/template/spec") {
        default_pod_spec(spec);
    }
    if let Some(templates) = object
        .pointer_mut("/spec/volumeClaimTemplates")
        .and_then(Value::as_array_mut)
    {
        for template in templates {
            set_missing(template, &["apiVersion"], json!("v1"));
            set_missing(template, &["kind"], json!("PersistentVolumeClaim"));
            set_missing(template, &["spec", "volumeMode"], json!("Filesystem"));
            set_missing(template, &["status", "phase"], json!("Pending"));
        }
    }
    set_missing(object, &["status", "replicas"], json!(0));
    set_missing(object, &["status", "availableReplicas"], json!(0));
}

/// Sets `path` to `value` unless something is there already (intermediate maps are created).
pub fn set_missing(object: &mut Value, path: &[&str], value: Value) {
    let mut current = object;
    for (index, key) in path.iter().enumerate() {
        if !current.is_object() {
            return;
        }
        let fields = current.as_object_mut().expect("checked to be an object");
        if index == path.len() - 1 {
            if fields.get(*key).is_none_or(Value::is_null) {
                fields.insert((*key).to_string(), value);
            }
            return;
        }
        current = fields.entry((*key).to_string()).or_insert_with(|| json!({}));
    }
}

/// Standard base64 with padding, as Secret `data` holds.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn cause(reason: &str, field: &str, message: impl Into<String>) -> Cause {
    Cause {
        reason: reason.into(),
        message: message.into(),
        field: field.into(),
    }
}

const SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn is_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_label)
}

/// Problems that make a new object invalid (empty = valid).
pub fn validate_create(resource: &str, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    } else if matches!(resource, "namespaces" | "services") {
        if !is_label(name) {
            causes.push(cause(
                "FieldValueInvalid",
                "metadata.name",
                format!("Invalid value: \"{name}\": {LABEL_MESSAGE}"),
            ));
        }
    } else if !is_subdomain(name) {
        causes.push(cause(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: \"{name}\": {SUBDOMAIN_MESSAGE}"),
        ));
    }
    match resource {
        "pods" => causes.extend(validate_pod_spec(object.get("spec").unwrap_or(&Value::Null), "spec")),
        "statefulsets" => causes.extend(validate_statefulset(object)),
        "services" => causes.extend(validate_cluster_ip(object)),
        _ => {}
    }
    causes
}

fn validate_pod_spec(spec: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(|containers| containers.is_empty()) {
        causes.push(cause(
            "FieldValueRequired",
            &format!("{path}.containers"),
            "Required value",
        ));
    }
    for list in ["initContainers", "containers"] {
        for (index, container) in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            for field in ["name", "image"] {
                if container.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
                    causes.push(cause(
                        "FieldValueRequired",
                        &format!("{path}.{list}[{index}].{field}"),
                        "Required value",
                    ));
                }
            }
        }
    }
    causes
}

/// A ClusterIP the client sets must lie in the Service range, as the API server's allocator requires (the
/// node's Service proxy serves only that range); headless Services ("None") and empty ones (allocated) pass.
fn validate_cluster_ip(object: &Value) -> Vec<Cause> {
    let ip = object
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if ip.is_empty() || ip == "None" {
        return Vec::new();
    }
    let Ok(address) = ip.parse::<std::net::Ipv4Addr>() else {
        return vec![cause(
            "FieldValueInvalid",
            "spec.clusterIPs[0]",
            format!("Invalid value: \"{ip}\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
        )];
    };
    let (network, prefix_len) = crate::proxy::rules::SERVICE_CIDR;
    let mask = u32::MAX << (32 - u32::from(prefix_len));
    if u32::from(address) & mask == u32::from(network) {
        return Vec::new();
    }
    vec![cause(
        "FieldValueInvalid",
        "spec.clusterIPs",
        format!(
            "Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: the provided IP ({ip}) is not in the \
             valid range. The range of valid IPs is {network}/{prefix_len}"
        ),
    )]
}

fn validate_statefulset(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(selector) = object.pointer("/spec/selector") else {
        causes.push(cause("FieldValueRequired", "spec.selector", "Required value"));
        return causes;
    };
    let selector = LabelSelector::from_object(selector);
    let template = object.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    if selector.is_empty() {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.selector",
            "Invalid value: \"null\": empty selector is invalid for statefulset",
        ));
    } else if !selector.matches(&template) {
        let labels = labels_of(&template);
        let shown: Vec<String> = labels.iter().map(|(key, value)| format!("{key:?}:{value:?}")).collect();
        causes.push(cause(
            "FieldValueInvalid",
            "spec.template.metadata.labels",
            format!(
                "Invalid value: map[string]string{{{}}}: `selector` does not match template `labels`",
                shown.join(", ")
            ),
        ));
    }
    causes.extend(validate_pod_spec(
        template.get("spec").unwrap_or(&Value::Null),
        "spec.template.spec",
    ));
    causes
}

/// Problems with changing `old` into `new` (both defaulted).
pub fn validate_update(resource: &str, old: &Value, new: &Value) -> Vec<Cause> {
    match resource {
        "statefulsets" => {
            let mutable = [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ];
            if without(old.get("spec"), &mutable) != without(new.get("spec"), &mutable) {
                return vec![cause(
                    "FieldValueForbidden",
                    "spec",
                    "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', \
                     'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and \
                     'minReadySeconds' are forbidden",
                )];
            }
            validate_statefulset(new)
        }
        "pods" => {
            let strip = |spec: Option<&Value>| {
                let mut spec = spec.cloned().unwrap_or(Value::Null);
                for list in ["initContainers", "containers"] {
                    if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
                        for container in containers {
                            if let Some(fields) = container.as_object_mut() {
                                fields.remove("image");
                            }
                        }
                    }
                }
                without(
                    Some(&spec),
                    &[
                        "activeDeadlineSeconds",
                        "tolerations",
                        "terminationGracePeriodSeconds",
                        "nodeName",
                    ],
                )
            };
            if strip(old.get("spec")) != strip(new.get("spec")) {
                return vec![cause(
                    "FieldValueForbidden",
                    "spec",
                    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,\
                     `spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only \
                     additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set \
                     to 1 if it was previously negative)",
                )];
            }
            Vec::new()
        }
        "persistentvolumeclaims" => {
            let fixed = |spec: Option<&Value>| without(spec, &["resources", "volumeName", "volumeAttributesClassName"]);
            if fixed(old.get("spec")) != fixed(new.get("spec")) {
                return vec![cause(
                    "FieldValueForbidden",
                    "spec",
                    "Forbidden: spec is immutable after creation except resources.requests and \
                     volumeAttributesClassName for bound claims",
                )];
            }
            Vec::new()
        }
        "services" => {
            let old_ip = old.pointer("/spec/clusterIP");
            let new_ip = new.pointer("/spec/clusterIP");
            if old_ip != new_ip {
                return vec![cause(
                    "FieldValueInvalid",
                    "spec.clusterIPs[0]",
                    "Invalid value: field is immutable",
                )];
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

fn without(spec: Option<&Value>, fields: &[&str]) -> Value {
    let mut spec = spec.cloned().unwrap_or(Value::Null);
    if let Some(map) = spec.as_object_mut() {
        for field in fields {
            map.remove(*field);
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b"root"), "cm9vdA==");
        assert_eq!(base64(b"repl"), "cmVwbA==");
        assert_eq!(base64(b"replpass"), "cmVwbHBhc3M=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn secrets_fold_string_data_and_defaults_are_idempotent() {
        let mut secret = json!({ "metadata": { "name": "s" }, "stringData": { "MYSQL_ROOT_PASSWORD": "root" }, "data": { "x": "eA==" } });
        let mut ip = || "10.96.0.10".to_string();
        apply_defaults("secrets", &mut secret, &mut ip);
        assert_eq!(
            secret["data"],
            json!({ "x": "eA==", "MYSQL_ROOT_PASSWORD": "cm9vdA==" })
        );
        assert!(secret.get("stringData").is_none());
        assert_eq!(secret["type"], "Opaque");
        let before = secret.clone();
        apply_defaults("secrets", &mut secret, &mut ip);
        assert_eq!(secret, before);
    }

    fn defaulted(resource: &str, mut object: Value) -> Value {
        let mut ip = || "10.96.0.10".to_string();
        apply_defaults(resource, &mut object, &mut ip);
        let again = object.clone();
        apply_defaults(resource, &mut object, &mut ip);
        assert_eq!(object, again, "defaults are idempotent");
        object
    }

    // The values of pkg/apis/core/v1/defaults.go and pkg/apis/apps/v1/defaults.go (SetDefaults_Probe,
    // SetDefaults_HTTPGetAction, SetDefaults_Container, SetDefaults_PodSpec, SetDefaults_StatefulSet).
    #[test]
    fn statefulset_templates_get_probe_container_and_strategy_defaults() {
        let statefulset = defaulted(
            "statefulsets",
            json!({
                "metadata": { "name": "web" },
                "spec": {
                    "updateStrategy": { "type": "RollingUpdate" },
                    "template": {
                        "metadata": { "labels": { "app": "web" } },
                        "spec": {
                            "containers": [{
                                "name": "web", "image": "nginx",
                                "readinessProbe": { "httpGet": { "port": 80 }, "periodSeconds": 2 },
                                "livenessProbe": { "tcpSocket": { "port": 80 }, "failureThreshold": 6 },
                                "env": [{ "name": "POD", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }],
                            }],
                            "volumes": [{ "name": "config", "configMap": { "name": "web" } }],
                        },
                    },
                },
            }),
        );
        let container = &statefulset["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["readinessProbe"],
            json!({
                "httpGet": { "port": 80, "path": "/", "scheme": "HTTP" },
                "periodSeconds": 2, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3,
            })
        );
        assert_eq!(
            container["livenessProbe"],
            json!({
                "tcpSocket": { "port": 80 },
                "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 6,
            })
        );
        assert_eq!(container["imagePullPolicy"], "Always", "no tag means :latest");
        assert_eq!(container["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(container["terminationMessagePolicy"], "File");
        assert_eq!(container["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        let pod_spec = &statefulset["spec"]["template"]["spec"];
        assert_eq!(pod_spec["volumes"][0]["configMap"]["defaultMode"], 420);
        assert_eq!(
            (
                &pod_spec["restartPolicy"],
                &pod_spec["dnsPolicy"],
                &pod_spec["schedulerName"]
            ),
            (&json!("Always"), &json!("ClusterFirst"), &json!("default-scheduler"))
        );
        assert_eq!(pod_spec["securityContext"], json!({}));
        assert!(
            pod_spec.get("enableServiceLinks").is_none(),
            "a pod default, not a template one"
        );
        assert_eq!(
            statefulset["spec"]["updateStrategy"],
            json!({ "type": "RollingUpdate", "rollingUpdate": { "partition": 0 } })
        );
        assert_eq!(statefulset["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(statefulset["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            statefulset["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({ "whenDeleted": "Retain", "whenScaled": "Retain" })
        );
        assert_eq!(statefulset["metadata"]["labels"], json!({ "app": "web" }));

        let on_delete = defaulted(
            "statefulsets",
            json!({ "spec": { "updateStrategy": { "type": "OnDelete" }, "template": { "spec": { "containers": [] } } } }),
        );
        assert_eq!(on_delete["spec"]["updateStrategy"], json!({ "type": "OnDelete" }));
    }

    #[test]
    fn pods_get_service_links_requests_from_limits_and_their_qos_class() {
        let pod = |resources: Value| {
            defaulted(
                "pods",
                json!({ "spec": { "containers": [{ "name": "c", "image": "mysql:8.4", "resources": resources }] } }),
            )
        };
        let guaranteed = pod(json!({ "limits": { "cpu": "1", "memory": "1Gi" } }));
        assert_eq!(guaranteed["spec"]["enableServiceLinks"], true);
        assert_eq!(guaranteed["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            guaranteed["spec"]["containers"][0]["resources"]["requests"],
            json!({ "cpu": "1", "memory": "1Gi" })
        );
        assert_eq!(guaranteed["status"]["qosClass"], "Guaranteed");
        assert_eq!(
            pod(json!({ "requests": { "cpu": "250m" } }))["status"]["qosClass"],
            "Burstable"
        );
        assert_eq!(pod(json!({}))["status"]["qosClass"], "BestEffort");
    }

    #[test]
    fn services_get_their_type_s_defaults() {
        let node_port = defaulted(
            "services",
            json!({ "spec": { "type": "NodePort", "sessionAffinity": "ClientIP", "ports": [{ "port": 80 }] } }),
        );
        assert_eq!(node_port["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(
            node_port["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10800
        );
        assert_eq!(
            node_port["spec"]["ports"][0],
            json!({ "port": 80, "protocol": "TCP", "targetPort": 80 })
        );
        let alias = defaulted(
            "services",
            json!({ "spec": { "type": "ExternalName", "externalName": "db.example.com" } }),
        );
        assert!(alias["spec"].get("clusterIP").is_none(), "{alias}");
        assert!(alias["spec"].get("internalTrafficPolicy").is_none(), "{alias}");
        let balanced = defaulted("services", json!({ "spec": { "type": "LoadBalancer" } }));
        assert_eq!(balanced["spec"]["allocateLoadBalancerNodePorts"], true);
        let class = defaulted("storageclasses", json!({ "provisioner": "kubesim" }));
        assert_eq!(
            (&class["reclaimPolicy"], &class["volumeBindingMode"]),
            (&json!("Delete"), &json!("Immediate"))
        );
    }

    #[test]
    fn headless_services_keep_none_and_others_get_an_address() {
        let mut counter = 0;
        let mut ip = || {
            counter += 1;
            format!("10.96.0.{counter}")
        };
        let mut headless = json!({ "spec": { "clusterIP": "None", "ports": [{ "port": 3306 }] } });
        apply_defaults("services", &mut headless, &mut ip);
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert_eq!(headless["spec"]["ports"][0]["targetPort"], 3306);
        let mut normal = json!({ "spec": { "ports": [{ "port": 3306 }] } });
        apply_defaults("services", &mut normal, &mut ip);
        assert_eq!(normal["spec"]["clusterIP"], "10.96.0.1");
        assert_eq!(normal["spec"]["clusterIPs"], json!(["10.96.0.1"]));
    }

    #[test]
    fn cluster_ips_set_by_the_client_must_be_in_the_service_range() {
        let service =
            |ip: &str| json!({ "metadata": { "name": "s" }, "spec": { "clusterIP": ip, "ports": [{ "port": 80 }] } });
        for accepted in ["", "None", "10.96.0.10", "10.111.255.254"] {
            assert!(validate_create("services", &service(accepted)).is_empty(), "{accepted}");
        }
        let causes = validate_create("services", &service("10.112.0.1"));
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.clusterIPs");
        assert_eq!(
            causes[0].message,
            "Invalid value: []string{\"10.112.0.1\"}: failed to allocate IP 10.112.0.1: the provided IP (10.112.0.1) \
             is not in the valid range. The range of valid IPs is 10.96.0.0/12"
        );
        let causes = validate_create("services", &service("web"));
        assert_eq!(causes[0].field, "spec.clusterIPs[0]");
    }

    #[test]
    fn statefulset_spec_changes_outside_the_mutable_fields_are_forbidden() {
        let old = json!({ "spec": { "replicas": 2, "serviceName": "mysql-headless", "selector": { "matchLabels": { "app": "mysql" } }, "template": { "metadata": { "labels": { "app": "mysql" } }, "spec": { "containers": [{ "name": "mysql", "image": "mysql:8.0" }] } } } });
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(3);
        assert!(validate_update("statefulsets", &old, &scaled).is_empty());
        let mut renamed = old.clone();
        renamed["spec"]["serviceName"] = json!("other");
        let causes = validate_update("statefulsets", &old, &renamed);
        assert_eq!(causes.len(), 1);
        assert!(
            causes[0]
                .message
                .starts_with("Forbidden: updates to statefulset spec for fields other than 'replicas'")
        );
    }

    #[test]
    fn statefulset_selector_must_match_template_labels() {
        let sts = json!({ "metadata": { "name": "mysql" }, "spec": { "selector": { "matchLabels": { "app": "mysql" } }, "template": { "metadata": { "labels": { "app": "other" } }, "spec": { "containers": [{ "name": "mysql", "image": "mysql:8.0" }] } } } });
        let causes = validate_create("statefulsets", &sts);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
        assert_eq!(
            causes[0].message,
            "Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"
        );
    }

    #[test]
    fn names_are_validated() {
        let causes = validate_create("configmaps", &json!({ "metadata": { "name": "Bad_Name" } }));
        assert_eq!(causes[0].field, "metadata.name");
        assert!(
            causes[0]
                .message
                .starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain")
        );
        assert!(validate_create("configmaps", &json!({ "metadata": { "name": "mysql-0.conf" } })).is_empty());
        assert!(!validate_create("namespaces", &json!({ "metadata": { "name": "a.b" } })).is_empty());
    }
}
