//! Connections: the accept loop, the connection limit, per-connection timeouts and graceful
//! shutdown.
//!
//! Owns everything below HTTP request handling: a `Semaphore` bounds open connections (the
//! accept loop waits for a free slot, so excess clients queue in the kernel), hyper's header
//! read timeout cuts off clients that trickle headers, [`IdleIo`] drops a connection that moves
//! no byte in either direction for the idle timeout (stalled uploads, readers that stopped
//! reading, idle keep-alives), and on shutdown the listener closes, requests in flight finish
//! and the rest is cut after the grace period. It never looks inside a request.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// The limits the accept loop enforces.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes, then drains.
///
/// Connections are served by one single-threaded runtime per core, each accepting from the same
/// socket (the model of nginx's workers): a connection's requests never hop between threads,
/// which on small responses saves more than work stealing gains. The caller's runtime only
/// waits for `shutdown`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let listener = listener.into_std()?;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let stop = CancellationToken::new();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads = Vec::with_capacity(workers);
    for i in 0..workers {
        let listener = listener.try_clone()?;
        let (router, permits, worker_stop) = (router.clone(), permits.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("qasid-http-{i}"))
            .spawn(move || -> io::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener)?;
                    let shutdown = worker_stop.cancelled_owned();
                    accept_loop(listener, router, limits, permits, shutdown).await;
                    Ok(())
                })
            });
        match thread {
            Ok(t) => threads.push(t),
            Err(e) => {
                stop.cancel();
                return Err(e);
            }
        }
    }
    // Only the workers' copies of the socket remain: it closes when the last one stops.
    drop(listener);
    shutdown.await;
    stop.cancel();
    tokio::task::spawn_blocking(move || {
        // Join every worker (each drains its connections), then report the first failure.
        let mut result = Ok(());
        for thread in threads {
            let joined = thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a server thread panicked")));
            if result.is_ok() {
                result = joined;
            }
        }
        result
    })
    .await
    .map_err(io::Error::other)?
}

/// One worker's accept loop: runs until `shutdown`, then drains its connections.
async fn accept_loop(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    permits: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(IdleIo::new(stream, limits.idle_timeout));
        let service = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for requests in flight");
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still running after the {:?} grace period were cut off",
            limits.shutdown_grace
        );
    }
}

/// A TCP stream that fails with `TimedOut` once it has made no progress in either direction
/// for `timeout` while something is waiting on it.
pub struct IdleIo {
    inner: TcpStream,
    timeout: Duration,
    last_progress: Instant,
    /// Fires at or after the idle deadline; re-armed from `last_progress` when it fires early.
    sleep: Pin<Box<Sleep>>,
}

impl IdleIo {
    pub fn new(inner: TcpStream, timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            timeout,
            last_progress: now,
            sleep: Box::pin(tokio::time::sleep_until(now + timeout)),
        }
    }

    /// Called when an operation is pending: errors if the idle deadline has passed. The timer
    /// is only moved when it fires (to `last_progress + timeout`), not on every byte, so a busy
    /// connection costs no timer updates.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while self.sleep.as_mut().poll(cx).is_ready() {
            let deadline = self.last_progress + self.timeout;
            if Instant::now() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle"));
            }
            self.sleep.as_mut().reset(deadline);
        }
        Ok(())
    }

    fn progress<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(r) => {
                self.last_progress = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => match self.check_idle(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }
}

impl AsyncRead for IdleIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.progress(r, cx)
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(r, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(r, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
