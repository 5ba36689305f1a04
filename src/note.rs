//! Mirror notes: small signed lists of mirror URLs that travel through any channel (a chat
//! message, a QR code, a DNS TXT record) as a `qasid:1:…` URI.
//!
//! Owns the note format (docs/PROTOCOL.md §12, byte for byte), signing, and the only verifier:
//! a [`VerifiedNote`] exists only after the signature checked out with a trusted key and the
//! bytes proved to be the one canonical encoding of what they say (decoded, re-encoded and
//! compared). Which key may sign a note for a publisher is decided in one place,
//! [`note_signer`]. Expiry and rollback are the caller's next steps ([`VerifiedNote::check_fresh`]
//! and `seen`). Submodules: `subset` (per-channel choice of mirrors), `qr` (QR images), `dns`
//! (TXT strings and lookups), `source` (getting a note's text from a file, URL or DNS name)
//! and `seen` (the newest note accepted per publisher). Nothing here prints.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;

use crate::index::MirrorUrl;
use crate::keys::{Domain, KeyId, PublicKey, Role, SecretKey, Trusted};
use crate::limits::{IndexLimits, MAX_NOTE_BYTES, MAX_NOTE_MIRRORS};
use crate::ErrorClass;

pub mod dns;
pub mod qr;
pub mod seen;
pub mod source;
mod subset;

pub use subset::subset;

/// What every note URI starts with: the scheme and the format version.
pub const URI_PREFIX: &str = "qasid:1:";

/// Bytes of an ed25519 signature, the last part of a note.
const SIGNATURE_BYTES: usize = 64;

/// How a reader is expected to reach a mirror (the note's per-mirror transport hint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hint {
    /// Plain HTTP(S) from the reader's network.
    Direct,
    /// Through Tor (an `.onion` address, or a host only reachable over Tor).
    Tor,
    /// Through a proxy or circumvention tool: blocked for direct connections.
    Proxy,
}

impl Hint {
    fn code(self) -> u8 {
        match self {
            Hint::Direct => 0,
            Hint::Tor => 1,
            Hint::Proxy => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Hint::Direct),
            1 => Some(Hint::Tor),
            2 => Some(Hint::Proxy),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Hint::Direct => "direct",
            Hint::Tor => "tor",
            Hint::Proxy => "proxy",
        }
    }
}

/// One mirror of a note.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NoteMirror {
    pub url: MirrorUrl,
    pub hint: Hint,
}

impl NoteMirror {
    /// Parses `--mirror` of `note create`: a URL, optionally prefixed `tor:` or `proxy:` to set
    /// the hint. An `.onion` host without a prefix gets [`Hint::Tor`].
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let (hint, url) = if let Some(rest) = text.strip_prefix("tor:") {
            (Some(Hint::Tor), rest)
        } else if let Some(rest) = text.strip_prefix("proxy:") {
            (Some(Hint::Proxy), rest)
        } else {
            (None, text)
        };
        let url = MirrorUrl::parse(url, &IndexLimits::default())
            .map_err(|e| NoteError::BadMirror(e.to_string()))?;
        let onion = reqwest::Url::parse(url.as_str())
            .ok()
            .and_then(|u| u.host_str().map(|h| h.ends_with(".onion")))
            .unwrap_or(false);
        let hint = hint.unwrap_or(if onion { Hint::Tor } else { Hint::Direct });
        Ok(Self { url, hint })
    }
}

/// The content of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Who signed: the key id of the publisher's key, or of a key its root delegates for
    /// notes (PROTOCOL.md §12 calls it `key_id`).
    pub publisher: KeyId,
    /// Higher is newer; a reader refuses a note older than one it accepted.
    pub sequence: u64,
    /// Unix time (seconds) after which the note is refused.
    pub expires: u64,
    /// The mirrors, in the publisher's order of preference.
    pub mirrors: Vec<NoteMirror>,
}

/// Why a note was refused or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    /// Not a `qasid:1:` URI, or not base64url without padding.
    #[error("not a qasid note: {0} (a note looks like qasid:1:… )")]
    NotANote(String),
    /// A `qasid:` URI of a version this qasid does not read.
    #[error("note format version {0:?} is not supported (this qasid reads version 1)")]
    UnknownVersion(String),
    /// Larger than [`MAX_NOTE_BYTES`], checked before anything is parsed.
    #[error("note is larger than the {limit}-byte limit")]
    TooLarge { limit: usize },
    /// The bytes are not the one canonical encoding (or break a rule of the format).
    #[error("note is malformed: {0}")]
    Malformed(String),
    /// The note names a key that is not a trusted publisher's.
    #[error("note is signed for key {0}, which is not a trusted publisher (check --publisher)")]
    UnknownPublisher(KeyId),
    /// The signature does not verify with the trusted publisher's key.
    #[error("note signature does not verify with publisher {0} (tampered or forged)")]
    BadSignature(KeyId),
    /// Past its expiry.
    #[error("note of publisher {publisher} (sequence {sequence}) expired {} ago", humantime::format_duration(*.since))]
    Expired {
        publisher: KeyId,
        sequence: u64,
        since: Duration,
    },
    /// Older than a note already accepted for the publisher: a replay to hand out dead mirrors.
    #[error(
        "rollback refused: note sequence {offered} of publisher {publisher} is older than \
         sequence {held} already accepted"
    )]
    Rollback {
        publisher: KeyId,
        held: u64,
        offered: u64,
    },
    /// A mirror URL given to `note create` that cannot be published.
    #[error("mirror {0}")]
    BadMirror(String),
    /// `note create` arguments that cannot make a note.
    #[error("{0}")]
    Invalid(String),
    /// The stored newest note could not be read, verified or replaced.
    #[error("note state {}: {reason} (move the file away to start over, which forgets the \
             rollback protection it gave)", path.display())]
    State {
        path: std::path::PathBuf,
        reason: String,
    },
}

impl NoteError {
    /// A stable name for the failure (the `error` of tests/vectors/note-v1/expect.json and of
    /// `note show --json`).
    pub fn kind(&self) -> &'static str {
        match self {
            NoteError::NotANote(_) => "not_a_note",
            NoteError::UnknownVersion(_) => "unknown_version",
            NoteError::TooLarge { .. } => "too_large",
            NoteError::Malformed(_) => "malformed",
            NoteError::UnknownPublisher(_) => "unknown_publisher",
            NoteError::BadSignature(_) => "bad_signature",
            NoteError::Expired { .. } => "expired",
            NoteError::Rollback { .. } => "rollback",
            NoteError::BadMirror(_) => "bad_mirror",
            NoteError::Invalid(_) => "invalid",
            NoteError::State { .. } => "state",
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            NoteError::BadMirror(_) | NoteError::Invalid(_) | NoteError::UnknownVersion(_) => {
                ErrorClass::Usage
            }
            NoteError::State { .. } => ErrorClass::Runtime,
            NoteError::NotANote(_)
            | NoteError::TooLarge { .. }
            | NoteError::Malformed(_)
            | NoteError::UnknownPublisher(_)
            | NoteError::BadSignature(_)
            | NoteError::Expired { .. }
            | NoteError::Rollback { .. } => ErrorClass::Verification,
        }
    }
}

impl Note {
    /// Checks the rules a verifier applies to a decoded note, so that no one signs a note
    /// readers would refuse.
    fn check(&self) -> Result<(), NoteError> {
        let bad = |r: &str| Err(NoteError::Malformed(r.to_owned()));
        if self.sequence == 0 {
            return bad("sequence must be at least 1");
        }
        if self.mirrors.is_empty() {
            return bad("a note lists at least one mirror");
        }
        if self.mirrors.len() > MAX_NOTE_MIRRORS {
            return Err(NoteError::Malformed(format!(
                "more than {MAX_NOTE_MIRRORS} mirrors"
            )));
        }
        for (i, m) in self.mirrors.iter().enumerate() {
            if self.mirrors[..i].iter().any(|o| o.url == m.url) {
                return Err(NoteError::Malformed(format!(
                    "mirror {} is listed twice",
                    m.url
                )));
            }
        }
        Ok(())
    }

    /// The signed body: `key id ‖ varint(sequence) ‖ varint(expires) ‖ varint(n) ‖ mirror…`,
    /// each mirror `flags ‖ varint(len) ‖ URL without its scheme`.
    fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(self.publisher.as_bytes());
        put_varint(&mut out, self.sequence);
        put_varint(&mut out, self.expires);
        put_varint(&mut out, self.mirrors.len() as u64);
        for m in &self.mirrors {
            let (scheme, rest) = split_scheme(m.url.as_str());
            out.push(scheme | (m.hint.code() << 1));
            put_varint(&mut out, rest.len() as u64);
            out.extend_from_slice(rest.as_bytes());
        }
        out
    }

    /// Parses a body; every rule of the format is checked, and the result must re-encode to
    /// exactly `body`.
    fn decode_body(body: &[u8]) -> Result<Self, NoteError> {
        let mut r = Reader { bytes: body, at: 0 };
        let publisher = KeyId::from_bytes(r.take(8)?.try_into().expect("8 bytes"));
        let sequence = r.varint("sequence")?;
        let expires = r.varint("expires")?;
        let count = r.varint("mirror count")?;
        if count > MAX_NOTE_MIRRORS as u64 {
            return Err(NoteError::Malformed(format!(
                "more than {MAX_NOTE_MIRRORS} mirrors"
            )));
        }
        let mut mirrors = Vec::new();
        for _ in 0..count {
            let flags = r.take(1)?[0];
            let scheme = match flags & 1 {
                0 => "https://",
                _ => "http://",
            };
            let hint = Hint::from_code(flags >> 1).ok_or_else(|| {
                NoteError::Malformed(format!("unknown mirror flags 0x{flags:02x}"))
            })?;
            let len = r.varint("URL length")?;
            let rest = r.take(usize::try_from(len).unwrap_or(usize::MAX))?;
            let rest = std::str::from_utf8(rest)
                .map_err(|_| NoteError::Malformed("a mirror URL is not UTF-8".into()))?;
            let text = format!("{scheme}{rest}");
            let url = MirrorUrl::parse(&text, &IndexLimits::default())
                .map_err(|e| NoteError::Malformed(e.to_string()))?;
            if url.as_str() != text {
                return Err(NoteError::Malformed(format!(
                    "mirror URL {text:?} is not in normal form ({url})"
                )));
            }
            mirrors.push(NoteMirror { url, hint });
        }
        if r.at != body.len() {
            return Err(NoteError::Malformed(format!(
                "{} bytes after the last mirror",
                body.len() - r.at
            )));
        }
        let note = Note {
            publisher,
            sequence,
            expires,
            mirrors,
        };
        note.check()?;
        if note.encode_body() != body {
            return Err(NoteError::Malformed(
                "not the canonical encoding of its content".into(),
            ));
        }
        Ok(note)
    }

    /// Signs the note with the publisher's key. The key id in the note must be that key's.
    pub fn sign(&self, key: &SecretKey) -> Result<SignedNote, NoteError> {
        if self.publisher != key.public().id() {
            return Err(NoteError::Invalid(format!(
                "the note names publisher {} but the key is {}",
                self.publisher,
                key.public().id()
            )));
        }
        self.check()?;
        let mut bytes = self.encode_body();
        let signature = key.sign(Domain::Note, &bytes);
        bytes.extend_from_slice(&signature);
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::Invalid(format!(
                "the note would be {} bytes, more than the {MAX_NOTE_BYTES}-byte limit: list \
                 fewer or shorter mirrors (--subset)",
                bytes.len()
            )));
        }
        Ok(SignedNote { bytes })
    }
}

/// A note's bytes (body and signature) as made by [`Note::sign`]: not yet verified when it
/// comes from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    bytes: Vec<u8>,
}

impl SignedNote {
    /// Parses a `qasid:1:` URI (surrounding whitespace allowed) into its bytes. Only the
    /// envelope is checked here; [`SignedNote::verify`] does the rest.
    pub fn from_uri(text: &str) -> Result<Self, NoteError> {
        let text = text.trim();
        let max_chars = URI_PREFIX.len() + MAX_NOTE_BYTES.div_ceil(3) * 4;
        if text.len() > max_chars {
            return Err(NoteError::TooLarge {
                limit: MAX_NOTE_BYTES,
            });
        }
        let Some(rest) = text.strip_prefix("qasid:") else {
            return Err(NoteError::NotANote("it does not start with qasid:".into()));
        };
        let Some((version, payload)) = rest.split_once(':') else {
            return Err(NoteError::NotANote("no version".into()));
        };
        if version != "1" {
            return Err(NoteError::UnknownVersion(
                version.chars().take(16).collect(),
            ));
        }
        let bytes = B64URL.decode(payload).map_err(|_| {
            NoteError::NotANote("the payload is not base64url without padding".into())
        })?;
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge {
                limit: MAX_NOTE_BYTES,
            });
        }
        Ok(Self { bytes })
    }

    /// The URI: `qasid:1:` and the bytes in base64url without padding.
    pub fn to_uri(&self) -> String {
        format!("{URI_PREFIX}{}", B64URL.encode(&self.bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The key id the note claims (unverified).
    fn claimed_publisher(&self) -> Option<KeyId> {
        let id: [u8; 8] = self.bytes.get(..8)?.try_into().ok()?;
        Some(KeyId::from_bytes(id))
    }

    /// Verifies the signature with the trusted key the note names (a publisher's key, or a key
    /// its current root delegates for notes: [`note_signer`]), then decodes and checks that
    /// the bytes are the canonical encoding. Expiry is not checked here (see
    /// [`VerifiedNote::check_fresh`]), so an expired note can still be shown.
    pub fn verify<T: Trusted>(&self, trusted: &[T]) -> Result<VerifiedNote, NoteError> {
        if self.bytes.len() < 8 + 3 + SIGNATURE_BYTES {
            return Err(NoteError::Malformed("too short to be a note".into()));
        }
        let claimed = self.claimed_publisher().expect("length checked");
        let (owner, signer) =
            note_signer(claimed, trusted).ok_or(NoteError::UnknownPublisher(claimed))?;
        let (body, signature) = self.bytes.split_at(self.bytes.len() - SIGNATURE_BYTES);
        let signature: &[u8; 64] = signature.try_into().expect("64 bytes");
        signer
            .verify(Domain::Note, body, signature)
            .map_err(|_| NoteError::BadSignature(claimed))?;
        let note = Note::decode_body(body)?;
        Ok(VerifiedNote {
            note,
            signed: self.clone(),
            publisher: owner.publisher().clone(),
            signer: signer.clone(),
        })
    }
}

/// The key with key id `id` that may sign notes, among the trusted publishers, and whose
/// notes it signs: a key the publisher's current root delegates for the `note` role, or the
/// publisher's own key when it has no root (a bare [`PublicKey`] is the implicit one-key root).
pub fn note_signer<T: Trusted>(id: KeyId, trusted: &[T]) -> Option<(&T, &PublicKey)> {
    trusted.iter().find_map(|t| {
        t.signers(Role::Note)
            .iter()
            .find(|k| k.id() == id)
            .map(|k| (t, k))
    })
}

/// A note whose signature and encoding checked out with a trusted publisher's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNote {
    note: Note,
    signed: SignedNote,
    /// The publisher id (its folder name; the key itself for a one-key publisher).
    publisher: PublicKey,
    /// The key that signed: the publisher's, or one its root delegates for notes.
    signer: PublicKey,
}

impl VerifiedNote {
    pub fn note(&self) -> &Note {
        &self.note
    }

    pub fn signed(&self) -> &SignedNote {
        &self.signed
    }

    /// The trusted publisher whose note it is (its id).
    pub fn publisher(&self) -> &PublicKey {
        &self.publisher
    }

    /// The key that signed it (the publisher's own, or one its root delegates for notes).
    pub fn signer(&self) -> &PublicKey {
        &self.signer
    }

    pub fn expires(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.note.expires)
    }

    /// Refuses the note if it has expired at `now`.
    pub fn check_fresh(&self, now: SystemTime) -> Result<(), NoteError> {
        match now.duration_since(self.expires()) {
            Ok(since) if !since.is_zero() => Err(NoteError::Expired {
                publisher: self.publisher.id(),
                sequence: self.note.sequence,
                since,
            }),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for SignedNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

/// Writes `note`'s URI and a newline to `path`, atomically (the temp file beside it), so a
/// reader of the file sees the old note or the new one, never part of one.
pub fn write_uri_file(path: &std::path::Path, note: &SignedNote) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    crate::index::atomic::write(dir, path, format!("{}\n", note.to_uri()).as_bytes())
}

/// Whether `url`'s host is this machine: plain `http://` is allowed there only (a local DoH
/// proxy, a test server), since nothing on the network path can then read or change it.
fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `(scheme bit, URL without "https://" or "http://")` of a normalised mirror URL.
fn split_scheme(url: &str) -> (u8, &str) {
    match url.strip_prefix("https://") {
        Some(rest) => (0, rest),
        None => (1, url.strip_prefix("http://").unwrap_or(url)),
    }
}

/// Unsigned LEB128: 7 bits per byte, least significant first, high bit set on all but the
/// last byte.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], NoteError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| NoteError::Malformed("truncated".into()))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    /// A minimal LEB128 varint of at most 64 bits (a longer spelling of the same number is
    /// refused, so each number has one encoding).
    fn varint(&mut self, what: &str) -> Result<u64, NoteError> {
        let bad = |r: &str| NoteError::Malformed(format!("{what}: {r}"));
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = self.take(1)?[0];
            let bits = u64::from(byte & 0x7f);
            if i == 9 && byte > 1 {
                return Err(bad("more than 64 bits"));
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                if i > 0 && byte == 0 {
                    return Err(bad("varint is not minimal"));
                }
                return Ok(value);
            }
        }
        Err(bad("varint longer than 10 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_seed(&[0x51; 32])
    }

    fn note(urls: &[&str]) -> Note {
        Note {
            publisher: key().public().id(),
            sequence: 1_772_323_200,
            expires: 1_774_915_200,
            mirrors: urls.iter().map(|u| NoteMirror::parse(u).unwrap()).collect(),
        }
    }

    #[test]
    fn round_trips_through_the_uri() {
        let n = note(&[
            "https://a.example/",
            "tor:http://abc.onion/x/",
            "proxy:https://b.example",
        ]);
        let uri = n.sign(&key()).unwrap().to_uri();
        assert!(uri.starts_with("qasid:1:"));
        let v = SignedNote::from_uri(&format!(" {uri}\n"))
            .unwrap()
            .verify(&[key().public().clone()])
            .unwrap();
        assert_eq!(v.note(), &n);
        assert_eq!(v.note().mirrors[1].hint, Hint::Tor);
        assert_eq!(v.note().mirrors[2].url.as_str(), "https://b.example/");
    }

    #[test]
    fn varints_are_minimal() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader { bytes: &out, at: 0 };
            assert_eq!(r.varint("x").unwrap(), v);
            assert_eq!(r.at, out.len());
        }
        for bad in [
            &[0x80u8, 0x00][..],
            &[0x81, 0x80, 0x00],
            &[0xff; 11],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
        ] {
            assert!(Reader { bytes: bad, at: 0 }.varint("x").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn onion_hosts_default_to_tor() {
        assert_eq!(
            NoteMirror::parse("http://x.onion/").unwrap().hint,
            Hint::Tor
        );
        assert_eq!(
            NoteMirror::parse("http://x.example/").unwrap().hint,
            Hint::Direct
        );
        assert!(NoteMirror::parse("ftp://x.example/").is_err());
    }

    #[test]
    fn other_versions_and_padding_are_refused() {
        let uri = note(&["https://a.example/"]).sign(&key()).unwrap().to_uri();
        let v2 = uri.replacen("qasid:1:", "qasid:2:", 1);
        assert!(matches!(
            SignedNote::from_uri(&v2),
            Err(NoteError::UnknownVersion(_))
        ));
        assert!(SignedNote::from_uri(&format!("{uri}=")).is_err());
        assert!(SignedNote::from_uri(&uri.replacen("qasid:", "QASID:", 1)).is_err());
    }
}
