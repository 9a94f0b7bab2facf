//! The attach subresource of Pods, emulated end to end: kube's client upgrades the connection to a WebSocket and
//! speaks the `v5.channel.k8s.io` protocol over it, so the fake answers through a real HTTP/1.1 server and client
//! joined by an in-memory pipe (hyper hands the upgraded connection to both ends). What the client writes to the
//! container's stdin (channel 0) is kept per (Pod, container) until it closes stdin (the v5 close signal, or the
//! WebSocket's close), as a container with `stdinOnce` would read it; then the fake closes the connection, as the
//! API server does for an attach that carries stdin only (a status frame is exec's, sent when its process exits).
//!
//! A container can also have a real process behind it ([`Process`], started by `FakeApi::run_container`): then an
//! attach bridges to it ([`Bridge`]) instead. The process lives as long as the fake, across attaches, as a
//! container's main process does: channel 0 frames go to its stdin (one stdin shared by all attaches, never closed
//! by an attach, as with `stdinOnce: false`), and what it writes to stdout goes, as channel 1 frames, to every attach
//! open at the time that asked for stdout. Output written while no attach is open is dropped, as the kubelet does (it
//! only goes to the log, which the fake does not fill from the process). The attach ends when the client closes
//! the WebSocket, or closes its stdin (the v5 close signal: the output already read from the process is sent first),
//! or when the process's stdout ends (it exited): then the fake closes the connection, without a status frame.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kube::client::Body;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The stream protocol the fake speaks (kube offers v5 first; the API server picks it).
const PROTOCOL: &str = "v5.channel.k8s.io";
const STDIN_CHANNEL: u8 = 0;
const STDOUT_CHANNEL: u8 = 1;
const CLOSE_CHANNEL: u8 = 255;

/// A process behind a container: its stdin, shared by the attaches, and its stdout, read all along and copied to
/// the attaches open at the time. Dropping it kills the process.
pub(super) struct Process {
    _child: tokio::process::Child,
    stdin: Arc<tokio::sync::Mutex<tokio::process::ChildStdin>>,
    outputs: Arc<Mutex<Outputs>>,
}

/// Where the process's stdout goes.
#[derive(Default)]
struct Outputs {
    /// One per open attach (closed ones are dropped at the next output); unbounded, so that the process never
    /// waits on a slow attach (what an attach does not read yet is kept in memory).
    attaches: Vec<mpsc::UnboundedSender<Bytes>>,
    /// The process's stdout ended.
    ended: bool,
}

impl Process {
    /// Starts `command` with its stdin and stdout piped (stderr inherited), killed when dropped. Needs a Tokio
    /// runtime.
    pub(super) fn spawn(command: std::process::Command) -> std::io::Result<Process> {
        let mut command = tokio::process::Command::from(command);
        command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin pipe"))?;
        let mut stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout pipe"))?;
        let outputs = Arc::new(Mutex::new(Outputs::default()));
        let copies = outputs.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0; 1 << 16];
            while let Ok(read @ 1..) = stdout.read(&mut buffer).await {
                let chunk = Bytes::copy_from_slice(&buffer[..read]);
                copies.lock().unwrap().attaches.retain(|attach| attach.send(chunk.clone()).is_ok());
            }
            let mut copies = copies.lock().unwrap();
            copies.ended = true;
            copies.attaches.clear();
        });
        Ok(Process { _child: child, stdin: Arc::new(tokio::sync::Mutex::new(stdin)), outputs })
    }

    /// A new attach's end of the process: its stdin if `stdin`, its stdout (from now on) if `stdout`.
    pub(super) fn attach(&self, stdin: bool, stdout: bool) -> Bridge {
        // Subscribed even without stdout, to see the process end.
        let (sender, output) = mpsc::unbounded_channel();
        let mut outputs = self.outputs.lock().unwrap();
        if !outputs.ended {
            outputs.attaches.push(sender);
        }
        Bridge { stdin: stdin.then(|| self.stdin.clone()), stdout, output }
    }
}

/// An attach's end of a [`Process`].
pub(super) struct Bridge {
    stdin: Option<Arc<tokio::sync::Mutex<tokio::process::ChildStdin>>>,
    /// The attach asked for stdout.
    stdout: bool,
    /// What the process writes from the attach on; ends when the process's stdout ends.
    output: mpsc::UnboundedReceiver<Bytes>,
}

/// Answers an attach request whose headers are `headers`: a `101 Switching Protocols` carrying the upgraded
/// connection, served by [`serve`] (or bridged to a process, with `bridge`), and `done` receives the bytes written
/// to stdin once the attach ended.
pub(super) async fn upgrade(
    headers: http::HeaderMap,
    uri: http::Uri,
    bridge: Option<Bridge>,
    done: impl FnOnce(Vec<u8>) + Send + 'static,
) -> Response<Body> {
    let Some(key) = headers.get(http::header::SEC_WEBSOCKET_KEY).cloned() else {
        return plain(StatusCode::BAD_REQUEST, "attach needs a WebSocket upgrade");
    };
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let once = Mutex::new(Some((done, bridge)));
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let once = once.lock().unwrap().take();
        async move {
            let accept = derive_accept_key(request.headers()[http::header::SEC_WEBSOCKET_KEY].as_bytes());
            tokio::spawn(async move {
                let Ok(upgraded) = hyper::upgrade::on(request).await else { return };
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
                let Some((done, bridge)) = once else { return };
                let stdin = match bridge {
                    Some(bridge) => serve_process(ws, bridge).await,
                    None => serve(ws).await,
                };
                done(stdin);
            });
            let response = Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(http::header::UPGRADE, "websocket")
                .header(http::header::CONNECTION, "Upgrade")
                .header(http::header::SEC_WEBSOCKET_ACCEPT, accept)
                .header(http::header::SEC_WEBSOCKET_PROTOCOL, PROTOCOL)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    });
    tokio::spawn(async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server_io), service)
            .with_upgrades()
            .await;
    });
    let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(client_io)).await else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "the fake's attach handshake failed");
    };
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let mut request = Request::builder().method("GET").uri(uri);
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    request = request.header(http::header::SEC_WEBSOCKET_KEY, key).header(http::header::HOST, "fake");
    let request = request.body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    match sender.send_request(request).await {
        // The body of a 101 is empty; its extensions carry the upgrade that kube's client awaits.
        Ok(response) => response.map(|_| Body::from(Vec::new())),
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "the fake's attach request failed"),
    }
}

/// Reads stdin frames until the client closes stdin, then closes; the bytes read.
async fn serve<S>(mut ws: WebSocketStream<S>) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut stdin = Vec::new();
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Binary(data) if data.first() == Some(&STDIN_CHANNEL) => stdin.extend_from_slice(&data[1..]),
            Message::Binary(data) if data[..] == [CLOSE_CHANNEL, STDIN_CHANNEL] => break,
            Message::Close(_) => break,
            _ => {}
        }
    }
    close(ws).await;
    stdin
}

/// Bridges the attach to the process until the client closes the WebSocket or its stdin, or the process's stdout
/// ends; then closes. The bytes written to the process's stdin.
async fn serve_process<S>(mut ws: WebSocketStream<S>, mut bridge: Bridge) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut written = Vec::new();
    loop {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Binary(data))) if data.first() == Some(&STDIN_CHANNEL) => {
                    let Some(stdin) = &bridge.stdin else { continue };
                    let mut stdin = stdin.lock().await;
                    if stdin.write_all(&data[1..]).await.is_err() || stdin.flush().await.is_err() {
                        break;
                    }
                    written.extend_from_slice(&data[1..]);
                }
                Some(Ok(Message::Binary(data))) if data[..] == [CLOSE_CHANNEL, STDIN_CHANNEL] => {
                    // The process's stdin stays open; what it already wrote goes out before the close.
                    while let Ok(chunk) = bridge.output.try_recv() {
                        if bridge.stdout && ws.send(stdout_frame(&chunk)).await.is_err() {
                            break;
                        }
                    }
                    break;
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            chunk = bridge.output.recv() => match chunk {
                Some(chunk) if bridge.stdout => {
                    if ws.send(stdout_frame(&chunk)).await.is_err() {
                        break;
                    }
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    close(ws).await;
    written
}

fn stdout_frame(chunk: &[u8]) -> Message {
    let mut frame = Vec::with_capacity(chunk.len() + 1);
    frame.push(STDOUT_CHANNEL);
    frame.extend_from_slice(chunk);
    Message::binary(frame)
}

async fn close<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = ws.close(None).await;
    // Until the client answers the close: dropping the connection first would break its side of the handshake.
    while let Some(Ok(_)) = ws.next().await {}
}

fn plain(code: StatusCode, message: &str) -> Response<Body> {
    super::status(code, super::reason_of(code), message)
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    use k8s_openapi::api::core::v1::Pod;
    use kube::Api;
    use kube::api::AttachParams;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::kube::{FakeApi, NS, PODS};

    const WAIT: Duration = Duration::from_secs(10);

    fn pod(name: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
               "spec": {"containers": [{"name": "main", "image": "busybox"}]}})
    }

    fn params() -> AttachParams {
        AttachParams::default().container("main").stdin(true).stdout(true).stderr(false)
    }

    /// Writes `line` through a new attach and reads what comes back, then closes stdin and waits for the end.
    async fn round_trip(pods: &Api<Pod>, name: &str, line: &[u8]) -> Vec<u8> {
        let mut attached = pods.attach(name, &params()).await.unwrap();
        let mut stdin = attached.stdin().unwrap();
        let mut stdout = attached.stdout().unwrap();
        stdin.write_all(line).await.unwrap();
        let mut read = vec![0; line.len()];
        tokio::time::timeout(WAIT, stdout.read_exact(&mut read)).await.unwrap().unwrap();
        stdin.shutdown().await.unwrap();
        drop((stdin, stdout));
        tokio::time::timeout(WAIT, attached.join()).await.unwrap().unwrap();
        read
    }

    /// Two attaches, one after the other, talk to the same `cat`: it echoes each one's line back to it.
    #[tokio::test]
    async fn attaches_talk_to_the_process_behind_a_container() {
        let (client, fake) = FakeApi::start();
        fake.serve_attach();
        fake.put(PODS, pod("cat"));
        fake.run_container("cat", "main", Command::new("cat"));
        let pods: Api<Pod> = Api::namespaced(client, NS);
        assert_eq!(round_trip(&pods, "cat", b"hello\n").await, b"hello\n");
        assert_eq!(round_trip(&pods, "cat", b"again, the same cat\n").await, b"again, the same cat\n");
        assert_eq!(fake.attached("cat", "main"), [b"hello\n".to_vec(), b"again, the same cat\n".to_vec()]);
    }

    /// A process that exits ends the attach open on it, and a later attach ends at once; a container without a
    /// process still only collects stdin.
    #[tokio::test]
    async fn the_process_exiting_ends_its_attaches() {
        let (client, fake) = FakeApi::start();
        fake.serve_attach();
        fake.put(PODS, pod("once"));
        let mut command = Command::new("sh");
        command.args(["-c", "read line; echo \"got $line\""]);
        fake.run_container("once", "main", command);
        let pods: Api<Pod> = Api::namespaced(client, NS);

        let mut attached = pods.attach("once", &params()).await.unwrap();
        let mut stdin = attached.stdin().unwrap();
        let mut stdout = attached.stdout().unwrap();
        stdin.write_all(b"x\n").await.unwrap();
        let mut read = Vec::new();
        // To the end: the fake closes the attach when the process's stdout ends.
        tokio::time::timeout(WAIT, stdout.read_to_end(&mut read)).await.unwrap().unwrap();
        assert_eq!(read, b"got x\n");
        tokio::time::timeout(WAIT, attached.join()).await.unwrap().unwrap();

        let mut later = pods.attach("once", &params()).await.unwrap();
        let mut read = Vec::new();
        tokio::time::timeout(WAIT, later.stdout().unwrap().read_to_end(&mut read)).await.unwrap().unwrap();
        assert!(read.is_empty());
        drop(stdin);

        fake.put(PODS, pod("plain"));
        let mut plain = pods.attach("plain", &params()).await.unwrap();
        let mut stdin = plain.stdin().unwrap();
        stdin.write_all(b"kept").await.unwrap();
        stdin.shutdown().await.unwrap();
        tokio::time::timeout(WAIT, plain.join()).await.unwrap().unwrap();
        assert_eq!(fake.attached("plain", "main"), [b"kept".to_vec()]);
    }
}
