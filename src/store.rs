//! The mirror's content-addressed store: a folder laid out exactly like a publisher's static
//! repository (`qasid/v1/publishers/<key hex>/...`), so any static web server serving it is a
//! mirror too.
//!
//! Owns every write into that folder and the rules for them: a bundle is installed only after
//! its size and sha256 matched its name and it verified against the publisher's key; a piece
//! only once a verified `index.json` lists it (until then it waits, unserved, in a staging
//! folder, because pieces carry no signature of their own); `index.json` only after the index
//! module's history checks (no rollback, no equivocation, fresher kept), only once every
//! piece and bundle it lists is present, only if each bundle it adds holds the article and
//! version its entry names, and once the chunk list of each large bundle it requires is stored
//! and is that bundle's (docs/PROTOCOL.md §13). Writes are atomic: a file's data is flushed before it gets its
//! name (a temp file in `<store>/.tmp` renamed or linked into place, or on Linux a nameless
//! `O_TMPFILE` linked into place), and its folder is flushed before anything that depends on it
//! (at the latest before the next `index.json`). Immutable objects are never replaced by
//! different bytes, so a reader of the folder never sees a partial or inconsistent state. It
//! never decides which publishers to trust (callers pass the trusted key) and never touches
//! the network.
//!
//! Outside the served layout: `<store>/.tmp/` (temp files; stale ones removed on open) and
//! `<store>/.state/` (the index module's tracker state and equivocation evidence, staged
//! pieces, and the mirror's verified extractions for reader pages).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::bundle::{self, BundleError, VerifiedBundle};
use crate::config::Keep;
use crate::content_id::ContentId;
use crate::index::chunks::{ChunkError, ChunkList};
use crate::index::layout::{self, PublisherLayout};
use crate::index::{
    self, Entry, FetchError, Index, IndexError, ObjectRef, Offer, PieceRef, Tracker, VerifiedObject,
};
use crate::keys::PublicKey;
use crate::limits::{BundleLimits, IndexLimits, StagingLimits};
use crate::roots::{Authority, Chain, ChainStorage, Offered, RootError};
use crate::ErrorClass;

mod bucket;
mod lock;
mod note;
mod object;
pub mod refusals;
mod staging;

pub use bucket::BucketSink;
pub use lock::{StoreLock, LOCK_FILE};
pub(crate) use note::verify_note_text;
pub use object::{ObjectKind, ParsePublisherIdError, PublisherId};
pub use refusals::Refusal;
pub use staging::StagingFull;
use staging::{AdmitError, Staging};

/// Who vouches for an index piece offered to [`Store::stage_piece`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceOrigin {
    /// An anonymous push. Admitted within the staging bounds ([`StagingLimits`]), or past them
    /// when a signature-checked head offered to the store lists it.
    Push,
    /// The caller holds a verified index that lists the piece (a sync).
    VerifiedIndex,
}

/// Temp files untouched for this long when a store is opened were left by a crashed writer.
/// Ten minutes: a live writer (push, sync, publish) touches its temp file at least every idle
/// timeout (30 s by default) while receiving, and verifying even a 2 GiB bundle takes well
/// under a minute, so no live writer loses its file.
const STALE_TMP_AGE: Duration = Duration::from_secs(600);

/// Largest `.minisig` file accepted. 4 KiB: a minisign signature file with its comments is
/// about 300 bytes.
pub const MAX_MINISIG_BYTES: u64 = 4096;

/// Immutable objects up to this size are kept in memory once read. 256 KiB: bundles of text
/// articles with a photo or two, every minisig and most pieces.
pub const CACHE_MAX_OBJECT: u64 = 256 << 10;

/// Total bytes of the in-memory object cache. 16 MiB: hundreds of small bundles, well inside
/// the mirror's memory budget (64 MiB peak under load).
const CACHE_TOTAL: usize = 16 << 20;

/// Whether an install wrote something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// Verified and written.
    New,
    /// The same object (same name, so the same bytes) was already there; nothing written.
    AlreadyPresent,
}

/// What became of a detached signature installed along with its bundle.
pub type MinisigOutcome = Result<Installed, StoreError>;

/// An object an index lists that the store does not have yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingObject {
    pub kind: ObjectKind,
    pub object: ObjectRef,
}

/// What an index lists a bundle as: an article's name and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub name: String,
    pub version: u64,
}

impl Listing {
    /// What an index entry lists its bundle as.
    pub fn of_entry(entry: &index::ArticleVersion) -> Self {
        Self {
            name: entry.name().to_owned(),
            version: entry.version(),
        }
    }

    fn of(manifest: &crate::manifest::Manifest) -> Self {
        Self {
            name: manifest.name().to_owned(),
            version: manifest.version(),
        }
    }
}

impl std::fmt::Display for Listing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} v{}", self.name, self.version)
    }
}

/// Most bundle identities remembered between a bundle's install and the install of the index
/// that lists it. 100,000: a whole large archive's first sync; past it, the index install reads
/// the identity back from the bundle file instead.
const MAX_REMEMBERED_LISTINGS: usize = 100_000;

/// Objects in the store, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectCounts {
    pub bundles: u64,
    pub minisigs: u64,
    pub pieces: u64,
    pub indexes: u64,
}

/// Why the store refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file in the store could not be read or written.
    #[error("store {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The bytes are not the object their name promises (size or sha256).
    #[error("{0}")]
    Object(#[source] FetchError),
    /// The bundle failed verification against the publisher's key.
    #[error("bundle {id}: {source}")]
    Bundle {
        id: ContentId,
        #[source]
        source: BundleError,
    },
    /// A piece or `index.json` failed the index module's checks.
    #[error("{0}")]
    Index(#[source] IndexError),
    /// The detached signature does not verify, or is malformed.
    #[error("bundle {bundle}: detached signature refused: {reason}")]
    Minisig { bundle: ContentId, reason: String },
    /// A chunk list is not the list of the bundle it names (or of the entry listing it).
    #[error("chunk list {list}: {source}")]
    ChunkList {
        list: ContentId,
        #[source]
        source: crate::index::chunks::ChunkError,
    },
    /// A `.minisig` or chunk list was offered for a bundle the store does not have.
    #[error("bundle {0} is not in the store")]
    BundleMissing(ContentId),
    /// The offered index is not newer than the one the store holds (replay or rollback).
    #[error("older index: offered sequence {offered}, the store holds sequence {held}")]
    OlderIndex { held: u64, offered: u64 },
    /// The offered index is newer but expired while the held one is still fresh.
    #[error("stale index: offered sequence {offered} has expired and the held one is fresher")]
    StaleIndex { offered: u64 },
    /// The bundle is authentic but holds another article or version than the index says.
    /// Only the publisher's own key can sign such an index; serving it would show one article
    /// under another's headline.
    #[error("bundle {bundle} holds {holds}, but the index lists it as {listed}")]
    ListedAsOther {
        bundle: ContentId,
        holds: Listing,
        listed: Listing,
    },
    /// A root document was refused (not the next version, not validly signed, equivocation).
    #[error("{0}")]
    Root(#[source] RootError),
    /// A mirror note was refused (not verified, expired, or older than the held one).
    #[error("{0}")]
    Note(#[source] crate::note::NoteError),
    /// The index lists pieces or bundles that are not in the store yet.
    #[error("missing objects: the index lists {} object(s) the store does not have", .0.len())]
    MissingObjects(Vec<MissingObject>),
    /// Another process (a `qasid mirror` or `qasid sync`) holds the store's lock.
    #[error(
        "store {} is in use: another qasid process (mirror or sync) is already running on it; \
         stop that one first, or use another store",
        store.display()
    )]
    InUse { store: PathBuf },
    /// A piece no signed index lists was refused: the staging folder's bound is reached.
    #[error("{0}")]
    StagingFull(#[source] StagingFull),
    /// Uploading to the store's bucket failed or was refused; the work folder's `index.json`
    /// was not replaced, so the next sync or push tries again.
    #[error("{0}")]
    Bucket(#[source] crate::bucket::upload::UploadError),
}

impl StoreError {
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Io { .. }
            | StoreError::InUse { .. }
            | StoreError::MissingObjects(_)
            | StoreError::BundleMissing(_)
            | StoreError::StagingFull(_) => ErrorClass::Runtime,
            StoreError::Object(e) => e.class(),
            StoreError::Bundle { source, .. } => source.class(),
            StoreError::Index(e) => e.class(),
            StoreError::Root(e) => e.class(),
            StoreError::Note(e) => e.class(),
            StoreError::Bucket(e) => e.class(),
            StoreError::Minisig { .. }
            | StoreError::ChunkList { .. }
            | StoreError::OlderIndex { .. }
            | StoreError::ListedAsOther { .. }
            | StoreError::StaleIndex { .. } => ErrorClass::Verification,
        }
    }

    fn io(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Per-publisher state: the index module's tracker (what has been accepted) and the index that
/// is installed as `index.json` (what is served). The tracker may be ahead while bundles of its
/// index are still arriving.
struct PublisherState {
    tracker: Tracker,
    installed: Option<Arc<Index>>,
}

/// The store. Share it behind an `Arc`; every method blocks on file I/O (call from
/// `spawn_blocking` in async code).
pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
    state: PathBuf,
    keep: Keep,
    index_limits: IndexLimits,
    /// One entry per publisher the store has been asked about. A std `Mutex`: index installs
    /// are rare, short and blocking, and must be serialised per publisher so that two racing
    /// installs can never end with the older one renamed last.
    publishers: Mutex<HashMap<PublisherId, PublisherState>>,
    counts: Counts,
    /// Publishers whose folders and `publisher.pub` are known to exist.
    ensured: Mutex<std::collections::HashSet<PublisherId>>,
    /// Folders with objects placed by [`Store::install_bundle_bytes`] whose entries are not yet
    /// flushed; flushed before any `index.json` is written (see [`Store::sync_folders`]).
    unsynced_folders: Mutex<std::collections::HashSet<PathBuf>>,
    /// What each bundle installed by this process holds, until an installed index lists it
    /// (checked then against the index's entry). Bounded by [`MAX_REMEMBERED_LISTINGS`].
    installed_listings: Mutex<HashMap<(PublisherId, ContentId), Listing>>,
    /// Bytes of small immutable objects already read. Safe to keep because the store never
    /// replaces an immutable object with other bytes; anything that ever removes one from
    /// disk must evict it here too.
    cache: Mutex<ObjectCache>,
    refusals: refusals::Refusals,
    /// Pieces waiting for an index that lists them, and the bounds on them. Taken after the
    /// publishers lock when both are needed, never before.
    staging: Mutex<Staging>,
    /// The bucket this store is the work folder of: every index install uploads there first.
    bucket: std::sync::OnceLock<BucketSink>,
}

/// A bounded first-in-first-out cache of object bytes.
#[derive(Default)]
struct ObjectCache {
    map: HashMap<(PublisherId, ObjectKind), bytes::Bytes>,
    order: std::collections::VecDeque<(PublisherId, ObjectKind)>,
    bytes: usize,
}

/// Object counts for `/metrics`. Taken from the folders on first use rather than at open:
/// listing them costs about a millisecond per 1,000 objects, which a one-shot `sync --once`
/// never needs. Every write adds to them, before and after.
#[derive(Default)]
struct Counts {
    counted: std::sync::OnceLock<()>,
    bundles: AtomicU64,
    minisigs: AtomicU64,
    pieces: AtomicU64,
    indexes: AtomicU64,
}

impl Store {
    /// Opens (creating if needed) a store folder and removes stale temp files.
    pub fn open(root: &Path, keep: Keep, index_limits: IndexLimits) -> Result<Store, StoreError> {
        // Absolute once, so that no temp file or object path needs the working folder again.
        let root = &std::path::absolute(root).map_err(StoreError::io(root))?;
        let tmp = root.join(".tmp");
        let state = root.join(".state");
        let publishers = layout::on_disk(root, &format!("{}/publishers", layout::PREFIX));
        for dir in [&tmp, &state, &publishers] {
            fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
        }
        let refusals = refusals::Refusals::new(&state, &tmp);
        let staged = state.join("staged");
        let staging = Staging::load(staged.clone(), StagingLimits::default())
            .map_err(StoreError::io(&staged))?;
        let store = Store {
            root: root.to_owned(),
            tmp,
            state,
            keep,
            index_limits,
            publishers: Mutex::new(HashMap::new()),
            counts: Counts::default(),
            ensured: Mutex::default(),
            unsynced_folders: Mutex::default(),
            installed_listings: Mutex::default(),
            cache: Mutex::new(ObjectCache::default()),
            refusals,
            staging: Mutex::new(staging),
            bucket: std::sync::OnceLock::new(),
        };
        store.clean_tmp(STALE_TMP_AGE)?;
        Ok(store)
    }

    /// Sets the bounds on staged pieces (a mirror's configuration); removes pieces already
    /// older than the new age bound.
    pub fn set_staging_limits(&self, limits: StagingLimits) -> Result<(), StoreError> {
        let dir = self.state.join("staged");
        self.lock_staging()
            .set_limits(limits)
            .map_err(StoreError::io(&dir))
    }

    /// Bytes the staged pieces count against the staging bounds, all publishers together.
    pub fn staged_bytes(&self) -> u64 {
        self.lock_staging().total()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the store's exclusive lock (one mirror or sync per store), held until the
    /// returned guard is dropped or the process ends.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        StoreLock::acquire(&self.root, &self.state)
    }

    /// Adds to the recent-refusals record (see [`refusals`]). Blocking.
    pub fn record_refusal(&self, refusal: Refusal) {
        self.refusals.record(refusal);
    }

    /// Writes refusals not yet written. Blocking.
    pub fn flush_refusals(&self) {
        self.refusals.flush();
    }

    /// Where temp files for this store go (same file system as the objects).
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    pub fn keep(&self) -> Keep {
        self.keep
    }

    /// The file an object lives in (whether or not it exists).
    pub fn path(&self, publisher: &PublisherId, kind: &ObjectKind) -> PathBuf {
        let base = format!("{}/publishers/{publisher}", layout::PREFIX);
        let relative = match kind {
            ObjectKind::Index => format!("{base}/index.json"),
            ObjectKind::PublisherPub => format!("{base}/publisher.pub"),
            ObjectKind::Root(version) => format!("{base}/roots/{version}.json"),
            ObjectKind::Note => format!("{base}/note"),
            ObjectKind::Piece(id) => format!("{base}/pieces/{id}.json"),
            ObjectKind::Bundle(id) => format!("{base}/bundles/{id}.zip"),
            ObjectKind::Minisig(id) => format!("{base}/bundles/{id}.zip.minisig"),
            ObjectKind::Chunks(id) => format!("{base}/chunks/{id}"),
        };
        layout::on_disk(&self.root, &relative)
    }

    /// Whether an object is present.
    pub fn contains(&self, publisher: &PublisherId, kind: &ObjectKind) -> bool {
        self.path(publisher, kind).is_file()
    }

    /// The bytes of an immutable object read earlier through [`Store::remember`].
    pub fn cached(&self, publisher: &PublisherId, kind: &ObjectKind) -> Option<bytes::Bytes> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.map.get(&(*publisher, *kind)).cloned()
    }

    /// Keeps the bytes of a small immutable object that were just read from its file. The
    /// mutable `index.json` and objects over [`CACHE_MAX_OBJECT`] are never kept.
    pub fn remember(&self, publisher: &PublisherId, kind: &ObjectKind, bytes: bytes::Bytes) {
        if !kind.is_immutable() || bytes.len() as u64 > CACHE_MAX_OBJECT {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let key = (*publisher, *kind);
        if cache.map.contains_key(&key) {
            return;
        }
        while cache.bytes + bytes.len() > CACHE_TOTAL {
            let Some(old) = cache.order.pop_front() else {
                break;
            };
            if let Some(b) = cache.map.remove(&old) {
                cache.bytes -= b.len();
            }
        }
        cache.bytes += bytes.len();
        cache.order.push_back(key);
        cache.map.insert(key, bytes);
    }

    /// Current object counts (the first call lists the folders).
    pub fn counts(&self) -> ObjectCounts {
        self.counts.counted.get_or_init(|| {
            if let Err(e) = self.count_objects() {
                tracing::warn!("counting the store's objects: {e}");
            }
        });
        ObjectCounts {
            bundles: self.counts.bundles.load(Ordering::Relaxed),
            minisigs: self.counts.minisigs.load(Ordering::Relaxed),
            pieces: self.counts.pieces.load(Ordering::Relaxed),
            indexes: self.counts.indexes.load(Ordering::Relaxed),
        }
    }

    /// Publisher folders present in the store (trusted or not: callers filter).
    pub fn publisher_ids(&self) -> Result<Vec<PublisherId>, StoreError> {
        let dir = layout::on_disk(&self.root, &format!("{}/publishers", layout::PREFIX));
        let mut ids: Vec<PublisherId> = fs::read_dir(&dir)
            .map_err(StoreError::io(&dir))?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Removes temp files not modified for `age` (left behind by a crash).
    pub fn clean_tmp(&self, age: Duration) -> Result<usize, StoreError> {
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in fs::read_dir(&self.tmp).map_err(StoreError::io(&self.tmp))? {
            let entry = entry.map_err(StoreError::io(&self.tmp))?;
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() >= age)
                .unwrap_or(false);
            if stale {
                let path = entry.path();
                let result = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                match result {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io(&path)(e)),
                }
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "removed stale temp files from {}",
                self.tmp.display()
            );
        }
        Ok(removed)
    }

    /// Sets the counts to what the folders hold. A write racing with the listing may be counted
    /// twice or not at all until the next open: the counts are for monitoring.
    fn count_objects(&self) -> Result<(), StoreError> {
        let mut found = ObjectCounts::default();
        for id in self.publisher_ids()? {
            if self.contains(&id, &ObjectKind::Index) {
                found.indexes += 1;
            }
            let bundles = self.path(&id, &ObjectKind::Index).with_file_name("bundles");
            for name in list_names(&bundles)? {
                if name.ends_with(".zip") {
                    found.bundles += 1;
                } else if name.ends_with(".zip.minisig") {
                    found.minisigs += 1;
                }
            }
            let pieces = bundles.with_file_name("pieces");
            found.pieces += list_names(&pieces)?
                .iter()
                .filter(|n| n.ends_with(".json"))
                .count() as u64;
        }
        let c = &self.counts;
        c.indexes.store(found.indexes, Ordering::Relaxed);
        c.bundles.store(found.bundles, Ordering::Relaxed);
        c.minisigs.store(found.minisigs, Ordering::Relaxed);
        c.pieces.store(found.pieces, Ordering::Relaxed);
        Ok(())
    }

    /// Creates the publisher's folders and its `publisher.pub` (from the trusted key).
    fn ensure_publisher(&self, publisher: &PublicKey) -> Result<(), StoreError> {
        let id = PublisherId::of(publisher);
        let mut ensured = self.ensured.lock().unwrap_or_else(|p| p.into_inner());
        if ensured.contains(&id) {
            return Ok(());
        }
        let pub_path = self.path(&id, &ObjectKind::PublisherPub);
        if pub_path.is_file() {
            ensured.insert(id);
            return Ok(());
        }
        let l = PublisherLayout::new(publisher);
        for dir in [l.pieces_dir(), l.bundles_dir()] {
            let dir = layout::on_disk(&self.root, &dir);
            fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        }
        index::atomic::write(&self.tmp, &pub_path, publisher.to_file_text().as_bytes())
            .map_err(StoreError::io(&pub_path))?;
        ensured.insert(id);
        Ok(())
    }

    /// A receiver for an object whose sha256 and size are known (from a URL and a
    /// `Content-Length`, or from a signed index): feed it the bytes, then hand the result to
    /// [`Store::install_bundle`] or [`Store::install_piece`].
    pub fn receiver(&self, expected: ObjectRef) -> Result<index::FileReceiver, StoreError> {
        index::FileReceiver::new(&self.tmp, expected).map_err(StoreError::Object)
    }

    /// Installs a bundle whose bytes matched its sha256 and size, after verifying it against
    /// `publisher` with the same code as `qasid verify`. With `listed`, the bundle must hold
    /// that article and version (a sync knows what the index lists it as; a push does not, and
    /// the index install checks it then).
    pub fn install_bundle(
        &self,
        publisher: &PublicKey,
        object: VerifiedObject,
        limits: &BundleLimits,
        listed: Option<&Listing>,
    ) -> Result<(Installed, Option<VerifiedBundle>), StoreError> {
        let id = object.object().sha256;
        let pid = PublisherId::of(publisher);
        let dest = self.path(&pid, &ObjectKind::Bundle(id));
        if dest.is_file() {
            return Ok((Installed::AlreadyPresent, None));
        }
        let verified =
            bundle::verify_file(object.path(), &self.bundle_authority(publisher)?, limits)
                .map_err(|source| StoreError::Bundle { id, source })?;
        self.check_listing(&pid, id, Listing::of(verified.manifest()), listed)?;
        self.ensure_publisher(publisher)?;
        match install_no_clobber(object, &dest)? {
            Installed::New => {
                self.counts.bundles.fetch_add(1, Ordering::Relaxed);
                Ok((Installed::New, Some(verified)))
            }
            Installed::AlreadyPresent => Ok((Installed::AlreadyPresent, None)),
        }
    }

    /// Installs a bundle received whole in memory (a sync of small bundles), and its detached
    /// signature when the upstream had one, with the same checks as [`Store::install_bundle`]
    /// and [`Store::install_minisig`]: size and sha256 against `object`, the bundle verified
    /// against `publisher`, the signature against the bundle and the key. Both are checked in
    /// memory, then each file's data is flushed before it gets its name, so an object in the
    /// store is never partial. The folder entries are flushed later, once for many objects, by
    /// [`Store::sync_folders`] (which [`Store::install_index`] calls before writing an index):
    /// a crash before that loses at most the names, which a sync fetches again.
    ///
    /// The second value is the signature's outcome, `None` when none was offered or the bundle
    /// was already present. A refused signature does not prevent the bundle's install.
    pub fn install_bundle_bytes(
        &self,
        publisher: &PublicKey,
        object: ObjectRef,
        bytes: &[u8],
        minisig: Option<&[u8]>,
        limits: &BundleLimits,
        listed: Option<&Listing>,
    ) -> Result<(Installed, Option<MinisigOutcome>), StoreError> {
        let id = object.sha256;
        let pid = PublisherId::of(publisher);
        let dest = self.path(&pid, &ObjectKind::Bundle(id));
        if dest.is_file() {
            return Ok((Installed::AlreadyPresent, None));
        }
        index::check_bytes(bytes, object).map_err(StoreError::Object)?;
        let verified = bundle::verify_reader(bytes, &self.bundle_authority(publisher)?, limits)
            .map_err(|source| StoreError::Bundle { id, source })?;
        self.check_listing(&pid, id, Listing::of(verified.manifest()), listed)?;
        let signature =
            minisig.map(|text| check_minisig(&self.bundle_authority(publisher)?, id, bytes, text));
        self.ensure_publisher(publisher)?;
        let placed = index::atomic::create_new_synced(&self.tmp, &dest, bytes)
            .map_err(StoreError::io(&dest))?;
        if !placed {
            return Ok((Installed::AlreadyPresent, None));
        }
        self.counts.bundles.fetch_add(1, Ordering::Relaxed);
        self.defer_folder_sync(&dest);
        let signature = signature.map(|checked| {
            let text = checked?;
            let sig_dest = self.path(&pid, &ObjectKind::Minisig(id));
            if !index::atomic::create_new_synced(&self.tmp, &sig_dest, text)
                .map_err(StoreError::io(&sig_dest))?
            {
                return Ok(Installed::AlreadyPresent);
            }
            self.counts.minisigs.fetch_add(1, Ordering::Relaxed);
            Ok(Installed::New)
        });
        Ok((Installed::New, signature))
    }

    /// Refuses a bundle that holds another article than `listed` says, and otherwise remembers
    /// what it holds for the index install's check.
    fn check_listing(
        &self,
        pid: &PublisherId,
        id: ContentId,
        holds: Listing,
        listed: Option<&Listing>,
    ) -> Result<(), StoreError> {
        if let Some(listed) = listed.filter(|l| **l != holds) {
            return Err(StoreError::ListedAsOther {
                bundle: id,
                holds,
                listed: listed.clone(),
            });
        }
        let mut known = self
            .installed_listings
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if known.len() < MAX_REMEMBERED_LISTINGS {
            known.insert((*pid, id), holds);
        }
        Ok(())
    }

    fn defer_folder_sync(&self, placed: &Path) {
        if let Some(dir) = placed.parent() {
            let mut folders = self
                .unsynced_folders
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !folders.contains(dir) {
                folders.insert(dir.to_owned());
            }
        }
    }

    /// Flushes the folders that [`Store::install_bundle_bytes`] placed objects in, making
    /// their names durable.
    pub fn sync_folders(&self) -> Result<(), StoreError> {
        let folders: Vec<PathBuf> = self
            .unsynced_folders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for dir in folders {
            fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(StoreError::io(&dir))?;
        }
        Ok(())
    }

    /// Installs a bundle's detached minisign signature after checking it against the stored
    /// bundle and the publisher's key.
    pub fn install_minisig(
        &self,
        publisher: &PublicKey,
        bundle: ContentId,
        bytes: &[u8],
    ) -> Result<Installed, StoreError> {
        let pid = PublisherId::of(publisher);
        let dest = self.path(&pid, &ObjectKind::Minisig(bundle));
        if dest.is_file() {
            return Ok(Installed::AlreadyPresent);
        }
        let zip = self.path(&pid, &ObjectKind::Bundle(bundle));
        if !zip.is_file() {
            return Err(StoreError::BundleMissing(bundle));
        }
        let file = fs::File::open(&zip).map_err(StoreError::io(&zip))?;
        check_minisig(
            &self.bundle_authority(publisher)?,
            bundle,
            io::BufReader::new(file),
            bytes,
        )?;
        let existed = dest.is_file();
        index::atomic::write(&self.tmp, &dest, bytes).map_err(StoreError::io(&dest))?;
        if !existed {
            self.counts.minisigs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Installed::New)
    }

    /// Installs a bundle's chunk list after checking it against the stored bundle it names:
    /// the list's first 32 bytes name the bundle, which must be in the store (pushed or
    /// synced first), and every chunk hash must be that of the bundle's bytes. Reads the
    /// bundle once. A list that passes is exactly the list the publisher computed, so the
    /// store never serves a list that would make readers blame honest mirrors.
    pub fn install_chunk_list(
        &self,
        publisher: &PublicKey,
        bytes: &[u8],
    ) -> Result<Installed, StoreError> {
        let list = ContentId::of_bytes(bytes);
        let pid = PublisherId::of(publisher);
        let dest = self.path(&pid, &ObjectKind::Chunks(list));
        if dest.is_file() {
            return Ok(Installed::AlreadyPresent);
        }
        let Some(named) = bytes.first_chunk::<32>() else {
            return Err(StoreError::ChunkList {
                list,
                source: crate::index::chunks::ChunkError::WrongSize {
                    bundle_size: 0,
                    expected: 0,
                    found: bytes.len() as u64,
                },
            });
        };
        let bundle = ContentId::from_bytes(*named);
        let zip = self.path(&pid, &ObjectKind::Bundle(bundle));
        let file = match fs::File::open(&zip) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::BundleMissing(bundle))
            }
            Err(e) => return Err(StoreError::io(&zip)(e)),
        };
        let size = file.metadata().map_err(StoreError::io(&zip))?.len();
        let object = ObjectRef {
            sha256: bundle,
            size,
        };
        crate::index::chunks::verify_list_against(bytes, object, io::BufReader::new(file))
            .map_err(StoreError::io(&zip))?
            .map_err(|source| StoreError::ChunkList { list, source })?;
        self.ensure_publisher(publisher)?;
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
        }
        if !index::atomic::create_new_synced(&self.tmp, &dest, bytes)
            .map_err(StoreError::io(&dest))?
        {
            return Ok(Installed::AlreadyPresent);
        }
        Ok(Installed::New)
    }

    /// Removes bundles (and their `.minisig`, and their chunk list unless a current entry still
    /// names it) of `publisher` that `keep = "current"` no longer needs: candidates that
    /// neither the served index's current listing nor the newer index held for completion
    /// lists are deleted; the rest are left alone. Returns the removed ones.
    /// Checked under the publisher lock, so an index installed meanwhile is never left pointing
    /// at a removed bundle. Does nothing for `keep = "all"`.
    pub fn remove_unlisted_bundles(
        &self,
        publisher: &PublicKey,
        candidates: &[ContentId],
    ) -> Result<Vec<ContentId>, StoreError> {
        if self.keep == Keep::All {
            return Ok(Vec::new());
        }
        let mut map = self.lock_publishers();
        let state = self.state(&mut map, publisher)?;
        let indexes: Vec<&Index> = [state.installed.as_deref(), state.tracker.held()]
            .into_iter()
            .flatten()
            .collect();
        let current: Vec<&index::ArticleVersion> = indexes
            .iter()
            .flat_map(|index| index.current().into_iter().map(|(_, a)| a))
            .collect();
        let listed: std::collections::HashSet<ContentId> =
            current.iter().map(|a| a.bundle().sha256).collect();
        // A chunk list goes with its bundle, unless a current entry still names it.
        let needed_lists: std::collections::HashSet<ContentId> = current
            .iter()
            .filter_map(|a| Some(a.chunks()?.sha256))
            .collect();
        let mut lists_of: std::collections::HashMap<ContentId, Vec<ContentId>> =
            std::collections::HashMap::new();
        for index in &indexes {
            for entry in index.entries() {
                if let Entry::Add(a) = entry {
                    if let Some(chunks) = a.chunks() {
                        lists_of
                            .entry(a.bundle().sha256)
                            .or_default()
                            .push(chunks.sha256);
                    }
                }
            }
        }
        let pid = PublisherId::of(publisher);
        let mut removed = Vec::new();
        for id in candidates.iter().filter(|id| !listed.contains(id)) {
            let lists = lists_of
                .get(id)
                .into_iter()
                .flatten()
                .filter(|l| !needed_lists.contains(l))
                .map(|l| (ObjectKind::Chunks(*l), None));
            let objects = [
                (ObjectKind::Minisig(*id), Some(&self.counts.minisigs)),
                (ObjectKind::Bundle(*id), Some(&self.counts.bundles)),
            ];
            for (kind, counter) in lists.chain(objects) {
                let path = self.path(&pid, &kind);
                match fs::remove_file(&path) {
                    Ok(()) => {
                        if let Some(counter) = counter {
                            counter.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io(&path)(e)),
                }
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(bytes) = cache.map.remove(&(pid, kind)) {
                    cache.bytes -= bytes.len();
                }
            }
            removed.push(*id);
        }
        if !removed.is_empty() {
            let any = self.path(&pid, &ObjectKind::Bundle(removed[0]));
            index::atomic::sync_parent(&any).map_err(StoreError::io(&any))?;
        }
        Ok(removed)
    }

    /// Whether a piece of `size` bytes offered by an anonymous push would be staged now, so
    /// that a push is refused before its body is read. [`Store::stage_piece`] decides again.
    pub fn admit_piece(
        &self,
        publisher: &PublicKey,
        id: ContentId,
        size: u64,
    ) -> Result<(), StoreError> {
        let pid = PublisherId::of(publisher);
        if self.has_piece(&pid, &id) {
            return Ok(());
        }
        self.lock_staging()
            .admit(pid, id, size, false)
            .map_err(|e| self.admit_error(e))
    }

    /// Stages an index piece whose bytes matched its sha256 and size. Pieces are not signed
    /// on their own, so a staged piece is not served: it moves into the layout only when a
    /// verified `index.json` that lists it is installed (the index module checks its content
    /// then). A pushed piece that no signature-checked head lists is admitted only within the
    /// staging bounds ([`StoreError::StagingFull`] otherwise); staged pieces no index claims
    /// are removed after [`StagingLimits::max_staged_age`].
    pub fn stage_piece(
        &self,
        publisher: &PublicKey,
        object: VerifiedObject,
        origin: PieceOrigin,
    ) -> Result<Installed, StoreError> {
        let reference = object.object();
        let pid = PublisherId::of(publisher);
        if self.contains(&pid, &ObjectKind::Piece(reference.sha256)) {
            return Ok(Installed::AlreadyPresent);
        }
        if reference.size > self.index_limits.max_piece_bytes {
            return Err(StoreError::Index(IndexError::TooLarge {
                what: "index piece",
                limit: self.index_limits.max_piece_bytes,
            }));
        }
        // Flushed before the staging lock is taken; linking under it is quick.
        fs::File::open(object.path())
            .and_then(|f| f.sync_all())
            .map_err(StoreError::io(object.path()))?;
        let mut staging = self.lock_staging();
        let dest = staging.path(&pid, &reference.sha256);
        if dest.is_file() {
            return Ok(Installed::AlreadyPresent);
        }
        staging
            .admit(
                pid,
                reference.sha256,
                reference.size,
                origin == PieceOrigin::VerifiedIndex,
            )
            .map_err(|e| self.admit_error(e))?;
        staging::ensure_parent(&dest).map_err(StoreError::io(&dest))?;
        match fs::hard_link(object.path(), &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Ok(Installed::AlreadyPresent)
            }
            Err(e) => return Err(StoreError::io(&dest)(e)),
        }
        staging.record(pid, reference.sha256, reference.size, SystemTime::now());
        drop(staging);
        index::atomic::sync_parent(&dest).map_err(StoreError::io(&dest))?;
        Ok(Installed::New)
    }

    fn admit_error(&self, e: AdmitError) -> StoreError {
        match e {
            AdmitError::Full(full) => StoreError::StagingFull(full),
            AdmitError::Io(e) => StoreError::io(&self.state.join("staged"))(e),
        }
    }

    fn lock_staging(&self) -> MutexGuard<'_, Staging> {
        self.staging.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn staged_piece(&self, pid: &PublisherId, id: &ContentId) -> PathBuf {
        self.lock_staging().path(pid, id)
    }

    /// Whether a piece is in the layout or staged.
    fn has_piece(&self, pid: &PublisherId, id: &ContentId) -> bool {
        self.contains(pid, &ObjectKind::Piece(*id)) || self.staged_piece(pid, id).is_file()
    }

    /// Moves the staged pieces a verified index lists into the layout. A piece that is no
    /// longer staged (aged out while the index waited for its bundles) is rebuilt from the
    /// index's verified entries: the canonical encoding makes it the same bytes.
    fn publish_staged_pieces(
        &self,
        publisher: &PublicKey,
        index: &Index,
    ) -> Result<(), StoreError> {
        let pid = PublisherId::of(publisher);
        let mut staging = self.lock_staging();
        for piece in listed_pieces(index.head()) {
            let dest = self.path(&pid, &ObjectKind::Piece(piece.sha256));
            if dest.is_file() {
                staging.forget(&pid, &piece.sha256);
                continue;
            }
            let staged = staging.path(&pid, &piece.sha256);
            match fs::rename(&staged, &dest) {
                Ok(()) => staging.forget(&pid, &piece.sha256),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let entries = &index.entries()[piece.first as usize..piece.end() as usize];
                    let bytes = index::encode_piece(publisher, piece.first, entries);
                    index::check_bytes(&bytes, piece.object()).map_err(StoreError::Object)?;
                    index::atomic::write(&self.tmp, &dest, &bytes)
                        .map_err(StoreError::io(&dest))?;
                }
                Err(e) => return Err(StoreError::io(&dest)(e)),
            }
            self.counts.pieces.fetch_add(1, Ordering::Relaxed);
        }
        staging.unclaim(&pid);
        drop(staging);
        if let Some(dir) = self.path(&pid, &ObjectKind::Index).parent() {
            index::atomic::sync_parent(&dir.join("pieces").join("x"))
                .map_err(StoreError::io(dir))?;
        }
        Ok(())
    }

    fn lock_publishers(&self) -> MutexGuard<'_, HashMap<PublisherId, PublisherState>> {
        // A panic mid-install leaves at worst a tracker that is re-read on the next open.
        self.publishers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where the store keeps a publisher's roots: in the served layout (only roots that chain
    /// are ever written there), temp files in `.tmp`, evidence beside the index evidence.
    fn chain_storage(&self, publisher: &PublicKey) -> ChainStorage {
        let pid = PublisherId::of(publisher);
        let dir = self.path(&pid, &ObjectKind::Index).with_file_name("roots");
        ChainStorage {
            dir,
            tmp: self.tmp_dir().to_owned(),
            evidence: self.state.join("evidence"),
        }
    }

    /// The publisher's chain of roots the store holds, re-verified.
    pub fn chain(&self, publisher: &PublicKey) -> Result<Chain, StoreError> {
        Chain::open(publisher, Some(self.chain_storage(publisher))).map_err(StoreError::Root)
    }

    /// Whom to trust for `publisher` now: the keys its current root delegates, or the key
    /// itself for a publisher without roots.
    pub fn authority(&self, publisher: &PublicKey) -> Result<Authority, StoreError> {
        Ok(self.chain(publisher)?.authority(SystemTime::now()))
    }

    /// Whom a stored bundle (and its `.minisig`) must be signed by: any key the publisher's
    /// roots ever delegated for bundles. A store serves a bundle to readers only through an
    /// authentic index that lists its sha256, so the archive signed by a since-revoked key
    /// stays pushable to a new mirror (a push sends bundles before the index that lists
    /// them), while a thief's bundle is never listed: its index is refused (PROTOCOL §11.5).
    fn bundle_authority(&self, publisher: &PublicKey) -> Result<Authority, StoreError> {
        Ok(self.chain(publisher)?.every_signer())
    }

    /// Installs root `version` of `publisher` (pushed, or fetched by a sync): it must be the
    /// next version and chain onto the held root, or be a held one (nothing to do). A different
    /// valid root of a held version is equivocation (evidence saved). Once a root is
    /// installed, the publisher's index state is reopened under the new signing keys.
    pub fn install_root(
        &self,
        publisher: &PublicKey,
        version: u64,
        bytes: &[u8],
    ) -> Result<Installed, StoreError> {
        let offered = crate::roots::Root::parse(bytes).map_err(StoreError::Root)?;
        if offered.version() != version {
            return Err(StoreError::Root(RootError::Malformed(format!(
                "the file at roots/{version}.json holds root version {}",
                offered.version()
            ))));
        }
        self.ensure_publisher(publisher)?;
        let mut map = self.lock_publishers();
        let mut chain = self.chain(publisher)?;
        match chain.offer(bytes).map_err(StoreError::Root)? {
            Offered::Accepted(_) => {
                map.remove(&PublisherId::of(publisher));
                Ok(Installed::New)
            }
            Offered::Unchanged => Ok(Installed::AlreadyPresent),
        }
    }

    /// Installs the first roots of publishers trusted through a root file (`root.json`), so
    /// that syncs follow their chains from the start. A root 1 already held is left as is.
    pub fn anchor(&self, first_roots: &[crate::roots::Root]) -> Result<(), StoreError> {
        for root in first_roots {
            self.install_root(&root.publisher_id(), 1, &root.to_bytes())?;
        }
        Ok(())
    }

    /// The publisher's state, loading it on first use: the tracker's history from `.state`,
    /// then the installed `index.json` (verified), which the tracker catches up with if it is
    /// newer (the store may have been filled by `qasid publish` or a plain copy).
    fn state<'a>(
        &self,
        map: &'a mut HashMap<PublisherId, PublisherState>,
        publisher: &PublicKey,
    ) -> Result<&'a mut PublisherState, StoreError> {
        use std::collections::hash_map::Entry as Slot;
        match map.entry(PublisherId::of(publisher)) {
            Slot::Occupied(slot) => Ok(slot.into_mut()),
            Slot::Vacant(slot) => {
                let authority = self.authority(publisher)?;
                let mut tracker = Tracker::open(&self.state, &authority, self.index_limits.clone())
                    .map_err(StoreError::Index)?;
                let envelope = self.read_installed_envelope(publisher)?;
                let held = tracker.held().filter(|h| {
                    envelope
                        .as_deref()
                        .is_some_and(|e| h.signed().envelope() == e)
                });
                let installed = match (held, envelope) {
                    // The tracker's history ends with the served index: it has just verified
                    // that index and its entries, so there is no need to do it twice.
                    (Some(held), _) => Some(held.clone()),
                    (None, Some(envelope)) => {
                        let mut fresh = Tracker::ephemeral(&authority, self.index_limits.clone());
                        match self.feed(&mut fresh, &envelope) {
                            Ok(()) => fresh.into_held(),
                            // Signed by a key the publisher's root has since dropped: the next
                            // index replaces it, whatever its sequence.
                            Err(StoreError::Index(IndexError::BadSignature(_)))
                                if authority.version() > 0 =>
                            {
                                None
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    (None, None) => None,
                };
                if let Some(index) = &installed {
                    if let Err(e) = self.feed(&mut tracker, index.signed().envelope()) {
                        // Older than the tracker's history (normal while bundles arrive) or a
                        // conflict, for which the index module has already saved evidence.
                        tracing::debug!(
                            publisher = %publisher.id(),
                            "installed index not newer than the tracked one: {e}"
                        );
                    }
                }
                Ok(slot.insert(PublisherState {
                    tracker,
                    installed: installed.map(Arc::new),
                }))
            }
        }
    }

    /// Offers `envelope` to `tracker`, supplying pieces from the store. Errors with the list of
    /// pieces the store lacks if any listed piece is missing.
    fn feed(&self, tracker: &mut Tracker, envelope: &[u8]) -> Result<(), StoreError> {
        let pid = PublisherId::of(tracker.publisher());
        let update = match tracker
            .offer(envelope, SystemTime::now())
            .map_err(map_index_error)?
        {
            Offer::Unchanged => return Ok(()),
            Offer::KeptFresher { offered } => {
                return Err(StoreError::StaleIndex {
                    offered: offered.head().sequence(),
                })
            }
            Offer::Update(mut pending) => {
                let listed = listed_pieces(pending.head().head());
                // The head's signature is checked: its pieces may pass the staging bounds.
                self.lock_staging()
                    .claim(pid, listed.iter().map(|p| p.sha256));
                let missing: Vec<MissingObject> = listed
                    .iter()
                    .filter(|p| !self.has_piece(&pid, &p.sha256))
                    .map(|p| MissingObject {
                        kind: ObjectKind::Piece(p.sha256),
                        object: p.object(),
                    })
                    .collect();
                if !missing.is_empty() {
                    return Err(StoreError::MissingObjects(missing));
                }
                loop {
                    let needed = pending.needed().map_err(StoreError::Index)?;
                    if needed.is_empty() {
                        break;
                    }
                    for piece in needed {
                        let bytes = self.read_piece(&pid, &piece)?;
                        pending.supply(&piece, bytes).map_err(StoreError::Index)?;
                    }
                }
                pending.finish().map_err(StoreError::Index)?
            }
        };
        tracker.accept(update).map_err(StoreError::Index)?;
        Ok(())
    }

    fn read_piece(&self, pid: &PublisherId, piece: &PieceRef) -> Result<Vec<u8>, StoreError> {
        let mut path = self.path(pid, &ObjectKind::Piece(piece.sha256));
        if !path.is_file() {
            path = self.staged_piece(pid, &piece.sha256);
        }
        let file = fs::File::open(&path).map_err(StoreError::io(&path))?;
        // Stored pieces were hash-checked on the way in; `supply` checks again anyway.
        let mut bytes = Vec::with_capacity(piece.size as usize);
        file.take(piece.size.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(StoreError::io(&path))?;
        Ok(bytes)
    }

    /// Verifies `envelope` as the publisher's new `index.json` (signature, trusted key, history:
    /// sequence strictly above the held one, no equivocation, not an expired one over a fresh
    /// one) and installs it once every piece and bundle it lists is present.
    ///
    /// [`StoreError::MissingObjects`] lists what to fetch or push first: pieces, and once the
    /// pieces are all there, bundles. Offering the same envelope again after supplying them
    /// completes the install.
    ///
    /// Every bundle the new index lists that the served one did not must hold the article and
    /// version of its entry ([`StoreError::ListedAsOther`] otherwise); bundles are re-read for
    /// this (with `bundle_limits`) only when this process did not install them itself.
    pub fn install_index(
        &self,
        publisher: &PublicKey,
        envelope: &[u8],
        bundle_limits: &BundleLimits,
    ) -> Result<Installed, StoreError> {
        let mut map = self.lock_publishers();
        let state = self.state(&mut map, publisher)?;
        let installed_seq = state.installed.as_ref().map(|i| i.head().sequence());
        let installed_id = state.installed.as_ref().map(|i| *i.signed().id());
        if installed_id == Some(ContentId::of_bytes(envelope)) {
            return Ok(Installed::AlreadyPresent);
        }
        self.feed(&mut state.tracker, envelope)?;
        let held = state
            .tracker
            .held()
            .expect("feed accepted or kept an index");
        if held.signed().envelope() != envelope {
            // The tracker already holds something newer than what was offered.
            let offered = index::SignedHead::verify(
                envelope,
                &self.authority(publisher)?,
                &self.index_limits,
            )
            .map_err(map_index_error)?;
            return Err(StoreError::OlderIndex {
                held: held.head().sequence(),
                offered: offered.head().sequence(),
            });
        }
        if let Some(seq) = installed_seq {
            if held.head().sequence() <= seq {
                return Err(StoreError::OlderIndex {
                    held: seq,
                    offered: held.head().sequence(),
                });
            }
        }
        let pid = PublisherId::of(publisher);
        let missing = self.missing_bundles(&pid, held)?;
        if !missing.is_empty() {
            return Err(StoreError::MissingObjects(missing));
        }
        let newly_listed = newly_listed(held, state.installed.as_deref(), self.keep);
        self.check_listings(publisher, &newly_listed, bundle_limits)?;
        self.ensure_publisher(publisher)?;
        self.complete_chunk_lists(&pid, held)?;
        self.publish_staged_pieces(publisher, held)?;
        self.sync_folders()?;
        self.upload(publisher, held)?;
        let dest = self.path(&pid, &ObjectKind::Index);
        index::atomic::write(&self.tmp, &dest, envelope).map_err(StoreError::io(&dest))?;
        if state.installed.is_none() {
            self.counts.indexes.fetch_add(1, Ordering::Relaxed);
        }
        state.installed = Some(Arc::new(held.clone()));
        let mut known = self
            .installed_listings
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (object, _) in &newly_listed {
            known.remove(&(pid, object.sha256));
        }
        Ok(Installed::New)
    }

    /// Checks that each newly listed bundle holds what its entry says.
    fn check_listings(
        &self,
        publisher: &PublicKey,
        newly_listed: &[(ObjectRef, Listing)],
        limits: &BundleLimits,
    ) -> Result<(), StoreError> {
        let pid = PublisherId::of(publisher);
        let authority = self.chain(publisher)?.every_signer();
        for (object, listed) in newly_listed {
            let id = object.sha256;
            let remembered = self
                .installed_listings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&(pid, id))
                .cloned();
            let holds = match remembered {
                Some(holds) => holds,
                None => {
                    let path = self.path(&pid, &ObjectKind::Bundle(id));
                    let verified = bundle::verify_file(&path, &authority, limits)
                        .map_err(|source| StoreError::Bundle { id, source })?;
                    Listing::of(verified.manifest())
                }
            };
            if holds != *listed {
                return Err(StoreError::ListedAsOther {
                    bundle: id,
                    holds,
                    listed: listed.clone(),
                });
            }
        }
        Ok(())
    }

    /// Makes sure every chunk list the index's required entries name is stored and is the list
    /// of the entry's bundle. A list a push delivered was checked against the bundle it names
    /// when it was installed, so here it only has to name the entry's bundle; a missing one is
    /// computed from the stored bundle (a list is a function of the bundle's bytes, so a
    /// syncing mirror never stores one it downloaded) and must be exactly the list the entry
    /// names.
    /// Refuses the index otherwise ([`StoreError::ChunkList`]): serving it would make readers
    /// blame honest mirrors for every chunk.
    fn complete_chunk_lists(&self, pid: &PublisherId, index: &Index) -> Result<(), StoreError> {
        let dir = self.path(pid, &ObjectKind::Index).with_file_name("chunks");
        let present: std::collections::HashSet<ContentId> = list_names(&dir)?
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        for (bundle, chunks) in required_chunk_lists(index, self.keep) {
            let dest = self.path(pid, &ObjectKind::Chunks(chunks.sha256));
            let refuse = |source| StoreError::ChunkList {
                list: chunks.sha256,
                source,
            };
            if present.contains(&chunks.sha256) {
                let bytes = fs::read(&dest).map_err(StoreError::io(&dest))?;
                ChunkList::parse(&bytes, bundle).map_err(refuse)?;
                continue;
            }
            let zip = self.path(pid, &ObjectKind::Bundle(bundle.sha256));
            let file = fs::File::open(&zip).map_err(StoreError::io(&zip))?;
            let list = index::chunks::list_of(bundle, io::BufReader::new(file))
                .map_err(StoreError::io(&zip))?
                .ok_or(StoreError::BundleMissing(bundle.sha256))?;
            let bytes = list.encode();
            let actual = ContentId::of_bytes(&bytes);
            if actual != chunks.sha256 {
                return Err(refuse(ChunkError::ListMismatch {
                    listed: chunks.sha256,
                    actual,
                }));
            }
            fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
            index::atomic::create_new_synced(&self.tmp, &dest, &bytes)
                .map_err(StoreError::io(&dest))?;
        }
        Ok(())
    }

    /// Bundles the index requires (every version for `keep = "all"`, the current listing for
    /// `keep = "current"`) that are not present. All are looked at, not only the newly listed:
    /// a bundle lost from the store (by hand, or a disk problem) is noticed here and fetched or
    /// pushed again. One listing of the folder instead of a lookup per bundle (an index lists
    /// 10,000s); a name there is a complete object, because names are given only to checked,
    /// flushed files.
    fn missing_bundles(
        &self,
        pid: &PublisherId,
        index: &Index,
    ) -> Result<Vec<MissingObject>, StoreError> {
        let dir = self.path(pid, &ObjectKind::Index).with_file_name("bundles");
        let present: std::collections::HashSet<ContentId> = list_names(&dir)?
            .iter()
            .filter_map(|name| name.strip_suffix(".zip")?.parse().ok())
            .collect();
        Ok(required_bundles(index, self.keep)
            .into_iter()
            .filter(|b| !present.contains(&b.sha256))
            .map(|b| MissingObject {
                kind: ObjectKind::Bundle(b.sha256),
                object: b,
            })
            .collect())
    }

    /// The installed (served) index of a publisher, verified, or `None` if there is none.
    pub fn index(&self, publisher: &PublicKey) -> Result<Option<Arc<Index>>, StoreError> {
        let mut map = self.lock_publishers();
        Ok(self.state(&mut map, publisher)?.installed.clone())
    }

    /// The signed head of the installed (served) index, or `None` if there is none: cheap (one
    /// signature check; the pieces are not read), for callers that need only its sequence or
    /// id. Answers from the loaded state if [`Store::index`] has loaded it, else reads
    /// `index.json` and verifies it against `publisher`.
    pub fn installed_head(
        &self,
        publisher: &PublicKey,
    ) -> Result<Option<index::SignedHead>, StoreError> {
        if let Some(state) = self.lock_publishers().get(&PublisherId::of(publisher)) {
            return Ok(state.installed.as_ref().map(|i| i.signed().clone()));
        }
        let Some(envelope) = self.read_installed_envelope(publisher)? else {
            return Ok(None);
        };
        let authority = self.authority(publisher)?;
        match index::SignedHead::verify(&envelope, &authority, &self.index_limits) {
            Ok(head) => Ok(Some(head)),
            // Signed by a key the publisher's root has since dropped: served until replaced,
            // but it counts for nothing.
            Err(IndexError::BadSignature(_)) if authority.version() > 0 => Ok(None),
            Err(e) => Err(StoreError::Index(e)),
        }
    }

    /// The bytes of the installed `index.json` (unverified), read within the head size cap.
    fn read_installed_envelope(
        &self,
        publisher: &PublicKey,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(&PublisherId::of(publisher), &ObjectKind::Index);
        match fs::File::open(&path) {
            Ok(f) => index::read_capped(f, self.index_limits.max_head_bytes)
                .map(Some)
                .map_err(|e| StoreError::Index(IndexError::Head(e))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path)(e)),
        }
    }
}

/// The bundles a store with this retention must hold for `index`: every version ever listed
/// (`all`) or the current listing (`current`), each once.
pub fn required_bundles(index: &Index, keep: Keep) -> Vec<ObjectRef> {
    let all: Vec<ObjectRef> = match keep {
        Keep::All => index
            .entries()
            .iter()
            .filter_map(|e| match e {
                Entry::Add(a) => Some(a.bundle()),
                Entry::Retract { .. } => None,
            })
            .collect(),
        Keep::Current => index.current().iter().map(|(_, a)| a.bundle()).collect(),
    };
    let mut seen = std::collections::HashSet::new();
    all.into_iter().filter(|b| seen.insert(b.sha256)).collect()
}

/// The chunk lists of the bundles [`required_bundles`] gives, each with its bundle, once.
pub fn required_chunk_lists(index: &Index, keep: Keep) -> Vec<(ObjectRef, ObjectRef)> {
    let required: std::collections::HashSet<ContentId> = required_bundles(index, keep)
        .into_iter()
        .map(|b| b.sha256)
        .collect();
    let mut seen = std::collections::HashSet::new();
    index
        .entries()
        .iter()
        .filter_map(|e| match e {
            Entry::Add(a) => Some((a.bundle(), a.chunks()?)),
            Entry::Retract { .. } => None,
        })
        .filter(|(b, c)| required.contains(&b.sha256) && seen.insert(c.sha256))
        .collect()
}

/// The entries `index` adds after those of `installed` (the log only grows, and the index
/// module checked that `index` extends it) whose bundles the store must hold (every version
/// for `keep = "all"`, the current listing for `keep = "current"`), with what each entry lists
/// its bundle as. Only these need their listing checked: the entries before them were checked
/// when the installed index was.
fn newly_listed(index: &Index, installed: Option<&Index>, keep: Keep) -> Vec<(ObjectRef, Listing)> {
    let from = installed.map_or(0, |i| i.entries().len());
    let current: Option<std::collections::HashSet<ContentId>> = match keep {
        Keep::All => None,
        Keep::Current => Some(
            index
                .current()
                .iter()
                .map(|(_, a)| a.bundle().sha256)
                .collect(),
        ),
    };
    index.entries()[from.min(index.entries().len())..]
        .iter()
        .filter_map(|e| match e {
            Entry::Add(a) => Some(a),
            Entry::Retract { .. } => None,
        })
        .filter(|a| {
            current
                .as_ref()
                .is_none_or(|c| c.contains(&a.bundle().sha256))
        })
        .map(|a| (a.bundle(), Listing::of_entry(a)))
        .collect()
}

/// Every piece a head lists: the pieces covering the log, and the newest batch (which a
/// client holding the previous index fetches instead of the merged pieces).
fn listed_pieces(head: &index::Head) -> Vec<PieceRef> {
    let log = head.log();
    let mut pieces = log.pieces().to_vec();
    if !pieces.contains(log.batch()) {
        pieces.push(*log.batch());
    }
    pieces
}

/// Installs a hash-checked temp file at `dest` unless something is already there: fsync, hard
/// link (which, unlike rename, refuses to replace), fsync the folder. The temp name goes when
/// `object` drops. Concurrent installers of one object all succeed; exactly one sees `New`.
fn install_no_clobber(object: VerifiedObject, dest: &Path) -> Result<Installed, StoreError> {
    fs::File::open(object.path())
        .and_then(|f| f.sync_all())
        .map_err(StoreError::io(object.path()))?;
    match fs::hard_link(object.path(), dest) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Installed::AlreadyPresent),
        Err(e) => return Err(StoreError::io(dest)(e)),
    }
    index::atomic::sync_parent(dest).map_err(StoreError::io(dest))?;
    Ok(Installed::New)
}

/// Checks a `.minisig` (size cap, UTF-8, signature over `data` by `publisher`); returns it.
fn check_minisig<'a>(
    publisher: &(impl crate::keys::Trusted + ?Sized),
    bundle: ContentId,
    data: impl io::Read,
    bytes: &'a [u8],
) -> Result<&'a [u8], StoreError> {
    let refuse = |reason: String| StoreError::Minisig { bundle, reason };
    if bytes.len() as u64 > MAX_MINISIG_BYTES {
        return Err(refuse(format!("larger than {MAX_MINISIG_BYTES} bytes")));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| refuse("not UTF-8 text".into()))?;
    crate::keys::minisig::verify_file(publisher, data, text).map_err(|e| refuse(e.to_string()))?;
    Ok(bytes)
}

/// Rollback from the tracker becomes the store's own "older index" refusal.
fn map_index_error(e: IndexError) -> StoreError {
    match e {
        IndexError::Rollback { held, offered } => StoreError::OlderIndex { held, offered },
        other => StoreError::Index(other),
    }
}

fn list_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    match fs::read_dir(dir) {
        Ok(read) => Ok(read
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io(dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Keep::All, IndexLimits::default()).unwrap();
        (dir, store)
    }

    #[test]
    fn open_creates_the_layout_and_removes_only_stale_temp_files() {
        let (dir, store) = store();
        assert!(dir.path().join("qasid/v1/publishers").is_dir());
        let fresh = store.tmp_dir().join("fresh");
        let old = store.tmp_dir().join("old");
        fs::write(&fresh, b"x").unwrap();
        fs::write(&old, b"x").unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        drop(store);
        let _store = Store::open(dir.path(), Keep::All, IndexLimits::default()).unwrap();
        assert!(fresh.exists(), "a live writer's temp file survives");
        assert!(!old.exists(), "a crashed writer's temp file is removed");
    }

    #[test]
    fn the_cache_keeps_only_small_immutable_objects_within_its_budget() {
        let (_dir, store) = store();
        let pid: PublisherId = "11".repeat(32).parse().unwrap();
        let index = ObjectKind::Index;
        store.remember(&pid, &index, bytes::Bytes::from_static(b"{}"));
        assert!(store.cached(&pid, &index).is_none());
        let big = ObjectKind::Bundle(ContentId::of_bytes(b"big"));
        store.remember(
            &pid,
            &big,
            bytes::Bytes::from(vec![0u8; CACHE_MAX_OBJECT as usize + 1]),
        );
        assert!(store.cached(&pid, &big).is_none());
        let chunk = CACHE_MAX_OBJECT as usize;
        let n = CACHE_TOTAL / chunk + 4;
        for i in 0..n {
            let kind = ObjectKind::Bundle(ContentId::of_bytes(&i.to_le_bytes()));
            store.remember(&pid, &kind, bytes::Bytes::from(vec![1u8; chunk]));
        }
        let cache = store.cache.lock().unwrap();
        assert!(cache.bytes <= CACHE_TOTAL);
        assert_eq!(cache.map.len(), CACHE_TOTAL / chunk);
        let first = ObjectKind::Bundle(ContentId::of_bytes(&0usize.to_le_bytes()));
        assert!(
            !cache.map.contains_key(&(pid, first)),
            "oldest evicted first"
        );
    }
}
