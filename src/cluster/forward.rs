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

/// Carries one local connection through its own port-forward until either side closes.
async fn bridge(mut local: TcpStream, pods: &Api<Pod>, pod: &str, port: u16) {
    let mut forwarder = match pods.portforward(pod, &[port]).await {
        Ok(forwarder) => forwarder,
        Err(error) => {
            // Dropping `local` closes it: the client sees EOF and retries.
            tracing::warn!(%error, "port-forward to {pod}:{port} failed; closing the local connection");
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
                if let Some(message) = error.await {
                    tracing::warn!("port-forward to {pod}:{port}: {message}");
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
