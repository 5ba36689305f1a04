//! `qasid fetch`: list a publisher's current articles, or download one, from racing mirrors.
//!
//! Also holds the mirror flags `qasid read NAME` shares, and the printing of the reader's
//! report. It only turns flags (and the config file) into [`ReaderOptions`], calls the reader
//! and prints; every decision about mirrors and authenticity is the library's.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Args;
use qasid::bundle;
use qasid::config::{parse_proxy_url, Config};
use qasid::index::{default_state_dir, ArticleVersion, Freshness};
use qasid::keys::PublicKey;
use qasid::limits::{BundleLimits, IndexLimits};
use qasid::note::dns::DnsServer;
use qasid::note::source::NoteSpec;
use qasid::reader::{
    gather_notes, ArticleRequest, Fate, GatheredNotes, MirrorLocation, MirrorSpec, Origin,
    PublisherUpdate, Reader, ReaderError, ReaderOptions, Report, SavedBundle,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT,
};
use serde_json::json;

use super::progress::{index_stage, Status};
use super::{json, print_json, Failure};

pub const EXIT_CODES: &str = "Exit codes: 0 ok (warnings, such as a STALE INDEX, go to stderr); \
1 every mirror failed at runtime (timeouts, refused connections, errors); 2 usage or bad input \
(a bad flag, an article no trusted publisher lists); 3 no authentic answer: what the mirrors \
sent failed verification (forged or tampered data, a rollback to an older index, equivocation).";

/// Where to fetch from and how: shared by `qasid fetch` and `qasid read NAME`.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// A mirrors.toml: its [reader] section and [[publisher]] keys are used (flags win; list
    /// flags replace the file's lists).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A mirror to race: an http(s):// base URL, an s3://bucket/prefix (read with the AWS_*
    /// credentials and [s3]), a file:// URL or a folder (a repo copied to a USB stick). Repeat
    /// for several. Mirrors learned from signed indexes are tried too.
    #[arg(long = "mirror", value_name = "URL|DIR")]
    mirrors: Vec<String>,
    /// Send every request through this proxy, e.g. socks5h://127.0.0.1:9050 for Tor (socks5h
    /// resolves host names through the proxy too). Overrides proxies in the config.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// No connection leaves except through a proxy: mirrors without their own (learned ones
    /// included) go through --proxy or the strictest proxy in the config; a run with no proxy,
    /// or a socks5:// one that resolves names locally, is refused. Also [reader] proxy_only.
    #[arg(long)]
    proxy_only: bool,
    /// Where accepted indexes, learned mirrors and partial downloads are kept [default:
    /// $XDG_STATE_HOME/qasid or ~/.local/state/qasid].
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// After the first valid index arrives, how long to wait for a fresher one [default: 300ms].
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    race_window: Option<Duration>,
    /// How long a download may go without moving (4 KiB/s or more) before the next mirror is
    /// asked too [default: 500ms].
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    hedge_delay: Option<Duration>,
    /// Longest wait for a connection to a mirror or the proxy [default: 15s].
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    connect_timeout: Option<Duration>,
    /// Longest wait for the next byte from a mirror [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    timeout: Option<Duration>,
    /// A signed mirror note: a qasid:1:… URI, a file holding one, an https:// URL of one, or
    /// dns:NAME (its TXT records). Its mirrors join the race if a trusted publisher signed it,
    /// it has not expired and it is not older than a note seen before. Repeat for several;
    /// replaces the config's [reader] notes and [[note_source]] list.
    #[arg(long = "note", value_name = "NOTE")]
    notes: Vec<String>,
    /// Resolver for dns: notes: IP[:PORT], or DNS over HTTPS as https://…/dns-query (sent
    /// through the proxy) [default: the system's; with a proxy, DNS over HTTPS is required].
    #[arg(long, value_name = "IP:PORT|URL")]
    dns_server: Option<String>,
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| e.to_string())
        .and_then(|d| {
            if d.is_zero() {
                Err("must be more than zero".into())
            } else {
                Ok(d)
            }
        })
}

impl SourceArgs {
    /// The config file, or the defaults without one.
    pub fn config(&self) -> Result<Config, Failure> {
        Ok(match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        })
    }

    /// The reader's options: flags first, then the config file, then the defaults.
    pub fn options(&self, publisher_args: &[String]) -> Result<ReaderOptions, Failure> {
        self.options_with(&self.config()?, publisher_args)
    }

    fn options_with(
        &self,
        config: &Config,
        publisher_args: &[String],
    ) -> Result<ReaderOptions, Failure> {
        let limits = IndexLimits::default();
        let mut mirrors = if self.mirrors.is_empty() {
            config
                .reader
                .mirrors
                .iter()
                .map(|url| {
                    Ok(MirrorSpec {
                        location: MirrorLocation::from_url(url, &limits)?,
                        proxy: config
                            .reader
                            .mirror_proxies
                            .iter()
                            .find(|(m, _)| m == url)
                            .map(|(_, p)| p.clone()),
                        origin: Origin::Config,
                    })
                })
                .collect::<Result<Vec<_>, ReaderError>>()?
        } else {
            self.mirrors
                .iter()
                .map(|text| {
                    Ok(MirrorSpec {
                        location: MirrorLocation::parse(text, &limits)?,
                        proxy: None,
                        origin: Origin::Flag,
                    })
                })
                .collect::<Result<Vec<_>, ReaderError>>()?
        };
        let proxy = match &self.proxy {
            Some(text) => {
                // The flag means "everything through this proxy": no per-mirror exceptions.
                mirrors.iter_mut().for_each(|m| m.proxy = None);
                Some(
                    parse_proxy_url(text)
                        .map_err(|e| Failure::usage(anyhow::anyhow!("--proxy: {e}")))?,
                )
            }
            None => config.reader.proxy.clone(),
        };
        let publishers = if publisher_args.is_empty() {
            config.publisher_keys()
        } else {
            Vec::new()
        };
        let state_dir = self
            .state
            .clone()
            .or_else(|| config.reader.state.clone())
            .or_else(default_state_dir)
            .ok_or_else(|| {
                Failure::usage(anyhow::anyhow!(
                    "no state folder: set --state, XDG_STATE_HOME or HOME"
                ))
            })?;
        let notes = if self.notes.is_empty() {
            let mut notes = config.reader.notes.clone();
            notes.extend(config.note_sources.iter().cloned());
            notes
        } else {
            self.notes
                .iter()
                .map(|n| NoteSpec::parse(n))
                .collect::<Result<Vec<_>, _>>()?
        };
        let dns_server = match &self.dns_server {
            Some(text) => Some(
                DnsServer::parse(text)
                    .map_err(|e| Failure::usage(anyhow::anyhow!("--dns-server: {e}")))?,
            ),
            None => config.reader.dns_server.clone(),
        };
        let publishers = if publisher_args.is_empty() {
            // First roots named in the config (`key = "root.json"`) are held from the start.
            if !config.publisher_roots.is_empty() {
                std::fs::create_dir_all(&state_dir).map_err(Failure::runtime)?;
            }
            for root in &config.publisher_roots {
                let id = root.publisher_id();
                let storage = qasid::roots::state_storage(&state_dir, &id);
                qasid::roots::Chain::open(&id, Some(storage))
                    .and_then(|mut chain| chain.offer(&root.to_bytes()))
                    .map_err(|e| Failure::new(e.class(), e))?;
            }
            publishers
        } else {
            std::fs::create_dir_all(&state_dir).map_err(Failure::runtime)?;
            publisher_args
                .iter()
                .map(|p| super::publisher_arg(p, Some(&state_dir)))
                .collect::<Result<Vec<_>, _>>()?
        };
        let mut options = ReaderOptions::new(mirrors, publishers, state_dir);
        options.notes = notes;
        options.dns_server = dns_server;
        options.proxy = proxy;
        options.s3 = config.s3.clone();
        options.proxy_only = self.proxy_only || config.reader.proxy_only;
        options.race_window = self.race_window.unwrap_or(config.reader.race_window);
        options.hedge_delay = self.hedge_delay.unwrap_or(config.reader.hedge_delay);
        options.connect_timeout = self
            .connect_timeout
            .or(config.reader.connect_timeout)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        options.read_timeout = self
            .timeout
            .or(config.reader.timeout)
            .unwrap_or(DEFAULT_READ_TIMEOUT);
        Ok(options)
    }
}

/// List the current articles from the freshest verified index, or fetch one by NAME.
///
/// Every mirror is asked at once for each trusted publisher's signed index; only indexes
/// signed by a trusted key are accepted, and after the first valid answer a short window
/// waits for a fresher one. An index older than one seen before is refused as a rollback
/// (the highest sequence seen is kept in the state folder). With NAME, the bundle is
/// downloaded by its signed sha256 from the fastest mirror that answered, with the next
/// mirror asked too if bytes stop coming; it is verified and saved as
/// OUT/NAME-vVERSION.zip. Mirrors that send wrong bytes are reported as lying and not asked
/// again. A report of every mirror's fate goes to stderr.
#[derive(Debug, Args)]
#[command(after_help = format!("Examples:
  qasid fetch --mirror https://mirror.example/ --publisher keys/publisher.pub
  qasid fetch launch --config mirrors.toml --out news/ --extract
  qasid fetch launch@2 --mirror /media/usb/qasid-repo --publisher RWQ...base64...
  qasid fetch --config mirrors.toml --proxy socks5h://127.0.0.1:9050 --json

{EXIT_CODES}"))]
pub struct FetchArgs {
    /// The article to download: NAME (its current version) or NAME@VERSION. Without it, the
    /// current articles are listed.
    #[arg(value_name = "NAME[@VERSION]")]
    article: Option<String>,
    /// A trusted publisher: a publisher.pub file or its one-line base64 key. Repeat for
    /// several; replaces the config's [[publisher]] keys.
    #[arg(long = "publisher", value_name = "PUBKEY")]
    publishers: Vec<String>,
    /// Where to save the bundle [default: the current folder].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Also extract the verified files into OUT/NAME-vVERSION/ (which must not exist yet).
    #[arg(long, requires = "article")]
    extract: bool,
    /// Print one JSON document (articles or the saved bundle, mirror fates, warnings) on
    /// stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    source: SourceArgs,
}

impl FetchArgs {
    pub fn run(self) -> Result<(), Failure> {
        let request = self
            .article
            .as_deref()
            .map(str::parse::<ArticleRequest>)
            .transpose()?;
        let config = self.source.config()?;
        let out = (self.out.clone())
            .or_else(|| config.reader.out.clone())
            .unwrap_or_else(|| PathBuf::from("."));
        let runtime = runtime()?;
        let options = self.source.options_with(&config, &self.publishers)?;
        let mut asked = options.mirrors.clone();
        let (mut reader, notes) = open_reader(options, &runtime)?;
        asked.extend(notes.mirrors.iter().cloned());
        let status = Status::new(!self.json);
        status.stage(index_stage(&asked));
        let updates = runtime.block_on(reader.update());
        let Some(request) = request else {
            status.finish();
            return self.list(&reader, updates, &notes);
        };
        status.stage(format!("the bundle of {}", request.name));
        let fetched = runtime.block_on(reader.fetch(&updates, &request, &out, status.callback()));
        status.finish();
        let extracted = match &fetched {
            Ok(saved) if self.extract => Some(extract(saved)),
            _ => None,
        };
        if let (Ok(saved), false) = (&fetched, self.json) {
            print_saved(saved);
            if let Some(Ok((dir, files))) = &extracted {
                println!("extracted {files} verified files into {}", dir.display());
            }
        }
        let report = reader.report();
        print_report(&report, false);
        let mut doc = document(&updates, &report);
        doc["notes"] = notes_json(&notes);
        if let Ok(saved) = &fetched {
            doc["article"] = saved_json(saved, extracted.as_ref().and_then(|e| e.as_ref().ok()));
        }
        let result = fetched
            .map_err(Failure::from)
            .and_then(|_| match extracted {
                Some(Err(e)) => Err(e),
                _ => Ok(()),
            });
        self.finish_json(result, doc)
    }

    /// Prints the JSON document on success; on failure attaches it to the failure, which
    /// `main` prints with the error.
    fn finish_json(
        &self,
        result: Result<(), Failure>,
        doc: serde_json::Value,
    ) -> Result<(), Failure> {
        match result {
            Ok(()) if self.json => print_json(&doc),
            Ok(()) => Ok(()),
            Err(failure) => Err(failure.with_json(doc)),
        }
    }

    fn list(
        &self,
        reader: &Reader,
        updates: Vec<PublisherUpdate>,
        notes: &GatheredNotes,
    ) -> Result<(), Failure> {
        let report = reader.report();
        if !self.json {
            print_listing(&updates);
        }
        print_report(&report, false);
        let mut doc = document(&updates, &report);
        doc["notes"] = notes_json(notes);
        self.finish_json(finish(updates), doc)
    }
}

/// Reads the mirror notes (printing what each source gave), adds their mirrors and opens the
/// reader. With no mirror at all, a failed note is the error to report.
pub fn open_reader(
    mut options: ReaderOptions,
    runtime: &tokio::runtime::Runtime,
) -> Result<(Reader, GatheredNotes), Failure> {
    let notes = runtime.block_on(gather_notes(&options))?;
    for outcome in &notes.outcomes {
        match &outcome.result {
            Ok(accepted) => {
                for a in accepted {
                    eprintln!(
                        "qasid: note from {}: publisher {} sequence {}, {} mirrors",
                        plain(&outcome.source),
                        a.publisher.id(),
                        a.sequence,
                        a.mirrors.len()
                    );
                }
            }
            Err(f) => eprintln!(
                "qasid: note from {}: not used: {}",
                plain(&outcome.source),
                plain(&f.message)
            ),
        }
    }
    options.mirrors.extend(notes.mirrors.iter().cloned());
    match Reader::open(options) {
        Ok(mut reader) => {
            runtime.block_on(reader.check_proxies())?;
            Ok((reader, notes))
        }
        Err(ReaderError::NoMirrors) if notes.worst_failure().is_some() => {
            let f = notes.worst_failure().expect("checked");
            Err(Failure::new(
                f.class,
                anyhow::anyhow!("no mirrors, and no usable note: {}", plain(&f.message)),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

fn notes_json(notes: &GatheredNotes) -> serde_json::Value {
    notes
        .outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(accepted) => json!({
                "source": o.source,
                "ok": true,
                "notes": accepted.iter().map(|a| json!({
                    "publisher": super::json::publisher(&a.publisher),
                    "sequence": a.sequence,
                    "mirrors": a.mirrors.iter().map(|m| json!({"url": m.url.as_str(), "hint": m.hint})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            }),
            Err(f) => json!({
                "source": o.source,
                "ok": false,
                "error": super::json::error(f.class, &f.message),
            }),
        })
        .collect()
}

/// Runs the reader on a small single-threaded runtime (file and zip work goes to its
/// blocking pool).
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::runtime)
}

/// Every publisher whose index could not be obtained is reported; the exit code is the worst
/// of them (verification before runtime).
pub fn finish(updates: Vec<PublisherUpdate>) -> Result<(), Failure> {
    let mut errors: Vec<ReaderError> = updates.into_iter().filter_map(|u| u.result.err()).collect();
    errors.sort_by_key(|e| std::cmp::Reverse(class_rank(e)));
    let mut errors = errors.into_iter();
    let Some(first) = errors.next() else {
        return Ok(());
    };
    for other in errors {
        eprintln!("qasid: error: {:#}", anyhow::Error::from(other));
    }
    Err(first.into())
}

fn class_rank(e: &ReaderError) -> u8 {
    match e.class() {
        qasid::ErrorClass::Verification => 2,
        qasid::ErrorClass::Runtime => 1,
        qasid::ErrorClass::Usage => 0,
    }
}

/// Extracts a saved bundle into OUT/NAME-vVERSION/: (folder, number of files).
fn extract(saved: &SavedBundle) -> Result<(PathBuf, usize), Failure> {
    let dir = saved.path.with_extension("");
    let verified = bundle::extract_verified(
        &saved.path,
        &saved.publisher,
        &BundleLimits::default(),
        &dir,
    )?;
    Ok((dir, verified.manifest().files().len()))
}

/// Prints warnings loudly and each mirror's fate on stderr. With `problems_only`, mirrors
/// that were fine (ok, not needed) are left out.
pub fn print_report(report: &Report, problems_only: bool) {
    for warning in &report.warnings {
        eprintln!("qasid: WARNING: {warning}");
    }
    let lines: Vec<String> = report
        .mirrors
        .iter()
        .filter(|m| !problems_only || !matches!(m.fate, Fate::Ok | Fate::NotNeeded))
        .map(|m| {
            let mut line = format!("  {:<10}  {}", m.fate.as_str(), plain(&m.mirror));
            if m.origin == Origin::Known {
                line.push_str(" (learned from an index)");
            }
            if m.origin == Origin::Note {
                line.push_str(" (from a note)");
            }
            if let Some(ms) = m.answered_ms {
                line.push_str(&format!(" · index in {ms} ms"));
            }
            if let Some(detail) = &m.detail {
                line.push_str(&format!(" · {}", plain(detail)));
            }
            if m.bytes_delivered > 0 || m.bytes_wasted > 0 {
                line.push_str(&format!(
                    " · {} bytes delivered, {} wasted",
                    m.bytes_delivered, m.bytes_wasted
                ));
            }
            line
        })
        .collect();
    if !lines.is_empty() {
        eprintln!("qasid: mirrors:");
        for line in lines {
            eprintln!("{line}");
        }
    }
}

fn print_listing(updates: &[PublisherUpdate]) {
    let now = SystemTime::now();
    for update in updates {
        let Ok(p) = &update.result else { continue };
        let head = p.index.head();
        let expired = match p.index.freshness(now) {
            Freshness::Fresh => String::new(),
            Freshness::Expired { .. } => " · EXPIRED".to_owned(),
        };
        println!(
            "publisher {} · index {} · issued {} · expires {}{expired}",
            update.publisher.id(),
            head.sequence(),
            humantime::format_rfc3339_seconds(head.issued()),
            humantime::format_rfc3339_seconds(head.expires()),
        );
        let mut current: Vec<&ArticleVersion> =
            p.index.current().into_iter().map(|(_, a)| a).collect();
        current.sort_by(|a, b| b.date().cmp(a.date()).then(a.name().cmp(b.name())));
        if current.is_empty() {
            println!("  (no current articles)");
        }
        for a in current {
            println!(
                "  {}  {:<24} v{:<3} {:<5} {}",
                a.date(),
                a.name(),
                a.version(),
                a.language(),
                plain(a.title())
            );
        }
    }
}

fn print_saved(saved: &SavedBundle) {
    let a = &saved.article;
    let from = match &saved.source {
        Some(mirror) => format!("from {}", plain(mirror)),
        None => "already saved".to_owned(),
    };
    println!(
        "saved {}: \"{}\" ({} v{}, {} bytes, sha256 {}) {from}, verified: signed by publisher {}",
        saved.path.display(),
        plain(a.title()),
        a.name(),
        a.version(),
        a.bundle().size,
        a.bundle().sha256,
        saved.publisher.id()
    );
}

fn article_json(publisher: &PublicKey, a: &ArticleVersion) -> serde_json::Value {
    json!({
        "name": a.name(),
        "version": a.version(),
        "title": a.title(),
        "date": a.date(),
        "language": a.language(),
        "author": a.author(),
        "publisher": json::publisher(publisher),
        "sha256": a.bundle().sha256.to_string(),
        "size": a.bundle().size,
    })
}

fn saved_json(saved: &SavedBundle, extracted: Option<&(PathBuf, usize)>) -> serde_json::Value {
    let mut v = article_json(&saved.publisher, &saved.article);
    v["path"] = json!(saved.path);
    if let Some(mirror) = &saved.source {
        v["mirror"] = json!(mirror);
    }
    v["resumed_from"] = json!(saved.resumed_from);
    if let Some((dir, _)) = extracted {
        v["extracted"] = json!(dir);
    }
    v
}

/// The JSON document: publishers (with their current articles), mirrors and warnings.
fn document(updates: &[PublisherUpdate], report: &Report) -> serde_json::Value {
    let now = SystemTime::now();
    let publishers: Vec<serde_json::Value> = updates
        .iter()
        .map(|u| match &u.result {
            Ok(p) => {
                let head = p.index.head();
                let articles: Vec<serde_json::Value> = p
                    .index
                    .current()
                    .into_iter()
                    .map(|(_, a)| article_json(&u.publisher, a))
                    .collect();
                json!({
                    "publisher": json::publisher(&u.publisher),
                    "ok": true,
                    "sequence": head.sequence(),
                    "issued": humantime::format_rfc3339_seconds(head.issued()).to_string(),
                    "expires": humantime::format_rfc3339_seconds(head.expires()).to_string(),
                    "expired": p.index.freshness(now) != Freshness::Fresh,
                    "source": p.source,
                    "articles": articles,
                })
            }
            Err(e) => json!({
                "publisher": json::publisher(&u.publisher),
                "ok": false,
                "error": json::error(e.class(), &chain(e)),
            }),
        })
        .collect();
    json!({
        "publishers": publishers,
        "mirrors": report.mirrors,
        "warnings": report.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
    })
}

/// An error and its causes on one line, as the CLI prints them.
fn chain(e: &ReaderError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Text from an index or a mirror, safe to print (a signed title is only as honest as its
/// publisher).
use qasid::shown::line as plain;

/// The folder `qasid read NAME` keeps fetched bundles in.
pub fn articles_dir(state: &Path) -> PathBuf {
    state.join("articles")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flags about one run only, with no place in a config file: the config itself, the
    /// article asked for, extraction and the output format.
    const PER_RUN: &[&str] = &["config", "article", "extract", "json"];

    /// Every other `qasid fetch` flag has a mirrors.toml key: `[reader] <field name>`, or the
    /// `[[publisher]]` list for `--publisher`. A key the file lacks is an "unknown field" error;
    /// a key it has but with a value of the wrong type is any other error.
    #[test]
    fn every_fetch_flag_has_a_config_key() {
        let cmd = FetchArgs::augment_args(clap::Command::new("fetch"));
        let mut checked = 0;
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if PER_RUN.contains(&id) || id == "help" || id == "version" {
                continue;
            }
            let text = match id {
                "publishers" => "[[publisher]]\nkey = 0\n".to_owned(),
                _ => format!("[reader]\n{id} = 0\n"),
            };
            let err = Config::parse(&text, Path::new("mirrors.toml"))
                .expect_err("0 is not a valid value for any reader key")
                .to_string();
            assert!(
                !err.contains("unknown field"),
                "--{}: mirrors.toml has no key for it ({err})",
                arg.get_long().unwrap_or(id)
            );
            checked += 1;
        }
        assert!(checked >= 8, "only {checked} flags checked");
    }

    #[test]
    fn a_folder_in_the_config_is_a_mirror_like_on_the_command_line() {
        let text = "[reader]\nmirrors = [\"usb/repo\", \"/media/stick\"]\n";
        let config = Config::parse(text, Path::new("/etc/qasid/mirrors.toml")).unwrap();
        let limits = IndexLimits::default();
        let locations: Vec<MirrorLocation> = config
            .reader
            .mirrors
            .iter()
            .map(|u| MirrorLocation::from_url(u, &limits).unwrap())
            .collect();
        assert_eq!(
            locations,
            [
                MirrorLocation::Dir(PathBuf::from("/etc/qasid/usb/repo/")),
                MirrorLocation::Dir(PathBuf::from("/media/stick/")),
            ]
        );
    }
}
