//! Mirror notes (`qasid:1:…`): `SignedNote::from_uri` and `SignedNote::verify`, run on the
//! input as a URI, and after a fix-up that treats the input as a note body (after the test
//! key's id) and signs it with the test key, so every decoding rule behind the signature runs.
//!
//! Invariants: refusals are printable; an accepted note has exactly one spelling: its URI
//! round-trips, and re-signing its decoded content with the same key (ed25519 is
//! deterministic) gives exactly the bytes that were accepted.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use qasid::keys::Domain;
use qasid::note::SignedNote;
use qasid_fuzz::{assert_printable, public_key, secret_key};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(SignedNote::from_uri(text));
    }
    // The fix-up: the input as a body naming the test key, signed with it.
    let mut body = public_key().id().as_bytes().to_vec();
    body.extend_from_slice(data);
    let signature = secret_key().sign(Domain::Note, &body);
    body.extend_from_slice(&signature);
    check(SignedNote::from_uri(&format!(
        "qasid:1:{}",
        B64URL.encode(&body)
    )));
});

fn check(parsed: Result<SignedNote, qasid::note::NoteError>) {
    let signed = match parsed {
        Ok(signed) => signed,
        Err(e) => return assert_printable("note error", &e.to_string()),
    };
    assert_eq!(
        SignedNote::from_uri(&signed.to_uri()).expect("its own URI parses"),
        signed
    );
    match signed.verify(std::slice::from_ref(public_key())) {
        Ok(verified) => {
            let again = verified
                .note()
                .sign(secret_key())
                .expect("an accepted note re-signs");
            assert_eq!(
                again.as_bytes(),
                signed.as_bytes(),
                "an accepted note re-encodes to other bytes"
            );
        }
        Err(e) => assert_printable("note error", &e.to_string()),
    }
}
