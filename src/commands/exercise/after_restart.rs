//! `after-restart` (tutorial sections 3 and 6C): the headless Service was re-created under another name
//! (`mysql-hl`, "a shorter name"), the same selector and ports. Nothing breaks at once: replicas keep their open
//! connections. A pod's per-pod DNS name `<pod>.<serviceName>` exists only while a headless Service whose name is
//! the pod's subdomain (the StatefulSet's `serviceName`, `mysql-headless`) selects it: the endpoints controller
//! gives an endpoint a hostname only when the pod's `spec.subdomain` equals the Service's name, and CoreDNS answers
//! `<hostname>.<service>` from those hostnames. So `mysql-0.mysql-headless` no longer resolves, and neither does
//! `mysql-0.mysql-hl`. When mysql-1 restarts, its IO thread cannot resolve its source and stays `Connecting` with
//! error 2005 (unknown host), retrying for ever. A StatefulSet's `serviceName` cannot be changed, so the fix is
//! the Service: `mysql-headless` back, `mysql-hl` removed.
//!
//! MySQL and MariaDB: both report client error 2005 (CR_UNKNOWN_HOST: "Unknown MySQL server host" / "Unknown server
//! host") and keep the IO thread `Connecting`; lab sets SOURCE_RETRY_COUNT=0 on MySQL, so 8.4 does not stop it
//! after 10 attempts (mysql-notes 13).

use futures::future::BoxFuture;
use kube::api::DynamicObject;

use super::replica_errors::wait_for_error;
use super::{Exercise, Lab};
use crate::commands::demo;
use crate::commands::{HEADLESS_SERVICE, pod_name};
use crate::database::ReplicationThread;
use crate::manifests::ManifestSet;

/// The name the careless re-creation gives the headless Service.
pub const RENAMED: &str = "mysql-hl";
/// The IO error of a replica whose source's name does not resolve (CR_UNKNOWN_HOST on both flavours).
pub const UNKNOWN_HOST: u32 = 2005;
use crate::commands::{CLIENT_CONTAINER, CLIENT_POD};

pub struct AfterRestart;

impl Exercise for AfterRestart {
    fn name(&self) -> &'static str {
        "after-restart"
    }

    fn title(&self) -> &'static str {
        "after a restart the replica never catches up, and the tutorial's nslookup fails"
    }

    fn section(&self) -> &'static str {
        "3, 6C"
    }

    fn symptom(&self) -> &'static str {
        "\"after mysql-1 restarted it never caught up; `nslookup mysql-0.mysql-headless` fails from the client pod \
         (it worked last week, and nobody touched the StatefulSet)\""
    }

    fn hints(&self) -> &'static [&'static str] {
        &[
            "Look at mysql-1's replication status: which host does it replicate from (Master_Host / Source_Host), and \
             what is its last IO error?",
            "Error 2005 means that name does not resolve. Try the tutorial's check from the client pod \
             (`kubectl exec -it mysql-client -- nslookup mysql-0.mysql-headless`). Which Services exist now \
             (`kubectl get svc`), and which one does the StatefulSet name as its `serviceName` \
             (`kubectl get statefulset mysql -o jsonpath='{.spec.serviceName}'`)?",
            "A pod's name <pod>.<serviceName> exists only while a headless Service with exactly the StatefulSet's \
             serviceName selects it; serviceName itself cannot be changed. The headless Service was re-created as \
             mysql-hl: create mysql-headless again (`lab up` applies it; or `kubectl get svc mysql-hl -o yaml`, \
             renamed, without uid and clusterIPs), then `kubectl delete svc mysql-hl`. The replica reconnects within \
             seconds.",
        ]
    }

    fn start<'a>(&'a self, lab: &'a Lab<'a>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(start(lab))
    }

    fn goal<'a>(&'a self, lab: &'a Lab<'a>) -> BoxFuture<'a, anyhow::Result<Vec<String>>> {
        Box::pin(goal(lab))
    }

    fn solve<'a>(&'a self, lab: &'a Lab<'a>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(solve(lab))
    }
}

/// The lab's headless Service as the built-in manifests declare it, in the lab's namespace.
fn headless_service(namespace: &str) -> anyhow::Result<DynamicObject> {
    let set = ManifestSet::embedded().with_namespace(namespace)?;
    set.objects()
        .find(|o| is_service(o) && o.metadata.name.as_deref() == Some(HEADLESS_SERVICE))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the built-in manifests have no Service {HEADLESS_SERVICE} (a bug in lab)"))
}

fn is_service(object: &DynamicObject) -> bool {
    object.types.as_ref().is_some_and(|t| t.kind == "Service")
}

/// Pure: the same Service under another name (what `kubectl get svc -o yaml | sed s/NAME/NEW/ | kubectl apply`
/// makes of it).
pub fn renamed(service: &DynamicObject, name: &str) -> DynamicObject {
    let mut copy = service.clone();
    copy.metadata.name = Some(name.to_string());
    copy
}

async fn start(lab: &Lab<'_>) -> anyhow::Result<()> {
    let service = headless_service(lab.namespace)?;
    lab.cluster.apply(lab.namespace, &[renamed(&service, RENAMED)]).await?;
    lab.cluster.delete_service(lab.namespace, HEADLESS_SERVICE).await?;
    // The fault shows when a replica reconnects: mysql-1 restarts, as pods do (a node drained, an upgrade).
    let pod = pod_name(1);
    let uid = lab.cluster.pod_identity(lab.namespace, &pod).await?.map(|p| p.uid);
    lab.cluster.delete_pod(lab.namespace, &pod).await?;
    if let Some(uid) = uid {
        lab.cluster
            .wait_pods_gone(lab.namespace, &[(pod.clone(), uid)], lab.deadline)
            .await?;
    }
    lab.cluster
        .wait_pod_ready(lab.namespace, &pod, lab.deadline, &|_| {})
        .await?;
    // The StatefulSet re-creates the pod without the role label lab sets: put it back, so that the one fault left
    // is the one this exercise is about.
    let base: &demo::Lab = lab;
    base.restore_role_labels().await?;
    let mut replica = lab.session(&pod).await?;
    wait_for_error(&mut replica, (ReplicationThread::Io, UNKNOWN_HOST), lab.deadline).await?;
    replica.close().await;
    Ok(())
}

async fn goal(lab: &Lab<'_>) -> anyhow::Result<Vec<String>> {
    let mut symptoms = Vec::new();
    for ordinal in 0..lab.pods {
        let name = format!("{}.{HEADLESS_SERVICE}", pod_name(ordinal));
        let output = lab
            .cluster
            .exec(lab.namespace, CLIENT_POD, CLIENT_CONTAINER, &["nslookup", &name], "")
            .await?;
        if !resolved(output.success, &output.stdout) {
            symptoms.push(format!("`nslookup {name}` fails from the client pod"));
        }
    }
    Ok(symptoms)
}

/// Pure: `nslookup` found the name: it succeeded and printed an answer address (not only its server's, which
/// carries `#53`).
pub fn resolved(success: bool, stdout: &str) -> bool {
    success && !crate::commands::demo::dns::parse_nslookup(stdout).is_empty()
}

async fn solve(lab: &Lab<'_>) -> anyhow::Result<()> {
    let service = headless_service(lab.namespace)?;
    lab.ran(lab.kubectl("apply -f manifests/01-headless-service.yaml   # the Service mysql-headless"));
    lab.cluster.apply(lab.namespace, &[service]).await?;
    lab.ran(lab.kubectl(&format!("delete service {RENAMED}")));
    lab.cluster.delete_service(lab.namespace, RENAMED).await?;
    lab.restore_role_labels().await?;
    // The replicas retry every few seconds (CONNECT_RETRY); wait until each runs again.
    for ordinal in 1..lab.pods {
        let mut replica = lab.session(&pod_name(ordinal)).await?;
        replica.db.wait_replication_running(lab.deadline).await?;
        replica.close().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_careless_copy_is_the_lab_s_headless_service_under_another_name() {
        let service = headless_service("student-1").expect("the built-in manifests have it");
        let copy = renamed(&service, RENAMED);
        assert_eq!(copy.metadata.name.as_deref(), Some("mysql-hl"));
        assert_eq!(copy.metadata.namespace.as_deref(), Some("student-1"));
        assert_eq!(copy.data["spec"]["clusterIP"], "None", "still headless");
        assert_eq!(copy.data["spec"], service.data["spec"], "same selector and ports");
        assert_eq!(service.metadata.name.as_deref(), Some(HEADLESS_SERVICE));
    }

    #[test]
    fn a_lookup_counts_only_with_an_answer_address() {
        let found = "Server:\t\t10.244.0.1\nAddress:\t10.244.0.1#53\n\nName:\tmysql-0.mysql-headless.database.svc.cluster.local\nAddress: 10.244.0.2\n";
        assert!(resolved(true, found));
        let failed =
            "Server:\t\t10.244.0.1\nAddress:\t10.244.0.1#53\n\n** server can't find mysql-0.mysql-headless: NXDOMAIN\n";
        assert!(!resolved(false, failed));
        assert!(
            !resolved(true, "Server:\t\t10.244.0.1\nAddress:\t10.244.0.1#53\n"),
            "only the server's address"
        );
        assert_eq!(UNKNOWN_HOST, 2005);
    }
}
