//! Why a sync step failed: one typed variant per failure mode, each with the upstream it is
//! about (when there is one), its class (runtime or verification) and a fixed metric label.
//!
//! Owns the mapping from lower-level errors (network, index, fetch, bundle, store) to what an
//! operator needs: which upstream, what went wrong, whether the upstream lied or just failed.
//! It never decides what to do about a failure (that is the round's job).

use std::path::PathBuf;

use crate::bundle::BundleError;
use crate::content_id::ContentId;
use crate::index::chunks::ChunkError;
use crate::index::{FetchError, IndexError};
use crate::store::StoreError;
use crate::ErrorClass;

/// How a request to an upstream failed below HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkKind {
    /// No TCP (or proxy, or TLS) connection within the connect timeout, or refused.
    Connect,
    /// Connected, but no byte arrived within the read timeout (a tarpit), or the request's
    /// overall deadline passed (a drip feed).
    Timeout,
    /// The connection broke (reset, closed early) or the reply was not HTTP.
    Broken,
    /// The upstream redirected to another host (or downgraded https): refused, so a hostile
    /// upstream cannot make the mirror send requests where it likes.
    Redirect,
}

impl NetworkKind {
    fn label(self) -> &'static str {
        match self {
            NetworkKind::Connect => "connect",
            NetworkKind::Timeout => "timeout",
            NetworkKind::Broken => "network",
            NetworkKind::Redirect => "redirect",
        }
    }
}

/// A failed sync step.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The upstream could not be reached or the transfer broke.
    #[error("{url}: {path}: {reason}")]
    Network {
        url: String,
        path: String,
        kind: NetworkKind,
        reason: String,
    },
    /// The upstream answered with an error status.
    #[error("{url}: {path}: HTTP {status}")]
    Status {
        url: String,
        path: String,
        status: u16,
    },
    /// The upstream's `index.json` (or a piece of it) failed the index checks: bad signature,
    /// another publisher's key, malformed, equivocation.
    #[error("{url}: index refused: {source}")]
    Index {
        url: String,
        #[source]
        source: Box<IndexError>,
    },
    /// The upstream serves an authentic index older than the one this mirror holds (a replay,
    /// or a mirror that is behind). Never installed.
    #[error("{url}: older index: it serves sequence {offered}, this mirror holds {held}")]
    OlderIndex {
        url: String,
        held: u64,
        offered: u64,
    },
    /// The upstream's index is newer but expired while the held one is still fresh (a freeze
    /// attack, or a publisher that stopped refreshing). The fresher one is kept.
    #[error(
        "{url}: expired index: sequence {offered} has expired and the held index is still fresh"
    )]
    ExpiredIndex { url: String, offered: u64 },
    /// The bytes of a piece or bundle are not the object the signed index names (size cap,
    /// truncation, sha256).
    #[error("{url}: {what} {sha256}: {source}")]
    Object {
        url: String,
        what: &'static str,
        sha256: ContentId,
        #[source]
        source: Box<FetchError>,
    },
    /// A chunk of a segmented download failed its hash in the signed chunk list
    /// ([`ChunkError::ChunkMismatch`] names the chunk and its byte offset), or the upstream's
    /// chunk list is not the list of the bundle the entry names.
    #[error("{url}: bundle {sha256}: {source}")]
    Chunk {
        url: String,
        sha256: ContentId,
        #[source]
        source: Box<ChunkError>,
    },
    /// A byte-range answer the signed size rules out (more bytes than asked, a copy of
    /// another size).
    #[error("{url}: bundle {sha256}: {reason}")]
    Range {
        url: String,
        sha256: ContentId,
        reason: String,
    },
    /// The bundle's bytes match the index but the bundle itself does not verify.
    #[error("{url}: bundle {sha256} does not verify: {source}")]
    Bundle {
        url: String,
        sha256: ContentId,
        #[source]
        source: Box<BundleError>,
    },
    /// A bundle's detached `.minisig` was refused.
    #[error("{url}: signature file of bundle {sha256} refused: {reason}")]
    Minisig {
        url: String,
        sha256: ContentId,
        reason: String,
    },
    /// The index the upstream served lists a bundle as another article or version than the
    /// bundle (authentic, signed by the publisher) holds.
    #[error("{url}: index refused: {source}")]
    Listing {
        url: String,
        #[source]
        source: Box<StoreError>,
    },
    /// A root of the publisher's chain the upstream served was refused (forged, rollback,
    /// equivocation: the store keeps evidence of the last).
    #[error("{url}: root refused: {source}")]
    Root {
        url: String,
        #[source]
        source: Box<StoreError>,
    },
    /// The upstream's mirror note was refused (not signed by the publisher's note key,
    /// malformed, too large).
    #[error("{url}: note refused: {source}")]
    Note {
        url: String,
        #[source]
        source: Box<StoreError>,
    },
    /// The upstream's index lists an object that neither it nor any other upstream serves.
    #[error("{url}: its index lists {what} {sha256}, which no upstream serves")]
    MissingObject {
        url: String,
        what: &'static str,
        sha256: ContentId,
    },
    /// The local store failed (disk full, permissions).
    #[error("store: {0}")]
    Store(#[source] Box<StoreError>),
    /// The local index state of a publisher could not be read or written.
    #[error("sync index state: {0}")]
    Tracker(#[source] Box<IndexError>),
    /// The sync state file or lock could not be used.
    #[error("{}: {source}", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another sync (a `qasid mirror` or `qasid sync`) already works on this store.
    #[error(
        "another qasid sync is already running on this store (lock {})",
        path.display()
    )]
    Locked { path: PathBuf },
    /// An upstream URL or proxy that cannot be used.
    #[error("upstream {url}: {reason}")]
    BadUpstream { url: String, reason: String },
    /// The sync was asked to stop.
    #[error("cancelled")]
    Cancelled,
}

impl SyncError {
    /// Exit-code class: did someone lie to us (verification) or did something just fail?
    pub fn class(&self) -> ErrorClass {
        match self {
            SyncError::Network { .. }
            | SyncError::Status { .. }
            | SyncError::Store(_)
            | SyncError::Tracker(_)
            | SyncError::State { .. }
            | SyncError::Locked { .. }
            | SyncError::Cancelled => ErrorClass::Runtime,
            SyncError::BadUpstream { .. } => ErrorClass::Usage,
            SyncError::Index { source, .. } => source.class(),
            SyncError::Object { source, .. } => source.class(),
            SyncError::Bundle { source, .. } => source.class(),
            SyncError::Root { source, .. } => source.class(),
            SyncError::Note { source, .. } => source.class(),
            SyncError::OlderIndex { .. }
            | SyncError::ExpiredIndex { .. }
            | SyncError::Minisig { .. }
            | SyncError::Chunk { .. }
            | SyncError::Range { .. }
            | SyncError::Listing { .. }
            | SyncError::MissingObject { .. } => ErrorClass::Verification,
        }
    }

    /// A fixed label for metrics and JSON (never built from upstream data).
    pub fn reason(&self) -> &'static str {
        match self {
            SyncError::Network { kind, .. } => kind.label(),
            SyncError::Status { .. } => "http_status",
            SyncError::Index { source, .. } => match &**source {
                IndexError::BadSignature(_) => "bad_signature",
                IndexError::WrongPublisher { .. } => "wrong_publisher",
                IndexError::Equivocation { .. } => "equivocation",
                IndexError::NotAMirror(_) => "not_a_mirror",
                IndexError::Piece {
                    source: FetchError::HashMismatch { .. },
                    ..
                } => "hash_mismatch",
                IndexError::Piece {
                    source: FetchError::TooLarge { .. } | FetchError::Truncated { .. },
                    ..
                }
                | IndexError::TooLarge { .. }
                | IndexError::Head(FetchError::TooLarge { .. }) => "size_mismatch",
                _ => "index",
            },
            SyncError::OlderIndex { .. } => "older_index",
            SyncError::ExpiredIndex { .. } => "stale_index",
            SyncError::Object { source, .. } => match &**source {
                FetchError::HashMismatch { .. } => "hash_mismatch",
                FetchError::TooLarge { .. } | FetchError::Truncated { .. } => "size_mismatch",
                FetchError::Read(_) => "network",
                FetchError::Io { .. } => "store",
            },
            SyncError::Chunk { source, .. } => match &**source {
                ChunkError::ChunkMismatch { .. } => "bad_chunk",
                _ => "chunk_list",
            },
            SyncError::Range { .. } => "size_mismatch",
            SyncError::Bundle { .. } => "bundle",
            SyncError::Minisig { .. } => "minisig",
            SyncError::Root { source, .. } => match &**source {
                StoreError::Root(crate::roots::RootError::Equivocation { .. }) => {
                    "root_equivocation"
                }
                _ => "root",
            },
            SyncError::Note { .. } => "note",
            SyncError::Listing { .. } => "listed_as_other",
            SyncError::MissingObject { .. } => "missing_object",
            SyncError::Store(_) | SyncError::Tracker(_) | SyncError::State { .. } => "store",
            SyncError::Locked { .. } => "locked",
            SyncError::BadUpstream { .. } => "bad_upstream",
            SyncError::Cancelled => "cancelled",
        }
    }

    /// The upstream this failure is about, if any.
    pub fn upstream(&self) -> Option<&str> {
        match self {
            SyncError::Network { url, .. }
            | SyncError::Status { url, .. }
            | SyncError::Index { url, .. }
            | SyncError::OlderIndex { url, .. }
            | SyncError::ExpiredIndex { url, .. }
            | SyncError::Object { url, .. }
            | SyncError::Bundle { url, .. }
            | SyncError::Chunk { url, .. }
            | SyncError::Range { url, .. }
            | SyncError::Minisig { url, .. }
            | SyncError::Listing { url, .. }
            | SyncError::Root { url, .. }
            | SyncError::Note { url, .. }
            | SyncError::MissingObject { url, .. }
            | SyncError::BadUpstream { url, .. } => Some(url),
            _ => None,
        }
    }

    /// A store failure during a round: a verification refusal is the upstream's fault, anything
    /// else is local.
    pub(crate) fn from_store(url: &str, sha256: ContentId, e: StoreError) -> Self {
        match e {
            StoreError::Object(source) if source.class() == ErrorClass::Verification => {
                SyncError::Object {
                    url: url.to_owned(),
                    what: "bundle",
                    sha256,
                    source: Box::new(source),
                }
            }
            StoreError::Bundle { source, .. } if source.class() == ErrorClass::Verification => {
                SyncError::Bundle {
                    url: url.to_owned(),
                    sha256,
                    source: Box::new(source),
                }
            }
            e @ StoreError::ListedAsOther { .. } => SyncError::Listing {
                url: url.to_owned(),
                source: Box::new(e),
            },
            StoreError::Minisig { reason, .. } => SyncError::Minisig {
                url: url.to_owned(),
                sha256,
                reason,
            },
            other => SyncError::store(other),
        }
    }

    /// A local store failure.
    pub(crate) fn store(e: StoreError) -> Self {
        SyncError::Store(Box::new(e))
    }

    /// A local failure of the sync's index state.
    pub(crate) fn tracker(e: IndexError) -> Self {
        SyncError::Tracker(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lies_are_verification_failures_and_outages_are_runtime() {
        let url = "http://u.example/".to_owned();
        let id = ContentId::of_bytes(b"x");
        let lie = SyncError::Object {
            url: url.clone(),
            what: "bundle",
            sha256: id,
            source: Box::new(FetchError::HashMismatch {
                expected: id,
                actual: ContentId::of_bytes(b"y"),
            }),
        };
        assert_eq!(lie.class(), ErrorClass::Verification);
        assert_eq!(lie.reason(), "hash_mismatch");
        let outage = SyncError::Network {
            url: url.clone(),
            path: "index.json".into(),
            kind: NetworkKind::Timeout,
            reason: "no answer".into(),
        };
        assert_eq!(outage.class(), ErrorClass::Runtime);
        assert_eq!(outage.reason(), "timeout");
        assert_eq!(outage.upstream(), Some(url.as_str()));
        let older = SyncError::OlderIndex {
            url,
            held: 3,
            offered: 2,
        };
        assert_eq!(older.class(), ErrorClass::Verification);
        assert_eq!(older.reason(), "older_index");
    }
}
