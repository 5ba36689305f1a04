//! Shared helpers for the repo and index tests: keys, small real bundles, publishing with a
//! chosen clock, reading a repo as a client, and a tiny static HTTP server on 127.0.0.1:0.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use qasid::bundle::{self, CreateOptions, CreatedBundle};
use qasid::index::layout::{on_disk, PublisherLayout};
use qasid::index::{update_from_dir, Index, IndexError, Outcome, Tracker, Transfer};
use qasid::keys::SecretKey;
use qasid::limits::{BundleLimits, IndexLimits};
use qasid::repo::{PublishReport, PublishRequest, Repo, RepoError};

/// The publisher key used throughout.
pub fn key() -> SecretKey {
    SecretKey::from_seed(&[0x51; 32])
}

/// Some other publisher.
pub fn other_key() -> SecretKey {
    SecretKey::from_seed(&[0x17; 32])
}

/// A fixed "now" in 2026, so expiry tests do not depend on the real clock.
pub fn t0() -> SystemTime {
    humantime::parse_rfc3339("2026-03-01T00:00:00Z").unwrap()
}

pub const DAY: Duration = Duration::from_secs(86400);

/// Creates a small real bundle `name` v`version` signed by `key` under `dir`; the body text
/// varies with `name` and `version` so every bundle has its own sha256.
pub fn make_bundle(dir: &Path, key: &SecretKey, name: &str, version: u64) -> CreatedBundle {
    make_bundle_with(dir, key, name, version, &[])
}

/// Like [`make_bundle`], with extra files (e.g. a large stored asset).
pub fn make_bundle_with(
    dir: &Path,
    key: &SecretKey,
    name: &str,
    version: u64,
    extra: &[(&str, Vec<u8>)],
) -> CreatedBundle {
    let src = dir.join(format!("src-{name}-{version}"));
    fs::create_dir_all(&src).unwrap();
    fs::write(
        src.join("article.md"),
        format!(
            "---\ntitle: Report {name} (v{version})\nauthor: Qasid Desk\ndate: 2026-02-14\n\
             language: en\n---\n\nBody of {name}, version {version}.\n"
        ),
    )
    .unwrap();
    for (path, bytes) in extra {
        fs::write(src.join(path), bytes).unwrap();
    }
    bundle::create(
        &src,
        key,
        &dir.join(format!("{name}-v{version}.zip")),
        &CreateOptions {
            name: Some(name.to_owned()),
            version: Some(version),
            limits: BundleLimits::default(),
        },
    )
    .unwrap()
}

pub fn repo(root: &Path, key: &SecretKey) -> Repo {
    Repo::new(
        root,
        key.public(),
        IndexLimits::default(),
        BundleLimits::default(),
    )
}

pub fn request(bundles: &[&Path], now: SystemTime) -> PublishRequest {
    PublishRequest {
        bundles: bundles.iter().map(|p| p.to_path_buf()).collect(),
        retract: Vec::new(),
        refresh: false,
        mirrors: None,
        expires_in: 7 * DAY,
        now,
    }
}

/// Publishes `bundles` at time `now` with a 7-day expiry.
pub fn publish(
    root: &Path,
    key: &SecretKey,
    bundles: &[&Path],
    now: SystemTime,
) -> Result<PublishReport, RepoError> {
    repo(root, key).publish(key, &request(bundles, now))
}

pub fn layout(key: &SecretKey) -> PublisherLayout {
    PublisherLayout::new(key.public())
}

pub fn index_path(root: &Path, key: &SecretKey) -> PathBuf {
    on_disk(root, &layout(key).index())
}

/// Verifies a repo from scratch, as a fresh client would.
pub fn verify_fresh(root: &Path, key: &SecretKey, now: SystemTime) -> Result<Index, IndexError> {
    let mut tracker = Tracker::ephemeral(key.public(), IndexLimits::default());
    update_from_dir(&mut tracker, root, now)?;
    Ok(tracker.into_held().unwrap())
}

/// Updates a stateful client from a repo folder.
pub fn client_update(
    state: &Path,
    root: &Path,
    key: &SecretKey,
    now: SystemTime,
) -> Result<(Outcome, Transfer), IndexError> {
    let mut tracker = Tracker::open(state, key.public(), IndexLimits::default())?;
    update_from_dir(&mut tracker, root, now)
}

/// Copies a folder tree (a repo snapshot, to fork a second history from).
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Every file under `dir`, as `/`-separated paths relative to it.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(read) = fs::read_dir(&d) else { continue };
        for entry in read.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

/// What a path under a static server holds in mode `Serve::Files`, or an endless body.
#[derive(Clone)]
pub enum Special {
    /// Answer this URL path with an endless stream of bytes and no Content-Length.
    Endless(String),
    None,
}

/// A minimal static file server over std::net for tests: GET only, one request per
/// connection, files under `root`, no directory listings, `..` refused.
pub struct StaticServer {
    pub base: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    addr: std::net::SocketAddr,
}

impl StaticServer {
    pub fn start(root: &Path, special: Special) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let root = root.to_path_buf();
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let root = root.clone();
                let special = special.clone();
                std::thread::spawn(move || serve_one(conn, &root, &special));
            }
        });
        Self {
            base: format!("http://{addr}/"),
            stop,
            thread: Some(thread),
            addr,
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(mut conn: TcpStream, root: &Path, special: &Special) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    conn.set_write_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if let Special::Endless(endless) = special {
        if path == endless {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let chunk = vec![b'x'; 64 << 10];
            // Bounded so a broken client cannot keep the test running: 1 GiB at most.
            for _ in 0..(1 << 14) {
                if conn.write_all(&chunk).is_err() {
                    return;
                }
            }
            return;
        }
    }
    let rel = path.trim_start_matches('/');
    let bad = method != "GET"
        || rel
            .split('/')
            .any(|p| p == ".." || p.is_empty() || p.starts_with('.'));
    let file = if bad {
        None
    } else {
        fs::File::open(root.join(rel)).ok()
    };
    match file.filter(|f| f.metadata().map(|m| m.is_file()).unwrap_or(false)) {
        Some(mut f) => {
            let len = f.metadata().unwrap().len();
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
            if conn.write_all(head.as_bytes()).is_ok() {
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = f.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        None => {
            let _ = conn.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    }
}
