//! The publisher's folder, which is also a complete static mirror (`qasid/v1/...`).
//!
//! Owns every write into a repo: bundles stored by sha256, immutable index pieces, and the
//! signed head `index.json`. Every file is written to a private temp folder (`.qasid/tmp`,
//! never part of the served layout), fsynced and renamed into place, and `index.json` is
//! always written last, so a server serving the folder never serves a head whose files are
//! missing, even if `publish` is killed. It never overwrites a stored object, never rehashes
//! stored bundles, and never signs over an `index.json` that does not verify with the key.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::bundle::BundleError;
use crate::content_id::ContentId;
use crate::index::layout::{on_disk, PublisherLayout};
use crate::index::{
    atomic, update_from_dir, ArticleFields, ArticleVersion, EncodedPiece, Entry, Head, HeadFields,
    Index, IndexError, LogRef, MirrorUrl, PieceRef, SignedHead, Tracker,
};
use crate::keys::{KeyId, PublicKey, Role, SecretKey, Trusted};
use crate::limits::{BundleLimits, IndexLimits, PUBLISH_LOCK_WAIT};
use crate::roots::{Chain, ChainStorage};
use crate::ErrorClass;

mod note;
mod pieces;
mod stage;

/// Shortest `--expires`: a head must outlive the time mirrors take to copy it.
const MIN_EXPIRY: Duration = Duration::from_secs(60);
/// Longest `--expires`. A longer validity lets a censor freeze readers on old news for longer
/// before they are warned; a year is already generous for a publisher without cron.
const MAX_EXPIRY: Duration = Duration::from_secs(366 * 24 * 3600);

/// Folder, under the repo root, for the lock and temp files: not part of the served layout.
pub const PRIVATE_DIR: &str = ".qasid";

/// Why a publish was refused or failed. Nothing was signed when any of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("another `qasid publish` holds the lock on {}; try again when it finishes", path.display())]
    Locked { path: PathBuf },
    #[error(
        "the repo's index.json does not verify with this key, refusing to sign over it \
         (wrong --key or --repo, or a damaged repo)"
    )]
    CurrentIndex {
        #[source]
        source: Box<IndexError>,
    },
    #[error("{}", path.display())]
    Bundle {
        path: PathBuf,
        #[source]
        source: BundleError,
    },
    #[error("{}: larger than the {limit}-byte bundle limit", path.display())]
    BundleTooLarge { path: PathBuf, limit: u64 },
    #[error("{}: does not verify with the key", path.display())]
    Minisig {
        path: PathBuf,
        #[source]
        source: crate::keys::KeyError,
    },
    #[error("{}: larger than the {limit}-byte limit for minisig files", path.display())]
    MinisigTooLarge { path: PathBuf, limit: u64 },
    #[error("{}: cannot be listed in the index", path.display())]
    Unlistable {
        path: PathBuf,
        #[source]
        source: Box<IndexError>,
    },
    #[error(
        "{name} v{version} is already published as bundle {existing}; publish a correction \
         as a higher version"
    )]
    VersionConflict {
        name: String,
        version: u64,
        existing: ContentId,
    },
    #[error(
        "{name} v{version} is older than the published v{latest}; publish corrections as a \
         higher version"
    )]
    OlderVersion {
        name: String,
        version: u64,
        latest: u64,
    },
    #[error(
        "key {found} may not sign the index of publisher {expected} in this repo (not its key, \
         and not a signing key its current root delegates for index heads)"
    )]
    KeyMismatch { expected: KeyId, found: KeyId },
    #[error(transparent)]
    Root(#[from] crate::roots::RootError),
    #[error("the new index would be invalid")]
    NewIndex {
        #[source]
        source: Box<IndexError>,
    },
    #[error("cannot retract {name:?}: it is not in the current listing")]
    NotListed { name: String },
    #[error("nothing is published in this repo yet: publish a bundle first")]
    NothingPublished,
    #[error("{url} is already in the signed mirror list")]
    MirrorAlreadyListed { url: MirrorUrl },
    #[error("{url} is not in the signed mirror list ({listed})")]
    MirrorNotListed { url: MirrorUrl, listed: String },
    #[error("--expires must be between 1 minute and 366 days")]
    BadExpiry,
    /// `--note-out` with a key the publisher's current root does not delegate for notes.
    #[error(
        "key {key} may not sign mirror notes for publisher {publisher}: root {root} does not \
         delegate it the note role (run `qasid root rotate --signing-key KEY.pub --roles \
         bundle,index,note`, sign and install the root, or sign with a key that has the note role)"
    )]
    NoNoteRole {
        key: KeyId,
        publisher: KeyId,
        root: u64,
    },
    /// `--note-out` when the signed index lists no mirror.
    #[error(
        "the signed index lists no mirror, so there is nothing to put in a note: add mirrors \
         with --mirror or --add-mirror"
    )]
    NoMirrorsForNote,
    #[error(transparent)]
    Note(#[from] crate::note::NoteError),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RepoError {
    pub fn class(&self) -> ErrorClass {
        match self {
            RepoError::Locked { .. } | RepoError::Io { .. } => ErrorClass::Runtime,
            RepoError::Root(e) => e.class(),
            RepoError::CurrentIndex { source } => match source.class() {
                ErrorClass::Runtime => ErrorClass::Runtime,
                _ => ErrorClass::Verification,
            },
            RepoError::Bundle { source, .. } => source.class(),
            RepoError::Minisig { source, .. } => match source.class() {
                ErrorClass::Runtime => ErrorClass::Runtime,
                _ => ErrorClass::Verification,
            },
            RepoError::BundleTooLarge { .. } | RepoError::MinisigTooLarge { .. } => {
                ErrorClass::Verification
            }
            RepoError::Unlistable { .. }
            | RepoError::VersionConflict { .. }
            | RepoError::OlderVersion { .. }
            | RepoError::NotListed { .. }
            | RepoError::KeyMismatch { .. }
            | RepoError::NewIndex { .. }
            | RepoError::NothingPublished
            | RepoError::MirrorAlreadyListed { .. }
            | RepoError::MirrorNotListed { .. }
            | RepoError::BadExpiry
            | RepoError::NoNoteRole { .. }
            | RepoError::NoMirrorsForNote => ErrorClass::Usage,
            RepoError::Note(e) => e.class(),
        }
    }
}

/// What to publish. Bundles and retractions may be combined into one publish.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// Bundle files to add (each verified against the key; already present ones are skipped).
    pub bundles: Vec<PathBuf>,
    /// Names to drop from the current listing.
    pub retract: Vec<String>,
    /// Sign a new head even if nothing else changes (new sequence and expiry): for cron.
    pub refresh: bool,
    /// Replace the signed mirror list; `None` keeps the current one.
    pub mirrors: Option<Vec<MirrorUrl>>,
    /// How long the new head is valid.
    pub expires_in: Duration,
    /// The time to sign as `issued`.
    pub now: SystemTime,
}

/// Single changes to the signed mirror list, applied to the current list (or to `mirrors`,
/// if the request replaces it). A change alone is enough to sign a new index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorEdit {
    /// Mirrors to append; each must not be listed yet.
    pub add: Vec<MirrorUrl>,
    /// Mirrors to drop; each must be listed.
    pub remove: Vec<MirrorUrl>,
}

impl MirrorEdit {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    /// `list` with this edit applied: removals first, then additions at the end.
    fn apply(&self, mut list: Vec<MirrorUrl>) -> Result<Vec<MirrorUrl>, RepoError> {
        for url in &self.remove {
            let Some(at) = list.iter().position(|m| m == url) else {
                let listed = if list.is_empty() {
                    "the list is empty".to_owned()
                } else {
                    let names: Vec<&str> = list.iter().map(|m| m.as_str()).collect();
                    format!("listed: {}", names.join(" "))
                };
                return Err(RepoError::MirrorNotListed {
                    url: url.clone(),
                    listed,
                });
            };
            list.remove(at);
        }
        for url in &self.add {
            if list.contains(url) {
                return Err(RepoError::MirrorAlreadyListed { url: url.clone() });
            }
            list.push(url.clone());
        }
        Ok(list)
    }
}

/// What happened to one input bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleStatus {
    /// Added to the log in this publish.
    Added,
    /// The same bytes are already listed: nothing to do.
    AlreadyPublished,
}

#[derive(Debug, Clone)]
pub struct PublishedBundle {
    pub path: PathBuf,
    pub name: String,
    pub version: u64,
    pub sha256: ContentId,
    pub size: u64,
    pub status: BundleStatus,
}

/// The result of [`Repo::publish`].
#[derive(Debug)]
pub struct PublishReport {
    pub bundles: Vec<PublishedBundle>,
    pub retracted: Vec<String>,
    /// The new signed head, or `None` when there was nothing to publish (nothing was signed).
    pub signed: Option<SignedHead>,
    /// The head that was current before (after this call, if nothing was published).
    pub previous_sequence: Option<u64>,
    /// Piece files written by this publish (the batch piece and any merged pieces).
    pub pieces_written: Vec<PieceRef>,
}

/// A publisher's folder in a repo root.
#[derive(Debug)]
pub struct Repo {
    root: PathBuf,
    publisher: PublicKey,
    layout: PublisherLayout,
    index_limits: IndexLimits,
    bundle_limits: BundleLimits,
}

impl Repo {
    pub fn new(
        root: &Path,
        publisher: &PublicKey,
        index_limits: IndexLimits,
        bundle_limits: BundleLimits,
    ) -> Self {
        Self {
            root: root.to_owned(),
            publisher: publisher.clone(),
            layout: PublisherLayout::new(publisher),
            index_limits,
            bundle_limits,
        }
    }

    /// The repo of the publisher whose signing key is `key`: the publisher in `root` whose
    /// current root delegates `key` for index heads, else the one-key publisher `key` itself.
    pub fn for_key(
        root: &Path,
        key: &PublicKey,
        index_limits: IndexLimits,
        bundle_limits: BundleLimits,
    ) -> Result<Self, RepoError> {
        let publishers = on_disk(
            root,
            &format!("{}/publishers", crate::index::layout::PREFIX),
        );
        let mut found = None;
        if let Ok(dir) = fs::read_dir(&publishers) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(id) = hex::decode(&name)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .and_then(|b| PublicKey::from_raw(&b).ok())
                else {
                    continue;
                };
                if !entry.path().join("roots").is_dir() {
                    continue;
                }
                let chain = Chain::open(&id, Some(roots_storage(root, &id)))?;
                let authority = chain.authority(SystemTime::now());
                let delegated_once = chain
                    .roots()
                    .iter()
                    .any(|r| r.body().signing_keys.iter().any(|d| &d.key == key));
                if authority.signers(Role::Index).contains(key) || delegated_once {
                    found = Some(id);
                }
            }
        }
        let id = found.unwrap_or_else(|| key.clone());
        Ok(Self::new(root, &id, index_limits, bundle_limits))
    }

    fn path(&self, relative: &str) -> PathBuf {
        on_disk(&self.root, relative)
    }

    /// The publisher's chain of roots in this repo (empty for a one-key publisher).
    pub fn chain(&self) -> Result<Chain, RepoError> {
        Ok(Chain::open(
            &self.publisher,
            Some(roots_storage(&self.root, &self.publisher)),
        )?)
    }

    /// The verified current index, or `None` if this publisher has published nothing here.
    pub fn current(&self) -> Result<Option<Index>, RepoError> {
        if !self.path(&self.layout.index()).exists() {
            return Ok(None);
        }
        // The publisher's own index loads whichever key of its roots signed it, so that after a
        // rotation the new key can sign over an index the dropped key signed.
        let signers = self.chain()?.every_signer();
        let mut tracker = Tracker::ephemeral(&signers, self.index_limits.clone());
        update_from_dir(&mut tracker, &self.root, SystemTime::now()).map_err(|source| {
            RepoError::CurrentIndex {
                source: Box::new(source),
            }
        })?;
        Ok(tracker.into_held())
    }

    /// Publishes `request` signed with `key` (whose public half must be this repo's publisher).
    pub fn publish(
        &self,
        key: &SecretKey,
        request: &PublishRequest,
    ) -> Result<PublishReport, RepoError> {
        self.publish_editing_mirrors(key, request, &MirrorEdit::default())
    }

    /// [`Repo::publish`], also adding and removing single mirrors in the signed list. An edit
    /// that changes the list signs a new index even without new bundles.
    ///
    /// A failed publish leaves the folder as it found it: inputs are checked before anything
    /// is created, and folders this call created (the repo itself, its private folder, the
    /// publisher's folders) are removed again when it fails.
    pub fn publish_editing_mirrors(
        &self,
        key: &SecretKey,
        request: &PublishRequest,
        edit: &MirrorEdit,
    ) -> Result<PublishReport, RepoError> {
        let authority = self.chain()?.authority(request.now);
        if !authority.signers(Role::Index).contains(key.public()) {
            return Err(RepoError::KeyMismatch {
                expected: self.publisher.id(),
                found: key.public().id(),
            });
        }
        if !(MIN_EXPIRY..=MAX_EXPIRY).contains(&request.expires_in) {
            return Err(RepoError::BadExpiry);
        }
        for input in &request.bundles {
            check_input_file(input)?;
        }
        // Declared before everything it may have to clean up after, so it is dropped last.
        let mut created = CreatedDirs::default();
        let tmp_dir = self.prepare_dirs(&mut created)?;
        created.hold(self.lock()?);
        clear_temp_files(&tmp_dir);
        let current = self.current()?;
        let entries = current.as_ref().map_or(&[][..], |c| c.entries());
        if current.is_none() && request.bundles.is_empty() && (request.refresh || !edit.is_empty())
        {
            return Err(RepoError::NothingPublished);
        }
        let previous = current.as_ref().map(|c| c.signed());
        let previous_mirrors = previous.map_or(Vec::new(), |p| p.head().mirrors().to_vec());
        let mirrors = edit.apply(
            request
                .mirrors
                .clone()
                .unwrap_or_else(|| previous_mirrors.clone()),
        )?;
        let mirrors_changed = previous.is_some() && mirrors != previous_mirrors;

        let mut plan = pieces::NewEntries::new(entries);
        let mut staged = Vec::new();
        let mut report_bundles = Vec::new();
        for input in &request.bundles {
            let bundle = stage::stage(input, &tmp_dir, &authority, &self.bundle_limits)?;
            let m = bundle.verified.manifest();
            let article = ArticleVersion::new(
                ArticleFields {
                    name: m.name().to_owned(),
                    version: m.version(),
                    title: m.title().to_owned(),
                    date: m.created().to_owned(),
                    language: m.language().to_owned(),
                    author: m.author().to_owned(),
                    bundle: bundle.object,
                },
                &self.index_limits,
            )
            .and_then(|a| match &bundle.chunks {
                Some(list) => a.with_chunks(crate::index::ObjectRef::of_bytes(&list.encode())),
                None => Ok(a),
            })
            .map_err(|source| RepoError::Unlistable {
                path: input.clone(),
                source: Box::new(source),
            })?;
            let status = plan.add(article)?;
            report_bundles.push(PublishedBundle {
                path: input.clone(),
                name: m.name().to_owned(),
                version: m.version(),
                sha256: bundle.sha256(),
                size: bundle.object.size,
                status,
            });
            staged.push(bundle);
        }
        for name in &request.retract {
            plan.retract(name)?;
        }
        let new_entries = plan.into_entries();
        if new_entries.is_empty() && !request.refresh && !mirrors_changed {
            created.keep();
            return Ok(PublishReport {
                bundles: report_bundles,
                retracted: Vec::new(),
                signed: None,
                previous_sequence: current.map(|c| c.head().sequence()),
                pieces_written: Vec::new(),
            });
        }

        // Bundles (and their chunk lists) first, then pieces, then the head: nothing the head
        // names can be missing.
        for bundle in staged {
            let sha = bundle.sha256();
            if let Some(list) = &bundle.chunks {
                let bytes = list.encode();
                let relative = self.layout.chunks(&ContentId::of_bytes(&bytes));
                self.write_file(&tmp_dir, &relative, |p| !p.exists(), &bytes)?;
            }
            bundle.persist(
                &self.path(&self.layout.bundle(&sha)),
                &self.path(&self.layout.minisig(&sha)),
            )?;
        }
        let (log, written) = match &current {
            Some(c) if new_entries.is_empty() => (c.head().log().clone(), Vec::new()),
            _ => self.write_pieces(&tmp_dir, current.as_ref(), &new_entries)?,
        };
        let head = Head::new(
            HeadFields {
                publisher: self.publisher.clone(),
                sequence: previous.map_or(1, |p| p.head().sequence() + 1),
                issued: request.now,
                expires: request.now + request.expires_in,
                previous: previous.map(|p| *p.id()),
                mirrors,
                log,
            },
            &self.index_limits,
        )
        .map_err(|source| RepoError::NewIndex {
            source: Box::new(source),
        })?;
        let signed =
            SignedHead::sign_for(head, key, &authority).map_err(|source| RepoError::NewIndex {
                source: Box::new(source),
            })?;
        self.write_file(
            &tmp_dir,
            &self.layout.publisher_pub(),
            |p| !p.exists(),
            self.publisher.to_file_text().as_bytes(),
        )?;
        self.write_file(&tmp_dir, &self.layout.index(), |_| true, signed.envelope())?;
        created.keep();
        Ok(PublishReport {
            bundles: report_bundles,
            retracted: request.retract.clone(),
            previous_sequence: previous.map(|p| p.head().sequence()),
            signed: Some(signed),
            pieces_written: written,
        })
    }

    /// Writes the batch piece and the pieces the merge rule produces; returns the new log.
    fn write_pieces(
        &self,
        tmp_dir: &Path,
        current: Option<&Index>,
        new_entries: &[Entry],
    ) -> Result<(LogRef, Vec<PieceRef>), RepoError> {
        let old_entries = current.map_or(&[][..], |c| c.entries());
        let old_pieces = current.map_or(&[][..], |c| c.head().log().pieces());
        let batch = EncodedPiece::new(&self.publisher, old_entries.len() as u64, new_entries);
        let layout = pieces::merge(
            &self.publisher,
            old_entries,
            old_pieces,
            new_entries,
            &batch,
        );
        let mut written = Vec::new();
        for piece in layout.new_pieces.iter().chain([&batch]) {
            let relative = self.layout.piece(&piece.reference.sha256);
            if self.write_file(tmp_dir, &relative, |p| !p.exists(), &piece.bytes)? {
                written.push(piece.reference);
            }
        }
        let total = (old_entries.len() + new_entries.len()) as u64;
        let log = LogRef::new(total, layout.pieces, batch.reference, &self.index_limits).map_err(
            |source| RepoError::NewIndex {
                source: Box::new(source),
            },
        )?;
        Ok((log, written))
    }

    /// Atomically writes `bytes` to a layout path if `should(path)`; says whether it wrote.
    fn write_file(
        &self,
        tmp_dir: &Path,
        relative: &str,
        should: impl Fn(&Path) -> bool,
        bytes: &[u8],
    ) -> Result<bool, RepoError> {
        let path = self.path(relative);
        if !should(&path) {
            return Ok(false);
        }
        atomic::write(tmp_dir, &path, bytes).map_err(|source| RepoError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(true)
    }

    /// Creates the layout folders and the private temp folder, recording in `created` those
    /// that did not exist; returns the temp folder.
    fn prepare_dirs(&self, created: &mut CreatedDirs) -> Result<PathBuf, RepoError> {
        let tmp = self.root.join(PRIVATE_DIR).join("tmp");
        for dir in [
            tmp.clone(),
            self.path(&self.layout.pieces_dir()),
            self.path(&self.layout.bundles_dir()),
            self.path(&self.layout.chunks_dir()),
        ] {
            created.create(&dir)?;
        }
        created.lock_file = Some(self.root.join(PRIVATE_DIR).join("lock"))
            .filter(|_| created.dirs.contains(&self.root.join(PRIVATE_DIR)));
        Ok(tmp)
    }

    /// Takes the repo's publish lock (released when the file is dropped, or the process dies),
    /// waiting [`PUBLISH_LOCK_WAIT`] for it at most.
    fn lock(&self) -> Result<File, RepoError> {
        let path = self.root.join(PRIVATE_DIR).join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| RepoError::Io {
                path: path.clone(),
                source,
            })?;
        let deadline = std::time::Instant::now() + PUBLISH_LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => return Err(RepoError::Locked { path }),
                Err(TryLockError::Error(source)) => return Err(RepoError::Io { path, source }),
            }
        }
    }
}

/// Where a repo keeps a publisher's roots: in the served layout, with temp files and evidence
/// in the repo's private folder.
pub fn roots_storage(root: &Path, publisher: &PublicKey) -> ChainStorage {
    let layout = PublisherLayout::new(publisher);
    ChainStorage {
        dir: on_disk(root, &layout.roots_dir()),
        tmp: root.join(PRIVATE_DIR).join("tmp"),
        evidence: root.join(PRIVATE_DIR).join("evidence"),
    }
}

/// Checks that a bundle to publish is a file that can be opened, before anything is created.
fn check_input_file(input: &Path) -> Result<(), RepoError> {
    let io_err = |source| RepoError::Io {
        path: input.to_owned(),
        source,
    };
    let meta = fs::metadata(input).map_err(io_err)?;
    if !meta.is_file() {
        return Err(io_err(std::io::Error::other("not a file")));
    }
    File::open(input).map_err(io_err)?;
    Ok(())
}

/// The folders one publish created, removed again (innermost first, and only while empty)
/// unless the publish succeeds, so that a failed publish leaves nothing behind: no empty
/// publisher folder, no repo skeleton. The publish lock file goes too when this publish
/// created the private folder holding it (it is removed while still held, so no other publish
/// can have taken it).
#[derive(Debug, Default)]
struct CreatedDirs {
    dirs: Vec<PathBuf>,
    lock_file: Option<PathBuf>,
    /// The publish lock, released when this is dropped (after any clean-up).
    lock: Option<File>,
    keep: bool,
}

impl CreatedDirs {
    /// Creates `dir` and its missing parents, remembering which were missing.
    fn create(&mut self, dir: &Path) -> Result<(), RepoError> {
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            missing.push(d.to_owned());
            at = d.parent();
        }
        fs::create_dir_all(dir).map_err(|source| RepoError::Io {
            path: dir.to_owned(),
            source,
        })?;
        self.dirs.extend(missing.into_iter().rev());
        Ok(())
    }

    /// Holds the publish lock until the end of the publish.
    fn hold(&mut self, lock: File) {
        self.lock = Some(lock);
    }

    /// The publish succeeded (or had nothing to do): keep what was created.
    fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Some(lock) = &self.lock_file {
            let _ = fs::remove_file(lock);
        }
        for dir in self.dirs.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Removes temp files a killed publish left behind. Called with the lock held, so no other
/// publish is using them.
fn clear_temp_files(tmp_dir: &Path) {
    let Ok(read) = fs::read_dir(tmp_dir) else {
        return;
    };
    for entry in read.flatten() {
        let _ = fs::remove_file(entry.path());
    }
}
