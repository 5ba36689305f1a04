//! The names of things in the store: publisher folders and the objects inside them.
//!
//! Owns the validated [`PublisherId`] (64 lowercase hex digits of a raw ed25519 key) and the
//! [`ObjectKind`]s of the layout. A path is only ever built from these through
//! [`crate::index::layout::PublisherLayout`], so no untrusted string reaches the file system.

use std::fmt;
use std::str::FromStr;

use crate::content_id::ContentId;
use crate::keys::{KeyId, PublicKey};

/// A publisher folder's name: the raw 32-byte ed25519 key, shown as 64 lowercase hex digits.
/// It names a folder; whether the key is trusted is a separate question.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublisherId([u8; 32]);

/// A string was not 64 lowercase hex digits.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a publisher id: expected 64 lowercase hex digits")]
pub struct ParsePublisherIdError;

impl PublisherId {
    pub fn of(key: &PublicKey) -> Self {
        Self(*key.as_bytes())
    }

    /// The raw key bytes the folder is named after.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key id of the key this folder is named after: the name the CLI shows for a
    /// publisher, used in every message (the 64-hex form is only a folder name).
    pub fn key_id(&self) -> KeyId {
        KeyId::of_raw_key(&self.0)
    }
}

impl FromStr for PublisherId {
    type Err = ParsePublisherIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The same rule as `ContentId`: one folder has exactly one spelling.
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ParsePublisherIdError);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParsePublisherIdError)?;
        Ok(Self(out))
    }
}

impl fmt::Display for PublisherId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublisherId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublisherId({self})")
    }
}

/// One file of a publisher's folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// `index.json`: the signed head envelope, the only file that changes.
    Index,
    /// `publisher.pub`: the publisher's key file, written by the store from the trusted key.
    PublisherPub,
    /// `pieces/<sha256>.json`: an immutable index piece.
    Piece(ContentId),
    /// `bundles/<sha256>.zip`.
    Bundle(ContentId),
    /// `bundles/<sha256>.zip.minisig`: the detached signature of that bundle.
    Minisig(ContentId),
    /// `chunks/<sha256>`: an immutable chunk list of a large bundle, named by the sha256 of
    /// the list's bytes (docs/PROTOCOL.md §13).
    Chunks(ContentId),
    /// `roots/<N>.json`: root version N of the publisher's root of trust (immutable).
    Root(u64),
    /// `note`: the publisher's signed mirror note (one `qasid:1:` URI); replaced only by a
    /// note with a higher sequence.
    Note,
}

impl ObjectKind {
    /// The sha256 of the object's bytes when its name is that hash (pieces and bundles).
    pub fn content_id(&self) -> Option<ContentId> {
        match self {
            ObjectKind::Piece(id) | ObjectKind::Bundle(id) | ObjectKind::Chunks(id) => Some(*id),
            ObjectKind::Index
            | ObjectKind::PublisherPub
            | ObjectKind::Minisig(_)
            | ObjectKind::Root(_)
            | ObjectKind::Note => None,
        }
    }

    /// Whether the store ever replaces this file once written. Only `index.json` and `note`
    /// change.
    pub fn is_immutable(&self) -> bool {
        !matches!(self, ObjectKind::Index | ObjectKind::Note)
    }

    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ObjectKind::Index => "index",
            ObjectKind::PublisherPub => "publisher_pub",
            ObjectKind::Piece(_) => "piece",
            ObjectKind::Bundle(_) => "bundle",
            ObjectKind::Minisig(_) => "minisig",
            ObjectKind::Chunks(_) => "chunks",
            ObjectKind::Root(_) => "root",
            ObjectKind::Note => "note",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    #[test]
    fn publisher_id_round_trips_and_matches_the_key_hex() {
        let key = SecretKey::from_seed(&[7u8; 32]).public().clone();
        let id = PublisherId::of(&key);
        assert_eq!(id.to_string(), key.hex());
        assert_eq!(key.hex().parse::<PublisherId>().unwrap(), id);
        assert!(key.hex().to_uppercase().parse::<PublisherId>().is_err());
        assert!(key.hex()[1..].parse::<PublisherId>().is_err());
    }
}
