//! Retention for `keep = "current"`: bundles that no current index lists are removed once they
//! have been unlisted for a grace period.
//!
//! Owns the choice of candidates and their clocks (kept in the sync state, so a restart does not
//! restart them). The grace period lets readers holding the previous index still fetch what it
//! listed. "Listed" means in the current listing of the index the store serves or of the newer
//! one being completed. The store removes a candidate only after checking, under its own lock,
//! that the index it serves at that moment does not need it. Never used with `keep = "all"`,
//! and never touches pieces (small, and old ones are needed by clients catching up).

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use crate::config::Keep;
use crate::content_id::ContentId;
use crate::index::Index;
use crate::keys::PublicKey;
use crate::store::required_bundles;
use crate::store::{PublisherId, Store};
use crate::sync::error::SyncError;
use crate::sync::publisher::bundles_dir;
use crate::sync::state::SyncState;

/// Prunes one publisher's unlisted bundles older than `grace`; returns how many were removed.
pub(crate) fn prune(
    store: &Store,
    state: &mut SyncState,
    publisher: &PublicKey,
    pending: Option<&Index>,
    grace: Duration,
) -> Result<u64, SyncError> {
    let Some(installed) = store.index(publisher).map_err(SyncError::store)? else {
        return Ok(0);
    };
    let listed: HashSet<ContentId> = required_bundles(&installed, Keep::Current)
        .into_iter()
        .chain(pending.map_or_else(Vec::new, |p| required_bundles(p, Keep::Current)))
        .map(|b| b.sha256)
        .collect();
    let dir = bundles_dir(store, publisher);
    let read = match std::fs::read_dir(&dir) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(SyncError::State { path: dir, source }),
    };
    let unlisted: Vec<ContentId> = read
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".zip")?.parse().ok())
        .filter(|id| !listed.contains(id))
        .collect();
    let pid = PublisherId::of(publisher);
    let expired = state.expired_unlisted(&pid, &unlisted, grace, SystemTime::now());
    if expired.is_empty() {
        return Ok(0);
    }
    let removed = store
        .remove_unlisted_bundles(publisher, &expired)
        .map_err(SyncError::store)?;
    state.forget_unlisted(&pid, &removed);
    if !removed.is_empty() {
        tracing::info!(
            publisher = %publisher.id(),
            removed = removed.len(),
            "pruned bundles no current index lists"
        );
    }
    Ok(removed.len() as u64)
}
