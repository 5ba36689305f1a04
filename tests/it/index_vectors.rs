//! The checked-in index vector `tests/vectors/index-v1/`: a small canonical repo index (two
//! publishes, so `previous` and a batch outside `pieces` are exercised) made from a fixed seed
//! and fixed times, and must-fail variants named after the attack (`cases/fail_*.json`).
//! `expect.json` says what a verifier must conclude for every file; this test checks qasid's
//! verifier against it, and that the generator below still makes every file byte for byte.
//! A second implementation (the browser reader) runs against the same `expect.json`.
//!
//! To regenerate after a deliberate format change: `QASID_REGENERATE_VECTORS=1 cargo test
//! --test it index_vectors`, then review the diff.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::engine::general_purpose::{STANDARD as B64, STANDARD_NO_PAD as B64_NO_PAD};
use base64::Engine as _;
use qasid::content_id::ContentId;
use qasid::index::layout::PublisherLayout;
use qasid::index::{
    merged_counts, update_from_dir, validate_piece, ArticleFields, ArticleVersion, EncodedPiece,
    Entry, Head, HeadFields, IndexError, LogRef, MirrorUrl, ObjectRef, SignedHead, Tracker,
};
use qasid::keys::{Domain, PublicKey, SecretKey};
use qasid::limits::IndexLimits;
use serde_json::{json, Value};

fn vector_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/index-v1")
}

/// 32 bytes of 0x51: a test key, never use it.
const SEED: [u8; 32] = [0x51; 32];

fn time(text: &str) -> SystemTime {
    humantime::parse_rfc3339(text).unwrap()
}

fn article(name: &str, title: &str, author: &str, bundle: &[u8]) -> Entry {
    Entry::Add(
        ArticleVersion::new(
            ArticleFields {
                name: name.into(),
                version: 1,
                title: title.into(),
                date: "2026-01-15".into(),
                language: "en".into(),
                author: author.into(),
                bundle: ObjectRef {
                    sha256: ContentId::of_bytes(bundle),
                    size: bundle.len() as u64,
                },
            },
            &IndexLimits::default(),
        )
        .unwrap(),
    )
}

/// Every file of the vector, by path relative to its folder.
struct Vector {
    files: BTreeMap<String, Vec<u8>>,
    cases: Vec<Value>,
}

impl Vector {
    fn add(&mut self, path: &str, bytes: Vec<u8>, case: Value) {
        let mut case = case;
        case["file"] = json!(path);
        self.cases.push(case);
        self.files.insert(path.to_owned(), bytes);
    }

    /// A must-fail variant of an `index.json`.
    fn fail_index(&mut self, name: &str, bytes: Vec<u8>, expect: &str, why: &str) {
        self.add(
            &format!("cases/fail_{name}.json"),
            bytes,
            json!({"kind": "index", "expect": expect, "why": why}),
        );
    }

    /// A must-fail variant of a piece, checked on its own (as a mirror checks a pushed piece).
    fn fail_piece(&mut self, name: &str, bytes: Vec<u8>, why: &str) {
        self.add(
            &format!("cases/fail_{name}.json"),
            bytes,
            json!({"kind": "piece", "expect": "malformed", "why": why}),
        );
    }
}

/// An envelope around `head` bytes signed with `key`, spelled canonically.
fn envelope(key: &SecretKey, head: &[u8]) -> Vec<u8> {
    let signature = key.sign(Domain::IndexHead, head);
    format!(
        "{{\"format\":\"qasid-index-envelope/1\",\"head\":\"{}\",\"signature\":\"{}\"}}\n",
        B64.encode(head),
        B64.encode(signature)
    )
    .into_bytes()
}

fn replace_once(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(text.contains(from), "{from:?} not in {text}");
    text.replacen(from, to, 1).into_bytes()
}

fn generate() -> Vector {
    let key = SecretKey::from_seed(&SEED);
    let pk = key.public();
    let limits = IndexLimits::default();
    let layout = PublisherLayout::new(pk);
    let mut v = Vector {
        files: BTreeMap::new(),
        cases: Vec::new(),
    };
    v.files
        .insert("publisher.pub".into(), pk.to_file_text().into_bytes());
    v.files.insert(
        "seed.hex".into(),
        format!("{}\n", hex::encode(SEED)).into_bytes(),
    );
    let mirrors = vec![MirrorUrl::parse("https://mirror.example/news/", &limits).unwrap()];

    // Publish 1: one article. Its title has a quote and a backslash (the only escapes), its
    // author is in Urdu (raw UTF-8, never \u escapes).
    let e0 = article(
        "alpha",
        "Alpha \"quoted\" \\ report",
        "قاصد",
        b"alpha bundle",
    );
    let p1 = EncodedPiece::new(pk, 0, std::slice::from_ref(&e0));
    let head1 = Head::new(
        HeadFields {
            publisher: pk.clone(),
            sequence: 1,
            issued: time("2026-01-15T00:00:00Z"),
            expires: time("2099-12-31T00:00:00Z"),
            previous: None,
            mirrors: mirrors.clone(),
            log: LogRef::new(1, vec![p1.reference], p1.reference, &limits).unwrap(),
        },
        &limits,
    )
    .unwrap();
    let s1 = SignedHead::sign(head1, &key).unwrap();

    // Publish 2: a batch of two (a new article and a retraction); the merge rule folds the
    // one-entry piece into a three-entry piece, and the batch is stored beside it.
    let e1 = article("beta", "Beta: é ü ñ", "Desk", b"beta bundle");
    let e2 = Entry::retract("alpha").unwrap();
    assert_eq!(merged_counts(&[1], 2), [3]);
    let all = EncodedPiece::new(pk, 0, &[e0, e1.clone(), e2.clone()]);
    let batch = EncodedPiece::new(pk, 1, &[e1, e2]);
    let head2 = Head::new(
        HeadFields {
            publisher: pk.clone(),
            sequence: 2,
            issued: time("2026-01-16T00:00:00Z"),
            expires: time("2099-12-31T00:00:00Z"),
            previous: Some(*s1.id()),
            mirrors,
            log: LogRef::new(3, vec![all.reference], batch.reference, &limits).unwrap(),
        },
        &limits,
    )
    .unwrap();
    let s2 = SignedHead::sign(head2, &key).unwrap();

    let repo = |relative: String| format!("repo/{relative}");
    let index_case = |s: &SignedHead, entries: u64| {
        json!({
            "kind": "index",
            "expect": "ok",
            "sequence": s.head().sequence(),
            "id": s.id().to_string(),
            "previous": s.head().previous().map(|p| p.to_string()),
            "entries": entries,
        })
    };
    v.add(
        &repo(layout.index()),
        s2.envelope().to_vec(),
        index_case(&s2, 3),
    );
    v.add(
        "cases/index-1.json",
        s1.envelope().to_vec(),
        index_case(&s1, 1),
    );
    for piece in [&p1, &all, &batch] {
        v.add(
            &repo(layout.piece(&piece.reference.sha256)),
            piece.bytes.clone(),
            json!({
                "kind": "piece",
                "expect": "ok",
                "sha256": piece.reference.sha256.to_string(),
                "first": piece.reference.first,
                "count": piece.reference.count,
            }),
        );
    }

    // Envelope spellings: each still carries a valid signature over the real head bytes.
    let good = s2.envelope();
    let members: Value = serde_json::from_slice(good).unwrap();
    let (h, sig) = (
        members["head"].as_str().unwrap(),
        members["signature"].as_str().unwrap(),
    );
    let head = B64.decode(h).unwrap();
    v.fail_index(
        "respaced_envelope",
        replace_once(good, "{", "{ "),
        "malformed",
        "one added space: the same document spelled differently",
    );
    v.fail_index(
        "pretty_envelope",
        format!(
            "{{\n  \"format\": \"qasid-index-envelope/1\",\n  \"head\": \"{h}\",\n  \"signature\": \"{sig}\"\n}}\n"
        )
        .into_bytes(),
        "malformed",
        "pretty-printed",
    );
    v.fail_index(
        "reordered_members",
        format!(
            "{{\"signature\":\"{sig}\",\"format\":\"qasid-index-envelope/1\",\"head\":\"{h}\"}}\n"
        )
        .into_bytes(),
        "malformed",
        "members in another order",
    );
    v.fail_index(
        "escaped_unicode",
        replace_once(good, "\"format\"", "\"\\u0066ormat\""),
        "malformed",
        "a member name with a \\u escape for a plain letter",
    );
    v.fail_index(
        "escaped_solidus",
        replace_once(good, "/1\"", "\\/1\""),
        "malformed",
        "\\/ for / in a string",
    );
    v.fail_index(
        "unpadded_base64",
        replace_once(good, sig, &B64_NO_PAD.encode(B64.decode(sig).unwrap())),
        "malformed",
        "the signature's base64 without its = padding",
    );
    v.fail_index(
        "duplicate_member",
        replace_once(good, "{", "{\"format\":\"qasid-index-envelope/1\","),
        "malformed",
        "a member given twice",
    );
    v.fail_index(
        "no_final_newline",
        good[..good.len() - 1].to_vec(),
        "malformed",
        "the final newline missing",
    );
    v.fail_index(
        "two_final_newlines",
        [good, b"\n"].concat(),
        "malformed",
        "an extra newline",
    );
    v.fail_index(
        "crlf",
        [&good[..good.len() - 1], b"\r\n"].concat(),
        "malformed",
        "CRLF line ending",
    );
    v.fail_index(
        "trailing_garbage",
        [good, b"{}"].concat(),
        "malformed",
        "bytes after the document",
    );
    v.fail_index(
        "trailing_space",
        [good, b" "].concat(),
        "malformed",
        "JSON whitespace after the document",
    );
    v.fail_index(
        "byte_order_mark",
        [b"\xef\xbb\xbf".as_slice(), good].concat(),
        "malformed",
        "a UTF-8 byte order mark",
    );
    let mut flipped = B64.decode(sig).unwrap();
    flipped[10] ^= 1;
    v.fail_index(
        "bad_signature",
        replace_once(good, sig, &B64.encode(&flipped)),
        "bad_signature",
        "one signature bit flipped",
    );
    let stranger = SecretKey::from_seed(&[0x52; 32]);
    v.fail_index(
        "other_publisher",
        envelope(&stranger, &head),
        "bad_signature",
        "the real head signed by another key",
    );

    // Head spellings, each validly signed by the publisher: the signature is not enough, the
    // signed bytes must also be the one encoding.
    let head_text = std::str::from_utf8(&head).unwrap().to_owned();
    let signed_variant = |v: &mut Vector, name: &str, bytes: Vec<u8>, why: &str| {
        v.fail_index(name, envelope(&key, &bytes), "malformed", why);
    };
    signed_variant(
        &mut v,
        "head_respaced",
        replace_once(&head, ",\"sequence\"", ", \"sequence\""),
        "signed head with one added space",
    );
    let reordered = {
        let seq = "\"sequence\":2,";
        let without = head_text.replacen(seq, "", 1);
        without.replacen('{', &format!("{{{seq}"), 1).into_bytes()
    };
    signed_variant(
        &mut v,
        "head_reordered_members",
        reordered,
        "signed head with members in another order",
    );
    signed_variant(
        &mut v,
        "head_escaped_unicode",
        replace_once(&head, "\"https:", "\"\\u0068ttps:"),
        "signed head with a \\u escape for a plain letter",
    );
    signed_variant(
        &mut v,
        "head_float_sequence",
        replace_once(&head, "\"sequence\":2", "\"sequence\":2.0"),
        "signed head with 2.0 for 2",
    );
    signed_variant(
        &mut v,
        "head_time_offset",
        replace_once(&head, "2026-01-16T00:00:00Z", "2026-01-16T00:00:00+00:00"),
        "signed head with +00:00 for Z",
    );
    signed_variant(
        &mut v,
        "head_uppercase_hex",
        replace_once(
            &head,
            &s1.id().to_string(),
            &s1.id().to_string().to_uppercase(),
        ),
        "signed head naming previous in uppercase hex",
    );
    signed_variant(
        &mut v,
        "head_trailing_newline",
        [head.as_slice(), b"\n"].concat(),
        "signed head with a newline after it",
    );

    // Piece spellings.
    let piece = &all.bytes;
    v.fail_piece(
        "piece_respaced",
        replace_once(piece, "\"first\"", " \"first\""),
        "one added space",
    );
    v.fail_piece(
        "piece_escaped_unicode",
        replace_once(piece, "é", "\\u00e9"),
        "a \\u escape for a non-ASCII letter",
    );
    v.fail_piece(
        "piece_reordered_members",
        replace_once(
            piece,
            "\"op\":\"retract\",\"name\":\"alpha\"",
            "\"name\":\"alpha\",\"op\":\"retract\"",
        ),
        "entry members in another order",
    );
    v.fail_piece(
        "piece_trailing_newline",
        [piece.as_slice(), b"\n"].concat(),
        "a newline after the piece",
    );

    v.files.insert(
        "expect.json".into(),
        serde_json::to_vec_pretty(&json!({
            "about": "qasid index vector: see README.md. Every file, what a verifier holding \
                      publisher.pub must conclude. kind index: verify as index.json \
                      (PROTOCOL.md section 6, steps 1-3); kind piece: check the piece on its \
                      own (format, publisher, entries, canonical bytes).",
            "publisher": "publisher.pub",
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

/// What qasid's verifier concludes, in `expect.json`'s words.
fn outcome(result: Result<(), IndexError>) -> String {
    match result {
        Ok(()) => "ok",
        Err(IndexError::Malformed { .. }) => "malformed",
        Err(IndexError::BadSignature(_)) => "bad_signature",
        Err(IndexError::WrongPublisher { .. }) => "wrong_publisher",
        Err(IndexError::UnknownFormat { .. }) => "unknown_format",
        Err(IndexError::TooLarge { .. }) => "too_large",
        Err(e) => panic!("unexpected error class: {e}"),
    }
    .to_owned()
}

#[test]
fn index_vector_rebuilds_byte_for_byte() {
    let dir = vector_dir();
    let vector = generate();
    rebuild_or_compare(&dir, &vector.files);
}

/// Writes a vector's generated files into `dir` when `QASID_REGENERATE_VECTORS=1`, else checks
/// that every checked-in file is byte for byte what the generator makes. Shared by the vector
/// tests.
pub(crate) fn rebuild_or_compare(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    if std::env::var_os("QASID_REGENERATE_VECTORS").is_some_and(|v| v == "1") {
        for (path, bytes) in files {
            let path = dir.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
        }
        return;
    }
    for (path, bytes) in files {
        let held = fs::read(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            held == *bytes,
            "{path} differs from what the generator makes"
        );
    }
}

#[test]
fn every_index_vector_case_has_its_expected_outcome() {
    let dir = vector_dir();
    let expect: Value =
        serde_json::from_slice(&fs::read(dir.join("expect.json")).unwrap()).unwrap();
    let pk =
        PublicKey::from_file_text(&fs::read_to_string(dir.join("publisher.pub")).unwrap()).unwrap();
    let limits = IndexLimits::default();
    let cases = expect["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "{}", cases.len());
    for case in cases {
        let file = case["file"].as_str().unwrap();
        let bytes = fs::read(dir.join(file)).unwrap();
        let got = match case["kind"].as_str().unwrap() {
            "index" => {
                let verified = SignedHead::verify(&bytes, &pk, &limits);
                if let Ok(s) = &verified {
                    assert_eq!(case["sequence"], s.head().sequence(), "{file}");
                    assert_eq!(case["id"], s.id().to_string(), "{file}");
                    assert_eq!(
                        ContentId::of_bytes(&bytes).to_string(),
                        case["id"],
                        "{file}"
                    );
                }
                outcome(verified.map(|_| ()))
            }
            "piece" => {
                let checked = validate_piece(&bytes, &pk, &limits);
                if let Ok(r) = &checked {
                    assert_eq!(case["sha256"], r.sha256.to_string(), "{file}");
                    assert_eq!(case["first"], r.first, "{file}");
                    assert_eq!(case["count"], r.count, "{file}");
                }
                outcome(checked.map(|_| ()))
            }
            other => panic!("{file}: unknown kind {other}"),
        };
        assert_eq!(
            got,
            case["expect"].as_str().unwrap(),
            "{file}: {}",
            case["why"]
        );
        if file.starts_with("cases/fail_") {
            assert_ne!(got, "ok", "{file} must fail");
        }
    }

    // The repo folder is a whole index: it verifies, and chains to `cases/index-1.json`.
    let repo = dir.join("repo");
    let mut fresh = Tracker::ephemeral(&pk, limits.clone());
    let now = time("2026-02-01T00:00:00Z");
    update_from_dir(&mut fresh, &repo, now).unwrap();
    let held = fresh.held().unwrap();
    assert_eq!(held.entries().len(), 3);
    assert_eq!(held.current().len(), 1, "alpha was retracted");
    let first = SignedHead::verify(
        &fs::read(dir.join("cases/index-1.json")).unwrap(),
        &pk,
        &limits,
    )
    .unwrap();
    assert_eq!(held.head().previous(), Some(first.id()));
}
