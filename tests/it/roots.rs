//! Publisher roots end to end with the real binary and real mirrors: a stolen signing key
//! revoked by a threshold of root keys, a reader that needs no action, a root key holder alone
//! unable to make an accepted root, rollback and equivocation of roots refused with evidence,
//! a chain of rotations followed through a mirror and a syncing mirror, and the upgrade in
//! place of a one-key repo.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::mirror_support::Process;

/// Runs `qasid` in `dir` with its reader state in `dir/state` (so `verify` sees it too).
pub(crate) fn qasid(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qasid"))
        .args(args)
        .current_dir(dir)
        .env("XDG_STATE_HOME", dir.join("xdg"))
        .env_remove("QASID_PASSPHRASE")
        .output()
        .unwrap()
}

/// Runs and asserts the exit code, returning stdout.
#[track_caller]
pub(crate) fn ok(dir: &Path, args: &[&str]) -> String {
    expect(dir, args, 0)
}

#[track_caller]
pub(crate) fn expect(dir: &Path, args: &[&str], code: i32) -> String {
    let out = qasid(dir, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "qasid {args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn keygen(dir: &Path, names: &[&str]) {
    for n in names {
        ok(dir, &["keygen", "--unencrypted", "--out", n]);
    }
}

pub(crate) fn article(dir: &Path, folder: &str, title: &str) -> PathBuf {
    let d = dir.join(folder);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("article.md"),
        format!(
            "---\ntitle: {title}\ndate: 2026-01-01\nlanguage: en\nauthor: Desk\n---\n\n{title} body.\n"
        ),
    )
    .unwrap();
    d
}

/// `bundle` FOLDER signed by KEY as NAME vVERSION into OUT.
pub(crate) fn bundle(dir: &Path, folder: &str, key: &str, name: &str, version: &str, out: &str) {
    ok(
        dir,
        &[
            "bundle",
            folder,
            "--key",
            key,
            "--out",
            out,
            "--name",
            name,
            "--version",
            version,
        ],
    );
}

/// `publish` ZIPS into REPO signed by KEY.
fn publish(dir: &Path, repo: &str, key: &str, zips: &[&str]) {
    let mut args = vec!["publish"];
    args.extend_from_slice(zips);
    args.extend_from_slice(&["--repo", repo, "--key", key]);
    ok(dir, &args);
}

/// A newsroom: root keys A, B, C (threshold 2), signing key S; root 1 installed in `repo` and
/// `alpha` v1 published with S. Returns the publisher id.
pub(crate) fn newsroom(dir: &Path) -> String {
    keygen(dir, &["A", "B", "C", "S", "S2", "S3", "S4", "T"]);
    ok(
        dir,
        &[
            "root",
            "create",
            "--root-key",
            "A/publisher.pub",
            "--root-key",
            "B/publisher.pub",
            "--root-key",
            "C/publisher.pub",
            "--threshold",
            "2",
            "--signing-key",
            "S/publisher.pub",
            "--out",
            "root.json",
        ],
    );
    ok(
        dir,
        &["root", "sign", "root.json", "--key", "A/publisher.key"],
    );
    ok(
        dir,
        &["root", "sign", "root.json", "--key", "B/publisher.key"],
    );
    ok(dir, &["root", "install", "root.json", "--repo", "repo"]);
    article(dir, "alpha", "Alpha");
    bundle(dir, "alpha", "S/publisher.key", "alpha", "1", "alpha-1.zip");
    publish(dir, "repo", "S/publisher.key", &["alpha-1.zip"]);
    let shown = ok(dir, &["root", "show", "--repo", "repo"]);
    shown
        .lines()
        .find_map(|l| l.strip_prefix("publisher: "))
        .expect("root show names the publisher")
        .to_owned()
}

/// Rotates `repo` to the next root with `extra` args, signed by `signers`, installed.
pub(crate) fn rotate(dir: &Path, out: &str, extra: &[&str], signers: &[&str]) {
    rotate_in(dir, "repo", out, extra, signers);
}

/// Rotates REPO to the next root with `extra` args, signed by `signers`, installed.
pub(crate) fn rotate_in(dir: &Path, repo: &str, out: &str, extra: &[&str], signers: &[&str]) {
    let mut args = vec!["root", "rotate", "--repo", repo, "--out", out];
    args.extend_from_slice(extra);
    ok(dir, &args);
    for s in signers {
        let key = format!("{s}/publisher.key");
        ok(dir, &["root", "sign", out, "--key", &key]);
    }
    ok(dir, &["root", "install", out, "--repo", repo]);
}

/// Rotates `repo` to a root that revokes signing key OLD and delegates NEW.
fn replace_signing_key(dir: &Path, out: &str, old: &str, new: &str, signers: &[&str]) {
    let (old, new) = (
        format!("{old}/publisher.pub"),
        format!("{new}/publisher.pub"),
    );
    rotate(
        dir,
        out,
        &["--revoke", &old, "--signing-key", &new],
        signers,
    );
}

/// Root 2 (signed by A and B) replaces signing key S with S2, and `alpha` v2 signed by S2 is
/// published into `repo`.
fn rotate_to_s2_and_publish_alpha_2(dir: &Path) {
    replace_signing_key(dir, "r2.json", "S", "S2", &["A", "B"]);
    bundle(
        dir,
        "alpha",
        "S2/publisher.key",
        "alpha",
        "2",
        "alpha-2.zip",
    );
    publish(dir, "repo", "S2/publisher.key", &["alpha-2.zip"]);
}

/// A `qasid mirror` trusting `publisher` (a key or root file in `dir`), store `dir/STORE`.
pub(crate) fn mirror_trusting(dir: &Path, store: &str, publisher: &str, extra: &[&str]) -> Process {
    let store = dir.join(store);
    let publisher = dir.join(publisher);
    let mut args = vec![
        "mirror",
        "--listen",
        "127.0.0.1:0",
        "--store",
        store.to_str().unwrap(),
        "--publisher",
        publisher.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Process::start(&args)
}

fn mirror(dir: &Path, store: &str, extra: &[&str]) -> Process {
    mirror_trusting(dir, store, "root.json", extra)
}

fn fetch(dir: &Path, name: &str, base: &str, code: i32) -> String {
    let url = format!("{base}/");
    expect(
        dir,
        &[
            "fetch",
            name,
            "--mirror",
            &url,
            "--publisher",
            "root.json",
            "--out",
            "got",
            "--connect-timeout",
            "5s",
            "--timeout",
            "20s",
        ],
        code,
    )
}

#[test]
fn a_stolen_signing_key_is_refused_by_every_verifier_once_the_revoking_root_is_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let id = newsroom(dir);
    assert_eq!(
        id.len(),
        16,
        "root show names the publisher by key id: {id}"
    );
    let m = mirror(dir, "store", &[]);
    let base = m.base.clone();
    let to = format!("{base}/");
    ok(dir, &["push", "--repo", "repo", "--to", &to]);
    fetch(dir, "alpha", &base, 0);

    // The laptop with S is seized: the thief signs a bundle and a head with it.
    std::process::Command::new("cp")
        .args(["-a", "repo", "thief"])
        .current_dir(dir)
        .status()
        .unwrap();
    article(dir, "evil", "Evil");
    bundle(dir, "evil", "S/publisher.key", "evil", "1", "evil-1.zip");
    publish(dir, "thief", "S/publisher.key", &["evil-1.zip"]);
    // A second head, so the thief's sequence is above anything the newsroom publishes next.
    bundle(dir, "evil", "S/publisher.key", "evil", "2", "evil-2.zip");
    publish(dir, "thief", "S/publisher.key", &["evil-2.zip"]);

    // Two editors revoke S and delegate S2; the newsroom re-signs alpha with S2.
    replace_signing_key(dir, "root-2.json", "S", "S2", &["A", "C"]);
    bundle(
        dir,
        "alpha",
        "S2/publisher.key",
        "alpha",
        "2",
        "alpha-2.zip",
    );
    // S may not sign this publisher's index any more.
    expect(
        dir,
        &[
            "publish",
            "alpha-2.zip",
            "--repo",
            "repo",
            "--key",
            "S/publisher.key",
        ],
        2,
    );
    publish(dir, "repo", "S2/publisher.key", &["alpha-2.zip"]);
    ok(dir, &["push", "--repo", "repo", "--to", &to]);

    // The mirror refuses the thief's push: its head is signed by the revoked key. (Bundles
    // are only ever served through an authentic head that lists them, so the thief's are
    // never listed, and readers never ask for them.)
    expect(dir, &["push", "--repo", "thief", "--to", &to], 3);
    let listed = ok(
        dir,
        &[
            "index",
            "show",
            "--repo",
            &to,
            "--publisher",
            "root.json",
            "--json",
        ],
    );
    assert!(
        listed.contains("alpha") && !listed.contains("evil"),
        "{listed}"
    );
    // A syncing mirror that has the revoking root refuses the thief's higher head.
    sync_once(dir, "synced", &to, 0);
    let thief_url = file_url(&dir.join("thief"));
    sync_once(dir, "synced", &thief_url, 3);
    assert_eq!(
        std::fs::read(served_file(&dir.join("synced"), "index.json")).unwrap(),
        std::fs::read(served_file(&dir.join("repo"), "index.json")).unwrap(),
        "the synced store still serves the newsroom's index"
    );
    // The reader follows without doing anything: the new root, then alpha v2 signed by S2.
    let out = fetch(dir, "alpha", &base, 0);
    assert!(dir.join("got/alpha-v2.zip").is_file(), "{out}");
    // Offline checks use the roots the reader learnt: S's bundles are refused, S2's accepted.
    expect(
        dir,
        &["verify", "evil-1.zip", "--publisher", "root.json"],
        3,
    );
    expect(
        dir,
        &["verify", "alpha-1.zip", "--publisher", "root.json"],
        3,
    );
    ok(dir, &["verify", "alpha-2.zip", "--publisher", "root.json"]);
    // `index show` of the thief's folder: its head is signed by the revoked key.
    expect(
        dir,
        &[
            "index",
            "show",
            "--repo",
            "thief",
            "--publisher",
            "root.json",
            "--state",
            "xdg/qasid",
        ],
        3,
    );
    // The same reader, shown the thief's folder as a mirror, refuses it.
    let thief = dir.join("thief");
    expect(
        dir,
        &[
            "fetch",
            "evil",
            "--mirror",
            thief.to_str().unwrap(),
            "--publisher",
            "root.json",
            "--out",
            "got",
        ],
        3,
    );
    m.terminate();
}

#[test]
fn one_root_key_of_three_cannot_make_a_root_anyone_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    newsroom(dir);
    let m = mirror(dir, "store", &[]);
    let to = format!("{}/", m.base);
    ok(dir, &["push", "--repo", "repo", "--to", &to]);
    // A alone writes root 2 delegating the attacker's key T.
    ok(
        dir,
        &[
            "root",
            "rotate",
            "--repo",
            "repo",
            "--out",
            "evil-root.json",
            "--signing-key",
            "T/publisher.pub",
            "--root-key",
            "A/publisher.pub",
            "--threshold",
            "1",
        ],
    );
    ok(
        dir,
        &["root", "sign", "evil-root.json", "--key", "A/publisher.key"],
    );
    // Own threshold (1 of {A}) is met, the previous root's (2 of A, B, C) is not.
    let err = qasid(
        dir,
        &["root", "install", "evil-root.json", "--repo", "repo"],
    );
    assert_eq!(err.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&err.stderr).contains("previous root"));
    // Forced into a copy of the repo and pushed: the mirror refuses it.
    std::process::Command::new("cp")
        .args(["-a", "repo", "forged"])
        .current_dir(dir)
        .status()
        .unwrap();
    let roots = dir.join("forged/qasid/v1/publishers");
    let folder = std::fs::read_dir(&roots)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(dir.join("evil-root.json"), folder.join("roots/2.json")).unwrap();
    expect(dir, &["push", "--repo", "forged", "--to", &to], 3);
    // A syncing mirror trusting root.json does not take it either.
    sync_once(dir, "synced", &file_url(&dir.join("forged")), 3);
    assert!(served_file(&dir.join("synced"), "roots/1.json").is_file());
    assert!(!served_file(&dir.join("synced"), "roots/2.json").exists());
    // A reader pointed at the forged folder keeps root 1.
    let forged = dir.join("forged");
    expect(
        dir,
        &[
            "root",
            "show",
            "--repo",
            forged.to_str().unwrap(),
            "--publisher",
            "root.json",
        ],
        3,
    );
    m.terminate();
}

#[test]
fn a_reader_pinned_to_root_1_follows_three_rotations_through_a_mirror_and_a_syncing_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    newsroom(dir);
    let first = mirror(dir, "store1", &[]);
    let to = format!("{}/", first.base);
    ok(dir, &["push", "--repo", "repo", "--to", &to]);
    // A second mirror syncs from the first.
    let second = mirror(dir, "store2", &["--upstream", &to, "--sync-interval", "1s"]);
    // A mirror learns a publisher's roots from a push (or from a sync once it holds root 1).
    ok(
        dir,
        &[
            "push",
            "--repo",
            "repo",
            "--to",
            &format!("{}/", second.base),
        ],
    );
    fetch_until(dir, "alpha", &second.base);

    replace_signing_key(dir, "r2.json", "S", "S2", &["A", "B"]);
    replace_signing_key(dir, "r3.json", "S2", "S3", &["B", "C"]);
    // Root key C is replaced by T (2 of the old keys and 2 of the new ones sign).
    rotate(
        dir,
        "r4.json",
        &[
            "--revoke",
            "S3/publisher.pub",
            "--signing-key",
            "S4/publisher.pub",
            "--root-key",
            "A/publisher.pub",
            "--root-key",
            "B/publisher.pub",
            "--root-key",
            "T/publisher.pub",
        ],
        &["A", "B", "T"],
    );
    article(dir, "beta", "Beta");
    bundle(dir, "beta", "S4/publisher.key", "beta", "1", "beta-1.zip");
    bundle(
        dir,
        "alpha",
        "S4/publisher.key",
        "alpha",
        "2",
        "alpha-2.zip",
    );
    publish(
        dir,
        "repo",
        "S4/publisher.key",
        &["beta-1.zip", "alpha-2.zip"],
    );
    ok(dir, &["push", "--repo", "repo", "--to", &to]);
    // The syncing mirror takes the three roots and the new index (bounded wait).
    let store2 = dir.join("store2");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let served = std::fs::read_dir(store2.join("qasid/v1/publishers"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path().join("roots/4.json").is_file())
            .unwrap_or(false);
        if served {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the syncing mirror took the rotations"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The reader, which holds root 1, follows 2, 3 and 4 from the syncing mirror.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = qasid(
            dir,
            &[
                "fetch",
                "beta",
                "--mirror",
                &format!("{}/", second.base),
                "--publisher",
                "root.json",
                "--out",
                "got",
            ],
        );
        if out.status.code() == Some(0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fetch through the syncing mirror: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let shown = ok(
        dir,
        &[
            "root",
            "show",
            "--repo",
            &format!("{}/", second.base),
            "--publisher",
            "root.json",
        ],
    );
    assert!(shown.contains("root 4"), "{shown}");
    second.terminate();
    first.terminate();
}

#[test]
fn upgrade_in_place_keeps_the_publisher_id_and_readers_and_mirrors_keep_working() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    keygen(dir, &["K", "D"]);
    article(dir, "alpha", "Alpha");
    bundle(dir, "alpha", "K/publisher.key", "alpha", "1", "alpha-1.zip");
    publish(dir, "repo", "K/publisher.key", &["alpha-1.zip"]);
    let store = dir.join("store");
    let m = Process::start(&[
        "mirror",
        "--listen",
        "127.0.0.1:0",
        "--store",
        store.to_str().unwrap(),
        "--publisher",
        dir.join("K/publisher.pub").to_str().unwrap(),
    ]);
    let to = format!("{}/", m.base);
    ok(dir, &["push", "--repo", "repo", "--to", &to]);
    let fetch_k = |name: &str, code: i32| {
        expect(
            dir,
            &[
                "fetch",
                name,
                "--mirror",
                &to,
                "--publisher",
                "K/publisher.pub",
                "--out",
                "got",
            ],
            code,
        )
    };
    fetch_k("alpha", 0);
    let before: Vec<_> = std::fs::read_dir(dir.join("repo/qasid/v1/publishers"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();

    // Root 1 for K, delegating the desk key D; the id stays K's.
    ok(
        dir,
        &[
            "root",
            "upgrade",
            "--repo",
            "repo",
            "--key",
            "K/publisher.key",
            "--signing-key",
            "D/publisher.pub",
        ],
    );
    let after: Vec<_> = std::fs::read_dir(dir.join("repo/qasid/v1/publishers"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "same publisher folder");
    article(dir, "beta", "Beta");
    bundle(dir, "beta", "D/publisher.key", "beta", "1", "beta-1.zip");
    publish(dir, "repo", "D/publisher.key", &["beta-1.zip"]);
    ok(dir, &["push", "--repo", "repo", "--to", &to]);
    // The reader trusting K alone learns root 1 from the mirror and reads D's article in the
    // same run: it needed no action.
    fetch_k("beta", 0);
    // K itself no longer signs (root 1 delegates only D).
    bundle(dir, "beta", "K/publisher.key", "beta", "2", "beta-2.zip");
    expect(
        dir,
        &["verify", "beta-2.zip", "--publisher", "K/publisher.pub"],
        3,
    );
    m.terminate();
}

#[test]
fn root_equivocation_and_rollback_are_refused_with_evidence() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    newsroom(dir);
    let m = mirror(dir, "store", &[]);
    let to = format!("{}/", m.base);
    ok(dir, &["push", "--repo", "repo", "--to", &to]);
    std::process::Command::new("cp")
        .args(["-a", "repo", "fork"])
        .current_dir(dir)
        .status()
        .unwrap();
    // Root 2 as the newsroom makes it, pushed and fetched.
    rotate(
        dir,
        "r2.json",
        &["--signing-key", "S2/publisher.pub"],
        &["A", "B"],
    );
    ok(dir, &["push", "--repo", "repo", "--to", &to]);
    fetch(dir, "alpha", &m.base, 0);
    // A coerced majority (B, C) signs a different root 2 in the fork.
    rotate_in(
        dir,
        "fork",
        "f2.json",
        &["--signing-key", "T/publisher.pub"],
        &["B", "C"],
    );
    // The mirror holds the newsroom's root 2: the fork's is equivocation, kept as evidence.
    let forked = qasid(dir, &["push", "--repo", "fork", "--to", &to]);
    assert_ne!(forked.status.code(), Some(0));
    let evidence = dir.join("store/.state/evidence");
    let kept: Vec<_> = std::fs::read_dir(&evidence)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("root-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    // Pushed again: refused again, and the evidence is not duplicated.
    let again = qasid(dir, &["push", "--repo", "fork", "--to", &to]);
    assert_ne!(again.status.code(), Some(0));
    assert_eq!(evidence_in(&evidence), kept);
    // A syncing mirror holding the newsroom's root 2 refuses the fork and keeps evidence.
    sync_once(dir, "synced", &to, 0);
    sync_once(dir, "synced", &file_url(&dir.join("fork")), 3);
    assert_eq!(evidence_in(&dir.join("synced/.state/evidence")).len(), 1);
    // So does the reader, shown the fork as a mirror; twice, one folder of evidence.
    for _ in 0..2 {
        expect(
            dir,
            &[
                "fetch",
                "--mirror",
                dir.join("fork").to_str().unwrap(),
                "--publisher",
                "root.json",
            ],
            3,
        );
    }
    assert_eq!(evidence_in(&dir.join("xdg/qasid/evidence")).len(), 1);
    // A root 3 made on the fork's root 2 (the same root keys sign it) names the fork's root
    // as previous: it does not chain onto the newsroom's root 2, and the fork is found.
    rotate_in(
        dir,
        "fork",
        "f3.json",
        &["--signing-key", "S4/publisher.pub"],
        &["B", "C"],
    );
    let store_roots = served_file(&dir.join("store"), "roots");
    let pushed = qasid(dir, &["push", "--repo", "fork", "--to", &to]);
    assert_ne!(pushed.status.code(), Some(0));
    let said = String::from_utf8_lossy(&pushed.stdout);
    assert!(
        said.contains("evidence was saved") && !said.contains(".state"),
        "the mirror names no local path: {said}"
    );
    assert!(!store_roots.join("3.json").exists());
    let out = qasid(
        dir,
        &[
            "fetch",
            "--mirror",
            dir.join("fork").to_str().unwrap(),
            "--publisher",
            "root.json",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("EQUIVOCATION"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Rollback: a folder serving only root 1 and S-signed heads does not undo root 2.
    let old = dir.join("thief-old");
    std::process::Command::new("cp")
        .args(["-a", "repo", old.to_str().unwrap()])
        .current_dir(dir)
        .status()
        .unwrap();
    let publishers = old.join("qasid/v1/publishers");
    let folder = std::fs::read_dir(&publishers)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(folder.join("roots/2.json")).unwrap();
    rotate_revoke_check(dir, &old);
    m.terminate();
}

/// Fetches `name` through a mirror that is still syncing: retried until it works (bounded).
fn fetch_until(dir: &Path, name: &str, base: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = qasid(
            dir,
            &[
                "fetch",
                name,
                "--mirror",
                &format!("{base}/"),
                "--publisher",
                "root.json",
                "--out",
                "got",
            ],
        );
        if out.status.code() == Some(0) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fetch through the syncing mirror: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// The reader holds root 2; `old` hides it. Heads there are still signed by S, which root 2
/// keeps: so the reader must still read (no rollback of what it holds), and root show from
/// that folder reports the reader's own root 2 is not lost.
fn rotate_revoke_check(dir: &Path, old: &Path) {
    let out = ok(
        dir,
        &[
            "index",
            "show",
            "--repo",
            old.to_str().unwrap(),
            "--publisher",
            "root.json",
            "--state",
            "xdg/qasid",
            "--json",
        ],
    );
    assert!(out.contains("alpha"), "{out}");
    let held = dir.join("xdg/qasid/index");
    let roots: Vec<_> = std::fs::read_dir(&held)
        .unwrap()
        .flat_map(|e| {
            std::fs::read_dir(e.unwrap().path().join("roots"))
                .into_iter()
                .flatten()
        })
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(roots.contains(&"2.json".to_owned()), "{roots:?}");
}

/// `qasid sync --once` into STORE (trusting root.json) from UPSTREAM, expecting CODE.
fn sync_once(dir: &Path, store: &str, upstream: &str, code: i32) -> String {
    expect(
        dir,
        &[
            "sync",
            "--once",
            "--store",
            store,
            "--publisher",
            "root.json",
            "--upstream",
            upstream,
            "--connect-timeout",
            "5s",
            "--read-timeout",
            "10s",
        ],
        code,
    )
}

fn file_url(dir: &Path) -> String {
    format!("file://{}/", dir.display())
}

/// A file of the one publisher's folder in a repo or store layout.
fn served_file(root: &Path, name: &str) -> PathBuf {
    let publishers = root.join("qasid/v1/publishers");
    let folder = std::fs::read_dir(&publishers)
        .unwrap_or_else(|e| panic!("{}: {e}", publishers.display()))
        .next()
        .unwrap()
        .unwrap()
        .path();
    folder.join(name)
}

/// The names of the root evidence folders in `dir` (sorted; none if it does not exist).
fn evidence_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("root-"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_mirror_trusting_root_json_in_its_config_follows_the_publisher_from_upstream_without_a_push() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    newsroom(dir);
    let first = mirror(dir, "store1", &[]);
    let to = format!("{}/", first.base);
    // A rotation before the second mirror exists: it must learn roots 1 and 2 by itself.
    rotate_to_s2_and_publish_alpha_2(dir);
    ok(dir, &["push", "--repo", "repo", "--to", &to]);
    std::fs::write(
        dir.join("mirrors.toml"),
        format!(
            "[mirror]\nlisten = \"127.0.0.1:0\"\nstore = \"store2\"\n\n[[publisher]]\nname = \"Newsroom\"\nkey = \"root.json\"\n\n[[upstream]]\nurl = \"{to}\"\n\n[sync]\ninterval = \"1s\"\n"
        ),
    )
    .unwrap();
    let second = Process::start(&[
        "mirror",
        "--config",
        dir.join("mirrors.toml").to_str().unwrap(),
    ]);
    // The store holds root 1 from the start, and syncs root 2 and alpha v2 (bounded wait).
    fetch_until(dir, "alpha", &second.base);
    assert!(dir.join("got/alpha-v2.zip").is_file());
    assert!(served_file(&dir.join("store2"), "roots/2.json").is_file());
    // The same from a reader's config file: `key = "root.json"` there too.
    std::fs::write(
        dir.join("reader.toml"),
        format!(
            "[[publisher]]\nkey = \"root.json\"\n\n[reader]\nmirrors = [\"{}/\"]\nstate = \"reader-state\"\n",
            second.base
        ),
    )
    .unwrap();
    ok(
        dir,
        &["fetch", "alpha", "--config", "reader.toml", "--out", "got2"],
    );
    assert!(dir.join("got2/alpha-v2.zip").is_file());
    second.terminate();
    first.terminate();
}

#[test]
fn root_show_prints_the_current_signing_key_that_minisign_verifies_bundles_with() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    newsroom(dir);
    let shown = ok(dir, &["root", "show", "--repo", "repo"]);
    let at = shown
        .find("untrusted comment:")
        .unwrap_or_else(|| panic!("a minisign public key in: {shown}"));
    let key: String = shown[at..]
        .lines()
        .take(2)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        key,
        std::fs::read_to_string(dir.join("S/publisher.pub")).unwrap()
    );
    std::fs::write(dir.join("current.pub"), &key).unwrap();
    let out = Command::new("minisign")
        .args(["-Vm", "alpha-1.zip", "-p", "current.pub"])
        .current_dir(dir)
        .output()
        .expect("minisign is installed (apt-get install minisign)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn status_checks_a_store_index_against_the_publishers_roots_and_a_tampered_one_exits_3() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    newsroom(dir);
    // The signing key changes once, so the index is signed by neither the publisher id's key
    // nor root 1's signing key.
    rotate_to_s2_and_publish_alpha_2(dir);
    let m = mirror(dir, "store", &[]);
    ok(
        dir,
        &["push", "--repo", "repo", "--to", &format!("{}/", m.base)],
    );
    m.terminate();

    let shown = ok(dir, &["status", "--store", "store", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let publisher = &status["publishers"][0];
    assert!(publisher["error"].is_null(), "{shown}");
    assert_eq!(publisher["index"]["sequence"], 2, "{shown}");

    // A byte of the stored index's signature changed on disk: status says so and exits 3.
    let index = served_file(&dir.join("store"), "index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    let at = text
        .find("\"signature\"")
        .expect("the index has a signature")
        + 20;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&index, bytes).unwrap();
    let out = qasid(dir, &["status", "--store", "store"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not verify"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // What the line says to do mends it.
    let m = mirror(dir, "store", &[]);
    ok(
        dir,
        &["push", "--repo", "repo", "--to", &format!("{}/", m.base)],
    );
    m.terminate();
    ok(dir, &["status", "--store", "store"]);
}
