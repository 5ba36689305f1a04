//! Downloading the bundles (and their `.minisig` files) an index lists, with failover and resume.
//!
//! Owns the path from an upstream's bytes to the store: a bounded number of downloads at a time
//! (a semaphore shared by all publishers), upstreams tried in order (the one whose index listed
//! the bundle first), and for every attempt the same checks whichever upstream answers: the
//! declared size is a hard cap while streaming, then size and sha256, then the store verifies
//! the bundle against the publisher's key (and that it holds the article the index lists it
//! as), flushes and links it into place. Bundles up to [`RESUMABLE_FROM`] are received whole
//! in memory; larger ones, and small ones whose transfer was cut, stream into
//! `<store>/.tmp/sync-<sha256>.part`, a name derived from the expected hash, so that a retry, a
//! restart or the next upstream continues with `Range: bytes=N-` where the upstream answers
//! 206, and starts over where it does not. A bundle whose entry names a chunk list is first
//! tried segmented, from every upstream at once (`sync::segmented`), and comes whole only when
//! that cannot finish. It never installs bytes that failed a check, and never deletes a partial
//! file for a network failure (only for a check failure).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::AsyncWriteExt as _;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::content_id::ContentId;
use crate::index::layout::PublisherLayout;
use crate::index::{self, FetchError, ObjectRef};
use crate::keys::PublicKey;
use crate::limits::BundleLimits;
use crate::store::{Listing, Store, StoreError, MAX_MINISIG_BYTES};
use crate::sync::error::{NetworkKind, SyncError};
use crate::sync::report::{Round, Wire};
use crate::sync::segmented::{chunked_path, Segmented};
use crate::sync::upstream::Upstream;
use crate::sync::{blocking, cancellable};

/// Bundles larger than this are downloaded resumably through a `.part` file; smaller ones are
/// received in memory (restarting costs at most this much). 1 MiB: text articles with a photo
/// or two fit, so the common case costs one file write; a few-MB photo essay can resume.
pub const RESUMABLE_FROM: u64 = 1 << 20;

/// Most times one bundle's transfer is resumed from one upstream after a cut, each resume
/// having added bytes: 64, plus one for every 16 KiB of the bundle, so a censor that resets
/// every connection after 16 KiB still lets any bundle through, while an upstream that cuts
/// without progress is left at once and one that drips a few bytes a connection soon after.
fn max_resumes(size: u64) -> u64 {
    64 + size / (16 << 10)
}

/// How one attempt ended, when it did not fail.
enum Attempt {
    /// `with_minisig`: the signature file was asked for in the same attempt.
    Installed {
        with_minisig: bool,
    },
    NotFound,
}

/// How fetching a bundle ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BundleResult {
    Installed,
    /// No upstream served bytes that passed the checks (each refusal was reported on its
    /// upstream). `first_missing`: the first upstream asked answered 404.
    Failed {
        first_missing: bool,
    },
}

/// Downloads for one publisher during one round.
pub(crate) struct Fetcher {
    pub store: Arc<Store>,
    pub publisher: PublicKey,
    pub layout: PublisherLayout,
    pub bundle_limits: BundleLimits,
    pub downloads: Arc<Semaphore>,
    pub round: Arc<Round>,
    pub cancel: CancellationToken,
    /// What the index lists each bundle as.
    pub listings: Arc<HashMap<ContentId, Listing>>,
    /// The chunk list each large bundle's entry names (docs/PROTOCOL.md §13).
    pub chunk_lists: Arc<HashMap<ContentId, ObjectRef>>,
}

impl Fetcher {
    /// Fetches and installs one bundle (and then its `.minisig`), trying `order` in turn.
    pub async fn bundle(&self, object: ObjectRef, order: &[Arc<Upstream>]) -> BundleResult {
        let mut first_missing = false;
        let failed = |first_missing| BundleResult::Failed { first_missing };
        let Ok(_permit) = self.downloads.acquire().await else {
            return failed(false);
        };
        // A large bundle with a chunk list comes in checked chunks from every upstream at
        // once; without one (small, published before lists, or no upstream serves ranges or
        // a valid list), whole from one upstream at a time.
        let whole_order;
        let mut order = order;
        let chunked = self
            .chunk_lists
            .get(&object.sha256)
            .filter(|_| crate::index::chunks::is_chunked(object.size));
        if let Some(&chunks) = chunked {
            match self.segmented(object, chunks, order).await {
                Segmented::Installed { url } => {
                    self.round.bundle_installed(&url);
                    self.minisig(object.sha256, order).await;
                    return BundleResult::Installed;
                }
                Segmented::Failed => return failed(false),
                Segmented::Whole(honest) => {
                    whole_order = honest;
                    order = &whole_order;
                }
            }
        }
        let part = partial_path(&self.store, &object.sha256);
        for (i, upstream) in order.iter().enumerate() {
            // Censoring networks reset long connections: a transfer cut half way continues
            // from the same upstream through the `.part` file (a small bundle received in
            // memory switches to it), for as long as each attempt adds bytes.
            let mut through_part = object.size > RESUMABLE_FROM;
            let mut resumes = 0;
            loop {
                if self.cancel.is_cancelled() {
                    return failed(first_missing);
                }
                let before = if through_part {
                    part_len(&part).await
                } else {
                    0
                };
                let result = if through_part {
                    cancellable(&self.cancel, self.try_part(upstream, object, &part)).await
                } else {
                    cancellable(&self.cancel, self.try_whole(upstream, object)).await
                };
                match result {
                    Ok(Attempt::Installed { with_minisig }) => {
                        self.round.bundle_installed(upstream.url());
                        if chunked.is_some() {
                            // Verified chunks of an unfinished segmented attempt: not needed.
                            let _ =
                                tokio::fs::remove_file(chunked_path(&self.store, &object.sha256))
                                    .await;
                        }
                        if !with_minisig {
                            self.minisig(object.sha256, std::slice::from_ref(upstream))
                                .await;
                        }
                        return BundleResult::Installed;
                    }
                    Ok(Attempt::NotFound) => {
                        first_missing |= i == 0;
                        break;
                    }
                    Err(e) => {
                        let cut = matches!(
                            e,
                            SyncError::Network {
                                kind: NetworkKind::Broken,
                                ..
                            }
                        );
                        let progressed = !through_part || part_len(&part).await > before;
                        if cut && progressed && resumes < max_resumes(object.size) {
                            tracing::info!(
                                upstream = %upstream.url(),
                                bundle = %object.sha256,
                                "transfer cut, resuming: {}",
                                crate::sync::report::error_chain(&e)
                            );
                            through_part = true;
                            resumes += 1;
                            continue;
                        }
                        self.round.fail(e);
                        break;
                    }
                }
            }
        }
        failed(first_missing)
    }

    /// One attempt at a small bundle: bundle and signature received whole in memory, in
    /// parallel (latency), then checked and installed by the store in one blocking call. Only
    /// the size cap applies while receiving; the store checks size and sha256 before anything
    /// parses the bundle.
    async fn try_whole(
        &self,
        upstream: &Upstream,
        object: ObjectRef,
    ) -> Result<Attempt, SyncError> {
        let id = object.sha256;
        let url = upstream.url().to_owned();
        let relative = self.layout.bundle(&id);
        let too_large = || SyncError::Object {
            url: url.clone(),
            what: "bundle",
            sha256: id,
            source: Box::new(FetchError::TooLarge { limit: object.size }),
        };
        let minisig_path = self.layout.minisig(&id);
        let (bytes, minisig) = tokio::join!(
            upstream.capped_bytes(&relative, object.size, too_large),
            upstream.capped_bytes(&minisig_path, MAX_MINISIG_BYTES, || {
                minisig_too_large(&url, id)
            }),
        );
        let Some(bytes) = bytes? else {
            return Ok(Attempt::NotFound);
        };
        self.round.received(&url, Wire::Bundle, bytes.len() as u64);
        let minisig = match minisig {
            Ok(m) => m,
            Err(e) => {
                self.round.fail(e);
                None
            }
        };
        if let Some(m) = &minisig {
            self.round.received(&url, Wire::Minisig, m.len() as u64);
        }
        let (store, publisher, limits) = (
            self.store.clone(),
            self.publisher.clone(),
            self.bundle_limits.clone(),
        );
        let listed = self.listings.get(&id).cloned();
        let signature = blocking(move || {
            store
                .install_bundle_bytes(
                    &publisher,
                    object,
                    &bytes,
                    minisig.as_deref(),
                    &limits,
                    listed.as_ref(),
                )
                .map(|(_, signature)| signature)
                .map_err(|e| SyncError::from_store(&url, id, e))
        })
        .await?;
        if let Some(Err(e)) = signature {
            self.round
                .fail(SyncError::from_store(upstream.url(), id, e));
        }
        Ok(Attempt::Installed { with_minisig: true })
    }

    /// One attempt at a bundle through its `.part` file: continue the download, then check
    /// and install the whole file.
    async fn try_part(
        &self,
        upstream: &Upstream,
        object: ObjectRef,
        part: &Path,
    ) -> Result<Attempt, SyncError> {
        let id = object.sha256;
        let url = upstream.url().to_owned();
        let relative = self.layout.bundle(&id);
        if !self.receive_part(upstream, &relative, object, part).await? {
            return Ok(Attempt::NotFound);
        }
        self.install_part(&url, object, part).await?;
        Ok(Attempt::Installed {
            with_minisig: false,
        })
    }

    /// Checks the complete download in `part` (size and sha256, then the store verifies the
    /// bundle and its listing) and installs it. `part` is removed once installed, and when its
    /// bytes are wrong (they are never resumed); kept for a local failure.
    pub(super) async fn install_part(
        &self,
        url: &str,
        object: ObjectRef,
        part: &Path,
    ) -> Result<(), SyncError> {
        let id = object.sha256;
        let url = url.to_owned();
        let (store, publisher, limits) = (
            self.store.clone(),
            self.publisher.clone(),
            self.bundle_limits.clone(),
        );
        let listed = self.listings.get(&id).cloned();
        let part = part.to_owned();
        blocking(move || {
            let check = |e: FetchError| {
                // Wrong bytes (from this upstream, or a partial prefix from another one) are
                // never resumed: start over next time.
                let _ = std::fs::remove_file(&part);
                SyncError::from_store(&url, id, StoreError::Object(e))
            };
            let file = std::fs::File::open(&part).map_err(|source| {
                SyncError::store(StoreError::Io {
                    path: part.clone(),
                    source,
                })
            })?;
            let verified = index::receive_file(file, store.tmp_dir(), object).map_err(check)?;
            let result = store
                .install_bundle(&publisher, verified, &limits, listed.as_ref())
                .map_err(|e| SyncError::from_store(&url, id, e));
            if !matches!(result, Err(SyncError::Store(_))) {
                let _ = std::fs::remove_file(&part);
            }
            result.map(|_| ())
        })
        .await
    }

    /// Streams the object into `part`, resuming after what is already there. `false` on 404.
    /// On success `part` holds exactly `object.size` bytes (not yet hash-checked).
    async fn receive_part(
        &self,
        upstream: &Upstream,
        relative: &str,
        object: ObjectRef,
        part: &Path,
    ) -> Result<bool, SyncError> {
        let url = upstream.url().to_owned();
        let local = |source: std::io::Error| {
            SyncError::store(StoreError::Io {
                path: part.to_owned(),
                source,
            })
        };
        let mut have = match tokio::fs::metadata(part).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(local(e)),
        };
        if have > object.size {
            tokio::fs::remove_file(part).await.map_err(local)?;
            have = 0;
        }
        if have == object.size {
            return Ok(true);
        }
        if have > 0 {
            tracing::debug!(upstream = %url, bundle = %object.sha256, have, "resuming");
        }
        let remaining = object.size - have;
        upstream
            .timed(relative, remaining, async {
                let Some(mut body) = upstream.open(relative, "bundle", object, have).await? else {
                    return Ok(false);
                };
                let mut file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(body.start > 0)
                    .truncate(body.start == 0)
                    .write(true)
                    .open(part)
                    .await
                    .map_err(local)?;
                let mut written = body.start;
                let result = loop {
                    match body.chunk(upstream, relative).await {
                        Ok(Some(chunk)) => {
                            if written + chunk.len() as u64 > object.size {
                                drop(file);
                                let _ = tokio::fs::remove_file(part).await;
                                return Err(SyncError::Object {
                                    url: url.clone(),
                                    what: "bundle",
                                    sha256: object.sha256,
                                    source: Box::new(FetchError::TooLarge { limit: object.size }),
                                });
                            }
                            file.write_all(&chunk).await.map_err(local)?;
                            written += chunk.len() as u64;
                        }
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                };
                file.flush().await.map_err(local)?;
                self.round
                    .received(&url, Wire::Bundle, written - body.start);
                result?;
                if written < object.size {
                    return Err(SyncError::Network {
                        url: url.clone(),
                        path: relative.to_owned(),
                        kind: NetworkKind::Broken,
                        reason: format!("the body ended after {written} of {} bytes", object.size),
                    });
                }
                Ok(true)
            })
            .await
    }

    /// Fetches a bundle's `.minisig` from the first upstream in `order` that has one and
    /// installs it (the store checks it against the bundle and the key). Best effort: the
    /// signed index does not list signature files, so a missing one is not an error.
    pub async fn minisig(&self, bundle: ContentId, order: &[Arc<Upstream>]) {
        let relative = self.layout.minisig(&bundle);
        for upstream in order {
            let url = upstream.url().to_owned();
            let fetched = cancellable(
                &self.cancel,
                upstream.capped_bytes(&relative, MAX_MINISIG_BYTES, || {
                    minisig_too_large(&url, bundle)
                }),
            )
            .await;
            let bytes = match fetched {
                Ok(Some(bytes)) => bytes,
                Ok(None) => continue,
                Err(e) => {
                    self.round.fail(e);
                    continue;
                }
            };
            self.round.received(&url, Wire::Minisig, bytes.len() as u64);
            let store = self.store.clone();
            let publisher = self.publisher.clone();
            let installed = blocking(move || {
                store
                    .install_minisig(&publisher, bundle, &bytes)
                    .map_err(|e| SyncError::from_store(&url, bundle, e))
            })
            .await;
            match installed {
                Ok(_) => return,
                Err(e) => self.round.fail(e),
            }
        }
    }
}

fn minisig_too_large(url: &str, bundle: ContentId) -> SyncError {
    SyncError::Minisig {
        url: url.to_owned(),
        sha256: bundle,
        reason: format!("larger than {MAX_MINISIG_BYTES} bytes"),
    }
}

/// How much of a resumable download is on disk (0 when none).
async fn part_len(part: &Path) -> u64 {
    tokio::fs::metadata(part).await.map_or(0, |m| m.len())
}

/// Where a resumable download of `bundle` is kept until it completes: in the store's temp
/// folder (never served), named after the expected sha256 so a restart finds it.
pub fn partial_path(store: &Store, bundle: &ContentId) -> PathBuf {
    store.tmp_dir().join(format!("sync-{bundle}.part"))
}
