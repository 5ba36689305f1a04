//! S3-compatible buckets as stores: a store location is a folder or `s3://bucket/prefix`, and
//! [`Bucket`] is the one client every bucket reader and writer goes through (the `object_store`
//! crate's S3 implementation, configured and bounded here).
//!
//! Owns: parsing locations ([`Location`], [`BucketUrl`]), the connection settings (the standard
//! AWS variables, then `[s3]` in `mirrors.toml`; see [`Settings`]), the bounds on every request
//! (timeouts, retries, pool, body caps from [`crate::limits::BucketLimits`]), and the mapping of
//! the store's failures to one-line errors with an exit code ([`BucketError`]). Keys passed in
//! are relative to the location's prefix (`qasid/v1/...`), so callers never build a bucket key
//! from an untrusted string. It decides nothing about trust: what a bucket holds is unverified
//! bytes until the index and bundle verifiers have checked them, and what is written to one is
//! decided by its callers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as KeyPath;
use object_store::{
    Attribute, Attributes, ClientOptions, ObjectStore, ObjectStoreExt as _, PutOptions, PutPayload,
    RetryConfig, WriteMultipart,
};

use crate::limits::BucketLimits;
use crate::ErrorClass;

mod error;
mod profile;

pub mod upload;

pub use error::BucketError;
pub use profile::{Profile, ProfileFiles};

/// The scheme of a bucket location.
pub const SCHEME: &str = "s3://";

/// Where a store lives: a local folder, or a prefix in an S3-compatible bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Folder(PathBuf),
    Bucket(BucketUrl),
}

impl Location {
    /// `s3://bucket/prefix` is a bucket; anything else a folder path.
    pub fn parse(text: &str) -> Result<Location, BucketError> {
        if text.starts_with(SCHEME) {
            Ok(Location::Bucket(BucketUrl::parse(text)?))
        } else {
            Ok(Location::Folder(PathBuf::from(text)))
        }
    }
}

/// `s3://bucket/prefix`: a bucket name (S3's rules: 3 to 63 of `a-z 0-9 . -`) and an optional
/// prefix of `/`-separated parts (no empty, `.` or `..` parts), with no trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketUrl {
    bucket: String,
    prefix: String,
}

impl BucketUrl {
    pub fn parse(text: &str) -> Result<BucketUrl, BucketError> {
        let bad = |reason: &str| BucketError::BadLocation {
            location: crate::shown::escaped(text.as_bytes()),
            reason: reason.to_owned(),
        };
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("expected s3://bucket/prefix"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_end_matches('/');
        let name_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-'))
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        if !name_ok {
            return Err(bad(
                "a bucket name is 3 to 63 lowercase letters, digits, dots and hyphens",
            ));
        }
        if !prefix.is_empty()
            && prefix.split('/').any(|part| {
                part.is_empty()
                    || part == "."
                    || part == ".."
                    || part.chars().any(|c| c.is_control() || c == '\\')
            })
        {
            return Err(bad(
                "the prefix's parts must be non-empty, not . or .., without controls or backslashes",
            ));
        }
        Ok(BucketUrl {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix inside the bucket, without leading or trailing slash (empty for the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full key of `relative` (a layout path such as `qasid/v1/publishers/...`).
    fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }

    /// A folder name for this location's local work folder: readable and unique.
    pub fn work_folder_name(&self) -> String {
        let readable: String = format!("{}/{}", self.bucket, self.prefix)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(60)
            .collect();
        let hash = crate::content_id::ContentId::of_bytes(self.to_string().as_bytes());
        format!("{readable}-{}", &hash.to_string()[..12])
    }
}

impl std::fmt::Display for BucketUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "{SCHEME}{}", self.bucket)
        } else {
            write!(f, "{SCHEME}{}/{}", self.bucket, self.prefix)
        }
    }
}

/// `[s3]` in `mirrors.toml`: the endpoint of an S3-compatible service other than AWS (Garage,
/// R2, B2, MinIO), its region, and path-style addressing. The environment
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`) overrides these, as in AWS's own tools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `https://…` (or `http://` on loopback only). None: AWS S3 in `region`.
    pub endpoint: Option<String>,
    /// None: `us-east-1` (Garage's default region is `garage`, R2's `auto`).
    pub region: Option<String>,
    /// Bucket in the URL path (`https://endpoint/bucket/key`) rather than in the host name
    /// (`https://bucket.endpoint/key`). None: path style with a custom endpoint (what Garage
    /// and MinIO answer by default), virtual-hosted on AWS.
    pub path_style: Option<bool>,
}

/// Whether the caller writes (credentials required) or only reads (anonymous when none are
/// set, for public buckets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Reads that list the bucket (`qasid status`): credentials required, since no bucket
    /// qasid writes allows anonymous listing.
    List,
    Write,
}

/// What a bucket says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the location's prefix.
    pub key: String,
    pub size: u64,
    /// The ETag without quotes (for single-part uploads the MD5 of the bytes, hex).
    pub etag: Option<String>,
    pub last_modified: SystemTime,
}

/// How an object should be cached and typed when served straight from the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectAttrs {
    pub content_type: &'static str,
    pub cache_control: &'static str,
}

/// An object being read: its size and ETag, and its bytes as a stream (bounded by the caller's
/// cap: the stream ends in an error past it).
pub struct Download {
    pub info: ObjectInfo,
    pub body: futures_util::stream::BoxStream<'static, Result<Bytes, BucketError>>,
}

/// What a conditional GET ([`Bucket::get_if_changed`]) found.
pub enum Changed {
    Missing,
    /// Still the ETag asked about.
    Unchanged,
    Changed(Download),
}

/// A connected bucket location. Cheap to clone; share it between tasks.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<AmazonS3>,
    url: BucketUrl,
    /// The endpoint requests go to, for messages.
    endpoint: String,
    limits: BucketLimits,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bucket({} at {})", self.url, self.endpoint)
    }
}

/// The standard AWS variables read by [`Bucket::connect`] (a contract).
pub const ENV_ACCESS_KEY: &str = "AWS_ACCESS_KEY_ID";
pub const ENV_SECRET_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub const ENV_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
pub const ENV_REGION: &str = "AWS_REGION";
pub const ENV_ENDPOINT: &str = "AWS_ENDPOINT_URL";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The standard AWS variables, completed from an AWS profile, read once
/// ([`Environment::from_process`]) or given (tests, callers with credentials of their own).
/// Empty values count as unset.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Environment {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// The profile's region and endpoint: used only when neither the variables nor
    /// `mirrors.toml`'s `[s3]` give one (a default profile for AWS must not send a Garage
    /// store configured in `mirrors.toml` elsewhere).
    pub profile_region: Option<String>,
    pub profile_endpoint: Option<String>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Environment")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Environment {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` and
    /// `AWS_ENDPOINT_URL` of this process, completed from its AWS profile ([`ProfileFiles`]):
    /// the variables win; credentials count as a unit (key id and secret from the variables,
    /// else all from the profile).
    pub fn from_process() -> Result<Environment, BucketError> {
        let vars = Environment {
            access_key_id: env(ENV_ACCESS_KEY),
            secret_access_key: env(ENV_SECRET_KEY),
            session_token: env(ENV_SESSION_TOKEN),
            region: env(ENV_REGION),
            endpoint: env(ENV_ENDPOINT),
            ..Environment::default()
        };
        let profile = ProfileFiles::from_vars(env).load()?;
        Ok(vars.with_profile(profile.unwrap_or_default()))
    }

    /// These variables, completed from `profile`.
    pub fn with_profile(mut self, profile: Profile) -> Environment {
        let vars_have_keys = self.access_key_id.is_some() && self.secret_access_key.is_some();
        if !vars_have_keys && profile.access_key_id.is_some() && profile.secret_access_key.is_some()
        {
            self.access_key_id = profile.access_key_id;
            self.secret_access_key = profile.secret_access_key;
            self.session_token = profile.session_token;
        }
        self.profile_region = profile.region;
        self.profile_endpoint = profile.endpoint;
        self
    }
}

/// Whether a plain-http endpoint's host is this machine (the only place http:// is allowed:
/// anything else would send the signed requests and the bytes in the clear).
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Bucket {
    /// Builds the client for `url` from the environment and `settings` and checks that the
    /// bucket answers (one small listing): wrong credentials, a missing bucket or an
    /// unreachable endpoint are reported here, before any work.
    pub async fn connect(
        url: &BucketUrl,
        settings: &Settings,
        access: Access,
    ) -> Result<Bucket, BucketError> {
        let environment = Environment::from_process()?;
        let bucket = Self::new(url, settings, &environment, access, BucketLimits::default())?;
        bucket.probe().await?;
        Ok(bucket)
    }

    /// Builds the client without any request.
    pub fn new(
        url: &BucketUrl,
        settings: &Settings,
        environment: &Environment,
        access: Access,
        limits: BucketLimits,
    ) -> Result<Bucket, BucketError> {
        // reqwest 0.13 (object_store's transport) runs rustls without a bundled provider; ring
        // is the one already built for the rest of qasid. A second install is a no-op error.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let region = (environment.region.clone())
            .or_else(|| settings.region.clone())
            .or_else(|| environment.profile_region.clone())
            .unwrap_or_else(|| "us-east-1".to_owned());
        let endpoint = (environment.endpoint.clone())
            .or_else(|| settings.endpoint.clone())
            .or_else(|| environment.profile_endpoint.clone());
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(url.bucket())
            .with_region(&region)
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(limits.connect_timeout)
                    .with_timeout(limits.request_timeout)
                    .with_pool_idle_timeout(Duration::from_secs(30))
                    .with_pool_max_idle_per_host(limits.max_parallel)
                    .with_allow_http(true),
            )
            .with_retry(RetryConfig {
                max_retries: limits.max_retries,
                retry_timeout: limits.retry_timeout,
                ..RetryConfig::default()
            });
        let shown_endpoint;
        match &endpoint {
            Some(text) => {
                let parsed = reqwest::Url::parse(text).map_err(|_| BucketError::BadEndpoint {
                    endpoint: crate::shown::escaped(text.as_bytes()),
                    reason: "not a URL like https://s3.example.org".into(),
                })?;
                match parsed.scheme() {
                    "https" => {}
                    "http" if is_loopback(&parsed) => {}
                    "http" => {
                        return Err(BucketError::BadEndpoint {
                            endpoint: crate::shown::escaped(text.as_bytes()),
                            reason: "plain http:// is allowed only on loopback (127.0.0.1, ::1, \
                                     localhost); use https://"
                                .into(),
                        })
                    }
                    _ => {
                        return Err(BucketError::BadEndpoint {
                            endpoint: crate::shown::escaped(text.as_bytes()),
                            reason: "expected an https:// URL".into(),
                        })
                    }
                }
                let text = text.trim_end_matches('/');
                let path_style = settings.path_style.unwrap_or(true);
                if path_style {
                    builder = builder.with_endpoint(text);
                } else {
                    let mut host = parsed.clone();
                    let name = format!("{}.{}", url.bucket(), parsed.host_str().unwrap_or(""));
                    host.set_host(Some(&name))
                        .map_err(|_| BucketError::BadEndpoint {
                            endpoint: crate::shown::escaped(text.as_bytes()),
                            reason: "cannot put the bucket name in front of its host".into(),
                        })?;
                    builder = builder
                        .with_endpoint(host.as_str().trim_end_matches('/'))
                        .with_virtual_hosted_style_request(true);
                }
                shown_endpoint = text.to_owned();
            }
            None => {
                if settings.path_style != Some(true) {
                    builder = builder.with_virtual_hosted_style_request(false);
                }
                shown_endpoint = format!("AWS S3 ({region})");
            }
        }
        match (
            environment.access_key_id.clone(),
            environment.secret_access_key.clone(),
        ) {
            (Some(id), Some(secret)) => {
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
                if let Some(token) = environment.session_token.clone() {
                    builder = builder.with_token(token);
                }
            }
            _ if access == Access::Read => builder = builder.with_skip_signature(true),
            _ => {
                return Err(BucketError::NoCredentials {
                    location: url.to_string(),
                })
            }
        }
        let store = builder.build().map_err(|e| BucketError::BadEndpoint {
            endpoint: shown_endpoint.clone(),
            reason: e.to_string(),
        })?;
        Ok(Bucket {
            store: Arc::new(store),
            url: url.clone(),
            endpoint: shown_endpoint,
            limits,
        })
    }

    pub fn url(&self) -> &BucketUrl {
        &self.url
    }

    pub fn limits(&self) -> &BucketLimits {
        &self.limits
    }

    /// One listing of the prefix's first level: the cheapest request that needs the bucket to
    /// exist and the credentials to be right.
    pub async fn probe(&self) -> Result<(), BucketError> {
        let prefix = (!self.url.prefix.is_empty()).then(|| KeyPath::from(self.url.prefix.clone()));
        self.store
            .list_with_delimiter(prefix.as_ref())
            .await
            .map(|_| ())
            .map_err(|e| self.error("", e))
    }

    fn path(&self, relative: &str) -> KeyPath {
        KeyPath::from(self.url.key(relative))
    }

    fn error(&self, relative: &str, e: object_store::Error) -> BucketError {
        error::map(&self.url, &self.endpoint, relative, e)
    }

    /// The object's size, ETag and time, or `None` if there is none.
    pub async fn head(&self, relative: &str) -> Result<Option<ObjectInfo>, BucketError> {
        match self.store.head(&self.path(relative)).await {
            Ok(meta) => Ok(Some(self.info(meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(relative, e)),
        }
    }

    fn info(&self, meta: object_store::ObjectMeta) -> ObjectInfo {
        let full = meta.location.to_string();
        let key = match self.url.prefix.is_empty() {
            true => full,
            false => full
                .strip_prefix(&format!("{}/", self.url.prefix))
                .map(str::to_owned)
                .unwrap_or(full),
        };
        ObjectInfo {
            key,
            size: meta.size,
            etag: meta.e_tag.map(|t| t.trim_matches('"').to_owned()),
            last_modified: meta.last_modified.into(),
        }
    }

    /// Starts reading an object, or `None` if there is none. An object larger than `max` is
    /// refused before its body is read ([`BucketError::TooLarge`]); the body stream also stops
    /// with that error if more than the announced size arrives.
    pub async fn get(&self, relative: &str, max: u64) -> Result<Option<Download>, BucketError> {
        let result = match self.store.get(&self.path(relative)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(relative, e)),
        };
        self.capped(relative, result, max).map(Some)
    }

    /// The body of `result`, refused before it is read when the object is larger than `max`,
    /// and stopped with [`BucketError::TooLarge`] if more than the announced size arrives.
    fn capped(
        &self,
        relative: &str,
        result: object_store::GetResult,
        max: u64,
    ) -> Result<Download, BucketError> {
        let info = self.info(result.meta.clone());
        if info.size > max {
            return Err(BucketError::TooLarge {
                key: self.url.key(relative),
                limit: max,
            });
        }
        let stream = result.into_stream();
        let this = self.clone();
        let rel = relative.to_owned();
        let limit = info.size;
        let mut seen = 0u64;
        let body = stream
            .map(move |chunk| {
                let chunk = chunk.map_err(|e| this.error(&rel, e))?;
                seen += chunk.len() as u64;
                if seen > limit {
                    return Err(BucketError::TooLarge {
                        key: this.url.key(&rel),
                        limit,
                    });
                }
                Ok(chunk)
            })
            .boxed();
        Ok(Download { info, body })
    }

    /// The whole object in memory, or `None` if there is none; refused past `max` bytes.
    pub async fn get_bytes(&self, relative: &str, max: u64) -> Result<Option<Bytes>, BucketError> {
        let Some(download) = self.get(relative, max).await? else {
            return Ok(None);
        };
        let mut out = bytes::BytesMut::with_capacity(download.info.size as usize);
        let mut body = download.body;
        while let Some(chunk) = body.try_next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(Some(out.freeze()))
    }

    /// Reads an object unless its ETag is still `etag` (a conditional GET: an unchanged object
    /// costs a `304` and no body). Same caps as [`Bucket::get`].
    pub async fn get_if_changed(
        &self,
        relative: &str,
        max: u64,
        etag: Option<&str>,
    ) -> Result<Changed, BucketError> {
        let options = object_store::GetOptions {
            if_none_match: etag.map(|t| format!("\"{t}\"")),
            ..Default::default()
        };
        let result = match self.store.get_opts(&self.path(relative), options).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(Changed::Missing),
            Err(object_store::Error::NotModified { .. }) => return Ok(Changed::Unchanged),
            Err(e) => return Err(self.error(relative, e)),
        };
        self.capped(relative, result, max).map(Changed::Changed)
    }

    /// A presigned GET URL of `relative`, valid for `expires`: readers fetch a bucket's objects
    /// through it like any HTTP URL (Range included: only the method, host and path are
    /// signed). Needs credentials.
    pub async fn signed_get_url(
        &self,
        relative: &str,
        expires: Duration,
    ) -> Result<String, BucketError> {
        use object_store::signer::Signer as _;
        self.store
            .signed_url(
                object_store::signer::Method::GET,
                &self.path(relative),
                expires,
            )
            .await
            .map(|u| u.to_string())
            .map_err(|e| self.error(relative, e))
    }

    /// Bytes `range` of an object (the serve side's Range requests).
    pub async fn get_range(
        &self,
        relative: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Option<Bytes>, BucketError> {
        match self.store.get_range(&self.path(relative), range).await {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(relative, e)),
        }
    }

    /// Writes `bytes` as the object in one PUT (visible whole or not at all). Returns the ETag.
    pub async fn put_bytes(
        &self,
        relative: &str,
        bytes: Bytes,
        attrs: ObjectAttrs,
    ) -> Result<Option<String>, BucketError> {
        let result = self
            .store
            .put_opts(
                &self.path(relative),
                PutPayload::from_bytes(bytes),
                PutOptions::from(attributes(attrs)),
            )
            .await
            .map_err(|e| self.error(relative, e))?;
        Ok(result.e_tag.map(|t| t.trim_matches('"').to_owned()))
    }

    /// Uploads a local file as the object: one PUT up to [`BucketLimits::multipart_threshold`],
    /// a multipart upload of [`BucketLimits::part_size`] parts above it (memory stays within a
    /// few parts whatever the size). Either way the object appears whole or not at all; a
    /// failed multipart upload is aborted. Returns the ETag.
    pub async fn put_file(
        &self,
        relative: &str,
        file: &Path,
        attrs: ObjectAttrs,
    ) -> Result<Option<String>, BucketError> {
        let io = |e: std::io::Error| BucketError::LocalIo {
            path: file.to_owned(),
            source: e,
        };
        let size = tokio::fs::metadata(file).await.map_err(io)?.len();
        if size <= self.limits.multipart_threshold {
            let bytes = tokio::fs::read(file).await.map_err(io)?;
            return self.put_bytes(relative, Bytes::from(bytes), attrs).await;
        }
        let path = self.path(relative);
        let upload = self
            .store
            .put_multipart_opts(&path, attributes(attrs).into())
            .await
            .map_err(|e| self.error(relative, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.limits.part_size);
        let result = async {
            use tokio::io::AsyncReadExt as _;
            let mut f = tokio::fs::File::open(file).await.map_err(io)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                writer
                    .wait_for_capacity(self.limits.parts_in_flight)
                    .await
                    .map_err(|e| self.error(relative, e))?;
                let n = f.read(&mut buf).await.map_err(io)?;
                if n == 0 {
                    break;
                }
                writer.write(&buf[..n]);
            }
            Ok::<_, BucketError>(())
        }
        .await;
        match result {
            Ok(()) => {
                let done = writer.finish().await.map_err(|e| self.error(relative, e))?;
                Ok(done.e_tag.map(|t| t.trim_matches('"').to_owned()))
            }
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    /// Every object under `relative` (a folder-like prefix ending in `/`), at most `max`
    /// ([`BucketError::TooMany`] past it).
    pub async fn list(&self, relative: &str, max: usize) -> Result<Vec<ObjectInfo>, BucketError> {
        let prefix = self.path(relative.trim_end_matches('/'));
        let mut stream = self.store.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| self.error(relative, e))?;
            if out.len() >= max {
                return Err(BucketError::TooMany {
                    prefix: self.url.key(relative),
                    limit: max,
                });
            }
            out.push(self.info(meta));
        }
        Ok(out)
    }

    /// Removes an object (absent is fine).
    pub async fn delete(&self, relative: &str) -> Result<(), BucketError> {
        match self.store.delete(&self.path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(relative, e)),
        }
    }
}

fn attributes(attrs: ObjectAttrs) -> Attributes {
    let mut a = Attributes::new();
    a.insert(Attribute::ContentType, attrs.content_type.into());
    a.insert(Attribute::CacheControl, attrs.cache_control.into());
    a
}

impl BucketError {
    pub fn class(&self) -> ErrorClass {
        error::class(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_buckets_and_folders() {
        let l = Location::parse("s3://news-mirror/qasid/site").unwrap();
        let Location::Bucket(b) = l else {
            panic!("a bucket")
        };
        assert_eq!(b.bucket(), "news-mirror");
        assert_eq!(b.prefix(), "qasid/site");
        assert_eq!(b.key("qasid/v1/x"), "qasid/site/qasid/v1/x");
        assert_eq!(b.to_string(), "s3://news-mirror/qasid/site");
        let root = BucketUrl::parse("s3://news/").unwrap();
        assert_eq!(root.prefix(), "");
        assert_eq!(root.key("qasid/v1/x"), "qasid/v1/x");
        assert_eq!(
            Location::parse("store").unwrap(),
            Location::Folder("store".into())
        );
        for bad in [
            "s3://",
            "s3://UPPER/x",
            "s3://ab",
            "s3://news/a//b",
            "s3://news/../x",
            "s3://news/a/./b",
            "s3://-news/x",
        ] {
            assert!(BucketUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_http_endpoints_are_refused_off_loopback() {
        let url = BucketUrl::parse("s3://news/x").unwrap();
        let settings = |e: &str| Settings {
            endpoint: Some(e.to_owned()),
            ..Settings::default()
        };
        for ok in [
            "http://127.0.0.1:3900",
            "http://[::1]:3900",
            "http://localhost:3900",
            "https://s3.example.org",
        ] {
            Bucket::new(
                &url,
                &settings(ok),
                &Environment::default(),
                Access::Read,
                BucketLimits::default(),
            )
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let e = Bucket::new(
            &url,
            &settings("http://s3.example.org"),
            &Environment::default(),
            Access::Read,
            BucketLimits::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("only on loopback"), "{e}");
        assert_eq!(e.class(), ErrorClass::Usage);
    }
}
