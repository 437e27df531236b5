//! The pod status a kubelet reports, computed from what the node knows about the pod's containers: phase,
//! conditions, container statuses. Pure: rendering and merging with the stored status are unit-tested.

use serde_json::{Map, Value, json};

/// RFC 3339 with second precision, as Kubernetes writes times.
pub fn timestamp(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn now() -> String {
    timestamp(jiff::Timestamp::now())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminated {
    pub exit_code: i32,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    pub container_id: String,
}

impl Terminated {
    /// Kubernetes' reason for an exit code.
    pub fn reason_for(exit_code: i32) -> &'static str {
        if exit_code == 0 { "Completed" } else { "Error" }
    }

    fn to_json(&self) -> Value {
        let mut out = json!({
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "containerID": self.container_id,
        });
        if let Some(message) = &self.message {
            out["message"] = json!(message);
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Waiting { reason: String, message: Option<String> },
    Running { started_at: String },
    Terminated(Terminated),
}

impl State {
    pub fn waiting(reason: &str, message: Option<String>) -> State {
        State::Waiting {
            reason: reason.to_string(),
            message,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            State::Waiting { reason, message } => {
                let mut waiting = json!({ "reason": reason });
                if let Some(message) = message {
                    waiting["message"] = json!(message);
                }
                json!({ "waiting": waiting })
            }
            State::Running { started_at } => json!({ "running": { "startedAt": started_at } }),
            State::Terminated(terminated) => json!({ "terminated": terminated.to_json() }),
        }
    }
}

/// One container as the node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRecord {
    pub name: String,
    /// The image as the runtime reports it (fully qualified).
    pub image: String,
    pub image_id: String,
    pub container_id: Option<String>,
    pub state: State,
    pub last_state: Option<Terminated>,
    pub ready: bool,
    pub started: bool,
    pub restart_count: u32,
}

impl ContainerRecord {
    pub fn new(name: &str, image: &str, initial: State) -> ContainerRecord {
        ContainerRecord {
            name: name.to_string(),
            image: image.to_string(),
            image_id: String::new(),
            container_id: None,
            state: initial,
            last_state: None,
            ready: false,
            started: false,
            restart_count: 0,
        }
    }

    fn to_json(&self) -> Value {
        let mut out = json!({
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started,
            "state": self.state.to_json(),
            "lastState": self.last_state.as_ref().map_or(json!({}), |t| json!({ "terminated": t.to_json() })),
        });
        if let Some(id) = &self.container_id {
            out["containerID"] = json!(id);
        }
        out
    }

    fn succeeded(&self) -> bool {
        matches!(&self.state, State::Terminated(t) if t.exit_code == 0)
    }

    fn terminated(&self) -> Option<&Terminated> {
        match &self.state {
            State::Terminated(t) => Some(t),
            _ => None,
        }
    }
}

/// Everything the status is computed from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRuntime {
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: Option<String>,
    pub start_time: Option<String>,
    pub init: Vec<ContainerRecord>,
    pub main: Vec<ContainerRecord>,
    /// Always, OnFailure or Never.
    pub restart_policy: String,
}

impl PodRuntime {
    pub fn initialized(&self) -> bool {
        self.init.iter().all(ContainerRecord::succeeded)
    }

    pub fn phase(&self) -> &'static str {
        let init_failed_for_good = self.restart_policy == "Never"
            && self
                .init
                .iter()
                .any(|c| c.terminated().is_some_and(|t| t.exit_code != 0));
        if init_failed_for_good {
            return "Failed";
        }
        if !self.initialized() {
            return "Pending";
        }
        let all_terminated = !self.main.is_empty() && self.main.iter().all(|c| c.terminated().is_some());
        if all_terminated && self.restart_policy != "Always" {
            let all_succeeded = self.main.iter().all(ContainerRecord::succeeded);
            if all_succeeded {
                return "Succeeded";
            }
            if self.restart_policy == "Never" {
                return "Failed";
            }
        }
        let any_started = self.main.iter().any(|c| {
            matches!(c.state, State::Running { .. })
                || c.restart_count > 0
                || c.last_state.is_some()
                || c.terminated().is_some()
        });
        if any_started { "Running" } else { "Pending" }
    }

    /// Our conditions: (type, status, reason, message).
    fn conditions(&self) -> Vec<(&'static str, bool, Option<&'static str>, Option<String>)> {
        let phase = self.phase();
        let completed = phase == "Succeeded" || phase == "Failed";
        let incomplete: Vec<&str> = self
            .init
            .iter()
            .filter(|c| !c.succeeded())
            .map(|c| c.name.as_str())
            .collect();
        let unready: Vec<&str> = self.main.iter().filter(|c| !c.ready).map(|c| c.name.as_str()).collect();
        let initialized = if incomplete.is_empty() {
            ("Initialized", true, None, None)
        } else {
            (
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(format!("containers with incomplete status: [{}]", incomplete.join(" "))),
            )
        };
        let ready_condition = |kind: &'static str| {
            if completed {
                (kind, false, Some("PodCompleted"), None)
            } else if unready.is_empty() {
                (kind, true, None, None)
            } else {
                (
                    kind,
                    false,
                    Some("ContainersNotReady"),
                    Some(format!("containers with unready status: [{}]", unready.join(" "))),
                )
            }
        };
        vec![
            (
                "PodReadyToStartContainers",
                self.sandbox_ready && !completed,
                None,
                None,
            ),
            initialized,
            ready_condition("Ready"),
            ready_condition("ContainersReady"),
        ]
    }
}

const OUR_CONDITIONS: [&str; 4] = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"];

/// The new `status` for a pod: ours merged into the stored one (conditions set by others, e.g. PodScheduled,
/// are kept; lastTransitionTime only moves when a condition's status flips).
pub fn render(runtime: &PodRuntime, stored: Option<&Value>, now: &str) -> Value {
    let stored_conditions: Vec<Value> = stored
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut conditions = Vec::new();
    for (kind, status, reason, message) in runtime.conditions() {
        let status = if status { "True" } else { "False" };
        let previous = stored_conditions.iter().find(|c| c["type"] == kind);
        let transition = match previous {
            Some(previous) if previous["status"] == status => previous
                .get("lastTransitionTime")
                .cloned()
                .unwrap_or_else(|| json!(now)),
            _ => json!(now),
        };
        let mut condition = Map::new();
        condition.insert("type".into(), json!(kind));
        condition.insert("status".into(), json!(status));
        condition.insert("lastProbeTime".into(), Value::Null);
        condition.insert("lastTransitionTime".into(), transition);
        if let Some(reason) = reason {
            condition.insert("reason".into(), json!(reason));
        }
        if let Some(message) = message {
            condition.insert("message".into(), json!(message));
        }
        conditions.push(Value::Object(condition));
    }
    conditions.extend(
        stored_conditions
            .iter()
            .filter(|c| !OUR_CONDITIONS.iter().any(|ours| c["type"] == *ours))
            .cloned(),
    );

    let mut status = stored.and_then(Value::as_object).cloned().unwrap_or_default();
    status.insert("phase".into(), json!(runtime.phase()));
    status.insert("conditions".into(), Value::Array(conditions));
    status.insert(
        "qosClass".into(),
        status.get("qosClass").cloned().unwrap_or(json!("BestEffort")),
    );
    if let Some(host_ip) = &runtime.host_ip {
        status.insert("hostIP".into(), json!(host_ip));
        status.insert("hostIPs".into(), json!([{ "ip": host_ip }]));
    }
    match &runtime.pod_ip {
        Some(ip) => {
            status.insert("podIP".into(), json!(ip));
            status.insert("podIPs".into(), json!([{ "ip": ip }]));
        }
        None => {
            status.remove("podIP");
            status.remove("podIPs");
        }
    }
    if let Some(start) = &runtime.start_time {
        status.insert("startTime".into(), json!(start));
    }
    if runtime.init.is_empty() {
        status.remove("initContainerStatuses");
    } else {
        status.insert(
            "initContainerStatuses".into(),
            runtime.init.iter().map(ContainerRecord::to_json).collect(),
        );
    }
    status.insert(
        "containerStatuses".into(),
        runtime.main.iter().map(ContainerRecord::to_json).collect(),
    );
    Value::Object(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(name: &str, ready: bool) -> ContainerRecord {
        let mut record = ContainerRecord::new(
            name,
            "docker.io/library/mysql:8.0",
            State::Running {
                started_at: "t1".into(),
            },
        );
        record.ready = ready;
        record.started = true;
        record
    }

    fn terminated(code: i32) -> Terminated {
        Terminated {
            exit_code: code,
            reason: Terminated::reason_for(code).into(),
            message: None,
            started_at: "t0".into(),
            finished_at: "t1".into(),
            container_id: "containerd://x".into(),
        }
    }

    fn runtime() -> PodRuntime {
        PodRuntime {
            sandbox_ready: true,
            pod_ip: Some("10.244.0.2".into()),
            host_ip: Some("10.244.0.1".into()),
            start_time: Some("t0".into()),
            init: vec![],
            main: vec![],
            restart_policy: "Always".into(),
        }
    }

    fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
        status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == kind))
            .expect("condition")
    }

    #[test]
    fn initializing_pod_is_pending_with_incomplete_init_containers() {
        let mut pod = runtime();
        pod.init = vec![ContainerRecord::new(
            "init-mysql-config",
            "busybox",
            State::Running { started_at: "t".into() },
        )];
        pod.main = vec![ContainerRecord::new(
            "mysql",
            "mysql",
            State::waiting("PodInitializing", None),
        )];
        let status = render(&pod, None, "now");
        assert_eq!(status["phase"], "Pending");
        assert_eq!(condition(&status, "Initialized")["status"], "False");
        assert_eq!(
            condition(&status, "Initialized")["message"],
            "containers with incomplete status: [init-mysql-config]"
        );
        assert_eq!(
            status["containerStatuses"][0]["state"]["waiting"]["reason"],
            "PodInitializing"
        );
        assert_eq!(status["containerStatuses"][0]["lastState"], json!({}));
    }

    #[test]
    fn crash_looping_container_keeps_the_pod_running_but_unready() {
        let mut pod = runtime();
        let mut mysql = ContainerRecord::new(
            "mysql",
            "mysql",
            State::waiting("CrashLoopBackOff", Some("back-off 1s".into())),
        );
        mysql.restart_count = 2;
        mysql.last_state = Some(terminated(1));
        pod.main = vec![mysql];
        let status = render(&pod, None, "now");
        assert_eq!(status["phase"], "Running");
        assert_eq!(condition(&status, "Ready")["reason"], "ContainersNotReady");
        assert_eq!(status["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(
            status["containerStatuses"][0]["lastState"]["terminated"]["reason"],
            "Error"
        );
    }

    #[test]
    fn transition_time_moves_only_on_flips_and_foreign_conditions_stay() {
        let mut pod = runtime();
        pod.main = vec![running("mysql", false)];
        let stored =
            json!({ "conditions": [{ "type": "PodScheduled", "status": "True", "lastTransitionTime": "t-1" }] });
        let first = render(&pod, Some(&stored), "t1");
        assert_eq!(condition(&first, "PodScheduled")["lastTransitionTime"], "t-1");
        assert_eq!(condition(&first, "Ready")["lastTransitionTime"], "t1");
        let again = render(&pod, Some(&first), "t2");
        assert_eq!(condition(&again, "Ready")["lastTransitionTime"], "t1");
        pod.main[0].ready = true;
        let ready = render(&pod, Some(&again), "t3");
        assert_eq!(condition(&ready, "Ready")["status"], "True");
        assert_eq!(condition(&ready, "Ready")["lastTransitionTime"], "t3");
        assert_eq!(condition(&ready, "Initialized")["lastTransitionTime"], "t1");
    }

    #[test]
    fn phases_follow_the_restart_policy() {
        let mut pod = runtime();
        pod.restart_policy = "Never".into();
        pod.main = vec![ContainerRecord::new("c", "busybox", State::Terminated(terminated(0)))];
        assert_eq!(pod.phase(), "Succeeded");
        pod.main[0].state = State::Terminated(terminated(2));
        assert_eq!(pod.phase(), "Failed");
        pod.restart_policy = "Always".into();
        assert_eq!(pod.phase(), "Running");
        pod.main[0].state = State::waiting("ContainerCreating", None);
        assert_eq!(pod.phase(), "Pending");
    }
}
