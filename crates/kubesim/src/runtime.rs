//! What the control plane needs from the node that runs pods, as a trait so the API works with or without one.

use std::io;
use std::sync::Arc;

use axum::body::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use tokio::net::TcpStream;
use tokio::process::Child;

use crate::pod_logs::LogOptions;

/// The pod-running side of the cluster (the simulated kubelet).
pub trait PodRuntime: Send + Sync + 'static {
    /// A TCP connection to `port` inside the pod's network namespace.
    fn connect(self: Arc<Self>, namespace: String, pod: String, port: u16)
    -> BoxFuture<'static, io::Result<TcpStream>>;
    /// `argv` started inside the pod, with the container's environment.
    fn spawn_exec(
        self: Arc<Self>,
        namespace: String,
        pod: String,
        container: Option<String>,
        argv: Vec<String>,
        stdin: bool,
    ) -> BoxFuture<'static, io::Result<Child>>;
    /// `argv` started inside the pod on a new terminal (exec with `tty=true`).
    fn spawn_exec_terminal(
        self: Arc<Self>,
        _namespace: String,
        _pod: String,
        _container: Option<String>,
        _argv: Vec<String>,
    ) -> BoxFuture<'static, io::Result<(Child, crate::pty::Terminal)>> {
        async {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this node offers no terminals",
            ))
        }
        .boxed()
    }
    /// A container's log (the previous instance's with `previous`) as a request with `options` sees it; None
    /// when there is no such instance.
    fn logs(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        previous: bool,
        options: &LogOptions,
    ) -> Option<String>;
    /// The current instance's log, then its new lines until it stops (`kubectl logs -f`); None when there is no
    /// instance. A runtime that cannot follow gives the log so far.
    fn follow_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        options: LogOptions,
    ) -> Option<BoxStream<'static, Bytes>> {
        let text = self.logs(namespace, pod, Some(container), false, &options)?;
        Some(futures::stream::iter([Bytes::from(text)]).boxed())
    }
    fn shutdown(&self);
    fn leftovers(&self) -> Vec<String>;
}

impl PodRuntime for crate::node::Node {
    fn connect(
        self: Arc<Self>,
        namespace: String,
        pod: String,
        port: u16,
    ) -> BoxFuture<'static, io::Result<TcpStream>> {
        async move { crate::node::Node::connect(&self, &namespace, &pod, port).await }.boxed()
    }

    fn spawn_exec(
        self: Arc<Self>,
        namespace: String,
        pod: String,
        container: Option<String>,
        argv: Vec<String>,
        stdin: bool,
    ) -> BoxFuture<'static, io::Result<Child>> {
        async move { crate::node::Node::spawn_exec(&self, &namespace, &pod, container.as_deref(), &argv, stdin).await }
            .boxed()
    }

    fn spawn_exec_terminal(
        self: Arc<Self>,
        namespace: String,
        pod: String,
        container: Option<String>,
        argv: Vec<String>,
    ) -> BoxFuture<'static, io::Result<(Child, crate::pty::Terminal)>> {
        async move {
            crate::node::Node::spawn_exec_terminal(&self, &namespace, &pod, container.as_deref(), &argv).await
        }
        .boxed()
    }

    fn logs(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        previous: bool,
        options: &LogOptions,
    ) -> Option<String> {
        crate::node::Node::read_logs(self, namespace, pod, container, previous, options)
    }

    fn follow_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        options: LogOptions,
    ) -> Option<BoxStream<'static, Bytes>> {
        crate::node::Node::follow_logs(self, namespace, pod, container, options)
    }

    fn shutdown(&self) {
        crate::node::Node::shutdown(self);
    }

    fn leftovers(&self) -> Vec<String> {
        crate::node::Node::leftovers(self)
    }
}
