//! `mirrors.toml`: the operator's configuration for the mirror, sync and reader, parsed and
//! validated into a [`Config`] whose every value is usable as is.
//!
//! Owns the schema (unknown keys are refused), the defaults (in one place, each with its reason,
//! on [`MirrorConfig`], [`SyncConfig`] and [`ReaderConfig`]'s `Default`s) and error reporting
//! with file, line and column. It never opens sockets, starts anything or trusts a key that the
//! operator did not write down: it only reads the file and the `.pub` files it names.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::keys::PublicKey;
use crate::ErrorClass;

mod wire;

pub use wire::{display_url, parse_byte_size, parse_mirror_url, parse_proxy_url};

/// The whole configuration: what `qasid mirror` (and later `qasid sync` and the reader) run with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub mirror: MirrorConfig,
    /// Publishers this mirror trusts: only their content is accepted, stored and served.
    pub publishers: Vec<PublisherConfig>,
    /// Mirrors to pull from (read by the sync daemon).
    pub upstreams: Vec<UpstreamConfig>,
    pub sync: SyncConfig,
    pub reader: ReaderConfig,
    pub metrics: MetricsConfig,
    /// `[[note_source]]`: places polled by the reader for signed mirror notes (https:// URLs,
    /// `dns:NAME`).
    pub note_sources: Vec<crate::note::source::NoteSpec>,
    /// The first roots of publishers trusted through a root file (`[[publisher]] key =
    /// "root.json"`, `--publisher root.json`): a store installs them at start, so a mirror
    /// follows a multi-key publisher's roots from its upstreams without waiting for a push.
    pub publisher_roots: Vec<crate::roots::Root>,
    /// `[s3]`: endpoint, region and addressing of S3-compatible buckets (`s3://…` stores).
    pub s3: crate::bucket::Settings,
}

/// `[metrics]`: what the mirror's `/metrics` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsConfig {
    /// Label upstreams in `/metrics` by their URL (user name, password and query always
    /// removed) instead of `upstream-1`, `upstream-2`, ... in configuration order. Default
    /// false: `/metrics` answers anyone who can reach the mirror, and an upstream's address
    /// (often the origin's) is what a censor wants to find and block. Logs, which only the
    /// operator reads, name upstreams either way.
    pub upstream_urls: bool,
}

/// What to keep in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// Every verified object ever stored (an archive). The default: in a blackout an archived
    /// copy of a retracted or superseded article is still news.
    #[default]
    All,
    /// Only objects that the current index of some trusted publisher lists; the sync daemon
    /// prunes the rest after a grace period.
    Current,
}

impl std::str::FromStr for Keep {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Keep::All),
            "current" => Ok(Keep::Current),
            other => Err(format!(
                "keep must be \"all\" or \"current\", not {other:?}"
            )),
        }
    }
}

/// `[mirror]`: the HTTP server and its store.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorConfig {
    /// Address to listen on. Default 127.0.0.1:8080: loopback, so a mirror is only exposed to
    /// the network when the operator says so (or puts a reverse proxy in front).
    pub listen: SocketAddr,
    /// The store folder (the static layout). Default `./qasid-store`. For a bucket store
    /// (`store = "s3://bucket/prefix"`, see `bucket`) this is its local work folder: a verified
    /// copy of what was uploaded, the temp files and the index history (`[mirror] work`, default
    /// `$XDG_STATE_HOME/qasid/buckets/<bucket>_<prefix>-<hash>`).
    pub store: PathBuf,
    /// The bucket the store lives in, when `store` names one (`s3://bucket/prefix`): objects
    /// are verified in the work folder (`store`), then uploaded; readers and front ends read
    /// the bucket. `None`: a folder store.
    pub bucket: Option<crate::bucket::BucketUrl>,
    /// Retention. Default [`Keep::All`].
    pub keep: Keep,
    /// Largest object a publisher may push, in bytes. Default 256 MiB: articles with photos are
    /// a few MB; every push in flight may hold this much in the store's temp folder before it
    /// is verified, so the cap times `max_connections` bounds the temp disk an attacker can fill.
    pub max_push_bytes: u64,
    /// Most simultaneous connections; more wait in the kernel's accept queue. Default 1,024:
    /// far above what a small mirror sees, well under a default `ulimit -n` of 1,024 + files.
    pub max_connections: usize,
    /// Most simultaneous connections from one client address (IPv6: one /64), so that one
    /// client cannot take every slot. `None`: a quarter of `max_connections` (at least 1),
    /// generous because many readers may share one NAT or carrier-grade NAT address.
    /// Loopback counts like any other address: behind a reverse proxy on the same host every
    /// client is the proxy, so set this to `max_connections` there and limit per client in
    /// the proxy.
    pub max_connections_per_address: Option<usize>,
    /// Slowest request body accepted, in bytes per second on average, counted after a grace of
    /// `header_timeout` from the start of the body. Default 1 KiB/s: a throttled mobile link
    /// moves tens of KB a second; a client sending a byte every few seconds to hold a
    /// connection slot is cut off instead of kept forever.
    pub min_body_rate: u64,
    /// Time a client has to send its request headers. Default 10 s: slowloris clients that
    /// trickle headers are cut off without holding a connection slot for long.
    pub header_timeout: Duration,
    /// Longest pause while reading a request body or writing a response before the request is
    /// dropped. Default 30 s: slow links (satellite, throttled mobile) stall for seconds, not
    /// half a minute.
    pub idle_timeout: Duration,
    /// On SIGINT/SIGTERM, how long requests in flight may take to finish. Default 30 s.
    pub shutdown_grace: Duration,
    /// Log one line per request (method, path, status, bytes, time) at info level. Default
    /// off: what a reader reads is theirs, and a log of it is something that can be seized.
    /// Even when on, no reader address (or any other client detail) is ever written.
    pub access_log: bool,
    /// Bounds on pushed index pieces that no signed index lists yet (`max_staged_bytes`,
    /// `max_staged_bytes_per_publisher`, `max_staged_age`); defaults and reasons in
    /// [`crate::limits::StagingLimits`].
    pub staging: crate::limits::StagingLimits,
    /// A front end over a bucket: its verified-object cache and how often it re-reads
    /// `index.json` (`cache_bytes`, `cache_entries`, `bucket_refresh`); defaults and reasons in
    /// [`crate::limits::FrontEndLimits`].
    pub front_end: crate::limits::FrontEndLimits,
}

impl MirrorConfig {
    /// The per-address connection cap in force: the configured one, or a quarter of
    /// `max_connections` (at least 1).
    pub fn per_address_cap(&self) -> usize {
        self.max_connections_per_address
            .unwrap_or((self.max_connections / 4).max(1))
    }
}

impl MirrorConfig {
    /// Sets the store from a location (`--store`, `mirror.store`): a folder (relative to
    /// `base`) or `s3://bucket/prefix` with its work folder (`work`, or the default under the
    /// state folder).
    pub fn set_store(
        &mut self,
        location: &str,
        base: &Path,
        work: Option<PathBuf>,
    ) -> Result<(), crate::bucket::BucketError> {
        match crate::bucket::Location::parse(location)? {
            crate::bucket::Location::Folder(path) => {
                self.store = base.join(path);
                self.bucket = None;
            }
            crate::bucket::Location::Bucket(url) => {
                self.store = match work {
                    Some(w) => w,
                    None => crate::index::default_state_dir()
                        .ok_or(crate::bucket::BucketError::NoWorkFolder)?
                        .join("buckets")
                        .join(url.work_folder_name()),
                };
                self.bucket = Some(url);
            }
        }
        Ok(())
    }
}

impl Default for MirrorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            store: PathBuf::from("qasid-store"),
            bucket: None,
            keep: Keep::All,
            max_push_bytes: 256 << 20,
            max_connections: 1024,
            max_connections_per_address: None,
            min_body_rate: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            access_log: false,
            staging: crate::limits::StagingLimits::default(),
            front_end: crate::limits::FrontEndLimits::default(),
        }
    }
}

/// `[[publisher]]`: one trusted publisher.
#[derive(Debug, Clone, PartialEq)]
pub struct PublisherConfig {
    /// A label for logs and pages; the key is what is trusted.
    pub name: Option<String>,
    pub key: PublicKey,
}

/// `[[upstream]]`: a mirror or static host to pull from.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// `http://`, `https://` or `file://` base URL under which `qasid/v1/...` is served.
    pub url: reqwest::Url,
    /// Proxy for this upstream (`http://`, `https://`, `socks5://` or `socks5h://`).
    pub proxy: Option<reqwest::Url>,
}

/// `[sync]`: the sync daemon's schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncConfig {
    /// Polling period (jittered by the sync daemon). Default 5 min: a signed index head is a few
    /// KB and unchanged rounds cost one conditional request per publisher and upstream.
    pub interval: Duration,
    /// Also pull from the mirrors listed in publishers' signed indexes. Default false: the
    /// operator decides which hosts the mirror talks to.
    pub use_index_mirrors: bool,
    /// Time to connect to an upstream. Default 5 s: a reachable host answers within a few
    /// round trips, and a blocked one should cost little.
    pub connect_timeout: Duration,
    /// Longest wait for the next byte from an upstream. Default 10 s: a tarpit (accepts, never
    /// answers) is given up quickly, while a slow link still moves bytes within it.
    pub read_timeout: Duration,
    /// Most bundle downloads at a time. Default 16: small bundles are latency-bound, so it
    /// takes this many in flight to fill a link (and to overlap the disk flushes each
    /// verified bundle needs), while staying a modest number of connections per host.
    pub max_downloads: usize,
    /// With `keep = "current"`, how long a bundle stays after no current index lists it.
    /// Default 24 h: readers holding the previous index can still fetch what it listed.
    pub prune_grace: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            use_index_mirrors: false,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            max_downloads: 16,
            prune_grace: Duration::from_secs(24 * 3600),
        }
    }
}

/// `[reader]`: settings for `qasid` as a reader (parsed here, used by the reader). Every
/// `qasid fetch` flag that is not about one run has its key here, named as the flag's field
/// (`--connect-timeout` is `connect_timeout`); a test in `cli/fetch.rs` keeps it so.
#[derive(Debug, Clone, PartialEq)]
pub struct ReaderConfig {
    /// Mirror base URLs to race. A folder (a plain path in the file, relative to the file's
    /// folder) is kept as its `file://` URL.
    pub mirrors: Vec<reqwest::Url>,
    /// `(mirror, proxy)` for the entries of `mirrors` written as `{ url = "...", proxy = "..." }`:
    /// such a mirror is reached through its own proxy instead of `proxy`.
    pub mirror_proxies: Vec<(reqwest::Url, reqwest::Url)>,
    /// Proxy for all reader requests.
    pub proxy: Option<reqwest::Url>,
    /// No connection leaves except through a proxy (mirrors without their own go through the
    /// strictest one configured). Default false: a reader without Tor reaches mirrors directly.
    pub proxy_only: bool,
    /// After the first valid index arrives, how long the reader waits for a fresher one from the
    /// other mirrors. Default 300 ms: about one intercontinental round trip plus a TLS
    /// handshake's worth.
    pub race_window: Duration,
    /// How long a bundle download may go without receiving a byte before the reader also asks
    /// the next mirror. Default 500 ms: a healthy mirror sends its first bytes within a round
    /// trip or two; a tarpit or a throttled link sends none.
    pub hedge_delay: Duration,
    /// Longest wait for a connection (`--connect-timeout`); `None`: the reader's default.
    pub connect_timeout: Option<Duration>,
    /// Longest wait for the next byte (`--timeout`); `None`: the reader's default.
    pub timeout: Option<Duration>,
    /// The state folder (`--state`), relative to the file's folder; `None`: the XDG default.
    pub state: Option<PathBuf>,
    /// Where fetched bundles are saved (`--out`); `None`: the current folder.
    pub out: Option<PathBuf>,
    /// Signed mirror notes read by every run (URIs, files, https:// URLs, `dns:NAME`).
    pub notes: Vec<crate::note::source::NoteSpec>,
    /// Resolver for `dns:` notes. Default none: the system's resolver, or with a proxy none
    /// (plain DNS cannot go through a proxy; a DNS-over-HTTPS URL must be given).
    pub dns_server: Option<crate::note::dns::DnsServer>,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        Self {
            mirrors: Vec::new(),
            mirror_proxies: Vec::new(),
            proxy: None,
            proxy_only: false,
            race_window: Duration::from_millis(300),
            hedge_delay: Duration::from_millis(500),
            connect_timeout: None,
            timeout: None,
            state: None,
            out: None,
            notes: Vec::new(),
            dns_server: None,
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value is out of range. `line` and
    /// `column` are 1-based; `column` counts characters.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
}

impl ConfigError {
    pub fn class(&self) -> ErrorClass {
        // Both mean the operator has to fix the command line or the file.
        match self {
            ConfigError::Read { .. } | ConfigError::Invalid { .. } => ErrorClass::Usage,
        }
    }
}

impl Config {
    /// Reads and validates a config file. Relative `store` paths and `.pub` key paths are
    /// resolved against the file's folder, so the config means the same from any working dir.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` is used in messages and to resolve relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let base = path.parent().unwrap_or(Path::new(""));
        wire::parse(text, base).map_err(|e| {
            let (line, column) = line_column(text, e.offset);
            ConfigError::Invalid {
                path: path.display().to_string(),
                line,
                column,
                message: e.message,
            }
        })
    }

    /// The trusted publisher keys.
    pub fn publisher_keys(&self) -> Vec<PublicKey> {
        self.publishers.iter().map(|p| p.key.clone()).collect()
    }
}

/// 1-based line and character column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/qasid/mirrors.toml"))
    }

    fn invalid(text: &str) -> (usize, usize, String) {
        match parse(text) {
            Err(ConfigError::Invalid {
                line,
                column,
                message,
                ..
            }) => (line, column, message),
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.mirror.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.sync.interval, Duration::from_secs(300));
        assert_eq!(c.reader.race_window, Duration::from_millis(300));
        assert!(
            !c.metrics.upstream_urls,
            "upstream URLs are hidden from /metrics by default"
        );
    }

    #[test]
    fn a_bucket_store_has_a_work_folder_and_s3_settings() {
        let c = parse(
            "[mirror]\nstore = \"s3://news/site\"\nwork = \"work\"\n\
             [s3]\nendpoint = \"http://127.0.0.1:3900\"\nregion = \"garage\"\n\
             path_style = true\n",
        )
        .unwrap();
        assert_eq!(
            c.mirror.bucket.as_ref().unwrap().to_string(),
            "s3://news/site"
        );
        assert_eq!(c.mirror.store, Path::new("/etc/qasid/work"));
        assert_eq!(c.s3.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(c.s3.region.as_deref(), Some("garage"));
        assert_eq!(c.s3.path_style, Some(true));
        let folder = parse("[mirror]\nstore = \"store\"\n").unwrap();
        assert!(folder.mirror.bucket.is_none());
        assert!(parse("[mirror]\nstore = \"s3://BAD/x\"\n").is_err());
        assert!(parse("[mirror]\nwork = \"w\"\n").is_err());
    }

    #[test]
    fn full_schema_parses() {
        let key = SecretKey::from_seed(&[4u8; 32]).public().clone();
        let text = format!(
            r#"
[mirror]
listen = "0.0.0.0:9000"
store = "store"
keep = "current"
max_push_bytes = "64 MiB"
max_connections = 10
header_timeout = "5s"
idle_timeout = "1m"
shutdown_grace = "2s"

[[publisher]]
name = "Example Daily"
key = "{}"

[[upstream]]
url = "https://mirror.example.org/"
proxy = "socks5h://127.0.0.1:9050"

[sync]
interval = "10m"
use_index_mirrors = true

[reader]
mirrors = ["https://a.example/", "file:///media/usb/repo"]
race_window = "200ms"

[metrics]
upstream_urls = true
"#,
            key.to_base64()
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.mirror.listen.port(), 9000);
        assert_eq!(c.mirror.store, Path::new("/etc/qasid/store"));
        assert_eq!(c.mirror.keep, Keep::Current);
        assert_eq!(c.mirror.max_push_bytes, 64 << 20);
        assert_eq!(c.mirror.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.publishers[0].key, key);
        assert_eq!(c.publishers[0].name.as_deref(), Some("Example Daily"));
        assert_eq!(c.upstreams[0].proxy.as_ref().unwrap().scheme(), "socks5h");
        assert!(c.sync.use_index_mirrors);
        assert_eq!(c.reader.mirrors.len(), 2);
        assert_eq!(c.reader.race_window, Duration::from_millis(200));
        assert!(c.metrics.upstream_urls);
    }

    #[test]
    fn key_may_be_a_pub_file_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed(&[5u8; 32]).public().clone();
        std::fs::write(dir.path().join("daily.pub"), key.to_file_text()).unwrap();
        let path = dir.path().join("mirrors.toml");
        std::fs::write(&path, "[[publisher]]\nkey = \"daily.pub\"\n").unwrap();
        assert_eq!(Config::load(&path).unwrap().publishers[0].key, key);
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let (line, column, message) = invalid("[mirror]\nlisten = \"127.0.0.1:1\"\nstore = \n");
        assert_eq!((line, column), (3, 9), "{message}");
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let (line, column, message) = invalid("[mirror]\n  lisen = \"127.0.0.1:1\"\n");
        assert_eq!((line, column), (2, 3));
        assert!(message.contains("lisen"), "{message}");
    }

    #[test]
    fn bad_values_point_at_the_value() {
        let (line, column, message) = invalid("[mirror]\nlisten = \"localhost\"\n");
        assert_eq!((line, column), (2, 10));
        assert!(message.contains("listen"), "{message}");

        let (line, _, message) = invalid("[sync]\ninterval = \"soon\"\n");
        assert_eq!(line, 2);
        assert!(message.contains("interval"), "{message}");

        let (line, column, message) = invalid("[[publisher]]\nkey = \"RWSnotakey\"\n");
        assert_eq!((line, column), (2, 7));
        assert!(message.contains("publisher key"), "{message}");

        let (line, _, message) = invalid("[[upstream]]\nurl = \"ftp://x.example/\"\n");
        assert_eq!(line, 2);
        assert!(message.contains("ftp"), "{message}");

        let (_, _, message) = invalid("[mirror]\nkeep = \"some\"\n");
        assert!(message.contains("\"all\" or \"current\""), "{message}");

        let (_, _, message) = invalid("[mirror]\nmax_push_bytes = \"12 parsecs\"\n");
        assert!(message.contains("max_push_bytes"), "{message}");
    }

    #[test]
    fn reader_mirrors_may_carry_their_own_proxy() {
        let c = parse(
            "[reader]\nmirrors = [\"https://a.example/\", { url = \"http://b.example/\", proxy = \
             \"socks5h://127.0.0.1:9050\" }]\nhedge_delay = \"1s\"\n",
        )
        .unwrap();
        assert_eq!(c.reader.mirrors.len(), 2);
        assert_eq!(c.reader.mirror_proxies.len(), 1);
        assert_eq!(c.reader.mirror_proxies[0].0.as_str(), "http://b.example/");
        assert_eq!(c.reader.mirror_proxies[0].1.scheme(), "socks5h");
        assert_eq!(c.reader.hedge_delay, Duration::from_secs(1));
        let (line, _, message) = invalid(
            "[reader]\nmirrors = [{ url = \"http://b.example/\", proxy = \"ftp://x/\" }]\n",
        );
        assert_eq!(line, 2);
        assert!(message.contains("proxy"), "{message}");
    }

    /// Found by fuzz_config: toml has no message for a control character in a comment, so the
    /// error was `mirrors.toml:1:4: ` with nothing after it.
    #[test]
    fn control_character_in_a_comment_gets_a_message() {
        let (line, column, message) = invalid("# a\0b\n[mirror]\n");
        assert_eq!((line, column), (1, 4));
        assert!(message.contains("control characters"), "{message}");
        let (_, _, message) = invalid("[mirror\0]\n");
        assert!(!message.contains('\n'), "{message:?}");
    }

    #[test]
    fn notes_and_note_sources_parse() {
        let c = parse(
            "[reader]\nnotes = [\"qasid:1:AAAA\", \"note.txt\", \"dns:_qasid.example.org\"]\n\
             dns_server = \"https://dns.example/dns-query\"\n\
             [[note_source]]\nurl = \"https://m.example/qasid/v1/publishers/ab/note\"\n",
        )
        .unwrap();
        assert_eq!(c.reader.notes.len(), 3);
        assert_eq!(
            c.reader.notes[1],
            crate::note::source::NoteSpec::File(PathBuf::from("/etc/qasid/note.txt"))
        );
        assert_eq!(c.note_sources.len(), 1);
        let (line, _, message) = invalid("[[note_source]]\nurl = \"qasid:1:AAAA\"\n");
        assert_eq!(line, 2);
        assert!(message.contains("note_source"), "{message}");
        let (_, _, message) = invalid("[reader]\ndns_server = \"resolver\"\n");
        assert!(message.contains("dns_server"), "{message}");
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("قاصد = x", 4), (1, 3));
        assert_eq!(line_column("قاصد = x", 5), (1, 3));
        assert_eq!(line_column("", 10), (1, 1));
    }
}
