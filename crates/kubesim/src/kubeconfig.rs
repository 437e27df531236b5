//! The kubeconfig a simulator writes for its clients: cluster, context and user all named `kubesim`, no auth.

/// The context name clients select.
pub const CONTEXT: &str = "kubesim";

/// A kubeconfig pointing at `server` (plain http), namespace `namespace`.
pub fn render(server: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: {server}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {CONTEXT}
    namespace: {namespace}
current-context: {CONTEXT}
users:
- name: {CONTEXT}
  user: {{}}
preferences: {{}}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_reads_the_rendered_kubeconfig() {
        let text = render("http://127.0.0.1:4321", "default");
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&text).expect("valid kubeconfig");
        assert_eq!(kubeconfig.current_context.as_deref(), Some("kubesim"));
        let cluster = kubeconfig.clusters[0].cluster.as_ref().expect("cluster");
        assert_eq!(cluster.server.as_deref(), Some("http://127.0.0.1:4321"));
        let context = kubeconfig.contexts[0].context.as_ref().expect("context");
        assert_eq!(context.namespace.as_deref(), Some("default"));
    }
}
