//! `qasid mirror`: run the mirror daemon from `mirrors.toml` and flags (flags win).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use qasid::bucket::{Access, Bucket};
use qasid::config::{self, Config, Keep};
use qasid::daemon;
use qasid::limits::IndexLimits;
use qasid::store::{BucketSink, Store};

use super::Failure;

/// Run a mirror: serve the static layout from a store, accept pushes from trusted publishers,
/// and show the articles as web pages.
///
/// Settings come from --config (see mirrors.toml for every key and its default); each flag
/// overrides its key. List flags (--publisher, --upstream) replace the file's list when given.
/// Logs "listening on http://ADDR" on stderr and runs until SIGINT or SIGTERM, then lets
/// requests in flight finish. SIGHUP reloads the configuration (file and flags) without
/// dropping a connection: publishers, upstreams, limits and the access log change; a config
/// that does not validate is refused (the log says why) and the running one is kept. The
/// listen address, store and keep need a restart. One mirror or sync per store: a second one
/// exits with an error.
///
/// Refused pushes are always logged (what, which publisher, why). The access log
/// (--access-log) is off by default and never holds a reader's address.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  qasid mirror --config mirrors.toml\n  qasid mirror --check --config mirrors.toml\n  qasid mirror --listen 0.0.0.0:8080 --store /srv/qasid --publisher keys/publisher.pub\n  kill -HUP $(pidof qasid)    # reload mirrors.toml"
)]
pub struct MirrorArgs {
    /// Check the configuration (file and flags) and exit: 0 and a one-line summary if it is
    /// valid, 2 and the error if not. Starts nothing and writes nothing.
    #[arg(long)]
    check: bool,
    /// Log one line per request: method, path, status, bytes, time (mirror.access_log).
    /// Never a reader's address.
    #[arg(long)]
    access_log: bool,
    /// The configuration file (mirrors.toml). Without it, defaults and flags only.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (mirror.listen; default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The store: a folder, or an S3-compatible bucket s3://bucket/prefix (credentials and
    /// endpoint from AWS_* variables and [s3]) (mirror.store; default ./qasid-store).
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    store: Option<PathBuf>,
    /// A bucket store's local work folder: verified copies, temp files, index history
    /// (mirror.work; default $XDG_STATE_HOME/qasid/buckets/NAME).
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// Keep every verified object ("all", the default) or only what current indexes list
    /// (mirror.keep).
    #[arg(long, value_name = "all|current")]
    keep: Option<Keep>,
    /// Largest object a publisher may push, e.g. 268435456 or "256 MiB" (mirror.max_push_bytes).
    #[arg(long, value_name = "SIZE", value_parser = config::parse_byte_size)]
    max_push_bytes: Option<u64>,
    /// Most simultaneous connections (mirror.max_connections; default 1024).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// Most simultaneous connections from one address, IPv6 per /64
    /// (mirror.max_connections_per_address; default a quarter of --max-connections). Behind a
    /// reverse proxy on the same host, set it to --max-connections.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections_per_address: Option<u64>,
    /// Slowest request body accepted, bytes per second on average after --header-timeout,
    /// e.g. "1 KiB" (mirror.min_body_rate; default 1 KiB).
    #[arg(long, value_name = "SIZE", value_parser = config::parse_byte_size)]
    min_body_rate: Option<u64>,
    /// Time a client has to send its request headers (mirror.header_timeout; default 10s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    header_timeout: Option<Duration>,
    /// Drop a connection that moves no byte for this long (mirror.idle_timeout; default 30s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// On SIGINT/SIGTERM, how long requests in flight may take (mirror.shutdown_grace).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    shutdown_grace: Option<Duration>,
    /// Most bytes of pushed pieces that no signed index lists yet, all publishers together
    /// (mirror.max_staged_bytes; default 512 MiB; past it a push is answered 507).
    #[arg(long, value_name = "SIZE", value_parser = config::parse_byte_size)]
    max_staged_bytes: Option<u64>,
    /// The same bound for one publisher (mirror.max_staged_bytes_per_publisher; default
    /// 64 MiB; past it a push is answered 429).
    #[arg(long, value_name = "SIZE", value_parser = config::parse_byte_size)]
    max_staged_bytes_per_publisher: Option<u64>,
    /// Remove staged pieces no index listed within this time (mirror.max_staged_age;
    /// default 24h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    max_staged_age: Option<Duration>,
    /// A publisher to trust: a publisher.pub file or its one-line base64 key. Repeatable
    /// ([[publisher]] key).
    #[arg(long = "publisher", value_name = "PUBKEY")]
    publishers: Vec<String>,
    /// An upstream mirror to pull from. Repeatable ([[upstream]] url).
    #[arg(long = "upstream", value_name = "URL", value_parser = config::parse_mirror_url)]
    upstreams: Vec<reqwest::Url>,
    /// Proxy for the --upstream URLs given on the command line ([[upstream]] proxy).
    #[arg(long, value_name = "URL", value_parser = config::parse_proxy_url)]
    upstream_proxy: Option<reqwest::Url>,
    /// How often sync polls the upstreams, jittered ±10% (sync.interval; default 5m).
    #[arg(long, visible_alias = "interval", value_name = "DURATION", value_parser = humantime::parse_duration)]
    sync_interval: Option<Duration>,
    /// Also pull from the mirrors listed in publishers' signed indexes (sync.use_index_mirrors).
    #[arg(long, value_name = "BOOL")]
    use_index_mirrors: Option<bool>,
    /// Label upstreams in /metrics by URL instead of upstream-1, upstream-2, ... (credentials
    /// are never shown). Off by default: /metrics answers anyone, and an upstream's address is
    /// what a censor wants ([metrics] upstream_urls).
    #[arg(long, value_name = "BOOL")]
    metrics_upstream_urls: Option<bool>,
    #[command(flatten)]
    sync_tuning: super::sync::SyncTuning,
}

impl MirrorArgs {
    /// The configuration: the file (if any), then each given flag on top.
    fn config(&self) -> Result<Config, Failure> {
        let mut c = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        let m = &mut c.mirror;
        if let Some(v) = self.listen {
            m.listen = v;
        }
        super::store_flags(m, self.store.as_deref(), self.work.as_deref())?;
        if let Some(v) = self.keep {
            m.keep = v;
        }
        if let Some(v) = self.max_push_bytes {
            m.max_push_bytes = v;
        }
        if let Some(v) = self.max_connections {
            m.max_connections = usize::try_from(v).map_err(Failure::usage)?;
        }
        if let Some(v) = self.max_connections_per_address {
            m.max_connections_per_address = Some(usize::try_from(v).map_err(Failure::usage)?);
        }
        if let Some(v) = self.min_body_rate {
            m.min_body_rate = v;
        }
        if let Some(v) = self.header_timeout {
            m.header_timeout = v;
        }
        if let Some(v) = self.idle_timeout {
            m.idle_timeout = v;
        }
        if let Some(v) = self.shutdown_grace {
            m.shutdown_grace = v;
        }
        if self.access_log {
            m.access_log = true;
        }
        if let Some(v) = self.max_staged_bytes {
            m.staging.max_staged_bytes = v;
        }
        if let Some(v) = self.max_staged_bytes_per_publisher {
            m.staging.max_staged_bytes_per_publisher = v;
        }
        if let Some(v) = self.max_staged_age {
            m.staging.max_staged_age = v;
        }
        if !self.publishers.is_empty() {
            (c.publishers, c.publisher_roots) =
                super::sync::publishers_from_flags(&self.publishers)?;
        }
        if !self.upstreams.is_empty() {
            c.upstreams = super::sync::upstreams_from_flags(&self.upstreams, &self.upstream_proxy);
        }
        if let Some(v) = self.sync_interval {
            c.sync.interval = v;
        }
        if let Some(v) = self.use_index_mirrors {
            c.sync.use_index_mirrors = v;
        }
        if let Some(v) = self.metrics_upstream_urls {
            c.metrics.upstream_urls = v;
        }
        self.sync_tuning.apply(&mut c.sync)?;
        Ok(c)
    }

    pub fn run(self) -> Result<(), Failure> {
        if self.check {
            return self.check();
        }
        let config = self.config()?;
        qasid::sync::check_upstreams(&config.upstreams, &config.sync)?;
        if config.publishers.is_empty() {
            tracing::warn!("no trusted publishers: every push is refused and nothing is served");
        }
        let store = Arc::new(Store::open(
            &config.mirror.store,
            config.mirror.keep,
            IndexLimits::default(),
        )?);
        let lock = store.lock()?;
        store.anchor(&config.publisher_roots)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(Failure::runtime)?;
        runtime.block_on(async move {
            let signals = daemon::Signals::install().map_err(Failure::runtime)?;
            if let Some(url) = &config.mirror.bucket {
                // Pushes and syncs install into the work folder's store, which uploads each
                // new state to the bucket first (index.json last).
                let bucket = Bucket::connect(url, &config.s3, Access::Write).await?;
                store.set_bucket(BucketSink {
                    bucket,
                    runtime: tokio::runtime::Handle::current(),
                });
            }
            let listener = tokio::net::TcpListener::bind(config.mirror.listen)
                .await
                .map_err(|e| {
                    Failure::runtime(anyhow::anyhow!(
                        "listening on {}: {e}",
                        config.mirror.listen
                    ))
                })?;
            let addr = listener.local_addr().map_err(Failure::runtime)?;
            eprintln!("listening on http://{addr}");
            let reload = || {
                let new = self.config().map_err(|f| super::one_line(&f.error))?;
                Ok(new)
            };
            daemon::run(listener, store, lock, config, reload, signals).await?;
            Ok(())
        })
    }

    /// `--check`: validate and summarise, or fail with exit code 2.
    fn check(&self) -> Result<(), Failure> {
        let config = self.config().map_err(|f| Failure::usage(f.error))?;
        qasid::sync::check_upstreams(&config.upstreams, &config.sync).map_err(Failure::usage)?;
        let source = match &self.config {
            Some(path) => path.display().to_string(),
            None => "flags".to_owned(),
        };
        println!(
            "{source}: ok: {} publisher(s), {} upstream(s), listen {}, store {}, keep {}",
            config.publishers.len(),
            config.upstreams.len(),
            config.mirror.listen,
            config.mirror.store.display(),
            match config.mirror.keep {
                Keep::All => "all",
                Keep::Current => "current",
            }
        );
        Ok(())
    }
}
