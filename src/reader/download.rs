//! The hedged, resumable download of one bundle by its signed sha256 and size.
//!
//! Owns the schedule (ask the best mirror; whenever the download has not moved for the hedge
//! delay, ask the next one too; replace a mirror that failed; the first verified copy wins and
//! every other request is cancelled), resuming (`<partial>/<sha256>.part`, held
//! by one request at a time, continued with `Range: bytes=N-` or, from a folder, a seek; the
//! prefix is hashed again before the rest is appended, so a bad prefix costs a fresh download,
//! never a bad file) and the bundle-phase fate of each mirror. The signed size caps every
//! read: a `Content-Length` or a stream beyond it is a lie, stopped at once, and so is a whole
//! answer that announces fewer bytes. A request slower than `transport::MIN_RATE` overall is
//! cut off, and bytes arriving slower than that do not count as progress for the hedge.
//!
//! It never writes an unverified bundle where it can be read: every transport (HTTP, proxy,
//! folder) fills a spool in the state folder through the same size cap and sha256; only the
//! exact signed bytes are then handed to [`receive_bundle`] (size and sha256 again, then the
//! bundle verifier), which is the only way into the output folder. It never asks a lying
//! mirror again.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::mirrors::{Fate, Mirror};
use super::transport::{self, Source, TransportError};
use super::{Progress, ProgressFn, ReaderError};
use crate::content_id::ContentId;
use crate::index::layout::{on_disk, PublisherLayout};
use crate::index::{
    open_regular, receive_bundle, ArticleVersion, BundleFetchError, FetchError, FetchedBundle,
};
use crate::keys::Trusted as _;
use crate::limits::BundleLimits;
use crate::roots::Authority;

/// How many times one mirror is asked for one bundle in a run. 3: a connection cut part-way
/// (a censor's reset, a flaky link) is retried with `Range` from where it stopped, but a
/// mirror that keeps failing does not hold the run up for ever.
const MAX_TRIES_PER_MIRROR: u32 = 3;

/// What to download and where it may go.
#[derive(Debug)]
pub(super) struct Job {
    /// The publisher id and the keys its current root delegates.
    publisher: Authority,
    article: ArticleVersion,
    /// Partial downloads and temp spools (state folder).
    partial_dir: PathBuf,
    /// Where the verified copy is made (the output folder, so that persisting is a rename).
    out_dir: PathBuf,
    limits: BundleLimits,
    /// Whether some request holds the partial file now.
    partial_taken: AtomicBool,
}

impl Job {
    pub(super) fn new(
        publisher: Authority,
        article: ArticleVersion,
        partial_dir: PathBuf,
        out_dir: PathBuf,
        limits: BundleLimits,
    ) -> Self {
        Self {
            publisher,
            article,
            partial_dir,
            out_dir,
            limits,
            partial_taken: AtomicBool::new(false),
        }
    }

    fn size(&self) -> u64 {
        self.article.bundle().size
    }

    pub(super) fn bundle(&self) -> crate::index::ObjectRef {
        self.article.bundle()
    }

    pub(super) fn publisher_key(&self) -> &crate::keys::PublicKey {
        self.publisher.publisher()
    }

    pub(super) fn partial_dir(&self) -> &Path {
        &self.partial_dir
    }

    fn partial_path(&self) -> PathBuf {
        self.partial_dir
            .join(format!("{}.part", self.article.bundle().sha256))
    }

    pub(super) fn label(&self) -> String {
        format!("{} v{}", self.article.name(), self.article.version())
    }

    /// The one check every copy passes, whatever it came through.
    pub(super) async fn verify(
        self: &Arc<Self>,
        path: PathBuf,
    ) -> Result<FetchedBundle, BundleFetchError> {
        let job = self.clone();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path).map_err(|e| BundleFetchError::Fetch {
                sha256: job.article.bundle().sha256,
                source: FetchError::Read(e),
            })?;
            receive_bundle(
                file,
                &job.out_dir,
                &job.article,
                &job.publisher,
                &job.limits,
            )
        })
        .await
        .unwrap_or_else(|e| {
            Err(BundleFetchError::Fetch {
                sha256: self.article.bundle().sha256,
                source: FetchError::Read(std::io::Error::other(e)),
            })
        })
    }
}

/// The verified bundle, and which mirror it came from.
pub(super) struct Downloaded {
    pub(super) mirror: usize,
    pub(super) fetched: FetchedBundle,
    pub(super) resumed_from: u64,
}

/// How one request ended.
enum End {
    Verified {
        fetched: Box<FetchedBundle>,
        resumed_from: u64,
    },
    /// `progressed`: some bytes of the bundle arrived before the failure (worth resuming).
    Failed {
        error: TransportError,
        progressed: bool,
    },
    /// A resumed download does not hash right: the partial file is deleted and the bundle is
    /// fetched again from the start (the bad bytes may have come from an earlier mirror).
    ResumedMismatch,
    /// Not the mirror's fault, and no other mirror can help.
    Fatal(ReaderError),
}

/// Downloads the job's bundle from the mirrors in `order` (best first), skipping liars.
pub(super) async fn download(
    job: Arc<Job>,
    order: &[usize],
    mirrors: &mut [Mirror],
    hedge_delay: Duration,
    progress: Option<ProgressFn>,
) -> Result<Downloaded, ReaderError> {
    let mut schedule = Schedule {
        job: job.clone(),
        queue: order.iter().copied().collect(),
        tries: HashMap::new(),
        running: HashMap::new(),
        set: JoinSet::new(),
        received: 0,
        progress,
        lines: Vec::new(),
        inauthentic: false,
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
    let mut last_activity = Instant::now();
    // The download counts as moving only while bytes come at `MIN_RATE` or faster: a mirror
    // dripping a byte at a time (a slow-loris) must not hold off the hedge for ever.
    let min_progress = ((transport::MIN_RATE as f64 * hedge_delay.as_secs_f64()) as u64).max(1);
    let mut progress_mark = 0u64;
    let winner = loop {
        if schedule.set.is_empty() && !schedule.launch(mirrors, &tx) {
            break None;
        }
        let can_hedge = schedule.has_next(mirrors);
        tokio::select! {
            joined = schedule.set.join_next_with_id() => {
                let Some(joined) = joined else { continue };
                let (m, end) = match joined {
                    Ok((id, end)) => (schedule.running.remove(&id), end),
                    Err(e) => (
                        schedule.running.remove(&e.id()),
                        End::Failed {
                            error: TransportError::Failed("the request failed unexpectedly".into()),
                            progressed: false,
                        },
                    ),
                };
                let Some(m) = m else { continue };
                match end {
                    End::Verified { fetched, resumed_from } => {
                        break Some(Downloaded { mirror: m, fetched: *fetched, resumed_from });
                    }
                    End::Failed { error, progressed } => {
                        schedule.failed(mirrors, m, &error, progressed);
                    }
                    End::ResumedMismatch => schedule.queue.push_front(m),
                    End::Fatal(e) => {
                        schedule.stop().await;
                        return Err(e);
                    }
                }
            }
            Some(received) = rx.recv() => {
                schedule.advanced(received);
                if schedule.received >= progress_mark.saturating_add(min_progress) {
                    progress_mark = schedule.received;
                    last_activity = Instant::now();
                }
            }
            () = tokio::time::sleep_until(last_activity + hedge_delay), if can_hedge => {
                schedule.launch(mirrors, &tx);
                last_activity = Instant::now();
            }
        }
    };
    let cancelled: Vec<usize> = schedule.running.values().copied().collect();
    schedule.stop().await;
    for m in cancelled {
        mirrors[m].note_bundle(
            Fate::NotNeeded,
            Some("cancelled: another mirror was faster"),
        );
    }
    match winner {
        Some(done) => {
            let detail = match done.resumed_from {
                0 => "served the bundle".to_owned(),
                n => format!("served the bundle (resumed at byte {n})"),
            };
            mirrors[done.mirror].note_bundle(Fate::Ok, Some(&detail));
            // The partial (if another request held it) is of no use any more.
            let _ = std::fs::remove_file(job.partial_path());
            Ok(done)
        }
        None => {
            let (article, sha256) = (job.label(), job.article.bundle().sha256);
            let summary = if schedule.lines.is_empty() {
                "no mirror that answered the index is left to ask".to_owned()
            } else {
                schedule.lines.join("; ")
            };
            Err(ReaderError::bundle_failed(
                schedule.inauthentic,
                article,
                sha256,
                summary,
            ))
        }
    }
}

struct Schedule {
    job: Arc<Job>,
    /// Mirrors still to ask, best first (a mirror may come back for a resume).
    queue: VecDeque<usize>,
    tries: HashMap<usize, u32>,
    running: HashMap<tokio::task::Id, usize>,
    set: JoinSet<End>,
    /// The most bytes any request has so far (for progress).
    received: u64,
    progress: Option<ProgressFn>,
    /// Failures, for the error message.
    lines: Vec<String>,
    inauthentic: bool,
}

impl Schedule {
    fn usable(&self, mirrors: &[Mirror], m: usize) -> bool {
        !mirrors[m].is_lying()
            && self.tries.get(&m).copied().unwrap_or(0) < MAX_TRIES_PER_MIRROR
            && !self.running.values().any(|&r| r == m)
    }

    fn has_next(&self, mirrors: &[Mirror]) -> bool {
        self.queue.iter().any(|&m| self.usable(mirrors, m))
    }

    /// Starts a request to the next usable mirror; `false` if there is none.
    fn launch(&mut self, mirrors: &[Mirror], tx: &mpsc::UnboundedSender<u64>) -> bool {
        while let Some(m) = self.queue.pop_front() {
            if !self.usable(mirrors, m) {
                continue;
            }
            *self.tries.entry(m).or_default() += 1;
            let job = self.job.clone();
            let tx = tx.clone();
            let handle = self.set.spawn(attempt(job, mirrors[m].source.clone(), tx));
            self.running.insert(handle.id(), m);
            return true;
        }
        false
    }

    fn failed(
        &mut self,
        mirrors: &mut [Mirror],
        m: usize,
        error: &TransportError,
        progressed: bool,
    ) {
        let (fate, detail) = error.fate();
        let detail = format!("bundle: {detail}");
        if fate == Fate::Lying {
            self.inauthentic = true;
        }
        self.lines.push(format!(
            "{}: {} ({detail})",
            mirrors[m].label(),
            fate.as_str()
        ));
        mirrors[m].note_bundle(fate, Some(&detail));
        if progressed && fate != Fate::Lying {
            // Cut part-way: worth another try, resuming where it stopped.
            self.queue.push_back(m);
        }
    }

    fn advanced(&mut self, received: u64) {
        if received > self.received {
            self.received = received;
            if let Some(progress) = &self.progress {
                progress(Progress {
                    received,
                    total: self.job.size(),
                });
            }
        }
    }

    /// Cancels every request still running and waits until they are gone (so none writes
    /// after this returns).
    async fn stop(&mut self) {
        self.set.abort_all();
        while self.set.join_next().await.is_some() {}
        self.running.clear();
    }
}

/// Where a request writes: the shared partial file (if free), else a temp file of its own.
/// Everything in it has gone through `hasher`, the prefix of a resumed partial included.
struct Spool {
    file: tokio::fs::File,
    path: PathBuf,
    len: u64,
    hasher: Sha256,
    /// `Some`: this spool holds the partial file and gives it back on drop.
    partial: Option<Arc<Job>>,
    /// Keeps a private spool's temp file alive (deleted on drop).
    _temp: Option<tempfile::TempPath>,
}

impl Spool {
    async fn open(job: &Arc<Job>) -> std::io::Result<Spool> {
        if job
            .partial_taken
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            let path = job.partial_path();
            let file = match tokio::fs::OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&path)
                .await
            {
                Ok(f) => f,
                Err(e) => {
                    job.partial_taken.store(false, Ordering::SeqCst);
                    return Err(e);
                }
            };
            // From here on, dropping the spool gives the partial file back.
            let mut spool = Spool {
                file,
                path,
                len: 0,
                hasher: Sha256::new(),
                partial: Some(job.clone()),
                _temp: None,
            };
            if spool.file.metadata().await?.len() > job.size() {
                spool.truncate().await?;
            }
            spool.rehash().await?;
            return Ok(spool);
        }
        let temp = tempfile::NamedTempFile::new_in(&job.partial_dir)?;
        let (file, temp) = temp.into_parts();
        Ok(Spool {
            file: tokio::fs::File::from_std(file),
            path: temp.to_path_buf(),
            len: 0,
            hasher: Sha256::new(),
            partial: None,
            _temp: Some(temp),
        })
    }

    /// Hashes what an earlier request left, so the final hash covers every byte.
    async fn rehash(&mut self) -> std::io::Result<()> {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = self.file.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            self.hasher.update(&buf[..n]);
            self.len += n as u64;
        }
    }

    async fn truncate(&mut self) -> std::io::Result<()> {
        self.file.set_len(0).await?;
        self.len = 0;
        self.hasher = Sha256::new();
        Ok(())
    }

    async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.file.write_all(chunk).await?;
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// Deletes what was written (bytes that failed the hash, or a liar's).
    fn discard(self) {
        if self.partial.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Some(job) = &self.partial {
            job.partial_taken.store(false, Ordering::SeqCst);
        }
    }
}

fn local(path: &Path) -> impl FnOnce(std::io::Error) -> End + '_ {
    move |source| {
        End::Fatal(ReaderError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

/// One request to one mirror: fill the spool (resuming the partial file if this request holds
/// it), check size and sha256, and only then hand the bytes to the bundle check.
async fn attempt(job: Arc<Job>, source: Source, tx: mpsc::UnboundedSender<u64>) -> End {
    let mut spool = match Spool::open(&job).await {
        Ok(s) => s,
        Err(e) => return local(&job.partial_dir)(e),
    };
    let resumed_from = spool.len;
    if spool.len < job.size() {
        let filled = match source {
            Source::Http { .. } | Source::Bucket { .. } => {
                let relative = PublisherLayout::new(job.publisher.publisher())
                    .bundle(&job.article.bundle().sha256);
                let (client, url, patience) = match source {
                    Source::Http {
                        client,
                        base,
                        patience,
                    } => (client, base.join(&relative), patience),
                    Source::Bucket {
                        client,
                        bucket,
                        patience,
                    } => match transport::signed_url(&bucket, &relative).await {
                        Ok(url) => (client, url, patience),
                        Err(error) => {
                            return End::Failed {
                                error,
                                progressed: false,
                            }
                        }
                    },
                    Source::Dir { .. } => unreachable!("matched above"),
                };
                let allowed = transport::deadline(patience, job.size().saturating_sub(spool.len));
                let fill = from_http(&mut spool, &client, &url, job.size(), &tx);
                tokio::time::timeout(allowed, fill)
                    .await
                    .unwrap_or_else(|_| Err(Fill::TooSlow(transport::too_slow(allowed))))
            }
            Source::Dir { root, patience } => {
                let allowed = transport::deadline(patience, job.size().saturating_sub(spool.len));
                let fill = from_dir(&mut spool, &root, &job, &tx);
                tokio::time::timeout(allowed, fill)
                    .await
                    .unwrap_or_else(|_| Err(Fill::TooSlow(transport::too_slow(allowed))))
            }
        };
        match filled {
            Ok(()) => {}
            // Asking again at the same rate would not finish sooner than another mirror.
            Err(Fill::TooSlow(error)) => {
                return End::Failed {
                    error,
                    progressed: false,
                }
            }
            Err(Fill::Mirror(error)) => {
                let progressed = spool.len > resumed_from;
                if matches!(error, TransportError::Lying(_)) {
                    spool.discard();
                }
                return End::Failed { error, progressed };
            }
            Err(Fill::Local(e)) => return local(&spool.path)(e),
        }
    }
    if let Err(e) = spool.file.flush().await {
        return local(&spool.path)(e);
    }
    let expected = job.article.bundle().sha256;
    let actual = ContentId::from_digest(std::mem::take(&mut spool.hasher));
    if actual != expected {
        spool.discard();
        if resumed_from > 0 {
            return End::ResumedMismatch;
        }
        let error = FetchError::HashMismatch { expected, actual };
        return End::Failed {
            error: TransportError::Lying(error.to_string()),
            progressed: false,
        };
    }
    // The exact signed bytes: now the one check every copy passes, whatever it came through.
    let verified = job.verify(spool.path.clone()).await;
    spool.discard();
    match verified {
        Ok(fetched) => End::Verified {
            fetched: Box::new(fetched),
            resumed_from,
        },
        Err(source) => End::Fatal(ReaderError::Bundle {
            article: job.label(),
            source: Box::new(source),
        }),
    }
}

/// Why filling a spool stopped early.
enum Fill {
    Mirror(TransportError),
    /// The answer missed its deadline (slower than the minimum rate).
    TooSlow(TransportError),
    Local(std::io::Error),
}

fn too_much(size: u64) -> Fill {
    Fill::Mirror(TransportError::Lying(format!(
        "sent more than the {size} bytes the index gives"
    )))
}

/// Fills the spool from an HTTP mirror, with `Range` if it already holds a prefix.
async fn from_http(
    spool: &mut Spool,
    client: &reqwest::Client,
    url: &str,
    size: u64,
    tx: &mpsc::UnboundedSender<u64>,
) -> Result<(), Fill> {
    let mut request = client.get(url);
    if spool.len > 0 {
        request = request.header(RANGE, format!("bytes={}-", spool.len));
    }
    let mut response = transport::send(request).await.map_err(Fill::Mirror)?;
    if spool.len > 0 {
        match response.status() {
            StatusCode::PARTIAL_CONTENT if range_start(&response) == Some(spool.len) => {}
            StatusCode::PARTIAL_CONTENT => {
                return Err(Fill::Mirror(TransportError::Failed(
                    "answered a different byte range".into(),
                )))
            }
            // The whole file after all: start over.
            _ => spool.truncate().await.map_err(Fill::Local)?,
        }
    }
    if let Some(n) = response.content_length() {
        let total = spool.len.saturating_add(n);
        if total > size {
            return Err(too_much(size));
        }
        // A whole answer (not a range) of the wrong length is another object, not a cut
        // connection: an HTML block page, a compressed copy. Retrying it cannot help.
        if total < size && response.status() == StatusCode::OK {
            return Err(Fill::Mirror(TransportError::Lying(format!(
                "announced only {total} of the {size} bytes the index gives"
            ))));
        }
    }
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Fill::Mirror(TransportError::from_reqwest(e)))?
    {
        if spool.len + chunk.len() as u64 > size {
            return Err(too_much(size));
        }
        spool.write(&chunk).await.map_err(Fill::Local)?;
        let _ = tx.send(spool.len);
    }
    if spool.len < size {
        return Err(Fill::Mirror(TransportError::Failed(format!(
            "the connection closed after {} of {size} bytes",
            spool.len
        ))));
    }
    Ok(())
}

/// Fills the spool from a folder mirror, continuing after the prefix it already holds.
async fn from_dir(
    spool: &mut Spool,
    root: &Path,
    job: &Job,
    tx: &mpsc::UnboundedSender<u64>,
) -> Result<(), Fill> {
    let size = job.size();
    let path = on_disk(
        root,
        &PublisherLayout::new(job.publisher.publisher()).bundle(&job.article.bundle().sha256),
    );
    let mirror = |e: std::io::Error| Fill::Mirror(transport::missing(e));
    let file = tokio::task::spawn_blocking(move || open_regular(&path))
        .await
        .map_err(|e| mirror(std::io::Error::other(e)))?
        .map_err(mirror)?;
    let mut file = tokio::fs::File::from_std(file);
    file.seek(std::io::SeekFrom::Start(spool.len))
        .await
        .map_err(mirror)?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf).await.map_err(mirror)?;
        if n == 0 {
            break;
        }
        if spool.len + n as u64 > size {
            return Err(too_much(size));
        }
        spool.write(&buf[..n]).await.map_err(Fill::Local)?;
        let _ = tx.send(spool.len);
    }
    if spool.len < size {
        let error = FetchError::Truncated {
            expected: size,
            actual: spool.len,
        };
        return Err(Fill::Mirror(TransportError::Lying(error.to_string())));
    }
    Ok(())
}

/// The first byte position of a `Content-Range: bytes A-B/N` answer.
fn range_start(response: &reqwest::Response) -> Option<u64> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}
