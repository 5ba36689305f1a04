//! One spelling per signed index: a re-spaced (re-ordered, re-escaped) copy of a publisher's
//! `index.json` still carries a valid signature, but is another file with another sha256. It
//! must be refused as malformed everywhere an index is read, never counted as the publisher's
//! index: no false equivocation, no evidence, no broken chain, no jammed mirror. Each attack
//! runs against the real binary or a real mirror on loopback, with no key at all.

use crate::{mirror_support, reader_support, sync_support};

use std::fs;
use std::path::Path;

use qasid::config::Keep;
use qasid::index::layout::PublisherLayout;
use qasid::index::{update_from_dir, IndexError, Tracker};
use qasid::keys::SecretKey;
use qasid::limits::IndexLimits;
use tempfile::TempDir;

/// The same JSON with one added space: what anyone can make of a signed `index.json`.
fn respace(envelope: &[u8]) -> Vec<u8> {
    assert_eq!(envelope[0], b'{');
    let mut out = b"{ ".to_vec();
    out.extend_from_slice(&envelope[1..]);
    out
}

fn respace_file(path: &Path) {
    let bytes = fs::read(path).unwrap();
    fs::write(path, respace(&bytes)).unwrap();
}

/// Files in the evidence folder of a reader state, however deep.
fn evidence_cases(state: &Path) -> usize {
    fs::read_dir(state.join("evidence")).map_or(0, |d| d.count())
}

#[test]
fn respaced_index_makes_no_false_equivocation_and_no_evidence() {
    use reader_support::*;
    let dir = TempDir::new().unwrap();
    let (honest, liar) = (dir.path().join("honest"), dir.path().join("liar"));
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 500);
    publish(&honest, &key(), &[alpha.path()]);
    copy_tree(&honest, &liar);
    respace_file(&index_path(&liar, &key()));
    let state = dir.path().join("state");
    let good = TestMirror::start(&honest, Behaviour::default());
    let out = fetch(&state, &["--mirror", &good.url]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let held = state
        .join("index")
        .join(key().public().hex())
        .join("head.json");
    let held_before = fs::read(&held).unwrap();

    // Only the re-spacing mirror: refused as malformed, not as the publisher's equivocation.
    let bad = TestMirror::start(&liar, Behaviour::default());
    let out = fetch(&state, &["--mirror", &bad.url, "--json"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let doc = json_of(&out);
    let shown = format!("{doc} {}", stderr(&out));
    assert!(!shown.contains("EQUIVOCATION"), "{shown}");
    assert!(shown.contains("canonical"), "{shown}");
    assert_eq!(
        evidence_cases(&state),
        0,
        "no evidence for a re-spaced copy"
    );
    assert_eq!(fs::read(&held).unwrap(), held_before, "history untouched");

    // Both: the honest index wins, the liar is reported.
    let out = fetch(
        &state,
        &["--mirror", &bad.url, "--mirror", &good.url, "--json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(evidence_cases(&state), 0);

    // `index show` on the re-spaced folder: malformed, exit 3, nothing saved.
    let out = qasid()
        .args(["index", "show", "--publisher", &key().public().to_base64()])
        .arg("--repo")
        .arg(&liar)
        .arg("--state")
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(!stderr(&out).contains("EQUIVOCATION"), "{}", stderr(&out));
    assert!(stderr(&out).contains("canonical"), "{}", stderr(&out));
    assert_eq!(evidence_cases(&state), 0);
    assert_eq!(fs::read(&held).unwrap(), held_before);
}

#[test]
fn respaced_next_index_does_not_break_the_chain() {
    use reader_support::*;
    let dir = TempDir::new().unwrap();
    let repo = dir.path().join("repo");
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 500);
    publish(&repo, &key(), &[alpha.path()]);
    let state = dir.path().join("state");
    let mirror = TestMirror::start(&repo, Behaviour::default());
    let out = fetch(&state, &["--mirror", &mirror.url]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // The publisher's N+1 appears; a mirror serves it re-spaced first.
    let beta = make_bundle(dir.path(), &key(), "beta", 1, 500);
    publish(&repo, &key(), &[beta.path()]);
    let liar = dir.path().join("liar");
    copy_tree(&repo, &liar);
    respace_file(&index_path(&liar, &key()));
    let bad = TestMirror::start(&liar, Behaviour::default());
    let out = fetch(&state, &["--mirror", &bad.url, "--json"]);
    assert_eq!(
        code(&out),
        3,
        "the re-spaced N+1 is refused: {}",
        stderr(&out)
    );

    // The honest N+1 still chains: accepted, and so is N+2.
    let out = fetch(&state, &["--mirror", &mirror.url, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json_of(&out)["publishers"][0]["sequence"], 2);
    let gamma = make_bundle(dir.path(), &key(), "gamma", 1, 500);
    publish(&repo, &key(), &[gamma.path()]);
    let out = fetch(&state, &["--mirror", &mirror.url, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json_of(&out)["publishers"][0]["sequence"], 3);
    assert_eq!(evidence_cases(&state), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respaced_index_pushed_to_a_mirror_first_does_not_jam_the_publisher() {
    use mirror_support::*;
    let p = published(1024).await;
    let next = make_bundle(p.dir.path(), &p.key, "follow-up", 1, 1024);
    let real = publish(&p.repo, &p.key, &[&next.path]);
    let index = url_path(&p.key, PublisherLayout::index);

    // The publisher pushes objects first, the index last; the attacker (no credential needed)
    // sees the objects arrive and pushes a re-spaced copy of the N+1 index in between.
    push_objects(&p.server, &p.repo, &p.key).await;
    let (status, body) = put(&p.server, &index, respace(&real)).await;
    assert!((400..500).contains(&status), "refused: {status} {body}");
    assert!(body.to_string().contains("canonical"), "{body}");

    // The publisher's real push goes through, and the real bytes are served.
    push_repo(&p.server, &p.repo, &p.key).await;
    assert_eq!(get_bytes(&p.server, &index).await, real);
    assert!(
        !p.server.store_dir.join(".state/evidence").exists(),
        "no evidence for a re-spaced copy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn respaced_index_from_a_lying_upstream_does_not_jam_sync() {
    use sync_support::*;
    let dir = tempfile::tempdir().unwrap();
    let key = key(7);
    let repo = dir.path().join("repo");
    let alpha = make_bundle(dir.path(), &key, "alpha", 1, 2_000);
    publish(&repo, &key, &[&alpha]);
    let good = StaticServer::start(&repo, StaticOptions::default()).await;
    let node = Node::start(&dir.path().join("node"), &[&key], Keep::All).await;
    node.sync_once(&[&good.url]).await;
    assert_eq!(node.sequence(&key), Some(1));

    let beta = make_bundle(dir.path(), &key, "beta", 1, 2_000);
    publish(&repo, &key, &[&beta]);
    let liar_root = dir.path().join("liar");
    copy_tree(&repo, &liar_root);
    respace_file(&index_path(&liar_root, &key));
    let liar = StaticServer::start(&liar_root, StaticOptions::default()).await;
    let report = node.sync_once(&[&liar.url]).await;
    assert_eq!(node.sequence(&key), Some(1), "{report:#?}");
    assert!(format!("{report:?}").contains("canonical"), "{report:#?}");

    let report = node.sync_once(&[&good.url]).await;
    assert_eq!(node.sequence(&key), Some(2), "{report:#?}");
    assert_eq!(
        fs::read(index_path(&node.dir, &key)).unwrap(),
        fs::read(index_path(&repo, &key)).unwrap()
    );
    assert!(!node.dir.join(".state/evidence").exists());
}

/// Publishes from the same N-1 in `forks` copies: conflicting, validly signed heads N. Returns
/// the fork folders.
fn forks(dir: &Path, key: &SecretKey, forks: usize) -> Vec<std::path::PathBuf> {
    use reader_support::{copy_tree, make_bundle, publish};
    let base = dir.join("base");
    let first = make_bundle(dir, key, "first", 1, 100);
    publish(&base, key, &[first.path()]);
    (0..forks)
        .map(|i| {
            let fork = dir.join(format!("fork-{i}"));
            copy_tree(&base, &fork);
            let b = make_bundle(dir, key, &format!("fork-{i}"), 1, 100);
            publish(&fork, key, &[b.path()]);
            fork
        })
        .collect()
}

#[test]
fn evidence_folder_is_deduplicated_and_bounded() {
    let dir = TempDir::new().unwrap();
    let key = reader_support::key();
    let folders = forks(dir.path(), &key, 5);
    let state = dir.path().join("state");
    let limits = IndexLimits {
        max_evidence_cases: 2,
        ..IndexLimits::default()
    };
    let mut tracker = Tracker::open(&state, key.public(), limits).unwrap();
    let now = std::time::SystemTime::now();
    update_from_dir(&mut tracker, &folders[0], now).unwrap();
    let forks: Vec<Vec<u8>> = folders[1..]
        .iter()
        .map(|f| fs::read(reader_support::index_path(f, &key)).unwrap())
        .collect();
    let now = std::time::SystemTime::now();
    let evidence = |e: IndexError| match e {
        IndexError::Equivocation { evidence, .. } => evidence,
        other => panic!("expected equivocation, got {other}"),
    };
    // The same conflict offered three times: one folder.
    let first = evidence(tracker.offer(&forks[0], now).unwrap_err()).expect("saved");
    for _ in 0..2 {
        let again = evidence(tracker.offer(&forks[0], now).unwrap_err());
        assert_eq!(again.as_deref(), Some(first.as_path()));
    }
    assert_eq!(evidence_cases(&state), 1);
    // Other conflicts: saved up to the cap, then reported without being saved.
    assert!(evidence(tracker.offer(&forks[1], now).unwrap_err()).is_some());
    assert_eq!(evidence(tracker.offer(&forks[2], now).unwrap_err()), None);
    let err = tracker.offer(&forks[3], now).unwrap_err();
    assert!(err.to_string().contains("EQUIVOCATION"), "{err}");
    assert!(err.to_string().contains("not saved"), "{err}");
    assert_eq!(evidence_cases(&state), 2);
    // A re-spaced copy of a real conflict is no evidence at all.
    let err = tracker.offer(&respace(&forks[0]), now).unwrap_err();
    assert!(matches!(err, IndexError::Malformed { .. }), "{err}");
}
