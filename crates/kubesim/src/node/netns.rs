//! The node network: a bridge inside a network namespace of its own, and one veth per pod from that bridge into
//! the pod's network namespace. Pods' default route is the node's address on the bridge, where cluster DNS and
//! the Service proxy (which holds the Service range as local addresses) answer; the node namespace forwards
//! nothing further. Pod addresses exist only inside these namespaces; the host has no link, route or address
//! towards them, and every link disappears with its namespace.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use anyhow::{Context, bail};

use super::sys::{self, Spawner, Step};

/// The pod network: 10.244.0.0/24 inside the node's namespaces.
pub const POD_PREFIX_LEN: u8 = 24;
/// The node's own address on the bridge (reported as the pods' hostIP).
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
const BRIDGE: &str = "cbr0";

/// Link names are limited to 15 bytes.
pub fn link_name(prefix: &str, suffix: &str) -> String {
    let room = 15usize.saturating_sub(suffix.len());
    let prefix: String = prefix.chars().take(room).collect();
    format!("{prefix}{suffix}")
}

/// The lowest free pod address (.2 to .254), given the used host numbers.
pub fn next_free_host(used: &BTreeSet<u8>) -> Option<u8> {
    (2..=254).find(|host| !used.contains(host))
}

/// The pod's MAC address, derived from its IP as Kubernetes network plugins do (`0a:58` + the IP): a pod that
/// reuses an address also reuses the MAC, so neighbours' ARP caches never point at a vanished interface.
pub fn pod_mac(address: Ipv4Addr) -> String {
    let [a, b, c, d] = address.octets();
    format!("0a:58:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

pub fn pod_address(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 0, host)
}

pub struct NodeNetwork {
    ip_program: PathBuf,
    prefix: String,
    holder: Mutex<Option<std::process::Child>>,
    netns: File,
    used_hosts: Mutex<BTreeSet<u8>>,
    link_counter: Mutex<u32>,
}

impl NodeNetwork {
    /// Creates the node namespace (held by a sleeping process) with its bridge.
    pub fn create(
        spawner: &Spawner,
        ip_program: PathBuf,
        sleep_program: &std::path::Path,
        prefix: &str,
    ) -> anyhow::Result<NodeNetwork> {
        let mut holder = sys::spawn_holder(
            spawner,
            sleep_program,
            &format!("{prefix}/node"),
            vec![Step::Unshare(libc::CLONE_NEWNET)],
        )
        .context(
            "cannot create the node network namespace (kubesim needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN)",
        )?;
        let [netns] = <[File; 1]>::try_from(
            sys::open_namespaces_or_kill(&mut holder, &["net"]).context("cannot open the node network namespace")?,
        )
        .expect("one namespace asked, one opened");
        let network = NodeNetwork {
            ip_program,
            prefix: prefix.to_string(),
            holder: Mutex::new(Some(holder)),
            netns,
            used_hosts: Mutex::new(BTreeSet::new()),
            link_counter: Mutex::new(0),
        };
        // The bridge gets a MAC of its own: by default a bridge takes the lowest MAC of its ports, which changes
        // as pods come and go, and pods that cached the old one could no longer reach the node's address (where
        // cluster DNS listens). The Service range is local to the node namespace, so the Service proxy can listen
        // on any ClusterIP there (see `crate::proxy`).
        let (service_net, service_prefix_len) = crate::proxy::rules::SERVICE_CIDR;
        let batch = format!(
            "link set lo up\nlink add {BRIDGE} type bridge\nlink set {BRIDGE} address {}\n\
             addr add {NODE_IP}/{POD_PREFIX_LEN} dev {BRIDGE}\nlink set {BRIDGE} up\n\
             route add local {service_net}/{service_prefix_len} dev lo\n",
            pod_mac(NODE_IP)
        );
        if let Err(error) = run_ip_batch_blocking(&network.ip_program, &network.netns, &batch) {
            network.shutdown();
            return Err(error.context("cannot create the node bridge"));
        }
        Ok(network)
    }

    pub fn holder_pid(&self) -> Option<u32> {
        self.holder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|child| child.id())
    }

    pub fn allocate_address(&self) -> Option<Ipv4Addr> {
        let mut used = self.used_hosts.lock().unwrap_or_else(|p| p.into_inner());
        let host = next_free_host(&used)?;
        used.insert(host);
        Some(pod_address(host))
    }

    pub fn release_address(&self, address: Ipv4Addr) {
        self.used_hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&address.octets()[3]);
    }

    /// Plugs the pod namespace (held by `pod_pid`) into the bridge as `eth0` with `address`.
    pub async fn attach(&self, pod_pid: u32, pod_netns: &File, address: Ipv4Addr) -> anyhow::Result<String> {
        let veth = {
            let mut counter = self.link_counter.lock().unwrap_or_else(|p| p.into_inner());
            *counter += 1;
            link_name(&self.prefix, &format!("v{}", *counter))
        };
        let node_side = format!(
            "link add {veth} type veth peer name eth0 netns {pod_pid}\nlink set {veth} master {BRIDGE}\nlink set {veth} up\n"
        );
        run_ip_batch(&self.ip_program, &self.netns, &node_side)
            .await
            .context("cannot create the pod's veth")?;
        let mac = pod_mac(address);
        let pod_side = format!(
            "link set lo up\nlink set eth0 address {mac}\naddr add {address}/{POD_PREFIX_LEN} dev eth0\nlink set eth0 up\n\
             route add default via {NODE_IP} dev eth0\n"
        );
        run_ip_batch(&self.ip_program, pod_netns, &pod_side)
            .await
            .context("cannot configure the pod's eth0")?;
        Ok(veth)
    }

    /// Unplugs a pod: deletes its veth from the bridge (the pod's `eth0` goes with it), as a CNI plugin does on
    /// teardown. The pod's namespace can outlive its processes (a socket opened in it, a namespace handle still
    /// held), and a veth left on the bridge would keep receiving the frames meant for the next pod that gets the
    /// same address and MAC. Blocking: runs from teardown paths, which are synchronous.
    pub fn detach(&self, veth: &str) {
        if let Err(error) = run_ip_batch_blocking(&self.ip_program, &self.netns, &format!("link del {veth}\n")) {
            // Already gone with its namespace: nothing to do.
            tracing::debug!(%veth, %error, "veth not deleted");
        }
    }

    /// Binds UDP and TCP sockets to `address` inside the node's namespace (for services the pods reach on the
    /// bridge, such as cluster DNS). The sockets stay in that namespace wherever they are used.
    pub fn bind(&self, address: std::net::SocketAddr) -> anyhow::Result<(std::net::UdpSocket, std::net::TcpListener)> {
        let netns = self.netns.try_clone()?;
        std::thread::Builder::new()
            .name("netns-bind".into())
            .spawn(move || -> std::io::Result<_> {
                // SAFETY: setns on a namespace fd we own; it only affects this short-lived thread.
                if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                let udp = std::net::UdpSocket::bind(address)?;
                let tcp = std::net::TcpListener::bind(address)?;
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                Ok((udp, tcp))
            })?
            .join()
            .map_err(|_| anyhow::anyhow!("the bind thread panicked"))?
            .with_context(|| format!("cannot listen on {address} in the node network namespace"))
    }

    /// A handle on the node's network namespace (for the Service proxy, which opens its sockets there).
    pub fn namespace(&self) -> std::io::Result<File> {
        self.netns.try_clone()
    }

    /// Kills the namespace holder; the bridge and every veth go with the namespace.
    pub fn shutdown(&self) {
        if let Some(mut holder) = self.holder.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

fn ip_command(ip_program: &std::path::Path, netns: &File) -> std::process::Command {
    let mut command = std::process::Command::new(ip_program);
    command
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let fd = netns.as_raw_fd();
    // SAFETY: setns is async-signal-safe; the fd stays open in the parent until the spawn returns.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            if libc::setns(fd, libc::CLONE_NEWNET) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

fn run_ip_batch_blocking(ip_program: &std::path::Path, netns: &File, batch: &str) -> anyhow::Result<()> {
    let mut child = ip_command(ip_program, netns).spawn().context("cannot run ip")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(batch.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("ip -batch failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

async fn run_ip_batch(ip_program: &std::path::Path, netns: &File, batch: &str) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::from(ip_command(ip_program, netns))
        .spawn()
        .context("cannot run ip")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(batch.as_bytes()).await?;
    }
    let output = child.wait_with_output().await?;
    if !output.status.success() {
        bail!("ip -batch failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_fit_in_fifteen_bytes() {
        assert_eq!(link_name("ks1a2b3c4d5e6f7", "v12"), "ks1a2b3c4d5ev12");
        assert_eq!(link_name("ks1", "v1"), "ks1v1");
    }

    #[test]
    fn pod_macs_follow_their_addresses() {
        assert_eq!(pod_mac(pod_address(2)), "0a:58:0a:f4:00:02");
    }

    #[test]
    fn addresses_are_allocated_lowest_first_and_reused() {
        let mut used = BTreeSet::new();
        assert_eq!(next_free_host(&used), Some(2));
        used.extend([2, 3, 5]);
        assert_eq!(next_free_host(&used), Some(4));
        let full: BTreeSet<u8> = (2..=254).collect();
        assert_eq!(next_free_host(&full), None);
    }
}
