//! The reader against real misbehaving peers on loopback, through the real binary: racing
//! (fastest wins, a fresher index within the window wins, a late one is not waited for),
//! hedging (a mirror that sends headers and stalls is overtaken), tarpits, lying mirrors
//! (tampered bundles, forged indexes) and the exit codes that tell them apart.

use crate::reader_support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reader_support::*;
use tempfile::TempDir;

/// A repo with `alpha` v1 (about 40 KB) published: (temp dir, repo root).
fn repo_with_alpha() -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 40_000);
    publish(&root, &key(), &[alpha.path()]);
    (dir, root)
}

fn mirror_args(urls: &[&str]) -> Vec<String> {
    urls.iter()
        .flat_map(|u| ["--mirror".to_owned(), u.to_string()])
        .collect()
}

fn run(
    state: &std::path::Path,
    mirrors: &[&str],
    extra: &[&str],
) -> (std::process::Output, Duration) {
    let mut args: Vec<String> = mirror_args(mirrors);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = Instant::now();
    let out = fetch(state, &args);
    (out, start.elapsed())
}

#[test]
fn the_fastest_mirror_serves_the_bundle_and_the_others_are_not_needed() {
    let (dir, root) = repo_with_alpha();
    let fast = TestMirror::start(&root, Behaviour::default());
    let slow = TestMirror::start(
        &root,
        Behaviour {
            index_delay: Duration::from_millis(150),
            ..Behaviour::default()
        },
    );
    let out_dir = dir.path().join("out");
    let (out, _) = run(
        &dir.path().join("state"),
        &[&slow.url, &fast.url],
        &["alpha", "--json", "--out", out_dir.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["article"]["mirror"], fast.url.as_str());
    assert_eq!(fate(&doc, &fast.url), "ok");
    assert_eq!(fate(&doc, &slow.url), "not_needed");
    assert_eq!(fast.log.bundle_requests().len(), 1);
    assert!(slow.log.bundle_requests().is_empty());
    assert!(out_dir.join("alpha-v1.zip").is_file());
}

#[test]
fn a_fresher_index_within_the_window_wins_and_the_older_mirror_is_stale() {
    let dir = TempDir::new().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 1000);
    let beta = make_bundle(dir.path(), &key(), "beta", 1, 1000);
    publish(&old, &key(), &[alpha.path()]);
    copy_tree(&old, &new);
    publish(&new, &key(), &[beta.path()]);
    let fast_old = TestMirror::start(&old, Behaviour::default());
    let slower_new = TestMirror::start(
        &new,
        Behaviour {
            index_delay: Duration::from_millis(100),
            ..Behaviour::default()
        },
    );
    let (out, _) = run(
        &dir.path().join("state"),
        &[&fast_old.url, &slower_new.url],
        &["--json", "--race-window", "1s"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(doc["publishers"][0]["sequence"], 2);
    let names: Vec<&str> = doc["publishers"][0]["articles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"beta"), "{names:?}");
    assert_eq!(fate(&doc, &slower_new.url), "ok");
    assert_eq!(fate(&doc, &fast_old.url), "stale");
}

#[test]
fn an_answer_after_the_window_is_not_waited_for() {
    let (dir, root) = repo_with_alpha();
    let fast = TestMirror::start(&root, Behaviour::default());
    let late = TestMirror::start(
        &root,
        Behaviour {
            index_delay: Duration::from_secs(5),
            ..Behaviour::default()
        },
    );
    let (out, took) = run(
        &dir.path().join("state"),
        &[&late.url, &fast.url],
        &["--json", "--race-window", "200ms"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let doc = json_of(&out);
    assert_eq!(fate(&doc, &fast.url), "ok");
    assert_eq!(fate(&doc, &late.url), "timed_out");
}

#[test]
fn a_mirror_that_sends_headers_and_stalls_is_overtaken_by_the_next() {
    let (dir, root) = repo_with_alpha();
    let staller = TestMirror::start(
        &root,
        Behaviour {
            stall_bundles: true,
            ..Behaviour::default()
        },
    );
    let good = TestMirror::start(
        &root,
        Behaviour {
            index_delay: Duration::from_millis(100),
            ..Behaviour::default()
        },
    );
    let out_dir = dir.path().join("out");
    let (out, took) = run(
        &dir.path().join("state"),
        &[&staller.url, &good.url],
        &[
            "alpha",
            "--json",
            "--hedge-delay",
            "300ms",
            "--timeout",
            "30s",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Index (~100 ms) + hedge delay (300 ms) + the download; the stalled request would only
    // have ended with the 30 s read timeout.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let doc = json_of(&out);
    assert_eq!(doc["article"]["mirror"], good.url.as_str());
    assert_eq!(
        staller.log.bundle_requests().len(),
        1,
        "the staller was asked first"
    );
    assert_eq!(fate(&doc, &staller.url), "not_needed");
    assert_eq!(fate(&doc, &good.url), "ok");
}

#[test]
fn tarpits_do_not_hold_the_reader_up() {
    let (dir, root) = repo_with_alpha();
    let pits: Vec<Tarpit> = (0..3).map(|_| Tarpit::start()).collect();
    let good = TestMirror::start(&root, Behaviour::default());
    let mut mirrors: Vec<&str> = pits.iter().map(|p| p.url.as_str()).collect();
    mirrors.push(&good.url);
    let out_dir = dir.path().join("out");
    let (out, took) = run(
        &dir.path().join("state"),
        &mirrors,
        &["alpha", "--json", "--out", out_dir.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let doc = json_of(&out);
    for pit in &pits {
        assert_eq!(fate(&doc, &pit.url), "timed_out");
    }
    assert_eq!(fate(&doc, &good.url), "ok");
}

#[test]
fn only_tarpits_and_closed_ports_is_a_runtime_failure() {
    let dir = TempDir::new().unwrap();
    let pit = Tarpit::start();
    let closed = closed_port_url();
    let (out, took) = run(
        &dir.path().join("state"),
        &[&pit.url, &closed],
        &["--json", "--timeout", "1s"],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let doc = json_of(&out);
    assert_eq!(doc["ok"], false);
    assert_eq!(fate(&doc, &pit.url), "timed_out");
    assert_eq!(fate(&doc, &closed), "refused");
}

#[test]
fn a_mirror_serving_a_tampered_bundle_is_lying_and_another_is_used() {
    let (dir, root) = repo_with_alpha();
    let liar = TestMirror::start(
        &root,
        Behaviour {
            tamper_bundles: true,
            ..Behaviour::default()
        },
    );
    let good = TestMirror::start(
        &root,
        Behaviour {
            index_delay: Duration::from_millis(100),
            ..Behaviour::default()
        },
    );
    let out_dir = dir.path().join("out");
    let (out, _) = run(
        &dir.path().join("state"),
        &[&liar.url, &good.url],
        &["alpha", "--json", "--out", out_dir.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(
        liar.log.bundle_requests().len(),
        1,
        "the liar was the fastest"
    );
    assert_eq!(fate(&doc, &liar.url), "lying");
    assert_eq!(fate(&doc, &good.url), "ok");
    assert_eq!(doc["article"]["mirror"], good.url.as_str());
    // The saved file is the signed one.
    qasid()
        .args(["verify"])
        .arg(out_dir.join("alpha-v1.zip"))
        .args(["--publisher", &key().public().to_base64()])
        .assert()
        .success();
}

#[test]
fn when_every_mirror_lies_nothing_is_saved_and_the_exit_code_is_3() {
    let (dir, root) = repo_with_alpha();
    let liars: Vec<TestMirror> = (0..2)
        .map(|_| {
            TestMirror::start(
                &root,
                Behaviour {
                    tamper_bundles: true,
                    ..Behaviour::default()
                },
            )
        })
        .collect();
    let out_dir = dir.path().join("out");
    let (out, _) = run(
        &dir.path().join("state"),
        &[&liars[0].url, &liars[1].url],
        &["alpha", "--json", "--out", out_dir.to_str().unwrap()],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(doc["ok"], false);
    for liar in &liars {
        assert_eq!(fate(&doc, &liar.url), "lying");
        assert_eq!(liar.log.bundle_requests().len(), 1, "a liar is asked once");
    }
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert!(
        left.is_empty(),
        "nothing unverified is left where it can be read: {left:?}"
    );
}

#[test]
fn a_forged_index_is_lying_and_never_used() {
    let (dir, root) = repo_with_alpha();
    let forged_root = dir.path().join("forged");
    copy_tree(&root, &forged_root);
    tamper(&index_path(&forged_root, &key()));
    let forger = TestMirror::start(&forged_root, Behaviour::default());
    let (out, _) = run(&dir.path().join("state"), &[&forger.url], &["--json"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(fate(&json_of(&out), &forger.url), "lying");

    let good = TestMirror::start(&root, Behaviour::default());
    let (out, _) = run(
        &dir.path().join("state"),
        &[&forger.url, &good.url],
        &["--json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(fate(&doc, &forger.url), "lying");
    assert_eq!(fate(&doc, &good.url), "ok");
    assert_eq!(doc["publishers"][0]["articles"][0]["name"], "alpha");
}

#[test]
fn the_text_report_names_every_fate_on_stderr() {
    let (dir, root) = repo_with_alpha();
    let liar = TestMirror::start(
        &root,
        Behaviour {
            tamper_bundles: true,
            ..Behaviour::default()
        },
    );
    let good = TestMirror::start(
        &root,
        Behaviour {
            index_delay: Duration::from_millis(100),
            ..Behaviour::default()
        },
    );
    let closed = closed_port_url();
    let out_dir = dir.path().join("out");
    let (out, _) = run(
        &dir.path().join("state"),
        &[&liar.url, &good.url, &closed],
        &["alpha", "--out", out_dir.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("lying       {}", liar.url)), "{err}");
    assert!(err.contains(&format!("ok          {}", good.url)), "{err}");
    assert!(err.contains(&format!("refused     {closed}")), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("alpha-v1.zip"), "{stdout}");
}

#[test]
fn a_publisher_no_mirror_carries_does_not_wait_for_tarpits() {
    let (dir, root) = repo_with_alpha();
    let good = TestMirror::start(&root, Behaviour::default());
    let pit = Tarpit::start();
    let start = Instant::now();
    let out = qasid()
        .args([
            "fetch", "--json", "--mirror", &good.url, "--mirror", &pit.url,
        ])
        .args(["--publisher", &key().public().to_base64()])
        .args(["--publisher", &other_key().public().to_base64()])
        .arg("--state")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    let took = start.elapsed();
    // The other publisher's index is nowhere: a runtime failure, reported after the listing
    // of the publisher that was found, without waiting for the tarpit's 30 s timeout (only
    // for the 5 s grace a silent mirror gets, which a slow Tor mirror needs).
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let doc = json_of(&out);
    assert_eq!(doc["publishers"][0]["articles"][0]["name"], "alpha");
    assert_eq!(doc["publishers"][1]["error"]["exit_code"], 1);
    assert_eq!(fate(&doc, &good.url), "ok");
    assert_eq!(fate(&doc, &pit.url), "timed_out");
}

#[test]
fn an_endless_bundle_is_cut_off_at_the_signed_size() {
    let (dir, root) = repo_with_alpha();
    let endless = TestMirror::start(
        &root,
        Behaviour {
            endless_bundles: true,
            ..Behaviour::default()
        },
    );
    let good = TestMirror::start(
        &root,
        Behaviour {
            index_delay: Duration::from_millis(100),
            ..Behaviour::default()
        },
    );
    let out_dir = dir.path().join("out");
    let (out, _) = run(
        &dir.path().join("state"),
        &[&endless.url, &good.url],
        &["alpha", "--json", "--out", out_dir.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(fate(&doc, &endless.url), "lying");
    assert_eq!(doc["article"]["mirror"], good.url.as_str());
    // What the endless mirror managed to write before the reader hung up: the ~40 KB the
    // index allows, plus what socket buffers absorb, not the 256 MiB it would send.
    let sent = endless
        .log
        .bundle_bytes
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < 16 << 20, "{sent} bytes were sent");
}
