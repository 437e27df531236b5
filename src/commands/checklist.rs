//! The tutorial's section 7 production checklist, as far as a program can check it: pure, from what the cluster and
//! the databases said. Each item is `ok`, `warning` or `not checked`, with one line of why. The checklist teaches;
//! it never changes the verdict (a lab with the tutorial's passwords and no NetworkPolicy is a working lab).

use super::{PRIMARY_POD, STATEFULSET};
use crate::cluster::Snapshot;
use crate::database::ReplicaStatus;
use crate::report::{CheckStatus, ChecklistItem, LAG_TOLERANCE_SECONDS};

const PRIMARY_SERVICE: &str = "mysql-primary";
const REPLICAS_SERVICE: &str = "mysql-replicas";

/// What the checklist needs beyond the snapshot.
#[derive(Debug, Default)]
pub struct ChecklistFacts<'a> {
    /// Replica pods and their replication status (`None`: not configured).
    pub replicas: &'a [(String, Option<ReplicaStatus>)],
    /// Whether the Secret still holds the tutorial's published passwords; `None` when it was not read.
    pub tutorial_passwords: Option<bool>,
}

pub fn checklist(namespace: &str, snapshot: &Snapshot, facts: &ChecklistFacts<'_>) -> Vec<ChecklistItem> {
    vec![
        headless_service(snapshot),
        primary_service(snapshot),
        replicas_service(snapshot),
        default_storage_class(snapshot),
        access_modes(snapshot),
        volume_expansion(snapshot),
        replication_delay(facts.replicas),
        restarts(snapshot),
        passwords(facts.tutorial_passwords),
        network_policy(namespace, snapshot),
        replication_tls(facts.replicas),
        backups(),
    ]
}

fn item(item: &str, status: CheckStatus, detail: impl Into<String>) -> ChecklistItem {
    ChecklistItem {
        item: item.to_string(),
        status,
        detail: detail.into(),
    }
}

fn headless_service(snapshot: &Snapshot) -> ChecklistItem {
    const ITEM: &str = "headless Service matches serviceName";
    let Some(name) = snapshot.statefulset.as_ref().and_then(|s| s.service_name.as_deref()) else {
        return item(
            ITEM,
            CheckStatus::NotChecked,
            format!("no StatefulSet {STATEFULSET} with a serviceName"),
        );
    };
    match snapshot.services.iter().find(|s| s.name == name) {
        None => item(
            ITEM,
            CheckStatus::Warning,
            format!("serviceName is {name}, but no Service {name} exists: the pods get no DNS names"),
        ),
        Some(service) if !service.headless => item(
            ITEM,
            CheckStatus::Warning,
            format!(
                "{name} has a ClusterIP: per-pod names like {PRIMARY_POD}.{name} do not resolve (set clusterIP: None)"
            ),
        ),
        Some(_) => item(
            ITEM,
            CheckStatus::Ok,
            format!("{name} is headless and the StatefulSet's serviceName: every pod has a stable DNS name"),
        ),
    }
}

fn primary_service(snapshot: &Snapshot) -> ChecklistItem {
    const ITEM: &str = "mysql-primary selects only the primary";
    match snapshot.services.iter().find(|s| s.name == PRIMARY_SERVICE) {
        None => item(
            ITEM,
            CheckStatus::Warning,
            format!("no Service {PRIMARY_SERVICE}: writes have no stable address"),
        ),
        Some(service) if service.endpoints == [PRIMARY_POD] => item(
            ITEM,
            CheckStatus::Ok,
            format!("routes to {PRIMARY_POD} alone: writes cannot land on a replica"),
        ),
        Some(service) => item(
            ITEM,
            CheckStatus::Warning,
            format!(
                "routes to {}: writes could land on a replica (misrouted writes are the tutorial's \"catastrophic\" case)",
                list_or_nothing(&service.endpoints)
            ),
        ),
    }
}

fn replicas_service(snapshot: &Snapshot) -> ChecklistItem {
    const ITEM: &str = "mysql-replicas excludes the primary";
    match snapshot.services.iter().find(|s| s.name == REPLICAS_SERVICE) {
        None => item(
            ITEM,
            CheckStatus::NotChecked,
            format!("no Service {REPLICAS_SERVICE} (it is optional)"),
        ),
        Some(service) if service.endpoints.iter().any(|e| e == PRIMARY_POD) => item(
            ITEM,
            CheckStatus::Warning,
            format!(
                "routes to {PRIMARY_POD} too: reads sent to replicas can reach the primary (the tutorial's selector)"
            ),
        ),
        Some(service) => item(
            ITEM,
            CheckStatus::Ok,
            format!(
                "routes to {}, never to {PRIMARY_POD}",
                list_or_nothing(&service.endpoints)
            ),
        ),
    }
}

fn default_storage_class(snapshot: &Snapshot) -> ChecklistItem {
    const ITEM: &str = "default StorageClass";
    match snapshot.storage_classes.iter().find(|c| c.default) {
        Some(class) => item(
            ITEM,
            CheckStatus::Ok,
            format!("{} is the default: claims without a class get it", class.name),
        ),
        None => item(
            ITEM,
            CheckStatus::Warning,
            "no default StorageClass: claims without a class stay Pending",
        ),
    }
}

fn access_modes(snapshot: &Snapshot) -> ChecklistItem {
    const ITEM: &str = "access modes";
    let claims: Vec<_> = snapshot.pvcs.iter().filter(|c| c.name.starts_with("data-")).collect();
    if claims.is_empty() {
        return item(ITEM, CheckStatus::NotChecked, "no data claims yet");
    }
    let shared: Vec<&str> = claims
        .iter()
        .filter(|c| {
            c.access_modes
                .iter()
                .any(|m| m != "ReadWriteOnce" && m != "ReadWriteOncePod")
        })
        .map(|c| c.name.as_str())
        .collect();
    if shared.is_empty() {
        item(
            ITEM,
            CheckStatus::Ok,
            "ReadWriteOnce: each server has a disk of its own, as block storage (EBS, persistent disks) allows",
        )
    } else {
        item(
            ITEM,
            CheckStatus::Warning,
            format!(
                "{} can be mounted by several nodes: two servers must never open the same data directory",
                shared.join(", ")
            ),
        )
    }
}

fn volume_expansion(snapshot: &Snapshot) -> ChecklistItem {
    const ITEM: &str = "volume expansion";
    let class_name = snapshot
        .pvcs
        .iter()
        .find(|c| c.name.starts_with("data-"))
        .and_then(|c| c.storage_class.clone())
        .or_else(|| {
            snapshot
                .storage_classes
                .iter()
                .find(|c| c.default)
                .map(|c| c.name.clone())
        });
    let Some(class) = class_name.and_then(|name| snapshot.storage_classes.iter().find(|c| c.name == name)) else {
        return item(
            ITEM,
            CheckStatus::NotChecked,
            "the data claims' StorageClass is not known",
        );
    };
    if class.allows_expansion {
        item(
            ITEM,
            CheckStatus::Ok,
            format!(
                "{} allows volume expansion: a full disk grows by raising the claim's request",
                class.name
            ),
        )
    } else {
        item(
            ITEM,
            CheckStatus::Warning,
            format!(
                "{} does not allow volume expansion: a full disk means moving the data to a new volume; size the \
                 claims for growth, or use a class with allowVolumeExpansion: true",
                class.name
            ),
        )
    }
}

fn replication_delay(replicas: &[(String, Option<ReplicaStatus>)]) -> ChecklistItem {
    const ITEM: &str = "replication delay";
    if replicas.is_empty() {
        return item(ITEM, CheckStatus::NotChecked, "no replica was read");
    }
    let mut worst = 0;
    let mut lagging = Vec::new();
    for (pod, status) in replicas {
        match status.as_ref().and_then(|s| s.seconds_behind) {
            None => lagging.push(format!("{pod} is not replicating (Seconds_Behind is NULL)")),
            Some(seconds) if seconds > LAG_TOLERANCE_SECONDS => lagging.push(format!("{pod} is {seconds}s behind")),
            Some(seconds) => worst = worst.max(seconds),
        }
    }
    if lagging.is_empty() {
        item(
            ITEM,
            CheckStatus::Ok,
            format!("at most {worst}s behind (alert above {LAG_TOLERANCE_SECONDS}s: Seconds_Behind_Source)"),
        )
    } else {
        item(ITEM, CheckStatus::Warning, lagging.join("; "))
    }
}

fn restarts(snapshot: &Snapshot) -> ChecklistItem {
    const ITEM: &str = "restarts";
    let restarted: Vec<String> = snapshot
        .pods
        .iter()
        .filter(|p| p.restarts > 0)
        .map(|p| format!("{} ({})", p.name, p.restarts))
        .collect();
    if restarted.is_empty() {
        item(ITEM, CheckStatus::Ok, "no container restarted")
    } else {
        item(
            ITEM,
            CheckStatus::Warning,
            format!(
                "restarted: {}; `kubectl logs --previous` shows why",
                restarted.join(", ")
            ),
        )
    }
}

fn passwords(tutorial_passwords: Option<bool>) -> ChecklistItem {
    const ITEM: &str = "Secret passwords";
    match tutorial_passwords {
        None => item(ITEM, CheckStatus::NotChecked, "the Secret was not read"),
        Some(true) => item(
            ITEM,
            CheckStatus::Warning,
            "the Secret still holds the tutorial's published passwords: fine in a classroom, never in production \
             (an external secret store, and rotation)",
        ),
        Some(false) => item(ITEM, CheckStatus::Ok, "the Secret's passwords are not the tutorial's"),
    }
}

fn network_policy(namespace: &str, snapshot: &Snapshot) -> ChecklistItem {
    const ITEM: &str = "NetworkPolicy";
    match &snapshot.network_policies {
        None => item(
            ITEM,
            CheckStatus::NotChecked,
            "the cluster does not serve the NetworkPolicy API",
        ),
        Some(policies) if policies.is_empty() => item(
            ITEM,
            CheckStatus::Warning,
            format!("no NetworkPolicy in namespace {namespace}: any pod in the cluster can connect to port 3306"),
        ),
        Some(policies) => item(
            ITEM,
            CheckStatus::Ok,
            format!(
                "{}: whether they restrict port 3306 is not checked (nor whether the network plugin enforces them)",
                policies.join(", ")
            ),
        ),
    }
}

fn replication_tls(replicas: &[(String, Option<ReplicaStatus>)]) -> ChecklistItem {
    const ITEM: &str = "replication TLS";
    let known: Vec<(&str, bool)> = replicas
        .iter()
        .filter_map(|(pod, status)| Some((pod.as_str(), status.as_ref()?.tls?)))
        .collect();
    if known.is_empty() {
        return item(ITEM, CheckStatus::NotChecked, "no replica reported its TLS setting");
    }
    let plain: Vec<&str> = known.iter().filter(|(_, tls)| !tls).map(|(pod, _)| *pod).collect();
    if plain.is_empty() {
        item(ITEM, CheckStatus::Ok, "every replica connects to the primary over TLS")
    } else {
        item(
            ITEM,
            CheckStatus::Warning,
            format!(
                "{} replicate{} without TLS: fine on a lab network; production sets SOURCE_SSL=1 with certificates",
                plain.join(", "),
                if plain.len() == 1 { "s" } else { "" }
            ),
        )
    }
}

fn backups() -> ChecklistItem {
    item(
        "backups and restore test",
        CheckStatus::NotChecked,
        "lab does not check backups: take one (mysqldump --single-transaction, or a volume snapshot) and test a restore",
    )
}

fn list_or_nothing(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{PvcSnapshot, ServiceSnapshot, StatefulSetSnapshot, StorageClassSnapshot};
    use crate::database::parse_replica_status;

    fn service(name: &str, endpoints: &[&str], headless: bool) -> ServiceSnapshot {
        ServiceSnapshot {
            name: name.into(),
            selector: Default::default(),
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            not_ready: vec![],
            headless,
        }
    }

    fn lab_on_kind() -> Snapshot {
        Snapshot {
            services: vec![
                service("mysql-headless", &["mysql-0", "mysql-1"], true),
                service("mysql-primary", &["mysql-0"], false),
                service("mysql-replicas", &["mysql-1"], false),
            ],
            pvcs: ["data-mysql-0", "data-mysql-1"]
                .iter()
                .map(|name| PvcSnapshot {
                    name: name.to_string(),
                    phase: "Bound".into(),
                    capacity: Some("5Gi".into()),
                    storage_class: Some("standard".into()),
                    access_modes: vec!["ReadWriteOnce".into()],
                })
                .collect(),
            statefulset: Some(StatefulSetSnapshot {
                name: "mysql".into(),
                replicas: 2,
                ready_replicas: 2,
                annotations: Default::default(),
                service_name: Some("mysql-headless".into()),
            }),
            storage_classes: vec![StorageClassSnapshot {
                name: "standard".into(),
                default: true,
                allows_expansion: false,
            }],
            network_policies: Some(vec![]),
            ..Snapshot::default()
        }
    }

    fn replica(lag: &str, tls: &str) -> Option<ReplicaStatus> {
        let column = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
        Some(parse_replica_status(&[
            column("Master_Host", "mysql-0.mysql-headless.database.svc.cluster.local"),
            column("Slave_IO_Running", "Yes"),
            column("Slave_SQL_Running", "Yes"),
            column("Seconds_Behind_Master", lag),
            column("Master_SSL_Allowed", tls),
        ]))
    }

    fn statuses(items: &[ChecklistItem]) -> Vec<(&str, &str)> {
        items.iter().map(|i| (i.item.as_str(), i.status.as_str())).collect()
    }

    #[test]
    fn the_lab_on_kind_passes_the_routing_and_storage_items_and_warns_where_a_classroom_differs_from_production() {
        let replicas = vec![("mysql-1".to_string(), replica("0", "No"))];
        let facts = ChecklistFacts {
            replicas: &replicas,
            tutorial_passwords: Some(true),
        };
        let items = checklist("database", &lab_on_kind(), &facts);
        assert_eq!(
            statuses(&items),
            [
                ("headless Service matches serviceName", "ok"),
                ("mysql-primary selects only the primary", "ok"),
                ("mysql-replicas excludes the primary", "ok"),
                ("default StorageClass", "ok"),
                ("access modes", "ok"),
                ("volume expansion", "warning"),
                ("replication delay", "ok"),
                ("restarts", "ok"),
                ("Secret passwords", "warning"),
                ("NetworkPolicy", "warning"),
                ("replication TLS", "warning"),
                ("backups and restore test", "not checked"),
            ]
        );
        assert_eq!(
            items[9].detail,
            "no NetworkPolicy in namespace database: any pod in the cluster can connect to port 3306"
        );
        assert!(
            !items.iter().any(|i| i.detail.contains("replpass")),
            "no password is printed"
        );
    }

    #[test]
    fn the_tutorials_mistakes_are_warnings_with_the_reason() {
        let mut snapshot = lab_on_kind();
        snapshot.services[0].headless = false;
        snapshot.services[2] = service("mysql-replicas", &["mysql-0", "mysql-1"], false);
        snapshot.storage_classes.clear();
        let replicas = vec![("mysql-1".to_string(), replica("12", "Yes"))];
        let facts = ChecklistFacts {
            replicas: &replicas,
            tutorial_passwords: Some(false),
        };
        let items = checklist("database", &snapshot, &facts);
        let find = |name: &str| items.iter().find(|i| i.item == name).unwrap();
        assert_eq!(
            find("headless Service matches serviceName").status,
            CheckStatus::Warning
        );
        assert!(
            find("headless Service matches serviceName")
                .detail
                .contains("set clusterIP: None")
        );
        assert_eq!(find("mysql-replicas excludes the primary").status, CheckStatus::Warning);
        assert_eq!(find("default StorageClass").status, CheckStatus::Warning);
        assert_eq!(find("replication delay").detail, "mysql-1 is 12s behind");
        assert_eq!(find("Secret passwords").status, CheckStatus::Ok);
        assert_eq!(find("replication TLS").status, CheckStatus::Ok);

        snapshot.statefulset.as_mut().unwrap().service_name = Some("mysql-hl".into());
        let items = checklist("database", &snapshot, &facts);
        assert_eq!(
            items[0].detail,
            "serviceName is mysql-hl, but no Service mysql-hl exists: the pods get no DNS names"
        );
    }

    #[test]
    fn what_cannot_be_known_is_not_checked_rather_than_guessed() {
        let items = checklist("database", &Snapshot::default(), &ChecklistFacts::default());
        let not_checked: Vec<&str> = items
            .iter()
            .filter(|i| i.status == CheckStatus::NotChecked)
            .map(|i| i.item.as_str())
            .collect();
        assert_eq!(
            not_checked,
            [
                "headless Service matches serviceName",
                "mysql-replicas excludes the primary",
                "access modes",
                "volume expansion",
                "replication delay",
                "Secret passwords",
                "NetworkPolicy",
                "replication TLS",
                "backups and restore test",
            ]
        );
    }
}
