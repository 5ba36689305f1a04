//! PUT of layout objects by publishers: size-capped, hash-checked, verified, then stored.
//!
//! Owns the push protocol: the publisher in the URL must be trusted (403 before a byte of the
//! body is read), `Content-Length` is required and capped (411, 413), the body streams into a
//! temp file while it is hashed and must match the sha256 in the URL, and then the object is
//! verified before anything becomes visible: a bundle as `qasid verify` does, a piece on its
//! own by the index module before it is staged (junk is refused at once, 422; a piece no signed
//! head names is refused before its body is read when the store's staging bounds are reached,
//! 429 for the publisher's share and 507 for the whole, see `StagingLimits`), `index.json`
//! with every piece it lists by the store's index checks, a `.minisig` as minisign does. A
//! success answers with a receipt naming the sha256 and size of the object held (the client
//! counts a delivery only on it); every refusal is a JSON `{"error", "reason"}` with a 4xx
//! status; server-side failures are a bare 500 whose details go to the log only
//! (docs/PROTOCOL.md section 10). It never writes into the store itself.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;

use super::metrics::PushOutcome;
use super::route::ObjectPath;
use super::MirrorState;
use crate::content_id::ContentId;
use crate::index::{
    self, layout::PublisherLayout, FetchError, IndexError, ObjectRef, VerifiedObject,
};
use crate::keys::PublicKey;
use crate::limits::IndexLimits;
use crate::note::NoteError;
use crate::roots::RootError;
use crate::store::{
    Installed, MissingObject, ObjectKind, PieceOrigin, Refusal, StagingFull, StoreError,
    MAX_MINISIG_BYTES,
};
use crate::ErrorClass;

/// A refusal or failure, as sent to the client.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    error: &'static str,
    reason: String,
    /// Layout paths of objects the client should push first (409 "missing objects").
    missing: Vec<String>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, error: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            error,
            reason: reason.into(),
            missing: Vec::new(),
        }
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
            "the mirror could not complete the request; see its log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.error, "reason": self.reason });
        if !self.missing.is_empty() {
            body["missing"] = serde_json::json!(self.missing);
        }
        let mut bytes = serde_json::to_vec(&body).expect("serialising strings cannot fail");
        bytes.push(b'\n');
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response()
    }
}

/// Handles a PUT to an object path.
pub(super) async fn put(
    state: Arc<MirrorState>,
    path: ObjectPath,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let kind = path.kind.label();
    let publisher = path.publisher;
    let result = match state.trusted(&path.publisher) {
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "untrusted publisher",
            format!(
                "this mirror does not carry publisher {}",
                path.publisher.key_id()
            ),
        )),
        Some(key) => put_trusted(&state, key, path, headers, body).await,
    };
    match result {
        Ok((installed, object)) => {
            let (status, outcome, word) = match installed {
                Installed::New => (StatusCode::CREATED, PushOutcome::Accepted, "stored"),
                Installed::AlreadyPresent => (StatusCode::OK, PushOutcome::Present, "present"),
            };
            state.metrics.push(kind, outcome);
            // The receipt: a client counts the object as delivered only if it names exactly
            // what it sent (docs/PROTOCOL.md, "Pushing").
            let receipt = serde_json::json!({
                "status": word,
                "sha256": object.sha256.to_string(),
                "size": object.size,
            });
            let mut bytes = serde_json::to_vec(&receipt).expect("serialising a string cannot fail");
            bytes.push(b'\n');
            (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
        }
        Err(e) => {
            if e.status.is_client_error() || e.status == StatusCode::INSUFFICIENT_STORAGE {
                state.metrics.push(kind, PushOutcome::Refused);
                super::log::refused_push(kind, &publisher, e.status, &e.reason);
                let refusal = Refusal::now(
                    "push",
                    kind,
                    Some(publisher.key_id().to_string()),
                    None,
                    &format!("{} ({}): {}", e.error, e.status.as_u16(), e.reason),
                );
                let store = state.store.clone();
                let _ = tokio::task::spawn_blocking(move || store.record_refusal(refusal)).await;
            }
            e.into_response()
        }
    }
}

/// Receives, verifies and installs one object; returns what happened and the object (sha256
/// and size of the bytes accepted).
async fn put_trusted(
    state: &Arc<MirrorState>,
    key: PublicKey,
    path: ObjectPath,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Installed, ObjectRef), ApiError> {
    let index_limits = state.store_index_limits();
    let cap = match path.kind {
        ObjectKind::PublisherPub => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
                "publisher.pub is written by the mirror from the key it trusts",
            ))
        }
        ObjectKind::Bundle(_) => state.trust().max_push_bytes,
        ObjectKind::Piece(_) => state
            .trust()
            .max_push_bytes
            .min(index_limits.max_piece_bytes),
        ObjectKind::Minisig(_) => MAX_MINISIG_BYTES,
        ObjectKind::Chunks(_) => crate::limits::MAX_CHUNK_LIST_BYTES,
        ObjectKind::Index => index_limits.max_head_bytes,
        ObjectKind::Root(_) => crate::limits::MAX_ROOT_BYTES,
        ObjectKind::Note => crate::limits::MAX_NOTE_TEXT_BYTES,
    };
    let length = content_length(headers, cap)?;
    let store = state.store.clone();
    let bundle_limits = state.bundle_limits.clone();
    let layout = PublisherLayout::new(&key);
    let result = match path.kind {
        ObjectKind::Bundle(id) | ObjectKind::Piece(id) => {
            let expected = ObjectRef {
                sha256: id,
                size: length,
            };
            let pid = path.publisher;
            if store.contains(&pid, &path.kind) {
                // Named by its sha256 and verified when it was stored: exactly this object.
                return Ok((Installed::AlreadyPresent, expected));
            }
            if matches!(path.kind, ObjectKind::Piece(_)) {
                // Refused before its body is read when the staging bounds are reached.
                let (store, key) = (store.clone(), key.clone());
                blocking(move || store.admit_piece(&key, id, length))
                    .await
                    .map_err(|e| refusal(state, &layout, e))?;
            }
            let object = receive_file(state, expected, body)
                .await
                .map_err(|e| refusal(state, &layout, e))?;
            let is_bundle = matches!(path.kind, ObjectKind::Bundle(_));
            let index_limits = index_limits.clone();
            blocking(move || {
                if is_bundle {
                    store
                        .install_bundle(&key, object, &bundle_limits, None)
                        .map(|(installed, _)| installed)
                } else {
                    check_piece(&key, &object, &index_limits)?;
                    store.stage_piece(&key, object, PieceOrigin::Push)
                }
            })
            .await
            .map(|installed| (installed, expected))
        }
        ObjectKind::Minisig(bundle) => {
            let bytes = receive_bytes(state, length, body).await?;
            let object = object_of(&bytes);
            blocking(move || store.install_minisig(&key, bundle, &bytes))
                .await
                .map(|installed| (installed, object))
        }
        ObjectKind::Chunks(id) => {
            let expected = ObjectRef {
                sha256: id,
                size: length,
            };
            if store.contains(&path.publisher, &path.kind) {
                return Ok((Installed::AlreadyPresent, expected));
            }
            let bytes = receive_bytes(state, length, body).await?;
            blocking(move || {
                crate::index::check_bytes(&bytes, expected).map_err(StoreError::Object)?;
                store.install_chunk_list(&key, &bytes)
            })
            .await
            .map(|installed| (installed, expected))
        }
        ObjectKind::Index => {
            let bytes = receive_bytes(state, length, body).await?;
            let object = object_of(&bytes);
            let bytes = Arc::new(bytes);
            // A front end over a bucket answers HEAD from the bucket, so a pusher skips what the
            // bucket holds; its work folder may lack those objects: they are copied from the
            // bucket (verified) and the install tried again, pieces first, then bundles.
            let mut rounds = 0;
            loop {
                let (store, k, bytes, limits) = (
                    store.clone(),
                    key.clone(),
                    bytes.clone(),
                    bundle_limits.clone(),
                );
                let result = blocking(move || store.install_index(&k, &bytes, &limits)).await;
                match (result, state.bucket.as_ref()) {
                    (Err(StoreError::MissingObjects(missing)), Some(bucket)) if rounds < 3 => {
                        rounds += 1;
                        for m in missing {
                            copy_from_bucket(state, bucket, &key, m).await?;
                        }
                    }
                    (result, _) => break result.map(|installed| (installed, object)),
                }
            }
        }
        ObjectKind::Root(version) => {
            let bytes = receive_bytes(state, length, body).await?;
            let object = object_of(&bytes);
            blocking(move || store.install_root(&key, version, &bytes))
                .await
                .map(|installed| (installed, object))
        }
        ObjectKind::Note => {
            let bytes = receive_bytes(state, length, body).await?;
            let object = object_of(&bytes);
            blocking(move || store.install_note(&key, &bytes, std::time::SystemTime::now()))
                .await
                .map(|installed| (installed, object))
        }
        ObjectKind::PublisherPub => unreachable!("refused above"),
    };
    result.map_err(|e| refusal(state, &layout, e))
}

/// sha256 and size of a body held in memory.
fn object_of(bytes: &[u8]) -> ObjectRef {
    ObjectRef {
        sha256: ContentId::of_bytes(bytes),
        size: bytes.len() as u64,
    }
}

/// Refuses a pushed piece that is not a well-formed piece of this publisher's (format,
/// publisher, entries, canonical bytes), so junk never reaches the staging folder. Pieces are
/// unsigned: a valid one still waits there until a verified index lists it.
fn check_piece(
    key: &PublicKey,
    object: &VerifiedObject,
    limits: &IndexLimits,
) -> Result<(), StoreError> {
    // The size was capped at `max_piece_bytes` before the body was read.
    let bytes = std::fs::read(object.path()).map_err(|source| StoreError::Io {
        path: object.path().to_owned(),
        source,
    })?;
    index::validate_piece(&bytes, key, limits)
        .map(|_| ())
        .map_err(StoreError::Index)
}

/// `Content-Length`, required and at most `cap`.
fn content_length(headers: &HeaderMap, cap: u64) -> Result<u64, ApiError> {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::LENGTH_REQUIRED,
                "length required",
                "send the object with a Content-Length header",
            )
        })?;
    if length > cap {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too large",
            format!("{length} bytes is more than this mirror accepts for this object ({cap})"),
        ));
    }
    Ok(length)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Io {
            path: "<blocking task>".into(),
            source: std::io::Error::other(e),
        })
    })
}

/// Streams the body into a temp file, hashing it, through a bounded channel to a blocking
/// writer (so a slow disk slows the client instead of filling memory).
async fn receive_file(
    state: &Arc<MirrorState>,
    expected: ObjectRef,
    mut body: Body,
) -> Result<VerifiedObject, Received> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let store = state.store.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut receiver = store.receiver(expected)?;
        while let Some(chunk) = rx.blocking_recv() {
            receiver.accept(&chunk).map_err(StoreError::Object)?;
        }
        receiver.finish().map_err(StoreError::Object)
    });
    let mut body_error = None;
    let mut pace = Pace::new(state);
    loop {
        match pace.next(&mut body).await {
            Ok(Some(data)) => {
                state.metrics.bytes_received(data.len() as u64);
                if tx.send(data).await.is_err() {
                    // The writer stopped (hash, size or disk error): its result says why.
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                body_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await.map_err(|e| {
        tracing::error!("push writer task failed: {e}");
        Received::Api(ApiError::internal())
    })?;
    if let Some(e) = body_error {
        return Err(Received::Api(e));
    }
    written.map_err(Received::Store)
}

/// Reads a push body no slower than the mirror's minimum rate: once the grace period
/// (`header_timeout`, counted from the start of the body) has passed, the bytes received must
/// keep up with `min_body_rate` on average. A client that trickles a byte every few seconds to
/// hold its connection is answered 408 and cut off, however long its `Content-Length`.
struct Pace {
    start: tokio::time::Instant,
    grace: std::time::Duration,
    min_rate: u64,
    received: u64,
}

impl Pace {
    fn new(state: &MirrorState) -> Self {
        Self {
            start: tokio::time::Instant::now(),
            grace: state.conn.limits().header_timeout,
            min_rate: state.trust().min_body_rate.max(1),
            received: 0,
        }
    }

    /// The latest time the next byte may arrive: when the average falls under the minimum.
    fn deadline(&self) -> tokio::time::Instant {
        let earned =
            std::time::Duration::from_secs_f64(self.received as f64 / self.min_rate as f64);
        self.start + self.grace + earned
    }

    /// The next chunk of data, `None` at the end of the body.
    async fn next(&mut self, body: &mut Body) -> Result<Option<Bytes>, ApiError> {
        loop {
            let frame = match tokio::time::timeout_at(self.deadline(), body.frame()).await {
                Err(_) => {
                    tracing::info!("push refused: body slower than {} bytes/s", self.min_rate);
                    return Err(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "too slow",
                        format!(
                            "the request body arrived slower than this mirror's minimum of {} \
                             bytes per second",
                            self.min_rate
                        ),
                    ));
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => {
                    tracing::debug!("push body ended early: {e}");
                    return Err(incomplete());
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                self.received += data.len() as u64;
                return Ok(Some(data));
            }
        }
    }
}

/// Why receiving a body failed: the transfer itself, or the store's checks of the bytes.
enum Received {
    Api(ApiError),
    Store(StoreError),
}

fn incomplete() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "incomplete body",
        "the request body did not match its Content-Length",
    )
}

/// Reads a small body (index, minisig) whose length was already capped, at the minimum rate.
async fn receive_bytes(
    state: &Arc<MirrorState>,
    length: u64,
    mut body: Body,
) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::with_capacity(length as usize);
    let mut pace = Pace::new(state);
    while let Some(data) = pace.next(&mut body).await? {
        state.metrics.bytes_received(data.len() as u64);
        if bytes.len() + data.len() > length as usize {
            return Err(incomplete());
        }
        bytes.extend_from_slice(&data);
    }
    if bytes.len() as u64 != length {
        return Err(incomplete());
    }
    Ok(bytes)
}

/// Turns a store error into the client's answer, counting verification failures.
fn refusal(state: &MirrorState, layout: &PublisherLayout, e: impl Into<Received>) -> ApiError {
    let e = match e.into() {
        Received::Api(api) => return api,
        Received::Store(e) => e,
    };
    let (status, error, metric) = match &e {
        StoreError::Bucket(crate::bucket::upload::UploadError::Conflict { .. }) => {
            tracing::error!("push refused: {e}");
            state.metrics.verification_failure("equivocation");
            return ApiError::new(
                StatusCode::CONFLICT,
                "conflicting index",
                "the store's bucket holds another history signed by this publisher".to_owned(),
            );
        }
        StoreError::Io { .. } | StoreError::InUse { .. } | StoreError::Bucket(_) => {
            tracing::error!("push failed: {e}");
            return ApiError::internal();
        }
        StoreError::Object(FetchError::HashMismatch { .. }) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "hash mismatch",
            "hash_mismatch",
        ),
        StoreError::Object(FetchError::TooLarge { .. } | FetchError::Truncated { .. }) => {
            (StatusCode::BAD_REQUEST, "size mismatch", "size_mismatch")
        }
        StoreError::Object(FetchError::Read(_) | FetchError::Io { .. }) => {
            tracing::error!("push failed: {e}");
            return ApiError::internal();
        }
        StoreError::Bundle { source, .. } if source.class() == ErrorClass::Verification => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "bundle verification failed",
            "bundle",
        ),
        StoreError::Index(IndexError::Equivocation {
            publisher,
            conflict,
            ..
        }) => {
            tracing::error!("push refused: {e}");
            state.metrics.verification_failure("equivocation");
            // The evidence folder's path stays in the log.
            return ApiError::new(
                StatusCode::CONFLICT,
                "conflicting index",
                format!(
                    "publisher {publisher} signed two conflicting indexes ({conflict}); \
                     evidence was saved"
                ),
            );
        }
        StoreError::Root(RootError::Equivocation { version, .. }) => {
            tracing::error!("push refused: {e}");
            state.metrics.verification_failure("root_equivocation");
            // The evidence folder's path stays in the log.
            return ApiError::new(
                StatusCode::CONFLICT,
                "conflicting root",
                format!(
                    "two different validly signed roots with version {version}; evidence \
                     was saved"
                ),
            );
        }
        StoreError::Root(RootError::WrongVersion { .. }) => {
            (StatusCode::CONFLICT, "root out of order", "")
        }
        StoreError::Root(inner) if inner.class() == ErrorClass::Verification => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "root verification failed",
            "root",
        ),
        StoreError::Index(inner) if inner.class() == ErrorClass::Verification => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "index verification failed",
            "index",
        ),
        StoreError::Note(NoteError::Rollback { .. }) => {
            (StatusCode::CONFLICT, "older note", "note_rollback")
        }
        StoreError::Note(inner) if inner.class() == ErrorClass::Verification => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "note verification failed",
            "note",
        ),
        StoreError::Minisig { .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "signature verification failed",
            "minisig",
        ),
        StoreError::ChunkList { .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "chunk list verification failed",
            "chunk_list",
        ),
        StoreError::ListedAsOther { .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "index verification failed",
            "listed_as_other",
        ),
        StoreError::OlderIndex { .. } => (StatusCode::CONFLICT, "older index", "older_index"),
        StoreError::StaleIndex { .. } => (StatusCode::CONFLICT, "stale index", "stale_index"),
        StoreError::MissingObjects(_) => (StatusCode::CONFLICT, "missing objects", ""),
        StoreError::StagingFull(full) => {
            tracing::info!("push refused: {e}");
            let status = match full {
                StagingFull::Publisher { .. } => StatusCode::TOO_MANY_REQUESTS,
                StagingFull::Total { .. } => StatusCode::INSUFFICIENT_STORAGE,
            };
            return ApiError::new(status, "staging full", e.to_string());
        }
        StoreError::BundleMissing(id) => {
            let mut api = ApiError::new(StatusCode::CONFLICT, "missing objects", e.to_string());
            api.missing = vec![layout.bundle(id)];
            return api;
        }
        StoreError::Bundle { .. }
        | StoreError::Index(_)
        | StoreError::Root(_)
        | StoreError::Note(_) => {
            tracing::error!("push failed: {e}");
            return ApiError::internal();
        }
    };
    if !metric.is_empty() {
        state.metrics.verification_failure(metric);
    }
    tracing::info!("push refused: {e}");
    let mut api = ApiError::new(status, error, e.to_string());
    if let StoreError::MissingObjects(list) = &e {
        api.missing = list.iter().map(|m| missing_path(layout, m)).collect();
    }
    api
}

impl From<StoreError> for Received {
    fn from(e: StoreError) -> Self {
        Received::Store(e)
    }
}

/// The layout path of a missing object, as the client would PUT it.
fn missing_path(layout: &PublisherLayout, m: &MissingObject) -> String {
    match m.kind {
        ObjectKind::Piece(id) => layout.piece(&id),
        ObjectKind::Bundle(id) => layout.bundle(&id),
        ObjectKind::Minisig(id) => layout.minisig(&id),
        ObjectKind::Chunks(id) => layout.chunks(&id),
        ObjectKind::Index => layout.index(),
        ObjectKind::PublisherPub => layout.publisher_pub(),
        ObjectKind::Root(version) => layout.root(version),
        ObjectKind::Note => layout.note(),
    }
}

/// Copies an object an index lists from the front end's bucket into its work folder, verified
/// by the bucket source (sha256 against the name) and again by the store as it installs it.
/// An object the bucket lacks too is left missing (the install then says so).
async fn copy_from_bucket(
    state: &Arc<MirrorState>,
    bucket: &super::bucket_source::BucketSource,
    key: &PublicKey,
    missing: crate::store::MissingObject,
) -> Result<(), ApiError> {
    use super::bucket_source::Loaded;
    let layout = PublisherLayout::new(key);
    let loaded = match bucket.load(key, missing.kind).await {
        Ok(Loaded::Missing) => return Ok(()),
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::warn!("copying a listed object from the bucket: {e}");
            return Ok(());
        }
    };
    let (store, key) = (state.store.clone(), key.clone());
    let bundle_limits = state.bundle_limits.clone();
    let index_limits = state.store_index_limits().clone();
    let kind = missing.kind;
    let expected = missing.object;
    blocking(move || {
        if let ObjectKind::Chunks(_) = kind {
            let bytes = match loaded {
                Loaded::Whole(b) => b.to_vec(),
                _ => return Ok(Installed::AlreadyPresent),
            };
            return store.install_chunk_list(&key, &bytes);
        }
        let mut receiver = store.receiver(expected)?;
        match loaded {
            Loaded::Whole(b) => receiver.accept(&b).map_err(StoreError::Object)?,
            Loaded::Large(mut file, _) => {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = std::io::Read::read(&mut file, &mut buf).map_err(|source| {
                        StoreError::Object(crate::index::FetchError::Read(source))
                    })?;
                    if n == 0 {
                        break;
                    }
                    receiver.accept(&buf[..n]).map_err(StoreError::Object)?;
                }
            }
            Loaded::Missing => unreachable!("returned above"),
        }
        let object = receiver.finish().map_err(StoreError::Object)?;
        match kind {
            ObjectKind::Bundle(_) => store
                .install_bundle(&key, object, &bundle_limits, None)
                .map(|(installed, _)| installed),
            _ => {
                check_piece(&key, &object, &index_limits)?;
                store.stage_piece(&key, object, PieceOrigin::VerifiedIndex)
            }
        }
    })
    .await
    .map(|_| ())
    .map_err(|e| refusal(state, &layout, e))
}
