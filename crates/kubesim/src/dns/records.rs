//! The cluster's DNS records, as CoreDNS's `kubernetes` plugin answers them (the Kubernetes DNS-Based Service
//! Discovery specification) from Services, Endpoints and Namespaces:
//!
//! - `<svc>.<ns>.svc.cluster.local`: a headless Service's ready endpoint addresses, or a Service's ClusterIP;
//! - `<endpoint>.<svc>.<ns>.svc.cluster.local`: one address of a headless Service, named by the endpoint's
//!   hostname (pods whose `hostname`/`subdomain` match the Service) or its dashed IP (`10-244-0-2`);
//! - `_<port>._<proto>.<svc>.<ns>.svc.cluster.local`: SRV records for the named ports;
//! - `<a-b-c-d>.<ns>.pod.cluster.local`: the dashed address itself (`pods insecure`, as kind configures);
//!
//! NXDOMAIN for cluster names that do not exist (a headless Service without ready endpoints included), NODATA
//! for names that exist without records of the asked type, REFUSED outside the cluster domain (there is no
//! upstream to forward to).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde_json::Value;

pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// CoreDNS's `kubernetes` plugin answers with a TTL of 5 seconds by default.
pub const TTL: u32 = 5;

pub const TYPE_A: u16 = 1;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;
pub const TYPE_ANY: u16 = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    A(Ipv4Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Soa {
        mname: String,
        rname: String,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
}

impl Data {
    pub fn type_code(&self) -> u16 {
        match self {
            Data::A(_) => TYPE_A,
            Data::Srv { .. } => TYPE_SRV,
            Data::Soa { .. } => TYPE_SOA,
        }
    }
}

/// One resource record; `name` None is the question's name (written as it was asked, case included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub name: Option<String>,
    pub ttl: u32,
    pub data: Data,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub rcode: Rcode,
    /// Authoritative: the name is in the cluster domain.
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

impl Answer {
    pub fn refused() -> Answer {
        Answer {
            rcode: Rcode::Refused,
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
        }
    }

    /// NXDOMAIN or NODATA: no answer, the zone's SOA in the authority section (for negative caching).
    fn negative(rcode: Rcode) -> Answer {
        Answer {
            rcode,
            authoritative: true,
            answers: Vec::new(),
            authority: vec![soa(Some(CLUSTER_DOMAIN.to_string()))],
            additional: Vec::new(),
        }
    }
}

fn soa(name: Option<String>) -> Record {
    Record {
        name,
        ttl: TTL,
        data: Data::Soa {
            mname: format!("ns.dns.{CLUSTER_DOMAIN}"),
            rname: format!("hostmaster.{CLUSTER_DOMAIN}"),
            serial: 1,
            refresh: 7200,
            retry: 1800,
            expire: 86400,
            minimum: TTL,
        },
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    pub protocol: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub headless: bool,
    pub cluster_ips: Vec<Ipv4Addr>,
    pub ports: Vec<Port>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub ip: Ipv4Addr,
    pub hostname: Option<String>,
}

impl Address {
    /// The endpoint's label in DNS: its hostname, else its dashed IP (CoreDNS's `endpointHostname`).
    fn label(&self) -> String {
        match &self.hostname {
            Some(hostname) => hostname.clone(),
            None => self.ip.to_string().replace('.', "-"),
        }
    }
}

/// One Endpoints subset: ready addresses and their ports (not-ready addresses are not published).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subset {
    pub addresses: Vec<Address>,
    pub ports: Vec<Port>,
}

/// What DNS knows of the cluster at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cluster {
    pub namespaces: BTreeSet<String>,
    pub services: Vec<Service>,
    /// (namespace, name) -> subsets.
    pub endpoints: BTreeMap<(String, String), Vec<Subset>>,
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn ports(list: Option<&Value>) -> Vec<Port> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|port| {
            Some(Port {
                name: port.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
                protocol: port
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_string(),
                port: u16::try_from(port.get("port")?.as_u64()?).ok()?,
            })
        })
        .collect()
}

impl Cluster {
    /// From the stored Namespaces, Services and Endpoints.
    pub fn from_objects(namespaces: &[Value], services: &[Value], endpoints: &[Value]) -> Cluster {
        let mut cluster = Cluster {
            namespaces: namespaces
                .iter()
                .map(|ns| text(ns, "/metadata/name").to_string())
                .collect(),
            ..Cluster::default()
        };
        for service in services {
            let cluster_ip = text(service, "/spec/clusterIP");
            let mut ips: Vec<&str> = service
                .pointer("/spec/clusterIPs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if ips.is_empty() {
                ips.push(cluster_ip);
            }
            cluster.services.push(Service {
                namespace: text(service, "/metadata/namespace").to_string(),
                name: text(service, "/metadata/name").to_string(),
                headless: cluster_ip == "None",
                cluster_ips: ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
                ports: ports(service.pointer("/spec/ports")),
            });
        }
        for object in endpoints {
            let subsets = object
                .get("subsets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|subset| Subset {
                    addresses: subset
                        .get("addresses")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|address| {
                            Some(Address {
                                ip: address.get("ip")?.as_str()?.parse().ok()?,
                                hostname: address
                                    .get("hostname")
                                    .and_then(Value::as_str)
                                    .filter(|h| !h.is_empty())
                                    .map(str::to_string),
                            })
                        })
                        .collect(),
                    ports: ports(subset.get("ports")),
                })
                .collect();
            cluster.endpoints.insert(
                (
                    text(object, "/metadata/namespace").to_string(),
                    text(object, "/metadata/name").to_string(),
                ),
                subsets,
            );
        }
        cluster
    }

    /// The answer to `qname` (as asked; compared case-insensitively) of type `qtype`.
    pub fn answer(&self, qname: &str, qtype: u16) -> Answer {
        let name = qname.trim_end_matches('.').to_ascii_lowercase();
        let base = if name == CLUSTER_DOMAIN {
            ""
        } else if let Some(base) = name.strip_suffix(&format!(".{CLUSTER_DOMAIN}")) {
            base
        } else {
            return Answer::refused();
        };
        match self.targets(base) {
            Lookup::NxDomain => Answer::negative(Rcode::NxDomain),
            Lookup::Apex if qtype == TYPE_SOA && base.is_empty() => Answer {
                answers: vec![soa(None)],
                authority: Vec::new(),
                ..Answer::negative(Rcode::NoError)
            },
            Lookup::Apex => Answer::negative(Rcode::NoError),
            Lookup::Found(targets) => records(targets, qtype),
        }
    }

    /// What a name below the cluster domain (`base`, the zone stripped) stands for.
    fn targets(&self, base: &str) -> Lookup {
        if base.is_empty() || base == "svc" || base == "pod" {
            return Lookup::Apex;
        }
        let mut labels: Vec<&str> = base.split('.').collect();
        let kind = labels.pop().unwrap_or_default();
        if kind != "svc" && kind != "pod" {
            return Lookup::NxDomain;
        }
        let Some(namespace) = labels.pop() else {
            return Lookup::Apex;
        };
        let namespace_exists =
            self.namespaces.contains(namespace) || self.services.iter().any(|service| service.namespace == namespace);
        if !namespace_exists {
            return Lookup::NxDomain;
        }
        let Some(service_label) = labels.pop() else {
            return Lookup::Apex;
        };
        if kind == "pod" {
            // `pods insecure`: the dashed address is answered as written, without looking for the pod.
            let parts: Vec<&str> = service_label.split('-').collect();
            let dotted = parts.join(".");
            return match (parts.len(), dotted.parse::<Ipv4Addr>(), labels.is_empty()) {
                (4, Ok(ip), true) => Lookup::Found(vec![Target {
                    ip,
                    port: None,
                    name: format!("{base}.{CLUSTER_DOMAIN}"),
                }]),
                _ => Lookup::NxDomain,
            };
        }
        let (endpoint, port, protocol) = match labels.as_slice() {
            [] => (None, None, None),
            [endpoint] => (Some(*endpoint), None, None),
            [port, protocol] => (None, Some(strip_underscore(port)), Some(strip_underscore(protocol))),
            _ => return Lookup::NxDomain,
        };
        let Some(service) = self
            .services
            .iter()
            .find(|s| s.namespace == namespace && s.name.eq_ignore_ascii_case(service_label))
        else {
            return Lookup::NxDomain;
        };
        let matches = |candidate: &Port| {
            port.is_none_or(|p| candidate.name.eq_ignore_ascii_case(p))
                && protocol.is_none_or(|p| candidate.protocol.eq_ignore_ascii_case(p))
        };
        let service_name = format!("{}.{namespace}.svc.{CLUSTER_DOMAIN}", service.name);
        let mut targets = Vec::new();
        if service.headless || endpoint.is_some() {
            let key = (namespace.to_string(), service.name.clone());
            for subset in self.endpoints.get(&key).into_iter().flatten() {
                for address in &subset.addresses {
                    let label = address.label();
                    if endpoint.is_some_and(|e| !e.eq_ignore_ascii_case(&label)) {
                        continue;
                    }
                    let name = format!("{label}.{service_name}");
                    let ports: Vec<Option<u16>> = if subset.ports.is_empty() && port.is_none() {
                        vec![None]
                    } else {
                        subset
                            .ports
                            .iter()
                            .filter(|p| matches(p))
                            .map(|p| Some(p.port))
                            .collect()
                    };
                    targets.extend(ports.into_iter().map(|port| Target {
                        ip: address.ip,
                        port,
                        name: name.clone(),
                    }));
                }
            }
            if targets.is_empty() {
                return Lookup::NxDomain;
            }
            return Lookup::Found(targets);
        }
        let ports: Vec<Option<u16>> = if service.ports.is_empty() && port.is_none() {
            vec![None]
        } else {
            service
                .ports
                .iter()
                .filter(|p| matches(p))
                .map(|p| Some(p.port))
                .collect()
        };
        if ports.is_empty() {
            return Lookup::NxDomain;
        }
        // A Service without a ClusterIP (yet) exists with no address: NODATA, as CoreDNS answers.
        for port in ports {
            targets.extend(service.cluster_ips.iter().map(|ip| Target {
                ip: *ip,
                port,
                name: service_name.clone(),
            }));
        }
        Lookup::Found(targets)
    }
}

fn strip_underscore(label: &str) -> &str {
    label.strip_prefix('_').unwrap_or(label)
}

enum Lookup {
    NxDomain,
    /// The zone itself, `svc`, `pod` or a namespace: the name exists, with no address.
    Apex,
    Found(Vec<Target>),
}

/// One address behind a name, with the port an SRV record gives and the name the SRV record points at.
struct Target {
    ip: Ipv4Addr,
    port: Option<u16>,
    name: String,
}

fn records(targets: Vec<Target>, qtype: u16) -> Answer {
    let mut answer = Answer::negative(Rcode::NoError);
    answer.authority.clear();
    match qtype {
        TYPE_A | TYPE_ANY => {
            let mut seen = BTreeSet::new();
            for target in &targets {
                if seen.insert(target.ip) {
                    answer.answers.push(Record {
                        name: None,
                        ttl: TTL,
                        data: Data::A(target.ip),
                    });
                }
            }
        }
        TYPE_SRV => {
            let with_ports: Vec<&Target> = targets.iter().filter(|t| t.port.is_some()).collect();
            // CoreDNS: priority 0 for all, weights sharing 100 (floor(100 / count)).
            let weight = u16::try_from(100 / with_ports.len().max(1)).unwrap_or(1).max(1);
            let mut seen = BTreeSet::new();
            for target in with_ports {
                answer.answers.push(Record {
                    name: None,
                    ttl: TTL,
                    data: Data::Srv {
                        priority: 0,
                        weight,
                        port: target.port.unwrap_or_default(),
                        target: target.name.clone(),
                    },
                });
                if seen.insert((target.name.clone(), target.ip)) {
                    answer.additional.push(Record {
                        name: Some(target.name.clone()),
                        ttl: TTL,
                        data: Data::A(target.ip),
                    });
                }
            }
        }
        _ => {}
    }
    if answer.answers.is_empty() {
        // NODATA (AAAA for an IPv4-only cluster, a Service without a ClusterIP): the SOA tells for how long.
        answer.authority.push(soa(Some(CLUSTER_DOMAIN.to_string())));
    }
    answer
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cluster() -> Cluster {
        let namespaces = [
            json!({ "metadata": { "name": "database" } }),
            json!({ "metadata": { "name": "default" } }),
        ];
        let services = [
            json!({ "metadata": { "namespace": "database", "name": "mysql-headless" },
                    "spec": { "clusterIP": "None", "ports": [{ "name": "mysql", "port": 3306 }] } }),
            json!({ "metadata": { "namespace": "database", "name": "mysql-primary" },
                    "spec": { "clusterIP": "10.96.12.34", "ports": [{ "name": "mysql", "port": 3306 }] } }),
            json!({ "metadata": { "namespace": "database", "name": "no-ip-yet" },
                    "spec": { "ports": [{ "port": 3306 }] } }),
            json!({ "metadata": { "namespace": "database", "name": "empty-headless" },
                    "spec": { "clusterIP": "None", "ports": [{ "port": 3306 }] } }),
        ];
        let endpoints = [json!({
            "metadata": { "namespace": "database", "name": "mysql-headless" },
            "subsets": [{
                "addresses": [
                    { "ip": "10.244.0.2", "hostname": "mysql-0" },
                    { "ip": "10.244.0.3", "hostname": "mysql-1" },
                    { "ip": "10.244.0.9" },
                ],
                "notReadyAddresses": [{ "ip": "10.244.0.4", "hostname": "mysql-2" }],
                "ports": [{ "name": "mysql", "port": 3306, "protocol": "TCP" }],
            }],
        })];
        Cluster::from_objects(&namespaces, &services, &endpoints)
    }

    fn addresses(answer: &Answer) -> Vec<String> {
        answer
            .answers
            .iter()
            .map(|r| match &r.data {
                Data::A(ip) => ip.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn per_pod_names_of_a_headless_service_answer_that_pod_only() {
        let answer = cluster().answer("mysql-0.mysql-headless.database.svc.cluster.local.", TYPE_A);
        assert_eq!(
            (answer.rcode, addresses(&answer)),
            (Rcode::NoError, vec!["10.244.0.2".into()])
        );
        assert!(answer.authoritative);
        // Case-insensitive, and an endpoint without hostname goes by its dashed address.
        let answer = cluster().answer("MYSQL-1.Mysql-Headless.database.svc.cluster.local", TYPE_A);
        assert_eq!(addresses(&answer), vec!["10.244.0.3"]);
        let answer = cluster().answer("10-244-0-9.mysql-headless.database.svc.cluster.local", TYPE_A);
        assert_eq!(addresses(&answer), vec!["10.244.0.9"]);
        // Not ready: not published.
        let answer = cluster().answer("mysql-2.mysql-headless.database.svc.cluster.local", TYPE_A);
        assert_eq!(answer.rcode, Rcode::NxDomain);
        assert_eq!(answer.authority[0].data.type_code(), TYPE_SOA);
    }

    #[test]
    fn a_headless_service_name_answers_every_ready_address_and_nothing_without_one() {
        let answer = cluster().answer("mysql-headless.database.svc.cluster.local", TYPE_A);
        assert_eq!(addresses(&answer), vec!["10.244.0.2", "10.244.0.3", "10.244.0.9"]);
        let empty = cluster().answer("empty-headless.database.svc.cluster.local", TYPE_A);
        assert_eq!(empty.rcode, Rcode::NxDomain);
    }

    #[test]
    fn a_service_name_answers_its_cluster_ip_and_nodata_without_one() {
        let answer = cluster().answer("mysql-primary.database.svc.cluster.local", TYPE_A);
        assert_eq!(addresses(&answer), vec!["10.96.12.34"]);
        let answer = cluster().answer("no-ip-yet.database.svc.cluster.local", TYPE_A);
        assert_eq!((answer.rcode, answer.answers.len()), (Rcode::NoError, 0));
        assert_eq!(answer.authority.len(), 1);
    }

    #[test]
    fn aaaa_of_an_existing_name_is_nodata_not_nxdomain() {
        let answer = cluster().answer("mysql-0.mysql-headless.database.svc.cluster.local", TYPE_AAAA);
        assert_eq!((answer.rcode, answer.answers.len()), (Rcode::NoError, 0));
    }

    #[test]
    fn srv_records_name_each_endpoint_with_the_named_port_and_its_address() {
        let answer = cluster().answer("_mysql._tcp.mysql-headless.database.svc.cluster.local", TYPE_SRV);
        assert_eq!(answer.rcode, Rcode::NoError);
        assert_eq!(
            answer.answers[0].data,
            Data::Srv {
                priority: 0,
                weight: 33,
                port: 3306,
                target: "mysql-0.mysql-headless.database.svc.cluster.local".into()
            }
        );
        assert_eq!(answer.answers.len(), 3);
        assert_eq!(
            answer.additional[1],
            Record {
                name: Some("mysql-1.mysql-headless.database.svc.cluster.local".into()),
                ttl: TTL,
                data: Data::A("10.244.0.3".parse().expect("ip")),
            }
        );
        let service = cluster().answer("_mysql._tcp.mysql-primary.database.svc.cluster.local", TYPE_SRV);
        assert!(
            matches!(&service.answers[0].data, Data::Srv { weight: 100, port: 3306, target, .. }
            if target == "mysql-primary.database.svc.cluster.local")
        );
        let wrong_port = cluster().answer("_http._tcp.mysql-headless.database.svc.cluster.local", TYPE_SRV);
        assert_eq!(wrong_port.rcode, Rcode::NxDomain);
        let wrong_protocol = cluster().answer("_mysql._udp.mysql-headless.database.svc.cluster.local", TYPE_SRV);
        assert_eq!(wrong_protocol.rcode, Rcode::NxDomain);
    }

    #[test]
    fn missing_names_in_the_cluster_domain_are_nxdomain_and_others_refused() {
        for name in [
            "missing.database.svc.cluster.local",
            "mysql-0.missing.database.svc.cluster.local",
            "mysql-headless.nowhere.svc.cluster.local",
            "mysql-headless.database.cluster.local",
            "a.b.c.mysql-headless.database.svc.cluster.local",
            // What a search list tries first for `mysql-primary.database`.
            "mysql-primary.database.database.svc.cluster.local",
        ] {
            assert_eq!(cluster().answer(name, TYPE_A).rcode, Rcode::NxDomain, "{name}");
        }
        for name in ["example.com", "cluster.local.example.com", "2.0.244.10.in-addr.arpa"] {
            assert_eq!(cluster().answer(name, TYPE_A), Answer::refused(), "{name}");
        }
        // Names that exist without addresses: NODATA.
        for name in ["cluster.local", "svc.cluster.local", "database.svc.cluster.local"] {
            let answer = cluster().answer(name, TYPE_A);
            assert_eq!((answer.rcode, answer.answers.len()), (Rcode::NoError, 0), "{name}");
        }
        assert_eq!(cluster().answer("cluster.local", TYPE_SOA).answers.len(), 1);
    }

    #[test]
    fn dashed_pod_addresses_resolve_as_written() {
        let answer = cluster().answer("10-244-0-7.database.pod.cluster.local", TYPE_A);
        assert_eq!(addresses(&answer), vec!["10.244.0.7"]);
        assert_eq!(
            cluster().answer("10-244-0.database.pod.cluster.local", TYPE_A).rcode,
            Rcode::NxDomain
        );
    }
}
