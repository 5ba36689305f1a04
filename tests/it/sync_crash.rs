//! Crash safety with a real process: a `qasid mirror` syncing a large set (200 bundles, some of
//! a few MB, from a throttled upstream on loopback, while the publisher keeps publishing) is
//! killed with SIGKILL at random moments, at least 20 times, and restarted on the same store
//! each time. After every kill the store must be consistent (every object matches its name's
//! hash, the served index lists only present bundles); while it runs no temp file may be
//! reachable over HTTP; and in the end the sync completes.

use crate::sync_support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qasid::index::layout::PublisherLayout;
use sync_support::*;

const KILLS: usize = 20;
/// The kill loop stops after this long even if fewer kills happened (then the test fails).
const KILL_BUDGET: Duration = Duration::from_secs(60);

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `n` more bundles: every `big_every`-th of a few MB, the others 1-30 KB.
fn make_batch(
    dir: &Path,
    key: &qasid::keys::SecretKey,
    made: &mut usize,
    n: usize,
    big_every: usize,
) -> Vec<Made> {
    (0..n)
        .map(|_| {
            *made += 1;
            let size = if made.is_multiple_of(big_every) {
                2_500_000 + *made * 1_000
            } else {
                1_000 + (*made * 7_919) % 30_000
            };
            make_bundle(dir, key, &format!("story-{made}"), 1, size)
        })
        .collect()
}

/// Starts `qasid mirror` on a free port and returns it with its address.
fn start_mirror(store: &Path, publisher: &Path, upstream: &str) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qasid"))
        .args(["mirror", "--listen", "127.0.0.1:0", "--store"])
        .arg(store)
        .arg("--publisher")
        .arg(publisher)
        .args(["--upstream", upstream])
        .args(["--sync-interval", "300ms", "--read-timeout", "3s"])
        .args(["--max-downloads", "4"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on http://") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>().unwrap());
                }
            } else if !line.is_empty() {
                eprintln!("mirror: {line}");
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the mirror starts listening");
    (child, addr)
}

/// The status of `GET path` sent byte for byte (no client-side path normalisation).
fn raw_status(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

/// No file outside the layout (temp files, partial downloads, sync state) can be fetched,
/// whatever the spelling; a partial download's bundle path is either 404 or the whole, right
/// bundle.
fn assert_nothing_internal_is_served(addr: SocketAddr, store: &Path, key: &qasid::keys::SecretKey) {
    let layout = PublisherLayout::new(key.public());
    for folder in [".tmp", ".state"] {
        for rel in files_under(&store.join(folder)) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            for path in [
                format!("/{folder}/{rel}"),
                format!("/qasid/v1/../../{folder}/{rel}"),
                format!("/qasid/v1/publishers/%2e%2e/%2e%2e/%2e%2e/{folder}/{rel}"),
                format!(
                    "/{}/bundles/..%2f..%2f..%2f..%2f{folder}%2f{rel}",
                    layout.dir()
                ),
            ] {
                assert_eq!(raw_status(addr, &path), 404, "{path} was served");
            }
            if let Some(hash) = rel
                .strip_prefix("sync-")
                .and_then(|r| r.strip_suffix(".part"))
            {
                let path = format!("/{}/bundles/{hash}.zip", layout.dir());
                let status = raw_status(addr, &path);
                assert!(status == 404 || status == 200, "{path}: {status}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_random_moments_never_corrupts_the_store_and_the_sync_completes() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let key = key(41);
    let publisher = dir.path().join("publisher.pub");
    std::fs::write(&publisher, key.public().to_file_text()).unwrap();
    let repo = dir.path().join("repo");
    let mut made = 0usize;
    // 170 bundles in five publishes now (8 of them of a few MB), 30 more while it is killed.
    for _ in 0..5 {
        let batch = make_batch(dir.path(), &key, &mut made, 34, 21);
        publish(&repo, &key, &batch.iter().collect::<Vec<_>>());
    }
    let options = StaticOptions {
        // About 3 MB/s per connection: big bundles take a second, so kills land mid-download.
        pace: Some(Duration::from_millis(5)),
        ..StaticOptions::default()
    };
    let upstream = StaticServer::start(&repo, options).await;
    eprintln!("set-up done in {:?}", started.elapsed());

    let store = dir.path().join("store");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill schedule seed {seed}");
    let mut rng = Rng(seed);
    let loop_start = Instant::now();
    let mut kills = 0;
    while kills < KILLS {
        assert!(
            loop_start.elapsed() < KILL_BUDGET,
            "only {kills} kills within {KILL_BUDGET:?}"
        );
        let (mut child, addr) = start_mirror(&store, &publisher, &upstream.url);
        let wait = Duration::from_millis(50 + rng.below(700));
        tokio::time::sleep(wait / 2).await;
        assert_nothing_internal_is_served(addr, &store, &key);
        tokio::time::sleep(wait / 2).await;
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        assert_store_consistent(&store, &key);
        let parts = files_under(&store.join(".tmp")).len();
        let zips = files_under(&publisher_dir(&store, &key).join("bundles")).len() / 2;
        eprintln!("kill {kills} after {wait:?}: {zips} bundles, {parts} temp files");
        if kills.is_multiple_of(4) && made < 200 {
            let batch = make_batch(dir.path(), &key, &mut made, 6, 3);
            publish(&repo, &key, &batch.iter().collect::<Vec<_>>());
        }
    }
    assert_eq!(made, 200);
    eprintln!("{kills} kills in {:?}", loop_start.elapsed());

    // A last start completes the sync.
    let (mut child, addr) = start_mirror(&store, &publisher, &upstream.url);
    let want = std::fs::read(index_path(&repo, &key)).unwrap();
    let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    let index_url = format!(
        "http://{addr}/{}",
        PublisherLayout::new(key.public()).index()
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let served = client.get(&index_url).send().await.unwrap();
        if served.status() == 200 && served.bytes().await.unwrap() == want {
            break;
        }
        assert!(Instant::now() < deadline, "the sync did not complete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_nothing_internal_is_served(addr, &store, &key);
    // The daemon's sync shows on its /metrics (once the round that completed it has ended),
    // under the upstream's number: addresses are hidden from /metrics by default.
    let success = "qasid_sync_upstream_last_success_timestamp_seconds{upstream=\"upstream-1\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains(success) {
            break;
        }
        assert!(Instant::now() < deadline, "{success} missing:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_store_consistent(&store, &key);
    let bundles = publisher_dir(&store, &key).join("bundles");
    let zips = std::fs::read_dir(&bundles)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".zip")
        })
        .count();
    assert_eq!(zips, 200);
    let leftovers: Vec<_> = files_under(&store.join(".tmp"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".part"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "partial downloads left: {leftovers:?}"
    );
    eprintln!("total {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(90));
}
