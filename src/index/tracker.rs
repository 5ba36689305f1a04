//! The client's memory of a publisher's index, and the rules for accepting a new head.
//!
//! Owns rollback refusal, equivocation detection (with evidence files), the freshness choice
//! between two valid heads, and the incremental piece plan (download only what cannot be
//! rebuilt from entries already held). It never does network I/O: callers fetch what
//! [`PendingIndex::needed`] asks for (see `source`), so sync, mirrors and readers share it.
//!
//! State folder (one per publisher): `<state>/index/<pubkey-hex>/head.json` (the accepted
//! envelope, byte for byte) and `pieces/<sha256>.json` (its pieces). Evidence of equivocation
//! goes to `<state>/evidence/<pubkey-hex>-<sequence>-<case>/`, one folder per pair of conflicting
//! heads (`<case>` is derived from their two ids), at most `max_evidence_cases` folders and
//! `max_evidence_bytes` in all. The state is re-verified with the
//! trusted key whenever it is loaded: a [`Tracker`] reads and checks all of it when opened; a
//! [`LazyTracker`] checks the head's signature when opened and reads the pieces only when
//! something needs the entries (so an unchanged head costs one signature check, not a parse of
//! the whole log). The history rules are judged on the heads alone; entries are loaded only to
//! plan an update.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::content_id::ContentId;
use crate::index::fetch::{read_capped, FetchError};
use crate::index::head::{Freshness, SignedHead};
use crate::index::log::{decode_piece, encode_piece_refs, Entry, PieceRef};
use crate::index::{atomic, Index, IndexError};
use crate::keys::{PublicKey, Trusted};
use crate::limits::IndexLimits;
use crate::roots::Authority;

const HEAD_FILE: &str = "head.json";
const PIECES_DIR: &str = "pieces";

/// Where readers keep index state unless told otherwise: `$XDG_STATE_HOME/qasid`, else
/// `~/.local/state/qasid` (the XDG base directory default). `None` without a home folder.
pub fn default_state_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|home| home.join(".local").join("state"))
    })?;
    Some(base.join("qasid"))
}

/// How two signed heads contradict each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// Two different heads carry the same sequence number.
    SameSequence { sequence: u64 },
    /// The head right after the held one does not name it as `previous`.
    BrokenChain { sequence: u64 },
    /// The new log is shorter than the held one.
    LogShrank { held: u64, offered: u64 },
    /// The new log has a different entry at a position the held log already fixed.
    LogDiverged { entry: u64 },
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conflict::SameSequence { sequence } => {
                write!(f, "two different indexes with sequence {sequence}")
            }
            Conflict::BrokenChain { sequence } => write!(
                f,
                "index {sequence} does not chain to the index {} held",
                sequence - 1
            ),
            Conflict::LogShrank { held, offered } => {
                write!(f, "the log shrank from {held} to {offered} entries")
            }
            Conflict::LogDiverged { entry } => {
                write!(f, "the logs differ at entry {entry}")
            }
        }
    }
}

/// What [`Tracker::offer`] decided about an authentic head.
#[derive(Debug)]
pub enum Offer<'a> {
    /// Byte-identical to the held head: nothing to do.
    Unchanged,
    /// Newer but expired, while the held head is still fresh: the held one stays.
    KeptFresher { offered: Box<SignedHead> },
    /// Acceptable so far: fetch what the plan needs, then [`Tracker::accept`] it.
    Update(Box<PendingIndex<'a>>),
}

/// What an update did, for callers to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new head (and its entries) was accepted.
    Updated { from: Option<u64>, to: u64 },
    /// The offered head was the one already held.
    Unchanged,
    /// The offered head was newer but expired, and the fresher held head was kept.
    KeptFresher {
        offered: u64,
        expired_since: Duration,
    },
}

/// Where a tracker keeps its state; `None` for one-shot, in-memory verification.
#[derive(Debug)]
struct Storage {
    dir: PathBuf,
    evidence: PathBuf,
}

impl Storage {
    /// The error for stored state that no longer verifies.
    fn corrupt(&self, source: IndexError) -> IndexError {
        IndexError::StateCorrupt {
            path: self.dir.clone(),
            source: Box::new(source),
        }
    }
}

/// What the history rules decided about an authentic head (see [`Tracker::offer`]).
enum Verdict {
    Unchanged,
    KeptFresher(Box<SignedHead>),
    Update(Box<SignedHead>),
}

impl Verdict {
    /// The offer to return; an update is planned against `tracker`'s held index, which must be
    /// loaded.
    fn into_offer(self, tracker: &Tracker) -> Offer<'_> {
        match self {
            Verdict::Unchanged => Offer::Unchanged,
            Verdict::KeptFresher(offered) => Offer::KeptFresher { offered },
            Verdict::Update(offered) => Offer::Update(Box::new(PendingIndex::new(
                tracker,
                *offered,
                tracker.held(),
            ))),
        }
    }
}

/// The accepted index of one publisher, and the checks any newer one must pass.
#[derive(Debug)]
pub struct Tracker {
    /// The publisher id and the keys its current root delegates.
    publisher: Authority,
    limits: IndexLimits,
    storage: Option<Storage>,
    held: Option<Index>,
}

impl Tracker {
    /// Opens (creating if needed) the state for `publisher` under `state_dir`, re-verifying
    /// whatever is held there.
    pub fn open(
        state_dir: &Path,
        publisher: &(impl Trusted + ?Sized),
        limits: IndexLimits,
    ) -> Result<Self, IndexError> {
        LazyTracker::open(state_dir, publisher, limits)?.into_loaded()
    }

    /// A tracker that holds nothing and stores nothing: verifies one index from scratch.
    pub fn ephemeral(publisher: &(impl Trusted + ?Sized), limits: IndexLimits) -> Self {
        Self {
            publisher: Authority::of(publisher),
            limits,
            storage: None,
            held: None,
        }
    }

    pub fn publisher(&self) -> &PublicKey {
        self.publisher.publisher()
    }

    pub fn limits(&self) -> &IndexLimits {
        &self.limits
    }

    /// The accepted index, if any.
    pub fn held(&self) -> Option<&Index> {
        self.held.as_ref()
    }

    /// Consumes the tracker, returning the accepted index.
    pub fn into_held(self) -> Option<Index> {
        self.held
    }

    /// Reads and verifies the stored head, if any (not its pieces).
    fn load_head(&self) -> Result<Option<SignedHead>, IndexError> {
        let Some(storage) = &self.storage else {
            return Ok(None);
        };
        let head_path = storage.dir.join(HEAD_FILE);
        let file = match fs::File::open(&head_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(IndexError::io(&head_path)(e)),
        };
        let envelope = read_capped(file, self.limits.max_head_bytes)
            .map_err(|e| storage.corrupt(IndexError::Head(e)))?;
        match SignedHead::verify(&envelope, &self.publisher, &self.limits) {
            Ok(signed) => Ok(Some(signed)),
            // Signed by a key the publisher's current root no longer delegates (revoked or
            // expired): it was authentic when accepted, but nothing that key signed counts any
            // more, including for history. Forget it so the head the publisher re-signs with
            // its new key is accepted (a thief's higher sequence must not block it).
            Err(IndexError::BadSignature(_)) if self.publisher.version() > 0 => {
                tracing::warn!(
                    "the held index of publisher {} was signed by a key its root no longer \
                     delegates: forgetting it",
                    self.publisher().id()
                );
                Ok(None)
            }
            Err(e) => Err(storage.corrupt(e)),
        }
    }

    /// Reads and verifies the stored pieces of `signed`, the stored head.
    fn load_entries(&self, signed: SignedHead) -> Result<Index, IndexError> {
        let storage = self
            .storage
            .as_ref()
            .expect("a stored head implies storage");
        let corrupt = |source| storage.corrupt(source);
        let mut pending = PendingIndex::new(self, signed, None);
        // A fresh plan asks for every listed piece in its first round.
        for piece in pending.needed()? {
            let path = storage
                .dir
                .join(PIECES_DIR)
                .join(format!("{}.json", piece.sha256));
            let file = fs::File::open(&path).map_err(|e| corrupt(IndexError::io(&path)(e)))?;
            let bytes = read_capped(file, piece.size).map_err(|source| {
                corrupt(IndexError::Piece {
                    piece: piece.sha256,
                    source,
                })
            })?;
            pending.supply(&piece, bytes).map_err(corrupt)?;
        }
        let update = pending.finish().map_err(corrupt)?;
        Ok(Index {
            signed: update.offered,
            entries: update.tail,
        })
    }

    /// Checks an `index.json` envelope against the trusted key and the held history.
    ///
    /// Errors: signature and format failures, [`IndexError::Rollback`] for a lower sequence,
    /// [`IndexError::Equivocation`] (evidence saved) for a contradicting head.
    pub fn offer(&self, envelope: &[u8], now: SystemTime) -> Result<Offer<'_>, IndexError> {
        let held = self.held.as_ref().map(Index::signed);
        Ok(self.judge(held, envelope, now)?.into_offer(self))
    }

    /// The history rules: verifies `envelope` and judges it against the held head alone (the
    /// entries are needed only to plan an update).
    fn judge(
        &self,
        held: Option<&SignedHead>,
        envelope: &[u8],
        now: SystemTime,
    ) -> Result<Verdict, IndexError> {
        let offered = SignedHead::verify(envelope, &self.publisher, &self.limits)?;
        let Some(held) = held else {
            return Ok(Verdict::Update(Box::new(offered)));
        };
        let held_seq = held.head().sequence();
        let seq = offered.head().sequence();
        if seq < held_seq {
            return Err(IndexError::Rollback {
                held: held_seq,
                offered: seq,
            });
        }
        let equivocation = |conflict| self.equivocation(Some(held), &offered, conflict, &[]);
        if seq == held_seq {
            // Both are canonical, so equal heads are equal signed payloads; another signature
            // over the same head (only the key holder can make one) contradicts nothing.
            if offered.head() == held.head() {
                return Ok(Verdict::Unchanged);
            }
            return Err(equivocation(Conflict::SameSequence { sequence: seq }));
        }
        if seq == held_seq + 1 && offered.head().previous() != Some(held.id()) {
            return Err(equivocation(Conflict::BrokenChain { sequence: seq }));
        }
        let (held_entries, offered_entries) =
            (held.head().log().entries(), offered.head().log().entries());
        if offered_entries < held_entries {
            return Err(equivocation(Conflict::LogShrank {
                held: held_entries,
                offered: offered_entries,
            }));
        }
        let offered_stale = matches!(offered.head().freshness(now), Freshness::Expired { .. });
        if offered_stale && held.head().freshness(now) == Freshness::Fresh {
            return Ok(Verdict::KeptFresher(Box::new(offered)));
        }
        Ok(Verdict::Update(Box::new(offered)))
    }

    /// Stores a completed update (pieces first, head last) and makes it the held index.
    pub fn accept(&mut self, update: Update) -> Result<&Index, IndexError> {
        let held_id = self.held.as_ref().map(|h| *h.signed().id());
        if update.base != held_id {
            return Err(IndexError::Malformed {
                what: "index update",
                reason: "it was prepared against another held index".into(),
            });
        }
        if let Some(storage) = &self.storage {
            let pieces = storage.dir.join(PIECES_DIR);
            for (id, bytes) in &update.store {
                let path = pieces.join(format!("{id}.json"));
                if !path.exists() {
                    atomic::write(&storage.dir, &path, bytes).map_err(IndexError::io(&path))?;
                }
            }
            let head = storage.dir.join(HEAD_FILE);
            atomic::write(&storage.dir, &head, update.offered.envelope())
                .map_err(IndexError::io(&head))?;
            remove_unlisted_pieces(&pieces, update.offered.head().log().pieces());
        }
        let mut entries = self.held.take().map(|h| h.entries).unwrap_or_default();
        entries.extend(update.tail);
        Ok(self.held.insert(Index {
            signed: update.offered,
            entries,
        }))
    }

    /// Saves both heads (and any extra proof) and builds the error to return.
    fn equivocation(
        &self,
        held: Option<&SignedHead>,
        offered: &SignedHead,
        conflict: Conflict,
        extra: &[(String, &[u8])],
    ) -> IndexError {
        let evidence = match (&self.storage, held) {
            (Some(storage), Some(held)) => {
                match write_evidence(storage, &self.limits, held, offered, &conflict, extra) {
                    Ok(dir) => Some(dir),
                    Err(e) => {
                        tracing::error!("could not save equivocation evidence: {e}");
                        None
                    }
                }
            }
            _ => None,
        };
        IndexError::Equivocation {
            publisher: self.publisher().id(),
            conflict,
            evidence,
        }
    }
}

/// A stored [`Tracker`] that reads its entries only when first needed.
///
/// Opening verifies the held head's signature (a damaged or forged head is
/// [`IndexError::StateCorrupt`] at once, as with [`Tracker::open`]); the pieces are read and
/// verified the first time the entries are needed: to plan an update ([`LazyTracker::offer`]
/// of a head that passes the history checks) or on [`LazyTracker::loaded`]. The history rules
/// are the tracker's own and judge heads only, so an unchanged, older or conflicting head is
/// decided without reading the log. Damaged pieces are reported as `StateCorrupt` when loading,
/// and loading is retried on the next need: the held head is never forgotten.
#[derive(Debug)]
pub struct LazyTracker {
    /// Its `held` is `None` while `unloaded` is set.
    tracker: Tracker,
    /// The verified held head while its entries have not been read.
    unloaded: Option<SignedHead>,
}

impl LazyTracker {
    /// Opens (creating if needed) the state for `publisher` under `state_dir`, verifying the
    /// held head but not reading its pieces.
    pub fn open(
        state_dir: &Path,
        publisher: &(impl Trusted + ?Sized),
        limits: IndexLimits,
    ) -> Result<Self, IndexError> {
        let dir = state_dir.join("index").join(publisher.publisher().hex());
        let pieces = dir.join(PIECES_DIR);
        fs::create_dir_all(&pieces).map_err(IndexError::io(&pieces))?;
        let tracker = Tracker {
            publisher: Authority::of(publisher),
            limits,
            storage: Some(Storage {
                evidence: state_dir.join("evidence"),
                dir,
            }),
            held: None,
        };
        let unloaded = tracker.load_head()?;
        Ok(Self { tracker, unloaded })
    }

    pub fn publisher(&self) -> &PublicKey {
        self.tracker.publisher()
    }

    /// The accepted head, if any (verified; its entries may not be loaded yet).
    pub fn held_head(&self) -> Option<&SignedHead> {
        self.unloaded
            .as_ref()
            .or_else(|| self.tracker.held().map(Index::signed))
    }

    /// The tracker with its entries loaded (read and verified now if they were not yet).
    pub fn loaded(&mut self) -> Result<&mut Tracker, IndexError> {
        if let Some(head) = &self.unloaded {
            self.tracker.held = Some(self.tracker.load_entries(head.clone())?);
            self.unloaded = None;
        }
        Ok(&mut self.tracker)
    }

    /// Takes the held entries from `index` instead of reading them, when `index` is the held
    /// index itself (the same signed envelope): an [`Index`] exists only once the index module
    /// has verified it, here by another tracker of this process (the store's). `false` when the
    /// entries are loaded already or `index` is another one.
    pub fn adopt(&mut self, index: &Index) -> bool {
        match &self.unloaded {
            Some(head) if head.envelope() == index.signed().envelope() => {
                self.tracker.held = Some(index.clone());
                self.unloaded = None;
                true
            }
            _ => false,
        }
    }

    fn into_loaded(mut self) -> Result<Tracker, IndexError> {
        self.loaded()?;
        Ok(self.tracker)
    }

    /// [`Tracker::offer`], loading the held entries only if the head passes the history checks
    /// and an update must be planned.
    pub fn offer(&mut self, envelope: &[u8], now: SystemTime) -> Result<Offer<'_>, IndexError> {
        let verdict = self.tracker.judge(self.held_head(), envelope, now)?;
        if matches!(verdict, Verdict::Update(_)) {
            self.loaded()?;
        }
        Ok(verdict.into_offer(&self.tracker))
    }

    /// [`Tracker::accept`].
    pub fn accept(&mut self, update: Update) -> Result<&Index, IndexError> {
        self.loaded()?.accept(update)
    }
}

/// Deletes piece files the accepted head no longer lists. Best effort: a leftover file costs
/// only space and is removed next time.
fn remove_unlisted_pieces(dir: &Path, listed: &[PieceRef]) {
    let keep: HashSet<String> = listed
        .iter()
        .map(|p| format!("{}.json", p.sha256))
        .collect();
    let Ok(read) = fs::read_dir(dir) else { return };
    for entry in read.flatten() {
        let name = entry.file_name();
        if !keep.contains(name.to_string_lossy().as_ref()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Saves one equivocation case, at most once: the folder is named after the two signed heads
/// (in either order), so offering the same conflict again finds the folder already there.
/// Bounded by `max_evidence_cases` folders and `max_evidence_bytes` in all; proof pieces that
/// would pass the byte budget are left out (the heads name them by sha256).
fn write_evidence(
    storage: &Storage,
    limits: &IndexLimits,
    held: &SignedHead,
    offered: &SignedHead,
    conflict: &Conflict,
    extra: &[(String, &[u8])],
) -> std::io::Result<PathBuf> {
    let case = {
        let (a, b) = if held.id() <= offered.id() {
            (held.id(), offered.id())
        } else {
            (offered.id(), held.id())
        };
        ContentId::of_bytes(format!("{a}{b}").as_bytes())
    };
    let name = format!(
        "{}-{}-{}",
        held.head().publisher().hex(),
        offered.head().sequence(),
        &case.to_string()[..16]
    );
    let dir = storage.evidence.join(&name);
    if dir.join(EVIDENCE_README).is_file() {
        return Ok(dir);
    }
    fs::create_dir_all(&storage.evidence)?;
    let (cases, used) = evidence_usage(&storage.evidence, &name)?;
    let heads = (held.envelope().len() + offered.envelope().len()) as u64 + 4096;
    if cases >= limits.max_evidence_cases || used + heads > limits.max_evidence_bytes {
        return Err(std::io::Error::other(format!(
            "{} is full ({cases} cases, {used} bytes; limits {} and {}): move old cases away",
            storage.evidence.display(),
            limits.max_evidence_cases,
            limits.max_evidence_bytes
        )));
    }
    // Written under a temporary name and renamed: a folder with a README is a whole case.
    let tmp = storage.evidence.join(format!(".{name}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir(&tmp)?;
    let mut files = vec![
        ("held.json".to_owned(), held.envelope()),
        ("new.json".to_owned(), offered.envelope()),
    ];
    let mut budget = limits.max_evidence_bytes - used - heads;
    let mut left_out = Vec::new();
    for (file, bytes) in extra {
        if bytes.len() as u64 <= budget {
            budget -= bytes.len() as u64;
            files.push((file.clone(), bytes));
        } else {
            left_out.push(file.as_str());
        }
    }
    let left_out = if left_out.is_empty() {
        String::new()
    } else {
        format!(
            "Left out to keep the evidence folder bounded: {}.\n",
            left_out.join(", ")
        )
    };
    let readme = format!(
        "qasid found proof that publisher {id} ({key}) signed two conflicting histories:\n\
         {conflict}.\n\n\
         held.json  the index this machine had accepted (sequence {held_seq}, sha256 {held_id})\n\
         new.json   the index just offered (sequence {new_seq}, sha256 {new_id})\n\
         *-piece-*.json, if present: index pieces showing the differing entries.\n{left_out}\n\
         Both files are qasid-index-envelope/1 documents signed with the publisher's key; \
         docs/PROTOCOL.md (\"Equivocation\") says how anyone can check them. A stolen key or a \
         coerced publisher looks exactly like this. Keep these files, and tell the publisher \
         through a channel you trust.\n",
        id = held.head().publisher().id(),
        key = held.head().publisher().to_base64(),
        held_seq = held.head().sequence(),
        held_id = held.id(),
        new_seq = offered.head().sequence(),
        new_id = offered.id(),
    );
    files.push((EVIDENCE_README.to_owned(), readme.as_bytes()));
    for (file, bytes) in &files {
        let path = tmp.join(file);
        fs::write(&path, bytes)?;
        fs::File::open(&path)?.sync_all()?;
    }
    atomic::sync_parent(&tmp.join(EVIDENCE_README))?;
    fs::rename(&tmp, &dir)?;
    atomic::sync_parent(&dir)?;
    Ok(dir)
}

const EVIDENCE_README: &str = "README.txt";

/// Cases (folders other than `skip` and unfinished temporary ones) and bytes in `evidence`.
fn evidence_usage(evidence: &Path, skip: &str) -> std::io::Result<(usize, u64)> {
    let (mut cases, mut bytes) = (0, 0);
    for case in fs::read_dir(evidence)? {
        let case = case?;
        let name = case.file_name();
        let name = name.to_string_lossy();
        if name == skip || name.starts_with('.') || !case.file_type()?.is_dir() {
            continue;
        }
        cases += 1;
        for file in fs::read_dir(case.path())? {
            bytes += file?.metadata()?.len();
        }
    }
    Ok((cases, bytes))
}

/// A head that passed the history checks, and the plan for its pieces: which listed pieces
/// are already held, which can be rebuilt from held entries, and which must be fetched.
#[derive(Debug)]
pub struct PendingIndex<'a> {
    tracker: &'a Tracker,
    offered: SignedHead,
    held: Option<&'a Index>,
    /// Pieces of the held head, by sha256: a listed piece found here needs no work at all.
    held_pieces: HashMap<ContentId, PieceRef>,
    /// Entries past the held log, filled from received pieces.
    tail: Vec<Option<Entry>>,
    /// Per listed piece: its entries are known to match its sha256.
    done: Vec<bool>,
    /// Pieces received so far (never requested twice).
    supplied: HashSet<ContentId>,
    /// Listed pieces to store with the head, as (sha256, bytes).
    store: Vec<(ContentId, Vec<u8>)>,
}

/// A fully checked head and the entries it adds; hand it to [`Tracker::accept`].
#[derive(Debug)]
pub struct Update {
    base: Option<ContentId>,
    offered: SignedHead,
    tail: Vec<Entry>,
    store: Vec<(ContentId, Vec<u8>)>,
}

impl Update {
    /// The head this update would make current.
    pub fn head(&self) -> &SignedHead {
        &self.offered
    }
}

impl<'a> PendingIndex<'a> {
    fn new(tracker: &'a Tracker, offered: SignedHead, held: Option<&'a Index>) -> Self {
        let held_len = held.map_or(0, |h| h.entries.len() as u64);
        let tail_len = offered.head().log().entries().saturating_sub(held_len);
        let held_pieces = held
            .map(|h| {
                h.head()
                    .log()
                    .pieces()
                    .iter()
                    .map(|p| (p.sha256, *p))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            done: vec![false; offered.head().log().pieces().len()],
            tail: (0..tail_len).map(|_| None).collect(),
            tracker,
            offered,
            held,
            held_pieces,
            supplied: HashSet::new(),
            store: Vec::new(),
        }
    }

    /// The head being checked.
    pub fn head(&self) -> &SignedHead {
        &self.offered
    }

    fn held_entries(&self) -> &'a [Entry] {
        self.held.map_or(&[], |h| &h.entries[..])
    }

    fn entry_at(&self, pos: u64) -> Option<&Entry> {
        let held = self.held_entries();
        match usize::try_from(pos).ok()? {
            i if i < held.len() => Some(&held[i]),
            i => self.tail.get(i - held.len())?.as_ref(),
        }
    }

    /// The pieces to fetch next (each by sha256, capped at its size). Rebuilds every listed
    /// piece whose entries are known and checks its hash. Call until it returns nothing; a
    /// piece is never asked for twice, so the loop ends.
    pub fn needed(&mut self) -> Result<Vec<PieceRef>, IndexError> {
        let log = self.offered.head().log();
        let mut fetch = Vec::new();
        let mut unknown = false;
        for (i, piece) in log.pieces().iter().enumerate() {
            if self.done[i] {
                continue;
            }
            if self.held_pieces.get(&piece.sha256) == Some(piece) {
                self.done[i] = true;
                continue;
            }
            let rebuilt = {
                let refs: Option<Vec<&Entry>> = (piece.first..piece.end())
                    .map(|pos| self.entry_at(pos))
                    .collect();
                refs.map(|refs| {
                    encode_piece_refs(self.offered.head().publisher(), piece.first, &refs)
                })
            };
            match rebuilt {
                Some(bytes) => {
                    if bytes.len() as u64 == piece.size
                        && ContentId::of_bytes(&bytes) == piece.sha256
                    {
                        self.done[i] = true;
                        self.store.push((piece.sha256, bytes));
                    } else if !self.supplied.contains(&piece.sha256) {
                        // The signed piece disagrees with entries we hold: fetch it for proof.
                        fetch.push(*piece);
                    }
                }
                None => {
                    unknown = true;
                    if !self.supplied.contains(&piece.sha256) {
                        fetch.push(*piece);
                    }
                }
            }
        }
        // A client that holds everything before the newest batch needs only that batch: every
        // other new piece is rebuilt from it on the next call.
        let batch = *log.batch();
        let held_len = self.held_entries().len() as u64;
        if unknown
            && self.held.is_some()
            && batch.first <= held_len
            && !self.supplied.contains(&batch.sha256)
        {
            fetch.retain(|p| self.entry_range_known(p));
            if !fetch.iter().any(|p| p.sha256 == batch.sha256) {
                fetch.push(batch);
            }
        }
        Ok(fetch)
    }

    fn entry_range_known(&self, piece: &PieceRef) -> bool {
        (piece.first..piece.end()).all(|pos| self.entry_at(pos).is_some())
    }

    /// Checks and takes in a piece [`PendingIndex::needed`] asked for. Entries it shares with
    /// the held log must be identical (else: equivocation, evidence saved).
    pub fn supply(&mut self, piece: &PieceRef, bytes: Vec<u8>) -> Result<(), IndexError> {
        let log = self.offered.head().log();
        let listed = log.pieces().iter().position(|p| p == piece);
        if listed.is_none() && log.batch() != piece {
            return Err(IndexError::Malformed {
                what: "index piece",
                reason: format!("{} is not a piece of this index", piece.sha256),
            });
        }
        let piece_error = |source| IndexError::Piece {
            piece: piece.sha256,
            source,
        };
        if bytes.len() as u64 != piece.size {
            return Err(piece_error(if bytes.len() as u64 > piece.size {
                FetchError::TooLarge { limit: piece.size }
            } else {
                FetchError::Truncated {
                    expected: piece.size,
                    actual: bytes.len() as u64,
                }
            }));
        }
        let actual = ContentId::of_bytes(&bytes);
        if actual != piece.sha256 {
            return Err(piece_error(FetchError::HashMismatch {
                expected: piece.sha256,
                actual,
            }));
        }
        let entries = decode_piece(
            &bytes,
            self.offered.head().publisher(),
            piece,
            &self.tracker.limits,
        )?;
        let held = self.held_entries();
        for (pos, entry) in (piece.first..).zip(entries) {
            let i = pos as usize;
            if i < held.len() {
                if held[i] != entry {
                    let mut proof = vec![(format!("new-piece-{}.json", piece.sha256), &bytes[..])];
                    let held_piece = self.held_piece_bytes(pos);
                    if let Some((id, held_bytes)) = &held_piece {
                        proof.push((format!("held-piece-{id}.json"), &held_bytes[..]));
                    }
                    let conflict = Conflict::LogDiverged { entry: pos };
                    let held_head = self.held.map(Index::signed);
                    return Err(self.tracker.equivocation(
                        held_head,
                        &self.offered,
                        conflict,
                        &proof,
                    ));
                }
            } else {
                let slot = &mut self.tail[i - held.len()];
                match slot {
                    Some(known) if *known != entry => {
                        return Err(IndexError::Malformed {
                            what: "index",
                            reason: format!("its pieces disagree about entry {pos}"),
                        })
                    }
                    Some(_) => {}
                    None => *slot = Some(entry),
                }
            }
        }
        self.supplied.insert(piece.sha256);
        if let Some(i) = listed {
            self.done[i] = true;
            self.store.push((piece.sha256, bytes));
        }
        Ok(())
    }

    /// The held piece holding entry `pos`, read back from the state folder (for evidence).
    fn held_piece_bytes(&self, pos: u64) -> Option<(ContentId, Vec<u8>)> {
        let storage = self.tracker.storage.as_ref()?;
        let piece = self
            .held?
            .head()
            .log()
            .pieces()
            .iter()
            .find(|p| (p.first..p.end()).contains(&pos))?;
        let path = storage
            .dir
            .join(PIECES_DIR)
            .join(format!("{}.json", piece.sha256));
        Some((piece.sha256, fs::read(path).ok()?))
    }

    /// Completes the check once [`PendingIndex::needed`] returns nothing.
    pub fn finish(self) -> Result<Update, IndexError> {
        let incomplete = || IndexError::Malformed {
            what: "index update",
            reason: "pieces are still missing".into(),
        };
        if !self.done.iter().all(|d| *d) {
            return Err(incomplete());
        }
        let tail = self
            .tail
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(incomplete)?;
        Ok(Update {
            base: self.held.map(|h| *h.signed().id()),
            offered: self.offered,
            tail,
            store: self.store,
        })
    }
}
