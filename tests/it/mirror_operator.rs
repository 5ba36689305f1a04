//! Running a mirror as an operator, with the real `qasid` binary: SIGHUP reloads, the store
//! lock, `mirror --check`, refusal and access logs, `qasid status`, and `sync --once` output.

use crate::mirror_support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use mirror_support::*;
use qasid::keys::SecretKey;

fn qasid() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("qasid").unwrap();
    c.timeout(WAIT).env("RUST_LOG", "info");
    c
}

fn write_config(path: &Path, store: &Path, publishers: &[&Path], extra: &str) {
    let mut text = format!(
        "[mirror]\nlisten = \"127.0.0.1:0\"\nstore = {:?}\n{extra}\n",
        store.to_str().unwrap()
    );
    for p in publishers {
        text.push_str(&format!("[[publisher]]\nkey = {:?}\n", p.to_str().unwrap()));
    }
    std::fs::write(path, text).unwrap();
}

fn pub_file(dir: &Path, name: &str, key: &SecretKey) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.pub"));
    std::fs::write(&path, key.public().to_file_text()).unwrap();
    path
}

fn repo_of(dir: &Path, name: &str, key: &SecretKey) -> std::path::PathBuf {
    let repo = dir.join(format!("repo-{name}"));
    let made = make_bundle(dir, key, name, 1, 1000);
    publish(&repo, key, &[&made.path]);
    repo
}

/// `qasid mirror` on port 0 with `store`, trusting `publisher` if given, plus `extra` flags.
fn mirror_on(store: &Path, publisher: Option<&Path>, extra: &[&str]) -> Process {
    let mut args = vec![
        "mirror",
        "--listen",
        "127.0.0.1:0",
        "--store",
        store.to_str().unwrap(),
    ];
    if let Some(p) = publisher {
        args.extend(["--publisher", p.to_str().unwrap()]);
    }
    args.extend(extra);
    Process::start(&args)
}

/// A mirror at `dir/upstream` trusting `key`, with one article of it pushed.
fn upstream_with_article(dir: &Path, key: &SecretKey, key_pub: &Path) -> Process {
    let upstream = mirror_on(&dir.join("upstream"), Some(key_pub), &[]);
    push(&repo_of(dir, "alpha", key), &upstream.base).success();
    upstream
}

fn push(repo: &Path, to: &str) -> assert_cmd::assert::Assert {
    qasid()
        .args(["push", "--repo", repo.to_str().unwrap(), "--to", to])
        .assert()
}

/// One `GET /healthz` on an open keep-alive connection.
fn healthz_on(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"ok\n") {
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "connection closed: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn sighup_reloads_publishers_without_dropping_connections_and_keeps_the_old_config_if_broken() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (key(1), key(2));
    let (a_pub, b_pub) = (pub_file(dir.path(), "a", &a), pub_file(dir.path(), "b", &b));
    let (repo_a, repo_b) = (
        repo_of(dir.path(), "alpha", &a),
        repo_of(dir.path(), "beta", &b),
    );
    let config = dir.path().join("mirrors.toml");
    let store = dir.path().join("store");
    write_config(&config, &store, &[&a_pub], "");
    let mirror = Process::start(&["mirror", "--config", config.to_str().unwrap()]);
    push(&repo_a, &mirror.base).success();
    push(&repo_b, &mirror.base).code(1);

    // A reader's connection, open across the reload.
    let addr = mirror.base.trim_start_matches("http://").to_owned();
    let mut open = TcpStream::connect(&addr).unwrap();
    assert!(healthz_on(&mut open).starts_with("HTTP/1.1 200"));

    write_config(&config, &store, &[&a_pub, &b_pub], "");
    mirror.signal("HUP");
    mirror.wait_for_log("configuration reloaded");
    push(&repo_b, &mirror.base).success();
    assert!(
        healthz_on(&mut open).starts_with("HTTP/1.1 200"),
        "the connection open during the reload still works"
    );

    // A broken file: refused with its reason, the running configuration stays.
    std::fs::write(&config, "[mirror]\nmax_connections = 0\n").unwrap();
    mirror.signal("HUP");
    let refused = mirror.wait_for_log("reload refused");
    assert!(refused.contains("max_connections"), "{refused}");
    assert!(healthz_on(&mut open).starts_with("HTTP/1.1 200"));
    let index_b = url_path(&b, qasid::index::layout::PublisherLayout::index);
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    assert_eq!(raw_get_status(addr, &index_b), 200, "b is still trusted");
    push(&repo_b, &mirror.base).success();
    assert!(mirror.terminate().success());
}

#[test]
fn a_reload_can_lower_the_connection_limit_without_closing_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirrors.toml");
    let store = dir.path().join("store");
    // Both connections come from 127.0.0.1: the per-address cap must allow them.
    write_config(
        &config,
        &store,
        &[],
        "max_connections = 4\nmax_connections_per_address = 4",
    );
    let mirror = Process::start(&["mirror", "--config", config.to_str().unwrap()]);
    let addr = mirror.base.trim_start_matches("http://").to_owned();
    let mut first = TcpStream::connect(&addr).unwrap();
    let mut second = TcpStream::connect(&addr).unwrap();
    healthz_on(&mut first);
    healthz_on(&mut second);
    write_config(&config, &store, &[], "max_connections = 1");
    mirror.signal("HUP");
    mirror.wait_for_log("configuration reloaded");
    // Both stay served; a third waits until the limit allows it.
    healthz_on(&mut first);
    healthz_on(&mut second);
    let mut third = TcpStream::connect(&addr).unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 64];
    let got = third.read(&mut buf);
    assert!(
        got.is_err(),
        "over the new limit: waits, got {:?}",
        got.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    );
    drop(first);
    drop(second);
    assert!(healthz_on(&mut third).starts_with("HTTP/1.1 200"));

    // The per-address cap follows a reload too: with `third` open, one more from the same
    // address is over a cap of 1 and answered 429 at once.
    write_config(
        &config,
        &store,
        &[],
        "max_connections = 4\nmax_connections_per_address = 1",
    );
    mirror.signal("HUP");
    mirror.wait_for_log("configuration reloaded");
    let mut fourth = TcpStream::connect(&addr).unwrap();
    fourth.set_read_timeout(Some(WAIT)).unwrap();
    let mut answer = String::new();
    let _ = fourth.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer:?}");
    assert!(healthz_on(&mut third).starts_with("HTTP/1.1 200"));
    assert!(mirror.terminate().success());
}

#[test]
fn a_second_mirror_or_sync_on_a_store_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store_arg = store.to_str().unwrap();
    let first = mirror_on(&store, None, &[]);
    let second = qasid()
        .args(["mirror", "--listen", "127.0.0.1:0", "--store", store_arg])
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&second.get_output().stderr).into_owned();
    assert!(
        err.contains("another qasid process") && err.contains(store_arg),
        "{err}"
    );
    assert!(
        !err.contains("listening on"),
        "refused before listening: {err}"
    );
    let pub_file = pub_file(dir.path(), "a", &key(1));
    let sync = qasid()
        .args([
            "sync",
            "--once",
            "--store",
            store_arg,
            "--publisher",
            pub_file.to_str().unwrap(),
            "--upstream",
            "http://127.0.0.1:9/",
        ])
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&sync.get_output().stderr).into_owned();
    assert!(err.contains("another qasid process"), "{err}");
    assert!(first.terminate().success());
    // Free again once the first has stopped.
    let again = mirror_on(&store, None, &[]);
    assert!(again.terminate().success());
}

#[test]
fn mirror_check_validates_a_config_like_nginx_t() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirrors.toml");
    let store = dir.path().join("store");
    let a_pub = pub_file(dir.path(), "a", &key(1));
    write_config(&config, &store, &[&a_pub], "");
    let ok = qasid()
        .args(["mirror", "--check", "--config", config.to_str().unwrap()])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&ok.get_output().stdout).into_owned();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("ok: 1 publisher(s), 0 upstream(s)"), "{out}");
    assert!(!store.exists(), "--check starts and writes nothing");

    std::fs::write(&config, "[mirror]\nlisten = \"nowhere\"\n").unwrap();
    let bad = qasid()
        .args(["mirror", "--check", "--config", config.to_str().unwrap()])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&bad.get_output().stderr).into_owned();
    assert!(
        err.contains(":2:10:") && err.contains("mirror.listen"),
        "{err}"
    );

    let missing = dir.path().join("nonexistent.toml");
    qasid()
        .args(["mirror", "--check", "--config", missing.to_str().unwrap()])
        .assert()
        .code(2);
}

#[test]
fn refused_pushes_are_logged_with_the_key_id_and_shown_by_status() {
    let dir = tempfile::tempdir().unwrap();
    let (a, stranger) = (key(1), key(2));
    let a_pub = pub_file(dir.path(), "a", &a);
    let store = dir.path().join("store");
    let mirror = mirror_on(&store, Some(&a_pub), &[]);
    let repo = repo_of(dir.path(), "alpha", &a);
    push(&repo, &mirror.base).success();
    push(&repo_of(dir.path(), "beta", &stranger), &mirror.base).code(1);
    let id = stranger.public().id().to_string();
    let line = mirror.wait_for_log("refused push");
    assert!(line.contains(&id), "names the publisher by key id: {line}");
    assert!(
        line.contains("403") && line.contains("does not carry"),
        "{line}"
    );
    assert!(!line.contains(&stranger.public().hex()), "{line}");
    assert!(!line.contains("127.0.0.1"), "no client address: {line}");

    let status = qasid()
        .args(["status", "--store", store.to_str().unwrap(), "--json"])
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&status.get_output().stdout).unwrap();
    assert_eq!(json["in_use"], true);
    let publishers = json["publishers"].as_array().unwrap();
    assert_eq!(publishers.len(), 1, "{json}");
    assert_eq!(
        publishers[0]["publisher"]["key_id"],
        a.public().id().to_string()
    );
    assert_eq!(publishers[0]["index"]["sequence"], 1);
    assert_eq!(publishers[0]["index"]["expired"], false);
    assert_eq!(publishers[0]["bundles"], 1);
    assert!(publishers[0]["bytes"].as_u64().unwrap() > 1000);
    let refusals = json["refusals"].as_array().unwrap();
    assert!(
        refusals
            .iter()
            .any(|r| r["key_id"] == id.as_str() && r["source"] == "push"),
        "{json}"
    );
    let text = qasid()
        .args(["status", "--store", store.to_str().unwrap()])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&text.get_output().stdout).into_owned();
    assert!(
        text.contains(&format!("publisher {}: index 1", a.public().id())),
        "{text}"
    );
    assert!(text.contains("untrusted publisher"), "{text}");
    assert!(mirror.terminate().success());

    let stopped = qasid()
        .args(["status", "--store", store.to_str().unwrap(), "--json"])
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&stopped.get_output().stdout).unwrap();
    assert_eq!(json["in_use"], false);
    qasid()
        .args([
            "status",
            "--store",
            dir.path().join("nothing").to_str().unwrap(),
        ])
        .assert()
        .code(2);
}

#[test]
fn sync_once_prints_a_summary_and_status_shows_each_upstreams_state() {
    let dir = tempfile::tempdir().unwrap();
    let a = key(1);
    let a_pub = pub_file(dir.path(), "a", &a);
    let upstream = upstream_with_article(dir.path(), &a, &a_pub);
    let store = dir.path().join("store");
    let dead = "http://127.0.0.1:9/";
    let sync = qasid()
        .args([
            "sync",
            "--once",
            "--store",
            store.to_str().unwrap(),
            "--publisher",
            a_pub.to_str().unwrap(),
            "--upstream",
            &upstream.base,
            "--upstream",
            dead,
        ])
        .assert()
        .code(1);
    let out = String::from_utf8_lossy(&sync.get_output().stdout).into_owned();
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("sync: 1 publisher(s) (1 with an index), 2 upstream(s): 1 new bundle(s)")
            && first.contains("received")
            && first.contains("1 error(s)"),
        "{out}"
    );
    let status = qasid()
        .args(["status", "--store", store.to_str().unwrap(), "--json"])
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&status.get_output().stdout).unwrap();
    let upstreams = json["upstreams"].as_array().unwrap();
    let find = |url: &str| {
        upstreams
            .iter()
            .find(|u| {
                u["url"]
                    .as_str()
                    .unwrap()
                    .starts_with(url.trim_end_matches('/'))
            })
            .unwrap_or_else(|| panic!("{url} in {json}"))
    };
    let good = find(&upstream.base);
    assert_eq!(good["state"], "ok");
    assert!(good["last_success"].is_string());
    let bad = find(dead);
    assert_ne!(bad["state"], "ok");
    assert!(bad.get("last_success").is_none(), "absent, not null");
    assert!(bad["last_error"].is_string());
    assert_eq!(json["publishers"][0]["index"]["sequence"], 1);

    // With --json the report stays alone on stdout; the summary line goes to stderr.
    let json_run = qasid()
        .args([
            "sync",
            "--once",
            "--json",
            "--store",
            store.to_str().unwrap(),
            "--publisher",
            a_pub.to_str().unwrap(),
            "--upstream",
            &upstream.base,
        ])
        .assert()
        .success();
    let out = json_run.get_output();
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("sync: 1 publisher(s)"));
    assert!(upstream.terminate().success());
}

#[test]
fn sync_once_shows_progress_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let a = key(1);
    let a_pub = pub_file(dir.path(), "a", &a);
    let upstream = upstream_with_article(dir.path(), &a, &a_pub);
    // `script` gives the command a pseudo-terminal (and records what it drew on it).
    let command = format!(
        "{} sync --once --store {} --publisher {} --upstream {}",
        env!("CARGO_BIN_EXE_qasid"),
        dir.path().join("store").display(),
        a_pub.display(),
        upstream.base,
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("syncing"),
        "a progress line on the terminal: {text}"
    );
    assert!(text.contains("sync: 1 publisher(s)"), "{text}");
    assert!(upstream.terminate().success());
}

#[test]
fn the_access_log_is_off_by_default_and_never_holds_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = mirror_on(&dir.path().join("a"), None, &[]);
    let addr: std::net::SocketAddr = quiet.base.trim_start_matches("http://").parse().unwrap();
    assert_eq!(raw_get_status(addr, "/healthz"), 200);
    std::thread::sleep(Duration::from_millis(300));
    let logs: Vec<String> = quiet.stderr.try_iter().collect();
    assert!(
        !logs.iter().any(|l| l.contains("/healthz")),
        "no access log by default: {logs:?}"
    );
    assert!(quiet.terminate().success());

    let logged = mirror_on(&dir.path().join("b"), None, &["--access-log"]);
    let addr: std::net::SocketAddr = logged.base.trim_start_matches("http://").parse().unwrap();
    assert_eq!(raw_get_status(addr, "/healthz"), 200);
    let line = logged.wait_for_log("GET /healthz 200");
    assert!(line.contains("qasid::access"), "{line}");
    assert!(!line.contains("127.0.0.1"), "no reader address: {line}");
    assert!(logged.terminate().success());
}
