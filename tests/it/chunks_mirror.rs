//! Chunk lists on mirrors (docs/PROTOCOL.md §13): a pushed list is checked against the stored
//! bundle it names before it is stored, `qasid push` sends lists after their bundles, and a
//! syncing mirror computes each list from the bundle instead of trusting (or fetching) one.

use std::sync::Arc;

use qasid::config::Keep;
use qasid::index::layout::PublisherLayout;
use qasid::mirror::client::{self, NoProgress};

use crate::mirror_support::{key, make_bundle, publish, put, url_path, Server};
use crate::sync_support::Node;

/// A bundle of about 1.2 MiB: above the 1 MiB threshold, so five chunks.
const LARGE: usize = 1_200_000;

fn list_path(repo: &std::path::Path, key: &qasid::keys::SecretKey) -> (String, Vec<u8>) {
    let layout = PublisherLayout::new(key.public());
    let dir = repo.join(layout.dir()).join("chunks");
    let entry = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap();
    let name = entry.file_name().into_string().unwrap();
    (
        format!("/{}/chunks/{name}", layout.dir()),
        std::fs::read(entry.path()).unwrap(),
    )
}

#[tokio::test]
async fn a_pushed_chunk_list_is_checked_against_the_bundle_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(1);
    let made = make_bundle(dir.path(), &key, "big", 1, LARGE);
    let repo = dir.path().join("repo");
    publish(&repo, &key, &[&made.path]);
    let (path, list) = list_path(&repo, &key);
    assert_eq!(list.len(), 32 * 6);
    let server = Server::start(&dir.path().join("store"), &[&key]).await;

    // Before its bundle: the mirror cannot check it, and says which bundle it needs.
    let (status, body) = put(&server, &path, list.clone()).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.to_string().contains(&made.sha256.to_string()),
        "{body}"
    );

    let bundle_path = url_path(&key, |l| l.bundle(&made.sha256));
    let (status, body) = put(&server, &bundle_path, std::fs::read(&made.path).unwrap()).await;
    assert_eq!(status, 201, "{body}");

    // A list with one chunk hash altered, sent under its own (correct) sha256: refused.
    let mut forged = list.clone();
    forged[32 * 3 + 5] ^= 1;
    let forged_path = url_path(&key, |l| {
        l.chunks(&qasid::content_id::ContentId::of_bytes(&forged))
    });
    let (status, body) = put(&server, &forged_path, forged).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("chunk 2"),
        "names the chunk: {body}"
    );
    // The right bytes under another list's name: refused as a hash mismatch.
    let (status, _) = put(&server, &forged_path, list.clone()).await;
    assert_eq!(status, 422);

    let (status, body) = put(&server, &path, list.clone()).await;
    assert_eq!(status, 201, "{body}");
    let served = crate::mirror_support::get_bytes(&server, &path).await;
    assert_eq!(served, list);
    server.stop().await;
}

#[tokio::test]
async fn push_sends_chunk_lists_and_a_syncing_mirror_computes_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(1);
    let made = make_bundle(dir.path(), &key, "big", 1, LARGE);
    let small = make_bundle(dir.path(), &key, "small", 1, 1000);
    let repo = dir.path().join("repo");
    publish(&repo, &key, &[&made.path, &small.path]);
    let (path, list) = list_path(&repo, &key);

    // `qasid push`'s own code: the list arrives after its bundle and the index installs.
    let upstream = Server::start(&dir.path().join("upstream"), &[&key]).await;
    let plan = client::plan(&repo, key.public()).unwrap();
    let base = reqwest::Url::parse(&format!("{}/", upstream.base)).unwrap();
    client::push(
        &crate::mirror_support::client(),
        &base,
        &plan,
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert!(upstream.store.index(key.public()).unwrap().is_some());
    assert_eq!(
        crate::mirror_support::get_bytes(&upstream, &path).await,
        list
    );

    // The upstream loses its list; a syncing mirror still serves the right one, computed
    // from the verified bundle (a list is a function of the bundle's bytes).
    std::fs::remove_file(upstream.store_dir.join(&path[1..])).unwrap();
    let node = Node::start(&dir.path().join("node"), &[&key], Keep::All).await;
    let report = node.sync_once(&[&format!("{}/", upstream.base)]).await;
    assert_eq!(node.sequence(&key), Some(1), "{report:?}");
    assert_eq!(std::fs::read(node.dir.join(&path[1..])).unwrap(), list);
    // Only the large bundle has a list.
    let lists = std::fs::read_dir(
        node.dir
            .join(PublisherLayout::new(key.public()).dir())
            .join("chunks"),
    )
    .unwrap()
    .count();
    assert_eq!(lists, 1);
    node.stop().await;
    upstream.stop().await;
}
