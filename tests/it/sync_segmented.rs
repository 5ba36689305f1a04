//! Sync's segmented download of large bundles (docs/PROTOCOL.md §13) from real throttled,
//! lying, cut and blocked servers on 127.0.0.1: upstreams add up, a bad chunk is pinned on
//! its upstream with its index and offset, a cut upstream's ranges go to the others, and a
//! later round resumes from the chunks that still verify.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use qasid::config::Keep;
use qasid::limits::CHUNK_SIZE;
use qasid::sync::{chunked_path, RoundReport};
use serde_json::Value;

use crate::chunks_support::{RangeOptions, RangeServer};
use crate::sync_support::{fast_options, key, make_bundle, publish, publisher_dir, Made, Node};

struct Setup {
    dir: tempfile::TempDir,
    key: qasid::keys::SecretKey,
    repo: PathBuf,
    made: Made,
}

/// A published repo with one bundle `big` of about `extra` bytes (above the 1 MiB threshold,
/// so it has a chunk list).
fn setup(extra: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key = key(41);
    let made = make_bundle(dir.path(), &key, "big", 1, extra);
    let repo = dir.path().join("repo");
    publish(&repo, &key, &[&made]);
    Setup {
        dir,
        key,
        repo,
        made,
    }
}

async fn servers(repo: &std::path::Path, options: &[RangeOptions]) -> Vec<RangeServer> {
    let mut out = Vec::new();
    for o in options {
        out.push(RangeServer::start(repo, *o).await);
    }
    out
}

fn throttled(rate: u64) -> RangeOptions {
    RangeOptions {
        rate: Some(rate),
        ..RangeOptions::default()
    }
}

/// One round from `servers`; the report as JSON, and how long the round took.
async fn sync(node: &Node, servers: &[RangeServer]) -> (RoundReport, Value, Duration) {
    let urls: Vec<&str> = servers.iter().map(|s| s.url.as_str()).collect();
    let started = Instant::now();
    let report = node.sync_once(&urls).await;
    let took = started.elapsed();
    let json = serde_json::to_value(&report).unwrap();
    (report, json, took)
}

fn upstream_json<'a>(json: &'a Value, server: &RangeServer) -> &'a Value {
    json["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["url"] == server.url)
        .unwrap_or_else(|| panic!("{} not in {json}", server.url))
}

/// Three upstreams each throttled to 512 KiB/s: one alone needs 4.4 s for a 2.3 MB bundle; a
/// sync takes chunks from every one of them, in well under that, with little waste. (Slow
/// links, so that the round's own work, verifying and installing, weighs little even on a
/// loaded machine.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_bundle_comes_from_every_upstream_at_once() {
    let s = setup(2_300_000);
    let rate = 512 << 10;
    let servers = servers(&s.repo, &[throttled(rate); 3]).await;
    let node = Node::start(&s.dir.path().join("node"), &[&s.key], Keep::All).await;
    let (report, json, took) = sync(&node, &servers).await;
    assert!(node.has_bundle(&s.key, &s.made.sha256), "{json}");
    assert_eq!(report.failure(), None, "{json}");
    let one_upstream = Duration::from_secs_f64(s.made.size as f64 / rate as f64);
    for server in &servers {
        let u = upstream_json(&json, server);
        assert!(u["bytes"]["bundles"].as_u64().unwrap() > 0, "{u}");
        assert!(server.bundle_bytes() > 0);
        assert!(
            server.ranges().iter().all(|&(a, b)| b - a < s.made.size),
            "ranges, not the whole file: {:?}",
            server.ranges()
        );
    }
    let wire: u64 = servers.iter().map(|m| m.bundle_bytes()).sum();
    assert!(
        wire as f64 <= 1.1 * s.made.size as f64,
        "{wire} bytes on the wire for {}",
        s.made.size
    );
    assert!(
        took < one_upstream.mul_f64(0.7),
        "took {took:?}; one upstream alone needs {one_upstream:?}"
    );
    node.stop().await;
}

/// One of three upstreams sends a bad chunk: the round names it, with the chunk's index and
/// byte offset, as a verification failure; the chunk is fetched at most twice and the
/// bundle installs verified from the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_chunk_is_pinned_on_its_upstream_with_index_and_offset() {
    let s = setup(2_300_000);
    let mut options = [throttled(2 << 20); 3];
    options[1].corrupt_first = true;
    let servers = servers(&s.repo, &options).await;
    let node = Node::start(&s.dir.path().join("node"), &[&s.key], Keep::All).await;
    let (report, json, _) = sync(&node, &servers).await;
    assert!(node.has_bundle(&s.key, &s.made.sha256), "{json}");
    let liar = &servers[1];
    let first = liar.ranges()[0].0;
    let (index, offset) = (first / CHUNK_SIZE, first);
    let errors = upstream_json(&json, liar)["errors"].as_array().unwrap();
    let named = format!("chunk {index} (bytes {offset}..");
    assert!(
        errors
            .iter()
            .any(|e| e["reason"] == "bad_chunk" && e["message"].as_str().unwrap().contains(&named)),
        "{named} in {errors:?}"
    );
    for honest in [&servers[0], &servers[2]] {
        assert!(upstream_json(&json, honest)["errors"]
            .as_array()
            .unwrap()
            .is_empty());
    }
    assert_eq!(report.failure(), Some(qasid::ErrorClass::Verification));
    let fetched = servers
        .iter()
        .flat_map(|m| m.ranges())
        .filter(|&(a, b)| a <= offset && offset < b)
        .count();
    assert!(fetched <= 2, "the bad chunk was asked {fetched} times");
    node.stop().await;
}

/// An upstream whose connections are cut after 300 kB loses its ranges to the others: the
/// bundle installs, both others delivered, and nothing starts over from byte 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_cut_mid_download_loses_its_ranges_to_the_others() {
    let s = setup(2_300_000);
    let mut options = [throttled(1 << 20); 3];
    options[0].cut_after = Some(300_000);
    let servers = servers(&s.repo, &options).await;
    let node = Node::start(&s.dir.path().join("node"), &[&s.key], Keep::All).await;
    let (_, json, _) = sync(&node, &servers).await;
    assert!(node.has_bundle(&s.key, &s.made.sha256), "{json}");
    let cut = &servers[0];
    assert!(cut.bundle_bytes() > 0 && cut.bundle_bytes() < s.made.size);
    for other in &servers[1..] {
        let u = upstream_json(&json, other);
        assert!(u["bytes"]["bundles"].as_u64().unwrap() > 0, "{u}");
        assert!(other.ranges().iter().all(|&(a, b)| b - a < s.made.size));
    }
    let wire: u64 = servers.iter().map(|m| m.bundle_bytes()).sum();
    assert!(
        (wire as f64) < 1.3 * s.made.size as f64,
        "{wire} bytes on the wire for {}",
        s.made.size
    );
    node.stop().await;
}

/// A round blocked part-way leaves verified chunks; one of them is then corrupted on disk.
/// The next round asks only for the missing chunks and the corrupted one, and installs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_later_round_resumes_from_the_chunks_that_still_verify() {
    let s = setup(2_300_000);
    let blocked = RangeOptions {
        silent_after: Some(3 * CHUNK_SIZE),
        ..throttled(4 << 20)
    };
    let first = servers(&s.repo, &[blocked]).await;
    let node = Node::start(&s.dir.path().join("node"), &[&s.key], Keep::All).await;
    let (_, json, _) = sync(&node, &first).await;
    assert!(!node.has_bundle(&s.key, &s.made.sha256), "{json}");
    drop(first);

    let partial = chunked_path(&node.store, &s.made.sha256);
    let bundle = std::fs::read(&s.made.path).unwrap();
    let mut on_disk = std::fs::read(&partial).expect("verified chunks kept for the next round");
    assert_eq!(on_disk.len(), bundle.len());
    let chunk =
        |c: usize| c * CHUNK_SIZE as usize..((c + 1) * CHUNK_SIZE as usize).min(bundle.len());
    let count = bundle.len().div_ceil(CHUNK_SIZE as usize);
    let kept: Vec<usize> = (0..count)
        .filter(|&c| on_disk[chunk(c)] == bundle[chunk(c)])
        .collect();
    assert!(kept.len() >= 2, "chunks kept: {kept:?}");
    let corrupted = kept[0];
    on_disk[chunk(corrupted).start + 7] ^= 0x40;
    std::fs::write(&partial, &on_disk).unwrap();

    let second = servers(&s.repo, &[RangeOptions::default()]).await;
    let (_, json, _) = sync(&node, &second).await;
    assert!(node.has_bundle(&s.key, &s.made.sha256), "{json}");
    let asked = second[0].ranges();
    let covers = |c: usize| {
        let offset = chunk(c).start as u64;
        asked.iter().any(|&(a, b)| a <= offset && offset < b)
    };
    assert!(
        covers(corrupted),
        "the corrupted chunk is fetched again: {asked:?}"
    );
    for &c in &kept[1..] {
        assert!(!covers(c), "chunk {c} verified and was kept: {asked:?}");
    }
    let expected = s.made.size - (kept.len() as u64 - 1) * CHUNK_SIZE;
    assert!(second[0].bundle_bytes() <= expected, "{asked:?}");
    assert!(!partial.exists());
    node.stop().await;
}

/// The bundles whose chunk lists a store holds (each list's first 32 bytes name its bundle).
fn lists_held(store: &std::path::Path, key: &qasid::keys::SecretKey) -> Vec<String> {
    let dir = publisher_dir(store, key).join("chunks");
    let mut named: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| hex::encode(&std::fs::read(e.unwrap().path()).unwrap()[..32]))
        .collect();
    named.sort();
    named
}

/// `keep = "current"` pruning takes a pruned bundle's chunk list with it, and leaves the
/// lists of the bundles still listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_current_pruning_removes_the_chunk_lists_of_pruned_bundles() {
    let s = setup(1_200_000);
    let beta = make_bundle(s.dir.path(), &s.key, "beta", 1, 1_200_000);
    publish(&s.repo, &s.key, &[&beta]);
    let host = servers(&s.repo, &[RangeOptions::default()]).await;
    let node = Node::start(&s.dir.path().join("node"), &[&s.key], Keep::Current).await;
    let mut options = fast_options();
    options.prune_grace = Duration::ZERO;
    let syncer = node.syncer(&[&host[0].url], options).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    assert_eq!(syncer.run_once(&cancel).await.failure(), None);
    let mut both = vec![s.made.sha256.to_string(), beta.sha256.to_string()];
    both.sort();
    assert_eq!(lists_held(&node.dir, &s.key), both);

    // big v2 supersedes v1.
    let big2 = make_bundle(s.dir.path(), &s.key, "big", 2, 1_200_000);
    publish(&s.repo, &s.key, &[&big2]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.has_bundle(&s.key, &s.made.sha256) {
        assert!(Instant::now() < deadline, "never pruned");
        let report = syncer.run_once(&cancel).await;
        assert_eq!(report.failure(), None, "{report:#?}");
    }
    let mut current = vec![big2.sha256.to_string(), beta.sha256.to_string()];
    current.sort();
    assert_eq!(lists_held(&node.dir, &s.key), current);
    assert!(node.has_bundle(&s.key, &big2.sha256) && node.has_bundle(&s.key, &beta.sha256));
    node.stop().await;
}

/// `qasid sync --once`, the real binary, with one of two upstreams sending a bad chunk: exit 3
/// (only a verification failure), the bundle installed, and the summary names the upstream,
/// `bad_chunk` with the chunk and its offset, and the bytes it sent that were not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sync_summary_names_the_bad_chunk_and_the_wasted_bytes() {
    let s = setup(1_500_000);
    let mut options = [throttled(4 << 20); 2];
    options[0].corrupt_first = true;
    let servers = servers(&s.repo, &options).await;
    let publisher = s.dir.path().join("publisher.pub");
    std::fs::write(&publisher, s.key.public().to_file_text()).unwrap();
    let store = s.dir.path().join("store");
    let mut cmd = assert_cmd::Command::cargo_bin("qasid").unwrap();
    cmd.env("RUST_LOG", "error")
        .args(["sync", "--once", "--store"])
        .arg(&store)
        .arg("--publisher")
        .arg(&publisher)
        .args(["--read-timeout", "2s"]);
    for server in &servers {
        cmd.args(["--upstream", &server.url]);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        crate::sync_support::bundle_path(&store, &s.key, &s.made.sha256).is_file(),
        "{stdout}"
    );
    let first = servers[0].ranges()[0].0;
    let named = format!("bad_chunk: {}", servers[0].url);
    let chunk = format!("chunk {} (bytes {first}..", first / CHUNK_SIZE);
    assert!(
        stdout.contains(&named) && stdout.contains(&chunk),
        "{named} / {chunk} in {stdout}"
    );
    assert!(stdout.contains("of its bundle bytes not used"), "{stdout}");
}
