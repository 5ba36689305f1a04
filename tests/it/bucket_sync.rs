//! The write side of bucket stores on a real Garage cluster (three nodes, replication 3):
//! `qasid push --to s3://…` and `qasid sync --once --store s3://…`. Garage ignores conditional
//! PUTs, so these tests are what shows the `heads/` rule keeps `index.json` from rolling back
//! when writers race, that nothing half-written is ever visible, that a corrupt object under a
//! content-addressed key is replaced, and that bad credentials, a missing bucket and a plain
//! http endpoint off loopback get their one-line errors and exit codes.

use crate::garage_support::{self, Bucket as GarageBucket};
use crate::mirror_support::Process;
use crate::sync_support::{self, key, make_bundle, publish, Made};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use assert_cmd::prelude::*;
use qasid::bucket::{Access, Bucket, BucketUrl, Environment, Settings};
use qasid::index::layout::PublisherLayout;
use qasid::index::SignedHead;
use qasid::keys::SecretKey;
use qasid::limits::{BucketLimits, IndexLimits};

/// Every wait here is bounded by this.
const WAIT: Duration = Duration::from_secs(120);

fn qasid(bucket: &GarageBucket) -> Command {
    let mut cmd = Command::cargo_bin("qasid").unwrap();
    cmd.env("RUST_LOG", "warn");
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
    ] {
        cmd.env_remove(var);
    }
    bucket.envs(&mut cmd);
    cmd
}

fn push(bucket: &GarageBucket, repo: &Path, prefix: &str) -> Command {
    let mut cmd = qasid(bucket);
    cmd.args(["push", "--json", "--repo"])
        .arg(repo)
        .args(["--to", &bucket.url(prefix)]);
    cmd
}

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn ok(out: Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    json_of(&out)
}

/// The library's own client on the test bucket (node 1), for reading back what was written.
fn client(bucket: &GarageBucket, prefix: &str) -> Bucket {
    let environment = Environment {
        access_key_id: Some(bucket.var("AWS_ACCESS_KEY_ID").to_owned()),
        secret_access_key: Some(bucket.var("AWS_SECRET_ACCESS_KEY").to_owned()),
        session_token: None,
        region: Some(bucket.var("AWS_REGION").to_owned()),
        endpoint: Some(bucket.var("AWS_ENDPOINT_URL").to_owned()),
        ..Environment::default()
    };
    Bucket::new(
        &BucketUrl::parse(&bucket.url(prefix)).unwrap(),
        &Settings::default(),
        &environment,
        Access::Write,
        BucketLimits::default(),
    )
    .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A repo with `n` bundles of about `extra` bytes, published by `key`.
fn repo_with(dir: &Path, key: &SecretKey, n: usize, extra: usize) -> (PathBuf, Vec<Made>) {
    let repo = dir.join("repo");
    let made: Vec<Made> = (0..n)
        .map(|i| make_bundle(dir, key, &format!("story-{i}"), 1, extra))
        .collect();
    publish(&repo, key, &made.iter().collect::<Vec<_>>());
    (repo, made)
}

/// Every file of the publisher's layout in `repo`, by layout path (`qasid/v1/...`).
fn layout_files(repo: &Path, key: &SecretKey) -> HashMap<String, Vec<u8>> {
    let dir = sync_support::publisher_dir(repo, key);
    let base = PublisherLayout::new(key.public()).dir().to_owned();
    sync_support::files_under(&dir)
        .into_iter()
        .map(|p| {
            let relative = format!("{base}/{}", p.to_str().unwrap());
            (relative, std::fs::read(dir.join(&p)).unwrap())
        })
        .collect()
}

/// Puts `bytes` at `key` with the library's client, as any S3 tool would: a foreign or corrupt
/// object planted under one of our keys.
fn plant(bucket: &GarageBucket, key: &str, bytes: &[u8]) {
    let store = client(bucket, "");
    runtime()
        .block_on(store.put_bytes(
            key,
            bytes::Bytes::copy_from_slice(bytes),
            qasid::bucket::ObjectAttrs {
                content_type: "application/octet-stream",
                cache_control: "no-store",
            },
        ))
        .unwrap();
}

/// The sequence of the bucket's `index.json`, verified; `None` when absent.
async fn bucket_sequence(bucket: &Bucket, key: &SecretKey) -> Option<u64> {
    sequence_of(bucket, key.public()).await
}

async fn sequence_of(bucket: &Bucket, publisher: &qasid::keys::PublicKey) -> Option<u64> {
    let index = PublisherLayout::new(publisher).index();
    let bytes = bucket.get_bytes(&index, 1 << 20).await.unwrap()?;
    let head = SignedHead::verify(&bytes, publisher, &IndexLimits::default())
        .expect("a visible index.json is always a whole, authentic one");
    Some(head.head().sequence())
}

#[test]
fn push_to_an_empty_bucket_puts_every_object_byte_for_byte_with_index_json_last() {
    let bucket = garage_support::bucket("push-empty");
    let dir = tempfile::tempdir().unwrap();
    let k = key(31);
    let (repo, _) = repo_with(dir.path(), &k, 40, 2000);
    let store = client(&bucket, "site");
    let layout = PublisherLayout::new(k.public());
    let rt = runtime();
    // Polls while the push runs: whenever index.json is visible, everything it lists is there.
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let (store, done, index) = (store.clone(), done.clone(), layout.index());
        let publisher = k.public().clone();
        rt.spawn(async move {
            let mut checks = 0;
            while !done.load(Ordering::Relaxed) {
                if let Some(bytes) = store.get_bytes(&index, 1 << 20).await.unwrap() {
                    let head = SignedHead::verify(&bytes, &publisher, &IndexLimits::default())
                        .expect("index.json is whole and authentic whenever visible");
                    let l = PublisherLayout::new(&publisher);
                    for piece in head.head().log().pieces() {
                        assert!(
                            store.head(&l.piece(&piece.sha256)).await.unwrap().is_some(),
                            "index.json visible before its piece"
                        );
                    }
                    checks += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            checks
        })
    };
    let doc = ok(push(&bucket, &repo, "site").output().unwrap());
    done.store(true, Ordering::Relaxed);
    rt.block_on(poller).unwrap();
    let p = &doc["pushes"][0];
    assert_eq!(p["ok"], true, "{doc}");
    let files = layout_files(&repo, &k);
    // Every layout file, plus the head copy.
    assert_eq!(p["sent"].as_u64().unwrap(), files.len() as u64 + 1, "{doc}");
    let listed = rt.block_on(store.list("qasid/", 100_000)).unwrap();
    let by_key: HashMap<&str, &qasid::bucket::ObjectInfo> =
        listed.iter().map(|o| (o.key.as_str(), o)).collect();
    for (relative, bytes) in &files {
        let got = rt
            .block_on(store.get_bytes(relative, 1 << 30))
            .unwrap()
            .unwrap_or_else(|| panic!("{relative} missing from the bucket"));
        assert_eq!(&got[..], &bytes[..], "{relative} differs");
    }
    let index_time = by_key[layout.index().as_str()].last_modified;
    for (relative, info) in &by_key {
        assert!(
            info.last_modified <= index_time,
            "{relative} was written after index.json"
        );
    }
    // index.json is served with a short cache, bundles as immutable zips.
    let heads = by_key
        .keys()
        .filter(|k| k.contains("/heads/"))
        .collect::<Vec<_>>();
    assert_eq!(heads.len(), 1, "one head copy: {heads:?}");
}

#[test]
fn one_new_bundle_uploads_only_the_new_objects_without_listing_the_bucket() {
    let bucket = garage_support::bucket("push-delta");
    let dir = tempfile::tempdir().unwrap();
    let k = key(32);
    let (repo, _) = repo_with(dir.path(), &k, 30, 1000);
    ok(push(&bucket, &repo, "").output().unwrap());
    let new = make_bundle(dir.path(), &k, "late-story", 1, 50_000);
    publish(&repo, &k, &[&new]);
    let doc = ok(push(&bucket, &repo, "").output().unwrap());
    let p = &doc["pushes"][0];
    let bytes = p["bytes"].as_u64().unwrap();
    // The bundle, the new batch piece, publisher.pub, the head copy and index.json.
    assert!(
        bytes >= new.size && bytes < new.size + 20_000,
        "uploaded {bytes} bytes for a {}-byte bundle: {doc}",
        new.size
    );
    assert!(p["skipped"].as_u64().unwrap() >= 30, "{doc}");
    let store = client(&bucket, "");
    let rt = runtime();
    let got = rt
        .block_on(store.get_bytes(
            &PublisherLayout::new(k.public()).bundle(&new.sha256),
            1 << 30,
        ))
        .unwrap()
        .unwrap();
    assert_eq!(&got[..], &std::fs::read(&new.path).unwrap()[..]);
    assert_eq!(rt.block_on(bucket_sequence(&store, &k)), Some(2));
}

/// `rounds` racing pairs: an older and a newer state of one publisher pushed (or synced) at the
/// same time. After each pair the bucket serves the newer one; while they race, every visible
/// index.json is whole and authentic, and once a writer has finished none older than the
/// newest finished one appears.
#[test]
fn racing_writers_end_with_the_newest_index_and_never_roll_back() {
    let bucket = garage_support::bucket("race");
    let dir = tempfile::tempdir().unwrap();
    let k = key(33);
    let (older, _) = repo_with(dir.path(), &k, 5, 500);
    let store = client(&bucket, "m");
    let rt = runtime();
    let pubfile = dir.path().join("publisher.pub");
    std::fs::write(&pubfile, k.public().to_file_text()).unwrap();
    for round in 0..8u64 {
        // The newer state: the older one plus a bundle.
        let newer = dir.path().join(format!("newer-{round}"));
        let _ = std::fs::remove_dir_all(&newer);
        sync_support::copy_tree(&older, &newer);
        let b = make_bundle(dir.path(), &k, &format!("race-{round}"), 1, 500);
        let newest = publish(&newer, &k, &[&b]);
        let done = Arc::new(AtomicBool::new(false));
        let poller = {
            let (store, done, publisher) = (store.clone(), done.clone(), k.public().clone());
            rt.spawn(async move {
                let mut seen = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    if let Some(s) = sequence_of(&store, &publisher).await {
                        seen.push(s);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                seen
            })
        };
        let a = push(&bucket, &older, "m").spawn().unwrap();
        // Odd rounds race a sync (from the newer repo as a folder upstream) against the push.
        let b = if round % 2 == 0 {
            push(&bucket, &newer, "m").spawn().unwrap()
        } else {
            let mut cmd = qasid(&bucket);
            cmd.args([
                "sync",
                "--once",
                "--json",
                "--store",
                &bucket.url("m"),
                "--work",
            ])
            .arg(dir.path().join(format!("work-{round}")))
            .arg("--publisher")
            .arg(&pubfile)
            .arg("--upstream")
            .arg(format!("file://{}", newer.display()));
            cmd.spawn().unwrap()
        };
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        done.store(true, Ordering::Relaxed);
        let seen = rt.block_on(poller).unwrap();
        // The older push may lose (exit 3: the bucket is newer) or win its race; never worse.
        assert!(
            matches!(a.status.code(), Some(0 | 3)),
            "older push: {}",
            String::from_utf8_lossy(&a.stderr)
        );
        assert!(
            b.status.success(),
            "newer writer: {}",
            String::from_utf8_lossy(&b.stderr)
        );
        assert_eq!(
            rt.block_on(bucket_sequence(&store, &k)),
            Some(newest),
            "round {round}: the bucket must end with the newest index (seen {seen:?})"
        );
        // The next round races from where this one ended.
        let _ = std::fs::remove_dir_all(&older);
        sync_support::copy_tree(&newer, &older);
    }
}

#[test]
fn a_corrupt_object_under_a_content_addressed_key_is_replaced_by_sync() {
    let bucket = garage_support::bucket("corrupt");
    let dir = tempfile::tempdir().unwrap();
    let k = key(34);
    let (repo, made) = repo_with(dir.path(), &k, 3, 3000);
    ok(push(&bucket, &repo, "").output().unwrap());
    let layout = PublisherLayout::new(k.public());
    let victim = layout.bundle(&made[1].sha256);
    let original = std::fs::read(&made[1].path).unwrap();
    // Same size, other bytes: only the ETag tells.
    let mut corrupt = original.clone();
    corrupt[100] ^= 0xff;
    plant(&bucket, &victim, &corrupt);
    let truncated = layout.bundle(&made[2].sha256);
    plant(&bucket, &truncated, b"not a zip");
    let pubfile = dir.path().join("publisher.pub");
    std::fs::write(&pubfile, k.public().to_file_text()).unwrap();
    let mut sync = qasid(&bucket);
    sync.args([
        "sync",
        "--once",
        "--json",
        "--store",
        &bucket.url(""),
        "--work",
    ])
    .arg(dir.path().join("work"))
    .arg("--publisher")
    .arg(&pubfile)
    .arg("--upstream")
    .arg(format!("file://{}", repo.display()));
    let doc = ok(sync.output().unwrap());
    assert_eq!(doc["bucket"]["uploaded"], 2, "{doc}");
    let store = client(&bucket, "");
    let rt = runtime();
    for (key, made) in [(&victim, &made[1]), (&truncated, &made[2])] {
        let got = rt.block_on(store.get_bytes(key, 1 << 30)).unwrap().unwrap();
        assert_eq!(&got[..], &std::fs::read(&made.path).unwrap()[..], "{key}");
    }
    // push --check-bucket finds and replaces one too.
    plant(&bucket, &victim, &corrupt);
    let doc = ok(push(&bucket, &repo, "")
        .arg("--check-bucket")
        .output()
        .unwrap());
    assert_eq!(doc["pushes"][0]["sent"], 1, "{doc}");
    let got = rt
        .block_on(store.get_bytes(&victim, 1 << 30))
        .unwrap()
        .unwrap();
    assert_eq!(&got[..], &original[..]);
}

#[test]
fn a_foreign_index_json_is_replaced_and_a_newer_one_is_never_overwritten() {
    let bucket = garage_support::bucket("foreign");
    let dir = tempfile::tempdir().unwrap();
    let k = key(35);
    let (repo, _) = repo_with(dir.path(), &k, 2, 100);
    let index = PublisherLayout::new(k.public()).index();
    plant(&bucket, &index, b"<html>parked domain</html>");
    ok(push(&bucket, &repo, "").output().unwrap());
    let store = client(&bucket, "");
    let rt = runtime();
    assert_eq!(rt.block_on(bucket_sequence(&store, &k)), Some(1));
    // A newer state in the bucket, then the older repo pushed again: refused, exit 3.
    let newer = dir.path().join("newer");
    sync_support::copy_tree(&repo, &newer);
    let b = make_bundle(dir.path(), &k, "later", 1, 100);
    publish(&newer, &k, &[&b]);
    ok(push(&bucket, &newer, "").output().unwrap());
    let out = push(&bucket, &repo, "").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let doc = json_of(&out);
    assert!(
        doc["pushes"][0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("newer index"),
        "{doc}"
    );
    assert_eq!(rt.block_on(bucket_sequence(&store, &k)), Some(2));
}

/// A failed command's exit code, and the one line that names the problem.
fn one_line_error(out: &Output, code: i32, needle: &str) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(code), "output: {text}");
    assert!(
        text.lines().any(|l| l.contains(needle)),
        "expected {needle:?} on one line of: {text}"
    );
}

#[test]
fn wrong_credentials_missing_bucket_and_plain_http_off_loopback_are_one_line_errors() {
    let bucket = garage_support::bucket("errors");
    let dir = tempfile::tempdir().unwrap();
    let k = key(36);
    let (repo, _) = repo_with(dir.path(), &k, 1, 100);
    let started = Instant::now();

    let out = push(&bucket, &repo, "")
        .env("AWS_SECRET_ACCESS_KEY", "0".repeat(64))
        .output()
        .unwrap();
    let doc = json_of(&out);
    assert_eq!(out.status.code(), Some(1));
    let message = doc["pushes"][0]["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("refused the credentials"), "{message}");

    let mut cmd = qasid(&bucket);
    let out = cmd
        .args(["push", "--repo"])
        .arg(&repo)
        .args(["--to", "s3://no-such-bucket-qasid/site"])
        .output()
        .unwrap();
    one_line_error(&out, 1, "does not exist");

    let out = push(&bucket, &repo, "")
        .env("AWS_ENDPOINT_URL", "http://s3.example.org:3900")
        .output()
        .unwrap();
    one_line_error(&out, 2, "only on loopback");

    let out = push(&bucket, &repo, "")
        .env_remove("AWS_ACCESS_KEY_ID")
        .output()
        .unwrap();
    one_line_error(&out, 2, "no credentials");

    // An endpoint that is not listening: refused fast, with what to check.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let out = push(&bucket, &repo, "")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    one_line_error(&out, 1, "cannot reach");
    assert!(started.elapsed() < WAIT);

    // Nothing was written by any of them.
    let store = client(&bucket, "");
    let listed = runtime().block_on(store.list("qasid/", 1000)).unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

#[test]
fn a_bundle_over_the_multipart_threshold_goes_up_in_parts_with_its_chunk_list_and_is_recognised() {
    let bucket = garage_support::bucket("multipart");
    let dir = tempfile::tempdir().unwrap();
    let k = key(37);
    let limit = BucketLimits::default().multipart_threshold as usize;
    // Over the multipart threshold, so over the chunk-list threshold (1 MiB) too.
    let (repo, made) = repo_with(dir.path(), &k, 1, limit + (1 << 20));
    assert!(made[0].size > limit as u64);
    let doc = ok(push(&bucket, &repo, "big").output().unwrap());
    assert_eq!(doc["pushes"][0]["ok"], true, "{doc}");
    let files = layout_files(&repo, &k);
    assert!(
        files.keys().any(|k| k.contains("/chunks/")),
        "the repo has a chunk list: {:?}",
        files.keys()
    );
    let store = client(&bucket, "big");
    let rt = runtime();
    for (relative, bytes) in &files {
        let got = rt
            .block_on(store.get_bytes(relative, 1 << 30))
            .unwrap()
            .unwrap_or_else(|| panic!("{relative} missing"));
        assert_eq!(&got[..], &bytes[..], "{relative} differs");
    }
    let zip = PublisherLayout::new(k.public()).bundle(&made[0].sha256);
    let etag = rt
        .block_on(store.head(&zip))
        .unwrap()
        .unwrap()
        .etag
        .unwrap();
    assert!(etag.ends_with("-2"), "uploaded in two parts: {etag}");
    // Checking the bucket recognises every object, the multipart one included: nothing sent.
    let doc = ok(push(&bucket, &repo, "big")
        .arg("--check-bucket")
        .output()
        .unwrap());
    assert_eq!(doc["pushes"][0]["sent"], 0, "{doc}");
}

/// A `qasid mirror --store s3://…` front end (killed on drop) with the bucket's variables.
fn front_end(bucket: &GarageBucket, prefix: &str, work: &Path, publisher: &Path) -> Process {
    Process::start_env(
        &[
            "mirror",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &bucket.url(prefix),
            "--work",
            work.to_str().unwrap(),
            "--publisher",
            publisher.to_str().unwrap(),
        ],
        &bucket.env,
    )
}

#[test]
fn a_push_to_a_front_end_lands_in_its_bucket() {
    let bucket = garage_support::bucket("front-push");
    let dir = tempfile::tempdir().unwrap();
    let k = key(38);
    let (repo, _) = repo_with(dir.path(), &k, 3, 500);
    let pubfile = dir.path().join("publisher.pub");
    std::fs::write(&pubfile, k.public().to_file_text()).unwrap();
    let front = front_end(&bucket, "fe", &dir.path().join("work"), &pubfile);
    let mut cmd = Command::cargo_bin("qasid").unwrap();
    let out = cmd
        .args(["push", "--json", "--repo"])
        .arg(&repo)
        .args(["--to", &format!("{}/", front.base)])
        .output()
        .unwrap();
    let doc = ok(out);
    assert_eq!(doc["pushes"][0]["ok"], true, "{doc}");
    let store = client(&bucket, "fe");
    let rt = runtime();
    assert_eq!(rt.block_on(bucket_sequence(&store, &k)), Some(1));
    for (relative, bytes) in layout_files(&repo, &k) {
        let got = rt
            .block_on(store.get_bytes(&relative, 1 << 30))
            .unwrap()
            .unwrap_or_else(|| panic!("{relative} is not in the bucket"));
        assert_eq!(&got[..], &bytes[..], "{relative} differs");
    }
}

/// A mirror note of `key`, valid for a day, as a repo holds it (one URI and a newline); with
/// `forger`, the signature is the forger's (over a note of its own) instead of `key`'s.
fn note_text(key: &SecretKey, forger: Option<&SecretKey>, sequence: u64, url: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let note = |key: &SecretKey| qasid::note::Note {
        publisher: key.public().id(),
        sequence,
        expires: now + 86400,
        mirrors: vec![qasid::note::NoteMirror::parse(url).unwrap()],
    };
    let signed = note(key).sign(key).unwrap();
    let Some(forger) = forger else {
        return format!("{}\n", signed.to_uri());
    };
    let mut bytes = signed.as_bytes().to_vec();
    let theirs = note(forger).sign(forger).unwrap();
    let (at, from) = (bytes.len() - 64, theirs.as_bytes().len() - 64);
    bytes[at..].copy_from_slice(&theirs.as_bytes()[from..]);
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &bytes);
    format!("qasid:1:{encoded}\n")
}

#[test]
fn push_uploads_the_verified_mirror_note_never_an_older_or_forged_one() {
    let bucket = garage_support::bucket("note");
    let dir = tempfile::tempdir().unwrap();
    let k = key(39);
    let (repo, _) = repo_with(dir.path(), &k, 1, 100);
    let relative = PublisherLayout::new(k.public()).note();
    let in_repo = repo.join(&relative);
    let store = client(&bucket, "");
    let rt = runtime();
    let held = || {
        rt.block_on(store.get_bytes(&relative, 1 << 16))
            .unwrap()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    };
    // Uploaded with the index.
    let first = note_text(&k, None, 10, "https://one.example/");
    std::fs::write(&in_repo, &first).unwrap();
    ok(push(&bucket, &repo, "").output().unwrap());
    assert_eq!(held().as_deref(), Some(first.as_str()));
    // An older note in the repo never replaces the bucket's newer one.
    std::fs::write(&in_repo, note_text(&k, None, 5, "https://old.example/")).unwrap();
    ok(push(&bucket, &repo, "").output().unwrap());
    assert_eq!(held().as_deref(), Some(first.as_str()));
    // A foreign object under the note's key is replaced by the newer note.
    plant(&bucket, &relative, b"not a note");
    let newer = note_text(&k, None, 20, "https://two.example/");
    std::fs::write(&in_repo, &newer).unwrap();
    ok(push(&bucket, &repo, "").output().unwrap());
    assert_eq!(held().as_deref(), Some(newer.as_str()));
    // A note signed by another key is refused before anything is uploaded: exit 3.
    let thief = key(40);
    std::fs::write(
        &in_repo,
        note_text(&k, Some(&thief), 99, "https://evil.example/"),
    )
    .unwrap();
    let out = push(&bucket, &repo, "").output().unwrap();
    one_line_error(&out, 3, "note");
    assert_eq!(held().as_deref(), Some(newer.as_str()));
    // A push through a front end over the bucket carries the note into the bucket too.
    let pubfile = dir.path().join("publisher.pub");
    std::fs::write(&pubfile, k.public().to_file_text()).unwrap();
    let front = front_end(&bucket, "", &dir.path().join("work"), &pubfile);
    let latest = note_text(&k, None, 30, "https://three.example/");
    std::fs::write(&in_repo, &latest).unwrap();
    let out = Command::cargo_bin("qasid")
        .unwrap()
        .args(["push", "--json", "--repo"])
        .arg(&repo)
        .args(["--to", &format!("{}/", front.base)])
        .output()
        .unwrap();
    assert_eq!(ok(out)["pushes"][0]["ok"], true);
    assert_eq!(held().as_deref(), Some(latest.as_str()));
}

#[test]
fn status_of_a_bucket_store_reports_what_it_holds_verified_with_the_usual_exit_codes() {
    let bucket = garage_support::bucket("status");
    let dir = tempfile::tempdir().unwrap();
    let k = key(41);
    let (repo, _) = repo_with(dir.path(), &k, 2, 100);
    let note = note_text(&k, None, 7, "https://one.example/");
    std::fs::write(repo.join(PublisherLayout::new(k.public()).note()), &note).unwrap();
    ok(push(&bucket, &repo, "site").output().unwrap());
    let status = |bucket: &GarageBucket, json: bool| {
        let mut cmd = qasid(bucket);
        cmd.args(["status", "--store", &bucket.url("site")]);
        if json {
            cmd.arg("--json");
        }
        cmd
    };
    let doc = ok(status(&bucket, true).output().unwrap());
    let files = layout_files(&repo, &k);
    let count = |suffix: &str| files.keys().filter(|f| f.ends_with(suffix)).count();
    let p = &doc["publishers"][0];
    assert_eq!(doc["publishers"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(p["publisher"]["key"], k.public().to_base64(), "{doc}");
    assert_eq!(p["index"]["sequence"], 1, "{doc}");
    assert_eq!(p["bundles"], count(".zip"), "{doc}");
    assert_eq!(p["minisigs"], count(".zip.minisig"), "{doc}");
    assert_eq!(
        p["pieces"],
        files.keys().filter(|f| f.contains("/pieces/")).count()
    );
    assert_eq!(
        p["heads"],
        serde_json::json!([{"sequence": 1, "verified": true}])
    );
    assert!(p.get("error").is_none(), "{doc}");
    assert_eq!(p["note"]["verified"], true, "{doc}");
    assert_eq!(p["note"]["sequence"], 7, "{doc}");
    assert_eq!(p["note"]["expired"], false, "{doc}");
    let out = status(&bucket, false).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("index 1 issued") && text.contains("(verified)"),
        "{text}"
    );
    assert!(text.contains("note sequence 7"), "{text}");

    // No credentials: usage (2); wrong ones or a missing bucket: runtime (1).
    let out = status(&bucket, false)
        .env_remove("AWS_ACCESS_KEY_ID")
        .output()
        .unwrap();
    one_line_error(&out, 2, "no credentials");
    let out = status(&bucket, false)
        .env("AWS_SECRET_ACCESS_KEY", "0".repeat(64))
        .output()
        .unwrap();
    one_line_error(&out, 1, "refused the credentials");
    let out = qasid(&bucket)
        .args(["status", "--store", "s3://no-such-bucket-qasid/site"])
        .output()
        .unwrap();
    one_line_error(&out, 1, "does not exist");

    // A note that does not verify: reported, and a verification failure (3).
    let note_key = format!("site/{}", PublisherLayout::new(k.public()).note());
    plant(&bucket, &note_key, b"qasid:1:AAAA\n");
    let out = status(&bucket, false).output().unwrap();
    one_line_error(&out, 3, "the note does not verify");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("note FAILS VERIFICATION"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // An index.json signed by another key: reported, and a verification failure (3).
    let thief = key(42);
    let (forged_repo, _) = repo_with(&dir.path().join("thief"), &thief, 1, 100);
    let forged =
        std::fs::read(forged_repo.join(PublisherLayout::new(thief.public()).index())).unwrap();
    plant(
        &bucket,
        &format!("site/{}", PublisherLayout::new(k.public()).index()),
        &forged,
    );
    let out = status(&bucket, true).output().unwrap();
    one_line_error(&out, 3, "does not verify");
    let doc = json_of(&out);
    assert_eq!(doc["ok"], false, "{doc}");
    assert!(doc["publishers"][0]["error"].is_string(), "{doc}");
    assert_eq!(doc["publishers"][0]["heads"][0]["verified"], true, "{doc}");
}

#[test]
fn an_aws_profile_alone_reaches_the_bucket_the_variables_win_and_a_wrong_name_is_a_usage_error() {
    let bucket = garage_support::bucket("profile");
    let dir = tempfile::tempdir().unwrap();
    let k = key(43);
    let (repo, _) = repo_with(dir.path(), &k, 1, 100);
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    let (id, secret) = (
        bucket.var("AWS_ACCESS_KEY_ID"),
        bucket.var("AWS_SECRET_ACCESS_KEY"),
    );
    let credentials = format!(
        "# written by the test\n[garage]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n"
    );
    let config = format!(
        "[default]\nregion = us-east-1\n\n[profile garage]\nregion = {}\nendpoint_url = {}\ns3 =\n  addressing_style = path\n",
        bucket.var("AWS_REGION"),
        bucket.var("AWS_ENDPOINT_URL")
    );
    std::fs::write(home.join(".aws/credentials"), &credentials).unwrap();
    std::fs::write(home.join(".aws/config"), &config).unwrap();
    // No AWS_* variable at all: only HOME's files.
    let bare = || {
        let mut cmd = Command::cargo_bin("qasid").unwrap();
        for (var, _) in std::env::vars() {
            if var.starts_with("AWS_") {
                cmd.env_remove(var);
            }
        }
        cmd.env("HOME", &home).env("RUST_LOG", "warn");
        cmd
    };
    let push_with = |cmd: &mut Command, prefix: &str| {
        cmd.args(["push", "--json", "--repo"])
            .arg(&repo)
            .args(["--to", &bucket.url(prefix)])
            .output()
            .unwrap()
    };
    ok(push_with(bare().env("AWS_PROFILE", "garage"), "p"));
    let store = client(&bucket, "p");
    assert_eq!(runtime().block_on(bucket_sequence(&store, &k)), Some(1));
    let status = bare()
        .env("AWS_PROFILE", "garage")
        .args(["status", "--json", "--store", &bucket.url("p")])
        .output()
        .unwrap();
    assert_eq!(ok(status)["publishers"][0]["index"]["sequence"], 1);

    // A profile that neither file has: usage (2), naming it.
    let out = push_with(bare().env("AWS_PROFILE", "nope"), "p");
    one_line_error(&out, 2, "AWS profile \\\"nope\\\" (AWS_PROFILE) is not in");
    // The variables win over the profile: a wrong secret there is used, and refused.
    let out = push_with(
        bare()
            .env("AWS_PROFILE", "garage")
            .env("AWS_ACCESS_KEY_ID", id)
            .env("AWS_SECRET_ACCESS_KEY", "0".repeat(64)),
        "p",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        json_of(&out)["pushes"][0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refused the credentials"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Files named by AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE, the default profile.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(
        elsewhere.join("creds"),
        credentials.replace("[garage]", "[default]"),
    )
    .unwrap();
    std::fs::write(
        elsewhere.join("conf"),
        config
            .replace("[default]\nregion = us-east-1\n", "")
            .replace("[profile garage]", "[default]"),
    )
    .unwrap();
    let out = push_with(
        bare()
            .env("AWS_SHARED_CREDENTIALS_FILE", elsewhere.join("creds"))
            .env("AWS_CONFIG_FILE", elsewhere.join("conf")),
        "q",
    );
    ok(out);
    // A malformed file: usage (2), naming the file and the line.
    std::fs::write(home.join(".aws/config"), "[default]\nregion\n").unwrap();
    let out = push_with(&mut bare(), "p");
    one_line_error(&out, 2, ".aws/config line 2");
    // Nothing at all: no credentials (2).
    std::fs::remove_dir_all(home.join(".aws")).unwrap();
    let out = push_with(&mut bare(), "p");
    one_line_error(&out, 2, "no credentials");
}
