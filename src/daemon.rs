//! The mirror daemon (`qasid mirror`): the HTTP server, its background sync and the process
//! signals, composed, the way mini-redis's `server::run(listener, shutdown)` composes its own.
//!
//! Owns the daemon's life: it holds the store's lock (one mirror or sync per store), serves
//! until [`Signal::Shutdown`], and on [`Signal::Reload`] asks the caller for the configuration
//! again. A configuration that cannot be used is refused with a one-line reason in the log and
//! the running one is kept; a usable one replaces the trusted publishers, push cap, connection
//! limits, access log and sync settings (the sync restarts) without closing a connection. The
//! listen address, store, retention and whether `/metrics` shows upstream URLs cannot change
//! without a restart (the log says so). It never parses arguments or files itself: the
//! caller's `reload` does.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::mirror::{self, Metrics, MirrorError, MirrorState};
use crate::store::{Store, StoreLock};
use crate::sync::{SyncError, SyncOptions, Syncer};

/// What the process was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: read the configuration again.
    Reload,
    /// SIGINT or SIGTERM: stop accepting, let requests in flight finish, exit.
    Shutdown,
}

/// The process's signals as [`Signal`]s: SIGINT and SIGTERM → shutdown, SIGHUP → reload.
pub struct Signals {
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (from here on, SIGHUP no longer ends the process). Must be called
    /// inside a Tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                hangup: signal(SignalKind::hangup())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Signal {
        let interrupt = async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!("cannot listen for SIGINT: {e}");
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        {
            tokio::select! {
                () = interrupt => Signal::Shutdown,
                _ = self.terminate.recv() => Signal::Shutdown,
                _ = self.hangup.recv() => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            interrupt.await;
            Signal::Shutdown
        }
    }

    /// Completes at the first shutdown signal, ignoring reloads (for `qasid sync`).
    pub async fn shutdown(mut self) {
        while self.recv().await != Signal::Shutdown {
            tracing::info!("SIGHUP ignored: `qasid sync` reads its configuration at start");
        }
    }
}

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl DaemonError {
    pub fn class(&self) -> crate::ErrorClass {
        match self {
            DaemonError::Mirror(e) => e.class(),
            DaemonError::Sync(e) => e.class(),
        }
    }
}

/// Runs the mirror on `listener` with `config` until `signals` says shut down. `lock` is the
/// store's lock ([`Store::lock`], taken before the caller binds, so a second mirror fails
/// before it listens), held until this returns. `reload` produces the new configuration on
/// SIGHUP, or a one-line reason it cannot be used.
pub async fn run(
    listener: TcpListener,
    store: Arc<Store>,
    lock: StoreLock,
    config: Config,
    mut reload: impl FnMut() -> Result<Config, String>,
    mut signals: Signals,
) -> Result<(), DaemonError> {
    let _lock = lock;
    let metrics = Arc::new(Metrics::with_upstream_urls(config.metrics.upstream_urls));
    let state = Arc::new(MirrorState::new(&config, store.clone(), metrics.clone())?);
    tracing::info!(
        store = %config.mirror.store.display(),
        publishers = config.publishers.len(),
        "mirror started"
    );
    let mut sync = BackgroundSync::start(&config, &store, &metrics).await?;
    let stop_server = CancellationToken::new();
    let served = mirror::run(
        listener,
        state.clone(),
        stop_server.clone().cancelled_owned(),
    );
    tokio::pin!(served);
    let mut running = config;
    let result = loop {
        tokio::select! {
            result = &mut served => break Some(result),
            signal = signals.recv() => match signal {
                Signal::Shutdown => {
                    eprintln!("shutting down");
                    break None;
                }
                Signal::Reload => match reload().and_then(|c| usable(&running, c)) {
                    Err(reason) => tracing::error!(
                        "configuration reload refused, still running the previous one: {reason}"
                    ),
                    Ok(new) => {
                        state.reload(&new);
                        sync.stop().await;
                        sync = match BackgroundSync::start(&new, &store, &metrics).await {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::error!("sync not restarted after reload: {e}");
                                BackgroundSync::none()
                            }
                        };
                        tracing::info!(
                            publishers = new.publishers.len(),
                            upstreams = new.upstreams.len(),
                            "configuration reloaded"
                        );
                        running = new;
                    }
                },
            },
        }
    };
    stop_server.cancel();
    let served = match result {
        Some(result) => result,
        None => served.await,
    };
    sync.stop().await;
    let flush = store.clone();
    let _ = tokio::task::spawn_blocking(move || flush.flush_refusals()).await;
    served?;
    tracing::info!("mirror stopped");
    Ok(())
}

/// Checks that `new` can replace `running`: its upstreams must be usable, and the settings
/// fixed for the process's life are kept as they are (with a warning if they changed).
fn usable(running: &Config, mut new: Config) -> Result<Config, String> {
    crate::sync::check_upstreams(&new.upstreams, &new.sync).map_err(|e| e.to_string())?;
    let fixed = [
        ("mirror.listen", running.mirror.listen != new.mirror.listen),
        ("mirror.store", running.mirror.store != new.mirror.store),
        ("mirror.keep", running.mirror.keep != new.mirror.keep),
        (
            "metrics.upstream_urls",
            running.metrics.upstream_urls != new.metrics.upstream_urls,
        ),
    ];
    for (key, changed) in fixed {
        if changed {
            tracing::warn!("{key} changed: it takes effect only after a restart");
        }
    }
    new.mirror.listen = running.mirror.listen;
    new.mirror.store = running.mirror.store.clone();
    new.mirror.keep = running.mirror.keep;
    new.metrics.upstream_urls = running.metrics.upstream_urls;
    Ok(new)
}

/// The sync running inside the mirror, if there is anything to sync from.
struct BackgroundSync {
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl BackgroundSync {
    fn none() -> Self {
        Self {
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
        }
    }

    async fn start(
        config: &Config,
        store: &Arc<Store>,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, SyncError> {
        let this = Self::none();
        if config.upstreams.is_empty() && !config.sync.use_index_mirrors {
            return Ok(this);
        }
        if config.publishers.is_empty() {
            tracing::warn!("sync not started: no trusted publishers");
            return Ok(this);
        }
        let syncer = Syncer::new(
            store.clone(),
            &config.publisher_keys(),
            &config.upstreams,
            SyncOptions::from_config(&config.sync),
            metrics.clone(),
        )
        .await?;
        tracing::info!(
            upstreams = config.upstreams.len(),
            interval = %humantime::format_duration(config.sync.interval),
            "sync started"
        );
        this.tasks.spawn(syncer.run(this.cancel.clone()));
        Ok(this)
    }

    /// Stops the sync (a round in progress is cut short; what it verified stays) and waits
    /// until its lock is released.
    async fn stop(&mut self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
