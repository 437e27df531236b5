//! pods/portforward and pods/exec over WebSocket, framed exactly as kubelets and kube-rs speak them.
//!
//! Every frame is Binary with the channel number in byte 0 (`wsstream`). Port-forward (`v4.channel.k8s.io`):
//! port index i uses data channel 2i and error channel 2i+1, each opened by a 3-byte `[ch, port lo, port hi]`
//! frame. Exec (`v4`/`v5.channel.k8s.io`, what kube-rs and kubectl 1.30+ use): 0 stdin, 1 stdout, 2 stderr,
//! 3 status, 4 resize, 255 close (v5). With `tty=true` the process runs on a pseudo-terminal: its output is one
//! stream on channel 1 and resize messages set the terminal's size. kubectl's port-forward speaks SPDY instead
//! (see `spdy`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures::future::BoxFuture;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::pty::{self, Terminal};

/// How long we keep reading after a Close so the closing handshake can finish, before dropping the socket.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Read size for pod output, as Go's `io.Copy` uses.
const READ_CHUNK: usize = 32 * 1024;
/// Frames queued towards the client before producers wait (backpressure).
const OUTGOING_QUEUE: usize = 16;
/// Client frames queued towards one pod port or stdin before the reader waits.
const INCOMING_QUEUE: usize = 64;

const STDIN_CHANNEL: u8 = 0;
const STDOUT_CHANNEL: u8 = 1;
const STDERR_CHANNEL: u8 = 2;
const STATUS_CHANNEL: u8 = 3;
const RESIZE_CHANNEL: u8 = 4;
const CLOSE_CHANNEL: u8 = 255;

/// Which channel protocol the exec upgrade negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecProtocol {
    /// `v4.channel.k8s.io`: no close channel; stdin ends when the socket closes.
    V4,
    /// `v5.channel.k8s.io`: adds channel 255, `[255, 0]` closes the child's stdin.
    V5,
}

impl ExecProtocol {
    /// The protocol named by the negotiated `Sec-WebSocket-Protocol`; anything but v5 is treated as v4.
    pub fn from_negotiated(protocol: Option<&str>) -> ExecProtocol {
        match protocol {
            Some("v5.channel.k8s.io") => ExecProtocol::V5,
            _ => ExecProtocol::V4,
        }
    }

    /// The protocol of an upgraded socket (`WebSocket::protocol`).
    pub fn of(ws: &WebSocket) -> ExecProtocol {
        ExecProtocol::from_negotiated(ws.protocol().and_then(|value| value.to_str().ok()))
    }
}

/// Opens the TCP connection to a pod port for a port-forward.
pub type ConnectFn = dyn Fn(u16) -> BoxFuture<'static, io::Result<TcpStream>> + Send + Sync;

// ---------------------------------------------------------------------------------------------------------------
// Pure framing decisions
// ---------------------------------------------------------------------------------------------------------------

/// `[channel, payload...]`.
fn frame(channel: u8, payload: &[u8]) -> Bytes {
    let mut bytes = Vec::with_capacity(payload.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(payload);
    Bytes::from(bytes)
}

/// The 3-byte frame that opens a port-forward channel: the port as u16 little endian.
fn port_init_frame(channel: u8, port: u16) -> Bytes {
    frame(channel, &port.to_le_bytes())
}

/// Data and error channel of the port at `index`.
fn port_channels(index: usize) -> (u8, u8) {
    let data = u8::try_from(2 * index).expect("kube-rs allows at most 128 ports, so 2i+1 fits a byte");
    (data, data + 1)
}

/// What a client frame means for a port-forward with `port_count` ports.
#[derive(Debug, PartialEq, Eq)]
enum PortForwardInput<'a> {
    /// Bytes for the port at this index.
    Data(usize, &'a [u8]),
    /// The client ended the session (Close frame).
    Close,
    /// Text, pings, short frames, error channels, unknown channels: kubelets drop these.
    Ignore,
}

fn classify_port_forward_input(message: &Message, port_count: usize) -> PortForwardInput<'_> {
    match message {
        Message::Binary(bytes) if bytes.len() > 1 => {
            let channel = usize::from(bytes[0]);
            if channel % 2 == 0 && channel / 2 < port_count {
                PortForwardInput::Data(channel / 2, &bytes[1..])
            } else {
                PortForwardInput::Ignore
            }
        }
        Message::Close(_) => PortForwardInput::Close,
        _ => PortForwardInput::Ignore,
    }
}

/// What a client frame means for an exec session.
#[derive(Debug, PartialEq, Eq)]
enum ExecInput<'a> {
    Stdin(&'a [u8]),
    /// v5 `[255, 0]`: the client has no more stdin.
    CloseStdin,
    /// Channel 4: the client's terminal changed size (JSON `{"Width":..,"Height":..}`).
    Resize(&'a [u8]),
    /// The client ended the session (Close frame).
    Close,
    Ignore,
}

fn classify_exec_input(message: &Message, protocol: ExecProtocol) -> ExecInput<'_> {
    match message {
        Message::Binary(bytes) if bytes.len() > 1 => match bytes[0] {
            STDIN_CHANNEL => ExecInput::Stdin(&bytes[1..]),
            CLOSE_CHANNEL if protocol == ExecProtocol::V5 && bytes[1] == STDIN_CHANNEL => ExecInput::CloseStdin,
            RESIZE_CHANNEL => ExecInput::Resize(&bytes[1..]),
            _ => ExecInput::Ignore,
        },
        Message::Close(_) => ExecInput::Close,
        _ => ExecInput::Ignore,
    }
}

/// The text of an OS error the way Go prints it ("connection refused"), other errors unchanged.
fn go_error_text(err: &io::Error) -> String {
    let text = err.to_string();
    match err.raw_os_error() {
        Some(code) => {
            let bare = text.strip_suffix(&format!(" (os error {code})")).unwrap_or(&text);
            let mut chars = bare.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => String::new(),
            }
        }
        None => text,
    }
}

/// The kubelet's message on the error channel when a port cannot be reached
/// (`portforward/websocket.go`; the dial error as containerd's netns dialer reports it).
pub(crate) fn port_forward_error_message(port: u16, pod_label: &str, err: &io::Error) -> String {
    let cause = if err.raw_os_error().is_some() {
        format!("dial tcp4 127.0.0.1:{port}: connect: {}", go_error_text(err))
    } else {
        err.to_string()
    };
    format!("error forwarding port {port} to pod {pod_label}: {cause}")
}

/// An exec spawn error as the container runtime words it, naming the executable (`argv[0]`).
/// The node maps the errors of spawning an exec through this, so [`serve_exec`] reports them as a kubelet does.
pub fn describe_spawn_failure(argv: &[String], err: io::Error) -> io::Error {
    let executable = argv.first().map(String::as_str).unwrap_or("");
    let reason = match err.kind() {
        io::ErrorKind::NotFound => "executable file not found in $PATH".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => go_error_text(&err),
    };
    io::Error::new(
        err.kind(),
        format!(
            "OCI runtime exec failed: exec failed: unable to start container process: exec: \"{executable}\": {reason}: unknown"
        ),
    )
}

/// How the child ended, as the status channel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ExecOutcome {
    /// Exit code (128 + signal for a killed child, as container runtimes report it).
    Exited(i32),
    /// The command never ran, or waiting for it failed.
    Failed(String),
}

fn exit_outcome(status: std::process::ExitStatus) -> ExecOutcome {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExecOutcome::Exited(code),
        (None, Some(signal)) => ExecOutcome::Exited(128 + signal),
        (None, None) => ExecOutcome::Failed("the command ended without an exit status".to_string()),
    }
}

/// The `metav1.Status` written on channel 3 (kubelet `remotecommand/exec.go`, `apierrors.NewInternalError`).
fn exec_status(outcome: &ExecOutcome) -> serde_json::Value {
    match outcome {
        ExecOutcome::Exited(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        ExecOutcome::Exited(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        ExecOutcome::Failed(cause) => {
            let cause = format!("error executing command in container: {cause}");
            serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("Internal error occurred: {cause}"),
                "reason": "InternalError",
                "details": {"causes": [{"message": cause}]},
                "code": 500,
            })
        }
    }
}

/// The empty frame a kubelet sends on the lowest writable channel once an exec stream is open.
fn exec_ready_channel(stdout: bool, stderr: bool) -> u8 {
    if stdout {
        STDOUT_CHANNEL
    } else if stderr {
        STDERR_CHANNEL
    } else {
        STATUS_CHANNEL
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Socket plumbing
// ---------------------------------------------------------------------------------------------------------------

enum Outgoing {
    Frame(Bytes),
    /// Start the closing handshake; nothing is sent after it.
    Close,
}

/// Owns the sending half so producers (pod readers, status) can queue frames in order. Once the socket fails or
/// is closed it keeps accepting and dropping frames, so producers never block on a dead client.
fn spawn_writer(mut sink: SplitSink<WebSocket, Message>) -> (mpsc::Sender<Outgoing>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(OUTGOING_QUEUE);
    let task = tokio::spawn(async move {
        let mut open = true;
        while let Some(item) = rx.recv().await {
            if !open {
                continue;
            }
            let message = match item {
                Outgoing::Frame(bytes) => Message::Binary(bytes),
                Outgoing::Close => {
                    open = false;
                    // A normal-closure code, as kubelets send: kubectl reports a bare Close (1005) as an error
                    // and loses the exit status.
                    Message::Close(Some(CloseFrame {
                        code: close_code::NORMAL,
                        reason: "".into(),
                    }))
                }
            };
            if let Err(err) = sink.send(message).await {
                tracing::debug!("websocket send failed: {err}");
                open = false;
            }
        }
    });
    (tx, task)
}

/// Reads until the client finishes the closing handshake (or goes away), so our Close or our reply to theirs is
/// flushed; gives up after [`DRAIN_TIMEOUT`].
async fn drain(stream: &mut SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async { while let Some(Ok(_)) = stream.next().await {} }).await;
}

/// Waits for the writer to flush what is queued (bounded), then stops it.
async fn finish_writer(outgoing: mpsc::Sender<Outgoing>, mut writer: JoinHandle<()>) {
    drop(outgoing);
    if tokio::time::timeout(DRAIN_TIMEOUT, &mut writer).await.is_err() {
        writer.abort();
    }
}

/// Copies `reader` to the client as frames on `channel` until EOF or a read error.
async fn pump(mut reader: impl AsyncRead + Unpin, channel: u8, outgoing: mpsc::Sender<Outgoing>) -> io::Result<()> {
    let mut buf = vec![0u8; READ_CHUNK + 1];
    buf[0] = channel;
    loop {
        let n = reader.read(&mut buf[1..]).await?;
        if n == 0 {
            return Ok(());
        }
        if outgoing
            .send(Outgoing::Frame(Bytes::copy_from_slice(&buf[..=n])))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Port-forward
// ---------------------------------------------------------------------------------------------------------------

/// Serves one port-forward WebSocket: per port index i, data channel 2i and error channel 2i+1.
///
/// Each port is connected through `connect`; a failure goes to the port's error channel. The socket is closed
/// once every port is done (backend EOF or failure); a client Close closes every pod connection.
pub async fn serve_port_forward(
    ws: WebSocket,
    ports: Vec<u16>,
    pod_label: String,
    connect: impl Fn(u16) -> BoxFuture<'static, io::Result<TcpStream>> + Send + Sync + 'static,
) {
    let (sink, mut stream) = ws.split();
    let (outgoing, writer) = spawn_writer(sink);
    if !send_port_init_frames(&outgoing, &ports).await {
        writer.abort();
        return;
    }

    let mut to_pod = Vec::with_capacity(ports.len());
    let mut port_tasks = JoinSet::new();
    for (index, &port) in ports.iter().enumerate() {
        let (tx, rx) = mpsc::channel::<Bytes>(INCOMING_QUEUE);
        to_pod.push(Some(tx));
        let connecting = connect(port);
        port_tasks.spawn(forward_port(
            index,
            port,
            pod_label.clone(),
            connecting,
            rx,
            outgoing.clone(),
        ));
    }

    let mut client_closed = false;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(Ok(message)) = message else {
                    // The client went away without a closing handshake: nothing left to flush.
                    port_tasks.abort_all();
                    writer.abort();
                    return;
                };
                match classify_port_forward_input(&message, ports.len()) {
                    PortForwardInput::Data(index, bytes) => {
                        if let Some(tx) = &to_pod[index]
                            && tx.send(Bytes::copy_from_slice(bytes)).await.is_err()
                        {
                            // The pod side is gone; later data for this port is dropped like a kubelet does.
                            to_pod[index] = None;
                        }
                    }
                    PortForwardInput::Close => {
                        client_closed = true;
                        break;
                    }
                    PortForwardInput::Ignore => {}
                }
            }
            finished = port_tasks.join_next() => {
                match finished {
                    Some(Ok(index)) => to_pod[index] = None,
                    Some(Err(err)) => tracing::warn!("port-forward task failed: {err}"),
                    None => break, // every port is done
                }
            }
        }
    }

    // Closing pod connections: readers stop at once, writers deliver what the client sent, then shut down.
    port_tasks.abort_all();
    drop(to_pod);
    if !client_closed {
        let _ = outgoing.send(Outgoing::Close).await;
    }
    drain(&mut stream).await;
    finish_writer(outgoing, writer).await;
}

/// Simulates a dropped forward: sends the init frames for `ports`, then drops the connection without a
/// closing handshake.
pub async fn drop_after_init(ws: WebSocket, ports: Vec<u16>) {
    let (sink, stream) = ws.split();
    let (outgoing, writer) = spawn_writer(sink);
    send_port_init_frames(&outgoing, &ports).await;
    drop(outgoing);
    let _ = writer.await;
    drop(stream);
}

async fn send_port_init_frames(outgoing: &mpsc::Sender<Outgoing>, ports: &[u16]) -> bool {
    for (index, &port) in ports.iter().enumerate() {
        let (data, error) = port_channels(index);
        for channel in [data, error] {
            if outgoing
                .send(Outgoing::Frame(port_init_frame(channel, port)))
                .await
                .is_err()
            {
                return false;
            }
        }
    }
    true
}

/// One port: connect, then relay until the pod closes its side. Returns the port index.
async fn forward_port(
    index: usize,
    port: u16,
    pod_label: String,
    connecting: BoxFuture<'static, io::Result<TcpStream>>,
    mut from_client: mpsc::Receiver<Bytes>,
    outgoing: mpsc::Sender<Outgoing>,
) -> usize {
    let (data_channel, error_channel) = port_channels(index);
    let tcp = match connecting.await {
        Ok(tcp) => tcp,
        Err(err) => {
            let message = port_forward_error_message(port, &pod_label, &err);
            tracing::info!("{message}");
            let _ = outgoing
                .send(Outgoing::Frame(frame(error_channel, message.as_bytes())))
                .await;
            return index;
        }
    };
    let (pod_reader, mut pod_writer) = tcp.into_split();
    // Detached so that client bytes already accepted still reach the pod after the session ends.
    tokio::spawn(async move {
        while let Some(bytes) = from_client.recv().await {
            if pod_writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = pod_writer.shutdown().await;
    });
    if let Err(err) = pump(pod_reader, data_channel, outgoing).await {
        tracing::debug!("port-forward read from pod port {port} failed: {err}");
    }
    index
}

// ---------------------------------------------------------------------------------------------------------------
// Exec
// ---------------------------------------------------------------------------------------------------------------

/// A spawned exec: the child with its pipes, or on a terminal.
pub struct ExecProcess {
    pub child: tokio::process::Child,
    /// With `tty=true`: the terminal that is the child's stdin, stdout and stderr (its pipes are unset).
    pub terminal: Option<Terminal>,
}

impl From<tokio::process::Child> for ExecProcess {
    fn from(child: tokio::process::Child) -> ExecProcess {
        ExecProcess { child, terminal: None }
    }
}

/// Serves one exec WebSocket over an already spawned child (or its spawn error).
///
/// Output is streamed as it comes; once the child has exited and all its output is sent, the Status goes on
/// channel 3 and the socket is closed. `stdout`/`stderr` false: that output is read and dropped. On a terminal
/// all output goes on stdout, stdin is typed into the terminal, and resize messages set its size.
pub async fn serve_exec(
    ws: WebSocket,
    protocol: ExecProtocol,
    process: io::Result<ExecProcess>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) {
    let (sink, mut stream) = ws.split();
    let (outgoing, writer) = spawn_writer(sink);
    let _ = outgoing
        .send(Outgoing::Frame(frame(exec_ready_channel(stdout, stderr), &[])))
        .await;

    let (mut child, terminal) = match process {
        Ok(process) => (process.child, process.terminal.map(Arc::new)),
        Err(err) => {
            send_status_and_close(&outgoing, &ExecOutcome::Failed(err.to_string())).await;
            drain(&mut stream).await;
            finish_writer(outgoing, writer).await;
            return;
        }
    };

    let mut to_stdin = match (stdin, child.stdin.take(), &terminal) {
        (true, _, Some(terminal)) => {
            let (tx, mut rx) = mpsc::channel::<Bytes>(INCOMING_QUEUE);
            let terminal = terminal.clone();
            tokio::spawn(async move {
                while let Some(bytes) = rx.recv().await {
                    if terminal.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                // A terminal has no end of input; the process ends when the user ends it.
            });
            Some(tx)
        }
        (true, Some(mut pipe), None) => {
            let (tx, mut rx) = mpsc::channel::<Bytes>(INCOMING_QUEUE);
            tokio::spawn(async move {
                while let Some(bytes) = rx.recv().await {
                    if pipe.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                // Dropping the pipe is the EOF the child sees.
            });
            Some(tx)
        }
        _ => None, // an unwanted stdin pipe is dropped here: the child reads EOF
    };

    let stdout_pipe = child.stdout.take();
    let stderr_pipe = child.stderr.take();
    let output_sink = outgoing.clone();
    let output_terminal = terminal.clone();
    let mut completion = std::pin::pin!(async move {
        if let Some(terminal) = output_terminal
            && let Err(err) = pump_terminal(&terminal, stdout, &output_sink).await
        {
            tracing::debug!("exec: reading the terminal failed: {err}");
        }
        let copy = |pipe: Option<_>, channel: u8, wanted: bool| {
            let sink = output_sink.clone();
            async move {
                match pipe {
                    Some(pipe) if wanted => pump(pipe, channel, sink).await,
                    Some(pipe) => tokio::io::copy(&mut { pipe }, &mut tokio::io::sink()).await.map(drop),
                    None => Ok(()),
                }
            }
        };
        let _ = tokio::join!(
            copy(stdout_pipe.map(Pipe::Stdout), STDOUT_CHANNEL, stdout),
            copy(stderr_pipe.map(Pipe::Stderr), STDERR_CHANNEL, stderr),
        );
        match child.wait().await {
            Ok(status) => exit_outcome(status),
            Err(err) => ExecOutcome::Failed(err.to_string()),
        }
    });

    // None: the terminal was hung up because its user left (Close or a dropped socket). Nobody can type into it
    // any more, so the process is ended like a terminal session whose connection drops (SIGHUP to the session
    // when the terminal closes, and the child is killed), instead of lingering.
    let mut client_gone = false;
    let outcome = loop {
        tokio::select! {
            message = stream.next(), if !client_gone => {
                let Some(Ok(message)) = message else {
                    client_gone = true;
                    to_stdin = None;
                    if terminal.is_some() {
                        break None;
                    }
                    continue;
                };
                match classify_exec_input(&message, protocol) {
                    ExecInput::Stdin(bytes) => {
                        if let Some(tx) = &to_stdin
                            && tx.send(Bytes::copy_from_slice(bytes)).await.is_err()
                        {
                            to_stdin = None;
                        }
                    }
                    // On a terminal there is nothing to close: stdin stays open, as with a kubelet's tty.
                    ExecInput::CloseStdin if terminal.is_some() => {}
                    ExecInput::CloseStdin => to_stdin = None,
                    ExecInput::Resize(payload) => {
                        if let (Some(terminal), Some((width, height))) = (&terminal, pty::parse_resize(payload))
                            && let Err(err) = terminal.resize(width, height)
                        {
                            tracing::debug!("exec: resizing the terminal failed: {err}");
                        }
                    }
                    // v4 has no close channel: the client closes the socket to end stdin. Keep reading so the
                    // reply to its Close is flushed; the rest of the output can no longer be delivered.
                    ExecInput::Close if terminal.is_some() => break None,
                    ExecInput::Close => to_stdin = None,
                    ExecInput::Ignore => {}
                }
            }
            outcome = &mut completion => break Some(outcome),
        }
    };
    drop(to_stdin);

    match outcome {
        _ if client_gone => {}
        Some(outcome) => {
            send_status_and_close(&outgoing, &outcome).await;
            drain(&mut stream).await;
        }
        // Hung up on the client's Close: read on so our reply to it is flushed.
        None => drain(&mut stream).await,
    }
    finish_writer(outgoing, writer).await;
}

async fn send_status_and_close(outgoing: &mpsc::Sender<Outgoing>, outcome: &ExecOutcome) {
    let status = serde_json::to_vec(&exec_status(outcome)).expect("a json! value always serializes");
    let _ = outgoing.send(Outgoing::Frame(frame(STATUS_CHANNEL, &status))).await;
    let _ = outgoing.send(Outgoing::Close).await;
}

/// Copies a terminal's output to the client on stdout (or drops it) until the terminal is closed.
async fn pump_terminal(terminal: &Terminal, wanted: bool, outgoing: &mpsc::Sender<Outgoing>) -> io::Result<()> {
    let mut buf = vec![0u8; READ_CHUNK + 1];
    buf[0] = STDOUT_CHANNEL;
    loop {
        let n = terminal.read(&mut buf[1..]).await?;
        if n == 0 {
            return Ok(());
        }
        if wanted
            && outgoing
                .send(Outgoing::Frame(Bytes::copy_from_slice(&buf[..=n])))
                .await
                .is_err()
        {
            return Ok(());
        }
    }
}

/// Either output pipe of the child, so one copy routine serves both.
enum Pipe {
    Stdout(tokio::process::ChildStdout),
    Stderr(tokio::process::ChildStderr),
}

impl AsyncRead for Pipe {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Pipe::Stdout(pipe) => std::pin::Pin::new(pipe).poll_read(cx, buf),
            Pipe::Stderr(pipe) => std::pin::Pin::new(pipe).poll_read(cx, buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::Arc;

    use axum::Router;
    use axum::extract::{Path, RawQuery, State, WebSocketUpgrade};
    use axum::response::Response;
    use axum::routing::get;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
    use kube::api::{Api, AttachParams};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    // -- pure framing -------------------------------------------------------------------------------------------

    #[test]
    fn port_init_frames_are_three_bytes_little_endian() {
        assert_eq!(port_init_frame(0, 3306).as_ref(), &[0, 0xea, 0x0c]);
        assert_eq!(port_init_frame(3, 80).as_ref(), &[3, 80, 0]);
        assert_eq!(port_channels(0), (0, 1));
        assert_eq!(port_channels(127), (254, 255));
    }

    #[test]
    fn port_forward_input_keeps_only_data_channels_of_known_ports() {
        let data = Message::Binary(Bytes::from_static(&[2, 7, 8]));
        assert_eq!(
            classify_port_forward_input(&data, 2),
            PortForwardInput::Data(1, &[7, 8])
        );
        // Port index 1 when only one port was requested.
        let unknown_port = Message::Binary(Bytes::from_static(&[2, 7]));
        assert_eq!(classify_port_forward_input(&unknown_port, 1), PortForwardInput::Ignore);
        for ignored in [
            Message::Binary(Bytes::from_static(&[1, 7])), // error channel
            Message::Binary(Bytes::from_static(&[0])),    // ready frame
            Message::Text("0abc".into()),
            Message::Ping(Bytes::new()),
        ] {
            assert_eq!(
                classify_port_forward_input(&ignored, 2),
                PortForwardInput::Ignore,
                "{ignored:?}"
            );
        }
        assert_eq!(
            classify_port_forward_input(&Message::Close(None), 1),
            PortForwardInput::Close
        );
    }

    #[test]
    fn exec_close_channel_only_exists_in_v5() {
        let close = Message::Binary(Bytes::from_static(&[255, 0]));
        assert_eq!(classify_exec_input(&close, ExecProtocol::V5), ExecInput::CloseStdin);
        assert_eq!(classify_exec_input(&close, ExecProtocol::V4), ExecInput::Ignore);
        let stdin = Message::Binary(Bytes::from_static(&[0, b'x']));
        assert_eq!(classify_exec_input(&stdin, ExecProtocol::V4), ExecInput::Stdin(b"x"));
        let resize = Message::Binary(Bytes::from_static(b"\x04{\"Width\":80,\"Height\":24}"));
        assert_eq!(
            classify_exec_input(&resize, ExecProtocol::V5),
            ExecInput::Resize(b"{\"Width\":80,\"Height\":24}")
        );
        assert_eq!(
            ExecProtocol::from_negotiated(Some("v5.channel.k8s.io")),
            ExecProtocol::V5
        );
        assert_eq!(
            ExecProtocol::from_negotiated(Some("v4.channel.k8s.io")),
            ExecProtocol::V4
        );
    }

    #[test]
    fn dial_errors_read_like_go() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(
            port_forward_error_message(3306, "mysql-0, uid 42", &refused),
            "error forwarding port 3306 to pod mysql-0, uid 42: dial tcp4 127.0.0.1:3306: connect: connection refused"
        );
        let custom = io::Error::other("pod has no network namespace");
        assert_eq!(
            port_forward_error_message(3306, "mysql-0, uid 42", &custom),
            "error forwarding port 3306 to pod mysql-0, uid 42: pod has no network namespace"
        );
    }

    #[test]
    fn exec_statuses_match_the_kubelet() {
        assert_eq!(
            exec_status(&ExecOutcome::Exited(0)),
            serde_json::json!({"metadata": {}, "status": "Success"})
        );
        assert_eq!(
            exec_status(&ExecOutcome::Exited(3)),
            serde_json::json!({
                "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                "message": "command terminated with non-zero exit code: exit status 3",
                "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
            })
        );
        let failed = exec_status(&ExecOutcome::Failed("boom".into()));
        assert_eq!(failed["reason"], "InternalError");
        assert_eq!(failed["code"], 500);
        assert_eq!(
            failed["message"],
            "Internal error occurred: error executing command in container: boom"
        );
        let spawn = describe_spawn_failure(&["nope".into()], io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(
            spawn.to_string(),
            "OCI runtime exec failed: exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH: unknown"
        );
    }

    // -- a tiny API server driven by the real kube client --------------------------------------------------------

    struct Backends {
        /// Pod port -> where the "pod" listens. Unlisted ports get a refused address.
        ports: HashMap<u16, SocketAddr>,
        refused: SocketAddr,
    }

    fn query_values(query: &Option<String>, key: &str) -> Vec<String> {
        form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .collect()
    }

    fn query_flag(query: &Option<String>, key: &str) -> bool {
        query_values(query, key).iter().any(|v| v == "true" || v == "1")
    }

    async fn portforward(
        State(backends): State<Arc<Backends>>,
        Path((_ns, name)): Path<(String, String)>,
        RawQuery(query): RawQuery,
        ws: WebSocketUpgrade,
    ) -> Response {
        let ports: Vec<u16> = query_values(&query, "ports")
            .iter()
            .flat_map(|list| {
                list.split(',')
                    .map(|p| p.trim().parse::<u16>().expect("numeric port"))
                    .collect::<Vec<_>>()
            })
            .collect();
        ws.protocols(["v4.channel.k8s.io"])
            .on_upgrade(move |socket| async move {
                if name == "dropme" {
                    return drop_after_init(socket, ports).await;
                }
                let connect = move |port: u16| -> BoxFuture<'static, io::Result<TcpStream>> {
                    let addr = backends.ports.get(&port).copied().unwrap_or(backends.refused);
                    Box::pin(TcpStream::connect(addr))
                };
                serve_port_forward(socket, ports, format!("{name}, uid test-uid"), connect).await
            })
    }

    async fn exec(RawQuery(query): RawQuery, ws: WebSocketUpgrade, v4_only: bool) -> Response {
        let argv = query_values(&query, "command");
        let (stdin, stdout, stderr) = (
            query_flag(&query, "stdin"),
            query_flag(&query, "stdout"),
            query_flag(&query, "stderr"),
        );
        let protocols: &[&'static str] = if v4_only {
            &["v4.channel.k8s.io"]
        } else {
            &["v5.channel.k8s.io", "v4.channel.k8s.io"]
        };
        ws.protocols(protocols.iter().copied())
            .on_upgrade(move |socket| async move {
                let protocol = ExecProtocol::of(&socket);
                let piped = |on: bool| {
                    if on {
                        std::process::Stdio::piped()
                    } else {
                        std::process::Stdio::null()
                    }
                };
                if query_flag(&query, "tty") {
                    let mut command = std::process::Command::new(&argv[0]);
                    command.args(&argv[1..]);
                    let process = Terminal::attach(&mut command).and_then(|terminal| {
                        let child = tokio::process::Command::from(command).kill_on_drop(true).spawn()?;
                        Ok(ExecProcess {
                            child,
                            terminal: Some(terminal),
                        })
                    });
                    return serve_exec(socket, protocol, process, stdin, stdout, false).await;
                }
                let child = tokio::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(piped(stdin))
                    .stdout(piped(stdout))
                    .stderr(piped(stderr))
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|err| describe_spawn_failure(&argv, err))
                    .map(ExecProcess::from);
                serve_exec(socket, protocol, child, stdin, stdout, stderr).await
            })
    }

    async fn free_refused_addr() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    }

    async fn start_echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = tcp.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// A "pod" that greets, then closes its connection.
    async fn start_greeter(greeting: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind greeter");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let _ = tcp.write_all(greeting).await;
            }
        });
        addr
    }

    async fn start_api(ports: HashMap<u16, SocketAddr>) -> Api<Pod> {
        let backends = Arc::new(Backends {
            ports,
            refused: free_refused_addr().await,
        });
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}/pods/{name}/portforward", get(portforward))
            .route(
                "/api/v1/namespaces/{ns}/pods/{name}/exec",
                get(|q: RawQuery, ws: WebSocketUpgrade| exec(q, ws, false)),
            )
            .route(
                "/api/v1/namespaces/{ns}/pods/v4pod/exec",
                get(|q: RawQuery, ws: WebSocketUpgrade| exec(q, ws, true)),
            )
            .with_state(backends);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        let config = kube::Config::new(format!("http://{addr}").parse().expect("url"));
        let client = kube::Client::try_from(config).expect("client");
        Api::namespaced(client, "default")
    }

    fn within<F: std::future::Future>(f: F) -> tokio::time::Timeout<F> {
        tokio::time::timeout(Duration::from_secs(20), f)
    }

    // -- port-forward -------------------------------------------------------------------------------------------

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn port_forward_echoes_and_closes_cleanly_when_the_client_closes_first() {
        let pods = start_api(HashMap::from([(3306, start_echo().await)])).await;
        let mut pf = pods.portforward("p", &[3306]).await.expect("portforward");
        let mut stream = pf.take_stream(3306).expect("stream");
        let errors = pf.take_error(3306).expect("error future");
        stream.write_all(b"ping").await.expect("write");
        let mut reply = [0u8; 4];
        within(stream.read_exact(&mut reply))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(&reply, b"ping");
        stream.shutdown().await.expect("shutdown");
        drop(stream);
        within(pf.join()).await.expect("in time").expect("clean join");
        assert_eq!(errors.await, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn port_forward_carries_mebibytes_intact() {
        let pods = start_api(HashMap::from([(3306, start_echo().await)])).await;
        let mut pf = pods.portforward("p", &[3306]).await.expect("portforward");
        let stream = pf.take_stream(3306).expect("stream");
        let (mut reader, mut writer) = tokio::io::split(stream);
        let payload: Vec<u8> = (0..5 * 1024 * 1024u32)
            .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        let sent = payload.clone();
        let write = tokio::spawn(async move {
            for chunk in sent.chunks(70_000) {
                writer.write_all(chunk).await.expect("write");
            }
            writer
        });
        let mut received = vec![0u8; payload.len()];
        let started = std::time::Instant::now();
        within(reader.read_exact(&mut received))
            .await
            .expect("in time")
            .expect("read");
        let elapsed = started.elapsed();
        assert!(received == payload, "echoed bytes differ");
        eprintln!("5 MiB echoed through port-forward in {elapsed:?}");
        let mut writer = write.await.expect("writer task");
        writer.shutdown().await.expect("shutdown");
        drop((reader, writer));
        within(pf.join()).await.expect("in time").expect("clean join");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn port_forward_serves_several_ports_on_one_socket() {
        let pods = start_api(HashMap::from([
            (3306, start_echo().await),
            (80, start_greeter(b"hello").await),
        ]))
        .await;
        let mut pf = pods.portforward("p", &[80, 3306]).await.expect("portforward");
        let mut web = pf.take_stream(80).expect("stream 80");
        let mut db = pf.take_stream(3306).expect("stream 3306");
        db.write_all(b"select 1").await.expect("write");
        let mut reply = [0u8; 8];
        within(db.read_exact(&mut reply)).await.expect("in time").expect("read");
        assert_eq!(&reply, b"select 1");
        // The greeter closes its connection: port 80 is done, 3306 stays usable. The protocol has no per-port
        // close, so the local stream of port 80 only ends with the whole socket (as with a real kubelet).
        let mut greeting = [0u8; 5];
        within(web.read_exact(&mut greeting))
            .await
            .expect("in time")
            .expect("read greeting");
        assert_eq!(&greeting, b"hello");
        db.write_all(b"again").await.expect("write again");
        let mut again = [0u8; 5];
        within(db.read_exact(&mut again))
            .await
            .expect("in time")
            .expect("read again");
        assert_eq!(&again, b"again");
        drop((web, db));
        within(pf.join()).await.expect("in time").expect("clean join");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn port_forward_backend_eof_ends_the_local_stream() {
        let pods = start_api(HashMap::from([(3306, start_greeter(b"bye").await)])).await;
        let mut pf = pods.portforward("p", &[3306]).await.expect("portforward");
        let mut stream = pf.take_stream(3306).expect("stream");
        let errors = pf.take_error(3306).expect("error future");
        let mut got = Vec::new();
        within(stream.read_to_end(&mut got))
            .await
            .expect("in time")
            .expect("read to end");
        assert_eq!(got, b"bye");
        drop(stream);
        // The server closed first: kube reports SendAfterClosing once the user side closes, which callers ignore.
        let joined = within(pf.join()).await.expect("in time");
        eprintln!("join after the server closed first: {joined:?}");
        if let Err(err) = joined {
            assert!(format!("{err:?}").contains("SendAfterClosing"), "{err:?}");
        }
        assert_eq!(errors.await, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn port_forward_refused_connection_reports_on_the_error_channel() {
        let pods = start_api(HashMap::new()).await;
        let mut pf = pods.portforward("mysql-0", &[3306]).await.expect("portforward");
        let mut stream = pf.take_stream(3306).expect("stream");
        let error = within(pf.take_error(3306).expect("error future"))
            .await
            .expect("in time");
        assert_eq!(
            error.as_deref(),
            Some(
                "error forwarding port 3306 to pod mysql-0, uid test-uid: dial tcp4 127.0.0.1:3306: connect: connection refused"
            )
        );
        let mut rest = Vec::new();
        within(stream.read_to_end(&mut rest))
            .await
            .expect("in time")
            .expect("eof");
        assert!(rest.is_empty());
        drop(stream);
        let _ = within(pf.join()).await.expect("in time");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_forward_fails_the_client_after_init() {
        let pods = start_api(HashMap::from([(3306, start_echo().await)])).await;
        let mut pf = pods.portforward("dropme", &[3306]).await.expect("portforward");
        let mut stream = pf.take_stream(3306).expect("stream");
        let errors = pf.take_error(3306).expect("error future");
        let mut rest = Vec::new();
        let _ = within(stream.read_to_end(&mut rest)).await.expect("in time");
        assert!(rest.is_empty());
        assert_eq!(within(errors).await.expect("in time"), None);
        let joined = within(pf.join()).await.expect("in time");
        assert!(joined.is_err(), "a dropped forward must fail the forwarder: {joined:?}");
    }

    // -- exec ---------------------------------------------------------------------------------------------------

    async fn run(
        pods: &Api<Pod>,
        pod: &str,
        argv: Vec<&str>,
        params: &AttachParams,
        input: Option<&[u8]>,
    ) -> (Vec<u8>, Vec<u8>, Option<Status>) {
        let mut attached = pods.exec(pod, argv, params).await.expect("exec");
        if let Some(input) = input {
            let mut stdin = attached.stdin().expect("stdin");
            stdin.write_all(input).await.expect("write stdin");
            stdin.shutdown().await.expect("shutdown stdin");
        }
        let mut stdout = attached.stdout();
        let mut stderr = attached.stderr();
        let read_all = |half: Option<_>| async move {
            let mut buf = Vec::new();
            if let Some(mut half) = half {
                tokio::io::AsyncReadExt::read_to_end(&mut half, &mut buf)
                    .await
                    .expect("read output");
            }
            buf
        };
        let (out, err) = within(async { tokio::join!(read_all(stdout.take()), read_all(stderr.take())) })
            .await
            .expect("in time");
        let status = within(attached.take_status().expect("status future"))
            .await
            .expect("in time");
        within(attached.join()).await.expect("in time").expect("join");
        (out, err, status)
    }

    fn exit_code_cause(status: &Status) -> Option<String> {
        let causes = status.details.as_ref()?.causes.as_ref()?;
        causes
            .iter()
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message.clone())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exec_streams_output_then_reports_the_exit_code() {
        let pods = start_api(HashMap::new()).await;
        let argv = vec!["sh", "-c", "echo out; echo err >&2; exit 3"];
        let (out, err, status) = run(&pods, "p", argv, &AttachParams::default().stderr(true), None).await;
        assert_eq!(String::from_utf8_lossy(&out), "out\n");
        assert_eq!(String::from_utf8_lossy(&err), "err\n");
        let status = status.expect("status");
        assert_eq!(status.status.as_deref(), Some("Failure"));
        assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
        assert_eq!(exit_code_cause(&status).as_deref(), Some("3"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exec_on_a_terminal_types_stdin_resizes_and_reports_the_exit_code() {
        let pods = start_api(HashMap::new()).await;
        let script = "test -t 0 && test -t 1 && test -t 2 && echo on-a-tty; read line; stty size; echo err >&2; exit 2";
        let params = AttachParams::interactive_tty();
        let mut attached = pods.exec("p", vec!["sh", "-c", script], &params).await.expect("exec");
        let mut stdout = attached.stdout().expect("stdout");
        assert!(attached.stderr().is_none(), "a terminal has one output stream");
        let mut output = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&output).contains("on-a-tty") {
            let n = within(stdout.read(&mut buf)).await.expect("in time").expect("read");
            assert!(n > 0, "output ended early: {:?}", String::from_utf8_lossy(&output));
            output.extend_from_slice(&buf[..n]);
        }
        let mut sizes = attached.terminal_size().expect("resize channel");
        sizes
            .send(kube::api::TerminalSize { width: 91, height: 17 })
            .await
            .expect("send size");
        // The size is set before the line is typed: both travel the same socket in order.
        let mut stdin = attached.stdin().expect("stdin");
        stdin.write_all(b"go\n").await.expect("type");
        within(stdout.read_to_end(&mut output))
            .await
            .expect("in time")
            .expect("read");
        // The terminal echoes what is typed, ends lines with \r\n, and carries stderr.
        assert_eq!(String::from_utf8_lossy(&output), "on-a-tty\r\ngo\r\n17 91\r\nerr\r\n");
        let status = within(attached.take_status().expect("status future"))
            .await
            .expect("in time")
            .expect("status");
        assert_eq!(exit_code_cause(&status).as_deref(), Some("2"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_terminal_whose_client_leaves_ends_its_process() {
        let pods = start_api(HashMap::new()).await;
        let params = AttachParams::interactive_tty();
        let mut attached = pods
            .exec("p", vec!["sh", "-c", "echo pid=$$; exec cat"], &params)
            .await
            .expect("exec");
        let mut stdout = attached.stdout().expect("stdout");
        let mut output = Vec::new();
        let mut buf = [0u8; 256];
        let pid = loop {
            let text = String::from_utf8_lossy(&output).into_owned();
            if let Some(pid) = text
                .strip_prefix("pid=")
                .and_then(|rest| rest.split_once("\r\n"))
                .and_then(|(pid, _)| pid.parse::<u32>().ok())
            {
                break pid;
            }
            let n = within(stdout.read(&mut buf)).await.expect("in time").expect("read");
            assert!(n > 0, "output ended early: {text:?}");
            output.extend_from_slice(&buf[..n]);
        };
        // The user's connection drops without a goodbye (kubectl killed, laptop closed).
        attached.abort();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            // Gone, or a zombie waiting to be reaped: either way it no longer runs.
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if state.is_empty() || state.contains(") Z ") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the process on the terminal outlived its user"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exec_feeds_stdin_until_the_client_closes_it() {
        let pods = start_api(HashMap::new()).await;
        let params = AttachParams::default().stdin(true).stderr(false);
        let (out, _, status) = run(&pods, "p", vec!["cat"], &params, Some(b"line one\nline two\n")).await;
        assert_eq!(String::from_utf8_lossy(&out), "line one\nline two\n");
        assert_eq!(status.expect("status").status.as_deref(), Some("Success"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exec_delivers_all_output_before_the_status() {
        let pods = start_api(HashMap::new()).await;
        let argv = vec!["sh", "-c", "head -c 3000000 /dev/zero; head -c 100000 /dev/zero >&2"];
        let (out, err, status) = run(&pods, "p", argv, &AttachParams::default(), None).await;
        assert_eq!((out.len(), err.len()), (3_000_000, 100_000));
        assert_eq!(status.expect("status").status.as_deref(), Some("Success"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exec_of_a_missing_executable_is_an_internal_error() {
        let pods = start_api(HashMap::new()).await;
        let (out, _, status) = run(&pods, "p", vec!["no-such-binary-x"], &AttachParams::default(), None).await;
        assert!(out.is_empty());
        let status = status.expect("status");
        assert_eq!(status.reason.as_deref(), Some("InternalError"));
        assert_eq!(status.code, Some(500));
        assert_eq!(
            status.message.as_deref(),
            Some(
                "Internal error occurred: error executing command in container: OCI runtime exec failed: exec failed: unable to start container process: exec: \"no-such-binary-x\": executable file not found in $PATH: unknown"
            )
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exec_over_v4_reports_status_and_ends_stdin_with_the_socket() {
        let pods = start_api(HashMap::new()).await;
        let (out, _, status) = run(&pods, "v4pod", vec!["echo", "hi"], &AttachParams::default(), None).await;
        assert_eq!(String::from_utf8_lossy(&out), "hi\n");
        assert_eq!(status.expect("status").status.as_deref(), Some("Success"));

        // v4 has no close channel: the client closes the socket, the child sees EOF, later output is lost.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("stdin.txt");
        // The file appears only once cat has seen EOF.
        let script = format!("cat > {0}.tmp && mv {0}.tmp {0}", file.display());
        let params = AttachParams::default().stdin(true).stderr(false);
        let mut attached = pods
            .exec("v4pod", vec!["sh", "-c", &script], &params)
            .await
            .expect("exec");
        let mut stdin = attached.stdin().expect("stdin");
        stdin.write_all(b"kept\n").await.expect("write");
        stdin.shutdown().await.expect("shutdown");
        let mut out = Vec::new();
        let mut stdout = attached.stdout().expect("stdout");
        within(stdout.read_to_end(&mut out))
            .await
            .expect("in time")
            .expect("read");
        let _ = within(attached.join()).await.expect("in time");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if std::fs::read_to_string(&file).is_ok_and(|text| text == "kept\n") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the child never saw stdin end");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
