//! Shared fixtures for the sync tests: keys, real bundles, publisher repos, real mirrors on
//! 127.0.0.1 port 0 (in process) with a background sync, and a plain static file server that
//! can lie, cut connections, ignore ranges and count what it is asked.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use qasid::bundle::{self, CreateOptions};
use qasid::config::{Config, Keep, PublisherConfig, UpstreamConfig};
use qasid::content_id::ContentId;
use qasid::index::layout::{on_disk, PublisherLayout};
use qasid::keys::SecretKey;
use qasid::limits::{BundleLimits, IndexLimits};
use qasid::mirror::{self, Metrics, MirrorState};
use qasid::repo::{PublishRequest, Repo};
use qasid::store::Store;
use qasid::sync::{Backoff, RoundReport, SyncOptions, Syncer, Timeouts};
use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http_support::{read_head, serve_loopback};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(30);

pub const DAY: Duration = Duration::from_secs(24 * 3600);

pub fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

/// A bundle on disk: path, sha256, size.
#[derive(Debug, Clone)]
pub struct Made {
    pub path: PathBuf,
    pub sha256: ContentId,
    pub size: u64,
}

/// A real bundle `name` v`version` signed by `key`, with about `extra` incompressible bytes.
pub fn make_bundle(dir: &Path, key: &SecretKey, name: &str, version: u64, extra: usize) -> Made {
    let src = dir.join(format!("src-{name}-{version}"));
    std::fs::create_dir_all(src.join("images")).unwrap();
    std::fs::write(
        src.join("article.md"),
        format!(
            "---\ntitle: Story {name} v{version}\nauthor: Test Desk\ndate: 2026-01-02\n\
             language: en\n---\n\n# Story {name}\n\nVersion {version}.\n"
        ),
    )
    .unwrap();
    let mut noise = Vec::with_capacity(extra + 16);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (version << 32) ^ name.len() as u64;
    for b in name.bytes() {
        x = x.rotate_left(7) ^ u64::from(b);
    }
    while noise.len() < extra {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(src.join("images").join("photo.bin"), noise).unwrap();
    let out = dir.join(format!("{name}-v{version}.zip"));
    let created = bundle::create(
        &src,
        key,
        &out,
        &CreateOptions {
            name: Some(name.to_owned()),
            version: Some(version),
            limits: BundleLimits::default(),
        },
    )
    .unwrap();
    Made {
        path: created.path().to_owned(),
        sha256: created.sha256(),
        size: created.size(),
    }
}

/// Publishes `bundles` into the repo at `root`, signed at `now`, valid for `expires_in`.
/// Returns the new sequence.
pub fn publish_at(
    root: &Path,
    key: &SecretKey,
    bundles: &[&Made],
    now: SystemTime,
    expires_in: Duration,
) -> u64 {
    let repo = Repo::new(
        root,
        key.public(),
        IndexLimits::default(),
        BundleLimits::default(),
    );
    let report = repo
        .publish(
            key,
            &PublishRequest {
                bundles: bundles.iter().map(|b| b.path.clone()).collect(),
                retract: Vec::new(),
                refresh: bundles.is_empty(),
                mirrors: None,
                expires_in,
                now,
            },
        )
        .unwrap();
    report.signed.expect("published").head().sequence()
}

/// Publishes now, valid for a week.
pub fn publish(root: &Path, key: &SecretKey, bundles: &[&Made]) -> u64 {
    publish_at(root, key, bundles, SystemTime::now(), 7 * DAY)
}

/// Retracts `name` from the current listing.
pub fn retract(root: &Path, key: &SecretKey, name: &str) -> u64 {
    let repo = Repo::new(
        root,
        key.public(),
        IndexLimits::default(),
        BundleLimits::default(),
    );
    let report = repo
        .publish(
            key,
            &PublishRequest {
                bundles: Vec::new(),
                retract: vec![name.to_owned()],
                refresh: false,
                mirrors: None,
                expires_in: 7 * DAY,
                now: SystemTime::now(),
            },
        )
        .unwrap();
    report.signed.expect("published").head().sequence()
}

/// The folder of a publisher inside a repo or store.
pub fn publisher_dir(root: &Path, key: &SecretKey) -> PathBuf {
    on_disk(root, PublisherLayout::new(key.public()).dir())
}

pub fn bundle_path(root: &Path, key: &SecretKey, id: &ContentId) -> PathBuf {
    on_disk(root, &PublisherLayout::new(key.public()).bundle(id))
}

pub fn index_path(root: &Path, key: &SecretKey) -> PathBuf {
    on_disk(root, &PublisherLayout::new(key.public()).index())
}

/// Copies a folder tree (to make a lying or older copy of a repo).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Sync settings for tests: short timeouts and backoff, a quick interval, no prune grace.
pub fn fast_options() -> SyncOptions {
    SyncOptions {
        interval: Duration::from_millis(200),
        use_index_mirrors: false,
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(2),
        },
        max_downloads: 8,
        prune_grace: Duration::ZERO,
        backoff: Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(400),
        },
    }
}

pub fn upstream(url: &str) -> UpstreamConfig {
    UpstreamConfig {
        url: reqwest::Url::parse(url).unwrap(),
        proxy: None,
    }
}

/// A real mirror (HTTP server over a store) on 127.0.0.1 port 0, optionally syncing in the
/// background. Everything stops when it drops.
pub struct Node {
    pub addr: SocketAddr,
    pub url: String,
    pub dir: PathBuf,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    trusted: Vec<qasid::keys::PublicKey>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Node {
    pub async fn start(dir: &Path, trusted: &[&SecretKey], keep: Keep) -> Node {
        let mut config = Config::default();
        config.mirror.store = dir.to_owned();
        config.mirror.keep = keep;
        config.publishers = trusted
            .iter()
            .map(|k| PublisherConfig {
                name: None,
                key: k.public().clone(),
            })
            .collect();
        let store = Arc::new(Store::open(dir, keep, IndexLimits::default()).unwrap());
        let metrics = Arc::new(Metrics::new());
        let state = Arc::new(MirrorState::new(&config, store.clone(), metrics.clone()).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let token = stop.clone();
        tasks.spawn(async move {
            mirror::run(listener, state, async move { token.cancelled().await })
                .await
                .unwrap();
        });
        Node {
            addr,
            url: format!("http://{addr}/"),
            dir: dir.to_owned(),
            store,
            metrics,
            trusted: trusted.iter().map(|k| k.public().clone()).collect(),
            stop,
            tasks,
        }
    }

    /// A syncer of this node's store from `upstreams`.
    pub async fn syncer(&self, upstreams: &[&str], options: SyncOptions) -> Syncer {
        let ups: Vec<_> = upstreams.iter().map(|u| upstream(u)).collect();
        Syncer::new(
            self.store.clone(),
            &self.trusted,
            &ups,
            options,
            self.metrics.clone(),
        )
        .await
        .unwrap()
    }

    /// One sync round from `upstreams`.
    pub async fn sync_once(&self, upstreams: &[&str]) -> RoundReport {
        let syncer = self.syncer(upstreams, fast_options()).await;
        tokio::time::timeout(WAIT, syncer.run_once(&CancellationToken::new()))
            .await
            .expect("a round ends in time")
    }

    /// Starts a background sync (as `qasid mirror` does); it stops when the node drops.
    pub async fn start_sync(&self, upstreams: &[&str], options: SyncOptions) {
        let syncer = self.syncer(upstreams, options).await;
        self.tasks.spawn(syncer.run(self.stop.clone()));
    }

    /// The sequence of the index this node serves for `key`.
    pub fn sequence(&self, key: &SecretKey) -> Option<u64> {
        self.store
            .index(key.public())
            .unwrap()
            .map(|i| i.head().sequence())
    }

    pub fn has_bundle(&self, key: &SecretKey, id: &ContentId) -> bool {
        bundle_path(&self.dir, key, id).is_file()
    }

    /// Stops the server and the sync, waiting (bounded) for both.
    pub async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        tokio::time::timeout(WAIT, self.tasks.wait())
            .await
            .expect("node stops in time");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Polls `check` every 25 ms until it holds, for at most `limit`; returns the time it took.
pub async fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A metric line's value from a `/metrics` rendering, 0 if absent.
pub fn metric(metrics: &Metrics, line_prefix: &str) -> u64 {
    let text = metrics.render(Default::default());
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
        .unwrap_or(0)
}

/// One request a [`StaticServer`] saw.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub range: Option<String>,
    pub if_none_match: Option<String>,
    pub status: u16,
    /// Body bytes sent.
    pub sent: u64,
}

/// How a [`StaticServer`] behaves.
#[derive(Debug, Clone, Copy)]
pub struct StaticOptions {
    /// Send `ETag` (sha256 of the file) and honour `If-None-Match`.
    pub etag: bool,
    /// Honour `Range: bytes=N-` with 206.
    pub ranges: bool,
    /// Pause this long after every 16 KiB of body (a slow link).
    pub pace: Option<Duration>,
    /// Cut every answer after this many body bytes, like a censor resetting connections
    /// that carried that much.
    pub cut_every: Option<u64>,
}

impl Default for StaticOptions {
    fn default() -> Self {
        Self {
            etag: true,
            ranges: true,
            pace: None,
            cut_every: None,
        }
    }
}

#[derive(Default)]
struct Shared {
    hits: Vec<Hit>,
    /// Path → bytes after which the next full answer is cut (once).
    cut: HashMap<String, u64>,
}

/// A plain static file server over a folder (GET only, one request per connection, no dot
/// files), for "any static host serving the layout", with fault injection and a request log.
pub struct StaticServer {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
}

impl StaticServer {
    pub async fn start(root: &Path, options: StaticOptions) -> StaticServer {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = CancellationToken::new();
        let (root, state) = (root.to_owned(), shared.clone());
        let url = serve_loopback(&stop, move |stream| {
            let (root, state) = (root.clone(), state.clone());
            async move { serve(stream, &root, &state, options).await }
        })
        .await;
        StaticServer { url, shared, stop }
    }

    /// Cuts the next full answer for `path` (a URL path with leading `/`) after `bytes`.
    pub fn cut_once(&self, path: &str, bytes: u64) {
        self.shared
            .lock()
            .unwrap()
            .cut
            .insert(path.to_owned(), bytes);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.shared.lock().unwrap().hits.clone()
    }

    pub fn clear_hits(&self) {
        self.shared.lock().unwrap().hits.clear();
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(stream: TcpStream, root: &Path, shared: &Mutex<Shared>, options: StaticOptions) {
    let mut reader = BufReader::new(stream);
    let Some(head) = read_head(&mut reader).await else {
        return;
    };
    let mut stream = reader.into_inner();
    let (method, path) = (head.method(), head.path());
    let headers = &head.headers;
    let rel = path.trim_start_matches('/');
    let safe = method == "GET"
        && !rel
            .split('/')
            .any(|p| p.is_empty() || p.starts_with('.') || p.contains('%') || p.contains('\\'));
    let body = if safe {
        tokio::fs::read(root.join(rel)).await.ok()
    } else {
        None
    };
    let mut hit = Hit {
        path: path.to_owned(),
        range: headers.get("range").cloned(),
        if_none_match: headers.get("if-none-match").cloned(),
        status: 404,
        sent: 0,
    };
    let Some(body) = body else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        shared.lock().unwrap().hits.push(hit);
        return;
    };
    let etag = format!("\"{}\"", ContentId::of_bytes(&body));
    if options.etag && hit.if_none_match.as_deref() == Some(etag.as_str()) {
        hit.status = 304;
        let head =
            format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(head.as_bytes()).await;
        shared.lock().unwrap().hits.push(hit);
        return;
    }
    let start = hit
        .range
        .as_deref()
        .filter(|_| options.ranges)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n < body.len());
    let mut head = String::new();
    let slice = match start {
        Some(n) => {
            hit.status = 206;
            head.push_str(&format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {n}-{}/{}\r\n",
                body.len() - 1,
                body.len()
            ));
            &body[n..]
        }
        None => {
            hit.status = 200;
            head.push_str("HTTP/1.1 200 OK\r\n");
            &body[..]
        }
    };
    if options.etag {
        head.push_str(&format!("ETag: {etag}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        slice.len()
    ));
    let cut = if start.is_none() {
        shared.lock().unwrap().cut.remove(path)
    } else {
        None
    }
    .or(options.cut_every);
    let end = cut.map_or(slice.len(), |c| (c as usize).min(slice.len()));
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut sent = 0;
    for chunk in slice[..end].chunks(16 << 10) {
        if stream.write_all(chunk).await.is_err() {
            break;
        }
        sent += chunk.len();
        if let Some(pace) = options.pace {
            tokio::time::sleep(pace).await;
        }
    }
    hit.sent = sent as u64;
    shared.lock().unwrap().hits.push(hit);
    // A cut answer closes before the announced length: the client sees an incomplete body.
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

/// A host that accepts TCP connections and never answers (a tarpit). Holds its connections
/// until it drops.
pub struct Tarpit {
    pub url: String,
    stop: CancellationToken,
}

impl Tarpit {
    pub async fn start() -> Tarpit {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    conn = listener.accept() => {
                        if let Ok((stream, _)) = conn {
                            held.push(stream);
                        }
                    }
                }
            }
        });
        Tarpit {
            url: format!("http://{addr}/"),
            stop,
        }
    }
}

impl Drop for Tarpit {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A URL on which nothing listens (connection refused).
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/")
}

/// Every file under `dir`, as paths relative to it.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in read.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_owned());
            }
        }
    }
    out.sort();
    out
}

/// Checks that every content-addressed file in a store holds the bytes its name promises, and
/// that the served index of `key` (if any) verifies and lists only present bundles.
pub fn assert_store_consistent(dir: &Path, key: &SecretKey) {
    let publisher = publisher_dir(dir, key);
    for sub in ["bundles", "pieces"] {
        for entry in std::fs::read_dir(publisher.join(sub)).into_iter().flatten() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let Some(hash) = name
                .strip_suffix(".zip")
                .or_else(|| name.strip_suffix(".json"))
            else {
                continue;
            };
            let bytes = std::fs::read(entry.path()).unwrap();
            assert_eq!(
                ContentId::of_bytes(&bytes).to_string(),
                hash,
                "{sub}/{name} holds other bytes than its name says"
            );
        }
    }
    if !index_path(dir, key).is_file() {
        return;
    }
    let mut tracker = qasid::index::Tracker::ephemeral(key.public(), IndexLimits::default());
    qasid::index::update_from_dir(&mut tracker, dir, SystemTime::now())
        .expect("the served index verifies with its pieces");
    let index = tracker.into_held().unwrap();
    for entry in index.entries() {
        if let qasid::index::Entry::Add(a) = entry {
            let path = bundle_path(dir, key, &a.bundle().sha256);
            let len = std::fs::metadata(&path).map(|m| m.len()).ok();
            assert_eq!(
                len,
                Some(a.bundle().size),
                "the served index lists {} but the store lacks it",
                a.bundle().sha256
            );
        }
    }
}

/// Pushes a publisher repo to a mirror as `qasid push` does: bundles, signatures, pieces,
/// then `index.json`. Panics on a refusal.
pub async fn push_repo(mirror_url: &str, repo: &Path, key: &SecretKey) {
    let layout = PublisherLayout::new(key.public());
    let dir = on_disk(repo, layout.dir());
    let mut files: Vec<(u8, String)> = Vec::new();
    for sub in ["bundles", "pieces"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let order = match () {
                () if name.ends_with(".zip") => 0,
                () if name.ends_with(".minisig") => 1,
                () => 2,
            };
            files.push((order, format!("{}/{sub}/{name}", layout.dir())));
        }
    }
    files.sort();
    files.push((3, layout.index()));
    let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    for (_, relative) in files {
        let bytes = std::fs::read(on_disk(repo, &relative)).unwrap();
        let response = client
            .put(format!("{mirror_url}{relative}"))
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(status == 200 || status == 201, "{relative}: {status}");
    }
}
