//! Switchable faults: each one makes the simulated cluster misbehave the way a real cluster can.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

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
