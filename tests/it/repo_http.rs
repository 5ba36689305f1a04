//! Round trip through a real static HTTP server (std::net, 127.0.0.1:0): the repo folder as it
//! is on disk is a working mirror; index, pieces and bundles are fetched with reqwest and
//! verified, and endless bodies are cut off at the signed size.

use crate::repo_support;

use std::time::{Duration, SystemTime};

use assert_cmd::Command;
use predicates::prelude::*;
use qasid::index::{
    fetch_bundle_http, http_client, update_from_http, BundleFetchError, FetchError, IndexError,
    MirrorUrl, Outcome, Tracker,
};
use qasid::limits::{BundleLimits, IndexLimits};
use repo_support::*;
use tempfile::TempDir;

thread_local! {
    /// One runtime per test thread: a reqwest client's pooled connections belong to the
    /// runtime they were made on.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
}

/// Runs `fut`, failing the test if it takes more than 30 seconds: every fetch must end by
/// itself.
fn run<F: std::future::Future>(fut: F) -> F::Output {
    RUNTIME.with(|rt| {
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), fut).await })
            .expect("the request must end by itself, not by the test's timeout")
    })
}

/// A repo with three articles published in two batches.
fn published_repo(dir: &TempDir) -> std::path::PathBuf {
    let root = dir.path().join("repo");
    let k = key();
    let a = make_bundle(dir.path(), &k, "alpha", 1);
    let b = make_bundle(dir.path(), &k, "beta", 1);
    let c = make_bundle(dir.path(), &k, "gamma", 1);
    let now = SystemTime::now();
    publish(&root, &k, &[a.path(), b.path()], now).unwrap();
    publish(&root, &k, &[c.path()], now).unwrap();
    root
}

#[test]
fn index_pieces_and_bundles_round_trip_over_http() {
    let dir = TempDir::new().unwrap();
    let root = published_repo(&dir);
    let server = StaticServer::start(&root, Special::None);
    let base = MirrorUrl::parse(&server.base, &IndexLimits::default()).unwrap();
    let k = key();
    let client = http_client();
    let mut tracker = Tracker::open(
        &dir.path().join("state"),
        k.public(),
        IndexLimits::default(),
    )
    .unwrap();
    let (outcome, transfer) = run(update_from_http(
        &mut tracker,
        &client,
        &base,
        SystemTime::now(),
    ))
    .unwrap();
    assert_eq!(outcome, Outcome::Updated { from: None, to: 2 });
    let index = tracker.held().unwrap();
    let pieces: u64 = index.head().log().pieces().iter().map(|p| p.size).sum();
    assert_eq!(transfer.piece_bytes, pieces);
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    for (_, article) in index.current() {
        let fetched = run(fetch_bundle_http(
            &client,
            &base,
            article,
            k.public(),
            &downloads,
            &BundleLimits::default(),
        ))
        .unwrap();
        assert_eq!(fetched.bundle.manifest().name(), article.name());
        assert_eq!(fetched.object.object(), article.bundle());
        fetched
            .object
            .persist(&downloads.join(format!("{}.zip", article.name())))
            .unwrap();
    }
    assert_eq!(std::fs::read_dir(&downloads).unwrap().count(), 3);
    // A second round trip: unchanged, only the head travels.
    let (outcome, transfer) = run(update_from_http(
        &mut tracker,
        &client,
        &base,
        SystemTime::now(),
    ))
    .unwrap();
    assert_eq!(outcome, Outcome::Unchanged);
    assert_eq!(transfer.pieces, 0);
    // The private folder is not part of the layout; this server, like the recommended
    // configurations, does not serve dot folders.
    let lock_url = format!("{}.qasid/lock", server.base);
    let status = run(async { client.get(lock_url).send().await })
        .unwrap()
        .status();
    assert_eq!(status, 404);
}

#[test]
fn index_show_reads_a_mirror_url() {
    let dir = TempDir::new().unwrap();
    let root = published_repo(&dir);
    let server = StaticServer::start(&root, Special::None);
    let pk = key().public().to_base64();
    Command::cargo_bin("qasid")
        .unwrap()
        .args([
            "index",
            "show",
            "--repo",
            &server.base,
            "--publisher",
            &pk,
            "--state",
        ])
        .arg(dir.path().join("state"))
        .timeout(Duration::from_secs(60))
        .assert()
        .success()
        .stdout(predicate::str::contains("sequence:  2"))
        .stdout(predicate::str::contains("gamma v1"));
    // A URL with nothing published there is a runtime error (exit 1), not a verification one.
    let missing = format!("{}nothing-here/", server.base);
    Command::cargo_bin("qasid")
        .unwrap()
        .args([
            "index",
            "show",
            "--repo",
            &missing,
            "--publisher",
            &pk,
            "--state",
        ])
        .arg(dir.path().join("state2"))
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("HTTP 404"));
}

#[test]
fn an_endless_piece_body_is_cut_off_at_its_signed_size() {
    let dir = TempDir::new().unwrap();
    let root = published_repo(&dir);
    let k = key();
    let index = verify_fresh(&root, &k, SystemTime::now()).unwrap();
    let piece = index.head().log().pieces()[0];
    let path = format!("/{}", layout(&k).piece(&piece.sha256));
    let server = StaticServer::start(&root, Special::Endless(path));
    let base = MirrorUrl::parse(&server.base, &IndexLimits::default()).unwrap();
    let mut tracker = Tracker::ephemeral(k.public(), IndexLimits::default());
    let err = run(update_from_http(
        &mut tracker,
        &http_client(),
        &base,
        SystemTime::now(),
    ))
    .unwrap_err();
    assert!(
        matches!(err, IndexError::Piece { source: FetchError::TooLarge { limit }, .. } if limit == piece.size),
        "{err:?}"
    );
}

#[test]
fn an_endless_bundle_body_is_cut_off_before_any_zip_parsing() {
    let dir = TempDir::new().unwrap();
    let root = published_repo(&dir);
    let k = key();
    let index = verify_fresh(&root, &k, SystemTime::now()).unwrap();
    let (_, article) = index.current()[0];
    let path = format!("/{}", layout(&k).bundle(&article.bundle().sha256));
    let server = StaticServer::start(&root, Special::Endless(path));
    let base = MirrorUrl::parse(&server.base, &IndexLimits::default()).unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let err = run(fetch_bundle_http(
        &http_client(),
        &base,
        article,
        k.public(),
        &tmp,
        &BundleLimits::default(),
    ))
    .unwrap_err();
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
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "no partial file left"
    );
}
