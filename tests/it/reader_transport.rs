//! Every transport the reader uses, with real peers and the real binary: a repo made by
//! `qasid publish` served by a real nginx, a plain folder and a `file://` URL (a repo on a USB
//! stick), and a SOCKS5 proxy (global, and per mirror from the config) that must carry every
//! request, with no way around it when it is down. The same checks apply on every transport.

use crate::reader_support;

use std::path::Path;

use reader_support::*;
use tempfile::TempDir;

/// A repo written by the real `qasid keygen`, `qasid bundle` and `qasid publish`: (publisher
/// key file, repo root).
fn published_by_the_cli(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let keys = dir.join("keys");
    qasid()
        .args(["keygen", "--unencrypted", "--out"])
        .arg(&keys)
        .assert()
        .success();
    let src = dir.join("story");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("article.md"),
        "---\ntitle: Served by nginx\nauthor: Desk\ndate: 2026-03-01\nlanguage: en\n---\n\n\
         A plain web server is a mirror.\n",
    )
    .unwrap();
    let zip = dir.join("story.zip");
    qasid()
        .arg("bundle")
        .arg(&src)
        .arg("--key")
        .arg(keys.join("publisher.key"))
        .arg("--out")
        .arg(&zip)
        .assert()
        .success();
    let root = dir.join("site");
    qasid()
        .arg("publish")
        .arg(&zip)
        .arg("--repo")
        .arg(&root)
        .arg("--key")
        .arg(keys.join("publisher.key"))
        .assert()
        .success();
    (keys.join("publisher.pub"), root)
}

#[test]
fn a_repo_served_by_nginx_is_a_mirror() {
    let dir = TempDir::new().unwrap();
    let (pubkey, root) = published_by_the_cli(dir.path());
    let nginx = Nginx::start(&root).expect("nginx is installed (.ci/run installs nginx-light)");
    let state = dir.path().join("state");
    let out_dir = dir.path().join("out");
    let run = |args: &[&str]| {
        qasid()
            .arg("fetch")
            .args(args)
            .args(["--mirror", &nginx.url, "--publisher"])
            .arg(&pubkey)
            .arg("--state")
            .arg(&state)
            .output()
            .unwrap()
    };
    let out = run(&["--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(doc["publishers"][0]["articles"][0]["name"], "story");
    assert_eq!(fate(&doc, &nginx.url), "ok");

    let out = run(&["story", "--extract", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out_dir.join("story-v1").join("article.md").is_file());
    let log = nginx.access_log();
    assert!(log.contains("/index.json"), "{log}");
    assert!(log.contains(".zip"), "{log}");
}

#[test]
fn a_folder_and_a_file_url_are_mirrors_with_the_same_checks() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("usb").join("qasid-repo");
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 5000);
    publish(&root, &key(), &[alpha.path()]);
    let state = dir.path().join("state");
    let out_dir = dir.path().join("out");
    let out_arg = out_dir.to_str().unwrap();

    let folder = root.to_str().unwrap();
    let out = fetch(
        &state,
        &["--mirror", folder, "alpha", "--json", "--out", out_arg],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fate(&json_of(&out), folder), "ok");
    std::fs::remove_file(out_dir.join("alpha-v1.zip")).unwrap();

    let file_url = format!("file://{folder}");
    let out = fetch(&state, &["--mirror", &file_url, "alpha", "--out", out_arg]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out_dir.join("alpha-v1.zip").is_file());
    std::fs::remove_file(out_dir.join("alpha-v1.zip")).unwrap();

    // A tampered copy on the stick is caught like a lying web mirror.
    let tampered = dir.path().join("tampered");
    copy_tree(&root, &tampered);
    tamper(&bundle_path(&tampered, &key(), &alpha));
    let tampered_arg = tampered.to_str().unwrap();
    let out = fetch(
        &state,
        &[
            "--mirror",
            tampered_arg,
            "alpha",
            "--json",
            "--out",
            out_arg,
        ],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(fate(&json_of(&out), tampered_arg), "lying");
    assert!(!out_dir.join("alpha-v1.zip").exists());

    // With the good folder as well, the good copy is used (whichever folder answered the
    // index first was asked first; the tampered one, if asked, was caught).
    let out = fetch(
        &state,
        &[
            "--mirror",
            tampered_arg,
            "--mirror",
            folder,
            "alpha",
            "--json",
            "--out",
            out_arg,
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json_of(&out);
    let tampered_fate = fate(&doc, tampered_arg);
    assert!(
        ["lying", "not_needed"].contains(&tampered_fate.as_str()),
        "{tampered_fate}"
    );
    assert_eq!(doc["article"]["mirror"], folder);
}

#[test]
fn with_a_socks5_proxy_every_request_goes_through_it() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 5000);
    publish(&root, &key(), &[alpha.path()]);
    let mirror = TestMirror::start(&root, Behaviour::default());
    let proxy = Socks5::start();
    let out_dir = dir.path().join("out");
    let out = fetch(
        &dir.path().join("state"),
        &[
            "--mirror",
            &mirror.url,
            "--proxy",
            &proxy.url,
            "alpha",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let targets = proxy.targets();
    let host = mirror.addr.to_string();
    assert!(!targets.is_empty());
    assert!(targets.iter().all(|t| *t == host), "{targets:?}");
    // Index and bundle, each over a connection the proxy opened.
    assert!(mirror.log.seen().len() >= 2);
    assert!(out_dir.join("alpha-v1.zip").is_file());
}

#[test]
fn a_per_mirror_proxy_from_the_config_is_used_for_that_mirror_only() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 5000);
    publish(&root, &key(), &[alpha.path()]);
    let via_proxy = TestMirror::start(&root, Behaviour::default());
    let direct = TestMirror::start(&root, Behaviour::default());
    let proxy = Socks5::start();
    let config = dir.path().join("reader.toml");
    std::fs::write(
        &config,
        format!(
            "[[publisher]]\nkey = \"{}\"\n\n[reader]\nmirrors = [{{ url = \"{}\", proxy = \"{}\" }}, \"{}\"]\n",
            key().public().to_base64(),
            via_proxy.url,
            proxy.url,
            direct.url
        ),
    )
    .unwrap();
    let out = qasid()
        .args(["fetch", "--json", "--config"])
        .arg(&config)
        .arg("--state")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(fate(&doc, &via_proxy.url), "ok");
    assert_eq!(fate(&doc, &direct.url), "ok");
    let targets = proxy.targets();
    assert_eq!(
        targets,
        [via_proxy.addr.to_string()],
        "only that mirror's requests"
    );
    assert!(!direct.log.seen().is_empty());
}

#[test]
fn a_proxy_that_is_down_is_not_bypassed() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 500);
    publish(&root, &key(), &[alpha.path()]);
    let mirror = TestMirror::start(&root, Behaviour::default());
    let dead_proxy = closed_port_url().replace("http://", "socks5h://");
    let out = fetch(
        &dir.path().join("state"),
        &[
            "--mirror",
            &mirror.url,
            "--proxy",
            dead_proxy.trim_end_matches('/'),
            "--json",
        ],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let message = json_of(&out)["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("is not answering"), "{message}");
    assert!(
        mirror.log.seen().is_empty(),
        "no request went around the proxy"
    );
}

/// A loopback listener that answers every connection like a web server (not SOCKS5), for the
/// life of the test process's bounded run.
fn not_a_socks_proxy() -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(8) {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let _ = conn.read(&mut [0u8; 64]);
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    format!("socks5h://{addr}")
}

/// The bug: a dead proxy was reported as every mirror refusing ("SOCKS error: failed to create
/// underlying connection", once per mirror). Now the proxy is named, once, as the failure: a
/// closed port, and a port where something that is not a SOCKS5 proxy listens.
#[test]
fn a_dead_proxy_is_named_once_not_blamed_on_every_mirror() {
    let dir = TempDir::new().unwrap();
    let closed = closed_port_url()
        .replace("http://", "socks5h://")
        .trim_end_matches('/')
        .to_owned();
    for (proxy, problem) in [
        (closed, "is not answering (connection refused)"),
        (not_a_socks_proxy(), "is not a SOCKS5 proxy"),
    ] {
        let out = fetch(
            &dir.path().join("state"),
            &[
                "--mirror",
                &closed_port_url(),
                "--mirror",
                "http://mirror.example/",
                "--proxy",
                &proxy,
            ],
        );
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {err}");
        assert!(
            lines[0].starts_with(&format!("qasid: error: the proxy {proxy} {problem}")),
            "{err}"
        );
        assert!(lines[0].contains("fix --proxy"), "{err}");
        assert!(!err.contains("SOCKS error"), "{err}");
    }
}

/// With the proxy of one mirror dead and another mirror reached without it, the fetch goes on
/// and the dead proxy is a warning that names it.
#[test]
fn a_dead_per_mirror_proxy_is_a_warning_when_other_mirrors_work() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 500);
    publish(&root, &key(), &[alpha.path()]);
    let direct = TestMirror::start(&root, Behaviour::default());
    let dead = closed_port_url()
        .replace("http://", "socks5h://")
        .trim_end_matches('/')
        .to_owned();
    let config = dir.path().join("reader.toml");
    std::fs::write(
        &config,
        format!(
            "[[publisher]]\nkey = \"{}\"\n\n[reader]\nmirrors = [{{ url = \"http://mirror.example/\", proxy = \"{dead}\" }}, \"{}\"]\n",
            key().public().to_base64(),
            direct.url
        ),
    )
    .unwrap();
    let out = qasid()
        .args(["fetch", "--config"])
        .arg(&config)
        .arg("--state")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(
        err.matches(&format!("the proxy {dead} is not answering"))
            .count(),
        1,
        "{err}"
    );
}
