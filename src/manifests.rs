//! The manifests `lab up` applies: embedded, parsed, edited (`--image`, `--replicas`, `--namespace`), rendered.
//!
//! Edits work on the parsed objects, never on the text. Parsing uses serde-saphyr (as kube itself does) with
//! options that keep `yes`, `on` and `0123` as strings, so a value that looks like a boolean or a number in a
//! string field reaches the API server as the text that was written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use kube::api::DynamicObject;
use serde_json::Value;

use crate::exit::{Classify, ExitStatus};
use crate::secret::SecretString;

/// The manifests shipped with `lab`, in apply order.
const EMBEDDED: [(&str, &str); 7] = [
    ("00-namespace.yaml", include_str!("../manifests/00-namespace.yaml")),
    (
        "01-headless-service.yaml",
        include_str!("../manifests/01-headless-service.yaml"),
    ),
    ("02-secret.yaml", include_str!("../manifests/02-secret.yaml")),
    ("03-statefulset.yaml", include_str!("../manifests/03-statefulset.yaml")),
    (
        "04-service-primary.yaml",
        include_str!("../manifests/04-service-primary.yaml"),
    ),
    (
        "05-service-replicas.yaml",
        include_str!("../manifests/05-service-replicas.yaml"),
    ),
    ("06-client-pod.yaml", include_str!("../manifests/06-client-pod.yaml")),
];

/// The StatefulSet's podManagementPolicy values: one pod after the other (the default), or all at once.
pub const ORDERED_READY: &str = "OrderedReady";
pub const PARALLEL: &str = "Parallel";

/// The StatefulSet `lab` sets up, and its database container.
pub const STATEFULSET_NAME: &str = "mysql";
pub const DATABASE_CONTAINER: &str = "mysql";

/// Kinds without a namespace. Everything else gets `metadata.namespace` from [`ManifestSet::with_namespace`].
const CLUSTER_SCOPED_KINDS: &[&str] = &[
    "Namespace",
    "PersistentVolume",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "Node",
];

/// Image names whose containers carry the database client: `with_image` switches them too.
const DATABASE_IMAGE_NAMES: &[&str] = &["mysql", "mariadb"];

/// All manifests, in apply order (file name order).
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestSet {
    pub files: Vec<ManifestFile>,
}

/// One manifest file and the objects it holds, in document order.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestFile {
    pub name: String,
    pub objects: Vec<DynamicObject>,
}

/// A manifest that cannot be read, parsed or edited. Every message names the file (and line) and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The io error is part of the message, not a `source`, so a printed error chain does not repeat it.
    #[error("cannot read the manifests at {}: {error}: check the --manifests path", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error(
        "no manifests in {}: the directory has no *.yaml or *.yml file; point --manifests at a copy of the \
         manifests (`lab render` prints them)",
        dir.display()
    )]
    NoFiles { dir: PathBuf },
    #[error("{file} line {line} column {column}: {message}: fix the YAML (check the indentation of the lines above)")]
    Syntax {
        file: String,
        line: u64,
        column: u64,
        message: String,
    },
    /// A document that parses but is not a usable Kubernetes object.
    #[error("{file} line {line}: {problem}: {fix}")]
    Invalid {
        file: String,
        line: u64,
        problem: String,
        fix: String,
    },
    /// The files together do not make the lab (no StatefulSet mysql, an object defined twice…).
    #[error("{problem}: {fix}")]
    Set { problem: String, fix: String },
    /// A bad `--image`, `--replicas` or `--namespace` value.
    #[error("{problem}: {fix}")]
    Usage { problem: String, fix: String },
}

impl Classify for ManifestError {
    fn exit_status(&self) -> ExitStatus {
        // Every manifest problem is the user's configuration: nothing was sent to the cluster yet.
        ExitStatus::Usage
    }
}

impl ManifestSet {
    /// The manifests shipped in the binary.
    pub fn embedded() -> ManifestSet {
        let files = EMBEDDED
            .iter()
            .map(|(name, text)| parse_file(name, text))
            .collect::<Result<Vec<_>, _>>()
            .and_then(validate_set)
            .expect("the embedded manifests are valid: checked by the unit tests");
        ManifestSet { files }
    }

    /// Every `*.yaml` and `*.yml` file of `dir`, in file name order (`00-…` before `01-…`).
    pub fn from_dir(dir: &Path) -> Result<ManifestSet, ManifestError> {
        let read_error = |error| ManifestError::Read {
            path: dir.to_path_buf(),
            error,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_error)? {
            let path = entry.map_err(read_error)?.path();
            let is_yaml = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e == "yaml" || e == "yml");
            if is_yaml && path.is_file() {
                paths.push(path);
            }
        }
        if paths.is_empty() {
            return Err(ManifestError::NoFiles { dir: dir.to_path_buf() });
        }
        paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|error| ManifestError::Read {
                path: path.clone(),
                error,
            })?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push(parse_file(&name, &text)?);
        }
        Ok(ManifestSet {
            files: validate_set(files)?,
        })
    }

    /// Puts `image` on the StatefulSet's `mysql` container, and on every Pod container that runs a MySQL or
    /// MariaDB image (the client pod), so that the client's `mysql`/`mariadb` command matches the servers.
    pub fn with_image(mut self, image: &str) -> Result<Self, ManifestError> {
        if image.is_empty() || image.chars().any(char::is_whitespace) {
            return Err(ManifestError::Usage {
                problem: format!("--image {image:?} is not an image reference"),
                fix: "give one such as mysql:8.4, mysql:8.0 or mariadb:11.4".into(),
            });
        }
        let (file, statefulset) = self.statefulset_mut();
        let containers = statefulset
            .data
            .pointer_mut("/spec/template/spec/containers")
            .and_then(Value::as_array_mut);
        let container = containers.and_then(|list| {
            list.iter_mut()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(DATABASE_CONTAINER))
        });
        let Some(container) = container else {
            return Err(ManifestError::Set {
                problem: format!(
                    "StatefulSet {STATEFULSET_NAME} in {file} has no container named \"{DATABASE_CONTAINER}\""
                ),
                fix: format!(
                    "name the database container \"{DATABASE_CONTAINER}\" under spec.template.spec.containers"
                ),
            });
        };
        container["image"] = Value::from(image);

        for object in self.files.iter_mut().flat_map(|f| f.objects.iter_mut()) {
            if kind_of(object) != "Pod" {
                continue;
            }
            let containers = object
                .data
                .pointer_mut("/spec/containers")
                .and_then(Value::as_array_mut);
            for container in containers.into_iter().flatten() {
                let runs_database_image = container
                    .get("image")
                    .and_then(Value::as_str)
                    .is_some_and(is_database_image);
                if runs_database_image {
                    container["image"] = Value::from(image);
                }
            }
        }
        Ok(self)
    }

    /// Sets the StatefulSet's `spec.replicas`: the number of pods, primary included (1 = primary alone).
    pub fn with_replicas(mut self, replicas: u32) -> Result<Self, ManifestError> {
        if replicas == 0 || i32::try_from(replicas).is_err() {
            return Err(ManifestError::Usage {
                problem: format!("--replicas {replicas} is out of range"),
                fix: "it counts the pods, primary included: use 1 for mysql-0 alone, 2 or more for replicas".into(),
            });
        }
        let (_, statefulset) = self.statefulset_mut();
        match statefulset.data.get_mut("spec").and_then(Value::as_object_mut) {
            Some(spec) => {
                spec.insert("replicas".into(), Value::from(replicas));
            }
            None => statefulset.data["spec"] = serde_json::json!({ "replicas": replicas }),
        }
        Ok(self)
    }

    /// [`Self::with_replicas`] when a count is given; the manifests' own otherwise.
    pub fn with_replicas_if(self, replicas: Option<u32>) -> Result<Self, ManifestError> {
        match replicas {
            Some(replicas) => self.with_replicas(replicas),
            None => Ok(self),
        }
    }

    /// Makes the StatefulSet start every pod at once (`podManagementPolicy: Parallel`) instead of each after the
    /// previous one is Ready.
    pub fn with_parallel_start(mut self) -> Self {
        let (_, statefulset) = self.statefulset_mut();
        match statefulset.data.get_mut("spec").and_then(Value::as_object_mut) {
            Some(spec) => {
                spec.insert("podManagementPolicy".into(), Value::from(PARALLEL));
            }
            None => statefulset.data["spec"] = serde_json::json!({ "podManagementPolicy": PARALLEL }),
        }
        self
    }

    /// Moves everything into namespace `namespace`: renames the Namespace object, sets `metadata.namespace`
    /// on every namespaced object and rewrites DNS names that embed the old namespace (`….<old>.svc…`).
    pub fn with_namespace(mut self, namespace: &str) -> Result<Self, ManifestError> {
        if let Some(reason) = invalid_namespace_reason(namespace) {
            return Err(ManifestError::Usage {
                problem: format!("namespace {namespace:?} is not a valid name: {reason}"),
                fix: "use lowercase letters, digits and '-', starting and ending with a letter or digit, \
                      at most 63 characters (e.g. database or lab-1)"
                    .into(),
            });
        }
        for object in self.files.iter_mut().flat_map(|f| f.objects.iter_mut()) {
            let kind = kind_of(object).to_owned();
            if kind == "Namespace" {
                object.metadata.name = Some(namespace.to_owned());
            } else if !CLUSTER_SCOPED_KINDS.contains(&kind.as_str()) {
                let old = object.metadata.namespace.replace(namespace.to_owned());
                if let Some(old) = old.filter(|old| old != namespace) {
                    rewrite_dns_names(&mut object.data, &old, namespace);
                }
            }
        }
        Ok(self)
    }

    /// Every object in apply order.
    pub fn objects(&self) -> impl Iterator<Item = &DynamicObject> {
        self.files.iter().flat_map(|f| f.objects.iter())
    }

    /// The StatefulSet's `spec.replicas` (Kubernetes' default 1 if absent).
    pub fn replicas(&self) -> u32 {
        self.statefulset()
            .data
            .pointer("/spec/replicas")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1)
    }

    /// The StatefulSet's `spec.podManagementPolicy` (Kubernetes' default OrderedReady if absent).
    pub fn pod_management_policy(&self) -> &str {
        self.statefulset()
            .data
            .pointer("/spec/podManagementPolicy")
            .and_then(Value::as_str)
            .unwrap_or(ORDERED_READY)
    }

    /// The image of the StatefulSet's `mysql` container, if it has one.
    pub fn database_image(&self) -> Option<&str> {
        self.statefulset()
            .data
            .pointer("/spec/template/spec/containers")?
            .as_array()?
            .iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(DATABASE_CONTAINER))?
            .get("image")?
            .as_str()
    }

    /// The documents as `lab up` applies them, each preceded by `---` and a comment naming its file.
    pub fn render_yaml(&self, secrets: SecretValues) -> String {
        let mut out = String::new();
        for file in &self.files {
            for object in &file.objects {
                let object = match secrets {
                    SecretValues::Shown => object.clone(),
                    SecretValues::Redacted => redact_secret(object),
                };
                let yaml = serde_saphyr::to_string(&object)
                    .expect("a DynamicObject (JSON values only) always serialises to YAML");
                let _ = writeln!(out, "---\n# Source: {}", file.name);
                if is_withheld(&object) {
                    out.push_str(
                        "# Values withheld (lab render --show-secrets prints them). Applied as it is, this Secret \
                         keeps the cluster's values.\n",
                    );
                }
                out.push_str(&yaml);
                if !yaml.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Every object in apply order but the Secrets named in `kept` (withheld ones the cluster keeps).
    pub fn objects_except_secrets<'a>(&'a self, kept: &'a [String]) -> impl Iterator<Item = &'a DynamicObject> {
        self.objects().filter(move |o| {
            !(kind_of(o) == "Secret" && o.metadata.name.as_ref().is_some_and(|name| kept.contains(name)))
        })
    }

    /// Names of the Secrets rendered without their values ([`WITHHELD_ANNOTATION`]): `lab up` keeps the cluster's.
    pub fn withheld_secrets(&self) -> Vec<String> {
        self.objects()
            .filter(|o| is_withheld(o))
            .filter_map(|o| o.metadata.name.clone())
            .collect()
    }

    /// The value of `key` in Secret `name` as the manifests declare it (`stringData` first, then base64 `data`).
    pub fn secret_value(&self, name: &str, key: &str) -> Option<SecretString> {
        let secret = self
            .objects()
            .find(|o| kind_of(o) == "Secret" && o.metadata.name.as_deref() == Some(name))?;
        if let Some(value) = secret
            .data
            .pointer(&format!("/stringData/{key}"))
            .and_then(Value::as_str)
        {
            return Some(SecretString::new(value));
        }
        let encoded = secret.data.pointer(&format!("/data/{key}"))?.clone();
        let bytes: k8s_openapi::ByteString = serde_json::from_value(encoded).ok()?;
        String::from_utf8(bytes.0).ok().map(SecretString::new)
    }

    fn statefulset(&self) -> &DynamicObject {
        self.objects()
            .find(|o| is_lab_statefulset(o))
            .expect("a ManifestSet holds exactly one StatefulSet mysql: checked when it is built")
    }

    fn statefulset_mut(&mut self) -> (String, &mut DynamicObject) {
        self.files
            .iter_mut()
            .find_map(|f| {
                let name = f.name.clone();
                f.objects.iter_mut().find(|o| is_lab_statefulset(o)).map(|o| (name, o))
            })
            .expect("a ManifestSet holds exactly one StatefulSet mysql: checked when it is built")
    }
}

/// Parses one file's documents and checks each object on its own.
fn parse_file(name: &str, text: &str) -> Result<ManifestFile, ManifestError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
    };
    let documents = serde_saphyr::from_multiple_with_options::<serde_saphyr::Spanned<Value>>(text, options)
        .map_err(|error| syntax_error(name, &error))?;
    let mut objects = Vec::with_capacity(documents.len());
    for document in documents {
        let line = document.referenced.line();
        let invalid = |problem: String, fix: &str| ManifestError::Invalid {
            file: name.to_owned(),
            line,
            problem,
            fix: fix.to_owned(),
        };
        let value = document.value;
        if !value.is_object() {
            return Err(invalid(
                "the document is not a mapping".into(),
                "each document (between --- lines) must be one Kubernetes object",
            ));
        }
        for field in ["/apiVersion", "/kind", "/metadata/name"] {
            let present = value
                .pointer(field)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            if !present {
                let field = field.trim_start_matches('/').replace('/', ".");
                return Err(invalid(
                    format!("the object has no {field}"),
                    "every object needs apiVersion, kind and metadata.name",
                ));
            }
        }
        if let Some((path, found)) = first_non_string_value(&value) {
            return Err(invalid(
                format!("{path} must be a string but YAML read {found}"),
                "quote the value",
            ));
        }
        if let Some(field) = first_unknown_field(&value) {
            return Err(unknown_field_error(&value, &field, invalid));
        }
        let object = serde_json::from_value::<DynamicObject>(value)
            .map_err(|error| invalid(format!("not a Kubernetes object ({error})"), "fix the metadata fields"))?;
        objects.push(object);
    }
    Ok(ManifestFile {
        name: name.to_owned(),
        objects,
    })
}

/// The first field (as `spec.volumeClaimTemplates[0].spec`) that the object's Kubernetes type does not have, as
/// a real API server finds it with strict field validation (kubectl's default): the typed object is decoded, encoded
/// again, and whatever did not survive the round trip is unknown. Kinds outside the ones a lab uses are left to the
/// server.
fn first_unknown_field(object: &Value) -> Option<String> {
    use k8s_openapi::api::{apps, core, networking, policy};
    fn round_trip<K: serde::de::DeserializeOwned + serde::Serialize>(object: &Value) -> Option<Value> {
        // A type error (a string where a number belongs) is for the server to name; here only unknown fields count.
        serde_json::from_value::<K>(object.clone())
            .ok()
            .and_then(|typed| serde_json::to_value(typed).ok())
    }
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let typed = match (api_version, kind) {
        ("v1", "Namespace") => round_trip::<core::v1::Namespace>(object),
        ("v1", "Service") => round_trip::<core::v1::Service>(object),
        ("v1", "Secret") => round_trip::<core::v1::Secret>(object),
        ("v1", "ConfigMap") => round_trip::<core::v1::ConfigMap>(object),
        ("v1", "Pod") => round_trip::<core::v1::Pod>(object),
        ("v1", "PersistentVolumeClaim") => round_trip::<core::v1::PersistentVolumeClaim>(object),
        ("v1", "ServiceAccount") => round_trip::<core::v1::ServiceAccount>(object),
        ("apps/v1", "StatefulSet") => round_trip::<apps::v1::StatefulSet>(object),
        ("networking.k8s.io/v1", "NetworkPolicy") => round_trip::<networking::v1::NetworkPolicy>(object),
        ("policy/v1", "PodDisruptionBudget") => round_trip::<policy::v1::PodDisruptionBudget>(object),
        _ => None,
    }?;
    lost_field(object, &typed, String::new())
}

/// The first path present (and not null) in `original` but absent from `kept`.
fn lost_field(original: &Value, kept: &Value, path: String) -> Option<String> {
    match (original, kept) {
        (Value::Object(original), Value::Object(kept)) => original.iter().find_map(|(key, value)| {
            let here = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match kept.get(key) {
                None if !value.is_null() => Some(here),
                None => None,
                Some(kept) => lost_field(value, kept, here),
            }
        }),
        (Value::Array(original), Value::Array(kept)) => original
            .iter()
            .zip(kept)
            .enumerate()
            .find_map(|(i, (value, kept))| lost_field(value, kept, format!("{path}[{i}]"))),
        _ => None,
    }
}

fn unknown_field_error(object: &Value, field: &str, invalid: impl Fn(String, &str) -> ManifestError) -> ManifestError {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let problem = format!(
        "{kind} {name} has the unknown field \"{field}\" (a Kubernetes API server refuses it: strict decoding error)"
    );
    if kind == "StatefulSet" && field == "spec.spec" {
        invalid(
            problem,
            "this is the tutorial's volumeClaimTemplates mistake: the claim template's `spec:` is indented one level \
             too high, so it lands in the StatefulSet's spec and the template has no accessModes or storage request; \
             indent `spec:` under `- metadata:` (aligned with `metadata:`)",
        )
    } else {
        invalid(
            problem,
            &format!(
                "remove it or fix its indentation (`kubectl explain {}.{}` lists the fields there)",
                kind.to_lowercase(),
                explain_path(field)
            ),
        )
    }
}

/// The parent of `field` as `kubectl explain` takes it: `spec.ports` for `spec.ports[0].protocl`.
fn explain_path(field: &str) -> String {
    let parent = field.rsplit_once('.').map_or("", |(parent, _)| parent);
    let mut path = String::new();
    let mut in_index = false;
    for c in parent.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if !in_index => path.push(c),
            _ => {}
        }
    }
    path
}

fn syntax_error(file: &str, error: &serde_saphyr::Error) -> ManifestError {
    let (line, column) = error.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    // The plain message: serde-saphyr's snippet is multi-line and repeats the location.
    let message = error.without_snippet().to_string();
    let message = strip_location(&message);
    ManifestError::Syntax {
        file: file.to_owned(),
        line,
        column,
        message: message.to_owned(),
    }
}

/// serde-saphyr repeats the position in some messages ("line L column C: …", "… at line L, column C"); the
/// error names the position once, itself.
fn strip_location(message: &str) -> &str {
    let is_position = |text: &str, separator: &str| {
        text.split_once(separator)
            .is_some_and(|(a, b)| a.trim().parse::<u64>().is_ok() && b.trim().parse::<u64>().is_ok())
    };
    let mut message = message;
    if let Some((position, tail)) = message.strip_prefix("line ").and_then(|rest| rest.split_once(": "))
        && is_position(position, " column ")
    {
        message = tail;
    }
    if let Some((head, position)) = message.rsplit_once(" at line ")
        && is_position(position, ", column ")
    {
        message = head;
    }
    message
}

/// String-only fields where YAML would silently produce a number or boolean the API server rejects.
fn first_non_string_value(object: &Value) -> Option<(String, String)> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let mut maps = Vec::new();
    if kind == "Secret" {
        maps.push("stringData");
        maps.push("data");
    }
    if kind == "ConfigMap" {
        maps.push("data");
    }
    for map in maps {
        for (key, value) in object.get(map).and_then(Value::as_object).into_iter().flatten() {
            if !value.is_string() {
                return Some((format!("{map}.{key}"), describe(value)));
            }
        }
    }
    for (path, env) in env_lists(object) {
        for (i, var) in env.iter().enumerate() {
            if let Some(value) = var.get("value").filter(|v| !v.is_string()) {
                let name = var.get("name").and_then(Value::as_str).unwrap_or("?");
                return Some((format!("{path}[{i}].value (env {name})"), describe(value)));
            }
        }
    }
    None
}

fn env_lists(object: &Value) -> Vec<(String, &Vec<Value>)> {
    let mut found = Vec::new();
    for pod_spec in ["/spec", "/spec/template/spec"] {
        for list in ["containers", "initContainers"] {
            let pointer = format!("{pod_spec}/{list}");
            let containers = object.pointer(&pointer).and_then(Value::as_array);
            for (i, container) in containers.into_iter().flatten().enumerate() {
                if let Some(env) = container.get("env").and_then(Value::as_array) {
                    let path = format!("{}.{list}[{i}].env", pod_spec.trim_start_matches('/').replace('/', "."));
                    found.push((path, env));
                }
            }
        }
    }
    found
}

fn describe(value: &Value) -> String {
    match value {
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::Null => "nothing (null)".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
        Value::String(s) => format!("the string {s:?}"),
    }
}

/// Checks that hold across files: one StatefulSet `mysql`, at most one Namespace, no object defined twice.
fn validate_set(files: Vec<ManifestFile>) -> Result<Vec<ManifestFile>, ManifestError> {
    let located = || {
        files
            .iter()
            .flat_map(|f| f.objects.iter().map(move |o| (f.name.as_str(), o)))
    };
    let statefulsets: Vec<&str> = located()
        .filter(|(_, o)| is_lab_statefulset(o))
        .map(|(f, _)| f)
        .collect();
    match statefulsets.as_slice() {
        [_] => {}
        [] => {
            return Err(ManifestError::Set {
                problem: format!("no StatefulSet named \"{STATEFULSET_NAME}\" in the manifests"),
                fix: "lab sets up the StatefulSet \"mysql\" of the tutorial: add it (see `lab render`)".into(),
            });
        }
        many => {
            return Err(ManifestError::Set {
                problem: format!(
                    "{} StatefulSets named \"{STATEFULSET_NAME}\" (in {})",
                    many.len(),
                    many.join(", ")
                ),
                fix: "keep exactly one".into(),
            });
        }
    }
    let namespaces: Vec<&str> = located()
        .filter(|(_, o)| kind_of(o) == "Namespace")
        .map(|(f, _)| f)
        .collect();
    if namespaces.len() > 1 {
        return Err(ManifestError::Set {
            problem: format!("{} Namespace objects (in {})", namespaces.len(), namespaces.join(", ")),
            fix: "keep one: lab puts every object into the namespace given with --namespace".into(),
        });
    }
    let mut seen: BTreeMap<(String, String), &str> = BTreeMap::new();
    for (file, object) in located() {
        let key = (
            kind_of(object).to_owned(),
            object.metadata.name.clone().unwrap_or_default(),
        );
        if let Some(first) = seen.insert(key.clone(), file) {
            return Err(ManifestError::Set {
                problem: format!("{} {} is defined twice (in {first} and {file})", key.0, key.1),
                fix: "keep one of them".into(),
            });
        }
    }
    Ok(files)
}

fn kind_of(object: &DynamicObject) -> &str {
    object.types.as_ref().map(|t| t.kind.as_str()).unwrap_or_default()
}

fn is_lab_statefulset(object: &DynamicObject) -> bool {
    kind_of(object) == "StatefulSet" && object.metadata.name.as_deref() == Some(STATEFULSET_NAME)
}

/// `registry:5000/library/mysql:8.4@sha256:…` -> `mysql`.
fn is_database_image(image: &str) -> bool {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let name = last_segment.split(':').next().unwrap_or(last_segment);
    DATABASE_IMAGE_NAMES.contains(&name)
}

/// RFC 1123 label, as Kubernetes requires for namespace names.
fn invalid_namespace_reason(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.len() > 63 {
        return Some("it is longer than 63 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Some("it may contain only lowercase letters, digits and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("it must start and end with a letter or digit");
    }
    None
}

/// Rewrites `<anything>.<old>.svc…` to `<anything>.<new>.svc…` in every string of `value`.
fn rewrite_dns_names(value: &mut Value, old: &str, new: &str) {
    match value {
        Value::String(s) => {
            let needle = format!(".{old}.svc");
            if s.contains(&needle) {
                *s = s.replace(&needle, &format!(".{new}.svc"));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_dns_names(v, old, new)),
        Value::Object(map) => map.values_mut().for_each(|v| rewrite_dns_names(v, old, new)),
        _ => {}
    }
}

/// Whether `render_yaml` prints the values of Secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretValues {
    /// Secrets without their values (the default of `lab render`): see [`WITHHELD_ANNOTATION`].
    Redacted,
    /// The values as they are applied (`lab render --show-secrets`), for a copy that can be applied.
    Shown,
}

/// On a Secret rendered without its values, the names of the keys it had. Such a copy can still be applied: it has
/// no `data` or `stringData`, so `kubectl apply` leaves the cluster's values alone, and `lab up --manifests` keeps
/// the cluster's Secret instead of applying it. A placeholder value would be applied as the password.
pub const WITHHELD_ANNOTATION: &str = "lab.dev/values-withheld";

/// A copy of the object with a Secret's values removed and their keys listed in [`WITHHELD_ANNOTATION`]; other
/// kinds are returned unchanged.
fn redact_secret(object: &DynamicObject) -> DynamicObject {
    let mut object = object.clone();
    if kind_of(&object) == "Secret" {
        let mut keys = Vec::new();
        for field in ["stringData", "data"] {
            if let Some(Value::Object(values)) = object.data.as_object_mut().and_then(|o| o.remove(field)) {
                keys.extend(values.keys().cloned());
            }
        }
        object
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(WITHHELD_ANNOTATION.to_string(), keys.join(","));
    }
    object
}

fn is_withheld(object: &DynamicObject) -> bool {
    kind_of(object) == "Secret"
        && object
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(WITHHELD_ANNOTATION))
        && ["data", "stringData"]
            .iter()
            .all(|field| object.data.get(*field).is_none_or(Value::is_null))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(set: &'a ManifestSet, kind: &str, name: &str) -> &'a DynamicObject {
        set.objects()
            .find(|o| kind_of(o) == kind && o.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{kind} {name} is in the manifests"))
    }

    fn pointer<'a>(object: &'a DynamicObject, path: &str) -> &'a Value {
        object.data.pointer(path).unwrap_or_else(|| panic!("{path} is set"))
    }

    #[test]
    fn embedded_manifests_parse_in_apply_order() {
        let set = ManifestSet::embedded();
        let names: Vec<&str> = set.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "00-namespace.yaml",
                "01-headless-service.yaml",
                "02-secret.yaml",
                "03-statefulset.yaml",
                "04-service-primary.yaml",
                "05-service-replicas.yaml",
                "06-client-pod.yaml"
            ]
        );
        let objects: Vec<(String, String)> = set
            .objects()
            .map(|o| (kind_of(o).to_owned(), o.metadata.name.clone().unwrap_or_default()))
            .collect();
        let expected = [
            ("Namespace", "database"),
            ("Service", "mysql-headless"),
            ("Secret", "mysql-secret"),
            ("StatefulSet", "mysql"),
            ("Service", "mysql-primary"),
            ("Service", "mysql-replicas"),
            ("Pod", "mysql-client"),
        ];
        let expected: Vec<(String, String)> = expected.iter().map(|(k, n)| (k.to_string(), n.to_string())).collect();
        assert_eq!(objects, expected);
        assert_eq!(set.replicas(), 2);
        assert_eq!(set.database_image(), Some("mysql:8.4"));
    }

    #[test]
    fn every_object_carries_the_lab_labels_and_namespace() {
        let set = ManifestSet::embedded();
        for object in set.objects() {
            let labels = object.metadata.labels.clone().unwrap_or_default();
            let what = format!("{} {:?}", kind_of(object), object.metadata.name);
            assert_eq!(
                labels.get("app.kubernetes.io/managed-by").map(String::as_str),
                Some("lab"),
                "{what}"
            );
            assert_eq!(
                labels.get("app.kubernetes.io/part-of").map(String::as_str),
                Some("lab"),
                "{what}"
            );
            if kind_of(object) != "Namespace" {
                assert_eq!(object.metadata.namespace.as_deref(), Some("database"), "{what}");
                assert_eq!(
                    labels.get("app.kubernetes.io/name").map(String::as_str),
                    Some("mysql"),
                    "{what}"
                );
                assert!(labels.contains_key("app.kubernetes.io/component"), "{what}");
            }
        }
        let statefulset = find(&set, "StatefulSet", "mysql");
        let template_labels = pointer(statefulset, "/spec/template/metadata/labels");
        assert_eq!(template_labels["app"], "mysql");
        assert_eq!(template_labels["app.kubernetes.io/managed-by"], "lab");
        assert_eq!(template_labels["app.kubernetes.io/component"], "database");
        let claim_labels = pointer(statefulset, "/spec/volumeClaimTemplates/0/metadata/labels");
        assert_eq!(claim_labels["app.kubernetes.io/managed-by"], "lab");
    }

    #[test]
    fn statefulset_follows_the_tutorial_with_its_fixes() {
        let set = ManifestSet::embedded();
        let sts = find(&set, "StatefulSet", "mysql");
        assert_eq!(pointer(sts, "/spec/serviceName"), "mysql-headless");
        assert_eq!(
            pointer(sts, "/spec/selector/matchLabels"),
            &serde_json::json!({"app": "mysql"})
        );
        // The tutorial's mis-indented claim template is fixed: spec sits inside the template.
        assert_eq!(pointer(sts, "/spec/volumeClaimTemplates/0/metadata/name"), "data");
        assert_eq!(
            pointer(sts, "/spec/volumeClaimTemplates/0/spec/resources/requests/storage"),
            "5Gi"
        );
        assert_eq!(
            pointer(sts, "/spec/volumeClaimTemplates/0/spec/accessModes/0"),
            "ReadWriteOnce"
        );

        let init = pointer(sts, "/spec/template/spec/initContainers/0");
        assert_eq!(init["name"], "init-mysql-config");
        assert_eq!(init["image"], "busybox:1.36");
        let script = init["command"][2].as_str().expect("the init script is a string");
        for line in [
            "SERVER_ID=$((ORDINAL + 1))",
            "server-id=${SERVER_ID}",
            "log-bin=mysql-bin",
            "loose-binlog_format=ROW",
            "binlog-do-db=appdb",
            "read-only=ON",
            "relay-log=relay-log",
        ] {
            assert!(script.contains(line), "init script lacks {line}");
        }
        assert!(!script.contains("super-read-only"), "MariaDB aborts on super-read-only");
        assert!(
            !script.contains("\"binlog_format"),
            "binlog_format is deprecated in MySQL 8.x/9.x: only the loose- form may be written"
        );
        assert!(!script.contains("skip-name-resolve"));

        let mysql = pointer(sts, "/spec/template/spec/containers/0");
        assert_eq!(mysql["name"], "mysql");
        assert_eq!(mysql["ports"][0]["containerPort"], 3306);
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            assert_eq!(mysql[probe]["tcpSocket"]["port"], 3306, "{probe} uses TCP");
        }
        // Ready about a second after the server listens; a first start may still take 5 minutes.
        assert_eq!(mysql["readinessProbe"]["periodSeconds"], 1);
        assert_eq!(mysql["startupProbe"]["periodSeconds"], 1);
        let startup_budget = mysql["startupProbe"]["periodSeconds"].as_u64().unwrap()
            * mysql["startupProbe"]["failureThreshold"].as_u64().unwrap();
        assert!(startup_budget >= 300, "startup budget {startup_budget} s");
        assert_eq!(
            mysql["env"][0]["valueFrom"]["secretKeyRef"]["key"],
            "MYSQL_ROOT_PASSWORD"
        );
        // Both images skip loading the time zone tables (each reads its own name).
        for name in ["MYSQL_INITDB_SKIP_TZINFO", "MARIADB_INITDB_SKIP_TZINFO"] {
            let value = mysql["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .and_then(|e| e["value"].as_str());
            assert!(value.is_some_and(|v| !v.is_empty()), "{name} is set");
        }
        // Requests (not BestEffort), no limits (no OOM kill of mysqld).
        assert!(mysql["resources"]["requests"]["memory"].is_string());
        assert!(mysql["resources"]["requests"]["cpu"].is_string());
        assert!(mysql["resources"].get("limits").is_none());
    }

    #[test]
    fn services_secret_and_client_match_the_names_lab_uses() {
        let set = ManifestSet::embedded();
        let headless = find(&set, "Service", "mysql-headless");
        assert_eq!(pointer(headless, "/spec/clusterIP"), "None");
        assert_eq!(
            pointer(headless, "/spec/selector"),
            &serde_json::json!({"app": "mysql"})
        );
        let primary = find(&set, "Service", "mysql-primary");
        assert_eq!(
            pointer(primary, "/spec/selector"),
            &serde_json::json!({"statefulset.kubernetes.io/pod-name": "mysql-0"})
        );
        let replicas = find(&set, "Service", "mysql-replicas");
        assert_eq!(
            pointer(replicas, "/spec/selector"),
            &serde_json::json!({"app": "mysql", "lab.dev/role": "replica"})
        );
        let secret = find(&set, "Secret", "mysql-secret");
        assert_eq!(
            pointer(secret, "/stringData"),
            &serde_json::json!({
                "MYSQL_ROOT_PASSWORD": "root",
                "REPLICATION_USER": "repl",
                "REPLICATION_PASSWORD": "replpass",
                "PROBE_PASSWORD": "probepass",
            })
        );
        let client = find(&set, "Pod", "mysql-client");
        assert_eq!(pointer(client, "/spec/containers/0/image"), "mysql:8.4");
        assert_eq!(pointer(client, "/spec/containers/0/command/0"), "sh");
    }

    #[test]
    fn with_image_edits_the_database_container_and_the_client() {
        let set = ManifestSet::embedded().with_image("mariadb:11.4").expect("valid image");
        assert_eq!(set.database_image(), Some("mariadb:11.4"));
        let sts = find(&set, "StatefulSet", "mysql");
        assert_eq!(
            pointer(sts, "/spec/template/spec/initContainers/0/image"),
            "busybox:1.36"
        );
        let client = find(&set, "Pod", "mysql-client");
        assert_eq!(pointer(client, "/spec/containers/0/image"), "mariadb:11.4");

        let error = ManifestSet::embedded().with_image("mysql 8").expect_err("whitespace");
        assert_eq!(
            error.to_string(),
            "--image \"mysql 8\" is not an image reference: give one such as mysql:8.4, mysql:8.0 or mariadb:11.4"
        );
        assert_eq!(error.exit_status(), ExitStatus::Usage);
    }

    #[test]
    fn with_image_leaves_pods_with_other_images_alone() {
        let mut set = ManifestSet::embedded();
        for object in set.files.iter_mut().flat_map(|f| f.objects.iter_mut()) {
            if kind_of(object) == "Pod" {
                object.data["spec"]["containers"][0]["image"] = Value::from("busybox:1.36");
            }
        }
        let set = set
            .with_image("registry.local:5000/library/mysql:9.1")
            .expect("valid image");
        assert_eq!(set.database_image(), Some("registry.local:5000/library/mysql:9.1"));
        let client = find(&set, "Pod", "mysql-client");
        assert_eq!(pointer(client, "/spec/containers/0/image"), "busybox:1.36");
        assert!(is_database_image("docker.io/library/mariadb:10.11@sha256:abc"));
        assert!(!is_database_image("mysql-exporter:1"));
    }

    #[test]
    fn with_replicas_sets_the_pod_count_and_refuses_zero() {
        let set = ManifestSet::embedded().with_replicas(3).expect("3 is valid");
        assert_eq!(set.replicas(), 3);
        assert_eq!(pointer(find(&set, "StatefulSet", "mysql"), "/spec/replicas"), 3);
        assert_eq!(
            ManifestSet::embedded()
                .with_replicas(1)
                .expect("primary alone")
                .replicas(),
            1
        );

        let error = ManifestSet::embedded().with_replicas(0).expect_err("0 is refused");
        assert_eq!(
            error.to_string(),
            "--replicas 0 is out of range: it counts the pods, primary included: use 1 for mysql-0 alone, 2 or more \
             for replicas"
        );
        assert_eq!(error.exit_status(), ExitStatus::Usage);
    }

    #[test]
    fn with_parallel_start_sets_the_pod_management_policy() {
        let ordered = ManifestSet::embedded();
        assert_eq!(ordered.pod_management_policy(), ORDERED_READY);
        assert!(
            find(&ordered, "StatefulSet", "mysql")
                .data
                .pointer("/spec/podManagementPolicy")
                .is_none(),
            "the tutorial's manifest leaves the default"
        );
        let parallel = ManifestSet::embedded().with_parallel_start();
        assert_eq!(parallel.pod_management_policy(), PARALLEL);
        assert_eq!(
            pointer(find(&parallel, "StatefulSet", "mysql"), "/spec/podManagementPolicy"),
            "Parallel"
        );
        // Nothing else changes.
        let mut back = parallel.clone();
        let (_, sts) = back.statefulset_mut();
        sts.data["spec"].as_object_mut().unwrap().remove("podManagementPolicy");
        assert_eq!(back, ordered);
    }

    #[test]
    fn with_namespace_moves_every_object_and_rewrites_dns_names() {
        let mut set = ManifestSet::embedded();
        for object in set.files.iter_mut().flat_map(|f| f.objects.iter_mut()) {
            if kind_of(object) == "Pod" {
                object.data["spec"]["containers"][0]["env"] = serde_json::json!([
                    {"name": "PRIMARY", "value": "mysql-0.mysql-headless.database.svc.cluster.local"},
                    {"name": "OTHER", "value": "database"},
                ]);
            }
        }
        let set = set.with_namespace("lab-7").expect("valid name");
        let namespace = find(&set, "Namespace", "lab-7");
        assert_eq!(namespace.metadata.namespace, None);
        for object in set.objects().filter(|o| kind_of(o) != "Namespace") {
            assert_eq!(object.metadata.namespace.as_deref(), Some("lab-7"));
        }
        let env = pointer(find(&set, "Pod", "mysql-client"), "/spec/containers/0/env");
        assert_eq!(env[0]["value"], "mysql-0.mysql-headless.lab-7.svc.cluster.local");
        assert_eq!(env[1]["value"], "database", "only DNS names are rewritten");

        let error = ManifestSet::embedded()
            .with_namespace("Lab_1")
            .expect_err("invalid name");
        assert_eq!(
            error.to_string(),
            "namespace \"Lab_1\" is not a valid name: it may contain only lowercase letters, digits and '-': use \
             lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters \
             (e.g. database or lab-1)"
        );
    }

    #[test]
    fn the_tutorials_misindented_claim_template_is_rejected_with_its_line() {
        let tutorial = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: mysql\nspec:\n  replicas: 2\n  \
                        volumeClaimTemplates:\n    - metadata:\n        name: data\n    spec:\n      accessModes: \
                        [\"ReadWriteOnce\"]\n";
        let error = parse_file("03-statefulset.yaml", tutorial).expect_err("mis-indented");
        let ManifestError::Syntax { line, .. } = &error else {
            panic!("a syntax error, got {error:?}");
        };
        assert_eq!(*line, 10);
        assert_eq!(
            error.to_string(),
            "03-statefulset.yaml line 10 column 5: while parsing a block collection, did not find expected '-' \
             indicator: fix the YAML (check the indentation of the lines above)"
        );
        assert_eq!(error.exit_status(), ExitStatus::Usage);
    }

    #[test]
    fn the_tutorials_claim_template_mistake_in_valid_yaml_is_rejected_as_an_unknown_field() {
        // Valid YAML, as a student who fixed the syntax error by moving `- metadata:` left writes it: `spec:` now
        // belongs to the StatefulSet's spec.
        let text = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: mysql\nspec:\n  replicas: 2\n  \
                    serviceName: mysql-headless\n  volumeClaimTemplates:\n  - metadata:\n      name: data\n  spec:\n    \
                    accessModes: [\"ReadWriteOnce\"]\n    resources:\n      requests:\n        storage: 5Gi\n";
        let error = parse_file("03-statefulset.yaml", text).expect_err("an unknown field");
        assert_eq!(
            error.to_string(),
            "03-statefulset.yaml line 1: StatefulSet mysql has the unknown field \"spec.spec\" (a Kubernetes API \
             server refuses it: strict decoding error): this is the tutorial's volumeClaimTemplates mistake: the \
             claim template's `spec:` is indented one level too high, so it lands in the StatefulSet's spec and the \
             template has no accessModes or storage request; indent `spec:` under `- metadata:` (aligned with \
             `metadata:`)"
        );
        assert_eq!(error.exit_status(), ExitStatus::Usage);
    }

    #[test]
    fn unknown_fields_anywhere_are_named_with_their_path() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: mysql-primary\nspec:\n  ports:\n  - port: 3306\n    \
                    targetPort: 3306\n    protocl: TCP\n";
        let error = parse_file("04.yaml", text).expect_err("a typo");
        assert_eq!(
            error.to_string(),
            "04.yaml line 1: Service mysql-primary has the unknown field \"spec.ports[0].protocl\" (a Kubernetes API \
             server refuses it: strict decoding error): remove it or fix its indentation (`kubectl explain \
             service.spec.ports` lists the fields there)"
        );
        // Every built-in manifest survives the round trip whole: nothing lab ships is unknown.
        for object in ManifestSet::embedded().objects() {
            let value = serde_json::to_value(object).unwrap();
            assert_eq!(first_unknown_field(&value), None, "{value:#}");
        }
    }

    #[test]
    fn objects_without_required_fields_are_rejected_with_file_and_line() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: database\n---\n# comment\napiVersion: v1\n\
                    kind: Service\nmetadata:\n  labels: {}\n";
        let error = parse_file("01-service.yaml", text).expect_err("no name");
        assert_eq!(
            error.to_string(),
            "01-service.yaml line 7: the object has no metadata.name: every object needs apiVersion, kind and \
             metadata.name"
        );
        let error = parse_file("x.yaml", "kind: Pod\nmetadata:\n  name: a\n").expect_err("no apiVersion");
        assert_eq!(
            error.to_string(),
            "x.yaml line 1: the object has no apiVersion: every object needs apiVersion, kind and metadata.name"
        );
        let error = parse_file("x.yaml", "- a\n- b\n").expect_err("a list");
        assert_eq!(
            error.to_string(),
            "x.yaml line 1: the document is not a mapping: each document (between --- lines) must be one \
             Kubernetes object"
        );
    }

    #[test]
    fn yaml_scalars_keep_their_text_and_unquoted_numbers_in_string_fields_are_named() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: yes\n  b: on\n  c: \"0123\"\n  \
                    d: 0123\n";
        let file = parse_file("c.yaml", text).expect("parses");
        assert_eq!(
            file.objects[0].data["data"],
            serde_json::json!({"a": "yes", "b": "on", "c": "0123", "d": "0123"})
        );
        let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  MYSQL_ROOT_PASSWORD: 1e3\n";
        let error = parse_file("02-secret.yaml", text).expect_err("a number");
        assert_eq!(
            error.to_string(),
            "02-secret.yaml line 1: stringData.MYSQL_ROOT_PASSWORD must be a string but YAML read the number 1000.0: \
             quote the value"
        );
    }

    #[test]
    fn from_dir_reads_yaml_files_in_name_order_and_checks_the_set() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in EMBEDDED.iter().rev() {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        std::fs::write(dir.path().join("README.md"), "not a manifest").expect("write");
        let set = ManifestSet::from_dir(dir.path()).expect("valid copy");
        assert_eq!(set, ManifestSet::embedded());

        std::fs::remove_file(dir.path().join("03-statefulset.yaml")).expect("remove");
        let error = ManifestSet::from_dir(dir.path()).expect_err("no statefulset");
        assert_eq!(
            error.to_string(),
            "no StatefulSet named \"mysql\" in the manifests: lab sets up the StatefulSet \"mysql\" of the tutorial: \
             add it (see `lab render`)"
        );

        std::fs::write(dir.path().join("03-a.yml"), EMBEDDED[3].1).expect("write");
        std::fs::write(dir.path().join("03-b.yaml"), EMBEDDED[3].1).expect("write");
        let error = ManifestSet::from_dir(dir.path()).expect_err("two statefulsets");
        assert_eq!(
            error.to_string(),
            "2 StatefulSets named \"mysql\" (in 03-a.yml, 03-b.yaml): keep exactly one"
        );

        let empty = tempfile::tempdir().expect("temp dir");
        let error = ManifestSet::from_dir(empty.path()).expect_err("empty");
        assert!(error.to_string().starts_with("no manifests in "), "{error}");
        let error = ManifestSet::from_dir(&empty.path().join("missing")).expect_err("missing");
        assert!(error.to_string().ends_with(": check the --manifests path"), "{error}");
        assert_eq!(error.exit_status(), ExitStatus::Usage);
    }

    #[test]
    fn render_yaml_names_each_source_and_parses_back_to_the_same_objects() {
        let set = ManifestSet::embedded()
            .with_image("mariadb:11.8")
            .and_then(|s| s.with_replicas(3))
            .expect("valid edits");
        let rendered = set.render_yaml(SecretValues::Shown);
        assert!(rendered.starts_with("---\n# Source: 00-namespace.yaml\napiVersion: v1\nkind: Namespace\n"));
        assert_eq!(rendered.matches("\n---\n").count() + 1, 7, "{rendered}");
        assert!(rendered.contains("---\n# Source: 03-statefulset.yaml\napiVersion: apps/v1\nkind: StatefulSet\n"));
        let reparsed = parse_file("rendered.yaml", &rendered).expect("rendered YAML parses");
        let original: Vec<&DynamicObject> = set.objects().collect();
        let reparsed: Vec<&DynamicObject> = reparsed.objects.iter().collect();
        assert_eq!(reparsed, original);
    }

    #[test]
    fn render_yaml_redacts_secret_values_unless_asked_to_show_them() {
        let set = ManifestSet::embedded();
        let redacted = set.render_yaml(SecretValues::Redacted);
        for password in ["replpass", "probepass", "MYSQL_ROOT_PASSWORD: root"] {
            assert!(!redacted.contains(password), "{password} printed:\n{redacted}");
        }
        assert!(
            redacted.contains(
                "# Values withheld (lab render --show-secrets prints them). Applied as it is, this Secret keeps the \
                 cluster's values.\n"
            ),
            "{redacted}"
        );
        assert!(
            set.render_yaml(SecretValues::Shown)
                .contains("REPLICATION_PASSWORD: replpass")
        );
        // Only Secrets are touched.
        assert!(redacted.contains("image: mysql:8.4"));

        // The redacted copy parses back as a Secret with no values at all (nothing a server would store as a
        // password) and the names of its keys; `lab up` recognises it and keeps the cluster's Secret.
        let reparsed = parse_file("rendered.yaml", &redacted).expect("the redacted copy parses");
        let secret = reparsed
            .objects
            .iter()
            .find(|o| kind_of(o) == "Secret")
            .expect("the Secret is still there");
        assert!(secret.data.get("stringData").is_none() && secret.data.get("data").is_none());
        assert_eq!(
            secret.metadata.annotations.as_ref().unwrap()[WITHHELD_ANNOTATION],
            "MYSQL_ROOT_PASSWORD,PROBE_PASSWORD,REPLICATION_PASSWORD,REPLICATION_USER"
        );
        assert!(is_withheld(secret));
        assert_eq!(set.withheld_secrets(), Vec::<String>::new());
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("lab.yaml"), &redacted).expect("write");
        let from_render = ManifestSet::from_dir(dir.path()).expect("the redacted copy is valid manifests");
        assert_eq!(from_render.withheld_secrets(), vec!["mysql-secret".to_string()]);
    }

    #[test]
    fn declared_secret_values_are_read_from_string_data_or_base64_data() {
        let set = ManifestSet::embedded();
        assert_eq!(
            set.secret_value("mysql-secret", "MYSQL_ROOT_PASSWORD")
                .map(|v| v.expose().to_string()),
            Some("root".to_string())
        );
        assert!(set.secret_value("mysql-secret", "NOPE").is_none());
        let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  MYSQL_ROOT_PASSWORD: c2VjcmV0\n";
        let file = parse_file("s.yaml", text).expect("parses");
        let set = ManifestSet { files: vec![file] };
        assert_eq!(
            set.secret_value("s", "MYSQL_ROOT_PASSWORD")
                .map(|v| v.expose().to_string()),
            Some("secret".to_string())
        );
    }

    #[test]
    fn render_yaml_quotes_strings_that_would_read_back_as_other_types() {
        let mut set = ManifestSet::embedded();
        let tricky = serde_json::json!({
            "A": "yes", "B": "on", "C": "0123", "D": "1e3", "E": "null", "F": "~", "G": "true", "H": "3306",
            "I": "a: b", "J": "- x", "K": "#x", "L": "",
        });
        for object in set.files.iter_mut().flat_map(|f| f.objects.iter_mut()) {
            if kind_of(object) == "Secret" {
                object.data["stringData"] = tricky.clone();
            }
        }
        // Read back without lab's options, as a YAML 1.1 reader like kubectl would: the quoting must carry it.
        let rendered = set.render_yaml(SecretValues::Shown);
        let documents: Vec<Value> = serde_saphyr::from_multiple(&rendered).expect("rendered YAML parses");
        let secret = documents.iter().find(|d| d["kind"] == "Secret").expect("the Secret");
        assert_eq!(secret["stringData"], tricky, "{rendered}");
    }

    /// Validates with `kubernetes-validate` (PyPI) against the Kubernetes API the crate is built for (k8s-openapi
    /// feature v1_35) and the newest schemas the installed tool ships (its default).
    fn kubernetes_validate(objects: &[&DynamicObject]) -> Result<(), String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut files = Vec::new();
        for (i, object) in objects.iter().enumerate() {
            let path = dir.path().join(format!(
                "{i:02}-{}-{}.json",
                kind_of(object),
                object.metadata.name.as_deref().unwrap_or("unnamed")
            ));
            std::fs::write(&path, serde_json::to_vec_pretty(object).expect("JSON")).expect("write");
            files.push(path);
        }
        let mut failures = String::new();
        for version in [Some("1.35.0"), None] {
            let mut command = std::process::Command::new("kubernetes-validate");
            command.args(["--strict", "--quiet"]);
            if let Some(version) = version {
                command.args(["--kubernetes-version", version]);
            }
            let output = match command.args(&files).output() {
                Ok(output) => output,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    panic!("kubernetes-validate is not on PATH: install it: pip install kubernetes-validate")
                }
                Err(error) => panic!("cannot run kubernetes-validate: {error}"),
            };
            if !output.status.success() {
                failures.push_str(&String::from_utf8_lossy(&output.stdout));
                failures.push_str(&String::from_utf8_lossy(&output.stderr));
            }
        }
        if failures.is_empty() { Ok(()) } else { Err(failures) }
    }

    #[test]
    fn manifests_pass_kubernetes_schema_validation_as_parsed_and_as_edited() {
        let embedded = ManifestSet::embedded();
        let edited = ManifestSet::embedded()
            .with_image("mariadb:11.4")
            .and_then(|s| s.with_replicas(3))
            .and_then(|s| s.with_namespace("lab-schema"))
            .map(ManifestSet::with_parallel_start)
            .expect("valid edits");
        let objects: Vec<&DynamicObject> = embedded.objects().chain(edited.objects()).collect();
        if let Err(failures) = kubernetes_validate(&objects) {
            panic!("the manifests do not match the Kubernetes schema:\n{failures}");
        }
    }

    #[test]
    fn schema_validation_rejects_a_broken_object() {
        let set = ManifestSet::embedded();
        let mut port_as_string = find(&set, "StatefulSet", "mysql").clone();
        port_as_string.data["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] =
            Value::from("3306");
        let failures = kubernetes_validate(&[&port_as_string]).expect_err("a string port is rejected");
        assert!(failures.contains("'3306' is not of type 'integer'"), "{failures}");

        let mut unknown_field = find(&set, "Service", "mysql-primary").clone();
        unknown_field.data["spec"]["selectr"] = serde_json::json!({"app": "mysql"});
        let failures = kubernetes_validate(&[&unknown_field]).expect_err("an unknown field is rejected");
        assert!(failures.contains("'selectr' was unexpected"), "{failures}");
    }
}
