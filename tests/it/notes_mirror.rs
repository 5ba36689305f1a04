//! Notes on the publisher and mirror side, with the real binary and real mirrors on 127.0.0.1:
//! `publish --note-out` writes the note file and the layout's `note`; `push` delivers it;
//! a mirror serves it at `/qasid/v1/publishers/<id>/note`, refuses forged and older notes
//! (keeping the held one), and a second mirror gets it by syncing; with roots, only a key
//! delegated the `note` role can make one.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qasid::keys::{write_key_pair, PublicKey, SecretKey};
use qasid::note::{Note, NoteMirror};

use crate::json_support::{check_json, validate};
use crate::mirror_support::WAIT;
use crate::roots::{
    article, bundle, expect, mirror_trusting as mirror, newsroom, ok, qasid, rotate,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `GET url`: status, content type and body.
fn get(url: &str) -> (u16, String, String) {
    runtime().block_on(async {
        let r = crate::mirror_support::client()
            .get(url)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let kind = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, kind, r.text().await.unwrap())
    })
}

/// `PUT url` with `body`: status and body.
fn put(url: &str, body: String) -> (u16, String) {
    runtime().block_on(async {
        let r = crate::mirror_support::client()
            .put(url)
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn signed(key: &SecretKey, sequence: u64, url: &str) -> String {
    Note {
        publisher: key.public().id(),
        sequence,
        expires: now_secs() + 86400,
        mirrors: vec![NoteMirror::parse(url).unwrap()],
    }
    .sign(key)
    .unwrap()
    .to_uri()
}

/// The note's path under a mirror's base URL for publisher `id`.
fn note_path(id: &PublicKey) -> String {
    format!("/qasid/v1/publishers/{}/note", id.hex())
}

/// The sequence `note show --json` reports.
fn shown_sequence(dir: &Path, note: &str, publisher: &str) -> u64 {
    let shown = ok(
        dir,
        &["note", "show", note, "--publisher", publisher, "--json"],
    );
    let doc: serde_json::Value = serde_json::from_str(&shown).unwrap();
    doc["sequence"].as_u64().unwrap()
}

/// `fetch alpha` given only the note at `url` (no mirror), which must save the article.
fn fetch_through_note(dir: &Path, url: &str, publisher: &str) {
    expect(
        dir,
        &[
            "fetch",
            "alpha",
            "--note",
            url,
            "--publisher",
            publisher,
            "--out",
            "got",
            "--connect-timeout",
            "5s",
            "--timeout",
            "20s",
        ],
        0,
    );
    assert!(dir.join("got/alpha-v1.zip").is_file());
}

#[test]
fn a_published_note_is_pushed_served_refuses_forgeries_and_rollback_and_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = SecretKey::from_seed(&[0x61; 32]);
    write_key_pair(&dir.join("P"), &key, None, false).unwrap();
    let first = mirror(dir, "store1", "P/publisher.pub", &[]);
    let to = format!("{}/", first.base);
    article(dir, "alpha", "Alpha");
    bundle(dir, "alpha", "P/publisher.key", "alpha", "1", "alpha-1.zip");
    let published = ok(
        dir,
        &[
            "publish",
            "alpha-1.zip",
            "--repo",
            "repo",
            "--key",
            "P/publisher.key",
            "--mirror",
            &to,
            "--mirror",
            "https://other.example/",
            "--note-out",
            "note.txt",
        ],
    );
    assert!(published.contains("note sequence"), "{published}");
    // FILE and the layout's note hold the same one line, and it verifies.
    let file = std::fs::read_to_string(dir.join("note.txt")).unwrap();
    assert!(
        file.starts_with("qasid:1:") && file.ends_with('\n'),
        "{file}"
    );
    assert_eq!(file.lines().count(), 1);
    let layout_note = dir.join(format!("repo{}", note_path(key.public())));
    assert_eq!(std::fs::read_to_string(&layout_note).unwrap(), file);
    let shown = ok(
        dir,
        &["note", "show", "note.txt", "--publisher", "P/publisher.pub"],
    );
    assert!(
        shown.contains(&to) && shown.contains("https://other.example/"),
        "{shown}"
    );
    let sequence = shown_sequence(dir, "note.txt", "P/publisher.pub");
    assert!(
        sequence.abs_diff(now_secs()) < 600,
        "sequence {sequence} is the issue time"
    );

    // Pushed after the index, served as text with the index's short cache.
    ok(dir, &["push", "--repo", "repo", "--to", &to]);
    let url = format!("{}{}", first.base, note_path(key.public()));
    let (status, kind, body) = get(&url);
    assert_eq!((status, body.as_str()), (200, file.as_str()));
    assert!(kind.starts_with("text/plain"), "{kind}");

    // A reader with nothing but the mirror's note URL reaches the article.
    fetch_through_note(dir, &url, "P/publisher.pub");

    // A note by another key, and an older note by the publisher: refused, the held one kept.
    let thief = SecretKey::from_seed(&[0x62; 32]);
    let forged = Note {
        publisher: key.public().id(),
        sequence: sequence + 10,
        expires: now_secs() + 86400,
        mirrors: vec![NoteMirror::parse("https://evil.example/").unwrap()],
    };
    let mut forged_bytes = forged.sign(&key).unwrap().as_bytes().to_vec();
    let other = signed(&thief, sequence + 10, "https://evil.example/");
    // The publisher's key id with the thief's signature: the key id alone proves nothing.
    let thief_sig = qasid::note::SignedNote::from_uri(&other).unwrap();
    let sig_at = forged_bytes.len() - 64;
    forged_bytes[sig_at..]
        .copy_from_slice(&thief_sig.as_bytes()[thief_sig.as_bytes().len() - 64..]);
    let forged_uri = format!(
        "qasid:1:{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            &forged_bytes
        )
    );
    for (attempt, want) in [(forged_uri, 422), (other, 422)] {
        let (status, answer) = put(&url, attempt);
        assert_eq!(status, want, "{answer}");
    }
    let (status, answer) = put(&url, signed(&key, sequence - 1, "https://old.example/"));
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer.contains("older note") && answer.contains("rollback"),
        "{answer}"
    );
    assert_eq!(get(&url).2, file, "the held note is kept");

    // A second mirror syncing from the first gets the note.
    let second = mirror(
        dir,
        "store2",
        "P/publisher.pub",
        &["--upstream", &to, "--sync-interval", "1s"],
    );
    let synced = format!("{}{}", second.base, note_path(key.public()));
    let deadline = Instant::now() + WAIT;
    loop {
        if get(&synced).2 == file {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the syncing mirror gets the note in time"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The next publish makes a newer note; pushed to the first, it reaches the second with
    // the new index.
    std::thread::sleep(Duration::from_millis(1100));
    ok(
        dir,
        &[
            "publish",
            "--refresh",
            "--repo",
            "repo",
            "--key",
            "P/publisher.key",
            "--note-out",
            "note.txt",
        ],
    );
    let newer = std::fs::read_to_string(dir.join("note.txt")).unwrap();
    assert!(shown_sequence(dir, "note.txt", "P/publisher.pub") > sequence);
    ok(dir, &["push", "--repo", "repo", "--to", &to]);
    assert_eq!(get(&url).2, newer);
    let deadline = Instant::now() + WAIT;
    while get(&synced).2 != newer {
        assert!(
            Instant::now() < deadline,
            "the newer note is synced in time"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn only_a_key_with_the_note_role_can_write_a_note_and_readers_and_mirrors_verify_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    newsroom(dir);
    // Root 2 adds S2 for bundles and index heads only.
    rotate(
        dir,
        "root-2.json",
        &[
            "--signing-key",
            "S2/publisher.pub",
            "--roles",
            "bundle,index",
        ],
        &["A", "B"],
    );
    let index = std::fs::read_dir(dir.join("repo/qasid/v1/publishers"))
        .unwrap()
        .map(|e| e.unwrap().path().join("index.json"))
        .find(|p| p.is_file())
        .unwrap();
    let before = std::fs::read(&index).unwrap();
    let refused = qasid(
        dir,
        &[
            "publish",
            "--refresh",
            "--repo",
            "repo",
            "--key",
            "S2/publisher.key",
            "--mirror",
            "https://m.example/",
            "--note-out",
            "n2.txt",
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("note role") && message.contains("root rotate"),
        "{message}"
    );
    // Nothing written: no note file, no layout note, the same index.
    assert!(!dir.join("n2.txt").exists());
    assert!(!index.with_file_name("note").exists());
    assert_eq!(std::fs::read(&index).unwrap(), before);

    // S has every role (root 1 gave it bundle, index and note).
    let first = mirror(dir, "store1", "root.json", &[]);
    let to = format!("{}/", first.base);
    let out = qasid(
        dir,
        &[
            "publish",
            "--refresh",
            "--repo",
            "repo",
            "--key",
            "S/publisher.key",
            "--mirror",
            &to,
            "--note-out",
            "n.txt",
            "--json",
        ],
    );
    let doc = check_json(&out, "qasid/publish/1");
    let note = std::fs::read_to_string(dir.join("n.txt")).unwrap();
    assert_eq!(doc["note"]["uri"].as_str(), Some(note.trim()));
    assert_eq!(doc["note"]["mirrors"][0].as_str(), Some(to.as_str()));
    validate(&[("publish --note-out".to_owned(), doc)]);
    assert_eq!(
        std::fs::read_to_string(index.with_file_name("note")).unwrap(),
        note
    );
    // A reader trusting the publisher's first root verifies it; S alone is not the publisher.
    let shown = ok(dir, &["note", "show", "n.txt", "--publisher", "root.json"]);
    assert!(shown.contains(&to), "{shown}");
    expect(
        dir,
        &["note", "show", "n.txt", "--publisher", "A/publisher.pub"],
        3,
    );
    // The mirror, trusting root.json and told of root 2 by the push, takes and serves it.
    ok(dir, &["push", "--repo", "repo", "--to", &to]);
    let publisher_dir = index
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let url = format!("{}/qasid/v1/publishers/{publisher_dir}/note", first.base);
    assert_eq!(get(&url).2, note);
    // And a reader reaches the article through the served note.
    fetch_through_note(dir, &url, "root.json");
}

#[test]
fn note_out_refuses_an_empty_mirror_list_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = SecretKey::from_seed(&[0x63; 32]);
    write_key_pair(&dir.join("P"), &key, None, false).unwrap();
    article(dir, "alpha", "Alpha");
    bundle(dir, "alpha", "P/publisher.key", "alpha", "1", "alpha-1.zip");
    let out = qasid(
        dir,
        &[
            "publish",
            "alpha-1.zip",
            "--repo",
            "repo",
            "--key",
            "P/publisher.key",
            "--note-out",
            "note.txt",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lists no mirror"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("note.txt").exists());
    assert!(!dir.join("repo/qasid").exists(), "nothing published either");
}
