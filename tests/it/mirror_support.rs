//! Shared fixtures for the mirror tests: real keys, real bundles, a real publisher repo, and a
//! real mirror server on 127.0.0.1 port 0 (in process), stopped when the fixture drops, or the
//! real `qasid mirror` binary ([`Process`]), killed when it drops.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use qasid::bundle::{self, CreateOptions};
use qasid::config::{Config, PublisherConfig};
use qasid::content_id::ContentId;
use qasid::index::layout::PublisherLayout;
use qasid::keys::SecretKey;
use qasid::limits::{BundleLimits, IndexLimits};
use qasid::mirror::{self, Metrics, MirrorState};
use qasid::repo::{PublishRequest, Repo};
use qasid::store::Store;
use tokio_util::sync::CancellationToken;

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

/// Writes an article folder (article.md, and an image) under `dir/name`.
pub fn article_dir(dir: &Path, name: &str, title: &str, extra_bytes: usize) -> PathBuf {
    let src = dir.join(format!("src-{name}"));
    std::fs::create_dir_all(src.join("images")).unwrap();
    std::fs::write(
        src.join("article.md"),
        format!(
            "---\ntitle: {title}\nauthor: Test Desk\ndate: 2026-01-02\nlanguage: en\n---\n\n\
             # {title}\n\nBody text.\n\n![map](images/map.png)\n\n<script>alert(1)</script>\n"
        ),
    )
    .unwrap();
    // Incompressible bytes so the bundle has a predictable size.
    let mut noise = Vec::with_capacity(extra_bytes + 64);
    let mut x: u64 = 0x9E3779B97F4A7C15;
    noise.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    while noise.len() < extra_bytes + 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(src.join("images").join("map.png"), noise).unwrap();
    src
}

/// A bundle signed by `key`: its path, sha256 and size.
pub struct Made {
    pub path: PathBuf,
    pub sha256: ContentId,
    pub size: u64,
}

pub fn make_bundle(dir: &Path, key: &SecretKey, name: &str, version: u64, extra: usize) -> Made {
    let src = article_dir(
        dir,
        &format!("{name}-{version}"),
        &format!("Story {name}"),
        extra,
    );
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

/// Publishes bundles into a repo at `root` and returns the new envelope bytes.
pub fn publish(root: &Path, key: &SecretKey, bundles: &[&Path]) -> Vec<u8> {
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
                bundles: bundles.iter().map(|p| p.to_path_buf()).collect(),
                retract: Vec::new(),
                refresh: bundles.is_empty(),
                mirrors: None,
                expires_in: Duration::from_secs(7 * 24 * 3600),
                now: SystemTime::now(),
            },
        )
        .unwrap();
    report
        .signed
        .expect("something was published")
        .envelope()
        .to_vec()
}

/// The layout path of the publisher's folder, with a leading `/`.
pub fn url_path(key: &SecretKey, relative: impl FnOnce(&PublisherLayout) -> String) -> String {
    format!("/{}", relative(&PublisherLayout::new(key.public())))
}

/// A running mirror.
pub struct Server {
    pub addr: SocketAddr,
    pub base: String,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub store_dir: PathBuf,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start(store_dir: &Path, trusted: &[&SecretKey]) -> Server {
        Self::start_with(store_dir, trusted, |_| {}).await
    }

    pub async fn start_with(
        store_dir: &Path,
        trusted: &[&SecretKey],
        adjust: impl FnOnce(&mut Config),
    ) -> Server {
        let mut config = Config::default();
        config.mirror.store = store_dir.to_owned();
        config.publishers = trusted
            .iter()
            .map(|k| PublisherConfig {
                name: Some(format!("Publisher {}", k.public().id())),
                key: k.public().clone(),
            })
            .collect();
        adjust(&mut config);
        let store =
            Arc::new(Store::open(store_dir, config.mirror.keep, IndexLimits::default()).unwrap());
        let metrics = Arc::new(Metrics::new());
        let state = Arc::new(MirrorState::new(&config, store.clone(), metrics.clone()).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            mirror::run(listener, state, async move { token.cancelled().await })
                .await
                .unwrap();
        });
        Server {
            addr,
            base: format!("http://{addr}"),
            store,
            metrics,
            store_dir: store_dir.to_owned(),
            stop,
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signals shutdown and waits (bounded) for the server to return.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("server stops in time")
                .unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}

/// The body of a `GET path`, whatever the status.
pub async fn get_bytes(server: &Server, path: &str) -> Vec<u8> {
    let response = client().get(server.url(path)).send().await.unwrap();
    response.bytes().await.unwrap().to_vec()
}

/// PUTs a file or bytes with its exact Content-Length.
pub async fn put(server: &Server, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let response = client()
        .put(server.url(path))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

/// Pushes a whole repo's publisher folder in the right order: bundles, minisigs, pieces,
/// index. Panics on any refusal.
pub async fn push_repo(server: &Server, repo: &Path, key: &SecretKey) {
    push_objects(server, repo, key).await;
    let index = PublisherLayout::new(key.public()).index();
    let bytes = std::fs::read(repo.join(&index)).unwrap();
    let (status, body) = put(server, &format!("/{index}"), bytes).await;
    assert!(status == 200 || status == 201, "{index}: {status} {body}");
}

/// [`push_repo`] without the index: every bundle, minisig and piece, in that order.
pub async fn push_objects(server: &Server, repo: &Path, key: &SecretKey) {
    let layout = PublisherLayout::new(key.public());
    let dir = repo.join(layout.dir());
    let mut files: Vec<(u8, String)> = Vec::new();
    for sub in ["bundles", "pieces"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let order = if name.ends_with(".zip") {
                0
            } else if name.ends_with(".minisig") {
                1
            } else {
                2
            };
            files.push((order, format!("{}/{sub}/{name}", layout.dir())));
        }
    }
    files.sort();
    for (_, relative) in files {
        let bytes = std::fs::read(repo.join(&relative)).unwrap();
        let (status, body) = put(server, &format!("/{relative}"), bytes).await;
        assert!(
            status == 200 || status == 201,
            "{relative}: {status} {body}"
        );
    }
}

/// Sends raw bytes on a fresh connection and returns the whole response as text (the server
/// closes after `Connection: close`).
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw `GET path`.
pub fn raw_get_status(addr: SocketAddr, path: &str) -> u16 {
    let response = raw_request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

/// A published repo with one publisher, served by a mirror that has it all.
pub struct Published {
    pub dir: tempfile::TempDir,
    pub key: SecretKey,
    pub bundle: Made,
    pub repo: PathBuf,
    pub server: Server,
}

/// One publisher, one bundle of about `extra` bytes, published and pushed to a fresh mirror.
pub async fn published(extra: usize) -> Published {
    let dir = tempfile::tempdir().unwrap();
    let key = key(1);
    let bundle = make_bundle(dir.path(), &key, "launch", 1, extra);
    let repo = dir.path().join("repo");
    publish(&repo, &key, &[&bundle.path]);
    let server = Server::start(&dir.path().join("store"), &[&key]).await;
    push_repo(&server, &repo, &key).await;
    Published {
        dir,
        key,
        bundle,
        repo,
        server,
    }
}

/// A `qasid mirror` process, killed on drop if still running.
pub struct Process {
    child: Child,
    /// `http://ADDR`, as the mirror logged it.
    pub base: String,
    /// The mirror's stderr lines after the `listening on` one.
    pub stderr: std::sync::mpsc::Receiver<String>,
}

impl Process {
    /// Starts `qasid <args>` and waits (bounded) for its `listening on` line.
    pub fn start(args: &[&str]) -> Process {
        Self::start_env(args, &[])
    }

    /// [`Process::start`] with extra environment variables (`AWS_*` for a bucket store).
    pub fn start_env(args: &[&str], env: &[(String, String)]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_qasid"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        // Owned before anything can panic, so the process is killed on every path.
        let mut process = Process {
            child,
            base: String::new(),
            stderr: rx,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let line = process
                .stderr
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the mirror logs its address in time");
            if let Some(addr) = line.strip_prefix("listening on ") {
                process.base = addr.to_owned();
                return process;
            }
        }
    }

    /// Sends a signal (`HUP`, `TERM`, ...) without waiting.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for a stderr line containing `needle`, returning it.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let line = self
                .stderr
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no log line with {needle:?} in time"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the mirror stops on SIGTERM in time"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
