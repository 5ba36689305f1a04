//! The segmented download of a bundle that has a chunk list (docs/PROTOCOL.md §13), for every
//! caller (the reader and sync): disjoint chunk ranges from every useful source at once, each
//! chunk checked the moment it is complete.
//!
//! Owns the work queue (each connection takes the next run of pending chunks, as many as its
//! source's measured rate moves in about [`TARGET_REQUEST`], so a fast source takes more: work
//! stealing), the connections per source (one to start, a second once its rate is measured,
//! more while each added one raises the source's measured rate by a quarter, within
//! [`MAX_CONNECTIONS_PER_MIRROR`] and the download's cap, at most [`MAX_CONNECTIONS`]; a source
//! left out at the start by the cap takes the first freed slot), the end game (an idle
//! connection re-asks a chunk only when its holder stalled or is much slower, within a
//! wasted-bytes budget), blame (a chunk that fails its hash names the source, the chunk index and its byte
//! offset; that source is never asked again), and resume (the partial file is re-hashed chunk
//! by chunk at start: only chunks that match the list are kept). Bytes are held in memory one
//! chunk per connection and are written to the partial file only once their chunk verified,
//! so the partial file never holds an unchecked chunk except after a crash mid-write, which
//! the re-hash catches.
//!
//! It knows nothing of mirrors, upstreams, reports or stores: a caller hands it a verified
//! [`ChunkList`] and one [`RangeSource`] per mirror (something that can GET a byte range of the
//! bundle), and gets back an [`Outcome`] saying what each source delivered, wasted, and why it
//! was dropped. The caller then runs its own whole-file checks (size, sha256, bundle verifier)
//! on the partial file, and reports blame in its own terms.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::index::chunks::ChunkList;
use crate::limits::{
    CHUNK_SIZE, MAX_CHUNK_FETCHES, SEGMENTED_MAX_CONNECTIONS as MAX_CONNECTIONS,
    SEGMENTED_MAX_PER_MIRROR as MAX_CONNECTIONS_PER_MIRROR, SEGMENT_TARGET as TARGET_REQUEST,
};

/// Why a range request to a source failed, sorted by what the engine does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeError {
    /// No answer, or no bytes, in time (a tarpit, a throttled or blocked path): the source's
    /// other connections go on, this one is not opened again.
    TimedOut(String),
    /// No connection (refused, unreachable).
    Refused(String),
    /// The source answered with an error or the connection was cut: opened again, up to three
    /// failures in a row.
    Failed(String),
    /// The source does not answer byte ranges (a whole-file `200`): not asked again, not an
    /// offence (a plain static host may do this).
    NoRanges(String),
    /// The source sent something the signed size rules out (more bytes than asked, a copy of
    /// the wrong size).
    Lying(String),
}

impl RangeError {
    /// The detail, without the kind.
    pub fn detail(&self) -> &str {
        match self {
            RangeError::TimedOut(d)
            | RangeError::Refused(d)
            | RangeError::Failed(d)
            | RangeError::NoRanges(d)
            | RangeError::Lying(d) => d,
        }
    }
}

/// A body being received for one range request.
pub trait RangeBody: Send + 'static {
    /// The next bytes, or `None` at the end of the body.
    fn next(&mut self) -> impl Future<Output = Result<Option<Bytes>, RangeError>> + Send;
}

/// A source that can GET a byte range of the bundle (one mirror or upstream).
pub trait RangeSource: Send + Sync + 'static {
    type Body: RangeBody;
    /// Asks for bytes `start..end` of the bundle. The answer must be exactly that range (a
    /// whole-file answer is [`RangeError::NoRanges`]); the engine bounds the wait.
    fn open(
        &self,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Self::Body, RangeError>> + Send;
}

/// Why a source was dropped from a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It sent chunk `index` (bytes `offset..offset + length`) not matching the signed list.
    BadChunk {
        index: u64,
        offset: u64,
        length: u64,
    },
    /// Its requests failed (three in a row, or in a way not worth retrying).
    Failed(RangeError),
}

impl Ended {
    /// Whether the source sent bytes the signed list or size rules out.
    pub fn is_lying(&self) -> bool {
        matches!(
            self,
            Ended::BadChunk { .. } | Ended::Failed(RangeError::Lying(_))
        )
    }
}

/// What one source did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceOutcome {
    pub bytes: MirrorBytes,
    /// Why it was dropped, if it was.
    pub ended: Option<Ended>,
}

/// How a segmented download ended. The partial file holds every chunk marked done, verified.
#[derive(Debug)]
pub struct Outcome {
    /// Every chunk verified and is in the partial file.
    pub finished: bool,
    /// Bytes of verified chunks found in the partial file at start.
    pub resumed: u64,
    /// One per source, in the order given.
    pub sources: Vec<SourceOutcome>,
    /// A chunk no source could give after [`MAX_CHUNK_FETCHES`] requests, with its offset.
    pub exhausted: Option<(u64, u64)>,
}

/// Called with the verified bytes so far (resumed ones included) after each request.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// One segmented download.
pub struct Download<S> {
    /// The bundle's verified chunk list.
    pub list: ChunkList,
    /// One per mirror or upstream; each gets one connection to start.
    pub sources: Vec<S>,
    /// The partial file (kept across runs; created at the bundle's size).
    pub partial: PathBuf,
    /// How long a connection may go without bytes before it is given up (and how long a
    /// straggler runs before an idle connection duplicates its chunk); an open waits twice
    /// this.
    pub stall: Duration,
    /// Stops the download (the partial file keeps what verified).
    pub cancel: CancellationToken,
    /// Most connections open at once over all sources (at most [`MAX_CONNECTIONS`]).
    pub max_connections: usize,
    pub progress: Option<ProgressFn>,
}

/// Most chunks one request asks for: 16 (4 MiB), so a cut connection loses little and the
/// queue stays shared near the end.
const MAX_RUN: u64 = 16;

/// What each mirror did in a segmented download.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorBytes {
    /// Bytes of chunks that verified and were used.
    pub delivered: u64,
    /// Bytes received and not used: bad chunks, chunks cut part-way, duplicates of chunks
    /// another mirror finished first.
    pub wasted: u64,
}

/// One mirror in the download.
#[derive(Debug, Default)]
struct MirrorState {
    bytes: MirrorBytes,
    /// Open connections (running workers).
    connections: usize,
    /// Connections started in all.
    started: usize,
    /// Per-connection rate estimate, bytes per second (0 until a request completed).
    rate: f64,
    /// The mirror's total rate measured with each number of connections (index = count - 1).
    rate_with: Vec<f64>,
    /// When the current connection count began, and the bytes delivered since.
    window: Option<(Instant, u64)>,
    failures: u32,
    /// No more requests: lied, failed too often, or cannot serve ranges.
    dead: Option<Ended>,
}

/// The shared state of one download.
struct Shared {
    list: ChunkList,
    pending: BTreeSet<u64>,
    /// Chunk → (mirror, when the request began, how long it should take at its connection's
    /// measured rate) of every request holding it (two only in the end game).
    inflight: HashMap<u64, Vec<(usize, Instant, Duration)>>,
    done: Vec<bool>,
    done_count: u64,
    fetches: Vec<u32>,
    mirrors: Vec<MirrorState>,
    /// Bytes wasted by all mirrors; the end game stops duplicating past the budget.
    wasted: u64,
    budget: u64,
    /// A chunk that no mirror could give after `MAX_CHUNK_FETCHES` tries.
    exhausted: Option<u64>,
    /// Most connections open at once, over all sources.
    max_connections: usize,
    progress_total: u64,
}

impl Shared {
    fn finished(&self) -> bool {
        self.done_count == self.list.count()
    }

    fn alive(&self) -> bool {
        self.mirrors.iter().any(|m| m.dead.is_none())
    }

    /// The next run of chunks for a connection of mirror `m`, or a chunk to duplicate in the
    /// end game; empty when there is nothing worth doing now.
    fn take(&mut self, m: usize, stall: Duration) -> Vec<u64> {
        let rate = self.mirrors[m].rate;
        let want = if rate > 0.0 {
            ((rate * TARGET_REQUEST.as_secs_f64()) / CHUNK_SIZE as f64).clamp(1.0, MAX_RUN as f64)
                as u64
        } else {
            1
        };
        // Leave work for the other connections: never more than a fair share of what is left.
        let connections: usize = self.mirrors.iter().map(|s| s.connections).sum();
        let fair = (self.pending.len() as u64 / connections.max(1) as u64).max(1);
        let want = want.min(fair);
        let mut run = Vec::new();
        if let Some(&first) = self.pending.iter().next() {
            let mut next = first;
            while run.len() < want as usize && self.pending.remove(&next) {
                run.push(next);
                next += 1;
            }
        } else if let Some(c) = self.straggler(m, stall) {
            run.push(c);
        }
        let now = Instant::now();
        let bytes: u64 = run.iter().map(|&c| self.list.range(c).1).sum();
        let expected = if rate > 0.0 {
            Duration::from_secs_f64(bytes as f64 / rate)
        } else {
            stall
        };
        for &c in &run {
            self.fetches[c as usize] += 1;
            self.inflight.entry(c).or_default().push((m, now, expected));
        }
        run
    }

    /// An in-flight chunk mirror `m` should fetch too: held by one request only, of another
    /// mirror, running for more than twice as long as its measured rate promised and more than
    /// twice `stall` (bytes still come, or the stall timer would have cut it, but slowly),
    /// while the wasted-bytes budget (counting the duplicates in flight as wasted already) and
    /// the chunk's fetch cap allow.
    fn straggler(&self, m: usize, stall: Duration) -> Option<u64> {
        let now = Instant::now();
        let duplicating: u64 = self
            .inflight
            .iter()
            .filter(|(_, holders)| holders.len() > 1)
            .map(|(&c, holders)| self.list.range(c).1 * (holders.len() as u64 - 1))
            .sum();
        self.inflight
            .iter()
            .filter(|(&c, holders)| {
                let (_, len) = self.list.range(c);
                holders.len() == 1
                    && holders[0].0 != m
                    && self.fetches[c as usize] < MAX_CHUNK_FETCHES
                    && self.wasted + duplicating + len <= self.budget
                    && now.duration_since(holders[0].1) > (holders[0].2 * 2).max(stall * 2)
            })
            .map(|(&c, _)| c)
            .min()
    }

    /// Gives back chunks a request did not finish.
    fn release(&mut self, m: usize, chunks: &[u64]) {
        for &c in chunks {
            if let Some(holders) = self.inflight.get_mut(&c) {
                holders.retain(|(h, ..)| *h != m);
                if holders.is_empty() {
                    self.inflight.remove(&c);
                }
            }
            if !self.done[c as usize] && !self.inflight.contains_key(&c) {
                if self.fetches[c as usize] >= MAX_CHUNK_FETCHES {
                    self.exhausted.get_or_insert(c);
                }
                self.pending.insert(c);
            }
        }
    }

    /// Gives back chunks a request lost to its connection (cut, stalled, refused), not to a
    /// bad hash: the request does not count against their [`MAX_CHUNK_FETCHES`], so a mirror
    /// whose connections keep failing cannot use up a chunk's tries (each mirror fails at most
    /// three times in a row before it is dropped, which bounds the requests).
    fn give_back(&mut self, m: usize, chunks: &[u64]) {
        for &c in chunks {
            if !self.done[c as usize] {
                self.fetches[c as usize] = self.fetches[c as usize].saturating_sub(1);
            }
        }
        self.release(m, chunks);
    }

    fn waste(&mut self, m: usize, bytes: u64) {
        self.mirrors[m].bytes.wasted += bytes;
        self.wasted += bytes;
    }

    /// Records a verified chunk; `false` if another request had finished it first.
    fn delivered(&mut self, m: usize, c: u64, len: u64) -> bool {
        if let Some(holders) = self.inflight.get_mut(&c) {
            holders.retain(|(h, ..)| *h != m);
            if holders.is_empty() {
                self.inflight.remove(&c);
            }
        }
        if self.done[c as usize] {
            self.waste(m, len);
            return false;
        }
        self.done[c as usize] = true;
        self.done_count += 1;
        self.progress_total += len;
        let state = &mut self.mirrors[m];
        state.bytes.delivered += len;
        if let Some((_, bytes)) = &mut state.window {
            *bytes += len;
        }
        true
    }

    /// Updates mirror `m`'s rates after a request moved `bytes` in `elapsed`, and says whether
    /// it should get another connection: the last one added raised its total rate by a
    /// quarter or more (a per-connection throttle), within the caps, and work is left.
    fn measured(&mut self, m: usize, bytes: u64, elapsed: Duration) -> bool {
        let total_connections: usize = self.mirrors.iter().map(|s| s.connections).sum();
        let pending = self.pending.len();
        let state = &mut self.mirrors[m];
        if elapsed > Duration::from_millis(50) && bytes > 0 {
            let rate = bytes as f64 / elapsed.as_secs_f64();
            state.rate = if state.rate == 0.0 {
                rate
            } else {
                0.5 * state.rate + 0.5 * rate
            };
        }
        let Some((since, window_bytes)) = state.window else {
            return false;
        };
        let span = since.elapsed();
        if span < Duration::from_millis(300) || window_bytes < 2 * CHUNK_SIZE {
            return false;
        }
        let total_rate = window_bytes as f64 / span.as_secs_f64();
        let n = state.connections;
        if state.rate_with.len() < n {
            state.rate_with.resize(n, 0.0);
        }
        state.rate_with[n - 1] = total_rate;
        // One connection always gets a second; a further one only if the last added raised
        // the mirror's rate by a quarter (a per-connection throttle, not a per-address one).
        let gained = n < 2 || total_rate > 1.25 * state.rate_with[n - 2];
        let grow = gained
            && state.dead.is_none()
            && n < MAX_CONNECTIONS_PER_MIRROR
            && total_connections < self.max_connections
            && pending > total_connections;
        if grow {
            // Measured again once the new connection runs; no other worker of this mirror
            // asks for one meanwhile.
            state.window = None;
        }
        grow
    }
}

/// Everything a connection needs.
struct Ctx<S> {
    list: ChunkList,
    shared: Mutex<Shared>,
    changed: Notify,
    partial: PathBuf,
    sources: Vec<S>,
    stall: Duration,
    cancel: CancellationToken,
    progress: Option<ProgressFn>,
}

impl<S> Ctx<S> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<S: RangeSource> Download<S> {
    /// Runs the download until every chunk verified, every source was dropped, a chunk failed
    /// [`MAX_CHUNK_FETCHES`] times, or `cancel`. `Err` only for a local failure (the partial
    /// file could not be read or written).
    pub async fn run(self) -> std::io::Result<Outcome> {
        let list = self.list;
        let done = resume(&self.partial, &list).await?;
        let count = list.count();
        let resumed: u64 = (0..count)
            .filter(|&c| done[c as usize])
            .map(|c| list.range(c).1)
            .sum();
        let size = list.bundle().size;
        let shared = Shared {
            list: list.clone(),
            pending: (0..count).filter(|&c| !done[c as usize]).collect(),
            inflight: HashMap::new(),
            done_count: done.iter().filter(|d| **d).count() as u64,
            done,
            fetches: vec![0; count as usize],
            mirrors: self
                .sources
                .iter()
                .map(|_| MirrorState::default())
                .collect(),
            wasted: 0,
            // The end game may spend a tenth of the bundle (at least one chunk) on duplicates.
            budget: (size / 10).max(CHUNK_SIZE),
            exhausted: None,
            progress_total: resumed,
            max_connections: self.max_connections.clamp(1, MAX_CONNECTIONS),
        };
        let sources = self.sources.len();
        let ctx = Arc::new(Ctx {
            list,
            shared: Mutex::new(shared),
            changed: Notify::new(),
            partial: self.partial,
            sources: self.sources,
            stall: self.stall,
            cancel: self.cancel.child_token(),
            progress: self.progress,
        });
        let mut set = JoinSet::new();
        // One connection per source to start (as many as the cap allows); each gets more
        // while they make it faster (`Shared::measured`).
        for i in 0..sources {
            spawn_worker(&ctx, &mut set, i);
        }
        let mut fatal = None;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(WorkerEnd::Again(i)) => spawn_worker(&ctx, &mut set, i),
                Ok(WorkerEnd::More(i)) => {
                    spawn_worker(&ctx, &mut set, i);
                    spawn_worker(&ctx, &mut set, i);
                }
                Ok(WorkerEnd::Done) => {}
                Ok(WorkerEnd::Fatal(e)) => {
                    fatal.get_or_insert(e);
                    ctx.cancel.cancel();
                }
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {}
            }
            let s = ctx.lock();
            if s.finished() || !s.alive() || s.exhausted.is_some() {
                ctx.cancel.cancel();
                continue;
            }
            // A source the cap left out at the start takes a freed slot.
            let waiting: Vec<usize> = (0..sources)
                .filter(|&i| s.mirrors[i].started == 0 && s.mirrors[i].dead.is_none())
                .collect();
            drop(s);
            for i in waiting {
                spawn_worker(&ctx, &mut set, i);
            }
        }
        if let Some(e) = fatal {
            return Err(e);
        }
        let s = ctx.lock();
        Ok(Outcome {
            finished: s.finished(),
            resumed,
            sources: s
                .mirrors
                .iter()
                .map(|m| SourceOutcome {
                    bytes: m.bytes,
                    ended: m.dead.clone(),
                })
                .collect(),
            exhausted: s.exhausted.map(|c| (c, s.list.range(c).0)),
        })
    }
}

/// Opens or creates the partial file at its full size and returns which chunks in it already
/// match the list (re-hashed now: nothing on disk is trusted without its hash).
async fn resume(partial: &Path, list: &ChunkList) -> std::io::Result<Vec<bool>> {
    let (partial, list) = (partial.to_owned(), list.clone());
    tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Seek as _};
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&partial)?;
        let size = list.bundle().size;
        let mut done = vec![false; list.count() as usize];
        if file.metadata()?.len() == size {
            let mut buf = vec![0u8; CHUNK_SIZE as usize];
            for c in 0..list.count() {
                let (offset, len) = list.range(c);
                file.seek(std::io::SeekFrom::Start(offset))?;
                file.read_exact(&mut buf[..len as usize])?;
                done[c as usize] = list.check(c, &buf[..len as usize]).is_ok();
            }
        } else {
            file.set_len(0)?;
            file.set_len(size)?;
        }
        Ok(done)
    })
    .await
    .map_err(std::io::Error::other)?
}

enum WorkerEnd {
    /// The worker stopped; its mirror should get another connection (and this one again).
    More(usize),
    /// The worker's connection was cut: open it again.
    Again(usize),
    Done,
    Fatal(std::io::Error),
}

fn spawn_worker<S: RangeSource>(ctx: &Arc<Ctx<S>>, set: &mut JoinSet<WorkerEnd>, i: usize) {
    {
        let mut s = ctx.lock();
        let total: usize = s.mirrors.iter().map(|m| m.connections).sum();
        let full = total >= s.max_connections;
        let state = &mut s.mirrors[i];
        if state.dead.is_some() || state.connections >= MAX_CONNECTIONS_PER_MIRROR || full {
            return;
        }
        state.connections += 1;
        state.started += 1;
        state.window = Some((Instant::now(), 0));
    }
    let ctx = ctx.clone();
    set.spawn(async move {
        let end = worker(&ctx, i).await;
        let mut s = ctx.lock();
        s.mirrors[i].connections -= 1;
        drop(s);
        ctx.changed.notify_waiters();
        end
    });
}

/// One connection's loop: take a run, fetch it, until nothing is left or its mirror is dead.
async fn worker<S: RangeSource>(ctx: &Arc<Ctx<S>>, i: usize) -> WorkerEnd {
    let mut grow = false;
    loop {
        if ctx.cancel.is_cancelled() {
            return WorkerEnd::Done;
        }
        let run = {
            let mut s = ctx.lock();
            if s.finished() || s.mirrors[i].dead.is_some() {
                return WorkerEnd::Done;
            }
            s.take(i, ctx.stall)
        };
        if run.is_empty() {
            // Nothing to do now: wait for a change (a chunk given back, a stall to hedge).
            let notified = ctx.changed.notified();
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = ctx.cancel.cancelled() => return WorkerEnd::Done,
            }
            continue;
        }
        let started = Instant::now();
        let result = tokio::select! {
            r = fetch_run(ctx, i, &run) => r,
            () = ctx.cancel.cancelled() => Err(RunError::Cancelled),
        };
        let mut s = ctx.lock();
        match result {
            Ok(moved) => {
                s.mirrors[i].failures = 0;
                grow |= s.measured(i, moved, started.elapsed());
            }
            Err(RunError::Local(e)) => {
                s.release(i, &run);
                return WorkerEnd::Fatal(e);
            }
            Err(RunError::Cancelled) => {
                s.release(i, &run);
                return WorkerEnd::Done;
            }
            Err(RunError::Lying { chunk, partial }) => {
                let (offset, len) = s.list.range(chunk);
                s.waste(i, len + partial);
                s.release(i, &run);
                s.mirrors[i].dead = Some(Ended::BadChunk {
                    index: chunk,
                    offset,
                    length: len,
                });
                drop(s);
                ctx.changed.notify_waiters();
                return WorkerEnd::Done;
            }
            Err(RunError::Mirror { error, partial }) => {
                s.waste(i, partial);
                s.give_back(i, &run);
                let state = &mut s.mirrors[i];
                state.failures += 1;
                let retry = matches!(error, RangeError::Failed(_));
                if matches!(error, RangeError::Lying(_) | RangeError::NoRanges(_))
                    || state.failures >= 3
                {
                    state.dead = Some(Ended::Failed(error));
                }
                let again = state.dead.is_none() && retry;
                drop(s);
                ctx.changed.notify_waiters();
                // A cut connection (a reset) is opened again, up to three failures in a row;
                // a stalled one is not (its mirror may be blocked): the others take its chunks
                // and the mirror keeps its other connections.
                return if again {
                    WorkerEnd::Again(i)
                } else {
                    WorkerEnd::Done
                };
            }
        }
        let done = s.progress_total;
        drop(s);
        ctx.changed.notify_waiters();
        if let Some(progress) = &ctx.progress {
            progress(done);
        }
        if grow {
            return WorkerEnd::More(i);
        }
    }
}

enum RunError {
    /// Chunk `chunk` did not match the list; `partial` other wasted bytes.
    Lying {
        chunk: u64,
        partial: u64,
    },
    Mirror {
        error: RangeError,
        partial: u64,
    },
    Local(std::io::Error),
    Cancelled,
}

/// Fetches the contiguous chunks `run` from mirror `i`, checking and storing each as it
/// completes. Returns the bytes moved.
async fn fetch_run<S: RangeSource>(
    ctx: &Arc<Ctx<S>>,
    i: usize,
    run: &[u64],
) -> Result<u64, RunError> {
    let first = run[0];
    let last = *run.last().expect("a run is never empty");
    let (start, _) = ctx.list.range(first);
    let (last_offset, last_len) = ctx.list.range(last);
    let end = last_offset + last_len;
    let mut chunk = first;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_SIZE as usize);
    let mut hasher = Sha256::new();
    let mut moved = 0u64;
    let mirror_error = |error: RangeError, partial: u64| RunError::Mirror { error, partial };
    let patience = ctx.stall * 2;
    let mut body = tokio::time::timeout(patience, ctx.sources[i].open(start, end))
        .await
        .map_err(|_| {
            mirror_error(
                RangeError::TimedOut(format!("no answer within {:.1}s", patience.as_secs_f64())),
                0,
            )
        })?
        .map_err(|e| mirror_error(e, 0))?;
    loop {
        let next = tokio::time::timeout(ctx.stall, body.next()).await;
        let data = match next {
            Err(_) => {
                return Err(mirror_error(
                    RangeError::TimedOut(format!(
                        "no bytes for {:.1}s in the middle of chunk {chunk}",
                        ctx.stall.as_secs_f64()
                    )),
                    buf.len() as u64,
                ))
            }
            Ok(Err(e)) => return Err(mirror_error(e, buf.len() as u64)),
            Ok(Ok(None)) => {
                if chunk > last {
                    return Ok(moved);
                }
                return Err(mirror_error(
                    RangeError::Failed(format!(
                        "the connection closed in chunk {chunk} of bytes {start}..{end}"
                    )),
                    buf.len() as u64,
                ));
            }
            Ok(Ok(Some(data))) => data,
        };
        let mut data = &data[..];
        while !data.is_empty() {
            if chunk > last {
                return Err(mirror_error(
                    RangeError::Lying(format!("sent more than bytes {start}..{end}")),
                    data.len() as u64,
                ));
            }
            let (offset, len) = ctx.list.range(chunk);
            let room = (len as usize) - buf.len();
            let (now, later) = data.split_at(room.min(data.len()));
            buf.extend_from_slice(now);
            hasher.update(now);
            data = later;
            if buf.len() as u64 == len {
                let digest: [u8; 32] = std::mem::take(&mut hasher).finalize().into();
                if ctx.list.check_digest(chunk, len, &digest).is_err() {
                    return Err(RunError::Lying { chunk, partial: 0 });
                }
                let fresh = { !ctx.lock().done[chunk as usize] };
                if fresh {
                    write_at(&ctx.partial, offset, std::mem::take(&mut buf))
                        .await
                        .map_err(RunError::Local)?;
                }
                ctx.lock().delivered(i, chunk, len);
                ctx.changed.notify_waiters();
                moved += len;
                buf = Vec::with_capacity(CHUNK_SIZE as usize);
                chunk += 1;
            }
        }
    }
}

/// Writes a verified chunk at its place in the partial file.
async fn write_at(path: &Path, offset: u64, bytes: Vec<u8>) -> std::io::Result<()> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt as _;
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        file.write_all_at(&bytes, offset)
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::content_id::ContentId;
    use crate::index::ObjectRef;

    /// Connections open now, and the most at once.
    #[derive(Default)]
    struct Gauge {
        open: AtomicUsize,
        most: AtomicUsize,
    }

    /// A copy of the bundle in a real file, answering ranges; `whole` answers like a host
    /// without byte ranges.
    struct FileRange {
        path: PathBuf,
        whole: bool,
        gauge: Arc<Gauge>,
    }

    struct FileBody {
        bytes: Option<Bytes>,
        gauge: Arc<Gauge>,
    }

    impl Drop for FileBody {
        fn drop(&mut self) {
            self.gauge.open.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl RangeBody for FileBody {
        async fn next(&mut self) -> Result<Option<Bytes>, RangeError> {
            // A little time per answer, so that connections overlap.
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(self.bytes.take())
        }
    }

    impl RangeSource for FileRange {
        type Body = FileBody;

        async fn open(&self, start: u64, end: u64) -> Result<FileBody, RangeError> {
            if self.whole {
                // Late, so the other source is surely left out by the cap meanwhile.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(RangeError::NoRanges("answered the whole file".into()));
            }
            let now = self.gauge.open.fetch_add(1, Ordering::SeqCst) + 1;
            self.gauge.most.fetch_max(now, Ordering::SeqCst);
            let bytes = std::fs::read(&self.path).unwrap();
            Ok(FileBody {
                bytes: Some(Bytes::copy_from_slice(&bytes[start as usize..end as usize])),
                gauge: self.gauge.clone(),
            })
        }
    }

    /// A 2.5 MiB bundle-like file and its chunk list.
    fn bundle(dir: &Path) -> (PathBuf, ChunkList) {
        let bytes: Vec<u8> = (0..(5u32 << 19)).map(|i| (i * 31 % 251) as u8).collect();
        let path = dir.join("bundle.zip");
        std::fs::write(&path, &bytes).unwrap();
        let object = ObjectRef {
            sha256: ContentId::of_bytes(&bytes),
            size: bytes.len() as u64,
        };
        let list = crate::index::chunks::list_of(object, &bytes[..])
            .unwrap()
            .expect("above the threshold");
        (path, list)
    }

    /// The download's connection cap holds over all sources, and a source the cap left out at
    /// the start takes the slot of one that dropped out (here: no byte ranges).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cap_holds_and_a_left_out_source_takes_a_freed_slot() {
        let dir = tempfile::tempdir().unwrap();
        let (path, list) = bundle(dir.path());
        let gauge = Arc::new(Gauge::default());
        let source = |whole| FileRange {
            path: path.clone(),
            whole,
            gauge: gauge.clone(),
        };
        let outcome = Download {
            list,
            sources: vec![source(true), source(false)],
            partial: dir.path().join("partial"),
            stall: Duration::from_secs(1),
            cancel: CancellationToken::new(),
            max_connections: 1,
            progress: None,
        }
        .run()
        .await
        .unwrap();
        assert!(outcome.finished, "{outcome:?}");
        assert!(matches!(
            outcome.sources[0].ended,
            Some(Ended::Failed(RangeError::NoRanges(_)))
        ));
        assert_eq!(outcome.sources[1].bytes.delivered, 5 << 19);
        assert_eq!(gauge.most.load(Ordering::SeqCst), 1);
        assert_eq!(
            std::fs::read(dir.path().join("partial")).unwrap(),
            std::fs::read(&path).unwrap()
        );
    }
}
