//! Layout objects read from a bucket, for `qasid mirror --store s3://…` front ends: several
//! stateless front ends over one bucket are one mirror.
//!
//! Owns what a front end trusts of a bucket, which is nothing until checked: a
//! content-addressed object (piece, bundle, chunk list) is served only once its bytes hashed to its name;
//! `index.json` and `note` only once their signature verified against the publisher's
//! authority (its roots, read from the bucket and chained from the trusted key); a root only
//! once it chained; a `.minisig` only once it verified over its (hash-checked) bundle;
//! `publisher.pub` only if it is the trusted key's file. A mismatch is logged, counted in
//! `/metrics` and answered with an error, never served. Verified small objects are kept in a
//! bounded LRU cache ([`ObjectCache`]), immutable ones for good; `index.json` and `note` are
//! re-read at most every `refresh` (a conditional GET on the bucket's ETag, so an unchanged
//! head costs a 304), and never replaced by an older sequence. Objects too large for the cache
//! are spooled to an unnamed temp file while hashed, a bounded number at a time, and served
//! from it only once the hash matched. Pages read the same way: [`BucketSource::index`] is the
//! verified index of the served head, built from pieces read through the cache. It never
//! writes to the bucket (pushes go through the store).

use std::collections::HashMap;
use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use super::metrics::Metrics;
use super::object_cache::{CacheLimits, ObjectCache};
use crate::bucket::{Bucket, BucketError, Changed};
use crate::content_id::ContentId;
use crate::index::layout::PublisherLayout;
use crate::index::{Index, IndexError, Offer, SignedHead, Tracker};
use crate::keys::PublicKey;
use crate::limits::{FrontEndLimits, IndexLimits, MAX_ROOT_VERSIONS};
use crate::roots::Chain;
use crate::store::{ObjectKind, PublisherId, MAX_MINISIG_BYTES};

/// How a front end reads a bucket.
#[derive(Debug, Clone)]
pub struct BucketSettings {
    /// Cache bounds, head refresh, spools.
    pub limits: FrontEndLimits,
    /// Largest object read (bundles; the others have smaller caps of their own).
    pub max_object_bytes: u64,
    /// Where objects too large for the cache are spooled (unnamed temp files).
    pub spool_dir: PathBuf,
}

/// What reading an object gave.
#[derive(Debug)]
pub enum Loaded {
    Missing,
    /// Verified bytes.
    Whole(Bytes),
    /// A verified large object in an unnamed temp file (at offset 0), with its length.
    Large(std::fs::File, u64),
}

/// Why an object could not be served.
#[derive(Debug, thiserror::Error)]
pub enum BucketReadError {
    /// The bucket holds bytes that fail verification: never served.
    #[error("the bucket's {what} failed verification: {reason}")]
    Corrupt { what: &'static str, reason: String },
    /// The bucket could not be read (network, credentials, a node down past quorum).
    #[error("reading the bucket: {0}")]
    Storage(String),
}

/// A verified mutable object (`index.json`, `note`) and when the bucket was last asked.
struct Head {
    bytes: Bytes,
    /// The bucket's ETag of these bytes, for the next conditional GET.
    etag: Option<String>,
    checked: Instant,
    sequence: u64,
}

/// One mutable object's slot: its refreshes are serialised (one request asks the bucket, the
/// others wait and take its answer).
#[derive(Default)]
struct HeadSlot(tokio::sync::Mutex<Option<Head>>);

/// A publisher's verified index as pages see it: the tracker that checked it (so a new head
/// needs only its new pieces) and the index it holds, shared with requests.
struct HeldIndex {
    tracker: Tracker,
    index: Option<Arc<Index>>,
    /// The root version the tracker's authority came from: another one means a rotation, and
    /// a tracker built on the new authority.
    root_version: u64,
}

type IndexSlot = Arc<tokio::sync::Mutex<Option<HeldIndex>>>;

/// Layout objects read from one bucket under one prefix.
pub struct BucketSource {
    bucket: Bucket,
    settings: BucketSettings,
    index_limits: IndexLimits,
    metrics: Arc<Metrics>,
    /// Verified immutable objects. A std `Mutex`: held for a map update only.
    cache: Mutex<ObjectCache<(PublisherId, ObjectKind)>>,
    heads: Mutex<HashMap<(PublisherId, ObjectKind), Arc<HeadSlot>>>,
    /// Each publisher's chain of roots as read from the bucket (re-read when a head does not
    /// verify against it, which is what a key rotation looks like).
    chains: Mutex<HashMap<PublisherId, Arc<Chain>>>,
    /// Each publisher's verified index for pages; its updates are serialised per publisher.
    indexes: Mutex<HashMap<PublisherId, IndexSlot>>,
    spools: Semaphore,
}

impl BucketSource {
    pub fn new(bucket: Bucket, settings: BucketSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            bucket,
            cache: Mutex::new(ObjectCache::new(CacheLimits {
                max_bytes: settings.limits.cache_bytes,
                max_entries: settings.limits.cache_entries,
            })),
            spools: Semaphore::new(settings.limits.max_spools.max(1)),
            settings,
            index_limits: IndexLimits::default(),
            metrics,
            heads: Mutex::new(HashMap::new()),
            chains: Mutex::new(HashMap::new()),
            indexes: Mutex::new(HashMap::new()),
        }
    }

    /// Objects and bytes in the verified-object cache.
    pub fn cache_usage(&self) -> (usize, u64) {
        lock(&self.cache).usage()
    }

    /// Reads, verifies and returns an object of `publisher` (trusted by the caller).
    pub async fn load(
        &self,
        publisher: &PublicKey,
        kind: ObjectKind,
    ) -> Result<Loaded, BucketReadError> {
        let pid = PublisherId::of(publisher);
        if kind.is_immutable() {
            if let Some(bytes) = lock(&self.cache).get(&(pid, kind)) {
                self.metrics.bucket_read("cache_hit");
                return Ok(Loaded::Whole(bytes));
            }
        }
        let result = match kind {
            ObjectKind::Index | ObjectKind::Note => self.head(publisher, kind).await,
            ObjectKind::Piece(id) | ObjectKind::Bundle(id) | ObjectKind::Chunks(id) => {
                let cap = match kind {
                    ObjectKind::Piece(_) => self.index_limits.max_piece_bytes,
                    ObjectKind::Chunks(_) => crate::limits::MAX_CHUNK_LIST_BYTES,
                    _ => self.settings.max_object_bytes,
                };
                self.hashed(publisher, kind, id, cap).await
            }
            ObjectKind::Root(version) => self.root(publisher, version).await,
            ObjectKind::Minisig(bundle) => self.minisig(publisher, bundle).await,
            ObjectKind::PublisherPub => self.publisher_pub(publisher).await,
        };
        match &result {
            Err(BucketReadError::Corrupt { what, reason }) => {
                tracing::error!(
                    "bucket object {} of publisher {pid} refused: {what}: {reason}",
                    kind.label()
                );
                self.metrics.verification_failure("bucket_object");
            }
            Err(BucketReadError::Storage(e)) => tracing::warn!("reading the bucket: {e}"),
            Ok(Loaded::Whole(bytes)) if kind.is_immutable() => {
                lock(&self.cache).put((pid, kind), bytes.clone());
            }
            Ok(_) => {}
        }
        result
    }

    /// The publisher's index as this front end serves it: the verified `index.json` it holds
    /// (refreshed as for serving, never rolled back) with every entry of its pieces, each read
    /// through the verified-object cache and checked against the head. Rebuilt only when the
    /// head changes, from the pieces it lacks. `None` when the bucket holds no index. A head
    /// whose pieces do not check out is never shown: the index verified before keeps being.
    pub async fn index(
        &self,
        publisher: &PublicKey,
    ) -> Result<Option<Arc<Index>>, BucketReadError> {
        let envelope = match self.load(publisher, ObjectKind::Index).await? {
            Loaded::Whole(bytes) => bytes,
            Loaded::Missing => return Ok(None),
            Loaded::Large(..) => return Err(too_large(ObjectKind::Index, 0)),
        };
        let pid = PublisherId::of(publisher);
        let slot = lock(&self.indexes).entry(pid).or_default().clone();
        let mut held = slot.lock().await;
        if let Some(index) = held.as_ref().and_then(|h| h.index.as_ref()) {
            if index.signed().envelope() == &envelope[..] {
                return Ok(Some(index.clone()));
            }
        }
        let now = SystemTime::now();
        // `load` verified the head against the chain it holds (re-reading roots if needed).
        let chain = self.chain(publisher, false).await?;
        if held
            .as_ref()
            .is_some_and(|h| h.root_version != chain.version())
        {
            *held = None;
        }
        let state = held.get_or_insert_with(|| HeldIndex {
            tracker: Tracker::ephemeral(&chain.authority(now), self.index_limits.clone()),
            index: None,
            root_version: chain.version(),
        });
        if let Err(e) = self
            .update(publisher, &mut state.tracker, &envelope, now)
            .await
        {
            if let BucketReadError::Corrupt { what, reason } = &e {
                tracing::error!("the bucket's index of publisher {pid} refused: {what}: {reason}");
                self.metrics.verification_failure("bucket_object");
            }
            return match &state.index {
                Some(index) => Ok(Some(index.clone())),
                None => Err(e),
            };
        }
        let current = state.index.as_ref().map(|i| *i.signed().id());
        if state.tracker.held().map(|i| *i.signed().id()) != current {
            state.index = state.tracker.held().map(|i| Arc::new(i.clone()));
        }
        Ok(state.index.clone())
    }

    /// Offers `envelope` to `tracker` and supplies the pieces it asks for from the bucket.
    async fn update(
        &self,
        publisher: &PublicKey,
        tracker: &mut Tracker,
        envelope: &[u8],
        now: SystemTime,
    ) -> Result<(), BucketReadError> {
        let refused = |e: IndexError| corrupt(ObjectKind::Index, e.to_string());
        let update = match tracker.offer(envelope, now).map_err(refused)? {
            Offer::Unchanged | Offer::KeptFresher { .. } => return Ok(()),
            Offer::Update(mut pending) => {
                loop {
                    let needed = pending.needed().map_err(refused)?;
                    if needed.is_empty() {
                        break;
                    }
                    for piece in needed {
                        let kind = ObjectKind::Piece(piece.sha256);
                        let bytes = match self.load(publisher, kind).await? {
                            Loaded::Whole(bytes) => bytes.to_vec(),
                            Loaded::Large(file, _) => read_spooled(file, piece.size).await?,
                            // Written before the head that lists it: the bucket is incomplete
                            // (a writer's objects not all visible yet), not lying.
                            Loaded::Missing => {
                                return Err(BucketReadError::Storage(format!(
                                    "the index lists piece {} that the bucket does not hold",
                                    piece.sha256
                                )))
                            }
                        };
                        pending.supply(&piece, bytes).map_err(refused)?;
                    }
                }
                pending.finish().map_err(refused)?
            }
        };
        tracker.accept(update).map_err(refused)?;
        Ok(())
    }

    /// Whose signatures count on a bundle of `publisher`: every key its chain of roots (as the
    /// bucket holds it) ever delegated, as for a `.minisig`.
    pub async fn bundle_signers(
        &self,
        publisher: &PublicKey,
    ) -> Result<crate::roots::Authority, BucketReadError> {
        Ok(self.chain(publisher, false).await?.every_signer())
    }

    /// The path of `kind` relative to the layout root.
    fn relative(publisher: &PublicKey, kind: ObjectKind) -> String {
        let l = PublisherLayout::new(publisher);
        match kind {
            ObjectKind::Index => l.index(),
            ObjectKind::PublisherPub => l.publisher_pub(),
            ObjectKind::Note => l.note(),
            ObjectKind::Root(v) => l.root(v),
            ObjectKind::Piece(id) => l.piece(&id),
            ObjectKind::Bundle(id) => l.bundle(&id),
            ObjectKind::Minisig(id) => l.minisig(&id),
            ObjectKind::Chunks(id) => l.chunks(&id),
        }
    }

    /// GETs an object whole, at most `cap` bytes. `None` if absent.
    async fn get_small(
        &self,
        publisher: &PublicKey,
        kind: ObjectKind,
        cap: u64,
    ) -> Result<Option<Bytes>, BucketReadError> {
        self.metrics.bucket_read("get");
        self.bucket
            .get_bytes(&Self::relative(publisher, kind), cap)
            .await
            .map_err(|e| read_error(kind, e))
    }

    /// A piece or bundle: streamed from the bucket while hashed, kept in memory when the cache
    /// would keep it, else spooled to disk; returned only if its sha256 is `id`.
    async fn hashed(
        &self,
        publisher: &PublicKey,
        kind: ObjectKind,
        id: ContentId,
        cap: u64,
    ) -> Result<Loaded, BucketReadError> {
        self.metrics.bucket_read("get");
        let relative = Self::relative(publisher, kind);
        let download = match self.bucket.get(&relative, cap).await {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(Loaded::Missing),
            Err(e) => return Err(read_error(kind, e)),
        };
        let size = download.info.size;
        let in_memory = size <= lock(&self.cache).max_object();
        let _permit;
        let mut spool = if in_memory {
            None
        } else {
            _permit = self.spools.acquire().await.map_err(storage)?;
            let dir = self.settings.spool_dir.clone();
            let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
                .await
                .map_err(storage)?
                .map_err(storage)?;
            Some(file)
        };
        let mut bytes = Vec::new();
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut body = download.body;
        while let Some(chunk) = body.try_next().await.map_err(|e| read_error(kind, e))? {
            received += chunk.len() as u64;
            if received > size.min(cap) {
                return Err(too_large(kind, size.min(cap)));
            }
            hasher.update(&chunk);
            match spool.take() {
                None => bytes.extend_from_slice(&chunk),
                Some(mut file) => {
                    spool = Some(
                        tokio::task::spawn_blocking(move || file.write_all(&chunk).map(|()| file))
                            .await
                            .map_err(storage)?
                            .map_err(storage)?,
                    );
                }
            }
        }
        let actual = ContentId::from_digest(hasher);
        if actual != id {
            return Err(BucketReadError::Corrupt {
                what: kind.label(),
                reason: format!("its sha256 is {actual}, not the {id} it is named after"),
            });
        }
        match spool {
            None => Ok(Loaded::Whole(Bytes::from(bytes))),
            Some(mut file) => {
                let file = tokio::task::spawn_blocking(move || {
                    file.seek(SeekFrom::Start(0)).map(|_| file)
                })
                .await
                .map_err(storage)?
                .map_err(storage)?;
                Ok(Loaded::Large(file, received))
            }
        }
    }

    /// `index.json` or `note`: the held verified one while fresh, else a conditional GET; new
    /// bytes replace the held ones only if they verify and are not older.
    async fn head(
        &self,
        publisher: &PublicKey,
        kind: ObjectKind,
    ) -> Result<Loaded, BucketReadError> {
        let pid = PublisherId::of(publisher);
        let slot = lock(&self.heads).entry((pid, kind)).or_default().clone();
        let mut held = slot.0.lock().await;
        if let Some(h) = held.as_ref() {
            if h.checked.elapsed() < self.settings.limits.refresh {
                self.metrics.bucket_read("cache_hit");
                return Ok(Loaded::Whole(h.bytes.clone()));
            }
        }
        self.metrics.bucket_read("get");
        let cap = match kind {
            ObjectKind::Index => self.index_limits.max_head_bytes,
            _ => crate::limits::MAX_NOTE_TEXT_BYTES,
        };
        let etag = held.as_ref().and_then(|h| h.etag.clone());
        let asked = self
            .bucket
            .get_if_changed(&Self::relative(publisher, kind), cap, etag.as_deref())
            .await;
        let download = match asked {
            Ok(Changed::Changed(d)) => d,
            Ok(Changed::Unchanged) if held.is_some() => {
                let h = held.as_mut().expect("checked");
                h.checked = Instant::now();
                return Ok(Loaded::Whole(h.bytes.clone()));
            }
            Ok(Changed::Unchanged) => {
                return Err(BucketReadError::Storage(
                    "the bucket answered 304 to an unconditional GET".into(),
                ))
            }
            Ok(Changed::Missing) => {
                // Gone from the bucket: a mirror that lost its index serves none (as a folder
                // store would).
                *held = None;
                return Ok(Loaded::Missing);
            }
            Err(BucketError::TooLarge { .. }) => return Err(too_large(kind, cap)),
            Err(e) => {
                // The bucket is unreachable: keep serving the verified head rather than nothing.
                return match held.as_ref() {
                    Some(h) => {
                        tracing::warn!("re-reading {} from the bucket: {e}", kind.label());
                        Ok(Loaded::Whole(h.bytes.clone()))
                    }
                    None => Err(storage(e)),
                };
            }
        };
        let etag = download.info.etag.clone();
        let bytes: Vec<Bytes> = download
            .body
            .try_collect()
            .await
            .map_err(|e| read_error(kind, e))?;
        let bytes = Bytes::from(bytes.concat());
        let sequence = match self.verify_head(publisher, kind, &bytes).await {
            Ok(sequence) => sequence,
            Err(e) => {
                // A head that fails verification is never served; a verified one held keeps
                // being served (the next check asks the bucket again).
                let Some(h) = held.as_mut() else {
                    return Err(e);
                };
                tracing::error!(
                    "the bucket's {} of publisher {pid} refused ({e}): still serving the verified one",
                    kind.label()
                );
                self.metrics.verification_failure("bucket_object");
                h.checked = Instant::now();
                return Ok(Loaded::Whole(h.bytes.clone()));
            }
        };
        if let Some(h) = held.as_mut() {
            if sequence < h.sequence {
                tracing::error!(
                    "the bucket's {} of publisher {pid} went back from sequence {} to {sequence}: \
                     still serving {}",
                    kind.label(),
                    h.sequence,
                    h.sequence
                );
                self.metrics.verification_failure("bucket_rollback");
                h.checked = Instant::now();
                return Ok(Loaded::Whole(h.bytes.clone()));
            }
        }
        *held = Some(Head {
            bytes: bytes.clone(),
            etag,
            checked: Instant::now(),
            sequence,
        });
        Ok(Loaded::Whole(bytes))
    }

    /// Verifies a head against the publisher's authority (re-reading the roots once if it does
    /// not verify against the held chain); its sequence.
    async fn verify_head(
        &self,
        publisher: &PublicKey,
        kind: ObjectKind,
        bytes: &[u8],
    ) -> Result<u64, BucketReadError> {
        let mut reread = false;
        loop {
            let chain = self.chain(publisher, reread).await?;
            let authority = chain.authority(SystemTime::now());
            let verified = match kind {
                ObjectKind::Index => SignedHead::verify(bytes, &authority, &self.index_limits)
                    .map(|h| h.head().sequence())
                    .map_err(|e| e.to_string()),
                _ => crate::store::verify_note_text(bytes, &authority, SystemTime::now())
                    .map(|n| n.note().sequence)
                    .map_err(|e| e.to_string()),
            };
            match verified {
                Ok(sequence) => return Ok(sequence),
                Err(_) if !reread => reread = true,
                Err(reason) => {
                    return Err(BucketReadError::Corrupt {
                        what: kind.label(),
                        reason,
                    })
                }
            }
        }
    }

    /// The publisher's chain of roots as the bucket holds it: roots 1, 2, … each chaining onto
    /// the previous from the trusted key, up to the first missing one. A root that does not
    /// chain ends the chain there (and is never served).
    async fn chain(
        &self,
        publisher: &PublicKey,
        reread: bool,
    ) -> Result<Arc<Chain>, BucketReadError> {
        let pid = PublisherId::of(publisher);
        if !reread {
            if let Some(chain) = lock(&self.chains).get(&pid) {
                return Ok(chain.clone());
            }
        }
        let mut chain = Chain::open(publisher, None).map_err(|e| BucketReadError::Corrupt {
            what: "root",
            reason: e.to_string(),
        })?;
        for version in 1..=MAX_ROOT_VERSIONS {
            let cap = crate::limits::MAX_ROOT_BYTES;
            let Some(bytes) = self
                .get_small(publisher, ObjectKind::Root(version), cap)
                .await?
            else {
                break;
            };
            if let Err(e) = chain.offer(&bytes) {
                tracing::error!(
                    "the bucket's root {version} of publisher {pid} does not chain: {e}"
                );
                self.metrics.verification_failure("bucket_object");
                break;
            }
        }
        let chain = Arc::new(chain);
        lock(&self.chains).insert(pid, chain.clone());
        Ok(chain)
    }

    /// Root `version`: served only as the chain holds it.
    async fn root(&self, publisher: &PublicKey, version: u64) -> Result<Loaded, BucketReadError> {
        let mut chain = self.chain(publisher, false).await?;
        if version > chain.version() {
            // Perhaps a root published since: read the roots again.
            chain = self.chain(publisher, true).await?;
        }
        match chain.roots().get((version as usize).wrapping_sub(1)) {
            Some(root) => Ok(Loaded::Whole(Bytes::from(root.to_bytes()))),
            None => Ok(Loaded::Missing),
        }
    }

    /// A bundle's `.minisig`, verified over the bundle (itself hash-checked first).
    async fn minisig(
        &self,
        publisher: &PublicKey,
        bundle: ContentId,
    ) -> Result<Loaded, BucketReadError> {
        let kind = ObjectKind::Minisig(bundle);
        let Some(sig) = self.get_small(publisher, kind, MAX_MINISIG_BYTES).await? else {
            return Ok(Loaded::Missing);
        };
        let data = match Box::pin(self.load(publisher, ObjectKind::Bundle(bundle))).await? {
            Loaded::Missing => return Ok(Loaded::Missing),
            loaded => loaded,
        };
        let authority = self.chain(publisher, false).await?.every_signer();
        let text = std::str::from_utf8(&sig)
            .map_err(|_| corrupt(kind, "not UTF-8 text".into()))?
            .to_owned();
        tokio::task::spawn_blocking(move || {
            let result = match data {
                Loaded::Whole(b) => {
                    crate::keys::minisig::verify_file(&authority, &b[..], &text).map(|_| ())
                }
                Loaded::Large(file, _) => crate::keys::minisig::verify_file(
                    &authority,
                    std::io::BufReader::new(file),
                    &text,
                )
                .map(|_| ()),
                Loaded::Missing => unreachable!("checked above"),
            };
            result.map_err(|e| corrupt(kind, e.to_string()))
        })
        .await
        .map_err(storage)??;
        Ok(Loaded::Whole(sig))
    }

    /// `publisher.pub`: served only if it is the trusted key's own file.
    async fn publisher_pub(&self, publisher: &PublicKey) -> Result<Loaded, BucketReadError> {
        let want = publisher.to_file_text();
        let kind = ObjectKind::PublisherPub;
        match self.get_small(publisher, kind, 4096).await? {
            None => Ok(Loaded::Missing),
            Some(bytes) if bytes == want.as_bytes() => Ok(Loaded::Whole(bytes)),
            Some(_) => Err(corrupt(kind, "not the trusted key's file".into())),
        }
    }
}

/// The bytes of a verified object spooled to a temp file, at most `cap`.
async fn read_spooled(file: std::fs::File, cap: u64) -> Result<Vec<u8>, BucketReadError> {
    tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut bytes = Vec::new();
        file.take(cap).read_to_end(&mut bytes).map(|_| bytes)
    })
    .await
    .map_err(storage)?
    .map_err(storage)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn storage(e: impl std::fmt::Display) -> BucketReadError {
    BucketReadError::Storage(e.to_string())
}

/// A failed read: past its cap the bucket holds something no publisher signed (refused like a
/// hash mismatch); anything else is the bucket being unavailable.
fn read_error(kind: ObjectKind, e: BucketError) -> BucketReadError {
    match e {
        BucketError::TooLarge { limit, .. } => too_large(kind, limit),
        other => storage(other),
    }
}

fn corrupt(kind: ObjectKind, reason: String) -> BucketReadError {
    BucketReadError::Corrupt {
        what: kind.label(),
        reason,
    }
}

fn too_large(kind: ObjectKind, cap: u64) -> BucketReadError {
    corrupt(kind, format!("larger than the {cap}-byte limit"))
}
