//! One publisher's part of a round: poll every upstream's `index.json`, verify and take in the
//! newest, fetch what it needs, and install it once complete.
//!
//! Owns the order of operations. Heads are requested from all upstreams at once and handled in
//! the order they arrive, so a slow or hanging upstream never holds up one that answers. A new
//! head goes through the index module's tracker (signature, key, rollback, equivocation,
//! freshness; pieces fetched only where they cannot be rebuilt from entries already held); the
//! tracker's state is the sync's own (`.state/sync/index/`), which may run ahead of what the
//! store serves while bundles arrive. Completing an index means: stage its pieces (rebuilt
//! locally from verified entries), download the bundles the store lacks (see `download`), and
//! hand the envelope to the store, which checks it again and installs it only when every
//! object it lists is present. It never installs anything itself and never trusts an upstream
//! for more than bytes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio::task::JoinSet;

use crate::config::Keep;
use crate::content_id::ContentId;
use crate::index::layout::{self, PublisherLayout};
use crate::index::{
    encode_piece, update_from_dir, Entry, Index, IndexError, LazyTracker, ObjectRef, Offer,
    PieceRef, SignedHead,
};
use crate::keys::PublicKey;
use crate::limits::MAX_NOTE_TEXT_BYTES;
use crate::note::NoteError;
use crate::store::{
    required_bundles, Listing, ObjectKind, PieceOrigin, PublisherId, Store, StoreError,
};
use crate::sync::download::{BundleResult, Fetcher};
use crate::sync::error::SyncError;
use crate::sync::report::{error_chain, PublisherReport, Wire};
use crate::sync::state::SeenHead;
use crate::sync::upstream::{HeadFetch, Upstream};
use crate::sync::{blocking, cancellable, RoundCtx};

/// A publisher the sync carries, and its tracker (the newest verified index; its entries are
/// read only when a round needs them, so an unchanged round costs a signature check).
pub(crate) struct PublisherSync {
    pub key: PublicKey,
    /// The sync's state folder, to reopen the tracker when a new root changes the signing keys.
    pub state_dir: std::path::PathBuf,
    pub id: PublisherId,
    pub layout: PublisherLayout,
    /// A tokio `Mutex`: held for the publisher's whole round, across downloads; rounds never
    /// overlap, so it is never contended in practice.
    pub tracker: Arc<AsyncMutex<LazyTracker>>,
}

impl PublisherSync {
    pub fn new(key: PublicKey, state_dir: std::path::PathBuf, tracker: LazyTracker) -> Self {
        Self {
            state_dir,
            id: PublisherId::of(&key),
            layout: PublisherLayout::new(&key),
            key,
            tracker: Arc::new(AsyncMutex::new(tracker)),
        }
    }
}

type Guard = OwnedMutexGuard<LazyTracker>;

/// Runs `f` on the tracker in a blocking thread (verification is CPU work, the tracker's state
/// is files) and hands the guard back.
async fn on_tracker<T: Send + 'static>(
    guard: Guard,
    f: impl FnOnce(&mut LazyTracker) -> Result<T, SyncError> + Send + 'static,
) -> Result<(Guard, Result<T, SyncError>), SyncError> {
    blocking(move || {
        let mut guard = guard;
        let result = f(&mut guard);
        Ok((guard, result))
    })
    .await
}

/// What to do to serve the tracker's index.
struct Plan {
    envelope: Vec<u8>,
    bundles: Vec<ObjectRef>,
    /// Present bundles whose `.minisig` is missing.
    minisigs: Vec<ContentId>,
    /// What the index lists each bundle to fetch as (the store refuses one holding another
    /// article).
    listings: Arc<HashMap<ContentId, Listing>>,
    /// The chunk list each large bundle's entry names.
    chunk_lists: Arc<HashMap<ContentId, ObjectRef>>,
}

/// Syncs one publisher from `upstreams` (those out of backoff, configured first).
pub(crate) async fn sync_publisher(
    ctx: Arc<RoundCtx>,
    p: Arc<PublisherSync>,
    upstreams: Vec<Arc<Upstream>>,
) -> PublisherReport {
    let mut report = PublisherReport {
        publisher: p.key.id().to_string(),
        installed: None,
        newest: None,
        missing: 0,
        pruned: 0,
        errors: Vec::new(),
    };
    let mut guard = p.tracker.clone().lock_owned().await;
    // Roots first: a rotation changes which keys sign the heads about to be fetched. Asked for
    // when the store knows the publisher has roots (a push or the first root brings root 1),
    // so a one-key publisher costs no extra request per round.
    let (store, key) = (ctx.store.clone(), p.key.clone());
    let wants_roots =
        blocking(move || Ok(store.chain(&key).map_err(SyncError::store)?.version() > 0))
            .await
            .unwrap_or(false);
    if wants_roots && walk_roots(&ctx, &p, &upstreams, &mut report).await {
        let (store, key, dir, limits) = (
            ctx.store.clone(),
            p.key.clone(),
            p.state_dir.clone(),
            ctx.index_limits.clone(),
        );
        let reopened = on_tracker(guard, move |t| {
            let authority = store.authority(&key).map_err(SyncError::store)?;
            *t = LazyTracker::open(&dir, &authority, limits).map_err(SyncError::tracker)?;
            Ok(())
        })
        .await;
        let Ok((g, result)) = reopened else {
            return report;
        };
        guard = g;
        if let Err(e) = result {
            local_failure(&mut report, e);
        }
    }
    let mut heads = JoinSet::new();
    let held_seq = guard.held_head().map(sequence);
    for upstream in &upstreams {
        ctx.round.join(upstream.url());
        let etag = ctx
            .state()
            .seen(upstream.url(), &p.id)
            .filter(|seen| held_seq.is_some_and(|held| held >= seen.sequence))
            .map(|seen| seen.etag.clone());
        let (upstream, cancel, path) = (upstream.clone(), ctx.cancel.clone(), p.layout.index());
        let cap = ctx.index_limits.max_head_bytes;
        heads.spawn(async move {
            let result = cancellable(&cancel, upstream.head(&path, etag.as_deref(), cap)).await;
            (upstream, result)
        });
    }

    // An index taken in by an earlier round (or pushed to this mirror) may still need
    // completing; do that while the heads are on their way.
    let store = ctx.store.clone();
    let caught_up = on_tracker(guard, move |t| catch_up(t, &store)).await;
    let Ok((g, result)) = caught_up else {
        return report;
    };
    guard = g;
    if let Err(e) = result {
        local_failure(&mut report, e);
    }
    guard = complete(&ctx, &p, guard, None, &upstreams, &mut report).await;

    // Upstreams that served a changed head this round: their note is asked for too.
    let mut changed: Vec<Arc<Upstream>> = Vec::new();
    while let Some(joined) = heads.join_next().await {
        let (upstream, result) = match joined {
            Ok(pair) => pair,
            Err(e) => {
                if let Ok(panic) = e.try_into_panic() {
                    std::panic::resume_unwind(panic);
                }
                continue;
            }
        };
        let url = upstream.url().to_owned();
        let (bytes, etag) = match result {
            Ok(HeadFetch::Envelope { bytes, etag }) => (bytes, etag),
            Ok(HeadFetch::NotModified) => {
                ctx.round.not_modified(&url);
                continue;
            }
            Ok(HeadFetch::NotFound) => {
                tracing::debug!(upstream = %url, publisher = %p.key.id(), "not carried");
                ctx.round.not_carried(&url);
                continue;
            }
            Err(e) => {
                ctx.round.fail(e);
                continue;
            }
        };
        ctx.round.received(&url, Wire::Head, bytes.len() as u64);
        changed.push(upstream.clone());
        let handle = tokio::runtime::Handle::current();
        let (fetch_ctx, fetch_p, fetch_up) = (ctx.clone(), p.clone(), upstream.clone());
        let store = ctx.store.clone();
        let updated = on_tracker(guard, move |t| {
            adopt_served(t, &store, &bytes);
            take_in(t, &bytes, &url, SystemTime::now(), |piece| {
                handle.block_on(fetch_piece(&fetch_ctx, &fetch_p, &fetch_up, piece))
            })
        })
        .await;
        let Ok((g, result)) = updated else {
            return report;
        };
        guard = g;
        match result {
            Ok(sequence) => {
                if let Some(etag) = etag {
                    let seen = SeenHead { etag, sequence };
                    ctx.state().set_seen(upstream.url(), &p.id, seen);
                }
                guard = complete(&ctx, &p, guard, Some(&upstream), &upstreams, &mut report).await;
            }
            Err(e) if e.upstream().is_some() => ctx.round.fail(e),
            Err(e) => local_failure(&mut report, e),
        }
    }

    sync_note(&ctx, &p, &changed).await;

    let (store, keep, grace) = (ctx.store.clone(), ctx.store.keep(), ctx.prune_grace);
    let state = ctx.state.clone();
    let key = p.key.clone();
    let finished = on_tracker(guard, move |t| {
        let installed = store.installed_head(&key).map_err(SyncError::store)?;
        let newest = t.held_head().map(sequence);
        let pruned = match keep {
            Keep::Current => {
                // The held index matters only while it is not the served one.
                let served = installed.as_ref().map(SignedHead::id);
                let pending = match t.held_head() {
                    Some(held) if Some(held.id()) != served => {
                        t.loaded().map_err(SyncError::tracker)?.held()
                    }
                    _ => None,
                };
                let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                crate::sync::prune::prune(&store, &mut state, &key, pending, grace)?
            }
            Keep::All => 0,
        };
        Ok((installed.as_ref().map(sequence), newest, pruned))
    })
    .await;
    match finished {
        Ok((_, Ok((installed, newest, pruned)))) => {
            report.installed = installed;
            report.newest = newest;
            report.pruned = pruned;
        }
        Ok((_, Err(e))) | Err(e) => local_failure(&mut report, e),
    }
    report
}

/// A head's sequence number.
fn sequence(head: &SignedHead) -> u64 {
    head.head().sequence()
}

/// Fetches the mirror note (`note`, at most [`MAX_NOTE_TEXT_BYTES`], 404: none) of every
/// upstream that served a changed `index.json` this round, at once, and offers each to the
/// store, which verifies it and keeps the newest. Only those: `publish --note-out` writes a
/// new note with each new index, and an unchanged round must stay one conditional request
/// per publisher. A note that does not verify is the upstream's failure; an older or expired
/// one is only skipped (an upstream that is behind, or a publisher that stopped making notes,
/// is no liar).
async fn sync_note(ctx: &Arc<RoundCtx>, p: &Arc<PublisherSync>, upstreams: &[Arc<Upstream>]) {
    let mut fetches = JoinSet::new();
    for upstream in upstreams {
        let (upstream, cancel, path) = (upstream.clone(), ctx.cancel.clone(), p.layout.note());
        fetches.spawn(async move {
            let url = upstream.url().to_owned();
            let too_large = move || SyncError::Note {
                url: url.clone(),
                source: Box::new(StoreError::Note(crate::note::NoteError::TooLarge {
                    limit: MAX_NOTE_TEXT_BYTES as usize,
                })),
            };
            let fetched = cancellable(
                &cancel,
                upstream.capped_bytes(&path, MAX_NOTE_TEXT_BYTES, too_large),
            )
            .await;
            (upstream, fetched)
        });
    }
    while let Some(joined) = fetches.join_next().await {
        let Ok((upstream, fetched)) = joined else {
            continue;
        };
        let url = upstream.url().to_owned();
        let bytes = match fetched {
            Ok(Some(bytes)) => bytes,
            Ok(None) => continue,
            Err(e) => {
                ctx.round.fail(e);
                continue;
            }
        };
        ctx.round.received(&url, Wire::Head, bytes.len() as u64);
        let (store, key) = (ctx.store.clone(), p.key.clone());
        let installed =
            blocking(move || Ok(store.install_note(&key, &bytes, SystemTime::now()))).await;
        match installed {
            Ok(Ok(_)) => {}
            Ok(Err(StoreError::Note(e)))
                if matches!(e, NoteError::Rollback { .. } | NoteError::Expired { .. }) =>
            {
                tracing::info!(upstream = %url, publisher = %p.key.id(), "sync: note skipped: {e}");
            }
            Ok(Err(e)) if e.class() == crate::ErrorClass::Verification => {
                ctx.round.fail(SyncError::Note {
                    url,
                    source: Box::new(e),
                });
            }
            Ok(Err(e)) => tracing::error!(publisher = %p.key.id(), "sync: note: {e}"),
            Err(e) => tracing::error!(publisher = %p.key.id(), "sync: note: {e}"),
        }
    }
}

/// Fetches and installs the publisher's roots after the store's newest, from each upstream in
/// turn (at most [`crate::limits::MAX_ROOT_STEPS`] each). Says whether any root was installed.
async fn walk_roots(
    ctx: &Arc<RoundCtx>,
    p: &Arc<PublisherSync>,
    upstreams: &[Arc<Upstream>],
    report: &mut PublisherReport,
) -> bool {
    let mut installed_any = false;
    for upstream in upstreams {
        for _ in 0..crate::limits::MAX_ROOT_STEPS {
            let (store, key) = (ctx.store.clone(), p.key.clone());
            let next = match blocking(move || store.chain(&key).map_err(SyncError::store)).await {
                Ok(chain) => chain.version() + 1,
                Err(e) => {
                    local_failure(report, e);
                    return installed_any;
                }
            };
            let url = upstream.url().to_owned();
            let too_large = || SyncError::Root {
                url: url.clone(),
                source: Box::new(StoreError::Root(crate::roots::RootError::TooLarge {
                    limit: crate::limits::MAX_ROOT_BYTES,
                })),
            };
            let fetched = cancellable(
                &ctx.cancel,
                upstream.capped_bytes(
                    &p.layout.root(next),
                    crate::limits::MAX_ROOT_BYTES,
                    too_large,
                ),
            )
            .await;
            let bytes = match fetched {
                Ok(Some(bytes)) => bytes,
                Ok(None) => {
                    // Nothing newer here: its copy of the held root must be the same one.
                    held_again(ctx, p, upstream, next - 1, report).await;
                    break;
                }
                Err(e) => {
                    ctx.round.fail(e);
                    break;
                }
            };
            let (store, key) = (ctx.store.clone(), p.key.clone());
            let result = blocking(move || Ok(store.install_root(&key, next, &bytes))).await;
            match result {
                Ok(Ok(_)) => installed_any = true,
                Ok(Err(e)) => {
                    if matches!(&e, StoreError::Root(r) if r.breaks_chain()) {
                        // Asking for the held version again tells a forgery from equivocation.
                        held_again(ctx, p, upstream, next - 1, report).await;
                    }
                    local_failure(
                        report,
                        SyncError::Root {
                            url,
                            source: Box::new(e),
                        },
                    );
                    break;
                }
                Err(e) => {
                    local_failure(report, e);
                    break;
                }
            }
        }
    }
    installed_any
}

/// Asks `upstream` for the held root `held` again and offers it: a different valid root there
/// is root equivocation (the store keeps evidence; reported as refused content).
async fn held_again(
    ctx: &Arc<RoundCtx>,
    p: &Arc<PublisherSync>,
    upstream: &Arc<Upstream>,
    held: u64,
    report: &mut PublisherReport,
) {
    if held == 0 {
        return;
    }
    let url = upstream.url().to_owned();
    let too_large = || SyncError::Root {
        url: url.clone(),
        source: Box::new(StoreError::Root(crate::roots::RootError::TooLarge {
            limit: crate::limits::MAX_ROOT_BYTES,
        })),
    };
    let Ok(Some(bytes)) = cancellable(
        &ctx.cancel,
        upstream.capped_bytes(
            &p.layout.root(held),
            crate::limits::MAX_ROOT_BYTES,
            too_large,
        ),
    )
    .await
    else {
        return;
    };
    let (store, key) = (ctx.store.clone(), p.key.clone());
    if let Ok(Err(e)) = blocking(move || Ok(store.install_root(&key, held, &bytes))).await {
        local_failure(
            report,
            SyncError::Root {
                url,
                source: Box::new(e),
            },
        );
    }
}

/// Logs a local failure (store, sync state) and keeps it for the report.
fn local_failure(report: &mut PublisherReport, e: SyncError) {
    if !matches!(e, SyncError::Cancelled) {
        tracing::error!(publisher = %report.publisher, "sync: {}", error_chain(&e));
        report.errors.push(e);
    }
}

/// Makes the tracker at least as new as what the store serves (a publisher may push to this
/// mirror directly, or the sync state may be younger than the store). Compares heads only; the
/// entries are loaded only when the tracker is behind.
fn catch_up(tracker: &mut LazyTracker, store: &Store) -> Result<(), SyncError> {
    let installed = store
        .installed_head(tracker.publisher())
        .map_err(SyncError::store)?;
    let Some(installed) = installed else {
        return Ok(());
    };
    let held = tracker.held_head().map(sequence);
    if held.is_some_and(|s| s >= sequence(&installed)) {
        return Ok(());
    }
    let tracker = tracker.loaded().map_err(SyncError::tracker)?;
    match update_from_dir(tracker, store.root(), SystemTime::now()) {
        Ok(_) => Ok(()),
        Err(e) => Err(SyncError::tracker(e)),
    }
}

/// Before a head other than the held one is judged: when the store serves the held index, the
/// tracker takes its entries from the store's verified copy instead of reading and verifying
/// its own (the store needs its copy loaded to install the next index anyway).
fn adopt_served(tracker: &mut LazyTracker, store: &Store, offered: &[u8]) {
    let held = tracker.held_head().map(|h| h.envelope());
    if held.is_none() || held == Some(offered) {
        return;
    }
    if let Ok(Some(served)) = store.index(tracker.publisher()) {
        if tracker.adopt(&served) {
            tracing::debug!(publisher = %tracker.publisher().id(), "entries from the store's index");
        }
    }
}

/// Offers an upstream's envelope to the tracker and, if it is acceptable and new, fetches the
/// pieces the tracker cannot rebuild and accepts it. Returns the held sequence afterwards.
fn take_in(
    tracker: &mut LazyTracker,
    envelope: &[u8],
    url: &str,
    now: SystemTime,
    mut fetch: impl FnMut(&PieceRef) -> Result<Vec<u8>, SyncError>,
) -> Result<u64, SyncError> {
    let refused = |source: IndexError| match source {
        IndexError::Rollback { held, offered } => SyncError::OlderIndex {
            url: url.to_owned(),
            held,
            offered,
        },
        IndexError::Io { .. } | IndexError::StateCorrupt { .. } => SyncError::tracker(source),
        source => SyncError::Index {
            url: url.to_owned(),
            source: Box::new(source),
        },
    };
    let update = match tracker.offer(envelope, now).map_err(refused)? {
        Offer::Unchanged => {
            return Ok(tracker
                .held_head()
                .map(sequence)
                .expect("an unchanged offer means an index is held"))
        }
        Offer::KeptFresher { offered } => {
            return Err(SyncError::ExpiredIndex {
                url: url.to_owned(),
                offered: offered.head().sequence(),
            })
        }
        Offer::Update(mut pending) => {
            loop {
                let needed = pending.needed().map_err(refused)?;
                if needed.is_empty() {
                    break;
                }
                for piece in needed {
                    let bytes = fetch(&piece)?;
                    pending.supply(&piece, bytes).map_err(refused)?;
                }
            }
            pending.finish().map_err(refused)?
        }
    };
    let held = tracker.accept(update).map_err(SyncError::tracker)?;
    tracing::info!(
        upstream = %url,
        publisher = %held.head().publisher().id(),
        sequence = held.head().sequence(),
        "verified a new index"
    );
    Ok(held.head().sequence())
}

/// Fetches one index piece from the upstream whose head asked for it (size-capped,
/// hash-checked).
async fn fetch_piece(
    ctx: &RoundCtx,
    p: &PublisherSync,
    upstream: &Upstream,
    piece: &PieceRef,
) -> Result<Vec<u8>, SyncError> {
    let relative = p.layout.piece(&piece.sha256);
    let fetched = cancellable(
        &ctx.cancel,
        upstream.object_bytes(&relative, "index piece", piece.object()),
    )
    .await?;
    match fetched {
        Some(bytes) => {
            ctx.round
                .received(upstream.url(), Wire::Piece, bytes.len() as u64);
            Ok(bytes)
        }
        None => Err(SyncError::MissingObject {
            url: upstream.url().to_owned(),
            what: "index piece",
            sha256: piece.sha256,
        }),
    }
}

/// Brings the store up to the tracker's index if it is behind: pieces, bundles, then the index.
/// `preferred` is the upstream whose head was just taken in (tried first for every bundle, and
/// blamed for bundles nobody serves).
async fn complete(
    ctx: &Arc<RoundCtx>,
    p: &Arc<PublisherSync>,
    guard: Guard,
    preferred: Option<&Arc<Upstream>>,
    upstreams: &[Arc<Upstream>],
    report: &mut PublisherReport,
) -> Guard {
    let store = ctx.store.clone();
    let planned = on_tracker(guard, move |t| plan(t, &store)).await;
    // Only a runtime shutdown loses the guard; keep a fresh lock so callers can go on.
    let (guard, plan) = match planned {
        Ok((guard, Ok(Some(plan)))) => (guard, plan),
        Ok((guard, Ok(None))) => return guard,
        Ok((guard, Err(e))) => {
            local_failure(report, e);
            return guard;
        }
        Err(_) => return p.tracker.clone().lock_owned().await,
    };
    let mut order: Vec<Arc<Upstream>> = preferred.into_iter().cloned().collect();
    order.extend(
        upstreams
            .iter()
            .filter(|u| preferred.is_none_or(|p| !Arc::ptr_eq(p, u)))
            .cloned(),
    );
    let fetcher = Arc::new(Fetcher {
        store: ctx.store.clone(),
        publisher: p.key.clone(),
        layout: p.layout.clone(),
        bundle_limits: ctx.bundle_limits.clone(),
        downloads: ctx.downloads.clone(),
        round: ctx.round.clone(),
        cancel: ctx.cancel.clone(),
        listings: plan.listings.clone(),
        chunk_lists: plan.chunk_lists.clone(),
    });
    let (mut bundles, mut minisigs) = (plan.bundles, plan.minisigs);
    // The plan skips bundles the served index already had; should the store still find some
    // missing (deleted by hand, or `keep` changed), it says which, and a second pass gets them.
    for _pass in 0..2 {
        let missing = download(ctx, &fetcher, &order, preferred, bundles, minisigs).await;
        report.missing = missing;
        if missing > 0 || ctx.cancel.is_cancelled() {
            return guard;
        }
        let (store, key, envelope) = (ctx.store.clone(), p.key.clone(), plan.envelope.clone());
        let limits = ctx.bundle_limits.clone();
        let from = preferred.map(|u| u.url().to_owned());
        let installed = blocking(
            move || match store.install_index(&key, &envelope, &limits) {
                Ok(_) => Ok(Ok(true)),
                // Something newer was pushed meanwhile: nothing to do.
                Err(StoreError::OlderIndex { .. }) => Ok(Ok(false)),
                Err(StoreError::MissingObjects(list)) => Ok(Err(list)),
                // The index came from `from` (or was pushed, and is then local).
                Err(e @ StoreError::ListedAsOther { bundle, .. }) if from.is_some() => Err(
                    SyncError::from_store(from.as_deref().unwrap_or_default(), bundle, e),
                ),
                Err(e) => Err(SyncError::store(e)),
            },
        )
        .await;
        match installed {
            Ok(Ok(true)) => {
                tracing::info!(publisher = %p.key.id(), "installed a new index");
                return guard;
            }
            Ok(Ok(false)) => return guard,
            Ok(Err(list)) => {
                report.missing = list.len() as u64;
                bundles = list.into_iter().map(|m| m.object).collect();
                minisigs = Vec::new();
            }
            Err(e) if e.upstream().is_some() => {
                ctx.round.fail(e);
                return guard;
            }
            Err(e) => {
                local_failure(report, e);
                return guard;
            }
        }
    }
    guard
}

/// Downloads `bundles` (each with its signature) and the missing signatures of present ones.
/// Returns how many bundles no upstream served.
async fn download(
    ctx: &RoundCtx,
    fetcher: &Arc<Fetcher>,
    order: &[Arc<Upstream>],
    preferred: Option<&Arc<Upstream>>,
    bundles: Vec<ObjectRef>,
    minisigs: Vec<ContentId>,
) -> u64 {
    let order: Arc<[Arc<Upstream>]> = order.into();
    let mut tasks = JoinSet::new();
    for object in bundles {
        let (fetcher, order) = (fetcher.clone(), order.clone());
        tasks.spawn(async move { Some((object.sha256, fetcher.bundle(object, &order).await)) });
    }
    for id in minisigs {
        let (fetcher, order) = (fetcher.clone(), order.clone());
        tasks.spawn(async move {
            fetcher.minisig(id, &order).await;
            None
        });
    }
    let mut missing = 0;
    while let Some(joined) = tasks.join_next().await {
        let (id, result) = match joined {
            Ok(Some(pair)) => pair,
            Ok(None) => continue,
            Err(e) => {
                if let Ok(panic) = e.try_into_panic() {
                    std::panic::resume_unwind(panic);
                }
                continue;
            }
        };
        let BundleResult::Failed { first_missing } = result else {
            continue;
        };
        if ctx.cancel.is_cancelled() {
            continue;
        }
        missing += 1;
        if let (Some(upstream), true) = (preferred, first_missing) {
            // Its index lists the bundle, yet it answered 404 (and nobody else had it).
            ctx.round.fail(SyncError::MissingObject {
                url: upstream.url().to_owned(),
                what: "bundle",
                sha256: id,
            });
        }
    }
    missing
}

/// What serving the tracker's index takes, with its pieces already staged; `None` when the
/// store serves it (or something newer) already, which is decided from the heads alone.
/// Bundles the served index lists are not looked at (they were all present when it was
/// installed, and pruning never removes a listed one), so a round costs in proportion to what
/// is new, not to the size of the archive.
fn plan(tracker: &mut LazyTracker, store: &Store) -> Result<Option<Plan>, SyncError> {
    let Some(held_seq) = tracker.held_head().map(sequence) else {
        return Ok(None);
    };
    let publisher = &tracker.publisher().clone();
    let served = store.installed_head(publisher).map_err(SyncError::store)?;
    if served.is_some_and(|s| sequence(&s) >= held_seq) {
        return Ok(None);
    }
    let installed = store.index(publisher).map_err(SyncError::store)?;
    if installed
        .as_ref()
        .is_some_and(|i| i.head().sequence() >= held_seq)
    {
        // Installed meanwhile (a push to this mirror).
        return Ok(None);
    }
    let Some(held) = tracker.loaded().map_err(SyncError::tracker)?.held() else {
        return Ok(None);
    };
    stage_pieces(store, publisher, held)?;
    let served: HashSet<ContentId> = installed
        .map(|i| required_bundles(&i, store.keep()))
        .unwrap_or_default()
        .into_iter()
        .map(|b| b.sha256)
        .collect();
    let pid = PublisherId::of(publisher);
    let mut bundles = Vec::new();
    let mut minisigs = Vec::new();
    for object in required_bundles(held, store.keep()) {
        if served.contains(&object.sha256) {
            continue;
        }
        if !store.contains(&pid, &ObjectKind::Bundle(object.sha256)) {
            bundles.push(object);
        } else if !store.contains(&pid, &ObjectKind::Minisig(object.sha256)) {
            minisigs.push(object.sha256);
        }
    }
    let wanted: HashSet<ContentId> = bundles.iter().map(|b| b.sha256).collect();
    let listings = held
        .entries()
        .iter()
        .filter_map(|e| match e {
            Entry::Add(a) if wanted.contains(&a.bundle().sha256) => {
                Some((a.bundle().sha256, Listing::of_entry(a)))
            }
            _ => None,
        })
        .collect();
    // Every entry's list, not only the planned bundles': the store may name more missing.
    let chunk_lists = held
        .entries()
        .iter()
        .filter_map(|e| match e {
            Entry::Add(a) => Some((a.bundle().sha256, a.chunks()?)),
            Entry::Retract { .. } => None,
        })
        .collect();
    Ok(Some(Plan {
        envelope: held.signed().envelope().to_vec(),
        chunk_lists: Arc::new(chunk_lists),
        bundles,
        minisigs,
        listings: Arc::new(listings),
    }))
}

/// Stages every piece the index lists (the log's pieces and the newest batch) that the store's
/// layout lacks, rebuilt from the verified entries: the tracker fetched only what it could not
/// rebuild, and the store checks each against the head again on install.
fn stage_pieces(store: &Store, publisher: &PublicKey, index: &Index) -> Result<(), SyncError> {
    let pid = PublisherId::of(publisher);
    let log = index.head().log();
    let mut pieces = log.pieces().to_vec();
    if !pieces.contains(log.batch()) {
        pieces.push(*log.batch());
    }
    for piece in pieces {
        if store.contains(&pid, &ObjectKind::Piece(piece.sha256)) {
            continue;
        }
        let entries: &[Entry] = &index.entries()[piece.first as usize..piece.end() as usize];
        let bytes = encode_piece(publisher, piece.first, entries);
        let mut receiver = store.receiver(piece.object()).map_err(SyncError::store)?;
        let verified = receiver
            .accept(&bytes)
            .and_then(|()| receiver.finish())
            .map_err(|source| {
                SyncError::tracker(IndexError::Piece {
                    piece: piece.sha256,
                    source,
                })
            })?;
        store
            .stage_piece(publisher, verified, PieceOrigin::VerifiedIndex)
            .map_err(SyncError::store)?;
    }
    Ok(())
}

/// The folder holding a publisher's bundles in the store.
pub(crate) fn bundles_dir(store: &Store, publisher: &PublicKey) -> std::path::PathBuf {
    layout::on_disk(store.root(), &PublisherLayout::new(publisher).bundles_dir())
}
