//! What a sync round did: per-upstream tallies while it runs, and the [`RoundReport`] it returns.
//!
//! Owns the bookkeeping of requests, bytes and failures, and the single place where a failure
//! is logged (tracing `warn` with the upstream URL and a fixed reason) and counted on the
//! mirror's metrics. It never decides anything about the content.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::ser::SerializeSeq as _;
use serde::{Serialize, Serializer};

use crate::mirror::Metrics;
use crate::store::Refusal;
use crate::sync::error::SyncError;
use crate::ErrorClass;

/// Body bytes received from an upstream, by kind (HTTP headers not included).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WireBytes {
    /// `index.json` envelopes (a 304 counts 0).
    pub head: u64,
    /// Index pieces.
    pub pieces: u64,
    /// Bundles.
    pub bundles: u64,
    /// Detached `.minisig` signatures.
    pub minisigs: u64,
    /// Chunk lists of large bundles (fetched to check each chunk of a segmented download).
    pub chunk_lists: u64,
}

impl WireBytes {
    pub fn total(&self) -> u64 {
        self.head + self.pieces + self.bundles + self.minisigs + self.chunk_lists
    }
}

/// What crossed the wire, for [`Round::received`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wire {
    Head,
    Piece,
    Bundle,
    Minisig,
    ChunkList,
}

/// One upstream's round.
#[derive(Debug, Serialize)]
pub struct UpstreamReport {
    /// The upstream's base URL (a password, if any, masked).
    pub url: String,
    /// Not asked this round: still backing off after earlier failures.
    pub backing_off: bool,
    /// Requests that got an answer (any status).
    pub requests: u64,
    /// `index.json` requests answered 304 Not Modified.
    pub not_modified: u64,
    /// Publishers this upstream does not carry (404 for their `index.json`).
    pub not_carried: u64,
    /// Bundles installed from this upstream.
    pub bundles: u64,
    pub bytes: WireBytes,
    /// Of `bytes.bundles`, the bytes of segmented downloads that were not used: chunks that
    /// failed their hash, chunks cut part-way, duplicates of chunks another upstream finished
    /// first. The rest of its segmented bytes were delivered into verified bundles.
    pub bundle_bytes_wasted: u64,
    /// Everything that went wrong with this upstream, in order.
    #[serde(serialize_with = "serialize_errors")]
    pub errors: Vec<SyncError>,
}

/// One publisher's state after the round.
#[derive(Debug, Serialize)]
pub struct PublisherReport {
    /// The publisher's key id.
    pub publisher: String,
    /// Sequence of the index the store serves now.
    pub installed: Option<u64>,
    /// Sequence of the newest verified index known; above `installed` while objects it lists
    /// are still missing.
    pub newest: Option<u64>,
    /// Bundles the newest index lists that no upstream served this round.
    pub missing: u64,
    /// Bundles removed by `keep = "current"` pruning.
    pub pruned: u64,
    /// Local failures (store, state); upstream failures are in their [`UpstreamReport`].
    #[serde(serialize_with = "serialize_errors")]
    pub errors: Vec<SyncError>,
}

/// The result of [`crate::sync::Syncer::run_once`].
#[derive(Debug, Serialize)]
pub struct RoundReport {
    /// Wall time of the round.
    #[serde(rename = "elapsed_ms", serialize_with = "serialize_millis")]
    pub elapsed: Duration,
    pub upstreams: Vec<UpstreamReport>,
    pub publishers: Vec<PublisherReport>,
}

impl RoundReport {
    /// `None` when everything synced; otherwise the class that decides the exit code:
    /// [`ErrorClass::Runtime`] if any upstream failed at runtime (or locally, or a publisher's
    /// newest index could not be completed), [`ErrorClass::Verification`] if the only failures
    /// were content refused as not authentic or inconsistent.
    pub fn failure(&self) -> Option<ErrorClass> {
        let errors = self
            .upstreams
            .iter()
            .flat_map(|u| &u.errors)
            .chain(self.publishers.iter().flat_map(|p| &p.errors));
        let mut class = None;
        for e in errors {
            match e.class() {
                ErrorClass::Verification => {
                    class.get_or_insert(ErrorClass::Verification);
                }
                ErrorClass::Runtime | ErrorClass::Usage => return Some(ErrorClass::Runtime),
            }
        }
        let incomplete = self.publishers.iter().any(|p| p.newest > p.installed);
        if incomplete && class.is_none() {
            return Some(ErrorClass::Runtime);
        }
        class
    }

    /// Total body bytes received from all upstreams.
    pub fn bytes(&self) -> WireBytes {
        self.upstreams
            .iter()
            .fold(WireBytes::default(), |acc, u| WireBytes {
                head: acc.head + u.bytes.head,
                pieces: acc.pieces + u.bytes.pieces,
                bundles: acc.bundles + u.bytes.bundles,
                minisigs: acc.minisigs + u.bytes.minisigs,
                chunk_lists: acc.chunk_lists + u.bytes.chunk_lists,
            })
    }
}

#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    not_modified: u64,
    not_carried: u64,
    bundles: u64,
    bytes: WireBytes,
    wasted: u64,
    errors: Vec<SyncError>,
}

/// Running totals of the current round, for a progress display while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    requests: AtomicU64,
    bytes: AtomicU64,
    bundles: AtomicU64,
    errors: AtomicU64,
}

/// A snapshot of [`Progress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgressSnapshot {
    /// Requests answered so far.
    pub requests: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// Bundles verified and installed.
    pub bundles: u64,
    /// Failures (network, refused content).
    pub errors: u64,
}

impl Progress {
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            bundles: self.bundles.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    fn reset(&self) {
        for c in [&self.requests, &self.bytes, &self.bundles, &self.errors] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// Tallies of a round in progress, shared by its tasks.
pub(crate) struct Round {
    /// A std `Mutex`: updated in short sections, never across an `.await`.
    tallies: Mutex<BTreeMap<String, Tally>>,
    metrics: Arc<Metrics>,
    progress: Arc<Progress>,
    /// Content refused as not authentic this round, for the store's recent-refusals record
    /// (written after the round, off the async workers).
    refused: Mutex<Vec<Refusal>>,
}

impl Round {
    pub fn new(metrics: Arc<Metrics>, progress: Arc<Progress>) -> Self {
        progress.reset();
        Self {
            tallies: Mutex::new(BTreeMap::new()),
            metrics,
            progress,
            refused: Mutex::new(Vec::new()),
        }
    }

    fn with<T>(&self, url: &str, f: impl FnOnce(&mut Tally) -> T) -> T {
        let mut tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        f(tallies.entry(url.to_owned()).or_default())
    }

    /// An upstream takes part in the round (so it appears in the report even if idle).
    pub fn join(&self, url: &str) {
        self.with(url, |_| ());
    }

    pub fn received(&self, url: &str, wire: Wire, bytes: u64) {
        self.progress.requests.fetch_add(1, Ordering::Relaxed);
        self.progress.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.with(url, |t| {
            t.requests += 1;
            match wire {
                Wire::Head => t.bytes.head += bytes,
                Wire::Piece => t.bytes.pieces += bytes,
                Wire::Bundle => t.bytes.bundles += bytes,
                Wire::Minisig => t.bytes.minisigs += bytes,
                Wire::ChunkList => t.bytes.chunk_lists += bytes,
            }
        });
    }

    /// What an upstream did in a segmented bundle download: `delivered` bytes went into the
    /// bundle, `wasted` did not.
    pub fn segmented(&self, url: &str, delivered: u64, wasted: u64) {
        self.received(url, Wire::Bundle, delivered + wasted);
        self.with(url, |t| t.wasted += wasted);
    }

    pub fn not_modified(&self, url: &str) {
        self.progress.requests.fetch_add(1, Ordering::Relaxed);
        self.with(url, |t| {
            t.requests += 1;
            t.not_modified += 1;
        });
    }

    pub fn not_carried(&self, url: &str) {
        self.progress.requests.fetch_add(1, Ordering::Relaxed);
        self.with(url, |t| {
            t.requests += 1;
            t.not_carried += 1;
        });
    }

    pub fn bundle_installed(&self, url: &str) {
        self.progress.bundles.fetch_add(1, Ordering::Relaxed);
        self.with(url, |t| t.bundles += 1);
    }

    /// Logs and counts an upstream's failure. Cancellation is not a failure.
    pub fn fail(&self, e: SyncError) {
        if matches!(e, SyncError::Cancelled) {
            return;
        }
        let Some(url) = e.upstream().map(str::to_owned) else {
            tracing::error!("sync: {e}");
            return;
        };
        let reason = e.reason();
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(upstream = %url, reason, "sync: {e}");
        if e.class() == ErrorClass::Verification {
            self.metrics.verification_failure(reason);
            let refusal = Refusal::now("sync", reason, None, Some(&url), &error_chain(&e));
            self.refused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(refusal);
        }
        self.metrics.upstream_failure(&url, reason);
        self.with(&url, |t| t.errors.push(e));
    }

    /// The first failure `url` had this round, on one line.
    pub fn first_error(&self, url: &str) -> Option<String> {
        self.with(url, |t| t.errors.first().map(|e| error_chain(e)))
    }

    /// The refusals recorded so far (taken: a second call returns none).
    pub fn take_refused(&self) -> Vec<Refusal> {
        std::mem::take(&mut self.refused.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The per-upstream reports, with `backing_off` upstreams added.
    pub fn finish(self, backing_off: &[String]) -> Vec<UpstreamReport> {
        let mut tallies = self.tallies.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut reports: Vec<UpstreamReport> = backing_off
            .iter()
            .filter(|url| !tallies.contains_key(url.as_str()))
            .map(|url| UpstreamReport {
                url: url.clone(),
                backing_off: true,
                requests: 0,
                not_modified: 0,
                not_carried: 0,
                bundles: 0,
                bytes: WireBytes::default(),
                bundle_bytes_wasted: 0,
                errors: Vec::new(),
            })
            .collect();
        reports.extend(
            std::mem::take(&mut tallies)
                .into_iter()
                .map(|(url, t)| UpstreamReport {
                    url,
                    backing_off: false,
                    requests: t.requests,
                    not_modified: t.not_modified,
                    not_carried: t.not_carried,
                    bundles: t.bundles,
                    bytes: t.bytes,
                    bundle_bytes_wasted: t.wasted,
                    errors: t.errors,
                }),
        );
        reports.sort_by(|a, b| a.url.cmp(&b.url));
        reports
    }
}

/// Milliseconds with microsecond precision (an unchanged round takes well under 1 ms).
fn serialize_millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_micros() as f64 / 1000.0)
}

/// Errors as `{"reason", "class", "message"}` objects.
fn serialize_errors<S: Serializer>(errors: &[SyncError], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct ErrorWire<'a> {
        reason: &'a str,
        class: &'a str,
        message: String,
    }
    let mut seq = s.serialize_seq(Some(errors.len()))?;
    for e in errors {
        seq.serialize_element(&ErrorWire {
            reason: e.reason(),
            class: match e.class() {
                ErrorClass::Verification => "verification",
                ErrorClass::Runtime => "runtime",
                ErrorClass::Usage => "usage",
            },
            message: error_chain(e),
        })?;
    }
    seq.end()
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        // Many errors show their cause in their own text already: say it once.
        let part = inner.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content_id::ContentId;
    use crate::sync::error::NetworkKind;

    fn report(errors: Vec<SyncError>, installed: Option<u64>, newest: Option<u64>) -> RoundReport {
        RoundReport {
            elapsed: Duration::from_millis(5),
            upstreams: vec![UpstreamReport {
                url: "http://a.example/".into(),
                backing_off: false,
                requests: 1,
                not_modified: 0,
                not_carried: 0,
                bundles: 0,
                bytes: WireBytes::default(),
                bundle_bytes_wasted: 0,
                errors,
            }],
            publishers: vec![PublisherReport {
                publisher: "ABC".into(),
                installed,
                newest,
                missing: 0,
                pruned: 0,
                errors: Vec::new(),
            }],
        }
    }

    #[test]
    fn failure_class_decides_the_exit_code() {
        assert_eq!(report(vec![], Some(2), Some(2)).failure(), None);
        assert_eq!(
            report(vec![], Some(1), Some(2)).failure(),
            Some(ErrorClass::Runtime)
        );
        let lie = || SyncError::MissingObject {
            url: "http://a.example/".into(),
            what: "bundle",
            sha256: ContentId::of_bytes(b"x"),
        };
        assert_eq!(
            report(vec![lie()], Some(1), Some(2)).failure(),
            Some(ErrorClass::Verification)
        );
        let outage = SyncError::Network {
            url: "http://a.example/".into(),
            path: "x".into(),
            kind: NetworkKind::Connect,
            reason: "refused".into(),
        };
        assert_eq!(
            report(vec![lie(), outage], Some(2), Some(2)).failure(),
            Some(ErrorClass::Runtime)
        );
        let json = serde_json::to_value(report(vec![lie()], None, None)).unwrap();
        assert_eq!(
            json["upstreams"][0]["errors"][0]["reason"],
            "missing_object"
        );
        assert_eq!(json["upstreams"][0]["errors"][0]["class"], "verification");
        assert_eq!(json["elapsed_ms"], 5.0);
    }
}
