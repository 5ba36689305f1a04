//! `qasid publish` and `qasid index show` as users run them: idempotence, refresh, retract,
//! refusals with their exit codes, the lock, and never clobbering an index that does not verify.

use crate::repo_support;

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use qasid::content_id::ContentId;
use qasid::index::layout::on_disk;
use qasid::index::IndexError;
use qasid::repo::{RepoError, PRIVATE_DIR};
use repo_support::*;
use tempfile::TempDir;

/// A folder with the publisher's key files and two bundles.
struct Setup {
    dir: TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        qasid::keys::write_key_pair(&dir.path().join("keys"), &key(), None, false).unwrap();
        Self { dir }
    }

    fn path(&self, p: &str) -> std::path::PathBuf {
        self.dir.path().join(p)
    }

    fn qasid(&self) -> Command {
        let mut cmd = Command::cargo_bin("qasid").unwrap();
        cmd.current_dir(self.dir.path())
            .env_remove("QASID_PASSPHRASE");
        cmd
    }

    fn publish(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        self.qasid()
            .arg("publish")
            .args(args)
            .args(["--repo", "repo", "--key", "keys/publisher.key"])
            .assert()
    }

    fn show(&self, extra: &[&str]) -> assert_cmd::assert::Assert {
        self.qasid()
            .args([
                "index",
                "show",
                "--repo",
                "repo",
                "--publisher",
                "keys/publisher.pub",
            ])
            .args(["--state", "state"])
            .args(extra)
            .assert()
    }

    fn index_bytes(&self) -> Vec<u8> {
        fs::read(index_path(&self.path("repo"), &key())).unwrap()
    }
}

fn bundle_in(s: &Setup, name: &str, version: u64) -> String {
    let b = make_bundle(s.dir.path(), &key(), name, version);
    b.path().file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn publish_then_show_lists_the_article_with_its_hash() {
    let s = Setup::new();
    let b = bundle_in(&s, "alpha", 1);
    s.publish(&[&b, "--mirror", "https://mirror.example/qasid"])
        .success()
        .stdout(predicate::str::contains("added     alpha v1"))
        .stdout(predicate::str::contains("signed index sequence 1"));
    let sha = ContentId::of_bytes(&fs::read(s.path(&b)).unwrap());
    s.show(&[])
        .success()
        .stdout(predicate::str::contains("sequence:  1"))
        .stdout(predicate::str::contains(
            "mirror:    https://mirror.example/qasid/",
        ))
        .stdout(predicate::str::contains(format!(
            "alpha v1  2026-02-14  en  {sha}"
        )));
    let out = s
        .show(&["--json", "--all"])
        .success()
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["current"][0]["sha256"], sha.to_string());
    assert_eq!(doc["history"][0]["current"], true);
    // The bundle and its minisig are stored by hash beside the index.
    let root = s.path("repo");
    assert!(on_disk(&root, &layout(&key()).bundle(&sha)).is_file());
    assert!(on_disk(&root, &layout(&key()).minisig(&sha)).is_file());
    assert!(on_disk(&root, &layout(&key()).publisher_pub()).is_file());
}

#[test]
fn publishing_the_same_bundle_again_signs_nothing() {
    let s = Setup::new();
    let b = bundle_in(&s, "alpha", 1);
    s.publish(&[&b]).success();
    let before = s.index_bytes();
    s.publish(&[&b])
        .success()
        .stdout(predicate::str::contains("unchanged alpha v1"))
        .stdout(predicate::str::contains("nothing to publish"));
    assert_eq!(s.index_bytes(), before, "index.json must not be re-signed");
}

#[test]
fn refresh_re_signs_the_same_content_with_the_next_sequence() {
    let s = Setup::new();
    let b = bundle_in(&s, "alpha", 1);
    s.publish(&[&b]).success();
    let root = s.path("repo");
    let before = verify_fresh(&root, &key(), t0()).unwrap();
    s.publish(&["--refresh", "--expires", "30d"])
        .success()
        .stdout(predicate::str::contains("signed index sequence 2"))
        .stdout(predicate::str::contains("0 piece files written"));
    let after = verify_fresh(&root, &key(), t0()).unwrap();
    assert_eq!(after.head().sequence(), 2);
    assert_eq!(after.head().previous(), Some(before.signed().id()));
    assert_eq!(after.head().log(), before.head().log());
    assert_eq!(after.entries(), before.entries());
    assert!(after.head().expires() > before.head().expires());
    // A stateful client takes the refresh without downloading a piece.
    s.qasid()
        .args([
            "index",
            "show",
            "--repo",
            "repo",
            "--publisher",
            "keys/publisher.pub",
        ])
        .args(["--state", "st2"])
        .assert()
        .success();
}

#[test]
fn refresh_of_an_empty_repo_is_a_usage_error() {
    let s = Setup::new();
    s.publish(&["--refresh"])
        .code(2)
        .stderr(predicate::str::contains(
            "nothing is published in this repo yet",
        ));
}

#[test]
fn retract_drops_a_name_and_publishing_it_again_re_lists_it() {
    let s = Setup::new();
    let a = bundle_in(&s, "alpha", 1);
    let b = bundle_in(&s, "beta", 1);
    s.publish(&[&a, &b]).success();
    s.publish(&["--retract", "alpha"])
        .success()
        .stdout(predicate::str::contains("retracted alpha"));
    let root = s.path("repo");
    let index = verify_fresh(&root, &key(), t0()).unwrap();
    let names: Vec<_> = index
        .current()
        .iter()
        .map(|(_, a)| a.name().to_owned())
        .collect();
    assert_eq!(names, ["beta"]);
    assert_eq!(index.entries().len(), 3, "history is kept");
    s.show(&["--all"])
        .success()
        .stdout(predicate::str::contains("retract alpha"));
    // Retracting what is not listed is refused.
    s.publish(&["--retract", "alpha"])
        .code(2)
        .stderr(predicate::str::contains(
            "cannot retract \"alpha\": it is not in the current listing",
        ));
    // The same bundle again lists it again.
    s.publish(&[&a])
        .success()
        .stdout(predicate::str::contains("added     alpha v1"));
    let index = verify_fresh(&root, &key(), t0()).unwrap();
    assert_eq!(index.current().len(), 2);
    assert_eq!(index.entries().len(), 4);
}

#[test]
fn a_correction_replaces_the_listed_version_and_downgrades_are_refused() {
    let s = Setup::new();
    let v1 = bundle_in(&s, "alpha", 1);
    let v2 = bundle_in(&s, "alpha", 2);
    s.publish(&[&v1]).success();
    s.publish(&[&v2]).success();
    let index = verify_fresh(&s.path("repo"), &key(), t0()).unwrap();
    assert_eq!(index.current()[0].1.version(), 2);
    // A different bundle claiming v1 again.
    let other_dir = s.path("other");
    fs::create_dir_all(&other_dir).unwrap();
    let other_v1 = make_bundle_with(
        &other_dir,
        &key(),
        "alpha",
        1,
        &[("note.txt", b"x".to_vec())],
    );
    let path = other_v1.path().to_str().unwrap();
    s.publish(&[path]).code(2).stderr(predicate::str::contains(
        "alpha v1 is already published as bundle",
    ));
    let err = publish(&s.path("repo"), &key(), &[other_v1.path()], t0()).unwrap_err();
    assert!(matches!(err, RepoError::VersionConflict { .. }), "{err:?}");
    // Going back below the listed version is refused too.
    let older = make_bundle_with(&other_dir, &key(), "beta", 3, &[]);
    publish(&s.path("repo"), &key(), &[older.path()], t0()).unwrap();
    let err = publish(
        &s.path("repo"),
        &key(),
        &[make_bundle(&other_dir, &key(), "beta", 2).path()],
        t0(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("beta v2 is older than the published v3"),
        "{err}"
    );
}

#[test]
fn a_bundle_signed_by_another_key_is_refused_with_exit_3() {
    let s = Setup::new();
    let foreign = make_bundle(s.dir.path(), &other_key(), "forged", 1);
    s.publish(&[foreign.path().to_str().unwrap()])
        .code(3)
        .stderr(predicate::str::starts_with("qasid: verification failed:"));
    assert!(!index_path(&s.path("repo"), &key()).exists());
}

/// Every file and folder under `dir` (relative paths), or `None` if `dir` does not exist.
fn tree(dir: &Path) -> Option<Vec<String>> {
    if !dir.exists() {
        return None;
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    Some(out)
}

#[test]
fn a_publish_with_the_wrong_key_leaves_no_empty_publisher_folder() {
    let s = Setup::new();
    qasid::keys::write_key_pair(&s.path("otherkeys"), &other_key(), None, false).unwrap();
    let a = bundle_in(&s, "alpha", 1);
    let wrong_key = |s: &Setup| {
        s.qasid()
            .args([
                "publish",
                &a,
                "--repo",
                "repo",
                "--key",
                "otherkeys/publisher.key",
            ])
            .assert()
            .code(3)
    };
    // Into a repo that does not exist yet: the repo is not created.
    wrong_key(&s);
    assert_eq!(tree(&s.path("repo")), None, "nothing created");
    // Into a repo the right key already publishes to: nothing is added to it.
    s.publish(&[&a]).success();
    let before = tree(&s.path("repo"));
    wrong_key(&s);
    assert_eq!(tree(&s.path("repo")), before, "nothing created");
}

#[test]
fn publishing_a_missing_bundle_creates_no_repo_skeleton() {
    let s = Setup::new();
    s.publish(&["missing.zip"])
        .code(1)
        .stderr(predicate::str::contains("missing.zip"));
    assert_eq!(tree(&s.path("repo")), None, "nothing created");
    // A bad bundle after a good one: the good one is not half-published either.
    let a = bundle_in(&s, "alpha", 1);
    fs::write(s.path("broken.zip"), b"not a zip").unwrap();
    s.publish(&[&a, "broken.zip"]).code(3);
    assert_eq!(tree(&s.path("repo")), None, "nothing created");
}

/// The signed mirror list after a `publish --json` with `args`.
fn mirrors_after(s: &Setup, args: &[&str]) -> Vec<String> {
    let out = s.publish(&[args, &["--json"]].concat()).success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    report["index"]["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn single_mirrors_are_added_and_removed_without_repeating_the_list() {
    let s = Setup::new();
    let a = bundle_in(&s, "alpha", 1);
    let (one, two) = ("https://one.example/", "https://two.example/");
    assert_eq!(mirrors_after(&s, &[&a, "--mirror", one]), [one]);
    let index = s.index_bytes();
    // No bundles: the changed list alone signs a new index.
    assert_eq!(mirrors_after(&s, &["--add-mirror", two]), [one, two]);
    assert_ne!(s.index_bytes(), index, "a new index was signed");
    assert_eq!(mirrors_after(&s, &["--remove-mirror", one]), [two]);
    s.publish(&["--remove-mirror", one])
        .code(2)
        .stderr(predicate::str::contains("not in the signed mirror list"));
    s.publish(&["--add-mirror", two])
        .code(2)
        .stderr(predicate::str::contains(
            "already in the signed mirror list",
        ));
    s.publish(&["--add-mirror", two, "--mirror", one]).code(2);
    let shown = s.show(&["--json"]).success();
    let shown = String::from_utf8_lossy(&shown.get_output().stdout).into_owned();
    assert!(shown.contains(two) && !shown.contains(one), "{shown}");
}

#[test]
fn an_index_that_does_not_verify_is_never_signed_over() {
    let s = Setup::new();
    let a = bundle_in(&s, "alpha", 1);
    let b = bundle_in(&s, "beta", 1);
    s.publish(&[&a]).success();
    let path = index_path(&s.path("repo"), &key());
    let mut bytes = fs::read(&path).unwrap();
    bytes[40] ^= 0x20;
    fs::write(&path, &bytes).unwrap();
    s.publish(&[&b]).code(3).stderr(predicate::str::contains(
        "does not verify with this key, refusing to sign over it",
    ));
    assert_eq!(fs::read(&path).unwrap(), bytes, "left as it was");
}

#[test]
fn a_second_publish_while_one_holds_the_lock_is_refused() {
    let s = Setup::new();
    let a = bundle_in(&s, "alpha", 1);
    let root = s.path("repo");
    fs::create_dir_all(root.join(PRIVATE_DIR)).unwrap();
    let lock = fs::File::create(root.join(PRIVATE_DIR).join("lock")).unwrap();
    lock.lock().unwrap();
    s.publish(&[&a])
        .code(1)
        .stderr(predicate::str::contains("holds the lock"));
    drop(lock);
    s.publish(&[&a]).success();
}

#[test]
fn show_refuses_rollback_and_reports_equivocation_with_exit_3() {
    let s = Setup::new();
    let a = bundle_in(&s, "alpha", 1);
    let b = bundle_in(&s, "beta", 1);
    s.publish(&[&a]).success();
    let root = s.path("repo");
    let first = fs::read(index_path(&root, &key())).unwrap();
    copy_tree(&root, &s.path("fork"));
    s.publish(&[&b]).success();
    s.show(&[]).success();
    let second = s.index_bytes();
    fs::write(index_path(&root, &key()), &first).unwrap();
    s.show(&[]).code(3).stderr(predicate::str::contains(
        "rollback refused: offered index sequence 1",
    ));
    fs::write(index_path(&root, &key()), &second).unwrap();
    // The fork signs a different sequence 2.
    let c = bundle_in(&s, "gamma", 1);
    publish(&s.path("fork"), &key(), &[&s.path(&c)], t0()).unwrap();
    s.qasid()
        .args([
            "index",
            "show",
            "--repo",
            "fork",
            "--publisher",
            "keys/publisher.pub",
        ])
        .args(["--state", "state"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("EQUIVOCATION"))
        .stderr(predicate::str::contains("saved as evidence in"));
    assert_eq!(fs::read_dir(s.path("state/evidence")).unwrap().count(), 1);
}

#[test]
fn show_warns_loudly_about_a_stale_index_but_still_shows_it() {
    let s = Setup::new();
    let a = make_bundle(s.dir.path(), &key(), "alpha", 1);
    publish(&s.path("repo"), &key(), &[a.path()], t0()).unwrap(); // expired in 2026-03
    s.show(&[])
        .success()
        .stdout(predicate::str::contains("alpha v1"))
        .stderr(predicate::str::contains("STALE INDEX: expired"));
    let out = s.show(&["--json"]).success().get_output().stdout.clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["stale"], true);
}

#[test]
fn show_with_the_wrong_publisher_key_fails_verification() {
    let s = Setup::new();
    let a = bundle_in(&s, "alpha", 1);
    s.publish(&[&a]).success();
    let other = other_key().public().to_base64();
    // The other key's folder does not exist: nothing is trusted by accident.
    s.qasid()
        .args([
            "index",
            "show",
            "--repo",
            "repo",
            "--publisher",
            &other,
            "--state",
            "state",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("index.json"));
    let err = verify_fresh(&s.path("repo"), &other_key(), t0()).unwrap_err();
    assert!(matches!(err, IndexError::Io { .. }));
}

#[test]
fn the_served_layout_holds_only_layout_files() {
    let s = Setup::new();
    for i in 0..5 {
        let b = bundle_in(&s, &format!("n{i}"), 1);
        s.publish(&[&b]).success();
    }
    assert_layout_only(&s.path("repo"));
}

/// Every file under `qasid/v1` is a layout file: no temp names, nothing else.
pub fn assert_layout_only(root: &Path) {
    let hex = key().public().hex();
    for f in files_under(&root.join("qasid/v1")) {
        let rest = f
            .strip_prefix(&format!("publishers/{hex}/"))
            .unwrap_or_else(|| panic!("unexpected {f}"));
        let ok = rest == "index.json"
            || rest == "publisher.pub"
            || is_hash_name(rest, "pieces/", ".json")
            || is_hash_name(rest, "bundles/", ".zip")
            || is_hash_name(rest, "bundles/", ".zip.minisig");
        assert!(ok, "unexpected file in the served layout: {f}");
    }
}

fn is_hash_name(path: &str, dir: &str, ext: &str) -> bool {
    path.strip_prefix(dir)
        .and_then(|p| p.strip_suffix(ext))
        .is_some_and(|h| h.parse::<ContentId>().is_ok())
}
