//! The bounded set of verified extractions the reader pages show articles from: one folder per
//! bundle under the mirror's `.state/read`, made on first view, kept while the total size of
//! what they hold stays within a byte budget, the least recently viewed removed first.
//!
//! Owns the budget (a front end over a bucket would otherwise end with a copy of every article
//! anyone read on its small local disk) and the rule that makes removal safe: an extraction is
//! removed only when no request holds it (neither its cell nor the extraction itself has
//! another owner, checked under the same lock a request takes them under), and its folder is
//! first renamed out of the way under that lock, so a new extraction of the same bundle never
//! meets the old folder being deleted. Files already opened for a response stay readable after
//! the removal (the open file outlives its name). Extractions in use are never removed, so the
//! budget can be passed by what is being read at that moment, never by what is idle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::content_id::ContentId;

/// What a filled cell holds: anything that knows how many bytes it keeps on disk.
pub(super) trait OnDisk {
    fn bytes(&self) -> u64;
}

/// One bundle's cell and when it was last asked for.
struct Slot<T> {
    cell: Arc<OnceCell<Arc<T>>>,
    last_used: u64,
    /// Counted into the total once the cell was filled (0 until then).
    counted: u64,
}

struct Inner<T> {
    slots: HashMap<ContentId, Slot<T>>,
    total: u64,
    tick: u64,
    /// Renamed-away folders get distinct names.
    removed: u64,
}

/// The extractions of one mirror process.
pub(super) struct Extractions<T> {
    root: PathBuf,
    budget: u64,
    inner: Mutex<Inner<T>>,
}

impl<T: OnDisk> Extractions<T> {
    pub(super) fn new(root: PathBuf, budget: u64) -> Self {
        Self {
            root,
            budget,
            inner: Mutex::new(Inner {
                slots: HashMap::new(),
                total: 0,
                tick: 0,
                removed: 0,
            }),
        }
    }

    /// The folder bundle `id` is extracted into.
    pub(super) fn dir(&self, id: &ContentId) -> PathBuf {
        self.root.join(id.to_hex())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cell of bundle `id` (empty until its extraction is made), marked as just used.
    pub(super) fn cell(&self, id: ContentId) -> Arc<OnceCell<Arc<T>>> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let slot = inner.slots.entry(id).or_insert_with(|| Slot {
            cell: Arc::default(),
            last_used: tick,
            counted: 0,
        });
        slot.last_used = tick;
        slot.cell.clone()
    }

    /// Counts bundle `id`'s extraction (its cell is filled) and removes the least recently
    /// used idle ones while the total is over the budget. Call after every filled cell; cheap
    /// when the extraction was counted before.
    pub(super) fn admit(&self, id: ContentId) {
        let doomed = {
            let mut inner = self.lock();
            let Some(slot) = inner.slots.get_mut(&id) else {
                return;
            };
            if slot.counted > 0 {
                return;
            }
            let Some(value) = slot.cell.get() else { return };
            let bytes = value.bytes().max(1);
            slot.counted = bytes;
            inner.total += bytes;
            self.shrink(&mut inner, id)
        };
        if !doomed.is_empty() {
            // Deleting a large folder takes a while: not on the async threads.
            tokio::task::spawn_blocking(move || {
                for dir in doomed {
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        tracing::warn!("removing {}: {e}", dir.display());
                    }
                }
            });
        }
    }

    /// Removes idle extractions, least recently used first, until the total fits the budget;
    /// returns the renamed folders to delete.
    fn shrink(&self, inner: &mut Inner<T>, keep: ContentId) -> Vec<PathBuf> {
        let mut doomed = Vec::new();
        if inner.total <= self.budget {
            return doomed;
        }
        let mut idle: Vec<(u64, ContentId)> = inner
            .slots
            .iter()
            .filter(|(id, s)| **id != keep && s.counted > 0 && idle(s))
            .map(|(id, s)| (s.last_used, *id))
            .collect();
        idle.sort_unstable();
        for (_, id) in idle {
            if inner.total <= self.budget {
                break;
            }
            let slot = inner.slots.remove(&id).expect("listed above");
            inner.total -= slot.counted;
            inner.removed += 1;
            let away = self.root.join(format!(".removed-{}", inner.removed));
            match std::fs::rename(self.dir(&id), &away) {
                Ok(()) => doomed.push(away),
                Err(e) => tracing::warn!("removing the extraction of {id}: {e}"),
            }
        }
        doomed
    }

    /// Bytes the counted extractions hold.
    #[cfg(test)]
    fn total(&self) -> u64 {
        self.lock().total
    }
}

/// No request holds the slot's cell or its extraction: only the set does.
fn idle<T>(slot: &Slot<T>) -> bool {
    Arc::strong_count(&slot.cell) == 1 && slot.cell.get().is_some_and(|v| Arc::strong_count(v) == 1)
}

/// Removes `root` and everything in it, then makes it again empty: extractions from an earlier
/// run are not trusted (every article shown was verified by this process).
pub(super) fn fresh_root(root: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Held(u64);

    impl OnDisk for Held {
        fn bytes(&self) -> u64 {
            self.0
        }
    }

    fn id(n: u8) -> ContentId {
        ContentId::of_bytes(&[n])
    }

    /// Fills bundle `n`'s cell with a real folder of `bytes` bytes, as an extraction would.
    async fn extract(set: &Extractions<Held>, n: u8, bytes: u64) -> Arc<Held> {
        let dir = set.dir(&id(n));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("article.md"), vec![b'x'; bytes as usize]).unwrap();
        let cell = set.cell(id(n));
        let held = cell
            .get_or_init(|| async { Arc::new(Held(bytes)) })
            .await
            .clone();
        drop(cell);
        set.admit(id(n));
        held
    }

    async fn settle(root: &Path) {
        // The removal runs on the blocking pool; wait (bounded) for the renamed folders to go.
        for _ in 0..200 {
            let left = std::fs::read_dir(root)
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".removed-"));
            if !left {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("removed extractions were not deleted");
    }

    #[tokio::test]
    async fn the_least_recently_viewed_idle_extraction_goes_first_and_one_in_use_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("read");
        fresh_root(&root).unwrap();
        let set = Extractions::<Held>::new(root.clone(), 250);
        drop(extract(&set, 1, 100).await);
        let in_use = extract(&set, 2, 100).await;
        // Bundle 1 viewed again: bundle 2 is now the least recently used, but a request holds it.
        drop(set.cell(id(1)));
        drop(extract(&set, 3, 100).await);
        assert!(set.dir(&id(2)).is_dir(), "an extraction in use was removed");
        assert!(
            !set.dir(&id(1)).exists(),
            "the idle one over the budget stays"
        );
        assert_eq!(set.total(), 200);
        settle(&root).await;

        // Once idle, bundle 2 is the oldest and goes when the next one passes the budget.
        drop(in_use);
        drop(extract(&set, 4, 100).await);
        assert!(!set.dir(&id(2)).exists());
        assert!(set.dir(&id(3)).is_dir() && set.dir(&id(4)).is_dir());
        assert_eq!(set.total(), 200);
        settle(&root).await;

        // Removed extractions are made again on the next view.
        drop(extract(&set, 2, 100).await);
        assert!(set.dir(&id(2)).join("article.md").is_file());
        assert_eq!(set.total(), 200);
    }
}
