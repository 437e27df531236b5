//! Pure pod diagnosis: a pod, its PersistentVolumeClaims and recent Events decide how far the pod got on its way to
//! Ready, or what stops it, why, and how to fix it.

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Event, PersistentVolumeClaim, Pod};

/// How long a cluster without any node may take to register one (the kubelet of a fresh cluster) before the
/// diagnosis calls it a problem.
pub const NO_NODE_GRACE: Duration = Duration::from_secs(30);

/// What the diagnosis knows besides the objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Circumstances {
    /// The kubeconfig context: kind names its contexts `kind-<cluster>`, and only there does `kind load` help.
    pub context: Option<String>,
    /// How long the caller has been waiting: a cluster without nodes gets [`NO_NODE_GRACE`] to register one.
    pub waited: Duration,
}

impl Circumstances {
    fn kind_cluster(&self) -> Option<&str> {
        kind_cluster(self.context.as_deref())
    }
}

/// The kind cluster's name when `context` is a kind cluster's (`kind-<cluster>`).
pub fn kind_cluster(context: Option<&str>) -> Option<&str> {
    context?.strip_prefix("kind-").filter(|name| !name.is_empty())
}

/// How to get a default StorageClass: kind creates one (`standard`), elsewhere a provisioner must be installed.
pub fn storage_class_hint(kind: bool) -> &'static str {
    if kind {
        "kind creates \"standard\" (rancher's local-path-provisioner) as the default class: create the cluster again, \
         or"
    } else {
        "install a provisioner (e.g. rancher's local-path-provisioner) or"
    }
}

/// How far a pod got on its way to Ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodProgress {
    /// The pod does not exist (yet).
    Missing,
    /// Created, but not yet scheduled.
    Pending { reason: String },
    /// The scheduler is waiting for something expected to resolve itself (volumes being provisioned, a node that
    /// is not Ready yet).
    Unschedulable { message: String },
    /// A claim of the pod is not Bound yet and nothing says it never will be.
    PvcPending { claim: String, message: String },
    /// An image pull failed in a way that may clear (rate limit, timeout); the kubelet keeps retrying.
    PullRetrying {
        image: String,
        /// Failed pulls so far, as the kubelet's events count them.
        failures: u32,
        message: String,
    },
    /// Being deleted (scaled away, replaced, or torn down): leaving, not failing.
    Terminating { grace_period_seconds: Option<i64> },
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
            PodProgress::PullRetrying {
                image,
                failures,
                message,
            } => {
                let pulls = if *failures == 1 { "pull" } else { "pulls" };
                format!(
                    "image \"{image}\" not pulled yet, the kubelet retries ({failures} failed {pulls}, last: {message})"
                )
            }
            PodProgress::Terminating { grace_period_seconds } => match grace_period_seconds {
                Some(seconds) => format!("terminating (being deleted, grace period {seconds}s)"),
                None => "terminating (being deleted)".to_string(),
            },
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
pub fn assess_pod(
    pod: &Pod,
    pvcs: &[PersistentVolumeClaim],
    events: &[Event],
    circumstances: &Circumstances,
) -> PodProgress {
    let subject = Subject::of(pod, circumstances);
    let status = pod.status.as_ref();

    if pod.metadata.deletion_timestamp.is_some() {
        return PodProgress::Terminating {
            grace_period_seconds: pod.metadata.deletion_grace_period_seconds,
        };
    }
    if let Some(problem) = terminated_pod(&subject, pod) {
        return PodProgress::Failed(problem);
    }

    if !condition_is_true(pod, "PodScheduled") {
        return unscheduled(&subject, pod, pvcs, events, circumstances);
    }

    let pod_events = about(events, "Pod", &subject.name, pod.metadata.uid.as_deref());
    let init_statuses = status
        .and_then(|s| s.init_container_statuses.as_deref())
        .unwrap_or_default();
    for init in init_statuses {
        if let Some(progress) = init_container_problem(&subject, init, &pod_events) {
            return progress;
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
        if let Some(progress) = container_problem(&subject, container, &pod_events) {
            return progress;
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
    let subject = Subject::of(pod, &Circumstances::default());
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
    /// The kind cluster's name when the context is a kind cluster's.
    kind_cluster: Option<String>,
}

impl Subject {
    fn of(pod: &Pod, circumstances: &Circumstances) -> Subject {
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
            kind_cluster: circumstances.kind_cluster().map(str::to_string),
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

fn unscheduled(
    subject: &Subject,
    pod: &Pod,
    pvcs: &[PersistentVolumeClaim],
    events: &[Event],
    circumstances: &Circumstances,
) -> PodProgress {
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
        if let Some(failure) = claim_events.iter().find(|e| claim_failure_is_final(e)) {
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
            .map(|e| {
                let message = e.message.as_deref().unwrap_or("").trim();
                match e.reason.as_deref() {
                    Some(reason @ "ProvisioningFailed") => format!("{reason}: {message}"),
                    _ => message.to_string(),
                }
            })
            .unwrap_or_else(|| format!("phase {phase}"));
        return PodProgress::PvcPending { claim, message };
    }

    let Some(scheduled) = condition(pod, "PodScheduled") else {
        return PodProgress::Pending {
            reason: "waiting to be scheduled".to_string(),
        };
    };
    let message = scheduled.message.as_deref().unwrap_or_default().trim().to_string();
    if scheduled.reason.as_deref() != Some("Unschedulable") {
        return PodProgress::Pending {
            reason: "waiting to be scheduled".to_string(),
        };
    }
    match scheduling_outlook(&message) {
        Outlook::Clears => PodProgress::Unschedulable { message },
        Outlook::NoNodes if circumstances.waited < NO_NODE_GRACE => PodProgress::Unschedulable { message },
        Outlook::NoNodes => PodProgress::Failed(
            subject.problem(
                "Unschedulable",
                format!(
                    "{} cannot be scheduled: the cluster has no nodes (Unschedulable: {message})",
                    subject.name
                ),
                "no kubelet has registered a node: \"kubectl get nodes\" lists none; start the cluster's nodes (or \
             create the cluster again)"
                    .to_string(),
                None,
            ),
        ),
        Outlook::Blocked(causes) => {
            let fixes: Vec<String> = causes.iter().map(|cause| cause.fix(subject)).collect();
            PodProgress::Failed(subject.problem(
                "Unschedulable",
                format!(
                    "{} cannot be scheduled on any node (Unschedulable: {message})",
                    subject.name
                ),
                format!(
                    "{}; \"kubectl describe pod -n {} {}\" shows the scheduler's reasons",
                    fixes.join("; "),
                    subject.namespace,
                    subject.name
                ),
                None,
            ))
        }
    }
}

/// Whether the scheduler's refusal will clear by itself.
#[derive(Debug, PartialEq, Eq)]
enum Outlook {
    /// Some node may yet take the pod: one not Ready yet, or claims still being bound.
    Clears,
    /// The cluster has no node at all (yet).
    NoNodes,
    /// Every node refuses the pod for reasons only a person can change.
    Blocked(Vec<Refusal>),
}

/// Why nodes refuse a pod, as far as the fix differs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// `Insufficient memory`, `Insufficient cpu`, ...
    Insufficient(String),
    /// A taint the pod does not tolerate, as the scheduler prints it: `{key: value}`.
    Taint { key: String, shown: String },
    /// Cordoned nodes.
    Cordoned,
    /// Anything else, as the scheduler wrote it.
    Other(String),
}

impl Refusal {
    fn fix(&self, subject: &Subject) -> String {
        match self {
            Refusal::Insufficient(resource) => format!(
                "no node has the {resource} the pod requests left: free {resource} on a node (\"kubectl describe \
                 nodes\" shows what is allocated), add a node, or lower the pod's {resource} request"
            ),
            Refusal::Taint { key, shown } => format!(
                "the nodes carry the taint {shown}, which the pod does not tolerate: remove it (\"kubectl taint \
                 nodes <node> {key}-\") or add a matching toleration to the pod"
            ),
            Refusal::Cordoned => "the nodes are cordoned: \"kubectl uncordon <node>\"".to_string(),
            Refusal::Other(reason) => format!(
                "change the nodes or the pod so that a node fits (\"{reason}\"); \"kubectl get nodes\" and \
                 \"kubectl get pod -n {} {} -o yaml\" show both sides",
                subject.namespace, subject.name
            ),
        }
    }
}

/// Taints the node lifecycle controller or a cloud controller sets and lifts by itself once the node is up.
const CLEARING_TAINTS: &[&str] = &[
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/network-unavailable",
    "node.cloudprovider.kubernetes.io/uninitialized",
];

/// Reads the scheduler's message (`0/3 nodes are available: 1 Insufficient memory, 2 node(s) had untolerated
/// taint {node.kubernetes.io/not-ready: }. preemption: ...`, or `no nodes available to schedule pods`).
fn scheduling_outlook(message: &str) -> Outlook {
    if message.starts_with("no nodes available to schedule pods") || message.starts_with("0/0 nodes are available") {
        return Outlook::NoNodes;
    }
    let Some((_, rest)) = message.split_once("nodes are available: ") else {
        return Outlook::Blocked(vec![Refusal::Other(message.to_string())]);
    };
    let reasons = rest.split(". preemption:").next().unwrap_or(rest).trim_end_matches('.');
    let mut refusals = Vec::new();
    for item in reasons.split(", ") {
        // Each reason starts with the number of nodes that gave it, except the pod-wide ones about claims.
        let reason = match item.split_once(' ') {
            Some((count, reason)) if count.chars().all(|c| c.is_ascii_digit()) => reason.trim(),
            _ => item.trim(),
        };
        if reason.to_lowercase().contains("persistentvolumeclaim") {
            return Outlook::Clears;
        }
        if let Some(taint) = taint_of(reason) {
            let key = taint
                .trim_start_matches('{')
                .split(':')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            if CLEARING_TAINTS.contains(&key.as_str()) {
                return Outlook::Clears;
            }
            refusals.push(Refusal::Taint {
                key,
                shown: taint.to_string(),
            });
        } else if let Some(resource) = reason.strip_prefix("Insufficient ") {
            refusals.push(Refusal::Insufficient(resource.trim().to_string()));
        } else if reason.contains("were unschedulable") {
            refusals.push(Refusal::Cordoned);
        } else {
            refusals.push(Refusal::Other(reason.to_string()));
        }
    }
    refusals.dedup();
    Outlook::Blocked(refusals)
}

/// `{key: value}` of `node(s) had untolerated taint {key: value}` (and of the older `node(s) had taint {key:
/// value}, that the pod didn't tolerate`).
fn taint_of(reason: &str) -> Option<&str> {
    let start = reason.find("taint {")? + "taint ".len();
    let end = start + reason[start..].find('}')? + 1;
    Some(&reason[start..end])
}

/// Claim events that will not clear by themselves. The provisioner retries other failures (timeouts, a busy
/// backend), and so does the wait.
fn claim_failure_is_final(event: &Event) -> bool {
    let message = event.message.as_deref().unwrap_or_default();
    match event.reason.as_deref() {
        // The volume controller's binding failures name a claim or volume set up wrong (no class, a volume bound
        // elsewhere).
        Some("FailedBinding") => true,
        Some("ProvisioningFailed") => {
            (message.contains("storageclass.storage.k8s.io") && message.contains("not found"))
                || message.contains("no storage class is set")
                // CSI: the request itself is invalid (external-provisioner does not retry it differently).
                || message.contains("code = InvalidArgument")
        }
        _ => false,
    }
}

fn claim_problem(subject: &Subject, pvc: &PersistentVolumeClaim, claim: &str, failure: &Event) -> PodProblem {
    let reason = failure.reason.clone().unwrap_or_default();
    let message = failure.message.as_deref().unwrap_or("").trim().to_string();
    let class = pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone());
    let fix = if message.contains("no storage class is set")
        || (class.is_none() && message.contains("no persistent volumes available"))
    {
        format!(
            "the cluster has no default StorageClass, so nothing provisions a volume for the claim: {} mark a \
             class default with \
             \"kubectl patch storageclass <name> -p '{{\"metadata\":{{\"annotations\":{{\"storageclass.kubernetes.io/is-default-class\":\"true\"}}}}}}'\", \
             then delete the claim (\"kubectl delete pvc -n {} {claim}\") so that it is created again",
            storage_class_hint(subject.kind_cluster.is_some()),
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

fn init_container_problem(subject: &Subject, init: &ContainerStatus, pod_events: &[&Event]) -> Option<PodProgress> {
    let name = &init.name;
    if let Some(terminated) = init.state.as_ref().and_then(|s| s.terminated.as_ref())
        && terminated.exit_code != 0
    {
        let reason = terminated.reason.as_deref().unwrap_or("Error");
        return Some(PodProgress::Failed(subject.problem(
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
        )));
    }
    let (reason, message) = waiting(init)?;
    match reason {
        "CrashLoopBackOff" => {
            let exit = last_exit(init);
            Some(PodProgress::Failed(subject.problem(
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
            )))
        }
        _ => waiting_problem(subject, init, reason, message, "Init:", pod_events),
    }
}

fn init_fix(subject: &Subject, container: &str) -> String {
    format!(
        "read its log below and fix the script or the config it reads (the StatefulSet's init container); \
         \"kubectl logs -n {} {} -c {container}\" shows the whole log",
        subject.namespace, subject.name
    )
}

fn container_problem(subject: &Subject, container: &ContainerStatus, pod_events: &[&Event]) -> Option<PodProgress> {
    let (reason, message) = waiting(container)?;
    let name = &container.name;
    if reason != "CrashLoopBackOff" {
        return waiting_problem(subject, container, reason, message, "", pod_events);
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
    Some(PodProgress::Failed(subject.problem(
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
    )))
}

/// Waiting reasons that do not resolve by themselves, and image pulls the kubelet retries. `prefix` is `Init:`
/// for init containers, as kubectl shows.
fn waiting_problem(
    subject: &Subject,
    container: &ContainerStatus,
    reason: &str,
    message: &str,
    prefix: &str,
    pod_events: &[&Event],
) -> Option<PodProgress> {
    let name = &container.name;
    let shown = format!("{prefix}{reason}");
    let what = if prefix.is_empty() {
        "container"
    } else {
        "init container"
    };
    let failed = |cause: String, fix: String| Some(PodProgress::Failed(subject.problem(&shown, cause, fix, None)));
    match reason {
        "ErrImagePull" | "ImagePullBackOff" | "RegistryUnavailable" | "InvalidImageName" | "ErrImageNeverPull" => {
            let image = subject.images.get(name).unwrap_or(&container.image);
            let cannot_pull = |detail: &str| {
                format!(
                    "{} cannot pull image \"{image}\" {}",
                    subject.name,
                    parenthesized(&shown, detail)
                )
            };
            match reason {
                "InvalidImageName" => failed(
                    cannot_pull(message),
                    format!("\"{image}\" is not a valid image reference: fix the --image value or the manifest"),
                ),
                "ErrImageNeverPull" => failed(cannot_pull(message), never_pull_fix(subject, image)),
                _ => {
                    let pull = PullFailure::read(image, &container.image, message, pod_events);
                    match pull.verdict() {
                        PullVerdict::Retrying => Some(PodProgress::PullRetrying {
                            image: image.clone(),
                            failures: pull.failures,
                            message: pull.error.unwrap_or_else(|| shown.clone()),
                        }),
                        verdict => failed(
                            cannot_pull(pull.error.as_deref().unwrap_or(message)),
                            pull_fix(subject, image, verdict),
                        ),
                    }
                }
            }
        }
        "CreateContainerConfigError" => failed(
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
        ),
        "CreateContainerError" | "RunContainerError" | "ContainerCannotRun" => failed(
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
        ),
        _ => None,
    }
}

/// What the kubelet said about the pulls of one image: its `Failed to pull image "<image>": <error>` events
/// (counted, newest first) and the container's waiting message.
struct PullFailure {
    /// The newest error from the registry or runtime, when one is known.
    error: Option<String>,
    failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PullVerdict {
    /// The registry says the image is not there.
    NotFound,
    /// The registry refuses the credentials (or their absence).
    Denied,
    /// Anything else: rate limits, timeouts, resets; the kubelet retries and may succeed.
    Retrying,
}

impl PullFailure {
    /// `image` as the spec writes it, `status_image` as the status shows it (the event may use either).
    fn read(image: &str, status_image: &str, message: &str, pod_events: &[&Event]) -> PullFailure {
        let prefixes = [
            format!("Failed to pull image \"{image}\": "),
            format!("Failed to pull image \"{status_image}\": "),
        ];
        let mut failures = 0;
        let mut newest = None;
        // Newest first: the first match is the latest error.
        for event in pod_events {
            let text = event.message.as_deref().unwrap_or_default();
            if let Some(error) = prefixes.iter().find_map(|p| text.strip_prefix(p.as_str())) {
                failures += event.count.unwrap_or(1).max(1) as u32;
                newest.get_or_insert_with(|| error.trim().to_string());
            }
        }
        // ErrImagePull carries the error itself; ImagePullBackOff says "Back-off pulling image" (and newer
        // kubelets append the error).
        let from_status = message
            .split_once(&format!("Back-off pulling image \"{image}\""))
            .map_or(message, |(_, rest)| rest)
            .trim_start_matches(':')
            .trim();
        let error = newest.or_else(|| (!from_status.is_empty()).then(|| from_status.to_string()));
        PullFailure {
            failures: failures.max(1),
            error,
        }
    }

    fn verdict(&self) -> PullVerdict {
        self.error.as_deref().map_or(PullVerdict::Retrying, pull_verdict)
    }
}

/// Classifies a pull error by the registry's answer. Matches the texts containerd and the registries send, e.g.
/// `rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/library/mysql:nope": failed to
/// resolve reference "docker.io/library/mysql:nope": docker.io/library/mysql:nope: not found`, `pull access
/// denied, repository does not exist or may require authorization: server message: insufficient_scope:
/// authorization failed`, `unexpected status from HEAD request to https://...: 401 Unauthorized`, and as
/// retrying `... 429 Too Many Requests - Server message: toomanyrequests: ...`, `dial tcp ...: i/o timeout`,
/// `read: connection reset by peer`.
fn pull_verdict(error: &str) -> PullVerdict {
    let lower = error.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').collect();
    let has_word = |word: &str| words.contains(&word);
    // A rate limit may come with any wording around it: it clears.
    if has_word("429") || lower.contains("toomanyrequests") || lower.contains("too many requests") {
        return PullVerdict::Retrying;
    }
    if lower.contains("pull access denied")
        || lower.contains("insufficient_scope")
        || lower.contains("unauthorized")
        || lower.contains("access denied")
        || has_word("denied")
        || has_word("forbidden")
        || has_word("401")
        || has_word("403")
    {
        return PullVerdict::Denied;
    }
    if lower.contains("code = notfound")
        || lower.contains("not found")
        || lower.contains("manifest unknown")
        || lower.contains("name unknown")
        || lower.contains("repository does not exist")
    {
        return PullVerdict::NotFound;
    }
    PullVerdict::Retrying
}

fn pull_fix(subject: &Subject, image: &str, verdict: PullVerdict) -> String {
    let kind = subject.kind_cluster.as_deref().map(|cluster| {
        format!(
            ", or load a local image into the kind cluster with \"{}\"",
            kind_load(image, cluster)
        )
    });
    match verdict {
        PullVerdict::Denied => format!(
            "the registry refused access to the image: check its name, and give the pod an imagePullSecret with \
             credentials for the registry if it is private{}",
            kind.unwrap_or_default()
        ),
        _ => match kind {
            Some(_) => format!("check the image name and tag{}", kind.unwrap_or_default()),
            None => "check the image name and tag, and that the node can pull it (the registry is reachable from \
                     the node; a private registry needs an imagePullSecret)"
                .to_string(),
        },
    }
}

fn never_pull_fix(subject: &Subject, image: &str) -> String {
    match subject.kind_cluster.as_deref() {
        Some(cluster) => format!(
            "imagePullPolicy is Never and the node does not have the image: load it with \"{}\"",
            kind_load(image, cluster)
        ),
        None => "imagePullPolicy is Never and the node does not have the image: put it on the node, or allow pulls \
                 (imagePullPolicy IfNotPresent)"
            .to_string(),
    }
}

/// `kind load docker-image <image>`, naming the cluster unless it is kind's default one.
fn kind_load(image: &str, cluster: &str) -> String {
    if cluster == "kind" {
        format!("kind load docker-image {image}")
    } else {
        format!("kind load docker-image {image} --name {cluster}")
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

    /// The context of the default kind cluster: `kind create cluster` names it `kind-kind`.
    fn on_kind() -> Circumstances {
        Circumstances {
            context: Some("kind-kind".into()),
            waited: Duration::ZERO,
        }
    }

    /// Most tests run on kind, where the hints name `kind load`.
    fn assess_pod(pod: &Pod, pvcs: &[PersistentVolumeClaim], events: &[Event]) -> PodProgress {
        super::assess_pod(pod, pvcs, events, &on_kind())
    }

    fn failed(progress: PodProgress) -> PodProblem {
        match progress {
            PodProgress::Failed(problem) => problem,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    const POD_UID: &str = "0b7c6a4e-1111-4a5e-9c0e-5f1e2d3c4b5a";
    /// containerd's answer for a tag that does not exist, as the kubelet reports it.
    const NOT_FOUND: &str = "rpc error: code = NotFound desc = failed to pull and unpack image \
                             \"docker.io/library/mysql:nope\": failed to resolve reference \
                             \"docker.io/library/mysql:nope\": docker.io/library/mysql:nope: not found";
    /// Docker Hub's rate limit, as containerd passes it on.
    const RATE_LIMITED: &str = "rpc error: code = Unknown desc = failed to pull and unpack image \
                                \"docker.io/library/mysql:8.4\": failed to copy: httpReadSeeker: failed open: \
                                unexpected status code https://registry-1.docker.io/v2/library/mysql/manifests/sha256:\
                                4031d3b2c5b1e4c3f0c0d5a46d7c1e7f0c88e0a8b1a4a3c3b6e6a1f2b3c4d5e6: 429 Too Many Requests - \
                                Server message: toomanyrequests: You have reached your pull rate limit. You may increase \
                                the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit";

    /// mysql-0 whose container waits with `reason` and `message`, the image as written in the spec.
    fn pulling_pod(image: &str, reason: &str, message: &str) -> Pod {
        running_pod_with(
            json!({
                "name": "mysql", "image": image, "imageID": "", "ready": false, "restartCount": 0,
                "started": false, "state": {"waiting": {"reason": reason, "message": message}}
            }),
            false,
        )
    }

    /// The kubelet's `Failed` event for a pull, `count` times (the recorder aggregates repeats).
    fn pull_failed(image: &str, error: &str, count: i32, at: &str) -> Event {
        let mut event = event(
            "Pod",
            "mysql-0",
            POD_UID,
            "Warning",
            "Failed",
            &format!("Failed to pull image \"{image}\": {error}"),
            at,
        );
        event.count = Some(count);
        event
    }

    #[test]
    fn image_not_found_fails_with_the_registrys_answer_and_the_kind_load_fix() {
        let pod = pulling_pod("mysql:nope", "ErrImagePull", NOT_FOUND);
        let problem = failed(assess_pod(&pod, &[pvc("Bound", Some("standard"))], &[]));
        assert_eq!(problem.reason, "ErrImagePull");
        assert_eq!(
            problem.to_string(),
            format!(
                "mysql-0 cannot pull image \"mysql:nope\" (ErrImagePull: {NOT_FOUND}): check the image name and tag, \
                 or load a local image into the kind cluster with \"kind load docker-image mysql:nope\""
            )
        );
        assert_eq!(problem.log_source, None);

        // In back-off the status only says "Back-off pulling image": the kubelet's event has the answer.
        let pod = pulling_pod(
            "mysql:nope",
            "ImagePullBackOff",
            "Back-off pulling image \"mysql:nope\"",
        );
        let events = [pull_failed("mysql:nope", NOT_FOUND, 2, "2025-05-01T10:00:09Z")];
        let problem = failed(assess_pod(&pod, &[], &events));
        assert_eq!(problem.reason, "ImagePullBackOff");
        assert_eq!(
            problem.cause,
            format!("mysql-0 cannot pull image \"mysql:nope\" (ImagePullBackOff: {NOT_FOUND})")
        );

        // Registries that answer "manifest unknown" (OCI distribution) mean the same.
        let manifest_unknown = "rpc error: code = Unknown desc = failed to pull and unpack image \
                                \"registry.example.com/db/mysql:8.4\": failed to resolve reference \
                                \"registry.example.com/db/mysql:8.4\": registry.example.com/db/mysql:8.4: not found: \
                                manifest unknown: manifest unknown";
        let pod = pulling_pod("registry.example.com/db/mysql:8.4", "ErrImagePull", manifest_unknown);
        assert_eq!(failed(assess_pod(&pod, &[], &[])).reason, "ErrImagePull");
    }

    #[test]
    fn the_kind_hint_names_the_cluster_and_other_clusters_get_a_generic_fix() {
        let pod = pulling_pod("mysql:nope", "ErrImagePull", NOT_FOUND);
        let on = |context: Option<&str>| {
            let circumstances = Circumstances {
                context: context.map(str::to_string),
                waited: Duration::ZERO,
            };
            failed(super::assess_pod(&pod, &[], &[], &circumstances)).fix
        };
        assert_eq!(
            on(Some("kind-dev")),
            "check the image name and tag, or load a local image into the kind cluster with \"kind load docker-image \
             mysql:nope --name dev\""
        );
        for context in [
            None,
            Some("kubesim"),
            Some("gke_project_europe-west1_prod"),
            Some("kind"),
        ] {
            let fix = on(context);
            assert_eq!(
                fix,
                "check the image name and tag, and that the node can pull it (the registry is reachable from the \
                 node; a private registry needs an imagePullSecret)",
                "context {context:?}"
            );
        }
    }

    #[test]
    fn access_denied_fails_and_asks_for_credentials() {
        let denials = [
            "rpc error: code = Unknown desc = failed to pull and unpack image \"docker.io/acme/mysql:8.4\": failed to \
             resolve reference \"docker.io/acme/mysql:8.4\": pull access denied, repository does not exist or may \
             require authorization: server message: insufficient_scope: authorization failed",
            "rpc error: code = Unknown desc = failed to pull and unpack image \"ghcr.io/acme/mysql:8.4\": failed to \
             resolve reference \"ghcr.io/acme/mysql:8.4\": failed to authorize: failed to fetch anonymous token: \
             unexpected status from GET request to https://ghcr.io/token?scope=repository%3Aacme%2Fmysql%3Apull: \
             401 Unauthorized",
            "rpc error: code = Unknown desc = failed to pull and unpack image \"registry.example.com/mysql:8.4\": \
             failed to resolve reference \"registry.example.com/mysql:8.4\": unexpected status from HEAD request to \
             https://registry.example.com/v2/mysql/manifests/8.4: 403 Forbidden",
        ];
        for error in denials {
            let pod = pulling_pod("mysql:8.4", "ErrImagePull", error);
            let problem = failed(assess_pod(&pod, &[], &[]));
            assert!(
                problem.fix.starts_with(
                    "the registry refused access to the image: check its name, and give the pod an \
                                  imagePullSecret"
                ),
                "{error}: {}",
                problem.fix
            );
        }
    }

    #[test]
    fn transient_pull_errors_keep_waiting_and_count_the_retries() {
        let transient = [
            RATE_LIMITED,
            "rpc error: code = Unknown desc = failed to pull and unpack image \"docker.io/library/mysql:8.4\": failed \
             to resolve reference \"docker.io/library/mysql:8.4\": failed to do request: Head \
             \"https://registry-1.docker.io/v2/library/mysql/manifests/8.4\": dial tcp 54.236.113.205:443: i/o timeout",
            "rpc error: code = Unknown desc = failed to pull and unpack image \"docker.io/library/mysql:8.4\": failed \
             to copy: read tcp 10.0.0.5:51234->104.16.99.49:443: read: connection reset by peer",
            "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
            "image pull failed for mysql:8.4 because the registry is unavailable: 503 Service Unavailable",
        ];
        for error in transient {
            let pod = pulling_pod("mysql:8.4", "ErrImagePull", error);
            assert_eq!(
                assess_pod(&pod, &[], &[]),
                PodProgress::PullRetrying {
                    image: "mysql:8.4".into(),
                    failures: 1,
                    message: error.into()
                },
                "{error}"
            );
        }

        // In back-off, the events count the failed pulls; the newest error decides.
        let pod = pulling_pod("mysql:8.4", "ImagePullBackOff", "Back-off pulling image \"mysql:8.4\"");
        let events = [
            pull_failed(
                "mysql:8.4",
                "rpc error: code = Unknown desc = i/o timeout",
                1,
                "2025-05-01T10:00:05Z",
            ),
            pull_failed("mysql:8.4", RATE_LIMITED, 2, "2025-05-01T10:00:20Z"),
        ];
        let progress = assess_pod(&pod, &[], &events);
        assert_eq!(
            progress,
            PodProgress::PullRetrying {
                image: "mysql:8.4".into(),
                failures: 3,
                message: RATE_LIMITED.into()
            }
        );
        assert!(
            progress.describe().starts_with(
                "image \"mysql:8.4\" not pulled yet, the kubelet retries (3 failed pulls, last: rpc error"
            ),
            "{}",
            progress.describe()
        );

        // Newer kubelets append the last error to the back-off message.
        let pod = pulling_pod(
            "mysql:8.4",
            "ImagePullBackOff",
            &format!("Back-off pulling image \"mysql:8.4\": ErrImagePull: {RATE_LIMITED}"),
        );
        assert!(matches!(assess_pod(&pod, &[], &[]), PodProgress::PullRetrying { .. }));

        // Nothing known about the failure yet: keep waiting rather than guess.
        let pod = pulling_pod("mysql:8.4", "ErrImagePull", "");
        assert_eq!(
            assess_pod(&pod, &[], &[]),
            PodProgress::PullRetrying {
                image: "mysql:8.4".into(),
                failures: 1,
                message: "ErrImagePull".into()
            }
        );
    }

    #[test]
    fn the_image_is_named_as_written_in_the_spec_not_as_the_runtime_normalised_it() {
        let mut pod = running_pod_with(
            json!({
                "name": "mysql", "image": "docker.io/library/mysql:nope", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull", "message": NOT_FOUND}}
            }),
            false,
        );
        pod.spec.as_mut().expect("spec").containers[0].image = Some("mysql:nope".into());
        let problem = failed(assess_pod(&pod, &[], &[]));
        assert_eq!(
            problem.cause,
            format!("mysql-0 cannot pull image \"mysql:nope\" (ErrImagePull: {NOT_FOUND})")
        );
        assert!(
            problem.fix.ends_with("\"kind load docker-image mysql:nope\""),
            "{}",
            problem.fix
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
        assert!(problem.fix.contains("kind creates \"standard\""), "{}", problem.fix);
        // Elsewhere kind is no help: a provisioner must be installed.
        let elsewhere = failed(super::assess_pod(
            &pod,
            &[pvc("Pending", None)],
            &events,
            &Circumstances::default(),
        ));
        assert!(
            elsewhere
                .fix
                .contains(": install a provisioner (e.g. rancher's local-path-provisioner) or mark"),
            "{}",
            elsewhere.fix
        );
        assert!(!elsewhere.fix.contains("kind"), "{}", elsewhere.fix);
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

    /// mysql-0 (its claim Bound) refused by the scheduler with `message`.
    fn unschedulable_pod(message: &str) -> Pod {
        mysql_pod(json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": message, "lastTransitionTime": "2025-05-01T10:00:00Z"}]
        }))
    }

    fn bound() -> PersistentVolumeClaim {
        pvc("Bound", Some("standard"))
    }

    fn waited(seconds: u64) -> Circumstances {
        Circumstances {
            context: Some("kind-kind".into()),
            waited: Duration::from_secs(seconds),
        }
    }

    #[test]
    fn unschedulable_for_lack_of_cpu_fails_with_the_schedulers_message() {
        let pod = unschedulable_pod(
            "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption \
             victims found for incoming pod.",
        );
        let problem = failed(assess_pod(&pod, &[pvc("Bound", Some("standard"))], &[]));
        assert_eq!(problem.reason, "Unschedulable");
        assert_eq!(
            problem.to_string(),
            "mysql-0 cannot be scheduled on any node (Unschedulable: 0/1 nodes are available: 1 Insufficient cpu. \
             preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.): no node has the \
             cpu the pod requests left: free cpu on a node (\"kubectl describe nodes\" shows what is allocated), add \
             a node, or lower the pod's cpu request; \"kubectl describe pod -n database mysql-0\" shows the \
             scheduler's reasons"
        );
    }

    #[test]
    fn a_node_that_is_not_ready_yet_is_waited_for() {
        // The first seconds after `kind create cluster`, while the CNI starts.
        let message = "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. \
                       preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
        let progress = assess_pod(&unschedulable_pod(message), &[pvc("Bound", Some("standard"))], &[]);
        assert_eq!(
            progress,
            PodProgress::Unschedulable {
                message: message.into()
            }
        );
        assert!(
            progress
                .describe()
                .starts_with("not scheduled yet (0/1 nodes are available: 1 node(s) had")
        );

        // An unreachable node, a node whose network or cloud provider is still coming up: the same.
        for taint in [
            "node.kubernetes.io/unreachable: ",
            "node.kubernetes.io/network-unavailable: ",
            "node.cloudprovider.kubernetes.io/uninitialized: true",
        ] {
            let message = format!("0/1 nodes are available: 1 node(s) had untolerated taint {{{taint}}}.");
            assert!(
                matches!(
                    assess_pod(&unschedulable_pod(&message), &[bound()], &[]),
                    PodProgress::Unschedulable { .. }
                ),
                "{message}"
            );
        }

        // One node not Ready yet, the others full: the one may take the pod once Ready.
        let mixed = "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 2 \
                     Insufficient memory. preemption: 0/3 nodes are available: 1 Preemption is not helpful for \
                     scheduling, 2 No preemption victims found for incoming pod.";
        assert!(matches!(
            assess_pod(&unschedulable_pod(mixed), &[bound()], &[]),
            PodProgress::Unschedulable { .. }
        ));
    }

    #[test]
    fn insufficient_memory_fails_fast_and_names_memory() {
        let message = "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No \
                       preemption victims found for incoming pod.";
        let problem = failed(assess_pod(&unschedulable_pod(message), &[bound()], &[]));
        assert_eq!(
            problem.cause,
            format!("mysql-0 cannot be scheduled on any node (Unschedulable: {message})")
        );
        assert!(
            problem
                .fix
                .starts_with("no node has the memory the pod requests left: free memory on a node"),
            "{}",
            problem.fix
        );
    }

    #[test]
    fn a_taint_nothing_tolerates_fails_fast_and_says_how_to_remove_it() {
        let message = "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: analytics}. preemption: \
                       0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
        let problem = failed(assess_pod(&unschedulable_pod(message), &[bound()], &[]));
        assert_eq!(
            problem.fix,
            "the nodes carry the taint {dedicated: analytics}, which the pod does not tolerate: remove it (\"kubectl \
             taint nodes <node> dedicated-\") or add a matching toleration to the pod; \"kubectl describe pod -n \
             database mysql-0\" shows the scheduler's reasons"
        );

        // Two causes on three nodes: both are named, the control-plane taint in the older wording.
        let message = "0/3 nodes are available: 1 node(s) had taint {node-role.kubernetes.io/control-plane: }, that \
                       the pod didn't tolerate, 2 Insufficient memory.";
        let problem = failed(assess_pod(&unschedulable_pod(message), &[bound()], &[]));
        assert!(
            problem
                .fix
                .contains("\"kubectl taint nodes <node> node-role.kubernetes.io/control-plane-\"")
                && problem.fix.contains("no node has the memory the pod requests left"),
            "{}",
            problem.fix
        );

        let cordoned = "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: \
                        1 Preemption is not helpful for scheduling.";
        assert!(
            failed(assess_pod(&unschedulable_pod(cordoned), &[bound()], &[]))
                .fix
                .starts_with("the nodes are cordoned: \"kubectl uncordon <node>\"")
        );
    }

    #[test]
    fn a_cluster_without_nodes_gets_a_grace_period_to_register_one() {
        for message in [
            "no nodes available to schedule pods",
            "0/0 nodes are available: . preemption: 0/0 nodes are available: .",
        ] {
            let pod = unschedulable_pod(message);
            assert_eq!(
                super::assess_pod(&pod, &[bound()], &[], &waited(5)),
                PodProgress::Unschedulable {
                    message: message.into()
                }
            );
            let problem = failed(super::assess_pod(&pod, &[bound()], &[], &waited(31)));
            assert_eq!(
                problem.cause,
                format!("mysql-0 cannot be scheduled: the cluster has no nodes (Unschedulable: {message})")
            );
            assert!(problem.fix.contains("\"kubectl get nodes\""), "{}", problem.fix);
        }
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
    fn a_pod_being_deleted_is_leaving_and_an_evicted_pod_failed() {
        // Scaled away while crash-looping: leaving, not failed.
        let mut pod = running_pod_with(
            json!({"name": "mysql", "image": "mysql:8.4", "imageID": "", "ready": false, "restartCount": 4,
                   "state": {"waiting": {"reason": "CrashLoopBackOff"}}}),
            false,
        );
        pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2025-05-01T11:00:30Z".parse().expect("valid timestamp"),
        ));
        pod.metadata.deletion_grace_period_seconds = Some(30);
        let progress = assess_pod(&pod, &[], &[]);
        assert_eq!(
            progress,
            PodProgress::Terminating {
                grace_period_seconds: Some(30)
            }
        );
        assert_eq!(progress.describe(), "terminating (being deleted, grace period 30s)");

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
    fn a_provisioning_failure_that_may_clear_keeps_waiting_and_shows_the_message() {
        let pod = mysql_pod(json!({"phase": "Pending"}));
        let message = "failed to provision volume with StorageClass \"standard\": rpc error: code = \
                       DeadlineExceeded desc = context deadline exceeded";
        let events = [event(
            "PersistentVolumeClaim",
            "data-mysql-0",
            "pvc-uid-0",
            "Warning",
            "ProvisioningFailed",
            message,
            "2025-05-01T10:00:20Z",
        )];
        let progress = assess_pod(&pod, &[pvc("Pending", Some("standard"))], &events);
        assert_eq!(
            progress,
            PodProgress::PvcPending {
                claim: "data-mysql-0".into(),
                message: format!("ProvisioningFailed: {message}")
            }
        );

        // CSI InvalidArgument: the request itself is wrong, retrying does not help.
        let events = [event(
            "PersistentVolumeClaim",
            "data-mysql-0",
            "pvc-uid-0",
            "Warning",
            "ProvisioningFailed",
            "failed to provision volume with StorageClass \"standard\": rpc error: code = InvalidArgument desc = \
             unsupported fsType xfs2",
            "2025-05-01T10:00:20Z",
        )];
        assert_eq!(
            failed(assess_pod(&pod, &[pvc("Pending", Some("standard"))], &events)).reason,
            "ProvisioningFailed"
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
