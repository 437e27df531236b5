//! Choosing the kubeconfig and context, building the client, and turning transport failures into messages that
//! name the server and where its address came from.

use std::path::PathBuf;
use std::time::Duration;

use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};

use super::error::ClusterError;

/// Short: an unreachable cluster should be reported in seconds. Reads stay unlimited for watches and port-forwards.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The kubeconfig kube-client reads when `--kubeconfig` is not given, named in messages by its real path: the
/// files in `$KUBECONFIG` (merged, as kubectl does), else `~/.kube/config`.
fn default_kubeconfig() -> String {
    describe_default_kubeconfig(
        std::env::var_os("KUBECONFIG").as_deref(),
        std::env::var_os("HOME").as_deref(),
    )
}

/// Pure: `$KUBECONFIG`'s files if it is set and not empty, else `$HOME/.kube/config`.
pub(super) fn describe_default_kubeconfig(
    kubeconfig_env: Option<&std::ffi::OsStr>,
    home: Option<&std::ffi::OsStr>,
) -> String {
    match kubeconfig_env.filter(|value| !value.is_empty()) {
        Some(paths) => {
            let paths: Vec<String> = std::env::split_paths(paths).map(|p| p.display().to_string()).collect();
            format!("{} (from $KUBECONFIG)", paths.join(", "))
        }
        None => match home {
            Some(home) => std::path::Path::new(home).join(".kube/config").display().to_string(),
            None => "~/.kube/config ($HOME is not set)".to_string(),
        },
    }
}

/// Which cluster to talk to, straight from `--kubeconfig` and `--context`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterTarget {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

/// A client plus what messages need to say about where it points.
pub(super) struct Connection {
    pub client: Client,
    pub server_url: String,
    pub context: Option<String>,
    pub kubeconfig: String,
}

pub(super) async fn connect(target: &ClusterTarget) -> Result<Connection, ClusterError> {
    let (mut config, context, kubeconfig) = match (&target.kubeconfig, &target.context) {
        (None, None) => {
            let config = Config::infer().await.map_err(|e| ClusterError::Kubeconfig {
                kubeconfig: default_kubeconfig(),
                message: error_chain(&e),
            })?;
            // Only for messages: infer() does not say which context it took.
            let context = Kubeconfig::read().ok().and_then(|k| k.current_context);
            (config, context, default_kubeconfig())
        }
        (path, requested) => {
            let (file, source) = match path {
                Some(path) => {
                    let source = path.display().to_string();
                    let file = Kubeconfig::read_from(path).map_err(|e| ClusterError::Kubeconfig {
                        kubeconfig: source.clone(),
                        message: error_chain(&e),
                    })?;
                    (file, source)
                }
                None => {
                    let file = Kubeconfig::read().map_err(|e| ClusterError::Kubeconfig {
                        kubeconfig: default_kubeconfig(),
                        message: error_chain(&e),
                    })?;
                    (file, default_kubeconfig())
                }
            };
            let context = choose_context(&file, requested.as_deref(), &source)?;
            let options = KubeConfigOptions {
                context: Some(context.clone()),
                cluster: None,
                user: None,
            };
            let config =
                Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| ClusterError::Kubeconfig {
                        kubeconfig: source.clone(),
                        message: error_chain(&e),
                    })?;
            (config, Some(context), source)
        }
    };
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = None;
    let server_url = config.cluster_url.to_string().trim_end_matches('/').to_string();
    let client = Client::try_from(config).map_err(|e| ClusterError::Kubeconfig {
        kubeconfig: kubeconfig.clone(),
        message: error_chain(&e),
    })?;
    Ok(Connection {
        client,
        server_url,
        context,
        kubeconfig,
    })
}

/// The context to use: the requested one if the file has it, else the file's current context.
pub(super) fn choose_context(file: &Kubeconfig, requested: Option<&str>, source: &str) -> Result<String, ClusterError> {
    let available: Vec<String> = file.contexts.iter().map(|c| c.name.clone()).collect();
    let wanted = match requested.or(file.current_context.as_deref()) {
        Some(name) => name,
        None => {
            return Err(ClusterError::Kubeconfig {
                kubeconfig: source.to_string(),
                message: format!(
                    "it sets no current-context; pass --context with one of: {}",
                    if available.is_empty() {
                        "(none defined)".to_string()
                    } else {
                        available.join(", ")
                    }
                ),
            });
        }
    };
    if available.iter().any(|name| name == wanted) {
        Ok(wanted.to_string())
    } else {
        Err(ClusterError::UnknownContext {
            context: wanted.to_string(),
            kubeconfig: source.to_string(),
            available,
        })
    }
}

/// An error and its sources on one line, without repeating a source already contained in its parent's text
/// (kube and hyper often do both).
pub(super) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_kubeconfig_by_its_real_path() {
        use std::ffi::OsStr;
        assert_eq!(
            describe_default_kubeconfig(None, Some(OsStr::new("/home/ada"))),
            "/home/ada/.kube/config"
        );
        assert_eq!(
            describe_default_kubeconfig(Some(OsStr::new("")), Some(OsStr::new("/root"))),
            "/root/.kube/config"
        );
        assert_eq!(
            describe_default_kubeconfig(Some(OsStr::new("/tmp/a.yaml:/tmp/b.yaml")), Some(OsStr::new("/root"))),
            "/tmp/a.yaml, /tmp/b.yaml (from $KUBECONFIG)"
        );
    }

    fn kubeconfig(current: Option<&str>) -> Kubeconfig {
        let current = current.map(|c| format!("current-context: {c}\n")).unwrap_or_default();
        Kubeconfig::from_yaml(&format!(
            "apiVersion: v1\nkind: Config\n{current}clusters:\n- name: kind\n  cluster:\n    server: \
             https://127.0.0.1:6443\ncontexts:\n- name: kind-kind\n  context:\n    cluster: kind\n    user: kind\n- name: \
             kubesim\n  context:\n    cluster: kind\n    user: kind\n    namespace: lab\nusers:\n- name: kind\n  user: {{}}\n"
        ))
        .expect("valid kubeconfig")
    }

    #[test]
    fn requested_context_wins_over_the_current_one() {
        let file = kubeconfig(Some("kind-kind"));
        assert_eq!(
            choose_context(&file, Some("kubesim"), "/tmp/kc").expect("known context"),
            "kubesim"
        );
        assert_eq!(
            choose_context(&file, None, "/tmp/kc").expect("current context"),
            "kind-kind"
        );
    }

    #[test]
    fn unknown_context_names_the_file_and_the_contexts_it_has() {
        let error = choose_context(&kubeconfig(None), Some("prod"), "/tmp/kc").expect_err("prod is unknown");
        assert_eq!(
            error.to_string(),
            "context \"prod\" is not in kubeconfig /tmp/kc; contexts there: kind-kind, kubesim; pass one of them with \
             --context"
        );
    }

    #[test]
    fn no_current_context_asks_for_one() {
        let error = choose_context(&kubeconfig(None), None, "/tmp/kc").expect_err("nothing to choose");
        assert_eq!(
            error.to_string(),
            "cannot load kubeconfig /tmp/kc: it sets no current-context; pass --context with one of: kind-kind, \
             kubesim; check the file given with --kubeconfig or $KUBECONFIG"
        );
    }

    #[tokio::test]
    async fn explicit_kubeconfig_and_unknown_context_fail_before_any_request() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n- name: c\n  cluster:\n    server: \
             http://127.0.0.1:1\ncontexts:\n- name: a\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user: {}\n",
        )
        .expect("write kubeconfig");
        let target = ClusterTarget {
            kubeconfig: Some(path.clone()),
            context: Some("b".into()),
        };
        let Err(error) = connect(&target).await else {
            panic!("context b does not exist")
        };
        assert_eq!(
            error.to_string(),
            format!(
                "context \"b\" is not in kubeconfig {}; contexts there: a; pass one of them with --context",
                path.display()
            )
        );

        let target = ClusterTarget {
            kubeconfig: Some(path),
            context: None,
        };
        let connection = connect(&target).await.expect("valid kubeconfig");
        assert_eq!(connection.server_url, "http://127.0.0.1:1");
        assert_eq!(connection.context.as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn missing_kubeconfig_file_is_named() {
        let target = ClusterTarget {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            context: None,
        };
        let Err(error) = connect(&target).await else {
            panic!("the file does not exist")
        };
        let text = error.to_string();
        assert!(
            text.starts_with("cannot load kubeconfig /nonexistent/kubeconfig: "),
            "{text}"
        );
        assert_eq!(
            crate::exit::Classify::exit_status(&error),
            crate::exit::ExitStatus::Usage
        );
    }
}
