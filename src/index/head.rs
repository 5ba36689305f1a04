//! The signed head: the small, only mutable document of an index, and its envelope.
//!
//! Owns signing and verifying `index.json`. Verification order is fixed: size cap, envelope
//! JSON, signature over the exact head bytes with the trusted key, and only then the head JSON.
//! Nothing here decides between two valid heads (that is `tracker`'s job) or touches files.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Serialize;

use crate::content_id::ContentId;
use crate::index::log::PieceRef;
use crate::index::wire::{EnvelopeWire, HeadWire, LogWire, ENVELOPE_FORMAT, HEAD_FORMAT};
use crate::index::IndexError;
use crate::keys::{Domain, PublicKey, Role, SecretKey, Trusted};
use crate::limits::IndexLimits;

/// A mirror's base URL (the folder holding `qasid/v1/`): http or https, no credentials, query
/// or fragment, always ending in `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct MirrorUrl(String);

impl MirrorUrl {
    /// Validates and normalises a URL given by the publisher (`--mirror`).
    pub fn parse(text: &str, limits: &IndexLimits) -> Result<Self, IndexError> {
        let bad = |reason: &str| IndexError::Malformed {
            what: "mirror URL",
            reason: format!("{text:?}: {reason}"),
        };
        if text.len() > limits.max_mirror_url_bytes {
            return Err(bad("too long"));
        }
        let mut url = reqwest::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("not http or https"));
        }
        if url.host_str().is_none() {
            return Err(bad("no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("credentials do not belong in a published URL"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("query and fragment are not allowed"));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        if url.as_str().len() > limits.max_mirror_url_bytes {
            return Err(bad("too long"));
        }
        Ok(Self(url.into()))
    }

    /// Reads a URL from a signed head: it must already be in normalised form.
    fn from_head(text: String, limits: &IndexLimits) -> Result<Self, IndexError> {
        let parsed = Self::parse(&text, limits)?;
        if parsed.0 != text {
            return Err(IndexError::Malformed {
                what: "mirror URL",
                reason: format!("{text:?} is not in normal form ({:?})", parsed.0),
            });
        }
        Ok(parsed)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL of a layout path (see [`crate::index::layout`]) on this mirror.
    pub fn join(&self, relative: &str) -> String {
        format!("{}{relative}", self.0)
    }
}

impl fmt::Display for MirrorUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which pieces make up the log, and which one is the newest batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRef {
    entries: u64,
    pieces: Vec<PieceRef>,
    batch: PieceRef,
}

impl LogRef {
    /// Checks that `pieces` cover `0..entries` contiguously and that `batch` is a suffix of it.
    pub fn new(
        entries: u64,
        pieces: Vec<PieceRef>,
        batch: PieceRef,
        limits: &IndexLimits,
    ) -> Result<Self, IndexError> {
        let bad = |reason: String| IndexError::Malformed {
            what: "index head log",
            reason,
        };
        if entries == 0 || entries > limits.max_entries {
            return Err(bad(format!(
                "{entries} entries (must be 1..={})",
                limits.max_entries
            )));
        }
        if pieces.is_empty() || pieces.len() > limits.max_pieces {
            return Err(bad(format!(
                "{} pieces (must be 1..={})",
                pieces.len(),
                limits.max_pieces
            )));
        }
        let mut next = 0u64;
        for p in pieces.iter().chain([&batch]) {
            if p.count == 0 || p.size == 0 || p.size > limits.max_piece_bytes {
                return Err(bad(format!(
                    "piece {} has {} entries and {} bytes (limit {})",
                    p.sha256, p.count, p.size, limits.max_piece_bytes
                )));
            }
        }
        for p in &pieces {
            if p.first != next {
                return Err(bad(format!(
                    "piece {} starts at entry {} but the previous piece ends at {next}",
                    p.sha256, p.first
                )));
            }
            next = p
                .first
                .checked_add(p.count)
                .ok_or_else(|| bad("overflow".into()))?;
        }
        if next != entries {
            return Err(bad(format!(
                "pieces cover {next} entries but the head says {entries}"
            )));
        }
        if batch.first.checked_add(batch.count) != Some(entries) {
            return Err(bad("the batch piece is not the end of the log".into()));
        }
        Ok(Self {
            entries,
            pieces,
            batch,
        })
    }

    /// Number of entries in the log.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The pieces covering the whole log, oldest first.
    pub fn pieces(&self) -> &[PieceRef] {
        &self.pieces
    }

    /// The piece holding exactly the newest publish's entries.
    pub fn batch(&self) -> &PieceRef {
        &self.batch
    }
}

/// The content of a head, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    publisher: PublicKey,
    sequence: u64,
    issued: SystemTime,
    expires: SystemTime,
    previous: Option<ContentId>,
    mirrors: Vec<MirrorUrl>,
    log: LogRef,
}

/// The fields of a new head, for the publisher. [`Head::new`] checks them.
#[derive(Debug, Clone)]
pub struct HeadFields {
    pub publisher: PublicKey,
    pub sequence: u64,
    pub issued: SystemTime,
    pub expires: SystemTime,
    pub previous: Option<ContentId>,
    pub mirrors: Vec<MirrorUrl>,
    pub log: LogRef,
}

/// Whether a verified head is still within its validity period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Authentic but past its `expires` time by `since`: the content may be stale or a mirror
    /// may be freezing the reader on old news. Show it, with a warning.
    Expired {
        since: Duration,
    },
}

impl Head {
    pub fn new(fields: HeadFields, limits: &IndexLimits) -> Result<Self, IndexError> {
        let HeadFields {
            publisher,
            sequence,
            issued,
            expires,
            previous,
            mirrors,
            log,
        } = fields;
        let bad = |reason: &str| IndexError::Malformed {
            what: "index head",
            reason: reason.to_owned(),
        };
        if sequence == 0 {
            return Err(bad("sequence starts at 1"));
        }
        if (sequence == 1) != previous.is_none() {
            return Err(bad("previous must be null exactly when the sequence is 1"));
        }
        if expires <= issued {
            return Err(bad("expires is not after issued"));
        }
        if mirrors.len() > limits.max_mirrors {
            return Err(bad("too many mirrors"));
        }
        Ok(Self {
            publisher,
            sequence,
            issued: whole_seconds(issued),
            expires: whole_seconds(expires),
            previous,
            mirrors,
            log,
        })
    }

    pub fn publisher(&self) -> &PublicKey {
        &self.publisher
    }
    /// Strictly increases with every publish.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
    pub fn issued(&self) -> SystemTime {
        self.issued
    }
    pub fn expires(&self) -> SystemTime {
        self.expires
    }
    /// The sha256 of the previous `index.json` envelope, `None` for the first.
    pub fn previous(&self) -> Option<&ContentId> {
        self.previous.as_ref()
    }
    /// The publisher's signed list of mirrors.
    pub fn mirrors(&self) -> &[MirrorUrl] {
        &self.mirrors
    }
    pub fn log(&self) -> &LogRef {
        &self.log
    }

    pub fn freshness(&self, now: SystemTime) -> Freshness {
        match now.duration_since(self.expires) {
            Ok(since) if since > Duration::ZERO => Freshness::Expired { since },
            _ => Freshness::Fresh,
        }
    }

    /// The one accepted spelling of this head: compact JSON, members in `HeadWire` order,
    /// no trailing newline. These are the bytes that are signed.
    fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_wire()).expect("serialising owned data cannot fail")
    }

    fn to_wire(&self) -> HeadWire {
        HeadWire {
            format: HEAD_FORMAT.to_owned(),
            publisher: self.publisher.to_base64(),
            sequence: self.sequence,
            issued: humantime::format_rfc3339_seconds(self.issued).to_string(),
            expires: humantime::format_rfc3339_seconds(self.expires).to_string(),
            previous: self.previous,
            mirrors: self.mirrors.iter().map(|m| m.0.clone()).collect(),
            log: LogWire {
                entries: self.log.entries,
                pieces: self.log.pieces.clone(),
                batch: self.log.batch,
            },
        }
    }

    fn from_wire(
        wire: HeadWire,
        trusted: &PublicKey,
        limits: &IndexLimits,
    ) -> Result<Self, IndexError> {
        if wire.format != HEAD_FORMAT {
            return Err(IndexError::UnknownFormat {
                what: "index head",
                found: wire.format,
                expected: HEAD_FORMAT,
            });
        }
        if wire.publisher != trusted.to_base64() {
            return Err(IndexError::WrongPublisher {
                expected: trusted.id(),
                found: key_label(&wire.publisher),
            });
        }
        if wire.mirrors.len() > limits.max_mirrors {
            return Err(IndexError::Malformed {
                what: "index head",
                reason: format!("more than {} mirrors", limits.max_mirrors),
            });
        }
        let mirrors = wire
            .mirrors
            .into_iter()
            .map(|m| MirrorUrl::from_head(m, limits))
            .collect::<Result<Vec<_>, _>>()?;
        let log = LogRef::new(wire.log.entries, wire.log.pieces, wire.log.batch, limits)?;
        Self::new(
            HeadFields {
                publisher: trusted.clone(),
                sequence: wire.sequence,
                issued: parse_time("issued", &wire.issued)?,
                expires: parse_time("expires", &wire.expires)?,
                previous: wire.previous,
                mirrors,
                log,
            },
            limits,
        )
    }
}

/// A JSON error about untrusted bytes, safe to show: serde_json quotes offending input (an
/// unknown member's name, say) verbatim, so control characters and bidirectional controls in
/// it are escaped before the message can reach a terminal or a log.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    crate::manifest::printable(e.to_string().as_bytes())
}

/// How an untrusted publisher field is named in errors: its key id if it parses, else a
/// marker (the raw value could be anything, including terminal escapes).
pub(crate) fn key_label(base64: &str) -> String {
    PublicKey::from_base64(base64)
        .map(|k| k.id().to_string())
        .unwrap_or_else(|_| "<not a public key>".to_owned())
}

/// Times are signed at whole-second precision; dropping the fraction up front means a head
/// compares equal to itself after a round trip.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// Accepts exactly `YYYY-MM-DDTHH:MM:SSZ`, so every time has one spelling.
fn parse_time(field: &'static str, text: &str) -> Result<SystemTime, IndexError> {
    let bad = || IndexError::Malformed {
        what: "index head",
        reason: format!("{field} {text:?} is not YYYY-MM-DDTHH:MM:SSZ"),
    };
    let t = humantime::parse_rfc3339(text).map_err(|_| bad())?;
    if humantime::format_rfc3339_seconds(t).to_string() != text {
        return Err(bad());
    }
    Ok(t)
}

/// The one accepted `index.json` spelling for a head and its signature: compact JSON with the
/// members `format`, `head`, `signature` in that order, padded standard base64, and one final
/// newline.
fn encode_envelope(head_bytes: &[u8], signature: &[u8; 64]) -> Vec<u8> {
    let mut envelope = serde_json::to_vec(&EnvelopeWire {
        format: ENVELOPE_FORMAT.to_owned(),
        head: B64.encode(head_bytes),
        signature: B64.encode(signature),
    })
    .expect("serialising owned strings cannot fail");
    envelope.push(b'\n');
    envelope
}

fn not_canonical(what: &'static str) -> IndexError {
    IndexError::Malformed {
        what,
        reason: "it is not in its one canonical encoding (a re-spaced, re-ordered or \
                 re-escaped copy, which is refused: fetch the original bytes)"
            .into(),
    }
}

/// Explains a signature that does not verify. If the (untrusted) head names another valid
/// key, the likely cause is a misconfigured publisher key or a repo of someone else, which
/// deserves its own message; either way the head is refused.
fn signature_failure(head_bytes: &[u8], trusted: &PublicKey) -> IndexError {
    let claimed = serde_json::from_slice::<HeadWire>(head_bytes)
        .ok()
        .and_then(|h| PublicKey::from_base64(&h.publisher).ok());
    match claimed {
        Some(other) if &other != trusted => IndexError::WrongPublisher {
            expected: trusted.id(),
            found: other.id().to_string(),
        },
        _ => IndexError::BadSignature(trusted.id()),
    }
}

/// A head together with the exact envelope bytes that carried it; only [`SignedHead::sign`]
/// and [`SignedHead::verify`] make one, so holding one proves the signature checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    head: Head,
    envelope: Vec<u8>,
    id: ContentId,
}

impl SignedHead {
    /// Signs `head` with the publisher's key and wraps it in an envelope.
    pub fn sign(head: Head, key: &SecretKey) -> Result<Self, IndexError> {
        Self::sign_for(head, key, key.public())
    }

    /// Signs `head` with `key`, which `trusted` (the publisher's current root) must delegate
    /// for index heads; the head names `trusted`'s publisher id.
    pub fn sign_for(
        head: Head,
        key: &SecretKey,
        trusted: &(impl Trusted + ?Sized),
    ) -> Result<Self, IndexError> {
        if trusted.publisher() != head.publisher() {
            return Err(IndexError::WrongPublisher {
                expected: head.publisher().id(),
                found: trusted.publisher().id().to_string(),
            });
        }
        if !trusted.signers(Role::Index).contains(key.public()) {
            return Err(IndexError::WrongPublisher {
                expected: head.publisher().id(),
                found: key.public().id().to_string(),
            });
        }
        let head_bytes = head.canonical_bytes();
        let signature = key.sign(Domain::IndexHead, &head_bytes);
        let envelope = encode_envelope(&head_bytes, &signature);
        Ok(Self {
            id: ContentId::of_bytes(&envelope),
            head,
            envelope,
        })
    }

    /// Verifies `index.json` bytes against the trusted publisher: the signature must be made by
    /// a key it allows for index heads, and the head must name its publisher id.
    pub fn verify(
        envelope: &[u8],
        trusted: &(impl Trusted + ?Sized),
        limits: &IndexLimits,
    ) -> Result<Self, IndexError> {
        if envelope.len() as u64 > limits.max_head_bytes {
            return Err(IndexError::TooLarge {
                what: "index.json",
                limit: limits.max_head_bytes,
            });
        }
        if let Some(e) = crate::index::html_page(envelope) {
            return Err(e);
        }
        let bad = |what: &'static str, reason: String| IndexError::Malformed { what, reason };
        let wire: EnvelopeWire =
            serde_json::from_slice(envelope).map_err(|e| bad("index envelope", json_error(&e)))?;
        if wire.format != ENVELOPE_FORMAT {
            return Err(IndexError::UnknownFormat {
                what: "index envelope",
                found: wire.format,
                expected: ENVELOPE_FORMAT,
            });
        }
        let head_bytes = B64
            .decode(&wire.head)
            .map_err(|e| bad("index envelope", format!("head: {e}")))?;
        let signature: [u8; 64] = B64
            .decode(&wire.signature)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| {
                bad(
                    "index envelope",
                    "signature is not 64 bytes of base64".into(),
                )
            })?;
        // One envelope per (head, signature): a re-spaced, re-ordered or re-escaped copy would
        // be another file with another sha256, that is another index id (docs/PROTOCOL.md).
        if encode_envelope(&head_bytes, &signature) != envelope {
            return Err(not_canonical("index envelope"));
        }
        if trusted
            .verify_as(Role::Index, Domain::IndexHead, &head_bytes, &signature)
            .is_err()
        {
            return Err(signature_failure(&head_bytes, trusted.publisher()));
        }
        let head_wire: HeadWire =
            serde_json::from_slice(&head_bytes).map_err(|e| bad("index head", json_error(&e)))?;
        let head = Head::from_wire(head_wire, trusted.publisher(), limits)?;
        if head.canonical_bytes() != head_bytes {
            return Err(not_canonical("index head"));
        }
        Ok(Self {
            head,
            id: ContentId::of_bytes(envelope),
            envelope: envelope.to_vec(),
        })
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The exact `index.json` bytes.
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// sha256 of the envelope bytes: what the next head's `previous` names.
    pub fn id(&self) -> &ContentId {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::log::EncodedPiece;
    use crate::index::log::{ArticleFields, ArticleVersion, Entry, ObjectRef};

    fn signed(key: &SecretKey, sequence: u64) -> SignedHead {
        let limits = IndexLimits::default();
        let entry = Entry::Add(
            ArticleVersion::new(
                ArticleFields {
                    name: "a".into(),
                    version: 1,
                    title: "A".into(),
                    date: "2024-01-01".into(),
                    language: "en".into(),
                    author: "x".into(),
                    bundle: ObjectRef {
                        sha256: ContentId::of_bytes(b"zip"),
                        size: 3,
                    },
                },
                &limits,
            )
            .unwrap(),
        );
        let piece = EncodedPiece::new(key.public(), 0, &[entry]);
        let log = LogRef::new(1, vec![piece.reference], piece.reference, &limits).unwrap();
        let issued = humantime::parse_rfc3339("2025-01-01T00:00:00Z").unwrap();
        let head = Head::new(
            HeadFields {
                publisher: key.public().clone(),
                sequence,
                issued,
                expires: issued + Duration::from_secs(86400),
                previous: (sequence > 1).then(|| ContentId::of_bytes(b"prev")),
                mirrors: vec![MirrorUrl::parse("https://m.example/qasid-mirror", &limits).unwrap()],
                log,
            },
            &limits,
        )
        .unwrap();
        SignedHead::sign(head, key).unwrap()
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let key = SecretKey::from_seed(&[4u8; 32]);
        let s = signed(&key, 2);
        let v = SignedHead::verify(s.envelope(), key.public(), &IndexLimits::default()).unwrap();
        assert_eq!(v, s);
        assert_eq!(
            v.head().mirrors()[0].as_str(),
            "https://m.example/qasid-mirror/"
        );
        let t = humantime::parse_rfc3339("2025-01-03T00:00:00Z").unwrap();
        assert_eq!(
            v.head().freshness(t),
            Freshness::Expired {
                since: Duration::from_secs(86400)
            }
        );
    }

    #[test]
    fn mirror_urls_are_checked() {
        let l = IndexLimits::default();
        assert!(MirrorUrl::parse("ftp://x.example/", &l).is_err());
        assert!(MirrorUrl::parse("https://u:p@x.example/", &l).is_err());
        assert!(MirrorUrl::parse("https://x.example/?a=1", &l).is_err());
        assert!(MirrorUrl::from_head("https://x.example".into(), &l).is_err());
        assert!(MirrorUrl::from_head("https://x.example/".into(), &l).is_ok());
    }

    /// Found by fuzz_index_head: serde_json quotes an unknown member's name verbatim, so a
    /// hostile mirror could put terminal escapes into the error a reader sees.
    #[test]
    fn envelope_and_head_errors_escape_control_characters() {
        let key = SecretKey::from_seed(&[4u8; 32]);
        let limits = IndexLimits::default();
        // JSON escapes, which serde_json decodes before naming the unknown member.
        let envelope = br#"{"\u001b[2J\u007f\u202e":1}"#;
        let err = SignedHead::verify(envelope, key.public(), &limits).unwrap_err();
        let shown = err.to_string();
        assert!(!shown.contains(['\x1b', '\x7f', '\u{202e}']), "{shown:?}");
        assert!(shown.contains("\\u{1b}[2J"), "{shown:?}");
        // The same behind a valid signature, in the head JSON.
        let head = r#"{"\u001b]0;owned\u0007":1}"#;
        let mut envelope = serde_json::to_vec(&EnvelopeWire {
            format: ENVELOPE_FORMAT.to_owned(),
            head: B64.encode(head),
            signature: B64.encode(key.sign(Domain::IndexHead, head.as_bytes())),
        })
        .unwrap();
        envelope.push(b'\n');
        let shown = SignedHead::verify(&envelope, key.public(), &limits)
            .unwrap_err()
            .to_string();
        assert!(shown.contains("index head is malformed"), "{shown:?}");
        assert!(!shown.contains(['\x1b', '\x07']), "{shown:?}");
    }

    #[test]
    fn times_have_one_spelling() {
        assert!(parse_time("issued", "2025-01-01T00:00:00Z").is_ok());
        assert!(parse_time("issued", "2025-01-01T00:00:00.5Z").is_err());
        assert!(parse_time("issued", "2025-01-01T00:00:00+00:00").is_err());
    }
}
