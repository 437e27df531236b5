//! Pure pod diagnosis: a pod, its PersistentVolumeClaims and recent Events decide how far the pod got on its way to
//! Ready, or what stops it, why, and how to fix it.

use std::fmt;

use k8s_openapi::api::core::v1::{ContainerStatus, Event, PersistentVolumeClaim, Pod};

/// How far a pod got on its way to Ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodProgress {
    /// The pod does not exist (yet).
    Missing,
    /// Created, but not yet scheduled or being deleted; `reason` says which.
    Pending { reason: String },
    /// The scheduler is waiting for something expected to resolve itself (volumes being provisioned).
    Unschedulable { message: String },
    /// A claim of the pod is not Bound yet and nothing says it never will be.
    PvcPending { claim: String, message: String },
    /// Scheduled; init containers are running.
    Initializing,
    /// Init done; containers are being created or run but are not Ready yet.
    Starting,
    /// Condition Ready is True.
    Ready,
    /// The pod will not become Ready without a change by a person.
    Failed(PodProblem),
}

impl PodProgress {
    /// One line for progress output and for "last state seen" in timeout errors.
    pub fn describe(&self) -> String {
        match self {
            PodProgress::Missing => "not created yet".to_string(),
            PodProgress::Pending { reason } => format!("pending ({reason})"),
            PodProgress::Unschedulable { message } => format!("not scheduled yet ({message})"),
            PodProgress::PvcPending { claim, message } => {
                format!("waiting for PersistentVolumeClaim {claim} to be bound ({message})")
            }
            PodProgress::Initializing => "scheduled, init containers running".to_string(),
            PodProgress::Starting => "containers starting, not Ready yet".to_string(),
            PodProgress::Ready => "Ready".to_string(),
            PodProgress::Failed(problem) => format!("failed: {}", problem.cause),
        }
    }
}

/// Which container log explains a problem; the adapter fetches it into [`PodProblem::log_tail`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSource {
    pub container: String,
    /// The log of the previous run: the current one of a crash-looping container is empty or just started.
    pub previous: bool,
}

/// Why a pod cannot become Ready: `cause` names the pod and what happened, `fix` what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProblem {
    pub pod: String,
    /// Kubernetes' short word for it, as `kubectl get pods` shows it (`ImagePullBackOff`, `Init:Error`, ...).
    pub reason: String,
    pub cause: String,
    pub fix: String,
    /// The last log lines of the container named by `log_source`, once fetched.
    pub log_tail: Option<String>,
    pub log_source: Option<LogSource>,
}

impl fmt::Display for PodProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.cause, self.fix)?;
        if let (Some(tail), Some(source)) = (&self.log_tail, &self.log_source) {
            let run = if source.previous { " (previous run)" } else { "" };
            write!(f, "\nlast log lines of container \"{}\"{run}:", source.container)?;
            let tail = tail.trim_end();
            if tail.is_empty() {
                write!(f, "\n  (empty)")?;
            }
            for line in tail.lines() {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

/// Decides where `pod` stands. `pvcs` and `events` may hold unrelated objects: only the pod's own claims and the
/// events about the pod or those claims are considered.
pub fn assess_pod(pod: &Pod, pvcs: &[PersistentVolumeClaim], events: &[Event]) -> PodProgress {
    let subject = Subject::of(pod);
    let status = pod.status.as_ref();

    if pod.metadata.deletion_timestamp.is_some() {
        return PodProgress::Pending {
            reason: "being deleted".to_string(),
        };
    }
    if let Some(problem) = terminated_pod(&subject, pod) {
        return PodProgress::Failed(problem);
    }

    if !condition_is_true(pod, "PodScheduled") {
        return unscheduled(&subject, pod, pvcs, events);
    }

    let init_statuses = status
        .and_then(|s| s.init_container_statuses.as_deref())
        .unwrap_or_default();
    for init in init_statuses {
        if let Some(problem) = init_container_problem(&subject, init) {
            return PodProgress::Failed(problem);
        }
    }
    let has_init_containers = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|c| !c.is_empty());
    let init_done = condition_is_true(pod, "Initialized")
        || (!init_statuses.is_empty() && init_statuses.iter().all(terminated_successfully));
    if has_init_containers && !init_done {
        return PodProgress::Initializing;
    }

    let statuses = status.and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    for container in statuses {
        if let Some(problem) = container_problem(&subject, container) {
            return PodProgress::Failed(problem);
        }
    }

    if condition_is_true(pod, "Ready") {
        PodProgress::Ready
    } else {
        PodProgress::Starting
    }
}

/// Decides where a pod that does not exist stands: still to be created, or refused by the API server when its
/// controller tried (a `FailedCreate` event on the StatefulSet, e.g. Pod Security admission or a quota).
pub fn assess_missing_pod(namespace: &str, pod: &str, events: &[Event]) -> PodProgress {
    let mut failures: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some("StatefulSet")
                && e.reason.as_deref() == Some("FailedCreate")
                && e.message.as_deref().is_some_and(|m| m.contains(&format!("Pod {pod} ")))
        })
        .collect();
    failures.sort_by_key(|e| std::cmp::Reverse(event_time(e)));
    let Some(failure) = failures.first() else {
        return PodProgress::Missing;
    };
    let set = failure.involved_object.name.as_deref().unwrap_or("?");
    PodProgress::Failed(PodProblem {
        pod: pod.to_string(),
        reason: "FailedCreate".to_string(),
        cause: format!(
            "StatefulSet {set} cannot create {pod} (FailedCreate: {})",
            failure.message.as_deref().unwrap_or("").trim()
        ),
        fix: format!(
            "remove the cause the API server names (Pod Security admission, a ResourceQuota, a webhook); \
             \"kubectl describe statefulset -n {namespace} {set}\" shows the controller's events"
        ),
        log_tail: None,
        log_source: None,
    })
}

/// The most recent Warning event about the pod itself (e.g. a failing readiness probe), for "last state" lines.
pub fn latest_pod_warning(pod: &Pod, events: &[Event]) -> Option<String> {
    let subject = Subject::of(pod);
    about(events, "Pod", &subject.name, pod.metadata.uid.as_deref())
        .into_iter()
        .find(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.as_deref().unwrap_or("Warning"),
                e.message.as_deref().unwrap_or("").trim()
            )
        })
}

/// The pod's name and namespace, for messages and kubectl hints, and its containers' images as written in the spec.
struct Subject {
    name: String,
    namespace: String,
    /// Container name -> image as the user wrote it: what `kind load docker-image` takes. Statuses may show the
    /// runtime's normalised form (`docker.io/library/mysql:8.4`).
    images: std::collections::BTreeMap<String, String>,
}

impl Subject {
    fn of(pod: &Pod) -> Subject {
        let spec = pod.spec.as_ref();
        let containers = spec.map(|s| s.containers.iter()).into_iter().flatten();
        let init_containers = spec.and_then(|s| s.init_containers.as_ref()).into_iter().flatten();
        Subject {
            name: pod.metadata.name.clone().unwrap_or_else(|| "<unnamed pod>".to_string()),
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".to_string()),
            images: containers
                .chain(init_containers)
                .filter_map(|c| Some((c.name.clone(), c.image.clone()?)))
                .collect(),
        }
    }

    fn problem(&self, reason: &str, cause: String, fix: String, log_source: Option<LogSource>) -> PodProblem {
        PodProblem {
            pod: self.name.clone(),
            reason: reason.to_string(),
            cause,
            fix,
            log_tail: None,
            log_source,
        }
    }
}

fn condition_is_true(pod: &Pod, kind: &str) -> bool {
    condition(pod, kind).is_some_and(|c| c.status == "True")
}

fn condition<'a>(pod: &'a Pod, kind: &str) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

/// Phases Failed and Succeeded are final: the kubelet will not restart such a pod.
fn terminated_pod(subject: &Subject, pod: &Pod) -> Option<PodProblem> {
    let status = pod.status.as_ref()?;
    let phase = status.phase.as_deref()?;
    if phase != "Failed" && phase != "Succeeded" {
        return None;
    }
    let reason = status.reason.clone().unwrap_or_else(|| phase.to_string());
    let detail = match status.message.as_deref() {
        Some(message) if !message.is_empty() => format!("{reason}: {message}"),
        _ => reason.clone(),
    };
    Some(subject.problem(
        &reason,
        format!("{} has terminated (phase {phase}, {detail})", subject.name),
        format!(
            "delete the pod so that its StatefulSet creates it again: \"kubectl delete pod -n {} {}\"",
            subject.namespace, subject.name
        ),
        None,
    ))
}

fn unscheduled(subject: &Subject, pod: &Pod, pvcs: &[PersistentVolumeClaim], events: &[Event]) -> PodProgress {
    for claim in claim_names(pod) {
        let Some(pvc) = pvcs.iter().find(|p| p.metadata.name.as_deref() == Some(claim.as_str())) else {
            return PodProgress::PvcPending {
                claim,
                message: "not created yet".to_string(),
            };
        };
        let phase = pvc
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        if phase == "Bound" {
            continue;
        }
        let claim_events = about(events, "PersistentVolumeClaim", &claim, pvc.metadata.uid.as_deref());
        if let Some(failure) = claim_events
            .iter()
            .find(|e| matches!(e.reason.as_deref(), Some("FailedBinding" | "ProvisioningFailed")))
        {
            return PodProgress::Failed(claim_problem(subject, pvc, &claim, failure));
        }
        if phase == "Lost" {
            return PodProgress::Failed(subject.problem(
                "ClaimLost",
                format!(
                    "{} uses PersistentVolumeClaim {claim}, whose PersistentVolume is gone (phase Lost)",
                    subject.name
                ),
                format!(
                    "the data of that volume is lost: delete the claim (\"kubectl delete pvc -n {} {claim}\") and \
                     the pod so that both are created again",
                    subject.namespace
                ),
                None,
            ));
        }
        let message = claim_events
            .first()
            .and_then(|e| e.message.clone())
            .map(|m| m.trim().to_string())
            .unwrap_or_else(|| format!("phase {phase}"));
        return PodProgress::PvcPending { claim, message };
    }

    let Some(scheduled) = condition(pod, "PodScheduled") else {
        return PodProgress::Pending {
            reason: "waiting to be scheduled".to_string(),
        };
    };
    let message = scheduled.message.clone().unwrap_or_default();
    if scheduled.reason.as_deref() != Some("Unschedulable") {
        return PodProgress::Pending {
            reason: "waiting to be scheduled".to_string(),
        };
    }
    if message.contains("PersistentVolumeClaim") {
        // Every claim is Bound by now (checked above): the scheduler has not retried since.
        return PodProgress::Unschedulable { message };
    }
    PodProgress::Failed(subject.problem(
        "Unschedulable",
        format!(
            "{} cannot be scheduled on any node (Unschedulable: {})",
            subject.name,
            message.trim()
        ),
        format!(
            "free capacity or remove the taints named above, or lower the pod's resource requests; \
             \"kubectl describe pod -n {} {}\" shows the scheduler's reasons",
            subject.namespace, subject.name
        ),
        None,
    ))
}

fn claim_problem(subject: &Subject, pvc: &PersistentVolumeClaim, claim: &str, failure: &Event) -> PodProblem {
    let reason = failure.reason.clone().unwrap_or_default();
    let message = failure.message.as_deref().unwrap_or("").trim().to_string();
    let class = pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone());
    let fix = if message.contains("no storage class is set")
        || (class.is_none() && message.contains("no persistent volumes available"))
    {
        format!(
            "the cluster has no default StorageClass, so nothing provisions a volume for the claim: install a \
             provisioner (kind ships \"standard\"; e.g. rancher's local-path-provisioner) or mark a class default with \
             \"kubectl patch storageclass <name> -p '{{\"metadata\":{{\"annotations\":{{\"storageclass.kubernetes.io/is-default-class\":\"true\"}}}}}}'\", \
             then delete the claim (\"kubectl delete pvc -n {} {claim}\") so that it is created again",
            subject.namespace
        )
    } else if let Some(class) = class.as_deref().filter(|_| message.contains("not found")) {
        format!(
            "StorageClass \"{class}\" does not exist: create it, or use an existing class (\"kubectl get storageclass\")"
        )
    } else {
        format!(
            "check the storage provisioner of the claim's StorageClass (\"kubectl describe pvc -n {} {claim}\")",
            subject.namespace
        )
    };
    subject.problem(
        &reason,
        format!(
            "{} waits for PersistentVolumeClaim {claim}, which cannot be bound ({reason}: {message})",
            subject.name
        ),
        fix,
        None,
    )
}

fn claim_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone()))
        .collect()
}

/// Events about one object, newest first. A uid, when both sides have one, keeps out events of an earlier object of
/// the same name (a pod recreated by its StatefulSet).
fn about<'a>(events: &'a [Event], kind: &str, name: &str, uid: Option<&str>) -> Vec<&'a Event> {
    let mut found: Vec<&Event> = events
        .iter()
        .filter(|e| {
            let object = &e.involved_object;
            object.kind.as_deref() == Some(kind)
                && object.name.as_deref() == Some(name)
                && match (object.uid.as_deref(), uid) {
                    (Some(event_uid), Some(uid)) => event_uid == uid,
                    _ => true,
                }
        })
        .collect();
    found.sort_by_key(|e| std::cmp::Reverse(event_time(e)));
    found
}

fn event_time(event: &Event) -> Option<jiff::Timestamp> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn terminated_successfully(status: &ContainerStatus) -> bool {
    status
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0)
}

fn waiting(status: &ContainerStatus) -> Option<(&str, &str)> {
    let waiting = status.state.as_ref()?.waiting.as_ref()?;
    Some((
        waiting.reason.as_deref().unwrap_or(""),
        waiting.message.as_deref().unwrap_or(""),
    ))
}

/// `(reason)` or `(reason: message)`.
fn parenthesized(reason: &str, message: &str) -> String {
    let message = message.trim();
    if message.is_empty() {
        format!("({reason})")
    } else {
        format!("({reason}: {message})")
    }
}

fn init_container_problem(subject: &Subject, init: &ContainerStatus) -> Option<PodProblem> {
    let name = &init.name;
    if let Some(terminated) = init.state.as_ref().and_then(|s| s.terminated.as_ref())
        && terminated.exit_code != 0
    {
        let reason = terminated.reason.as_deref().unwrap_or("Error");
        return Some(subject.problem(
            &format!("Init:{reason}"),
            format!(
                "{} init container \"{name}\" failed (Init:{reason}, exit code {})",
                subject.name, terminated.exit_code
            ),
            init_fix(subject, name),
            Some(LogSource {
                container: name.clone(),
                previous: false,
            }),
        ));
    }
    let (reason, message) = waiting(init)?;
    match reason {
        "CrashLoopBackOff" => {
            let exit = last_exit(init);
            Some(subject.problem(
                "Init:CrashLoopBackOff",
                format!(
                    "{} init container \"{name}\" keeps failing (Init:CrashLoopBackOff, {} restarts{exit})",
                    subject.name, init.restart_count
                ),
                init_fix(subject, name),
                Some(LogSource {
                    container: name.clone(),
                    previous: init.restart_count > 0,
                }),
            ))
        }
        _ => waiting_problem(subject, init, reason, message, "Init:"),
    }
}

fn init_fix(subject: &Subject, container: &str) -> String {
    format!(
        "read its log below and fix the script or the config it reads (the StatefulSet's init container); \
         \"kubectl logs -n {} {} -c {container}\" shows the whole log",
        subject.namespace, subject.name
    )
}

fn container_problem(subject: &Subject, container: &ContainerStatus) -> Option<PodProblem> {
    let (reason, message) = waiting(container)?;
    let name = &container.name;
    if reason != "CrashLoopBackOff" {
        return waiting_problem(subject, container, reason, message, "");
    }
    let oom = last_terminated_reason(container) == Some("OOMKilled");
    let fix = if oom {
        format!("the container ran out of memory: raise its memory limit in the StatefulSet (container \"{name}\")")
    } else {
        format!(
            "read its log below; \"kubectl logs -n {} {} -c {name} --previous\" shows the whole log of the last run",
            subject.namespace, subject.name
        )
    };
    Some(subject.problem(
        "CrashLoopBackOff",
        format!(
            "{} container \"{name}\" keeps crashing (CrashLoopBackOff, {} restarts{})",
            subject.name,
            container.restart_count,
            last_exit(container)
        ),
        fix,
        Some(LogSource {
            container: name.clone(),
            previous: container.restart_count > 0,
        }),
    ))
}

/// Waiting reasons that do not resolve by themselves. `prefix` is `Init:` for init containers, as kubectl shows.
fn waiting_problem(
    subject: &Subject,
    container: &ContainerStatus,
    reason: &str,
    message: &str,
    prefix: &str,
) -> Option<PodProblem> {
    let name = &container.name;
    let shown = format!("{prefix}{reason}");
    let what = if prefix.is_empty() {
        "container"
    } else {
        "init container"
    };
    match reason {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
            let image = subject.images.get(name).unwrap_or(&container.image);
            let fix = if reason == "InvalidImageName" {
                format!("\"{image}\" is not a valid image reference: fix the --image value or the manifest")
            } else {
                format!("check the image name and tag, or load it into kind with \"kind load docker-image {image}\"")
            };
            Some(subject.problem(
                &shown,
                format!(
                    "{} cannot pull image \"{image}\" {}",
                    subject.name,
                    parenthesized(&shown, message)
                ),
                fix,
                None,
            ))
        }
        "CreateContainerConfigError" => Some(subject.problem(
            &shown,
            format!(
                "{} {what} \"{name}\" cannot be created {}",
                subject.name,
                parenthesized(&shown, message)
            ),
            format!(
                "a Secret or ConfigMap the pod reads is missing or lacks a key: check \"kubectl get secret,configmap \
                 -n {}\" against the manifests (re-run \"lab up\" to apply them)",
                subject.namespace
            ),
            None,
        )),
        "CreateContainerError" | "RunContainerError" | "ContainerCannotRun" => Some(subject.problem(
            &shown,
            format!(
                "{} {what} \"{name}\" cannot be started {}",
                subject.name,
                parenthesized(&shown, message)
            ),
            format!(
                "check the container's command, volume mounts and security settings; \"kubectl describe pod -n {} \
                 {}\" shows the runtime's error",
                subject.namespace, subject.name
            ),
            None,
        )),
        _ => None,
    }
}

fn last_terminated_reason(container: &ContainerStatus) -> Option<&str> {
    container.last_state.as_ref()?.terminated.as_ref()?.reason.as_deref()
}

/// `, last exit code 1 (Error)` or nothing when unknown.
fn last_exit(container: &ContainerStatus) -> String {
    match container.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
        Some(t) => match t.reason.as_deref() {
            Some(reason) => format!(", last exit code {} ({reason})", t.exit_code),
            None => format!(", last exit code {}", t.exit_code),
        },
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// mysql-0 as the StatefulSet creates it; `status` is the part the tests vary.
    fn mysql_pod(status: Value) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "mysql-0",
                "namespace": "database",
                "uid": "0b7c6a4e-1111-4a5e-9c0e-5f1e2d3c4b5a",
                "labels": {"app": "mysql", "statefulset.kubernetes.io/pod-name": "mysql-0"}
            },
            "spec": {
                "initContainers": [{"name": "init-mysql-config", "image": "mysql:8.4"}],
                "containers": [{"name": "mysql", "image": "mysql:8.4"}],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data-mysql-0"}},
                    {"name": "conf", "emptyDir": {}}
                ]
            },
            "status": status
        }))
        .expect("valid pod JSON")
    }

    fn pvc(phase: &str, storage_class: Option<&str>) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-mysql-0", "namespace": "database", "uid": "pvc-uid-0"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
                "storageClassName": storage_class
            },
            "status": {"phase": phase}
        }))
        .expect("valid PVC JSON")
    }

    fn event(kind: &str, name: &str, uid: &str, type_: &str, reason: &str, message: &str, at: &str) -> Event {
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": format!("{name}.17f0a"), "namespace": "database"},
            "involvedObject": {"kind": kind, "name": name, "namespace": "database", "uid": uid, "apiVersion": "v1"},
            "type": type_,
            "reason": reason,
            "message": message,
            "count": 3,
            "firstTimestamp": at,
            "lastTimestamp": at
        }))
        .expect("valid event JSON")
    }

    fn scheduled_conditions(initialized: bool, ready: bool) -> Value {
        let flag = |b: bool| if b { "True" } else { "False" };
        json!([
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-05-01T10:00:00Z"},
            {"type": "Initialized", "status": flag(initialized), "lastTransitionTime": "2025-05-01T10:00:05Z"},
            {"type": "ContainersReady", "status": flag(ready), "lastTransitionTime": "2025-05-01T10:00:30Z"},
            {"type": "Ready", "status": flag(ready), "lastTransitionTime": "2025-05-01T10:00:30Z"}
        ])
    }

    fn init_done() -> Value {
        json!([{
            "name": "init-mysql-config", "image": "mysql:8.4", "imageID": "docker.io/library/mysql@sha256:aa",
            "ready": true, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                     "startedAt": "2025-05-01T10:00:02Z", "finishedAt": "2025-05-01T10:00:04Z"}}
        }])
    }

    /// The spec names the image the status shows, as when the runtime reports it unchanged.
    fn running_pod_with(container_status: Value, ready: bool) -> Pod {
        let image = container_status["image"].as_str().map(str::to_string);
        let mut pod = mysql_pod(json!({
            "phase": if ready { "Running" } else { "Pending" },
            "conditions": scheduled_conditions(true, ready),
            "hostIP": "172.18.0.2",
            "podIP": "10.244.0.7",
            "startTime": "2025-05-01T10:00:00Z",
            "initContainerStatuses": init_done(),
            "containerStatuses": [container_status]
        }));
        pod.spec.as_mut().expect("spec").containers[0].image = image;
        pod
    }

    fn failed(progress: PodProgress) -> PodProblem {
        match progress {
            PodProgress::Failed(problem) => problem,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn image_pull_back_off_names_the_image_and_the_kind_load_fix() {
        let pod = running_pod_with(
            json!({
                "name": "mysql", "image": "mysql:nope", "imageID": "", "ready": false, "restartCount": 0,
                "started": false,
                "state": {"waiting": {"reason": "ImagePullBackOff",
                                      "message": "Back-off pulling image \"mysql:nope\""}}
            }),
            false,
        );
        let problem = failed(assess_pod(&pod, &[pvc("Bound", Some("standard"))], &[]));
        assert_eq!(problem.reason, "ImagePullBackOff");
        assert_eq!(
            problem.to_string(),
            "mysql-0 cannot pull image \"mysql:nope\" (ImagePullBackOff: Back-off pulling image \"mysql:nope\"): \
             check the image name and tag, or load it into kind with \"kind load docker-image mysql:nope\""
        );
        assert_eq!(problem.log_source, None);
    }

    #[test]
    fn the_image_is_named_as_written_in_the_spec_not_as_the_runtime_normalised_it() {
        let mut pod = running_pod_with(
            json!({
                "name": "mysql", "image": "docker.io/library/mysql:nope", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull"}}
            }),
            false,
        );
        pod.spec.as_mut().expect("spec").containers[0].image = Some("mysql:nope".into());
        let problem = failed(assess_pod(&pod, &[], &[]));
        assert_eq!(problem.cause, "mysql-0 cannot pull image \"mysql:nope\" (ErrImagePull)");
        assert!(
            problem.fix.ends_with("\"kind load docker-image mysql:nope\""),
            "{}",
            problem.fix
        );
    }

    #[test]
    fn err_image_pull_fails_at_once_without_a_message() {
        let pod = running_pod_with(
            json!({
                "name": "mysql", "image": "mysql:nope", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ErrImagePull"}}
            }),
            false,
        );
        let problem = failed(assess_pod(&pod, &[], &[]));
        assert_eq!(
            problem.to_string(),
            "mysql-0 cannot pull image \"mysql:nope\" (ErrImagePull): check the image name and tag, or load it into \
             kind with \"kind load docker-image mysql:nope\""
        );
    }

    #[test]
    fn crash_loop_back_off_reports_exit_code_and_asks_for_the_previous_log() {
        let pod = running_pod_with(
            json!({
                "name": "mysql", "image": "mysql:8.4", "imageID": "docker.io/library/mysql@sha256:bb",
                "ready": false, "restartCount": 3, "started": false,
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                                      "message": "back-off 40s restarting failed container=mysql pod=mysql-0_database(0b7c)"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                             "startedAt": "2025-05-01T10:01:00Z", "finishedAt": "2025-05-01T10:01:02Z"}}
            }),
            false,
        );
        let mut problem = failed(assess_pod(&pod, &[], &[]));
        assert_eq!(problem.reason, "CrashLoopBackOff");
        assert_eq!(
            problem.log_source,
            Some(LogSource {
                container: "mysql".into(),
                previous: true
            })
        );
        problem.log_tail = Some("[ERROR] [MY-010119] [Server] Aborting\n".into());
        assert_eq!(
            problem.to_string(),
            "mysql-0 container \"mysql\" keeps crashing (CrashLoopBackOff, 3 restarts, last exit code 1 (Error)): \
             read its log below; \"kubectl logs -n database mysql-0 -c mysql --previous\" shows the whole log of the \
             last run\nlast log lines of container \"mysql\" (previous run):\n  [ERROR] [MY-010119] [Server] Aborting"
        );
    }

    #[test]
    fn crash_loop_after_oom_kill_says_raise_the_memory_limit() {
        let pod = running_pod_with(
            json!({
                "name": "mysql", "image": "mysql:8.4", "imageID": "", "ready": false, "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
            }),
            false,
        );
        let problem = failed(assess_pod(&pod, &[], &[]));
        assert!(
            problem
                .cause
                .ends_with("(CrashLoopBackOff, 2 restarts, last exit code 137 (OOMKilled))"),
            "{problem}"
        );
        assert_eq!(
            problem.fix,
            "the container ran out of memory: raise its memory limit in the StatefulSet (container \"mysql\")"
        );
    }

    #[test]
    fn unschedulable_with_unbound_claim_waits_for_the_claim() {
        let pod = mysql_pod(json!({
            "phase": "Pending",
            "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: \
                            0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
                "lastTransitionTime": "2025-05-01T10:00:00Z"
            }]
        }));
        let progress = assess_pod(&pod, &[pvc("Pending", Some("standard"))], &[]);
        assert_eq!(
            progress,
            PodProgress::PvcPending {
                claim: "data-mysql-0".into(),
                message: "phase Pending".into()
            }
        );
        assert_eq!(
            progress.describe(),
            "waiting for PersistentVolumeClaim data-mysql-0 to be bound (phase Pending)"
        );

        // The claim is not even there yet (the StatefulSet controller creates it first, but watches race).
        let progress = assess_pod(&pod, &[], &[]);
        assert_eq!(
            progress,
            PodProgress::PvcPending {
                claim: "data-mysql-0".into(),
                message: "not created yet".into()
            }
        );

        // Bound by now: the scheduler's condition is stale, keep waiting.
        let progress = assess_pod(&pod, &[pvc("Bound", Some("standard"))], &[]);
        assert!(matches!(progress, PodProgress::Unschedulable { ref message } if message.starts_with("0/1 nodes")));
    }

    #[test]
    fn pending_claim_with_failed_binding_explains_the_missing_default_storage_class() {
        let pod = mysql_pod(json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."}]
        }));
        let events = [
            event(
                "PersistentVolumeClaim",
                "data-mysql-0",
                "pvc-uid-0",
                "Normal",
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
                "2025-05-01T10:00:20Z",
            ),
            event(
                "Pod",
                "mysql-0",
                "0b7c6a4e-1111-4a5e-9c0e-5f1e2d3c4b5a",
                "Warning",
                "FailedScheduling",
                "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
                "2025-05-01T10:00:21Z",
            ),
        ];
        let problem = failed(assess_pod(&pod, &[pvc("Pending", None)], &events));
        assert_eq!(problem.reason, "FailedBinding");
        assert_eq!(
            problem.cause,
            "mysql-0 waits for PersistentVolumeClaim data-mysql-0, which cannot be bound (FailedBinding: no \
             persistent volumes available for this claim and no storage class is set)"
        );
        assert!(
            problem.fix.starts_with("the cluster has no default StorageClass"),
            "{}",
            problem.fix
        );
        assert!(
            problem.fix.contains("kubectl patch storageclass <name> -p"),
            "{}",
            problem.fix
        );
        assert!(
            problem.fix.contains("kubectl delete pvc -n database data-mysql-0"),
            "{}",
            problem.fix
        );
    }

    #[test]
    fn provisioning_failure_for_a_missing_class_names_the_class() {
        let pod = mysql_pod(json!({"phase": "Pending"}));
        let events = [event(
            "PersistentVolumeClaim",
            "data-mysql-0",
            "pvc-uid-0",
            "Warning",
            "ProvisioningFailed",
            "storageclass.storage.k8s.io \"fast\" not found",
            "2025-05-01T10:00:20Z",
        )];
        let problem = failed(assess_pod(&pod, &[pvc("Pending", Some("fast"))], &events));
        assert_eq!(problem.reason, "ProvisioningFailed");
        assert_eq!(
            problem.fix,
            "StorageClass \"fast\" does not exist: create it, or use an existing class (\"kubectl get storageclass\")"
        );
    }

    #[test]
    fn claim_events_of_an_earlier_claim_with_the_same_name_are_ignored() {
        let pod = mysql_pod(json!({"phase": "Pending"}));
        let events = [event(
            "PersistentVolumeClaim",
            "data-mysql-0",
            "old-pvc-uid",
            "Normal",
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set",
            "2025-05-01T09:00:00Z",
        )];
        assert_eq!(
            assess_pod(&pod, &[pvc("Pending", Some("standard"))], &events),
            PodProgress::PvcPending {
                claim: "data-mysql-0".into(),
                message: "phase Pending".into()
            }
        );
    }

    #[test]
    fn waiting_claim_shows_the_newest_event_message() {
        let pod = mysql_pod(json!({"phase": "Pending"}));
        let events = [
            event(
                "PersistentVolumeClaim",
                "data-mysql-0",
                "pvc-uid-0",
                "Normal",
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
                "2025-05-01T10:00:01Z",
            ),
            event(
                "PersistentVolumeClaim",
                "data-mysql-0",
                "pvc-uid-0",
                "Normal",
                "ExternalProvisioning",
                "Waiting for a volume to be created either by the external provisioner 'rancher.io/local-path'",
                "2025-05-01T10:00:03Z",
            ),
        ];
        let progress = assess_pod(&pod, &[pvc("Pending", Some("standard"))], &events);
        assert_eq!(
            progress,
            PodProgress::PvcPending {
                claim: "data-mysql-0".into(),
                message: "Waiting for a volume to be created either by the external provisioner \
                          'rancher.io/local-path'"
                    .into()
            }
        );
    }

    #[test]
    fn unschedulable_for_lack_of_cpu_fails_with_the_schedulers_message() {
        let pod = mysql_pod(json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."}]
        }));
        let problem = failed(assess_pod(&pod, &[pvc("Bound", Some("standard"))], &[]));
        assert_eq!(problem.reason, "Unschedulable");
        assert_eq!(
            problem.to_string(),
            "mysql-0 cannot be scheduled on any node (Unschedulable: 0/1 nodes are available: 1 Insufficient cpu. \
             preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.): free capacity or \
             remove the taints named above, or lower the pod's resource requests; \"kubectl describe pod -n database \
             mysql-0\" shows the scheduler's reasons"
        );
    }

    #[test]
    fn init_error_points_at_the_init_container_log() {
        let pod = mysql_pod(json!({
            "phase": "Pending",
            "conditions": scheduled_conditions(false, false),
            "initContainerStatuses": [{
                "name": "init-mysql-config", "image": "mysql:8.4", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "reason": "Error",
                                         "startedAt": "2025-05-01T10:00:02Z", "finishedAt": "2025-05-01T10:00:03Z"}}
            }],
            "containerStatuses": [{
                "name": "mysql", "image": "mysql:8.4", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}}
            }]
        }));
        let mut problem = failed(assess_pod(&pod, &[pvc("Bound", Some("standard"))], &[]));
        assert_eq!(problem.reason, "Init:Error");
        assert_eq!(
            problem.log_source,
            Some(LogSource {
                container: "init-mysql-config".into(),
                previous: false
            })
        );
        problem.log_tail = Some("cp: cannot stat '/mnt/config-map/primary.cnf': No such file or directory\n".into());
        assert_eq!(
            problem.to_string(),
            "mysql-0 init container \"init-mysql-config\" failed (Init:Error, exit code 1): read its log below and fix \
             the script or the config it reads (the StatefulSet's init container); \"kubectl logs -n database mysql-0 \
             -c init-mysql-config\" shows the whole log\nlast log lines of container \"init-mysql-config\":\n  cp: \
             cannot stat '/mnt/config-map/primary.cnf': No such file or directory"
        );
    }

    #[test]
    fn init_crash_loop_reads_the_previous_run() {
        let pod = mysql_pod(json!({
            "phase": "Pending",
            "conditions": scheduled_conditions(false, false),
            "initContainerStatuses": [{
                "name": "init-mysql-config", "image": "mysql:8.4", "imageID": "", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}}
            }]
        }));
        let problem = failed(assess_pod(&pod, &[], &[]));
        assert_eq!(problem.reason, "Init:CrashLoopBackOff");
        assert_eq!(
            problem.cause,
            "mysql-0 init container \"init-mysql-config\" keeps failing (Init:CrashLoopBackOff, 4 restarts, last exit \
             code 2 (Error))"
        );
        assert_eq!(
            problem.log_source,
            Some(LogSource {
                container: "init-mysql-config".into(),
                previous: true
            })
        );
    }

    #[test]
    fn running_init_container_means_initializing() {
        let pod = mysql_pod(json!({
            "phase": "Pending",
            "conditions": scheduled_conditions(false, false),
            "initContainerStatuses": [{
                "name": "init-mysql-config", "image": "mysql:8.4", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"running": {"startedAt": "2025-05-01T10:00:02Z"}}
            }]
        }));
        assert_eq!(assess_pod(&pod, &[], &[]), PodProgress::Initializing);
        // Scheduled, but the kubelet has not reported anything yet.
        let pod = mysql_pod(json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}));
        assert_eq!(assess_pod(&pod, &[], &[]), PodProgress::Initializing);
    }

    #[test]
    fn create_container_config_error_names_the_missing_secret() {
        let pod = running_pod_with(
            json!({
                "name": "mysql", "image": "mysql:8.4", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "CreateContainerConfigError",
                                      "message": "secret \"mysql-secret\" not found"}}
            }),
            false,
        );
        let problem = failed(assess_pod(&pod, &[], &[]));
        assert_eq!(problem.reason, "CreateContainerConfigError");
        assert_eq!(
            problem.to_string(),
            "mysql-0 container \"mysql\" cannot be created (CreateContainerConfigError: secret \"mysql-secret\" not \
             found): a Secret or ConfigMap the pod reads is missing or lacks a key: check \"kubectl get \
             secret,configmap -n database\" against the manifests (re-run \"lab up\" to apply them)"
        );
    }

    #[test]
    fn running_but_not_ready_is_starting_and_the_probe_warning_is_available() {
        let pod = running_pod_with(
            json!({
                "name": "mysql", "image": "mysql:8.4", "imageID": "", "ready": false, "restartCount": 0,
                "started": true, "state": {"running": {"startedAt": "2025-05-01T10:00:06Z"}}
            }),
            false,
        );
        assert_eq!(
            assess_pod(&pod, &[pvc("Bound", Some("standard"))], &[]),
            PodProgress::Starting
        );
        let events = [
            event(
                "Pod",
                "mysql-0",
                "0b7c6a4e-1111-4a5e-9c0e-5f1e2d3c4b5a",
                "Normal",
                "Started",
                "Started container mysql",
                "2025-05-01T10:00:06Z",
            ),
            event(
                "Pod",
                "mysql-0",
                "0b7c6a4e-1111-4a5e-9c0e-5f1e2d3c4b5a",
                "Warning",
                "Unhealthy",
                "Readiness probe failed: dial tcp 10.244.0.7:3306: connect: connection refused",
                "2025-05-01T10:00:16Z",
            ),
            event(
                "Pod",
                "mysql-0",
                "an-older-pod-uid",
                "Warning",
                "BackOff",
                "Back-off restarting",
                "2025-05-01T10:00:30Z",
            ),
        ];
        assert_eq!(
            latest_pod_warning(&pod, &events).as_deref(),
            Some("Unhealthy: Readiness probe failed: dial tcp 10.244.0.7:3306: connect: connection refused")
        );
    }

    #[test]
    fn container_creating_is_starting() {
        let pod = running_pod_with(
            json!({
                "name": "mysql", "image": "mysql:8.4", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}
            }),
            false,
        );
        assert_eq!(assess_pod(&pod, &[], &[]), PodProgress::Starting);
    }

    #[test]
    fn ready_condition_means_ready() {
        let pod = running_pod_with(
            json!({
                "name": "mysql", "image": "mysql:8.4", "imageID": "docker.io/library/mysql@sha256:bb",
                "ready": true, "restartCount": 0, "started": true,
                "state": {"running": {"startedAt": "2025-05-01T10:00:06Z"}}
            }),
            true,
        );
        assert_eq!(
            assess_pod(&pod, &[pvc("Bound", Some("standard"))], &[]),
            PodProgress::Ready
        );
        assert_eq!(PodProgress::Ready.describe(), "Ready");
    }

    #[test]
    fn a_pod_being_deleted_is_pending_and_an_evicted_pod_failed() {
        let mut pod = running_pod_with(
            json!({"name": "mysql", "image": "mysql:8.4", "imageID": "", "ready": true, "restartCount": 0}),
            true,
        );
        pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2025-05-01T11:00:00Z".parse().expect("valid timestamp"),
        ));
        assert_eq!(
            assess_pod(&pod, &[], &[]),
            PodProgress::Pending {
                reason: "being deleted".into()
            }
        );

        let evicted = mysql_pod(json!({
            "phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: ephemeral-storage."
        }));
        let problem = failed(assess_pod(&evicted, &[], &[]));
        assert_eq!(
            problem.to_string(),
            "mysql-0 has terminated (phase Failed, Evicted: The node was low on resource: ephemeral-storage.): delete \
             the pod so that its StatefulSet creates it again: \"kubectl delete pod -n database mysql-0\""
        );
    }

    #[test]
    fn missing_pod_refused_by_admission_fails_with_the_controllers_event() {
        assert_eq!(assess_missing_pod("database", "mysql-1", &[]), PodProgress::Missing);
        let events = [
            event(
                "StatefulSet",
                "mysql",
                "sts-uid",
                "Warning",
                "FailedCreate",
                "create Pod mysql-1 in StatefulSet mysql failed error: pods \"mysql-1\" is forbidden: exceeded \
                   quota: pods, requested: pods=1, used: pods=2, limited: pods=2",
                "2025-05-01T10:02:00Z",
            ),
            event(
                "StatefulSet",
                "mysql",
                "sts-uid",
                "Normal",
                "SuccessfulCreate",
                "create Pod mysql-0 in StatefulSet mysql successful",
                "2025-05-01T10:00:00Z",
            ),
        ];
        assert_eq!(assess_missing_pod("database", "mysql-0", &events), PodProgress::Missing);
        let problem = failed(assess_missing_pod("database", "mysql-1", &events));
        assert_eq!(
            problem.to_string(),
            "StatefulSet mysql cannot create mysql-1 (FailedCreate: create Pod mysql-1 in StatefulSet mysql failed \
             error: pods \"mysql-1\" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: \
             pods=2): remove the cause the API server names (Pod Security admission, a ResourceQuota, a webhook); \
             \"kubectl describe statefulset -n database mysql\" shows the controller's events"
        );
    }

    #[test]
    fn not_yet_scheduled_pod_without_conditions_is_pending() {
        let pod = mysql_pod(json!({"phase": "Pending"}));
        assert_eq!(
            assess_pod(&pod, &[pvc("Bound", Some("standard"))], &[]),
            PodProgress::Pending {
                reason: "waiting to be scheduled".into()
            }
        );
    }
}
