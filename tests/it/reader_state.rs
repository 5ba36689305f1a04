//! What the reader remembers between runs, through the real binary and real loopback peers:
//! rollback refusal (the highest sequence seen persists), equivocation, expired indexes,
//! mirrors learned from a signed index, resuming interrupted downloads with `Range`, article
//! versions, and `qasid read NAME`.

use crate::reader_support;

use std::time::{Duration, SystemTime};

use reader_support::*;
use tempfile::TempDir;

#[test]
fn an_older_index_is_refused_as_rollback_in_a_later_run() {
    let dir = TempDir::new().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 1000);
    let beta = make_bundle(dir.path(), &key(), "beta", 1, 1000);
    publish(&old, &key(), &[alpha.path()]);
    copy_tree(&old, &new);
    publish(&new, &key(), &[beta.path()]);
    let state = dir.path().join("state");
    let fresh = TestMirror::start(&new, Behaviour::default());
    let out = fetch(&state, &["--mirror", &fresh.url, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json_of(&out)["publishers"][0]["sequence"], 2);
    drop(fresh);

    // A later run that can only reach a mirror replaying sequence 1.
    let replay = TestMirror::start(&old, Behaviour::default());
    let out = fetch(&state, &["--mirror", &replay.url, "--json"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(fate(&doc, &replay.url), "stale");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rollback"),
        "{doc:#}"
    );

    // With an honest mirror too, the run works and the replaying one is still reported.
    let fresh = TestMirror::start(&new, Behaviour::default());
    let out = fetch(
        &state,
        &["--mirror", &replay.url, "--mirror", &fresh.url, "--json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(fate(&doc, &replay.url), "stale");
    assert_eq!(fate(&doc, &fresh.url), "ok");
}

#[test]
fn two_histories_signed_by_the_publisher_are_equivocation() {
    let dir = TempDir::new().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 500);
    publish(&a, &key(), &[alpha.path()]);
    copy_tree(&a, &b);
    publish(
        &a,
        &key(),
        &[make_bundle(dir.path(), &key(), "beta", 1, 500).path()],
    );
    publish(
        &b,
        &key(),
        &[make_bundle(dir.path(), &key(), "gamma", 1, 500).path()],
    );
    let (ma, mb) = (
        TestMirror::start(&a, Behaviour::default()),
        TestMirror::start(&b, Behaviour::default()),
    );
    let state = dir.path().join("state");
    let out = fetch(&state, &["--mirror", &ma.url, "--mirror", &mb.url]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("EQUIVOCATION"), "{}", stderr(&out));
    assert!(
        std::fs::read_dir(state.join("evidence")).unwrap().count() > 0,
        "both signed indexes are kept as evidence"
    );
}

#[test]
fn an_expired_index_is_used_with_a_loud_warning() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 500);
    let ten_days_ago = SystemTime::now() - Duration::from_secs(10 * 86400);
    publish_at(&root, &key(), &[alpha.path()], None, ten_days_ago, WEEK);
    let mirror = TestMirror::start(&root, Behaviour::default());
    let state = dir.path().join("state");
    let out = fetch(&state, &["--mirror", &mirror.url]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("WARNING: STALE INDEX"),
        "{}",
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("alpha"));

    let out = fetch(
        &state,
        &["--mirror", &mirror.url, "--json", "alpha", "--out"],
    );
    assert_eq!(code(&out), 2, "--out needs a value: {}", stderr(&out));
    let out_dir = dir.path().join("out");
    let out = fetch(
        &state,
        &[
            "--mirror",
            &mirror.url,
            "--json",
            "alpha",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(doc["publishers"][0]["expired"], true);
    assert!(doc["warnings"][0].as_str().unwrap().contains("STALE INDEX"));
}

#[test]
fn mirrors_learned_from_the_signed_index_are_tried_next_time() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    // The learned mirror must exist before publishing, to put its URL in the index.
    let learned = TestMirror::start(&root, Behaviour::default());
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 2000);
    publish_at(
        &root,
        &key(),
        &[alpha.path()],
        Some(&[&learned.url]),
        SystemTime::now(),
        WEEK,
    );
    let state = dir.path().join("state");
    let first = TestMirror::start(&root, Behaviour::default());
    let out = fetch(&state, &["--mirror", &first.url]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let known = std::fs::read_to_string(state.join("known-mirrors.txt")).unwrap();
    assert!(known.contains(&learned.url), "{known}");
    let learned_before = learned.log.seen().len();

    // Next run: the given mirror is gone (blocked); the learned one delivers.
    let gone = first.url.clone();
    drop(first);
    let out_dir = dir.path().join("out");
    let out = fetch(
        &state,
        &[
            "--mirror",
            &gone,
            "alpha",
            "--json",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(doc["article"]["mirror"], learned.url.as_str());
    let report = doc["mirrors"].as_array().unwrap();
    assert_eq!(
        report[0]["mirror"],
        gone.as_str(),
        "given mirrors come first"
    );
    assert_eq!(report[0]["fate"], "refused");
    assert_eq!(report[1]["mirror"], learned.url.as_str());
    assert_eq!(report[1]["origin"], "known");
    assert!(learned.log.seen().len() > learned_before);
}

#[test]
fn a_download_cut_half_way_resumes_with_range() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let big = make_bundle(dir.path(), &key(), "big", 1, 600_000);
    publish(&root, &key(), &[big.path()]);
    let size = big.size();
    let mirror = TestMirror::start(
        &root,
        Behaviour {
            cut_bundle_at: Some(size / 2),
            cut_times: 1,
            ranges: true,
            ..Behaviour::default()
        },
    );
    let out_dir = dir.path().join("out");
    let out = fetch(
        &dir.path().join("state"),
        &[
            "--mirror",
            &mirror.url,
            "big",
            "--json",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(doc["article"]["resumed_from"], size / 2);
    let requests = mirror.log.bundle_requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].range, None);
    assert_eq!(
        requests[1].range.as_deref(),
        Some(&*format!("bytes={}-", size / 2))
    );
    let sent = mirror
        .log
        .bundle_bytes
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        sent < 2 * size,
        "sent {sent} bytes for a {size}-byte bundle"
    );
    assert_eq!(
        std::fs::read(out_dir.join("big-v1.zip")).unwrap(),
        std::fs::read(big.path()).unwrap()
    );
}

#[test]
fn an_interrupted_download_resumes_in_the_next_run() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let big = make_bundle(dir.path(), &key(), "big", 1, 600_000);
    publish(&root, &key(), &[big.path()]);
    let size = big.size();
    let state = dir.path().join("state");
    let out_dir = dir.path().join("out");
    // Every request is cut after 100 KB, and Range is not honoured: the run gives up after a
    // few tries, keeping what it got.
    let cutting = TestMirror::start(
        &root,
        Behaviour {
            cut_bundle_at: Some(100_000),
            cut_times: usize::MAX,
            ..Behaviour::default()
        },
    );
    let out = fetch(
        &state,
        &[
            "--mirror",
            &cutting.url,
            "big",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let partial = state.join("partial").join(format!("{}.part", big.sha256()));
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), 100_000);
    assert!(!out_dir.join("big-v1.zip").exists());
    drop(cutting);

    let good = TestMirror::start(
        &root,
        Behaviour {
            ranges: true,
            ..Behaviour::default()
        },
    );
    let out = fetch(
        &state,
        &[
            "--mirror",
            &good.url,
            "big",
            "--json",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json_of(&out)["article"]["resumed_from"], 100_000);
    let requests = good.log.bundle_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].range.as_deref(), Some("bytes=100000-"));
    assert_eq!(
        good.log
            .bundle_bytes
            .load(std::sync::atomic::Ordering::SeqCst),
        size - 100_000
    );
    assert!(
        !partial.exists(),
        "the partial is gone once the bundle is saved"
    );
}

#[test]
fn a_bad_partial_costs_a_fresh_download_never_a_bad_file() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 50_000);
    publish(&root, &key(), &[alpha.path()]);
    let state = dir.path().join("state");
    let partial_dir = state.join("partial");
    std::fs::create_dir_all(&partial_dir).unwrap();
    std::fs::write(
        partial_dir.join(format!("{}.part", alpha.sha256())),
        vec![0u8; 20_000],
    )
    .unwrap();
    let mirror = TestMirror::start(
        &root,
        Behaviour {
            ranges: true,
            ..Behaviour::default()
        },
    );
    let out_dir = dir.path().join("out");
    let out = fetch(
        &state,
        &[
            "--mirror",
            &mirror.url,
            "alpha",
            "--json",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let requests = mirror.log.bundle_requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].range.as_deref(), Some("bytes=20000-"));
    assert_eq!(
        requests[1].range, None,
        "after the mismatch, from the start"
    );
    assert_eq!(
        fate(&json_of(&out), &mirror.url),
        "ok",
        "not the mirror's fault"
    );
    assert_eq!(
        std::fs::read(out_dir.join("alpha-v1.zip")).unwrap(),
        std::fs::read(alpha.path()).unwrap()
    );
}

#[test]
fn versions_extraction_and_read_by_name() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let v1 = make_bundle(dir.path(), &key(), "alpha", 1, 500);
    let v2 = make_bundle(dir.path(), &key(), "alpha", 2, 500);
    publish(&root, &key(), &[v1.path()]);
    publish(&root, &key(), &[v2.path()]);
    let mirror = TestMirror::start(&root, Behaviour::default());
    let state = dir.path().join("state");
    let out_dir = dir.path().join("out");
    let out_arg = out_dir.to_str().unwrap();

    let out = fetch(
        &state,
        &[
            "--mirror",
            &mirror.url,
            "alpha",
            "--out",
            out_arg,
            "--extract",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out_dir.join("alpha-v2.zip").is_file());
    assert!(out_dir.join("alpha-v2").join("article.md").is_file());

    let out = fetch(
        &state,
        &["--mirror", &mirror.url, "alpha@1", "--out", out_arg],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out_dir.join("alpha-v1.zip").is_file());

    // Again: the verified copy is kept, the mirror is not asked for it.
    let before = mirror.log.bundle_requests().len();
    let out = fetch(
        &state,
        &["--mirror", &mirror.url, "alpha@1", "--out", out_arg],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mirror.log.bundle_requests().len(), before);

    for missing in ["alpha@3", "nosuch"] {
        let out = fetch(
            &state,
            &["--mirror", &mirror.url, missing, "--out", out_arg],
        );
        assert_eq!(code(&out), 2, "{missing}: {}", stderr(&out));
    }
    let out = fetch(&state, &["--mirror", &mirror.url, "Not/A/Name"]);
    assert_eq!(code(&out), 2);

    let out = qasid()
        .args(["read", "alpha", "--mirror", &mirror.url, "--width", "60"])
        .args(["--publisher", &key().public().to_base64(), "--state"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Report alpha (v2)"), "{text}");
    assert!(text.contains("-- verified: signed by publisher"), "{text}");
    assert!(state.join("articles").join("alpha-v2.zip").is_file());

    // A bundle file is still read offline, exactly as before.
    qasid()
        .arg("read")
        .arg(v1.path())
        .args(["--publisher", &key().public().to_base64()])
        .assert()
        .success()
        .stdout(predicates::str::contains("Report alpha (v1)"));
}
