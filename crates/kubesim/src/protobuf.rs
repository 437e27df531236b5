//! Request bodies in the Kubernetes protobuf encoding (`application/vnd.kubernetes.protobuf`), which kubectl's
//! typed clients send (`kubectl create configmap|secret|namespace|service`): the 4-byte magic `k8s\0`, then a
//! `runtime.Unknown` envelope whose `raw` field holds the object's message. Decoded into the JSON the server
//! would have got from a JSON client, with the message layouts build.rs reads from the `k8s-pb` sources and the
//! JSON field names of the OpenAPI definitions.

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use crate::defaults::base64;
use crate::openapi;
use crate::resources::ResourceInfo;
use crate::status::ApiError;

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

/// Message definition name to `{tag: {"field", "kind", "repeated", "type", "value"}}`.
static MESSAGES: LazyLock<Map<String, Value>> = LazyLock::new(|| {
    serde_json::from_str(include_str!(concat!(env!("OUT_DIR"), "/protobuf.json"))).unwrap_or_default()
});

/// The object a protobuf body encodes, as JSON with its apiVersion and kind; `definition` is the message of the
/// object the URL names (`None` when the server has no schema for it).
pub fn decode(body: &[u8], definition: Option<&str>) -> Result<Value, ApiError> {
    let bad =
        |what: String| ApiError::bad_request(format!("the protobuf body of the request cannot be decoded: {what}"));
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("it does not start with the protobuf magic number \"k8s\\0\"".into()))?;
    let unknown = message(envelope, "io.k8s.apimachinery.pkg.runtime.Unknown").map_err(bad)?;
    let raw = fields(envelope)
        .map_err(bad)?
        .into_iter()
        .find_map(|(tag, value)| match (tag, value) {
            (2, Wire::Bytes(raw)) => Some(raw),
            _ => None,
        })
        .unwrap_or_default();
    let definition = definition.ok_or_else(|| bad("the server has no protobuf message for this resource".into()))?;
    let mut object = message(raw, definition).map_err(bad)?;
    if let Some(fields) = object.as_object_mut() {
        for key in ["apiVersion", "kind"] {
            if let Some(value) = unknown.pointer(&format!("/typeMeta/{key}")) {
                fields.insert(key.into(), value.clone());
            }
        }
    }
    Ok(object)
}

/// The message definition of a resource's objects, for [`decode`].
pub fn definition_of(info: &ResourceInfo) -> Option<String> {
    openapi::definition_name(info)
}

/// One field as it is on the wire.
#[derive(Debug)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or("a number runs past the end of the body")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a number is longer than 64 bits".into())
}

fn fields(bytes: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, String> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let key = varint(bytes, &mut at)?;
        let take = |at: &mut usize, length: usize| -> Result<&[u8], String> {
            let end = at.checked_add(length).filter(|end| *end <= bytes.len());
            let end = end.ok_or("a field runs past the end of the body")?;
            let slice = &bytes[*at..end];
            *at = end;
            Ok(slice)
        };
        let value = match key & 7 {
            0 => Wire::Varint(varint(bytes, &mut at)?),
            1 => Wire::Fixed64(u64::from_le_bytes(take(&mut at, 8)?.try_into().unwrap_or_default())),
            2 => {
                let length = usize::try_from(varint(bytes, &mut at)?).map_err(|_| "a length is too large")?;
                Wire::Bytes(take(&mut at, length)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(take(&mut at, 4)?.try_into().unwrap_or_default())),
            other => return Err(format!("wire type {other} is not used by Kubernetes messages")),
        };
        out.push((key >> 3, value));
    }
    Ok(out)
}

/// `int_val` is `intVal`, `host_ip` is `hostIP`: the definition's own property name, else camel case.
fn json_name(definition: &str, rust_name: &str) -> String {
    if let Some(name) = openapi::property_name(definition, rust_name) {
        return name;
    }
    let mut name = String::new();
    let mut upper = false;
    for c in rust_name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            name.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            name.push(c);
        }
    }
    name
}

/// A scalar of `kind` from the wire.
fn scalar(kind: &str, wire: &Wire) -> Result<Value, String> {
    Ok(match (kind, wire) {
        ("string", Wire::Bytes(bytes)) => json!(String::from_utf8_lossy(bytes)),
        ("bytes", Wire::Bytes(bytes)) => json!(base64(bytes)),
        // Two's complement on the wire: negative int32 values are sign-extended to 64 bits.
        ("int32" | "int64", Wire::Varint(number)) => json!(*number as i64),
        ("bool", Wire::Varint(number)) => json!(*number != 0),
        ("double", Wire::Fixed64(bits)) => json!(f64::from_bits(*bits)),
        ("float", Wire::Fixed32(bits)) => json!(f32::from_bits(*bits)),
        (kind, wire) => return Err(format!("a {kind} field arrived as {wire:?}")),
    })
}

/// Go's zero values, which the encoder writes for non-pointer fields and JSON leaves out.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Number(number) => number.as_f64() == Some(0.0),
        Value::Bool(flag) => !flag,
        _ => false,
    }
}

/// The JSON of one message of `definition`.
fn message(bytes: &[u8], definition: &str) -> Result<Value, String> {
    let wire = fields(bytes)?;
    let field = |tag: u64| wire.iter().find(|(number, _)| *number == tag).map(|(_, value)| value);
    // Types whose JSON form is not their message's fields.
    match definition {
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
            let is_string = matches!(field(1), Some(Wire::Varint(1)));
            return match (is_string, field(2), field(3)) {
                (true, _, Some(text)) => scalar("string", text),
                (false, Some(number), _) => scalar("int32", number),
                (true, ..) => Ok(json!("")),
                (false, ..) => Ok(json!(0)),
            };
        }
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => {
            return field(1).map_or(Ok(json!("0")), |text| scalar("string", text));
        }
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time" | "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime" => {
            let seconds = match field(1) {
                Some(Wire::Varint(seconds)) => *seconds as i64,
                _ => 0,
            };
            let nanos = match field(2) {
                Some(Wire::Varint(nanos)) => *nanos as i32,
                _ => 0,
            };
            if seconds == 0 && nanos == 0 {
                return Ok(Value::Null);
            }
            let time = jiff::Timestamp::new(seconds, nanos).map_err(|error| error.to_string())?;
            return Ok(json!(crate::node::timestamp(time)));
        }
        "io.k8s.apimachinery.pkg.runtime.RawExtension" | "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            return match field(1) {
                Some(Wire::Bytes(raw)) if !raw.is_empty() => {
                    serde_json::from_slice(raw).map_err(|error| format!("embedded JSON: {error}"))
                }
                _ => Ok(Value::Null),
            };
        }
        _ => {}
    }
    let layout = MESSAGES
        .get(definition)
        .and_then(Value::as_object)
        .ok_or_else(|| format!("no message {definition} is known"))?;
    let mut object = Map::new();
    for (tag, value) in &wire {
        let Some(spec) = layout.get(&tag.to_string()) else {
            continue;
        };
        let text = |key: &str| spec.get(key).and_then(Value::as_str).unwrap_or_default();
        let name = json_name(definition, text("field"));
        let decoded = match (text("kind"), value) {
            ("map", Wire::Bytes(entry)) => {
                let entry = fields(entry)?;
                let key = entry
                    .iter()
                    .find(|(number, _)| *number == 1)
                    .map(|(_, key)| scalar("string", key))
                    .transpose()?
                    .unwrap_or_else(|| json!(""));
                let value = match entry.iter().find(|(number, _)| *number == 2) {
                    Some((_, Wire::Bytes(bytes))) if text("value") == "message" => message(bytes, text("type"))?,
                    Some((_, value)) => scalar(text("value"), value)?,
                    None if text("value") == "message" => json!({}),
                    None => json!(""),
                };
                let map = object.entry(name).or_insert_with(|| json!({}));
                if let (Some(map), Some(key)) = (map.as_object_mut(), key.as_str()) {
                    map.insert(key.to_string(), value);
                }
                continue;
            }
            ("message", Wire::Bytes(bytes)) => message(bytes, text("type"))?,
            (kind, value) => scalar(kind, value)?,
        };
        if spec.get("repeated").and_then(Value::as_bool).unwrap_or(false) {
            if let Some(items) = object.entry(name).or_insert_with(|| json!([])).as_array_mut() {
                items.push(decoded);
            }
        } else if !is_zero(&decoded) {
            object.insert(name, decoded);
        }
    }
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tag: u64, wire_type: u64, out: &mut Vec<u8>) {
        encode_varint((tag << 3) | wire_type, out);
    }

    fn encode_varint(mut value: u64, out: &mut Vec<u8>) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    fn bytes(tag: u64, value: &[u8], out: &mut Vec<u8>) {
        key(tag, 2, out);
        encode_varint(value.len() as u64, out);
        out.extend_from_slice(value);
    }

    fn entry(key: &str, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        bytes(1, key.as_bytes(), &mut out);
        bytes(2, value, &mut out);
        out
    }

    /// What kubectl 1.32 sent for `kubectl create configmap x -n default --from-literal=a=b` (captured with -v=9):
    /// the ObjectMeta carries Go's zero values (empty strings, generation 0, an empty creationTimestamp).
    #[test]
    fn decodes_the_configmap_kubectl_create_sends() {
        let captured: &[u8] = &[
            0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0f, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x09, 0x43, 0x6f, 0x6e, 0x66, 0x69, 0x67,
            0x4d, 0x61, 0x70, 0x12, 0x22, 0x0a, 0x18, 0x0a, 0x01, 0x78, 0x12, 0x00, 0x1a, 0x07, 0x64, 0x65, 0x66, 0x61,
            0x75, 0x6c, 0x74, 0x22, 0x00, 0x2a, 0x00, 0x32, 0x00, 0x38, 0x00, 0x42, 0x00, 0x12, 0x06, 0x0a, 0x01, 0x61,
            0x12, 0x01, 0x62, 0x1a, 0x00, 0x22, 0x00,
        ];
        let object = decode(captured, Some("io.k8s.api.core.v1.ConfigMap")).unwrap();
        assert_eq!(
            object,
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": { "name": "x", "namespace": "default" },
                "data": { "a": "b" },
            })
        );
    }

    #[test]
    fn decodes_bytes_int_or_string_labels_and_lists() {
        // A Secret with binary data and a Service port with a named target port.
        let mut meta = Vec::new();
        bytes(1, b"s", &mut meta);
        bytes(11, &entry("app", b"mysql"), &mut meta);
        let mut secret = Vec::new();
        bytes(1, &meta, &mut secret);
        bytes(2, &entry("password", &[0, 159, 146, 150]), &mut secret);
        bytes(3, b"Opaque", &mut secret);
        assert_eq!(
            message(&secret, "io.k8s.api.core.v1.Secret").unwrap(),
            json!({
                "metadata": { "name": "s", "labels": { "app": "mysql" } },
                "data": { "password": base64(&[0, 159, 146, 150]) },
                "type": "Opaque",
            })
        );

        let mut target = Vec::new();
        key(1, 0, &mut target);
        encode_varint(1, &mut target);
        bytes(3, b"mysql", &mut target);
        let mut port = Vec::new();
        key(3, 0, &mut port);
        encode_varint(3306, &mut port);
        bytes(4, &target, &mut port);
        let mut spec = Vec::new();
        bytes(1, &port, &mut spec);
        bytes(1, &port, &mut spec);
        bytes(2, &entry("app", b"mysql"), &mut spec);
        assert_eq!(
            message(&spec, "io.k8s.api.core.v1.ServiceSpec").unwrap(),
            json!({
                "ports": [{ "port": 3306, "targetPort": "mysql" }, { "port": 3306, "targetPort": "mysql" }],
                "selector": { "app": "mysql" },
            })
        );
    }

    #[test]
    fn bodies_without_the_magic_or_cut_short_are_refused_with_a_reason() {
        let error = decode(b"{\"kind\":\"ConfigMap\"}", Some("io.k8s.api.core.v1.ConfigMap")).unwrap_err();
        assert_eq!(error.code, 400);
        assert!(error.message.contains("magic number"), "{}", error.message);
        let error = decode(b"k8s\0\x12\x30\x0a", Some("io.k8s.api.core.v1.ConfigMap")).unwrap_err();
        assert!(error.message.contains("runs past the end"), "{}", error.message);
    }
}
