//! The sync daemon: keeps a mirror's store up to date from upstream mirrors, verifying every
//! byte against the publishers' keys, whichever upstream it came from.
//!
//! Owns the schedule (rounds every `interval`, jittered ±10 %), the upstream set (configured
//! ones, plus the publishers' signed mirror lists when asked), per-upstream backoff, the
//! download limit, and the sync state in `<store>/.state/sync/`. Each round syncs every
//! trusted publisher concurrently; within a publisher every upstream is polled at once with a
//! conditional request, and whatever answers first is handled first, so a dead or tarpitting
//! upstream delays nobody but itself. A lying upstream (wrong bytes, wrong size, older or
//! expired index, foreign signature, an index listing what it does not have) is logged with the
//! reason, counted on `/metrics`, backed off, and never fatal.
//!
//! It never installs unverified bytes (the store verifies again before anything becomes
//! visible), never serves an index before every object it lists is present, never takes a key
//! or a trust decision from an upstream, and never spawns a task it does not own: rounds run in
//! `JoinSet`s dropped with them, and [`Syncer::run`] stops when its `CancellationToken` fires.
//!
//! - `upstream`: transport (HTTP, folders), timeouts, backoff bookkeeping.
//! - `publisher`: one publisher's round (heads, tracker, pieces, completion).
//! - `download`: bundles and signatures, failover, resumable `.part` files.
//! - `segmented`: large bundles in checked chunks from every upstream at once (the engine in
//!   [`crate::segmented`], shared with the reader).
//! - `prune`: `keep = "current"` retention.
//! - `state`: `state.json` (entity tags, prune clocks) and the lock.
//! - `report`, `error`, `backoff`: what a round did, why things failed, timing policy.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{SyncConfig, UpstreamConfig};
use crate::index::{LazyTracker, MirrorUrl};
use crate::keys::PublicKey;
use crate::limits::{BundleLimits, IndexLimits};
use crate::mirror::{Metrics, UpstreamState};
use crate::store::Store;

mod backoff;
mod download;
mod error;
mod prune;
mod publisher;
mod report;
mod segmented;
mod state;
mod upstream;

pub use backoff::Backoff;
pub use download::{partial_path, RESUMABLE_FROM};
pub use error::{NetworkKind, SyncError};
pub use report::{
    error_chain, Progress, ProgressSnapshot, PublisherReport, RoundReport, UpstreamReport,
    WireBytes,
};
pub use segmented::chunked_path;
pub use state::{upstream_health, UpstreamHealth};
pub use upstream::Timeouts;

use publisher::PublisherSync;
use report::Round;
use state::{SyncLock, SyncState};
use upstream::Upstream;

/// How far the polling period is moved at random each round (±10 %).
const INTERVAL_JITTER: f64 = 0.1;

/// The sync's settings. Defaults are documented on each field and match `mirrors.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOptions {
    /// Polling period of [`Syncer::run`], jittered ±10 %. Default 5 min.
    pub interval: Duration,
    /// Also pull each publisher from the mirrors its signed index lists. Default false.
    pub use_index_mirrors: bool,
    /// Connect and read-idle timeouts for every upstream. Defaults 5 s and 10 s: a reachable
    /// mirror connects in a few round trips and never pauses for seconds mid-answer, and a
    /// tarpit must cost little; slow links are covered by the read timeout being per read.
    pub timeouts: Timeouts,
    /// Most bundle downloads at a time, over all upstreams and publishers. Default 16 (see
    /// [`SyncConfig::max_downloads`]).
    pub max_downloads: usize,
    /// With `keep = "current"`, how long a bundle stays after no current index lists it.
    /// Default 24 h: readers holding the previous index can still fetch what it listed.
    pub prune_grace: Duration,
    /// Backoff after an upstream's failed round. Default 30 s doubling to 1 h: a blocked or
    /// lying mirror is asked less and less often, yet retried within the hour.
    pub backoff: Backoff,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self::from_config(&SyncConfig::default())
    }
}

impl SyncOptions {
    /// The options a `[sync]` section gives, with the non-configurable ones at their defaults.
    pub fn from_config(c: &SyncConfig) -> Self {
        Self {
            interval: c.interval,
            use_index_mirrors: c.use_index_mirrors,
            timeouts: Timeouts {
                connect: c.connect_timeout,
                read: c.read_timeout,
            },
            max_downloads: c.max_downloads,
            prune_grace: c.prune_grace,
            backoff: Backoff {
                base: Duration::from_secs(30),
                max: Duration::from_secs(3600),
            },
        }
    }
}

/// Keeps a store in sync with upstream mirrors. Create with [`Syncer::new`], then call
/// [`Syncer::run_once`] (cron) or [`Syncer::run`] (daemon).
pub struct Syncer {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    options: SyncOptions,
    publishers: Vec<Arc<PublisherSync>>,
    /// Configured upstreams, in configuration order.
    configured: Vec<Arc<Upstream>>,
    /// Upstreams learnt from signed indexes, by URL; created on first use.
    learnt: Mutex<HashMap<String, Arc<Upstream>>>,
    state: Arc<Mutex<SyncState>>,
    downloads: Arc<Semaphore>,
    index_limits: IndexLimits,
    bundle_limits: BundleLimits,
    progress: Arc<Progress>,
    _lock: SyncLock,
}

/// What the tasks of one round share.
pub(crate) struct RoundCtx {
    store: Arc<Store>,
    round: Arc<Round>,
    state: Arc<Mutex<SyncState>>,
    downloads: Arc<Semaphore>,
    cancel: CancellationToken,
    index_limits: IndexLimits,
    bundle_limits: BundleLimits,
    prune_grace: Duration,
}

impl RoundCtx {
    fn state(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Syncer {
    /// Prepares a sync of `store` for `publishers` from `upstreams`: takes the sync lock (one
    /// sync per store), opens each publisher's tracker (verifying its held head; the entries
    /// are read when a round first needs them) and loads the sync state. Nothing here grows
    /// with the size of an index, so a round with nothing new starts at once. Blocking parts
    /// run on a blocking thread.
    pub async fn new(
        store: Arc<Store>,
        publishers: &[PublicKey],
        upstreams: &[UpstreamConfig],
        options: SyncOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SyncError> {
        let configured = dedup_upstreams(upstreams, options.timeouts)?;
        let mut keys: Vec<PublicKey> = Vec::new();
        for key in publishers {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        let index_limits = IndexLimits::default();
        let limits = index_limits.clone();
        let opened_store = store.clone();
        let (lock, state, trackers) = blocking(move || {
            let dir = opened_store.root().join(".state").join("sync");
            let lock = SyncLock::acquire(&dir)?;
            let state = SyncState::load(&dir, opened_store.tmp_dir());
            let mut trackers = Vec::new();
            for key in keys {
                // The store's verified roots say which keys sign this publisher's heads.
                let authority = opened_store.authority(&key).map_err(SyncError::store)?;
                let tracker = LazyTracker::open(&dir, &authority, limits.clone())
                    .map_err(SyncError::tracker)?;
                trackers.push(PublisherSync::new(key, dir.clone(), tracker));
            }
            Ok((lock, state, trackers))
        })
        .await?;
        for u in &configured {
            metrics.set_upstream_state(u.url(), UpstreamState::Idle);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                metrics,
                downloads: Arc::new(Semaphore::new(options.max_downloads.max(1))),
                options,
                publishers: trackers.into_iter().map(Arc::new).collect(),
                configured,
                learnt: Mutex::new(HashMap::new()),
                state: Arc::new(Mutex::new(state)),
                index_limits,
                bundle_limits: BundleLimits::default(),
                progress: Arc::default(),
                _lock: lock,
            }),
        })
    }

    pub fn options(&self) -> &SyncOptions {
        &self.inner.options
    }

    /// Live totals of the round in progress (reset when a round starts).
    pub fn progress(&self) -> Arc<Progress> {
        self.inner.progress.clone()
    }

    /// One round: every publisher from every upstream that is not backing off. Never fails as a
    /// whole; the report says what went wrong where. Stops early (with a partial report) when
    /// `cancel` fires.
    pub async fn run_once(&self, cancel: &CancellationToken) -> RoundReport {
        let inner = &self.inner;
        let started = Instant::now();
        let round = Arc::new(Round::new(inner.metrics.clone(), inner.progress.clone()));
        let ctx = Arc::new(RoundCtx {
            store: inner.store.clone(),
            round: round.clone(),
            state: inner.state.clone(),
            downloads: inner.downloads.clone(),
            cancel: cancel.clone(),
            index_limits: inner.index_limits.clone(),
            bundle_limits: inner.bundle_limits.clone(),
            prune_grace: inner.options.prune_grace,
        });
        let mut used: HashMap<String, Arc<Upstream>> = HashMap::new();
        let mut backing_off: Vec<String> = Vec::new();
        let mut tasks = JoinSet::new();
        for p in &inner.publishers {
            let learnt = if inner.options.use_index_mirrors {
                let tracker = p.tracker.lock().await;
                tracker
                    .held_head()
                    .map(|h| h.head().mirrors().to_vec())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let mut upstreams = Vec::new();
            for u in inner.configured.iter().cloned().chain(self.learnt(&learnt)) {
                if upstreams.iter().any(|x: &Arc<Upstream>| x.url() == u.url()) {
                    continue;
                }
                if !u.ready(started) {
                    if !backing_off.iter().any(|b| b == u.url()) {
                        backing_off.push(u.url().to_owned());
                    }
                    continue;
                }
                if used.insert(u.url().to_owned(), u.clone()).is_none() {
                    inner
                        .metrics
                        .set_upstream_state(u.url(), UpstreamState::Syncing);
                }
                upstreams.push(u);
            }
            tasks.spawn(publisher::sync_publisher(ctx.clone(), p.clone(), upstreams));
        }
        let mut publishers = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(report) => publishers.push(report),
                Err(e) => {
                    if let Ok(panic) = e.try_into_panic() {
                        std::panic::resume_unwind(panic);
                    }
                }
            }
        }
        publishers.sort_by(|a, b| a.publisher.cmp(&b.publisher));
        drop(ctx);
        if !cancel.is_cancelled() {
            self.record_health(&used, &round);
        }
        let refused = round.take_refused();
        let store = inner.store.clone();
        let _ = blocking(move || {
            for r in refused {
                store.record_refusal(r);
            }
            store.flush_refusals();
            Ok(())
        })
        .await;
        let saved = inner.state.lock().unwrap_or_else(|p| p.into_inner()).save();
        if let Err(e) = saved {
            tracing::error!("sync: {e}");
            if let Some(first) = publishers.first_mut() {
                first.errors.push(e);
            }
        }
        let round = Arc::try_unwrap(round)
            .unwrap_or_else(|_| unreachable!("every task holding the round has finished"));
        RoundReport {
            elapsed: started.elapsed(),
            upstreams: round.finish(&backing_off),
            publishers,
        }
    }

    /// Runs rounds every `interval` (jittered) until `cancel` fires; the first one starts at
    /// once. Logs a line per round; failures are logged as they happen.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let report = self.run_once(&cancel).await;
            if cancel.is_cancelled() {
                break;
            }
            let bytes = report.bytes();
            let failed = report
                .upstreams
                .iter()
                .filter(|u| !u.errors.is_empty())
                .count();
            tracing::info!(
                elapsed_ms = report.elapsed.as_millis() as u64,
                upstreams = report.upstreams.len(),
                failed,
                bytes = bytes.total(),
                "sync round done"
            );
            let wait = backoff::jittered(
                self.inner.options.interval,
                INTERVAL_JITTER,
                backoff::random_fraction(),
            );
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::debug!("sync stopped");
    }

    /// Upstream objects for mirrors learnt from a signed index (no proxy, default client).
    fn learnt(&self, mirrors: &[MirrorUrl]) -> Vec<Arc<Upstream>> {
        let mut learnt = self.inner.learnt.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for m in mirrors {
            if let Some(u) = learnt.get(m.as_str()) {
                out.push(u.clone());
                continue;
            }
            let Ok(url) = reqwest::Url::parse(m.as_str()) else {
                continue;
            };
            match Upstream::new(&url, None, self.inner.options.timeouts) {
                Ok(u) => {
                    let u = Arc::new(u);
                    learnt.insert(m.as_str().to_owned(), u.clone());
                    out.push(u);
                }
                Err(e) => tracing::warn!("sync: ignoring a mirror from a signed index: {e}"),
            }
        }
        out
    }

    /// Backs off upstreams that failed this round and clears those that did not.
    fn record_health(&self, used: &HashMap<String, Arc<Upstream>>, round: &Round) {
        let now = Instant::now();
        let mut state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        for (url, u) in used {
            let error = round.first_error(url);
            let backoff = u.record(error.is_none(), &self.inner.options.backoff, now);
            state.record_upstream(url, error, backoff, SystemTime::now());
            match backoff {
                None => {
                    self.inner
                        .metrics
                        .set_upstream_state(url, UpstreamState::Idle);
                    self.inner.metrics.upstream_success(url, SystemTime::now());
                }
                Some(delay) => {
                    tracing::info!(upstream = %url, "backing off for {:.0?}", delay);
                    self.inner
                        .metrics
                        .set_upstream_state(url, UpstreamState::BackingOff);
                }
            }
        }
    }
}

/// Checks that every configured upstream can be used (URL scheme, proxy), as starting a sync
/// with them would: for `qasid mirror --check` and configuration reloads.
pub fn check_upstreams(upstreams: &[UpstreamConfig], sync: &SyncConfig) -> Result<(), SyncError> {
    dedup_upstreams(upstreams, SyncOptions::from_config(sync).timeouts).map(drop)
}

/// Builds the configured upstreams, once per URL.
fn dedup_upstreams(
    upstreams: &[UpstreamConfig],
    timeouts: Timeouts,
) -> Result<Vec<Arc<Upstream>>, SyncError> {
    let mut out: Vec<Arc<Upstream>> = Vec::new();
    for c in upstreams {
        let u = Upstream::new(&c.url, c.proxy.as_ref(), timeouts)?;
        if !out.iter().any(|x| x.url() == u.url()) {
            out.push(Arc::new(u));
        }
    }
    Ok(out)
}

/// Runs blocking work (files, verification) off the async workers; a panic there is re-raised.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SyncError> + Send + 'static,
) -> Result<T, SyncError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(SyncError::Cancelled),
        },
    }
}

/// `fut`, unless `cancel` fires first.
pub(crate) async fn cancellable<T>(
    cancel: &CancellationToken,
    fut: impl Future<Output = Result<T, SyncError>>,
) -> Result<T, SyncError> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(SyncError::Cancelled),
        result = fut => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};
    use std::path::Path;

    #[test]
    fn options_come_from_the_sync_section_with_documented_defaults() {
        let defaults = SyncOptions::default();
        assert_eq!(defaults.interval, Duration::from_secs(300));
        assert_eq!(
            defaults.timeouts,
            Timeouts {
                connect: Duration::from_secs(5),
                read: Duration::from_secs(10),
            }
        );
        assert_eq!(defaults.max_downloads, 16);
        assert_eq!(defaults.prune_grace, Duration::from_secs(24 * 3600));
        assert!(!defaults.use_index_mirrors);

        let text =
            "[sync]\ninterval = \"1m\"\nuse_index_mirrors = true\nconnect_timeout = \"2s\"\n\
                    read_timeout = \"3s\"\nmax_downloads = 4\nprune_grace = \"1h\"\n";
        let config = Config::parse(text, Path::new("mirrors.toml")).unwrap();
        let o = SyncOptions::from_config(&config.sync);
        assert_eq!(o.interval, Duration::from_secs(60));
        assert!(o.use_index_mirrors);
        assert_eq!(o.timeouts.connect, Duration::from_secs(2));
        assert_eq!(o.timeouts.read, Duration::from_secs(3));
        assert_eq!(o.max_downloads, 4);
        assert_eq!(o.prune_grace, Duration::from_secs(3600));

        // The example config documents exactly the defaults.
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("mirrors.toml");
        let example = Config::load(&example).unwrap();
        assert_eq!(SyncOptions::from_config(&example.sync), defaults);

        let bad = Config::parse("[sync]\nmax_downloads = 0\n", Path::new("m.toml"));
        assert!(matches!(bad, Err(ConfigError::Invalid { line: 2, .. })));
        let bad = Config::parse("[sync]\nread_timeout = \"soon\"\n", Path::new("m.toml"));
        assert!(matches!(bad, Err(ConfigError::Invalid { line: 2, .. })));
    }
}
