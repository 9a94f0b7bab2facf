//! Sessions and files against a fake server on 127.0.0.1: the requests the client sends (method, path, headers,
//! body) and how it reads the answers, errors included.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use pyexec_client::{Client, Error, EvalRequest, NewSession, SessionConfig, SessionState};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A request as the fake server received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// An answer: status, content type, body.
type Answer = (u16, &'static str, Vec<u8>);

struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    /// Serves `answer(request)` to every request, one per connection.
    async fn start(answer: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let log = log.clone();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    loop {
                        let Some(request) = read_request(&mut read).await else { return };
                        let (status, kind, body) = answer(&request);
                        log.lock().unwrap().push(request);
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        if write.write_all(head.as_bytes()).await.is_err() || write.write_all(&body).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Fake { url, seen }
    }

    fn client(&self) -> Client {
        Client::new(&self.url).unwrap()
    }

    fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn read_request(read: &mut (impl tokio::io::AsyncBufRead + Unpin)) -> Option<Seen> {
    let mut line = String::new();
    read.read_line(&mut line).await.ok().filter(|n| *n > 0)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        read.read_line(&mut line).await.ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut seen = Seen { method, target, headers, body: Vec::new() };
    if let Some(len) = seen.header("content-length") {
        let mut body = vec![0; len.parse().ok()?];
        read.read_exact(&mut body).await.ok()?;
        seen.body = body;
    } else if seen.header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut size = String::new();
            read.read_line(&mut size).await.ok()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            read.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                break;
            }
            seen.body.extend_from_slice(&chunk[..size]);
        }
    }
    Some(seen)
}

const SESSION: &str = r#"{"session_id":"ses_1","state":"idle","python_version":"3.12",
  "created_at":"2026-12-06T22:50:01.120Z","last_used_at":"2026-12-06T22:51:13.004Z",
  "expires_at":"2026-12-06T23:01:13.004Z","calls":3,"restarts":0,"memory_mb":1024,"disk_mb":1024,
  "network_disabled":true,"idle_timeout_seconds":600}"#;

const JSON: &str = "application/json";

fn json(status: u16, body: &str) -> Answer {
    (status, JSON, body.as_bytes().to_vec())
}

#[tokio::test]
async fn sessions_are_created_listed_called_and_deleted() {
    let fake = Fake::start(|r| match (r.method.as_str(), r.target.as_str()) {
        ("POST", "/api/v1/sessions") => json(201, SESSION),
        ("GET", "/api/v1/sessions") => json(200, &format!(r#"{{"sessions":[{SESSION}]}}"#)),
        ("GET", "/api/v1/sessions/ses_1") => json(200, SESSION),
        ("DELETE", "/api/v1/sessions/ses_1") => json(200, &SESSION.replace("\"idle\"", "\"ended\"")),
        ("POST", "/api/v1/sessions/ses_1/eval") => json(
            200,
            r#"{"execution_id":"exe_1","status":"completed","exit_code":0,"result":"42","session_id":"ses_1",
                "outputs":[{"type":"image/png","data":"iVBORw0KGgo="}],
                "files":[{"path":"plot.png","size":8,"sha256":"ab"}]}"#,
        ),
        _ => json(404, r#"{"error":"not here"}"#),
    })
    .await;
    let client = fake.client().api_key(Some("k".into()));

    let request = NewSession {
        python_version: Some("3.12".into()),
        requirements_txt: Some("pandas".into()),
        env_vars: Some(vec!["MODE=test".into()]),
        config: Some(SessionConfig { memory_mb: Some(512), idle_timeout_seconds: Some(60), ..Default::default() }),
    };
    let session = client.create_session(&request).await.unwrap();
    assert_eq!((session.session_id.as_str(), session.state, session.calls), ("ses_1", SessionState::Idle, 3));
    let sent = fake.last();
    assert_eq!(sent.header("authorization"), Some("Bearer k"));
    let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"python_version": "3.12", "requirements_txt": "pandas", "env_vars": ["MODE=test"],
                           "config": {"memory_mb": 512, "idle_timeout_seconds": 60}})
    );
    let empty = client.create_session(&NewSession::default()).await.unwrap();
    assert_eq!(empty.session_id, "ses_1");
    assert_eq!(fake.last().body, b"{}", "every field is optional");

    assert_eq!(client.list_sessions().await.unwrap().len(), 1);
    assert_eq!(client.get_session("ses_1").await.unwrap().python_version, "3.12");

    let call = EvalRequest { code: Some("x * 2".into()), eval_last_expr: Some(true), ..Default::default() };
    let result = client.session_eval("ses_1", &call).await.unwrap();
    assert_eq!((result.result.as_deref(), result.session_id.as_deref()), (Some("42"), Some("ses_1")));
    assert_eq!((result.outputs[0].kind.as_str(), result.files[0].path.as_str()), ("image/png", "plot.png"));
    let body: serde_json::Value = serde_json::from_slice(&fake.last().body).unwrap();
    assert_eq!(body, serde_json::json!({"code": "x * 2", "eval_last_expr": true}));

    let ended = client.delete_session("ses_1").await.unwrap();
    assert_eq!(ended.state, SessionState::Ended);
    assert_eq!(fake.last().method, "DELETE");

    // Ids never add path segments.
    let err = client.get_session("ses_1/../../executions").await.unwrap_err();
    assert_eq!(fake.last().target, "/api/v1/sessions/ses_1executions");
    assert!(matches!(&err, Error::NotFound { what } if what == "session ses_1/../../executions"), "{err}");
}

#[tokio::test]
async fn busy_full_and_unknown_sessions_are_typed_errors() {
    let fake = Fake::start(|r| match (r.method.as_str(), r.target.as_str()) {
        ("POST", "/api/v1/sessions") => {
            (429, JSON, br#"{"error":"the server runs 16 sessions, its maximum"}"#.to_vec())
        }
        ("POST", "/api/v1/sessions/ses_busy/eval") => {
            json(409, r#"{"error":"session ses_busy is busy with another call"}"#)
        }
        ("POST", "/api/v1/eval") => json(429, r#"{"error":"queue full"}"#),
        ("POST", "/api/v1/sessions/ses_bad/eval") => json(400, r#"{"error":"python_version belongs to the session"}"#),
        _ => json(404, r#"{"error":"session not found"}"#),
    })
    .await;
    let client = fake.client();
    let err = client.create_session(&NewSession::default()).await.unwrap_err();
    assert!(matches!(&err, Error::TooManySessions { message, .. } if message.contains("16 sessions")), "{err}");
    assert!(err.to_string().starts_with("too many sessions: "), "{err}");

    let call = EvalRequest { code: Some("1".into()), ..Default::default() };
    let err = client.session_eval("ses_busy", &call).await.unwrap_err();
    assert!(matches!(&err, Error::Busy(m) if m == "session ses_busy is busy with another call"), "{err}");
    let err = client.session_eval("ses_gone", &call).await.unwrap_err();
    assert_eq!(err.to_string(), "session ses_gone not found");
    let err = client.session_eval("ses_bad", &call).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { status: 400, .. }));
    let err = client.delete_session("ses_gone").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }));
    let err = client.session_files("ses_gone").await.unwrap_err();
    assert_eq!(err.to_string(), "session ses_gone not found");

    // Elsewhere 429 still means a full queue, and 404 an unknown execution (the messages of before).
    assert!(matches!(client.eval(&call).await.unwrap_err(), Error::QueueFull { .. }));
    assert_eq!(client.get("exe_x").await.unwrap_err().to_string(), "execution not found");
}

#[tokio::test]
async fn files_are_listed_downloaded_and_archived() {
    let fake = Fake::start(|r| match r.target.as_str() {
        "/api/v1/executions/exe_1/files" | "/api/v1/sessions/ses_1/files" => {
            json(200, r#"{"files":[{"path":"out/plot 1.png","size":4,"sha256":"9f2c"}],"truncated":true}"#)
        }
        "/api/v1/executions/exe_1/files/out/plot%201.png" | "/api/v1/sessions/ses_1/files/out/plot%201.png" => {
            (200, "image/png", vec![0x89, b'P', b'N', b'G'])
        }
        "/api/v1/executions/exe_1/files?format=tar" | "/api/v1/sessions/ses_1/files?format=tar" => {
            (200, "application/x-tar", vec![7; 3000])
        }
        "/api/v1/executions/exe_1/files/%C3%A9t%C3%A9%3F.csv" => (200, "text/csv", b"a,b\n".to_vec()),
        _ => json(404, r#"{"error":"no such file"}"#),
    })
    .await;
    let client = fake.client();

    for list in [client.execution_files("exe_1").await.unwrap(), client.session_files("ses_1").await.unwrap()] {
        assert!(list.truncated);
        assert_eq!(
            (list.files[0].path.as_str(), list.files[0].size, list.files[0].sha256.as_str()),
            ("out/plot 1.png", 4, "9f2c")
        );
    }
    assert_eq!(&client.download_file("exe_1", "out/plot 1.png").await.unwrap()[..], b"\x89PNG");
    assert_eq!(&client.session_download("ses_1", "out/plot 1.png").await.unwrap()[..], b"\x89PNG");
    assert_eq!(&client.download_file("exe_1", "été?.csv").await.unwrap()[..], b"a,b\n");

    let mut sink = Vec::new();
    assert_eq!(client.download_file_to("exe_1", "out/plot 1.png", &mut sink).await.unwrap(), 4);
    assert_eq!(sink, b"\x89PNG");
    let mut tar = Vec::new();
    assert_eq!(client.download_files_tar("exe_1", &mut tar).await.unwrap(), 3000);
    assert_eq!(tar, vec![7; 3000]);
    let mut tar = Vec::new();
    assert_eq!(client.session_download_tar("ses_1", &mut tar).await.unwrap(), 3000);
    let mut sink = Vec::new();
    client.session_download_to("ses_1", "out/plot 1.png", &mut sink).await.unwrap();
    assert_eq!(sink, b"\x89PNG");

    let err = client.download_file("exe_1", "missing.txt").await.unwrap_err();
    assert_eq!(err.to_string(), "file \"missing.txt\" of execution exe_1 not found");

    // Hostile paths are refused before anything is sent: URLs would resolve `..` (even as %2e%2e) elsewhere.
    let before = fake.count();
    for path in ["../../../etc/passwd", "/etc/passwd", "a/../../x", "a//b", "", "x\0y", "./x"] {
        assert!(matches!(client.download_file("exe_1", path).await, Err(Error::Input(_))), "{path:?}");
        assert!(matches!(client.session_download("ses_1", path).await, Err(Error::Input(_))), "{path:?}");
        let err = client.session_upload_bytes("ses_1", path, "x").await.unwrap_err();
        assert!(err.to_string().starts_with("invalid file path"), "{err}");
    }
    assert_eq!(fake.count(), before, "no request went out");
}

#[tokio::test]
async fn uploads_are_streamed_from_disk_with_their_length() {
    let fake = Fake::start(|r| match (r.method.as_str(), r.target.as_str()) {
        ("PUT", "/api/v1/sessions/ses_1/files/data/big%20file.bin") => {
            json(201, &format!(r#"{{"path":"data/big file.bin","size":{},"sha256":"00"}}"#, r.body.len()))
        }
        ("PUT", "/api/v1/sessions/ses_1/files/huge.bin") => json(413, r#"{"error":"upload over 100 MiB"}"#),
        _ => json(404, r#"{"error":"session not found"}"#),
    })
    .await;
    let client = fake.client();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("big.bin");
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&local, &content).unwrap();

    let stored = client.session_upload("ses_1", "data/big file.bin", &local).await.unwrap();
    assert_eq!((stored.path.as_str(), stored.size), ("data/big file.bin", 3_000_000));
    let sent = fake.last();
    assert_eq!(sent.header("content-length"), Some("3000000"), "the length goes first, for a 413 up front");
    assert_eq!(sent.header("content-type"), Some("application/octet-stream"));
    assert!(sent.body == content, "the bytes arrive unchanged");

    let err = client.session_upload("ses_1", "huge.bin", &local).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { status: 413, .. }), "{err}");
    let err = client.session_upload("ses_gone", "x.bin", &local).await.unwrap_err();
    assert_eq!(err.to_string(), "session ses_gone not found");
    let err = client.session_upload("ses_1", "x.bin", &dir.path().join("absent")).await.unwrap_err();
    assert!(matches!(err, Error::Input(_)), "{err}");
    let err = client.session_upload("ses_1", "x.bin", dir.path()).await.unwrap_err();
    assert!(err.to_string().ends_with("is not a file"), "{err}");

    let stored = client.session_upload_bytes("ses_1", "data/big file.bin", b"abc".to_vec()).await.unwrap();
    assert_eq!(stored.size, 3);
}
