//! The attach subresource of Pods, emulated end to end: kube's client upgrades the connection to a WebSocket and
//! speaks the `v5.channel.k8s.io` protocol over it, so the fake answers through a real HTTP/1.1 server and client
//! joined by an in-memory pipe (hyper hands the upgraded connection to both ends). What the client writes to the
//! container's stdin (channel 0) is kept per (Pod, container) until it closes stdin (the v5 close signal, or the
//! WebSocket's close), as a container with `stdinOnce` would read it; then the fake closes the connection, as the
//! API server does for an attach that carries stdin only (a status frame is exec's, sent when its process exits).

use std::convert::Infallible;

use futures::StreamExt;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kube::client::Body;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The stream protocol the fake speaks (kube offers v5 first; the API server picks it).
const PROTOCOL: &str = "v5.channel.k8s.io";
const STDIN_CHANNEL: u8 = 0;
const CLOSE_CHANNEL: u8 = 255;

/// Answers an attach request whose headers are `headers`: a `101 Switching Protocols` carrying the upgraded
/// connection, and `done` receives the bytes written to stdin once the client closed it.
pub(super) async fn upgrade(
    headers: http::HeaderMap,
    uri: http::Uri,
    done: impl FnOnce(Vec<u8>) + Send + 'static,
) -> Response<Body> {
    let Some(key) = headers.get(http::header::SEC_WEBSOCKET_KEY).cloned() else {
        return plain(StatusCode::BAD_REQUEST, "attach needs a WebSocket upgrade");
    };
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let done = std::sync::Mutex::new(Some(done));
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let done = done.lock().unwrap().take();
        async move {
            let accept = derive_accept_key(request.headers()[http::header::SEC_WEBSOCKET_KEY].as_bytes());
            tokio::spawn(async move {
                let Ok(upgraded) = hyper::upgrade::on(request).await else { return };
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
                let stdin = serve(ws).await;
                if let Some(done) = done {
                    done(stdin);
                }
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
    let _ = ws.close(None).await;
    // Until the client answers the close: dropping the connection first would break its side of the handshake.
    while let Some(Ok(_)) = ws.next().await {}
    stdin
}

fn plain(code: StatusCode, message: &str) -> Response<Body> {
    super::status(code, super::reason_of(code), message)
}
