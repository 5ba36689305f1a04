//! The segmented download of a bundle that has a chunk list (docs/PROTOCOL.md §13): disjoint
//! chunk ranges from every useful mirror at once, each chunk checked the moment it is complete.
//!
//! Owns the work queue (each connection takes the next run of pending chunks, as many as its
//! mirror's measured rate moves in about [`TARGET_REQUEST`], so a fast mirror takes more: work
//! stealing), the connections per mirror (one to start, a second once its rate is measured,
//! more while each added one raises the mirror's measured rate by a quarter, within [`MAX_CONNECTIONS_PER_MIRROR`] and [`MAX_CONNECTIONS`]), the
//! end game (an idle connection re-asks a chunk only when its holder stalled or is much
//! slower, within a wasted-bytes budget), blame (a chunk that fails its hash names the mirror,
//! the chunk index and its byte offset; that mirror is never asked again), and resume (the
//! partial file `<sha256>.chunked` is re-hashed chunk by chunk at start: only chunks that match
//! the list are kept). Bytes are held in memory one chunk per connection and are written to
//! the partial file only once their chunk verified, so the partial file never holds an
//! unchecked chunk except after a crash mid-write, which the re-hash catches. The whole file
//! then goes through the same final check as every download (size, sha256, bundle verifier).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::download::{Downloaded, Job};
use super::mirrors::{Fate, Mirror};
use super::transport::{Source, TransportError};
use super::{Progress, ProgressFn, ReaderError};
use crate::index::chunks::ChunkList;
use crate::index::layout::{on_disk, PublisherLayout};
use crate::index::{check_bytes, open_regular, ObjectRef};
use crate::limits::{
    CHUNK_SIZE, MAX_CHUNK_FETCHES, SEGMENTED_MAX_CONNECTIONS as MAX_CONNECTIONS,
    SEGMENTED_MAX_PER_MIRROR as MAX_CONNECTIONS_PER_MIRROR, SEGMENT_TARGET as TARGET_REQUEST,
};

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
    dead: Option<(Fate, String)>,
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
            && total_connections < MAX_CONNECTIONS
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
struct Ctx {
    job: Arc<Job>,
    list: ChunkList,
    shared: Mutex<Shared>,
    changed: Notify,
    partial: PathBuf,
    sources: Vec<Source>,
    relative: String,
    stall: Duration,
    cancel: CancellationToken,
    progress: Option<ProgressFn>,
}

impl Ctx {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The result: the verified bundle and what each mirror (by index into `mirrors`) did.
pub(super) struct Segmented {
    pub(super) downloaded: Downloaded,
    pub(super) bytes: Vec<(usize, MirrorBytes)>,
}

/// Fetches the chunk list of `chunks` from the mirrors in `order` (each answer checked by
/// size, sha256 and against the bundle); `None` when no mirror gives a valid one.
async fn chunk_list(
    job: &Job,
    chunks: ObjectRef,
    order: &[usize],
    mirrors: &mut [Mirror],
) -> Option<ChunkList> {
    let relative = PublisherLayout::new(job.publisher_key()).chunks(&chunks.sha256);
    for &m in order {
        if mirrors[m].is_lying() {
            continue;
        }
        let Ok(bytes) = mirrors[m].source.read(&relative, chunks.size).await else {
            continue;
        };
        let checked = check_bytes(&bytes, chunks)
            .map_err(|e| e.to_string())
            .and_then(|()| ChunkList::parse(&bytes, job.bundle()).map_err(|e| e.to_string()));
        match checked {
            Ok(list) => return Some(list),
            Err(e) => mirrors[m].note_bundle(Fate::Lying, Some(&format!("chunk list: {e}"))),
        }
    }
    None
}

/// Downloads the job's bundle chunk by chunk from every usable mirror in `order`. `Ok(None)`
/// when no mirror serves a valid chunk list (the caller downloads the bundle whole).
pub(super) async fn download(
    job: Arc<Job>,
    chunks: ObjectRef,
    order: &[usize],
    mirrors: &mut [Mirror],
    hedge_delay: Duration,
    progress: Option<ProgressFn>,
) -> Result<Option<Segmented>, ReaderError> {
    let Some(list) = chunk_list(&job, chunks, order, mirrors).await else {
        return Ok(None);
    };
    let usable: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&m| !mirrors[m].is_lying())
        .collect();
    let partial = job
        .partial_dir()
        .join(format!("{}.chunked", job.bundle().sha256));
    let done = resume(&partial, &list)
        .await
        .map_err(ReaderError::io(&partial))?;
    let count = list.count();
    let resumed: u64 = (0..count)
        .filter(|&c| done[c as usize])
        .map(|c| list.range(c).1)
        .sum();
    let size = job.bundle().size;
    let shared = Shared {
        list: list.clone(),
        pending: (0..count).filter(|&c| !done[c as usize]).collect(),
        inflight: HashMap::new(),
        done_count: done.iter().filter(|d| **d).count() as u64,
        done,
        fetches: vec![0; count as usize],
        mirrors: usable.iter().map(|_| MirrorState::default()).collect(),
        wasted: 0,
        // The end game may spend a tenth of the bundle (at least one chunk) on duplicates.
        budget: (size / 10).max(CHUNK_SIZE),
        exhausted: None,
        progress_total: resumed,
    };
    let ctx = Arc::new(Ctx {
        relative: PublisherLayout::new(job.publisher_key()).bundle(&job.bundle().sha256),
        job: job.clone(),
        list,
        shared: Mutex::new(shared),
        changed: Notify::new(),
        partial: partial.clone(),
        sources: usable.iter().map(|&m| mirrors[m].source.clone()).collect(),
        stall: (hedge_delay * 2).max(Duration::from_secs(1)),
        cancel: CancellationToken::new(),
        progress,
    });
    let mut set = JoinSet::new();
    // One connection per mirror to start (as many mirrors as the cap allows); each gets more
    // while they make it faster (`Shared::measured`).
    for i in 0..usable.len() {
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
        }
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    let shared = std::mem::replace(
        &mut *ctx.lock(),
        Shared {
            list: ctx.list.clone(),
            pending: BTreeSet::new(),
            inflight: HashMap::new(),
            done: Vec::new(),
            done_count: 0,
            fetches: Vec::new(),
            mirrors: Vec::new(),
            wasted: 0,
            budget: 0,
            exhausted: None,
            progress_total: 0,
        },
    );
    let bytes: Vec<(usize, MirrorBytes)> = usable
        .iter()
        .zip(&shared.mirrors)
        .map(|(&m, s)| (m, s.bytes))
        .collect();
    for (&m, state) in usable.iter().zip(&shared.mirrors) {
        match &state.dead {
            Some((fate, detail)) => mirrors[m].note_bundle(*fate, Some(detail)),
            None if state.bytes.delivered > 0 => mirrors[m].note_bundle(
                Fate::Ok,
                Some(&format!(
                    "served {} of {} chunks",
                    state.bytes.delivered.div_ceil(CHUNK_SIZE),
                    count
                )),
            ),
            None => {}
        }
    }
    if !shared.finished() {
        let summary = match shared.exhausted {
            Some(c) => {
                let (offset, _) = shared.list.range(c);
                format!("chunk {c} (byte offset {offset}) failed from {MAX_CHUNK_FETCHES} requests")
            }
            None => shared
                .mirrors
                .iter()
                .zip(&usable)
                .filter_map(|(s, &m)| {
                    let (fate, detail) = s.dead.as_ref()?;
                    Some(format!(
                        "{}: {} ({detail})",
                        mirrors[m].label(),
                        fate.as_str()
                    ))
                })
                .collect::<Vec<_>>()
                .join("; "),
        };
        let inauthentic = shared
            .mirrors
            .iter()
            .any(|s| matches!(s.dead, Some((Fate::Lying, _))));
        let (article, sha256) = (job.label(), job.bundle().sha256);
        return Err(if inauthentic {
            ReaderError::BundleNotAuthentic {
                article,
                sha256,
                summary,
            }
        } else {
            ReaderError::BundleUnreachable {
                article,
                sha256,
                summary,
            }
        });
    }
    let fetched = job
        .verify(partial.clone())
        .await
        .map_err(|source| ReaderError::Bundle {
            article: job.label(),
            source: Box::new(source),
        })?;
    let _ = std::fs::remove_file(&partial);
    let best = bytes
        .iter()
        .max_by_key(|(_, b)| b.delivered)
        .map_or(usable.first().copied().unwrap_or(0), |(m, _)| *m);
    Ok(Some(Segmented {
        downloaded: Downloaded {
            mirror: best,
            fetched,
            resumed_from: resumed,
        },
        bytes,
    }))
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
    Fatal(ReaderError),
}

fn spawn_worker(ctx: &Arc<Ctx>, set: &mut JoinSet<WorkerEnd>, i: usize) {
    {
        let mut s = ctx.lock();
        let total: usize = s.mirrors.iter().map(|m| m.connections).sum();
        let state = &mut s.mirrors[i];
        if state.dead.is_some()
            || state.connections >= MAX_CONNECTIONS_PER_MIRROR
            || total >= MAX_CONNECTIONS
        {
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
async fn worker(ctx: &Arc<Ctx>, i: usize) -> WorkerEnd {
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
                return WorkerEnd::Fatal(ReaderError::io(&ctx.partial)(e));
            }
            Err(RunError::Cancelled) => {
                s.release(i, &run);
                return WorkerEnd::Done;
            }
            Err(RunError::Lying { chunk, partial }) => {
                let (offset, len) = s.list.range(chunk);
                s.waste(i, len + partial);
                s.release(i, &run);
                s.mirrors[i].dead = Some((
                    Fate::Lying,
                    format!(
                        "bundle: sent a bad chunk {chunk} (bytes {offset}..{}): it does not \
                         match the signed chunk list",
                        offset + len
                    ),
                ));
                drop(s);
                ctx.changed.notify_waiters();
                return WorkerEnd::Done;
            }
            Err(RunError::Mirror { error, partial }) => {
                s.waste(i, partial);
                s.release(i, &run);
                let state = &mut s.mirrors[i];
                state.failures += 1;
                let (fate, detail) = error.fate();
                if fate == Fate::Lying || state.failures >= 3 {
                    state.dead = Some((fate, format!("bundle: {detail}")));
                }
                let again = state.dead.is_none() && fate == Fate::Failed;
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
            progress(Progress {
                received: done,
                total: ctx.job.bundle().size,
            });
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
        error: TransportError,
        partial: u64,
    },
    Local(std::io::Error),
    Cancelled,
}

/// Fetches the contiguous chunks `run` from mirror `i`, checking and storing each as it
/// completes. Returns the bytes moved.
async fn fetch_run(ctx: &Arc<Ctx>, i: usize, run: &[u64]) -> Result<u64, RunError> {
    let first = run[0];
    let last = *run.last().expect("a run is never empty");
    let (start, _) = ctx.list.range(first);
    let (last_offset, last_len) = ctx.list.range(last);
    let end = last_offset + last_len;
    let mut chunk = first;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_SIZE as usize);
    let mut hasher = Sha256::new();
    let mut moved = 0u64;
    let mirror_error = |error: TransportError, partial: u64| RunError::Mirror { error, partial };
    let mut body = open_range(ctx, i, start, end)
        .await
        .map_err(|e| mirror_error(e, 0))?;
    loop {
        let next = tokio::time::timeout(ctx.stall, body.next()).await;
        let data = match next {
            Err(_) => {
                return Err(mirror_error(
                    TransportError::TimedOut(format!(
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
                    TransportError::Failed(format!(
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
                    TransportError::Lying(format!("sent more than bytes {start}..{end}")),
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

/// A body being received: from HTTP or a folder.
enum Body {
    Http(reqwest::Response),
    Dir {
        file: std::sync::Arc<std::fs::File>,
        offset: u64,
        end: u64,
    },
}

impl Body {
    async fn next(&mut self) -> Result<Option<bytes::Bytes>, TransportError> {
        match self {
            Body::Http(response) => response.chunk().await.map_err(TransportError::from_reqwest),
            Body::Dir { file, offset, end } => {
                if *offset >= *end {
                    return Ok(None);
                }
                let len = (*end - *offset).min(64 << 10) as usize;
                let (file, at) = (file.clone(), *offset);
                let read = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt as _;
                    let mut buf = vec![0u8; len];
                    file.read_exact_at(&mut buf, at).map(|()| buf)
                })
                .await
                .map_err(|e| TransportError::Failed(e.to_string()))?
                .map_err(|e| TransportError::Failed(format!("reading the folder copy: {e}")))?;
                *offset += len as u64;
                Ok(Some(read.into()))
            }
        }
    }
}

/// Asks mirror `i` for bytes `start..end` of the bundle.
async fn open_range(ctx: &Ctx, i: usize, start: u64, end: u64) -> Result<Body, TransportError> {
    match &ctx.sources[i] {
        source @ (Source::Http { .. } | Source::Bucket { .. }) => {
            let (client, url) = match source {
                Source::Http { client, base, .. } => (client, base.join(&ctx.relative)),
                Source::Bucket { client, bucket, .. } => (
                    client,
                    super::transport::signed_url(bucket, &ctx.relative).await?,
                ),
                Source::Dir { .. } => unreachable!("matched above"),
            };
            let request = client
                .get(&url)
                .header(RANGE, format!("bytes={start}-{}", end - 1));
            let response = tokio::time::timeout(ctx.stall * 2, super::transport::send(request))
                .await
                .map_err(|_| {
                    TransportError::TimedOut(format!(
                        "no answer within {:.1}s",
                        (ctx.stall * 2).as_secs_f64()
                    ))
                })??;
            let size = ctx.job.bundle().size;
            let expected = format!("bytes {start}-{}/{size}", end - 1);
            let range_ok = response.status() == StatusCode::PARTIAL_CONTENT
                && response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    == Some(expected.as_str());
            if !range_ok {
                return Err(TransportError::Failed(format!(
                    "does not answer byte ranges (asked {expected}, got HTTP {})",
                    response.status()
                )));
            }
            if response.content_length().is_some_and(|n| n != end - start) {
                return Err(TransportError::Lying(format!(
                    "announced a body that is not bytes {start}..{end}"
                )));
            }
            Ok(Body::Http(response))
        }
        Source::Dir { root, .. } => {
            let path = on_disk(root, &ctx.relative);
            let size = ctx.job.bundle().size;
            let file = tokio::task::spawn_blocking(move || open_regular(&path))
                .await
                .map_err(|e| TransportError::Failed(e.to_string()))?
                .map_err(super::transport::missing)?;
            let len = file
                .metadata()
                .map_err(|e| TransportError::Failed(e.to_string()))?
                .len();
            if len != size {
                return Err(TransportError::Lying(format!(
                    "its copy is {len} bytes, the index gives {size}"
                )));
            }
            Ok(Body::Dir {
                file: Arc::new(file),
                offset: start,
                end,
            })
        }
    }
}
