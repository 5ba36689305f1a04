//! Recent refusals: a small, bounded record of what the mirror and its sync refused, in
//! `<store>/.state/refusals.json`, for `qasid status`.
//!
//! Owns the file's shape and its bounds: at most [`MAX_RECENT_REFUSALS`] entries (the oldest
//! drop out), each field capped, written atomically (temp file, fsync, rename) and at most once
//! per [`REFUSAL_WRITE_INTERVAL`] so that a flood of refused requests costs no disk I/O beyond
//! that (the rest is written by the next record after the interval, or by
//! [`Refusals::flush`]). It never records a reader's or pusher's address: only what was
//! refused, for which publisher, and why.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_RECENT_REFUSALS, REFUSAL_WRITE_INTERVAL};

/// The file name in the store's `.state` folder.
pub const REFUSALS_FILE: &str = "refusals.json";
/// Longest text kept in a field; longer is cut (reasons can quote long upstream URLs).
const MAX_FIELD_CHARS: usize = 300;

/// One refused request or object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// When, RFC 3339 in UTC to the second.
    pub time: String,
    /// `push` (a publisher's PUT) or `sync` (content from an upstream).
    pub source: String,
    /// What was refused: `bundle`, `index`, `piece`, `minisig`, ...
    pub what: String,
    /// The publisher's key id (as the CLI shows it), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The upstream it came from (sync only; never a client address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Why, on one line.
    pub reason: String,
}

impl Refusal {
    /// A refusal happening now, its fields cut to the caps.
    pub fn now(
        source: &str,
        what: &str,
        key_id: Option<String>,
        upstream: Option<&str>,
        reason: &str,
    ) -> Self {
        let time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        Self {
            time,
            source: cap(source),
            what: cap(what),
            key_id: key_id.as_deref().map(cap),
            upstream: upstream.map(cap),
            reason: cap(reason),
        }
    }
}

fn cap(s: &str) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    match one_line.char_indices().nth(MAX_FIELD_CHARS) {
        Some((at, _)) => format!("{}…", &one_line[..at]),
        None => one_line,
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefusalsFile {
    /// Oldest first.
    refusals: Vec<Refusal>,
}

struct Ring {
    entries: VecDeque<Refusal>,
    loaded: bool,
    dirty: bool,
    last_write: Option<Instant>,
}

/// The store's record of recent refusals.
pub(crate) struct Refusals {
    path: PathBuf,
    tmp: PathBuf,
    /// A std `Mutex`: held for a push to a `VecDeque` and, at most once per interval, a small
    /// file write; never across an `.await`.
    ring: Mutex<Ring>,
}

impl Refusals {
    pub fn new(state_dir: &Path, tmp: &Path) -> Self {
        Self {
            path: state_dir.join(REFUSALS_FILE),
            tmp: tmp.to_owned(),
            ring: Mutex::new(Ring {
                entries: VecDeque::new(),
                loaded: false,
                dirty: false,
                last_write: None,
            }),
        }
    }

    /// Adds a refusal; writes the file unless it was written less than the interval ago.
    /// Blocking (file I/O): call from blocking code.
    pub fn record(&self, refusal: Refusal) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if !ring.loaded {
            ring.entries = read(&self.path).into();
            ring.loaded = true;
        }
        ring.entries.push_back(refusal);
        while ring.entries.len() > MAX_RECENT_REFUSALS {
            ring.entries.pop_front();
        }
        ring.dirty = true;
        let due = ring
            .last_write
            .is_none_or(|t| t.elapsed() >= REFUSAL_WRITE_INTERVAL);
        if due {
            self.write(&mut ring);
        }
    }

    /// Writes what is not written yet (at shutdown, or after a sync round).
    pub fn flush(&self) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.dirty {
            self.write(&mut ring);
        }
    }

    fn write(&self, ring: &mut Ring) {
        let file = RefusalsFile {
            refusals: ring.entries.iter().cloned().collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).expect("serialising strings cannot fail");
        bytes.push(b'\n');
        match crate::index::atomic::write(&self.tmp, &self.path, &bytes) {
            Ok(()) => ring.dirty = false,
            Err(e) => tracing::warn!("{}: {e}", self.path.display()),
        }
        ring.last_write = Some(Instant::now());
    }
}

/// The refusals recorded in a store's state folder, oldest first; empty if there are none or
/// the file is unreadable (it is informational only).
pub fn read(path: &Path) -> Vec<Refusal> {
    use std::io::Read as _;
    // A full ring is ~100 entries of ~1 KB at most; anything far larger is not ours.
    const MAX_FILE_BYTES: u64 = 1 << 20;
    let mut bytes = Vec::new();
    let read =
        std::fs::File::open(path).and_then(|f| f.take(MAX_FILE_BYTES).read_to_end(&mut bytes));
    if read.is_err() {
        return Vec::new();
    }
    serde_json::from_slice::<RefusalsFile>(&bytes)
        .map(|f| f.refusals)
        .unwrap_or_default()
}

/// Time since a refusal, to the second, for display (zero if its time is unreadable).
pub fn age(refusal: &Refusal, now: SystemTime) -> Duration {
    let then = humantime::parse_rfc3339(&refusal.time).unwrap_or(now);
    Duration::from_secs(now.duration_since(then).unwrap_or_default().as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let refusals = Refusals::new(dir.path(), dir.path());
        for i in 0..MAX_RECENT_REFUSALS + 5 {
            refusals.record(Refusal::now("push", "bundle", None, None, &format!("r{i}")));
        }
        refusals.flush();
        let on_disk = read(&dir.path().join(REFUSALS_FILE));
        assert_eq!(on_disk.len(), MAX_RECENT_REFUSALS);
        assert_eq!(on_disk[0].reason, "r5");
        assert_eq!(
            on_disk.last().unwrap().reason,
            format!("r{}", MAX_RECENT_REFUSALS + 4)
        );

        // A new process appends to what the last one left.
        let again = Refusals::new(dir.path(), dir.path());
        again.record(Refusal::now(
            "sync",
            "index",
            None,
            Some("http://u/"),
            "late",
        ));
        again.flush();
        let on_disk = read(&dir.path().join(REFUSALS_FILE));
        assert_eq!(on_disk.len(), MAX_RECENT_REFUSALS);
        assert_eq!(on_disk.last().unwrap().reason, "late");
    }

    #[test]
    fn long_and_multi_line_fields_are_cut_to_one_line() {
        let r = Refusal::now("push", "bundle", None, None, &"x\n".repeat(1000));
        assert!(!r.reason.contains('\n'));
        assert!(r.reason.chars().count() <= MAX_FIELD_CHARS + 1);
    }
}
