//! Resuming downloads: a connection cut half way continues with `Range`, a restart finds the
//! partial file (named after the expected sha256) and continues, a host without ranges starts
//! over, a corrupt partial is thrown away, and a censor that resets every connection after
//! 16 KiB still lets small and large bundles through. The final checks are always the same.

use crate::sync_support;

use qasid::config::Keep;
use qasid::limits::CHUNK_SIZE;
use qasid::sync::{partial_path, RESUMABLE_FROM};
use sync_support::*;

const BIG: usize = 3 << 20;

struct Big {
    dir: tempfile::TempDir,
    key: qasid::keys::SecretKey,
    repo: std::path::PathBuf,
    bundle: Made,
}

fn big() -> Big {
    let dir = tempfile::tempdir().unwrap();
    let key = key(21);
    let repo = dir.path().join("repo");
    let bundle = make_bundle(dir.path(), &key, "photo-essay", 1, BIG);
    assert!(bundle.size > RESUMABLE_FROM);
    publish(&repo, &key, &[&bundle]);
    // A host without the chunk list: these tests are about the whole-file download (the
    // segmented one, for hosts that have lists, is tested in sync_segmented).
    std::fs::remove_dir_all(publisher_dir(&repo, &key).join("chunks")).unwrap();
    Big {
        dir,
        key,
        repo,
        bundle,
    }
}

impl Big {
    fn url_path(&self) -> String {
        format!(
            "/{}",
            qasid::index::layout::PublisherLayout::new(self.key.public())
                .bundle(&self.bundle.sha256)
        )
    }

    /// Leaves the first `n` bytes (or `garbage`) where a killed sync would have left them.
    fn leave_partial(&self, node: &Node, n: usize, garbage: bool) {
        let mut bytes = std::fs::read(&self.bundle.path).unwrap()[..n].to_vec();
        if garbage {
            bytes.iter_mut().for_each(|b| *b = !*b);
        }
        std::fs::write(partial_path(&node.store, &self.bundle.sha256), bytes).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_cut_half_way_resumes_with_a_range_request() {
    let b = big();
    let host = StaticServer::start(&b.repo, StaticOptions::default()).await;
    let half = b.bundle.size / 2;
    host.cut_once(&b.url_path(), half);
    let node = Node::start(&b.dir.path().join("node"), &[&b.key], Keep::All).await;
    let report = node.sync_once(&[&host.url]).await;
    assert_eq!(node.sequence(&b.key), Some(1), "{report:#?}");
    assert!(node.has_bundle(&b.key, &b.bundle.sha256));
    assert_store_consistent(&node.dir, &b.key);
    // The cut was resumed at once (so it is no failure of the upstream's), and the rest came
    // with one range request.
    let upstream = &report.upstreams[0];
    assert!(upstream.errors.is_empty(), "{report:#?}");
    let hits: Vec<Hit> = host
        .hits()
        .into_iter()
        .filter(|h| h.path == b.url_path())
        .collect();
    assert_eq!(hits.len(), 2, "{hits:#?}");
    assert_eq!((hits[0].status, hits[0].sent), (200, half));
    assert_eq!(hits[1].status, 206);
    assert_eq!(
        hits[1].range.as_deref(),
        Some(format!("bytes={half}-").as_str())
    );
    assert_eq!(
        hits[0].sent + hits[1].sent,
        b.bundle.size,
        "nothing fetched twice"
    );
    assert_eq!(upstream.bytes.bundles, b.bundle.size);
    assert!(!partial_path(&node.store, &b.bundle.sha256).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_continues_the_partial_file() {
    let b = big();
    let host = StaticServer::start(&b.repo, StaticOptions::default()).await;
    let node = Node::start(&b.dir.path().join("node"), &[&b.key], Keep::All).await;
    let have = 1_234_567;
    b.leave_partial(&node, have, false);
    let report = node.sync_once(&[&host.url]).await;
    assert_eq!(report.failure(), None, "{report:#?}");
    assert!(node.has_bundle(&b.key, &b.bundle.sha256));
    let hits: Vec<Hit> = host
        .hits()
        .into_iter()
        .filter(|h| h.path == b.url_path())
        .collect();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        hits[0].range.as_deref(),
        Some(format!("bytes={have}-").as_str())
    );
    assert_eq!(hits[0].status, 206);
    assert_eq!(hits[0].sent, b.bundle.size - have as u64);

    // The same against a qasid mirror as the upstream. It serves the chunk list (computed
    // from the bundle), so the download is segmented: the partial file's complete chunks are
    // kept (re-hashed), the rest is fetched.
    let origin = Node::start(&b.dir.path().join("origin"), &[&b.key], Keep::All).await;
    push_repo(&origin.url, &b.repo, &b.key).await;
    let other = Node::start(&b.dir.path().join("other"), &[&b.key], Keep::All).await;
    b.leave_partial(&other, 2_000_000, false);
    let report = other.sync_once(&[&origin.url]).await;
    assert_eq!(report.failure(), None, "{report:#?}");
    let kept = 2_000_000 / CHUNK_SIZE * CHUNK_SIZE;
    assert_eq!(report.bytes().bundles, b.bundle.size - kept);
    assert_store_consistent(&other.dir, &b.key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_without_ranges_starts_over() {
    let b = big();
    let options = StaticOptions {
        ranges: false,
        ..StaticOptions::default()
    };
    let host = StaticServer::start(&b.repo, options).await;
    let node = Node::start(&b.dir.path().join("node"), &[&b.key], Keep::All).await;
    b.leave_partial(&node, 1_000_000, false);
    let report = node.sync_once(&[&host.url]).await;
    assert_eq!(report.failure(), None, "{report:#?}");
    assert!(node.has_bundle(&b.key, &b.bundle.sha256));
    let hit = host
        .hits()
        .into_iter()
        .find(|h| h.path == b.url_path())
        .unwrap();
    assert_eq!((hit.status, hit.sent), (200, b.bundle.size));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_partial_is_thrown_away_and_fetched_again() {
    let b = big();
    let host = StaticServer::start(&b.repo, StaticOptions::default()).await;
    let node = Node::start(&b.dir.path().join("node"), &[&b.key], Keep::All).await;
    b.leave_partial(&node, 1_500_000, true);
    let report = node.sync_once(&[&host.url]).await;
    assert_eq!(
        report.upstreams[0]
            .errors
            .iter()
            .map(|e| e.reason())
            .collect::<Vec<_>>(),
        ["hash_mismatch"]
    );
    assert!(!node.has_bundle(&b.key, &b.bundle.sha256));
    assert!(!partial_path(&node.store, &b.bundle.sha256).exists());
    let report = node.sync_once(&[&host.url]).await;
    assert_eq!(report.failure(), None, "{report:#?}");
    assert_store_consistent(&node.dir, &b.key);
}

/// A censor resets every connection once it carried 16 KiB (the firewall simulation's "cut"
/// scenario). A small bundle, received in memory at first, continues through its partial file,
/// and so does a large one: each attempt adds 16 KiB, none is fetched twice after the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_censor_cutting_every_connection_after_16_kib_still_lets_bundles_through() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(22);
    let repo = dir.path().join("repo");
    let small = make_bundle(dir.path(), &key, "small-story", 1, 200_000);
    assert!(small.size < RESUMABLE_FROM);
    let large = make_bundle(dir.path(), &key, "large-story", 1, 1_300_000);
    assert!(large.size > RESUMABLE_FROM);
    publish(&repo, &key, &[&small, &large]);
    // A host without chunk lists: the whole-file download is what this test is about.
    std::fs::remove_dir_all(publisher_dir(&repo, &key).join("chunks")).unwrap();
    const CUT: u64 = 16 << 10;
    let options = StaticOptions {
        cut_every: Some(CUT),
        ..StaticOptions::default()
    };
    let host = StaticServer::start(&repo, options).await;
    let node = Node::start(&dir.path().join("node"), &[&key], Keep::All).await;
    let report = node.sync_once(&[&host.url]).await;
    assert_eq!(report.failure(), None, "{report:#?}");
    assert_eq!(node.sequence(&key), Some(1), "{report:#?}");
    for made in [&small, &large] {
        assert!(node.has_bundle(&key, &made.sha256));
        assert!(!partial_path(&node.store, &made.sha256).exists());
    }
    assert_store_consistent(&node.dir, &key);
    let layout = qasid::index::layout::PublisherLayout::new(key.public());
    let sent = |made: &Made| -> u64 {
        host.hits()
            .iter()
            .filter(|h| h.path == format!("/{}", layout.bundle(&made.sha256)))
            .map(|h| h.sent)
            .sum()
    };
    // The small bundle's first answer (in memory) is lost; after that, no byte comes twice.
    assert_eq!(sent(&small), small.size + CUT);
    assert_eq!(sent(&large), large.size);
}
