//! The scaling properties: O(log n) pieces, and a client that is up to date downloads only the
//! head and the newest batch piece.

use crate::repo_support;

use std::time::Duration;

use qasid::index::Outcome;
use repo_support::*;
use tempfile::TempDir;

#[test]
fn a_hundred_publishes_keep_pieces_logarithmic_and_clients_fetch_only_head_and_batch() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let state = dir.path().join("state");
    let k = key();
    let mut max_pieces = 0;
    for i in 0..100u64 {
        let now = t0() + Duration::from_secs(i);
        // Mostly single bundles, sometimes a batch of three, like a newsroom's day.
        let n = if i % 10 == 9 { 3 } else { 1 };
        let bundles: Vec<_> = (0..n)
            .map(|j| make_bundle(dir.path(), &k, &format!("story-{i}-{j}"), 1))
            .collect();
        let paths: Vec<_> = bundles.iter().map(|b| b.path()).collect();
        let report = publish(&root, &k, &paths, now).unwrap();
        let signed = report.signed.unwrap();
        let log = signed.head().log();
        max_pieces = max_pieces.max(log.pieces().len());
        // log2(entries) + 1 at most, whatever the batch sizes.
        let bound = 64 - log.entries().leading_zeros() as usize;
        assert!(
            log.pieces().len() <= bound,
            "{} pieces for {} entries",
            log.pieces().len(),
            log.entries()
        );

        let (outcome, transfer) = client_update(&state, &root, &k, now).unwrap();
        assert_eq!(
            outcome,
            Outcome::Updated {
                from: i.checked_sub(1).map(|s| s + 1),
                to: i + 1
            }
        );
        if i > 0 {
            // Up to date before this publish: the head plus exactly the batch piece.
            assert_eq!(transfer.pieces, 1, "publish {i}");
            assert_eq!(transfer.piece_bytes, log.batch().size, "publish {i}");
            assert_eq!(
                transfer.head_bytes,
                std::fs::metadata(index_path(&root, &k)).unwrap().len()
            );
        }
    }
    let index = verify_fresh(&root, &k, t0() + Duration::from_secs(100)).unwrap();
    assert_eq!(index.entries().len(), 120);
    assert_eq!(index.current().len(), 120);
    assert!(max_pieces <= 7, "{max_pieces}");
}

#[test]
fn a_client_that_missed_publishes_catches_up_to_the_same_log() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let state = dir.path().join("state");
    let k = key();
    for i in 0..12u64 {
        let b = make_bundle(dir.path(), &k, &format!("s{i}"), 1);
        publish(&root, &k, &[b.path()], t0()).unwrap();
        if i == 2 {
            client_update(&state, &root, &k, t0()).unwrap();
        }
    }
    let (outcome, transfer) = client_update(&state, &root, &k, t0()).unwrap();
    assert_eq!(
        outcome,
        Outcome::Updated {
            from: Some(3),
            to: 12
        }
    );
    let fresh = verify_fresh(&root, &k, t0()).unwrap();
    let pieces_bytes: u64 = fresh.head().log().pieces().iter().map(|p| p.size).sum();
    assert!(
        transfer.piece_bytes <= pieces_bytes,
        "never more than a fresh client"
    );
    let tracker =
        qasid::index::Tracker::open(&state, k.public(), qasid::limits::IndexLimits::default())
            .unwrap();
    assert_eq!(tracker.held().unwrap().entries(), fresh.entries());
}
