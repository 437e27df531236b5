//! What kube-proxy programs for the node, as a pure function of the Services and Endpoints: for every
//! ClusterIP:port, the ready endpoints behind it, with the Service port mapped to the endpoint's port (its
//! `targetPort`, resolved by the Endpoints controller) by port name, as kube-proxy matches them.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde_json::Value;

/// The Service network: ClusterIPs are handed out from 10.96.0.0/12, as on kind and kubeadm clusters.
pub const SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 96, 0, 0), 12);

/// ClusterIP:port → the ready endpoints (pod IP:port), sorted. Only entries with at least one endpoint are
/// present: a connection to any other ClusterIP:port is refused, as kube-proxy rejects Services without one.
pub type Table = BTreeMap<SocketAddrV4, Vec<SocketAddrV4>>;

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn items(object: &Value, pointer: &str) -> Vec<Value> {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn is_tcp(port: &Value) -> bool {
    matches!(port.get("protocol").and_then(Value::as_str), None | Some("TCP"))
}

/// The Service's IPv4 ClusterIPs (none for headless and ExternalName Services).
fn cluster_ips(service: &Value) -> Vec<Ipv4Addr> {
    if text(service, "/spec/type") == "ExternalName" {
        return Vec::new();
    }
    let mut ips: Vec<Ipv4Addr> = items(service, "/spec/clusterIPs")
        .iter()
        .chain(service.pointer("/spec/clusterIP"))
        .filter_map(|ip| ip.as_str()?.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// The ready endpoints of the Service port named `port_name` ("" when unnamed): `addresses` only, never
/// `notReadyAddresses` (the controller lists not-ready pods as addresses only with `publishNotReadyAddresses`,
/// which kube-proxy then routes to as well).
fn ready_endpoints(endpoints: &Value, port_name: &str) -> Vec<SocketAddrV4> {
    let mut found = Vec::new();
    for subset in items(endpoints, "/subsets") {
        let port = items(&subset, "/ports")
            .into_iter()
            .find(|port| is_tcp(port) && port.get("name").and_then(Value::as_str).unwrap_or_default() == port_name);
        let Some(number) = port
            .and_then(|port| port.get("port")?.as_u64())
            .and_then(|number| u16::try_from(number).ok())
        else {
            continue;
        };
        for address in items(&subset, "/addresses") {
            if let Ok(ip) = text(&address, "/ip").parse::<Ipv4Addr>() {
                found.push(SocketAddrV4::new(ip, number));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The routing table for these Services and Endpoints (TCP ports only: the simulated pods serve TCP).
pub fn table(services: &[Value], endpoints: &[Value]) -> Table {
    let mut table = Table::new();
    for service in services {
        let ips = cluster_ips(service);
        if ips.is_empty() {
            continue;
        }
        let (namespace, name) = (text(service, "/metadata/namespace"), text(service, "/metadata/name"));
        let Some(endpoints) = endpoints
            .iter()
            .find(|e| text(e, "/metadata/namespace") == namespace && text(e, "/metadata/name") == name)
        else {
            continue;
        };
        for port in items(service, "/spec/ports").iter().filter(|port| is_tcp(port)) {
            let Some(number) = port
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
            else {
                continue;
            };
            let backends = ready_endpoints(endpoints, text(port, "/name"));
            if backends.is_empty() {
                continue;
            }
            for ip in &ips {
                table.insert(SocketAddrV4::new(*ip, number), backends.clone());
            }
        }
    }
    table
}

/// The order in which the `turn`-th connection tries the endpoints: round-robin from the next one, then the
/// others in turn should it fail to connect (an endpoint whose pod just went away).
pub fn attempt_order(backends: &[SocketAddrV4], turn: usize) -> Vec<SocketAddrV4> {
    if backends.is_empty() {
        return Vec::new();
    }
    let start = turn % backends.len();
    backends[start..].iter().chain(&backends[..start]).copied().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn addr(text: &str) -> SocketAddrV4 {
        text.parse().expect("address")
    }

    fn service(name: &str, spec: Value) -> Value {
        json!({ "metadata": { "namespace": "database", "name": name }, "spec": spec })
    }

    fn endpoints(name: &str, subsets: Value) -> Value {
        json!({ "metadata": { "namespace": "database", "name": name }, "subsets": subsets })
    }

    #[test]
    fn service_ports_reach_the_ready_endpoints_on_their_target_ports() {
        let services = [service(
            "web",
            json!({ "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                    "ports": [{ "name": "http", "port": 80, "targetPort": "web" },
                              { "name": "admin", "port": 81, "targetPort": 9000 }] }),
        )];
        let published = [endpoints(
            "web",
            json!([{ "addresses": [{ "ip": "10.244.0.3" }, { "ip": "10.244.0.2" }],
                     "notReadyAddresses": [{ "ip": "10.244.0.4" }],
                     "ports": [{ "name": "admin", "port": 9000, "protocol": "TCP" },
                               { "name": "http", "port": 8080, "protocol": "TCP" }] }]),
        )];
        let table = table(&services, &published);
        assert_eq!(
            table,
            Table::from([
                (
                    addr("10.96.0.20:80"),
                    vec![addr("10.244.0.2:8080"), addr("10.244.0.3:8080")]
                ),
                (
                    addr("10.96.0.20:81"),
                    vec![addr("10.244.0.2:9000"), addr("10.244.0.3:9000")]
                ),
            ])
        );
    }

    #[test]
    fn unnamed_single_ports_match_and_other_namespaces_do_not() {
        let services = [service(
            "mysql-primary",
            json!({ "clusterIP": "10.96.0.11", "ports": [{ "port": 3306, "targetPort": 3306 }] }),
        )];
        let mut elsewhere = endpoints(
            "mysql-primary",
            json!([{ "addresses": [{ "ip": "10.244.0.9" }], "ports": [{ "port": 3306 }] }]),
        );
        elsewhere["metadata"]["namespace"] = json!("other");
        assert_eq!(table(&services, std::slice::from_ref(&elsewhere)), Table::new());
        let published = [endpoints(
            "mysql-primary",
            json!([{ "addresses": [{ "ip": "10.244.0.2" }], "ports": [{ "port": 3306, "protocol": "TCP" }] }]),
        )];
        assert_eq!(
            table(&services, &published),
            Table::from([(addr("10.96.0.11:3306"), vec![addr("10.244.0.2:3306")])])
        );
    }

    #[test]
    fn no_route_without_a_ready_endpoint_a_cluster_ip_or_tcp() {
        let not_ready = endpoints(
            "a",
            json!([{ "notReadyAddresses": [{ "ip": "10.244.0.2" }], "ports": [{ "port": 80 }] }]),
        );
        let services = [service(
            "a",
            json!({ "clusterIP": "10.96.0.30", "ports": [{ "port": 80 }] }),
        )];
        assert_eq!(table(&services, std::slice::from_ref(&not_ready)), Table::new());
        // The Endpoints controller leaves out `subsets` when no pod matches.
        assert_eq!(
            table(
                &services,
                &[json!({ "metadata": { "namespace": "database", "name": "a" } })]
            ),
            Table::new()
        );

        let ready = |name: &str| {
            endpoints(
                name,
                json!([{ "addresses": [{ "ip": "10.244.0.2" }], "ports": [{ "port": 53, "protocol": "UDP" }, { "port": 80 }] }]),
            )
        };
        let headless = service("h", json!({ "clusterIP": "None", "ports": [{ "port": 80 }] }));
        let external = service(
            "x",
            json!({ "type": "ExternalName", "externalName": "example.com", "ports": [{ "port": 80 }] }),
        );
        let udp = service(
            "u",
            json!({ "clusterIP": "10.96.0.31", "ports": [{ "port": 53, "protocol": "UDP" }] }),
        );
        assert_eq!(
            table(&[headless, external, udp], &[ready("h"), ready("x"), ready("u")]),
            Table::new()
        );
    }

    #[test]
    fn connections_take_the_endpoints_in_turn_and_fall_back_to_the_others() {
        let backends = [addr("10.244.0.2:1"), addr("10.244.0.3:1"), addr("10.244.0.4:1")];
        assert_eq!(attempt_order(&backends, 0), backends);
        assert_eq!(
            attempt_order(&backends, 4),
            [addr("10.244.0.3:1"), addr("10.244.0.4:1"), addr("10.244.0.2:1")]
        );
        assert_eq!(attempt_order(&[], 3), Vec::<SocketAddrV4>::new());
    }
}
