//! Container probes (exec, tcpSocket, httpGet) run the kubelet's way: exec inside the container, network probes
//! from inside the pod's network namespace to the pod's address.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Exec(Vec<String>),
    Tcp {
        host: Option<String>,
        port: u16,
    },
    Http {
        host: Option<String>,
        port: u16,
        path: String,
        scheme: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

fn seconds(probe: &Value, field: &str, default: u64, minimum: u64) -> Duration {
    let value = probe.get(field).and_then(Value::as_u64).unwrap_or(default);
    Duration::from_secs(value.max(minimum))
}

fn port(value: Option<&Value>, container: &Value) -> Option<u16> {
    match value? {
        Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Value::String(name) => name.parse().ok().or_else(|| {
            container.get("ports")?.as_array()?.iter().find_map(|p| {
                (p.get("name")?.as_str()? == name).then(|| p.get("containerPort")?.as_u64()?.try_into().ok())?
            })
        }),
        _ => None,
    }
}

/// Reads a probe from a container spec (`readinessProbe`, `livenessProbe`, `startupProbe`), with Kubernetes'
/// defaults (period 10 s, timeout 1 s, thresholds 1 / 3).
pub fn parse(container: &Value, field: &str) -> Option<Probe> {
    let probe = container.get(field)?;
    let text = |pointer: &str| probe.pointer(pointer).and_then(Value::as_str).map(str::to_string);
    let action = if let Some(command) = probe.pointer("/exec/command").and_then(Value::as_array) {
        Action::Exec(command.iter().filter_map(|c| c.as_str().map(str::to_string)).collect())
    } else if let Some(tcp) = probe.get("tcpSocket") {
        Action::Tcp {
            host: text("/tcpSocket/host"),
            port: port(tcp.get("port"), container)?,
        }
    } else if let Some(http) = probe.get("httpGet") {
        Action::Http {
            host: text("/httpGet/host"),
            port: port(http.get("port"), container)?,
            path: text("/httpGet/path").unwrap_or_else(|| "/".into()),
            scheme: text("/httpGet/scheme").unwrap_or_else(|| "HTTP".into()),
        }
    } else {
        return None;
    };
    Some(Probe {
        action,
        initial_delay: seconds(probe, "initialDelaySeconds", 0, 0),
        period: seconds(probe, "periodSeconds", 10, 1),
        timeout: seconds(probe, "timeoutSeconds", 1, 1),
        success_threshold: probe
            .get("successThreshold")
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .max(1) as u32,
        failure_threshold: probe
            .get("failureThreshold")
            .and_then(Value::as_u64)
            .unwrap_or(3)
            .max(1) as u32,
    })
}

/// Runs a network probe from inside the pod's network namespace. `Err` carries the kubelet-style message.
pub async fn network(action: &Action, netns: &File, pod_ip: IpAddr, timeout: Duration) -> Result<(), String> {
    let (host, port) = match action {
        Action::Tcp { host, port } | Action::Http { host, port, .. } => (host, *port),
        Action::Exec(_) => return Err("not a network probe".into()),
    };
    let ip = host.as_deref().and_then(|h| h.parse::<IpAddr>().ok()).unwrap_or(pod_ip);
    let addr = SocketAddr::new(ip, port);
    let connect = super::sys::connect_in_namespace(netns, addr, timeout);
    let mut stream = match connect.await {
        Ok(stream) => stream,
        Err(error) => {
            let reason = match error.raw_os_error() {
                Some(libc::ECONNREFUSED) => "connect: connection refused".to_string(),
                _ if error.kind() == std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
                _ => error.to_string(),
            };
            let dial = format!("dial tcp {addr}: {reason}");
            return Err(match action {
                Action::Http { path, .. } => format!("Get \"http://{addr}{path}\": {dial}"),
                _ => dial,
            });
        }
    };
    let Action::Http { path, .. } = action else {
        return Ok(());
    };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.35\r\nConnection: close\r\n\r\n");
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        let mut head = vec![0u8; 64];
        let read = stream.read(&mut head).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..read]).to_string())
    };
    let head = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("Get \"http://{addr}{path}\": context deadline exceeded"))?
        .map_err(|e| format!("Get \"http://{addr}{path}\": {e}"))?;
    let code: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn probes_parse_with_kubernetes_defaults_and_named_ports() {
        let container = json!({
            "ports": [{ "name": "mysql", "containerPort": 3306 }],
            "readinessProbe": { "tcpSocket": { "port": "mysql" }, "periodSeconds": 2 },
            "livenessProbe": { "exec": { "command": ["mysqladmin", "ping"] }, "initialDelaySeconds": 30, "failureThreshold": 5 },
        });
        let readiness = parse(&container, "readinessProbe").expect("readiness");
        assert_eq!(readiness.action, Action::Tcp { host: None, port: 3306 });
        assert_eq!(readiness.period, Duration::from_secs(2));
        assert_eq!(readiness.timeout, Duration::from_secs(1));
        assert_eq!((readiness.success_threshold, readiness.failure_threshold), (1, 3));
        let liveness = parse(&container, "livenessProbe").expect("liveness");
        assert_eq!(liveness.action, Action::Exec(vec!["mysqladmin".into(), "ping".into()]));
        assert_eq!(liveness.initial_delay, Duration::from_secs(30));
        assert_eq!(liveness.failure_threshold, 5);
        assert_eq!(parse(&container, "startupProbe"), None);
    }
}
