//! pods/portforward over SPDY/3.1, the protocol kubectl speaks for port-forward (`portforward.k8s.io`).
//!
//! kubectl 1.30+ first tunnels the SPDY byte stream through a WebSocket (subprotocol
//! `SPDY/3.1+portforward.k8s.io`, raw SPDY bytes in Binary messages, no channel byte: client-go
//! `tools/portforward/tunneling_connection.go`) and falls back to a plain `Upgrade: SPDY/3.1` connection when the
//! server refuses that upgrade. Either way the session is the same: per forwarded connection the client opens an
//! `error` stream, then a `data` stream, both carrying the headers `streamType`, `port` and `requestID`; the server
//! answers each SYN_STREAM with an empty SYN_REPLY (kubelet `portforward/httpstream.go`), relays the data stream to
//! the pod port, writes a failure on the error stream, and ends both streams with FIN. No `ports` query: the ports
//! travel in the stream headers, so one session serves any number of ports and connections at once.
//!
//! Frame layouts: SPDY draft 3 (draft-mbelshe-httpbis-spdy-00, sections 2.2 and 2.6). Header blocks share one zlib
//! context per direction, primed with the SPDY/3 dictionary (section 2.6.10.1). The client compresses with that
//! dictionary, so we inflate with it; our own header blocks (only empty SYN_REPLYs) go out as stored deflate
//! blocks in a zlib stream that declares no dictionary, which zlib readers accept.

use std::collections::HashMap;
use std::io;

use axum::body::Bytes;
use futures::future::BoxFuture;
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// The subprotocol kubectl asks for when it tunnels SPDY through a WebSocket.
pub const WEBSOCKET_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// `X-Stream-Protocol-Version` of a plain SPDY port-forward.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status PROTOCOL_ERROR.
const RST_PROTOCOL_ERROR: u32 = 1;
/// Read size for pod output.
const READ_CHUNK: usize = 32 * 1024;
const OUTGOING_QUEUE: usize = 64;
const INCOMING_QUEUE: usize = 64;

// ---------------------------------------------------------------------------------------------------------------
// Header compression
// ---------------------------------------------------------------------------------------------------------------

/// Header names of the SPDY/3 dictionary, each stored as a 4-byte big-endian length and the name.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The dictionary's tail, stored without lengths.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized",
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
);

/// The SPDY/3 header-compression dictionary.
fn dictionary() -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1424);
    for word in DICTIONARY_WORDS {
        bytes.extend_from_slice(&(word.len() as u32).to_be_bytes());
        bytes.extend_from_slice(word.as_bytes());
    }
    bytes.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    bytes
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// Size of the inflate window (a power of two, as the wrapping decompressor needs).
const WINDOW: usize = 32 * 1024;

/// The client's header-block decompressor: one zlib stream across all frames of the session.
struct HeaderInflater {
    state: Box<DecompressorOxide>,
    /// Wrapping history buffer, primed with the dictionary so back-references into it resolve.
    window: Vec<u8>,
    position: usize,
    /// Bytes of the zlib header still to skip (2, plus 4 for a dictionary id).
    header: Vec<u8>,
    header_done: bool,
    dictionary_id: u32,
}

impl HeaderInflater {
    fn new() -> HeaderInflater {
        let dictionary = dictionary();
        let mut window = vec![0u8; WINDOW];
        window[..dictionary.len()].copy_from_slice(&dictionary);
        HeaderInflater {
            state: Box::default(),
            window,
            position: dictionary.len(),
            header: Vec::new(),
            header_done: false,
            dictionary_id: adler32(&dictionary),
        }
    }

    /// Inflates one frame's header block.
    fn inflate(&mut self, mut input: &[u8]) -> io::Result<Vec<u8>> {
        if !self.header_done {
            while self.header.len() < 2 && !input.is_empty() {
                self.header.push(input[0]);
                input = &input[1..];
            }
            if self.header.len() >= 2 {
                let wants_dictionary = self.header[1] & 0x20 != 0;
                let needed = if wants_dictionary { 6 } else { 2 };
                while self.header.len() < needed && !input.is_empty() {
                    self.header.push(input[0]);
                    input = &input[1..];
                }
                if self.header.len() == needed {
                    if wants_dictionary {
                        let id = u32::from_be_bytes([self.header[2], self.header[3], self.header[4], self.header[5]]);
                        if id != self.dictionary_id {
                            return Err(invalid(format!("header block uses an unknown zlib dictionary {id:#x}")));
                        }
                    }
                    self.header_done = true;
                }
            }
            if !self.header_done {
                return Ok(Vec::new());
            }
        }
        let mut output = Vec::new();
        loop {
            let (status, used, written) = decompress(
                &mut self.state,
                input,
                &mut self.window,
                self.position,
                inflate_flags::TINFL_FLAG_HAS_MORE_INPUT,
            );
            output.extend_from_slice(&self.window[self.position..self.position + written]);
            self.position = (self.position + written) & (WINDOW - 1);
            input = &input[used..];
            match status {
                TINFLStatus::HasMoreOutput => continue,
                TINFLStatus::NeedsMoreInput if input.is_empty() => return Ok(output),
                TINFLStatus::NeedsMoreInput => continue,
                TINFLStatus::Done => return Ok(output),
                failed => return Err(invalid(format!("cannot inflate a header block: {failed:?}"))),
            }
        }
    }
}

/// Our header blocks: a zlib stream of stored deflate blocks, each sync-flushed in its frame (the peer keeps one
/// context for the session).
struct HeaderDeflater {
    started: bool,
}

impl HeaderDeflater {
    fn deflate(&mut self, block: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(block.len() + 12);
        if !self.started {
            // CMF 0x78 (deflate, 32 KiB window), FLG 0x01: no dictionary, check bits make 0x7801 % 31 == 0.
            out.extend_from_slice(&[0x78, 0x01]);
            self.started = true;
        }
        let len = u16::try_from(block.len()).expect("our header blocks are tiny");
        // A non-final stored block: BFINAL 0, BTYPE 00, padded to the byte; then LEN and NLEN little endian.
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
        // The sync-flush marker (an empty stored block): Go's inflater only hands out a block's bytes once it
        // has read the next block header, which must therefore be in this frame.
        out.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
        out
    }
}

/// A decoded header block: lower-cased names, first value of each.
fn parse_header_block(block: &[u8]) -> io::Result<HashMap<String, String>> {
    let mut rest = block;
    let mut take = |n: usize| -> io::Result<&[u8]> {
        if rest.len() < n {
            return Err(invalid("truncated header block"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes"));
    let mut headers = HashMap::new();
    for _ in 0..count {
        let len = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let name = String::from_utf8_lossy(take(len)?).to_lowercase();
        let len = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let value = String::from_utf8_lossy(take(len)?).into_owned();
        // Several values are NUL-separated; the port-forward headers have one.
        let first = value.split('\0').next().unwrap_or_default().to_string();
        headers.entry(name).or_insert(first);
    }
    Ok(headers)
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

// ---------------------------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Control { kind: u16, flags: u8, data: Vec<u8> },
    Data { stream: u32, flags: u8, data: Vec<u8> },
}

/// The next frame, or None when the peer ended the byte stream between frames.
async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match reader.read_exact(&mut head[..1]).await {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    reader.read_exact(&mut head[1..]).await?;
    let flags = head[4];
    let length = usize::from(head[5]) << 16 | usize::from(head[6]) << 8 | usize::from(head[7]);
    let mut data = vec![0u8; length];
    reader.read_exact(&mut data).await?;
    if head[0] & 0x80 != 0 {
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(invalid(format!("unsupported SPDY version {version}")));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        Ok(Some(Frame::Control { kind, flags, data }))
    } else {
        let stream = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
        Ok(Some(Frame::Data { stream, flags, data }))
    }
}

fn control_frame(kind: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(data);
    out
}

fn data_frame(stream: u32, fin: bool, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.push(if fin { FLAG_FIN } else { 0 });
    out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(data);
    out
}

fn stream_id(data: &[u8]) -> io::Result<u32> {
    let bytes: [u8; 4] = data
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid("short frame"))?;
    Ok(u32::from_be_bytes(bytes) & 0x7fff_ffff)
}

/// What the session queues towards the client, encoded in order by the writer.
enum Outgoing {
    Reply(u32),
    Reset(u32, u32),
    Data { stream: u32, fin: bool, data: Bytes },
    Ping(Vec<u8>),
}

/// Owns the write half; encodes frames in queue order (header compression is order-sensitive). After a write
/// error it keeps accepting and dropping frames so producers never block on a dead client.
fn spawn_writer(mut writer: impl AsyncWrite + Unpin + Send + 'static) -> mpsc::Sender<Outgoing> {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(OUTGOING_QUEUE);
    tokio::spawn(async move {
        let mut deflater = HeaderDeflater { started: false };
        let mut open = true;
        while let Some(item) = rx.recv().await {
            if !open {
                continue;
            }
            let bytes = match item {
                Outgoing::Reply(stream) => {
                    let mut body = stream.to_be_bytes().to_vec();
                    body.extend(deflater.deflate(&0u32.to_be_bytes())); // no headers
                    control_frame(SYN_REPLY, 0, &body)
                }
                Outgoing::Reset(stream, status) => {
                    let mut body = stream.to_be_bytes().to_vec();
                    body.extend_from_slice(&status.to_be_bytes());
                    control_frame(RST_STREAM, 0, &body)
                }
                Outgoing::Data { stream, fin, data } => data_frame(stream, fin, &data),
                Outgoing::Ping(id) => control_frame(PING, 0, &id),
            };
            if let Err(err) = async {
                writer.write_all(&bytes).await?;
                writer.flush().await
            }
            .await
            {
                tracing::debug!("spdy write failed: {err}");
                open = false;
            }
        }
        let _ = writer.shutdown().await;
    });
    tx
}

// ---------------------------------------------------------------------------------------------------------------
// Port-forward session
// ---------------------------------------------------------------------------------------------------------------

/// What a SYN_STREAM asks for.
#[derive(Debug, PartialEq, Eq)]
enum StreamRequest {
    Error { request: String },
    Data { request: String, port: Result<u16, String> },
    Unknown(String),
}

fn classify_stream(headers: &HashMap<String, String>) -> StreamRequest {
    let request = headers.get("requestid").cloned().unwrap_or_default();
    match headers.get("streamtype").map(String::as_str) {
        Some("error") => StreamRequest::Error { request },
        Some("data") => {
            let port = match headers.get("port") {
                None => Err("port header missing".to_string()),
                Some(text) => text
                    .parse::<u16>()
                    .ok()
                    .filter(|port| *port > 0)
                    .ok_or_else(|| format!("invalid port: {text}")),
            };
            StreamRequest::Data { request, port }
        }
        other => StreamRequest::Unknown(other.unwrap_or("").to_string()),
    }
}

/// The stream id and headers of a SYN_STREAM (stream id, associated stream id, priority and slot precede the
/// header block).
fn parse_syn_stream(inflater: &mut HeaderInflater, data: &[u8]) -> io::Result<(u32, HashMap<String, String>)> {
    let stream = stream_id(data)?;
    let block = inflater.inflate(data.get(10..).ok_or_else(|| invalid("short SYN_STREAM"))?)?;
    Ok((stream, parse_header_block(&block)?))
}

/// Serves one SPDY port-forward session on `io` until the client goes away.
pub async fn serve_port_forward(
    io: impl AsyncRead + AsyncWrite + Send + 'static,
    pod_label: String,
    connect: impl Fn(u16) -> BoxFuture<'static, io::Result<TcpStream>> + Send + Sync + 'static,
) {
    let (mut reader, writer) = tokio::io::split(io);
    let outgoing = spawn_writer(writer);
    let mut inflater = HeaderInflater::new();
    // Error stream of each request, waiting for its data stream.
    let mut error_streams: HashMap<String, u32> = HashMap::new();
    // Data stream -> its forward: client bytes, and the task to abort.
    let mut forwards: HashMap<u32, (Option<mpsc::Sender<Bytes>>, AbortHandle)> = HashMap::new();

    let ended = loop {
        let frame = match read_frame(&mut reader).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        };
        match frame {
            Frame::Control {
                kind: SYN_STREAM, data, ..
            } => {
                let (stream, headers) = match parse_syn_stream(&mut inflater, &data) {
                    Ok(parsed) => parsed,
                    Err(err) => break Err(err),
                };
                let _ = outgoing.send(Outgoing::Reply(stream)).await;
                match classify_stream(&headers) {
                    StreamRequest::Error { request } => {
                        error_streams.insert(request, stream);
                    }
                    StreamRequest::Data { request, port } => {
                        let error_stream = error_streams.remove(&request);
                        let (tx, rx) = mpsc::channel::<Bytes>(INCOMING_QUEUE);
                        let connecting = port.map(|port| (port, connect(port)));
                        let task = tokio::spawn(forward(
                            stream,
                            error_stream,
                            connecting,
                            pod_label.clone(),
                            rx,
                            outgoing.clone(),
                        ));
                        forwards.retain(|_, (_, task)| !task.is_finished());
                        forwards.insert(stream, (Some(tx), task.abort_handle()));
                    }
                    StreamRequest::Unknown(kind) => {
                        tracing::info!("port-forward: rejecting a stream of unknown type {kind:?}");
                        let _ = outgoing.send(Outgoing::Reset(stream, RST_PROTOCOL_ERROR)).await;
                    }
                }
            }
            Frame::Control {
                kind: RST_STREAM, data, ..
            } => {
                if let Ok(stream) = stream_id(&data)
                    && let Some((_, task)) = forwards.remove(&stream)
                {
                    task.abort();
                }
            }
            Frame::Control { kind: PING, data, .. } => {
                let _ = outgoing.send(Outgoing::Ping(data)).await;
            }
            Frame::Control { kind: GOAWAY, .. } => break Ok(()),
            // SETTINGS, WINDOW_UPDATE, HEADERS, SYN_REPLY: nothing to do for a port-forward.
            Frame::Control { .. } => {}
            Frame::Data { stream, flags, data } => {
                if let Some((to_pod, _)) = forwards.get_mut(&stream) {
                    if !data.is_empty()
                        && let Some(tx) = to_pod
                        && tx.send(Bytes::from(data)).await.is_err()
                    {
                        *to_pod = None;
                    }
                    if flags & FLAG_FIN != 0 {
                        // The client has no more bytes for this connection: the pod sees EOF.
                        *to_pod = None;
                    }
                }
                // Data on an error stream (the client only ever half-closes it) is ignored, as kubelets do.
            }
        }
    };
    if let Err(err) = ended {
        tracing::info!("port-forward session ended: {err}");
    }
    for (_, (_, task)) in forwards {
        task.abort();
    }
}

/// One forwarded connection: connect to the pod port, relay until the pod closes, then end both streams.
async fn forward(
    data_stream: u32,
    error_stream: Option<u32>,
    connecting: Result<(u16, BoxFuture<'static, io::Result<TcpStream>>), String>,
    pod_label: String,
    mut from_client: mpsc::Receiver<Bytes>,
    outgoing: mpsc::Sender<Outgoing>,
) {
    let end = |message: Option<String>| {
        let outgoing = outgoing.clone();
        async move {
            if let Some(error_stream) = error_stream {
                if let Some(message) = message {
                    let data = Bytes::from(message.into_bytes());
                    let _ = outgoing
                        .send(Outgoing::Data {
                            stream: error_stream,
                            fin: false,
                            data,
                        })
                        .await;
                }
                let _ = outgoing
                    .send(Outgoing::Data {
                        stream: error_stream,
                        fin: true,
                        data: Bytes::new(),
                    })
                    .await;
            }
            let _ = outgoing
                .send(Outgoing::Data {
                    stream: data_stream,
                    fin: true,
                    data: Bytes::new(),
                })
                .await;
        }
    };
    let (port, connecting) = match connecting {
        Ok(connecting) => connecting,
        Err(problem) => {
            end(Some(format!("error forwarding port to pod {pod_label}: {problem}"))).await;
            return;
        }
    };
    let tcp = match connecting.await {
        Ok(tcp) => tcp,
        Err(err) => {
            let message = crate::streams::port_forward_error_message(port, &pod_label, &err);
            tracing::info!("{message}");
            end(Some(message)).await;
            return;
        }
    };
    let (mut pod_reader, mut pod_writer) = tcp.into_split();
    let writing = tokio::spawn(async move {
        while let Some(bytes) = from_client.recv().await {
            if pod_writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = pod_writer.shutdown().await;
    });
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match pod_reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                let data = Bytes::copy_from_slice(&buf[..n]);
                if outgoing
                    .send(Outgoing::Data {
                        stream: data_stream,
                        fin: false,
                        data,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Err(err) => {
                tracing::debug!("port-forward read from pod port {port} failed: {err}");
                break;
            }
        }
    }
    end(None).await;
    // Client bytes already accepted still reach the pod; the writer ends with the client's FIN.
    drop(writing);
}

// ---------------------------------------------------------------------------------------------------------------
// WebSocket tunnel
// ---------------------------------------------------------------------------------------------------------------

/// Serves a port-forward whose SPDY bytes are tunnelled through a WebSocket (Binary messages, both ways).
pub async fn serve_tunnelled_port_forward(
    ws: axum::extract::ws::WebSocket,
    pod_label: String,
    connect: impl Fn(u16) -> BoxFuture<'static, io::Result<TcpStream>> + Send + Sync + 'static,
) {
    use axum::extract::ws::{CloseFrame, Message, close_code};
    use futures::{SinkExt, StreamExt};

    let (session_side, tunnel_side) = tokio::io::duplex(256 * 1024);
    let (mut from_session, mut to_session) = tokio::io::split(tunnel_side);
    let (mut sink, mut stream) = ws.split();
    let session = tokio::spawn(serve_port_forward(session_side, pod_label, connect));
    let inbound = tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Binary(bytes) if to_session.write_all(&bytes).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        // The session reads EOF and ends.
        let _ = to_session.shutdown().await;
        stream
    });
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match from_session.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if sink
                    .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
    let _ = session.await;
    // Let the client finish the closing handshake, bounded.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), inbound).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_spdy3_one() {
        let dictionary = dictionary();
        // Length and Adler-32 of the SPDY/3 dictionary (draft 3, 2.6.10.1); zlib headers name it by the latter.
        assert_eq!(dictionary.len(), 1423);
        assert_eq!(&dictionary[..11], b"\0\0\0\x07options");
        assert!(dictionary.ends_with(b"enq=0."));
    }

    #[test]
    fn inflates_the_header_blocks_kubectl_sends() {
        // The header blocks of kubectl 1.32's first two SYN_STREAMs (error stream 1, data stream 3) for one
        // connection through `kubectl port-forward pod/mysql-0 23306:3306`, as its -v=8 log printed them. The
        // second block refers back into the first: one zlib context per session.
        let error_stream: &[u8] = &[
            0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0x25, 0x3a, 0x48, 0xf9, 0x5b, 0x04, 0x4e, 0xea, 0xc6, 0xc6, 0x06,
            0x66, 0x0c, 0x0c, 0x0c, 0x9c, 0x45, 0x90, 0xf8, 0xca, 0x04, 0xa5, 0x63, 0x46, 0x03, 0x70, 0x4a, 0x2c, 0x29,
            0x4a, 0x4d, 0xcc, 0x85, 0x16, 0x36, 0xac, 0xa9, 0xa0, 0xa8, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
        ];
        let data_stream: &[u8] = &[0x22, 0x53, 0x33, 0xa8, 0xa4, 0x4a, 0x04, 0x00, 0x00, 0x00, 0xff, 0xff];
        // Its zlib header names the SPDY/3 dictionary by Adler-32.
        assert_eq!(adler32(&dictionary()), 0xe3c6_a7c2);
        let mut inflater = HeaderInflater::new();
        let first = parse_header_block(&inflater.inflate(error_stream).expect("inflate")).expect("parse");
        assert_eq!(classify_stream(&first), StreamRequest::Error { request: "0".into() });
        let second = parse_header_block(&inflater.inflate(data_stream).expect("inflate")).expect("parse");
        assert_eq!(
            classify_stream(&second),
            StreamRequest::Data {
                request: "0".into(),
                port: Ok(3306)
            }
        );
    }

    #[test]
    fn header_blocks_parse_lowercased_first_values() {
        let mut block = 2u32.to_be_bytes().to_vec();
        for (name, value) in [("streamType", "data"), ("port", "3306\0x")] {
            block.extend_from_slice(&(name.len() as u32).to_be_bytes());
            block.extend_from_slice(name.as_bytes());
            block.extend_from_slice(&(value.len() as u32).to_be_bytes());
            block.extend_from_slice(value.as_bytes());
        }
        let headers = parse_header_block(&block).expect("parses");
        assert_eq!(headers.get("streamtype").map(String::as_str), Some("data"));
        assert_eq!(headers.get("port").map(String::as_str), Some("3306"));
        assert!(parse_header_block(&block[..block.len() - 1]).is_err());
    }

    #[test]
    fn stream_requests_name_their_port_or_the_problem() {
        let headers = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        assert_eq!(
            classify_stream(&headers(&[
                ("streamtype", "data"),
                ("port", "3306"),
                ("requestid", "0")
            ])),
            StreamRequest::Data {
                request: "0".into(),
                port: Ok(3306)
            }
        );
        assert_eq!(
            classify_stream(&headers(&[("streamtype", "data"), ("port", "x"), ("requestid", "1")])),
            StreamRequest::Data {
                request: "1".into(),
                port: Err("invalid port: x".into())
            }
        );
        assert_eq!(
            classify_stream(&headers(&[("streamtype", "error"), ("requestid", "2")])),
            StreamRequest::Error { request: "2".into() }
        );
    }

    #[test]
    fn our_header_blocks_are_a_zlib_stream_of_stored_blocks() {
        let mut deflater = HeaderDeflater { started: false };
        let first = deflater.deflate(&[0, 0, 0, 0]);
        let sync = [0x00, 0x00, 0x00, 0xff, 0xff];
        assert_eq!(first[..11], [0x78, 0x01, 0x00, 4, 0, 0xfb, 0xff, 0, 0, 0, 0]);
        assert_eq!(first[11..], sync);
        assert_eq!(
            u16::from_be_bytes([first[0], first[1]]) % 31,
            0,
            "zlib header check bits"
        );
        let second = deflater.deflate(&[0, 0, 0, 0]);
        assert_eq!(second[..9], [0x00, 4, 0, 0xfb, 0xff, 0, 0, 0, 0]);
        assert_eq!(second[9..], sync);
        // Our own inflater (no dictionary declared) reads both back.
        let mut inflater = HeaderInflater::new();
        assert_eq!(inflater.inflate(&first).expect("first"), [0, 0, 0, 0]);
        assert_eq!(inflater.inflate(&second).expect("second"), [0, 0, 0, 0]);
    }

    #[test]
    fn frames_encode_as_spdy3() {
        assert_eq!(data_frame(3, true, b"ab"), [0, 0, 0, 3, 1, 0, 0, 2, b'a', b'b']);
        assert_eq!(
            control_frame(PING, 0, &[0, 0, 0, 1]),
            [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]
        );
    }
}
