//! Dead and tarpitting upstreams: each is bounded by its own deadline, delays nobody else, is
//! reported with its reason, and is backed off.

use crate::sync_support;

use std::time::{Duration, Instant};

use qasid::config::Keep;
use qasid::sync::Timeouts;
use qasid::ErrorClass;
use sync_support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tarpit_and_a_dead_upstream_do_not_delay_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(11);
    let repo = dir.path().join("repo");
    let bundles: Vec<Made> = (0..20)
        .map(|i| make_bundle(dir.path(), &key, &format!("story-{i}"), 1, 8_000))
        .collect();
    publish(&repo, &key, &bundles.iter().collect::<Vec<_>>());
    let good = StaticServer::start(&repo, StaticOptions::default()).await;
    let tarpit = Tarpit::start().await;
    let dead = dead_url();

    let node = Node::start(&dir.path().join("node"), &[&key], Keep::All).await;
    let mut options = fast_options();
    let read = Duration::from_secs(3);
    options.timeouts = Timeouts {
        connect: Duration::from_secs(2),
        read,
    };
    // The tarpit and the dead host come first in the configuration.
    let syncer = node.syncer(&[&tarpit.url, &dead, &good.url], options).await;
    let started = Instant::now();
    let cancel = CancellationToken::new();
    let (report, synced_after) = tokio::join!(syncer.run_once(&cancel), async {
        wait_until(
            Duration::from_secs(10),
            "the good upstream's content",
            || node.sequence(&key) == Some(1),
        )
        .await
    });
    let round = started.elapsed();
    eprintln!("content in {synced_after:?}, round {round:?}");
    assert!(
        synced_after < Duration::from_millis(2500),
        "the good upstream took {synced_after:?} despite the tarpit"
    );
    assert!(round >= read, "the tarpit was given its read timeout");
    assert!(
        round < read + Duration::from_secs(4),
        "round took {round:?}"
    );
    for b in &bundles {
        assert!(node.has_bundle(&key, &b.sha256));
    }
    let reason = |url: &str| {
        report
            .upstreams
            .iter()
            .find(|u| u.url == url)
            .map(|u| u.errors.iter().map(|e| e.reason()).collect::<Vec<_>>())
            .unwrap()
    };
    assert_eq!(reason(&tarpit.url), ["timeout"]);
    assert_eq!(reason(&dead), ["connect"]);
    assert!(reason(&good.url).is_empty());
    assert_eq!(report.failure(), Some(ErrorClass::Runtime));

    // Both failed upstreams back off: the next round skips them and is quick.
    let again = syncer.run_once(&cancel).await;
    assert!(
        again.elapsed < Duration::from_secs(1),
        "{:?}",
        again.elapsed
    );
    for url in [&tarpit.url, &dead] {
        let u = again.upstreams.iter().find(|u| &u.url == url).unwrap();
        assert!(u.backing_off && u.requests == 0, "{u:#?}");
        let state =
            format!("qasid_sync_upstream_state{{upstream=\"{url}\",state=\"backing_off\"}}");
        assert_eq!(metric(&node.metrics, &state), 1);
    }
    // Once the backoff (at most 400 ms here) has passed they are asked again.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let later = syncer.run_once(&cancel).await;
    let dead_report = later.upstreams.iter().find(|u| u.url == dead).unwrap();
    assert!(!dead_report.backing_off && !dead_report.errors.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_round_stops_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(12);
    let tarpit = Tarpit::start().await;
    let node = Node::start(&dir.path().join("node"), &[&key], Keep::All).await;
    let mut options = fast_options();
    options.timeouts.read = Duration::from_secs(60);
    let syncer = node.syncer(&[&tarpit.url], options).await;
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stopper.cancel();
    });
    let started = Instant::now();
    let report = tokio::time::timeout(WAIT, syncer.run_once(&cancel))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(report.upstreams.iter().all(|u| u.errors.is_empty()));
}
