//! Key strings: `PublicKey::from_base64` and `from_file_text` (`--publisher`, config files,
//! manifests and index documents all carry keys), `SecretKey::from_file_text` (key files,
//! unencrypted and encrypted; a passphrase is given only when the file's scrypt cost is tiny,
//! so an input cannot stall the fuzzer), and `keys::minisig::verify_file` (`.minisig` texts a
//! mirror serves or a publisher pushes), checked against the test vector bundle.
//!
//! Every input goes to all four parsers. Invariants: a parsed public key round-trips to the
//! same base64 and file text; a parsed secret key is the key its file names (public half,
//! derived id), re-encodes to a file that reads back to the same key and can sign; an
//! accepted `.minisig` is one the test key really made over that data, and its trusted comment
//! re-signs and verifies the same; every error message is printable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qasid::keys::{minisig, Domain, KeyError, Passphrase, PublicKey, SecretKey};
use qasid_fuzz::{assert_printable, public_key, secret_key, secret_key_is_cheap};

/// The data every `.minisig` input is checked against: the test vector bundle.
const SIGNED_DATA: &[u8] = include_bytes!("../../tests/vectors/bundle-v1/bundle.zip");
/// The passphrase of the encrypted seed key files.
const PASSPHRASE: &str = "qasid fuzz passphrase";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        // Every entry point takes text; the CLI and config refuse non-UTF-8 before this.
        return;
    };
    public_key_string(text);
    public_key_file(text);
    secret_key_file(text);
    minisig_text(text);
});

fn printable_err<T>(what: &str, result: Result<T, KeyError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) => {
            assert_printable(what, &e.to_string());
            None
        }
    }
}

fn public_key_string(text: &str) {
    let Some(key) = printable_err("public key", PublicKey::from_base64(text)) else {
        return;
    };
    assert_eq!(
        key.to_base64(),
        text.trim(),
        "public key does not round-trip to its base64"
    );
    assert_eq!(PublicKey::from_base64(&key.to_base64()).unwrap(), key);
    assert_eq!(key.hex().len(), 64);
}

fn public_key_file(text: &str) {
    let Some(key) = printable_err("public key file", PublicKey::from_file_text(text)) else {
        return;
    };
    assert_eq!(key.to_base64(), text.lines().nth(1).unwrap().trim());
    assert_eq!(PublicKey::from_file_text(&key.to_file_text()).unwrap(), key);
}

fn secret_key_file(text: &str) {
    let encrypted = match SecretKey::is_encrypted_file(text) {
        Ok(encrypted) => encrypted,
        Err(e) => {
            assert_printable("secret key file", &e.to_string());
            // is_encrypted_file checks the structure: decoding must refuse it too.
            assert!(SecretKey::from_file_text(text, None).is_err());
            return;
        }
    };
    if encrypted {
        assert!(matches!(
            SecretKey::from_file_text(text, None),
            Err(KeyError::PassphraseNeeded(_))
        ));
        if !secret_key_is_cheap(text) {
            return;
        }
    }
    let passphrase = Passphrase::new(PASSPHRASE.to_owned()).expect("valid passphrase");
    let Some(key) = printable_err(
        "secret key file",
        SecretKey::from_file_text(text, encrypted.then_some(&passphrase)),
    ) else {
        return;
    };
    let again = SecretKey::from_file_text(&key.to_file_text(None), None).expect("re-read");
    assert_eq!(again.public(), key.public());
    let signature = key.sign(Domain::IndexHead, b"message");
    key.public()
        .verify(Domain::IndexHead, b"message", &signature)
        .expect("a loaded key signs verifiably");
    assert!(!text.lines().nth(1).unwrap_or_default().is_empty());
}

fn minisig_text(text: &str) {
    let Some(comment) = printable_err(
        "minisig",
        minisig::verify_file(public_key(), SIGNED_DATA, text),
    ) else {
        return;
    };
    // Accepted: the trusted comment is the text's third line, and re-signing it gives a
    // signature that verifies to the same comment.
    let third = text.split('\n').nth(2).unwrap().trim_end_matches('\r');
    assert_eq!(
        third.strip_prefix("trusted comment: "),
        Some(comment.as_str())
    );
    let resigned =
        minisig::sign_file(secret_key(), SIGNED_DATA, &comment, "fuzz").expect("re-sign comment");
    assert_eq!(
        minisig::verify_file(public_key(), SIGNED_DATA, &resigned).unwrap(),
        comment
    );
    assert!(minisig::verify_file(public_key(), &SIGNED_DATA[1..], text).is_err());
}
