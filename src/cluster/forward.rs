//! Local port-forwards: a listener on 127.0.0.1:0 whose every accepted connection gets its own `Portforwarder`
//! (one WebSocket carries one connection per port, so connections cannot share one).

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use super::Cluster;
use super::error::ClusterError;

/// A running port-forward. Dropping it stops accepting and closes the bridged connections.
pub struct Forward {
    addr: SocketAddr,
    _stop: DropGuard,
}

impl Forward {
    /// The local address to connect to, `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward").field("addr", &self.addr).finish()
    }
}

impl Cluster {
    /// Forwards a local port to `port` of `pod`. The pod must exist now; if it goes away later, new connections are
    /// accepted and closed at once (the caller retries), so a restarted pod is reachable again through the same
    /// address.
    pub async fn forward(&self, namespace: &str, pod: &str, port: u16) -> Result<Forward, ClusterError> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), namespace);
        if pods
            .get_opt(pod)
            .await
            .map_err(|e| self.fail(format!("reading pod {namespace}/{pod}"), e))?
            .is_none()
        {
            return Err(ClusterError::NotFound {
                what: format!("pod {namespace}/{pod}"),
                fix: "run \"lab up\" to create the lab".to_string(),
            });
        }
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| ClusterError::Forward {
                pod: pod.to_string(),
                message: e.to_string(),
            })?;
        let addr = listener.local_addr().map_err(|e| ClusterError::Forward {
            pod: pod.to_string(),
            message: e.to_string(),
        })?;
        let stop = CancellationToken::new();
        let span = tracing::debug_span!("forward", %addr, pod = %format!("{namespace}/{pod}"), port);
        tokio::spawn(accept_loop(listener, pods, pod.to_string(), port, stop.clone()).instrument(span));
        Ok(Forward {
            addr,
            _stop: stop.drop_guard(),
        })
    }
}

async fn accept_loop(listener: TcpListener, pods: Api<Pod>, pod: String, port: u16, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((local, peer)) => {
                let (pods, pod, stop) = (pods.clone(), pod.clone(), stop.clone());
                tokio::spawn(
                    async move {
                        tokio::select! {
                            () = stop.cancelled() => tracing::debug!("port-forward stopped; closing the connection"),
                            () = bridge(local, &pods, &pod, port) => {}
                        }
                    }
                    .in_current_span(),
                );
                tracing::trace!(%peer, "accepted");
            }
            Err(error) => {
                // Per-connection errors (e.g. the peer reset before accept); keep serving.
                tracing::warn!(%error, "accepting a local connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Whether a failed port-forward is news to the user or part of a pod's restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The pod is gone, not running yet, or its server does not listen yet: the caller retries, and the waits
    /// report the pod's state if it never comes back. Logged at debug level.
    Expected,
    /// Something only the user can fix (the kubeconfig's user may not port-forward, a proxy that breaks the
    /// WebSocket upgrade). Logged as a warning.
    Actionable,
}

/// Pure: how to treat a port-forward the API server refused. 404 (pod being recreated), 400 (pod or container not
/// running) and 5xx (the kubelet could not reach the container) happen whenever a pod restarts; 401/403 do not go
/// away by retrying, nor do failures outside the API (the upgrade itself).
fn upgrade_failure(error: &kube::Error) -> Failure {
    match error {
        kube::Error::Api(status) if matches!(status.code, 401 | 403) => Failure::Actionable,
        kube::Error::Api(_) => Failure::Expected,
        _ => Failure::Actionable,
    }
}

/// Carries one local connection through its own port-forward until either side closes.
async fn bridge(mut local: TcpStream, pods: &Api<Pod>, pod: &str, port: u16) {
    let mut forwarder = match pods.portforward(pod, &[port]).await {
        Ok(forwarder) => forwarder,
        Err(error) => {
            // Dropping `local` closes it: the client sees EOF and retries.
            match upgrade_failure(&error) {
                Failure::Expected => {
                    tracing::debug!(%error, "port-forward to {pod}:{port} failed (pod restarting?); closing the local connection")
                }
                Failure::Actionable => {
                    tracing::warn!(%error, "port-forward to {pod}:{port} failed; closing the local connection")
                }
            }
            return;
        }
    };
    let Some(mut remote) = forwarder.take_stream(port) else {
        tracing::warn!("port-forward to {pod}:{port} has no stream for the port");
        return;
    };
    if let Some(error) = forwarder.take_error(port) {
        let pod = pod.to_string();
        tokio::spawn(
            async move {
                // The kubelet writes here only when it could not connect inside the pod (the server is restarting
                // or not listening yet): the client sees its connection close and retries.
                if let Some(message) = error.await {
                    tracing::debug!("port-forward to {pod}:{port}: {message}");
                }
            }
            .in_current_span(),
        );
    }
    match tokio::io::copy_bidirectional(&mut local, &mut remote).await {
        Ok((sent, received)) => tracing::debug!(sent, received, "connection closed"),
        Err(error) => tracing::debug!(%error, "connection ended"),
    }
    drop(remote);
    drop(local);
    // After a server-first close the client's late close fails with SendAfterClosing although every byte arrived.
    if let Err(error) = forwarder.join().await {
        tracing::debug!(%error, "port-forward ended with an error (expected after the pod closed first)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn refused(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Status::failure("refused", reason).with_code(code).boxed())
    }

    #[test]
    fn only_failures_the_user_must_fix_are_warnings() {
        // A pod being recreated, not running yet, or unreachable from the kubelet: expected while it restarts.
        assert_eq!(upgrade_failure(&refused(404, "NotFound")), Failure::Expected);
        assert_eq!(upgrade_failure(&refused(400, "BadRequest")), Failure::Expected);
        assert_eq!(upgrade_failure(&refused(500, "InternalError")), Failure::Expected);
        // Not allowed to port-forward, or the upgrade itself broken: retrying does not help.
        assert_eq!(upgrade_failure(&refused(403, "Forbidden")), Failure::Actionable);
        assert_eq!(upgrade_failure(&refused(401, "Unauthorized")), Failure::Actionable);
        let broken_upgrade =
            kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::MissingUpgradeWebSocketHeader);
        assert_eq!(upgrade_failure(&broken_upgrade), Failure::Actionable);
    }
}
