//! Putting a publisher's verified state into a bucket: the write rules that keep a bucket a
//! valid mirror on any S3-compatible store with read-after-write and list-after-write
//! consistency, without conditional writes (Garage ignores `If-None-Match`/`If-Match` on PUT).
//!
//! Invariants:
//! - Every object is verified locally (size and sha256 against the verified index; bundles
//!   against the publisher's keys and the entry that lists them; `.minisig` against its bundle)
//!   from the very bytes that are then sent, and goes to its final key in one PUT (or one
//!   multipart upload), which S3 makes visible whole or not at all: nothing half-written is
//!   ever visible.
//! - Content-addressed keys always hold the same bytes, so writing one twice is harmless. An
//!   object is skipped only when it is known to be right: listed by the bucket's verified
//!   `index.json` (which is only ever written after its objects, [`Mode::Delta`]), or, in
//!   [`Mode::Full`], present with our size and the ETag of our bytes (MD5, or the multipart
//!   form for our part size). Anything else under our key (foreign, corrupt, truncated) is
//!   replaced.
//! - `index.json` goes last and never rolls back once writers finish: see [`publish_head`].
//! - The mirror note goes after `index.json` (its mirrors are worth handing out only once the
//!   index they serve is in), verified first like every signed object, and never over a newer
//!   note the bucket holds: see [`publish_note`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use md5::{Digest as _, Md5};
use tokio::sync::Semaphore;

use super::{Bucket, BucketError, ObjectAttrs, ObjectInfo};
use crate::bundle::{self, BundleError};
use crate::config::Keep;
use crate::content_id::ContentId;
use crate::index::layout::{on_disk, PublisherLayout};
use crate::index::{self, Entry, Index, IndexError, SignedHead};
use crate::keys::PublicKey;
use crate::limits::{BundleLimits, IndexLimits, MAX_NOTE_TEXT_BYTES};
use crate::note::{NoteError, SignedNote, VerifiedNote};
use crate::roots::{Authority, Root};
use crate::store::{required_bundles, Listing, ObjectKind};
use crate::ErrorClass;

/// Head copies kept under `heads/` (the newest ones); older ones are deleted after a write.
/// 8: enough that a writer racing with a few others still finds the newest one listed.
pub const KEPT_HEADS: usize = 8;

/// Rounds of "list `heads/`, promote a newer head" after writing `index.json`. 8: each round
/// needs a writer that wrote a newer head meanwhile; eight writers finishing within one
/// round trip of each other is far past what a mirror sees.
const MAX_PROMOTIONS: usize = 8;

/// How to decide what the bucket already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Trust the bucket's verified `index.json`: what it lists is present (it is written only
    /// after its objects). No listing, no HEAD per object: one new bundle among 10,000 costs a
    /// few requests.
    Delta,
    /// List the publisher's folder and check every object's size and ETag against our bytes;
    /// replace what differs. Finds objects corrupted or deleted behind our back.
    Full,
}

/// What one publisher's state is, locally verified, ready to be put into a bucket.
pub struct Publication {
    pub publisher: PublicKey,
    /// The verified index to publish (head and every entry).
    pub index: Arc<Index>,
    /// Whom to trust for index heads now (the current root's index keys).
    pub authority: Authority,
    /// Whom bundles and `.minisig` files may be signed by (every key the roots delegated).
    pub signers: Authority,
    /// The publisher's verified roots, version 1 first.
    pub roots: Vec<Root>,
    pub keep: Keep,
    /// The folder laid out like the static layout that holds the objects (a repo, or a bucket
    /// store's work folder).
    pub source: PathBuf,
    /// The publisher's mirror note, verified (signature, canonical encoding, unexpired).
    pub note: Option<VerifiedNote>,
}

/// What became of `index.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadOutcome {
    /// Written with this sequence (ours, or a newer one another writer left under `heads/`).
    Written { sequence: u64 },
    /// The bucket already held this index.
    Unchanged,
    /// The bucket holds a newer index than ours; `index.json` was left alone.
    BucketNewer { held: u64 },
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Objects written (index.json and the head copy included).
    pub objects: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Objects that were already right and left alone (counted only where checked).
    pub present: u64,
    pub head: HeadOutcome,
}

/// Why a publish failed. Nothing it wrote is half-written; `index.json` is untouched unless
/// the failure came after it.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Bucket(#[from] BucketError),
    /// A local object is not what the verified index says: nothing of it was uploaded.
    #[error("{}: {reason}; nothing of it was uploaded", path.display())]
    Local { path: PathBuf, reason: String },
    /// A local bundle failed verification.
    #[error("bundle {id} ({}): {source}; nothing of it was uploaded", path.display())]
    Bundle {
        id: ContentId,
        path: PathBuf,
        #[source]
        source: Box<BundleError>,
    },
    /// The bundle is authentic but holds another article than the index lists it as.
    #[error("bundle {id} holds {holds}, but the index lists it as {listed}")]
    ListedAsOther {
        id: ContentId,
        holds: Listing,
        listed: Listing,
    },
    /// The bucket's `index.json` is authentic and contradicts ours (same sequence, other
    /// content, or another history): the publisher signed two histories.
    #[error(
        "{location}: its index.json (sequence {held}) and ours (sequence {offered}) are \
         different histories signed by the publisher: nothing written; see \
         docs/PROTOCOL.md (equivocation)"
    )]
    Conflict {
        location: String,
        held: u64,
        offered: u64,
    },
    #[error("{0}")]
    Index(#[source] IndexError),
    /// The repo's mirror note does not verify: nothing was uploaded.
    #[error("{}: {source}; nothing was uploaded", path.display())]
    Note {
        path: PathBuf,
        #[source]
        source: NoteError,
    },
}

impl UploadError {
    pub fn class(&self) -> ErrorClass {
        match self {
            UploadError::Bucket(e) => e.class(),
            UploadError::Local { .. } | UploadError::Index(_) => ErrorClass::Runtime,
            UploadError::Bundle { source, .. } => source.class(),
            UploadError::Note { source, .. } => source.class(),
            UploadError::ListedAsOther { .. } | UploadError::Conflict { .. } => {
                ErrorClass::Verification
            }
        }
    }
}

/// Cache rules for objects served straight from a bucket (the same as `qasid mirror`'s).
pub fn attrs(kind: &ObjectKind) -> ObjectAttrs {
    const IMMUTABLE: &str = "public, max-age=31536000, immutable";
    const SHORT: &str = "public, max-age=60";
    const KEY: &str = "public, max-age=86400";
    let (content_type, cache_control) = match kind {
        ObjectKind::Index => ("application/json", SHORT),
        ObjectKind::PublisherPub => ("text/plain; charset=utf-8", KEY),
        ObjectKind::Piece(_) | ObjectKind::Root(_) => ("application/json", IMMUTABLE),
        ObjectKind::Bundle(_) => ("application/zip", IMMUTABLE),
        ObjectKind::Minisig(_) => ("text/plain; charset=utf-8", IMMUTABLE),
        ObjectKind::Chunks(_) => ("application/octet-stream", IMMUTABLE),
        ObjectKind::Note => ("text/plain; charset=utf-8", SHORT),
    };
    ObjectAttrs {
        content_type,
        cache_control,
    }
}

/// One object to put: where it comes from and what it must be.
#[derive(Debug, Clone)]
struct Wanted {
    kind: ObjectKind,
    relative: String,
    /// Local file, or the bytes themselves (roots and `publisher.pub`, made from verified
    /// values).
    from: From,
    /// The size and sha256 the index promises (pieces and bundles).
    promised: Option<index::ObjectRef>,
    /// What the index lists a bundle as.
    listed: Option<Listing>,
}

#[derive(Debug, Clone)]
enum From {
    File(PathBuf),
    Bytes(Bytes),
}

/// The key of `heads/` copies: zero-padded sequence first, so the listing's order is the
/// sequence order.
fn head_copy(layout: &PublisherLayout, sequence: u64, id: &ContentId) -> String {
    format!("{}/heads/{sequence:020}-{id}.json", dir_of(layout))
}

fn dir_of(layout: &PublisherLayout) -> String {
    let index = layout.index();
    index
        .strip_suffix("/index.json")
        .unwrap_or(&index)
        .to_owned()
}

/// The sequence a `heads/` key names, if it is one of ours.
pub(crate) fn head_copy_sequence(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    let (seq, rest) = name.split_once('-')?;
    (seq.len() == 20 && rest.len() == 64 + 5 && rest.ends_with(".json"))
        .then(|| seq.parse().ok())
        .flatten()
}

/// The bucket's `index.json`, verified against `authority`; `None` when absent, and when
/// present but not an authentic index of this publisher (foreign or corrupt: replaced).
async fn bucket_head(
    bucket: &Bucket,
    relative: &str,
    authority: &Authority,
    limits: &IndexLimits,
) -> Result<Option<SignedHead>, BucketError> {
    let Some(bytes) = bucket
        .get_bytes(relative, limits.max_head_bytes)
        .await
        .or_else(|e| match e {
            // Larger than any index: foreign, replaced.
            BucketError::TooLarge { .. } => Ok(None),
            e => Err(e),
        })?
    else {
        return Ok(None);
    };
    match SignedHead::verify(&bytes, authority, limits) {
        Ok(head) => Ok(Some(head)),
        Err(e) => {
            tracing::warn!(
                "{}: {relative} is not an authentic index of this publisher ({e}): it will be \
                 replaced",
                bucket.url()
            );
            Ok(None)
        }
    }
}

/// Every piece a head lists (the log's pieces and the newest batch).
fn pieces_of(head: &index::Head) -> Vec<index::PieceRef> {
    let log = head.log();
    let mut pieces = log.pieces().to_vec();
    if !pieces.contains(log.batch()) {
        pieces.push(*log.batch());
    }
    pieces
}

/// How `held` (the bucket's head) relates to `ours`.
enum Judged {
    /// Ours extends it: write.
    Older,
    Same,
    Newer(u64),
}

/// The history rules against what the bucket holds: a newer bucket index is left alone; an
/// older one must be a prefix of ours (its pieces are the canonical encoding of our first
/// entries, so this needs no download), else the publisher signed two histories.
fn judge(
    location: &str,
    held: &SignedHead,
    ours: &Index,
    publisher: &PublicKey,
) -> Result<Judged, UploadError> {
    let (h, o) = (held.head().sequence(), ours.head().sequence());
    let conflict = || UploadError::Conflict {
        location: location.to_owned(),
        held: h,
        offered: o,
    };
    if h > o {
        return Ok(Judged::Newer(h));
    }
    if h == o {
        return if held.head() == ours.head() {
            Ok(Judged::Same)
        } else {
            Err(conflict())
        };
    }
    if o == h + 1 && ours.head().previous() != Some(held.id()) {
        return Err(conflict());
    }
    let entries = ours.entries();
    for piece in pieces_of(held.head()) {
        let (first, end) = (piece.first as usize, piece.end() as usize);
        if end > entries.len() || first > end {
            return Err(conflict());
        }
        let bytes = index::encode_piece(publisher, piece.first, &entries[first..end]);
        if ContentId::of_bytes(&bytes) != piece.sha256 || bytes.len() as u64 != piece.size {
            return Err(conflict());
        }
    }
    Ok(Judged::Older)
}

/// The bundles (sha256) that a store with `keep` holds for an index whose entries are the
/// first `n` of `entries`.
fn held_bundles(entries: &[Entry], n: usize, keep: Keep) -> HashSet<ContentId> {
    let prefix = &entries[..n.min(entries.len())];
    match keep {
        Keep::All => prefix
            .iter()
            .filter_map(|e| match e {
                Entry::Add(a) => Some(a.bundle().sha256),
                Entry::Retract { .. } => None,
            })
            .collect(),
        Keep::Current => {
            let mut current: HashMap<&str, ContentId> = HashMap::new();
            for e in prefix {
                match e {
                    Entry::Add(a) => {
                        current.insert(a.name(), a.bundle().sha256);
                    }
                    Entry::Retract { name } => {
                        current.remove(name.as_str());
                    }
                }
            }
            current.into_values().collect()
        }
    }
}

/// The chunk list each large bundle's entry names (docs/PROTOCOL.md section 13), by bundle.
fn chunk_lists(entries: &[Entry]) -> HashMap<ContentId, index::ObjectRef> {
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Add(a) => Some((a.bundle().sha256, a.chunks()?)),
            Entry::Retract { .. } => None,
        })
        .collect()
}

/// Everything the publication needs in the bucket, index.json aside.
fn wanted(p: &Publication) -> Vec<Wanted> {
    let layout = PublisherLayout::new(&p.publisher);
    let mut out = Vec::new();
    let chunk_lists = chunk_lists(p.index.entries());
    let listings: HashMap<ContentId, Listing> = p
        .index
        .entries()
        .iter()
        .filter_map(|e| match e {
            Entry::Add(a) => Some((a.bundle().sha256, Listing::of_entry(a))),
            Entry::Retract { .. } => None,
        })
        .collect();
    out.push(Wanted {
        kind: ObjectKind::PublisherPub,
        relative: layout.publisher_pub(),
        from: From::Bytes(Bytes::from(p.publisher.to_file_text())),
        promised: None,
        listed: None,
    });
    for root in &p.roots {
        out.push(Wanted {
            kind: ObjectKind::Root(root.version()),
            relative: layout.root(root.version()),
            from: From::Bytes(Bytes::from(root.to_bytes())),
            promised: None,
            listed: None,
        });
    }
    for piece in pieces_of(p.index.head()) {
        let relative = layout.piece(&piece.sha256);
        out.push(Wanted {
            kind: ObjectKind::Piece(piece.sha256),
            from: From::File(on_disk(&p.source, &relative)),
            relative,
            promised: Some(piece.object()),
            listed: None,
        });
    }
    for b in required_bundles(&p.index, p.keep) {
        let relative = layout.bundle(&b.sha256);
        out.push(Wanted {
            kind: ObjectKind::Bundle(b.sha256),
            from: From::File(on_disk(&p.source, &relative)),
            relative,
            promised: Some(b),
            listed: listings.get(&b.sha256).cloned(),
        });
        if let Some(list) = chunk_lists.get(&b.sha256) {
            let relative = layout.chunks(&list.sha256);
            out.push(Wanted {
                kind: ObjectKind::Chunks(list.sha256),
                from: From::File(on_disk(&p.source, &relative)),
                relative,
                promised: Some(*list),
                listed: None,
            });
        }
        let minisig = layout.minisig(&b.sha256);
        let file = on_disk(&p.source, &minisig);
        if file.is_file() {
            out.push(Wanted {
                kind: ObjectKind::Minisig(b.sha256),
                relative: minisig,
                from: From::File(file),
                promised: None,
                listed: None,
            });
        }
    }
    out
}

/// The MD5 ETag S3 gives our bytes: plain for one PUT, `md5(part md5s)-N` for a multipart
/// upload of `part_size` parts (what [`Bucket::put_file`] does above its threshold).
fn expected_etag(bytes: &[u8], threshold: u64, part_size: usize) -> String {
    if bytes.len() as u64 <= threshold {
        return hex::encode(Md5::digest(bytes));
    }
    let mut all = Md5::new();
    let mut parts = 0;
    for chunk in bytes.chunks(part_size) {
        all.update(Md5::digest(chunk));
        parts += 1;
    }
    format!("{}-{parts}", hex::encode(all.finalize()))
}

/// Reads and checks one object locally; returns its bytes (what will be sent).
fn checked_bytes(w: &Wanted, signers: &Authority) -> Result<Bytes, UploadError> {
    let bytes = match &w.from {
        From::Bytes(b) => return Ok(b.clone()),
        From::File(path) => {
            let cap = w
                .promised
                .map_or(crate::store::MAX_MINISIG_BYTES, |o| o.size);
            let file = std::fs::File::open(path).map_err(|e| UploadError::Local {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            index::read_capped(file, cap).map_err(|e| UploadError::Local {
                path: path.clone(),
                reason: e.to_string(),
            })?
        }
    };
    let From::File(path) = &w.from else {
        unreachable!("bytes returned above")
    };
    if let Some(object) = w.promised {
        index::check_bytes(&bytes, object).map_err(|e| UploadError::Local {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    }
    match w.kind {
        ObjectKind::Bundle(id) => {
            let verified = bundle::verify_reader(&bytes[..], signers, &BundleLimits::default())
                .map_err(|source| UploadError::Bundle {
                    id,
                    path: path.clone(),
                    source: Box::new(source),
                })?;
            holds_listed(id, verified.manifest(), w.listed.as_ref())?;
        }
        ObjectKind::Minisig(id) => {
            let zip = path.with_extension("");
            let data = std::fs::File::open(&zip).map_err(|e| UploadError::Local {
                path: zip.clone(),
                reason: e.to_string(),
            })?;
            let text = std::str::from_utf8(&bytes).map_err(|_| UploadError::Local {
                path: path.clone(),
                reason: "not UTF-8".into(),
            })?;
            crate::keys::minisig::verify_file(signers, std::io::BufReader::new(data), text)
                .map_err(|e| UploadError::Local {
                    path: path.clone(),
                    reason: format!("detached signature of bundle {id} refused: {e}"),
                })?;
        }
        _ => {}
    }
    Ok(Bytes::from(bytes))
}

/// Puts `p` into the bucket: the objects it lacks (verified first, in parallel up to
/// [`crate::limits::BucketLimits::max_parallel`]), then `index.json` by [`publish_head`].
pub async fn publish(
    bucket: &Bucket,
    p: &Publication,
    mode: Mode,
) -> Result<Published, UploadError> {
    let layout = PublisherLayout::new(&p.publisher);
    let limits = IndexLimits::default();
    let location = bucket.url().to_string();
    let held = bucket_head(bucket, &layout.index(), &p.authority, &limits).await?;
    let judged = match &held {
        Some(h) => Some(judge(&location, h, &p.index, &p.publisher)?),
        None => None,
    };
    if let Some(Judged::Newer(held)) = judged {
        return Ok(Published {
            objects: 0,
            bytes: 0,
            present: 0,
            head: HeadOutcome::BucketNewer { held },
        });
    }
    let mut todo = wanted(p);
    let mut present = 0u64;
    match mode {
        Mode::Delta => {
            if let Some(h) = &held {
                let n = h.head().log().entries() as usize;
                let bundles = held_bundles(p.index.entries(), n, p.keep);
                let pieces: HashSet<ContentId> =
                    pieces_of(h.head()).iter().map(|p| p.sha256).collect();
                let held_lists: HashSet<ContentId> = chunk_lists(p.index.entries())
                    .into_iter()
                    .filter(|(bundle, _)| bundles.contains(bundle))
                    .map(|(_, list)| list.sha256)
                    .collect();
                let before = todo.len();
                todo.retain(|w| match w.kind {
                    ObjectKind::Bundle(id) | ObjectKind::Minisig(id) => !bundles.contains(&id),
                    ObjectKind::Chunks(id) => !held_lists.contains(&id),
                    ObjectKind::Piece(id) => !pieces.contains(&id),
                    // Put before the first index.json, and made from the key itself.
                    ObjectKind::PublisherPub => false,
                    _ => true,
                });
                // Roots: a handful, asked about one by one (a new root may come without a
                // new index listing anything new).
                let mut keep = Vec::new();
                for w in todo {
                    let info = match w.kind {
                        ObjectKind::Root(_) => bucket.head(&w.relative).await?,
                        _ => None,
                    };
                    match info {
                        Some(info) if right(bucket, &w, &info)? => {}
                        _ => keep.push(w),
                    }
                }
                todo = keep;
                present = (before - todo.len()) as u64;
            }
        }
        Mode::Full => {
            let listed: HashMap<String, ObjectInfo> = bucket
                .list(&format!("{}/", dir_of(&layout)), bucket.limits().max_listed)
                .await?
                .into_iter()
                .map(|o| (o.key.clone(), o))
                .collect();
            let mut keep = Vec::new();
            for w in todo {
                match listed.get(&w.relative) {
                    Some(info) if right(bucket, &w, info)? => present += 1,
                    _ => keep.push(w),
                }
            }
            todo = keep;
        }
    }
    let (objects, bytes) = put_all(bucket, todo, &p.signers).await?;
    let head = match judged {
        Some(Judged::Same) => HeadOutcome::Unchanged,
        _ => publish_head(bucket, p).await?,
    };
    let written = u64::from(matches!(head, HeadOutcome::Written { .. }));
    let note = match (&p.note, head) {
        // Our note goes with our index; a bucket serving a newer index keeps its own note.
        (Some(note), HeadOutcome::Written { .. } | HeadOutcome::Unchanged) => {
            publish_note(bucket, &p.publisher, &p.authority, note).await?
        }
        _ => 0,
    };
    Ok(Published {
        // The head copy and index.json.
        objects: objects + 2 * written + u64::from(note > 0),
        bytes: bytes + 2 * written * p.index.signed().envelope().len() as u64 + note,
        present,
        head,
    })
}

/// Whether a listed object is provably ours: our size, and the ETag of our bytes (which are
/// checked against the index's sha256 where it names one; they are verified in full only when
/// they are uploaded).
fn right(bucket: &Bucket, w: &Wanted, info: &ObjectInfo) -> Result<bool, UploadError> {
    let Some(etag) = &info.etag else {
        return Ok(false);
    };
    let bytes = match &w.from {
        From::Bytes(b) => b.clone(),
        From::File(path) => {
            let local = |reason: String| UploadError::Local {
                path: path.clone(),
                reason,
            };
            let len = std::fs::metadata(path)
                .map_err(|e| local(e.to_string()))?
                .len();
            if len != info.size {
                return Ok(false);
            }
            let bytes = std::fs::read(path).map_err(|e| local(e.to_string()))?;
            if let Some(object) = w.promised {
                index::check_bytes(&bytes, object).map_err(|e| local(e.to_string()))?;
            }
            Bytes::from(bytes)
        }
    };
    let limits = bucket.limits();
    Ok(bytes.len() as u64 == info.size
        && *etag == expected_etag(&bytes, limits.multipart_threshold, limits.part_size))
}

/// Verifies and uploads `todo` with bounded parallelism; returns objects and bytes written.
async fn put_all(
    bucket: &Bucket,
    todo: Vec<Wanted>,
    signers: &Authority,
) -> Result<(u64, u64), UploadError> {
    let limit = Arc::new(Semaphore::new(bucket.limits().max_parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for w in todo {
        let (bucket, signers, limit) = (bucket.clone(), signers.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            let big = match (&w.from, w.promised) {
                (From::File(_), Some(o)) => o.size > bucket.limits().multipart_threshold,
                _ => false,
            };
            if big {
                // Verified from the file, then streamed from it in parts.
                let From::File(path) = w.from.clone() else {
                    unreachable!("big objects are files")
                };
                let check = w.clone();
                let verified = tokio::task::spawn_blocking(move || big_check(&check, &signers))
                    .await
                    .expect("verification does not panic");
                verified?;
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                bucket.put_file(&w.relative, &path, attrs(&w.kind)).await?;
                return Ok::<_, UploadError>(size);
            }
            let check = w.clone();
            let bytes = tokio::task::spawn_blocking(move || checked_bytes(&check, &signers))
                .await
                .expect("verification does not panic")?;
            let len = bytes.len() as u64;
            bucket.put_bytes(&w.relative, bytes, attrs(&w.kind)).await?;
            Ok(len)
        });
    }
    let (mut objects, mut bytes) = (0u64, 0u64);
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("upload tasks do not panic") {
            Ok(n) => {
                objects += 1;
                bytes += n;
            }
            Err(e) => {
                // Stop starting new uploads; the ones in flight finish whole or not at all.
                if first_error.is_none() {
                    first_error = Some(e);
                    tasks.abort_all();
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok((objects, bytes)),
    }
}

/// The checks of [`checked_bytes`] for an object too large to hold in memory: streamed.
fn big_check(w: &Wanted, signers: &Authority) -> Result<(), UploadError> {
    let From::File(path) = &w.from else {
        return Ok(());
    };
    let local = |reason: String| UploadError::Local {
        path: path.clone(),
        reason,
    };
    if let Some(object) = w.promised {
        let file = std::fs::File::open(path).map_err(|e| local(e.to_string()))?;
        let len = file.metadata().map_err(|e| local(e.to_string()))?.len();
        if len != object.size {
            return Err(local(format!(
                "{len} bytes, the index says {}",
                object.size
            )));
        }
        let mut reader = crate::content_id::HashingReader::new(file);
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| local(e.to_string()))?;
        let (actual, _) = reader.finish();
        if actual != object.sha256 {
            return Err(local(format!(
                "sha256 {actual}, the index says {}",
                object.sha256
            )));
        }
    }
    if let ObjectKind::Bundle(id) = w.kind {
        let verified =
            bundle::verify_file(path, signers, &BundleLimits::default()).map_err(|source| {
                UploadError::Bundle {
                    id,
                    path: path.clone(),
                    source: Box::new(source),
                }
            })?;
        holds_listed(id, verified.manifest(), w.listed.as_ref())?;
    }
    Ok(())
}

/// A verified bundle must hold the article the index lists it as (when it lists it).
fn holds_listed(
    id: ContentId,
    manifest: &crate::manifest::Manifest,
    listed: Option<&Listing>,
) -> Result<(), UploadError> {
    let holds = Listing {
        name: manifest.name().to_owned(),
        version: manifest.version(),
    };
    match listed {
        Some(listed) if *listed != holds => Err(UploadError::ListedAsOther {
            id,
            holds,
            listed: listed.clone(),
        }),
        _ => Ok(()),
    }
}

/// Writes `index.json` so that it never rolls back once every writer has finished, on a store
/// without conditional writes:
///
/// 1. put an immutable copy of our head under `heads/<sequence>-<sha256>.json` (after every
///    object it lists is in the bucket);
/// 2. read `index.json`: if it is already ours or newer, stop (leave it);
/// 3. put ours as `index.json`;
/// 4. list `heads/`; if a verified head newer than what we wrote is there, read `index.json`
///    again and, unless it is already that new, put that head as `index.json`; repeat 4
///    (at most [`MAX_PROMOTIONS`] times).
///
/// Why: the last writer's last PUT of `index.json` is followed by its listing, and every other
/// writer put its head copy before its own PUT, so before that listing: the last writer sees
/// every head and leaves the newest. A writer that stops at 2 read an `index.json` at least as
/// new as its head, and `index.json` only ever returns to the newest. While writers race, a
/// reader may see an older `index.json` for the length of a round trip; readers refuse to roll
/// back anyway. Finally, head copies beyond the newest [`KEPT_HEADS`] are deleted.
pub async fn publish_head(bucket: &Bucket, p: &Publication) -> Result<HeadOutcome, UploadError> {
    let layout = PublisherLayout::new(&p.publisher);
    let limits = IndexLimits::default();
    let location = bucket.url().to_string();
    let ours = p.index.signed();
    let envelope = Bytes::copy_from_slice(ours.envelope());
    let copy = head_copy(&layout, ours.head().sequence(), ours.id());
    bucket
        .put_bytes(
            &copy,
            envelope.clone(),
            ObjectAttrs {
                content_type: "application/json",
                cache_control: "no-store",
            },
        )
        .await?;
    let index_key = layout.index();
    if let Some(held) = bucket_head(bucket, &index_key, &p.authority, &limits).await? {
        match judge(&location, &held, &p.index, &p.publisher)? {
            Judged::Same => return Ok(HeadOutcome::Unchanged),
            Judged::Newer(held) => return Ok(HeadOutcome::BucketNewer { held }),
            Judged::Older => {}
        }
    }
    bucket
        .put_bytes(&index_key, envelope, attrs(&ObjectKind::Index))
        .await?;
    let mut written = ours.head().sequence();
    for _ in 0..MAX_PROMOTIONS {
        let heads_dir = format!("{}/heads/", dir_of(&layout));
        let mut copies: Vec<(u64, String)> = bucket
            .list(&heads_dir, bucket.limits().max_listed)
            .await?
            .into_iter()
            .filter_map(|o| Some((head_copy_sequence(&o.key)?, o.key)))
            .collect();
        copies.sort();
        prune_heads(bucket, &copies).await;
        let newer = copies.iter().rev().find(|(seq, _)| *seq > written);
        let Some((_, key)) = newer else {
            return Ok(HeadOutcome::Written { sequence: written });
        };
        let Some(bytes) = bucket.get_bytes(key, limits.max_head_bytes).await? else {
            continue;
        };
        let Ok(newer) = SignedHead::verify(&bytes, &p.authority, &limits) else {
            tracing::warn!("{location}: {key} is not an authentic head: ignored");
            bucket.delete(key).await?;
            continue;
        };
        match bucket_head(bucket, &index_key, &p.authority, &limits).await? {
            Some(now) if now.head().sequence() >= newer.head().sequence() => {
                return Ok(HeadOutcome::Written {
                    sequence: now.head().sequence(),
                });
            }
            _ => {}
        }
        bucket
            .put_bytes(&index_key, bytes, attrs(&ObjectKind::Index))
            .await?;
        written = newer.head().sequence();
    }
    Ok(HeadOutcome::Written { sequence: written })
}

/// The text a store writes for a verified note: its canonical URI and a newline.
pub fn note_text(note: &VerifiedNote) -> Bytes {
    Bytes::from(format!("{}\n", note.signed().to_uri()))
}

/// Puts `note` as the publisher's `note` unless the bucket holds one at least as new: the
/// bucket's note is read and verified against `authority` (one that does not verify is foreign
/// or corrupt, and replaced); a newer one, or another note of the same sequence, stays. Bytes
/// written (0 when left alone). Without conditional writes two writers racing can still leave
/// the older of two notes for a while; readers keep the newest note they have seen.
pub async fn publish_note(
    bucket: &Bucket,
    publisher: &PublicKey,
    authority: &Authority,
    note: &VerifiedNote,
) -> Result<u64, UploadError> {
    let key = PublisherLayout::new(publisher).note();
    let held = bucket.get_bytes(&key, MAX_NOTE_TEXT_BYTES).await;
    let held = match held {
        Ok(Some(bytes)) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| SignedNote::from_uri(text).ok())
            .and_then(|signed| signed.verify(std::slice::from_ref(authority)).ok()),
        Ok(None) | Err(BucketError::TooLarge { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    if held.is_some_and(|h| h.note().sequence >= note.note().sequence) {
        return Ok(0);
    }
    let text = note_text(note);
    let len = text.len() as u64;
    bucket
        .put_bytes(&key, text, attrs(&ObjectKind::Note))
        .await?;
    Ok(len)
}

/// Reads and verifies the mirror note of a repo (or work folder) at `source`: `None` when it
/// has none. Read one byte past the cap so an oversized file is refused as such.
pub fn folder_note(
    source: &Path,
    publisher: &PublicKey,
    authority: &Authority,
) -> Result<Option<VerifiedNote>, UploadError> {
    use std::io::Read as _;
    let path = on_disk(source, &PublisherLayout::new(publisher).note());
    let refused = |source| UploadError::Note {
        path: path.clone(),
        source,
    };
    let mut bytes = Vec::new();
    match std::fs::File::open(&path) {
        Ok(f) => f
            .take(MAX_NOTE_TEXT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| UploadError::Local {
                path: path.clone(),
                reason: e.to_string(),
            })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(UploadError::Local {
                path: path.clone(),
                reason: e.to_string(),
            })
        }
    };
    crate::store::verify_note_text(&bytes, authority, std::time::SystemTime::now())
        .map(Some)
        .map_err(refused)
}

/// Deletes head copies older than the newest [`KEPT_HEADS`] (best effort: a failed delete
/// only leaves a small object behind).
async fn prune_heads(bucket: &Bucket, sorted: &[(u64, String)]) {
    if sorted.len() <= KEPT_HEADS {
        return;
    }
    for (_, key) in &sorted[..sorted.len() - KEPT_HEADS] {
        if let Err(e) = bucket.delete(key).await {
            tracing::debug!("pruning head copy {key}: {e}");
        }
    }
}

/// Verifies a publisher repo (or any folder laid out like one) and describes what to publish
/// from it: its index (pieces checked), its roots.
pub fn from_folder(
    source: &Path,
    publisher: &PublicKey,
    keep: Keep,
) -> Result<Publication, UploadError> {
    let chain = crate::roots::Chain::open(
        publisher,
        Some(crate::repo::roots_storage(source, publisher)),
    )
    .map_err(|e| UploadError::Local {
        path: source.to_owned(),
        reason: format!("the roots do not verify: {e}"),
    })?;
    let signers = chain.every_signer();
    let mut tracker = index::Tracker::ephemeral(&signers, IndexLimits::default());
    index::update_from_dir(&mut tracker, source, std::time::SystemTime::now())
        .map_err(UploadError::Index)?;
    let index = tracker
        .into_held()
        .expect("an accepted update leaves a held index");
    let authority = chain.authority(std::time::SystemTime::now());
    let note = folder_note(source, publisher, &authority)?;
    Ok(Publication {
        publisher: publisher.clone(),
        index: Arc::new(index),
        authority,
        note,
        signers,
        roots: chain.roots().to_vec(),
        keep,
        source: source.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_copies_sort_by_sequence_and_parse_back() {
        let id = ContentId::of_bytes(b"head");
        let key = format!("x/heads/{:020}-{id}.json", 42);
        assert_eq!(head_copy_sequence(&key), Some(42));
        assert_eq!(head_copy_sequence("x/heads/42-abc.json"), None);
        assert_eq!(head_copy_sequence("x/heads/junk"), None);
        let a = format!("{:020}-{id}.json", 9);
        let b = format!("{:020}-{id}.json", 10);
        assert!(a < b, "the listing's order is the sequence order");
    }

    #[test]
    fn etags_are_md5_or_the_multipart_form() {
        assert_eq!(
            expected_etag(b"hello", 10, 4),
            "5d41402abc4b2a76b9719d911017c592"
        );
        let two_parts = expected_etag(b"hello world!", 10, 8);
        assert!(two_parts.ends_with("-2"), "{two_parts}");
    }
}
