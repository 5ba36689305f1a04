//! Sync between real mirrors on loopback: propagation from a static host and from a qasid
//! mirror, conditional requests when nothing changed (and no index entries read then), a mesh
//! with a cycle where one mirror cannot reach the origin, the publisher's signed mirror list,
//! and `keep = "current"` pruning.

use crate::sync_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use qasid::config::Keep;
use qasid::index::IndexError;
use qasid::keys::SecretKey;
use qasid::limits::IndexLimits;
use qasid::mirror::{Metrics, RouteClass};
use qasid::store::{ObjectKind, PublisherId, Store};
use qasid::sync::{RoundReport, SyncError, Syncer};
use sync_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn propagates_from_a_static_host_and_then_from_a_qasid_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(1);
    let a = make_bundle(dir.path(), &key, "alpha", 1, 20_000);
    let b = make_bundle(dir.path(), &key, "beta", 1, 3_000);
    let repo = dir.path().join("repo");
    publish(&repo, &key, &[&a]);
    publish(&repo, &key, &[&b]);
    let host = StaticServer::start(&repo, StaticOptions::default()).await;

    let first = Node::start(&dir.path().join("first"), &[&key], Keep::All).await;
    let report = first.sync_once(&[&host.url]).await;
    assert_eq!(report.failure(), None, "{report:#?}");
    assert_eq!(first.sequence(&key), Some(2));
    assert!(first.has_bundle(&key, &a.sha256) && first.has_bundle(&key, &b.sha256));
    let pid = PublisherId::of(key.public());
    assert!(first.store.contains(&pid, &ObjectKind::Minisig(a.sha256)));
    let bytes = report.bytes();
    assert_eq!(bytes.bundles, a.size + b.size);
    assert!(bytes.head > 0 && bytes.pieces > 0 && bytes.minisigs > 0);
    assert_store_consistent(&first.dir, &key);

    // A second mirror pulls from the first one over HTTP.
    let second = Node::start(&dir.path().join("second"), &[&key], Keep::All).await;
    let report = second.sync_once(&[&first.url]).await;
    assert_eq!(report.failure(), None, "{report:#?}");
    assert_eq!(second.sequence(&key), Some(2));
    assert_store_consistent(&second.dir, &key);
    for rel in files_under(&publisher_dir(&first.dir, &key)) {
        let ours = std::fs::read(publisher_dir(&second.dir, &key).join(&rel)).unwrap();
        let theirs = std::fs::read(publisher_dir(&first.dir, &key).join(&rel)).unwrap();
        assert_eq!(ours, theirs, "{} differs", rel.display());
    }
    assert!(
        metric(
            &second.metrics,
            &format!(
                "qasid_sync_upstream_state{{upstream=\"{}\",state=\"idle\"}}",
                first.url
            )
        ) == 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_new_costs_one_conditional_request_per_publisher_and_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (key(1), key(2));
    let repo = dir.path().join("repo");
    let a = make_bundle(dir.path(), &one, "alpha", 1, 1_000);
    let b = make_bundle(dir.path(), &two, "beta", 1, 1_000);
    publish(&repo, &one, &[&a]);
    publish(&repo, &two, &[&b]);
    let host = StaticServer::start(&repo, StaticOptions::default()).await;
    let origin = Node::start(&dir.path().join("origin"), &[&one, &two], Keep::All).await;
    push_repo(&origin.url, &repo, &one).await;
    push_repo(&origin.url, &repo, &two).await;

    let node = Node::start(&dir.path().join("node"), &[&one, &two], Keep::All).await;
    let syncer = node.syncer(&[&host.url, &origin.url], fast_options()).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let first = syncer.run_once(&cancel).await;
    assert_eq!(first.failure(), None, "{first:#?}");
    host.clear_hits();
    let origin_304_before = origin.metrics.requests(RouteClass::Index, 304);
    let origin_all_before = total_requests(&origin);

    let again = syncer.run_once(&cancel).await;
    assert_eq!(again.failure(), None, "{again:#?}");
    let hits = host.hits();
    assert_eq!(hits.len(), 2, "one request per publisher: {hits:#?}");
    assert!(hits
        .iter()
        .all(|h| h.status == 304 && h.if_none_match.is_some()));
    assert_eq!(
        origin.metrics.requests(RouteClass::Index, 304) - origin_304_before,
        2
    );
    assert_eq!(total_requests(&origin) - origin_all_before, 2);
    assert_eq!(again.bytes().total(), 0);
    for u in &again.upstreams {
        assert_eq!((u.requests, u.not_modified), (2, 2), "{u:#?}");
    }

    // The entity tags survive a restart (state.json), so cron runs are conditional too.
    drop(syncer);
    host.clear_hits();
    let report = node.sync_once(&[&host.url]).await;
    assert_eq!(report.failure(), None);
    assert!(
        host.hits().iter().all(|h| h.status == 304),
        "{:#?}",
        host.hits()
    );
}

/// One round as `qasid sync --once` runs it: a freshly opened store and syncer.
async fn cron_round(store: &Path, key: &SecretKey, upstream_url: &str) -> RoundReport {
    let store = Arc::new(Store::open(store, Keep::All, IndexLimits::default()).unwrap());
    let syncer = Syncer::new(
        store,
        &[key.public().clone()],
        &[upstream(upstream_url)],
        fast_options(),
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap();
    tokio::time::timeout(WAIT, syncer.run_once(&Default::default()))
        .await
        .expect("a round ends in time")
}

/// Flips one byte in every file of `dir` (sizes stay, hashes no longer match).
fn damage_every_file(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        n += 1;
    }
    n
}

/// Regression (a cron `sync --once` of a 10,000-entry index spent 100 ms verifying every entry
/// three times before a request answered 304): with nothing new, only the signed heads are
/// read. Damaged pieces in the sync's and the store's state prove it: they go unnoticed until
/// a new head needs the held entries, and are then reported, with nothing installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_new_reads_only_the_signed_heads_and_damage_surfaces_when_entries_are_needed() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(1);
    let repo = dir.path().join("repo");
    let a = make_bundle(dir.path(), &key, "alpha", 1, 1_000);
    publish(&repo, &key, &[&a]);
    let host = StaticServer::start(&repo, StaticOptions::default()).await;
    let store = dir.path().join("store");
    let first = cron_round(&store, &key, &host.url).await;
    assert_eq!(first.failure(), None, "{first:#?}");

    let hex = key.public().hex();
    let state = store.join(".state");
    let held_pieces = [
        state.join("sync").join("index").join(&hex).join("pieces"),
        state.join("index").join(&hex).join("pieces"),
    ];
    for pieces in &held_pieces {
        assert!(
            damage_every_file(pieces) > 0,
            "{} holds pieces",
            pieces.display()
        );
    }

    host.clear_hits();
    let unchanged = cron_round(&store, &key, &host.url).await;
    assert_eq!(unchanged.failure(), None, "{unchanged:#?}");
    let p = &unchanged.publishers[0];
    assert_eq!((p.installed, p.newest), (Some(1), Some(1)));
    let hits = host.hits();
    assert!(
        hits.len() == 1 && hits[0].status == 304,
        "one conditional request: {hits:#?}"
    );

    let b = make_bundle(dir.path(), &key, "beta", 1, 1_000);
    publish(&repo, &key, &[&b]);
    let news = cron_round(&store, &key, &host.url).await;
    let errors = &news.publishers[0].errors;
    assert!(
        errors.iter().any(|e| matches!(
            e,
            SyncError::Tracker(inner) if matches!(**inner, IndexError::StateCorrupt { .. })
        )),
        "the damaged state is reported once entries are needed: {news:#?}"
    );
    assert_eq!(news.publishers[0].installed, Some(1));
    let served = Store::open(&store, Keep::All, IndexLimits::default()).unwrap();
    let installed = served.installed_head(key.public()).unwrap().unwrap();
    assert_eq!(installed.head().sequence(), 1);
}

fn total_requests(node: &Node) -> u64 {
    let text = node.metrics.render(Default::default());
    text.lines()
        .filter(|l| l.starts_with("qasid_http_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mesh_with_a_cycle_converges_through_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(3);
    let repo = dir.path().join("repo");
    let a_node = Node::start(&dir.path().join("a"), &[&key], Keep::All).await;
    let b_node = Node::start(&dir.path().join("b"), &[&key], Keep::All).await;
    let c_node = Node::start(&dir.path().join("c"), &[&key], Keep::All).await;
    // A <-> B <-> C, and C <-> A is cut: C's route to A is dead (blocked), A still lists C.
    let blocked_a = dead_url();
    a_node
        .start_sync(&[&b_node.url, &c_node.url], fast_options())
        .await;
    b_node
        .start_sync(&[&a_node.url, &c_node.url], fast_options())
        .await;
    c_node
        .start_sync(&[&b_node.url, &blocked_a], fast_options())
        .await;

    let first = make_bundle(dir.path(), &key, "first", 1, 5_000);
    publish(&repo, &key, &[&first]);
    push_repo(&a_node.url, &repo, &key).await;
    let took = wait_until(WAIT, "C to get what was pushed to A", || {
        c_node.sequence(&key) == Some(1)
    })
    .await;
    assert!(c_node.has_bundle(&key, &first.sha256));
    eprintln!("A -> B -> C in {took:?}");

    // And the other way: pushed to C, it reaches A through B.
    let second = make_bundle(dir.path(), &key, "second", 1, 5_000);
    publish(&repo, &key, &[&second]);
    push_repo(&c_node.url, &repo, &key).await;
    wait_until(WAIT, "all three to converge", || {
        [&a_node, &b_node, &c_node]
            .iter()
            .all(|n| n.sequence(&key) == Some(2))
    })
    .await;
    for n in [&a_node, &b_node, &c_node] {
        assert!(n.has_bundle(&key, &second.sha256));
        assert_store_consistent(&n.dir, &key);
        // Peers never sent anything that failed verification (lagging peers aside).
        for reason in ["hash_mismatch", "size_mismatch", "bad_signature", "bundle"] {
            let line = format!("qasid_verification_failures_total{{reason=\"{reason}\"}}");
            assert_eq!(metric(&n.metrics, &line), 0, "{reason}");
        }
    }
    // C's blocked route to A is reported, never fatal.
    assert!(
        metric(
            &c_node.metrics,
            &format!(
                "qasid_sync_upstream_failures_total{{upstream=\"{blocked_a}\",reason=\"connect\"}}"
            )
        ) >= 1
    );
    for n in [a_node, b_node, c_node] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_publishers_signed_mirror_list_adds_upstreams_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(4);
    let repo = dir.path().join("repo");
    let old = make_bundle(dir.path(), &key, "old", 1, 1_000);
    publish(&repo, &key, &[&old]);
    // The second mirror is only known from the publisher's signed list.
    let listed = Node::start(&dir.path().join("listed"), &[&key], Keep::All).await;
    let repo_with_list = qasid::repo::Repo::new(
        &repo,
        key.public(),
        qasid::limits::IndexLimits::default(),
        qasid::limits::BundleLimits::default(),
    );
    let new = make_bundle(dir.path(), &key, "new", 1, 1_000);
    let mirror = qasid::index::MirrorUrl::parse(&listed.url, &Default::default()).unwrap();
    repo_with_list
        .publish(
            &key,
            &qasid::repo::PublishRequest {
                bundles: vec![new.path.clone()],
                retract: Vec::new(),
                refresh: false,
                mirrors: Some(vec![mirror]),
                expires_in: 7 * DAY,
                now: std::time::SystemTime::now(),
            },
        )
        .unwrap();
    let frozen = dir.path().join("frozen");
    copy_tree(&repo, &frozen);
    // The configured upstream serves sequence 2 (with the list) but then freezes there, while
    // the listed mirror gets sequence 3.
    let host = StaticServer::start(&frozen, StaticOptions::default()).await;
    let newest = make_bundle(dir.path(), &key, "newest", 1, 1_000);
    publish(&repo, &key, &[&newest]);
    push_repo(&listed.url, &repo, &key).await;

    let node = Node::start(&dir.path().join("node"), &[&key], Keep::All).await;
    let report = node.sync_once(&[&host.url]).await;
    assert_eq!(node.sequence(&key), Some(2), "{report:#?}");
    let mut options = fast_options();
    options.use_index_mirrors = true;
    let syncer = node.syncer(&[&host.url], options).await;
    let report = syncer
        .run_once(&tokio_util::sync::CancellationToken::new())
        .await;
    assert_eq!(node.sequence(&key), Some(3), "{report:#?}");
    assert!(node.has_bundle(&key, &newest.sha256));
    assert!(report.upstreams.iter().any(|u| u.url == listed.url));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_current_prunes_unlisted_bundles_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(5);
    let repo = dir.path().join("repo");
    let a1 = make_bundle(dir.path(), &key, "alpha", 1, 2_000);
    let b1 = make_bundle(dir.path(), &key, "beta", 1, 2_000);
    publish(&repo, &key, &[&a1, &b1]);
    let host = StaticServer::start(&repo, StaticOptions::default()).await;
    let current = Node::start(&dir.path().join("current"), &[&key], Keep::Current).await;
    let archive = Node::start(&dir.path().join("archive"), &[&key], Keep::All).await;
    let mut options = fast_options();
    options.prune_grace = Duration::from_secs(1);
    let pruning = current.syncer(&[&host.url], options).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    assert_eq!(pruning.run_once(&cancel).await.failure(), None);
    assert_eq!(archive.sync_once(&[&host.url]).await.failure(), None);

    // alpha v2 supersedes v1; beta is retracted.
    let a2 = make_bundle(dir.path(), &key, "alpha", 2, 2_000);
    publish(&repo, &key, &[&a2]);
    retract(&repo, &key, "beta");
    let report = pruning.run_once(&cancel).await;
    assert_eq!(report.failure(), None, "{report:#?}");
    assert_eq!(current.sequence(&key), Some(3));
    // Within the grace period nothing goes.
    assert!(current.has_bundle(&key, &a1.sha256) && current.has_bundle(&key, &b1.sha256));
    let pid = PublisherId::of(key.public());
    let before = current.store.counts();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while current.has_bundle(&key, &a1.sha256) {
        assert!(std::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pruning.run_once(&cancel).await.failure(), None);
    }
    assert!(!current.has_bundle(&key, &b1.sha256));
    assert!(!current
        .store
        .contains(&pid, &ObjectKind::Minisig(a1.sha256)));
    assert!(
        current.has_bundle(&key, &a2.sha256),
        "the current version stays"
    );
    let after = current.store.counts();
    assert_eq!(before.bundles - after.bundles, 2);
    // What is served stays consistent: everything current is there.
    let index = current.store.index(key.public()).unwrap().unwrap();
    for (_, article) in index.current() {
        assert!(current.has_bundle(&key, &article.bundle().sha256));
    }
    // The archive keeps everything.
    assert_eq!(archive.sync_once(&[&host.url]).await.failure(), None);
    for b in [&a1, &b1, &a2] {
        assert!(archive.has_bundle(&key, &b.sha256));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn syncs_from_a_folder_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(6);
    let usb = dir.path().join("usb stick");
    let story = make_bundle(dir.path(), &key, "story", 1, 1_500_000);
    publish(&usb, &key, &[&story]);
    let url = reqwest::Url::from_directory_path(&usb).unwrap();
    let node = Node::start(&dir.path().join("node"), &[&key], Keep::All).await;
    let report = node.sync_once(&[url.as_str()]).await;
    assert_eq!(report.failure(), None, "{report:#?}");
    assert_eq!(node.sequence(&key), Some(1));
    assert!(node.has_bundle(&key, &story.sha256));
    assert_store_consistent(&node.dir, &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bundle_lost_from_the_store_is_fetched_again_with_the_next_index() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(8);
    let repo = dir.path().join("repo");
    let first = make_bundle(dir.path(), &key, "first", 1, 2_000);
    publish(&repo, &key, &[&first]);
    let host = StaticServer::start(&repo, StaticOptions::default()).await;
    let node = Node::start(&dir.path().join("node"), &[&key], Keep::All).await;
    assert_eq!(node.sync_once(&[&host.url]).await.failure(), None);
    // Lost by hand (or a disk problem): rounds only look at what is new, so the store's own
    // check when installing the next index is what notices.
    std::fs::remove_file(bundle_path(&node.dir, &key, &first.sha256)).unwrap();
    let second = make_bundle(dir.path(), &key, "second", 1, 2_000);
    publish(&repo, &key, &[&second]);
    let report = node.sync_once(&[&host.url]).await;
    assert_eq!(report.failure(), None, "{report:#?}");
    assert_eq!(node.sequence(&key), Some(2));
    assert!(node.has_bundle(&key, &first.sha256) && node.has_bundle(&key, &second.sha256));
    assert_store_consistent(&node.dir, &key);
}
