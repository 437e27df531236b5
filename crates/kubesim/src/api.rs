//! The HTTP API server: discovery, get/list/watch, apply/create/patch/update/delete, pod logs, and the
//! WebSocket upgrades for exec and port-forward, with the wire behaviour kube-rs and kubectl expect.

use std::borrow::Cow;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{FutureExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::control::{ControlPlane, DeleteOptions, Deletion, has_finalizers, is_deleting};
use crate::defaults::validate_update;
use crate::managed::{self, Writer};
use crate::resources::{self, GROUPS, RESOURCES, ResourceInfo, SUBRESOURCES};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Cause, Details, json_response};
use crate::store::{Change, ChangeKind, StoreError, metadata_mut};
use crate::{openapi, protobuf, strategic, streams, table};

/// Watches that saw nothing for this long get a BOOKMARK with the current resourceVersion.
const BOOKMARK_AFTER_QUIET: Duration = Duration::from_secs(5);
/// A watch without timeoutSeconds ends after this long, as real servers end theirs (30-60 min).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long a watch hit by the drop fault runs before its connection breaks.
const DROPPED_WATCH_LIFETIME: Duration = Duration::from_millis(100);
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// The Kubernetes version the simulator claims to be.
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "35");

/// The API server's routes (everything goes through one dispatcher so unknown paths get a Status and a log line).
pub fn router(control: ControlPlane) -> Router {
    Router::new().fallback(dispatch).with_state(control)
}

/// Query parameters in order, repeated keys kept (`command=a&command=b`).
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Query {
        Query(
            form_urlencoded::parse(raw.as_bytes())
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(crate::pod_logs::is_true)
    }

    fn dry_run(&self) -> bool {
        self.get("dryRun").is_some_and(|mode| !mode.is_empty())
    }
}

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Version,
    Health,
    CoreVersions,
    CoreResources,
    Groups,
    Group(&'static str),
    GroupResources(&'static str, &'static str),
    /// `/openapi/...`: the path after `openapi/`.
    OpenApi(String),
    Resource {
        info: &'static ResourceInfo,
        namespace: Option<String>,
        name: Option<String>,
        sub: Option<String>,
    },
    Unknown,
}

fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.split('/').filter(|segment| !segment.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "readyz" | "livez"] => Route::Health,
        ["openapi", rest @ ..] => Route::OpenApi(rest.join("/")),
        ["api"] => Route::CoreVersions,
        ["api", "v1"] => Route::CoreResources,
        ["api", "v1", rest @ ..] => resource_route("", "v1", rest),
        ["apis"] => Route::Groups,
        ["apis", group] => GROUPS
            .iter()
            .find(|(name, _)| name == group)
            .map_or(Route::Unknown, |(name, _)| Route::Group(name)),
        ["apis", group, version] => GROUPS
            .iter()
            .find(|(name, served)| name == group && served == version)
            .map_or(Route::Unknown, |(name, served)| Route::GroupResources(name, served)),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => Route::Unknown,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let owned = |segment: Option<&&str>| segment.map(|text| (*text).to_string());
    if rest.len() >= 3
        && rest[0] == "namespaces"
        && let Some(info) = resources::lookup(group, version, rest[2]).filter(|info| info.namespaced)
    {
        if rest.len() > 5 {
            return Route::Unknown;
        }
        return Route::Resource {
            info,
            namespace: Some(rest[1].to_string()),
            name: owned(rest.get(3)),
            sub: owned(rest.get(4)),
        };
    }
    let Some(info) = rest
        .first()
        .and_then(|plural| resources::lookup(group, version, plural))
    else {
        return Route::Unknown;
    };
    if rest.len() > 3 || (info.namespaced && rest.len() > 1) {
        return Route::Unknown;
    }
    let known_sub = |sub: &str| {
        sub == "finalize"
            || SUBRESOURCES
                .iter()
                .any(|(parent, name, ..)| *parent == info.plural && *name == sub)
    };
    if rest.get(2).is_some_and(|sub| !known_sub(sub)) {
        return Route::Unknown;
    }
    Route::Resource {
        info,
        namespace: None,
        name: owned(rest.get(1)),
        sub: owned(rest.get(2)),
    }
}

async fn dispatch(State(control): State<ControlPlane>, request: Request) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    if let Some(code) = control.faults.take_request_failure() {
        tracing::info!(%method, %uri, code, "failing the request (fault injected)");
        return ApiError::internal(code, format!("kubesim: injected failure for {method} {}", uri.path()))
            .into_response();
    }
    let query = Query::parse(uri.query().unwrap_or_default());
    let response = match route(uri.path()) {
        Route::Version => json_response(StatusCode::OK, &version_info()),
        Route::Health => (StatusCode::OK, "ok").into_response(),
        Route::CoreVersions => json_response(
            StatusCode::OK,
            &json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1" }],
            }),
        ),
        Route::CoreResources => json_response(StatusCode::OK, &resource_list("", "v1")),
        Route::Groups => json_response(StatusCode::OK, &group_list()),
        Route::Group(group) => json_response(StatusCode::OK, &api_group(group)),
        Route::GroupResources(group, version) => json_response(StatusCode::OK, &resource_list(group, version)),
        Route::OpenApi(path) => openapi::serve(&path, request.headers()),
        Route::Resource {
            info,
            namespace,
            name,
            sub,
        } => {
            let target = Target {
                info,
                namespace: namespace.unwrap_or_default(),
                name,
            };
            match serve_resource(&control, target, sub.as_deref(), &method, query, request).await {
                Ok(response) => response,
                Err(error) => error.into_response(),
            }
        }
        Route::Unknown => {
            tracing::warn!(%method, %uri, "no route for this request; answering 404");
            ApiError::unknown_path().into_response()
        }
    };
    tracing::debug!(%method, %uri, status = response.status().as_u16(), "kubesim request");
    response
}

fn version_info() -> Value {
    let (major, minor) = KUBERNETES_VERSION;
    json!({
        "major": major,
        "minor": minor,
        "emulationMajor": major,
        "emulationMinor": minor,
        "gitVersion": format!("v{major}.{minor}.0"),
        "gitCommit": "kubesim",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn resource_list(group: &str, version: &str) -> Value {
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut entries = Vec::new();
    // In name order, as a real server lists them (`kubectl get all` prints the kinds in this order).
    let mut infos: Vec<&ResourceInfo> = RESOURCES
        .iter()
        .filter(|info| info.group == group && info.version == version)
        .collect();
    infos.sort_by_key(|info| info.plural);
    for info in infos {
        let mut entry = json!({
            "name": info.plural,
            "singularName": info.singular,
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": resources::verbs(info),
            "shortNames": info.short_names,
        });
        if !resources::categories(info).is_empty() {
            entry["categories"] = json!(resources::categories(info));
        }
        entries.push(entry);
        let mut subresources: Vec<_> = SUBRESOURCES
            .iter()
            .filter(|(parent, ..)| *parent == info.plural)
            .collect();
        subresources.sort_by_key(|(_, sub, ..)| *sub);
        for (parent, sub, kind, verbs) in subresources {
            entries.push(json!({
                "name": format!("{parent}/{sub}"),
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": kind,
                "verbs": verbs,
            }));
        }
    }
    json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries })
}

fn api_group(group: &str) -> Value {
    let versions: Vec<Value> = GROUPS
        .iter()
        .filter(|(name, _)| *name == group)
        .map(|(name, version)| json!({ "groupVersion": format!("{name}/{version}"), "version": version }))
        .collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

fn group_list() -> Value {
    let groups: Vec<Value> = GROUPS
        .iter()
        .map(|(group, _)| {
            let mut entry = api_group(group);
            if let Some(fields) = entry.as_object_mut() {
                fields.remove("kind");
                fields.remove("apiVersion");
            }
            entry
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// The resource a request is about.
struct Target {
    info: &'static ResourceInfo,
    /// "" for cluster-scoped resources and for lists across all namespaces.
    namespace: String,
    name: Option<String>,
}

impl Target {
    fn store_namespace(&self) -> &str {
        if self.info.namespaced { &self.namespace } else { "" }
    }

    fn name(&self) -> Result<&str, ApiError> {
        self.name.as_deref().ok_or_else(ApiError::method_not_allowed)
    }

    fn namespace_filter(&self) -> Option<&str> {
        (self.info.namespaced && !self.namespace.is_empty()).then_some(self.namespace.as_str())
    }
}

async fn serve_resource(
    control: &ControlPlane,
    target: Target,
    sub: Option<&str>,
    method: &Method,
    query: Query,
    request: Request,
) -> Result<Response, ApiError> {
    let manager = manager_of(&query, request.headers());
    if resources::is_events_view(target.info) && *method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    match (sub, method) {
        (None, &Method::GET) if target.name.is_some() => get(control, &target, table_request(&request, &query)),
        (None, &Method::GET) if query.flag("watch") => watch(control, &target, &query),
        (None, &Method::GET) => list(control, &target, &query, table_request(&request, &query)),
        (None, &Method::POST) if target.name.is_none() => {
            let body = read_object(request, target.info).await?;
            create(control, &target, &query, body, &Writer::update(&manager, false))
        }
        (None | Some("status"), &Method::PUT) => {
            let body = read_object(request, target.info).await?;
            let status = sub == Some("status");
            replace(
                control,
                &target,
                (status, &query),
                body,
                &Writer::update(&manager, status),
            )
        }
        (None | Some("status"), &Method::PATCH) => {
            let content_type = content_type(request.headers());
            let body = read_json(request).await?;
            let status = sub == Some("status");
            patch(
                control,
                &target,
                status,
                &query,
                &content_type,
                body,
                &Writer::update(&manager, status),
            )
        }
        (None, &Method::DELETE) if target.name.is_some() => {
            let body = read_json_or_empty(request).await?;
            delete(control, &target, &query, &body)
        }
        (None, &Method::DELETE) => {
            let body = read_json_or_empty(request).await?;
            delete_collection(control, &target, &query, &body)
        }
        (Some("status"), &Method::GET) => get(control, &target, None),
        (Some("scale"), _) if target.info.plural == "statefulsets" => {
            let body = if matches!(*method, Method::PUT | Method::PATCH) {
                Some(read_json(request).await?)
            } else {
                None
            };
            let writer = Writer {
                subresource: Some("scale"),
                ..Writer::update(&manager, false)
            };
            scale(control, &target, method, body, &writer)
        }
        (Some("log"), &Method::GET) if target.info.plural == "pods" => pod_log(control, &target, &query),
        (Some("portforward"), &Method::GET | &Method::POST) if target.info.plural == "pods" => {
            port_forward(control, &target, &query, request).await
        }
        (Some("exec" | "attach"), &Method::GET | &Method::POST) if target.info.plural == "pods" => {
            exec(control, &target, &query, request).await
        }
        (Some(other), _)
            if !SUBRESOURCES
                .iter()
                .any(|(parent, name, ..)| *parent == target.info.plural && *name == other) =>
        {
            tracing::warn!(
                resource = target.info.plural,
                subresource = other,
                "unknown subresource; answering 404"
            );
            Err(ApiError::unknown_path())
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The field manager of a write: `fieldManager`, else the client's user agent up to the first '/', as the real
/// server defaults it.
fn manager_of(query: &Query, headers: &HeaderMap) -> String {
    if let Some(manager) = query.get("fieldManager").filter(|manager| !manager.is_empty()) {
        return manager.to_string();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .and_then(|agent| agent.split('/').next())
        .filter(|prefix| !prefix.trim().is_empty())
        .unwrap_or("unknown")
        .to_string()
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_default()
}

async fn read_body(request: Request) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|error| ApiError::bad_request(format!("unable to read the request body: {error}")))
}

/// A create or update body: JSON, or the protobuf encoding kubectl's typed clients send.
async fn read_object(request: Request, info: &ResourceInfo) -> Result<Value, ApiError> {
    if content_type(request.headers()) == protobuf::CONTENT_TYPE {
        let bytes = read_body(request).await?;
        return protobuf::decode(&bytes, protobuf::definition_of(info).as_deref());
    }
    read_json(request).await
}

async fn read_json(request: Request) -> Result<Value, ApiError> {
    let bytes = read_body(request).await?;
    serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::bad_request(format!("the body of the request could not be decoded as JSON: {error}"))
    })
}

async fn read_json_or_empty(request: Request) -> Result<Value, ApiError> {
    let bytes = read_body(request).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes)
        .map_err(|error| ApiError::bad_request(format!("invalid DeleteOptions body: {error}")))
}

/// `Some(includeObject)` when the client asked for a Table (kubectl does; other clients get plain JSON).
fn table_request(request: &Request, query: &Query) -> Option<String> {
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    table::wants_table(accept).then(|| query.get("includeObject").unwrap_or("Metadata").to_string())
}

fn get(control: &ControlPlane, target: &Target, table: Option<String>) -> Result<Response, ApiError> {
    let name = target.name()?;
    let object = control
        .store
        .get(target.info.plural, target.store_namespace(), name)
        .ok_or_else(|| ApiError::not_found(target.info, name))?;
    if let Some(include) = table {
        return Ok(json_response(
            StatusCode::OK,
            &table::render(target.info, &[object], None, &include),
        ));
    }
    Ok(json_response(StatusCode::OK, &shown(target.info, &object)))
}

fn selectors(target: &Target, query: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default()).map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(target.info.plural, query.get("fieldSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

fn list(control: &ControlPlane, target: &Target, query: &Query, table: Option<String>) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(target, query)?;
    let (items, resource_version) = control
        .store
        .list_with_version(target.info.plural, target.namespace_filter());
    let items: Vec<Value> = items
        .into_iter()
        .filter(|object| labels.matches(object) && fields.matches(object))
        .collect();
    if let Some(include) = table {
        return Ok(json_response(
            StatusCode::OK,
            &table::render(target.info, &items, Some(resource_version), &include),
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", target.info.kind),
            "apiVersion": target.info.api_version(),
            "metadata": { "resourceVersion": resource_version.to_string() },
            "items": items.iter().map(|object| shown(target.info, object)).collect::<Vec<_>>(),
        }),
    ))
}

/// An object as the resource it was asked for shows it (events.k8s.io Events are stored as core Events).
/// Borrowed unless it is such a view: gets, lists and watches serialize the stored object as it is.
fn shown<'a>(info: &ResourceInfo, object: &'a Value) -> Cow<'a, Value> {
    if resources::is_events_view(info) {
        Cow::Owned(crate::events_view::from_core(object))
    } else {
        Cow::Borrowed(object)
    }
}

/// Which watch events a change produces for one watcher (selector entry -> ADDED, exit -> DELETED).
struct WatchFilter {
    info: &'static ResourceInfo,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }

    fn event_for(&self, change: &Change) -> Option<(&'static str, Value)> {
        if change.resource != self.info.plural
            || self
                .namespace
                .as_ref()
                .is_some_and(|namespace| *namespace != change.namespace)
        {
            return None;
        }
        let now = self.matches(&change.object);
        let before = change.old.as_ref().is_some_and(|old| self.matches(old));
        let kind = match (change.kind, before, now) {
            (ChangeKind::Added, _, true) => ChangeKind::Added,
            (ChangeKind::Modified, true, true) => ChangeKind::Modified,
            (ChangeKind::Modified, false, true) => ChangeKind::Added,
            (ChangeKind::Modified, true, false) => ChangeKind::Deleted,
            (ChangeKind::Deleted, _, true) => ChangeKind::Deleted,
            _ => return None,
        };
        Some((kind.as_watch_type(), shown(self.info, &change.object).into_owned()))
    }
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = crate::status::to_json(&json!({ "type": kind, "object": object }));
    line.push('\n');
    Bytes::from(line)
}

fn bookmark(info: &ResourceInfo, resource_version: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({ "resourceVersion": resource_version.to_string() });
    if initial_events_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    watch_line(
        "BOOKMARK",
        &json!({ "kind": info.kind, "apiVersion": info.api_version(), "metadata": metadata }),
    )
}

fn streaming_response(receiver: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Response {
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(stream))
        .expect("static response parts are valid")
}

fn watch(control: &ControlPlane, target: &Target, query: &Query) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(target, query)?;
    let filter = WatchFilter {
        info: target.info,
        namespace: target.namespace_filter().map(str::to_string),
        labels,
        fields,
    };
    let timeout =
        match query.get("timeoutSeconds") {
            Some(text) => Duration::from_secs(text.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid timeoutSeconds {text:?}: expected whole seconds"))
            })?),
            None => DEFAULT_WATCH_TIMEOUT,
        };
    let bookmarks = query.flag("allowWatchBookmarks");
    let send_initial_events = query.flag("sendInitialEvents");
    let requested = query
        .get("resourceVersion")
        .filter(|text| !text.is_empty() && *text != "0");
    let (initial, start_version, feed) = match requested {
        Some(text) if !send_initial_events => {
            let since: u64 = text.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "resourceVersion: Invalid value: {text:?}: must be a decimal resourceVersion"
                ))
            })?;
            match control.store.changes_since(since) {
                Ok((missed, feed)) => {
                    let lines: Vec<Bytes> = missed
                        .iter()
                        .filter_map(|change| filter.event_for(change))
                        .map(|(kind, object)| watch_line(kind, &object))
                        .collect();
                    let last = missed.last().map_or(since, |change| change.resource_version);
                    (lines, last, feed)
                }
                Err(StoreError::Expired { requested, oldest }) => {
                    let (sender, receiver) = mpsc::channel(1);
                    let status =
                        ApiError::expired(format!("too old resource version: {requested} ({oldest})")).to_json();
                    let _ = sender.try_send(Ok(watch_line("ERROR", &status)));
                    return Ok(streaming_response(receiver));
                }
                Err(other) => return Err(ApiError::internal(500, other.to_string())),
            }
        }
        _ => {
            let (objects, version, feed) = control
                .store
                .snapshot_and_subscribe(filter.info.plural, filter.namespace.as_deref());
            let lines = objects
                .iter()
                .filter(|object| filter.matches(object))
                .map(|object| watch_line("ADDED", &shown(filter.info, object)))
                .collect();
            (lines, version, feed)
        }
    };
    let dropped = control.faults.take_watch_drop();
    let info = target.info;
    let (sender, receiver) = mpsc::channel(256);
    tokio::spawn(async move {
        let mut stream = WatchStream {
            sender,
            filter,
            feed,
            info,
            bookmarks,
            last_version: start_version,
        };
        stream.run(initial, send_initial_events, timeout, dropped).await;
    });
    Ok(streaming_response(receiver))
}

struct WatchStream {
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
    filter: WatchFilter,
    feed: broadcast::Receiver<Change>,
    info: &'static ResourceInfo,
    bookmarks: bool,
    last_version: u64,
}

impl WatchStream {
    async fn send(&self, line: Bytes) -> bool {
        self.sender.send(Ok(line)).await.is_ok()
    }

    async fn run(&mut self, initial: Vec<Bytes>, initial_events_end: bool, timeout: Duration, dropped: bool) {
        for line in initial {
            if !self.send(line).await {
                return;
            }
        }
        if initial_events_end && self.bookmarks && !self.send(bookmark(self.info, self.last_version, true)).await {
            return;
        }
        let deadline = Instant::now() + timeout;
        let drop_at = dropped.then(|| Instant::now() + DROPPED_WATCH_LIFETIME);
        let mut quiet_until = Instant::now() + BOOKMARK_AFTER_QUIET;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = async { tokio::time::sleep_until(drop_at.unwrap_or(deadline)).await }, if drop_at.is_some() => {
                    tracing::info!(resource = self.filter.info.plural, "breaking a watch (fault injected)");
                    let _ = self.sender.send(Err(std::io::Error::other("kubesim: watch dropped (fault injected)"))).await;
                    return;
                }
                _ = self.sender.closed() => return,
                _ = tokio::time::sleep_until(quiet_until), if self.bookmarks => {
                    if !self.send(bookmark(self.info, self.last_version, false)).await {
                        return;
                    }
                    quiet_until = Instant::now() + BOOKMARK_AFTER_QUIET;
                }
                received = self.feed.recv() => match received {
                    Ok(change) => {
                        self.last_version = change.resource_version;
                        if let Some((kind, object)) = self.filter.event_for(&change) {
                            if !self.send(watch_line(kind, &object)).await {
                                return;
                            }
                            quiet_until = Instant::now() + BOOKMARK_AFTER_QUIET;
                        }
                    }
                    // Too far behind: end the stream; the client resumes from the last version it saw.
                    Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}

/// Identity and bookkeeping fields a client must not set (the store owns them).
fn strip_server_fields(object: &mut Value) {
    let metadata = metadata_mut(object);
    for field in [
        "uid",
        "creationTimestamp",
        "generation",
        "managedFields",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        metadata.remove(field);
    }
}

/// The body's apiVersion/kind/name/namespace must agree with the URL.
fn check_body_identity(target: &Target, body: &mut Value, require_type: bool) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
    if require_type && (api_version.is_empty() || kind.is_empty()) {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in '{}'",
            serde_json::to_string(body).unwrap_or_default()
        )));
    }
    if !kind.is_empty() && kind != target.info.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the body ({kind}) does not match the kind of the resource ({}) in the URL",
            target.info.kind
        )));
    }
    if !api_version.is_empty() && api_version != target.info.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            target.info.api_version()
        )));
    }
    if let Some(url_name) = target.name.as_deref() {
        match body.pointer("/metadata/name").and_then(Value::as_str) {
            Some(name) if name != url_name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({name}) does not match the name on the URL ({url_name})"
                )));
            }
            Some(_) => {}
            None => {
                metadata_mut(body).insert("name".into(), json!(url_name));
            }
        }
    }
    if target.info.namespaced
        && let Some(namespace) = body.pointer("/metadata/namespace").and_then(Value::as_str)
        && !namespace.is_empty()
        && namespace != target.namespace
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

fn create(
    control: &ControlPlane,
    target: &Target,
    query: &Query,
    mut body: Value,
    writer: &Writer,
) -> Result<Response, ApiError> {
    if target.info.namespaced && target.namespace.is_empty() {
        return Err(ApiError::method_not_allowed());
    }
    check_body_identity(target, &mut body, false)?;
    let warnings = check_fields(target.info, &mut body, query, &openapi::decoding_context(target.info))?;
    strip_server_fields(&mut body);
    record_creation(target, &mut body, writer);
    let created = control.create(target.info, &target.namespace, body, query.dry_run())?;
    Ok(openapi::with_warnings(
        json_response(StatusCode::CREATED, &created),
        &warnings,
    ))
}

/// The resourceVersion precondition a body may carry (`metadata.resourceVersion`).
fn check_version_precondition(target: &Target, name: &str, body: &Value, current: &Value) -> Result<(), ApiError> {
    match body.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
        Some(wanted)
            if !wanted.is_empty()
                && Some(wanted) != current.pointer("/metadata/resourceVersion").and_then(Value::as_str) =>
        {
            Err(ApiError::conflict(target.info, name))
        }
        _ => Ok(()),
    }
}

/// Unknown fields under the request's `fieldValidation`: refused (Strict) or dropped, with warnings (Warn).
fn check_fields(
    info: &ResourceInfo,
    object: &mut Value,
    query: &Query,
    context: &str,
) -> Result<Vec<String>, ApiError> {
    let mode = openapi::FieldValidation::from_query(query.get("fieldValidation"));
    openapi::check_fields(info, object, mode, context)
}

/// The managedFields entry of the writer that creates `body`: every field it sets.
fn record_creation(target: &Target, body: &mut Value, writer: &Writer) {
    body["apiVersion"] = json!(target.info.api_version());
    body["kind"] = json!(target.info.kind);
    let fields = managed::fields_v1(body);
    managed::record(body, writer, fields);
}

/// Stores `compute(current)` if it is a valid update; the result is defaulted and validated against the old object.
/// `writer` is recorded in managedFields: over the `applied` object's fields for an apply, over the fields that
/// changed for an update.
fn update_with(
    control: &ControlPlane,
    target: &Target,
    dry_run: bool,
    (writer, applied): (&Writer, Option<&Value>),
    compute: impl FnOnce(&Value) -> Result<Value, ApiError>,
) -> Result<Value, ApiError> {
    let name = target.name()?.to_string();
    let info = target.info;
    let finish = |current: &Value| -> Result<Value, ApiError> {
        let mut updated = compute(current)?;
        control.default_object(info.plural, &mut updated);
        let causes = validate_update(info.plural, current, &updated);
        if !causes.is_empty() {
            return Err(ApiError::invalid(info, &name, causes));
        }
        let fields = match applied {
            Some(applied) => managed::fields_v1(applied),
            None => managed::changed_fields(current, &updated),
        };
        managed::after_write(current, &mut updated, writer, fields);
        Ok(updated)
    };
    if dry_run {
        let current = control
            .store
            .get(info.plural, target.store_namespace(), &name)
            .ok_or_else(|| ApiError::not_found(info, &name))?;
        return finish(&current);
    }
    let updated = control
        .store
        .try_update(info.plural, target.store_namespace(), &name, |object| {
            *object = finish(object)?;
            Ok(())
        })
        .ok_or_else(|| ApiError::not_found(info, &name))??;
    Ok(finish_deletion_if_released(control, target, updated))
}

/// An object being deleted whose last finalizer was just removed goes away now.
fn finish_deletion_if_released(control: &ControlPlane, target: &Target, object: Value) -> Value {
    if is_deleting(&object) && !has_finalizers(&object) && !matches!(target.info.plural, "pods" | "namespaces") {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        return control
            .store
            .remove(target.info.plural, target.store_namespace(), &name)
            .unwrap_or(object);
    }
    object
}

/// Keeps `status` from `current` (main resource) or takes only `status` from `desired` (status subresource).
fn split_status(current: &Value, mut desired: Value, status_only: bool) -> Value {
    if status_only {
        let mut updated = current.clone();
        updated["status"] = desired.get("status").cloned().unwrap_or(Value::Null);
        return updated;
    }
    match current.get("status") {
        Some(status) => desired["status"] = status.clone(),
        None => {
            if let Some(fields) = desired.as_object_mut() {
                fields.remove("status");
            }
        }
    }
    desired
}

fn replace(
    control: &ControlPlane,
    target: &Target,
    (status_only, query): (bool, &Query),
    mut body: Value,
    writer: &Writer,
) -> Result<Response, ApiError> {
    check_body_identity(target, &mut body, false)?;
    let warnings = check_fields(target.info, &mut body, query, &openapi::decoding_context(target.info))?;
    let name = target.name()?.to_string();
    let updated = update_with(control, target, false, (writer, None), |current| {
        check_version_precondition(target, &name, &body, current)?;
        let mut desired = body.clone();
        strip_server_fields(&mut desired);
        Ok(split_status(current, desired, status_only))
    })?;
    Ok(openapi::with_warnings(
        json_response(StatusCode::OK, &updated),
        &warnings,
    ))
}

fn patch(
    control: &ControlPlane,
    target: &Target,
    status_only: bool,
    query: &Query,
    content_type: &str,
    body: Value,
    writer: &Writer,
) -> Result<Response, ApiError> {
    let name = target.name()?.to_string();
    match content_type {
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
            apply(control, target, status_only, query, body)
        }
        "application/merge-patch+json" | "application/strategic-merge-patch+json" | "application/json-patch+json" => {
            let json_patch = content_type == "application/json-patch+json";
            let mut warnings = Vec::new();
            let updated = update_with(control, target, query.dry_run(), (writer, None), |current| {
                let mut patched = current.clone();
                if json_patch {
                    apply_json_patch(&mut patched, &body)?;
                } else {
                    check_version_precondition(target, &name, &body, current)?;
                    match (content_type, openapi::definition_schema(target.info)) {
                        ("application/strategic-merge-patch+json", Some(schema)) => {
                            strategic::apply(&mut patched, &body, schema)?;
                        }
                        _ => merge_patch(&mut patched, &body),
                    }
                }
                warnings = check_fields(target.info, &mut patched, query, "")?;
                Ok(split_status(current, patched, status_only))
            })?;
            Ok(openapi::with_warnings(
                json_response(StatusCode::OK, &updated),
                &warnings,
            ))
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let fields = target.as_object_mut().expect("just made an object");
    for (key, value) in patch_fields {
        if key.starts_with("$") {
            continue;
        }
        if value.is_null() {
            fields.remove(key);
        } else {
            merge_patch(fields.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// RFC 6902 JSON patch: add, remove, replace, test, copy, move.
fn apply_json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let operations = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("a JSON patch must be an array of operations"))?;
    for operation in operations {
        let op = operation.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = operation.get("path").and_then(Value::as_str).unwrap_or_default();
        let value = operation.get("value").cloned().unwrap_or(Value::Null);
        let fail = |what: &str| ApiError::internal(500, format!("the JSON patch operation {op} {path} failed: {what}"));
        match op {
            "add" => json_pointer_add(target, path, value).map_err(|error| fail(&error))?,
            "remove" => {
                json_pointer_remove(target, path).map_err(|error| fail(&error))?;
            }
            "replace" => {
                json_pointer_remove(target, path).map_err(|error| fail(&error))?;
                json_pointer_add(target, path, value).map_err(|error| fail(&error))?;
            }
            "test" => {
                if target.pointer(path) != Some(&value) {
                    return Err(fail("the test did not match"));
                }
            }
            "copy" | "move" => {
                let from = operation.get("from").and_then(Value::as_str).unwrap_or_default();
                let moved = if op == "move" {
                    json_pointer_remove(target, from).map_err(|error| fail(&error))?
                } else {
                    target.pointer(from).cloned().ok_or_else(|| fail("missing from path"))?
                };
                json_pointer_add(target, path, moved).map_err(|error| fail(&error))?;
            }
            other => return Err(ApiError::bad_request(format!("unknown JSON patch operation {other:?}"))),
        }
    }
    Ok(())
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    let (parent, last) = path.rsplit_once('/').ok_or_else(|| format!("invalid path {path:?}"))?;
    Ok((parent.to_string(), last.replace("~1", "/").replace("~0", "~")))
}

fn json_pointer_add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(fields)) => {
            fields.insert(last, value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            if last == "-" {
                items.push(value);
                return Ok(());
            }
            let index: usize = last.parse().map_err(|_| format!("invalid index {last:?}"))?;
            if index > items.len() {
                return Err(format!("index {index} out of range"));
            }
            items.insert(index, value);
            Ok(())
        }
        _ => Err("missing path".into()),
    }
}

pub(crate) fn json_pointer_remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(fields)) => fields.remove(&last).ok_or_else(|| "missing path".into()),
        Some(Value::Array(items)) => {
            let index: usize = last.parse().map_err(|_| format!("invalid index {last:?}"))?;
            if index >= items.len() {
                return Err(format!("index {index} out of range"));
            }
            Ok(items.remove(index))
        }
        _ => Err("missing path".into()),
    }
}

/// Server-side apply merge: maps merge key by key, everything else (scalars, lists) is replaced by the applied
/// value, and fields this manager applied last time but no longer does are removed.
pub fn apply_merge(existing: &Value, previous: Option<&Value>, applied: &Value) -> Value {
    let (Value::Object(existing_fields), Value::Object(applied_fields)) = (existing, applied) else {
        return applied.clone();
    };
    let mut merged = existing_fields.clone();
    for (key, value) in applied_fields {
        let previous_value = previous.and_then(|previous| previous.get(key));
        let combined = match merged.get(key) {
            Some(current) if current.is_object() && value.is_object() => apply_merge(current, previous_value, value),
            _ => value.clone(),
        };
        merged.insert(key.clone(), combined);
    }
    if let Some(Value::Object(previous_fields)) = previous {
        for key in previous_fields.keys() {
            if !applied_fields.contains_key(key) {
                merged.remove(key);
            }
        }
    }
    Value::Object(merged)
}

/// Leaf paths (`.spec.replicas`) with their values; lists count as leaves.
fn leaves(value: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (key, child) in fields {
                leaves(child, &format!("{prefix}.{key}"), out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

fn pointer_of(path: &str) -> String {
    path.replace('~', "~0").replace('/', "~1").replace('.', "/")
}

/// Fields `applied` sets to a value another manager applied differently: (manager, path).
fn apply_conflicts(control: &ControlPlane, uid: &str, manager: &str, applied: &Value) -> Vec<(String, String)> {
    let mut mine = Vec::new();
    leaves(applied, "", &mut mine);
    let mut conflicts = Vec::new();
    for (other, theirs) in control.applied_by_others(uid, manager) {
        for (path, value) in &mine {
            if path.starts_with(".metadata.name")
                || path.starts_with(".metadata.namespace")
                || path == ".apiVersion"
                || path == ".kind"
            {
                continue;
            }
            if let Some(their_value) = theirs.pointer(&pointer_of(path))
                && their_value != value
                && !their_value.is_object()
            {
                conflicts.push((other.clone(), path.clone()));
            }
        }
    }
    conflicts
}

fn apply(
    control: &ControlPlane,
    target: &Target,
    status_only: bool,
    query: &Query,
    mut body: Value,
) -> Result<Response, ApiError> {
    let name = target.name()?.to_string();
    let Some(manager) = query
        .get("fieldManager")
        .filter(|manager| !manager.is_empty())
        .map(str::to_string)
    else {
        return Err(ApiError {
            code: 422,
            reason: "Invalid",
            message:
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
                    .into(),
            details: Box::new(Details {
                name: None,
                group: Some("meta.k8s.io".into()),
                kind: Some("PatchOptions".into()),
                causes: vec![Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value: is required for apply patch".into(),
                    field: "fieldManager".into(),
                }],
            }),
        });
    };
    check_body_identity(target, &mut body, true)?;
    openapi::check_applied(target.info, target.store_namespace(), &name, &body)?;
    strip_server_fields(&mut body);
    let writer = Writer::apply(&manager, status_only);
    let force = query.flag("force");
    let dry_run = query.dry_run();
    if !status_only && let Some(fields) = body.as_object_mut() {
        // Status belongs to the controllers; apply on the main resource ignores it.
        fields.remove("status");
    }
    let precondition = body.pointer("/metadata/resourceVersion").cloned();
    if let Some(fields) = body.pointer_mut("/metadata").and_then(Value::as_object_mut) {
        fields.remove("resourceVersion");
    }
    for _attempt in 0..3 {
        let Some(current) = control.store.get(target.info.plural, target.store_namespace(), &name) else {
            if status_only {
                return Err(ApiError::not_found(target.info, &name));
            }
            let mut object = body.clone();
            record_creation(target, &mut object, &writer);
            match control.create(target.info, &target.namespace, object, dry_run) {
                Ok(created) => {
                    let uid = created
                        .pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if !dry_run {
                        control.remember_applied(uid, &manager, body.clone());
                    }
                    return Ok(json_response(StatusCode::CREATED, &created));
                }
                Err(error) if error.reason == "AlreadyExists" => continue,
                Err(error) => return Err(error),
            }
        };
        if let Some(wanted) = precondition.as_ref().and_then(Value::as_str)
            && Some(wanted) != current.pointer("/metadata/resourceVersion").and_then(Value::as_str)
        {
            return Err(ApiError::conflict(target.info, &name));
        }
        let uid = current
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !force {
            let conflicts = apply_conflicts(control, &uid, &manager, &body);
            if !conflicts.is_empty() {
                return Err(apply_conflict_error(target, &name, &conflicts));
            }
        }
        let previous = control.last_applied(&uid, &manager);
        let updated = update_with(control, target, dry_run, (&writer, Some(&body)), |current| {
            let merged = apply_merge(current, previous.as_ref(), &body);
            Ok(split_status(current, merged, status_only))
        })?;
        if !dry_run {
            control.remember_applied(&uid, &manager, body);
        }
        return Ok(json_response(StatusCode::OK, &updated));
    }
    Err(ApiError::conflict(target.info, &name))
}

fn apply_conflict_error(target: &Target, name: &str, conflicts: &[(String, String)]) -> ApiError {
    let api_version = target.info.api_version();
    let message = if let [(manager, path)] = conflicts {
        format!("Apply failed with 1 conflict: conflict with \"{manager}\" using {api_version}: {path}")
    } else {
        let lines: Vec<String> = conflicts
            .iter()
            .map(|(manager, path)| format!("- conflict with \"{manager}\" using {api_version}: {path}"))
            .collect();
        format!("Apply failed with {} conflicts:\n{}", conflicts.len(), lines.join("\n"))
    };
    let mut error = ApiError::conflict(target.info, name);
    error.message = message;
    error.details.causes = conflicts
        .iter()
        .map(|(manager, path)| Cause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with \"{manager}\" using {api_version}"),
            field: path.clone(),
        })
        .collect();
    error
}

fn delete_options(query: &Query, body: &Value) -> DeleteOptions {
    let mut options = DeleteOptions::from_json(body);
    if let Some(grace) = query.get("gracePeriodSeconds").and_then(|text| text.parse().ok()) {
        options.grace_period_seconds = Some(grace);
    }
    if query.get("propagationPolicy") == Some("Orphan") {
        options.orphan = true;
    }
    if query.dry_run() {
        options.dry_run = true;
    }
    options
}

fn success_status(info: &ResourceInfo, object: &Value) -> Value {
    let mut details = json!({
        "name": object.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
        "kind": info.plural,
        "uid": object.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
    });
    if !info.group.is_empty() {
        details["group"] = json!(info.group);
    }
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details })
}

fn delete(control: &ControlPlane, target: &Target, query: &Query, body: &Value) -> Result<Response, ApiError> {
    let name = target.name()?;
    let options = delete_options(query, body);
    match control.delete(target.info, target.store_namespace(), name, &options)? {
        Deletion::Pending(object) => Ok(json_response(StatusCode::OK, &object)),
        Deletion::Done(object) => Ok(json_response(StatusCode::OK, &success_status(target.info, &object))),
    }
}

fn delete_collection(
    control: &ControlPlane,
    target: &Target,
    query: &Query,
    body: &Value,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(target, query)?;
    let options = delete_options(query, body);
    for object in control.store.list(target.info.plural, target.namespace_filter()) {
        if !(labels.matches(&object) && fields.matches(&object)) {
            continue;
        }
        let (namespace, name) = crate::control::namespace_and_name(&object);
        match control.delete(target.info, &namespace, &name, &options) {
            Ok(_) => {}
            Err(error) if error.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success" }),
    ))
}

fn scale(
    control: &ControlPlane,
    target: &Target,
    method: &Method,
    body: Option<Value>,
    writer: &Writer,
) -> Result<Response, ApiError> {
    let name = target.name()?.to_string();
    let render = |sts: &Value| {
        let selector = crate::selectors::selector_string(sts.pointer("/spec/selector/matchLabels"));
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": sts.pointer("/metadata/name"),
                "namespace": sts.pointer("/metadata/namespace"),
                "uid": sts.pointer("/metadata/uid"),
                "resourceVersion": sts.pointer("/metadata/resourceVersion"),
                "creationTimestamp": sts.pointer("/metadata/creationTimestamp"),
            },
            "spec": { "replicas": sts.pointer("/spec/replicas").cloned().unwrap_or(json!(0)) },
            "status": { "replicas": sts.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector },
        })
    };
    let Some(body) = body.filter(|_| matches!(*method, Method::PUT | Method::PATCH)) else {
        let sts = control
            .store
            .get("statefulsets", &target.namespace, &name)
            .ok_or_else(|| ApiError::not_found(target.info, &name))?;
        return Ok(json_response(StatusCode::OK, &render(&sts)));
    };
    let updated = update_with(control, target, false, (writer, None), |current| {
        let mut scale = render(current);
        merge_patch(&mut scale, &body);
        let replicas = scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
        let mut updated = current.clone();
        updated["spec"]["replicas"] = json!(replicas);
        Ok(updated)
    })?;
    Ok(json_response(StatusCode::OK, &render(&updated)))
}

fn pod(control: &ControlPlane, target: &Target) -> Result<Value, ApiError> {
    let name = target.name()?;
    control
        .store
        .get("pods", &target.namespace, name)
        .ok_or_else(|| ApiError::not_found(target.info, name))
}

fn container_names(pod: &Value, list: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|container| container.get("name").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// The container a log/exec request means: the named one (which must exist) or the only one.
fn resolve_container(
    pod: &Value,
    pod_name: &str,
    requested: Option<&str>,
    allow_init: bool,
) -> Result<String, ApiError> {
    let containers = container_names(pod, "containers");
    let init = container_names(pod, "initContainers");
    match requested.filter(|name| !name.is_empty()) {
        Some(name) if containers.iter().any(|c| c == name) || (allow_init && init.iter().any(|c| c == name)) => {
            Ok(name.to_string())
        }
        Some(name) => Err(ApiError::bad_request(format!(
            "container {name} is not valid for pod {pod_name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            );
            if allow_init && !init.is_empty() {
                message.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// The options of a log request, for its validation errors (`PodLogOptions "mysql-0" is invalid: ...`).
const POD_LOG_OPTIONS: ResourceInfo = ResourceInfo {
    plural: "pods",
    singular: "pod",
    kind: "PodLogOptions",
    group: "",
    version: "v1",
    namespaced: true,
    short_names: &[],
};

fn pod_log(control: &ControlPlane, target: &Target, query: &Query) -> Result<Response, ApiError> {
    let pod = pod(control, target)?;
    let pod_name = target.name()?;
    let container = resolve_container(&pod, pod_name, query.get("container"), true)?;
    let previous = query.flag("previous");
    let options = crate::pod_logs::options_from_query(|key| query.get(key), jiff::Timestamp::now())
        .map_err(|causes| ApiError::invalid(&POD_LOG_OPTIONS, pod_name, causes))?;
    let body = match control.runtime() {
        // A previous instance has stopped: following it gives its log.
        Some(runtime) if query.flag("follow") && !previous => runtime
            .follow_logs(&target.namespace, pod_name, &container, options)
            .map(|stream| Body::from_stream(stream.map(Ok::<_, std::convert::Infallible>))),
        Some(runtime) => runtime
            .logs(&target.namespace, pod_name, Some(&container), previous, &options)
            .map(Body::from),
        None => Some(Body::empty()),
    };
    match body {
        Some(body) => Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], body).into_response()),
        None if previous => Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{pod_name}\" not found"
        ))),
        None => {
            let reason = waiting_reason(&pod, &container).unwrap_or_else(|| "ContainerCreating".into());
            Err(ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{pod_name}\" is waiting to start: {reason}"
            )))
        }
    }
}

fn waiting_reason(pod: &Value, container: &str) -> Option<String> {
    ["containerStatuses", "initContainerStatuses"].iter().find_map(|list| {
        pod.pointer(&format!("/status/{list}"))?
            .as_array()?
            .iter()
            .find(|status| status.get("name").and_then(Value::as_str) == Some(container))?
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending")
}

async fn upgrade(control: &ControlPlane, request: Request) -> Result<WebSocketUpgrade, ApiError> {
    let (mut parts, _body) = request.into_parts();
    WebSocketUpgrade::from_request_parts(&mut parts, control)
        .await
        .map_err(|rejection| ApiError::bad_request(format!("unable to upgrade connection: {}", rejection.body_text())))
}

fn parse_ports(query: &Query) -> Result<Vec<u16>, ApiError> {
    let mut ports = Vec::new();
    for text in query.all("ports").into_iter().flat_map(|value| value.split(',')) {
        let text = text.trim();
        let port: u16 = text.parse().ok().filter(|port| *port > 0).ok_or_else(|| {
            ApiError::bad_request(format!("invalid port {text:?}: must be a number between 1 and 65535"))
        })?;
        ports.push(port);
    }
    if ports.is_empty() {
        return Err(ApiError::bad_request("at least one port must be specified"));
    }
    Ok(ports)
}

/// How a port-forward request wants to talk, from its upgrade headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortForwardTransport {
    /// WebSocket offering `SPDY/3.1+portforward.k8s.io` (kubectl 1.30+): SPDY tunnelled in Binary messages.
    TunnelledSpdy,
    /// `Upgrade: SPDY/3.1` (kubectl's fallback, and kubectl before 1.30).
    Spdy,
    /// WebSocket `v4.channel.k8s.io` (kube-rs and other WebSocket clients): ports in the query.
    WebSocketChannels,
}

fn port_forward_transport(headers: &HeaderMap) -> PortForwardTransport {
    let values = |name: header::HeaderName| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|value| value.trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let upgrade = values(header::UPGRADE);
    if upgrade.iter().any(|value| value == "websocket") {
        let tunnel = crate::spdy::WEBSOCKET_TUNNEL_PROTOCOL.to_ascii_lowercase();
        if values(header::SEC_WEBSOCKET_PROTOCOL).contains(&tunnel) {
            return PortForwardTransport::TunnelledSpdy;
        }
        return PortForwardTransport::WebSocketChannels;
    }
    if upgrade.iter().any(|value| value.starts_with("spdy/3.1")) {
        return PortForwardTransport::Spdy;
    }
    PortForwardTransport::WebSocketChannels
}

async fn port_forward(
    control: &ControlPlane,
    target: &Target,
    query: &Query,
    mut request: Request,
) -> Result<Response, ApiError> {
    let pod = pod(control, target)?;
    let pod_name = target.name()?.to_string();
    let transport = port_forward_transport(request.headers());
    // SPDY clients name their ports per stream; the WebSocket channel protocol needs them in the query.
    let ports = match transport {
        PortForwardTransport::WebSocketChannels => parse_ports(query)?,
        PortForwardTransport::TunnelledSpdy | PortForwardTransport::Spdy => Vec::new(),
    };
    if phase(&pod) != "Running" {
        return Err(ApiError::bad_request(format!(
            "pod {pod_name} is not running and cannot forward port {}; current phase is {}",
            ports.iter().map(u16::to_string).collect::<Vec<_>>().join(","),
            phase(&pod)
        )));
    }
    let runtime = control
        .runtime()
        .ok_or_else(|| ApiError::internal(500, "kubesim: no node runs pods in this simulator"))?;
    let uid = pod
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let label = format!("{pod_name}, uid {uid}");
    let namespace = target.namespace.clone();
    let connect = {
        let pod_name = pod_name.clone();
        move |port: u16| {
            runtime
                .clone()
                .connect(namespace.clone(), pod_name.clone(), port)
                .boxed()
        }
    };
    if transport == PortForwardTransport::Spdy {
        let on_upgrade = request
            .extensions_mut()
            .remove::<hyper::upgrade::OnUpgrade>()
            .ok_or_else(|| ApiError::bad_request("unable to upgrade connection: the connection cannot be upgraded"))?;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    crate::spdy::serve_port_forward(hyper_util::rt::TokioIo::new(upgraded), label, connect).await;
                }
                Err(err) => tracing::info!("port-forward: SPDY upgrade failed: {err}"),
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "SPDY/3.1")
            .header("X-Stream-Protocol-Version", crate::spdy::PORT_FORWARD_PROTOCOL)
            .body(Body::empty())
            .expect("a valid response"));
    }
    let upgrade = upgrade(control, request).await?;
    let drop_it = control.faults.take_port_forward_drop();
    Ok(upgrade
        .protocols([crate::spdy::WEBSOCKET_TUNNEL_PROTOCOL, "v4.channel.k8s.io"])
        .on_upgrade(move |socket| async move {
            if drop_it {
                tracing::info!(pod = %pod_name, "dropping a port-forward (fault injected)");
                streams::drop_after_init(socket, ports).await;
                return;
            }
            if transport == PortForwardTransport::TunnelledSpdy {
                crate::spdy::serve_tunnelled_port_forward(socket, label, connect).await;
            } else {
                streams::serve_port_forward(socket, ports, label, connect).await;
            }
        }))
}

/// The streams an exec asks for: (stdin, stdout, stderr, tty). Absent means false, as in `PodExecOptions`; a
/// terminal carries stderr in its one output stream, so `tty` drops stderr (kubelet `remotecommand.NewOptions`).
fn exec_streams(query: &Query) -> Result<(bool, bool, bool, bool), ApiError> {
    let (stdin, stdout, stderr, tty) = (
        query.flag("stdin"),
        query.flag("stdout"),
        query.flag("stderr"),
        query.flag("tty"),
    );
    if !stdin && !stdout && !stderr {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    Ok((stdin, stdout, stderr && !tty, tty))
}

async fn exec(control: &ControlPlane, target: &Target, query: &Query, request: Request) -> Result<Response, ApiError> {
    let pod = pod(control, target)?;
    let pod_name = target.name()?.to_string();
    if matches!(phase(&pod), "Succeeded" | "Failed") {
        return Err(ApiError::bad_request(format!(
            "cannot exec into a container in a completed pod; current phase is {}",
            phase(&pod)
        )));
    }
    let container = resolve_container(&pod, &pod_name, query.get("container"), true)?;
    let running = ["containerStatuses", "initContainerStatuses"].iter().any(|list| {
        pod.pointer(&format!("/status/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|status| {
                status.get("name").and_then(Value::as_str) == Some(container.as_str())
                    && status.pointer("/state/running").is_some()
            })
    });
    if !running {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: container not found (\"{container}\")"
        )));
    }
    let argv: Vec<String> = query.all("command").into_iter().map(str::to_string).collect();
    if argv.is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    let (stdin, stdout, stderr, tty) = exec_streams(query)?;
    let runtime = control
        .runtime()
        .ok_or_else(|| ApiError::internal(500, "kubesim: no node runs pods in this simulator"))?;
    let upgrade = upgrade(control, request).await?;
    let namespace = target.namespace.clone();
    Ok(upgrade
        .protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| async move {
            let protocol = streams::ExecProtocol::of(&socket);
            let process = if tty {
                runtime
                    .spawn_exec_terminal(namespace, pod_name, Some(container), argv)
                    .await
                    .map(|(child, terminal)| streams::ExecProcess {
                        child,
                        terminal: Some(terminal),
                    })
            } else {
                runtime
                    .spawn_exec(namespace, pod_name, Some(container), argv, stdin)
                    .await
                    .map(streams::ExecProcess::from)
            };
            streams::serve_exec(socket, protocol, process, stdin, stdout, stderr).await;
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_cover_core_group_cluster_and_namespaced_paths() {
        let pods = resources::by_plural("pods").expect("served");
        assert_eq!(
            route("/api/v1/namespaces/database/pods/mysql-0/portforward"),
            Route::Resource {
                info: pods,
                namespace: Some("database".into()),
                name: Some("mysql-0".into()),
                sub: Some("portforward".into())
            }
        );
        assert_eq!(
            route("/api/v1/pods"),
            Route::Resource {
                info: pods,
                namespace: None,
                name: None,
                sub: None
            }
        );
        let namespaces = resources::by_plural("namespaces").expect("served");
        assert_eq!(
            route("/api/v1/namespaces/database"),
            Route::Resource {
                info: namespaces,
                namespace: None,
                name: Some("database".into()),
                sub: None
            }
        );
        assert_eq!(
            route("/api/v1/namespaces/database/status"),
            Route::Resource {
                info: namespaces,
                namespace: None,
                name: Some("database".into()),
                sub: Some("status".into())
            }
        );
        let sts = resources::by_plural("statefulsets").expect("served");
        assert_eq!(
            route("/apis/apps/v1/namespaces/db/statefulsets/mysql"),
            Route::Resource {
                info: sts,
                namespace: Some("db".into()),
                name: Some("mysql".into()),
                sub: None
            }
        );
        assert_eq!(route("/apis/apps/v1"), Route::GroupResources("apps", "v1"));
        assert_eq!(route("/apis/batch/v1"), Route::Unknown);
        assert_eq!(route("/api/v1/namespaces/db/widgets"), Route::Unknown);
        assert_eq!(route("/api/v1/pods/mysql-0"), Route::Unknown);
    }

    #[test]
    fn query_keeps_repeated_keys_and_skips_the_leading_ampersand() {
        let query = Query::parse("&command=sh&command=-c&command=echo%20hi&stdout=true");
        assert_eq!(query.all("command"), ["sh", "-c", "echo hi"]);
        assert!(query.flag("stdout"));
        assert_eq!(query.get("stdin"), None);
    }

    #[test]
    fn apply_merge_merges_maps_replaces_lists_and_drops_fields_no_longer_applied() {
        let existing = json!({ "metadata": { "labels": { "a": "1", "other": "x" } }, "spec": { "clusterIP": "10.96.0.11", "ports": [{ "port": 1 }], "old": true } });
        let previous =
            json!({ "metadata": { "labels": { "a": "1" } }, "spec": { "ports": [{ "port": 1 }], "old": true } });
        let applied = json!({ "metadata": { "labels": { "a": "2" } }, "spec": { "ports": [{ "port": 2 }] } });
        let merged = apply_merge(&existing, Some(&previous), &applied);
        assert_eq!(
            merged,
            json!({ "metadata": { "labels": { "a": "2", "other": "x" } }, "spec": { "clusterIP": "10.96.0.11", "ports": [{ "port": 2 }] } })
        );
    }

    #[test]
    fn merge_patch_removes_nulls() {
        let mut object = json!({ "metadata": { "labels": { "a": "1", "b": "2" } } });
        merge_patch(
            &mut object,
            &json!({ "metadata": { "labels": { "a": null, "c": "3" } } }),
        );
        assert_eq!(object, json!({ "metadata": { "labels": { "b": "2", "c": "3" } } }));
    }

    #[test]
    fn json_patch_operations() {
        let mut object = json!({ "metadata": { "labels": { "a": "1" } }, "list": [1, 2] });
        let patch = json!([
            { "op": "add", "path": "/metadata/labels/b", "value": "2" },
            { "op": "remove", "path": "/metadata/labels/a" },
            { "op": "replace", "path": "/list/0", "value": 9 },
            { "op": "add", "path": "/list/-", "value": 3 },
        ]);
        apply_json_patch(&mut object, &patch).expect("valid patch");
        assert_eq!(
            object,
            json!({ "metadata": { "labels": { "b": "2" } }, "list": [9, 2, 3] })
        );
    }

    #[test]
    fn exec_streams_follow_pod_exec_options() {
        let streams = |raw: &str| exec_streams(&Query::parse(raw)).map_err(|err| err.message);
        // kubectl exec -it: no stderr parameter; a terminal has one output stream anyway.
        assert_eq!(
            streams("command=sh&stdin=true&stdout=true&tty=true"),
            Ok((true, true, false, true))
        );
        assert_eq!(
            streams("?&stdout=true&stderr=true&tty=true"),
            Ok((false, true, false, true))
        );
        assert_eq!(streams("stdout=true&stderr=true"), Ok((false, true, true, false)));
        let none = streams("command=sh").expect_err("no streams");
        assert!(none.contains("at least 1 of stdin, stdout, stderr"), "{none}");
    }

    #[test]
    fn port_forward_transport_follows_the_upgrade_headers() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(*name, header::HeaderValue::from_static(value));
            }
            map
        };
        // kubectl 1.30+: SPDY tunnelled through a WebSocket.
        let kubectl = headers(&[
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", "SPDY/3.1+portforward.k8s.io"),
        ]);
        assert_eq!(port_forward_transport(&kubectl), PortForwardTransport::TunnelledSpdy);
        // kubectl's fallback and older kubectl.
        let spdy = headers(&[
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "portforward.k8s.io"),
        ]);
        assert_eq!(port_forward_transport(&spdy), PortForwardTransport::Spdy);
        // kube-rs.
        let kube = headers(&[
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", "v4.channel.k8s.io"),
        ]);
        assert_eq!(port_forward_transport(&kube), PortForwardTransport::WebSocketChannels);
    }
}
