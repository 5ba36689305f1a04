//! The signed index head (`SignedHead::verify`): the `index.json` envelope every reader, sync
//! and push receives from untrusted mirrors.
//!
//! Each input is verified as an envelope as it is, and as head JSON bytes wrapped in an
//! envelope signed with the test key (so the head parser and the log rules behind the
//! signature are reached). Invariants: refusals are verification errors with printable
//! messages; an accepted head keeps the exact envelope bytes and their sha256 as its id, names
//! the trusted key, obeys every rule of docs/PROTOCOL.md §3 (re-checked here), has mirror URLs
//! already in normal form, survives a sign/verify round trip unchanged, and is the one
//! canonical encoding: accepted ⇒ re-encodes to the same bytes (envelope and head).
#![no_main]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use qasid::content_id::ContentId;
use qasid::index::{MirrorUrl, SignedHead};
use qasid::limits::IndexLimits;
use qasid::ErrorClass;
use qasid_fuzz::{assert_printable, public_key, secret_key, sign_envelope};

fuzz_target!(|data: &[u8]| {
    let limits = IndexLimits::default();
    check(data, &limits);
    check(&sign_envelope(data), &limits);
});

fn check(envelope: &[u8], limits: &IndexLimits) {
    let signed = match SignedHead::verify(envelope, public_key(), limits) {
        Ok(signed) => signed,
        Err(e) => {
            assert_eq!(e.class(), ErrorClass::Verification, "{e:?}");
            assert_printable("index head error", &e.to_string());
            return;
        }
    };
    assert_eq!(signed.envelope(), envelope);
    assert_eq!(*signed.id(), ContentId::of_bytes(envelope));
    assert!(envelope.len() as u64 <= limits.max_head_bytes);
    let head = signed.head();
    assert_eq!(head.publisher(), public_key());
    assert!(head.sequence() >= 1);
    assert_eq!(head.sequence() == 1, head.previous().is_none());
    assert!(head.expires() > head.issued());
    for t in [head.issued(), head.expires()] {
        let since = t.duration_since(UNIX_EPOCH).expect("times are after 1970");
        assert_eq!(since.subsec_nanos(), 0, "times have whole seconds");
    }
    assert!(head.mirrors().len() <= limits.max_mirrors);
    for mirror in head.mirrors() {
        let again = MirrorUrl::parse(mirror.as_str(), limits).expect("a listed mirror parses");
        assert_eq!(&again, mirror, "mirror URL not in normal form");
        assert!(mirror.as_str().ends_with('/'));
        assert!(mirror.as_str().starts_with("http://") || mirror.as_str().starts_with("https://"));
        assert!(mirror.as_str().len() <= limits.max_mirror_url_bytes);
    }
    let log = head.log();
    assert!((1..=limits.max_entries).contains(&log.entries()));
    assert!(!log.pieces().is_empty() && log.pieces().len() <= limits.max_pieces);
    let mut next = 0;
    for piece in log.pieces().iter().chain([log.batch()]) {
        assert!(piece.count >= 1 && piece.size >= 1 && piece.size <= limits.max_piece_bytes);
    }
    for piece in log.pieces() {
        assert_eq!(piece.first, next, "pieces are contiguous");
        next = piece.end();
    }
    assert_eq!(next, log.entries());
    assert_eq!(log.batch().end(), log.entries());
    let _ = head.freshness(SystemTime::now());

    // One encoding: the accepted bytes are exactly the envelope rebuilt from its decoded
    // members (spelled here independently of qasid's encoder) and exactly what signing the
    // parsed head again gives (Ed25519 signing is deterministic).
    let members: serde_json::Value = serde_json::from_slice(envelope).expect("accepted is JSON");
    let (h, s) = (
        members["head"].as_str().unwrap(),
        members["signature"].as_str().unwrap(),
    );
    let rebuilt = format!(
        "{{\"format\":\"qasid-index-envelope/1\",\"head\":\"{}\",\"signature\":\"{}\"}}\n",
        B64.encode(B64.decode(h).unwrap()),
        B64.encode(B64.decode(s).unwrap())
    );
    assert_eq!(
        rebuilt.as_bytes(),
        envelope,
        "accepted envelope is not canonical"
    );
    let head_bytes = B64.decode(h).unwrap();
    let head_json: serde_json::Value = serde_json::from_slice(&head_bytes).unwrap();
    assert_eq!(
        serde_json::to_vec(&head_json).unwrap().len(),
        head_bytes.len(),
        "accepted head is not compact"
    );

    let resigned = SignedHead::sign(head.clone(), secret_key()).expect("re-sign");
    // The test key is the only trusted one, so `envelope` was signed by it.
    assert_eq!(
        resigned.envelope(),
        envelope,
        "accepted head re-encodes differently"
    );
    let back = SignedHead::verify(resigned.envelope(), public_key(), limits)
        .expect("a re-signed accepted head verifies");
    assert_eq!(
        back.head(),
        head,
        "head changed in a sign/verify round trip"
    );
}
