//! The reader's side of a segmented download (docs/PROTOCOL.md §13): fetching the chunk list
//! from its mirrors, a [`RangeSource`] over each mirror's transport (HTTP, S3 bucket, folder),
//! and turning the engine's [`Outcome`] (in [`crate::segmented`], shared with sync) into the
//! mirrors' fates and the reader's errors. The whole file then goes through the same final
//! check as every download (size, sha256, bundle verifier).

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use super::download::{Downloaded, Job};
use super::mirrors::{Fate, Mirror};
use super::transport::{Source, TransportError};
use super::{Progress, ProgressFn, ReaderError};
use crate::index::chunks::ChunkList;
use crate::index::layout::{on_disk, PublisherLayout};
use crate::index::{check_bytes, open_regular, ObjectRef};
use crate::limits::{CHUNK_SIZE, MAX_CHUNK_FETCHES};
pub use crate::segmented::MirrorBytes;
use crate::segmented::{Download, Ended, Outcome, RangeBody, RangeError, RangeSource};

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
    let size = job.bundle().size;
    let relative = PublisherLayout::new(job.publisher_key()).bundle(&job.bundle().sha256);
    let count = list.count();
    let outcome = Download {
        list,
        sources: usable
            .iter()
            .map(|&m| MirrorRange {
                source: mirrors[m].source.clone(),
                relative: relative.clone(),
                size,
            })
            .collect(),
        partial: partial.clone(),
        stall: (hedge_delay * 2).max(Duration::from_secs(1)),
        cancel: CancellationToken::new(),
        max_connections: crate::limits::SEGMENTED_MAX_CONNECTIONS,
        progress: progress.map(|progress| -> crate::segmented::ProgressFn {
            Arc::new(move |received| {
                progress(Progress {
                    received,
                    total: size,
                })
            })
        }),
    }
    .run()
    .await
    .map_err(ReaderError::io(&partial))?;
    let Outcome {
        finished,
        resumed,
        sources,
        exhausted,
    } = outcome;
    let bytes: Vec<(usize, MirrorBytes)> = usable
        .iter()
        .zip(&sources)
        .map(|(&m, s)| (m, s.bytes))
        .collect();
    let fates: Vec<Option<(Fate, String)>> =
        sources.iter().map(|s| s.ended.as_ref().map(fate)).collect();
    for (&m, (state, ended)) in usable.iter().zip(sources.iter().zip(&fates)) {
        match ended {
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
    if !finished {
        let summary = match exhausted {
            Some((c, offset)) => {
                format!("chunk {c} (byte offset {offset}) failed from {MAX_CHUNK_FETCHES} requests")
            }
            None => fates
                .iter()
                .zip(&usable)
                .filter_map(|(ended, &m)| {
                    let (fate, detail) = ended.as_ref()?;
                    Some(format!(
                        "{}: {} ({detail})",
                        mirrors[m].label(),
                        fate.as_str()
                    ))
                })
                .collect::<Vec<_>>()
                .join("; "),
        };
        let inauthentic = sources
            .iter()
            .any(|s| s.ended.as_ref().is_some_and(Ended::is_lying));
        let (article, sha256) = (job.label(), job.bundle().sha256);
        return Err(ReaderError::bundle_failed(
            inauthentic,
            article,
            sha256,
            summary,
        ));
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

/// A mirror's fate and the detail shown for why the engine dropped it.
fn fate(ended: &Ended) -> (Fate, String) {
    match ended {
        Ended::BadChunk {
            index,
            offset,
            length,
        } => (
            Fate::Lying,
            format!(
                "bundle: sent a bad chunk {index} (bytes {offset}..{}): it does not match the \
                 signed chunk list",
                offset + length
            ),
        ),
        Ended::Failed(e) => {
            let fate = match e {
                RangeError::TimedOut(_) => Fate::TimedOut,
                RangeError::Refused(_) => Fate::Refused,
                RangeError::Failed(_) | RangeError::NoRanges(_) => Fate::Failed,
                RangeError::Lying(_) => Fate::Lying,
            };
            (fate, format!("bundle: {}", e.detail()))
        }
    }
}

/// The bundle on one mirror, as a [`RangeSource`].
struct MirrorRange {
    source: Source,
    relative: String,
    size: u64,
}

impl From<TransportError> for RangeError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::TimedOut(d) => RangeError::TimedOut(d),
            TransportError::Refused(d) => RangeError::Refused(d),
            TransportError::Failed(d) => RangeError::Failed(d),
            TransportError::Lying(d) => RangeError::Lying(d),
        }
    }
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

impl RangeBody for Body {
    async fn next(&mut self) -> Result<Option<bytes::Bytes>, RangeError> {
        match self {
            Body::Http(response) => response
                .chunk()
                .await
                .map_err(|e| TransportError::from_reqwest(e).into()),
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
                .map_err(|e| RangeError::Failed(e.to_string()))?
                .map_err(|e| RangeError::Failed(format!("reading the folder copy: {e}")))?;
                *offset += len as u64;
                Ok(Some(read.into()))
            }
        }
    }
}

impl RangeSource for MirrorRange {
    type Body = Body;

    async fn open(&self, start: u64, end: u64) -> Result<Body, RangeError> {
        open_range(&self.source, &self.relative, self.size, start, end).await
    }
}

/// Asks `source` for bytes `start..end` of the bundle at `relative` (`size` bytes).
async fn open_range(
    source: &Source,
    relative: &str,
    size: u64,
    start: u64,
    end: u64,
) -> Result<Body, RangeError> {
    match source {
        source @ (Source::Http { .. } | Source::Bucket { .. }) => {
            let (client, url) = match source {
                Source::Http { client, base, .. } => (client, base.join(relative)),
                Source::Bucket { client, bucket, .. } => (
                    client,
                    super::transport::signed_url(bucket, relative).await?,
                ),
                Source::Dir { .. } => unreachable!("matched above"),
            };
            let request = client
                .get(&url)
                .header(RANGE, format!("bytes={start}-{}", end - 1));
            let response = super::transport::send(request).await?;
            let expected = format!("bytes {start}-{}/{size}", end - 1);
            let range_ok = response.status() == StatusCode::PARTIAL_CONTENT
                && response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    == Some(expected.as_str());
            if response.status() == StatusCode::OK {
                return Err(RangeError::NoRanges(format!(
                    "does not answer byte ranges (asked {expected}, got the whole file)"
                )));
            }
            if !range_ok {
                return Err(RangeError::Failed(format!(
                    "did not answer {expected} (HTTP {})",
                    response.status()
                )));
            }
            if response.content_length().is_some_and(|n| n != end - start) {
                return Err(RangeError::Lying(format!(
                    "announced a body that is not bytes {start}..{end}"
                )));
            }
            Ok(Body::Http(response))
        }
        Source::Dir { root, .. } => {
            let path = on_disk(root, relative);
            let file = tokio::task::spawn_blocking(move || open_regular(&path))
                .await
                .map_err(|e| RangeError::Failed(e.to_string()))?
                .map_err(super::transport::missing)?;
            let len = file
                .metadata()
                .map_err(|e| RangeError::Failed(e.to_string()))?
                .len();
            if len != size {
                return Err(RangeError::Lying(format!(
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
