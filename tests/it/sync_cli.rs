//! `qasid sync` as cron runs it: exit codes (0 synced, 1 runtime failure, 3 only verification
//! failures, 2 usage), the per-upstream summary and `--json`, a real third-party static server
//! (python3 -m http.server), and the lock that keeps two syncs off one store.

use crate::sync_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::prelude::*;
use predicates::prelude::*;
use sync_support::*;

fn qasid() -> Command {
    let mut cmd = Command::cargo_bin("qasid").unwrap();
    cmd.env("RUST_LOG", "warn").env_remove("NO_COLOR");
    cmd
}

fn pub_file(dir: &Path, key: &qasid::keys::SecretKey) -> String {
    let path = dir.join(format!("{}.pub", key.public().id()));
    std::fs::write(&path, key.public().to_file_text()).unwrap();
    path.display().to_string()
}

async fn run(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn sync_cmd(store: &Path, publisher: &str, upstreams: &[&str]) -> Command {
    let mut cmd = qasid();
    cmd.args(["sync", "--once", "--store"]).arg(store).args([
        "--publisher",
        publisher,
        "--read-timeout",
        "2s",
    ]);
    for u in upstreams {
        cmd.args(["--upstream", u]);
    }
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exit_codes_tell_synced_outage_and_lies_apart() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(31);
    let publisher = pub_file(dir.path(), &key);
    let repo = dir.path().join("repo");
    let story = make_bundle(dir.path(), &key, "story", 1, 3_000);
    publish(&repo, &key, &[&story]);
    let good = StaticServer::start(&repo, StaticOptions::default()).await;

    let store = dir.path().join("store");
    let out = run(sync_cmd(&store, &publisher, &[&good.url])).await;
    out.assert().success().stdout(
        predicate::str::contains(format!("{} ok", good.url))
            .and(predicate::str::contains("serving index 1")),
    );

    // --json: the same round as data; nothing new now (one 304).
    let mut cmd = sync_cmd(&store, &publisher, &[&good.url]);
    cmd.arg("--json");
    let out = run(cmd).await;
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["upstreams"][0]["not_modified"], 1, "{json:#}");
    assert_eq!(json["publishers"][0]["installed"], 1);
    assert!(json["elapsed_ms"].is_f64());

    // A dead upstream is a runtime failure: exit 1, with the summary saying which.
    let dead = dead_url();
    let out = run(sync_cmd(&dir.path().join("s2"), &publisher, &[&dead])).await;
    out.assert()
        .code(1)
        .stdout(predicate::str::contains(format!("{dead} FAILED")))
        .stdout(predicate::str::contains("connect"))
        .stderr(predicate::str::contains(
            "could not sync from 1 of 1 upstream",
        ));

    // Only lies (a tampered bundle): exit 3.
    let liar_root = dir.path().join("liar");
    copy_tree(&repo, &liar_root);
    let path = bundle_path(&liar_root, &key, &story.sha256);
    let mut bytes = std::fs::read(&path).unwrap();
    let end = bytes.len() - 1;
    bytes[end] ^= 1;
    std::fs::write(path, bytes).unwrap();
    let liar = StaticServer::start(&liar_root, StaticOptions::default()).await;
    let out = run(sync_cmd(&dir.path().join("s3"), &publisher, &[&liar.url])).await;
    out.assert()
        .code(3)
        .stdout(predicate::str::contains("hash_mismatch"))
        .stderr(predicate::str::contains("verification failed"));

    // Both: the outage wins (1).
    let out = run(sync_cmd(
        &dir.path().join("s4"),
        &publisher,
        &[&liar.url, &dead],
    ))
    .await;
    out.assert().code(1);

    // Usage: nothing to sync from.
    let mut cmd = qasid();
    cmd.args(["sync", "--once", "--store"])
        .arg(dir.path().join("s5"))
        .args(["--publisher", &publisher]);
    run(cmd).await.assert().code(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn syncs_from_python_http_server() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python3 not installed; .ci/run installs it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = key(32);
    let publisher = pub_file(dir.path(), &key);
    let repo = dir.path().join("repo");
    let bundles: Vec<Made> = (0..5)
        .map(|i| make_bundle(dir.path(), &key, &format!("s{i}"), 1, 2_000 + i * 500_000))
        .collect();
    publish(&repo, &key, &bundles.iter().collect::<Vec<_>>());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(&repo)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < WAIT,
            "python3 http.server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = dir.path().join("store");
    let out = run(sync_cmd(&store, &publisher, &[&url])).await;
    let again = run(sync_cmd(&store, &publisher, &[&url])).await;
    let _ = server.kill();
    let _ = server.wait();
    out.assert().success();
    again.assert().success();
    assert_store_consistent(&store, &key);
    for b in &bundles {
        assert!(bundle_path(&store, &key, &b.sha256).is_file());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_sync_per_store_and_the_daemon_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(33);
    let publisher = pub_file(dir.path(), &key);
    let repo = dir.path().join("repo");
    let story = make_bundle(dir.path(), &key, "story", 1, 1_000);
    publish(&repo, &key, &[&story]);
    let good = StaticServer::start(&repo, StaticOptions::default()).await;
    let store = dir.path().join("store");
    let mut daemon = qasid()
        .args(["sync", "--interval", "200ms", "--store"])
        .arg(&store)
        .args(["--publisher", &publisher, "--upstream", &good.url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(WAIT, "the daemon's first round", || {
        index_path(&store, &key).is_file()
    })
    .await;
    let out = run(sync_cmd(&store, &publisher, &[&good.url])).await;
    out.assert()
        .code(1)
        .stderr(predicate::str::contains("already running"));
    let pid = daemon.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no exit on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    // The lock went with it.
    run(sync_cmd(&store, &publisher, &[&good.url]))
        .await
        .assert()
        .success();
}
