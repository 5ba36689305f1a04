//! One upstream: a qasid mirror, any static host serving the layout (`http`/`https`), or a
//! folder (`file://`, e.g. a USB stick), with its own client, timeouts and failure history.
//!
//! Owns the transport: conditional GET of `index.json` (`If-None-Match`), size-capped GETs of
//! objects (a `Content-Length` above the cap is refused before the body is read), `Range`
//! requests to resume, per-request deadlines (connect timeout, read-idle timeout, and an overall
//! deadline that grows with the object's size so a drip-feeding upstream cannot hold a download
//! forever), and the backoff bookkeeping. Redirects are followed only on the upstream's own
//! host (see [`crate::index::redirect_policy`]): a hostile upstream must not make the mirror
//! send requests into its own network. It never decides whether bytes are authentic: every
//! body goes to a size- and hash-checking receiver, and the caller verifies.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::config::display_url;
use crate::index::layout::on_disk;
use crate::index::{open_regular, FetchError, IndexError, MemoryReceiver, ObjectRef};
use crate::segmented::RangeError;
use crate::sync::backoff::{random_fraction, Backoff};
use crate::sync::error::{NetworkKind, SyncError};

/// Slowest average transfer rate tolerated, in bytes per second. 4 KiB/s: a throttled mobile
/// link still moves more, while a host dripping one byte per read timeout is cut off.
const MIN_RATE: u64 = 4 << 10;

/// Read size for `file://` upstreams.
const FILE_CHUNK: usize = 64 << 10;

/// Per-upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time to establish a connection (TCP, proxy, TLS).
    pub connect: Duration,
    /// Longest wait for the next byte of an answer (headers or body).
    pub read: Duration,
}

/// What an upstream answered for `index.json`.
#[derive(Debug)]
pub(crate) enum HeadFetch {
    /// 304: the same bytes as the last time (by entity tag).
    NotModified,
    /// 404: this upstream does not carry the publisher.
    NotFound,
    /// The envelope (at most the head cap) and its entity tag, if the server gave one.
    Envelope {
        bytes: Vec<u8>,
        etag: Option<String>,
    },
}

enum Transport {
    Http {
        client: reqwest::Client,
        base: reqwest::Url,
    },
    Dir(PathBuf),
}

#[derive(Debug, Default)]
struct Health {
    failures: u32,
    retry_at: Option<Instant>,
}

/// An upstream and its failure history.
pub(crate) struct Upstream {
    /// The base URL as shown in logs and metrics ([`display_url`]: no user name or password).
    url: String,
    transport: Transport,
    timeouts: Timeouts,
    /// A std `Mutex`: read and written once per round, never across an `.await`.
    health: Mutex<Health>,
}

/// A response body being read: from an HTTP response or a file.
pub(crate) struct Body {
    inner: BodyInner,
    /// The object offset of the body's first byte: the requested offset after a 206, else 0.
    pub start: u64,
    /// The announced length of the body, if any (never trusted beyond refusing a larger one).
    length: Option<u64>,
}

enum BodyInner {
    Http(reqwest::Response),
    /// A file, a read buffer, and how many bytes are left to read (a range ends before EOF).
    File(tokio::fs::File, Vec<u8>, u64),
}

impl Upstream {
    /// Prepares an upstream from a base URL (`http`, `https` or `file`) and an optional proxy.
    pub fn new(
        url: &reqwest::Url,
        proxy: Option<&reqwest::Url>,
        timeouts: Timeouts,
    ) -> Result<Self, SyncError> {
        let bad = |reason: String| SyncError::BadUpstream {
            url: display_url(url),
            reason,
        };
        let mut base = url.clone();
        base.set_query(None);
        base.set_fragment(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let shown = display_url(&base);
        let transport = match base.scheme() {
            "http" | "https" => {
                let mut builder = reqwest::Client::builder()
                    .connect_timeout(timeouts.connect)
                    .read_timeout(timeouts.read)
                    .pool_idle_timeout(Duration::from_secs(60))
                    // Only redirects that stay on the upstream's own host are followed.
                    .redirect(crate::index::redirect_policy())
                    .user_agent(concat!("qasid-sync/", env!("CARGO_PKG_VERSION")));
                if let Some(proxy) = proxy {
                    let proxy =
                        reqwest::Proxy::all(proxy.as_str()).map_err(|e| bad(e.to_string()))?;
                    builder = builder.proxy(proxy);
                }
                let client = builder.build().map_err(|e| bad(e.to_string()))?;
                Transport::Http { client, base }
            }
            "file" => {
                let dir = base
                    .to_file_path()
                    .map_err(|()| bad("not a local folder".into()))?;
                Transport::Dir(dir)
            }
            other => return Err(bad(format!("unsupported scheme {other:?}"))),
        };
        Ok(Self {
            url: shown,
            transport,
            timeouts,
            health: Mutex::new(Health::default()),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the upstream is out of backoff at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.retry_at.is_none_or(|at| at <= now)
    }

    /// Records a round's result; returns the backoff delay after a failure.
    pub fn record(&self, ok: bool, backoff: &Backoff, now: Instant) -> Option<Duration> {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            *health = Health::default();
            return None;
        }
        health.failures = health.failures.saturating_add(1);
        let delay = backoff.delay(health.failures, random_fraction());
        health.retry_at = Some(now + delay);
        Some(delay)
    }

    /// The overall deadline of a request moving `bytes`.
    pub fn deadline(&self, bytes: u64) -> Duration {
        self.timeouts.connect + self.timeouts.read + Duration::from_secs(bytes / MIN_RATE)
    }

    /// Runs a whole request (answer and body) under its overall deadline.
    pub async fn timed<T>(
        &self,
        path: &str,
        bytes: u64,
        request: impl std::future::Future<Output = Result<T, SyncError>>,
    ) -> Result<T, SyncError> {
        let deadline = self.deadline(bytes);
        tokio::time::timeout(deadline, request)
            .await
            .unwrap_or_else(|_| {
                Err(SyncError::Network {
                    url: self.url.clone(),
                    path: path.to_owned(),
                    kind: NetworkKind::Timeout,
                    reason: format!("no complete answer within {}", secs(deadline)),
                })
            })
    }

    /// GETs `index.json` at `relative`, conditionally on `etag`, reading at most `cap` bytes.
    pub async fn head(
        &self,
        relative: &str,
        etag: Option<&str>,
        cap: u64,
    ) -> Result<HeadFetch, SyncError> {
        self.timed(relative, cap, async {
            let too_large = || SyncError::Index {
                url: self.url.clone(),
                source: Box::new(IndexError::Head(FetchError::TooLarge { limit: cap })),
            };
            let (mut body, etag) = match &self.transport {
                Transport::Http { client, base } => {
                    let mut request = client.get(self.join(base, relative)?);
                    if let Some(tag) = etag {
                        request = request.header(reqwest::header::IF_NONE_MATCH, tag);
                    }
                    let response = request
                        .send()
                        .await
                        .map_err(|e| self.network(relative, e))?;
                    match response.status().as_u16() {
                        304 => return Ok(HeadFetch::NotModified),
                        404 | 410 => return Ok(HeadFetch::NotFound),
                        200 => {}
                        status => return Err(self.status(relative, status)),
                    }
                    if response.content_length().is_some_and(|n| n > cap) {
                        return Err(too_large());
                    }
                    let etag = response
                        .headers()
                        .get(reqwest::header::ETAG)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let body = Body {
                        inner: BodyInner::Http(response),
                        start: 0,
                        length: None,
                    };
                    (body, etag)
                }
                Transport::Dir(_) => match self.open_file(relative, 0).await? {
                    Some(body) => (body, None),
                    None => return Ok(HeadFetch::NotFound),
                },
            };
            let mut bytes = Vec::new();
            while let Some(chunk) = body.chunk(self, relative).await? {
                if (bytes.len() + chunk.len()) as u64 > cap {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(HeadFetch::Envelope { bytes, etag })
        })
        .await
    }

    /// GETs an object the signed index names (a piece), in memory: at most its size is read,
    /// then size and sha256 must match. `None` when the upstream does not have it.
    pub async fn object_bytes(
        &self,
        relative: &str,
        what: &'static str,
        expected: ObjectRef,
    ) -> Result<Option<Vec<u8>>, SyncError> {
        let object_error = |source| SyncError::Object {
            url: self.url.clone(),
            what,
            sha256: expected.sha256,
            source: Box::new(source),
        };
        self.timed(relative, expected.size, async {
            let Some(mut body) = self.open(relative, what, expected, 0).await? else {
                return Ok(None);
            };
            let mut receiver = MemoryReceiver::new(expected);
            while let Some(chunk) = body.chunk(self, relative).await? {
                receiver.accept(&chunk).map_err(object_error)?;
            }
            receiver.finish().map(Some).map_err(object_error)
        })
        .await
    }

    /// GETs a small file whose hash is not known in advance (a `.minisig`), refusing more than
    /// `cap` bytes. `None` when the upstream does not have it.
    pub async fn capped_bytes(
        &self,
        relative: &str,
        cap: u64,
        too_large: impl Fn() -> SyncError,
    ) -> Result<Option<Vec<u8>>, SyncError> {
        self.timed(relative, cap, async {
            let Some(mut body) = self.open_raw(relative, 0).await? else {
                return Ok(None);
            };
            if body.length.is_some_and(|n| n > cap) {
                return Err(too_large());
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = body.chunk(self, relative).await? {
                if (bytes.len() + chunk.len()) as u64 > cap {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(Some(bytes))
        })
        .await
    }

    /// Opens an object for streaming from `offset` (a `Range` request when > 0). A body longer
    /// than what is left of `expected.size` is refused before it is read. `None` on 404.
    pub async fn open(
        &self,
        relative: &str,
        what: &'static str,
        expected: ObjectRef,
        offset: u64,
    ) -> Result<Option<Body>, SyncError> {
        let Some(body) = self.open_raw(relative, offset).await? else {
            return Ok(None);
        };
        if body
            .length
            .is_some_and(|n| n > expected.size.saturating_sub(body.start))
        {
            return Err(SyncError::Object {
                url: self.url.clone(),
                what,
                sha256: expected.sha256,
                source: Box::new(FetchError::TooLarge {
                    limit: expected.size,
                }),
            });
        }
        Ok(Some(body))
    }

    /// Opens bytes `start..end` of an object of `size` bytes for a segmented download: a
    /// `Range: bytes=start-(end-1)` request that must be answered 206 with exactly that
    /// `Content-Range` (a folder upstream's copy must be `size` bytes). Errors say what the
    /// segmented download does next ([`RangeError`]).
    pub async fn open_range(
        &self,
        relative: &str,
        size: u64,
        start: u64,
        end: u64,
    ) -> Result<Body, RangeError> {
        let network = |e: SyncError| match e {
            SyncError::Network {
                kind: NetworkKind::Timeout,
                reason,
                ..
            } => RangeError::TimedOut(reason),
            SyncError::Network {
                kind: NetworkKind::Connect,
                reason,
                ..
            } => RangeError::Refused(reason),
            e => RangeError::Failed(e.to_string()),
        };
        let (client, base) = match &self.transport {
            Transport::Http { client, base } => (client, base),
            Transport::Dir(root) => {
                let len = tokio::fs::metadata(on_disk(root, relative))
                    .await
                    .map_or(None, |m| Some(m.len()));
                match len {
                    None => return Err(RangeError::NoRanges("does not have the file".into())),
                    Some(len) if len != size => {
                        return Err(RangeError::Lying(format!(
                            "its copy is {len} bytes, the index gives {size}"
                        )))
                    }
                    Some(_) => {}
                }
                let mut body = self
                    .open_file(relative, start)
                    .await
                    .map_err(network)?
                    .ok_or_else(|| RangeError::NoRanges("does not have the file".into()))?;
                if let BodyInner::File(_, _, left) = &mut body.inner {
                    *left = end - start;
                }
                return Ok(body);
            }
        };
        let request = client
            .get(self.join(base, relative).map_err(network)?)
            .header(reqwest::header::RANGE, format!("bytes={start}-{}", end - 1));
        let response = request
            .send()
            .await
            .map_err(|e| network(self.network(relative, e)))?;
        let expected = format!("bytes {start}-{}/{size}", end - 1);
        match response.status().as_u16() {
            206 => {}
            200 => {
                return Err(RangeError::NoRanges(format!(
                    "does not answer byte ranges (asked {expected}, got the whole file)"
                )))
            }
            404 | 410 => return Err(RangeError::NoRanges("does not have the file".into())),
            status => return Err(RangeError::Failed(format!("HTTP {status}"))),
        }
        let range = response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok());
        if range != Some(expected.as_str()) {
            return Err(RangeError::Failed(format!(
                "asked {expected}, got {}",
                range.unwrap_or("no Content-Range")
            )));
        }
        if response.content_length().is_some_and(|n| n != end - start) {
            return Err(RangeError::Lying(format!(
                "announced a body that is not bytes {start}..{end}"
            )));
        }
        Ok(Body {
            length: response.content_length(),
            inner: BodyInner::Http(response),
            start,
        })
    }

    /// Longest wait for the next byte of an answer.
    pub fn read_timeout(&self) -> Duration {
        self.timeouts.read
    }

    /// Opens a file from `offset`; `None` on 404.
    async fn open_raw(&self, relative: &str, offset: u64) -> Result<Option<Body>, SyncError> {
        let (client, base) = match &self.transport {
            Transport::Dir(_) => return self.open_file(relative, offset).await,
            Transport::Http { client, base } => (client, base),
        };
        let mut request = client.get(self.join(base, relative)?);
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.network(relative, e))?;
        let start = match response.status().as_u16() {
            200 => 0,
            206 if offset > 0 => {
                let range = response
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(content_range_start);
                if range != Some(offset) {
                    return Err(SyncError::Network {
                        url: self.url.clone(),
                        path: relative.to_owned(),
                        kind: NetworkKind::Broken,
                        reason: format!("asked for bytes from {offset}, got another range"),
                    });
                }
                offset
            }
            404 | 410 => return Ok(None),
            status => return Err(self.status(relative, status)),
        };
        Ok(Some(Body {
            length: response.content_length(),
            inner: BodyInner::Http(response),
            start,
        }))
    }

    async fn open_file(&self, relative: &str, offset: u64) -> Result<Option<Body>, SyncError> {
        let Transport::Dir(root) = &self.transport else {
            unreachable!("only folder upstreams open files");
        };
        let path = on_disk(root, relative);
        let io = |e: std::io::Error| SyncError::Network {
            url: self.url.clone(),
            path: relative.to_owned(),
            kind: NetworkKind::Broken,
            reason: e.to_string(),
        };
        // Only regular files, opened without blocking: a FIFO in place of `index.json` would
        // hang the open (and the runtime's shutdown after it) for ever.
        let opened = tokio::task::spawn_blocking(move || open_regular(&path))
            .await
            .map_err(|e| io(std::io::Error::other(e)))?;
        let mut file = match opened {
            Ok(f) => tokio::fs::File::from_std(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        if offset > 0 {
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(io)?;
        }
        Ok(Some(Body {
            inner: BodyInner::File(file, vec![0; FILE_CHUNK], u64::MAX),
            start: offset,
            length: None,
        }))
    }

    fn join(&self, base: &reqwest::Url, relative: &str) -> Result<reqwest::Url, SyncError> {
        base.join(relative).map_err(|e| SyncError::BadUpstream {
            url: self.url.clone(),
            reason: e.to_string(),
        })
    }

    fn network(&self, path: &str, e: reqwest::Error) -> SyncError {
        let kind = if e.is_timeout() {
            NetworkKind::Timeout
        } else if e.is_redirect() {
            NetworkKind::Redirect
        } else if e.is_connect() {
            NetworkKind::Connect
        } else {
            NetworkKind::Broken
        };
        let reason = crate::index::reqwest_error_chain(e);
        SyncError::Network {
            url: self.url.clone(),
            path: path.to_owned(),
            kind,
            reason,
        }
    }

    fn status(&self, path: &str, status: u16) -> SyncError {
        SyncError::Status {
            url: self.url.clone(),
            path: path.to_owned(),
            status,
        }
    }
}

impl Body {
    /// The next chunk, or `None` at the end.
    pub async fn chunk(
        &mut self,
        upstream: &Upstream,
        path: &str,
    ) -> Result<Option<Bytes>, SyncError> {
        match &mut self.inner {
            BodyInner::Http(response) => response
                .chunk()
                .await
                .map_err(|e| upstream.network(path, e)),
            BodyInner::File(file, buf, left) => {
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = file
                    .read(&mut buf[..want])
                    .await
                    .map_err(|e| SyncError::Network {
                        url: upstream.url.clone(),
                        path: path.to_owned(),
                        kind: NetworkKind::Broken,
                        reason: e.to_string(),
                    })?;
                *left -= n as u64;
                Ok((n > 0).then(|| Bytes::copy_from_slice(&buf[..n])))
            }
        }
    }
}

/// The first byte position of a `Content-Range: bytes A-B/T` value.
fn content_range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes ")?;
    let (span, _total) = range.split_once('/')?;
    let (first, _last) = span.split_once('-')?;
    first.trim().parse().ok()
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_secs(1),
        }
    }

    #[test]
    fn content_range_parses_the_start() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_start("items 1-2/3"), None);
    }

    #[test]
    fn urls_are_normalised_and_credentials_hidden() {
        let url = reqwest::Url::parse("http://u:secret@m.example/sub?x=1").unwrap();
        let up = Upstream::new(&url, None, timeouts()).unwrap();
        assert_eq!(up.url(), "http://m.example/sub/");
        let Transport::Http { base, .. } = &up.transport else {
            panic!("http upstream")
        };
        assert_eq!(base.path(), "/sub/");
        assert_eq!(base.query(), None);
        let ftp = reqwest::Url::parse("ftp://m.example/").unwrap();
        assert!(matches!(
            Upstream::new(&ftp, None, timeouts()),
            Err(SyncError::BadUpstream { .. })
        ));
    }

    #[test]
    fn backoff_is_recorded_and_cleared() {
        let url = reqwest::Url::parse("http://m.example/").unwrap();
        let up = Upstream::new(&url, None, timeouts()).unwrap();
        let backoff = Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(100),
        };
        let now = Instant::now();
        assert!(up.ready(now));
        let delay = up.record(false, &backoff, now).unwrap();
        assert!(delay >= Duration::from_secs(5) && delay <= Duration::from_secs(10));
        assert!(!up.ready(now));
        assert!(up.ready(now + Duration::from_secs(10)));
        assert!(up.record(true, &backoff, now).is_none());
        assert!(up.ready(now));
    }
}
