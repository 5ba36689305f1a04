//! Index scale benchmark: a publisher with 100,000 article versions.
//!
//! Run with `cargo bench --bench index_scale` (release build). The 100,000 add entries are
//! synthetic (unique names, real-looking titles) and point at a few real small bundles; the
//! log is laid out by the same merge rule `publish` uses, as if it had grown by batches of
//! 1 to 40 entries. Then, with the real code paths, it measures: head size, number and bytes
//! of pieces, a fresh client's full verification (against `sha256sum` of the piece files as a
//! reference in the same run), a stateful client's load, 30 real `publish` calls of one more
//! bundle (typical and worst time, and bytes written), and the bytes a client holding the
//! previous index fetches.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use qasid::bundle::{self, CreateOptions};
use qasid::index::layout::{on_disk, PublisherLayout};
use qasid::index::{
    merged_counts, update_from_dir, ArticleFields, ArticleVersion, EncodedPiece, Entry, Head,
    HeadFields, LogRef, ObjectRef, SignedHead, Tracker,
};
use qasid::keys::SecretKey;
use qasid::limits::{BundleLimits, IndexLimits};
use qasid::repo::{PublishRequest, Repo};

const ENTRIES: usize = 100_000;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let key = SecretKey::from_seed(&[0x33; 32]);
    let limits = IndexLimits::default();
    let layout = PublisherLayout::new(key.public());
    let now = SystemTime::now();

    // A few real bundles, published for real, so the repo starts as `publish` leaves it.
    let repo = Repo::new(&root, key.public(), limits.clone(), BundleLimits::default());
    for i in 0..4 {
        let b = make_bundle(dir.path(), &key, &format!("seed-{i}"), 1);
        repo.publish(&key, &request(vec![b], now)).unwrap();
    }
    let seeded = repo.current().unwrap().unwrap();
    let mut entries: Vec<Entry> = seeded.entries().to_vec();
    let bundles: Vec<ObjectRef> = seeded.current().iter().map(|(_, a)| a.bundle()).collect();

    // Grow the log to 100,000 entries in batches of 1..=40, applying the merge rule.
    let started = Instant::now();
    let mut pieces = seeded.head().log().pieces().to_vec();
    let mut sequence = seeded.head().sequence();
    let previous = *seeded.signed().id();
    let mut n = 0usize;
    while entries.len() < ENTRIES {
        n += 1;
        let size = (1 + (n * 7919) % 40).min(ENTRIES - entries.len());
        let first = entries.len();
        for j in 0..size {
            let i = first + j;
            entries.push(Entry::Add(
                ArticleVersion::new(
                    ArticleFields {
                        name: format!("story-{i:06}"),
                        version: 1,
                        title: format!("Report {i}: flooding closes the coastal road again"),
                        date: "2026-02-14".into(),
                        language: if i.is_multiple_of(3) { "ur" } else { "en" }.into(),
                        author: "Qasid Desk".into(),
                        bundle: bundles[i % bundles.len()],
                    },
                    &limits,
                )
                .unwrap(),
            ));
        }
        let new_batch = EncodedPiece::new(key.public(), first as u64, &entries[first..]);
        write(
            &root,
            &layout.piece(&new_batch.reference.sha256),
            &new_batch.bytes,
        );
        let counts = merged_counts(
            &pieces.iter().map(|p| p.count).collect::<Vec<_>>(),
            size as u64,
        );
        let kept = counts
            .iter()
            .zip(&pieces)
            .take_while(|(c, p)| **c == p.count)
            .count();
        pieces.truncate(kept);
        let mut at = pieces.last().map_or(0, |p| p.end());
        for &count in &counts[kept..] {
            let piece = if at == first as u64 {
                new_batch.reference
            } else {
                let p = EncodedPiece::new(
                    key.public(),
                    at,
                    &entries[at as usize..(at + count) as usize],
                );
                write(&root, &layout.piece(&p.reference.sha256), &p.bytes);
                p.reference
            };
            pieces.push(piece);
            at += count;
        }
        sequence += 1;
        // Only the last head is written (chained to the last real one): clients check the
        // chain link only between consecutive sequence numbers.
        if entries.len() == ENTRIES {
            let log = LogRef::new(
                entries.len() as u64,
                pieces.clone(),
                new_batch.reference,
                &limits,
            )
            .unwrap();
            let head = Head::new(
                HeadFields {
                    publisher: key.public().clone(),
                    sequence,
                    issued: now,
                    expires: now + Duration::from_secs(7 * 86400),
                    previous: Some(previous),
                    mirrors: Vec::new(),
                    log,
                },
                &limits,
            )
            .unwrap();
            let signed = SignedHead::sign(head, &key).unwrap();
            write(&root, &layout.index(), signed.envelope());
        }
    }
    println!(
        "synthetic log of {} entries built in {:.1?} ({n} batches)",
        entries.len(),
        started.elapsed()
    );

    let head_bytes = fs::metadata(on_disk(&root, &layout.index())).unwrap().len();
    let piece_bytes: u64 = pieces.iter().map(|p| p.size).sum();
    println!("head (index.json):        {head_bytes} bytes");
    println!(
        "pieces listed:            {} ({} bytes, {:.0} bytes/entry)",
        pieces.len(),
        piece_bytes,
        piece_bytes as f64 / ENTRIES as f64
    );
    println!(
        "piece counts:             {:?}",
        pieces.iter().map(|p| p.count).collect::<Vec<_>>()
    );

    // Fresh client: head + every piece, size-capped, hashed, parsed, canonical-checked.
    let (fresh, verify_time) = best_of(3, || {
        let mut t = Tracker::ephemeral(key.public(), limits.clone());
        let (_, transfer) = update_from_dir(&mut t, &root, SystemTime::now()).unwrap();
        transfer
    });
    println!(
        "fresh verify (ephemeral): {verify_time:.1?}, read {} bytes",
        fresh.head_bytes + fresh.piece_bytes
    );
    let piece_files: Vec<_> = pieces
        .iter()
        .map(|p| on_disk(&root, &layout.piece(&p.sha256)))
        .collect();
    let (_, sha_time) = best_of(3, || {
        let out = Command::new("sha256sum")
            .args(&piece_files)
            .output()
            .unwrap();
        assert!(out.status.success());
    });
    println!(
        "reference sha256sum of the same pieces: {sha_time:.1?} (verify / sha256sum = {:.1}x)",
        verify_time.as_secs_f64() / sha_time.as_secs_f64()
    );

    // A stateful client: first sync, then re-open (re-verifies its stored state).
    let state = dir.path().join("state");
    let started = Instant::now();
    let mut tracker = Tracker::open(&state, key.public(), limits.clone()).unwrap();
    update_from_dir(&mut tracker, &root, SystemTime::now()).unwrap();
    println!("stateful first sync:      {:.1?}", started.elapsed());
    drop(tracker);
    let (_, open_time) = best_of(3, || {
        Tracker::open(&state, key.public(), limits.clone()).unwrap()
    });
    println!("stateful re-open:         {open_time:.1?} (re-verifies head and stored pieces)");

    // Real publishes of one more bundle each, and a client following along.
    let mut times = Vec::new();
    let mut written = Vec::new();
    let mut fetched = Vec::new();
    for i in 0..30 {
        let b = make_bundle(dir.path(), &key, &format!("new-{i}"), 1);
        let started = Instant::now();
        let report = repo
            .publish(&key, &request(vec![b], SystemTime::now()))
            .unwrap();
        times.push(started.elapsed());
        written.push(report.pieces_written.iter().map(|p| p.size).sum::<u64>());
        let mut tracker = Tracker::open(&state, key.public(), limits.clone()).unwrap();
        let (_, transfer) = update_from_dir(&mut tracker, &root, SystemTime::now()).unwrap();
        let signed = report.signed.unwrap();
        assert_eq!(transfer.pieces, 1);
        assert_eq!(transfer.piece_bytes, signed.head().log().batch().size);
        fetched.push(transfer.head_bytes + transfer.piece_bytes);
    }
    let mut sorted = times.clone();
    sorted.sort();
    println!(
        "publish one more bundle:  median {:.1?}, worst {:.1?} (30 runs)",
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );
    let mut w = written.clone();
    w.sort();
    println!(
        "piece bytes written/publish: median {}, worst {} (the worst is a merge)",
        w[w.len() / 2],
        w[w.len() - 1]
    );
    let mut f = fetched.clone();
    f.sort();
    println!(
        "client holding the previous index fetches: median {} bytes, worst {} bytes (head + one batch piece)",
        f[f.len() / 2],
        f[f.len() - 1]
    );
    let head_now = fs::metadata(on_disk(&root, &layout.index())).unwrap().len();
    println!("head after the publishes:  {head_now} bytes");
    // One line per figure in the shape scripts/bench.sh collects into BENCHMARKS.md.
    println!(
        "RESULT | index at 100k entries: signed head size | {head_bytes} bytes | target: a few KB | {}",
        if head_bytes <= 8192 { "PASS" } else { "FAIL" }
    );
    println!(
        "RESULT | index at 100k entries: fresh verify vs sha256sum of the same pieces | {:.1}x ({verify_time:.1?} vs {sha_time:.1?}) | reference only | -",
        verify_time.as_secs_f64() / sha_time.as_secs_f64()
    );
    println!(
        "RESULT | index at 100k entries: bytes fetched by a client holding the previous index | median {}, worst {} bytes (full listing {} bytes) | head + one batch piece | {}",
        f[f.len() / 2],
        f[f.len() - 1],
        piece_bytes + head_bytes,
        if f[f.len() - 1] <= 4 * 1024 { "PASS" } else { "FAIL" }
    );
    println!(
        "RESULT | index at 100k entries: publish one more bundle | median {:.1?}, worst {:.1?} | no existing bundle re-hashed | -",
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );
    let worst_merge = merge_worst_case(&entries, &key);
    println!("worst case merge (whole log in one piece): {worst_merge}");
}

/// Times encoding and hashing the whole log as one piece: the upper bound of what a single
/// publish can rewrite when the merge rule folds everything together.
fn merge_worst_case(entries: &[Entry], key: &SecretKey) -> String {
    let started = Instant::now();
    let piece = EncodedPiece::new(key.public(), 0, entries);
    format!(
        "{} bytes encoded and hashed in {:.1?}",
        piece.bytes.len(),
        started.elapsed()
    )
}

fn best_of<T>(n: usize, mut f: impl FnMut() -> T) -> (T, Duration) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..n {
        let started = Instant::now();
        let v = f();
        best = best.min(started.elapsed());
        out = Some(v);
    }
    (out.unwrap(), best)
}

fn write(root: &Path, relative: &str, bytes: &[u8]) {
    let path = on_disk(root, relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn request(bundles: Vec<std::path::PathBuf>, now: SystemTime) -> PublishRequest {
    PublishRequest {
        bundles,
        retract: Vec::new(),
        refresh: false,
        mirrors: None,
        expires_in: Duration::from_secs(7 * 86400),
        now,
    }
}

fn make_bundle(dir: &Path, key: &SecretKey, name: &str, version: u64) -> std::path::PathBuf {
    let src = dir.join(format!("src-{name}"));
    fs::create_dir_all(&src).unwrap();
    fs::write(
        src.join("article.md"),
        format!("---\ntitle: {name}\nauthor: Qasid Desk\ndate: 2026-02-14\nlanguage: en\n---\n\nText of {name}.\n"),
    )
    .unwrap();
    let out = dir.join(format!("{name}.zip"));
    bundle::create(
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
    out
}
