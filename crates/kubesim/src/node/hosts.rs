//! The pods' hosts files: the kubelet's own entries plus the names cluster DNS would answer (pods of headless
//! Services, Services), rendered from the stored pods and Services.

use std::collections::BTreeMap;

use serde_json::Value;

const CLUSTER_DOMAIN: &str = "cluster.local";

/// What the hosts file needs to know about one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEntry {
    pub namespace: String,
    pub name: String,
    pub hostname: String,
    pub subdomain: Option<String>,
    pub ip: Option<String>,
    pub ready: bool,
    pub labels: BTreeMap<String, String>,
}

/// What the hosts file needs to know about one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub namespace: String,
    pub name: String,
    pub headless: bool,
    pub selector: Option<BTreeMap<String, String>>,
    pub publish_not_ready: bool,
}

fn labels(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl PodEntry {
    pub fn from_object(pod: &Value) -> PodEntry {
        let text = |pointer: &str| pod.pointer(pointer).and_then(Value::as_str).map(str::to_string);
        let name = text("/metadata/name").unwrap_or_default();
        let ready = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|conditions| conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        PodEntry {
            namespace: text("/metadata/namespace").unwrap_or_default(),
            hostname: text("/spec/hostname")
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| name.clone()),
            name,
            subdomain: text("/spec/subdomain").filter(|s| !s.is_empty()),
            ip: text("/status/podIP").filter(|ip| !ip.is_empty()),
            ready: ready && pod.pointer("/metadata/deletionTimestamp").is_none(),
            labels: labels(pod.pointer("/metadata/labels")),
        }
    }
}

impl ServiceEntry {
    pub fn from_object(service: &Value) -> ServiceEntry {
        let text = |pointer: &str| service.pointer(pointer).and_then(Value::as_str).map(str::to_string);
        ServiceEntry {
            namespace: text("/metadata/namespace").unwrap_or_default(),
            name: text("/metadata/name").unwrap_or_default(),
            headless: text("/spec/clusterIP").as_deref() == Some("None"),
            selector: service
                .pointer("/spec/selector")
                .map(|s| labels(Some(s)))
                .filter(|s| !s.is_empty()),
            publish_not_ready: service
                .pointer("/spec/publishNotReadyAddresses")
                .and_then(Value::as_bool)
                == Some(true),
        }
    }

    fn selects(&self, pod: &PodEntry) -> bool {
        pod.namespace == self.namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|selector| selector.iter().all(|(key, value)| pod.labels.get(key) == Some(value)))
    }

    /// Selected pods with an address that DNS would publish, primary first, then by name.
    fn published<'a>(&self, pods: &'a [PodEntry]) -> Vec<&'a PodEntry> {
        let mut selected: Vec<&PodEntry> = pods
            .iter()
            .filter(|pod| self.selects(pod) && pod.ip.is_some() && (pod.ready || self.publish_not_ready))
            .collect();
        selected.sort_by_key(|pod| {
            let primary = pod.labels.get("lab.dev/role").map(String::as_str) == Some("primary");
            (!primary, ordinal_key(&pod.name))
        });
        selected
    }
}

/// Sorts `mysql-2` before `mysql-10`.
fn ordinal_key(name: &str) -> (String, u64) {
    match name.rsplit_once('-') {
        Some((base, ordinal)) if ordinal.parse::<u64>().is_ok() => (base.to_string(), ordinal.parse().unwrap_or(0)),
        _ => (name.to_string(), 0),
    }
}

/// The hosts file of `own` (the pod whose file it is) given every pod and Service of the cluster.
pub fn render(own: &PodEntry, pods: &[PodEntry], services: &[ServiceEntry]) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = &own.ip {
        match &own.subdomain {
            Some(subdomain) => out.push_str(&format!(
                "{ip}\t{}.{subdomain}.{}.svc.{CLUSTER_DOMAIN}\t{}\n",
                own.hostname, own.namespace, own.hostname
            )),
            None => out.push_str(&format!("{ip}\t{}\n", own.hostname)),
        }
    }
    out.push_str("\n# Cluster DNS.\n");
    for service in services {
        let same_namespace = service.namespace == own.namespace;
        let fqdn = format!("{}.{}.svc.{CLUSTER_DOMAIN}", service.name, service.namespace);
        let mut names = vec![
            fqdn,
            format!("{}.{}.svc", service.name, service.namespace),
            format!("{}.{}", service.name, service.namespace),
        ];
        if same_namespace {
            names.push(service.name.clone());
        }
        let published = service.published(pods);
        if service.headless {
            for pod in &published {
                if let Some(ip) = &pod.ip {
                    out.push_str(&format!("{ip}\t{}\n", names.join("\t")));
                }
            }
            // Per-pod records: pods whose subdomain is this headless Service.
            for pod in published
                .iter()
                .filter(|pod| pod.subdomain.as_deref() == Some(service.name.as_str()))
            {
                let Some(ip) = &pod.ip else { continue };
                let mut pod_names = vec![
                    format!(
                        "{}.{}.{}.svc.{CLUSTER_DOMAIN}",
                        pod.hostname, service.name, service.namespace
                    ),
                    format!("{}.{}.{}.svc", pod.hostname, service.name, service.namespace),
                ];
                if same_namespace {
                    pod_names.push(format!("{}.{}", pod.hostname, service.name));
                }
                out.push_str(&format!("{ip}\t{}\n", pod_names.join("\t")));
            }
        } else if let Some(ip) = published.first().and_then(|pod| pod.ip.as_ref()) {
            out.push_str(&format!("{ip}\t{}\n", names.join("\t")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str, ready: bool, role: Option<&str>) -> PodEntry {
        let mut labels = BTreeMap::from([("app".to_string(), "mysql".to_string())]);
        labels.insert("statefulset.kubernetes.io/pod-name".into(), name.into());
        if let Some(role) = role {
            labels.insert("lab.dev/role".into(), role.into());
        }
        PodEntry {
            namespace: "database".into(),
            name: name.into(),
            hostname: name.into(),
            subdomain: Some("mysql-headless".into()),
            ip: Some(ip.into()),
            ready,
            labels,
        }
    }

    fn service(name: &str, headless: bool, selector: &[(&str, &str)]) -> ServiceEntry {
        ServiceEntry {
            namespace: "database".into(),
            name: name.into(),
            headless,
            selector: Some(selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            publish_not_ready: false,
        }
    }

    #[test]
    fn headless_service_gives_per_pod_names_for_ready_pods_only() {
        let pods = vec![
            pod("mysql-0", "10.244.0.2", true, None),
            pod("mysql-1", "10.244.0.3", false, None),
        ];
        let services = vec![service("mysql-headless", true, &[("app", "mysql")])];
        let hosts = render(&pods[1], &pods, &services);
        assert!(hosts.contains(
            "10.244.0.2\tmysql-0.mysql-headless.database.svc.cluster.local\tmysql-0.mysql-headless.database.svc\tmysql-0.mysql-headless\n"
        ));
        assert!(
            hosts.contains("10.244.0.3\tmysql-1.mysql-headless.database.svc.cluster.local\tmysql-1\n"),
            "{hosts}"
        );
        assert!(
            !hosts.contains("10.244.0.3\tmysql-1.mysql-headless.database.svc.cluster.local\tmysql-1.mysql-headless")
        );
        assert!(hosts.contains("10.244.0.2\tmysql-headless.database.svc.cluster.local\tmysql-headless.database.svc\tmysql-headless.database\tmysql-headless\n"));
    }

    #[test]
    fn cluster_ip_service_resolves_to_one_ready_pod_primary_first() {
        let pods = vec![
            pod("mysql-0", "10.244.0.2", true, Some("replica")),
            pod("mysql-1", "10.244.0.3", true, Some("primary")),
        ];
        let services = vec![service("mysql-replicas", false, &[("app", "mysql")])];
        let hosts = render(&pods[0], &pods, &services);
        assert!(hosts.contains("10.244.0.3\tmysql-replicas.database.svc.cluster.local\t"));
        assert!(!hosts.contains("10.244.0.2\tmysql-replicas"));
    }

    #[test]
    fn short_service_names_only_in_the_pods_namespace() {
        let pods = vec![pod("mysql-0", "10.244.0.2", true, None)];
        let mut other = pods[0].clone();
        other.namespace = "other".into();
        other.subdomain = None;
        let services = vec![service(
            "mysql-primary",
            false,
            &[("statefulset.kubernetes.io/pod-name", "mysql-0")],
        )];
        let hosts = render(&other, &pods, &services);
        assert!(hosts.contains(
            "10.244.0.2\tmysql-primary.database.svc.cluster.local\tmysql-primary.database.svc\tmysql-primary.database\n"
        ));
        assert!(hosts.contains("10.244.0.2\tmysql-0\n"));
    }

    #[test]
    fn no_ready_pod_no_service_name() {
        let pods = vec![pod("mysql-0", "10.244.0.2", false, None)];
        let services = vec![service("mysql-primary", false, &[("app", "mysql")])];
        assert!(!render(&pods[0], &pods, &services).contains("mysql-primary"));
    }
}
