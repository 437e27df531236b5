//! events.k8s.io/v1 Events: a real API server stores one kind of Event and serves it in both groups; this
//! renders a stored core/v1 Event with the events.k8s.io/v1 field names, as the server's conversion does
//! (k8s.io/kubernetes pkg/apis/events/v1 conversion: note = message, regarding = involvedObject,
//! deprecatedSource = source, deprecatedFirstTimestamp/LastTimestamp/Count = firstTimestamp/lastTimestamp/count,
//! reportingController = reportingComponent).

use serde_json::{Map, Value, json};

/// Fields with the same name and meaning in both versions.
const SAME: &[&str] = &[
    "metadata",
    "reason",
    "type",
    "action",
    "series",
    "related",
    "reportingInstance",
];

/// (core/v1 name, events.k8s.io/v1 name) of the renamed fields.
const RENAMED: &[(&str, &str)] = &[
    ("message", "note"),
    ("involvedObject", "regarding"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

/// A stored core/v1 Event as events.k8s.io/v1 shows it. Events recorded the legacy way (the kubelet's and the
/// controllers') have no eventTime: it shows as null there too, as on a real cluster.
pub fn from_core(core: &Value) -> Value {
    let mut shown = Map::new();
    shown.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    shown.insert("kind".into(), json!("Event"));
    for field in SAME {
        if let Some(value) = core.get(*field).filter(|value| !is_empty(value)) {
            shown.insert((*field).to_string(), value.clone());
        }
    }
    for (old, new) in RENAMED {
        if let Some(value) = core.get(*old).filter(|value| !is_empty(value)) {
            shown.insert((*new).to_string(), value.clone());
        }
    }
    shown.insert(
        "eventTime".into(),
        core.get("eventTime").cloned().unwrap_or(Value::Null),
    );
    Value::Object(shown)
}

/// What Go's `omitempty` leaves out.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_fields_take_their_events_k8s_io_names() {
        let core = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": { "name": "mysql-0.187", "namespace": "database" },
            "involvedObject": { "kind": "Pod", "name": "mysql-0", "namespace": "database", "uid": "u1" },
            "reason": "Started",
            "message": "Started container mysql",
            "type": "Normal",
            "count": 2,
            "firstTimestamp": "2025-01-01T00:00:00Z",
            "lastTimestamp": "2025-01-01T00:01:00Z",
            "source": { "component": "kubelet", "host": "kubesim-node" },
            "reportingComponent": "kubelet",
            "reportingInstance": "",
        });
        let shown = from_core(&core);
        assert_eq!(shown["apiVersion"], "events.k8s.io/v1");
        assert_eq!(shown["note"], "Started container mysql");
        assert_eq!(shown["regarding"]["name"], "mysql-0");
        assert_eq!(shown["reportingController"], "kubelet");
        assert_eq!(shown["deprecatedSource"]["host"], "kubesim-node");
        assert_eq!(shown["deprecatedFirstTimestamp"], "2025-01-01T00:00:00Z");
        assert_eq!(shown["deprecatedLastTimestamp"], "2025-01-01T00:01:00Z");
        assert_eq!(shown["deprecatedCount"], 2);
        assert_eq!(shown["reason"], "Started");
        assert_eq!(shown["type"], "Normal");
        assert_eq!(shown["metadata"]["name"], "mysql-0.187");
        // A legacy event has no eventTime: null, as a real server serves it; empty strings are left out.
        assert!(shown["eventTime"].is_null() && shown.as_object().unwrap().contains_key("eventTime"));
        assert!(shown.get("reportingInstance").is_none());
        for core_only in [
            "message",
            "involvedObject",
            "source",
            "count",
            "firstTimestamp",
            "reportingComponent",
        ] {
            assert!(shown.get(core_only).is_none(), "{core_only} is a core/v1 name");
        }
    }

    #[test]
    fn an_event_time_is_kept() {
        let shown = from_core(&json!({ "eventTime": "2025-01-01T00:00:00.123456Z", "action": "Binding" }));
        assert_eq!(shown["eventTime"], "2025-01-01T00:00:00.123456Z");
        assert_eq!(shown["action"], "Binding");
    }
}
