//! `replica-reads` (tutorial sections 3 and 7): someone "fixed" `mysql-replicas` back to the tutorial's original
//! selector, `app: mysql`, a label every pod of the StatefulSet has: the Service now spreads "replica" reads over
//! the primary too. Reads sometimes see rows a lagging replica would not have yet, and a write sent there by mistake
//! sometimes succeeds (when it lands on the primary) and sometimes fails with 1290 (on a replica). The same on
//! MySQL and MariaDB: routing is Kubernetes', not the server's.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::{Exercise, Lab};
use crate::commands::{PRIMARY_POD, ROLE_LABEL};

const SERVICE: &str = "mysql-replicas";

pub struct ReplicaReads;

impl Exercise for ReplicaReads {
    fn name(&self) -> &'static str {
        "replica-reads"
    }

    fn title(&self) -> &'static str {
        "reads from mysql-replicas behave differently from one connection to the next"
    }

    fn section(&self) -> &'static str {
        "3, 7"
    }

    fn symptom(&self) -> &'static str {
        "\"reads from mysql-replicas sometimes return rows the replica should not have yet, and a write our report \
         job sent there by mistake sometimes succeeds and sometimes fails\""
    }

    fn hints(&self) -> &'static [&'static str] {
        &[
            "Connect through mysql-replicas a few times from the client pod and ask each server who it is: \
             `SELECT @@server_id, @@read_only`. Are they all replicas?",
            "A Service sends connections to the pods listed in its endpoints: `kubectl get endpoints mysql-replicas` \
             and `kubectl get pods --show-labels`. Which pod is there that should not be, and which labels chose it?",
            "The Service's selector (`kubectl get service mysql-replicas -o yaml`) must match only replicas: every \
             pod has app=mysql, only replicas have lab.dev/role=replica. Fix it with `kubectl set selector service \
             mysql-replicas app=mysql,lab.dev/role=replica`.",
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

/// The tutorial's original selector (its 05-service-replicas.yaml).
fn tutorial_selector() -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), "mysql".to_string())])
}

/// lab's selector: replicas only (manifests/05-service-replicas.yaml).
fn replica_selector() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_string(), "mysql".to_string()),
        (ROLE_LABEL.to_string(), "replica".to_string()),
    ])
}

/// Pure: what a user sees of these endpoints.
pub fn routing_symptoms(endpoints: Option<&[String]>, replicas: u32) -> Vec<String> {
    let Some(endpoints) = endpoints else {
        return vec![format!("connections to {SERVICE} fail: the name does not resolve")];
    };
    let mut symptoms = Vec::new();
    if endpoints.iter().any(|p| p == PRIMARY_POD) {
        symptoms.push(format!(
            "reads from {SERVICE} sometimes return rows the replica should not have, and writes sent there sometimes \
             succeed"
        ));
    }
    let reached = endpoints.iter().filter(|p| *p != PRIMARY_POD).count();
    if reached < replicas as usize {
        symptoms.push(format!("{SERVICE} does not spread reads over every replica"));
    }
    symptoms
}

async fn start(lab: &Lab<'_>) -> anyhow::Result<()> {
    lab.cluster
        .set_service_selector(lab.namespace, SERVICE, &tutorial_selector())
        .await?;
    lab.wait_endpoints(SERVICE, |pods| pods.iter().any(|p| p == PRIMARY_POD))
        .await?;
    Ok(())
}

async fn goal(lab: &Lab<'_>) -> anyhow::Result<Vec<String>> {
    let endpoints = lab.endpoints(SERVICE).await?;
    Ok(routing_symptoms(endpoints.as_deref(), lab.pods - 1))
}

async fn solve(lab: &Lab<'_>) -> anyhow::Result<()> {
    lab.restore_role_labels().await?;
    let selector = replica_selector_text();
    lab.ran(lab.kubectl(&format!("set selector service {SERVICE} {selector}")));
    lab.cluster
        .set_service_selector(lab.namespace, SERVICE, &replica_selector())
        .await?;
    let replicas = lab.pods as usize - 1;
    lab.wait_endpoints(SERVICE, |pods| {
        !pods.iter().any(|p| p == PRIMARY_POD) && pods.len() == replicas
    })
    .await?;
    Ok(())
}

fn replica_selector_text() -> String {
    replica_selector()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_primary_behind_mysql_replicas_is_the_symptom_and_every_replica_must_be_reached() {
        assert!(routing_symptoms(Some(&pods(&["mysql-1", "mysql-2"])), 2).is_empty());
        let leaky = routing_symptoms(Some(&pods(&["mysql-0", "mysql-1"])), 1);
        assert_eq!(leaky.len(), 1, "{leaky:?}");
        assert!(leaky[0].contains("sometimes return rows"), "{leaky:?}");
        assert_eq!(
            routing_symptoms(Some(&pods(&["mysql-1"])), 2).len(),
            1,
            "a replica left out"
        );
        assert_eq!(routing_symptoms(None, 1).len(), 1, "the Service is gone");
        assert_eq!(replica_selector_text(), "app=mysql,lab.dev/role=replica");
    }
}
