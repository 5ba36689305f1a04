//! The TOML shape of `mirrors.toml` as written, and its conversion into a validated `Config`.
//!
//! Values that need checking beyond their TOML type are read as `Spanned` strings so that a bad
//! one is reported at its own position. Nothing outside `config` sees these types.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    Config, MetricsConfig, MirrorConfig, PublisherConfig, ReaderConfig, SyncConfig, UpstreamConfig,
};
use crate::keys::PublicKey;
use crate::note::dns::DnsServer;
use crate::note::source::NoteSpec;

/// A problem at a byte offset of the file.
pub(super) struct WireError {
    pub offset: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWire {
    #[serde(default)]
    mirror: MirrorWire,
    #[serde(default)]
    publisher: Vec<PublisherWire>,
    #[serde(default)]
    upstream: Vec<UpstreamWire>,
    #[serde(default)]
    sync: SyncWire,
    #[serde(default)]
    reader: ReaderWire,
    #[serde(default)]
    metrics: MetricsWire,
    #[serde(default)]
    note_source: Vec<NoteSourceWire>,
    #[serde(default)]
    s3: S3Wire,
}

/// `[s3]`: how to reach S3-compatible buckets named `s3://…` (see [`crate::bucket::Settings`]).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Wire {
    endpoint: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    path_style: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsWire {
    upstream_urls: Option<bool>,
}

/// `[[note_source]]`: a place polled for mirror notes (an https:// URL or `dns:NAME`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteSourceWire {
    url: Spanned<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorWire {
    listen: Option<Spanned<String>>,
    store: Option<Spanned<String>>,
    work: Option<Spanned<String>>,
    keep: Option<Spanned<String>>,
    max_push_bytes: Option<Spanned<SizeWire>>,
    max_connections: Option<Spanned<i64>>,
    max_connections_per_address: Option<Spanned<i64>>,
    min_body_rate: Option<Spanned<SizeWire>>,
    header_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    shutdown_grace: Option<Spanned<String>>,
    access_log: Option<bool>,
    max_staged_bytes: Option<Spanned<SizeWire>>,
    max_staged_bytes_per_publisher: Option<Spanned<SizeWire>>,
    max_staged_age: Option<Spanned<String>>,
    cache_bytes: Option<Spanned<SizeWire>>,
    cache_entries: Option<Spanned<i64>>,
    bucket_refresh: Option<Spanned<String>>,
}

/// A byte size: an integer, or a string such as `"64 MiB"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeWire {
    Bytes(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublisherWire {
    name: Option<String>,
    key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamWire {
    url: Spanned<String>,
    proxy: Option<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncWire {
    interval: Option<Spanned<String>>,
    use_index_mirrors: Option<bool>,
    connect_timeout: Option<Spanned<String>>,
    read_timeout: Option<Spanned<String>>,
    max_downloads: Option<Spanned<i64>>,
    prune_grace: Option<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReaderWire {
    #[serde(default)]
    mirrors: Vec<Spanned<ReaderMirrorWire>>,
    proxy: Option<Spanned<String>>,
    proxy_only: Option<bool>,
    race_window: Option<Spanned<String>>,
    hedge_delay: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    state: Option<Spanned<String>>,
    out: Option<Spanned<String>>,
    #[serde(default)]
    notes: Vec<Spanned<String>>,
    dns_server: Option<Spanned<String>>,
}

/// A reader mirror: a URL, or `{ url = "...", proxy = "..." }` for one with its own proxy.
/// (Plain strings inside: `Spanned` does not survive an untagged enum; errors point at the
/// whole entry.)
#[derive(Deserialize)]
#[serde(untagged)]
enum ReaderMirrorWire {
    Url(String),
    WithProxy(ReaderMirrorTableWire),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReaderMirrorTableWire {
    url: String,
    proxy: Option<String>,
}

fn at<T>(value: &Spanned<T>, message: String) -> WireError {
    WireError {
        offset: value.span().start,
        message,
    }
}

/// Parses and validates; `base` is the config file's folder, for relative paths.
pub(super) fn parse(text: &str, base: &Path) -> Result<Config, WireError> {
    let file: FileWire = toml::from_str(text).map_err(|e| WireError {
        offset: e.span().map_or(0, |s| s.start),
        message: toml_message(&e),
    })?;
    let defaults = Config::default();
    let mut publisher_roots = Vec::new();
    let publishers = file
        .publisher
        .into_iter()
        .map(|p| {
            let (publisher, root) = publisher(p, base)?;
            publisher_roots.extend(root);
            Ok(publisher)
        })
        .collect::<Result<_, _>>()?;
    Ok(Config {
        mirror: mirror(file.mirror, defaults.mirror, base)?,
        publishers,
        publisher_roots,
        upstreams: file
            .upstream
            .into_iter()
            .map(|u| {
                Ok(UpstreamConfig {
                    url: mirror_url(&u.url, "upstream url")?,
                    proxy: u.proxy.as_ref().map(proxy_url).transpose()?,
                })
            })
            .collect::<Result<_, _>>()?,
        sync: SyncConfig {
            interval: duration(file.sync.interval, "sync.interval", defaults.sync.interval)?,
            use_index_mirrors: file
                .sync
                .use_index_mirrors
                .unwrap_or(defaults.sync.use_index_mirrors),
            connect_timeout: duration(
                file.sync.connect_timeout,
                "sync.connect_timeout",
                defaults.sync.connect_timeout,
            )?,
            read_timeout: duration(
                file.sync.read_timeout,
                "sync.read_timeout",
                defaults.sync.read_timeout,
            )?,
            max_downloads: count(file.sync.max_downloads, "sync.max_downloads")?
                .unwrap_or(defaults.sync.max_downloads),
            prune_grace: duration(
                file.sync.prune_grace,
                "sync.prune_grace",
                defaults.sync.prune_grace,
            )?,
        },
        reader: reader(file.reader, defaults.reader, base)?,
        metrics: MetricsConfig {
            upstream_urls: file
                .metrics
                .upstream_urls
                .unwrap_or(defaults.metrics.upstream_urls),
        },
        note_sources: file
            .note_source
            .iter()
            .map(|n| match note_spec(&n.url, base)? {
                NoteSpec::Uri(_) | NoteSpec::File(_) => Err(at(
                    &n.url,
                    "note_source.url: an https:// URL or dns:NAME (notes themselves go in \
                     [reader] notes)"
                        .into(),
                )),
                spec => Ok(spec),
            })
            .collect::<Result<_, _>>()?,
        s3: s3(file.s3)?,
    })
}

/// A note or note source; a relative file path is resolved against the config's folder.
fn note_spec(text: &Spanned<String>, base: &Path) -> Result<NoteSpec, WireError> {
    match NoteSpec::parse(text.get_ref()).map_err(|e| at(text, e.to_string()))? {
        NoteSpec::File(path) => Ok(NoteSpec::File(base.join(path))),
        other => Ok(other),
    }
}

/// toml's description of a syntax error, on one line. toml has none for some errors (a control
/// character inside a comment, for one), which left the operator with `FILE:LINE:COL: ` and
/// nothing after it.
fn toml_message(e: &toml::de::Error) -> String {
    let message = e.message().trim_end().replace('\n', "; ");
    if message.is_empty() {
        "not valid TOML here (control characters are not allowed anywhere, comments included)"
            .to_owned()
    } else {
        message
    }
}

fn reader(r: ReaderWire, d: ReaderConfig, base: &Path) -> Result<ReaderConfig, WireError> {
    let mut mirrors = Vec::new();
    let mut mirror_proxies = Vec::new();
    for entry in &r.mirrors {
        let (url, proxy) = match entry.get_ref() {
            ReaderMirrorWire::Url(url) => (url, None),
            ReaderMirrorWire::WithProxy(t) => (&t.url, t.proxy.as_ref()),
        };
        let url = reader_mirror(url, base).map_err(|e| at(entry, format!("reader mirror: {e}")))?;
        if let Some(proxy) = proxy {
            let proxy = parse_proxy_url(proxy)
                .map_err(|e| at(entry, format!("reader mirror proxy: {e}")))?;
            mirror_proxies.push((url.clone(), proxy));
        }
        mirrors.push(url);
    }
    Ok(ReaderConfig {
        mirrors,
        mirror_proxies,
        proxy: r.proxy.as_ref().map(proxy_url).transpose()?,
        proxy_only: r.proxy_only.unwrap_or(d.proxy_only),
        race_window: duration(r.race_window, "reader.race_window", d.race_window)?,
        hedge_delay: duration(r.hedge_delay, "reader.hedge_delay", d.hedge_delay)?,
        connect_timeout: optional_duration(r.connect_timeout, "reader.connect_timeout")?,
        timeout: optional_duration(r.timeout, "reader.timeout")?,
        state: optional_path(r.state, "reader.state", base)?,
        out: optional_path(r.out, "reader.out", base)?,
        notes: r
            .notes
            .iter()
            .map(|n| note_spec(n, base))
            .collect::<Result<_, _>>()?,
        dns_server: r
            .dns_server
            .as_ref()
            .map(|s| {
                DnsServer::parse(s.get_ref()).map_err(|e| at(s, format!("reader.dns_server: {e}")))
            })
            .transpose()?,
    })
}

/// A reader mirror as `--mirror` takes it: an http(s) or file URL, or a folder (anything
/// without `://`), which becomes the `file://` URL of that folder resolved against `base`.
fn reader_mirror(text: &str, base: &Path) -> Result<reqwest::Url, String> {
    if text.contains("://") {
        return parse_mirror_url(text);
    }
    if text.is_empty() {
        return Err("empty".into());
    }
    let dir = std::path::absolute(base.join(text))
        .map_err(|e| format!("{text:?}: cannot make the folder path absolute: {e}"))?;
    reqwest::Url::from_directory_path(&dir)
        .map_err(|()| format!("{text:?} is not a folder path that can be a file:// URL"))
}

fn optional_duration(
    value: Option<Spanned<String>>,
    what: &str,
) -> Result<Option<Duration>, WireError> {
    value
        .map(|v| duration(Some(v), what, Duration::ZERO))
        .transpose()
}

fn optional_path(
    value: Option<Spanned<String>>,
    what: &str,
    base: &Path,
) -> Result<Option<PathBuf>, WireError> {
    match value {
        None => Ok(None),
        Some(s) if s.get_ref().is_empty() => Err(at(&s, format!("{what}: empty path"))),
        Some(s) => Ok(Some(base.join(s.get_ref()))),
    }
}

fn mirror(mut m: MirrorWire, d: MirrorConfig, base: &Path) -> Result<MirrorConfig, WireError> {
    let (store, work) = (m.store.take(), m.work.take());
    let mut config = mirror_fields(m, d)?;
    if let Some(s) = &store {
        if s.get_ref().is_empty() {
            return Err(at(s, "mirror.store: empty path".into()));
        }
        let work = work.as_ref().map(|w| base.join(w.get_ref()));
        config
            .set_store(s.get_ref(), base, work)
            .map_err(|e| at(s, format!("mirror.store: {e}")))?;
    } else if let Some(w) = &work {
        return Err(at(
            w,
            "mirror.work: only for a bucket store (store = \"s3://…\")".into(),
        ));
    }
    Ok(config)
}

/// `[s3]`, validated later by [`crate::bucket::Bucket::new`] (where the environment may
/// override it).
fn s3(s: S3Wire) -> Result<crate::bucket::Settings, WireError> {
    let non_empty = |v: Option<Spanned<String>>, what: &str| match v {
        Some(v) if v.get_ref().trim().is_empty() => Err(at(&v, format!("s3.{what}: empty"))),
        v => Ok(v.map(|v| v.into_inner())),
    };
    Ok(crate::bucket::Settings {
        endpoint: non_empty(s.endpoint, "endpoint")?,
        region: non_empty(s.region, "region")?,
        path_style: s.path_style,
    })
}

fn mirror_fields(m: MirrorWire, d: MirrorConfig) -> Result<MirrorConfig, WireError> {
    Ok(MirrorConfig {
        listen: match m.listen {
            None => d.listen,
            Some(s) => s.get_ref().parse::<SocketAddr>().map_err(|_| {
                at(
                    &s,
                    format!(
                        "mirror.listen: {:?} is not an address like 127.0.0.1:8080 or [::]:8080",
                        s.get_ref()
                    ),
                )
            })?,
        },
        store: d.store,
        bucket: d.bucket,
        keep: match m.keep {
            None => d.keep,
            Some(s) => s
                .get_ref()
                .parse()
                .map_err(|e| at(&s, format!("mirror.keep: {e}")))?,
        },
        max_push_bytes: match m.max_push_bytes {
            None => d.max_push_bytes,
            Some(s) => size(&s).ok_or_else(|| {
                at(
                    &s,
                    "mirror.max_push_bytes: expected a positive size such as 268435456 or \
                         \"256 MiB\""
                        .into(),
                )
            })?,
        },
        max_connections: count(m.max_connections, "mirror.max_connections")?
            .unwrap_or(d.max_connections),
        max_connections_per_address: count(
            m.max_connections_per_address,
            "mirror.max_connections_per_address",
        )?
        .or(d.max_connections_per_address),
        min_body_rate: match m.min_body_rate {
            None => d.min_body_rate,
            Some(s) => size(&s).ok_or_else(|| {
                at(
                    &s,
                    "mirror.min_body_rate: expected a positive size per second such as 1024 or \
                     \"1 KiB\""
                        .into(),
                )
            })?,
        },
        header_timeout: duration(m.header_timeout, "mirror.header_timeout", d.header_timeout)?,
        idle_timeout: duration(m.idle_timeout, "mirror.idle_timeout", d.idle_timeout)?,
        shutdown_grace: duration(m.shutdown_grace, "mirror.shutdown_grace", d.shutdown_grace)?,
        access_log: m.access_log.unwrap_or(d.access_log),
        staging: crate::limits::StagingLimits {
            max_staged_bytes: size_or(
                m.max_staged_bytes,
                "mirror.max_staged_bytes",
                d.staging.max_staged_bytes,
            )?,
            max_staged_bytes_per_publisher: size_or(
                m.max_staged_bytes_per_publisher,
                "mirror.max_staged_bytes_per_publisher",
                d.staging.max_staged_bytes_per_publisher,
            )?,
            max_staged_age: duration(
                m.max_staged_age,
                "mirror.max_staged_age",
                d.staging.max_staged_age,
            )?,
        },
        front_end: crate::limits::FrontEndLimits {
            cache_bytes: size_or(m.cache_bytes, "mirror.cache_bytes", d.front_end.cache_bytes)?,
            cache_entries: count(m.cache_entries, "mirror.cache_entries")?
                .unwrap_or(d.front_end.cache_entries),
            refresh: duration(
                m.bucket_refresh,
                "mirror.bucket_refresh",
                d.front_end.refresh,
            )?,
            max_spools: d.front_end.max_spools,
        },
    })
}

/// An optional positive byte size, `default` when absent.
/// A positive count, if the file gives one.
fn count(value: Option<Spanned<i64>>, what: &str) -> Result<Option<usize>, WireError> {
    value
        .map(|s| {
            usize::try_from(*s.get_ref())
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| at(&s, format!("{what}: expected a positive number")))
        })
        .transpose()
}

fn size_or(value: Option<Spanned<SizeWire>>, what: &str, default: u64) -> Result<u64, WireError> {
    match value {
        None => Ok(default),
        Some(s) => size(&s).ok_or_else(|| {
            at(
                &s,
                format!("{what}: expected a positive size such as 67108864 or \"64 MiB\""),
            )
        }),
    }
}

/// A positive byte size written as a number or a string such as `"64 MiB"`.
fn size(s: &Spanned<SizeWire>) -> Option<u64> {
    match s.get_ref() {
        SizeWire::Bytes(n) => u64::try_from(*n).ok().filter(|&n| n > 0),
        SizeWire::Text(t) => parse_byte_size(t).ok(),
    }
}

/// A `[[publisher]]`, and its first root when `key` names a root file.
fn publisher(
    p: PublisherWire,
    base: &Path,
) -> Result<(PublisherConfig, Option<crate::roots::Root>), WireError> {
    let text = p.key.get_ref();
    let mut first_root = None;
    let key = match PublicKey::from_base64(text) {
        Ok(key) => key,
        Err(base64_error) => {
            let path: PathBuf = base.join(text);
            if path.is_file() {
                // A key file, or a first root file (root.json): the publisher id it derives.
                let anchor = crate::roots::Anchor::from_arg(&path.to_string_lossy())
                    .map_err(|e| at(&p.key, format!("publisher key file {text}: {e}")))?;
                first_root = anchor.first().cloned();
                anchor.id().clone()
            } else {
                return Err(at(
                    &p.key,
                    format!(
                        "publisher key: neither a one-line base64 key ({base64_error}) nor an \
                         existing .pub file"
                    ),
                ));
            }
        }
    };
    Ok((PublisherConfig { name: p.name, key }, first_root))
}

fn duration(
    value: Option<Spanned<String>>,
    what: &str,
    default: Duration,
) -> Result<Duration, WireError> {
    match value {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s.get_ref())
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                at(
                    &s,
                    format!(
                        "{what}: {:?} is not a duration such as \"300ms\", \"30s\" or \"5m\"",
                        s.get_ref()
                    ),
                )
            }),
    }
}

/// A mirror base URL: http, https or file.
fn mirror_url(s: &Spanned<String>, what: &str) -> Result<reqwest::Url, WireError> {
    parse_mirror_url(s.get_ref()).map_err(|e| at(s, format!("{what}: {e}")))
}

fn proxy_url(s: &Spanned<String>) -> Result<reqwest::Url, WireError> {
    parse_proxy_url(s.get_ref()).map_err(|e| at(s, format!("proxy: {e}")))
}

/// Parses a mirror base URL (`http`, `https`, `s3` or `file`).
pub fn parse_mirror_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" | "file" | "s3" => Ok(url),
        other => Err(format!(
            "scheme {other:?} is not supported (use http, https, s3 or file)"
        )),
    }
}

/// A URL as it may appear anywhere outside a request: logs, `/metrics`, error messages,
/// reports. The user name and password (`https://user:secret@host/`) and the query and
/// fragment (where signed-URL tokens live) are removed; scheme, host, port and path stay.
/// Every place that shows or exports a mirror, upstream or proxy URL goes through this.
pub fn display_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    // Both fail only for URLs that cannot have credentials (`file:`, `data:`): nothing to hide.
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Parses a proxy URL (`http`, `https`, `socks5` or `socks5h`).
pub fn parse_proxy_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" | "socks5" | "socks5h" => Ok(url),
        other => Err(format!(
            "scheme {other:?} is not supported (use http, https, socks5 or socks5h)"
        )),
    }
}

/// Parses a byte size: a plain number of bytes, or a number and a unit (B, KB, MB, GB, KiB,
/// MiB, GiB), with or without a space. Zero is refused.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 1048576 or \"256 MiB\""))?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KiB, MiB, GiB)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{text:?} is zero or too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_url_hides_credentials_and_tokens() {
        let shown = |s: &str| display_url(&reqwest::Url::parse(s).unwrap());
        assert_eq!(
            shown("https://alice:s3cret@origin.example:8443/news/?token=abc#x"),
            "https://origin.example:8443/news/"
        );
        assert_eq!(
            shown("http://alice@origin.example/"),
            "http://origin.example/"
        );
        assert_eq!(
            shown("socks5h://u:p@127.0.0.1:9050"),
            "socks5h://127.0.0.1:9050"
        );
        assert_eq!(shown("file:///srv/repo/"), "file:///srv/repo/");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("1024").unwrap(), 1024);
        assert_eq!(parse_byte_size("64 MiB").unwrap(), 64 << 20);
        assert_eq!(parse_byte_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_byte_size("5 MB").unwrap(), 5_000_000);
        assert!(parse_byte_size("0").is_err());
        assert!(parse_byte_size("MiB").is_err());
        assert!(parse_byte_size("3 parsecs").is_err());
        assert!(parse_byte_size("99999999999 GiB").is_err());
    }
}
