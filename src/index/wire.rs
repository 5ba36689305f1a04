//! The JSON shapes of the index exactly as they travel: envelope, head, piece, entry.
//!
//! Owns field names and field order (serde serialises struct fields in declaration order, which
//! is what makes a piece's bytes canonical). These types hold unchecked data: nothing outside
//! `index` sees them, and every value read into them is validated before use.

use serde::{Deserialize, Serialize};

use crate::content_id::ContentId;
use crate::index::log::{ObjectRef, PieceRef};

pub(crate) const ENVELOPE_FORMAT: &str = "qasid-index-envelope/1";
pub(crate) const HEAD_FORMAT: &str = "qasid-index/1";
pub(crate) const PIECE_FORMAT: &str = "qasid-index-piece/1";

/// `index.json`: the signed head, wrapped so the signed bytes travel untouched.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvelopeWire {
    pub format: String,
    /// Standard base64 (with padding) of the exact head bytes that were signed.
    pub head: String,
    /// Standard base64 of the 64-byte ed25519 signature over `"qasid-index-head-v1\n" ‖ head`.
    pub signature: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeadWire {
    pub format: String,
    pub publisher: String,
    pub sequence: u64,
    pub issued: String,
    pub expires: String,
    pub previous: Option<ContentId>,
    pub mirrors: Vec<String>,
    pub log: LogWire,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogWire {
    pub entries: u64,
    pub pieces: Vec<PieceRef>,
    pub batch: PieceRef,
}

/// A piece as read. Writing goes through `log::encode_piece`, which borrows validated entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PieceWire {
    pub format: String,
    pub publisher: String,
    pub first: u64,
    pub entries: Vec<EntryWire>,
}

/// One log entry as read: one flat record whose `op` says which fields it must have (a flat
/// struct reads about twice as fast as serde's internally tagged enum, which buffers every
/// entry; indexes have 100,000 of them). Writing goes through `log::Entry`'s `Serialize`, whose
/// field order matches this one (checked by the byte-exact round-trip tests in `log`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntryWire {
    pub op: EntryOp,
    pub name: String,
    pub version: Option<u64>,
    pub title: Option<String>,
    pub date: Option<String>,
    pub language: Option<String>,
    pub author: Option<String>,
    pub bundle: Option<ObjectRef>,
    /// The chunk list of a bundle above the threshold (`index::chunks`), or absent.
    pub chunks: Option<ObjectRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EntryOp {
    Add,
    Retract,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_refuse_unknown_fields_and_ops() {
        let ok = r#"{"op":"retract","name":"a"}"#;
        assert!(serde_json::from_str::<EntryWire>(ok).is_ok());
        let extra = r#"{"op":"retract","name":"a","why":"x"}"#;
        assert!(serde_json::from_str::<EntryWire>(extra).is_err());
        let op = r#"{"op":"delete","name":"a"}"#;
        assert!(serde_json::from_str::<EntryWire>(op).is_err());
        let dup = r#"{"op":"retract","name":"a","name":"b"}"#;
        assert!(serde_json::from_str::<EntryWire>(dup).is_err());
    }
}
