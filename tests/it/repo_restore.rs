//! A publisher who lost the repo folder rebuilds it from a mirror with `qasid sync --once` (the
//! store layout is the repo layout, and sync verifies every byte against the key), then keeps
//! publishing: the next index continues the chain and the mirror accepts it, where a fresh repo
//! would be refused as a rollback.

use crate::mirror_support;

use std::path::Path;

use assert_cmd::Command;
use mirror_support::{Process, WAIT};

fn qasid(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("qasid").unwrap();
    cmd.current_dir(dir)
        .env_remove("QASID_PASSPHRASE")
        .timeout(WAIT);
    cmd
}

fn seed(name: &str) -> String {
    format!("{}/seeds/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_lost_repo_is_rebuilt_from_a_mirror_and_publishing_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| qasid(d).args(args).assert().success();
    run(&["keygen", "--unencrypted", "--out", "keys"]);
    for (name, out) in [
        ("mirror-network-launch", "a.zip"),
        ("urdu-press-freedom", "b.zip"),
    ] {
        run(&[
            "bundle",
            &seed(name),
            "--key",
            "keys/publisher.key",
            "--out",
            out,
        ]);
    }
    run(&[
        "publish",
        "a.zip",
        "--repo",
        "repo",
        "--key",
        "keys/publisher.key",
    ]);
    let store = d.join("store");
    let mirror = Process::start(&[
        "mirror",
        "--listen",
        "127.0.0.1:0",
        "--store",
        store.to_str().unwrap(),
        "--publisher",
        d.join("keys/publisher.pub").to_str().unwrap(),
    ]);
    let push = |d: &Path| {
        qasid(d)
            .args(["push", "--repo", "repo", "--to", &mirror.base])
            .assert()
    };
    push(d).success();

    // Without the repo, a fresh one starts again at sequence 1: the mirror refuses it.
    std::fs::rename(d.join("repo"), d.join("lost")).unwrap();
    run(&[
        "publish",
        "b.zip",
        "--repo",
        "repo",
        "--key",
        "keys/publisher.key",
    ]);
    push(d).failure();
    std::fs::remove_dir_all(d.join("repo")).unwrap();
    std::fs::remove_dir_all(d.join("lost")).unwrap();

    // Rebuilt from the mirror, verified: the next publish is sequence 2 and is accepted.
    run(&[
        "sync",
        "--once",
        "--store",
        "repo",
        "--publisher",
        "keys/publisher.pub",
        "--upstream",
        &mirror.base,
    ]);
    let out = run(&[
        "publish",
        "b.zip",
        "--repo",
        "repo",
        "--key",
        "keys/publisher.key",
    ]);
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("signed index sequence 2"), "{text}");
    push(d).success();
    let shown = qasid(d)
        .args([
            "index",
            "show",
            "--repo",
            "store",
            "--publisher",
            "keys/publisher.pub",
        ])
        .args(["--state", "state"])
        .assert()
        .success();
    let shown = String::from_utf8_lossy(&shown.get_output().stdout).into_owned();
    assert!(
        shown.contains("mirror-network-launch") && shown.contains("urdu-press-freedom"),
        "{shown}"
    );
}
