//! End-to-end checks of the control plane through the real kube client (no node: pod status is written here).

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, PersistentVolumeClaim, Pod};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use serde_json::{Value, json};

use super::*;
use crate::controllers::set_condition;
use crate::runtime::PodRuntime;

const WAIT: Duration = Duration::from_secs(10);

fn control_plane() -> Kubesim {
    Kubesim::start(Options {
        without_node: true,
        ..Options::default()
    })
    .expect("the control plane starts")
}

fn client(sim: &Kubesim) -> kube::Client {
    let config = kube::Config::new(sim.url().parse().expect("valid url"));
    kube::Client::try_from(config).expect("client")
}

/// Polls `check` until it returns Some (the state is produced by controllers on other threads).
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn api_error(error: kube::Error) -> kube::core::Status {
    match error {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn raw(client: &kube::Client, method: &str, path: &str, content_type: &str, body: Value) -> (u16, Value) {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(kube::client::Body::from(body.to_string().into_bytes()))
        .expect("valid request");
    let response = client.send(request).await.expect("a response");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(axum::body::Body::new(response.into_body()), usize::MAX)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn make_ready(sim: &Kubesim, namespace: &str, name: &str) {
    sim.store().update("pods", namespace, name, |pod| {
        pod["status"]["phase"] = json!("Running");
        pod["status"]["podIP"] = json!("10.244.0.10");
        set_condition(pod, "Ready", "True", None, None);
    });
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).expect("namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace created");
}

#[tokio::test]
async fn discovery_serves_pinned_kinds_and_the_version() {
    let sim = control_plane();
    let client = client(&sim);
    let (resource, capabilities) = discovery::pinned_kind(&client, &GroupVersionKind::gvk("apps", "v1", "StatefulSet"))
        .await
        .expect("statefulsets");
    assert_eq!(resource.plural, "statefulsets");
    assert_eq!(capabilities.scope, Scope::Namespaced);
    let (pods, capabilities) = discovery::pinned_kind(&client, &GroupVersionKind::gvk("", "v1", "Pod"))
        .await
        .expect("pods");
    assert_eq!(pods.plural, "pods");
    let subresources: Vec<&str> = capabilities
        .subresources
        .iter()
        .map(|(sub, _)| sub.plural.as_str())
        .collect();
    for expected in ["exec", "portforward", "log"] {
        assert!(subresources.contains(&expected), "{expected} in {subresources:?}");
    }
    let (_, capabilities) = discovery::pinned_kind(&client, &GroupVersionKind::gvk("", "v1", "Namespace"))
        .await
        .expect("ns");
    assert_eq!(capabilities.scope, Scope::Cluster);
    let (_, capabilities) =
        discovery::pinned_kind(&client, &GroupVersionKind::gvk("storage.k8s.io", "v1", "StorageClass"))
            .await
            .expect("sc");
    assert_eq!(capabilities.scope, Scope::Cluster);
    let full = discovery::Discovery::new(client.clone())
        .run()
        .await
        .expect("full discovery");
    assert!(full.has_group("apps"));
    let version = client.apiserver_version().await.expect("version");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        api::KUBERNETES_VERSION
    );
}

#[tokio::test]
async fn server_side_apply_creates_then_updates_and_requires_a_field_manager() {
    let sim = control_plane();
    let client = client(&sim);
    let path = "/api/v1/namespaces/default/configmaps/settings?&fieldManager=lab&force=true";
    let body = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "settings", "labels": { "a": "1" } }, "data": { "k": "v" } });
    let (code, created) = raw(&client, "PATCH", path, "application/apply-patch+yaml", body.clone()).await;
    assert_eq!(code, 201);
    let (code, same) = raw(&client, "PATCH", path, "application/apply-patch+yaml", body.clone()).await;
    assert_eq!(code, 200);
    assert_eq!(
        (&same["data"], &same["metadata"]["labels"], &same["metadata"]["uid"]),
        (
            &created["data"],
            &created["metadata"]["labels"],
            &created["metadata"]["uid"]
        ),
        "an unchanged apply changes no content"
    );
    let mut changed = body.clone();
    changed["data"]["k"] = json!("w");
    let (code, updated) = raw(&client, "PATCH", path, "application/apply-patch+yaml", changed).await;
    assert_eq!(code, 200);
    assert_eq!(updated["data"]["k"], "w");
    assert_ne!(
        updated["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);

    let (code, status) = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/settings?&force=true",
        "application/apply-patch+yaml",
        body,
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );

    // Through the typed client, as lab applies.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let applied: ConfigMap = serde_json::from_value(
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "typed" }, "data": { "x": "y" } }),
    )
    .expect("configmap");
    let stored = configmaps
        .patch("typed", &PatchParams::apply("lab").force(), &Patch::Apply(&applied))
        .await
        .expect("applied");
    assert_eq!(stored.data.expect("data")["x"], "y");
}

/// Waits for the wall clock to reach the next second: managedFields times have one-second resolution.
async fn next_second() {
    let start = crate::store::now_rfc3339();
    while crate::store::now_rfc3339() == start {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn managed_fields_record_each_writer_and_a_reapply_in_a_later_second_is_a_write() {
    let sim = control_plane();
    let client = client(&sim);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let applied: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "owned", "labels": { "app": "x" } },
        "data": { "k": "v" }
    }))
    .expect("configmap");
    let apply = PatchParams::apply("lab").force();
    let first = configmaps
        .patch("owned", &apply, &Patch::Apply(&applied))
        .await
        .expect("applied");
    let entries = first.metadata.managed_fields.clone().expect("managedFields");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry.manager.as_deref(), Some("lab"));
    assert_eq!(entry.operation.as_deref(), Some("Apply"));
    assert_eq!(entry.api_version.as_deref(), Some("v1"));
    assert_eq!(entry.fields_type.as_deref(), Some("FieldsV1"));
    assert_eq!(
        entry.fields_v1.as_ref().map(|f| f.0.clone()),
        Some(json!({ "f:data": { "f:k": {} }, "f:metadata": { "f:labels": { "f:app": {} } } }))
    );
    let first_time = entry.time.clone().expect("time");

    // The same content again, in a later second: the entry's time moves and the object is written.
    next_second().await;
    let again = configmaps
        .patch("owned", &apply, &Patch::Apply(&applied))
        .await
        .expect("re-applied");
    assert_eq!(
        (&again.data, &again.metadata.labels),
        (&first.data, &first.metadata.labels)
    );
    assert_ne!(again.metadata.resource_version, first.metadata.resource_version);
    let entries = again.metadata.managed_fields.clone().expect("managedFields");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].time.clone().expect("time").0 > first_time.0);

    // Another client's patch adds its own Update entry (manager from its user agent); a no-op patch writes nothing.
    let label = json!({ "metadata": { "labels": { "role": "primary" } } });
    let labelled = configmaps
        .patch("owned", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("labelled");
    let entries = labelled.metadata.managed_fields.clone().expect("managedFields");
    let update = entries
        .iter()
        .find(|entry| entry.operation.as_deref() == Some("Update"))
        .expect("an Update entry");
    assert!(
        update.manager.as_deref().is_some_and(|m| !m.is_empty() && m != "lab"),
        "{update:?}"
    );
    assert_eq!(
        update.fields_v1.as_ref().map(|f| f.0.clone()),
        Some(json!({ "f:metadata": { "f:labels": { "f:role": {} } } }))
    );
    next_second().await;
    let unchanged = configmaps
        .patch("owned", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("patched again");
    assert_eq!(unchanged.metadata.resource_version, labelled.metadata.resource_version);

    // Objects the cluster creates itself carry entries too.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = namespaces.get("default").await.expect("namespace");
    assert!(
        namespace
            .metadata
            .managed_fields
            .is_some_and(|entries| !entries.is_empty()),
        "every object has managedFields"
    );
}

/// Runs the real kubectl against the simulator; its stdout, failing the test with its stderr.
async fn kubectl(sim: &Kubesim, args: &[&str]) -> String {
    let output = tokio::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", sim.kubeconfig_path())
        .output()
        .await
        .unwrap_or_else(|e| panic!("kubectl does not run ({e}): kubectl 1.30 or later must be installed"));
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn kubectl_reads_objects_with_managed_fields_and_shows_them_when_asked() {
    let sim = control_plane();
    let client = client(&sim);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let applied: ConfigMap = serde_json::from_value(
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "owned" }, "data": { "k": "v" } }),
    )
    .expect("configmap");
    configmaps
        .patch("owned", &PatchParams::apply("lab").force(), &Patch::Apply(&applied))
        .await
        .expect("applied");
    let plain = kubectl(&sim, &["get", "configmap", "owned", "-n", "default", "-o", "yaml"]).await;
    assert!(plain.contains("name: owned") && plain.contains("k: v"), "{plain}");
    assert!(
        !plain.contains("managedFields"),
        "kubectl hides managedFields by default: {plain}"
    );
    let shown = kubectl(
        &sim,
        &[
            "get",
            "configmap",
            "owned",
            "-n",
            "default",
            "-o",
            "yaml",
            "--show-managed-fields",
        ],
    )
    .await;
    for line in [
        "managedFields:",
        "manager: lab",
        "operation: Apply",
        "fieldsType: FieldsV1",
        "f:k: {}",
    ] {
        assert!(shown.contains(line), "{line} in:\n{shown}");
    }
}

#[tokio::test]
async fn secrets_fold_string_data_into_base64_data() {
    let sim = control_plane();
    let client = client(&sim);
    let secrets: Api<DynamicObject> = Api::namespaced_with(
        client,
        "default",
        &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
    );
    let secret: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "mysql-secret" }, "type": "Opaque",
        "stringData": { "MYSQL_ROOT_PASSWORD": "root" },
    }))
    .expect("secret");
    let stored = secrets
        .patch(
            "mysql-secret",
            &PatchParams::apply("lab").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("applied");
    assert_eq!(stored.data["data"]["MYSQL_ROOT_PASSWORD"], "cm9vdA==");
    assert!(stored.data.get("stringData").is_none());
}

#[tokio::test]
async fn get_and_list_honour_label_and_field_selectors_and_errors_are_statuses() {
    let sim = control_plane();
    let client = client(&sim);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (name, role) in [("one", "primary"), ("two", "replica"), ("three", "replica")] {
        let object: ConfigMap =
            serde_json::from_value(json!({ "metadata": { "name": name, "labels": { "role": role, "app": "mysql" } } }))
                .expect("configmap");
        configmaps
            .create(&PostParams::default(), &object)
            .await
            .expect("created");
    }
    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items.into_iter().filter_map(|item| item.metadata.name).collect()
    };
    assert_eq!(
        names(
            configmaps
                .list(&ListParams::default().labels("role=replica"))
                .await
                .expect("list")
        ),
        ["three", "two"]
    );
    assert_eq!(
        names(
            configmaps
                .list(&ListParams::default().labels("role in (primary),app"))
                .await
                .expect("list")
        ),
        ["one"]
    );
    assert_eq!(
        names(
            configmaps
                .list(&ListParams::default().labels("role!=replica,app=mysql"))
                .await
                .expect("list")
        ),
        ["one"]
    );
    assert_eq!(
        names(
            configmaps
                .list(&ListParams::default().fields("metadata.name=two"))
                .await
                .expect("list")
        ),
        ["two"]
    );
    let list = configmaps.list(&ListParams::default()).await.expect("list");
    assert!(
        list.metadata
            .resource_version
            .is_some_and(|version| !version.is_empty())
    );

    let missing = api_error(configmaps.get("nope").await.expect_err("missing"));
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "configmaps \"nope\" not found");
    let object: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "one" } })).expect("configmap");
    let exists = api_error(
        configmaps
            .create(&PostParams::default(), &object)
            .await
            .expect_err("duplicate"),
    );
    assert_eq!((exists.code, exists.reason.as_str()), (409, "AlreadyExists"));
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let missing = api_error(statefulsets.get("mysql").await.expect_err("missing"));
    assert_eq!(missing.message, "statefulsets.apps \"mysql\" not found");
    let details = missing.details.expect("details");
    assert_eq!(
        (details.kind.as_str(), details.group.as_str()),
        ("statefulsets", "apps")
    );
    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let missing = api_error(
        elsewhere
            .create(&PostParams::default(), &object)
            .await
            .expect_err("no namespace"),
    );
    assert_eq!(missing.message, "namespaces \"nowhere\" not found");
}

#[tokio::test]
async fn watches_resume_from_a_version_and_expire_when_too_old() {
    let sim = control_plane();
    let client = client(&sim);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "first" } })).expect("configmap");
    let created = configmaps
        .create(&PostParams::default(), &first)
        .await
        .expect("created");
    let version = created.metadata.resource_version.expect("version");

    let second: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "second", "labels": { "watched": "yes" } } }))
            .expect("configmap");
    configmaps
        .create(&PostParams::default(), &second)
        .await
        .expect("created");
    let mut stream = configmaps
        .watch(&WatchParams::default().timeout(5), &version)
        .await
        .expect("watch")
        .boxed();
    match tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("in time")
        .expect("event")
    {
        Some(WatchEvent::Added(object)) => assert_eq!(object.metadata.name.as_deref(), Some("second")),
        other => panic!("expected ADDED second, got {other:?}"),
    }
    configmaps
        .delete("first", &DeleteParams::default())
        .await
        .expect("deleted");
    match tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("in time")
        .expect("event")
    {
        Some(WatchEvent::Deleted(object)) => assert_eq!(object.metadata.name.as_deref(), Some("first")),
        other => panic!("expected DELETED first, got {other:?}"),
    }

    // A label selector turns leaving the selection into DELETED.
    let current = configmaps
        .get("second")
        .await
        .expect("get")
        .metadata
        .resource_version
        .expect("version");
    let mut selected = configmaps
        .watch(&WatchParams::default().labels("watched=yes").timeout(5), &current)
        .await
        .expect("watch")
        .boxed();
    configmaps
        .patch(
            "second",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "watched": null } } })),
        )
        .await
        .expect("patched");
    match tokio::time::timeout(WAIT, selected.try_next())
        .await
        .expect("in time")
        .expect("event")
    {
        Some(WatchEvent::Deleted(object)) => assert_eq!(object.metadata.name.as_deref(), Some("second")),
        other => panic!("expected DELETED second, got {other:?}"),
    }

    sim.store().compact();
    let mut expired = configmaps
        .watch(&WatchParams::default(), &version)
        .await
        .expect("watch")
        .boxed();
    match tokio::time::timeout(WAIT, expired.try_next())
        .await
        .expect("in time")
        .expect("event")
    {
        Some(WatchEvent::Error(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            assert!(
                status
                    .message
                    .starts_with(&format!("too old resource version: {version} (")),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

#[tokio::test]
async fn deleting_a_namespace_terminates_it_and_refuses_new_content() {
    let sim = control_plane();
    let client = client(&sim);
    create_namespace(&client, "doomed").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "doomed");
    let pod: Pod = serde_json::from_value(
        json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "c", "image": "busybox" }] } }),
    )
    .expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("pod created");
    // Hold the namespace in Terminating with a finalizer on a ConfigMap.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let held: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "held", "finalizers": ["example.com/hold"] } }))
            .expect("cm");
    configmaps.create(&PostParams::default(), &held).await.expect("created");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deleted = namespaces
        .delete("doomed", &DeleteParams::background())
        .await
        .expect("delete accepted");
    let namespace = deleted.left().expect("the namespace object comes back");
    assert!(namespace.metadata.deletion_timestamp.is_some());
    assert_eq!(
        namespace.status.and_then(|status| status.phase).as_deref(),
        Some("Terminating")
    );
    assert_eq!(
        namespace.spec.and_then(|spec| spec.finalizers),
        Some(vec!["kubernetes".to_string()])
    );

    let refused = api_error(
        pods.create(&PostParams::default(), &pod)
            .await
            .expect_err("terminating"),
    );
    assert_eq!((refused.code, refused.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        refused.message,
        "pods \"p\" is forbidden: unable to create new content in namespace doomed because it is being terminated"
    );

    eventually("the pod to go", || {
        sim.store().get("pods", "doomed", "p").is_none().then_some(())
    })
    .await;
    assert!(
        sim.store().get("namespaces", "", "doomed").is_some(),
        "the finalizer holds the namespace"
    );
    configmaps
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
        )
        .await
        .expect("finalizer removed");
    eventually("the namespace to go", || {
        sim.store().get("namespaces", "", "doomed").is_none().then_some(())
    })
    .await;
    let missing = api_error(namespaces.get("doomed").await.expect_err("gone"));
    assert_eq!(missing.code, 404);
}

fn statefulset_manifest(replicas: u32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": { "name": "mysql", "namespace": "database" },
        "spec": {
            "serviceName": "mysql-headless",
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "mysql" } },
            "template": {
                "metadata": { "labels": { "app": "mysql" } },
                "spec": {
                    "containers": [{ "name": "mysql", "image": "mysql:8.0", "ports": [{ "containerPort": 3306, "name": "mysql" }] }],
                    "volumes": [{ "name": "mysql-config", "emptyDir": {} }],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": "data" },
                "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "5Gi" } } },
            }],
        },
    })
}

async fn apply_statefulset(client: &kube::Client, replicas: u32) -> Result<StatefulSet, kube::Error> {
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), "database");
    let manifest: StatefulSet = serde_json::from_value(statefulset_manifest(replicas)).expect("statefulset");
    statefulsets
        .patch("mysql", &PatchParams::apply("lab").force(), &Patch::Apply(&manifest))
        .await
}

#[tokio::test]
async fn statefulset_creates_pods_in_order_with_claims_and_recreates_deleted_pods() {
    let sim = control_plane();
    let client = client(&sim);
    create_namespace(&client, "database").await;
    apply_statefulset(&client, 2).await.expect("applied");

    let pod0 = eventually("mysql-0 to be scheduled", || {
        sim.store()
            .get("pods", "database", "mysql-0")
            .filter(|pod| pod.pointer("/spec/nodeName").is_some())
    })
    .await;
    assert_eq!(pod0["spec"]["nodeName"], NODE_NAME);
    assert_eq!(
        pod0["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "mysql-0"
    );
    assert_eq!(pod0["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "0");
    assert_eq!(pod0["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
    let claim = sim
        .store()
        .get("persistentvolumeclaims", "database", "data-mysql-0")
        .expect("claim");
    assert_eq!(claim["status"]["phase"], "Bound");
    assert_eq!(claim["spec"]["storageClassName"], "standard");
    let volume = sim
        .store()
        .get(
            "persistentvolumes",
            "",
            claim["spec"]["volumeName"].as_str().expect("bound"),
        )
        .expect("volume");
    let directory = std::path::PathBuf::from(volume["spec"]["hostPath"]["path"].as_str().expect("path"));
    assert!(directory.is_dir());

    // OrderedReady: mysql-1 waits for mysql-0 to be Ready.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        sim.store().get("pods", "database", "mysql-1").is_none(),
        "mysql-1 must wait for mysql-0"
    );
    make_ready(&sim, "database", "mysql-0");
    eventually("mysql-1", || sim.store().get("pods", "database", "mysql-1")).await;
    make_ready(&sim, "database", "mysql-1");
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), "database");
    let status = eventually("status to count two ready replicas", || {
        let sts = sim.store().get("statefulsets", "database", "mysql")?;
        (sts["status"]["readyReplicas"] == 2).then_some(sts["status"].clone())
    })
    .await;
    assert_eq!(status["replicas"], 2);
    assert_eq!(status["availableReplicas"], 2);
    assert_eq!(status["updatedReplicas"], 2);
    assert!(statefulsets.get("mysql").await.expect("get").status.is_some());

    let events: Api<Event> = Api::namespaced(client.clone(), "database");
    let scheduled = events
        .list(&ListParams::default().fields("involvedObject.kind=Pod,involvedObject.name=mysql-0"))
        .await
        .expect("events");
    assert!(
        scheduled
            .items
            .iter()
            .any(|event| event.reason.as_deref() == Some("Scheduled")
                && event.message.as_deref() == Some("Successfully assigned database/mysql-0 to kubesim-node"))
    );

    // A deleted pod comes back under the same name with a new uid and the same claim.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "database");
    let old_uid = pod0["metadata"]["uid"].clone();
    pods.delete("mysql-0", &DeleteParams::default()).await.expect("deleted");
    let recreated = eventually("mysql-0 to come back", || {
        sim.store()
            .get("pods", "database", "mysql-0")
            .filter(|pod| pod["metadata"]["uid"] != old_uid)
    })
    .await;
    assert_eq!(
        recreated["spec"]["volumes"][1]["persistentVolumeClaim"]["claimName"],
        "data-mysql-0"
    );

    // Forbidden spec changes get the real 422.
    let mut changed = statefulset_manifest(2);
    changed["spec"]["serviceName"] = json!("other");
    let manifest: StatefulSet = serde_json::from_value(changed).expect("statefulset");
    let refused = api_error(
        statefulsets
            .patch("mysql", &PatchParams::apply("lab").force(), &Patch::Apply(&manifest))
            .await
            .expect_err("forbidden"),
    );
    assert_eq!((refused.code, refused.reason.as_str()), (422, "Invalid"));
    assert!(
        refused
            .message
            .starts_with("StatefulSet.apps \"mysql\" is invalid: spec: Forbidden: updates to statefulset spec"),
        "{}",
        refused.message
    );

    // Deleting the StatefulSet deletes its pods but keeps the claims.
    statefulsets
        .delete("mysql", &DeleteParams::background())
        .await
        .expect("deleted");
    eventually("the pods to go", || {
        sim.store().list("pods", Some("database")).is_empty().then_some(())
    })
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "database");
    assert_eq!(
        claims.list(&ListParams::default()).await.expect("claims").items.len(),
        2
    );
}

#[tokio::test]
async fn parallel_statefulsets_create_every_pod_at_once_and_the_policy_cannot_change() {
    let sim = control_plane();
    let client = client(&sim);
    create_namespace(&client, "database").await;
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), "database");
    let mut manifest = statefulset_manifest(3);
    manifest["spec"]["podManagementPolicy"] = json!("Parallel");
    let parallel: StatefulSet = serde_json::from_value(manifest.clone()).expect("statefulset");
    let apply = PatchParams::apply("lab").force();
    statefulsets
        .patch("mysql", &apply, &Patch::Apply(&parallel))
        .await
        .expect("applied");
    // No pod is Ready, yet all three exist.
    eventually("all three pods", || {
        (0..3)
            .all(|i| sim.store().get("pods", "database", &format!("mysql-{i}")).is_some())
            .then_some(())
    })
    .await;

    manifest["spec"]["podManagementPolicy"] = json!("OrderedReady");
    let ordered: StatefulSet = serde_json::from_value(manifest).expect("statefulset");
    let refused = api_error(
        statefulsets
            .patch("mysql", &apply, &Patch::Apply(&ordered))
            .await
            .expect_err("podManagementPolicy is immutable"),
    );
    assert_eq!((refused.code, refused.reason.as_str()), (422, "Invalid"));
    assert!(
        refused.message.starts_with(
            "StatefulSet.apps \"mysql\" is invalid: spec: Forbidden: updates to statefulset spec for fields other \
             than 'replicas'"
        ),
        "{}",
        refused.message
    );
    let stored = statefulsets.get("mysql").await.expect("get");
    assert_eq!(
        stored.spec.and_then(|spec| spec.pod_management_policy).as_deref(),
        Some("Parallel")
    );
}

#[tokio::test]
async fn claims_without_a_class_stay_pending_and_block_scheduling() {
    let sim = control_plane();
    sim.remove_default_storage_class();
    let client = client(&sim);
    create_namespace(&client, "database").await;
    eventually("the default class to disappear", || {
        sim.store().list("storageclasses", None).is_empty().then_some(())
    })
    .await;
    apply_statefulset(&client, 1).await.expect("applied");
    let pod = eventually("mysql-0 to be unschedulable", || {
        sim.store()
            .get("pods", "database", "mysql-0")
            .filter(|pod| pod.pointer("/status/conditions/0/reason").and_then(Value::as_str) == Some("Unschedulable"))
    })
    .await;
    assert_eq!(
        pod["status"]["conditions"][0]["message"],
        "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    );
    let event = eventually("the FailedBinding event", || {
        sim.store()
            .list("events", Some("database"))
            .into_iter()
            .find(|event| event["reason"] == "FailedBinding")
    })
    .await;
    assert_eq!(
        event["message"],
        "no persistent volumes available for this claim and no storage class is set"
    );
    assert_eq!(event["involvedObject"]["name"], "data-mysql-0");
    assert_eq!(
        sim.store()
            .get("persistentvolumeclaims", "database", "data-mysql-0")
            .expect("claim")["status"]["phase"],
        "Pending"
    );
}

#[tokio::test]
async fn kube_watcher_waits_for_readiness() {
    let sim = control_plane();
    let client = client(&sim);
    create_namespace(&client, "database").await;
    apply_statefulset(&client, 1).await.expect("applied");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "database");
    let ready = |pod: Option<&Pod>| {
        pod.and_then(|pod| pod.status.as_ref())
            .and_then(|status| status.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|condition| condition.type_ == "Ready" && condition.status == "True")
            })
    };
    let waiter = tokio::spawn(kube::runtime::wait::await_condition(pods, "mysql-0", ready));
    eventually("mysql-0", || sim.store().get("pods", "database", "mysql-0")).await;
    make_ready(&sim, "database", "mysql-0");
    let pod = tokio::time::timeout(WAIT, waiter)
        .await
        .expect("in time")
        .expect("joined")
        .expect("condition met");
    assert!(pod.is_some());
}

/// A stand-in node: logs are canned, port-forward reaches a local echo server, exec runs on the host.
struct FakeNode {
    echo_port: u16,
}

impl PodRuntime for FakeNode {
    fn connect(
        self: std::sync::Arc<Self>,
        _namespace: String,
        _pod: String,
        _port: u16,
    ) -> futures::future::BoxFuture<'static, std::io::Result<tokio::net::TcpStream>> {
        let port = self.echo_port;
        Box::pin(async move { tokio::net::TcpStream::connect(("127.0.0.1", port)).await })
    }

    fn spawn_exec(
        self: std::sync::Arc<Self>,
        _namespace: String,
        _pod: String,
        _container: Option<String>,
        argv: Vec<String>,
        stdin: bool,
    ) -> futures::future::BoxFuture<'static, std::io::Result<tokio::process::Child>> {
        Box::pin(async move {
            let mut command = tokio::process::Command::new(&argv[0]);
            command
                .args(&argv[1..])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            command.stdin(if stdin {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            });
            command.spawn()
        })
    }

    fn logs(
        &self,
        _: &str,
        pod: &str,
        container: Option<&str>,
        previous: bool,
        options: &crate::pod_logs::LogOptions,
    ) -> Option<String> {
        let tail = options.tail_lines;
        if previous {
            return None;
        }
        let lines: Vec<String> = (1..=3)
            .map(|n| format!("{pod}/{} line {n}\n", container.unwrap_or("?")))
            .collect();
        let skip = tail.map_or(0, |tail| lines.len().saturating_sub(tail));
        Some(lines[skip..].concat())
    }

    fn shutdown(&self) {}

    fn leftovers(&self) -> Vec<String> {
        Vec::new()
    }
}

async fn echo_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listener");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = socket.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    port
}

async fn running_pod(sim: &Kubesim, client: &kube::Client, name: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "containers": [{ "name": "mysql", "image": "mysql:8.0" }], "initContainers": [{ "name": "init", "image": "busybox" }] },
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("created");
    eventually("the pod to be scheduled", || {
        sim.store()
            .get("pods", "default", name)
            .filter(|pod| pod["spec"]["nodeName"] == NODE_NAME)
    })
    .await;
    sim.store().update("pods", "default", name, |pod| {
        pod["status"]["phase"] = json!("Running");
        pod["status"]["containerStatuses"] =
            json!([{ "name": "mysql", "ready": true, "restartCount": 0, "image": "mysql:8.0", "imageID": "", "state": { "running": { "startedAt": "2025-01-01T00:00:00Z" } } }]);
        set_condition(pod, "Ready", "True", None, None);
    });
}

#[tokio::test]
async fn log_requests_name_their_container_and_valid_options() {
    let sim = control_plane();
    sim.control.attach_runtime(std::sync::Arc::new(FakeNode {
        echo_port: echo_server().await,
    }));
    let client = client(&sim);
    running_pod(&sim, &client, "mysql-0").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let two: Pod = serde_json::from_value(json!({
        "metadata": { "name": "two" },
        "spec": {
            "containers": [{ "name": "mysql", "image": "mysql:8.0" }, { "name": "metrics", "image": "exporter" }],
            "initContainers": [{ "name": "init", "image": "busybox" }],
        },
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &two).await.expect("created");

    // Several containers and none named: the API server's words, init containers listed.
    let unnamed = api_error(
        pods.logs("two", &kube::api::LogParams::default())
            .await
            .expect_err("a container must be named"),
    );
    assert_eq!(unnamed.code, 400);
    assert_eq!(
        unnamed.message,
        "a container name must be specified for pod two, choose one of: [mysql metrics] or one of the init \
         containers: [init]"
    );
    // Options are checked as PodLogOptions.
    let invalid = api_error(
        pods.logs(
            "mysql-0",
            &kube::api::LogParams {
                tail_lines: Some(-1),
                limit_bytes: Some(0),
                ..Default::default()
            },
        )
        .await
        .expect_err("invalid options"),
    );
    assert_eq!(invalid.code, 422);
    assert!(
        invalid.message.starts_with("PodLogOptions \"mysql-0\" is invalid: [")
            && invalid
                .message
                .contains("tailLines: Invalid value: -1: must be greater than or equal to 0")
            && invalid
                .message
                .contains("limitBytes: Invalid value: 0: must be greater than 0"),
        "{}",
        invalid.message
    );
}

#[tokio::test]
async fn pod_logs_exec_and_port_forward_go_through_the_node() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = control_plane();
    sim.control.attach_runtime(std::sync::Arc::new(FakeNode {
        echo_port: echo_server().await,
    }));
    let client = client(&sim);
    running_pod(&sim, &client, "mysql-0").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let logs = pods
        .logs(
            "mysql-0",
            &kube::api::LogParams {
                container: Some("mysql".into()),
                tail_lines: Some(2),
                ..Default::default()
            },
        )
        .await
        .expect("logs");
    assert_eq!(logs, "mysql-0/mysql line 2\nmysql-0/mysql line 3\n");
    let previous = api_error(
        pods.logs(
            "mysql-0",
            &kube::api::LogParams {
                container: Some("mysql".into()),
                previous: true,
                ..Default::default()
            },
        )
        .await
        .expect_err("no previous instance"),
    );
    assert_eq!(
        previous.message,
        "previous terminated container \"mysql\" in pod \"mysql-0\" not found"
    );
    // One regular container: it is the default, init containers notwithstanding.
    let defaulted = pods
        .logs("mysql-0", &kube::api::LogParams::default())
        .await
        .expect("logs");
    assert!(defaulted.starts_with("mysql-0/mysql line 1"), "{defaulted}");
    let unknown = api_error(
        pods.logs(
            "mysql-0",
            &kube::api::LogParams {
                container: Some("nope".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("unknown container"),
    );
    assert_eq!(unknown.message, "container nope is not valid for pod mysql-0");

    let mut attached = pods
        .exec(
            "mysql-0",
            ["sh", "-c", "echo out; echo err >&2; exit 3"],
            &kube::api::AttachParams::default().stderr(true),
        )
        .await
        .expect("exec");
    let mut stdout = String::new();
    attached
        .stdout()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .await
        .expect("read");
    let status = attached.take_status().expect("status").await.expect("a status");
    assert_eq!(stdout, "out\n");
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));

    let mut forwarder = pods.portforward("mysql-0", &[3306]).await.expect("port-forward");
    let mut stream = forwarder.take_stream(3306).expect("stream");
    stream.write_all(b"ping").await.expect("write");
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).await.expect("read");
    assert_eq!(&echoed, b"ping");
    drop(stream);
    let _ = forwarder.join().await;

    sim.faults().drop_next_port_forwards(1);
    let mut dropped = pods
        .portforward("mysql-0", &[3306])
        .await
        .expect("upgrade still succeeds");
    let mut stream = dropped.take_stream(3306).expect("stream");
    let _ = stream.write_all(b"ping").await;
    let mut buffer = [0u8; 4];
    let read = tokio::time::timeout(WAIT, stream.read(&mut buffer))
        .await
        .expect("ends in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "a dropped forward delivers nothing: {read:?}"
    );

    // Forwarding to a pod that is not running is refused before the upgrade.
    sim.store().update("pods", "default", "mysql-0", |pod| {
        pod["status"]["phase"] = json!("Pending")
    });
    let refused = api_error(pods.portforward("mysql-0", &[3306]).await.err().expect("not running"));
    assert_eq!(refused.code, 400);
    let missing = api_error(pods.portforward("mysql-9", &[3306]).await.err().expect("missing"));
    assert_eq!(
        (missing.code, missing.message.as_str()),
        (404, "pods \"mysql-9\" not found")
    );
}

#[tokio::test]
async fn pods_on_the_node_are_deleted_gracefully() {
    let sim = control_plane();
    sim.control
        .attach_runtime(std::sync::Arc::new(FakeNode { echo_port: 9 }));
    let client = client(&sim);
    running_pod(&sim, &client, "graceful").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deleted = pods
        .delete("graceful", &DeleteParams::default())
        .await
        .expect("delete accepted");
    let pod = deleted.left().expect("the pod comes back while it terminates");
    assert!(pod.metadata.deletion_timestamp.is_some());
    assert_eq!(pod.metadata.deletion_grace_period_seconds, Some(30));
    assert!(
        sim.store().get("pods", "default", "graceful").is_some(),
        "the node removes it once stopped"
    );
    // The node finishes the deletion; watchers see DELETED.
    sim.store().remove("pods", "default", "graceful");
    let missing = api_error(pods.get("graceful").await.expect_err("gone"));
    assert_eq!(missing.code, 404);
}

#[tokio::test]
async fn injected_request_failures_and_dropped_watches() {
    let sim = control_plane();
    let client = client(&sim);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    sim.faults().fail_next_requests(1, 500);
    let failed = api_error(
        configmaps
            .list(&ListParams::default())
            .await
            .expect_err("injected failure"),
    );
    assert_eq!((failed.code, failed.reason.as_str()), (500, "InternalError"));
    configmaps
        .list(&ListParams::default())
        .await
        .expect("only one request fails");

    sim.faults().drop_next_watches(1);
    let version = configmaps
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let mut stream = configmaps
        .watch(&WatchParams::default(), &version)
        .await
        .expect("watch")
        .boxed();
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match stream.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the dropped watch ends early");
    // The next watch is healthy and sees changes.
    let mut stream = configmaps
        .watch(&WatchParams::default().timeout(5), &version)
        .await
        .expect("watch")
        .boxed();
    let object: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "after" } })).expect("cm");
    configmaps
        .create(&PostParams::default(), &object)
        .await
        .expect("created");
    match tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("in time")
        .expect("event")
    {
        Some(WatchEvent::Added(object)) => assert_eq!(object.metadata.name.as_deref(), Some("after")),
        other => panic!("expected ADDED after, got {other:?}"),
    }
}

#[tokio::test]
async fn kubectl_gets_tables_and_other_clients_plain_json() {
    let sim = control_plane();
    let client = client(&sim);
    running_pod(&sim, &client, "mysql-0").await;
    let request = axum::http::Request::builder()
        .uri("/api/v1/pods")
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(kube::client::Body::empty())
        .expect("request");
    let response = client.send(request).await.expect("response");
    let bytes = axum::body::to_bytes(axum::body::Body::new(response.into_body()), usize::MAX)
        .await
        .expect("body");
    let table: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(table["kind"], "Table");
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
    assert_eq!(table["rows"][0]["cells"][0], "mysql-0");
    assert_eq!(table["rows"][0]["cells"][1], "1/1");
    assert_eq!(table["rows"][0]["cells"][2], "Running");
    assert_eq!(table["rows"][0]["object"]["metadata"]["namespace"], "default");
    let (code, plain) = raw(&client, "GET", "/api/v1/pods", "application/json", Value::Null).await;
    assert_eq!((code, plain["kind"].as_str()), (200, Some("PodList")));
}

#[tokio::test]
async fn several_simulators_run_side_by_side_and_clean_up() {
    let mut first = control_plane();
    let second = control_plane();
    assert_ne!(first.url(), second.url());
    assert_ne!(first.kubeconfig_path(), second.kubeconfig_path());
    let kubeconfig = kube::config::Kubeconfig::read_from(first.kubeconfig_path()).expect("kubeconfig");
    let options = kube::config::KubeConfigOptions {
        context: Some("kubesim".into()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .expect("config");
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).expect("client");
    client
        .apiserver_version()
        .await
        .expect("reachable through the kubeconfig");
    let work_dir = first.kubeconfig_path().parent().expect("work dir").to_path_buf();
    first.shutdown();
    assert!(first.leftovers().is_empty(), "{:?}", first.leftovers());
    assert!(!work_dir.exists());
    second.stop();
}

#[tokio::test]
async fn claims_in_use_are_protected_and_their_volumes_go_with_them() {
    let sim = control_plane();
    sim.control
        .attach_runtime(std::sync::Arc::new(FakeNode { echo_port: 9 }));
    let client = client(&sim);
    create_namespace(&client, "database").await;
    apply_statefulset(&client, 1).await.expect("applied");
    let claim = eventually("data-mysql-0 to bind", || {
        sim.store()
            .get("persistentvolumeclaims", "database", "data-mysql-0")
            .filter(|claim| claim["status"]["phase"] == "Bound")
    })
    .await;
    assert_eq!(claim["metadata"]["finalizers"], json!(["kubernetes.io/pvc-protection"]));
    let volume_name = claim["spec"]["volumeName"].as_str().expect("bound").to_string();
    let volume = sim.store().get("persistentvolumes", "", &volume_name).expect("volume");
    let directory = std::path::PathBuf::from(volume["spec"]["hostPath"]["path"].as_str().expect("path"));
    eventually("mysql-0", || sim.store().get("pods", "database", "mysql-0")).await;

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "database");
    let deleted = claims
        .delete("data-mysql-0", &DeleteParams::default())
        .await
        .expect("delete accepted");
    assert!(
        deleted
            .left()
            .expect("still there")
            .metadata
            .deletion_timestamp
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        sim.store()
            .get("persistentvolumeclaims", "database", "data-mysql-0")
            .is_some(),
        "mysql-0 still uses it"
    );

    // Without the StatefulSet (its pod goes with it) nothing uses the claim any more.
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), "database");
    statefulsets
        .delete("mysql", &DeleteParams::background())
        .await
        .expect("deleted");
    let pod = eventually("mysql-0 to terminate", || {
        sim.store()
            .get("pods", "database", "mysql-0")
            .filter(|pod| pod["metadata"]["deletionTimestamp"].is_string())
    })
    .await;
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);
    sim.store().remove("pods", "database", "mysql-0");
    eventually("the claim and its volume to go", || {
        (sim.store()
            .get("persistentvolumeclaims", "database", "data-mysql-0")
            .is_none()
            && sim.store().get("persistentvolumes", "", &volume_name).is_none())
        .then_some(())
    })
    .await;
    assert!(!directory.exists(), "the volume's directory is removed");
}

#[tokio::test]
async fn endpoints_follow_pod_readiness_and_statefulsets_scale_down_from_the_top() {
    let sim = control_plane();
    sim.control
        .attach_runtime(std::sync::Arc::new(FakeNode { echo_port: 9 }));
    let client = client(&sim);
    create_namespace(&client, "database").await;
    let services: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "database",
        &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
    );
    for (name, selector) in [
        ("mysql-headless", json!({ "app": "mysql" })),
        (
            "mysql-primary",
            json!({ "statefulset.kubernetes.io/pod-name": "mysql-0" }),
        ),
    ] {
        let service: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": { "name": name },
            "spec": { "clusterIP": if name == "mysql-headless" { json!("None") } else { Value::Null }, "selector": selector,
                      "ports": [{ "name": "mysql", "port": 3306, "targetPort": "mysql" }] },
        }))
        .expect("service");
        services
            .patch(name, &PatchParams::apply("lab").force(), &Patch::Apply(&service))
            .await
            .expect("applied");
    }
    let primary = sim
        .store()
        .get("services", "database", "mysql-primary")
        .expect("service");
    assert!(
        primary["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.96."))
    );
    apply_statefulset(&client, 3).await.expect("applied");
    for ordinal in 0..3 {
        let name = format!("mysql-{ordinal}");
        eventually("the next pod", || sim.store().get("pods", "database", &name)).await;
        sim.store().update("pods", "database", &name, |pod| {
            pod["status"]["podIP"] = json!(format!("10.244.0.{}", ordinal + 10))
        });
        if ordinal < 2 {
            make_ready(&sim, "database", &name);
        }
    }
    // Wait for the state asserted below, not for the first change: the controller may publish mysql-1 as not
    // ready before its readiness arrives.
    let endpoints = eventually("endpoints with two ready and one not ready", || {
        sim.store()
            .get("endpoints", "database", "mysql-headless")
            .filter(|endpoints| {
                let count = |field: &str| endpoints["subsets"][0][field].as_array().map_or(0, Vec::len);
                count("addresses") == 2 && count("notReadyAddresses") == 1
            })
    })
    .await;
    let subset = &endpoints["subsets"][0];
    let names = |list: &Value| -> Vec<String> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|a| a["targetRef"]["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(names(&subset["addresses"]), ["mysql-0", "mysql-1"]);
    assert_eq!(names(&subset["notReadyAddresses"]), ["mysql-2"]);
    assert_eq!(subset["addresses"][0]["hostname"], "mysql-0");
    assert_eq!(
        subset["ports"],
        json!([{ "name": "mysql", "port": 3306, "protocol": "TCP" }])
    );
    let primary = sim
        .store()
        .get("endpoints", "database", "mysql-primary")
        .expect("endpoints");
    assert_eq!(names(&primary["subsets"][0]["addresses"]), ["mysql-0"]);

    make_ready(&sim, "database", "mysql-2");
    apply_statefulset(&client, 1).await.expect("scaled down");
    let terminating = |name: &str| {
        sim.store()
            .get("pods", "database", name)
            .is_some_and(|pod| pod["metadata"]["deletionTimestamp"].is_string())
    };
    eventually("mysql-2 to terminate first", || terminating("mysql-2").then_some(())).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!terminating("mysql-1"), "mysql-1 waits until mysql-2 is gone");
    sim.store().remove("pods", "database", "mysql-2");
    eventually("mysql-1 to terminate next", || terminating("mysql-1").then_some(())).await;
    assert!(!terminating("mysql-0"));
    assert!(
        sim.store()
            .get("persistentvolumeclaims", "database", "data-mysql-2")
            .is_some(),
        "claims are kept on scale-down"
    );
}

#[tokio::test]
async fn streaming_lists_end_their_initial_events_with_a_bookmark() {
    let sim = control_plane();
    let client = client(&sim);
    let path = "/api/v1/namespaces?&watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1";
    let request = axum::http::Request::builder()
        .uri(path)
        .body(kube::client::Body::empty())
        .expect("request");
    let response = client.send(request).await.expect("response");
    let bytes = axum::body::to_bytes(axum::body::Body::new(response.into_body()), usize::MAX)
        .await
        .expect("body");
    let lines: Vec<Value> = bytes
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("json line"))
        .collect();
    let types: Vec<&str> = lines.iter().filter_map(|line| line["type"].as_str()).collect();
    assert_eq!(types, ["ADDED", "ADDED", "ADDED", "ADDED", "BOOKMARK"]);
    assert_eq!(
        lines[4]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(lines[4]["object"]["kind"], "Namespace");
}

#[tokio::test]
async fn statefulset_revisions_follow_the_template_and_a_rollback_renumbers() {
    use k8s_openapi::api::apps::v1::ControllerRevision;
    let sim = control_plane();
    let client = client(&sim);
    create_namespace(&client, "database").await;
    apply_statefulset(&client, 1).await.expect("applied");
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "database");
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), "database");
    let listed = |revisions: &Api<ControllerRevision>| {
        let revisions = revisions.clone();
        async move {
            let mut listed: Vec<(String, i64)> = revisions
                .list(&ListParams::default())
                .await
                .expect("revisions list")
                .items
                .into_iter()
                .map(|revision| (revision.metadata.name.unwrap_or_default(), revision.revision))
                .collect();
            listed.sort_by_key(|(_, number)| *number);
            listed
        }
    };

    let pod = eventually("mysql-0", || sim.store().get("pods", "database", "mysql-0")).await;
    let first_name = pod["metadata"]["labels"]["controller-revision-hash"]
        .as_str()
        .expect("the pod's revision")
        .to_string();
    let first: ControllerRevision = revisions.get(&first_name).await.expect("the pod's revision is stored");
    assert_eq!(first.revision, 1);
    let owner = &first.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("StatefulSet", Some(true)));
    let labels = first.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("app").map(String::as_str), Some("mysql"));
    assert_eq!(
        labels.get("controller.kubernetes.io/hash").map(String::as_str),
        first_name.strip_prefix("mysql-")
    );
    let data = first.data.expect("data").0;
    assert_eq!(data["spec"]["template"]["$patch"], "replace");
    assert_eq!(data["spec"]["template"]["spec"]["containers"][0]["image"], "mysql:8.0");

    // A new template: revision 2, the status's update revision.
    let image =
        json!({ "spec": { "template": { "spec": { "containers": [{ "name": "mysql", "image": "mysql:8.4" }] } } } });
    statefulsets
        .patch("mysql", &PatchParams::default(), &Patch::Strategic(&image))
        .await
        .expect("patched");
    let second = eventually("a second revision", || {
        let sts = sim.store().get("statefulsets", "database", "mysql")?;
        let update = sts["status"]["updateRevision"].as_str()?.to_string();
        (update != first_name).then_some(update)
    })
    .await;
    assert_eq!(
        listed(&revisions).await,
        vec![(first_name.clone(), 1), (second.clone(), 2)]
    );

    // The revision's data patched back (what `kubectl rollout undo` sends): the first revision becomes number 3.
    let undo = json!({ "spec": { "template": data["spec"]["template"].clone() } });
    statefulsets
        .patch("mysql", &PatchParams::default(), &Patch::Strategic(&undo))
        .await
        .expect("rolled back");
    let sts = statefulsets.get("mysql").await.expect("sts");
    let template = sts.spec.expect("spec").template;
    assert_eq!(
        template.spec.expect("pod spec").containers[0].image.as_deref(),
        Some("mysql:8.0"),
        "$patch: replace puts the whole template back"
    );
    eventually("the first revision renumbered", || {
        let revision = sim.store().get("controllerrevisions", "database", &first_name)?;
        (revision["revision"] == 3).then_some(())
    })
    .await;
    assert_eq!(
        listed(&revisions).await,
        vec![(second.clone(), 2), (first_name.clone(), 3)]
    );

    // revisionHistoryLimit 0: the revision neither a pod nor the status uses goes. mysql-0 still runs the second
    // template until it is replaced, so both stay for now.
    let limit = json!({ "spec": { "revisionHistoryLimit": 0 } });
    statefulsets
        .patch("mysql", &PatchParams::default(), &Patch::Merge(&limit))
        .await
        .expect("limited");
    make_ready(&sim, "database", "mysql-0");
    eventually("the old revision pruned once no pod runs it", || {
        sim.store()
            .get("controllerrevisions", "database", &second)
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(listed(&revisions).await, vec![(first_name, 3)]);

    // The StatefulSet's revisions go with it.
    statefulsets
        .delete("mysql", &DeleteParams::default())
        .await
        .expect("deleted");
    eventually("the revisions collected", || {
        sim.objects("controllerrevisions", Some("database"))
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn discovery_lists_categories_and_events_k8s_io_shows_core_events() {
    let sim = control_plane();
    let client = client(&sim);
    let (code, core) = raw(&client, "GET", "/api/v1", "application/json", Value::Null).await;
    assert_eq!(code, 200);
    let resources = core["resources"].as_array().expect("resources");
    let names: Vec<&str> = resources.iter().filter_map(|r| r["name"].as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "a real server lists resources by name");
    let entry = |name: &str| resources.iter().find(|r| r["name"] == name).cloned().expect(name);
    assert_eq!(entry("pods")["categories"], json!(["all"]));
    assert_eq!(entry("services")["categories"], json!(["all"]));
    assert!(entry("configmaps").get("categories").is_none());
    let (_, apps) = raw(&client, "GET", "/apis/apps/v1", "application/json", Value::Null).await;
    let statefulsets = apps["resources"]
        .as_array()
        .and_then(|list| list.iter().find(|r| r["name"] == "statefulsets"))
        .cloned()
        .expect("statefulsets");
    assert_eq!(statefulsets["categories"], json!(["all"]));
    let (_, events) = raw(
        &client,
        "GET",
        "/apis/events.k8s.io/v1",
        "application/json",
        Value::Null,
    )
    .await;
    assert_eq!(events["resources"][0]["verbs"], json!(["get", "list", "watch"]));

    // A recorded Event, seen through events.k8s.io/v1 with its names there, in a list and a watch.
    let involved = ObjectRef {
        kind: "Pod".into(),
        api_version: "v1".into(),
        namespace: "default".into(),
        name: "mysql-0".into(),
        uid: "u1".into(),
    };
    sim.store()
        .record_event("default", &involved, "Normal", "Started", "Started container mysql");
    let gvk = GroupVersionKind::gvk("events.k8s.io", "v1", "Event");
    let (resource, _) = discovery::pinned_kind(&client, &gvk)
        .await
        .expect("events.k8s.io is served");
    let events: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let listed = events.list(&ListParams::default()).await.expect("list");
    let event = &listed.items[0];
    assert_eq!(
        event.types.as_ref().map(|t| t.api_version.as_str()),
        Some("events.k8s.io/v1")
    );
    assert_eq!(event.data["note"], "Started container mysql");
    assert_eq!(event.data["regarding"]["name"], "mysql-0");
    assert_eq!(event.data["reportingController"], "kubelet");
    assert!(event.data.get("message").is_none());
    let name = event.metadata.name.clone().expect("name");
    assert_eq!(
        events.get(&name).await.expect("get").data["note"],
        "Started container mysql"
    );
    let mut watch = events.watch(&WatchParams::default(), "0").await.expect("watch").boxed();
    match watch.try_next().await.expect("an event") {
        Some(WatchEvent::Added(object)) => assert_eq!(object.data["reason"], "Started"),
        other => panic!("expected ADDED, got {other:?}"),
    }
    // Read-only: writes are refused.
    let (code, _) = raw(
        &client,
        "POST",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        "application/json",
        json!({ "metadata": { "name": "x" } }),
    )
    .await;
    assert_eq!(code, 405);
}
