//! How the reader reaches a mirror: HTTP(S) through an optional proxy (`s3://` buckets too,
//! through presigned URLs), or a local folder.
//!
//! Owns the HTTP clients (connect and read timeouts, `Proxy::all` so that with a proxy no
//! request ever goes around it, e.g. Tor with `socks5h://` resolving names too, redirects only
//! on the mirror's own host), the minimum transfer rate that bounds every HTTP answer, capped
//! reads of a layout path from either kind of mirror, and sorting transport failures into
//! fates. It never decides what is authentic: callers check every byte it returns against a
//! signature or a signed hash, the same way for every transport.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::mirrors::Fate;
use super::ReaderError;
use crate::index::layout::on_disk;
use crate::index::{open_regular, read_capped, FetchError, MirrorUrl};

/// Slowest average rate an HTTP mirror may answer at, in bytes per second: 4 KiB/s, as the
/// sync's. A throttled mobile link moves more; a mirror that drips a byte at a time (a
/// slow-loris, each byte well within the read timeout) is cut off instead of holding the reader
/// for hours, and counts as stalled for hedging.
pub(super) const MIN_RATE: u64 = 4 << 10;

/// The longest a whole HTTP answer of `bytes` may take: `patience` (a connect and a read
/// timeout) plus the bytes at [`MIN_RATE`].
pub(super) fn deadline(patience: Duration, bytes: u64) -> Duration {
    patience + Duration::from_millis(bytes.saturating_mul(1000) / MIN_RATE)
}

/// The failure of an answer that missed its [`deadline`].
pub(super) fn too_slow(limit: Duration) -> TransportError {
    TransportError::TimedOut(format!(
        "no complete answer within {:.1}s (slower than {} KiB/s)",
        limit.as_secs_f64(),
        MIN_RATE >> 10
    ))
}

/// A mirror as something to read from. Cheap to clone (the client is shared).
#[derive(Debug, Clone)]
pub(super) enum Source {
    Http {
        client: reqwest::Client,
        base: MirrorUrl,
        /// Connect plus read timeout: the fixed part of every answer's [`deadline`].
        patience: Duration,
    },
    /// A folder (or `file://`) mirror. Its reads run under the same [`deadline`] as HTTP ones:
    /// a folder can be a hung network mount.
    Dir { root: PathBuf, patience: Duration },
    /// An `s3://` mirror: each object is read over HTTP through a presigned URL (the S3 API
    /// with the reader's credentials), so from there on it is an HTTP mirror like any other.
    Bucket {
        client: reqwest::Client,
        bucket: crate::bucket::Bucket,
        patience: Duration,
    },
}

/// How long a presigned URL is valid: only its start has to fall within it (S3 checks the
/// expiry when a request arrives, not while the body streams). 15 minutes: clocks a few
/// minutes apart still agree.
const SIGNED_URL_LIFE: Duration = Duration::from_secs(15 * 60);

/// The presigned URL of `relative` in `bucket`.
pub(super) async fn signed_url(
    bucket: &crate::bucket::Bucket,
    relative: &str,
) -> Result<String, TransportError> {
    bucket
        .signed_get_url(relative, SIGNED_URL_LIFE)
        .await
        .map_err(|e| TransportError::Failed(e.to_string()))
}

/// Why a read from a mirror failed.
#[derive(Debug, Clone)]
pub(super) enum TransportError {
    TimedOut(String),
    Refused(String),
    /// The mirror answered, with an error (HTTP status, missing file, cut connection).
    Failed(String),
    /// The mirror sent something a signed size or hash rules out.
    Lying(String),
}

impl TransportError {
    pub(super) fn fate(&self) -> (Fate, &str) {
        match self {
            TransportError::TimedOut(d) => (Fate::TimedOut, d),
            TransportError::Refused(d) => (Fate::Refused, d),
            TransportError::Failed(d) => (Fate::Failed, d),
            TransportError::Lying(d) => (Fate::Lying, d),
        }
    }

    /// Sorts a reqwest failure; the detail is the innermost cause, without the URL.
    pub(super) fn from_reqwest(e: reqwest::Error) -> Self {
        let detail = innermost(&e);
        if e.is_timeout() {
            TransportError::TimedOut(detail)
        } else if e.is_connect() {
            TransportError::Refused(detail)
        } else {
            TransportError::Failed(detail)
        }
    }

    /// Sorts a failed receive of an object with a signed size and sha256.
    pub(super) fn from_fetch(e: FetchError) -> Self {
        match e {
            FetchError::TooLarge { .. }
            | FetchError::Truncated { .. }
            | FetchError::HashMismatch { .. } => TransportError::Lying(e.to_string()),
            FetchError::Read(_) | FetchError::Io { .. } => TransportError::Failed(innermost(&e)),
        }
    }
}

/// The last error in a source chain, which is the one that says what happened ("Connection
/// refused (os error 111)"), without reqwest's URL-carrying wrappers.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    let text = current.to_string();
    if text.is_empty() {
        e.to_string()
    } else {
        text
    }
}

/// An HTTP client for mirrors: bounded connect and read timeouts, a plain user agent, no
/// cookies; with `proxy`, every request goes through it (http, https or socks5/socks5h).
pub(super) fn client(
    proxy: Option<&reqwest::Url>,
    connect_timeout: Duration,
    read_timeout: Duration,
) -> Result<reqwest::Client, ReaderError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .read_timeout(read_timeout)
        .redirect(crate::index::redirect_policy())
        .user_agent(concat!("qasid/", env!("CARGO_PKG_VERSION")));
    if let Some(proxy) = proxy {
        let bad = |e: reqwest::Error| ReaderError::BadProxy {
            proxy: proxy.to_string(),
            reason: innermost(&e),
        };
        builder = builder.proxy(reqwest::Proxy::all(proxy.as_str()).map_err(bad)?);
    }
    builder.build().map_err(|e| ReaderError::BadProxy {
        proxy: proxy.map_or_else(|| "(none)".to_owned(), |p| p.to_string()),
        reason: innermost(&e),
    })
}

impl Source {
    /// Reads the layout path `relative` whole, refusing more than `limit` bytes (checked on
    /// the announced length first, then on what arrives).
    pub(super) async fn read(&self, relative: &str, limit: u64) -> Result<Vec<u8>, TransportError> {
        self.read_watched(relative, limit, None).await
    }

    /// [`Source::read`], sending the length of every chunk received to `progress` (for
    /// hedging: a request whose bytes stop coming is overtaken).
    pub(super) async fn read_watched(
        &self,
        relative: &str,
        limit: u64,
        progress: Option<&mpsc::UnboundedSender<u64>>,
    ) -> Result<Vec<u8>, TransportError> {
        match self {
            Source::Http {
                client,
                base,
                patience,
            } => get_capped(client, &base.join(relative), limit, *patience, progress).await,
            Source::Bucket {
                client,
                bucket,
                patience,
            } => {
                let url = signed_url(bucket, relative).await?;
                get_capped(client, &url, limit, *patience, progress).await
            }
            Source::Dir { root, patience } => {
                let path = on_disk(root, relative);
                let read = tokio::task::spawn_blocking(move || {
                    let file = open_regular(&path).map_err(missing)?;
                    read_capped(file, limit).map_err(|e| match e {
                        FetchError::TooLarge { limit } => TransportError::Lying(format!(
                            "{} is larger than the {limit}-byte limit",
                            path.display()
                        )),
                        other => TransportError::from_fetch(other),
                    })
                });
                let allowed = deadline(*patience, limit);
                match tokio::time::timeout(allowed, read).await {
                    Ok(done) => done.unwrap_or_else(|e| Err(TransportError::Failed(e.to_string()))),
                    Err(_) => Err(too_slow(allowed)),
                }
            }
        }
    }
}

/// A file that a folder mirror does not have (or cannot give).
pub(super) fn missing(e: std::io::Error) -> TransportError {
    if e.kind() == std::io::ErrorKind::NotFound {
        TransportError::Failed("not in this folder".into())
    } else {
        TransportError::Failed(e.to_string())
    }
}

/// Sends a GET, turning transport failures and non-success statuses into errors.
pub(super) async fn send(
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, TransportError> {
    let response = request.send().await.map_err(TransportError::from_reqwest)?;
    let status = response.status();
    if !status.is_success() {
        return Err(TransportError::Failed(format!("HTTP {status}")));
    }
    Ok(response)
}

/// GETs `url` whole, at most `limit` bytes, within the [`deadline`] for the announced length
/// (or the limit, without one).
pub(super) async fn get_capped(
    client: &reqwest::Client,
    url: &str,
    limit: u64,
    patience: Duration,
    progress: Option<&mpsc::UnboundedSender<u64>>,
) -> Result<Vec<u8>, TransportError> {
    let too_large = || TransportError::Lying(format!("sent more than the {limit}-byte limit"));
    let started = Instant::now();
    let mut response = send(client.get(url)).await?;
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let allowed = deadline(patience, response.content_length().unwrap_or(limit));
    let mut bytes = Vec::new();
    loop {
        let chunk = tokio::time::timeout_at(started + allowed, response.chunk())
            .await
            .map_err(|_| too_slow(allowed))?
            .map_err(TransportError::from_reqwest)?;
        let Some(chunk) = chunk else { break };
        if (bytes.len() + chunk.len()) as u64 > limit {
            // A big web page is a wrong URL or a captive portal, not a lie.
            if let Some(e) = crate::index::html_page(&bytes) {
                return Err(TransportError::Failed(e.to_string()));
            }
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
        if let Some(progress) = progress {
            let _ = progress.send(chunk.len() as u64);
        }
    }
    Ok(bytes)
}

/// Whether `proxy` answers: a TCP connection within `timeout`, and for `socks5://` and
/// `socks5h://` a SOCKS5 greeting answered as SOCKS5. The error completes a sentence that
/// names the proxy: "is not answering (connection refused)", "is not a SOCKS5 proxy (...)".
pub(super) async fn probe_proxy(proxy: &reqwest::Url, timeout: Duration) -> Result<(), String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let socks = matches!(proxy.scheme(), "socks5" | "socks5h");
    let host = proxy.host_str().ok_or("it has no host")?.to_owned();
    let port = proxy
        .port_or_known_default()
        .unwrap_or(if socks { 1080 } else { 80 });
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    "is not answering (connection refused)".to_owned()
                }
                _ => format!("is not answering ({e})"),
            })?;
        if !socks {
            return Ok(());
        }
        // Version 5, two methods: no authentication, user name and password.
        let greeted = stream.write_all(&[5, 2, 0, 2]).await;
        let mut answer = [0u8; 2];
        match (greeted, stream.read_exact(&mut answer).await) {
            (Ok(()), Ok(_)) if answer[0] == 5 => Ok(()),
            (Ok(()), Ok(_)) => {
                Err("is not a SOCKS5 proxy (it answered in another protocol)".to_owned())
            }
            _ => Err("is not a SOCKS5 proxy (it closed the connection without answering)".into()),
        }
    };
    match tokio::time::timeout(timeout, probe).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "is not answering (no answer within {}s)",
            timeout.as_secs_f64()
        )),
    }
}
