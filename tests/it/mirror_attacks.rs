//! Attacks on a running mirror from anonymous clients and from whoever reads its `/metrics`:
//! leaked upstream credentials and addresses, slow request bodies, one address taking every
//! connection, disk filled with staged pieces. Real servers on 127.0.0.1 port 0 and the real
//! `qasid mirror` binary.

use std::time::{Duration, Instant};

use crate::mirror_support::{key, raw_request, url_path, Process, Server, WAIT};

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

/// Connects from a given loopback address (all of 127/8 reaches the mirror on Linux), so a
/// test can play several clients.
async fn connect_from(from: &str, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// How long `/healthz` takes to answer from 127.0.0.1, or `None` if not within `bound`.
async fn healthz_within(addr: std::net::SocketAddr, bound: Duration) -> Option<Duration> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let started = Instant::now();
    let ask = async {
        let mut s = connect_from("127.0.0.1", addr).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).contains("\r\n\r\nok")
    };
    match tokio::time::timeout(bound, ask).await {
        Ok(true) => Some(started.elapsed()),
        _ => None,
    }
}

/// The attack: PUTs that send one byte every half second hold their connection slots past the
/// header and idle timeouts, so a mirror with as few slots as attackers stops answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_push_bodies_do_not_hold_the_mirror_off_the_air() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let server = Server::start_with(&dir.path().join("store"), &[&k], |c| {
        c.mirror.max_connections = 4;
        c.mirror.max_connections_per_address = Some(4);
        c.mirror.header_timeout = Duration::from_secs(1);
    })
    .await;
    let path = url_path(&k, |l| {
        l.bundle(&qasid::content_id::ContentId::of_bytes(b"x"))
    });
    let mut attackers = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from("127.0.0.2", server.addr).await;
        let head = format!("PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        attackers.push(tokio::spawn(async move {
            // One byte every 500 ms, for up to WAIT: what the server answers, if anything.
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                if s.write_all(b"x").await.is_err() {
                    break;
                }
                let mut buf = [0u8; 512];
                match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return String::new(),
                    Ok(Ok(n)) => return String::from_utf8_lossy(&buf[..n]).into_owned(),
                    Err(_) => {}
                }
            }
            "held".to_owned()
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let took = healthz_within(server.addr, Duration::from_secs(8)).await;
    assert!(took.is_some(), "/healthz did not answer within 8 s");
    eprintln!("slow bodies: /healthz answered in {took:?}");
    for a in attackers {
        let answer = a.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }
    server.stop().await;
}

/// The attack: one address opens every connection slot (and keeps them with idle
/// connections). It gets a quarter of them; the rest of the world still gets answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    use tokio::io::AsyncReadExt as _;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("store"), &[&key(1)], |c| {
        c.mirror.max_connections = 8;
        // Idle connections stay for the whole test unless the per-address cap refuses them.
        c.mirror.header_timeout = WAIT;
        c.mirror.idle_timeout = WAIT;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(connect_from("127.0.0.2", server.addr).await);
    }
    // Give the accept loop time to count them before the next ones arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = 0;
    for _ in 0..8 {
        let mut s = connect_from("127.0.0.2", server.addr).await;
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 429") {
                refused += 1;
            }
        }
        held.push(s);
    }
    assert_eq!(
        refused, 8,
        "connections over a quarter of 8 from one address are refused"
    );
    let took = healthz_within(server.addr, Duration::from_secs(5)).await;
    assert!(took.is_some(), "/healthz did not answer within 5 s");
    drop(held);
    server.stop().await;
}

/// Bytes the staged pieces on disk count against the staging bounds (each at least 4 KiB).
fn staged_on_disk(store: &std::path::Path) -> (u64, usize) {
    let mut charged = 0;
    let mut files = 0;
    for folder in std::fs::read_dir(store.join(".state/staged"))
        .into_iter()
        .flatten()
    {
        for file in std::fs::read_dir(folder.unwrap().path()).unwrap() {
            let len = file.unwrap().metadata().unwrap().len();
            charged += len.max(qasid::limits::STAGED_PIECE_MIN_BYTES);
            files += 1;
        }
    }
    (charged, files)
}

/// A well-formed piece for `k` that no index will ever list: what anyone can push, no key
/// needed.
fn junk_piece(k: &qasid::keys::SecretKey, n: usize) -> (String, Vec<u8>) {
    let entries: Vec<_> = (0..20)
        .map(|i| qasid::index::Entry::retract(&format!("junk-{n}-{i}")).unwrap())
        .collect();
    let bytes = qasid::index::encode_piece(k.public(), 0, &entries);
    let id = qasid::content_id::ContentId::of_bytes(&bytes);
    (url_path(k, |l| l.piece(&id)), bytes)
}

/// The attack: an anonymous client pushes well-formed but unsigned index pieces for trusted
/// publishers, each staged until an index claims it (never), so the mirror's disk fills. Now
/// unlisted pieces are bounded per publisher (429) and in total (507), the publisher's own
/// push still gets its pieces in (the signed index names them, and they evict junk), and junk
/// ages out while the mirror runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_unsigned_pieces_cannot_fill_the_mirrors_disk() {
    use crate::mirror_support::{make_bundle, publish, put};
    const BLOCK: u64 = qasid::limits::STAGED_PIECE_MIN_BYTES;
    let dir = tempfile::tempdir().unwrap();
    let (k1, k2) = (key(1), key(2));
    let bundle = make_bundle(dir.path(), &k1, "launch", 1, 1000);
    let repo = dir.path().join("repo");
    publish(&repo, &k1, &[&bundle.path]);
    let store = dir.path().join("store");
    let age = Duration::from_secs(10);
    let server = Server::start_with(&store, &[&k1, &k2], |c| {
        c.mirror.staging = qasid::limits::StagingLimits {
            max_staged_bytes: 24 * BLOCK,
            max_staged_bytes_per_publisher: 16 * BLOCK,
            max_staged_age: age,
        };
    })
    .await;
    let started = Instant::now();

    // Publisher 1's share fills first: 16 pieces, then 429.
    let mut n = 0;
    let refusal = loop {
        let (path, bytes) = junk_piece(&k1, n);
        assert!((bytes.len() as u64) < BLOCK);
        n += 1;
        let (status, body) = put(&server, &path, bytes).await;
        assert!(staged_on_disk(&store).0 <= 24 * BLOCK);
        if status != 201 {
            break (status, body);
        }
        assert!(n <= 16, "piece {n} was staged past the per-publisher bound");
    };
    assert_eq!(n, 17);
    assert_eq!(refusal.0, 429, "{}", refusal.1);
    assert_eq!(refusal.1["error"], "staging full");
    let reason = refusal.1["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("{} bytes of pieces for publisher", 16 * BLOCK))
            && reason.contains("no signed index lists")
            && !reason.contains('\n'),
        "{reason}"
    );

    // Then the total: 8 more for publisher 2, then 507.
    let mut m = 0;
    let refusal = loop {
        let (path, bytes) = junk_piece(&k2, m);
        m += 1;
        let (status, body) = put(&server, &path, bytes).await;
        assert!(staged_on_disk(&store).0 <= 24 * BLOCK);
        if status != 201 {
            break (status, body);
        }
    };
    assert_eq!(m, 9);
    assert_eq!(refusal.0, 507, "{}", refusal.1);
    let reason = refusal.1["reason"].as_str().unwrap();
    assert!(reason.contains("is full"), "{reason}");
    assert_eq!(staged_on_disk(&store), (24 * BLOCK, 24));
    let junk_done = Instant::now();

    // The publisher's real push: its pieces are refused at first (the bounds are full), then
    // sent again after the signed index named them, evicting the oldest junk.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_qasid"))
        .args([
            "push",
            "--repo",
            repo.to_str().unwrap(),
            "--to",
            &server.base,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < age,
        "too slow to see eviction before ageing"
    );
    let index =
        std::fs::read(repo.join(qasid::index::layout::PublisherLayout::new(k1.public()).index()))
            .unwrap();
    let served = crate::mirror_support::get_bytes(&server, &url_path(&k1, |l| l.index())).await;
    assert_eq!(served, index, "the publisher's index is served");
    let (charged, files) = staged_on_disk(&store);
    assert!(charged <= 24 * BLOCK);
    assert!(files < 24, "junk was evicted for the publisher's pieces");

    // Junk ages out while the mirror runs: the next piece staged finds the room free.
    tokio::time::sleep(age.saturating_sub(junk_done.elapsed()) + Duration::from_millis(500)).await;
    let (path, bytes) = junk_piece(&k2, 1000);
    let (status, body) = put(&server, &path, bytes).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(staged_on_disk(&store), (BLOCK, 1), "stale junk was removed");
    server.stop().await;
}
