//! The sync's own memory, in `<store>/.state/sync/` (outside the served layout).
//!
//! Owns `state.json` (per upstream and publisher: the entity tag and sequence of the index it
//! last served, for conditional requests; per publisher: since when each bundle has been
//! unlisted, for `keep = "current"` pruning) and the `lock` file that keeps two syncs off one
//! store. The index tracker's state (`index/`, `evidence/`) lives beside them. Losing
//! `state.json` costs one unconditional request per upstream and restarts prune grace periods;
//! it never holds anything trust depends on. Written atomically (temp, fsync, rename).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::content_id::ContentId;
use crate::store::PublisherId;
use crate::sync::error::SyncError;

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";
/// How stale an upstream's recorded times may get before an unchanged round writes them.
const HEALTH_WRITE_INTERVAL_SECS: u64 = 60;

/// What an upstream last served for a publisher, once it was verified and held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeenHead {
    /// The entity tag the upstream sent with it.
    pub etag: String,
    /// Its sequence: the tag is only sent back while the held index is at least this new, so
    /// a lost tracker state can never be masked by a 304.
    pub sequence: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    /// Upstream URL → publisher hex → last verified head served.
    #[serde(default)]
    heads: BTreeMap<String, BTreeMap<String, SeenHead>>,
    /// Publisher hex → bundle sha256 → Unix time it was first seen unlisted.
    #[serde(default)]
    unlisted: BTreeMap<String, BTreeMap<ContentId, u64>>,
    /// Upstream URL → how its recent rounds went (for `qasid status`).
    #[serde(default)]
    upstreams: BTreeMap<String, UpstreamHealth>,
}

/// How an upstream's rounds have gone, as `qasid status` shows it. Times are Unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamHealth {
    /// The last round that asked it.
    pub last_attempt: Option<u64>,
    /// The last round in which nothing went wrong with it.
    pub last_success: Option<u64>,
    /// Failed rounds since the last success.
    pub failures: u32,
    /// The first failure of its last failed round, on one line.
    pub last_error: Option<String>,
    /// Not asked again before this time (backing off after a failure).
    pub backoff_until: Option<u64>,
}

/// Upstream health as recorded in a store's sync state (`<store>/.state/sync/state.json`),
/// without taking any lock: for `qasid status`. Empty if there is none or it is unreadable.
pub fn upstream_health(store_root: &Path) -> BTreeMap<String, UpstreamHealth> {
    use std::io::Read as _;
    // The state file holds one entry per upstream × publisher; 16 MiB is far past any real one.
    const MAX_STATE_BYTES: u64 = 16 << 20;
    let path = store_root.join(".state").join("sync").join(STATE_FILE);
    let mut bytes = Vec::new();
    match fs::File::open(&path).and_then(|f| f.take(MAX_STATE_BYTES).read_to_end(&mut bytes)) {
        Ok(_) => serde_json::from_slice::<StateFile>(&bytes)
            .map(|f| f.upstreams)
            .unwrap_or_default(),
        Err(_) => BTreeMap::new(),
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The loaded state; saved at the end of each round when it changed.
#[derive(Debug)]
pub(crate) struct SyncState {
    path: PathBuf,
    tmp: PathBuf,
    data: StateFile,
    dirty: bool,
}

impl SyncState {
    /// Reads `dir/state.json`; a missing or unreadable file starts empty (with a warning for
    /// the latter), since nothing in it is needed for safety. `tmp` is the store's temp folder.
    pub fn load(dir: &Path, tmp: &Path) -> Self {
        let path = dir.join(STATE_FILE);
        let data = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("{}: unreadable, starting afresh: {e}", path.display());
                StateFile::default()
            }),
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("{}: {e}; starting afresh", path.display());
                }
                StateFile::default()
            }
        };
        Self {
            path,
            tmp: tmp.to_owned(),
            data,
            dirty: false,
        }
    }

    pub fn seen(&self, upstream: &str, publisher: &PublisherId) -> Option<&SeenHead> {
        self.data
            .heads
            .get(upstream)?
            .get(publisher.to_string().as_str())
    }

    pub fn set_seen(&mut self, upstream: &str, publisher: &PublisherId, seen: SeenHead) {
        let heads = self.data.heads.entry(upstream.to_owned()).or_default();
        let key = publisher.to_string();
        if heads.get(&key) != Some(&seen) {
            heads.insert(key, seen);
            self.dirty = true;
        }
    }

    /// Records how a round went for an upstream: `error` is its first failure (none: success),
    /// `backoff` how long it is left alone now.
    pub fn record_upstream(
        &mut self,
        upstream: &str,
        error: Option<String>,
        backoff: Option<Duration>,
        now: SystemTime,
    ) {
        let h = self.data.upstreams.entry(upstream.to_owned()).or_default();
        let before = h.clone();
        let now_secs = unix(now);
        h.last_attempt = Some(now_secs);
        match error {
            None => {
                h.last_success = Some(now_secs);
                h.failures = 0;
                h.last_error = None;
                h.backoff_until = None;
            }
            Some(e) => {
                h.failures = h.failures.saturating_add(1);
                h.last_error = Some(e);
                h.backoff_until = backoff.map(|d| unix(now + d));
            }
        }
        // A round that only moves the clocks is written at most once a minute: a daemon
        // polling every few seconds should not flush a file each time for that.
        let clocks_only = before.failures == h.failures
            && before.last_error == h.last_error
            && before.backoff_until == h.backoff_until
            && before
                .last_attempt
                .is_some_and(|t| now_secs.saturating_sub(t) < HEALTH_WRITE_INTERVAL_SECS);
        if clocks_only {
            // Keep the file's (older) times in memory too, so the minute is counted from them.
            *h = before;
        } else {
            self.dirty = true;
        }
    }

    /// Updates the unlisted-since times of a publisher's bundles: `unlisted` are the bundles on
    /// disk that no current index lists now. Returns those unlisted for at least `grace`.
    pub fn expired_unlisted(
        &mut self,
        publisher: &PublisherId,
        unlisted: &[ContentId],
        grace: Duration,
        now: SystemTime,
    ) -> Vec<ContentId> {
        let now_secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let key = publisher.to_string();
        let before = self.data.unlisted.get(&key).cloned().unwrap_or_default();
        let mut after = BTreeMap::new();
        let mut expired = Vec::new();
        for id in unlisted {
            let since = before.get(id).copied().unwrap_or(now_secs);
            if now_secs.saturating_sub(since) >= grace.as_secs() {
                expired.push(*id);
            }
            after.insert(*id, since);
        }
        if after != before {
            self.dirty = true;
            if after.is_empty() {
                self.data.unlisted.remove(&key);
            } else {
                self.data.unlisted.insert(key, after);
            }
        }
        expired
    }

    /// Forgets bundles that are gone from disk.
    pub fn forget_unlisted(&mut self, publisher: &PublisherId, removed: &[ContentId]) {
        if let Some(map) = self.data.unlisted.get_mut(&publisher.to_string()) {
            for id in removed {
                self.dirty |= map.remove(id).is_some();
            }
        }
    }

    /// Writes the state if it changed.
    pub fn save(&mut self) -> Result<(), SyncError> {
        if !self.dirty {
            return Ok(());
        }
        let mut bytes =
            serde_json::to_vec_pretty(&self.data).expect("serialising maps of strings cannot fail");
        bytes.push(b'\n');
        crate::index::atomic::write(&self.tmp, &self.path, &bytes).map_err(|source| {
            SyncError::State {
                path: self.path.clone(),
                source,
            }
        })?;
        self.dirty = false;
        Ok(())
    }
}

/// An exclusive lock on the sync state folder, held for the syncer's lifetime and released by
/// the OS when the process ends (even by SIGKILL).
#[derive(Debug)]
pub(crate) struct SyncLock {
    _file: fs::File,
}

impl SyncLock {
    pub fn acquire(dir: &Path) -> Result<Self, SyncError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| SyncError::State {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(SyncError::Locked { path }),
            Err(fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn publisher() -> PublisherId {
        PublisherId::of(SecretKey::from_seed(&[3; 32]).public())
    }

    #[test]
    fn round_trips_and_tracks_unlisted_times() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let p = publisher();
        let mut state = SyncState::load(dir.path(), &tmp);
        let seen = SeenHead {
            etag: "\"abc\"".into(),
            sequence: 4,
        };
        state.set_seen("http://a.example/", &p, seen.clone());
        let a = ContentId::of_bytes(b"a");
        let b = ContentId::of_bytes(b"b");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        assert!(state.expired_unlisted(&p, &[a, b], hour, t0).is_empty());
        // b is listed again: its clock restarts if it is ever unlisted later.
        assert_eq!(state.expired_unlisted(&p, &[a], hour, t0 + hour), vec![a]);
        state.save().unwrap();

        let mut again = SyncState::load(dir.path(), &tmp);
        assert_eq!(again.seen("http://a.example/", &p), Some(&seen));
        assert!(again.seen("http://b.example/", &p).is_none());
        assert!(again.expired_unlisted(&p, &[b], hour, t0 + hour).is_empty());
        again.forget_unlisted(&p, &[b]);
        assert!(again.expired_unlisted(&p, &[], hour, t0).is_empty());
    }

    #[test]
    fn a_second_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = SyncLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            SyncLock::acquire(dir.path()),
            Err(SyncError::Locked { .. })
        ));
        drop(first);
        SyncLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn corrupt_state_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let state = SyncState::load(dir.path(), dir.path());
        assert!(state.seen("x", &publisher()).is_none());
    }
}
