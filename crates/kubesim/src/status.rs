//! `Status` error objects with the codes, reasons and messages a real API server sends.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::resources::ResourceInfo;

/// One `details.causes[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// A failed request, rendered as a `Status` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// Boxed: errors travel in every `Result` of the API layer and should stay small.
    pub details: Box<Details>,
}

/// The `details` of a Status: what the error is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Details {
    pub name: Option<String>,
    pub group: Option<String>,
    pub kind: Option<String>,
    pub causes: Vec<Cause>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: Box::default(),
        }
    }

    fn about(mut self, info: &ResourceInfo, name: &str) -> ApiError {
        self.details.name = Some(name.to_string());
        self.details.kind = Some(info.plural.to_string());
        if !info.group.is_empty() {
            self.details.group = Some(info.group.to_string());
        }
        self
    }

    pub fn not_found(info: &ResourceInfo, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", qualified(info))).about(info, name)
    }

    pub fn already_exists(info: &ResourceInfo, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(info)),
        )
        .about(info, name)
    }

    pub fn conflict(info: &ResourceInfo, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your \
                 changes to the latest version and try again",
                qualified(info)
            ),
        )
        .about(info, name)
    }

    pub fn namespace_terminating(info: &ResourceInfo, name: &str, namespace: &str) -> ApiError {
        let mut error = ApiError::new(
            403,
            "Forbidden",
            format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is \
                 being terminated",
                qualified(info)
            ),
        )
        .about(info, name);
        error.details.causes.push(Cause {
            reason: "NamespaceTerminating".into(),
            message: format!("namespace {namespace} is being terminated"),
            field: "metadata.namespace".into(),
        });
        error
    }

    /// 422 Invalid: `<Kind>.<group> "<name>" is invalid: <field>: <detail>` with one cause per problem.
    pub fn invalid(info: &ResourceInfo, name: &str, causes: Vec<Cause>) -> ApiError {
        let kind = if info.group.is_empty() {
            info.kind.to_string()
        } else {
            format!("{}.{}", info.kind, info.group)
        };
        let details: Vec<String> = causes
            .iter()
            .map(|cause| format!("{}: {}", cause.field, cause.message))
            .collect();
        let details = if details.len() == 1 {
            details[0].clone()
        } else {
            format!("[{}]", details.join(", "))
        };
        let mut error = ApiError::new(422, "Invalid", format!("{kind} \"{name}\" is invalid: {details}"));
        error.details.name = Some(name.to_string());
        error.details.kind = Some(info.kind.to_string());
        if !info.group.is_empty() {
            error.details.group = Some(info.group.to_string());
        }
        error.details.causes = causes;
        error
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    /// The answer for a path this server does not serve.
    pub fn unknown_path() -> ApiError {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn internal(code: u16, message: impl Into<String>) -> ApiError {
        ApiError::new(code, "InternalError", message)
    }

    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn to_json(&self) -> Value {
        let mut details = serde_json::Map::new();
        if let Some(name) = &self.details.name {
            details.insert("name".into(), json!(name));
        }
        if let Some(group) = &self.details.group {
            details.insert("group".into(), json!(group));
        }
        if let Some(kind) = &self.details.kind {
            details.insert("kind".into(), json!(kind));
        }
        if !self.details.causes.is_empty() {
            let causes: Vec<Value> = self
                .details
                .causes
                .iter()
                .map(|cause| json!({ "reason": cause.reason, "message": cause.message, "field": cause.field }))
                .collect();
            details.insert("causes".into(), json!(causes));
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        if self.reason.is_empty()
            && let Some(fields) = status.as_object_mut()
        {
            // Errors the server has no reason for (a plain error inside it) carry none.
            fields.remove("reason");
        }
        status
    }
}

/// `pods` or `statefulsets.apps`, as messages name resources.
pub fn qualified(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        info.plural.to_string()
    } else {
        format!("{}.{}", info.plural, info.group)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(code, &self.to_json())
    }
}

/// A JSON body with the content type every Kubernetes client expects.
pub fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        to_json(body),
    )
        .into_response()
}

/// JSON text as the API server's Go encoder writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped (clients that
/// compare bytes, such as `kubectl rollout undo` with a ControllerRevision's data, rely on it). These characters
/// only occur inside strings, so escaping them in the text is safe.
pub fn to_json(value: &Value) -> String {
    let text = value.to_string();
    if !text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return text;
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for character in text.chars() {
        match character {
            '<' => escaped.push_str("\\u003c"),
            '>' => escaped.push_str("\\u003e"),
            '&' => escaped.push_str("\\u0026"),
            '\u{2028}' => escaped.push_str("\\u2028"),
            '\u{2029}' => escaped.push_str("\\u2029"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_what_go_escapes() {
        let value = serde_json::json!({ "command": "a > b && c < d\u{2028}" });
        let text = to_json(&value);
        assert_eq!(text, r#"{"command":"a \u003e b \u0026\u0026 c \u003c d\u2028"}"#);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
    }
    use crate::resources::by_plural;

    #[test]
    fn not_found_names_the_plural_and_group() {
        let sts = by_plural("statefulsets").expect("served");
        let status = ApiError::not_found(sts, "mysql").to_json();
        assert_eq!(status["message"], "statefulsets.apps \"mysql\" not found");
        assert_eq!(
            status["details"],
            json!({ "name": "mysql", "group": "apps", "kind": "statefulsets" })
        );
        let pods = by_plural("pods").expect("served");
        assert_eq!(
            ApiError::not_found(pods, "mysql-9").to_json()["message"],
            "pods \"mysql-9\" not found"
        );
    }

    #[test]
    fn invalid_lists_its_causes() {
        let pods = by_plural("pods").expect("served");
        let error = ApiError::invalid(
            pods,
            "x",
            vec![Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "spec.containers[0].image".into(),
            }],
        );
        assert_eq!(
            error.message,
            "Pod \"x\" is invalid: spec.containers[0].image: Required value"
        );
        assert_eq!(error.to_json()["details"]["causes"][0]["reason"], "FieldValueRequired");
    }
}
