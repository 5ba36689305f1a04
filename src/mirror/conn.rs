//! Connections: the accept loop, the connection limit, per-connection timeouts and graceful
//! shutdown.
//!
//! Owns everything below HTTP request handling: a `Semaphore` bounds open connections (at the
//! limit each worker holds one accepted connection until a slot is free, and further clients
//! queue in the kernel), [`PerAddress`] bounds those of one client address (more are answered
//! 429 and closed at once), hyper's header read timeout cuts off clients that trickle headers,
//! [`IdleIo`] drops a connection that moves no byte in either direction for the idle timeout
//! (stalled uploads, readers that stopped reading, idle keep-alives), and on shutdown the
//! listener closes, requests in flight finish and the rest is cut after the grace period. It
//! never looks inside a request.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// The limits the accept loop enforces.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    /// Most connections from one address (IPv6: one /64).
    pub max_per_address: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// The limits of a running server and its connection slots, shared by every worker. A reload
/// calls [`ConnControl::set`], which takes effect before it returns: the next connection gets
/// the new timeouts and per-address cap, a raised limit frees slots at once, and a lowered one
/// retires slots as connections close (open connections are never dropped for it).
pub struct ConnControl {
    /// A std `Mutex`: held only to read or replace the limits and resize the slots (never
    /// across an `.await`), so a resize and a closing connection never interleave.
    limits: std::sync::Mutex<ConnLimits>,
    slots: Arc<Semaphore>,
    /// Slots still to take out of circulation: a lowered limit found them in use. Guarded by
    /// `limits`.
    excess: AtomicUsize,
}

impl ConnControl {
    pub fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            limits: std::sync::Mutex::new(limits),
            excess: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnLimits> {
        self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The limits in force.
    pub fn limits(&self) -> ConnLimits {
        *self.lock()
    }

    /// Replaces the limits (a configuration reload).
    pub fn set(&self, new: ConnLimits) {
        let mut current = self.lock();
        let (old, wanted) = (current.max_connections, new.max_connections);
        if wanted > old {
            // Slots waiting to be retired are kept instead; the rest are added.
            let grow = wanted - old;
            let kept = grow.min(self.excess.load(Ordering::Relaxed));
            self.excess.fetch_sub(kept, Ordering::Relaxed);
            self.slots.add_permits(grow - kept);
        } else {
            let shrink = old - wanted;
            let forgotten = self.slots.forget_permits(shrink);
            self.excess.fetch_add(shrink - forgotten, Ordering::Relaxed);
        }
        *current = new;
    }

    /// A slot for one connection, waiting until one is free.
    async fn acquire(self: &Arc<Self>) -> Slot {
        let permit =
            (self.slots.clone().acquire_owned().await).expect("the semaphore is never closed");
        Slot {
            permit: Some(permit),
            control: self.clone(),
        }
    }
}

/// One open connection's slot; on drop it is released, or retired if a lowered limit is still
/// above the slots in circulation.
struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    control: Arc<ConnControl>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let _guard = self.control.lock();
        let excess = &self.control.excess;
        if excess.load(Ordering::Relaxed) > 0 {
            excess.fetch_sub(1, Ordering::Relaxed);
            permit.forget();
        } else {
            drop(permit);
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then drains.
///
/// `control` holds the limits; a reload may change them while serving (see [`ConnControl`]).
///
/// Connections are served by one single-threaded runtime per core, each accepting from the same
/// socket (the model of nginx's workers): a connection's requests never hop between threads,
/// which on small responses saves more than work stealing gains. The caller's runtime only
/// waits for `shutdown`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    control: Arc<ConnControl>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let listener = listener.into_std()?;
    let per_address = Arc::new(PerAddress::default());
    let stop = CancellationToken::new();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads = Vec::with_capacity(workers);
    for i in 0..workers {
        let listener = listener.try_clone()?;
        let (router, worker_stop) = (router.clone(), stop.clone());
        let shared = Shared {
            control: control.clone(),
            per_address: per_address.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("qasid-http-{i}"))
            .spawn(move || -> io::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener)?;
                    let shutdown = worker_stop.cancelled_owned();
                    accept_loop(listener, router, shared, shutdown).await;
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

/// The connection accounting all workers share.
struct Shared {
    control: Arc<ConnControl>,
    per_address: Arc<PerAddress>,
}

/// The answer to a connection over its address's cap: written if the socket takes it at once,
/// then the connection is closed (nothing is read, nothing waits).
const TOO_MANY_FROM_ADDRESS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
    Content-Type: text/plain; charset=utf-8\r\nRetry-After: 5\r\nConnection: close\r\n\
    Content-Length: 39\r\n\r\ntoo many connections from your address\n";

/// One worker's accept loop: runs until `shutdown`, then drains its connections.
async fn accept_loop(
    listener: TcpListener,
    router: Router,
    shared: Shared,
    shutdown: impl Future<Output = ()>,
) {
    let Shared {
        control,
        per_address,
    } = shared;
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
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
        // The slot is taken after the accept, so that no idle worker holds one: a limit
        // lowered by a reload then counts every slot. Until one is free this worker accepts
        // nothing more, and further clients wait in the kernel's queue.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            slot = control.acquire() => slot,
        };
        // The address's cap is checked once the connection holds a slot (as if it had just been
        // accepted): one waiting for a slot is not refused for connections that close meanwhile.
        let current = control.limits();
        let Some(slot) = per_address.acquire(peer.ip(), current.max_per_address) else {
            tracing::debug!(%peer, "refused: too many connections from this address");
            let _ = stream.try_write(TOO_MANY_FROM_ADDRESS);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(current.header_timeout)
            .keep_alive(true);
        let io = TokioIo::new(IdleIo::new(stream, current.idle_timeout));
        let service = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for requests in flight");
    let grace = control.limits().shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the {grace:?} grace period were cut off");
    }
}

/// Open connections per client address, shared by all workers. IPv6 addresses count per /64:
/// one host usually holds a whole /64 and could otherwise open its connections from as many
/// addresses as it likes.
#[derive(Default)]
pub struct PerAddress {
    /// A std `Mutex`: held for one map update per connection opened or closed, never across an
    /// `.await`.
    open: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    /// A slot for one more connection from `ip`, or `None` if `max` are open already (the cap
    /// is passed in because a reload may change it).
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let key = Self::key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            owner: self.clone(),
            key,
        })
    }

    fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mut segments = v6.segments();
                    segments[4..].fill(0);
                    IpAddr::V6(segments.into())
                }
            },
        }
    }
}

/// One open connection counted against its address; released on drop.
pub struct AddressSlot {
    owner: Arc<PerAddress>,
    key: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize) -> ConnLimits {
        ConnLimits {
            max_connections,
            max_per_address: max_connections,
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(1),
        }
    }

    /// A reload that lowers the limit takes effect at once (no free slot is left beyond it)
    /// and retires the slots in use as their connections close; a later raise keeps slots
    /// still waiting to be retired instead of adding more.
    #[tokio::test]
    async fn a_lowered_limit_retires_slots_as_connections_close() {
        let c = ConnControl::new(limits(4));
        let (a, b) = (c.acquire().await, c.acquire().await);
        c.set(limits(1));
        assert_eq!(c.slots.available_permits(), 0, "applied before set returns");
        drop(a);
        assert_eq!(c.slots.available_permits(), 0, "retired");
        drop(b);
        assert_eq!(c.slots.available_permits(), 1);

        c.set(limits(3));
        assert_eq!(c.slots.available_permits(), 3);
        let (x, y, z) = (c.acquire().await, c.acquire().await, c.acquire().await);
        c.set(limits(1));
        c.set(limits(2));
        assert_eq!(c.slots.available_permits(), 0);
        drop(x);
        assert_eq!(
            c.slots.available_permits(),
            0,
            "one slot still over the limit"
        );
        drop(y);
        drop(z);
        assert_eq!(c.slots.available_permits(), 2);
        assert_eq!(c.limits().max_connections, 2);
    }

    #[test]
    fn per_address_slots_are_capped_and_released() {
        let per = Arc::new(PerAddress::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let (s1, s2) = (per.acquire(a, 2).unwrap(), per.acquire(a, 2).unwrap());
        assert!(per.acquire(a, 2).is_none());
        assert!(per.acquire("192.0.2.2".parse().unwrap(), 2).is_some());
        // A cap lowered by a reload refuses new connections; open ones stay counted.
        assert!(per.acquire(a, 1).is_none());
        drop(s1);
        assert!(per.acquire(a, 2).is_some());
        drop(s2);
        // IPv6 counts per /64; a v4-mapped address is its IPv4 address.
        let per = Arc::new(PerAddress::default());
        let _x = per.acquire("2001:db8:1:2::1".parse().unwrap(), 1).unwrap();
        assert!(per
            .acquire("2001:db8:1:2:ffff::9".parse().unwrap(), 1)
            .is_none());
        assert!(per.acquire("2001:db8:1:3::1".parse().unwrap(), 1).is_some());
        let _y = per.acquire(a, 1).unwrap();
        assert!(per
            .acquire("::ffff:192.0.2.1".parse().unwrap(), 1)
            .is_none());
    }
}
