//! GET and HEAD of layout objects: conditional requests, ranges, cache headers, streaming.
//!
//! Owns the HTTP semantics of reading the store: `ETag` is the object's sha256 (its name for
//! bundles and pieces, the hash of the bytes for the others), `If-None-Match` gives 304, a
//! single `Range` gives 206 (`If-Range` honoured, unsatisfiable or malformed ranges 416),
//! content-addressed objects are `immutable` and `index.json` is cached for a minute. Small
//! files are read in one blocking call; large ones stream in 64 KiB chunks, so memory stays
//! flat whatever the size. It never builds a path from the request: it gets a parsed
//! [`ObjectPath`] and asks the store where that object lives.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::io::ReaderStream;

use super::bucket_source::{BucketReadError, BucketSource, Loaded};
use super::metrics::Metrics;
use super::route::ObjectPath;
use super::{plain_error, MirrorState};
use crate::content_id::ContentId;
use crate::store::ObjectKind;

/// Files up to this size are read into memory in one blocking call (and immutable ones kept in
/// the store's cache); larger ones stream.
const READ_WHOLE_MAX: u64 = crate::store::CACHE_MAX_OBJECT;
/// Chunk size of streamed bodies.
const STREAM_CHUNK: usize = 64 << 10;

pub(super) const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const INDEX_CACHE: &str = "public, max-age=60";
const KEY_CACHE: &str = "public, max-age=86400";

/// A byte range to send, inclusive start, exclusive end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// What the `Range` header asks for, against a file of a known length.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RangeRequest {
    /// No usable range: send everything (no header, another unit, several ranges, or an
    /// `If-Range` that does not match).
    Full,
    /// One satisfiable range.
    Partial(ByteRange),
    /// A `bytes=` range that is malformed or starts past the end.
    Unsatisfiable,
}

/// Parses a `Range` header value for a file of `len` bytes (RFC 9110 §14.1.2, one range only).
pub(super) fn parse_range(value: &str, len: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        // Multipart ranges are legal to ignore; resumable downloads never use them.
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Unsatisfiable;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let range = match (first.is_empty(), last.is_empty()) {
        // `-N`: the last N bytes.
        (true, false) => match number(last) {
            Some(0) | None => None,
            Some(n) => Some(ByteRange {
                start: len.saturating_sub(n),
                end: len,
            }),
        },
        // `A-`: from A to the end.
        (false, true) => number(first).map(|a| ByteRange { start: a, end: len }),
        // `A-B`, B inclusive.
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a <= b => Some(ByteRange {
                start: a,
                end: b.saturating_add(1).min(len),
            }),
            _ => None,
        },
        (true, true) => None,
    };
    match range {
        Some(r) if r.start < len => RangeRequest::Partial(r),
        _ => RangeRequest::Unsatisfiable,
    }
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, as RFC 9110 requires).
pub(super) fn none_match(value: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let want = bare(etag);
    value.split(',').any(|t| t.trim() == "*" || bare(t) == want)
}

/// The strong entity tag of an object with this sha256.
pub(super) fn etag_of(id: &ContentId) -> String {
    let mut quoted = [b'"'; 66];
    hex::encode_to_slice(id.as_bytes(), &mut quoted[1..65]).expect("64 hex digits fit");
    String::from_utf8(quoted.to_vec()).expect("hex and quotes are ASCII")
}

fn etag_value(etag: &str) -> HeaderValue {
    HeaderValue::from_str(etag).expect("an entity tag of hex digits is a valid header")
}

/// What a blocking open found.
enum Opened {
    Missing,
    /// The whole file (small objects, and always `index.json`, `.pub` and `.minisig`).
    Whole(Bytes),
    /// A large file, open, with its length.
    Large(File, u64),
}

fn open(path: PathBuf, read_small: bool) -> io::Result<Opened> {
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Opened::Missing),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(Opened::Missing);
    }
    let len = meta.len();
    if read_small && len <= READ_WHOLE_MAX {
        let mut bytes = Vec::with_capacity(len as usize);
        file.by_ref().take(READ_WHOLE_MAX).read_to_end(&mut bytes)?;
        Ok(Opened::Whole(Bytes::from(bytes)))
    } else {
        Ok(Opened::Large(file, len))
    }
}

/// Opens an object of the store's folder (through its cache of small immutable objects).
/// Objects named by their hash may answer 304 or HEAD without reading a byte (`read_small`
/// false); the others need their bytes to know their hash.
async fn open_folder(
    state: &MirrorState,
    path: ObjectPath,
    read_small: bool,
) -> Result<Opened, Response> {
    let cached = state.store.cached(&path.publisher, &path.kind);
    let from_cache = cached.is_some();
    let opened = match cached {
        Some(bytes) => Ok(Ok(Opened::Whole(bytes))),
        None => {
            let file_path = state.store.path(&path.publisher, &path.kind);
            tokio::task::spawn_blocking(move || open(file_path, read_small)).await
        }
    };
    match opened {
        Ok(Ok(Opened::Whole(bytes))) if !from_cache => {
            state
                .store
                .remember(&path.publisher, &path.kind, bytes.clone());
            Ok(Opened::Whole(bytes))
        }
        Ok(Ok(o)) => Ok(o),
        Ok(Err(e)) => {
            tracing::error!("reading a stored object failed: {e}");
            Err(plain_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage error",
            ))
        }
        Err(e) => {
            tracing::error!("blocking read task failed: {e}");
            Err(plain_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage error",
            ))
        }
    }
}

/// Opens an object of the front end's bucket: only verified bytes come back. An object that
/// failed verification is 502 (the bucket, this mirror's upstream, holds something wrong), an
/// unreachable bucket 503; both are logged and counted by the bucket source.
async fn open_bucket(
    state: &MirrorState,
    bucket: &BucketSource,
    path: ObjectPath,
) -> Result<Opened, Response> {
    let Some(key) = state.trusted(&path.publisher) else {
        return Ok(Opened::Missing);
    };
    match bucket.load(&key, path.kind).await {
        Ok(Loaded::Missing) => Ok(Opened::Missing),
        Ok(Loaded::Whole(bytes)) => Ok(Opened::Whole(bytes)),
        Ok(Loaded::Large(file, len)) => Ok(Opened::Large(file, len)),
        Err(BucketReadError::Corrupt { .. }) => Err(plain_error(
            StatusCode::BAD_GATEWAY,
            "the stored object failed verification",
        )),
        Err(BucketReadError::Storage(_)) => Err(plain_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage unavailable",
        )),
    }
}

/// GET or HEAD of an object of a trusted publisher.
pub(super) async fn object(
    state: Arc<MirrorState>,
    path: ObjectPath,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let (content_type, cache) = match path.kind {
        ObjectKind::Index => ("application/json", INDEX_CACHE),
        ObjectKind::PublisherPub => ("text/plain; charset=utf-8", KEY_CACHE),
        ObjectKind::Piece(_) => ("application/json", IMMUTABLE),
        ObjectKind::Bundle(_) => ("application/zip", IMMUTABLE),
        ObjectKind::Minisig(_) => ("text/plain; charset=utf-8", IMMUTABLE),
        ObjectKind::Chunks(_) => ("application/octet-stream", IMMUTABLE),
        ObjectKind::Root(_) => ("application/json", IMMUTABLE),
        // Replaced by a newer note like index.json: the same short cache.
        ObjectKind::Note => ("text/plain; charset=utf-8", INDEX_CACHE),
    };
    let named_etag = path.kind.content_id().map(|id| etag_of(&id));
    let opened = match &state.bucket {
        Some(bucket) => open_bucket(&state, bucket, path).await,
        None => open_folder(&state, path, named_etag.is_none() || method == Method::GET).await,
    };
    let opened = match opened {
        Ok(o) => o,
        Err(response) => return response,
    };
    let (whole, large, len) = match opened {
        Opened::Missing => return plain_error(StatusCode::NOT_FOUND, "not found"),
        Opened::Whole(b) => {
            let len = b.len() as u64;
            (Some(b), None, len)
        }
        Opened::Large(f, len) => (None, Some(f), len),
    };
    let etag = match (named_etag, &whole) {
        (Some(tag), _) => tag,
        (None, Some(bytes)) => etag_of(&ContentId::of_bytes(bytes)),
        // Unnamed objects are always read whole; a large one would be a foreign file.
        (None, None) => return plain_error(StatusCode::NOT_FOUND, "not found"),
    };
    let mut builder = Response::builder()
        .header(header::ETAG, etag_value(&etag))
        .header(header::CACHE_CONTROL, HeaderValue::from_static(cache))
        .header(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match(v, &etag))
    {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("static headers are valid");
    }
    builder = builder.header(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .map(|v| v.to_str().is_ok_and(|v| v.trim() == etag))
        .unwrap_or(true);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) if if_range_ok => parse_range(v, len),
        _ => RangeRequest::Full,
    };
    let (status, span) = match range {
        RangeRequest::Full => (StatusCode::OK, ByteRange { start: 0, end: len }),
        RangeRequest::Partial(r) => {
            builder = builder.header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{len}", r.start, r.end - 1),
            );
            (StatusCode::PARTIAL_CONTENT, r)
        }
        RangeRequest::Unsatisfiable => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .header(header::CONTENT_LENGTH, "0")
                .body(Body::empty())
                .expect("static headers are valid");
        }
    };
    let count = span.end - span.start;
    builder = builder
        .status(status)
        .header(header::CONTENT_LENGTH, HeaderValue::from(count));
    if method == Method::HEAD {
        return builder.body(Body::empty()).expect("valid headers");
    }
    let body = match (whole, large) {
        (Some(bytes), _) => {
            state.metrics.bytes_served(count);
            Body::from(bytes.slice(span.start as usize..span.end as usize))
        }
        (None, Some(file)) => match stream_file(file, span, state.metrics.clone()).await {
            Ok(body) => body,
            Err(e) => {
                tracing::error!("streaming a stored object failed: {e}");
                return plain_error(StatusCode::INTERNAL_SERVER_ERROR, "storage error");
            }
        },
        (None, None) => unreachable!("open returned either bytes or a file"),
    };
    builder.body(body).expect("valid headers")
}

async fn stream_file(mut file: File, span: ByteRange, metrics: Arc<Metrics>) -> io::Result<Body> {
    if span.start > 0 {
        file = tokio::task::spawn_blocking(move || {
            file.seek(SeekFrom::Start(span.start))?;
            Ok::<_, io::Error>(file)
        })
        .await
        .map_err(io::Error::other)??;
    }
    let file = tokio::fs::File::from_std(file);
    let reader = Counting {
        inner: tokio::io::AsyncReadExt::take(file, span.end - span.start),
        metrics,
    };
    Ok(Body::from_stream(ReaderStream::with_capacity(
        reader,
        STREAM_CHUNK,
    )))
}

/// Counts bytes read into the served-bytes metric as they stream out.
struct Counting<R> {
    inner: R,
    metrics: Arc<Metrics>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.metrics
            .bytes_served((buf.filled().len() - before) as u64);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeRequest::*;
        let r = |start, end| Partial(ByteRange { start, end });
        assert_eq!(parse_range("bytes=0-9", 100), r(0, 10));
        assert_eq!(parse_range("bytes=90-", 100), r(90, 100));
        assert_eq!(parse_range("bytes=-10", 100), r(90, 100));
        assert_eq!(parse_range("bytes=-1000", 100), r(0, 100));
        assert_eq!(parse_range("bytes=50-1000", 100), r(50, 100));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=9-3", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=x-3", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=+1-2", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Full);
        assert_eq!(parse_range("items=0-1", 100), Full);
    }

    #[test]
    fn etag_matching_is_weak() {
        assert!(none_match("\"abc\"", "\"abc\""));
        assert!(none_match("W/\"abc\"", "\"abc\""));
        assert!(none_match("\"x\", \"abc\"", "\"abc\""));
        assert!(none_match("*", "\"abc\""));
        assert!(!none_match("\"abd\"", "\"abc\""));
    }
}
