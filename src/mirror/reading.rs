//! The reader pages, mounted: `/` (publishers and current articles), `/read/<key hex>/<name>`
//! (redirect to the latest version), `/read/<key hex>/<name>/<version>/` (the article) and
//! `.../files/<path>` (the article's own files).
//!
//! Owns the link between stored content and [`crate::pages`]: listings come from each trusted
//! publisher's installed, verified index (on a front end over a bucket, the verified index of
//! the head it serves from the bucket, so every front end over one bucket shows the same
//! pages); an article is shown only from a bundle that
//! [`crate::bundle::extract_verified`] verified against the publisher's key in this process
//! (the extraction becomes visible only once every byte checked out), and a file is served
//! only if its path is in that bundle's signed manifest. Every page carries the pages' CSP;
//! files get a sandboxing CSP. It never renders HTML itself and never serves a path that the
//! request spelled: request paths are only ever compared with manifest paths.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;

use super::bucket_source::{BucketReadError, BucketSource, Loaded};
use super::extractions::{fresh_root, Extractions, OnDisk};
use super::serve::{etag_of, none_match};
use super::MirrorState;
use crate::bundle::{self, VerifiedBundle};
use crate::content_id::ContentId;
use crate::index::{Entry, Index, ObjectRef};
use crate::keys::PublicKey;
use crate::limits::{MAX_EXTRACTED_BYTES, MAX_RENDERED_ARTICLE_BYTES};
use crate::pages::{self, ArticleListing, ArticlePage, PublisherListing, SiteInfo};
use crate::store::{ObjectKind, PublisherId};

/// The CSP for a bundle's own files opened directly: nothing loads, and the document is
/// sandboxed (no script, unique origin), so an HTML or SVG file cannot act on this origin.
const FILE_CSP: &str = "default-src 'none'; sandbox";
const PAGE_CACHE: &str = "public, max-age=60";

/// A bundle verified and extracted in this process.
struct Extracted {
    verified: VerifiedBundle,
    dir: PathBuf,
}

impl OnDisk for Extracted {
    fn bytes(&self) -> u64 {
        let files = self.verified.manifest().files().iter().map(|f| f.size());
        files.sum()
    }
}

/// Verified extractions, one per bundle, made on first view and kept within
/// [`MAX_EXTRACTED_BYTES`] ([`Extractions`]). Each cell is filled by exactly one task while
/// others wait for it; a failed verification leaves the cell empty.
pub(super) struct Reading {
    extractions: Extractions<Extracted>,
}

impl Reading {
    /// Uses `root` (outside the served layout) for extractions; anything there from an earlier
    /// run is removed, so every bundle shown was verified by this process.
    pub(super) fn new(root: PathBuf) -> std::io::Result<Self> {
        fresh_root(&root)?;
        Ok(Self {
            extractions: Extractions::new(root, MAX_EXTRACTED_BYTES),
        })
    }

    async fn extracted(
        &self,
        state: &Arc<MirrorState>,
        publisher: &PublicKey,
        bundle: ObjectRef,
    ) -> Result<Arc<Extracted>, Response> {
        let cell = self.extractions.cell(bundle.sha256);
        let result = cell
            .get_or_try_init(|| async {
                let dir = self.extractions.dir(&bundle.sha256);
                let verified = match &state.bucket {
                    None => {
                        let zip = state.store.path(
                            &PublisherId::of(publisher),
                            &ObjectKind::Bundle(bundle.sha256),
                        );
                        let key = publisher.clone();
                        extract(state, bundle, &dir, move |limits, out| {
                            let file = std::fs::File::open(&zip)
                                .map_err(|source| bundle::BundleError::Io { path: zip, source })?;
                            bundle::extract_verified_reader(file, &key, limits, out)
                        })
                        .await?
                    }
                    Some(source) => {
                        extract_from_bucket(state, source, publisher, bundle, &dir).await?
                    }
                };
                Ok(Arc::new(Extracted { verified, dir }))
            })
            .await?
            .clone();
        drop(cell);
        self.extractions.admit(bundle.sha256);
        Ok(result)
    }
}

/// Reads a bundle from the front end's bucket (hash-checked against the index's sha256 by the
/// bucket source) and extracts it, verified against every key the publisher's roots delegated.
async fn extract_from_bucket(
    state: &MirrorState,
    source: &BucketSource,
    publisher: &PublicKey,
    bundle: ObjectRef,
    dir: &std::path::Path,
) -> Result<VerifiedBundle, Response> {
    let unavailable = |e: BucketReadError| match e {
        BucketReadError::Corrupt { .. } => error(
            StatusCode::BAD_GATEWAY,
            "This article's bundle did not verify, so it is not shown.",
        ),
        BucketReadError::Storage(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "This article cannot be read from storage right now. Try again shortly.",
        ),
    };
    let signers = source
        .bundle_signers(publisher)
        .await
        .map_err(unavailable)?;
    match source
        .load(publisher, ObjectKind::Bundle(bundle.sha256))
        .await
        .map_err(unavailable)?
    {
        Loaded::Missing => Err(error(
            StatusCode::NOT_FOUND,
            "This article's bundle is not on this mirror yet.",
        )),
        Loaded::Whole(bytes) => {
            extract(state, bundle, dir, move |limits, out| {
                bundle::extract_verified_reader(std::io::Cursor::new(bytes), &signers, limits, out)
            })
            .await
        }
        Loaded::Large(file, _) => {
            extract(state, bundle, dir, move |limits, out| {
                let reader = std::io::BufReader::new(file);
                bundle::extract_verified_reader(reader, &signers, limits, out)
            })
            .await
        }
    }
}

/// Runs `verify_into(limits, dir)` (a verified extraction) on the blocking pool into a fresh
/// `dir`; a failure is logged, counted and answered with an error page, never article text.
async fn extract(
    state: &MirrorState,
    bundle: ObjectRef,
    dir: &std::path::Path,
    verify_into: impl FnOnce(
            &crate::limits::BundleLimits,
            &std::path::Path,
        ) -> Result<VerifiedBundle, bundle::BundleError>
        + Send
        + 'static,
) -> Result<VerifiedBundle, Response> {
    let limits = state.bundle_limits.clone();
    let verify_dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        if verify_dir.exists() {
            std::fs::remove_dir_all(&verify_dir).map_err(|e| bundle::BundleError::Io {
                path: verify_dir.clone(),
                source: e,
            })?;
        }
        verify_into(&limits, &verify_dir)
    })
    .await
    .map_err(|e| {
        tracing::error!("verification task failed: {e}");
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "This article could not be opened.",
        )
    })?
    .map_err(|e| {
        tracing::warn!(bundle = %bundle.sha256, "stored bundle failed verification: {e}");
        state.metrics.verification_failure("stored_bundle");
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "This article's bundle did not verify, so it is not shown.",
        )
    })
}

/// The index pages show for `publisher`: on a front end over a bucket, the bucket's verified
/// one (see [`BucketSource::index`]); else the store's installed one. An index that cannot be
/// had is logged and answered with the error page to send.
async fn installed_index(
    state: &Arc<MirrorState>,
    publisher: &PublicKey,
) -> Result<Option<Arc<Index>>, Response> {
    let unavailable = |status| error(status, "This publisher's index is unavailable.");
    if let Some(source) = &state.bucket {
        return source.index(publisher).await.map_err(|e| match e {
            BucketReadError::Corrupt { .. } => unavailable(StatusCode::BAD_GATEWAY),
            BucketReadError::Storage(e) => {
                tracing::warn!(publisher = %publisher.id(), "index unreadable: {e}");
                unavailable(StatusCode::SERVICE_UNAVAILABLE)
            }
        });
    }
    let task_state = state.clone();
    let key = publisher.clone();
    match tokio::task::spawn_blocking(move || task_state.store.index(&key)).await {
        Ok(Ok(index)) => Ok(index),
        Ok(Err(e)) => {
            tracing::warn!(publisher = %publisher.id(), "index unreadable: {e}");
            Err(unavailable(StatusCode::INTERNAL_SERVER_ERROR))
        }
        Err(e) => {
            tracing::error!("index task failed: {e}");
            Err(unavailable(StatusCode::INTERNAL_SERVER_ERROR))
        }
    }
}

/// An HTML error page with the page headers.
fn error(status: StatusCode, message: &str) -> Response {
    page_response(status, pages::error_page(status.as_u16(), message), None)
}

fn page_response(status: StatusCode, html: String, etag: Option<String>) -> Response {
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(
            header::CONTENT_SECURITY_POLICY,
            pages::CONTENT_SECURITY_POLICY,
        )
        .header(header::CACHE_CONTROL, PAGE_CACHE);
    if let Some(etag) = etag {
        builder = builder.header(header::ETAG, etag);
    }
    builder
        .body(Body::from(html))
        .expect("static headers are valid")
}

/// `GET /`: every trusted publisher in configuration order, with its current articles (a
/// publisher whose index is unavailable is left out, and logged).
pub(super) async fn home(state: Arc<MirrorState>) -> Response {
    let mut listings = Vec::new();
    for trusted in &state.trust().publishers {
        let Ok(Some(index)) = installed_index(&state, &trusted.key).await else {
            continue;
        };
        let head = index.head();
        listings.push(PublisherListing {
            publisher: trusted.key.clone(),
            name: trusted.name.clone(),
            sequence: head.sequence(),
            issued: humantime::format_rfc3339_seconds(head.issued()).to_string(),
            expires: humantime::format_rfc3339_seconds(head.expires()).to_string(),
            expired: index.freshness(std::time::SystemTime::now())
                != crate::index::Freshness::Fresh,
            articles: index
                .current()
                .into_iter()
                .map(|(_, a)| ArticleListing {
                    name: a.name().to_owned(),
                    version: a.version(),
                    title: a.title().to_owned(),
                    date: a.date().to_owned(),
                    language: a.language().to_owned(),
                    bundle_sha256: a.bundle().sha256,
                })
                .collect(),
            mirrors: head
                .mirrors()
                .iter()
                .map(|m| m.as_str().to_owned())
                .collect(),
        });
    }
    page_response(
        StatusCode::OK,
        pages::home_page(&state.site, &listings),
        None,
    )
}

/// What a `/read/...` path asks for.
#[derive(Debug, PartialEq, Eq)]
enum ReadPath {
    Latest {
        publisher: PublisherId,
        name: String,
    },
    Article {
        publisher: PublisherId,
        name: String,
        version: u64,
    },
    File {
        publisher: PublisherId,
        name: String,
        version: u64,
        path: String,
    },
}

/// Parses the part after `/read/`. Names are slugs, versions decimal; a file path is
/// percent-decoded (it is only ever compared with manifest paths).
fn parse_read_path(rest: &str) -> Option<ReadPath> {
    let mut parts = rest.splitn(5, '/');
    let publisher: PublisherId = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return None;
    }
    let name = name.to_owned();
    let version = match parts.next() {
        None | Some("") => {
            return parts
                .next()
                .is_none()
                .then_some(ReadPath::Latest { publisher, name })
        }
        Some(v)
            if v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) && !v.starts_with('0') =>
        {
            v.parse().ok()?
        }
        Some(_) => return None,
    };
    match (parts.next(), parts.next()) {
        (None | Some(""), None) => Some(ReadPath::Article {
            publisher,
            name,
            version,
        }),
        (Some("files"), Some(path)) if !path.is_empty() => {
            let path = percent_encoding::percent_decode_str(path)
                .decode_utf8()
                .ok()?
                .into_owned();
            Some(ReadPath::File {
                publisher,
                name,
                version,
                path,
            })
        }
        _ => None,
    }
}

/// `GET /read/...`.
pub(super) async fn read(
    state: Arc<MirrorState>,
    rest: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            "There is no such article on this mirror.",
        )
    };
    let Some(request) = parse_read_path(rest) else {
        return not_found();
    };
    let publisher = match &request {
        ReadPath::Latest { publisher, .. }
        | ReadPath::Article { publisher, .. }
        | ReadPath::File { publisher, .. } => *publisher,
    };
    let Some(trusted) = state.trusted(&publisher) else {
        return not_found();
    };
    let index = match installed_index(&state, &trusted).await {
        Ok(Some(index)) => index,
        Ok(None) => return not_found(),
        Err(response) => return response,
    };
    let (name, version, file) = match request {
        ReadPath::Latest { name, .. } => {
            let Some((_, current)) = index.current().into_iter().find(|(_, a)| a.name() == name)
            else {
                return not_found();
            };
            let location = pages::article_url(&trusted, current.name(), current.version());
            return Response::builder()
                .status(StatusCode::FOUND)
                .header(header::LOCATION, location)
                .header(header::CACHE_CONTROL, PAGE_CACHE)
                .body(Body::empty())
                .expect("a URL built from validated parts is a valid header");
        }
        ReadPath::Article { name, version, .. } => (name, version, None),
        ReadPath::File {
            name,
            version,
            path,
            ..
        } => (name, version, Some(path)),
    };
    let bundle = index.entries().iter().rev().find_map(|e| match e {
        Entry::Add(a) if a.name() == name && a.version() == version => Some(a.bundle()),
        _ => None,
    });
    let Some(bundle) = bundle else {
        return not_found();
    };
    let extracted = match state.reading.extracted(&state, &trusted, bundle).await {
        Ok(e) => e,
        Err(response) => return response,
    };
    let mirrors: Vec<String> = index
        .head()
        .mirrors()
        .iter()
        .map(|m| m.as_str().to_owned())
        .collect();
    match file {
        None => article(&state, &trusted, bundle, &extracted, headers, mirrors).await,
        Some(path) => asset(&extracted, &path, method).await,
    }
}

async fn article(
    state: &MirrorState,
    publisher: &PublicKey,
    bundle: ObjectRef,
    extracted: &Extracted,
    headers: &HeaderMap,
    mirrors: Vec<String>,
) -> Response {
    // The page is a function of the bundle and the signed mirror list: both make its validator.
    let etag = etag_of(&ContentId::of_bytes(
        format!("{}\n{}", bundle.sha256, mirrors.join("\n")).as_bytes(),
    ));
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match(v, &etag))
    {
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, etag)
            .header(header::CACHE_CONTROL, PAGE_CACHE)
            .body(Body::empty())
            .expect("valid headers");
    }
    let m = extracted.verified.manifest();
    let article_path = extracted.dir.join("article.md");
    let markdown = tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut text = String::new();
        std::fs::File::open(&article_path)?
            .take(MAX_RENDERED_ARTICLE_BYTES)
            .read_to_string(&mut text)?;
        Ok::<_, std::io::Error>(text)
    })
    .await;
    let markdown = match markdown {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => {
            tracing::warn!("article.md unreadable: {e}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "This article could not be opened.",
            );
        }
        Err(e) => {
            tracing::error!("article task failed: {e}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "This article could not be opened.",
            );
        }
    };
    let page = ArticlePage {
        publisher: publisher.clone(),
        publisher_name: state.trusted_name(publisher),
        name: m.name().to_owned(),
        version: m.version(),
        title: m.title().to_owned(),
        author: m.author().to_owned(),
        date: m.created().to_owned(),
        language: m.language().to_owned(),
        bundle_sha256: bundle.sha256,
        bundle_size: bundle.size,
        manifest_sha256: extracted.verified.manifest_id(),
        files: m
            .files()
            .iter()
            .map(|f| f.path().as_str().to_owned())
            .collect(),
        attachments: m
            .files()
            .iter()
            .filter(|f| {
                let path = f.path().as_str();
                path != "article.md" && !content_type(path).starts_with("image/")
            })
            .map(|f| pages::Attachment {
                path: f.path().as_str().to_owned(),
                size: f.size(),
                content_type: content_type(f.path().as_str()).to_owned(),
            })
            .collect(),
        mirrors,
        markdown,
    };
    page_response(StatusCode::OK, pages::article_page(&page), Some(etag))
}

/// One file of a verified bundle, by its manifest path.
async fn asset(extracted: &Extracted, path: &str, method: &Method) -> Response {
    let Some(entry) = extracted
        .verified
        .manifest()
        .files()
        .iter()
        .find(|f| f.path().as_str() == path)
    else {
        return error(StatusCode::NOT_FOUND, "This article has no such file.");
    };
    // Manifest paths are validated entry names: relative, no `.`/`..`/empty parts.
    let file = entry
        .path()
        .components()
        .fold(extracted.dir.clone(), |p, c| p.join(c));
    let builder = Response::builder()
        .header(header::CONTENT_TYPE, content_type(path))
        .header(header::CONTENT_SECURITY_POLICY, FILE_CSP)
        .header(header::CACHE_CONTROL, PAGE_CACHE)
        .header(header::ETAG, etag_of(&entry.sha256()))
        .header(header::CONTENT_LENGTH, HeaderValue::from(entry.size()));
    if method == Method::HEAD {
        return builder.body(Body::empty()).expect("valid headers");
    }
    match tokio::fs::File::open(&file).await {
        Ok(f) => builder
            .body(Body::from_stream(tokio_util::io::ReaderStream::new(
                tokio::io::AsyncReadExt::take(f, entry.size()),
            )))
            .expect("valid headers"),
        Err(e) => {
            tracing::warn!("verified file unreadable: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "This file could not be opened.",
            )
        }
    }
}

/// A content type by extension. Markup formats that could run script if rendered (HTML, SVG
/// too is sandboxed by the CSP) are sent as plain text.
fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("avif") => "image/avif",
        Some("svg") => "image/svg+xml",
        Some("md" | "txt" | "html" | "htm" | "xml" | "csv") => "text/plain; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("pdf") => "application/pdf",
        Some("mp3") => "audio/mpeg",
        Some("ogg" | "oga") => "audio/ogg",
        Some("mp4") => "video/mp4",
        Some("webm") => "video/webm",
        _ => "application/octet-stream",
    }
}

/// The site name shown on the home page.
pub(super) fn site_info(name: &str) -> SiteInfo {
    SiteInfo {
        name: name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn read_paths() {
        let p: PublisherId = P.parse().unwrap();
        assert_eq!(
            parse_read_path(&format!("{P}/launch")),
            Some(ReadPath::Latest {
                publisher: p,
                name: "launch".into()
            })
        );
        assert_eq!(
            parse_read_path(&format!("{P}/launch/2/")),
            Some(ReadPath::Article {
                publisher: p,
                name: "launch".into(),
                version: 2
            })
        );
        assert_eq!(
            parse_read_path(&format!("{P}/launch/2/files/images/a%20map.png")),
            Some(ReadPath::File {
                publisher: p,
                name: "launch".into(),
                version: 2,
                path: "images/a map.png".into()
            })
        );
        for bad in [
            format!("{P}/../x"),
            format!("{P}/Launch/1/"),
            format!("{P}/launch/01/"),
            format!("{P}/launch/x/"),
            format!("{P}/launch/1/other/x"),
            format!("{P}/launch/1/files/"),
            format!("{P}/launch/1/files/%ff"),
            "zz/launch".to_owned(),
        ] {
            assert_eq!(parse_read_path(&bad), None, "{bad}");
        }
    }
}
