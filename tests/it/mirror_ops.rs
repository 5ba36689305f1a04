//! Operating a mirror: graceful shutdown with a download in flight, slow clients, the real
//! `qasid mirror` and `qasid push` binaries, and configuration errors.

use crate::mirror_support;

use std::time::{Duration, Instant};

use mirror_support::*;
use qasid::content_id::ContentId;
use qasid::index::layout::PublisherLayout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_slow_download_finish_and_refuses_new_connections() {
    let p = published(48 << 20).await;
    let path = url_path(&p.key, |l| l.bundle(&p.bundle.sha256));
    let mut response = client().get(p.server.url(&path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut received = response.chunk().await.unwrap().unwrap().to_vec();
    let addr = p.server.addr;
    let stopping = tokio::spawn(p.server.stop());
    // Give the server time to stop accepting before reading on, slowly.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "the listener is closed once shutdown starts"
    );
    assert!(!stopping.is_finished(), "shutdown waits for the download");
    let deadline = Instant::now() + WAIT;
    while let Some(chunk) = response.chunk().await.unwrap() {
        received.extend_from_slice(&chunk);
        if received.len() % (4 << 20) < chunk.len() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(Instant::now() < deadline, "download took too long");
    }
    assert_eq!(received.len() as u64, p.bundle.size);
    assert_eq!(ContentId::of_bytes(&received), p.bundle.sha256);
    tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let server = Server::start_with(&dir.path().join("store"), &[&k], |c| {
        c.mirror.header_timeout = Duration::from_millis(500);
        c.mirror.idle_timeout = Duration::from_millis(800);
    })
    .await;
    // Headers trickled and never finished: closed after the header timeout.
    let started = Instant::now();
    let response = raw_request(server.addr, b"GET /healthz HTTP/1.1\r\nHost: t\r\n");
    // Cut off by the server (0.5-0.8 s when idle), well before the client's own 20 s WAIT;
    // the bound leaves room for a loaded CI machine.
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    assert!(!response.contains("200 OK"), "{response:?}");
    // A push whose body stalls: dropped after the idle timeout, nothing stored.
    let hex = k.public().hex();
    let id = ContentId::of_bytes(b"never sent");
    let started = Instant::now();
    let response = raw_request(
        server.addr,
        format!(
            "PUT /qasid/v1/publishers/{hex}/bundles/{id}.zip HTTP/1.1\r\nHost: t\r\n\
             Content-Length: 1000\r\n\r\npartial"
        )
        .as_bytes(),
    );
    // Cut off by the server (0.5-0.8 s when idle), well before the client's own 20 s WAIT;
    // the bound leaves room for a loaded CI machine.
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    assert!(!response.contains("201"), "{response:?}");
    assert_eq!(server.store.counts().bundles, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("store"), &[&key(1)], |c| {
        c.mirror.max_connections = 1;
    })
    .await;
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        // The only slot, held by an idle connection.
        let holder = std::net::TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let mut waiting = std::net::TcpStream::connect(addr).unwrap();
        waiting
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        waiting
            .set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let mut buf = [0u8; 64];
        assert!(
            waiting.read(&mut buf).is_err(),
            "a second connection is not served while the limit is reached"
        );
        drop(holder);
        waiting.set_read_timeout(Some(WAIT)).unwrap();
        let mut response = String::new();
        waiting.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
    })
    .await
    .unwrap();
}

#[test]
fn the_mirror_binary_serves_accepts_qasid_push_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let repo = dir.path().join("repo");
    let made = make_bundle(dir.path(), &k, "launch", 1, 4096);
    publish(&repo, &k, &[&made.path]);
    let pub_file = dir.path().join("publisher.pub");
    std::fs::write(&pub_file, k.public().to_file_text()).unwrap();
    let store = dir.path().join("store");
    let mirror = Process::start(&[
        "mirror",
        "--listen",
        "127.0.0.1:0",
        "--store",
        store.to_str().unwrap(),
        "--publisher",
        pub_file.to_str().unwrap(),
        "--upstream",
        "http://127.0.0.1:9/",
    ]);
    let push = assert_cmd::Command::cargo_bin("qasid")
        .unwrap()
        .args([
            "push",
            "--repo",
            repo.to_str().unwrap(),
            "--to",
            &mirror.base,
        ])
        .timeout(WAIT)
        .assert()
        .success();
    let out = String::from_utf8_lossy(&push.get_output().stdout).into_owned();
    assert!(out.contains("ok, sent"), "{out}");

    let addr: std::net::SocketAddr = mirror.base.trim_start_matches("http://").parse().unwrap();
    assert_eq!(
        raw_get_status(addr, &url_path(&k, PublisherLayout::index)),
        200
    );

    // Pushing again: nothing to send. JSON output for scripts.
    let again = assert_cmd::Command::cargo_bin("qasid")
        .unwrap()
        .args([
            "push",
            "--repo",
            repo.to_str().unwrap(),
            "--to",
            &mirror.base,
            "--json",
        ])
        .timeout(WAIT)
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&again.get_output().stdout).unwrap();
    assert_eq!(json["pushes"][0]["sent"], 0);
    assert_eq!(json["pushes"][0]["ok"], true);

    // The configured upstream (unreachable here) is pulled by sync in the same process.
    let logs: Vec<String> = mirror.stderr.try_iter().collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("sync started") && l.contains("upstreams=1")),
        "{logs:?}"
    );
    let status = mirror.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn push_to_a_mirror_that_does_not_trust_us_fails_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let repo = dir.path().join("repo");
    let made = make_bundle(dir.path(), &k, "launch", 1, 100);
    publish(&repo, &k, &[&made.path]);
    let other = key(2).public().to_base64();
    let mirror = Process::start(&[
        "mirror",
        "--listen",
        "127.0.0.1:0",
        "--store",
        dir.path().join("store").to_str().unwrap(),
        "--publisher",
        &other,
    ]);
    let failed = assert_cmd::Command::cargo_bin("qasid")
        .unwrap()
        .args([
            "push",
            "--repo",
            repo.to_str().unwrap(),
            "--to",
            &mirror.base,
        ])
        .timeout(WAIT)
        .assert()
        .code(1);
    let out = String::from_utf8_lossy(&failed.get_output().stdout).into_owned();
    assert!(out.contains("FAILED") && out.contains("403"), "{out}");
    assert!(mirror.terminate().success());
}

#[test]
fn a_bad_config_is_reported_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirrors.toml");
    std::fs::write(
        &config,
        "[mirror]\nlisten = \"127.0.0.1:0\"\nkeep = \"forever\"\n",
    )
    .unwrap();
    let run = assert_cmd::Command::cargo_bin("qasid")
        .unwrap()
        .args(["mirror", "--config", config.to_str().unwrap()])
        .timeout(WAIT)
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    let at = format!("{}:3:8:", config.display());
    assert!(err.contains(&at), "{err}");
    assert!(err.contains("\"all\" or \"current\""), "{err}");

    std::fs::write(
        &config,
        "[mirror]\nlisten = \"127.0.0.1:0\"\n[[upstream]]\nurl = 5\n",
    )
    .unwrap();
    let run = assert_cmd::Command::cargo_bin("qasid")
        .unwrap()
        .args(["mirror", "--config", config.to_str().unwrap()])
        .timeout(WAIT)
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    assert!(err.contains(&format!("{}:4:7:", config.display())), "{err}");
}

#[test]
fn the_example_config_in_the_repo_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mirrors.toml");
    let config = qasid::config::Config::load(&path).unwrap();
    assert_eq!(config.mirror.listen.to_string(), "127.0.0.1:8080");
}
