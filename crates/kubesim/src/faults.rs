//! Switchable faults: each one makes the simulated cluster misbehave the way a real cluster can.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::scheduler::NodeShape;

/// Fault switches shared by the API server, the controllers and the node. Cheap to clone.
#[derive(Clone)]
pub struct Faults {
    inner: Arc<Mutex<FaultState>>,
    /// Bumped on every switch, so controllers can react to a fault without polling.
    generation: Arc<watch::Sender<u64>>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            inner: Arc::default(),
            generation: Arc::new(watch::Sender::new(0)),
        }
    }
}

#[derive(Default)]
struct FaultState {
    unpullable_images: BTreeSet<String>,
    crash: Option<String>,
    no_default_storage_class: bool,
    pvc_never_binds: bool,
    slow_first_start: Option<Duration>,
    dropped_watches: u32,
    dropped_port_forwards: u32,
    failed_requests: u32,
    failed_request_code: u16,
    rate_limited_pulls: u32,
    node_ready_at: Option<Instant>,
    node_taint: Option<(String, String, String)>,
    node_memory: Option<String>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("Faults")
            .field("unpullable_images", &state.unpullable_images)
            .field("crash", &state.crash)
            .field("no_default_storage_class", &state.no_default_storage_class)
            .field("pvc_never_binds", &state.pvc_never_binds)
            .field("slow_first_start", &state.slow_first_start)
            .finish_non_exhaustive()
    }
}

impl Faults {
    fn state(&self) -> MutexGuard<'_, FaultState> {
        // A panic while holding this lock cannot leave the plain-data state inconsistent.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes whenever a fault is switched (`changed().await` wakes up).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn switched(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// Pulls of `image` fail (ErrImagePull, then ImagePullBackOff).
    pub fn unpullable_image(&self, image: &str) {
        self.state().unpullable_images.insert(image.to_string());
        self.switched();
    }

    /// Makes every image pullable again.
    pub fn clear_unpullable_images(&self) {
        self.state().unpullable_images.clear();
        self.switched();
    }

    pub fn is_unpullable(&self, image: &str) -> bool {
        self.state().unpullable_images.contains(image)
    }

    /// Containers named `target` (or every container of the pod named `target`) exit 1 at once, repeatedly.
    /// `None` switches the fault off.
    pub fn set_crash(&self, target: Option<String>) {
        self.state().crash = target;
        self.switched();
    }

    pub fn crashes(&self, pod: &str, container: &str) -> bool {
        self.state()
            .crash
            .as_deref()
            .is_some_and(|target| target == pod || target == container)
    }

    /// No StorageClass is listed, so claims without a class never bind.
    pub fn set_no_default_storage_class(&self, on: bool) {
        self.state().no_default_storage_class = on;
        self.switched();
    }

    pub fn no_default_storage_class(&self) -> bool {
        self.state().no_default_storage_class
    }

    /// The provisioner never binds claims.
    pub fn set_pvc_never_binds(&self, on: bool) {
        self.state().pvc_never_binds = on;
        self.switched();
    }

    pub fn pvc_never_binds(&self) -> bool {
        self.state().pvc_never_binds
    }

    /// The first start of each container takes this long before it is ready.
    pub fn set_slow_first_start(&self, delay: Option<Duration>) {
        self.state().slow_first_start = delay;
        self.switched();
    }

    pub fn slow_first_start(&self) -> Option<Duration> {
        self.state().slow_first_start
    }

    /// The next `n` watch streams end early, mid-stream.
    pub fn drop_next_watches(&self, n: u32) {
        self.state().dropped_watches = n;
        self.switched();
    }

    /// Consumes one dropped watch if any is pending.
    pub fn take_watch_drop(&self) -> bool {
        take_one(&mut self.state().dropped_watches)
    }

    /// The next `n` port-forward connections close right after the upgrade.
    pub fn drop_next_port_forwards(&self, n: u32) {
        self.state().dropped_port_forwards = n;
        self.switched();
    }

    /// Consumes one dropped port-forward if any is pending.
    pub fn take_port_forward_drop(&self) -> bool {
        take_one(&mut self.state().dropped_port_forwards)
    }

    /// The next `n` API requests fail with HTTP `code` (use 500: clients retry 429/503/504 themselves).
    pub fn fail_next_requests(&self, n: u32, code: u16) {
        let mut state = self.state();
        state.failed_requests = n;
        state.failed_request_code = code;
        drop(state);
        self.switched();
    }

    /// The next `n` image pulls fail the way a registry's rate limit fails them (429 Too Many Requests); the
    /// kubelet retries after its back-off, as it does for any pull error.
    pub fn rate_limit_next_pulls(&self, n: u32) {
        self.state().rate_limited_pulls = n;
        self.switched();
    }

    /// Consumes one rate-limited pull if any is pending.
    pub fn take_rate_limited_pull(&self) -> bool {
        take_one(&mut self.state().rate_limited_pulls)
    }

    /// The node is not Ready (and carries the `node.kubernetes.io/not-ready` taint) for `duration` from now, as
    /// a fresh cluster's node is while its network plugin starts.
    pub fn node_not_ready_for(&self, duration: Duration) {
        self.state().node_ready_at = Some(Instant::now() + duration);
        self.switched();
    }

    /// When the node becomes Ready again, if it is not Ready now.
    pub fn node_ready_at(&self) -> Option<Instant> {
        self.state().node_ready_at.filter(|at| *at > Instant::now())
    }

    /// The node carries this taint (key, value, effect), or none.
    pub fn set_node_taint(&self, taint: Option<(&str, &str, &str)>) {
        self.state().node_taint = taint.map(|(key, value, effect)| (key.into(), value.into(), effect.into()));
        self.switched();
    }

    /// The node has only this much memory (a quantity such as `"512Mi"`), or the machine's.
    pub fn set_node_memory(&self, memory: Option<&str>) {
        self.state().node_memory = memory.map(str::to_string);
        self.switched();
    }

    /// The node as the faults shape it.
    pub fn node_shape(&self) -> NodeShape {
        let ready = self.node_ready_at().is_none();
        let state = self.state();
        let mut shape = NodeShape {
            ready,
            ..NodeShape::default()
        };
        shape.taints.extend(state.node_taint.clone());
        if let Some(memory) = &state.node_memory {
            shape.memory = memory.clone();
        }
        shape
    }

    /// Consumes one failed request if any is pending and returns its status code.
    pub fn take_request_failure(&self) -> Option<u16> {
        let mut state = self.state();
        take_one(&mut state.failed_requests).then_some(state.failed_request_code)
    }
}

fn take_one(counter: &mut u32) -> bool {
    if *counter == 0 {
        return false;
    }
    *counter -= 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_are_consumed_one_by_one() {
        let faults = Faults::default();
        faults.fail_next_requests(2, 500);
        assert_eq!(faults.take_request_failure(), Some(500));
        assert_eq!(faults.take_request_failure(), Some(500));
        assert_eq!(faults.take_request_failure(), None);
        faults.drop_next_port_forwards(1);
        assert!(faults.take_port_forward_drop());
        assert!(!faults.take_port_forward_drop());
    }

    #[test]
    fn the_node_is_ready_again_after_the_not_ready_period() {
        let faults = Faults::default();
        assert!(faults.node_shape().ready);
        faults.node_not_ready_for(Duration::from_millis(50));
        assert!(!faults.node_shape().ready);
        assert!(faults.node_ready_at().is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(faults.node_shape().ready);
        assert_eq!(faults.node_ready_at(), None);
        faults.set_node_taint(Some(("dedicated", "analytics", "NoSchedule")));
        faults.set_node_memory(Some("256Mi"));
        let shape = faults.node_shape();
        assert_eq!(
            shape.taints,
            [("dedicated".into(), "analytics".into(), "NoSchedule".into())]
        );
        assert_eq!(shape.memory, "256Mi");
    }

    #[test]
    fn crash_targets_a_pod_or_a_container() {
        let faults = Faults::default();
        faults.set_crash(Some("mysql-1".into()));
        assert!(faults.crashes("mysql-1", "mysql"));
        assert!(!faults.crashes("mysql-0", "mysql"));
        faults.set_crash(Some("init-mysql-config".into()));
        assert!(faults.crashes("mysql-0", "init-mysql-config"));
        assert!(!faults.crashes("mysql-0", "mysql"));
        faults.set_crash(None);
        assert!(!faults.crashes("mysql-1", "mysql"));
    }
}
