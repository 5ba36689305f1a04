//! Reading a publisher's index and bundles from a repo folder or a mirror over HTTP.
//!
//! Owns the two transports that feed a [`Tracker`]: each reads `index.json` under its cap,
//! offers it, fetches exactly the pieces the plan asks for (each capped at the size the signed
//! head gives) and accepts the result. Bundles go through the same caps and hash check before
//! the zip is opened. It never decides what is authentic: that is `head`, `log` and `tracker`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::bundle::{self, BundleError, VerifiedBundle};
use crate::content_id::ContentId;
use crate::index::fetch::{
    open_regular, read_capped, receive_file, FetchError, FileReceiver, VerifiedObject,
};
use crate::index::head::{Freshness, MirrorUrl, SignedHead};
use crate::index::layout::{on_disk, PublisherLayout};
use crate::index::log::{ArticleVersion, PieceRef};
use crate::index::tracker::{Offer, Outcome, PendingIndex, Tracker};
use crate::index::IndexError;
use crate::keys::PublicKey;
use crate::limits::{BundleLimits, ANSWER_GRACE, MIN_ANSWER_RATE};
use crate::roots::{Chain, RootError};
use crate::ErrorClass;

/// How many bytes an update read: the figure that must stay small for a client that is up to
/// date (head + one batch piece).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    pub head_bytes: u64,
    pub piece_bytes: u64,
    pub pieces: u64,
}

/// Updates `tracker` from a repo (or mirror) folder laid out as docs/PROTOCOL.md describes.
pub fn update_from_dir(
    tracker: &mut Tracker,
    root: &Path,
    now: SystemTime,
) -> Result<(Outcome, Transfer), IndexError> {
    let layout = PublisherLayout::new(tracker.publisher());
    let head_path = on_disk(root, &layout.index());
    let file = open_regular(&head_path).map_err(IndexError::io(&head_path))?;
    let envelope = read_capped(file, tracker.limits().max_head_bytes).map_err(IndexError::Head)?;
    let mut transfer = Transfer {
        head_bytes: envelope.len() as u64,
        ..Transfer::default()
    };
    let from = tracker.held().map(|h| h.head().sequence());
    let update = match tracker.offer(&envelope, now)? {
        Offer::Update(mut pending) => {
            while let Some(batch) = next_round(&mut pending)? {
                for piece in batch {
                    let path = on_disk(root, &layout.piece(&piece.sha256));
                    let file = open_regular(&path).map_err(IndexError::io(&path))?;
                    let bytes = read_capped(file, piece.size).map_err(piece_error(&piece))?;
                    transfer.count(&bytes);
                    pending.supply(&piece, bytes)?;
                }
            }
            pending.finish()?
        }
        Offer::Unchanged => return Ok((Outcome::Unchanged, transfer)),
        Offer::KeptFresher { offered } => return Ok((kept_fresher(&offered, now), transfer)),
    };
    let to = tracker.accept(update)?.head().sequence();
    Ok((Outcome::Updated { from, to }, transfer))
}

/// Reads root version `version` of `chain`'s publisher from a repo or mirror folder; `None`
/// when it is absent or unreadable (a walk stops there).
pub fn root_from_dir(root: &Path, publisher: &PublicKey, version: u64) -> Option<Vec<u8>> {
    let path = on_disk(root, &PublisherLayout::new(publisher).root(version));
    match crate::roots::read_capped(&path) {
        Ok(bytes) => Some(bytes),
        Err(RootError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!("{}: {e}", path.display());
            None
        }
    }
}

/// Walks `chain` forward with the roots a repo or mirror folder holds.
pub fn walk_roots_dir(chain: &mut Chain, root: &Path) -> Result<u64, RootError> {
    let id = chain.id().clone();
    chain.walk_now(|version| root_from_dir(root, &id, version))
}

/// GETs root version `version` from a mirror; `None` when it has none (or the request
/// failed: a walk stops there, and the verifier keeps the root it holds).
pub async fn root_from_http(
    client: &reqwest::Client,
    base: &MirrorUrl,
    publisher: &PublicKey,
    version: u64,
) -> Option<Vec<u8>> {
    let url = base.join(&PublisherLayout::new(publisher).root(version));
    match get_bytes(client, &url, crate::limits::MAX_ROOT_BYTES).await {
        Ok(bytes) => Some(bytes),
        Err(GetError::Network(reason)) => {
            tracing::debug!("{url}: {reason}");
            None
        }
        Err(GetError::Fetch(e)) => {
            tracing::warn!("{url}: {e}");
            None
        }
    }
}

/// Walks `chain` forward with the roots a mirror serves (at most
/// [`crate::limits::MAX_ROOT_STEPS`] requests beyond the held root, plus one for the held
/// version again: a different valid root there is equivocation). Returns the number of roots accepted.
pub async fn walk_roots_http(
    chain: &mut Chain,
    client: &reqwest::Client,
    base: &MirrorUrl,
) -> Result<u64, RootError> {
    let id = chain.id().clone();
    chain
        .walk(async |version| root_from_http(client, base, &id, version).await)
        .await
}

/// Updates `tracker` from a mirror: `base` is the URL of the folder holding `qasid/v1/`.
pub async fn update_from_http(
    tracker: &mut Tracker,
    client: &reqwest::Client,
    base: &MirrorUrl,
    now: SystemTime,
) -> Result<(Outcome, Transfer), IndexError> {
    let layout = PublisherLayout::new(tracker.publisher());
    let url = base.join(&layout.index());
    let envelope = get_bytes(client, &url, tracker.limits().max_head_bytes)
        .await
        .map_err(|e| e.into_index_error(&url, IndexError::Head))?;
    let mut transfer = Transfer {
        head_bytes: envelope.len() as u64,
        ..Transfer::default()
    };
    let from = tracker.held().map(|h| h.head().sequence());
    let update = match tracker.offer(&envelope, now)? {
        Offer::Update(mut pending) => {
            while let Some(batch) = next_round(&mut pending)? {
                for piece in batch {
                    let url = base.join(&layout.piece(&piece.sha256));
                    let bytes = get_bytes(client, &url, piece.size)
                        .await
                        .map_err(|e| e.into_index_error(&url, piece_error(&piece)))?;
                    transfer.count(&bytes);
                    pending.supply(&piece, bytes)?;
                }
            }
            pending.finish()?
        }
        Offer::Unchanged => return Ok((Outcome::Unchanged, transfer)),
        Offer::KeptFresher { offered } => return Ok((kept_fresher(&offered, now), transfer)),
    };
    let to = tracker.accept(update)?.head().sequence();
    Ok((Outcome::Updated { from, to }, transfer))
}

impl Transfer {
    fn count(&mut self, piece: &[u8]) {
        self.piece_bytes += piece.len() as u64;
        self.pieces += 1;
    }
}

/// The next pieces to fetch, or `None` when the plan is complete.
fn next_round(pending: &mut PendingIndex<'_>) -> Result<Option<Vec<PieceRef>>, IndexError> {
    let needed = pending.needed()?;
    Ok((!needed.is_empty()).then_some(needed))
}

fn piece_error(piece: &PieceRef) -> impl Fn(FetchError) -> IndexError + '_ {
    |source| IndexError::Piece {
        piece: piece.sha256,
        source,
    }
}

fn kept_fresher(offered: &SignedHead, now: SystemTime) -> Outcome {
    Outcome::KeptFresher {
        offered: offered.head().sequence(),
        expired_since: match offered.head().freshness(now) {
            Freshness::Expired { since } => since,
            Freshness::Fresh => Duration::ZERO,
        },
    }
}

/// A client for mirrors: bounded connect and read timeouts (a blocked mirror often hangs
/// rather than refusing), redirects only on the mirror's own host ([`redirect_policy`]), no
/// cookies, a plain user agent.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(30))
        .redirect(redirect_policy())
        .user_agent(concat!("qasid/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with static settings always builds")
}

/// Most redirects followed for one request. 5: a hop or two on the same host (http to https,
/// a moved folder) is all a mirror needs; a longer chain is a loop or a game.
const MAX_REDIRECTS: usize = 5;

/// Why a redirect from a mirror was not followed.
#[derive(Debug, thiserror::Error)]
pub enum RedirectRefused {
    /// The redirect leaves the mirror: another host, port, or a downgrade from https.
    #[error("refused a redirect to another host ({0})")]
    OtherHost(String),
    #[error("refused more than {MAX_REDIRECTS} redirects")]
    TooMany,
}

/// The redirect policy of every HTTP client qasid points at a mirror or upstream: a redirect is
/// followed only if it stays on the mirror (same scheme, host and port, or an upgrade from
/// http to https on the same host), at most [`MAX_REDIRECTS`] times; anything else fails the
/// request with [`RedirectRefused`].
///
/// Bytes are not the reason: every byte is checked against a signature or a signed hash
/// wherever it came from, so a redirect cannot make qasid accept anything forged. Where the
/// request goes is: a reader who picked a mirror (perhaps the one address that still gets
/// through) would otherwise be sent wherever the mirror says, in the clear if https is
/// downgraded (which shows the network the bundle hash, so the article, being read); a mirror
/// syncing from a hostile upstream would send requests to hosts of the upstream's choosing,
/// inside its own network (server-side request forgery); and a lie served by the other host
/// would be charged to the mirror that redirected.
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(RedirectRefused::TooMany);
        }
        let allowed = attempt
            .previous()
            .first()
            .is_some_and(|origin| stays_on_mirror(origin, attempt.url()));
        if allowed {
            attempt.follow()
        } else {
            let to = attempt.url().origin().ascii_serialization();
            attempt.error(RedirectRefused::OtherHost(to))
        }
    })
}

/// Whether a redirect from `from` (the URL first asked) to `to` stays on the same mirror.
fn stays_on_mirror(from: &reqwest::Url, to: &reqwest::Url) -> bool {
    if from.host_str().is_none() || from.host_str() != to.host_str() {
        return false;
    }
    match (from.scheme(), to.scheme()) {
        (a, b) if a == b => from.port_or_known_default() == to.port_or_known_default(),
        ("http", "https") => to.port_or_known_default() == Some(443),
        _ => false,
    }
}

/// What a failed request says, with every cause ("error sending request: client error
/// (Connect): tcp connect error: Connection refused (os error 111)"), without the URL (the
/// caller names the mirror, credentials masked). reqwest's own text is only the outermost
/// layer ("error sending request"), which tells the user nothing: DNS failure, refusal, TLS
/// and timeout are all in the causes. Shared by every HTTP client qasid runs (reader, index
/// show, sync, push).
pub fn reqwest_error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        let part = inner.to_string();
        // hyper and the OS error often repeat the same words one layer down.
        if !part.is_empty() && !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

/// The refusal of an answer that is a web page, not a qasid document: a wrong URL or a
/// captive portal, not a mirror lying (`index.json` is JSON and starts with `{`).
pub fn html_page(bytes: &[u8]) -> Option<IndexError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    (*first == b'<').then_some(IndexError::NotAMirror(
        "an HTML page: wrong URL or a captive portal?",
    ))
}

/// A failed GET: the transport, or the received bytes.
enum GetError {
    Network(String),
    Fetch(FetchError),
}

impl GetError {
    fn into_index_error(
        self,
        url: &str,
        wrap: impl FnOnce(FetchError) -> IndexError,
    ) -> IndexError {
        match self {
            GetError::Network(reason) => IndexError::Network {
                url: url.to_owned(),
                reason,
            },
            GetError::Fetch(e) => wrap(e),
        }
    }
}

/// GETs `url`, handing each chunk to `sink` and never reading more than `limit` + 1 bytes'
/// worth of chunks (a larger announced length is refused before the body is read).
async fn get_into(
    client: &reqwest::Client,
    url: &str,
    limit: u64,
    mut sink: impl FnMut(&[u8]) -> Result<(), FetchError>,
) -> Result<(), GetError> {
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| GetError::Network(reqwest_error_chain(e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(GetError::Network(format!("HTTP {status}")));
    }
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(GetError::Fetch(FetchError::TooLarge { limit }));
    }
    // The body must keep up with the minimum rate on average after a grace period, so a
    // mirror dripping bytes cannot hold the caller forever; the size cap bounds the total.
    let start = tokio::time::Instant::now();
    let mut received: u64 = 0;
    loop {
        let earned = Duration::from_millis(received.saturating_mul(1000) / MIN_ANSWER_RATE);
        let deadline = start + ANSWER_GRACE + earned;
        let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => {
                return Err(GetError::Network(format!(
                    "the answer arrived slower than {} KiB/s ({received} bytes in {:.0}s): cut off",
                    MIN_ANSWER_RATE >> 10,
                    start.elapsed().as_secs_f64()
                )))
            }
            Ok(chunk) => chunk.map_err(|e| GetError::Network(reqwest_error_chain(e)))?,
        };
        let Some(chunk) = chunk else { break };
        received += chunk.len() as u64;
        sink(&chunk).map_err(GetError::Fetch)?;
    }
    Ok(())
}

async fn get_bytes(client: &reqwest::Client, url: &str, limit: u64) -> Result<Vec<u8>, GetError> {
    let mut bytes = Vec::new();
    let got = get_into(client, url, limit, |chunk| {
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(FetchError::TooLarge { limit });
        }
        bytes.extend_from_slice(chunk);
        Ok(())
    })
    .await;
    match (got, html_page(&bytes)) {
        // A big web page is a wrong URL or a captive portal, not a lie.
        (Err(GetError::Fetch(FetchError::TooLarge { .. })), Some(page)) => {
            Err(GetError::Network(page.to_string()))
        }
        (got, _) => got.map(|()| bytes),
    }
}

/// Why a bundle listed in an index was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum BundleFetchError {
    /// The bytes are not the ones the index names (checked before the zip is opened).
    #[error("bundle {sha256}")]
    Fetch {
        sha256: ContentId,
        #[source]
        source: FetchError,
    },
    #[error("{url}: {reason}")]
    Network { url: String, reason: String },
    /// The bytes match the index, but the bundle itself does not verify.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The bundle is authentic but is not the article version the index entry names.
    #[error("bundle {sha256} holds {found}, but the index lists it as {expected}")]
    NotTheListedArticle {
        sha256: ContentId,
        expected: String,
        found: String,
    },
}

impl BundleFetchError {
    pub fn class(&self) -> ErrorClass {
        match self {
            BundleFetchError::Fetch { source, .. } => source.class(),
            BundleFetchError::Network { .. } => ErrorClass::Runtime,
            BundleFetchError::Bundle(e) => e.class(),
            BundleFetchError::NotTheListedArticle { .. } => ErrorClass::Verification,
        }
    }
}

/// A bundle received for an index entry: its file (in a temp place until persisted) and the
/// verification result.
#[derive(Debug)]
pub struct FetchedBundle {
    pub object: VerifiedObject,
    pub bundle: VerifiedBundle,
}

/// Receives the bundle of `article` from `reader` into a temp file in `dir`: size cap, size
/// and sha256 first, and only then the zip is verified against `publisher`.
pub fn receive_bundle(
    reader: impl std::io::Read,
    dir: &Path,
    article: &ArticleVersion,
    publisher: &(impl crate::keys::Trusted + ?Sized),
    limits: &BundleLimits,
) -> Result<FetchedBundle, BundleFetchError> {
    let sha256 = article.bundle().sha256;
    let object = receive_file(reader, dir, article.bundle())
        .map_err(|source| BundleFetchError::Fetch { sha256, source })?;
    check_bundle(object, article, publisher, limits)
}

/// [`receive_bundle`] from a mirror: `base` is the URL of the folder holding `qasid/v1/`.
pub async fn fetch_bundle_http(
    client: &reqwest::Client,
    base: &MirrorUrl,
    article: &ArticleVersion,
    publisher: &(impl crate::keys::Trusted + ?Sized),
    dir: &Path,
    limits: &BundleLimits,
) -> Result<FetchedBundle, BundleFetchError> {
    let sha256 = article.bundle().sha256;
    let fetch = |source| BundleFetchError::Fetch { sha256, source };
    let url = base.join(&PublisherLayout::new(publisher.publisher()).bundle(&sha256));
    let mut receiver = FileReceiver::new(dir, article.bundle()).map_err(fetch)?;
    get_into(client, &url, article.bundle().size, |chunk| {
        receiver.accept(chunk)
    })
    .await
    .map_err(|e| match e {
        GetError::Network(reason) => BundleFetchError::Network {
            url: url.clone(),
            reason,
        },
        GetError::Fetch(source) => fetch(source),
    })?;
    let object = receiver.finish().map_err(fetch)?;
    check_bundle(object, article, publisher, limits)
}

fn check_bundle(
    object: VerifiedObject,
    article: &ArticleVersion,
    publisher: &(impl crate::keys::Trusted + ?Sized),
    limits: &BundleLimits,
) -> Result<FetchedBundle, BundleFetchError> {
    let bundle = bundle::verify_file(object.path(), publisher, limits)?;
    let m = bundle.manifest();
    if m.name() != article.name() || m.version() != article.version() {
        return Err(BundleFetchError::NotTheListedArticle {
            sha256: article.bundle().sha256,
            expected: format!("{} v{}", article.name(), article.version()),
            found: format!("{} v{}", m.name(), m.version()),
        });
    }
    Ok(FetchedBundle { object, bundle })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_are_followed_only_on_the_same_mirror() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        let from = url("http://m.example/qasid/v1/x");
        assert!(stays_on_mirror(&from, &url("http://m.example/other/path")));
        assert!(stays_on_mirror(&from, &url("https://m.example/qasid/v1/x")));
        assert!(stays_on_mirror(
            &url("http://m.example:80/a"),
            &url("http://M.EXAMPLE/b")
        ));
        for other in [
            "http://evil.example/qasid/v1/x",
            "http://m.example:8080/qasid/v1/x",
            "https://m.example:8443/qasid/v1/x",
            "http://127.0.0.1/qasid/v1/x",
            "http://m.example.evil.example/",
        ] {
            assert!(!stays_on_mirror(&from, &url(other)), "{other}");
        }
        let secure = url("https://m.example/qasid/v1/x");
        assert!(
            !stays_on_mirror(&secure, &url("http://m.example/qasid/v1/x")),
            "downgrade"
        );
        let loopback = url("http://127.0.0.1:8001/");
        assert!(
            !stays_on_mirror(&loopback, &url("http://127.0.0.1:8002/")),
            "another port"
        );
    }
}
