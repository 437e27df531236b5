//! `lab demo dns` (tutorial section 6C): from the client pod, real DNS queries (`nslookup`, as the tutorial types
//! them) for the per-pod names, the headless Service and the primary's Service, short and fully qualified; then a
//! pod deleted and its record following the new pod's address.

use std::collections::BTreeSet;

use tokio::time::Instant;

use super::{Lab, Narrator};
use crate::commands::{HEADLESS_SERVICE, pod_name};
use crate::exit::UsageError;

use crate::commands::{CLIENT_CONTAINER, CLIENT_POD};
const PRIMARY_SERVICE: &str = "mysql-primary";

pub async fn run(lab: &Lab<'_>, n: &mut Narrator) -> anyhow::Result<()> {
    if lab.pods < 2 {
        return Err(UsageError::new("demo dns needs a replica: run `lab up --replicas 2` first").into());
    }
    let mut pod_ips = Vec::new();
    for ordinal in 0..lab.pods {
        let pod = pod_name(ordinal);
        let ip = lab
            .cluster
            .pod_identity(lab.namespace, &pod)
            .await?
            .and_then(|identity| identity.ip)
            .unwrap_or_default();
        pod_ips.push((pod, ip));
    }
    let fqdn = |name: &str| format!("{name}.{}.svc.cluster.local", lab.namespace);

    n.step(
        "per-pod names through the headless Service",
        "a StatefulSet's pods get stable names <pod>.<serviceName>: the headless Service (clusterIP: None) answers \
         each one with that pod's own address. The short form works from any pod of the namespace through the \
         search path in its resolv.conf",
        &[
            lab.kubectl(&format!("exec -it {CLIENT_POD} -- sh")),
            format!("nslookup {}.{HEADLESS_SERVICE}", pod_ips[0].0),
            format!("nslookup {}", fqdn(&format!("{}.{HEADLESS_SERVICE}", pod_ips[1].0))),
        ],
    )
    .await;
    for (index, (pod, ip)) in pod_ips.iter().enumerate() {
        let short = format!("{pod}.{HEADLESS_SERVICE}");
        // The first pod by its short name, the others fully qualified: both forms are shown.
        let name = if index == 0 { short } else { fqdn(&short) };
        let answers = lookup(lab, &name).await?;
        let (observed, matched) = judge_exactly(&answers, std::slice::from_ref(ip));
        n.observe(
            &format!("nslookup {name}"),
            &format!("{ip} ({pod}'s own address)"),
            observed,
            None,
            matched,
        );
    }

    n.step(
        "the headless Service and the primary's Service",
        "the headless Service's own name answers every ready pod (no load balancing: the client picks); mysql-primary \
         is an ordinary Service: one virtual address (its ClusterIP), which forwards to mysql-0 whatever mysql-0's \
         address is",
        &[
            format!("nslookup {HEADLESS_SERVICE}"),
            format!("nslookup {PRIMARY_SERVICE}"),
        ],
    )
    .await;
    let all_ips: Vec<String> = pod_ips.iter().map(|(_, ip)| ip.clone()).collect();
    let headless = lookup(lab, HEADLESS_SERVICE).await?;
    let (observed, matched) = judge_exactly(&headless, &all_ips);
    n.observe(
        &format!("nslookup {HEADLESS_SERVICE}"),
        &format!("every pod: {}", all_ips.join(", ")),
        observed,
        None,
        matched,
    );
    let primary = lookup(lab, &fqdn(PRIMARY_SERVICE)).await?;
    let (observed, matched) = judge_virtual(&primary, &all_ips);
    n.observe(
        &format!("nslookup {}", fqdn(PRIMARY_SERVICE)),
        "one address that is no pod's (the Service's ClusterIP)",
        observed,
        None,
        matched,
    );

    let (pod, old_ip) = pod_ips[1].clone();
    n.step(
        &format!("delete {pod}: its name follows the new pod"),
        "a re-created pod usually gets another address; its DNS name is answered with the new one as soon as the pod \
         is Ready. This is why replication points at mysql-0.mysql-headless, never at an address",
        &[
            lab.kubectl(&format!("delete pod {pod}")),
            format!("nslookup {pod}.{HEADLESS_SERVICE}"),
        ],
    )
    .await;
    // The uid before the deletion: read after it, it may already be the new pod's, whose going would be waited on.
    let old_uid = uid_of(lab, &pod).await?;
    let started = Instant::now();
    lab.cluster.delete_pod(lab.namespace, &pod).await?;
    lab.cluster
        .wait_pods_gone(lab.namespace, &[(pod.clone(), old_uid)], lab.deadline)
        .await?;
    crate::interrupt::checkpoint("demo dns: pod gone").await;
    lab.cluster
        .wait_pod_ready(lab.namespace, &pod, lab.deadline, &|_| {})
        .await?;
    n.timed(&format!("{pod} back and Ready"), started.elapsed());
    let new_ip = lab
        .cluster
        .pod_identity(lab.namespace, &pod)
        .await?
        .and_then(|identity| identity.ip)
        .unwrap_or_default();
    let answers = lookup(lab, &format!("{pod}.{HEADLESS_SERVICE}")).await?;
    let (observed, matched) = judge_exactly(&answers, std::slice::from_ref(&new_ip));
    n.observe(
        &format!("nslookup {pod}.{HEADLESS_SERVICE}"),
        &format!("the new pod's address {new_ip}"),
        observed,
        None,
        matched,
    );
    n.note(&if new_ip == old_ip {
        format!("{pod} got its old address {old_ip} back this time; the record is the pod's, whatever it is")
    } else {
        format!("{pod} moved from {old_ip} to {new_ip}; the name stayed")
    });
    Ok(())
}

/// The pod's uid now (the deletion waits for this incarnation to be gone).
async fn uid_of(lab: &Lab<'_>, pod: &str) -> anyhow::Result<String> {
    Ok(lab
        .cluster
        .pod_identity(lab.namespace, pod)
        .await?
        .map(|identity| identity.uid)
        .unwrap_or_default())
}

/// The addresses `nslookup NAME` answers from the client pod, as the tutorial runs it.
async fn lookup(lab: &Lab<'_>, name: &str) -> anyhow::Result<Vec<String>> {
    let output = lab
        .cluster
        .exec(lab.namespace, CLIENT_POD, CLIENT_CONTAINER, &["nslookup", name], "")
        .await?;
    Ok(parse_nslookup(&output.stdout))
}

/// Pure: the answer addresses of `nslookup` output. The server's own line (`Address: 10.96.0.10#53`) is skipped.
pub fn parse_nslookup(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Address:"))
        .map(str::trim)
        .filter(|address| !address.contains('#'))
        .map(str::to_string)
        .collect()
}

/// Pure: the answers are exactly `expected` (in any order).
pub fn judge_exactly(answers: &[String], expected: &[String]) -> (String, bool) {
    let got: BTreeSet<&String> = answers.iter().collect();
    let want: BTreeSet<&String> = expected.iter().collect();
    (describe(answers), !answers.is_empty() && got == want)
}

/// Pure: one address, which is none of the pods' (a Service's virtual address).
pub fn judge_virtual(answers: &[String], pod_ips: &[String]) -> (String, bool) {
    (describe(answers), answers.len() == 1 && !pod_ips.contains(&answers[0]))
}

fn describe(answers: &[String]) -> String {
    if answers.is_empty() {
        "no answer".to_string()
    } else {
        answers.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nslookup_answers_are_read_without_the_servers_own_address() {
        let output = "Server:\t\t10.244.0.1\nAddress:\t10.244.0.1#53\n\nName:\tmysql-headless.database.svc.cluster.local\n\
                      Address: 10.244.0.3\nName:\tmysql-headless.database.svc.cluster.local\nAddress: 10.244.0.4\n";
        assert_eq!(parse_nslookup(output), strings(&["10.244.0.3", "10.244.0.4"]));
        assert!(parse_nslookup("** server can't find nope: NXDOMAIN\n").is_empty());
    }

    #[test]
    fn per_pod_and_headless_answers_must_be_the_pods_addresses_and_a_service_one_virtual_address() {
        let pods = strings(&["10.244.0.3", "10.244.0.4"]);
        assert!(judge_exactly(&strings(&["10.244.0.4", "10.244.0.3"]), &pods).1);
        assert!(!judge_exactly(&strings(&["10.244.0.3"]), &pods).1);
        assert!(!judge_exactly(&[], &[]).1, "no answer never matches");
        assert_eq!(
            judge_virtual(&strings(&["10.96.0.5"]), &pods),
            ("10.96.0.5".to_string(), true)
        );
        assert!(
            !judge_virtual(&strings(&["10.244.0.3"]), &pods).1,
            "a pod's address is no Service address"
        );
    }
}
