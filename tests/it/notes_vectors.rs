//! The mirror-note test vectors in tests/vectors/note-v1/: built here byte by byte from the
//! text of docs/PROTOCOL.md §12 (an encoder independent of the library's), compared with the
//! checked-in files, and verified by the library with the outcome expect.json gives. A third
//! party's verifier (the browser reader page) is checked against the same files.
//!
//! `QASID_WRITE_NOTE_VECTORS=1 cargo test --test it notes_vectors` rewrites the files.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use qasid::keys::{Domain, SecretKey};
use qasid::note::SignedNote;

const SEQUENCE: u64 = 1_772_323_200; // 2026-03-01T00:00:00Z
const EXPIRES: u64 = 1_774_915_200; // 2026-03-31T00:00:00Z
const NOW: u64 = 1_773_532_800; // 2026-03-15T00:00:00Z
const EXPIRED: u64 = 1_772_928_000; // 2026-03-08T00:00:00Z

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/note-v1")
}

fn publisher() -> SecretKey {
    SecretKey::from_seed(&[0x51; 32])
}

fn stranger() -> SecretKey {
    SecretKey::from_seed(&[0x52; 32])
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// (flags, URL without its scheme) of the good note's mirrors.
const MIRRORS: [(u8, &str); 3] = [
    (0, "mirror.example/"),
    (3, "qasidnews5k2x7ve.onion/"),
    (4, "cdn.example.net/qasid/"),
];

fn body(key_id: &[u8; 8], sequence: u64, expires: u64, mirrors: &[(u8, &str)]) -> Vec<u8> {
    let mut b = key_id.to_vec();
    varint(&mut b, sequence);
    varint(&mut b, expires);
    varint(&mut b, mirrors.len() as u64);
    for (flags, rest) in mirrors {
        b.push(*flags);
        varint(&mut b, rest.len() as u64);
        b.extend_from_slice(rest.as_bytes());
    }
    b
}

fn uri(body: &[u8], signer: &SecretKey) -> String {
    let mut bytes = body.to_vec();
    bytes.extend_from_slice(&signer.sign(Domain::Note, body));
    format!("qasid:1:{}", B64URL.encode(bytes))
}

/// Flips one bit at `at` of the decoded payload, keeping the signature as it was.
fn flip(uri_text: &str, at: usize) -> String {
    let mut bytes = B64URL.decode(&uri_text["qasid:1:".len()..]).unwrap();
    bytes[at] ^= 0x01;
    format!("qasid:1:{}", B64URL.encode(bytes))
}

/// Every vector: (file stem, URI, expected error kind or None for the good one).
fn vectors() -> Vec<(&'static str, String, Option<&'static str>)> {
    let key = publisher();
    let id = *key.public().id().as_bytes();
    let good_body = body(&id, SEQUENCE, EXPIRES, &MIRRORS);
    let good = uri(&good_body, &key);
    let seq_at = 8; // first byte of the sequence varint
    let expires_at = 8 + 5;
    let first_flags = 8 + 5 + 5 + 1;
    let first_url = first_flags + 2;
    let sig_at = good_body.len();
    let mut non_minimal = id.to_vec();
    varint(&mut non_minimal, SEQUENCE);
    varint(&mut non_minimal, EXPIRES);
    non_minimal.extend_from_slice(&[0x81, 0x00]); // 1 mirror, spelled in two bytes
    non_minimal.push(0);
    varint(&mut non_minimal, MIRRORS[0].1.len() as u64);
    non_minimal.extend_from_slice(MIRRORS[0].1.as_bytes());
    let mut trailing = good_body.clone();
    trailing.push(0);
    let stranger_id = *stranger().public().id().as_bytes();
    vec![
        ("good", good.clone(), None),
        (
            "fail_tampered_sequence",
            flip(&good, seq_at),
            Some("bad_signature"),
        ),
        (
            "fail_tampered_expires",
            flip(&good, expires_at),
            Some("bad_signature"),
        ),
        (
            "fail_tampered_hint",
            flip(&good, first_flags),
            Some("bad_signature"),
        ),
        (
            "fail_tampered_mirror_url",
            flip(&good, first_url),
            Some("bad_signature"),
        ),
        (
            "fail_tampered_key_id",
            flip(&good, 0),
            Some("unknown_publisher"),
        ),
        (
            "fail_tampered_signature",
            flip(&good, sig_at + 10),
            Some("bad_signature"),
        ),
        (
            "fail_wrong_key",
            uri(
                &body(&stranger_id, SEQUENCE, EXPIRES, &MIRRORS),
                &stranger(),
            ),
            Some("unknown_publisher"),
        ),
        (
            "fail_forged_by_other_key",
            uri(&good_body, &stranger()),
            Some("bad_signature"),
        ),
        (
            "fail_expired",
            uri(&body(&id, SEQUENCE, EXPIRED, &MIRRORS), &key),
            Some("expired"),
        ),
        (
            "fail_non_minimal_varint",
            uri(&non_minimal, &key),
            Some("malformed"),
        ),
        (
            "fail_trailing_bytes",
            uri(&trailing, &key),
            Some("malformed"),
        ),
        (
            "fail_unnormalised_url",
            uri(
                &body(&id, SEQUENCE, EXPIRES, &[(0, "Mirror.Example/")]),
                &key,
            ),
            Some("malformed"),
        ),
        (
            "fail_url_without_slash",
            uri(
                &body(&id, SEQUENCE, EXPIRES, &[(0, "mirror.example")]),
                &key,
            ),
            Some("malformed"),
        ),
        (
            "fail_duplicate_mirror",
            uri(
                &body(&id, SEQUENCE, EXPIRES, &[MIRRORS[0], (2, MIRRORS[0].1)]),
                &key,
            ),
            Some("malformed"),
        ),
        (
            "fail_unknown_flags",
            uri(&body(&id, SEQUENCE, EXPIRES, &[(6, MIRRORS[0].1)]), &key),
            Some("malformed"),
        ),
        (
            "fail_no_mirrors",
            uri(&body(&id, SEQUENCE, EXPIRES, &[]), &key),
            Some("malformed"),
        ),
        (
            "fail_zero_sequence",
            uri(&body(&id, 0, EXPIRES, &MIRRORS), &key),
            Some("malformed"),
        ),
        ("fail_padding", format!("{good}="), Some("not_a_note")),
        (
            // `+` belongs to standard base64, not to base64url.
            "fail_standard_base64_alphabet",
            format!("{}+{}", &good[..20], &good[21..]),
            Some("not_a_note"),
        ),
        (
            "fail_version_2",
            good.replacen("qasid:1:", "qasid:2:", 1),
            Some("unknown_version"),
        ),
    ]
}

/// What the library says about `text` at the vectors' `now`: Ok(json of the note) or the kind.
fn outcome(text: &str) -> Result<serde_json::Value, &'static str> {
    let trusted = [publisher().public().clone()];
    let verified = SignedNote::from_uri(text)
        .and_then(|s| s.verify(&trusted))
        .map_err(|e| e.kind())?;
    verified
        .check_fresh(UNIX_EPOCH + Duration::from_secs(NOW))
        .map_err(|e| e.kind())?;
    let n = verified.note();
    Ok(serde_json::json!({
        "publisher": n.publisher.to_string(),
        "sequence": n.sequence,
        "expires": n.expires,
        "mirrors": n.mirrors.iter().map(|m| serde_json::json!({"url": m.url.as_str(), "hint": m.hint.as_str()})).collect::<Vec<_>>(),
    }))
}

fn expect_json(vectors: &[(&'static str, String, Option<&'static str>)]) -> serde_json::Value {
    let mut notes = serde_json::Map::new();
    for (name, text, expected) in vectors {
        let entry = match expected {
            None => {
                let mut v = outcome(text).expect("the good vector verifies");
                v["valid"] = true.into();
                v
            }
            Some(kind) => serde_json::json!({"valid": false, "error": kind}),
        };
        notes.insert(format!("{name}.note"), entry);
    }
    serde_json::json!({
        "publisher_seed_hex": "51".repeat(32),
        "publisher": publisher().public().to_base64(),
        "now": NOW,
        "notes": notes,
    })
}

#[test]
fn note_vectors_match_the_spec_and_verify_as_expected() {
    let vectors = vectors();
    let expect = expect_json(&vectors);
    let expect_text = format!("{}\n", serde_json::to_string_pretty(&expect).unwrap());
    if std::env::var_os("QASID_WRITE_NOTE_VECTORS").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        for (name, text, _) in &vectors {
            std::fs::write(dir().join(format!("{name}.note")), format!("{text}\n")).unwrap();
        }
        std::fs::write(dir().join("expect.json"), &expect_text).unwrap();
        std::fs::write(
            dir().join("publisher.pub"),
            publisher().public().to_file_text(),
        )
        .unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(dir().join("expect.json")).unwrap(),
        expect_text,
        "expect.json differs from the spec-built vectors"
    );
    let files = std::fs::read_dir(dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "note")
        })
        .count();
    assert_eq!(files, vectors.len(), "a .note file without a vector here");
    for (name, text, expected) in &vectors {
        let file = std::fs::read_to_string(dir().join(format!("{name}.note"))).unwrap();
        assert_eq!(
            file,
            format!("{text}\n"),
            "{name}.note differs from the spec"
        );
        match (outcome(&file), expected) {
            (Ok(_), None) => {}
            (Err(kind), Some(want)) => assert_eq!(kind, *want, "{name}"),
            (got, want) => panic!("{name}: got {got:?}, expected {want:?}"),
        }
    }
    let good = std::fs::read_to_string(dir().join("good.note")).unwrap();
    assert!(good.trim().len() <= 600, "{}", good.trim().len());
}
