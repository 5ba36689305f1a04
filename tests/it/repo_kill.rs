//! `qasid publish` killed with SIGKILL at many moments: the served folder must always hold an
//! index.json that verifies and every file it names, with no temp files in the layout.

use crate::repo_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use qasid::content_id::ContentId;
use qasid::index::layout::on_disk;
use qasid::index::Index;
use repo_support::*;
use tempfile::TempDir;

/// Deterministic incompressible bytes (xorshift), so the bundle stores them as they are.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Checks the served folder: the head verifies, every bundle it lists is complete, and the
/// layout holds only layout names.
fn check_consistent(root: &std::path::Path) -> Index {
    let k = key();
    let index = verify_fresh(root, &k, SystemTime::now()).expect("index.json must verify");
    for (_, article) in index.current() {
        let path = on_disk(root, &layout(&k).bundle(&article.bundle().sha256));
        let bytes = std::fs::read(&path).expect("a listed bundle must exist");
        assert_eq!(bytes.len() as u64, article.bundle().size);
        assert_eq!(ContentId::of_bytes(&bytes), article.bundle().sha256);
    }
    let hex = k.public().hex();
    for f in files_under(&root.join("qasid/v1")) {
        let name = f.rsplit('/').next().unwrap();
        let stem = name.split('.').next().unwrap();
        let ok = f.starts_with(&format!("publishers/{hex}/"))
            && (name == "index.json"
                || name == "publisher.pub"
                || stem.parse::<ContentId>().is_ok());
        assert!(ok, "unexpected file in the served layout: {f}");
    }
    index
}

#[test]
fn publish_killed_at_any_moment_leaves_a_consistent_served_folder() {
    let dir = TempDir::new().unwrap();
    let k = key();
    let base = dir.path().join("base");
    let small = make_bundle(dir.path(), &k, "small", 1);
    publish(&base, &k, &[small.path()], SystemTime::now()).unwrap();
    qasid::keys::write_key_pair(&dir.path().join("keys"), &k, None, false).unwrap();
    let big = make_bundle_with(dir.path(), &k, "big", 1, &[("video.bin", noise(12 << 20))]);
    let extra = make_bundle(dir.path(), &k, "extra", 1);

    let hex = k.public().hex();
    let publisher_dir = move |root: &Path| root.join(format!("qasid/v1/publishers/{hex}"));
    let count = |dir: PathBuf| std::fs::read_dir(dir).map_or(0, |r| r.count());
    let tmp_bytes = |root: &Path| -> u64 {
        std::fs::read_dir(root.join(qasid::repo::PRIVATE_DIR).join("tmp"))
            .map(|r| {
                r.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    let big_zip = layout(&k).bundle(&big.sha256());
    let pieces_before = count(publisher_dir(&base).join("pieces"));
    // Kill moments, by what the publish has visibly done so far.
    type Trigger<'a> = (&'a str, Box<dyn Fn(&Path) -> bool + 'a>);
    let triggers: Vec<Trigger> = vec![
        ("at once", Box::new(|_: &Path| true)),
        ("copy started", Box::new(|r: &Path| tmp_bytes(r) > 0)),
        (
            "copy half done",
            Box::new(|r: &Path| tmp_bytes(r) > 6 << 20),
        ),
        ("copy done", Box::new(|r: &Path| tmp_bytes(r) >= big.size())),
        (
            "bundle renamed into place",
            Box::new(|r: &Path| on_disk(r, &big_zip).exists()),
        ),
        (
            "a piece written",
            Box::new(|r: &Path| count(publisher_dir(r).join("pieces")) > pieces_before),
        ),
    ];
    let mut phases = Vec::new();
    for (step, (moment, trigger)) in triggers.iter().enumerate() {
        let root = dir.path().join(format!("run{step}"));
        copy_tree(&base, &root);
        let mut child = publish_command(&root, &dir, &[big.path(), extra.path()])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !trigger(&root) && child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        child.kill().ok(); // SIGKILL on Unix; an error means it had already finished
        child.wait().unwrap();
        let index = check_consistent(&root);
        let big_stored = on_disk(&root, &big_zip).exists();
        let phase = match index.head().sequence() {
            1 if big_stored => "bundle stored, old index",
            1 => "old index",
            2 => {
                assert_eq!(index.current().len(), 3);
                "new index"
            }
            s => panic!("unexpected sequence {s}"),
        };
        phases.push(format!("{moment} -> {phase}"));
        // The next publish cleans up after the killed one and completes.
        let status = publish_command(&root, &dir, &[big.path(), extra.path()])
            .status()
            .unwrap();
        assert!(status.success());
        let index = check_consistent(&root);
        assert_eq!(index.current().len(), 3);
        let tmp = root.join(qasid::repo::PRIVATE_DIR).join("tmp");
        assert_eq!(count(tmp), 0, "temp files cleared");
    }
    eprintln!("kills: {phases:?}");
    assert!(phases.iter().any(|p| p.ends_with("-> old index")));
}

fn publish_command(root: &std::path::Path, dir: &TempDir, bundles: &[&std::path::Path]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qasid"));
    cmd.arg("publish")
        .args(bundles)
        .arg("--repo")
        .arg(root)
        .arg("--key")
        .arg(dir.path().join("keys/publisher.key"))
        .env_remove("QASID_PASSPHRASE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}
