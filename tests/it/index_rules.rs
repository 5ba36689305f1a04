//! Every verification rule of the index, each with its own attack and its specific error.

use crate::repo_support;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use qasid::content_id::ContentId;
use qasid::index::layout::on_disk;
use qasid::index::{
    receive_bundle, receive_file, update_from_dir, BundleFetchError, Conflict, Entry, FetchError,
    Freshness, Head, HeadFields, IndexError, LazyTracker, Offer, Outcome, SignedHead, Tracker,
};
use qasid::keys::SecretKey;
use qasid::limits::{BundleLimits, IndexLimits};
use repo_support::*;
use tempfile::TempDir;

/// A repo with two published bundles (sequence 1 then 2).
fn two_publishes() -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let k = key();
    let a = make_bundle(dir.path(), &k, "alpha", 1);
    let b = make_bundle(dir.path(), &k, "beta", 1);
    publish(&root, &k, &[a.path()], t0()).unwrap();
    publish(&root, &k, &[b.path()], t0() + Duration::from_secs(60)).unwrap();
    (dir, root)
}

fn envelope_json(root: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(index_path(root, &key())).unwrap()).unwrap()
}

/// Writes `v` in the canonical envelope spelling (compact, members in alphabetical order,
/// which is the envelope's order, and a final newline), so that only its content differs.
fn write_envelope(root: &Path, v: &serde_json::Value) {
    let mut bytes = serde_json::to_vec(v).unwrap();
    bytes.push(b'\n');
    fs::write(index_path(root, &key()), bytes).unwrap();
}

#[test]
fn a_valid_repo_verifies_and_lists_its_articles() {
    let (_dir, root) = two_publishes();
    let index = verify_fresh(&root, &key(), t0()).unwrap();
    assert_eq!(index.head().sequence(), 2);
    let names: Vec<_> = index
        .current()
        .iter()
        .map(|(_, a)| a.name().to_owned())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(index.freshness(t0()), Freshness::Fresh);
}

#[test]
fn wrong_key_index_served_under_another_publisher_is_refused() {
    let (_dir, root) = two_publishes();
    // A hostile mirror serves our publisher's index at another publisher's path.
    let other = other_key();
    let path = index_path(&root, &other);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::copy(index_path(&root, &key()), &path).unwrap();
    let err = verify_fresh(&root, &other, t0()).unwrap_err();
    assert!(matches!(err, IndexError::WrongPublisher { .. }), "{err}");
    assert!(
        err.to_string().contains("not the trusted publisher"),
        "{err}"
    );
}

#[test]
fn tampered_envelope_bytes_are_refused() {
    let (_dir, root) = two_publishes();
    let path = index_path(&root, &key());
    let mut bytes = fs::read(&path).unwrap();
    bytes.truncate(bytes.len() / 2);
    fs::write(&path, bytes).unwrap();
    let err = verify_fresh(&root, &key(), t0()).unwrap_err();
    assert!(
        err.to_string().starts_with("index envelope is malformed"),
        "{err}"
    );
}

#[test]
fn tampered_head_is_refused_as_bad_signature() {
    let (_dir, root) = two_publishes();
    let mut env = envelope_json(&root);
    let head = B64.decode(env["head"].as_str().unwrap()).unwrap();
    let tampered = String::from_utf8(head)
        .unwrap()
        .replace("\"sequence\":2", "\"sequence\":9");
    env["head"] = B64.encode(tampered).into();
    write_envelope(&root, &env);
    let err = verify_fresh(&root, &key(), t0()).unwrap_err();
    assert!(matches!(err, IndexError::BadSignature(_)), "{err}");
    assert!(err.to_string().contains("tampered or forged"), "{err}");
}

#[test]
fn bad_signature_is_refused() {
    let (_dir, root) = two_publishes();
    let mut env = envelope_json(&root);
    let mut sig = B64.decode(env["signature"].as_str().unwrap()).unwrap();
    sig[10] ^= 0x01;
    env["signature"] = B64.encode(sig).into();
    write_envelope(&root, &env);
    let err = verify_fresh(&root, &key(), t0()).unwrap_err();
    assert!(matches!(err, IndexError::BadSignature(_)), "{err}");
}

#[test]
fn head_over_the_size_cap_is_refused_before_parsing() {
    let (_dir, root) = two_publishes();
    let path = index_path(&root, &key());
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend(std::iter::repeat_n(b' ', 70 * 1024));
    fs::write(&path, bytes).unwrap();
    let err = verify_fresh(&root, &key(), t0()).unwrap_err();
    assert!(
        matches!(err, IndexError::Head(FetchError::TooLarge { limit: 65536 })),
        "{err:?}"
    );
}

#[test]
fn tampered_piece_is_refused_by_hash() {
    let (_dir, root) = two_publishes();
    let index = verify_fresh(&root, &key(), t0()).unwrap();
    let piece = index.head().log().pieces()[0];
    let path = on_disk(&root, &layout(&key()).piece(&piece.sha256));
    let text = fs::read_to_string(&path).unwrap().replace("alpha", "alphb");
    fs::write(&path, text).unwrap();
    let err = verify_fresh(&root, &key(), t0()).unwrap_err();
    match &err {
        IndexError::Piece {
            source: FetchError::HashMismatch { expected, .. },
            ..
        } => assert_eq!(*expected, piece.sha256),
        other => panic!("expected a piece hash mismatch, got {other:?}"),
    }
    // A piece longer than the signed size is cut off at size + 1 bytes.
    fs::write(&path, vec![b'{'; piece.size as usize + 100]).unwrap();
    let err = verify_fresh(&root, &key(), t0()).unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::Piece {
                source: FetchError::TooLarge { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn rollback_to_an_older_index_is_refused() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let state = dir.path().join("state");
    let k = key();
    let a = make_bundle(dir.path(), &k, "alpha", 1);
    let b = make_bundle(dir.path(), &k, "beta", 1);
    publish(&root, &k, &[a.path()], t0()).unwrap();
    let old = fs::read(index_path(&root, &k)).unwrap();
    publish(&root, &k, &[b.path()], t0()).unwrap();
    client_update(&state, &root, &k, t0()).unwrap();
    // A mirror replays sequence 1 to hide "beta".
    fs::write(index_path(&root, &k), old).unwrap();
    let err = client_update(&state, &root, &k, t0()).unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::Rollback {
                held: 2,
                offered: 1
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("rollback refused"), "{err}");
}

/// Forks the repo after its first publish into two histories, A and B, each publishing
/// different bundles. Returns (dir, root A, root B).
fn forked() -> (TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = TempDir::new().unwrap();
    let a_root = dir.path().join("a");
    let b_root = dir.path().join("b");
    let k = key();
    let first = make_bundle(dir.path(), &k, "alpha", 1);
    publish(&a_root, &k, &[first.path()], t0()).unwrap();
    copy_tree(&a_root, &b_root);
    let in_a = make_bundle(dir.path(), &k, "truth", 1);
    let in_b = make_bundle(dir.path(), &k, "propaganda", 1);
    publish(&a_root, &k, &[in_a.path()], t0()).unwrap();
    publish(&b_root, &k, &[in_b.path()], t0()).unwrap();
    (dir, a_root, b_root)
}

fn evidence_files(err: &IndexError) -> Vec<String> {
    let IndexError::Equivocation {
        evidence: Some(dir),
        ..
    } = err
    else {
        panic!("expected equivocation with evidence, got {err:?}");
    };
    files_under(dir)
}

#[test]
fn same_sequence_with_different_content_is_equivocation_with_evidence() {
    let (dir, a_root, b_root) = forked();
    let state = dir.path().join("state");
    let k = key();
    client_update(&state, &a_root, &k, t0()).unwrap();
    let err = client_update(&state, &b_root, &k, t0()).unwrap_err();
    assert!(
        matches!(
            &err,
            IndexError::Equivocation {
                conflict: Conflict::SameSequence { sequence: 2 },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("EQUIVOCATION"), "{err}");
    assert_eq!(
        evidence_files(&err),
        ["README.txt", "held.json", "new.json"]
    );
    let IndexError::Equivocation {
        evidence: Some(ev), ..
    } = &err
    else {
        unreachable!()
    };
    assert_eq!(
        fs::read(ev.join("held.json")).unwrap(),
        fs::read(index_path(&a_root, &k)).unwrap()
    );
    assert_eq!(
        fs::read(ev.join("new.json")).unwrap(),
        fs::read(index_path(&b_root, &k)).unwrap()
    );
    // Both saved documents verify with the publisher's key: they are proof.
    for f in ["held.json", "new.json"] {
        SignedHead::verify(
            &fs::read(ev.join(f)).unwrap(),
            k.public(),
            &IndexLimits::default(),
        )
        .unwrap();
    }
    // The client still holds history A.
    let tracker = Tracker::open(&state, k.public(), IndexLimits::default()).unwrap();
    assert_eq!(
        tracker.held().unwrap().signed().envelope(),
        fs::read(index_path(&a_root, &k)).unwrap()
    );
}

#[test]
fn next_index_that_does_not_chain_to_the_held_one_is_equivocation() {
    let (dir, a_root, b_root) = forked();
    let state = dir.path().join("state");
    let k = key();
    client_update(&state, &a_root, &k, t0()).unwrap();
    let more = make_bundle(dir.path(), &k, "more", 1);
    publish(&b_root, &k, &[more.path()], t0()).unwrap(); // B's sequence 3 chains to B's 2
    let err = client_update(&state, &b_root, &k, t0()).unwrap_err();
    assert!(
        matches!(
            &err,
            IndexError::Equivocation {
                conflict: Conflict::BrokenChain { sequence: 3 },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        evidence_files(&err),
        ["README.txt", "held.json", "new.json"]
    );
}

#[test]
fn later_index_whose_log_does_not_extend_the_held_log_is_equivocation() {
    let (dir, a_root, b_root) = forked();
    let state = dir.path().join("state");
    let k = key();
    client_update(&state, &a_root, &k, t0()).unwrap();
    for name in ["more", "again"] {
        let b = make_bundle(dir.path(), &k, name, 1);
        publish(&b_root, &k, &[b.path()], t0()).unwrap();
    }
    // B is at sequence 4: no chain link to check, so the log itself must give it away.
    let err = client_update(&state, &b_root, &k, t0()).unwrap_err();
    assert!(
        matches!(
            &err,
            IndexError::Equivocation {
                conflict: Conflict::LogDiverged { entry: 1 },
                ..
            }
        ),
        "{err:?}"
    );
    let files = evidence_files(&err);
    assert!(files.contains(&"held.json".to_owned()) && files.contains(&"new.json".to_owned()));
    assert!(
        files.iter().any(|f| f.starts_with("new-piece-")),
        "{files:?}"
    );
    assert!(
        files.iter().any(|f| f.starts_with("held-piece-")),
        "{files:?}"
    );
}

#[test]
fn later_index_with_a_shorter_log_is_equivocation() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let state = dir.path().join("state");
    let k = key();
    let a = make_bundle(dir.path(), &k, "alpha", 1);
    let b = make_bundle(dir.path(), &k, "beta", 1);
    publish(&root, &k, &[a.path()], t0()).unwrap();
    let first = verify_fresh(&root, &k, t0()).unwrap();
    publish(&root, &k, &[b.path()], t0()).unwrap();
    let second = verify_fresh(&root, &k, t0()).unwrap();
    client_update(&state, &root, &k, t0()).unwrap();
    // The key signs sequence 3 holding only the first entry, chained to sequence 2.
    let limits = IndexLimits::default();
    let head = Head::new(
        HeadFields {
            publisher: k.public().clone(),
            sequence: 3,
            issued: t0(),
            expires: t0() + DAY,
            previous: Some(*second.signed().id()),
            mirrors: Vec::new(),
            log: first.head().log().clone(),
        },
        &limits,
    )
    .unwrap();
    let shrunk = SignedHead::sign(head, &k).unwrap();
    fs::write(index_path(&root, &k), shrunk.envelope()).unwrap();
    let err = client_update(&state, &root, &k, t0()).unwrap_err();
    assert!(
        matches!(
            &err,
            IndexError::Equivocation {
                conflict: Conflict::LogShrank {
                    held: 2,
                    offered: 1
                },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn expired_index_is_stale_but_authentic() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let state = dir.path().join("state");
    let k = key();
    let a = make_bundle(dir.path(), &k, "alpha", 1);
    publish(&root, &k, &[a.path()], t0()).unwrap();
    let later = t0() + 10 * DAY;
    let (outcome, _) = client_update(&state, &root, &k, later).unwrap();
    assert_eq!(outcome, Outcome::Updated { from: None, to: 1 });
    let tracker = Tracker::open(&state, k.public(), IndexLimits::default()).unwrap();
    let index = tracker.held().unwrap();
    assert_eq!(
        index.freshness(later),
        Freshness::Expired { since: 3 * DAY }
    );
    assert_eq!(
        index.current().len(),
        1,
        "the stale content is still readable"
    );
}

#[test]
fn fresher_held_index_is_not_replaced_by_a_newer_expired_one() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let state = dir.path().join("state");
    let k = key();
    let a = make_bundle(dir.path(), &k, "alpha", 1);
    let b = make_bundle(dir.path(), &k, "beta", 1);
    // Sequence 1 is valid for 30 days; sequence 2 was signed with a 1-day expiry.
    let mut req = request(&[a.path()], t0());
    req.expires_in = 30 * DAY;
    repo(&root, &k).publish(&k, &req).unwrap();
    let now = t0() + 5 * DAY;
    client_update(&state, &root, &k, now).unwrap();
    let mut req = request(&[b.path()], t0());
    req.expires_in = DAY;
    repo(&root, &k).publish(&k, &req).unwrap();
    let (outcome, _) = client_update(&state, &root, &k, now).unwrap();
    assert_eq!(
        outcome,
        Outcome::KeptFresher {
            offered: 2,
            expired_since: 4 * DAY
        }
    );
    let tracker = Tracker::open(&state, k.public(), IndexLimits::default()).unwrap();
    assert_eq!(tracker.held().unwrap().head().sequence(), 1);
    // Once the held one is also expired, the newer content wins.
    let (outcome, _) = client_update(&state, &root, &k, t0() + 40 * DAY).unwrap();
    assert_eq!(
        outcome,
        Outcome::Updated {
            from: Some(1),
            to: 2
        }
    );
}

#[test]
fn bundle_bytes_not_matching_the_index_are_rejected_before_the_zip_is_parsed() {
    let (dir, root) = two_publishes();
    let index = verify_fresh(&root, &key(), t0()).unwrap();
    let (_, article) = index.current()[0];
    let size = article.bundle().size as usize;
    let limits = BundleLimits::default();
    let pk = key().public().clone();
    // Same size, not even a zip: if the zip were parsed first this would be NotAZip.
    let garbage = vec![0u8; size];
    let err = receive_bundle(&garbage[..], dir.path(), article, &pk, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            BundleFetchError::Fetch {
                source: FetchError::HashMismatch { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("bundle "), "{err}");
    // Short and long.
    let err = receive_bundle(&garbage[..size - 1], dir.path(), article, &pk, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            BundleFetchError::Fetch {
                source: FetchError::Truncated { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let long = vec![0u8; size + 1];
    let err = receive_bundle(&long[..], dir.path(), article, &pk, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            BundleFetchError::Fetch {
                source: FetchError::TooLarge { .. },
                ..
            }
        ),
        "{err:?}"
    );
    // Another authentic bundle of the same publisher is not the listed one either.
    let (_, other) = index.current()[1];
    let other_bytes = fs::read(on_disk(
        &root,
        &layout(&key()).bundle(&other.bundle().sha256),
    ))
    .unwrap();
    let err = receive_bundle(&other_bytes[..], dir.path(), article, &pk, &limits).unwrap_err();
    assert!(matches!(err, BundleFetchError::Fetch { .. }), "{err:?}");
    // The real bytes pass, and nothing was left in the temp folder by the failures.
    let real = fs::read(on_disk(
        &root,
        &layout(&key()).bundle(&article.bundle().sha256),
    ))
    .unwrap();
    let tmp = dir.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let fetched = receive_bundle(&real[..], &tmp, article, &pk, &limits).unwrap();
    assert_eq!(fetched.bundle.manifest().name(), article.name());
    drop(fetched);
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
}

/// A source that never ends, counting what was taken from it.
struct Endless {
    served: u64,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        buf.fill(b'z');
        self.served += buf.len() as u64;
        Ok(buf.len())
    }
}

#[test]
fn endless_data_is_cut_off_at_the_declared_size_plus_one() {
    let dir = TempDir::new().unwrap();
    let expected = qasid::index::ObjectRef {
        sha256: ContentId::of_bytes(b"whatever"),
        size: 1_000_000,
    };
    let mut source = Endless { served: 0 };
    let err = receive_file(&mut source, dir.path(), expected).unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit: 1_000_000 }),
        "{err:?}"
    );
    assert_eq!(source.served, 1_000_001, "read exactly size + 1 bytes");
    assert!(err.to_string().contains("endless"), "{err}");
}

#[test]
fn index_pieces_and_entries_round_trip_through_a_stateful_client() {
    let (dir, root) = two_publishes();
    let state = dir.path().join("state");
    let k = key();
    let (outcome, t1) = client_update(&state, &root, &k, t0()).unwrap();
    assert_eq!(outcome, Outcome::Updated { from: None, to: 2 });
    assert!(t1.pieces >= 1);
    // Same head again: nothing but the head is read.
    let (outcome, t2) = client_update(&state, &root, &k, t0()).unwrap();
    assert_eq!(outcome, Outcome::Unchanged);
    assert_eq!(t2.pieces, 0);
    let tracker = Tracker::open(&state, k.public(), IndexLimits::default()).unwrap();
    let held = tracker.held().unwrap();
    assert!(matches!(held.entries()[0], Entry::Add(_)));
    // The state is re-verified on load: a tampered stored head makes it unusable, loudly.
    let head_file = state.join("index").join(k.public().hex()).join("head.json");
    let mut bytes = fs::read(&head_file).unwrap();
    let at = bytes.len() - 20;
    bytes[at] ^= 1;
    fs::write(&head_file, bytes).unwrap();
    let err = Tracker::open(&state, k.public(), IndexLimits::default()).unwrap_err();
    assert!(matches!(err, IndexError::StateCorrupt { .. }), "{err:?}");
    let err = LazyTracker::open(&state, k.public(), IndexLimits::default()).unwrap_err();
    assert!(matches!(err, IndexError::StateCorrupt { .. }), "{err:?}");
}

/// Flips one byte in every file of `dir` (sizes stay, hashes no longer match).
fn damage_every_file(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] ^= 1;
        fs::write(&path, bytes).unwrap();
    }
}

#[test]
fn a_lazy_tracker_judges_heads_without_reading_its_pieces_and_never_forgets_the_held_head() {
    let dir = TempDir::new().unwrap();
    let (root, fork, state) = (
        dir.path().join("repo"),
        dir.path().join("fork"),
        dir.path().join("state"),
    );
    let k = key();
    let minute = Duration::from_secs(60);
    let a = make_bundle(dir.path(), &k, "alpha", 1);
    publish(&root, &k, &[a.path()], t0()).unwrap();
    let first = fs::read(index_path(&root, &k)).unwrap();
    copy_tree(&root, &fork);
    let b = make_bundle(dir.path(), &k, "beta", 1);
    publish(&root, &k, &[b.path()], t0() + minute).unwrap();
    let second = fs::read(index_path(&root, &k)).unwrap();
    client_update(&state, &root, &k, t0()).unwrap();
    let c = make_bundle(dir.path(), &k, "gamma", 1);
    publish(&root, &k, &[c.path()], t0() + 2 * minute).unwrap();
    let third = fs::read(index_path(&root, &k)).unwrap();
    publish(&fork, &k, &[c.path()], t0() + minute).unwrap();
    let forked_second = fs::read(index_path(&fork, &k)).unwrap();

    // Damaged pieces: the eager tracker cannot open; the lazy one opens on the signed head.
    let pieces = state.join("index").join(k.public().hex()).join("pieces");
    let saved = dir.path().join("saved-pieces");
    copy_tree(&pieces, &saved);
    damage_every_file(&pieces);
    let err = Tracker::open(&state, k.public(), IndexLimits::default()).unwrap_err();
    assert!(matches!(err, IndexError::StateCorrupt { .. }), "{err:?}");
    let mut lazy = LazyTracker::open(&state, k.public(), IndexLimits::default()).unwrap();
    assert_eq!(lazy.held_head().unwrap().envelope(), second);

    // Heads that need no entries are judged by the same rules, without reading a piece.
    assert!(matches!(lazy.offer(&second, t0()), Ok(Offer::Unchanged)));
    let err = lazy.offer(&first, t0()).unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::Rollback {
                held: 2,
                offered: 1
            }
        ),
        "{err:?}"
    );
    let err = lazy.offer(&forked_second, t0()).unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::Equivocation {
                conflict: Conflict::SameSequence { sequence: 2 },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        evidence_files(&err),
        ["README.txt", "held.json", "new.json"]
    );

    // A newer head needs the entries: the damage is reported, every time, and the held head
    // stays (a failed load must never look like "nothing held").
    for _ in 0..2 {
        let err = lazy.offer(&third, t0()).unwrap_err();
        assert!(matches!(err, IndexError::StateCorrupt { .. }), "{err:?}");
        assert_eq!(lazy.held_head().unwrap().envelope(), second);
        let err = lazy.offer(&first, t0()).unwrap_err();
        assert!(matches!(err, IndexError::Rollback { .. }), "{err:?}");
    }

    // Repaired, the entries load and the update goes through as with an eager tracker.
    fs::remove_dir_all(&pieces).unwrap();
    copy_tree(&saved, &pieces);
    let (outcome, _) = update_from_dir(lazy.loaded().unwrap(), &root, t0()).unwrap();
    assert_eq!(
        outcome,
        Outcome::Updated {
            from: Some(2),
            to: 3
        }
    );
    assert_eq!(lazy.held_head().unwrap().envelope(), third);
}

#[test]
fn a_head_signed_with_another_key_for_our_layout_is_refused() {
    let (_dir, root) = two_publishes();
    // The other key re-signs our head bytes: the signature check with our key fails.
    let env = envelope_json(&root);
    let head = B64.decode(env["head"].as_str().unwrap()).unwrap();
    let other = SecretKey::from_seed(&[0x99; 32]);
    let sig = other.sign(qasid::keys::Domain::IndexHead, &head);
    let mut forged = env.clone();
    forged["signature"] = B64.encode(sig).into();
    write_envelope(&root, &forged);
    let err = verify_fresh(&root, &key(), t0()).unwrap_err();
    assert!(matches!(err, IndexError::BadSignature(_)), "{err:?}");
}
