//! The simulator's kube-proxy: makes Service ClusterIPs route inside the pod network.
//!
//! Mechanism: a userspace proxy in the node's network namespace (kube-proxy's original `userspace` mode).
//! The node namespace holds the whole Service range as a local route (`ip route add local 10.96.0.0/12 dev lo`),
//! so pods, whose default route is the node's address on the bridge, deliver ClusterIP traffic to it; for every
//! ClusterIP:port with a ready endpoint this proxy listens there, and relays each accepted connection to the
//! endpoints in turn (round-robin), copying bytes both ways. Where nothing listens (no ready endpoint, Service
//! deleted) the kernel refuses the connection, as kube-proxy's REJECT rule does. Chosen over nftables/iptables
//! DNAT because it needs no kernel modules, packages or br_netfilter settings on the machine, and everything it
//! creates is sockets, which close with the proxy and the namespace. The difference from iptables mode: the
//! endpoint sees the connection coming from the node's address, not from the client pod's.
//!
//! The listeners follow the store: every change to a Service or an Endpoints object recomputes the table
//! ([`rules::table`]) and opens, re-targets or closes listeners to match, so a re-created pod's new address is
//! used as soon as the Endpoints controller publishes it.

pub mod rules;

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How long a connection to one endpoint may take before the next is tried (endpoints are on the node's bridge:
/// a live one answers at once; a vanished address fails ARP after about three seconds).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One ClusterIP:port being served: its current endpoints, and the accept loop (stopped on drop).
struct Listener {
    backends: Arc<Mutex<Vec<SocketAddrV4>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves the Services of `store` inside the network namespace `netns` until the task is aborted; the
/// listeners and every relayed connection end with it.
pub async fn serve(store: Store, netns: File) {
    let netns = Arc::new(netns);
    let connections = CancellationToken::new();
    let _end_connections = connections.clone().drop_guard();
    let mut listeners: BTreeMap<SocketAddrV4, Listener> = BTreeMap::new();
    let mut changes = store.subscribe();
    loop {
        let table = rules::table(&store.list("services", None), &store.list("endpoints", None));
        listeners.retain(|address, _| table.contains_key(address));
        for (address, backends) in table {
            if let Some(listener) = listeners.get(&address) {
                *lock(&listener.backends) = backends;
                continue;
            }
            match listen(&netns, address).await {
                Ok(socket) => {
                    let backends = Arc::new(Mutex::new(backends));
                    let task = tokio::spawn(accept(socket, backends.clone(), netns.clone(), connections.clone()));
                    listeners.insert(address, Listener { backends, task });
                }
                // Retried on the next change (e.g. a ClusterIP set by hand outside the Service range).
                Err(error) => tracing::warn!(%address, %error, "cannot serve the Service address"),
            }
        }
        // Wait for a change that can alter the table.
        loop {
            match changes.recv().await {
                Ok(change) if matches!(change.resource.as_str(), "services" | "endpoints") => break,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// Runs `work` on a short-lived thread inside `netns`: sockets created there stay in that namespace wherever
/// they are used afterwards.
async fn in_namespace<T: Send + 'static>(
    netns: &Arc<File>,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let netns = netns.clone();
    let (reply, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kube-proxy-netns".into())
        .spawn(move || {
            // SAFETY: setns on a namespace fd we hold; it only affects this short-lived thread.
            let entered = if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } == -1 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            };
            let _ = reply.send(entered.and_then(|()| work()));
        })?;
    result
        .await
        .map_err(|_| io::Error::other("the namespace thread ended"))?
}

async fn listen(netns: &Arc<File>, address: SocketAddrV4) -> io::Result<TcpListener> {
    let socket = in_namespace(netns, move || {
        // std sets SO_REUSEADDR: a listener re-opened while relayed connections linger in TIME_WAIT still binds.
        let socket = std::net::TcpListener::bind(address)?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    })
    .await?;
    TcpListener::from_std(socket)
}

async fn accept(
    listener: TcpListener,
    backends: Arc<Mutex<Vec<SocketAddrV4>>>,
    netns: Arc<File>,
    connections: CancellationToken,
) {
    let mut turn = 0usize;
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(error) => {
                tracing::debug!(%error, "kube-proxy: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let order = rules::attempt_order(&lock(&backends), turn);
        turn = turn.wrapping_add(1);
        let netns = netns.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = connections.cancelled() => {}
                _ = relay(client, order, &netns) => {}
            }
        });
    }
}

/// Connects to the first endpoint of `order` that answers and copies bytes both ways until both sides close.
async fn relay(mut client: TcpStream, order: Vec<SocketAddrV4>, netns: &Arc<File>) {
    for backend in order {
        match connect(netns, backend).await {
            Ok(mut upstream) => {
                if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(%backend, %error, "kube-proxy: connection ended");
                }
                return;
            }
            Err(error) => tracing::debug!(%backend, %error, "kube-proxy: endpoint did not answer"),
        }
    }
    // No endpoint answered: reset the client's connection rather than leave it waiting.
    let _ = client.set_zero_linger();
}

async fn connect(netns: &Arc<File>, backend: SocketAddrV4) -> io::Result<TcpStream> {
    let socket = in_namespace(netns, TcpSocket::new_v4).await?;
    tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(SocketAddr::V4(backend)))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no answer from {backend}")))?
}

#[cfg(test)]
mod tests;
