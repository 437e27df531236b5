//! The pods' hosts files, as the kubelet writes them: the usual loopback entries and the pod's own name (its
//! fully qualified name too when it has a subdomain). Every other name comes from cluster DNS.

use serde_json::Value;

const CLUSTER_DOMAIN: &str = crate::dns::records::CLUSTER_DOMAIN;

/// What the hosts file needs to know about its pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEntry {
    pub namespace: String,
    pub hostname: String,
    pub subdomain: Option<String>,
    pub ip: Option<String>,
}

impl PodEntry {
    pub fn from_object(pod: &Value) -> PodEntry {
        let text = |pointer: &str| pod.pointer(pointer).and_then(Value::as_str).map(str::to_string);
        PodEntry {
            namespace: text("/metadata/namespace").unwrap_or_default(),
            hostname: text("/spec/hostname")
                .filter(|h| !h.is_empty())
                .or_else(|| text("/metadata/name"))
                .unwrap_or_default(),
            subdomain: text("/spec/subdomain").filter(|s| !s.is_empty()),
            ip: text("/status/podIP").filter(|ip| !ip.is_empty()),
        }
    }
}

/// The hosts file of `own`.
pub fn render(own: &PodEntry) -> String {
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
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_hosts_file_names_the_pod_itself_and_no_other() {
        let pod = json!({
            "metadata": { "namespace": "database", "name": "mysql-1" },
            "spec": { "hostname": "mysql-1", "subdomain": "mysql-headless" },
            "status": { "podIP": "10.244.0.3" },
        });
        let hosts = render(&PodEntry::from_object(&pod));
        assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(
            hosts.ends_with("\n10.244.0.3\tmysql-1.mysql-headless.database.svc.cluster.local\tmysql-1\n"),
            "{hosts}"
        );
        let client = json!({ "metadata": { "namespace": "database", "name": "mysql-client" },
                             "status": { "podIP": "10.244.0.4" } });
        assert!(render(&PodEntry::from_object(&client)).ends_with("\n10.244.0.4\tmysql-client\n"));
    }
}
