//! File modes of what publish and the mirror store write. The bug: everything was 0600 (the
//! `O_TMPFILE` path and temp files), so a repo or store copied with `rsync -a`/`cp -a` and
//! served by nginx running as another user answered 404. Public files now get
//! `0666 & !umask`, folders `0777 & !umask`; secret keys stay 0600.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use qasid::mirror::client::{self, NoProgress};

use crate::mirror_support::{key, make_bundle, publish, Server};

/// The process umask, from /proc (tests cannot call umask(2) without racing other threads).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

/// Every file and folder under `root` with a mode other than the expected one.
fn wrong_modes(root: &Path, file_mode: u32, dir_mode: u32) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut wrong = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            let want = if meta.is_dir() { dir_mode } else { file_mode };
            checked += 1;
            if mode != want {
                wrong.push(format!("{} is {mode:o}, want {want:o}", path.display()));
            }
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    (checked, wrong)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_and_stored_files_are_readable_by_a_web_server_running_as_another_user() {
    let mask = umask();
    let (file_mode, dir_mode) = (0o666 & !mask, 0o777 & !mask);
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);

    // Keys: the secret stays private whatever the umask.
    let keys = dir.path().join("keys");
    let paths = qasid::keys::write_key_pair(&keys, &k, None, false).unwrap();
    let secret_mode = std::fs::metadata(&paths.secret)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(secret_mode, 0o600, "secret key mode {secret_mode:o}");

    // A publisher repo with two bundles (so there are several pieces), and a store it was
    // pushed into.
    let a = make_bundle(dir.path(), &k, "a", 1, 1024);
    let b = make_bundle(dir.path(), &k, "b", 1, 1024);
    let repo = dir.path().join("repo");
    publish(&repo, &k, &[&a.path]);
    publish(&repo, &k, &[&b.path]);
    let server = Server::start(&dir.path().join("store"), &[&k]).await;
    let plan = client::plan(&repo, k.public()).unwrap();
    client::push(
        &qasid::index::http_client(),
        &server.base.parse().unwrap(),
        &plan,
        Arc::new(NoProgress),
    )
    .await
    .unwrap();

    for root in [repo.join("qasid"), server.store_dir.join("qasid")] {
        let (checked, wrong) = wrong_modes(&root, file_mode, dir_mode);
        // index.json, publisher.pub, two bundles and minisigs, pieces, and the folders.
        assert!(checked >= 10, "{}: only {checked} entries", root.display());
        assert!(wrong.is_empty(), "umask {mask:o}:\n{}", wrong.join("\n"));
    }
}
