//! A static server for segmented-download tests: serves a repo folder with single byte ranges
//! (`bytes=A-B`, `bytes=A-`), throttled per server (all its connections share one rate, like a
//! per-address throttle), and can flip one byte of every bundle answer covering an offset (a
//! mirror sending a bad chunk) or go silent after some bundle bytes (a mirror blocked
//! mid-download). It counts the bundle bytes it put on the wire and the ranges asked.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::http_support::{read_head, serve_loopback};

#[derive(Debug, Clone, Copy, Default)]
pub struct RangeOptions {
    /// Bytes per second for all connections together.
    pub rate: Option<u64>,
    /// Flip the first byte of the first bundle answer: one bad chunk (a liar is not asked
    /// again).
    pub corrupt_first: bool,
    /// After this many bundle bytes sent, go silent: open answers stop, new ones never come.
    pub silent_after: Option<u64>,
    /// Ignore `Range` and answer the whole file (200), as some static hosts do.
    pub no_ranges: bool,
    /// After this many bundle bytes sent, cut: open answers close part-way, new bundle
    /// requests are closed unanswered (a censor resetting the mirror's connections).
    pub cut_after: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Stats {
    /// Bundle body bytes written to connections.
    pub bundle_bytes: u64,
    /// Ranges asked for the bundle (start, end exclusive).
    pub ranges: Vec<(u64, u64)>,
}

struct State {
    stats: Stats,
    /// When the throttle started, and bytes sent since.
    clock: Option<(Instant, u64)>,
}

pub struct RangeServer {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl RangeServer {
    pub async fn start(root: &Path, options: RangeOptions) -> RangeServer {
        let state = Arc::new(Mutex::new(State {
            stats: Stats::default(),
            clock: None,
        }));
        let stop = CancellationToken::new();
        let (root, shared) = (root.to_owned(), state.clone());
        let url = serve_loopback(&stop, move |stream| {
            serve(stream, root.clone(), shared.clone(), options)
        })
        .await;
        RangeServer { url, state, stop }
    }

    pub fn bundle_bytes(&self) -> u64 {
        self.state.lock().unwrap().stats.bundle_bytes
    }

    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.state.lock().unwrap().stats.ranges.clone()
    }
}

impl Drop for RangeServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(stream: TcpStream, root: PathBuf, state: Arc<Mutex<State>>, o: RangeOptions) {
    let mut reader = BufReader::new(stream);
    loop {
        let Some(head) = read_head(&mut reader).await else {
            return;
        };
        let (path, headers) = (head.path().to_owned(), head.headers);
        let rel = path.trim_start_matches('/');
        let ok = !rel.split('/').any(|p| p.is_empty() || p.starts_with('.'));
        let body = if ok {
            tokio::fs::read(root.join(rel)).await.ok()
        } else {
            None
        };
        let stream = reader.get_mut();
        let Some(mut body) = body else {
            let _ = stream
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await;
            continue;
        };
        let is_bundle = rel.ends_with(".zip");
        let len = body.len() as u64;
        let range = headers
            .get("range")
            .filter(|_| !o.no_ranges)
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| {
                let a: u64 = a.parse().ok()?;
                let b: u64 = if b.is_empty() {
                    len - 1
                } else {
                    b.parse().ok()?
                };
                (a <= b && b < len).then_some((a, b + 1))
            });
        let (start, end, head) = match range {
            Some((a, b)) => (
                a,
                b,
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{}/{len}\r\n\
                     Content-Length: {}\r\n\r\n",
                    b - 1,
                    b - a
                ),
            ),
            None => (
                0,
                len,
                format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n"),
            ),
        };
        if is_bundle {
            let (silent, cut) = {
                let mut s = state.lock().unwrap();
                if o.corrupt_first && s.stats.ranges.is_empty() {
                    body[start as usize] ^= 0x01;
                }
                s.stats.ranges.push((start, end));
                (
                    o.silent_after.is_some_and(|n| s.stats.bundle_bytes >= n),
                    o.cut_after.is_some_and(|n| s.stats.bundle_bytes >= n),
                )
            };
            if cut {
                return;
            }
            if silent {
                // Blocked: the request is swallowed, nothing ever comes back.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
        }
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for piece in body[start as usize..end as usize].chunks(16 << 10) {
            let wait = {
                let mut s = state.lock().unwrap();
                if is_bundle {
                    if o.cut_after.is_some_and(|n| s.stats.bundle_bytes >= n) {
                        return;
                    }
                    if o.silent_after.is_some_and(|n| s.stats.bundle_bytes >= n) {
                        None
                    } else {
                        s.stats.bundle_bytes += piece.len() as u64;
                        Some(Duration::ZERO)
                    }
                } else {
                    Some(Duration::ZERO)
                }
                .map(|_| match o.rate {
                    Some(rate) => {
                        let (since, sent) = s.clock.get_or_insert((Instant::now(), 0));
                        *sent += piece.len() as u64;
                        let due = *since + Duration::from_secs_f64(*sent as f64 / rate as f64);
                        due.saturating_duration_since(Instant::now())
                    }
                    None => Duration::ZERO,
                })
            };
            let Some(wait) = wait else {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            };
            tokio::time::sleep(wait).await;
            if stream.write_all(piece).await.is_err() {
                return;
            }
        }
    }
}
