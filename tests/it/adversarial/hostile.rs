//! A hostile mirror on 127.0.0.1 port 0: serves a repo folder as a plain static host would,
//! except for the paths the current [`Scene`] answers otherwise (forged bytes, HTML block
//! pages, endless or dripping bodies, length lies, redirects). One request per connection; every
//! request path is logged, so a test can prove a host was never contacted. The scene is swapped
//! between cases, so one server serves a whole corpus. Stops when dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::http_support::{read_head, serve_loopback};

/// How the hostile mirror answers one path.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `status`, the extra `headers` and `body`, with a true `Content-Length`.
    Bytes {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// 200 without a `Content-Length`, then zeros until the client hangs up (at most 256 MiB).
    Endless,
    /// Announces `announced` bytes in `Content-Length`, sends `body` and closes.
    LengthLie { announced: u64, body: Vec<u8> },
    /// 200 with a true `Content-Length`, then the body one byte every `every` (slow-loris).
    Drip { body: Vec<u8>, every: Duration },
    /// `302 Found` to an absolute URL.
    Redirect(String),
    /// The inner reply, after a pause (a slower mirror).
    Delayed(Duration, Box<Reply>),
}

impl Reply {
    /// A 200 with `content_type` and `body`.
    pub fn ok(content_type: &str, body: Vec<u8>) -> Reply {
        Reply::Bytes {
            status: 200,
            headers: vec![("Content-Type", content_type.to_owned())],
            body,
        }
    }
}

/// What the mirror serves: files under `root` (the layout), except the `replies` by URL path
/// (`/qasid/v1/...`).
#[derive(Debug, Clone, Default)]
pub struct Scene {
    pub root: PathBuf,
    pub replies: HashMap<String, Reply>,
}

impl Scene {
    pub fn files(root: &Path) -> Scene {
        Scene {
            root: root.to_owned(),
            replies: HashMap::new(),
        }
    }

    pub fn with(mut self, path: &str, reply: Reply) -> Scene {
        self.replies.insert(path.to_owned(), reply);
        self
    }
}

pub struct HostileMirror {
    /// `http://127.0.0.1:PORT/`
    pub url: String,
    scene: Arc<Mutex<Arc<Scene>>>,
    log: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
}

impl HostileMirror {
    pub async fn start(scene: Scene) -> HostileMirror {
        let shared = Arc::new(Mutex::new(Arc::new(scene)));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (scene, log2, token) = (shared.clone(), log.clone(), stop.clone());
        let url = serve_loopback(&stop, move |stream| {
            let current = scene.lock().unwrap().clone();
            let (log, token) = (log2.clone(), token.clone());
            async move { serve(stream, &current, &log, &token).await }
        })
        .await;
        HostileMirror {
            url,
            scene: shared,
            log,
            stop,
        }
    }

    /// Serves `scene` from the next connection on.
    pub fn set(&self, scene: Scene) {
        *self.scene.lock().unwrap() = Arc::new(scene);
    }

    /// Paths requested since the last [`HostileMirror::take_requests`].
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Drop for HostileMirror {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn content_type(path: &str) -> &'static str {
    if path.ends_with(".json") {
        "application/json"
    } else if path.ends_with(".zip") {
        "application/zip"
    } else if path.ends_with(".minisig") || path.ends_with(".pub") {
        "text/plain"
    } else {
        "application/octet-stream"
    }
}

async fn serve(
    stream: TcpStream,
    scene: &Scene,
    log: &Mutex<Vec<String>>,
    stop: &CancellationToken,
) {
    let mut reader = BufReader::new(stream);
    let Some(head) = read_head(&mut reader).await else {
        return;
    };
    let mut stream = reader.into_inner();
    let path = head.path().to_owned();
    log.lock().unwrap().push(path.clone());
    let reply = match scene.replies.get(&path) {
        Some(reply) => reply.clone(),
        None => {
            let rel = path.trim_start_matches('/');
            let safe = !rel
                .split('/')
                .any(|p| p.is_empty() || p.starts_with('.') || p.contains('%'));
            match safe
                .then(|| std::fs::read(scene.root.join(rel)).ok())
                .flatten()
            {
                Some(body) => Reply::ok(content_type(&path), body),
                None => Reply::Bytes {
                    status: 404,
                    headers: Vec::new(),
                    body: Vec::new(),
                },
            }
        }
    };
    let reply = match reply {
        Reply::Delayed(pause, inner) => {
            tokio::time::sleep(pause).await;
            *inner
        }
        other => other,
    };
    let _ = answer(&mut stream, reply, stop).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

async fn answer(
    stream: &mut TcpStream,
    reply: Reply,
    stop: &CancellationToken,
) -> std::io::Result<()> {
    match reply {
        Reply::Bytes {
            status,
            headers,
            body,
        } => {
            let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            ));
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await
        }
        Reply::Endless => {
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                      Connection: close\r\n\r\n",
                )
                .await?;
            let chunk = vec![0u8; 64 << 10];
            for _ in 0..4096 {
                stream.write_all(&chunk).await?;
            }
            Ok(())
        }
        Reply::LengthLie { announced, body } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await
        }
        Reply::Drip { body, every } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            for byte in body {
                stream.write_all(&[byte]).await?;
                stream.flush().await?;
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    () = tokio::time::sleep(every) => {}
                }
            }
            Ok(())
        }
        Reply::Delayed(_, inner) => Box::pin(answer(stream, *inner, stop)).await,
        Reply::Redirect(location) => {
            let head = format!(
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Whatever",
    }
}
