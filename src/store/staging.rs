//! The staging folder for index pieces that no verified `index.json` lists yet
//! (`<store>/.state/staged/<publisher>/<sha256>.json`), and the bounds on it.
//!
//! Pieces carry no signature, so anyone may push a well-formed one for a trusted publisher.
//! Invariants: the pieces no signed head has claimed ("unlisted") never take more than
//! [`StagingLimits::max_staged_bytes_per_publisher`] for one publisher or
//! [`StagingLimits::max_staged_bytes`] in all, each counted at least
//! [`STAGED_PIECE_MIN_BYTES`]; a piece that a signature-checked head lists is always admitted,
//! evicting unlisted pieces (oldest first) to keep the total; unlisted pieces older than
//! [`StagingLimits::max_staged_age`] are removed while the store is in use, not only when it is
//! opened. Claimed pieces are never evicted or aged out (at most one head's pieces per
//! publisher, named by the publisher's own signature). It knows nothing of index contents: the
//! store checks pieces before they get here and again when an index lists them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::PublisherId;
use crate::content_id::ContentId;
use crate::limits::{StagingLimits, STAGED_PIECE_MIN_BYTES};

/// Why a staged piece was refused: a bound on unlisted pieces would be passed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StagingFull {
    /// This publisher's share of the staging folder is full (HTTP 429).
    #[error(
        "this mirror already holds {limit} bytes of pieces for publisher {publisher} that no \
         signed index lists; push the index that lists this piece first (qasid push does), or \
         try again later"
    )]
    Publisher { publisher: PublisherId, limit: u64 },
    /// The staging folder is full for everyone (HTTP 507).
    #[error(
        "this mirror's room for pieces that no signed index lists ({limit} bytes) is full; push \
         the index that lists this piece first (qasid push does), or try again later"
    )]
    Total { limit: u64 },
}

/// One staged piece: what it counts against the bounds, and since when it is staged.
#[derive(Debug, Clone, Copy)]
struct Staged {
    charge: u64,
    at: SystemTime,
}

type Key = (PublisherId, ContentId);

/// The accounting of the staging folder. Held behind the store's mutex; every method that
/// removes a file does so while the caller holds it, so accounting and folder agree.
pub(super) struct Staging {
    dir: PathBuf,
    limits: StagingLimits,
    pieces: HashMap<Key, Staged>,
    /// The same pieces, oldest first: the order of ageing out and of eviction.
    by_age: BTreeSet<(SystemTime, PublisherId, ContentId)>,
    /// Bytes charged per publisher, claimed pieces included.
    per_publisher: HashMap<PublisherId, u64>,
    total: u64,
    /// Per publisher, the pieces the newest signature-checked head offered to the store lists.
    claims: HashMap<PublisherId, HashSet<ContentId>>,
}

impl Staging {
    /// Reads what `dir` holds (creating nothing), removing pieces older than the age bound.
    pub(super) fn load(dir: PathBuf, limits: StagingLimits) -> io::Result<Staging> {
        let mut staging = Staging {
            dir,
            limits,
            pieces: HashMap::new(),
            by_age: BTreeSet::new(),
            per_publisher: HashMap::new(),
            total: 0,
            claims: HashMap::new(),
        };
        for folder in fs::read_dir(&staging.dir).into_iter().flatten().flatten() {
            let Some(pid) = folder.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            for file in fs::read_dir(folder.path()).into_iter().flatten().flatten() {
                let name = file.file_name();
                let id = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| n.parse::<ContentId>().ok());
                let (Some(id), Ok(meta)) = (id, file.metadata()) else {
                    continue;
                };
                let at = meta.modified().unwrap_or_else(|_| SystemTime::now());
                staging.record(pid, id, meta.len(), at);
            }
        }
        staging.sweep(SystemTime::now())?;
        Ok(staging)
    }

    pub(super) fn path(&self, pid: &PublisherId, id: &ContentId) -> PathBuf {
        self.dir.join(pid.to_string()).join(format!("{id}.json"))
    }

    pub(super) fn set_limits(&mut self, limits: StagingLimits) -> io::Result<()> {
        self.limits = limits;
        self.sweep(SystemTime::now())
    }

    /// Bytes charged for staged pieces, all publishers together.
    pub(super) fn total(&self) -> u64 {
        self.total
    }

    /// Records the pieces a signature-checked head of `pid` lists, replacing the publisher's
    /// earlier claim.
    pub(super) fn claim(&mut self, pid: PublisherId, ids: impl IntoIterator<Item = ContentId>) {
        self.claims.insert(pid, ids.into_iter().collect());
    }

    /// Drops the publisher's claim (its index is installed; its pieces left the folder).
    pub(super) fn unclaim(&mut self, pid: &PublisherId) {
        self.claims.remove(pid);
    }

    fn claimed(&self, pid: &PublisherId, id: &ContentId) -> bool {
        self.claims.get(pid).is_some_and(|c| c.contains(id))
    }

    /// Whether a piece of `size` bytes may be staged now: always for a claimed one (after
    /// evicting unlisted pieces, oldest first, to keep the total), for an unlisted one only
    /// within both bounds. Stale pieces are swept first.
    pub(super) fn admit(
        &mut self,
        pid: PublisherId,
        id: ContentId,
        size: u64,
        listed: bool,
    ) -> Result<(), AdmitError> {
        self.sweep(SystemTime::now()).map_err(AdmitError::Io)?;
        let charge = size.max(STAGED_PIECE_MIN_BYTES);
        if listed || self.claimed(&pid, &id) {
            return self.evict_for(charge).map_err(AdmitError::Io);
        }
        let claimed_bytes: u64 = self.claims.get(&pid).map_or(0, |c| {
            c.iter()
                .filter_map(|id| self.pieces.get(&(pid, *id)))
                .map(|s| s.charge)
                .sum()
        });
        let unlisted = self.per_publisher.get(&pid).copied().unwrap_or(0) - claimed_bytes;
        let per_publisher = self.limits.max_staged_bytes_per_publisher;
        if unlisted + charge > per_publisher {
            return Err(AdmitError::Full(StagingFull::Publisher {
                publisher: pid,
                limit: per_publisher,
            }));
        }
        if self.total + charge > self.limits.max_staged_bytes {
            return Err(AdmitError::Full(StagingFull::Total {
                limit: self.limits.max_staged_bytes,
            }));
        }
        Ok(())
    }

    /// Counts a piece placed in the folder.
    pub(super) fn record(&mut self, pid: PublisherId, id: ContentId, size: u64, at: SystemTime) {
        let charge = size.max(STAGED_PIECE_MIN_BYTES);
        if self
            .pieces
            .insert((pid, id), Staged { charge, at })
            .is_some()
        {
            return;
        }
        self.by_age.insert((at, pid, id));
        *self.per_publisher.entry(pid).or_default() += charge;
        self.total += charge;
    }

    /// Stops counting a piece that left the folder (moved into the layout).
    pub(super) fn forget(&mut self, pid: &PublisherId, id: &ContentId) {
        let Some(staged) = self.pieces.remove(&(*pid, *id)) else {
            return;
        };
        self.by_age.remove(&(staged.at, *pid, *id));
        if let Some(bytes) = self.per_publisher.get_mut(pid) {
            *bytes -= staged.charge;
            if *bytes == 0 {
                self.per_publisher.remove(pid);
            }
        }
        self.total -= staged.charge;
    }

    /// Removes a piece's file and stops counting it.
    fn remove(&mut self, pid: &PublisherId, id: &ContentId) -> io::Result<()> {
        let path = self.path(pid, id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.forget(pid, id);
        Ok(())
    }

    /// Removes unclaimed pieces staged at least the age bound ago.
    fn sweep(&mut self, now: SystemTime) -> io::Result<()> {
        let age = self.limits.max_staged_age;
        let stale: Vec<Key> = self
            .by_age
            .iter()
            .take_while(|(at, _, _)| now.duration_since(*at).unwrap_or_default() >= age)
            .filter(|(_, pid, id)| !self.claimed(pid, id))
            .map(|(_, pid, id)| (*pid, *id))
            .collect();
        for (pid, id) in &stale {
            self.remove(pid, id)?;
        }
        if !stale.is_empty() {
            tracing::info!(
                removed = stale.len(),
                "removed staged index pieces that no index listed within {}",
                humantime::format_duration(age)
            );
        }
        Ok(())
    }

    /// Evicts unclaimed pieces, oldest first, until `charge` more bytes fit the total bound
    /// (or none is left to evict).
    fn evict_for(&mut self, charge: u64) -> io::Result<()> {
        let max = self.limits.max_staged_bytes;
        let mut evicted = 0usize;
        while self.total + charge > max {
            let oldest = self
                .by_age
                .iter()
                .find(|(_, pid, id)| !self.claimed(pid, id))
                .map(|(_, pid, id)| (*pid, *id));
            let Some((pid, id)) = oldest else { break };
            self.remove(&pid, &id)?;
            evicted += 1;
        }
        if evicted > 0 {
            tracing::info!(
                evicted,
                "evicted unlisted staged pieces for pieces a signed index lists"
            );
        }
        Ok(())
    }
}

/// Why [`Staging::admit`] said no.
#[derive(Debug)]
pub(super) enum AdmitError {
    Full(StagingFull),
    Io(io::Error),
}

/// The folder holding a path's staged pieces must exist before a piece is linked in.
pub(super) fn ensure_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => fs::create_dir_all(dir),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> StagingLimits {
        StagingLimits {
            max_staged_bytes: 5 * STAGED_PIECE_MIN_BYTES,
            max_staged_bytes_per_publisher: 3 * STAGED_PIECE_MIN_BYTES,
            max_staged_age: Duration::from_secs(3600),
        }
    }

    fn place(staging: &mut Staging, pid: PublisherId, n: u8, at: SystemTime) -> ContentId {
        let id = ContentId::of_bytes(&[n]);
        let path = staging.path(&pid, &id);
        ensure_parent(&path).unwrap();
        fs::write(&path, [n]).unwrap();
        staging.record(pid, id, 1, at);
        id
    }

    #[test]
    fn unlisted_pieces_are_bounded_per_publisher_and_in_total_and_listed_ones_evict_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Staging::load(dir.path().to_owned(), limits()).unwrap();
        let (a, b): (PublisherId, PublisherId) = (
            "aa".repeat(32).parse().unwrap(),
            "bb".repeat(32).parse().unwrap(),
        );
        let now = SystemTime::now();
        let first = place(&mut s, a, 1, now - Duration::from_secs(10));
        for n in 2..=3 {
            s.admit(a, ContentId::of_bytes(&[n]), 1, false).unwrap();
            place(&mut s, a, n, now);
        }
        let refused = s.admit(a, ContentId::of_bytes(&[4]), 1, false).unwrap_err();
        assert!(matches!(
            refused,
            AdmitError::Full(StagingFull::Publisher { .. })
        ));
        for n in 10..=11 {
            s.admit(b, ContentId::of_bytes(&[n]), 1, false).unwrap();
            place(&mut s, b, n, now);
        }
        let refused = s
            .admit(b, ContentId::of_bytes(&[12]), 1, false)
            .unwrap_err();
        assert!(matches!(
            refused,
            AdmitError::Full(StagingFull::Total { .. })
        ));
        assert_eq!(s.total(), 5 * STAGED_PIECE_MIN_BYTES);

        // A piece a signed head lists gets in by evicting the oldest unlisted one.
        let wanted = ContentId::of_bytes(b"wanted");
        s.claim(a, [wanted]);
        s.admit(a, wanted, 1, false).unwrap();
        assert!(
            !s.path(&a, &first).exists(),
            "the oldest unlisted piece was evicted"
        );
        assert_eq!(s.total(), 4 * STAGED_PIECE_MIN_BYTES);
    }

    #[test]
    fn stale_unclaimed_pieces_are_swept_and_claimed_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Staging::load(dir.path().to_owned(), limits()).unwrap();
        let pid: PublisherId = "cc".repeat(32).parse().unwrap();
        let old = SystemTime::now() - Duration::from_secs(7200);
        let stale = place(&mut s, pid, 1, old);
        let kept = place(&mut s, pid, 2, old);
        s.claim(pid, [kept]);
        s.sweep(SystemTime::now()).unwrap();
        assert!(!s.path(&pid, &stale).exists());
        assert!(s.path(&pid, &kept).exists());
        assert_eq!(s.total(), STAGED_PIECE_MIN_BYTES);
    }
}
