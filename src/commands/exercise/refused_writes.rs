//! `refused-writes` (tutorial sections 3 and 7): someone pointed `mysql-primary` at a replica (say, while trying a
//! failover by hand, and never put it back). Every write through the Service now lands on a read-only replica and
//! is refused with error 1290 (ER_OPTION_PREVENTS_STATEMENT) on both flavours; the message differs: MySQL names
//! `--super-read-only` (lab sets super_read_only on MySQL replicas), MariaDB `--read-only` (root has READ ONLY ADMIN
//! revoked there, or `read_only=NO_LOCK_NO_ADMIN` on 12.0+; see the README's health report section). Reads still
//! work, which makes it look like a permissions problem.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::{Exercise, Lab};
use crate::commands::PRIMARY_POD;

const SERVICE: &str = "mysql-primary";
/// The label every StatefulSet pod carries with its own name.
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

pub struct RefusedWrites;

impl Exercise for RefusedWrites {
    fn name(&self) -> &'static str {
        "refused-writes"
    }

    fn title(&self) -> &'static str {
        "the application can read but every write is refused"
    }

    fn section(&self) -> &'static str {
        "3, 7"
    }

    fn symptom(&self) -> &'static str {
        "\"our application connects to mysql-primary as always; reads work, but every INSERT fails with ERROR 1290: \
         the server is running with a read-only option\""
    }

    fn hints(&self) -> &'static [&'static str] {
        &[
            "Which server answers on mysql-primary? From the client pod: `SELECT @@server_id, @@read_only` through \
             -h mysql-primary, and compare with each pod.",
            "A Service sends connections to the pods its selector matches: `kubectl get endpoints mysql-primary` and \
             `kubectl get service mysql-primary -o yaml`. Which pod does it choose, and by which label?",
            "mysql-primary must select only the primary, by the label every StatefulSet pod has with its own name: \
             `kubectl set selector service mysql-primary statefulset.kubernetes.io/pod-name=mysql-0`.",
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

fn selecting(pod: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(POD_NAME_LABEL.to_string(), pod.to_string())])
}

/// Pure: what a user sees of these endpoints.
pub fn write_symptoms(endpoints: Option<&[String]>) -> Vec<String> {
    match endpoints {
        None => vec![format!("connections to {SERVICE} fail: the name does not resolve")],
        Some([only]) if only == PRIMARY_POD => Vec::new(),
        Some([]) => vec![format!("connections to {SERVICE} are refused")],
        Some(pods) if pods.iter().any(|p| p == PRIMARY_POD) => {
            vec![format!(
                "writes through {SERVICE} sometimes fail with error 1290 (read-only)"
            )]
        }
        Some(_) => vec![format!(
            "every write through {SERVICE} fails with error 1290 (read-only)"
        )],
    }
}

async fn start(lab: &Lab<'_>) -> anyhow::Result<()> {
    let replica = crate::commands::pod_name(1);
    lab.cluster
        .set_service_selector(lab.namespace, SERVICE, &selecting(&replica))
        .await?;
    lab.wait_endpoints(SERVICE, |pods| pods == [replica.clone()]).await?;
    Ok(())
}

async fn goal(lab: &Lab<'_>) -> anyhow::Result<Vec<String>> {
    Ok(write_symptoms(lab.endpoints(SERVICE).await?.as_deref()))
}

async fn solve(lab: &Lab<'_>) -> anyhow::Result<()> {
    lab.ran(lab.kubectl(&format!(
        "set selector service {SERVICE} {POD_NAME_LABEL}={PRIMARY_POD}"
    )));
    lab.cluster
        .set_service_selector(lab.namespace, SERVICE, &selecting(PRIMARY_POD))
        .await?;
    lab.wait_endpoints(SERVICE, |pods| pods == [PRIMARY_POD.to_string()])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_the_primary_behind_mysql_primary_takes_writes() {
        assert!(write_symptoms(Some(&pods(&["mysql-0"]))).is_empty());
        assert!(write_symptoms(Some(&pods(&["mysql-1"])))[0].contains("every write"));
        assert!(write_symptoms(Some(&pods(&["mysql-0", "mysql-1"])))[0].contains("sometimes"));
        assert!(write_symptoms(Some(&[]))[0].contains("refused"));
        assert!(write_symptoms(None)[0].contains("does not resolve"));
    }
}
