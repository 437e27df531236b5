//! The real `kubectl` (1.32) against a lab that `lab up` built on kubesim, for what needs the API server's OpenAPI
//! documents, its field validation, its protobuf decoding and its defaulting: `kubectl explain`, `kubectl apply`
//! (client-side, with strategic merge patches, and server-side) of `lab render` output and of a manifest with a
//! mistake, `kubectl create configmap|secret|namespace|service`, and the defaults a real server fills in.

use crate::harness::{kubeconfig, kubectl, lab, run_as_user, start_sim};

const NS: &str = "database";

/// A manifest with a field no StatefulSet has, as a student's typo would make one.
fn with_unknown_field(rendered: &str) -> String {
    let typo = rendered.replacen("  serviceName: ", "  foo: 1\n  serviceName: ", 1);
    assert_ne!(typo, rendered, "the rendered StatefulSet has a serviceName");
    typo
}

#[test]
fn kubectl_explains_validates_applies_and_creates_as_on_a_real_cluster() {
    let sim = start_sim();
    let kc = kubeconfig(&sim);
    lab(&kc, &["up"]).assert_code(0);

    // kubectl explain reads the OpenAPI v3 documents: the upstream documentation of each field.
    let explained = kubectl(&kc, &["explain", "statefulset.spec.serviceName"], "");
    assert!(explained.contains("FIELD: serviceName <string>"), "{explained}");
    assert!(
        explained.contains("serviceName is the name of the service that governs this StatefulSet."),
        "{explained}"
    );
    let explained = kubectl(&kc, &["explain", "pod.spec.containers.readinessProbe"], "");
    assert!(explained.contains("FIELD: readinessProbe <Probe>"), "{explained}");
    assert!(
        explained.contains("Periodic probe of container service readiness."),
        "{explained}"
    );
    assert!(explained.contains("successThreshold\t<integer>"), "{explained}");

    // The lab's own manifests, applied by a student with kubectl over what `lab up` made: validation on (the
    // default), client-side and then server-side.
    let rendered = lab(&kc, &["render"]).assert_code(0).stdout.clone();
    let applied = kubectl(&kc, &["apply", "-f", "-"], &rendered);
    for object in [
        "namespace/database",
        "service/mysql-headless",
        "secret/mysql-secret",
        "statefulset.apps/mysql",
        "service/mysql-primary",
        "pod/mysql-client",
    ] {
        assert!(
            applied.contains(&format!("{object} configured")) || applied.contains(&format!("{object} unchanged")),
            "{object}: {applied}"
        );
    }
    // A second port on mysql-primary, then the manifests again: kubectl sends strategic merge patches that
    // merge the Service's ports by port number, and delete the one no longer applied.
    let with_port = rendered.replacen(
        "  name: mysql-primary\n  namespace: database\nspec:\n  ports:\n",
        "  name: mysql-primary\n  namespace: database\nspec:\n  ports:\n  - name: extra\n    port: 3307\n",
        1,
    );
    assert_ne!(
        with_port, rendered,
        "the rendered mysql-primary Service lists its ports"
    );
    let ports = || {
        kubectl(
            &kc,
            &[
                "get",
                "service",
                "mysql-primary",
                "-n",
                NS,
                "-o",
                "jsonpath={.spec.ports[*].port}",
            ],
            "",
        )
    };
    let (code, _, stderr) = run_as_user(&kc, "kubectl", &["apply", "-f", "-"], &with_port);
    // Nothing on stderr: kubectl computed the patch from the OpenAPI v3 documents without a warning.
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert_eq!(ports(), "3307 3306");
    kubectl(&kc, &["apply", "-f", "-"], &rendered);
    assert_eq!(ports(), "3306");

    let applied = kubectl(&kc, &["apply", "--server-side", "-f", "-"], &rendered);
    assert!(
        applied.contains("statefulset.apps/mysql serverside-applied"),
        "{applied}"
    );
    assert!(applied.contains("secret/mysql-secret serverside-applied"), "{applied}");

    // A field no StatefulSet has: refused by the server's strict field validation, in kubectl's words, and
    // nothing is changed; a warning only with --validate=warn; the server-side apply error of a real server.
    let typo = with_unknown_field(&rendered);
    let (code, _, stderr) = run_as_user(&kc, "kubectl", &["apply", "-f", "-"], &typo);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error when patching \"STDIN\": strict decoding error: unknown field \"spec.foo\""),
        "{stderr}"
    );
    let (code, _, stderr) = run_as_user(&kc, "kubectl", &["apply", "--server-side", "-f", "-"], &typo);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "failed to create typed patch object (database/mysql; apps/v1, Kind=StatefulSet): .spec.foo: field not \
             declared in schema"
        ),
        "{stderr}"
    );
    let fresh = typo.replace(
        "name: mysql\n  namespace: database",
        "name: mysql-typo\n  namespace: database",
    );
    let (code, _, stderr) = run_as_user(&kc, "kubectl", &["create", "-f", "-"], &fresh);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "StatefulSet in version \"v1\" cannot be handled as a StatefulSet: strict decoding error: unknown \
             field \"spec.foo\""
        ),
        "{stderr}"
    );
    let (code, _, stderr) = run_as_user(
        &kc,
        "kubectl",
        &["apply", "--validate=warn", "--dry-run=server", "-f", "-"],
        &typo,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Warning: unknown field \"spec.foo\""), "{stderr}");

    // kubectl create sends protobuf bodies.
    kubectl(&kc, &["create", "namespace", "classroom"], "");
    kubectl(
        &kc,
        &[
            "create",
            "configmap",
            "settings",
            "-n",
            "classroom",
            "--from-literal=mode=strict",
        ],
        "",
    );
    kubectl(
        &kc,
        &[
            "create",
            "secret",
            "generic",
            "login",
            "-n",
            "classroom",
            "--from-literal=password=s3cr3t pass",
        ],
        "",
    );
    kubectl(
        &kc,
        &[
            "create",
            "service",
            "clusterip",
            "web",
            "-n",
            "classroom",
            "--tcp=80:8080",
        ],
        "",
    );
    let mode = kubectl(
        &kc,
        &[
            "get",
            "configmap",
            "settings",
            "-n",
            "classroom",
            "-o",
            "jsonpath={.data.mode}",
        ],
        "",
    );
    assert_eq!(mode, "strict");
    let password = kubectl(
        &kc,
        &[
            "get",
            "secret",
            "login",
            "-n",
            "classroom",
            "-o",
            "jsonpath={.data.password}",
        ],
        "",
    );
    assert_eq!(password, "czNjcjN0IHBhc3M=", "base64 of the literal");
    let ports = kubectl(
        &kc,
        &[
            "get",
            "service",
            "web",
            "-n",
            "classroom",
            "-o",
            "jsonpath={.spec.ports[0].port}/{.spec.ports[0].targetPort}/{.spec.ports[0].protocol}",
        ],
        "",
    );
    assert_eq!(ports, "80/8080/TCP");
    let phase = kubectl(
        &kc,
        &["get", "namespace", "classroom", "-o", "jsonpath={.status.phase}"],
        "",
    );
    assert_eq!(phase, "Active");

    // The defaults a real server fills in, as kubectl shows them: the lab sets the readiness probe's period and
    // failure threshold, the server the rest.
    let probe = kubectl(
        &kc,
        &[
            "get",
            "statefulset",
            "mysql",
            "-n",
            NS,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].readinessProbe.successThreshold} \
             {.spec.template.spec.containers[0].readinessProbe.periodSeconds} \
             {.spec.template.spec.containers[0].terminationMessagePath} \
             {.spec.updateStrategy.rollingUpdate.partition}",
        ],
        "",
    );
    assert_eq!(probe, "1 1 /dev/termination-log 0");
    let qos = kubectl(
        &kc,
        &["get", "pod", "mysql-0", "-n", NS, "-o", "jsonpath={.status.qosClass}"],
        "",
    );
    assert_eq!(
        qos, "Burstable",
        "the lab's containers request cpu and memory without limits"
    );

    // After all this the lab still works.
    lab(&kc, &["verify"]).assert_code(0);
}
