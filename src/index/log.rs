//! The append-only log of index entries, its content-addressed pieces and the current listing.
//!
//! Owns entry validation, the canonical piece encoding (the bytes whose sha256 names a piece),
//! the publisher's piece merge rule, and the fold from log to current listing. It never reads
//! files or the network and never checks signatures: callers hand it bytes already size- and
//! hash-checked against a signed head.

use std::collections::BTreeMap;

use serde::ser::SerializeStruct as _;
use serde::{Deserialize, Serialize, Serializer};

use crate::article;
use crate::content_id::ContentId;
use crate::index::chunks;
use crate::index::wire::{EntryOp, EntryWire, PieceWire, PIECE_FORMAT};
use crate::index::IndexError;
use crate::keys::PublicKey;
use crate::limits::IndexLimits;
use crate::manifest;

/// The sha256 and exact size of a stored object (a bundle). The size is a hard download cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    pub sha256: ContentId,
    pub size: u64,
}

/// A piece as the head lists it: its sha256 and size, and the log range it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PieceRef {
    pub sha256: ContentId,
    pub size: u64,
    /// Position in the log of the piece's first entry.
    pub first: u64,
    /// Number of entries in the piece (at least 1).
    pub count: u64,
}

impl ObjectRef {
    /// The reference of bytes held in memory (small objects: pieces, chunk lists).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self {
            sha256: ContentId::of_bytes(bytes),
            size: bytes.len() as u64,
        }
    }
}

impl PieceRef {
    /// One past the position of the piece's last entry.
    pub fn end(&self) -> u64 {
        self.first + self.count
    }

    pub fn object(&self) -> ObjectRef {
        ObjectRef {
            sha256: self.sha256,
            size: self.size,
        }
    }
}

/// One published article version, as listed in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArticleVersion {
    name: String,
    version: u64,
    title: String,
    date: String,
    language: String,
    author: String,
    bundle: ObjectRef,
    /// The bundle's chunk list (docs/PROTOCOL.md §13): present only for a bundle above the
    /// threshold, and then exactly the size its chunk count gives.
    chunks: Option<ObjectRef>,
}

/// The fields of a new [`ArticleVersion`], validated by [`ArticleVersion::new`].
#[derive(Debug, Clone)]
pub struct ArticleFields {
    pub name: String,
    pub version: u64,
    pub title: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub language: String,
    pub author: String,
    pub bundle: ObjectRef,
}

impl ArticleVersion {
    pub fn new(fields: ArticleFields, limits: &IndexLimits) -> Result<Self, IndexError> {
        let ArticleFields {
            name,
            version,
            title,
            date,
            language,
            author,
            bundle,
        } = fields;
        check_name(&name)?;
        if version == 0 {
            return Err(entry_error("version must be at least 1"));
        }
        check_text("title", &title, limits)?;
        check_text("author", &author, limits)?;
        if !article::is_valid_date(&date) {
            return Err(entry_error(format!(
                "date {date:?} is not a YYYY-MM-DD day"
            )));
        }
        if !article::is_valid_language(&language) {
            return Err(entry_error(format!(
                "language {language:?} is not a language tag"
            )));
        }
        Ok(Self {
            name,
            version,
            title,
            date,
            language,
            author,
            bundle,
            chunks: None,
        })
    }

    /// This version with the chunk list of its bundle: refused unless the bundle is above the
    /// threshold and the list has exactly the size its chunk count gives.
    pub fn with_chunks(self, chunks: ObjectRef) -> Result<Self, IndexError> {
        chunks::check_reference(self.bundle, chunks)
            .map_err(|e| entry_error(format!("\"chunks\": {e}")))?;
        Ok(Self {
            chunks: Some(chunks),
            ..self
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn title(&self) -> &str {
        &self.title
    }
    /// The article's date, `YYYY-MM-DD`.
    pub fn date(&self) -> &str {
        &self.date
    }
    pub fn language(&self) -> &str {
        &self.language
    }
    pub fn author(&self) -> &str {
        &self.author
    }
    /// The bundle's sha256 and size: fetch it by hash, capped at this size.
    pub fn bundle(&self) -> ObjectRef {
        self.bundle
    }
    /// The bundle's chunk list, when the publisher wrote one (bundles above the threshold,
    /// published by a qasid that knows chunk lists): fetch it by hash, capped at this size.
    pub fn chunks(&self) -> Option<ObjectRef> {
        self.chunks
    }
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A bundle was published: lists this version as its name's current one.
    Add(ArticleVersion),
    /// The name was dropped from the listing (history keeps its versions).
    Retract { name: String },
}

impl Entry {
    /// A retract entry for a validated name.
    pub fn retract(name: &str) -> Result<Self, IndexError> {
        check_name(name)?;
        Ok(Entry::Retract {
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Entry::Add(a) => &a.name,
            Entry::Retract { name } => name,
        }
    }

    fn from_wire(wire: EntryWire, limits: &IndexLimits) -> Result<Self, IndexError> {
        match wire.op {
            EntryOp::Add => {
                let missing = |field: &str| entry_error(format!("an add entry needs {field:?}"));
                ArticleVersion::new(
                    ArticleFields {
                        name: wire.name,
                        version: wire.version.ok_or_else(|| missing("version"))?,
                        title: wire.title.ok_or_else(|| missing("title"))?,
                        date: wire.date.ok_or_else(|| missing("date"))?,
                        language: wire.language.ok_or_else(|| missing("language"))?,
                        author: wire.author.ok_or_else(|| missing("author"))?,
                        bundle: wire.bundle.ok_or_else(|| missing("bundle"))?,
                    },
                    limits,
                )
                .and_then(|a| match wire.chunks {
                    Some(chunks) => a.with_chunks(chunks),
                    None => Ok(a),
                })
                .map(Entry::Add)
            }
            EntryOp::Retract => {
                let extra = wire.version.is_some()
                    || wire.title.is_some()
                    || wire.date.is_some()
                    || wire.language.is_some()
                    || wire.author.is_some()
                    || wire.bundle.is_some()
                    || wire.chunks.is_some();
                if extra {
                    return Err(entry_error("a retract entry has only \"op\" and \"name\""));
                }
                Entry::retract(&wire.name)
            }
        }
    }
}

/// Serialises in the canonical field order documented in docs/PROTOCOL.md (the same order as
/// [`EntryWire`], which reads it back).
impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Entry::Add(a) => {
                let mut st = s.serialize_struct("Entry", 9)?;
                st.serialize_field("op", "add")?;
                st.serialize_field("name", &a.name)?;
                st.serialize_field("version", &a.version)?;
                st.serialize_field("title", &a.title)?;
                st.serialize_field("date", &a.date)?;
                st.serialize_field("language", &a.language)?;
                st.serialize_field("author", &a.author)?;
                st.serialize_field("bundle", &a.bundle)?;
                if let Some(chunks) = &a.chunks {
                    st.serialize_field("chunks", chunks)?;
                }
                st.end()
            }
            Entry::Retract { name } => {
                let mut st = s.serialize_struct("Entry", 2)?;
                st.serialize_field("op", "retract")?;
                st.serialize_field("name", name)?;
                st.end()
            }
        }
    }
}

fn entry_error(reason: impl Into<String>) -> IndexError {
    IndexError::Malformed {
        what: "index entry",
        reason: reason.into(),
    }
}

/// Names follow the bundle manifest's rule (`[a-z0-9][a-z0-9-]{0,63}`), so they are safe in
/// paths and every verified bundle's name fits.
fn check_name(name: &str) -> Result<(), IndexError> {
    if manifest::is_valid_bundle_name(name) {
        Ok(())
    } else {
        Err(entry_error(format!(
            "article name {name:?} is not a bundle name"
        )))
    }
}

/// Title and author follow the manifest's rule (non-empty, trimmed, no control characters: so
/// the canonical encoding never needs escapes other than `\"` and `\\`), plus a length cap.
fn check_text(field: &str, text: &str, limits: &IndexLimits) -> Result<(), IndexError> {
    if !article::is_valid_text_value(text) {
        return Err(entry_error(format!(
            "{field} is empty, padded or has a control character"
        )));
    }
    if text.len() > limits.max_text_bytes {
        return Err(entry_error(format!(
            "{field} is longer than {} bytes",
            limits.max_text_bytes
        )));
    }
    Ok(())
}

#[derive(Serialize)]
struct PieceOut<'a, E> {
    format: &'static str,
    publisher: &'a str,
    first: u64,
    entries: &'a [E],
}

/// The canonical bytes of a piece holding `entries`, the first of which is at log position
/// `first`: compact JSON, fields in documented order, no trailing newline.
pub fn encode_piece(publisher: &PublicKey, first: u64, entries: &[Entry]) -> Vec<u8> {
    encode(publisher, first, entries)
}

/// [`encode_piece`] for entries gathered from several places (held log and new pieces).
pub(crate) fn encode_piece_refs(publisher: &PublicKey, first: u64, entries: &[&Entry]) -> Vec<u8> {
    encode(publisher, first, entries)
}

fn encode<E: Serialize>(publisher: &PublicKey, first: u64, entries: &[E]) -> Vec<u8> {
    let out = PieceOut {
        format: PIECE_FORMAT,
        publisher: &publisher.to_base64(),
        first,
        entries,
    };
    serde_json::to_vec(&out).expect("serialising owned strings and integers cannot fail")
}

/// A piece's canonical bytes together with the reference a head lists for it.
pub struct EncodedPiece {
    pub reference: PieceRef,
    pub bytes: Vec<u8>,
}

impl EncodedPiece {
    pub fn new(publisher: &PublicKey, first: u64, entries: &[Entry]) -> Self {
        let bytes = encode_piece(publisher, first, entries);
        Self::from_bytes(bytes, first, entries.len() as u64)
    }

    /// Wraps bytes produced by [`encode_piece`] (or `encode_piece_refs`) for `count` entries.
    pub(crate) fn from_bytes(bytes: Vec<u8>, first: u64, count: u64) -> Self {
        let reference = PieceRef {
            sha256: ContentId::of_bytes(&bytes),
            size: bytes.len() as u64,
            first,
            count,
        };
        Self { reference, bytes }
    }
}

/// Parses piece bytes that already matched `expected`'s sha256 and size. Checks the format,
/// publisher, range and every entry, and that the bytes are the canonical encoding, so any
/// client can rebuild the same piece from the same entries.
pub fn decode_piece(
    bytes: &[u8],
    publisher: &PublicKey,
    expected: &PieceRef,
    limits: &IndexLimits,
) -> Result<Vec<Entry>, IndexError> {
    decode(bytes, publisher, Some(expected), limits).map(|(_, entries)| entries)
}

/// Checks a piece on its own, before any signed head names it: everything [`decode_piece`]
/// checks except the range, which only a head can give, plus the size cap and the log rules a
/// piece alone can break (at least one entry, and the range within `max_entries`). Returns the
/// reference a head would list for these bytes.
///
/// Pieces carry no signature, so passing this proves nothing about who wrote the piece; it
/// lets a mirror refuse junk when it is pushed instead of holding it until an index that
/// never lists it is refused.
pub fn validate_piece(
    bytes: &[u8],
    publisher: &PublicKey,
    limits: &IndexLimits,
) -> Result<PieceRef, IndexError> {
    if bytes.len() as u64 > limits.max_piece_bytes {
        return Err(IndexError::TooLarge {
            what: "index piece",
            limit: limits.max_piece_bytes,
        });
    }
    let (first, entries) = decode(bytes, publisher, None, limits)?;
    let count = entries.len() as u64;
    if count == 0 {
        return Err(piece_error("holds no entries".into()));
    }
    if first
        .checked_add(count)
        .is_none_or(|end| end > limits.max_entries)
    {
        return Err(piece_error(format!(
            "entries {first}.. run past the {}-entry log limit",
            limits.max_entries
        )));
    }
    Ok(PieceRef {
        sha256: ContentId::of_bytes(bytes),
        size: bytes.len() as u64,
        first,
        count,
    })
}

fn piece_error(reason: String) -> IndexError {
    IndexError::Malformed {
        what: "index piece",
        reason,
    }
}

/// The checks shared by [`decode_piece`] and [`validate_piece`]: format, publisher, the range
/// against `expected` if given, every entry, canonical bytes. Returns `first` and the entries.
fn decode(
    bytes: &[u8],
    publisher: &PublicKey,
    expected: Option<&PieceRef>,
    limits: &IndexLimits,
) -> Result<(u64, Vec<Entry>), IndexError> {
    let wire: PieceWire = serde_json::from_slice(bytes)
        .map_err(|e| piece_error(crate::index::head::json_error(&e)))?;
    if wire.format != PIECE_FORMAT {
        return Err(IndexError::UnknownFormat {
            what: "index piece",
            found: wire.format,
            expected: PIECE_FORMAT,
        });
    }
    if wire.publisher != publisher.to_base64() {
        return Err(IndexError::WrongPublisher {
            expected: publisher.id(),
            found: crate::index::head::key_label(&wire.publisher),
        });
    }
    if let Some(expected) = expected {
        if wire.first != expected.first || wire.entries.len() as u64 != expected.count {
            // `first` is the piece's claim, anything up to u64::MAX: never add to it here.
            return Err(piece_error(format!(
                "holds {} entries from entry {} but the head says {}..{}",
                wire.entries.len(),
                wire.first,
                expected.first,
                expected.end()
            )));
        }
    }
    let first = wire.first;
    let entries = wire
        .entries
        .into_iter()
        .map(|e| Entry::from_wire(e, limits))
        .collect::<Result<Vec<_>, _>>()?;
    if encode_piece(publisher, first, &entries) != bytes {
        return Err(piece_error(
            "bytes are not the canonical encoding of its entries".into(),
        ));
    }
    Ok((first, entries))
}

/// The publisher's merge rule. Given the counts of the current pieces (oldest first) and a new
/// batch of `batch` entries, returns the counts after appending the batch: while the
/// second-to-last piece holds at most twice as many entries as the last, the two merge.
///
/// Afterwards every piece holds more than twice the entries of the next, so a log of N entries
/// has at most log2(N) + 1 pieces whatever the batch sizes (a plain "merge equal sizes" binary
/// counter degrades to ~sqrt(2N) pieces when batches shrink over time).
pub fn merged_counts(current: &[u64], batch: u64) -> Vec<u64> {
    let mut counts = current.to_vec();
    counts.push(batch);
    while let [.., a, b] = counts[..] {
        if a > 2 * b {
            break;
        }
        counts.truncate(counts.len() - 2);
        counts.push(a + b);
    }
    counts
}

/// Positions of the current listing: for each name, its latest `add`, unless a `retract` of
/// that name comes after it. Sorted by name.
pub fn current_positions(entries: &[Entry]) -> BTreeMap<&str, usize> {
    let mut current = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        match entry {
            Entry::Add(a) => {
                current.insert(a.name(), i);
            }
            Entry::Retract { name } => {
                current.remove(name.as_str());
            }
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn article(name: &str, version: u64, seed: u8) -> Entry {
        Entry::Add(
            ArticleVersion::new(
                ArticleFields {
                    name: name.into(),
                    version,
                    title: format!("Title \"{name}\" \\ v{version} — اردو"),
                    date: "2024-12-12".into(),
                    language: "ur".into(),
                    author: "Staff".into(),
                    bundle: ObjectRef {
                        sha256: ContentId::of_bytes(&[seed]),
                        size: 1000 + u64::from(seed),
                    },
                },
                &IndexLimits::default(),
            )
            .unwrap(),
        )
    }

    #[test]
    fn piece_encoding_is_byte_exact() {
        let key = SecretKey::from_seed(&[1u8; 32]);
        let pk = key.public();
        let entries = vec![Entry::retract("old").unwrap()];
        let bytes = encode_piece(pk, 7, &entries);
        let expected = format!(
            r#"{{"format":"qasid-index-piece/1","publisher":"{}","first":7,"entries":[{{"op":"retract","name":"old"}}]}}"#,
            pk.to_base64()
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
        let add = encode_piece(pk, 0, &[article("a", 2, 0)]);
        let add = String::from_utf8(add).unwrap();
        assert!(add.contains(
            r#"{"op":"add","name":"a","version":2,"title":"Title \"a\" \\ v2 — اردو","date":"2024-12-12","language":"ur","author":"Staff","bundle":{"sha256":"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d","size":1000}}"#
        ), "{add}");
    }

    #[test]
    fn decode_round_trips_and_refuses_non_canonical_bytes() {
        let key = SecretKey::from_seed(&[1u8; 32]);
        let pk = key.public();
        let entries = vec![article("a", 1, 1), Entry::retract("a").unwrap()];
        let piece = EncodedPiece::new(pk, 3, &entries);
        let limits = IndexLimits::default();
        assert_eq!(
            decode_piece(&piece.bytes, pk, &piece.reference, &limits).unwrap(),
            entries
        );
        let spaced = String::from_utf8(piece.bytes.clone())
            .unwrap()
            .replacen(",", ", ", 1);
        let err = decode_piece(spaced.as_bytes(), pk, &piece.reference, &limits).unwrap_err();
        assert!(err.to_string().contains("canonical"), "{err}");
        let other = SecretKey::from_seed(&[2u8; 32]);
        let err = decode_piece(&piece.bytes, other.public(), &piece.reference, &limits);
        assert!(matches!(err, Err(IndexError::WrongPublisher { .. })));
        let shifted = PieceRef {
            first: 4,
            ..piece.reference
        };
        assert!(decode_piece(&piece.bytes, pk, &shifted, &limits).is_err());
    }

    #[test]
    fn a_piece_validates_on_its_own_and_junk_does_not() {
        let key = SecretKey::from_seed(&[1u8; 32]);
        let pk = key.public();
        let limits = IndexLimits::default();
        let piece = EncodedPiece::new(pk, 3, &[article("a", 1, 1), article("b", 1, 2)]);
        assert_eq!(
            validate_piece(&piece.bytes, pk, &limits).unwrap(),
            piece.reference
        );
        let empty = encode_piece(pk, 0, &[]);
        assert!(validate_piece(&empty, pk, &limits)
            .unwrap_err()
            .to_string()
            .contains("no entries"));
        let other = SecretKey::from_seed(&[2u8; 32]);
        assert!(matches!(
            validate_piece(&piece.bytes, other.public(), &limits),
            Err(IndexError::WrongPublisher { .. })
        ));
        let beyond = encode_piece(pk, u64::MAX, &[Entry::retract("a").unwrap()]);
        assert!(validate_piece(&beyond, pk, &limits).is_err());
        for junk in [&b"not json"[..], b"{}", b"\x89PNG"] {
            assert!(matches!(
                validate_piece(junk, pk, &limits),
                Err(IndexError::Malformed { .. })
            ));
        }
        let small = IndexLimits {
            max_piece_bytes: 10,
            ..IndexLimits::default()
        };
        assert!(matches!(
            validate_piece(&piece.bytes, pk, &small),
            Err(IndexError::TooLarge { .. })
        ));
    }

    /// Found by fuzz_index_piece: a pushed or downloaded piece with an unknown member named
    /// with control characters had them copied raw into the error message.
    #[test]
    fn piece_errors_escape_control_characters() {
        let key = SecretKey::from_seed(&[1u8; 32]);
        let junk = br#"{"f\u007frmat\u001b[31m":1}"#;
        let shown = validate_piece(junk, key.public(), &IndexLimits::default())
            .unwrap_err()
            .to_string();
        assert!(!shown.contains(['\x1b', '\x7f']), "{shown:?}");
        assert!(shown.contains("\\u{7f}"), "{shown:?}");
    }

    /// A piece claiming to start near u64::MAX, checked against a head's range, overflowed
    /// while the error message was built (a panic in debug builds, a wrong range in release).
    #[test]
    fn piece_starting_near_u64_max_is_refused_without_overflow() {
        let key = SecretKey::from_seed(&[1u8; 32]);
        let pk = key.public();
        let limits = IndexLimits::default();
        let piece = EncodedPiece::new(pk, u64::MAX, &[Entry::retract("a").unwrap()]);
        let head_says = PieceRef {
            first: 0,
            ..piece.reference
        };
        let err = decode_piece(&piece.bytes, pk, &head_says, &limits).unwrap_err();
        assert!(
            err.to_string()
                .contains("holds 1 entries from entry 18446744073709551615 but the head says 0..1"),
            "{err}"
        );
        assert!(validate_piece(&piece.bytes, pk, &limits).is_err());
    }

    #[test]
    fn entries_with_unsafe_fields_are_refused() {
        let limits = IndexLimits::default();
        let mut fields = ArticleFields {
            name: "../etc".into(),
            version: 1,
            title: "t".into(),
            date: "2024-01-01".into(),
            language: "en".into(),
            author: "a".into(),
            bundle: ObjectRef {
                sha256: ContentId::of_bytes(b""),
                size: 0,
            },
        };
        assert!(ArticleVersion::new(fields.clone(), &limits).is_err());
        fields.name = "ok".into();
        assert!(ArticleVersion::new(fields.clone(), &limits).is_ok());
        fields.title = "line\nbreak".into();
        assert!(ArticleVersion::new(fields.clone(), &limits).is_err());
        fields.title = "t".into();
        fields.date = "2024-13-01".into();
        assert!(ArticleVersion::new(fields, &limits).is_err());
    }

    #[test]
    fn merge_rule_keeps_pieces_logarithmic() {
        let mut counts = Vec::new();
        for _ in 0..100_000 {
            counts = merged_counts(&counts, 1);
            assert!(counts.windows(2).all(|w| w[0] > 2 * w[1]));
        }
        assert_eq!(counts.iter().sum::<u64>(), 100_000);
        assert!(counts.len() <= 17, "{counts:?}");
        // Shrinking batches: the case a plain binary counter handles badly.
        let mut counts = Vec::new();
        for batch in (1..=400u64).rev() {
            counts = merged_counts(&counts, batch);
        }
        assert!(counts.len() <= 18, "{counts:?}");
    }

    #[test]
    fn listing_folds_adds_and_retracts() {
        let log = vec![
            article("a", 1, 1),
            article("b", 1, 2),
            article("a", 2, 3),
            Entry::retract("b").unwrap(),
            article("c", 1, 4),
            Entry::retract("c").unwrap(),
            article("c", 1, 4),
        ];
        let current = current_positions(&log);
        assert_eq!(
            current.into_iter().collect::<Vec<_>>(),
            [("a", 2), ("c", 6)]
        );
    }
}
