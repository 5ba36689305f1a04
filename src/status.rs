//! `qasid status`: what a mirror's store holds and how its sync is doing, read from disk.
//!
//! Owns the operator's view: per publisher folder, the installed index (sequence, issued,
//! expiry: verified against the key the folder is named after) and object counts and bytes; per upstream, what the sync last recorded
//! (`.state/sync/state.json`); the recent refusals (`.state/refusals.json`); and whether a
//! mirror or sync holds the store now. It only reads: it never creates, cleans or locks the
//! store (a running mirror is not disturbed), and a missing or unreadable part is reported,
//! not fatal. `bucket`: the same view of a bucket store (`--store s3://…`).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::index::layout;
use crate::index::SignedHead;
use crate::keys::PublicKey;
use crate::limits::IndexLimits;
use crate::roots::{Chain, ChainStorage};
use crate::store::refusals::{self, Refusal, REFUSALS_FILE};
use crate::store::{PublisherId, LOCK_FILE};
use crate::sync::{upstream_health, UpstreamHealth};

mod bucket;

pub use bucket::{read_bucket, BucketStatus, HeadStatus, NoteStatus};

/// The whole report (its JSON is `qasid status --json`'s, docs/JSON.md).
#[derive(Debug, Serialize)]
pub struct StoreStatus {
    /// The store folder, absolute.
    pub store: PathBuf,
    /// A `qasid mirror` or `qasid sync` holds the store's lock now.
    pub in_use: bool,
    pub publishers: Vec<PublisherStatus>,
    pub upstreams: Vec<UpstreamStatus>,
    /// Oldest first.
    pub refusals: Vec<Refusal>,
}

impl StoreStatus {
    /// The first publisher whose index (or roots) fails verification, as one line naming it
    /// and what to do; `None` when every index there verifies.
    pub fn unverified(&self) -> Option<String> {
        let p = self.publishers.iter().find(|p| p.unverified)?;
        Some(format!(
            "{}: publisher {}: {} (changed or damaged outside qasid): push or sync the \
             publisher's repo to this store again",
            self.store.display(),
            p.publisher.key_id,
            p.error.as_deref().unwrap_or("does not verify")
        ))
    }
}

/// A publisher as every JSON document names it: key id and one-line base64 key.
#[derive(Debug, Serialize)]
pub struct PublisherName {
    pub key_id: String,
    pub key: String,
}

/// One publisher folder.
#[derive(Debug, Serialize)]
pub struct PublisherStatus {
    pub publisher: PublisherName,
    /// The folder name (the raw key as 64 hex digits).
    pub folder: String,
    /// The installed index, if there is one and it verifies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexStatus>,
    /// Why the index could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `error` is a verification failure (the index, or the roots it is checked against),
    /// not a file that could not be read.
    #[serde(skip)]
    pub unverified: bool,
    pub bundles: u64,
    pub minisigs: u64,
    pub pieces: u64,
    /// Bytes of every file in the folder.
    pub bytes: u64,
    /// Bucket stores: the newest head copies under `heads/` (docs/PROTOCOL.md §14), oldest
    /// first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heads: Option<Vec<HeadStatus>>,
    /// Bucket stores: the mirror note, if the bucket holds one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<NoteStatus>,
}

impl PublisherStatus {
    /// A publisher with nothing counted or read yet.
    fn new(key: &PublicKey) -> Self {
        Self {
            publisher: PublisherName {
                key_id: key.id().to_string(),
                key: key.to_base64(),
            },
            folder: key.hex(),
            index: None,
            error: None,
            unverified: false,
            bundles: 0,
            minisigs: 0,
            pieces: 0,
            bytes: 0,
            heads: None,
            note: None,
        }
    }

    /// Records that the index (or the roots it is checked against) failed verification.
    fn refused(&mut self, why: String) {
        self.error = Some(why);
        self.unverified = true;
    }
}

/// The installed index of a publisher.
#[derive(Debug, Serialize)]
pub struct IndexStatus {
    pub sequence: u64,
    /// RFC 3339, UTC.
    pub issued: String,
    pub expires: String,
    pub expired: bool,
    /// Mirrors the signed index lists.
    pub mirrors: Vec<String>,
}

/// One upstream, as the sync last recorded it.
#[derive(Debug, Serialize)]
pub struct UpstreamStatus {
    pub url: String,
    /// `ok`, `failing` or `backing off`.
    pub state: &'static str,
    /// RFC 3339, UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<String>,
    /// Failed rounds since the last success.
    pub failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Why there is no status at all.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(
        "{}: not a qasid store (no qasid/v1/publishers folder); give the folder `qasid mirror` \
         or `qasid sync` uses (--store)",
        .0.display()
    )]
    NotAStore(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StatusError {
    pub fn class(&self) -> crate::ErrorClass {
        match self {
            StatusError::NotAStore(_) => crate::ErrorClass::Usage,
            StatusError::Io { .. } => crate::ErrorClass::Runtime,
        }
    }
}

/// Reads the status of the store at `root`. Blocking.
pub fn read(root: &Path) -> Result<StoreStatus, StatusError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| StatusError::Io { path, source }
    };
    let root = std::path::absolute(root).map_err(io(root))?;
    let publishers_dir = layout::on_disk(&root, &format!("{}/publishers", layout::PREFIX));
    if !publishers_dir.is_dir() {
        return Err(StatusError::NotAStore(root));
    }
    // A folder whose name is not a valid key was not made by qasid: not a publisher.
    let mut folders: Vec<(PublisherId, PublicKey)> = std::fs::read_dir(&publishers_dir)
        .map_err(io(&publishers_dir))?
        .flatten()
        .filter_map(|e| {
            let id: PublisherId = e.file_name().to_str()?.parse().ok()?;
            let key = PublicKey::from_raw(id.as_bytes()).ok()?;
            Some((id, key))
        })
        .collect();
    folders.sort_by_key(|(id, _)| *id);
    let now = SystemTime::now();
    let publishers = folders
        .iter()
        .map(|(id, key)| publisher(&publishers_dir.join(id.to_string()), key, now))
        .collect();
    let upstreams = upstream_health(&root)
        .into_iter()
        .map(|(url, h)| upstream(url, &h, now))
        .collect();
    let state = root.join(".state");
    Ok(StoreStatus {
        in_use: in_use(&state.join(LOCK_FILE)),
        refusals: refusals::read(&state.join(REFUSALS_FILE)),
        store: root,
        publishers,
        upstreams,
    })
}

/// Whether another process holds the store's lock: a shared lock is tried and released at
/// once, so a mirror starting at the same instant is not kept out for longer than that.
fn in_use(lock: &Path) -> bool {
    let Ok(file) = std::fs::File::open(lock) else {
        return false;
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}

fn publisher(dir: &Path, key: &PublicKey, now: SystemTime) -> PublisherStatus {
    let mut status = PublisherStatus::new(key);
    for (sub, count) in [("bundles", true), ("pieces", true), ("", false)] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            status.bytes += meta.len();
            if !count {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".zip") {
                status.bundles += 1;
            } else if name.ends_with(".zip.minisig") {
                status.minisigs += 1;
            } else if sub == "pieces" && name.ends_with(".json") {
                status.pieces += 1;
            }
        }
    }
    match installed_index(dir, key, now) {
        Ok(None) => {}
        Ok(Some(head)) => status.index = Some(index_status(&head, now)),
        Err(IndexProblem::Unreadable(e)) => status.error = Some(e),
        Err(IndexProblem::Unverified(e)) => status.refused(e),
    }
    status
}

/// Why a folder's index is not shown.
enum IndexProblem {
    Unreadable(String),
    Unverified(String),
}

fn index_status(head: &SignedHead, now: SystemTime) -> IndexStatus {
    let h = head.head();
    IndexStatus {
        sequence: h.sequence(),
        issued: humantime::format_rfc3339_seconds(h.issued()).to_string(),
        expires: humantime::format_rfc3339_seconds(h.expires()).to_string(),
        expired: h.expires() <= now,
        mirrors: h.mirrors().iter().map(|m| m.as_str().to_owned()).collect(),
    }
}

/// The folder's `index.json`, verified against whom the publisher's roots in the folder
/// (re-verified from the key the folder is named after) delegate now, as the store does.
fn installed_index(
    dir: &Path,
    key: &PublicKey,
    now: SystemTime,
) -> Result<Option<SignedHead>, IndexProblem> {
    let limits = IndexLimits::default();
    let index_path = dir.join("index.json");
    let unreadable = |e: &dyn std::fmt::Display| {
        IndexProblem::Unreadable(format!("{}: {e}", index_path.display()))
    };
    let envelope = match std::fs::File::open(&index_path) {
        Ok(f) => crate::index::read_capped(f, limits.max_head_bytes).map_err(|e| unreadable(&e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(&e)),
    };
    // Only read: the temp and evidence folders are for writes, which status never makes.
    let storage = ChainStorage {
        dir: dir.join("roots"),
        tmp: dir.join("roots"),
        evidence: dir.join("roots"),
    };
    let authority = Chain::open(key, Some(storage))
        .map_err(|e| IndexProblem::Unverified(format!("the roots do not verify: {e}")))?
        .authority(now);
    SignedHead::verify(&envelope, &authority, &limits)
        .map(Some)
        .map_err(|e| IndexProblem::Unverified(format!("index.json does not verify: {e}")))
}

fn upstream(url: String, h: &UpstreamHealth, now: SystemTime) -> UpstreamStatus {
    let time = |secs: Option<u64>| {
        secs.map(|s| {
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
            humantime::format_rfc3339_seconds(t).to_string()
        })
    };
    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let state = match (h.failures, h.backoff_until) {
        (0, _) => "ok",
        (_, Some(until)) if until > now_secs => "backing off",
        _ => "failing",
    };
    UpstreamStatus {
        url,
        state,
        last_success: time(h.last_success),
        last_attempt: time(h.last_attempt),
        failures: h.failures,
        last_error: h.last_error.clone(),
    }
}
