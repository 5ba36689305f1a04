//! `qasid sync`: pull trusted publishers' content from upstream mirrors into a store, verified,
//! once (for cron) or every interval; and the sync that `qasid mirror` runs in the background.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use qasid::bucket::{Access, Bucket};
use qasid::config::{self, Config, Keep, PublisherConfig, SyncConfig, UpstreamConfig};
use qasid::daemon::Signals;
use qasid::keys::PublicKey;
use qasid::limits::IndexLimits;
use qasid::mirror::Metrics;
use qasid::store::{BucketSink, Store};
use qasid::sync::{error_chain, RoundReport, SyncOptions, Syncer};
use qasid::ErrorClass;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{json, print_json, Failure};

/// Pull trusted publishers' indexes and bundles from upstream mirrors into a store.
///
/// Each round asks every upstream for each publisher's index.json (a conditional request: an
/// unchanged index costs one 304), verifies a new one (key, signature, sequence above the one
/// held, expiry), fetches the index pieces and bundles the store lacks from that upstream or
/// any other, verifies every bundle, and installs the index only once everything it lists is
/// present. Upstreams that fail or lie are logged, skipped and retried with backoff.
///
/// With --once: one round, a summary per upstream on stdout, and exit code 0 when everything
/// synced, 1 if an upstream failed (network, timeout, HTTP error) or something could not be
/// completed, 3 if the only failures were content refused as not authentic or inconsistent
/// (bad signature, wrong hash or size, older or expired index, missing objects). Without it,
/// rounds run every --interval until SIGINT or SIGTERM (`qasid mirror` does the same while
/// serving). Settings come from --config; each flag overrides its key.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  qasid sync --once --store /srv/qasid --publisher daily.pub --upstream https://mirror.example/\n  qasid sync --once --config mirrors.toml --json"
)]
pub struct SyncArgs {
    /// Run one round and exit with 0, 1 or 3 (see above).
    #[arg(long)]
    once: bool,
    /// The configuration file (mirrors.toml). Without it, defaults and flags only.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The store: a folder, or an S3-compatible bucket s3://bucket/prefix (credentials and
    /// endpoint from AWS_* variables and [s3]) (mirror.store; default ./qasid-store).
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    store: Option<PathBuf>,
    /// A bucket store's local work folder: verified copies, temp files, index history
    /// (mirror.work; default $XDG_STATE_HOME/qasid/buckets/NAME).
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// Keep every verified object ("all", the default) or prune what no current index lists
    /// after --prune-grace (mirror.keep).
    #[arg(long, value_name = "all|current")]
    keep: Option<Keep>,
    /// A publisher to sync: a publisher.pub file or its one-line base64 key. Repeatable
    /// ([[publisher]] key).
    #[arg(long = "publisher", value_name = "PUBKEY")]
    publishers: Vec<String>,
    /// An upstream to pull from: http(s):// base URL of a mirror or static host, or file://
    /// folder. Repeatable ([[upstream]] url).
    #[arg(long = "upstream", value_name = "URL", value_parser = config::parse_mirror_url)]
    upstreams: Vec<reqwest::Url>,
    /// Proxy for the --upstream URLs given on the command line ([[upstream]] proxy).
    #[arg(long, value_name = "URL", value_parser = config::parse_proxy_url)]
    upstream_proxy: Option<reqwest::Url>,
    /// Polling period without --once, jittered ±10% (sync.interval; default 5m).
    #[arg(long, visible_alias = "sync-interval", value_name = "DURATION", value_parser = humantime::parse_duration)]
    interval: Option<Duration>,
    /// Also pull from the mirrors listed in publishers' signed indexes (sync.use_index_mirrors).
    #[arg(long, value_name = "BOOL")]
    use_index_mirrors: Option<bool>,
    #[command(flatten)]
    tuning: SyncTuning,
    /// Print the round's report as JSON (with --once).
    #[arg(long)]
    json: bool,
}

/// The `[sync]` keys shared by `qasid sync` and `qasid mirror`.
#[derive(Debug, Args)]
pub struct SyncTuning {
    /// Time to connect to an upstream (sync.connect_timeout; default 5s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    connect_timeout: Option<Duration>,
    /// Longest wait for the next byte from an upstream (sync.read_timeout; default 10s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    read_timeout: Option<Duration>,
    /// Most bundle downloads at a time (sync.max_downloads; default 16).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_downloads: Option<u64>,
    /// With keep = "current", how long an unlisted bundle stays (sync.prune_grace; default 24h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    prune_grace: Option<Duration>,
}

impl SyncTuning {
    /// Puts the given flags over the file's `[sync]` values.
    pub fn apply(&self, c: &mut SyncConfig) -> Result<(), Failure> {
        if let Some(v) = self.connect_timeout {
            c.connect_timeout = v;
        }
        if let Some(v) = self.read_timeout {
            c.read_timeout = v;
        }
        if let Some(v) = self.max_downloads {
            c.max_downloads = usize::try_from(v).map_err(Failure::usage)?;
        }
        if let Some(v) = self.prune_grace {
            c.prune_grace = v;
        }
        Ok(())
    }
}

impl SyncArgs {
    /// Whether this runs until stopped (it logs what it does, like `qasid mirror`).
    pub fn is_daemon(&self) -> bool {
        !self.once
    }

    fn config(&self) -> Result<Config, Failure> {
        let mut c = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        super::store_flags(&mut c.mirror, self.store.as_deref(), self.work.as_deref())?;
        if let Some(v) = self.keep {
            c.mirror.keep = v;
        }
        if !self.publishers.is_empty() {
            (c.publishers, c.publisher_roots) = publishers_from_flags(&self.publishers)?;
        }
        if !self.upstreams.is_empty() {
            c.upstreams = super::sync::upstreams_from_flags(&self.upstreams, &self.upstream_proxy);
        }
        if let Some(v) = self.interval {
            c.sync.interval = v;
        }
        if let Some(v) = self.use_index_mirrors {
            c.sync.use_index_mirrors = v;
        }
        self.tuning.apply(&mut c.sync)?;
        Ok(c)
    }

    pub fn run(self) -> Result<(), Failure> {
        let config = self.config()?;
        if config.publishers.is_empty() {
            return Err(Failure::usage(anyhow::anyhow!(
                "no publishers to sync: give --publisher or [[publisher]] in the config"
            )));
        }
        if config.upstreams.is_empty() && !config.sync.use_index_mirrors {
            return Err(Failure::usage(anyhow::anyhow!(
                "no upstreams to sync from: give --upstream or [[upstream]] in the config"
            )));
        }
        let store = Arc::new(Store::open(
            &config.mirror.store,
            config.mirror.keep,
            IndexLimits::default(),
        )?);
        let _lock = store.lock()?;
        store.anchor(&config.publisher_roots)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(Failure::runtime)?;
        runtime.block_on(async move {
            let signals = Signals::install().map_err(Failure::runtime)?;
            if let Some(url) = &config.mirror.bucket {
                let bucket = Bucket::connect(url, &config.s3, Access::Write).await?;
                store.set_bucket(BucketSink {
                    bucket,
                    runtime: tokio::runtime::Handle::current(),
                });
                if !self.once {
                    // Repairs what the bucket lost while no syncer ran; the rounds then upload
                    // only what each new index adds.
                    reconcile(&store, &config.publisher_keys()).await?;
                }
            }
            let syncer = Syncer::new(
                store.clone(),
                &config.publisher_keys(),
                &config.upstreams,
                SyncOptions::from_config(&config.sync),
                Arc::new(Metrics::new()),
            )
            .await?;
            let cancel = CancellationToken::new();
            if self.once {
                let report = with_progress(&syncer, syncer.run_once(&cancel)).await;
                if self.json {
                    eprintln!("{}", summary_line(&report));
                } else {
                    print_summary(&report);
                }
                let mut doc = round_json(&report, &config.publisher_keys());
                // Whatever the round did, the bucket ends up holding the work folder's state.
                let uploaded = match config.mirror.bucket {
                    Some(_) => Some(reconcile(&store, &config.publisher_keys()).await),
                    None => None,
                };
                if let Some(Ok((objects, bytes))) = &uploaded {
                    doc["bucket"] = serde_json::json!({ "uploaded": objects, "bytes": bytes });
                    if !self.json {
                        println!("bucket: uploaded {objects} object(s), {bytes} bytes");
                    }
                }
                return match (report.failure(), uploaded) {
                    (_, Some(Err(e))) => Err(e.with_json(doc)),
                    (None, _) if self.json => print_json(&doc),
                    (None, _) => Ok(()),
                    (Some(class), _) => {
                        Err(Failure::new(class, anyhow::anyhow!(failure_line(&report)))
                            .with_json(doc))
                    }
                };
            }
            let tasks = TaskTracker::new();
            tasks.spawn(syncer.run(cancel.clone()));
            tasks.close();
            signals.shutdown().await;
            eprintln!("shutting down");
            cancel.cancel();
            tasks.wait().await;
            Ok(())
        })
    }
}

/// Puts every publisher's installed state into the store's bucket, checking each object there
/// (see [`Store::reconcile_bucket`]); objects and bytes uploaded.
async fn reconcile(store: &Arc<Store>, publishers: &[PublicKey]) -> Result<(u64, u64), Failure> {
    let (mut objects, mut bytes) = (0, 0);
    for key in publishers {
        let (store, key) = (store.clone(), key.clone());
        let done = tokio::task::spawn_blocking(move || store.reconcile_bucket(&key))
            .await
            .map_err(Failure::runtime)??;
        if let Some(done) = done {
            objects += done.objects;
            bytes += done.bytes;
        }
    }
    Ok((objects, bytes))
}

/// Runs `round`, showing live totals on stderr when it is a terminal.
async fn with_progress(
    syncer: &Syncer,
    round: impl std::future::Future<Output = RoundReport>,
) -> RoundReport {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        return round.await;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} syncing {elapsed}: {msg}")
            .expect("a valid template"),
    );
    let progress = syncer.progress();
    let show = |bar: &indicatif::ProgressBar| {
        let p = progress.snapshot();
        bar.set_message(format!(
            "{} request(s), {} received, {} bundle(s), {} error(s)",
            p.requests,
            human_bytes(p.bytes),
            p.bundles,
            p.errors
        ));
    };
    tokio::pin!(round);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    let report = loop {
        tokio::select! {
            report = &mut round => break report,
            _ = tick.tick() => {
                show(&bar);
                bar.tick();
            }
        }
    };
    bar.finish_and_clear();
    report
}

/// One line: what the round fetched, how many bundles, bytes and errors.
fn summary_line(report: &RoundReport) -> String {
    let bundles: u64 = report.upstreams.iter().map(|u| u.bundles).sum();
    let errors: usize = report
        .upstreams
        .iter()
        .map(|u| u.errors.len())
        .chain(report.publishers.iter().map(|p| p.errors.len()))
        .sum();
    let indexes = report
        .publishers
        .iter()
        .filter(|p| p.installed.is_some())
        .count();
    format!(
        "sync: {} publisher(s) ({indexes} with an index), {} upstream(s): {bundles} new bundle(s), {} received, {errors} error(s) in {:.2}s",
        report.publishers.len(),
        report.upstreams.len(),
        human_bytes(report.bytes().total()),
        report.elapsed.as_secs_f64()
    )
}

fn print_summary(report: &RoundReport) {
    println!("{}", summary_line(report));
    for u in &report.upstreams {
        let state = if u.backing_off {
            "backing off".to_owned()
        } else if u.errors.is_empty() {
            "ok".to_owned()
        } else {
            format!("FAILED ({} problem(s))", u.errors.len())
        };
        println!(
            "  {} {state}: {} request(s), {} not modified, {} bundle(s), {}",
            u.url,
            u.requests,
            u.not_modified,
            u.bundles,
            human_bytes(u.bytes.total())
        );
        if u.not_carried > 0 {
            println!("    does not carry {} publisher(s)", u.not_carried);
        }
        if u.bundle_bytes_wasted > 0 {
            println!(
                "    {} of its bundle bytes not used (bad, cut or duplicate chunks)",
                human_bytes(u.bundle_bytes_wasted)
            );
        }
        for e in &u.errors {
            println!("    - {}: {}", e.reason(), error_chain(e));
        }
    }
    for p in &report.publishers {
        let served = match p.installed {
            Some(seq) => format!("serving index {seq}"),
            None => "no index yet".to_owned(),
        };
        let waiting = match (p.newest, p.installed) {
            (Some(newest), installed) if Some(newest) > installed => {
                format!("; index {newest} waits for {} missing bundle(s)", p.missing)
            }
            _ => String::new(),
        };
        let pruned = if p.pruned > 0 {
            format!("; pruned {} bundle(s)", p.pruned)
        } else {
            String::new()
        };
        println!("  publisher {}: {served}{waiting}{pruned}", p.publisher);
        for e in &p.errors {
            println!("    - {}: {}", e.reason(), error_chain(e));
        }
    }
}

/// The round report in the shape of docs/JSON.md: publishers as key objects, error objects
/// with their exit code, and sequences left out rather than null when there are none.
fn round_json(report: &RoundReport, keys: &[PublicKey]) -> serde_json::Value {
    let mut doc = serde_json::to_value(report).unwrap_or_default();
    for p in doc["publishers"].as_array_mut().into_iter().flatten() {
        let id = p["publisher"].as_str().unwrap_or_default().to_owned();
        if let Some(key) = keys.iter().find(|k| k.id().to_string() == id) {
            p["publisher"] = json::publisher(key);
        }
        if let Some(fields) = p.as_object_mut() {
            fields.retain(|_, v| !v.is_null());
        }
    }
    let Some(fields) = doc.as_object_mut() else {
        return doc;
    };
    let errors = fields
        .iter_mut()
        .filter(|(name, _)| *name == "upstreams" || *name == "publishers")
        .flat_map(|(_, list)| list.as_array_mut().into_iter().flatten())
        .flat_map(|item| item["errors"].as_array_mut().into_iter().flatten());
    for e in errors {
        let class = match e["class"].as_str() {
            Some("verification") => ErrorClass::Verification,
            Some("usage") => ErrorClass::Usage,
            _ => ErrorClass::Runtime,
        };
        e["exit_code"] = super::exit_code(class).into();
    }
    doc
}

fn failure_line(report: &RoundReport) -> String {
    let failed = report
        .upstreams
        .iter()
        .filter(|u| !u.errors.is_empty())
        .count();
    let incomplete = report
        .publishers
        .iter()
        .filter(|p| p.newest > p.installed || !p.errors.is_empty())
        .count();
    let what = match report.failure() {
        Some(ErrorClass::Verification) => "refused content from",
        _ => "could not sync from",
    };
    format!(
        "{what} {failed} of {} upstream(s); {incomplete} publisher(s) not fully synced",
        report.upstreams.len()
    )
}

pub(super) fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// `--publisher` values (key files, inline keys, first root files) as configured publishers
/// and the first roots given; they replace the config file's lists (shared by `qasid sync` and
/// `qasid mirror`).
pub(super) fn publishers_from_flags(
    flags: &[String],
) -> Result<(Vec<PublisherConfig>, Vec<qasid::roots::Root>), Failure> {
    let mut roots = Vec::new();
    let mut publishers = Vec::new();
    for p in flags {
        let anchor = qasid::roots::Anchor::from_arg(p).map_err(|e| Failure::new(e.class(), e))?;
        roots.extend(anchor.first().cloned());
        publishers.push(PublisherConfig {
            name: None,
            key: anchor.id().clone(),
        });
    }
    Ok((publishers, roots))
}

/// `--upstream` URLs, each with the `--upstream-proxy` if one is given.
pub(super) fn upstreams_from_flags(
    urls: &[reqwest::Url],
    proxy: &Option<reqwest::Url>,
) -> Vec<UpstreamConfig> {
    urls.iter()
        .map(|url| UpstreamConfig {
            url: url.clone(),
            proxy: proxy.clone(),
        })
        .collect()
}
