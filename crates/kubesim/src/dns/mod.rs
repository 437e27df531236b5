//! Cluster DNS: the simulator's CoreDNS. It serves UDP and TCP port 53 on the pod network (the node starts it
//! on its bridge address, which every pod's resolv.conf names) and answers each query from the store's
//! current Namespaces, Services and Endpoints, so a re-created pod's new address is answered as soon as the
//! Endpoints controller publishes it. Names outside the cluster domain are refused: nothing is forwarded.

pub mod message;
pub mod records;

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::store::Store;

use self::records::Cluster;

/// The cluster as DNS sees it now.
fn snapshot(store: &Store) -> Cluster {
    Cluster::from_objects(
        &store.list("namespaces", None),
        &store.list("services", None),
        &store.list("endpoints", None),
    )
}

/// The reply to one packet (None: drop it).
pub fn handle(store: &Store, packet: &[u8], udp: bool) -> Option<Vec<u8>> {
    match message::parse(packet) {
        Ok(query) => {
            let answer = snapshot(store).answer(&query.name, query.qtype);
            tracing::debug!(name = %query.name, qtype = query.qtype, rcode = ?answer.rcode, "dns query");
            Some(message::reply(&query, &answer, udp))
        }
        Err(reply) => reply,
    }
}

/// Serves DNS on these sockets until the task is aborted (the sockets close with it).
pub async fn serve(store: Store, udp: std::net::UdpSocket, tcp: std::net::TcpListener) {
    let (udp, tcp) = match (UdpSocket::from_std(udp), TcpListener::from_std(tcp)) {
        (Ok(udp), Ok(tcp)) => (Arc::new(udp), tcp),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(%error, "cluster DNS cannot use its sockets");
            return;
        }
    };
    let streams = tokio::spawn(serve_tcp(store.clone(), tcp));
    // Aborting this task drops the TCP server with it.
    let _streams = AbortOnDrop(streams);
    let mut buffer = vec![0u8; 4096];
    loop {
        let (length, peer) = match udp.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(%error, "cluster DNS: receive failed");
                continue;
            }
        };
        if let Some(reply) = handle(&store, &buffer[..length], true)
            && let Err(error) = udp.send_to(&reply, peer).await
        {
            tracing::debug!(%error, %peer, "cluster DNS: reply not sent");
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn serve_tcp(store: Store, listener: TcpListener) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                connections.spawn(serve_connection(store.clone(), stream));
            }
            Err(error) => tracing::debug!(%error, "cluster DNS: accept failed"),
        }
        while connections.try_join_next().is_some() {}
    }
}

/// DNS over TCP: each message is preceded by its length in two bytes (RFC 1035 4.2.2).
async fn serve_connection(store: Store, mut stream: TcpStream) {
    let idle = std::time::Duration::from_secs(10);
    loop {
        let mut length = [0u8; 2];
        match tokio::time::timeout(idle, stream.read_exact(&mut length)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(length))];
        if stream.read_exact(&mut packet).await.is_err() {
            return;
        }
        let Some(reply) = handle(&store, &packet, false) else {
            return;
        };
        let Ok(length) = u16::try_from(reply.len()) else { return };
        if stream.write_all(&length.to_be_bytes()).await.is_err() || stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
