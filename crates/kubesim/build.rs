//! Extracts the strategic-merge and list markers of the Kubernetes API types (`+patchMergeKey`, `+patchStrategy`,
//! `+listType`, `+listMapKey`) from the source of the `k8s-pb` crate, whose generated types keep the upstream Go
//! comments. The OpenAPI documents kubesim serves get them as `x-kubernetes-patch-merge-key` and the like, as the
//! upstream documents have them; the schemas themselves come from `k8s-openapi`, which does not carry these markers.
//!
//! Writes `$OUT_DIR/markers.json`: `{"io.k8s.api.core.v1.PodSpec": {"containers": {"patchMergeKey": "name", ...}}}`
//! with the Rust (snake_case) field names.
//!
//! Also writes `$OUT_DIR/protobuf.json`, the protobuf fields of each message from the same sources (the `prost`
//! attributes: tag, wire type, repeated or map, message type), so the API server can decode the protobuf bodies
//! kubectl sends: `{"io.k8s.api.core.v1.ConfigMap": {"2": {"field": "data", "kind": "map", "value": "string"}}}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value, json};

fn main() {
    let source = k8s_pb_source().expect("the source of the k8s-pb crate (a build dependency) is neither under $CARGO_HOME/registry/src nor found by cargo metadata --offline");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed={}", source.display());
    let mut markers: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut messages: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut files = Vec::new();
    collect_modules(&source, &mut files);
    files.sort();
    for file in files {
        let relative = file
            .parent()
            .and_then(|dir| dir.strip_prefix(&source).ok())
            .map(Path::to_path_buf);
        let Some(relative) = relative else { continue };
        let package: Vec<String> = relative
            .iter()
            .map(|part| part.to_string_lossy().into_owned())
            .collect();
        let prefix = match package.first().map(String::as_str) {
            Some("api") => format!("io.k8s.{}", package.join(".")),
            Some("apimachinery") => format!("io.k8s.{}", package.join(".")),
            _ => continue,
        };
        let text = std::fs::read_to_string(&file).expect("read a k8s-pb module");
        parse_module(&text, &prefix, &mut markers);
        parse_messages(&text, &package, &mut messages);
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("protobuf.json");
    std::fs::write(out, serde_json::to_string(&messages).expect("messages as JSON")).expect("write protobuf.json");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("markers.json");
    std::fs::write(out, serde_json::to_string(&markers).expect("markers as JSON")).expect("write markers.json");
}

/// `src/` of the k8s-pb package this build uses. Being a build dependency, it is unpacked before this script runs,
/// under `$CARGO_HOME/registry/src/<index>/k8s-pb-<version>` with the version Cargo.lock pins. `cargo metadata
/// --offline` is only the fallback (a vendored or patched source): it wants every package of the lock file, other
/// platforms' too, which a build never downloads, so on a fresh machine it fails.
fn k8s_pb_source() -> Option<PathBuf> {
    registry_source("k8s-pb").or_else(metadata_source)
}

fn registry_source(name: &str) -> Option<PathBuf> {
    let version = locked_version(name)?;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))?;
    std::fs::read_dir(cargo_home.join("registry").join("src"))
        .ok()?
        .flatten()
        .map(|index| index.path().join(format!("{name}-{version}")).join("src"))
        .find(|source| source.is_dir())
}

/// The version of `name` in the workspace's Cargo.lock (the nearest one above this crate).
fn locked_version(name: &str) -> Option<String> {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let lock = manifest_dir
        .ancestors()
        .map(|dir| dir.join("Cargo.lock"))
        .find(|lock| lock.is_file())?;
    println!("cargo::rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(lock).ok()?;
    let name_line = format!("name = \"{name}\"");
    let mut lines = text.lines();
    lines.find(|line| *line == name_line)?;
    let version = lines.next()?.strip_prefix("version = \"")?.strip_suffix('"')?;
    Some(version.to_string())
}

fn metadata_source() -> Option<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(&std::env::var("CARGO_MANIFEST_DIR").ok()?).join("Cargo.toml");
    let target = std::env::var("TARGET").ok()?;
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version=1",
            "--offline",
            "--filter-platform",
            &target,
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .ok()?;
    let metadata: Value = serde_json::from_slice(&output.stdout).ok()?;
    metadata["packages"]
        .as_array()?
        .iter()
        .find(|package| package["name"] == "k8s-pb")
        .and_then(|package| package["manifest_path"].as_str())
        .map(|path| Path::new(path).with_file_name("src"))
}

fn collect_modules(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_modules(&path, files);
        } else if path.file_name().is_some_and(|name| name == "mod.rs") {
            files.push(path);
        }
    }
}

/// Markers in the doc comments just above each top-level struct's fields.
fn parse_module(text: &str, prefix: &str, markers: &mut BTreeMap<String, Map<String, Value>>) {
    let mut current: Option<String> = None;
    let mut pending: Map<String, Value> = Map::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("pub struct ") {
            current = rest.split([' ', '{']).next().map(|name| format!("{prefix}.{name}"));
            pending.clear();
        } else if line == "}" {
            current = None;
        } else if let Some(marker) = line.strip_prefix("    /// +") {
            let (key, value) = marker.split_once('=').unwrap_or((marker, ""));
            let value = value.trim();
            match key.trim() {
                "patchMergeKey" | "patchStrategy" | "listType" => {
                    pending.insert(key.trim().into(), json!(value));
                }
                "listMapKey" => {
                    let keys = pending.entry("listMapKeys").or_insert_with(|| json!([]));
                    if let Some(keys) = keys.as_array_mut() {
                        keys.push(json!(value));
                    }
                }
                _ => {}
            }
        } else if let Some(field) = line.strip_prefix("    pub ") {
            let name = field.split(':').next().unwrap_or_default().trim_start_matches("r#");
            if let Some(definition) = &current
                && !pending.is_empty()
            {
                markers
                    .entry(definition.clone())
                    .or_default()
                    .insert(name.to_string(), Value::Object(std::mem::take(&mut pending)));
            }
            pending.clear();
        } else if !line.starts_with("    ///") && !line.starts_with("    #[") {
            pending.clear();
        }
    }
}

/// The protobuf fields of each top-level struct: `#[prost(...)]` then `pub name: Type,` (the type may span lines).
fn parse_messages(text: &str, package: &[String], messages: &mut BTreeMap<String, Map<String, Value>>) {
    let prefix = format!("io.k8s.{}", package.join("."));
    let mut current: Option<String> = None;
    let mut attribute: Option<String> = None;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("pub struct ") {
            current = rest.split([' ', '{']).next().map(|name| format!("{prefix}.{name}"));
        } else if line == "}" {
            current = None;
        } else if let Some(rest) = line.strip_prefix("    #[prost(") {
            attribute = Some(rest.trim_end_matches(")]").to_string());
        } else if let Some(field) = line.strip_prefix("    pub ") {
            let mut declaration = field.to_string();
            while !(declaration.ends_with(',') && declaration.matches('<').count() == declaration.matches('>').count())
            {
                match lines.next() {
                    Some(next) => declaration.push_str(next.trim()),
                    None => break,
                }
            }
            let (Some(message), Some(attribute)) = (&current, attribute.take()) else {
                continue;
            };
            let (name, rust_type) = declaration.split_once(':').unwrap_or_default();
            if let Some((tag, spec)) = field_spec(&attribute, rust_type, package) {
                let mut spec = spec;
                spec.insert("field".into(), json!(name.trim().trim_start_matches("r#")));
                messages
                    .entry(message.clone())
                    .or_default()
                    .insert(tag, Value::Object(spec));
            }
        }
    }
}

/// `(tag, {"kind": "string"|"int32"|...|"message"|"map", "repeated": bool, "type": message, "value": map value})`.
fn field_spec(attribute: &str, rust_type: &str, package: &[String]) -> Option<(String, Map<String, Value>)> {
    let parts: Vec<&str> = attribute.split(", ").map(str::trim).collect();
    let tag = parts
        .iter()
        .find_map(|part| part.strip_prefix("tag = \""))?
        .trim_end_matches('"')
        .to_string();
    let mut spec = Map::new();
    if let Some(map) = attribute.strip_prefix("btree_map = \"") {
        let value = map.split('"').next()?.split(", ").nth(1)?.to_string();
        spec.insert("kind".into(), json!("map"));
        spec.insert("value".into(), json!(value));
        if value == "message" {
            spec.insert("type".into(), json!(message_type(rust_type, package)?));
        }
        return Some((tag, spec));
    }
    let kind = parts.first()?.split(' ').next()?;
    spec.insert("kind".into(), json!(kind));
    spec.insert("repeated".into(), json!(parts.contains(&"repeated")));
    if kind == "message" {
        spec.insert("type".into(), json!(message_type(rust_type, package)?));
    }
    Some((tag, spec))
}

/// The definition name of a field's message type: `super::super::super::apimachinery::pkg::apis::meta::v1::
/// ObjectMeta` seen from `api/core/v1` is `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`.
fn message_type(rust_type: &str, package: &[String]) -> Option<String> {
    let compact: String = rust_type.chars().filter(|c| !c.is_whitespace()).collect();
    let inner = compact
        .split(['<', '>', ','])
        .filter(|part| !part.is_empty())
        .rfind(|part| {
            !part.starts_with("::core::")
                && !part.starts_with("::prost::")
                && *part != "String"
                && part
                    .rsplit("::")
                    .next()
                    .is_some_and(|last| last.starts_with(char::is_uppercase))
        })?;
    let mut path: Vec<String> = package.to_vec();
    let mut segments = inner.split("::").peekable();
    while segments.peek() == Some(&"super") {
        segments.next();
        path.pop();
    }
    path.extend(segments.map(str::to_string));
    Some(format!("io.k8s.{}", path.join(".")))
}
