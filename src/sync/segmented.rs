//! Sync's side of a segmented download (docs/PROTOCOL.md §13): a bundle above the chunk-list
//! threshold whose entry names a chunk list comes in checked chunks from every upstream at
//! once, through the engine the reader uses too ([`crate::segmented`]).
//!
//! Owns fetching the chunk list (size and sha256 the signed entry gives, then it must name the
//! bundle: [`ChunkList::parse`]), an upstream as a [`RangeSource`] (each range under the
//! upstream's overall deadline for its bytes), and turning the engine's outcome into the
//! round's report: bytes delivered and wasted per upstream, a bad chunk as a verification
//! failure of its sender naming the chunk and its byte offset, a failed upstream as a network
//! failure. The verified partial file `<store>/.tmp/sync-<sha256>.chunked` is kept across
//! runs (only chunks that re-hash to the list are reused) and installed through the same
//! checks as every bundle (size, sha256, bundle verification, listing). When no upstream
//! serves a valid list or byte ranges, the caller downloads the bundle whole.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::content_id::ContentId;
use crate::index::chunks::ChunkList;
use crate::index::ObjectRef;
use crate::segmented::{Download, Ended, RangeBody, RangeError, RangeSource};
use crate::store::Store;
use crate::sync::download::Fetcher;
use crate::sync::error::{NetworkKind, SyncError};
use crate::sync::report::Wire;
use crate::sync::upstream::{Body, Upstream};

/// How a segmented attempt ended.
pub(super) enum Segmented {
    /// Verified and installed; `url` delivered the most chunks.
    Installed { url: String },
    /// Cancelled, a local failure, or the verified bytes were refused by the store: nothing
    /// else to try this round (each failure was reported).
    Failed,
    /// Not finished (no upstream serves a valid list or byte ranges, or they failed): download
    /// it whole from these upstreams (the liars left out). Verified chunks stay for next time.
    Whole(Vec<Arc<Upstream>>),
}

/// Where a segmented download of `bundle` keeps its verified chunks until it completes: in
/// the store's temp folder (never served), named after the expected sha256.
pub fn chunked_path(store: &Store, bundle: &ContentId) -> PathBuf {
    store.tmp_dir().join(format!("sync-{bundle}.chunked"))
}

impl Fetcher {
    /// Downloads `object` chunk by chunk from every upstream in `order` at once, checked
    /// against the chunk list `chunks`, and installs it.
    pub(super) async fn segmented(
        &self,
        object: ObjectRef,
        chunks: ObjectRef,
        order: &[Arc<Upstream>],
    ) -> Segmented {
        let mut liars = HashSet::new();
        let list = self.chunk_list(object, chunks, order, &mut liars).await;
        let honest = |liars: &HashSet<usize>| -> Vec<Arc<Upstream>> {
            order
                .iter()
                .enumerate()
                .filter(|(i, _)| !liars.contains(i))
                .map(|(_, u)| u.clone())
                .collect()
        };
        let Some(list) = list else {
            return Segmented::Whole(honest(&liars));
        };
        let sources: Vec<usize> = (0..order.len()).filter(|i| !liars.contains(i)).collect();
        let relative: Arc<str> = self.layout.bundle(&object.sha256).into();
        let partial = chunked_path(&self.store, &object.sha256);
        let part = crate::sync::download::partial_path(&self.store, &object.sha256);
        adopt_part(part, partial.clone(), object.size).await;
        // The engine gives a connection up after this long without bytes; each upstream's own
        // read timeout applies below it too.
        let stall = sources
            .iter()
            .map(|&i| order[i].read_timeout())
            .max()
            .unwrap_or_default();
        let outcome = Download {
            list,
            sources: sources
                .iter()
                .map(|&i| UpstreamRange {
                    upstream: order[i].clone(),
                    relative: relative.clone(),
                    size: object.size,
                })
                .collect(),
            partial: partial.clone(),
            stall,
            cancel: self.cancel.clone(),
            max_connections: crate::limits::SYNC_SEGMENTED_MAX_CONNECTIONS,
            progress: None,
        }
        .run()
        .await;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(source) => {
                self.round
                    .fail(SyncError::store(crate::store::StoreError::Io {
                        path: partial,
                        source,
                    }));
                return Segmented::Failed;
            }
        };
        for (&i, source) in sources.iter().zip(&outcome.sources) {
            let url = order[i].url();
            let bytes = source.bytes;
            if bytes.delivered + bytes.wasted > 0 {
                self.round.segmented(url, bytes.delivered, bytes.wasted);
                tracing::info!(
                    upstream = %url,
                    bundle = %object.sha256,
                    delivered = bytes.delivered,
                    wasted = bytes.wasted,
                    "segmented download"
                );
            }
            let Some(ended) = &source.ended else { continue };
            if ended.is_lying() {
                liars.insert(i);
            }
            let error = match ended {
                Ended::BadChunk {
                    index,
                    offset,
                    length,
                } => SyncError::Chunk {
                    url: url.to_owned(),
                    sha256: object.sha256,
                    source: Box::new(crate::index::chunks::ChunkError::ChunkMismatch {
                        index: *index,
                        offset: *offset,
                        length: *length,
                    }),
                },
                Ended::Failed(RangeError::Lying(reason)) => SyncError::Range {
                    url: url.to_owned(),
                    sha256: object.sha256,
                    reason: reason.clone(),
                },
                Ended::Failed(RangeError::NoRanges(reason)) => {
                    // Not an offence: the whole download asks it again if needed.
                    tracing::info!(upstream = %url, bundle = %object.sha256, "{reason}");
                    continue;
                }
                Ended::Failed(e) => SyncError::Network {
                    url: url.to_owned(),
                    path: relative.to_string(),
                    kind: match e {
                        RangeError::TimedOut(_) => NetworkKind::Timeout,
                        RangeError::Refused(_) => NetworkKind::Connect,
                        _ => NetworkKind::Broken,
                    },
                    reason: e.detail().to_owned(),
                },
            };
            self.round.fail(error);
        }
        if self.cancel.is_cancelled() {
            return Segmented::Failed;
        }
        if !outcome.finished {
            if let Some((chunk, offset)) = outcome.exhausted {
                tracing::warn!(
                    bundle = %object.sha256,
                    "chunk {chunk} (byte offset {offset}) failed from every request"
                );
            }
            return Segmented::Whole(honest(&liars));
        }
        let best = sources
            .iter()
            .zip(&outcome.sources)
            .max_by_key(|(_, s)| s.bytes.delivered)
            .map(|(&i, _)| order[i].url().to_owned())
            .unwrap_or_default();
        match self.install_part(&best, object, &partial).await {
            Ok(()) => Segmented::Installed { url: best },
            Err(e) => {
                self.round.fail(e);
                Segmented::Failed
            }
        }
    }

    /// The bundle's chunk list from the first upstream in `order` that serves a valid one;
    /// an upstream serving an invalid one is reported and added to `liars`.
    async fn chunk_list(
        &self,
        bundle: ObjectRef,
        chunks: ObjectRef,
        order: &[Arc<Upstream>],
        liars: &mut HashSet<usize>,
    ) -> Option<ChunkList> {
        let relative = self.layout.chunks(&chunks.sha256);
        for (i, upstream) in order.iter().enumerate() {
            if self.cancel.is_cancelled() {
                return None;
            }
            let fetched = upstream.object_bytes(&relative, "chunk list", chunks).await;
            let bytes = match fetched {
                Ok(Some(bytes)) => bytes,
                // An upstream without lists (older, or a static host that lost them): the
                // others may have one; it still serves ranges.
                Ok(None) => continue,
                Err(e) if e.class() == crate::ErrorClass::Verification => {
                    liars.insert(i);
                    self.round.fail(e);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(upstream = %upstream.url(), "chunk list: {e}");
                    continue;
                }
            };
            self.round
                .received(upstream.url(), Wire::ChunkList, bytes.len() as u64);
            match ChunkList::parse(&bytes, bundle) {
                Ok(list) => return Some(list),
                Err(source) => {
                    liars.insert(i);
                    self.round.fail(SyncError::Chunk {
                        url: upstream.url().to_owned(),
                        sha256: bundle.sha256,
                        source: Box::new(source),
                    });
                }
            }
        }
        None
    }
}

/// Makes the prefix a whole-file download left in `part` (an earlier run, or a fallback) the
/// start of the segmented download's file `chunked`, when there is none yet: its complete
/// chunks are kept once they re-hash to the list, like any chunk found on disk. Best effort.
async fn adopt_part(part: PathBuf, chunked: PathBuf, size: u64) {
    let adopted = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
        if chunked.exists() || !part.exists() {
            return Ok(false);
        }
        std::fs::rename(&part, &chunked)?;
        let file = std::fs::OpenOptions::new().write(true).open(&chunked)?;
        if file.metadata()?.len() <= size {
            file.set_len(size)?;
        }
        Ok(true)
    })
    .await;
    if let Ok(Err(e)) = adopted {
        tracing::debug!("keeping a partial download for the segmented one: {e}");
    }
}

/// The bundle on one upstream, as a [`RangeSource`].
struct UpstreamRange {
    upstream: Arc<Upstream>,
    relative: Arc<str>,
    size: u64,
}

impl RangeSource for UpstreamRange {
    type Body = UpstreamBody;

    async fn open(&self, start: u64, end: u64) -> Result<UpstreamBody, RangeError> {
        // The same overall deadline as any request for this many bytes: a drip feed ends.
        let deadline = tokio::time::Instant::now() + self.upstream.deadline(end - start);
        let body = self
            .upstream
            .open_range(&self.relative, self.size, start, end)
            .await?;
        Ok(UpstreamBody {
            upstream: self.upstream.clone(),
            relative: self.relative.clone(),
            body,
            deadline,
        })
    }
}

struct UpstreamBody {
    upstream: Arc<Upstream>,
    relative: Arc<str>,
    body: Body,
    deadline: tokio::time::Instant,
}

impl RangeBody for UpstreamBody {
    async fn next(&mut self) -> Result<Option<Bytes>, RangeError> {
        let next = self.body.chunk(&self.upstream, &self.relative);
        match tokio::time::timeout_at(self.deadline, next).await {
            Err(_) => Err(RangeError::TimedOut(
                "the range did not complete within its deadline".into(),
            )),
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(SyncError::Network {
                kind: NetworkKind::Timeout,
                reason,
                ..
            })) => Err(RangeError::TimedOut(reason)),
            Ok(Err(e)) => Err(RangeError::Failed(e.to_string())),
        }
    }
}
