//! Label and field selectors, as `labelSelector=` and `fieldSelector=` query parameters spell them.

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses `k=v,k!=v,k in (a,b),k notin (a),k,!k` (`==` also accepted).
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(LabelSelector { requirements })
    }

    /// The selector a `LabelSelector` object (`matchLabels`, `matchExpressions`) describes.
    pub fn from_object(selector: &Value) -> LabelSelector {
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (key, value) in labels {
                requirements.push(Requirement::Equals(
                    key.clone(),
                    value.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        for expression in selector
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = expression
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let values: Vec<String> = expression
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|value| value.as_str().map(str::to_string))
                .collect();
            match expression.get("operator").and_then(Value::as_str) {
                Some("In") => requirements.push(Requirement::In(key, values)),
                Some("NotIn") => requirements.push(Requirement::NotIn(key, values)),
                Some("Exists") => requirements.push(Requirement::Exists(key)),
                Some("DoesNotExist") => requirements.push(Requirement::DoesNotExist(key)),
                _ => {}
            }
        }
        LabelSelector { requirements }
    }

    /// The selector of a Service's `spec.selector` map.
    pub fn from_map(labels: &serde_json::Map<String, Value>) -> LabelSelector {
        LabelSelector {
            requirements: labels
                .iter()
                .map(|(key, value)| Requirement::Equals(key.clone(), value.as_str().unwrap_or_default().to_string()))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|requirement| match requirement {
            Requirement::Equals(key, value) => labels.get(key) == Some(value),
            Requirement::NotEquals(key, value) => labels.get(key) != Some(value),
            Requirement::In(key, values) => labels.get(key).is_some_and(|actual| values.contains(actual)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|actual| !values.contains(actual)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        })
    }

    /// Whether the object's `metadata.labels` match.
    pub fn matches(&self, object: &Value) -> bool {
        self.matches_labels(&labels_of(object))
    }
}

/// A label map (`{"app": "mysql", ...}`) written as a label selector string: `app=mysql,...`; empty when absent.
pub fn selector_string(labels: Option<&Value>) -> String {
    labels
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The object's labels as a map of strings.
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, character) in text.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(valid_key(key.trim())?));
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(valid_key(key.trim())?, value.trim().to_string()));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(valid_key(key.trim())?, value.trim().to_string()));
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let key = valid_key(words[0])?;
        let rest = words[1].trim();
        let (operator, values) = rest
            .split_once('(')
            .ok_or_else(|| format!("unable to parse requirement: {part:?}: expected '(' after the operator"))?;
        let values = values
            .strip_suffix(')')
            .ok_or_else(|| format!("unable to parse requirement: {part:?}: expected ')'"))?
            .split(',')
            .map(|value| value.trim().to_string())
            .filter(|value| !value.is_empty())
            .collect();
        return match operator.trim() {
            "in" => Ok(Requirement::In(key, values)),
            "notin" => Ok(Requirement::NotIn(key, values)),
            other => Err(format!(
                "unable to parse requirement: {part:?}: unknown operator {other:?}"
            )),
        };
    }
    Ok(Requirement::Exists(valid_key(part)?))
}

fn valid_key(key: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/');
    if key.is_empty() || !key.chars().all(allowed) {
        return Err(format!("unable to parse requirement: invalid label key {key:?}"));
    }
    Ok(key.to_string())
}

/// A parsed field selector: `path=value` and `path!=value` terms joined by commas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

/// Fields a selector may name, per resource (anything else is rejected as the real server does).
fn field_supported(resource: &str, field: &str) -> bool {
    matches!(field, "metadata.name" | "metadata.namespace")
        || match resource {
            "events" => field.starts_with("involvedObject.") || matches!(field, "reason" | "type" | "source"),
            "pods" => matches!(
                field,
                "status.phase" | "spec.nodeName" | "status.podIP" | "spec.restartPolicy"
            ),
            "namespaces" => field == "status.phase",
            "secrets" => field == "type",
            _ => false,
        }
}

impl FieldSelector {
    pub fn parse(resource: &str, text: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
            let (field, equal, value) = if let Some((field, value)) = part.split_once("!=") {
                (field, false, value)
            } else if let Some((field, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (field, true, value)
            } else {
                return Err(format!("invalid selector: '{text}'; can't understand '{part}'"));
            };
            let field = field.trim();
            if !field_supported(resource, field) {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector { terms })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(field, equal, value)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let actual = object.pointer(&pointer).and_then(Value::as_str).unwrap_or_default();
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({ "metadata": { "name": "mysql-0", "namespace": "database", "labels": labels }, "status": { "phase": "Running" } })
    }

    #[test]
    fn label_selector_operators() {
        let object = pod(json!({ "app": "mysql", "lab.dev/role": "primary" }));
        let cases = [
            ("app=mysql", true),
            ("app==mysql", true),
            ("app!=mysql", false),
            ("app in (mysql, other)", true),
            ("app notin (mysql)", false),
            ("lab.dev/role", true),
            ("!lab.dev/role", false),
            ("app=mysql,lab.dev/role in (replica)", false),
            ("missing!=x", true),
            ("", true),
        ];
        for (text, expected) in cases {
            let selector = LabelSelector::parse(text).expect(text);
            assert_eq!(selector.matches(&object), expected, "{text}");
        }
        assert!(LabelSelector::parse("app in mysql").is_err());
    }

    #[test]
    fn selector_objects_and_maps() {
        let object = pod(json!({ "app": "mysql" }));
        let selector = json!({ "matchLabels": { "app": "mysql" }, "matchExpressions": [{ "key": "tier", "operator": "DoesNotExist" }] });
        assert!(LabelSelector::from_object(&selector).matches(&object));
        let map = json!({ "app": "other" });
        assert!(!LabelSelector::from_map(map.as_object().expect("map")).matches(&object));
    }

    #[test]
    fn field_selector_terms() {
        let object = pod(json!({}));
        assert!(
            FieldSelector::parse("pods", "metadata.name=mysql-0")
                .expect("valid")
                .matches(&object)
        );
        assert!(
            !FieldSelector::parse("pods", "metadata.name!=mysql-0")
                .expect("valid")
                .matches(&object)
        );
        assert!(
            FieldSelector::parse("pods", "status.phase=Running,metadata.namespace=database")
                .expect("valid")
                .matches(&object)
        );
        assert_eq!(
            FieldSelector::parse("pods", "spec.bogus=1").expect_err("unsupported"),
            "field label not supported: spec.bogus"
        );
        let event = json!({ "involvedObject": { "kind": "Pod", "name": "mysql-0" } });
        assert!(
            FieldSelector::parse("events", "involvedObject.kind=Pod,involvedObject.name=mysql-0")
                .expect("valid")
                .matches(&event)
        );
    }
}
