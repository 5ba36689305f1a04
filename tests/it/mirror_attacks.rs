//! Attacks on a running mirror from anonymous clients and from whoever reads its `/metrics`:
//! leaked upstream credentials and addresses, slow request bodies, one address taking every
//! connection, disk filled with staged pieces. Real servers on 127.0.0.1 port 0 and the real
//! `qasid mirror` binary.

use std::time::{Duration, Instant};

use crate::mirror_support::{key, raw_request, Process, WAIT};

/// `GET /metrics` of a mirror at `base` (`http://ADDR`).
fn metrics_of(base: &str) -> String {
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    raw_request(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
}

/// Waits (bounded) until the mirror's `/metrics` shows a failed sync round.
fn metrics_after_a_failed_round(base: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = metrics_of(base);
        if text.contains("qasid_sync_upstream_failures_total{") {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no failed round in time:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The bug: an upstream URL with user:password showed in `/metrics` (password masked, user
/// name shown). Now the user name, password and query never appear in metrics or logs, and by
/// default `/metrics` does not name upstreams at all.
#[test]
fn metrics_and_logs_do_not_leak_upstream_credentials_or_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // Port 9 (discard) is closed on loopback: every round fails at once.
    let upstream = "http://alice:s3cret@127.0.0.1:9/feed/?token=t0ken";
    let leaks = |text: &str| {
        ["alice", "s3cret", "t0ken"]
            .into_iter()
            .filter(|s| text.contains(s))
            .collect::<Vec<_>>()
    };
    // A trusted publisher, so that each round asks the upstream for its index.
    let publisher = key(1).public().to_base64();
    let args = |extra: &'static [&'static str]| {
        let mut a = vec![
            "mirror",
            "--publisher",
            publisher.as_str(),
            "--listen",
            "127.0.0.1:0",
            "--store",
            store.to_str().unwrap(),
            "--upstream",
            upstream,
        ];
        a.extend_from_slice(extra);
        a
    };

    // Default: upstreams are numbered, their addresses not shown.
    let mirror = Process::start(&args(&[]));
    let text = metrics_after_a_failed_round(&mirror.base);
    assert!(leaks(&text).is_empty(), "{text}");
    assert!(!text.contains("127.0.0.1:9"), "{text}");
    assert!(text.contains("upstream=\"upstream-1\""), "{text}");
    let log: Vec<String> = mirror.stderr.try_iter().collect();
    let log = log.join("\n");
    assert!(
        log.contains("127.0.0.1:9"),
        "the log names the upstream:\n{log}"
    );
    assert!(leaks(&log).is_empty(), "{log}");
    drop(mirror);

    // Opted in: the URL without credentials or query.
    let mirror = Process::start(&args(&["--metrics-upstream-urls", "true"]));
    let text = metrics_after_a_failed_round(&mirror.base);
    assert!(leaks(&text).is_empty(), "{text}");
    assert!(
        text.contains("upstream=\"http://127.0.0.1:9/feed/\""),
        "{text}"
    );
}
