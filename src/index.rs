//! The publisher's signed, hash-chained index: a small signed head plus immutable pieces.
//!
//! Owns the index formats (see docs/PROTOCOL.md), their verification, and the client-side
//! history checks (rollback, equivocation, freshness) that sync, mirrors and readers reuse. An
//! [`Index`] exists only after its head's signature and every piece's size and sha256 checked
//! out. This module never writes into a publisher's repo (that is [`crate::repo`]) and never
//! parses a byte of a downloaded object before its size and hash matched.
//!
//! - `layout`: where files live under `qasid/v1/`.
//! - `head`: the signed head and its envelope.
//! - `log`: entries, canonical pieces, the merge rule and the current listing.
//! - `chunks`: chunk lists of large bundles, checked chunk by chunk as they arrive.
//! - `fetch`: size-capped, hash-checked receiving of pieces and bundles.
//! - `tracker`: the client's stored history and the rules for accepting a new head.
//! - `source`: reading an index from a folder or over HTTP into a tracker.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::keys::KeyId;
use crate::ErrorClass;

pub(crate) mod atomic;
pub mod chunks;
mod fetch;
mod head;
pub mod layout;
mod log;
mod source;
mod tracker;
mod wire;

pub use fetch::{
    check_bytes, open_regular, read_capped, receive_bytes, receive_file, FetchError, FileReceiver,
    MemoryReceiver, VerifiedObject,
};
pub use head::{Freshness, Head, HeadFields, LogRef, MirrorUrl, SignedHead};
pub(crate) use log::encode_piece_refs;
pub use log::{
    current_positions, decode_piece, encode_piece, merged_counts, validate_piece, ArticleFields,
    ArticleVersion, EncodedPiece, Entry, ObjectRef, PieceRef,
};
pub use source::{
    fetch_bundle_http, html_page, http_client, receive_bundle, redirect_policy,
    reqwest_error_chain, root_from_dir, root_from_http, update_from_dir, update_from_http,
    walk_roots_dir, walk_roots_http, BundleFetchError, FetchedBundle, RedirectRefused, Transfer,
};
pub use tracker::{
    default_state_dir, Conflict, LazyTracker, Offer, Outcome, PendingIndex, Tracker, Update,
};

/// Why an index (or a part of one) was refused, or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A document is bigger than its cap, checked before parsing.
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge { what: &'static str, limit: u64 },
    /// A document does not have the required structure.
    #[error("{what} is malformed: {reason}")]
    Malformed { what: &'static str, reason: String },
    /// A document is of a format (version) this qasid does not read.
    #[error("{what} has format {found:?}, expected {expected:?}")]
    UnknownFormat {
        what: &'static str,
        found: String,
        expected: &'static str,
    },
    /// The head's signature does not verify with the trusted publisher key.
    #[error("index signature does not verify with publisher {0} (tampered or forged)")]
    BadSignature(KeyId),
    /// The index is another publisher's.
    #[error("index is signed for publisher {found}, not the trusted publisher {expected}")]
    WrongPublisher { expected: KeyId, found: String },
    /// A head older than one already accepted: someone replays an old index to hide news.
    #[error(
        "rollback refused: offered index sequence {offered} is older than sequence {held} \
         already seen from this publisher"
    )]
    Rollback { held: u64, offered: u64 },
    /// The publisher's key signed two histories that cannot both be true.
    #[error(
        "EQUIVOCATION: publisher {publisher} signed two conflicting indexes ({conflict}). \
         Its key may be stolen or the publisher coerced. {}",
        evidence_note(.evidence)
    )]
    Equivocation {
        publisher: KeyId,
        conflict: Conflict,
        /// The folder holding both signed documents, if saving them worked.
        evidence: Option<PathBuf>,
    },
    /// An index piece's bytes are not the ones the head names.
    #[error("index piece {piece}")]
    Piece {
        piece: crate::content_id::ContentId,
        #[source]
        source: FetchError,
    },
    /// The head envelope could not be read within its cap.
    #[error("index.json")]
    Head(#[source] FetchError),
    /// The tracker's stored state does not verify any more (disk damage or tampering).
    #[error(
        "stored index state in {} is unusable (move it away to start over, which forgets \
         the rollback protection it gave)",
        path.display()
    )]
    StateCorrupt {
        path: PathBuf,
        #[source]
        source: Box<IndexError>,
    },
    /// A local file could not be read or written.
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A network request failed or the server answered with an error status.
    #[error("{url}: {reason}")]
    Network { url: String, reason: String },
    /// What came back is not a qasid document at all (a web page where an index was
    /// expected): a wrong URL or a captive portal, not a mirror lying.
    #[error("not a qasid mirror ({0})")]
    NotAMirror(&'static str),
}

impl IndexError {
    pub fn class(&self) -> ErrorClass {
        match self {
            IndexError::Io { .. }
            | IndexError::Network { .. }
            | IndexError::NotAMirror(_)
            | IndexError::StateCorrupt { .. } => ErrorClass::Runtime,
            IndexError::Piece { source, .. } | IndexError::Head(source) => source.class(),
            _ => ErrorClass::Verification,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| IndexError::Io { path, source }
    }
}

fn evidence_note(evidence: &Option<PathBuf>) -> String {
    match evidence {
        Some(dir) => format!(
            "Both signed indexes are saved as evidence in {}",
            dir.display()
        ),
        None => "The evidence was not saved (no state folder, or the evidence folder is full \
                 or unwritable: see the log)."
            .to_owned(),
    }
}

/// A verified index: a signed head and every entry of its log, each piece checked.
#[derive(Debug, Clone)]
pub struct Index {
    signed: SignedHead,
    entries: Vec<Entry>,
}

impl Index {
    pub fn signed(&self) -> &SignedHead {
        &self.signed
    }

    pub fn head(&self) -> &Head {
        self.signed.head()
    }

    /// The whole log, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The current listing: each listed name's latest version with its log position, by name.
    pub fn current(&self) -> Vec<(usize, &ArticleVersion)> {
        current_positions(&self.entries)
            .into_values()
            .filter_map(|i| match &self.entries[i] {
                Entry::Add(article) => Some((i, article)),
                Entry::Retract { .. } => None,
            })
            .collect()
    }

    pub fn freshness(&self, now: SystemTime) -> Freshness {
        self.head().freshness(now)
    }
}
