//! The mirror's HTTP server: the static layout read from the store, publisher pushes, the
//! reader pages, `/healthz` and `/metrics`.
//!
//! Owns routing and the headers every response carries. Requests are classified by their raw
//! path: layout objects go through [`route`]'s strict parser (nothing is percent-decoded, so
//! only validated hex names reach the store), pages through [`reading`]. Only trusted
//! publishers are served or accepted. It never verifies content itself (the store and the
//! bundle and index modules do), never serves a path it did not parse, and never leaks an
//! internal path or error detail in a response (those go to the log).
//!
//! - [`client`]: the publisher's side, `qasid push`.
//! - `conn`: accept loop, connection limit, timeouts, graceful shutdown.
//! - `route`: URL path → store object.
//! - `serve`: GET/HEAD of objects (ETag, 304, Range, cache headers, streaming).
//! - [`bucket_source`]: objects read from a bucket and verified, for front ends over one;
//!   [`object_cache`] its bounded LRU cache.
//! - `push`: PUT of objects (caps, hash check, verification, JSON errors).
//! - `reading`: the reader pages.
//! - `metrics`: counters and gauges for `/metrics`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;

use crate::config::Config;
use crate::keys::PublicKey;
use crate::limits::{BundleLimits, IndexLimits};
use crate::pages::SiteInfo;
use crate::store::{PublisherId, Store};

pub mod bucket_source;
pub mod client;
mod conn;
mod extractions;
mod log;
mod metrics;
pub mod object_cache;
mod push;
mod reading;
mod route;
mod serve;

use conn::{ConnControl, ConnLimits};
pub use metrics::{Metrics, PushOutcome, RouteClass, UpstreamState};

/// A publisher this mirror carries.
#[derive(Debug, Clone)]
struct TrustedPublisher {
    key: PublicKey,
    /// Display name from the configuration.
    name: Option<String>,
}

/// Why the mirror could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The reading cache folder could not be prepared.
    #[error("preparing {path}: {source}")]
    Prepare {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The listener failed.
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
    /// The bucket of a front end (`--store s3://…`) cannot be used.
    #[error(transparent)]
    Bucket(#[from] crate::bucket::BucketError),
}

impl MirrorError {
    pub fn class(&self) -> crate::ErrorClass {
        match self {
            MirrorError::Bucket(e) => e.class(),
            _ => crate::ErrorClass::Runtime,
        }
    }
}

/// The part of the configuration a reload may change: whom to trust and how much to accept.
struct Trust {
    /// Trusted publishers in configuration order (the home page's order).
    publishers: Vec<TrustedPublisher>,
    by_id: HashMap<PublisherId, usize>,
    max_push_bytes: u64,
    /// Slowest push body accepted (bytes/s on average, after `conn.header_timeout`).
    min_body_rate: u64,
}

impl Trust {
    fn new(config: &Config) -> Self {
        let mut publishers = Vec::new();
        let mut by_id = HashMap::new();
        for p in &config.publishers {
            let id = PublisherId::of(&p.key);
            if by_id.contains_key(&id) {
                continue;
            }
            by_id.insert(id, publishers.len());
            publishers.push(TrustedPublisher {
                key: p.key.clone(),
                name: p.name.clone(),
            });
        }
        Self {
            publishers,
            by_id,
            max_push_bytes: config.mirror.max_push_bytes,
            min_body_rate: config.mirror.min_body_rate,
        }
    }
}

fn conn_limits(config: &Config) -> ConnLimits {
    ConnLimits {
        max_connections: config.mirror.max_connections,
        header_timeout: config.mirror.header_timeout,
        idle_timeout: config.mirror.idle_timeout,
        max_per_address: config.mirror.per_address_cap(),
        shutdown_grace: config.mirror.shutdown_grace,
    }
}

/// Everything request handlers share.
pub struct MirrorState {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    /// Swapped whole on reload; a request holds the `Arc` it started with, so it sees one
    /// consistent configuration. A std `RwLock`: it is held only to clone the `Arc`.
    trust: RwLock<Arc<Trust>>,
    bundle_limits: BundleLimits,
    index_limits: IndexLimits,
    site: SiteInfo,
    reading: reading::Reading,
    /// The connection limits and slots, shared with the accept loops; a reload changes them
    /// before it returns (see [`MirrorState::reload`]).
    conn: Arc<ConnControl>,
    log: log::RequestLog,
    /// For a front end over a bucket (`--store s3://…`): where layout objects are read from,
    /// verified, instead of the store's folder (which is then the work folder).
    bucket: Option<Arc<bucket_source::BucketSource>>,
}

impl MirrorState {
    /// Builds the state from a validated configuration and an open store.
    pub fn new(
        config: &Config,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, MirrorError> {
        let read_dir = store.root().join(".state").join("read");
        let reading =
            reading::Reading::new(read_dir.clone()).map_err(|source| MirrorError::Prepare {
                path: read_dir.display().to_string(),
                source,
            })?;
        store
            .set_staging_limits(config.mirror.staging)
            .map_err(|e| MirrorError::Prepare {
                path: store
                    .root()
                    .join(".state")
                    .join("staged")
                    .display()
                    .to_string(),
                source: std::io::Error::other(e),
            })?;
        // A front end reads through the store's bucket client when it has one (the daemon
        // connects it for pushes), else through a read-only one of its own.
        let bucket = match (&config.mirror.bucket, store.bucket()) {
            (None, _) => None,
            (Some(url), existing) => {
                let client = match existing {
                    Some(b) => b.clone(),
                    None => crate::bucket::Bucket::new(
                        url,
                        &config.s3,
                        &crate::bucket::Environment::from_process()?,
                        crate::bucket::Access::Read,
                        crate::limits::BucketLimits::default(),
                    )?,
                };
                let settings = bucket_source::BucketSettings {
                    limits: config.mirror.front_end,
                    max_object_bytes: BundleLimits::default().max_bundle_bytes,
                    spool_dir: store.tmp_dir().to_owned(),
                };
                Some(Arc::new(bucket_source::BucketSource::new(
                    client,
                    settings,
                    metrics.clone(),
                )))
            }
        };
        Ok(Self {
            store,
            metrics,
            trust: RwLock::new(Arc::new(Trust::new(config))),
            bundle_limits: BundleLimits::default(),
            index_limits: IndexLimits::default(),
            site: reading::site_info("qasid mirror"),
            reading,
            conn: ConnControl::new(conn_limits(config)),
            log: log::RequestLog::new(&config.mirror),
            bucket,
        })
    }

    /// The bucket a front end serves from (`--store s3://…`), if it is one.
    pub fn bucket_source(&self) -> Option<&Arc<bucket_source::BucketSource>> {
        self.bucket.as_ref()
    }

    /// Applies a new configuration's publishers, push cap, connection limits and logging to
    /// the running server. Requests in flight finish under the settings they started with;
    /// open connections stay open (a lower connection limit takes effect as they close).
    /// The listen address, store and retention are fixed for the process's life.
    pub fn reload(&self, config: &Config) {
        *self.trust.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Trust::new(config));
        self.conn.set(conn_limits(config));
        if let Err(e) = self.store.set_staging_limits(config.mirror.staging) {
            tracing::warn!("applying the new staging limits: {e}");
        }
        self.log.reload(&config.mirror);
    }

    fn trust(&self) -> Arc<Trust> {
        self.trust.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The trusted key for a publisher folder, if this mirror carries it.
    pub fn trusted(&self, id: &PublisherId) -> Option<PublicKey> {
        let trust = self.trust();
        trust
            .by_id
            .get(id)
            .map(|&i| trust.publishers[i].key.clone())
    }

    fn trusted_name(&self, key: &PublicKey) -> Option<String> {
        let trust = self.trust();
        let i = *trust.by_id.get(&PublisherId::of(key))?;
        trust.publishers[i].name.clone()
    }

    fn store_index_limits(&self) -> &IndexLimits {
        &self.index_limits
    }
}

/// Serves the mirror on `listener` until `shutdown` completes; then stops accepting, lets
/// requests in flight finish (up to the configured grace period) and returns.
pub async fn run(
    listener: TcpListener,
    state: Arc<MirrorState>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), MirrorError> {
    let control = state.conn.clone();
    conn::serve(listener, router(state), control, shutdown)
        .await
        .map_err(MirrorError::Serve)
}

/// The mirror's routes and middleware.
pub fn router(state: Arc<MirrorState>) -> Router {
    let compress_json_and_html = |_: StatusCode, _, headers: &axum::http::HeaderMap, _: &_| {
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/html"))
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/", get(home))
        .route("/read/{*rest}", get(read))
        .route(crate::pages::READER_PAGE_PATH, get(reader_page))
        // Layout paths are matched by `route::parse` on the raw path, not by the router (which
        // would percent-decode them first).
        .fallback(object)
        .layer(CompressionLayer::new().compress_when(compress_json_and_html))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            common_headers,
        ))
        .with_state(state)
}

/// Counts every request and sets the headers every response carries.
async fn common_headers(
    State(state): State<Arc<MirrorState>>,
    request: Request,
    next: Next,
) -> Response {
    let class = classify(request.method(), request.uri().path());
    let access = state.log.access_enabled().then(|| {
        (
            request.method().clone(),
            request.uri().path().to_owned(),
            std::time::Instant::now(),
        )
    });
    let mut response = next.run(request).await;
    if let Some((method, path, started)) = access {
        let bytes = axum::body::HttpBody::size_hint(response.body()).exact();
        state
            .log
            .access(&method, &path, response.status(), bytes, started.elapsed());
    }
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A compressed body is a different representation: its validator must be weak.
    if headers.contains_key(header::CONTENT_ENCODING) {
        if let Some(tag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok()) {
            if !tag.starts_with("W/") {
                if let Ok(weak) = HeaderValue::from_str(&format!("W/{tag}")) {
                    headers.insert(header::ETAG, weak);
                }
            }
        }
    }
    state.metrics.request(class, response.status().as_u16());
    response
}

fn classify(method: &Method, path: &str) -> RouteClass {
    if method == Method::PUT {
        RouteClass::Push
    } else if path.starts_with("/qasid/") {
        if path.ends_with("/index.json") {
            RouteClass::Index
        } else {
            RouteClass::Object
        }
    } else if path == "/" || path.starts_with("/read/") || path == "/reader.html" {
        RouteClass::Page
    } else if path == "/healthz" || path == "/metrics" {
        RouteClass::Ops
    } else {
        RouteClass::Other
    }
}

/// A short plain-text error (layout routes, where a client is a program, not a browser).
fn plain_error(status: StatusCode, message: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

async fn healthz() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        "ok\n",
    )
        .into_response()
}

async fn metrics_text(State(state): State<Arc<MirrorState>>) -> Response {
    let text = state.metrics.render(state.store.counts());
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

async fn home(State(state): State<Arc<MirrorState>>) -> Response {
    reading::home(state).await
}

async fn read(State(state): State<Arc<MirrorState>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let rest = parts.uri.path().strip_prefix("/read/").unwrap_or("");
    reading::read(state.clone(), rest, &parts.method, &parts.headers).await
}

/// Everything the router does not match: a layout object (the raw path parsed strictly) or
/// 404. GET and HEAD read, PUT pushes, other methods get 405.
async fn object(State(state): State<Arc<MirrorState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(path) = route::parse(parts.uri.path()) else {
        return plain_error(StatusCode::NOT_FOUND, "not found");
    };
    if parts.method == Method::PUT {
        return push::put(state, path, &parts.headers, body).await;
    }
    if parts.method == Method::OPTIONS {
        return with_cors(cors_preflight());
    }
    if parts.method != Method::GET && parts.method != Method::HEAD {
        let mut response = plain_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, PUT"));
        return response;
    }
    if state.trusted(&path.publisher).is_none() {
        return with_cors(plain_error(StatusCode::NOT_FOUND, "not found"));
    }
    with_cors(serve::object(state, path, &parts.method, &parts.headers).await)
}

/// Lets a page from any origin (the shared reader page, opened from `file://` or another
/// mirror) read the layout: public data, never with credentials, so `*` is right. ETag and
/// Content-Range are exposed for revalidation and resumed downloads (PROTOCOL.md section 9).
fn with_cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("ETag, Content-Range, Content-Length"),
    );
    response
}

/// The answer to a CORS preflight on a layout path: reads only.
fn cors_preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD"),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, "Range, If-None-Match"),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
        .into_response()
}

/// `/reader.html`: the verifying reader page, pinned to the publishers this mirror carries. It
/// reads from this mirror's origin and learns the others from the signed indexes.
async fn reader_page(State(state): State<Arc<MirrorState>>) -> Response {
    let page = crate::reader_page::build(&crate::reader_page::PageConfig {
        publishers: state
            .trust()
            .publishers
            .iter()
            .map(|p| p.key.clone().into())
            .collect(),
        mirrors: Vec::new(),
    });
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        page.html,
    )
        .into_response()
}
