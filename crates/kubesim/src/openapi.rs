//! The OpenAPI documents of the served resources (`/openapi/v2`, `/openapi/v3` and its group-version documents), and
//! the field checks a real API server makes with them (`fieldValidation`, server-side apply's typed patch).
//!
//! The schemas are the Kubernetes definitions `k8s-openapi` is generated from (its `schemars` output: types,
//! formats, required fields, documentation). The list and strategic-merge markers (`x-kubernetes-patch-merge-key`,
//! `x-kubernetes-patch-strategy`, `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`), which `k8s-openapi`
//! does not carry, come from the upstream comments kept in the `k8s-pb` sources (see build.rs). kubectl reads
//! `x-kubernetes-group-version-kind` to map kinds to schemas and the PATCH operations' parameters to decide that
//! the server validates fields itself.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::Resource;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::api::KUBERNETES_VERSION;
use crate::protobuf;
use crate::resources::{RESOURCES, ResourceInfo};
use crate::status::{ApiError, json_response};

/// `{"io.k8s.api.core.v1.PodSpec": {"containers": {"patchMergeKey": "name", ...}}}`, with Rust field names.
const MARKERS: &str = include_str!(concat!(env!("OUT_DIR"), "/markers.json"));

/// The served documents, built once.
pub struct Documents {
    /// `/openapi/v2`.
    pub v2: Value,
    /// `/openapi/v3/<group-version path>` (`api/v1`, `apis/apps/v1`) to its document.
    pub v3: BTreeMap<String, Value>,
    /// `/openapi/v3`.
    pub v3_index: Value,
    /// Every definition, as in the v2 document (references `#/definitions/...`).
    definitions: Map<String, Value>,
}

pub static DOCUMENTS: LazyLock<Documents> = LazyLock::new(build);

/// A kind kubesim may serve, with its k8s-openapi type.
struct Kind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    name: fn() -> Cow<'static, str>,
    add: fn(&mut SchemaGenerator),
}

fn kind<T: JsonSchema + Resource>() -> Kind {
    fn add<T: JsonSchema>(generator: &mut SchemaGenerator) {
        generator.subschema_for::<T>();
    }
    Kind {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        name: T::schema_name,
        add: add::<T>,
    }
}

/// The k8s-openapi types of the kinds kubesim serves or may serve.
fn kinds() -> [Kind; 15] {
    use k8s_openapi::api::{apps, coordination, core, events, storage};
    [
        kind::<core::v1::Namespace>(),
        kind::<core::v1::Service>(),
        kind::<core::v1::Secret>(),
        kind::<core::v1::ConfigMap>(),
        kind::<core::v1::Pod>(),
        kind::<core::v1::PersistentVolumeClaim>(),
        kind::<core::v1::PersistentVolume>(),
        kind::<core::v1::Event>(),
        kind::<core::v1::Node>(),
        kind::<core::v1::Endpoints>(),
        kind::<apps::v1::StatefulSet>(),
        kind::<apps::v1::ControllerRevision>(),
        kind::<storage::v1::StorageClass>(),
        kind::<events::v1::Event>(),
        kind::<coordination::v1::Lease>(),
    ]
}

fn kind_of(info: &ResourceInfo) -> Option<Kind> {
    kinds()
        .into_iter()
        .find(|kind| kind.group == info.group && kind.version == info.version && kind.kind == info.kind)
}

/// The definitions reachable from the served resources of one group-version (of all for `None`), each resource's
/// definition with its group-version-kind, and the list and patch markers added.
fn definitions(group_version: Option<(&str, &str)>) -> (Map<String, Value>, Vec<(&'static ResourceInfo, String)>) {
    let mut generator = SchemaSettings::draft07()
        .with(|settings| {
            settings.transforms.clear();
            settings.meta_schema = None;
        })
        .into_generator();
    let mut served = Vec::new();
    for info in RESOURCES {
        if group_version.is_some_and(|(group, version)| info.group != group || info.version != version) {
            continue;
        }
        if let Some(kind) = kind_of(info) {
            (kind.add)(&mut generator);
            served.push((info, (kind.name)().into_owned()));
        }
    }
    let mut definitions = generator.take_definitions(false);
    let markers: Map<String, Value> = serde_json::from_str(MARKERS).unwrap_or_default();
    for (name, schema) in definitions.iter_mut() {
        if let Some(fields) = markers.get(name).and_then(Value::as_object) {
            add_markers(schema, fields);
        }
    }
    for (info, name) in &served {
        if let Some(schema) = definitions.get_mut(name) {
            schema["x-kubernetes-group-version-kind"] =
                json!([{ "group": info.group, "kind": info.kind, "version": info.version }]);
        }
    }
    (definitions, served)
}

/// `host_ip` and `hostIP` name the same field.
fn same_field(rust_name: &str, json_name: &str) -> bool {
    rust_name.replace('_', "").eq_ignore_ascii_case(json_name)
}

fn add_markers(schema: &mut Value, fields: &Map<String, Value>) {
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (property, property_schema) in properties.iter_mut() {
        let Some(marks) = fields
            .iter()
            .find(|(rust_name, _)| same_field(rust_name, property))
            .and_then(|(_, marks)| marks.as_object())
        else {
            continue;
        };
        for (marker, extension) in [
            ("patchMergeKey", "x-kubernetes-patch-merge-key"),
            ("patchStrategy", "x-kubernetes-patch-strategy"),
            ("listType", "x-kubernetes-list-type"),
            ("listMapKeys", "x-kubernetes-list-map-keys"),
        ] {
            if let Some(value) = marks.get(marker) {
                property_schema[extension] = value.clone();
            }
        }
    }
}

fn build() -> Documents {
    let (mut definitions, served) = definitions(None);
    for schema in definitions.values_mut() {
        rewrite_references(schema, "#/definitions/", false);
    }
    let mut v2_paths = Map::new();
    for (info, name) in &served {
        add_paths(&mut v2_paths, info, &format!("#/definitions/{name}"), false);
    }
    let v2 = json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": kubernetes_version() },
        "paths": v2_paths,
        "definitions": definitions,
    });
    let mut v3 = BTreeMap::new();
    let mut group_versions: Vec<(&str, &str)> = RESOURCES.iter().map(|info| (info.group, info.version)).collect();
    group_versions.sort_unstable();
    group_versions.dedup();
    for (group, version) in group_versions {
        let (mut schemas, served) = self::definitions(Some((group, version)));
        if served.is_empty() {
            continue;
        }
        for schema in schemas.values_mut() {
            rewrite_references(schema, "#/components/schemas/", true);
        }
        let mut paths = Map::new();
        for (info, name) in &served {
            add_paths(&mut paths, info, &format!("#/components/schemas/{name}"), true);
        }
        v3.insert(
            group_version_path(group, version),
            json!({
                "openapi": "3.0.0",
                "info": { "title": "Kubernetes", "version": kubernetes_version() },
                "paths": paths,
                "components": { "schemas": schemas },
            }),
        );
    }
    let v3_index = index(&v3);
    Documents {
        v2,
        v3,
        v3_index,
        definitions,
    }
}

fn kubernetes_version() -> String {
    let (major, minor) = KUBERNETES_VERSION;
    format!("v{major}.{minor}.0")
}

/// `api/v1` or `apis/apps/v1`: the key of a group-version in the v3 index.
pub fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Points references at `prefix`; in v3 a reference with siblings (a description) becomes `allOf: [ref]`, as the
/// upstream v3 documents write it.
fn rewrite_references(schema: &mut Value, prefix: &str, v3: bool) {
    match schema {
        Value::Object(fields) => {
            if let Some(Value::String(reference)) = fields.get_mut("$ref") {
                let name = reference.rsplit('/').next().unwrap_or_default().to_string();
                *reference = format!("{prefix}{name}");
                if v3 && fields.len() > 1 {
                    let reference = fields.remove("$ref").unwrap_or_default();
                    fields.insert("allOf".into(), json!([{ "$ref": reference }]));
                }
            }
            for value in fields.values_mut() {
                rewrite_references(value, prefix, v3);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|value| rewrite_references(value, prefix, v3)),
        _ => {}
    }
}

/// The patch types the server takes.
const PATCH_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// The collection and item paths of one resource with the operations the server serves. Each operation names its
/// group-version-kind, and the writes list `dryRun`, `fieldManager` and `fieldValidation` (kubectl looks for the
/// last in the PATCH operation to decide to leave field validation to the server).
fn add_paths(paths: &mut Map<String, Value>, info: &ResourceInfo, reference: &str, v3: bool) {
    let base = format!("/{}", group_version_path(info.group, info.version));
    let collection = if info.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", info.plural)
    } else {
        format!("{base}/{}", info.plural)
    };
    let item = format!("{collection}/{{name}}");
    let gvk = json!({ "group": info.group, "version": info.version, "kind": info.kind });
    let query = |name: &str| {
        if v3 {
            json!({ "name": name, "in": "query", "schema": { "type": "string", "uniqueItems": true } })
        } else {
            json!({ "name": name, "in": "query", "type": "string", "uniqueItems": true })
        }
    };
    let response = if v3 {
        json!({ "200": { "description": "OK", "content": { "application/json": { "schema": { "$ref": reference } } } } })
    } else {
        json!({ "200": { "description": "OK", "schema": { "$ref": reference } } })
    };
    let operation = |action: &str, writes: bool, extra: &[&str]| {
        let mut parameters: Vec<Value> = Vec::new();
        if writes {
            parameters.extend(["dryRun", "fieldManager", "fieldValidation"].map(query));
        }
        parameters.extend(extra.iter().map(|name| query(name)));
        let operation_id = format!("{action}{}", info.kind);
        let mut operation = json!({
            "operationId": operation_id,
            "parameters": parameters,
            "responses": response,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        });
        // The bodies a write takes: kubectl apply computes a strategic merge patch from these documents only
        // when the PATCH operation says it takes one.
        let media_types: &[&str] = match action {
            "patch" => &PATCH_TYPES,
            "post" | "put" => &["application/json", protobuf::CONTENT_TYPE],
            _ => &[],
        };
        if !media_types.is_empty() {
            if v3 {
                let body_schema = if action == "patch" {
                    json!({ "type": "object" })
                } else {
                    json!({ "$ref": reference })
                };
                let content: Map<String, Value> = media_types
                    .iter()
                    .map(|media| (media.to_string(), json!({ "schema": body_schema })))
                    .collect();
                operation["requestBody"] = json!({ "content": content, "required": true });
            } else {
                operation["consumes"] = json!(media_types);
            }
        }
        operation
    };
    let mut path_parameters = vec![json!({ "name": "name", "in": "path", "required": true })];
    if info.namespaced {
        path_parameters.push(json!({ "name": "namespace", "in": "path", "required": true }));
    }
    for parameter in &mut path_parameters {
        if v3 {
            parameter["schema"] = json!({ "type": "string", "uniqueItems": true });
        } else {
            parameter["type"] = json!("string");
        }
    }
    let collection_parameters: Vec<Value> = path_parameters.iter().skip(1).cloned().collect();
    paths.insert(
        collection,
        json!({
            "get": operation("list", false, &["labelSelector", "fieldSelector", "watch"]),
            "post": operation("post", true, &[]),
            "parameters": collection_parameters,
        }),
    );
    paths.insert(
        item,
        json!({
            "get": operation("get", false, &[]),
            "put": operation("put", true, &[]),
            "patch": operation("patch", true, &["force"]),
            "delete": operation("delete", false, &["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
            "parameters": path_parameters,
        }),
    );
}

/// The `/openapi/v3` index: each group-version's document path with a hash of its content.
fn index(documents: &BTreeMap<String, Value>) -> Value {
    let paths: Map<String, Value> = documents
        .iter()
        .map(|(path, document)| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            document.to_string().hash(&mut hasher);
            let url = format!("/openapi/v3/{path}?hash={:016X}", hasher.finish());
            (path.clone(), json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

/// The definition name of a served resource's kind (`io.k8s.api.core.v1.ConfigMap`).
pub fn definition_name(info: &ResourceInfo) -> Option<String> {
    kind_of(info).map(|kind| (kind.name)().into_owned())
}

/// The definition of a served resource's kind.
pub fn definition_schema(info: &ResourceInfo) -> Option<&'static Value> {
    DOCUMENTS.definitions.get(&definition_name(info)?)
}

/// The JSON name of the property of `definition` a Rust field (`host_ip`) stands for (`hostIP`).
pub fn property_name(definition: &str, rust_name: &str) -> Option<String> {
    DOCUMENTS.definitions.get(definition)?["properties"]
        .as_object()?
        .keys()
        .find(|property| same_field(rust_name, property))
        .cloned()
}

/// How an unknown field's path is written: strict decoding (`spec.containers[0].foo`) or server-side apply's
/// typed patch (`.spec.containers[name="mysql"].foo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathStyle {
    Decoding,
    Apply,
}

/// A field of an object its kind's schema does not declare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownField {
    /// As the server's messages write it.
    pub path: String,
    /// Where it is, to drop it.
    pub pointer: String,
}

/// The fields of `object` its kind's schema does not declare, in document order.
pub fn unknown_fields(info: &ResourceInfo, object: &Value, style: PathStyle) -> Vec<UnknownField> {
    let mut unknown = Vec::new();
    if let Some(schema) = definition_schema(info) {
        walk(schema, object, ("", ""), style, &mut unknown);
    }
    unknown
}

/// A schema with its reference followed.
pub fn resolve(schema: &Value) -> &Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap_or_default();
            DOCUMENTS.definitions.get(name).unwrap_or(&Value::Null)
        }
        None => schema,
    }
}

fn pointer_segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn walk(schema: &Value, value: &Value, (path, pointer): (&str, &str), style: PathStyle, out: &mut Vec<UnknownField>) {
    let schema = resolve(schema);
    match value {
        Value::Object(fields) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, child) in fields {
                    let child_path = match (style, path.is_empty()) {
                        (PathStyle::Decoding, true) => key.clone(),
                        _ => format!("{path}.{key}"),
                    };
                    let child_pointer = format!("{pointer}/{}", pointer_segment(key));
                    match properties.get(key) {
                        Some(child_schema) => walk(child_schema, child, (&child_path, &child_pointer), style, out),
                        None => out.push(UnknownField {
                            path: child_path,
                            pointer: child_pointer,
                        }),
                    }
                }
            } else if let Some(values) = schema.get("additionalProperties").filter(|values| values.is_object()) {
                for (key, child) in fields {
                    let child_pointer = format!("{pointer}/{}", pointer_segment(key));
                    walk(values, child, (&format!("{path}[{key}]"), &child_pointer), style, out);
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = schema.get("items") else { return };
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (index, item) in items.iter().enumerate() {
                let element = match style {
                    PathStyle::Apply if !keys.is_empty() => {
                        let parts: Vec<String> = keys
                            .iter()
                            .filter_map(|key| item.get(*key).map(|value| format!("{key}={value}")))
                            .collect();
                        format!("[{}]", parts.join(","))
                    }
                    _ => format!("[{index}]"),
                };
                let child_pointer = format!("{pointer}/{index}");
                walk(
                    item_schema,
                    item,
                    (&format!("{path}{element}"), &child_pointer),
                    style,
                    out,
                );
            }
        }
        _ => {}
    }
}

/// The `fieldValidation` of a write: unknown fields are dropped (`Ignore`), dropped with a warning (`Warn`, the
/// default) or refused (`Strict`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn from_query(value: Option<&str>) -> FieldValidation {
        match value {
            Some("Ignore") => FieldValidation::Ignore,
            Some("Strict") => FieldValidation::Strict,
            _ => FieldValidation::Warn,
        }
    }
}

/// The unknown fields of a decoded body or a patched object: refused in `Strict` mode with the strict decoding
/// error (`context` leads the message as the server's decoder words it), else dropped from `object` and returned
/// as warnings (`unknown field "spec.foo"`).
pub fn check_fields(
    info: &ResourceInfo,
    object: &mut Value,
    mode: FieldValidation,
    context: &str,
) -> Result<Vec<String>, ApiError> {
    let unknown = unknown_fields(info, object, PathStyle::Decoding);
    let messages: Vec<String> = unknown
        .iter()
        .map(|field| format!("unknown field \"{}\"", field.path))
        .collect();
    if mode == FieldValidation::Strict && !messages.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{context}strict decoding error: {}",
            messages.join(", ")
        )));
    }
    for field in unknown.iter().rev() {
        // Dropped, as a real server drops what it does not know; a field found there is always removable.
        let _ = crate::api::json_pointer_remove(object, &field.pointer);
    }
    Ok(if mode == FieldValidation::Warn {
        messages
    } else {
        Vec::new()
    })
}

/// The prefix of a strict decoding error for a body the server decodes as a whole (create, update).
pub fn decoding_context(info: &ResourceInfo) -> String {
    format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: ",
        kind = info.kind,
        version = info.version
    )
}

/// Server-side apply refuses an applied configuration with fields its schema does not declare, whatever the
/// `fieldValidation`, with the typed-patch error a real server answers (a 500 without a reason).
pub fn check_applied(info: &ResourceInfo, namespace: &str, name: &str, applied: &Value) -> Result<(), ApiError> {
    let unknown = unknown_fields(info, applied, PathStyle::Apply);
    let Some(first) = unknown.first() else { return Ok(()) };
    let gvk = format!("{}/{}, Kind={}", info.group, info.version, info.kind);
    Err(ApiError {
        code: 500,
        reason: "",
        message: format!(
            "failed to create typed patch object ({namespace}/{name}; {gvk}): {}: field not declared in schema",
            first.path
        ),
        details: Box::default(),
    })
}

/// `response` with one `Warning: 299 - "..."` header per warning, as kubectl prints them.
pub fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let text = format!("299 - {}", serde_json::to_string(warning).unwrap_or_default());
        if let Ok(value) = header::HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

/// Answers `/openapi/<path>` (`v2`, `v3`, `v3/apis/apps/v1`) in JSON; a client that accepts only the protobuf
/// encoding of these documents gets 406 Not Acceptable (kubesim does not encode them in protobuf).
pub fn serve(path: &str, headers: &HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let takes_json = accept.trim().is_empty()
        || accept.split(',').any(|media| {
            let media = media.split(';').next().unwrap_or_default().trim();
            matches!(media, "application/json" | "application/*" | "*/*")
        });
    let document = match path {
        "v2" => Some(&DOCUMENTS.v2),
        "v3" => Some(&DOCUMENTS.v3_index),
        _ => path
            .strip_prefix("v3/")
            .and_then(|group_version| DOCUMENTS.v3.get(group_version)),
    };
    let Some(document) = document else {
        return ApiError::unknown_path().into_response();
    };
    if !takes_json {
        return ApiError {
            code: 406,
            reason: "NotAcceptable",
            message: "only the following media types are accepted: application/json".into(),
            details: Box::default(),
        }
        .into_response();
    }
    json_response(StatusCode::OK, document)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{by_plural, lookup};

    fn v3(path: &str) -> &'static Value {
        DOCUMENTS
            .v3
            .get(path)
            .unwrap_or_else(|| panic!("no v3 document for {path}"))
    }

    #[test]
    fn every_served_resource_has_a_schema_with_its_group_version_kind() {
        for info in RESOURCES {
            let name = (kind_of(info)
                .unwrap_or_else(|| panic!("no schema for {}", info.kind))
                .name)();
            let document = v3(&group_version_path(info.group, info.version));
            let schema = &document["components"]["schemas"][name.as_ref()];
            assert_eq!(
                schema["x-kubernetes-group-version-kind"],
                json!([{ "group": info.group, "kind": info.kind, "version": info.version }]),
                "{name}"
            );
            assert_eq!(
                DOCUMENTS.v2["definitions"][name.as_ref()],
                definition_schema(info).cloned().unwrap()
            );
        }
        let index = &DOCUMENTS.v3_index;
        for path in ["api/v1", "apis/apps/v1", "apis/storage.k8s.io/v1"] {
            let url = index["paths"][path]["serverRelativeURL"].as_str().unwrap();
            assert!(url.starts_with(&format!("/openapi/v3/{path}?hash=")), "{url}");
        }
    }

    #[test]
    fn schemas_carry_the_upstream_documentation_and_patch_markers() {
        let apps = &v3("apis/apps/v1")["components"]["schemas"];
        let service_name = &apps["io.k8s.api.apps.v1.StatefulSetSpec"]["properties"]["serviceName"];
        assert!(
            service_name["description"]
                .as_str()
                .unwrap()
                .starts_with("serviceName is the name of the service that governs this StatefulSet."),
            "{service_name}"
        );
        let containers = &apps["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        let ports = &apps["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
        let volumes = &apps["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
        assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
        // v3 writes a documented reference as allOf, v2 keeps the reference beside the description.
        let template = &apps["io.k8s.api.apps.v1.StatefulSetSpec"]["properties"]["template"];
        assert_eq!(
            template["allOf"],
            json!([{ "$ref": "#/components/schemas/io.k8s.api.core.v1.PodTemplateSpec" }])
        );
        let v2_template = &DOCUMENTS.v2["definitions"]["io.k8s.api.apps.v1.StatefulSetSpec"]["properties"]["template"];
        assert_eq!(v2_template["$ref"], "#/definitions/io.k8s.api.core.v1.PodTemplateSpec");
        // The core group-version document does not carry apps types it does not need.
        assert!(v3("api/v1")["components"]["schemas"]["io.k8s.api.apps.v1.StatefulSet"].is_null());
    }

    #[test]
    fn patch_operations_offer_field_validation_for_their_kind() {
        let paths = &v3("apis/apps/v1")["paths"];
        let patch = &paths["/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({ "group": "apps", "version": "v1", "kind": "StatefulSet" })
        );
        let parameters: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|parameter| parameter["in"] == "query")
            .filter_map(|parameter| parameter["name"].as_str())
            .collect();
        assert!(parameters.contains(&"fieldValidation"), "{parameters:?}");
        let namespaces = &v3("api/v1")["paths"]["/api/v1/namespaces/{name}"]["patch"];
        assert_eq!(namespaces["x-kubernetes-action"], "patch");
        // kubectl apply looks for this content type before it computes a strategic merge patch from the schema.
        assert!(namespaces["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object());
    }

    #[test]
    fn unknown_fields_are_named_as_the_decoder_and_server_side_apply_name_them() {
        let statefulsets = by_plural("statefulsets").unwrap();
        let object = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": { "name": "mysql", "labels": { "any": "label" } },
            "spec": {
                "foo": 1,
                "template": { "spec": { "containers": [
                    { "name": "mysql", "image": "mysql", "readinessProbe": { "tcpSocket": { "port": 3306 } } },
                    { "name": "sidecar", "bar": true, "ports": [{ "containerPort": 80, "protocol": "TCP", "baz": 1 }] },
                ] } },
                "volumeClaimTemplates": [{ "spec": { "resources": { "requests": { "storage": "1Gi" } } } }],
            },
        });
        let paths = |style| -> Vec<String> {
            unknown_fields(statefulsets, &object, style)
                .into_iter()
                .map(|field| field.path)
                .collect()
        };
        assert_eq!(
            paths(PathStyle::Decoding),
            [
                "spec.foo",
                "spec.template.spec.containers[1].bar",
                "spec.template.spec.containers[1].ports[0].baz"
            ]
        );
        assert_eq!(
            paths(PathStyle::Apply),
            [
                ".spec.foo",
                ".spec.template.spec.containers[name=\"sidecar\"].bar",
                ".spec.template.spec.containers[name=\"sidecar\"].ports[containerPort=80,protocol=\"TCP\"].baz"
            ]
        );
    }

    #[test]
    fn field_validation_refuses_warns_or_drops() {
        let configmaps = lookup("", "v1", "configmaps").unwrap();
        let body = json!({ "metadata": { "name": "x" }, "data": { "a": "b" }, "spec": { "foo": 1 } });
        let error = check_fields(
            configmaps,
            &mut body.clone(),
            FieldValidation::Strict,
            &decoding_context(configmaps),
        )
        .unwrap_err();
        assert_eq!((error.code, error.reason), (400, "BadRequest"));
        assert_eq!(
            error.message,
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"spec\""
        );
        let mut warned = body.clone();
        let warnings = check_fields(configmaps, &mut warned, FieldValidation::Warn, "").unwrap();
        assert_eq!(warnings, ["unknown field \"spec\""]);
        assert_eq!(warned, json!({ "metadata": { "name": "x" }, "data": { "a": "b" } }));
        let mut ignored = body;
        assert!(
            check_fields(configmaps, &mut ignored, FieldValidation::Ignore, "")
                .unwrap()
                .is_empty()
        );
        assert_eq!(ignored, warned);

        let error = check_applied(configmaps, "database", "x", &json!({ "spec": { "foo": 1 } })).unwrap_err();
        assert_eq!(
            error.message,
            "failed to create typed patch object (database/x; /v1, Kind=ConfigMap): .spec: field not declared in schema"
        );
        assert_eq!(error.code, 500);
        assert!(error.to_json().get("reason").is_none());
    }

    #[test]
    fn documents_are_json_and_protobuf_only_clients_are_told_no() {
        let mut headers = HeaderMap::new();
        assert_eq!(serve("v2", &headers).status(), StatusCode::OK);
        headers.insert(
            header::ACCEPT,
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
                .parse()
                .unwrap(),
        );
        assert_eq!(serve("v2", &headers).status(), StatusCode::NOT_ACCEPTABLE);
        headers.insert(header::ACCEPT, "application/json, */*".parse().unwrap());
        assert_eq!(serve("v3/apis/apps/v1", &headers).status(), StatusCode::OK);
        assert_eq!(serve("v3/apis/batch/v1", &headers).status(), StatusCode::NOT_FOUND);
    }
}
