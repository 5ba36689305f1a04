//! minisign detached signatures (`.minisig` files), prehashed `ED` form only.
//!
//! Owns the signature text and both signatures in it: one over the BLAKE2b-512 digest of the
//! data, and a global one over that signature and the trusted comment, so the comment is
//! authenticated too. Data is streamed through the hash, so memory stays flat at any size.
//! Signatures made here verify with `minisign -V`, and `minisign -S` signatures verify here.
//! This module never opens files or the network (callers pass readers) and never accepts a
//! legacy non-prehashed `Ed` signature.

use std::io::{self, Read};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use blake2::{Blake2b512, Digest as _};

use super::{KeyError, KeyId, Role, SecretKey, Trusted};

/// Signature algorithm tag of prehashed (BLAKE2b-512) minisign signatures.
const SIG_ALG_PREHASHED: &[u8; 2] = b"ED";
/// Signature algorithm tag of legacy minisign signatures over the raw data.
const SIG_ALG_LEGACY: &[u8; 2] = b"Ed";
const UNTRUSTED_PREFIX: &str = "untrusted comment: ";
const TRUSTED_PREFIX: &str = "trusted comment: ";

/// Longest trusted comment in bytes: minisign reads the line into 8192 bytes (prefix, comment,
/// newline and NUL) and refuses to sign anything longer.
pub const TRUSTED_COMMENT_MAX: usize = 8173;
/// Longest untrusted comment in bytes: minisign reads the first line into 1024 bytes; a longer
/// one would spill into the next line and break the signature file for minisign.
pub const UNTRUSTED_COMMENT_MAX: usize = 1003;

/// Signs everything `reader` yields and returns the `.minisig` text. Both comments must be one
/// line without NUL and within [`TRUSTED_COMMENT_MAX`] / [`UNTRUSTED_COMMENT_MAX`]
/// (`InvalidInput` otherwise); errors reading the data are returned as they are.
pub fn sign_file(
    sk: &SecretKey,
    reader: impl Read,
    trusted_comment: &str,
    untrusted_comment: &str,
) -> io::Result<String> {
    check_comment(trusted_comment, TRUSTED_COMMENT_MAX, "trusted comment")?;
    check_comment(
        untrusted_comment,
        UNTRUSTED_COMMENT_MAX,
        "untrusted comment",
    )?;
    let digest = blake2b512(reader)?;
    let signature = sk.sign_raw(&digest);
    let global = sk.sign_raw(&[&signature[..], trusted_comment.as_bytes()].concat());
    let mut sig_struct = Vec::with_capacity(74);
    sig_struct.extend_from_slice(SIG_ALG_PREHASHED);
    sig_struct.extend_from_slice(sk.public().id().as_bytes());
    sig_struct.extend_from_slice(&signature);
    Ok(format!(
        "{UNTRUSTED_PREFIX}{untrusted_comment}\n{}\n{TRUSTED_PREFIX}{trusted_comment}\n{}\n",
        B64.encode(sig_struct),
        B64.encode(global)
    ))
}

/// Checks a `.minisig` text against the data `reader` yields and the publisher's bundle
/// signing keys, and returns the now authenticated trusted comment. The key id must be one of
/// those keys', and the data signature and the trusted comment signature must match it; the
/// data is only read once the text parses and names such a key.
pub fn verify_file(
    trusted: &(impl Trusted + ?Sized),
    reader: impl Read,
    minisig_text: &str,
) -> Result<String, KeyError> {
    let minisig = Minisig::parse(minisig_text)?;
    let Some(pk) = trusted
        .signers(Role::Bundle)
        .iter()
        .find(|k| k.id() == minisig.key_id)
    else {
        return Err(KeyError::SignatureKeyMismatch {
            expected: trusted.publisher().id(),
            found: minisig.key_id,
        });
    };
    let digest = blake2b512(reader).map_err(KeyError::ReadData)?;
    pk.verify_raw(&digest, &minisig.signature)?;
    let signed_comment = [&minisig.signature[..], minisig.trusted_comment.as_bytes()].concat();
    pk.verify_raw(&signed_comment, &minisig.global)
        .map_err(|_| KeyError::BadTrustedComment(pk.id()))?;
    Ok(minisig.trusted_comment.to_owned())
}

fn check_comment(comment: &str, max: usize, what: &str) -> io::Result<()> {
    if comment.contains(['\n', '\r', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the {what} must be one line without NUL characters"),
        ));
    }
    if comment.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the {what} is longer than {max} bytes"),
        ));
    }
    Ok(())
}

fn blake2b512(mut reader: impl Read) -> io::Result<[u8; 64]> {
    let mut hasher = Blake2b512::new();
    io::copy(&mut reader, &mut hasher)?;
    Ok(hasher.finalize().into())
}

/// A parsed, not yet checked `.minisig` text.
struct Minisig<'a> {
    key_id: KeyId,
    signature: [u8; 64],
    trusted_comment: &'a str,
    global: [u8; 64],
}

impl<'a> Minisig<'a> {
    /// Four lines (LF or CRLF): untrusted comment, base64 of `"ED" ‖ key id ‖ signature`,
    /// trusted comment, base64 of the global signature. Only blank lines may follow.
    fn parse(text: &'a str) -> Result<Self, KeyError> {
        let mut lines = text
            .split('\n')
            .map(|line| line.strip_suffix('\r').unwrap_or(line));
        let mut next =
            |missing: &'static str| lines.next().ok_or(KeyError::MalformedSignature(missing));
        if !next("empty")?.starts_with(UNTRUSTED_PREFIX) {
            return Err(KeyError::MalformedSignature(
                "first line is not an untrusted comment",
            ));
        }
        let sig_struct = decode_line::<74>(
            next("missing signature line")?,
            "signature line is not base64 of 74 bytes",
        )?;
        let trusted_comment = next("missing trusted comment")?
            .strip_prefix(TRUSTED_PREFIX)
            .ok_or(KeyError::MalformedSignature(
                "third line is not a trusted comment",
            ))?;
        let global = decode_line::<64>(
            next("missing trusted comment signature")?,
            "trusted comment signature is not base64 of 64 bytes",
        )?;
        if lines.any(|rest| !rest.trim().is_empty()) {
            return Err(KeyError::MalformedSignature(
                "unexpected text after the signature",
            ));
        }
        match &sig_struct[..2] {
            alg if alg == SIG_ALG_PREHASHED => {}
            alg if alg == SIG_ALG_LEGACY => return Err(KeyError::LegacySignature),
            _ => return Err(KeyError::MalformedSignature("unknown signature algorithm")),
        }
        // minisign cuts a comment at CR or NUL, so it would check fewer bytes than shown here.
        if trusted_comment.contains(['\r', '\0']) {
            return Err(KeyError::MalformedSignature(
                "trusted comment contains a CR or NUL character",
            ));
        }
        if trusted_comment.len() > TRUSTED_COMMENT_MAX {
            return Err(KeyError::MalformedSignature("trusted comment is too long"));
        }
        Ok(Self {
            key_id: KeyId(sig_struct[2..10].try_into().expect("length checked")),
            signature: sig_struct[10..].try_into().expect("length checked"),
            trusted_comment,
            global,
        })
    }
}

/// Decodes a base64 line that must hold exactly `N` bytes; `wrong` is the error otherwise.
fn decode_line<const N: usize>(line: &str, wrong: &'static str) -> Result<[u8; N], KeyError> {
    B64.decode(line.trim())
        .ok()
        .and_then(|raw| <[u8; N]>::try_from(raw).ok())
        .ok_or(KeyError::MalformedSignature(wrong))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by `minisign -S -s k.key -m data.txt -t 'qasid vector' -c 'qasid signature'`
    /// (minisign 0.11) with the secret key file of seed [7; 32] (secret_file's vector).
    const MINISIGN_VECTOR: &str = "untrusted comment: qasid signature\n\
        RUT+gSwS86tM5tn+cdEEV7PlIJL3Y8GvGL3iZ6YevcXwUGPc8cKkpoPVQWaau6QdSqbwZIgkfP1UC0dkIJtPC2FX0G9p0NvP2AI=\n\
        trusted comment: qasid vector\n\
        okYEF490Vg0IWR1C1Dr5ZnpTgXLz0nJ22svVmfkloDLgY5BNLlV7O9QyxWMuzKhGP/7wDucQs7rxnc16I10NAA==\n";
    const VECTOR_DATA: &[u8] = b"qasid fixed vector\n";

    fn vector_key() -> SecretKey {
        SecretKey::from_seed(&[7u8; 32])
    }

    fn signed(data: &[u8], trusted: &str) -> (SecretKey, String) {
        let sk = SecretKey::generate();
        let text = sign_file(&sk, data, trusted, "signature from qasid").unwrap();
        (sk, text)
    }

    /// Replaces line `index` of a `.minisig` text.
    fn with_line(text: &str, index: usize, line: &str) -> String {
        let mut lines: Vec<&str> = text.lines().collect();
        lines[index] = line;
        lines.join("\n") + "\n"
    }

    /// Flips one bit inside the base64-decoded line `index`.
    fn flip_bit(text: &str, index: usize, byte: usize) -> String {
        let mut raw = B64.decode(text.lines().nth(index).unwrap()).unwrap();
        raw[byte] ^= 1;
        with_line(text, index, &B64.encode(raw))
    }

    #[test]
    fn fixed_seed_signature_matches_minisign_byte_for_byte() {
        let text = sign_file(
            &vector_key(),
            VECTOR_DATA,
            "qasid vector",
            "qasid signature",
        );
        assert_eq!(text.unwrap(), MINISIGN_VECTOR);
        let comment = verify_file(vector_key().public(), VECTOR_DATA, MINISIGN_VECTOR).unwrap();
        assert_eq!(comment, "qasid vector");
    }

    #[test]
    fn signature_round_trips_and_returns_the_trusted_comment() {
        let data = b"article bundle bytes";
        let (sk, text) = signed(data, "timestamp:1700000000\tfile:a.zip\thashed");
        let comment = verify_file(sk.public(), &data[..], &text).unwrap();
        assert_eq!(comment, "timestamp:1700000000\tfile:a.zip\thashed");
        let crlf = text.replace('\n', "\r\n");
        assert!(verify_file(sk.public(), &data[..], &crlf).is_ok());
    }

    #[test]
    fn large_data_is_streamed() {
        let sk = vector_key();
        let data = || io::repeat(0x5a).take(4 << 20);
        let text = sign_file(&sk, data(), "big", "big").unwrap();
        assert!(verify_file(sk.public(), data(), &text).is_ok());
        assert!(matches!(
            verify_file(sk.public(), io::repeat(0x5a).take((4 << 20) - 1), &text),
            Err(KeyError::BadSignature(_))
        ));
    }

    #[test]
    fn tampered_data_is_refused() {
        let (sk, text) = signed(b"original", "c");
        assert!(matches!(
            verify_file(sk.public(), &b"originaL"[..], &text),
            Err(KeyError::BadSignature(_))
        ));
    }

    #[test]
    fn tampered_trusted_comment_is_refused() {
        let (sk, text) = signed(b"data", "timestamp:1");
        let forged = with_line(&text, 2, "trusted comment: timestamp:2");
        assert!(matches!(
            verify_file(sk.public(), &b"data"[..], &forged),
            Err(KeyError::BadTrustedComment(_))
        ));
    }

    #[test]
    fn tampered_signatures_are_refused() {
        let (sk, text) = signed(b"data", "c");
        assert!(matches!(
            verify_file(sk.public(), &b"data"[..], &flip_bit(&text, 1, 40)),
            Err(KeyError::BadSignature(_))
        ));
        assert!(matches!(
            verify_file(sk.public(), &b"data"[..], &flip_bit(&text, 3, 10)),
            Err(KeyError::BadTrustedComment(_))
        ));
    }

    #[test]
    fn another_publishers_signature_is_refused() {
        let (_, text) = signed(b"data", "c");
        let other = SecretKey::generate();
        assert!(matches!(
            verify_file(other.public(), &b"data"[..], &text),
            Err(KeyError::SignatureKeyMismatch { expected, .. }) if expected == other.public().id()
        ));
        // Claiming the other key's id does not help: the signature still fails.
        let mut raw = B64.decode(text.lines().nth(1).unwrap()).unwrap();
        raw[2..10].copy_from_slice(other.public().id().as_bytes());
        let relabelled = with_line(&text, 1, &B64.encode(raw));
        assert!(matches!(
            verify_file(other.public(), &b"data"[..], &relabelled),
            Err(KeyError::BadSignature(_))
        ));
    }

    #[test]
    fn legacy_signatures_are_refused() {
        let (sk, text) = signed(b"data", "c");
        let mut raw = B64.decode(text.lines().nth(1).unwrap()).unwrap();
        raw[..2].copy_from_slice(b"Ed");
        let legacy = with_line(&text, 1, &B64.encode(raw));
        assert!(matches!(
            verify_file(sk.public(), &b"data"[..], &legacy),
            Err(KeyError::LegacySignature)
        ));
    }

    #[test]
    fn malformed_signature_texts_are_refused() {
        let (sk, text) = signed(b"data", "c");
        let bad = [
            String::new(),
            text.lines().take(3).collect::<Vec<_>>().join("\n"),
            with_line(&text, 0, "comment: x"),
            with_line(&text, 1, "not base64!"),
            with_line(&text, 1, &B64.encode([0u8; 73])),
            with_line(&text, 2, "trusted: c"),
            with_line(&text, 2, "trusted comment: c\rmore"),
            with_line(&text, 3, &B64.encode([0u8; 63])),
            format!("{text}extra\n"),
        ];
        for minisig in bad {
            let err = verify_file(sk.public(), &b"data"[..], &minisig).unwrap_err();
            assert!(
                matches!(err, KeyError::MalformedSignature(_)),
                "{minisig:?}: {err}"
            );
            assert_eq!(err.class(), crate::ErrorClass::Verification);
        }
    }

    #[test]
    fn comments_minisign_cannot_carry_are_refused_when_signing() {
        let sk = vector_key();
        let long_trusted = "t".repeat(TRUSTED_COMMENT_MAX + 1);
        let long_untrusted = "u".repeat(UNTRUSTED_COMMENT_MAX + 1);
        for (trusted, untrusted) in [
            ("two\nlines", "u"),
            ("cr\r", "u"),
            ("nul\0", "u"),
            ("t", "two\nlines"),
            (long_trusted.as_str(), "u"),
            ("t", long_untrusted.as_str()),
        ] {
            let err = sign_file(&sk, &b"data"[..], trusted, untrusted).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        let longest = "t".repeat(TRUSTED_COMMENT_MAX);
        let text = sign_file(&sk, &b"data"[..], &longest, "u").unwrap();
        assert_eq!(
            verify_file(sk.public(), &b"data"[..], &text).unwrap(),
            longest
        );
    }
}
