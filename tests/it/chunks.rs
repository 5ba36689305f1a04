//! Segmented downloads of bundles with a chunk list (docs/PROTOCOL.md §13) through the real
//! `qasid fetch` binary, from real throttled, lying and blocked servers on 127.0.0.1: mirrors
//! add up, a bad chunk is pinned on its sender with its index and offset, a blocked mirror's
//! chunks go to the others without starting over, and a partial download resumes from chunks
//! that still verify.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qasid::index::layout::{on_disk, PublisherLayout};
use qasid::limits::CHUNK_SIZE;
use serde_json::Value;

use crate::chunks_support::{RangeOptions, RangeServer};
use crate::reader_support::{fetch, json_of, key, make_bundle, publish};

struct Setup {
    dir: tempfile::TempDir,
    repo: PathBuf,
    size: u64,
    sha256: String,
}

/// A published repo with one bundle `big` of about `extra` bytes.
fn setup(extra: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let made = make_bundle(dir.path(), &key(), "big", 1, extra);
    let repo = dir.path().join("repo");
    publish(&repo, &key(), &[made.path()]);
    Setup {
        size: made.size(),
        sha256: made.sha256().to_string(),
        repo,
        dir,
    }
}

impl Setup {
    /// The published bundle's bytes.
    fn bundle_bytes(&self) -> Vec<u8> {
        let layout = PublisherLayout::new(key().public());
        std::fs::read(on_disk(
            &self.repo,
            &layout.bundle(&self.sha256.parse().unwrap()),
        ))
        .unwrap()
    }
}

/// Runs `qasid fetch big --json` against `mirrors`; returns the exit code, JSON and time.
async fn run(state: &Path, out: &Path, mirrors: &[&RangeServer]) -> (i32, Value, Duration) {
    let mut args: Vec<String> = vec!["big".into(), "--json".into(), "--out".into()];
    args.push(out.display().to_string());
    for m in mirrors {
        args.push("--mirror".into());
        args.push(m.url.clone());
    }
    let state = state.to_owned();
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fetch(&state, &args)
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    let code = output.status.code().unwrap_or(-1);
    (code, json_of(&output), elapsed)
}

fn mirror_json<'a>(json: &'a Value, server: &RangeServer) -> &'a Value {
    json["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mirror"] == server.url)
        .unwrap_or_else(|| panic!("{} not in {json}", server.url))
}

/// Four mirrors each throttled to 1 MiB/s: a 2.3 MB bundle takes one mirror 2.2 s; the four
/// together must take well under that (the whole-bundle download uses one mirror at a time).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_throttled_mirrors_add_up() {
    let s = setup(2_300_000);
    let rate = 1 << 20;
    let mut servers = Vec::new();
    for _ in 0..4 {
        let options = RangeOptions {
            rate: Some(rate),
            ..RangeOptions::default()
        };
        servers.push(RangeServer::start(&s.repo, options).await);
    }
    let one_mirror = Duration::from_secs_f64(s.size as f64 / rate as f64);
    let refs: Vec<&RangeServer> = servers.iter().collect();
    let (code, json, took) = run(
        &s.dir.path().join("state"),
        &s.dir.path().join("out"),
        &refs,
    )
    .await;
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["article"]["sha256"], s.sha256);
    assert!(
        took < one_mirror.mul_f64(0.7),
        "took {took:?}; one mirror alone needs {one_mirror:?}"
    );
    let mut delivered = 0;
    for server in &servers {
        let m = mirror_json(&json, server);
        assert!(m["bytes_delivered"].as_u64().unwrap() > 0, "{m}");
        delivered += m["bytes_delivered"].as_u64().unwrap();
    }
    assert_eq!(delivered, s.size);
    let wire: u64 = servers.iter().map(|m| m.bundle_bytes()).sum();
    assert!(
        wire as f64 <= 1.1 * s.size as f64,
        "{wire} bytes on the wire for {}",
        s.size
    );
}

/// One of four mirrors sends one bad chunk: it is named with the chunk's index and byte
/// offset, that chunk is fetched at most twice, and the article verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_chunk_is_pinned_on_its_sender_with_index_and_offset() {
    let s = setup(2_300_000);
    let mut servers = Vec::new();
    for i in 0..4 {
        let options = RangeOptions {
            rate: Some(2 << 20),
            corrupt_first: i == 1,
            ..RangeOptions::default()
        };
        servers.push(RangeServer::start(&s.repo, options).await);
    }
    let refs: Vec<&RangeServer> = servers.iter().collect();
    let (code, json, _) = run(
        &s.dir.path().join("state"),
        &s.dir.path().join("out"),
        &refs,
    )
    .await;
    assert_eq!(code, 0, "{json}");
    let liar = &servers[1];
    let first = liar.ranges()[0].0;
    let chunk = first / CHUNK_SIZE;
    let m = mirror_json(&json, liar);
    assert_eq!(m["fate"], "lying", "{m}");
    let detail = m["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("chunk {chunk} (bytes {first}..")),
        "{detail}"
    );
    assert!(m["bytes_wasted"].as_u64().unwrap() >= 1, "{m}");
    let (start, end) = (chunk * CHUNK_SIZE, (chunk + 1) * CHUNK_SIZE);
    let asked = servers
        .iter()
        .flat_map(|m| m.ranges())
        .filter(|&(a, b)| a < end && b > start)
        .count();
    assert!(asked <= 2, "chunk {chunk} was asked {asked} times");
    // Every other mirror is fine.
    for (i, server) in servers.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert_ne!(mirror_json(&json, server)["fate"], "lying", "mirror {i}");
    }
}

/// A mirror that goes silent part-way (blocked) loses its chunks to the other one, which does
/// not start again from byte 0: it sends only what the blocked one did not deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocked_mirror_loses_its_chunks_without_a_restart() {
    let s = setup(2_300_000);
    let blocked = RangeServer::start(
        &s.repo,
        RangeOptions {
            rate: Some(1 << 20),
            silent_after: Some(700_000),
            ..RangeOptions::default()
        },
    )
    .await;
    let open = RangeServer::start(
        &s.repo,
        RangeOptions {
            rate: Some(1 << 20),
            ..RangeOptions::default()
        },
    )
    .await;
    let (code, json, _) = run(
        &s.dir.path().join("state"),
        &s.dir.path().join("out"),
        &[&blocked, &open],
    )
    .await;
    assert_eq!(code, 0, "{json}");
    let delivered = mirror_json(&json, &blocked)["bytes_delivered"]
        .as_u64()
        .unwrap();
    assert!(delivered >= 2 * CHUNK_SIZE, "{json}");
    assert!(
        open.bundle_bytes() <= s.size - delivered + CHUNK_SIZE,
        "the open mirror sent {} bytes of {} (blocked one delivered {delivered})",
        open.bundle_bytes(),
        s.size
    );
}

/// A partial download from an earlier run (killed part-way) is used only where its chunks
/// still verify: chunks 0, 1 and 3 are kept, chunk 2 (one byte changed on disk) and the
/// never-fetched rest are asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resumed_download_reuses_only_chunks_that_verify() {
    let s = setup(2_300_000);
    let bundle = s.bundle_bytes();
    let state = s.dir.path().join("state");
    let partial_dir = state.join("partial");
    std::fs::create_dir_all(&partial_dir).unwrap();
    let mut partial = vec![0u8; bundle.len()];
    for c in [0u64, 1, 2, 3] {
        let (a, b) = (c * CHUNK_SIZE, (c + 1) * CHUNK_SIZE);
        partial[a as usize..b as usize].copy_from_slice(&bundle[a as usize..b as usize]);
    }
    partial[(2 * CHUNK_SIZE + 77) as usize] ^= 0x40;
    std::fs::write(partial_dir.join(format!("{}.chunked", s.sha256)), &partial).unwrap();
    let server = RangeServer::start(&s.repo, RangeOptions::default()).await;
    let (code, json, _) = run(&state, &s.dir.path().join("out"), &[&server]).await;
    assert_eq!(code, 0, "{json}");
    let ranges = server.ranges();
    let covers = |c: u64| {
        let (a, b) = (c * CHUNK_SIZE, (c + 1) * CHUNK_SIZE);
        ranges.iter().any(|&(x, y)| x < b && y > a)
    };
    assert!(!covers(0) && !covers(1) && !covers(3), "{ranges:?}");
    assert!(covers(2) && covers(4), "{ranges:?}");
    assert_eq!(server.bundle_bytes(), s.size - 3 * CHUNK_SIZE, "{ranges:?}");
    assert_eq!(json["article"]["resumed_from"], 3 * CHUNK_SIZE);
}

/// A repo published before chunk lists existed: its large bundle's entry has no `chunks`, and
/// it still downloads (whole, from one mirror), verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_old_entry_without_a_chunk_list_downloads_whole() {
    use qasid::index::{
        ArticleFields, ArticleVersion, EncodedPiece, Entry, Head, HeadFields, LogRef, ObjectRef,
        SignedHead,
    };
    use qasid::limits::IndexLimits;
    let dir = tempfile::tempdir().unwrap();
    let made = make_bundle(dir.path(), &key(), "big", 1, 1_500_000);
    let repo = dir.path().join("repo");
    let layout = PublisherLayout::new(key().public());
    let limits = IndexLimits::default();
    let bundle = ObjectRef {
        sha256: made.sha256(),
        size: made.size(),
    };
    let entry = Entry::Add(
        ArticleVersion::new(
            ArticleFields {
                name: "big".into(),
                version: 1,
                title: "Report big (v1)".into(),
                date: "2026-02-14".into(),
                language: "en".into(),
                author: "Qasid Desk".into(),
                bundle,
            },
            &limits,
        )
        .unwrap(),
    );
    let piece = EncodedPiece::new(key().public(), 0, &[entry]);
    let now = std::time::SystemTime::now();
    let head = Head::new(
        HeadFields {
            publisher: key().public().clone(),
            sequence: 1,
            issued: now - Duration::from_secs(60),
            expires: now + Duration::from_secs(86400),
            previous: None,
            mirrors: Vec::new(),
            log: LogRef::new(1, vec![piece.reference], piece.reference, &limits).unwrap(),
        },
        &limits,
    )
    .unwrap();
    let signed = SignedHead::sign(head, &key()).unwrap();
    for (relative, bytes) in [
        (layout.index(), signed.envelope().to_vec()),
        (layout.piece(&piece.reference.sha256), piece.bytes.clone()),
        (
            layout.bundle(&bundle.sha256),
            std::fs::read(made.path()).unwrap(),
        ),
    ] {
        let path = on_disk(&repo, &relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let server = RangeServer::start(&repo, RangeOptions::default()).await;
    let (code, json, _) = run(
        &dir.path().join("state"),
        &dir.path().join("out"),
        &[&server],
    )
    .await;
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["article"]["sha256"], bundle.sha256.to_string());
    // One request for the whole file, no ranges.
    assert_eq!(server.ranges(), vec![(0, bundle.size)]);
    assert_eq!(mirror_json(&json, &server)["bytes_delivered"], bundle.size);
}

/// A fetch killed part-way leaves only verified chunks in its partial file; the next run
/// hashes each again, keeps those that still match (one is damaged on disk meanwhile, and is
/// asked for again) and asks only for the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_fetch_resumes_from_its_verified_chunks_only() {
    let s = setup(2_300_000);
    let bundle = s.bundle_bytes();
    let state = s.dir.path().join("state");
    let slow = RangeServer::start(
        &s.repo,
        RangeOptions {
            rate: Some(600_000),
            ..RangeOptions::default()
        },
    )
    .await;
    let mut child = KillOnDrop(
        std::process::Command::new(assert_cmd::cargo::cargo_bin("qasid"))
            .arg("fetch")
            .args(["big", "--publisher", &key().public().to_base64(), "--state"])
            .arg(&state)
            .arg("--out")
            .arg(s.dir.path().join("out"))
            .args(["--mirror", &slow.url])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let partial = state.join("partial").join(format!("{}.chunked", s.sha256));
    let verified = |bytes: &[u8]| -> Vec<u64> {
        (0..bundle.len().div_ceil(CHUNK_SIZE as usize) as u64)
            .filter(|&c| {
                let a = (c * CHUNK_SIZE) as usize;
                let b = (a + CHUNK_SIZE as usize).min(bundle.len());
                bytes.len() == bundle.len() && bytes[a..b] == bundle[a..b]
            })
            .collect()
    };
    // Kill it once at least two chunks are in its partial file, well before the end.
    let deadline = Instant::now() + Duration::from_secs(20);
    let kept = loop {
        assert!(Instant::now() < deadline, "no progress in the partial file");
        let held = verified(&std::fs::read(&partial).unwrap_or_default());
        if held.len() >= 2 {
            child.0.kill().unwrap();
            child.0.wait().unwrap();
            break verified(&std::fs::read(&partial).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let total = bundle.len().div_ceil(CHUNK_SIZE as usize) as u64;
    assert!(kept.len() < total as usize, "killed too late: {kept:?}");
    // Every chunk in the partial file either matches the bundle or was never written.
    let on_disk_now = std::fs::read(&partial).unwrap();
    for c in 0..total {
        let a = (c * CHUNK_SIZE) as usize;
        let b = (a + CHUNK_SIZE as usize).min(bundle.len());
        let piece = &on_disk_now[a..b];
        assert!(
            piece == &bundle[a..b] || piece.iter().all(|&x| x == 0),
            "chunk {c} holds unverified bytes"
        );
    }
    // Damage one kept chunk on disk.
    let damaged = kept[0];
    let mut bytes = on_disk_now;
    bytes[(damaged * CHUNK_SIZE + 5) as usize] ^= 0x10;
    std::fs::write(&partial, &bytes).unwrap();
    let server = RangeServer::start(&s.repo, RangeOptions::default()).await;
    let (code, json, _) = run(&state, &s.dir.path().join("out"), &[&server]).await;
    assert_eq!(code, 0, "{json}");
    let ranges = server.ranges();
    let covers = |c: u64| {
        let (a, b) = (c * CHUNK_SIZE, (c + 1) * CHUNK_SIZE);
        ranges.iter().any(|&(x, y)| x < b && y > a)
    };
    for &c in &kept[1..] {
        assert!(!covers(c), "kept chunk {c} was asked again: {ranges:?}");
    }
    assert!(covers(damaged), "{ranges:?}");
    let reused: u64 = kept[1..]
        .iter()
        .map(|&c| CHUNK_SIZE.min(s.size - c * CHUNK_SIZE))
        .sum();
    assert_eq!(server.bundle_bytes(), s.size - reused);
}

/// Mirrors that ignore `Range` (answer the whole file) cannot give chunks: the bundle is then
/// fetched whole, as for an entry without a chunk list, and verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirrors_without_byte_ranges_fall_back_to_the_whole_file() {
    let s = setup(1_500_000);
    let server = RangeServer::start(
        &s.repo,
        RangeOptions {
            no_ranges: true,
            ..RangeOptions::default()
        },
    )
    .await;
    let (code, json, _) = run(
        &s.dir.path().join("state"),
        &s.dir.path().join("out"),
        &[&server],
    )
    .await;
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["article"]["sha256"], s.sha256);
}

/// A child process killed and reaped when the test ends, whatever happens.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
