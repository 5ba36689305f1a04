//! Shared fixtures for the reader tests: real keys, bundles and publisher repos, the real
//! `qasid` binary, and real peers on 127.0.0.1 port 0: a static mirror whose misbehaviour is
//! chosen per test (slow index, tampered, stalled or cut bundles, Range), tarpits that accept
//! TCP and never answer, a SOCKS5 proxy that logs where it connects, and nginx. Every peer
//! stops when its value drops; every wait is bounded.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::fs;
use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use assert_cmd::Command;
use qasid::bundle::{self, CreateOptions, CreatedBundle};
use qasid::index::layout::{on_disk, PublisherLayout};
use qasid::index::MirrorUrl;
use qasid::keys::SecretKey;
use qasid::limits::{BundleLimits, IndexLimits};
use qasid::repo::{PublishRequest, Repo};

/// Every CLI run in these tests must end by itself well within this.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

pub fn key() -> SecretKey {
    SecretKey::from_seed(&[0x61; 32])
}

pub fn other_key() -> SecretKey {
    SecretKey::from_seed(&[0x62; 32])
}

pub const WEEK: Duration = Duration::from_secs(7 * 86400);

/// A real bundle `name` v`version` signed by `key`, with `extra` incompressible bytes in an
/// image so its size can be chosen.
pub fn make_bundle(
    dir: &Path,
    key: &SecretKey,
    name: &str,
    version: u64,
    extra: usize,
) -> CreatedBundle {
    let src = dir.join(format!("src-{name}-{version}"));
    fs::create_dir_all(src.join("images")).unwrap();
    fs::write(
        src.join("article.md"),
        format!(
            "---\ntitle: Report {name} (v{version})\nauthor: Qasid Desk\ndate: 2026-02-14\n\
             language: en\n---\n\n# Report {name}\n\nBody of {name}, version {version}.\n"
        ),
    )
    .unwrap();
    let mut noise = Vec::with_capacity(extra + 8);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ version ^ (name.len() as u64);
    while noise.len() < extra {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    noise.truncate(extra);
    fs::write(src.join("images").join("photo.bin"), noise).unwrap();
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

/// Publishes `bundles` into the repo at `root`, signed at `now`, valid for `expires_in`, with
/// `mirrors` as the signed mirror list (`None` keeps the previous list).
pub fn publish_at(
    root: &Path,
    key: &SecretKey,
    bundles: &[&Path],
    mirrors: Option<&[&str]>,
    now: SystemTime,
    expires_in: Duration,
) {
    let limits = IndexLimits::default();
    let repo = Repo::new(root, key.public(), limits.clone(), BundleLimits::default());
    repo.publish(
        key,
        &PublishRequest {
            bundles: bundles.iter().map(|p| p.to_path_buf()).collect(),
            retract: Vec::new(),
            refresh: bundles.is_empty(),
            mirrors: mirrors.map(|m| {
                m.iter()
                    .map(|u| MirrorUrl::parse(u, &limits).unwrap())
                    .collect()
            }),
            expires_in,
            now,
        },
    )
    .unwrap();
}

/// Publishes now, valid for a week.
pub fn publish(root: &Path, key: &SecretKey, bundles: &[&Path]) {
    publish_at(root, key, bundles, None, SystemTime::now(), WEEK);
}

/// Where a bundle of `key` lives in a repo folder.
pub fn bundle_path(root: &Path, key: &SecretKey, bundle: &CreatedBundle) -> PathBuf {
    on_disk(
        root,
        &PublisherLayout::new(key.public()).bundle(&bundle.sha256()),
    )
}

pub fn index_path(root: &Path, key: &SecretKey) -> PathBuf {
    on_disk(root, &PublisherLayout::new(key.public()).index())
}

/// Copies a folder tree.
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

/// Flips one byte in the middle of a file (same size, different sha256).
pub fn tamper(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x55;
    fs::write(path, bytes).unwrap();
}

/// The `qasid` binary with a bounded run time.
pub fn qasid() -> Command {
    let mut cmd = Command::cargo_bin("qasid").unwrap();
    cmd.timeout(RUN_LIMIT).env("NO_COLOR", "1");
    cmd
}

/// Runs `qasid fetch` with the publisher key, a state folder and these args.
pub fn fetch(state: &Path, args: &[&str]) -> Output {
    qasid()
        .arg("fetch")
        .args(["--publisher", &key().public().to_base64(), "--state"])
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

/// The exit code and the JSON document of a `--json` run.
pub fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); stdout: {} stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The fate the JSON report gives `mirror`.
pub fn fate(doc: &serde_json::Value, mirror: &str) -> String {
    doc["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mirror"] == mirror)
        .unwrap_or_else(|| panic!("{mirror} is not in the report: {doc:#}"))["fate"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// How a test mirror misbehaves.
#[derive(Clone, Default)]
pub struct Behaviour {
    /// Wait this long before answering any `index.json`.
    pub index_delay: Duration,
    /// Wait this long before answering any request at all, 404s included (a mirror reached
    /// over Tor: every answer takes about as long).
    pub answer_delay: Duration,
    /// Serve every bundle with one byte flipped.
    pub tamper_bundles: bool,
    /// Send a bundle's headers, then nothing (until the client gives up).
    pub stall_bundles: bool,
    /// Send an index piece's headers, then nothing (until the client gives up).
    pub stall_pieces: bool,
    /// Answer a bundle request with an endless body (no `Content-Length`; stops after 256 MiB
    /// or when the client hangs up).
    pub endless_bundles: bool,
    /// Close the connection after this many body bytes of a bundle (the full
    /// `Content-Length` announced), for the first `cut_times` bundle requests.
    pub cut_bundle_at: Option<u64>,
    pub cut_times: usize,
    /// Answer `Range: bytes=N-` with 206.
    pub ranges: bool,
}

/// One request the mirror saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
}

#[derive(Default)]
pub struct Log {
    pub requests: Mutex<Vec<Seen>>,
    /// Body bytes written for bundle requests.
    pub bundle_bytes: AtomicU64,
    cuts_done: AtomicUsize,
}

impl Log {
    pub fn seen(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }

    pub fn bundle_requests(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.ends_with(".zip"))
            .collect()
    }
}

/// A static mirror serving a repo folder, one request per connection, on 127.0.0.1:0.
pub struct TestMirror {
    pub url: String,
    pub addr: SocketAddr,
    pub log: Arc<Log>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestMirror {
    pub fn start(root: &Path, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Log::default());
        let (root, stop2, log2) = (root.to_owned(), stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            let mut workers = Vec::new();
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (root, b, log, stop) =
                    (root.clone(), behaviour.clone(), log2.clone(), stop2.clone());
                workers.push(std::thread::spawn(move || {
                    serve(conn, &root, &b, &log, &stop)
                }));
            }
            for w in workers {
                let _ = w.join();
            }
        });
        Self {
            url: format!("http://{addr}/"),
            addr,
            log,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TestMirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sleeps up to `d`, or until `stop` is set.
fn nap(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn serve(mut conn: TcpStream, root: &Path, b: &Behaviour, log: &Log, stop: &AtomicBool) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut range = None;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line.trim().is_empty() => break,
            Ok(_) => {
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("range") {
                        range = Some(value.trim().to_owned());
                    }
                }
            }
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_owned();
    log.requests.lock().unwrap().push(Seen {
        path: path.clone(),
        range: range.clone(),
    });
    nap(b.answer_delay, stop);
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|p| p == ".." || p.starts_with('.')) {
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let Ok(mut body) = fs::read(root.join(rel)) else {
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let is_bundle = rel.ends_with(".zip");
    if is_bundle && b.endless_bundles {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..4096 {
            if conn.write_all(&chunk).is_err() {
                return;
            }
            log.bundle_bytes
                .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        return;
    }
    if rel.ends_with("index.json") {
        nap(b.index_delay, stop);
    }
    if is_bundle && b.tamper_bundles {
        let i = body.len() / 2;
        body[i] ^= 0x55;
    }
    let total = body.len() as u64;
    let mut start = 0u64;
    let mut head =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n");
    if let (true, Some(r)) = (b.ranges, &range) {
        if let Some(from) = r.strip_prefix("bytes=").and_then(|r| r.strip_suffix('-')) {
            if let Ok(from) = from.parse::<u64>() {
                if from < total {
                    start = from;
                    head = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{total}\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n",
                        total - 1,
                        total - from
                    );
                }
            }
        }
    }
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    if (is_bundle && b.stall_bundles) || (rel.contains("/pieces/") && b.stall_pieces) {
        nap(Duration::from_secs(60), stop);
        return;
    }
    let mut body = &body[start as usize..];
    if is_bundle {
        if let Some(cut) = b.cut_bundle_at {
            if log.cuts_done.fetch_add(1, Ordering::SeqCst) < b.cut_times {
                body = &body[..(cut as usize).min(body.len())];
                let _ = conn.write_all(body);
                log.bundle_bytes
                    .fetch_add(body.len() as u64, Ordering::SeqCst);
                let _ = conn.flush();
                let _ = conn.shutdown(Shutdown::Both);
                return;
            }
        }
        log.bundle_bytes
            .fetch_add(body.len() as u64, Ordering::SeqCst);
    }
    let _ = conn.write_all(body);
}

/// Accepts TCP connections and never answers (they are held until the tarpit drops).
pub struct Tarpit {
    pub url: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Tarpit {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    held.push(conn);
                }
            }
        });
        Self {
            url: format!("http://{addr}/"),
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Tarpit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A loopback port with nothing listening (bound, then released).
pub fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/")
}

/// A minimal SOCKS5 proxy (no authentication, CONNECT only) that logs every target.
pub struct Socks5 {
    pub url: String,
    addr: SocketAddr,
    pub targets: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Socks5 {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(Mutex::new(Vec::new()));
        let (stop2, targets2) = (stop.clone(), targets.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let targets = targets2.clone();
                std::thread::spawn(move || {
                    let _ = socks5_session(conn, &targets);
                });
            }
        });
        Self {
            url: format!("socks5h://{addr}"),
            addr,
            targets,
            stop,
            thread: Some(thread),
        }
    }

    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

impl Drop for Socks5 {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn socks5_session(mut client: TcpStream, targets: &Mutex<Vec<String>>) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut greeting = [0u8; 2];
    client.read_exact(&mut greeting)?;
    let mut methods = vec![0u8; greeting[1] as usize];
    client.read_exact(&mut methods)?;
    client.write_all(&[5, 0])?;
    let mut request = [0u8; 4];
    client.read_exact(&mut request)?;
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip)?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len)?;
            let mut name = vec![0u8; len[0] as usize];
            client.read_exact(&mut name)?;
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => return Ok(()),
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port)?;
    let target = format!("{host}:{}", u16::from_be_bytes(port));
    targets.lock().unwrap().push(target.clone());
    let upstream = TcpStream::connect(&target)?;
    client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])?;
    client.set_read_timeout(None)?;
    let (mut c2, mut u2) = (client.try_clone()?, upstream.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let (mut u, mut c) = (upstream, client);
    let _ = std::io::copy(&mut u, &mut c);
    let _ = c.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// A real nginx serving `root` on a free loopback port, with a private config, logs and pid
/// file in its own temp folder; killed by pid when dropped.
pub struct Nginx {
    pub url: String,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Nginx {
    pub const BINARY: &'static str = "/usr/sbin/nginx";

    /// `None` if nginx is not installed (the caller decides whether that fails the test).
    pub fn start(root: &Path) -> Option<Nginx> {
        if !Path::new(Self::BINARY).exists() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let p = dir.path();
        for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            fs::create_dir_all(p.join(sub)).unwrap();
        }
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {pid};\n\
             error_log {err} warn;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log {acc};\n  client_body_temp_path {p}/client_body;\n\
             proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n\
             uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
             types {{ application/json json; application/zip zip; }}\n\
             server {{\n    listen 127.0.0.1:{port};\n    root {root};\n\
             location ~ /\\. {{ deny all; }}\n  }}\n}}\n",
            pid = p.join("nginx.pid").display(),
            err = p.join("error.log").display(),
            acc = p.join("access.log").display(),
            p = p.display(),
            root = root.display(),
        );
        fs::write(p.join("nginx.conf"), conf).unwrap();
        let child = std::process::Command::new(Self::BINARY)
            .arg("-p")
            .arg(p)
            .arg("-c")
            .arg(p.join("nginx.conf"))
            .arg("-e")
            .arg(p.join("error.log"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let nginx = Nginx {
            url: format!("http://127.0.0.1:{port}/"),
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let mut answer = String::new();
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let _ = s.read_to_string(&mut answer);
                if answer.starts_with("HTTP/") {
                    return Some(nginx);
                }
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not answer within 10 s; error log: {}",
                fs::read_to_string(nginx.dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // By pid: the child handle is the process nginx runs as (master_process off).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
