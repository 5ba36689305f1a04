//! The checked-in chunk list vector `tests/vectors/chunks-v1/`: a repo holding one bundle just
//! over the chunk threshold (so it has a chunk list of five chunks, the last one short), made
//! by `qasid publish`'s own code from a fixed seed, folder and time; must-fail chunk lists
//! named after the attack; and index pieces that test the entry's `chunks` rules.
//! `expect.json` says what a verifier must conclude for every case; this test checks qasid's
//! code against it, and that the generator below still makes every file byte for byte. The
//! browser reader runs against the same `expect.json`.
//!
//! To regenerate after a deliberate format change: `QASID_REGENERATE_VECTORS=1 cargo test
//! --test it chunks_vectors`, then review the diff.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use qasid::bundle::{self, CreateOptions};
use qasid::index::chunks::{self, ChunkError, ChunkList};
use qasid::index::layout::PublisherLayout;
use qasid::index::{validate_piece, Entry, IndexError, MirrorUrl, ObjectRef, SignedHead};
use qasid::keys::{PublicKey, SecretKey};
use qasid::limits::{BundleLimits, IndexLimits, CHUNKED_BUNDLE_THRESHOLD, CHUNK_SIZE};
use qasid::repo::{PublishRequest, Repo};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn vector_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/chunks-v1")
}

/// 32 bytes of 0x51 (the index vector's key): a test key, never use it.
const SEED: [u8; 32] = [0x51; 32];

/// Bytes of `images/noise.bin`: the bundle ends a few KB over the 1 MiB threshold.
const NOISE_BYTES: usize = (1 << 20) + 4096;

/// `images/noise.bin`: sha256("qasid chunks-v1 noise" ‖ u32 big-endian i) for i = 0, 1, …,
/// concatenated and cut at [`NOISE_BYTES`]. Incompressible, so the bundle stores it as is.
fn noise() -> Vec<u8> {
    let mut out = Vec::with_capacity(NOISE_BYTES + 32);
    let mut i: u32 = 0;
    while out.len() < NOISE_BYTES {
        let mut h = Sha256::new();
        h.update(b"qasid chunks-v1 noise");
        h.update(i.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        i += 1;
    }
    out.truncate(NOISE_BYTES);
    out
}

const ARTICLE: &str = "---
title: A large article
author: Qasid test vector
date: 2026-01-15
language: en
---

The `chunks-v1` test vector: `images/noise.bin` makes this bundle just larger than the chunk
threshold (1 MiB), so its index entry names a chunk list of five 256 KiB chunks, the last one
short.
";

struct Vector {
    files: BTreeMap<String, Vec<u8>>,
    cases: Vec<Value>,
}

impl Vector {
    fn case(&mut self, case: Value) {
        self.cases.push(case);
    }

    fn file(&mut self, path: &str, bytes: Vec<u8>) {
        self.files.insert(path.to_owned(), bytes);
    }
}

fn object_json(object: ObjectRef) -> Value {
    json!({"sha256": object.sha256.to_string(), "size": object.size})
}

/// Publishes the large bundle into a fresh repo; returns every file of its served layout.
fn publish(key: &SecretKey) -> BTreeMap<String, Vec<u8>> {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("large-article");
    fs::create_dir_all(source.join("images")).unwrap();
    fs::write(source.join("article.md"), ARTICLE).unwrap();
    fs::write(source.join("images/noise.bin"), noise()).unwrap();
    let zip = work.path().join("large-article.zip");
    bundle::create(&source, key, &zip, &CreateOptions::default()).unwrap();
    let root = work.path().join("repo");
    let limits = IndexLimits::default();
    let repo = Repo::new(&root, key.public(), limits.clone(), BundleLimits::default());
    let request = PublishRequest {
        bundles: vec![zip],
        retract: Vec::new(),
        refresh: false,
        mirrors: Some(vec![MirrorUrl::parse(
            "https://mirror.example/news/",
            &limits,
        )
        .unwrap()]),
        expires_in: Duration::from_secs(366 * 24 * 3600),
        now: humantime::parse_rfc3339("2026-01-15T00:00:00Z").unwrap(),
    };
    repo.publish(key, &request).unwrap();
    let mut files = BTreeMap::new();
    let mut stack = vec![root.join("qasid")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(&root).unwrap().to_str().unwrap();
                files.insert(format!("repo/{relative}"), fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn generate() -> Vector {
    let key = SecretKey::from_seed(&SEED);
    let pk = key.public();
    let layout = PublisherLayout::new(pk);
    let mut v = Vector {
        files: publish(&key),
        cases: Vec::new(),
    };
    v.file("publisher.pub", pk.to_file_text().into_bytes());
    v.file("seed.hex", format!("{}\n", hex::encode(SEED)).into_bytes());

    // The published entry and its objects.
    let index_path = format!("repo/{}", layout.index());
    let signed = SignedHead::verify(&v.files[&index_path], pk, &IndexLimits::default()).unwrap();
    let piece_ref = signed.head().log().pieces()[0];
    let piece_path = format!("repo/{}", layout.piece(&piece_ref.sha256));
    let piece = v.files[&piece_path].clone();
    let entries: Value = serde_json::from_slice(&piece).unwrap();
    let entry = &entries["entries"][0];
    let bundle: ObjectRef = serde_json::from_value(entry["bundle"].clone()).unwrap();
    let listed: ObjectRef = serde_json::from_value(entry["chunks"].clone()).unwrap();
    let bundle_path = format!("repo/{}", layout.bundle(&bundle.sha256));
    let list_path = format!("repo/{}", layout.chunks(&listed.sha256));
    let list = v.files[&list_path].clone();
    assert!(
        bundle.size > CHUNKED_BUNDLE_THRESHOLD && bundle.size < CHUNKED_BUNDLE_THRESHOLD + 8192
    );
    assert_eq!(list.len(), 32 * 6);

    v.case(json!({
        "kind": "index", "file": index_path, "expect": "ok",
        "sequence": 1, "id": signed.id().to_string(), "previous": null, "entries": 1,
    }));
    v.case(json!({
        "kind": "piece", "file": piece_path, "expect": "ok",
        "sha256": piece_ref.sha256.to_string(), "first": 0, "count": 1,
    }));
    let chunk_case = |file: &str, chunks: ObjectRef, expect: Value, why: &str| {
        let mut case = json!({
            "kind": "chunks", "bundle_file": bundle_path, "file": file,
            "entry": {"bundle": object_json(bundle), "chunks": object_json(chunks)},
            "why": why,
        });
        case.as_object_mut()
            .unwrap()
            .extend(expect.as_object().unwrap().clone());
        case
    };
    v.case(chunk_case(
        &list_path,
        listed,
        json!({"expect": "ok", "count": 5, "last_chunk_bytes": bundle.size - 4 * CHUNK_SIZE}),
        "the published list: every chunk of the bundle matches",
    ));

    // Must-fail lists. Each case's entry names the list by its own sha256 and size (as a
    // publisher's signed entry would), so the list passes the plain hash check and the chunk
    // rules alone must refuse it.
    let fail_list = |v: &mut Vector, name: &str, bytes: Vec<u8>, expect: Value, why: &str| {
        let file = format!("cases/fail_{name}");
        let object = ObjectRef::of_bytes(&bytes);
        v.file(&file, bytes);
        let case = chunk_case(&file, object, expect, why);
        v.case(case);
    };
    fail_list(
        &mut v,
        "list_one_hash_short",
        list[..list.len() - 32].to_vec(),
        json!({"expect": "wrong_size"}),
        "the last chunk's hash dropped: a list must be exactly 32 x (1 + chunks) bytes",
    );
    fail_list(
        &mut v,
        "list_one_hash_long",
        [&list[..], &list[list.len() - 32..]].concat(),
        json!({"expect": "wrong_size"}),
        "one hash too many",
    );
    let mut wrong = list.clone();
    wrong[32 + 2 * 32 + 7] ^= 0x01;
    fail_list(
        &mut v,
        "chunk_2_hash_wrong",
        wrong,
        json!({"expect": "chunk_mismatch", "index": 2, "offset": 2 * CHUNK_SIZE}),
        "chunk 2's hash altered: the verifier names chunk 2 and its byte offset",
    );
    let mut wrong_last = list.clone();
    let end = wrong_last.len() - 1;
    wrong_last[end] ^= 0x80;
    fail_list(
        &mut v,
        "last_chunk_hash_wrong",
        wrong_last,
        json!({"expect": "chunk_mismatch", "index": 4, "offset": 4 * CHUNK_SIZE}),
        "the short last chunk's hash altered",
    );
    // The list of another bundle (this bundle with its last byte changed): valid for that
    // bundle, so its hashes of chunks 0-3 even match; it names the other bundle.
    let mut other_bundle = v.files[&bundle_path].clone();
    let last = other_bundle.len() - 1;
    other_bundle[last] ^= 0x01;
    let other = ObjectRef::of_bytes(&other_bundle);
    let other_list = chunks::list_of(other, &other_bundle[..])
        .unwrap()
        .unwrap()
        .encode();
    fail_list(
        &mut v,
        "list_of_another_bundle",
        other_list,
        json!({"expect": "wrong_bundle"}),
        "the entry names the chunk list of another bundle",
    );

    // Entry rules, as index pieces (checked on their own, like a pushed piece).
    let piece_text = String::from_utf8(piece.clone()).unwrap();
    let chunks_member = format!(
        ",\"chunks\":{{\"sha256\":\"{}\",\"size\":{}}}",
        listed.sha256, listed.size
    );
    assert!(piece_text.contains(&chunks_member));
    let piece_case = |v: &mut Vector, name: &str, text: String, expect: &str, why: &str| {
        let file = format!("cases/{name}.json");
        v.file(&file, text.into_bytes());
        v.case(json!({"kind": "piece", "file": file, "expect": expect, "why": why}));
    };
    piece_case(
        &mut v,
        "piece_large_bundle_without_chunks",
        piece_text.replacen(&chunks_member, "", 1),
        "ok",
        "a bundle above the threshold without a chunk list: allowed (published before chunk \
         lists existed); readers fetch it whole",
    );
    let bundle_member = format!("\"size\":{}}}", bundle.size);
    let at_threshold = format!("\"size\":{CHUNKED_BUNDLE_THRESHOLD}}}");
    piece_case(
        &mut v,
        "fail_piece_chunks_on_small_bundle",
        piece_text.replacen(&bundle_member, &at_threshold, 1),
        "malformed",
        "a chunks member on a bundle of exactly 1 MiB (the threshold): only larger bundles \
         have one",
    );
    piece_case(
        &mut v,
        "fail_piece_chunks_wrong_size",
        piece_text.replacen(
            &format!("\"size\":{}}}}}", listed.size),
            &format!("\"size\":{}}}}}", listed.size + 32),
            1,
        ),
        "malformed",
        "a chunks size that is not 32 x (1 + chunks) for the bundle's size",
    );
    piece_case(
        &mut v,
        "fail_piece_chunks_null",
        piece_text.replacen(&chunks_member, ",\"chunks\":null", 1),
        "malformed",
        "\"chunks\":null: absent is spelled by leaving the member out",
    );
    piece_case(
        &mut v,
        "fail_piece_chunks_before_bundle",
        {
            let bundle_json = format!(
                ",\"bundle\":{{\"sha256\":\"{}\",\"size\":{}}}",
                bundle.sha256, bundle.size
            );
            piece_text.replacen(
                &format!("{bundle_json}{chunks_member}"),
                &format!("{chunks_member}{bundle_json}"),
                1,
            )
        },
        "malformed",
        "members in another order",
    );
    piece_case(
        &mut v,
        "fail_piece_retract_with_chunks",
        format!(
            "{{\"format\":\"qasid-index-piece/1\",\"publisher\":\"{}\",\"first\":0,\"entries\":[{{\"op\":\"retract\",\"name\":\"large-article\"{chunks_member}}}]}}",
            pk.to_base64()
        ),
        "malformed",
        "a retract entry with a chunks member",
    );

    v.file(
        "expect.json",
        serde_json::to_vec_pretty(&json!({
            "about": "qasid chunk list vector: see README.md. kind index and piece: as in \
                      index-v1. kind chunks: the entry's bundle and chunks references (as a \
                      signed entry gives them), the list file (which matches entry.chunks by \
                      sha256 and size) and the bundle file; check the reference, parse the \
                      list for the bundle, then check every chunk of the bundle against it.",
            "publisher": "publisher.pub",
            "chunk_size": CHUNK_SIZE,
            "threshold": CHUNKED_BUNDLE_THRESHOLD,
            "cases": v.cases,
        }))
        .map(|mut b| {
            b.push(b'\n');
            b
        })
        .unwrap(),
    );
    v
}

#[test]
fn chunks_vector_rebuilds_byte_for_byte() {
    let dir = vector_dir();
    let vector = generate();
    crate::index_vectors::rebuild_or_compare(&dir, &vector.files);
}

/// What the reference code concludes for a `chunks` case: the reference check, the list's
/// parse, then every chunk of the bundle, in that order (as a reader meets them).
fn check_chunks(case: &Value, dir: &Path) -> Result<ChunkList, ChunkError> {
    let bundle: ObjectRef = serde_json::from_value(case["entry"]["bundle"].clone()).unwrap();
    let listed: ObjectRef = serde_json::from_value(case["entry"]["chunks"].clone()).unwrap();
    let bytes = fs::read(dir.join(case["file"].as_str().unwrap())).unwrap();
    assert_eq!(
        ObjectRef::of_bytes(&bytes),
        listed,
        "the list file matches its entry"
    );
    let zip = fs::read(dir.join(case["bundle_file"].as_str().unwrap())).unwrap();
    assert_eq!(ObjectRef::of_bytes(&zip), bundle);
    chunks::check_reference(bundle, listed)?;
    let list = ChunkList::parse(&bytes, bundle)?;
    for i in 0..list.count() {
        let (offset, length) = list.range(i);
        list.check(i, &zip[offset as usize..(offset + length) as usize])?;
    }
    Ok(list)
}

#[test]
fn every_chunks_vector_case_has_its_expected_outcome() {
    let dir = vector_dir();
    let expect: Value =
        serde_json::from_slice(&fs::read(dir.join("expect.json")).unwrap()).unwrap();
    let pk =
        PublicKey::from_file_text(&fs::read_to_string(dir.join("publisher.pub")).unwrap()).unwrap();
    let limits = IndexLimits::default();
    let cases = expect["cases"].as_array().unwrap();
    assert!(cases.len() >= 12, "{}", cases.len());
    for case in cases {
        let file = case["file"].as_str().unwrap();
        let got = match case["kind"].as_str().unwrap() {
            "index" => {
                let bytes = fs::read(dir.join(file)).unwrap();
                let verified = SignedHead::verify(&bytes, &pk, &limits).unwrap();
                assert_eq!(case["id"], verified.id().to_string());
                "ok".to_owned()
            }
            "piece" => {
                let bytes = fs::read(dir.join(file)).unwrap();
                match validate_piece(&bytes, &pk, &limits) {
                    Ok(_) => "ok".to_owned(),
                    Err(IndexError::Malformed { .. }) => "malformed".to_owned(),
                    Err(e) => panic!("{file}: unexpected {e}"),
                }
            }
            "chunks" => match check_chunks(case, &dir) {
                Ok(list) => {
                    assert_eq!(case["count"], list.count(), "{file}");
                    let (_, last) = list.range(list.count() - 1);
                    assert_eq!(case["last_chunk_bytes"], last, "{file}");
                    "ok".to_owned()
                }
                Err(e) => {
                    if let ChunkError::ChunkMismatch { index, offset, .. } = e {
                        assert_eq!(case["index"], index, "{file}");
                        assert_eq!(case["offset"], offset, "{file}");
                    }
                    e.name().to_owned()
                }
            },
            other => panic!("unknown kind {other}"),
        };
        assert_eq!(case["expect"], got, "{file}: {}", case["why"]);
    }
}

/// The published entry names its chunk list, and the list is what the bundle's bytes give:
/// the publisher side (`qasid publish`) writes both.
#[test]
fn the_published_entry_names_the_bundles_own_chunk_list() {
    let key = SecretKey::from_seed(&SEED);
    let files = publish(&key);
    let layout = PublisherLayout::new(key.public());
    let signed = SignedHead::verify(
        &files[&format!("repo/{}", layout.index())],
        key.public(),
        &IndexLimits::default(),
    )
    .unwrap();
    let piece = &files[&format!(
        "repo/{}",
        layout.piece(&signed.head().log().pieces()[0].sha256)
    )];
    let reference = validate_piece(piece, key.public(), &IndexLimits::default()).unwrap();
    let entries =
        qasid::index::decode_piece(piece, key.public(), &reference, &IndexLimits::default())
            .unwrap();
    let Entry::Add(article) = &entries[0] else {
        panic!("an add entry")
    };
    let listed = article
        .chunks()
        .expect("a bundle over 1 MiB gets a chunk list");
    let zip = &files[&format!("repo/{}", layout.bundle(&article.bundle().sha256))];
    let list = chunks::list_of(article.bundle(), &zip[..])
        .unwrap()
        .unwrap();
    assert_eq!(ObjectRef::of_bytes(&list.encode()), listed);
    assert_eq!(
        files[&format!("repo/{}", layout.chunks(&listed.sha256))],
        list.encode()
    );
    assert_eq!(&list.encode()[..32], article.bundle().sha256.as_bytes());
}
