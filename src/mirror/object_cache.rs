//! A bounded least-recently-used cache of verified object bytes, for front ends serving from a
//! bucket: a warm front end answers from memory and rarely asks the bucket.
//!
//! Owns only the bounds (total bytes and entries, each object at most a share of the total) and
//! the eviction order. It never checks what it holds: callers put in bytes they verified
//! (hash against the name, or a signature), so everything in it may be served as is.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use bytes::Bytes;

/// The cache's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Total bytes held.
    pub max_bytes: u64,
    /// Objects held, whatever their size (each entry costs bookkeeping beyond its bytes).
    pub max_entries: usize,
}

/// LRU by a tick: `ticks` orders keys by last use, `map` holds the bytes and the key's tick.
pub struct ObjectCache<K> {
    limits: CacheLimits,
    map: HashMap<K, (Bytes, u64)>,
    ticks: BTreeMap<u64, K>,
    next_tick: u64,
    bytes: u64,
}

impl<K: Eq + Hash + Clone> ObjectCache<K> {
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            map: HashMap::new(),
            ticks: BTreeMap::new(),
            next_tick: 0,
            bytes: 0,
        }
    }

    /// Objects larger than this are not kept: an eighth of the total, so that one object never
    /// empties the cache of everything else.
    pub fn max_object(&self) -> u64 {
        self.limits.max_bytes / 8
    }

    /// The bytes under `key`, now the most recently used.
    pub fn get(&mut self, key: &K) -> Option<Bytes> {
        let tick = self.tick();
        let (bytes, old) = self.map.get_mut(key)?;
        let old = std::mem::replace(old, tick);
        let bytes = bytes.clone();
        if let Some(k) = self.ticks.remove(&old) {
            self.ticks.insert(tick, k);
        }
        Some(bytes)
    }

    /// Keeps `bytes` under `key` (replacing what was there), evicting the least recently used
    /// until both bounds hold. Objects over [`ObjectCache::max_object`] are not kept.
    pub fn put(&mut self, key: K, bytes: Bytes) {
        let len = bytes.len() as u64;
        if len > self.max_object() || self.limits.max_entries == 0 {
            return;
        }
        self.remove(&key);
        while self.bytes + len > self.limits.max_bytes || self.map.len() >= self.limits.max_entries
        {
            let Some((_, oldest)) = self.ticks.pop_first() else {
                break;
            };
            if let Some((b, _)) = self.map.remove(&oldest) {
                self.bytes -= b.len() as u64;
            }
        }
        let tick = self.tick();
        self.bytes += len;
        self.ticks.insert(tick, key.clone());
        self.map.insert(key, (bytes, tick));
    }

    /// Drops `key`.
    pub fn remove(&mut self, key: &K) {
        if let Some((b, tick)) = self.map.remove(key) {
            self.bytes -= b.len() as u64;
            self.ticks.remove(&tick);
        }
    }

    /// Objects and bytes held.
    pub fn usage(&self) -> (usize, u64) {
        (self.map.len(), self.bytes)
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_bytes: u64, max_entries: usize) -> ObjectCache<u32> {
        ObjectCache::new(CacheLimits {
            max_bytes,
            max_entries,
        })
    }

    #[test]
    fn the_least_recently_used_goes_first() {
        let mut c = cache(800, 3);
        for k in 0..3 {
            c.put(k, Bytes::from(vec![k as u8; 100]));
        }
        assert!(c.get(&0).is_some()); // 1 is now the oldest
        c.put(3, Bytes::from(vec![3; 100]));
        assert!(c.get(&1).is_none());
        assert!(c.get(&0).is_some() && c.get(&2).is_some() && c.get(&3).is_some());
        assert_eq!(c.usage(), (3, 300));
    }

    #[test]
    fn both_bounds_hold() {
        let mut c = cache(800, 100);
        for k in 0..20 {
            c.put(k, Bytes::from(vec![0; 100]));
            let (entries, bytes) = c.usage();
            assert!(bytes <= 800 && entries <= 100);
        }
        assert_eq!(c.usage(), (8, 800));
        // An object over an eighth of the total is never kept.
        c.put(99, Bytes::from(vec![0; 101]));
        assert!(c.get(&99).is_none());
        // Replacing a key does not count it twice.
        c.put(19, Bytes::from(vec![1; 50]));
        assert_eq!(c.usage(), (8, 750));
        assert_eq!(c.get(&19).unwrap()[0], 1);
    }
}
