//! Lying upstreams: every kind of lie is refused with its reason, counted on the metrics, backs
//! the liar off, never reaches the store, and never stops the sync from a good upstream.

use crate::sync_support;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use qasid::config::Keep;
use qasid::index::FetchError;
use qasid::keys::SecretKey;
use qasid::sync::{RoundReport, SyncError};
use qasid::ErrorClass;
use sync_support::*;

/// A publisher repo with two publishes (alpha, then beta), served honestly.
struct World {
    dir: tempfile::TempDir,
    key: SecretKey,
    repo: PathBuf,
    alpha: Made,
    beta: Made,
    good: StaticServer,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let key = key(7);
    let repo = dir.path().join("repo");
    let alpha = make_bundle(dir.path(), &key, "alpha", 1, 4_000);
    let beta = make_bundle(dir.path(), &key, "beta", 1, 4_000);
    publish(&repo, &key, &[&alpha]);
    publish(&repo, &key, &[&beta]);
    let good = StaticServer::start(&repo, StaticOptions::default()).await;
    World {
        dir,
        key,
        repo,
        alpha,
        beta,
        good,
    }
}

impl World {
    /// A copy of the honest repo, altered by `lie`, served by its own static host.
    async fn liar(&self, name: &str, lie: impl FnOnce(&Path)) -> StaticServer {
        let copy = self.dir.path().join(name);
        copy_tree(&self.repo, &copy);
        lie(&copy);
        StaticServer::start(&copy, StaticOptions::default()).await
    }

    async fn node(&self, name: &str) -> Node {
        Node::start(&self.dir.path().join(name), &[&self.key], Keep::All).await
    }
}

/// The errors reported for `url`.
fn errors<'a>(report: &'a RoundReport, url: &str) -> Vec<&'a SyncError> {
    report
        .upstreams
        .iter()
        .filter(|u| u.url == url)
        .flat_map(|u| &u.errors)
        .collect()
}

/// The liar's failures carry `reason`, are counted, and the liar is backing off.
fn assert_refused(node: &Node, report: &RoundReport, liar: &str, reason: &str) {
    let errs = errors(report, liar);
    assert!(
        errs.iter()
            .any(|e| e.reason() == reason && e.class() == ErrorClass::Verification),
        "expected a {reason} refusal from {liar}: {report:#?}"
    );
    let counted = format!("qasid_verification_failures_total{{reason=\"{reason}\"}}");
    assert!(
        metric(&node.metrics, &counted) >= 1,
        "{counted} not counted"
    );
    let per_upstream =
        format!("qasid_sync_upstream_failures_total{{upstream=\"{liar}\",reason=\"{reason}\"}}");
    assert!(metric(&node.metrics, &per_upstream) >= 1, "{per_upstream}");
    let state = format!("qasid_sync_upstream_state{{upstream=\"{liar}\",state=\"backing_off\"}}");
    assert_eq!(
        metric(&node.metrics, &state),
        1,
        "{liar} is not backing off"
    );
}

/// Nothing half-received is left in the temp folder.
fn assert_no_temp_files(node: &Node) {
    let left = files_under(&node.dir.join(".tmp"));
    assert!(left.is_empty(), "temp files left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tampered_bundle_bytes_are_refused_and_fetched_from_another_upstream() {
    let w = world().await;
    let beta = w.beta.sha256;
    let liar = w
        .liar("tampered", |root| {
            let path = bundle_path(root, &w.key, &beta);
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x55;
            std::fs::write(path, bytes).unwrap();
        })
        .await;
    let node = w.node("node").await;
    let report = node.sync_once(&[&liar.url]).await;
    assert_refused(&node, &report, &liar.url, "hash_mismatch");
    assert_eq!(report.failure(), Some(ErrorClass::Verification));
    assert_eq!(
        node.sequence(&w.key),
        None,
        "an incomplete index is not served"
    );
    assert!(!node.has_bundle(&w.key, &beta));
    assert_no_temp_files(&node);

    // Failover goes through the same checks and completes from the honest host.
    let report = node.sync_once(&[&liar.url, &w.good.url]).await;
    assert_eq!(node.sequence(&w.key), Some(2), "{report:#?}");
    assert_store_consistent(&node.dir, &w.key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_sizes_are_refused_before_or_while_reading() {
    let w = world().await;
    let (alpha, beta) = (w.alpha.sha256, w.beta.sha256);
    let liar = w
        .liar("sizes", |root| {
            let longer = bundle_path(root, &w.key, &alpha);
            let mut bytes = std::fs::read(&longer).unwrap();
            bytes.extend_from_slice(&[0u8; 100]);
            std::fs::write(longer, bytes).unwrap();
            let shorter = bundle_path(root, &w.key, &beta);
            let bytes = std::fs::read(&shorter).unwrap();
            std::fs::write(shorter, &bytes[..bytes.len() - 100]).unwrap();
        })
        .await;
    let node = w.node("node").await;
    let report = node.sync_once(&[&liar.url]).await;
    assert_refused(&node, &report, &liar.url, "size_mismatch");
    let sizes: Vec<&FetchError> = errors(&report, &liar.url)
        .into_iter()
        .filter_map(|e| match e {
            SyncError::Object { source, .. } => Some(&**source),
            _ => None,
        })
        .collect();
    assert!(
        sizes
            .iter()
            .any(|e| matches!(e, FetchError::TooLarge { .. })),
        "{sizes:#?}"
    );
    assert!(
        sizes
            .iter()
            .any(|e| matches!(e, FetchError::Truncated { .. })),
        "{sizes:#?}"
    );
    assert_eq!(node.sequence(&w.key), None);
    assert!(!node.has_bundle(&w.key, &alpha) && !node.has_bundle(&w.key, &beta));
    assert_no_temp_files(&node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_index_is_refused() {
    let w = world().await;
    let old = w.dir.path().join("old");
    // A snapshot at sequence 1: what a replaying mirror serves.
    let repo1 = w.dir.path().join("repo1");
    publish(&repo1, &w.key, &[&w.alpha]);
    copy_tree(&repo1, &old);
    let liar = StaticServer::start(&old, StaticOptions::default()).await;
    let node = w.node("node").await;
    assert_eq!(node.sync_once(&[&w.good.url]).await.failure(), None);
    assert_eq!(node.sequence(&w.key), Some(2));
    let report = node.sync_once(&[&liar.url]).await;
    assert_refused(&node, &report, &liar.url, "older_index");
    assert!(matches!(
        errors(&report, &liar.url)[0],
        SyncError::OlderIndex {
            held: 2,
            offered: 1,
            ..
        }
    ));
    assert_eq!(node.sequence(&w.key), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_index_never_replaces_a_fresh_one() {
    let w = world().await;
    let node = w.node("node").await;
    assert_eq!(node.sync_once(&[&w.good.url]).await.failure(), None);
    // The publisher's key signs sequence 3, issued long ago and long expired: a freezing
    // mirror replays it to keep readers on old news.
    let stale_repo = w.dir.path().join("stale");
    copy_tree(&w.repo, &stale_repo);
    let gamma = make_bundle(w.dir.path(), &w.key, "gamma", 1, 1_000);
    let long_ago = SystemTime::now() - 30 * DAY;
    assert_eq!(publish_at(&stale_repo, &w.key, &[&gamma], long_ago, DAY), 3);
    let liar = StaticServer::start(&stale_repo, StaticOptions::default()).await;
    let report = node.sync_once(&[&liar.url]).await;
    assert_refused(&node, &report, &liar.url, "stale_index");
    assert_eq!(node.sequence(&w.key), Some(2));
    assert!(!node.has_bundle(&w.key, &gamma.sha256));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreign_or_tampered_index_is_refused() {
    let w = world().await;
    let other = key(99);
    let other_repo = w.dir.path().join("other-repo");
    let fake = make_bundle(w.dir.path(), &other, "alpha", 1, 1_000);
    publish(&other_repo, &other, &[&fake]);
    let foreign = w
        .liar("foreign", |root| {
            // Another key's index where this publisher's should be.
            std::fs::copy(index_path(&other_repo, &other), index_path(root, &w.key)).unwrap();
        })
        .await;
    let tampered = w
        .liar("forged", |root| {
            let path = index_path(root, &w.key);
            let text = std::fs::read_to_string(&path).unwrap();
            let i = text.find("\"signature\":\"").unwrap() + 14;
            let mut bytes = text.into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            std::fs::write(path, bytes).unwrap();
        })
        .await;
    let node = w.node("node").await;
    let report = node.sync_once(&[&foreign.url, &tampered.url]).await;
    assert_refused(&node, &report, &foreign.url, "wrong_publisher");
    assert_refused(&node, &report, &tampered.url, "bad_signature");
    assert_eq!(node.sequence(&w.key), None);
    // The honest host still works for the same node right after.
    assert_eq!(node.sync_once(&[&w.good.url]).await.failure(), None);
    assert_eq!(node.sequence(&w.key), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tampered_piece_is_refused() {
    let w = world().await;
    let liar = w
        .liar("piece", |root| {
            let pieces = publisher_dir(root, &w.key).join("pieces");
            for entry in std::fs::read_dir(pieces).unwrap() {
                let path = entry.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                std::fs::write(&path, text.replace("Story", "Stori")).unwrap();
            }
        })
        .await;
    let node = w.node("node").await;
    let report = node.sync_once(&[&liar.url]).await;
    assert_refused(&node, &report, &liar.url, "hash_mismatch");
    assert_eq!(node.sequence(&w.key), None);
    assert!(files_under(&publisher_dir(&node.dir, &w.key).join("pieces")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_index_listing_a_missing_bundle_is_not_installed_until_another_upstream_has_it() {
    let w = world().await;
    let beta = w.beta.sha256;
    let liar = w
        .liar("missing", |root| {
            std::fs::remove_file(bundle_path(root, &w.key, &beta)).unwrap();
        })
        .await;
    let node = w.node("node").await;
    let report = node.sync_once(&[&liar.url]).await;
    assert_refused(&node, &report, &liar.url, "missing_object");
    assert_eq!(report.failure(), Some(ErrorClass::Verification));
    assert_eq!(node.sequence(&w.key), None, "never served with a hole");
    assert_eq!(report.publishers[0].newest, Some(2));
    assert_eq!(report.publishers[0].missing, 1);
    // The index itself was verified and is kept; the next round asks the others for the bundle
    // even though the liar's index is unchanged (304).
    let report = node.sync_once(&[&liar.url, &w.good.url]).await;
    assert_eq!(node.sequence(&w.key), Some(2), "{report:#?}");
    assert!(node.has_bundle(&w.key, &beta));
    assert_store_consistent(&node.dir, &w.key);
}
