//! Pushing to a mirror over real HTTP: what is accepted, every refusal, concurrency, and the
//! `qasid push` client against a real server.

use crate::mirror_support;

use std::sync::Arc;

use mirror_support::*;
use qasid::index::layout::PublisherLayout;
use qasid::mirror::client::{self, NoProgress};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_push_is_accepted_and_served_and_repeats_are_idempotent() {
    let p = published(4096).await;
    // Everything again: all already present.
    push_repo(&p.server, &p.repo, &p.key).await;
    let bundle = url_path(&p.key, |l| l.bundle(&p.bundle.sha256));
    let (status, body) = put(&p.server, &bundle, std::fs::read(&p.bundle.path).unwrap()).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("present")));
    let served = client()
        .get(p.server.url(&url_path(&p.key, PublisherLayout::index)))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let layout = PublisherLayout::new(p.key.public());
    assert_eq!(served, std::fs::read(p.repo.join(layout.index())).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_refusals_have_status_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = key(1);
    let stranger = key(2);
    let server = Server::start_with(&dir.path().join("store"), &[&trusted], |c| {
        c.mirror.max_push_bytes = 64 << 10;
    })
    .await;
    let good = make_bundle(dir.path(), &trusted, "good", 1, 1024);
    let good_bytes = std::fs::read(&good.path).unwrap();

    // A publisher this mirror does not carry: 403 before the body matters.
    let theirs = make_bundle(dir.path(), &stranger, "theirs", 1, 1024);
    let (status, body) = put(
        &server,
        &url_path(&stranger, |l| l.bundle(&theirs.sha256)),
        std::fs::read(&theirs.path).unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "untrusted publisher");

    // Signed by someone else, pushed under the trusted publisher: verification refuses it.
    let (status, body) = put(
        &server,
        &url_path(&trusted, |l| l.bundle(&theirs.sha256)),
        std::fs::read(&theirs.path).unwrap(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "bundle verification failed");
    assert!(!body["reason"].as_str().unwrap().is_empty());

    // Tampered: one byte changed inside, pushed under its new (matching) hash.
    let mut tampered = good_bytes.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x40;
    let tampered_id = qasid::content_id::ContentId::of_bytes(&tampered);
    let (status, body) = put(
        &server,
        &url_path(&trusted, |l| l.bundle(&tampered_id)),
        tampered,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "bundle verification failed");

    // Garbage and unsigned data.
    let garbage = b"this is not a zip file".to_vec();
    let garbage_id = qasid::content_id::ContentId::of_bytes(&garbage);
    let (status, body) = put(
        &server,
        &url_path(&trusted, |l| l.bundle(&garbage_id)),
        garbage,
    )
    .await;
    assert_eq!(status, 422, "{body}");

    // The bytes are not the ones the URL names.
    let other_id = qasid::content_id::ContentId::of_bytes(b"other");
    let (status, body) = put(
        &server,
        &url_path(&trusted, |l| l.bundle(&other_id)),
        good_bytes.clone(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "hash mismatch");

    // Over the cap: refused from Content-Length alone.
    let big = make_bundle(dir.path(), &trusted, "big", 1, 100 << 10);
    let (status, body) = put(
        &server,
        &url_path(&trusted, |l| l.bundle(&big.sha256)),
        std::fs::read(&big.path).unwrap(),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "too large");

    // No Content-Length (chunked): 411.
    let stream = tokio_util::io::ReaderStream::new(std::io::Cursor::new(good_bytes.clone()));
    let response = client()
        .put(server.url(&url_path(&trusted, |l| l.bundle(&good.sha256))))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 411);

    // publisher.pub is the mirror's to write.
    let (status, _) = put(
        &server,
        &url_path(&trusted, PublisherLayout::publisher_pub),
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, 405);

    // A minisig for a bundle the mirror lacks, then a bad minisig for one it has.
    let (status, body) = put(
        &server,
        &url_path(&trusted, |l| l.minisig(&good.sha256)),
        std::fs::read(format!("{}.minisig", good.path.display())).unwrap(),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "missing objects");
    let (status, _) = put(
        &server,
        &url_path(&trusted, |l| l.bundle(&good.sha256)),
        good_bytes,
    )
    .await;
    assert_eq!(status, 201);
    let theirs_sig = std::fs::read(format!("{}.minisig", theirs.path.display())).unwrap();
    let (status, body) = put(
        &server,
        &url_path(&trusted, |l| l.minisig(&good.sha256)),
        theirs_sig,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "signature verification failed");
    let (status, _) = put(
        &server,
        &url_path(&trusted, |l| l.minisig(&good.sha256)),
        std::fs::read(format!("{}.minisig", good.path.display())).unwrap(),
    )
    .await;
    assert_eq!(status, 201);

    // Nothing refused reached the layout or was left in the temp folder.
    let counts = server.store.counts();
    assert_eq!((counts.bundles, counts.minisigs), (1, 1));
    assert_eq!(
        std::fs::read_dir(server.store_dir.join(".tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_refusals_older_missing_forged() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let repo = dir.path().join("repo");
    let first = make_bundle(dir.path(), &k, "first", 1, 512);
    let envelope1 = publish(&repo, &k, &[&first.path]);
    let server = Server::start(&dir.path().join("store"), &[&k]).await;
    let index_path = url_path(&k, PublisherLayout::index);

    // Nothing pushed yet: the index lists a piece the mirror lacks.
    let (status, body) = put(&server, &index_path, envelope1.clone()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "missing objects");
    let missing = body["missing"].as_array().unwrap();
    assert!(missing[0].as_str().unwrap().contains("/pieces/"), "{body}");

    // Pieces pushed, bundle not: now the bundle is what is missing.
    let layout = PublisherLayout::new(k.public());
    for entry in std::fs::read_dir(repo.join(layout.pieces_dir())).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let bytes = std::fs::read(repo.join(layout.pieces_dir()).join(&name)).unwrap();
        let (status, _) = put(&server, &format!("/{}/{name}", layout.pieces_dir()), bytes).await;
        assert_eq!(status, 201);
    }
    // A staged piece is not served before an index claims it.
    let some_piece = client()
        .get(server.url(&format!("/{}", missing[0].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(some_piece.status(), 404);
    let (status, body) = put(&server, &index_path, envelope1.clone()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["missing"][0].as_str().unwrap(),
        layout.bundle(&first.sha256)
    );
    assert_eq!(
        client()
            .get(server.url(&index_path))
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "an index with missing objects is never installed"
    );

    push_repo(&server, &repo, &k).await;

    // A newer index, then the old one again: older index.
    let second = make_bundle(dir.path(), &k, "second", 1, 512);
    publish(&repo, &k, &[&second.path]);
    push_repo(&server, &repo, &k).await;
    let (status, body) = put(&server, &index_path, envelope1).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "older index");

    // Forged: a byte of the signature flipped.
    let current = std::fs::read(repo.join(layout.index())).unwrap();
    let mut forged: serde_json::Value = serde_json::from_slice(&current).unwrap();
    let sig = forged["signature"].as_str().unwrap().to_owned();
    let first = if sig.starts_with('A') { "B" } else { "A" };
    let flipped = format!("{first}{}", &sig[1..]);
    forged["signature"] = serde_json::Value::String(flipped);
    let (status, body) = put(&server, &index_path, serde_json::to_vec(&forged).unwrap()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "index verification failed");

    // Garbage and another publisher's index.
    let (status, _) = put(&server, &index_path, b"{not json".to_vec()).await;
    assert_eq!(status, 422);
    let other = key(3);
    let other_repo = dir.path().join("other");
    let theirs = make_bundle(dir.path(), &other, "x", 1, 100);
    let other_envelope = publish(&other_repo, &other, &[&theirs.path]);
    let (status, body) = put(&server, &index_path, other_envelope).await;
    assert_eq!(status, 422, "{body}");

    // A piece whose bytes do not match its name.
    let piece_id = qasid::content_id::ContentId::of_bytes(b"x");
    let (status, body) = put(
        &server,
        &url_path(&k, |l| l.piece(&piece_id)),
        b"y".to_vec(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "hash mismatch");

    // The mirror still serves the newest index.
    let served = client()
        .get(server.url(&index_path))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(served, current);
}

/// Pieces carry no signature, but a piece that cannot be one of this publisher's is refused
/// when it is pushed (422), instead of waiting in the staging folder for an index that will
/// never list it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_pieces_are_refused_at_push_time() {
    use qasid::content_id::ContentId;
    use qasid::index::{encode_piece, Entry};

    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let server = Server::start(&dir.path().join("store"), &[&k]).await;
    let retract = || vec![Entry::retract("story").unwrap()];
    let canonical = encode_piece(k.public(), 0, &retract());
    let spaced = String::from_utf8(canonical.clone())
        .unwrap()
        .replacen(',', ", ", 1)
        .into_bytes();
    let junk: [(&str, Vec<u8>); 6] = [
        ("not JSON", b"\x89PNG\r\n\x1a\n not a piece".to_vec()),
        (
            "JSON of another shape",
            br#"{"format":"qasid-index-piece/1"}"#.to_vec(),
        ),
        (
            "another publisher's piece",
            encode_piece(key(2).public(), 0, &retract()),
        ),
        ("non-canonical bytes", spaced),
        ("no entries", encode_piece(k.public(), 0, &[])),
        (
            "an unknown format",
            String::from_utf8(canonical.clone())
                .unwrap()
                .replace("qasid-index-piece/1", "qasid-index-piece/9")
                .into_bytes(),
        ),
    ];
    for (what, bytes) in &junk {
        let path = url_path(&k, |l| l.piece(&ContentId::of_bytes(bytes)));
        let (status, body) = put(&server, &path, bytes.clone()).await;
        assert_eq!(status, 422, "{what}: {body}");
        assert_eq!(body["error"], "index verification failed", "{what}: {body}");
    }
    let staged = server.store_dir.join(".state").join("staged");
    let staged_files = walk_files(&staged);
    assert!(staged_files.is_empty(), "junk was staged: {staged_files:?}");

    // A well-formed piece is still accepted (and staged, unserved, until an index lists it).
    let path = url_path(&k, |l| l.piece(&ContentId::of_bytes(&canonical)));
    let (status, body) = put(&server, &path, canonical.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(walk_files(&staged).len(), 1);

    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        format!(
            "qasid_verification_failures_total{{reason=\"index\"}} {}",
            junk.len()
        ),
        format!(
            "qasid_push_total{{kind=\"piece\",outcome=\"refused\"}} {}",
            junk.len()
        ),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
}

/// Every file below `dir` (none if it does not exist).
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_parallel_pushes_of_the_same_objects_are_safe() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let repo = dir.path().join("repo");
    let made = make_bundle(dir.path(), &k, "race", 1, 200 << 10);
    publish(&repo, &k, &[&made.path]);
    let server = Arc::new(Server::start(&dir.path().join("store"), &[&k]).await);
    let bytes = Arc::new(std::fs::read(&made.path).unwrap());
    let path = url_path(&k, |l| l.bundle(&made.sha256));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let (server, bytes, path) = (server.clone(), bytes.clone(), path.clone());
        tasks.spawn(async move { put(&server, &path, bytes.to_vec()).await.0 });
    }
    let mut created = 0;
    while let Some(status) = tasks.join_next().await {
        let status = status.unwrap();
        assert!(status == 200 || status == 201, "{status}");
        created += usize::from(status == 201);
    }
    assert!(created >= 1);
    // Then the index, in parallel too (after pieces).
    let layout = PublisherLayout::new(k.public());
    for entry in std::fs::read_dir(repo.join(layout.pieces_dir())).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let piece = std::fs::read(repo.join(layout.pieces_dir()).join(&name)).unwrap();
        put(&server, &format!("/{}/{name}", layout.pieces_dir()), piece).await;
    }
    let envelope = Arc::new(std::fs::read(repo.join(layout.index())).unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (server, envelope) = (server.clone(), envelope.clone());
        let path = url_path(&k, PublisherLayout::index);
        tasks.spawn(async move { put(&server, &path, envelope.to_vec()).await.0 });
    }
    let mut statuses = Vec::new();
    while let Some(status) = tasks.join_next().await {
        statuses.push(status.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 201),
        "{statuses:?}"
    );
    let stored = std::fs::read(server.store.path(
        &qasid::store::PublisherId::of(k.public()),
        &qasid::store::ObjectKind::Bundle(made.sha256),
    ))
    .unwrap();
    assert_eq!(stored, *bytes);
    assert_eq!(server.store.counts().bundles, 1);
    assert_eq!(
        std::fs::read_dir(server.store_dir.join(".tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_client_sends_only_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let repo = dir.path().join("repo");
    let a = make_bundle(dir.path(), &k, "a", 1, 2048);
    publish(&repo, &k, &[&a.path]);
    let server = Server::start(&dir.path().join("store"), &[&k]).await;
    let base: reqwest::Url = server.base.parse().unwrap();
    let http = qasid::index::http_client();

    let plan = client::plan(&repo, k.public()).unwrap();
    let first = client::push(&http, &base, &plan, Arc::new(NoProgress))
        .await
        .unwrap();
    // bundle, minisig, piece(s), index.
    assert_eq!(first.skipped, 0);
    assert_eq!(first.sent, plan.objects());

    let again = client::push(&http, &base, &plan, Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!((again.sent, again.skipped), (0, plan.objects()));

    let b = make_bundle(dir.path(), &k, "b", 1, 2048);
    publish(&repo, &k, &[&b.path]);
    let plan = client::plan(&repo, k.public()).unwrap();
    let third = client::push(&http, &base, &plan, Arc::new(NoProgress))
        .await
        .unwrap();
    // The new bundle and its minisig, the new index, and at least the new batch piece.
    assert!(third.sent >= 4 && third.skipped >= 2, "{third:?}");
    let served = client()
        .get(server.url(&url_path(&k, PublisherLayout::index)))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        served,
        std::fs::read(repo.join(PublisherLayout::new(k.public()).index())).unwrap()
    );

    // A mirror that does not trust the publisher.
    let other = Server::start(&dir.path().join("store2"), &[&key(7)]).await;
    let err = client::push(
        &http,
        &other.base.parse().unwrap(),
        &plan,
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
}

/// An index the publisher signed that lists an authentic bundle of one article as another
/// (here "epsilon v1" listed as "hostile v1") is refused: serving it would put one article
/// under another's headline. Checked both when this process installed the bundle and after a
/// restart, when the store reads the bundle back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_listing_a_bundle_as_another_article_is_refused() {
    use qasid::index::{
        ArticleFields, ArticleVersion, EncodedPiece, Entry, Head, HeadFields, LogRef, ObjectRef,
        SignedHead,
    };
    use qasid::limits::IndexLimits;
    use std::time::{Duration, SystemTime};

    let dir = tempfile::tempdir().unwrap();
    let publisher = key(1);
    let store = dir.path().join("store");
    let epsilon = make_bundle(dir.path(), &publisher, "epsilon", 1, 1024);
    let limits = IndexLimits::default();
    let index_listing = |name: &str, sequence: u64| {
        let entry = Entry::Add(
            ArticleVersion::new(
                ArticleFields {
                    name: name.to_owned(),
                    version: 1,
                    title: "Story".into(),
                    date: "2026-03-01".into(),
                    language: "en".into(),
                    author: "Desk".into(),
                    bundle: ObjectRef {
                        sha256: epsilon.sha256,
                        size: epsilon.size,
                    },
                },
                &limits,
            )
            .unwrap(),
        );
        let piece = EncodedPiece::new(publisher.public(), 0, &[entry]);
        let log = LogRef::new(1, vec![piece.reference], piece.reference, &limits).unwrap();
        let now = SystemTime::now();
        let head = Head::new(
            HeadFields {
                publisher: publisher.public().clone(),
                sequence,
                issued: now - Duration::from_secs(60),
                expires: now + Duration::from_secs(7 * 24 * 3600),
                previous: None,
                mirrors: Vec::new(),
                log,
            },
            &limits,
        )
        .unwrap();
        (piece, SignedHead::sign(head, &publisher).unwrap())
    };
    let (wrong_piece, wrong) = index_listing("hostile", 1);
    let expected = "holds epsilon v1, but the index lists it as hostile v1";

    let server = Server::start(&store, &[&publisher]).await;
    let bundle_path = url_path(&publisher, |l| l.bundle(&epsilon.sha256));
    let (status, body) = put(&server, &bundle_path, std::fs::read(&epsilon.path).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    let piece_path = url_path(&publisher, |l| l.piece(&wrong_piece.reference.sha256));
    let (status, body) = put(&server, &piece_path, wrong_piece.bytes.clone()).await;
    assert_eq!(status, 201, "{body}");
    let index_path = url_path(&publisher, |l| l.index());
    let (status, body) = put(&server, &index_path, wrong.envelope().to_vec()).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains(expected),
        "{body}"
    );
    server.stop().await;

    // A new process knows nothing of the bundle's install: the store reads it back.
    let server = Server::start(&store, &[&publisher]).await;
    let (status, body) = put(&server, &index_path, wrong.envelope().to_vec()).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains(expected),
        "{body}"
    );
    let served = client()
        .get(server.url(&index_path))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(served, 404, "no index is served");
    server.stop().await;

    // Control: the same bundle listed as what it is installs (on a mirror whose history does
    // not hold the lie: the log only grows, so the refused entry stays in the publisher's log).
    let (right_piece, right) = index_listing("epsilon", 1);
    let server = Server::start(&dir.path().join("store2"), &[&publisher]).await;
    let (status, body) = put(&server, &bundle_path, std::fs::read(&epsilon.path).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    let piece_path = url_path(&publisher, |l| l.piece(&right_piece.reference.sha256));
    let (status, body) = put(&server, &piece_path, right_piece.bytes.clone()).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = put(&server, &index_path, right.envelope().to_vec()).await;
    assert_eq!(status, 201, "{body}");
    server.stop().await;
}
