//! What every hand-written test HTTP server shares: the accept loop on 127.0.0.1 port 0 owned
//! by a cancellation token, and reading a request's head. The servers themselves (a static
//! host with fault injection, a throttled range server, a hostile mirror) differ only in how
//! they answer.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;

use tokio::io::{AsyncBufRead, AsyncBufReadExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Binds 127.0.0.1 port 0 and hands every connection to `serve` (called at accept time, so it
/// can take a snapshot of the server's state), until `stop` fires; open connections end then
/// too. Returns the base URL `http://127.0.0.1:PORT/`.
pub async fn serve_loopback<F, Fut>(stop: &CancellationToken, serve: F) -> String
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = stop.clone();
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                () = token.cancelled() => return,
                conn = listener.accept() => conn,
            };
            let Ok((stream, _)) = conn else { continue };
            let (answer, token) = (serve(stream), token.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = token.cancelled() => {}
                    () = answer => {}
                }
            });
        }
    });
    format!("http://{addr}/")
}

/// A request's head: the request line and its headers, names in lower case.
pub struct Head {
    pub line: String,
    pub headers: HashMap<String, String>,
}

impl Head {
    /// The method (`GET`), or "".
    pub fn method(&self) -> &str {
        self.line.split_whitespace().next().unwrap_or("")
    }

    /// The request target (`/a/b`), or `/`.
    pub fn path(&self) -> &str {
        self.line.split_whitespace().nth(1).unwrap_or("/")
    }
}

/// Reads the next request's head; `None` when the connection ends (or fails) first.
pub async fn read_head(reader: &mut (impl AsyncBufRead + Unpin)) -> Option<Head> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h).await {
            Ok(0) | Err(_) => return None,
            Ok(_) if h.trim().is_empty() => return Some(Head { line, headers }),
            Ok(_) => {
                if let Some((n, v)) = h.split_once(':') {
                    headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
        }
    }
}
