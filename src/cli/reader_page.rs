//! `qasid reader-page`: write the self-contained verifying reader page for sharing.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use qasid::config::Config;
use qasid::index::MirrorUrl;
use qasid::limits::IndexLimits;
use qasid::reader_page::{build, PageConfig, PagePublisher};
use qasid::roots::Anchor;

use super::{print_json, Failure};

/// Write one HTML file that reads and verifies articles in any modern browser.
///
/// The page pins the publisher keys and mirror URLs given here, races those mirrors (and the
/// mirrors the signed indexes name), and shows an article only after checking its signed index,
/// its bundle's sha256 and size, the manifest signature and every file hash, in the browser. It
/// loads nothing but the mirrors' data. Share the file by any channel, with its sha256 (printed)
/// so readers can check their copy: a page served by a mirror could have been changed by it.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  qasid reader-page --publisher keys/publisher.pub --mirror https://mirror.example/ --out qasid-reader.html\n  qasid reader-page --config mirrors.toml --out qasid-reader.html\n\nOpen an article directly: qasid-reader.html#read=NAME"
)]
pub struct ReaderPageArgs {
    /// A trusted publisher: a publisher.pub file, its one-line base64 key, or its first root
    /// file (root.json), which the page then carries. Repeat for several;
    /// replaces the config's [[publisher]] keys.
    #[arg(long = "publisher", value_name = "PUBKEY")]
    publishers: Vec<String>,
    /// A mirror to pin (http or https base URL). Repeat for several; replaces the config's
    /// [reader] mirrors.
    #[arg(long = "mirror", value_name = "URL")]
    mirrors: Vec<String>,
    /// A mirrors.toml whose [[publisher]] keys and [reader] http(s) mirrors are pinned.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to write the page.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl ReaderPageArgs {
    pub fn run(self) -> Result<(), Failure> {
        let config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        let limits = IndexLimits::default();
        let publishers: Vec<PagePublisher> = if self.publishers.is_empty() {
            config
                .publisher_keys()
                .into_iter()
                .map(PagePublisher::from)
                .collect()
        } else {
            self.publishers
                .iter()
                .map(|p| Anchor::from_arg(p).map(|a| PagePublisher::from(&a)))
                .collect::<Result<Vec<_>, _>>()?
        };
        if publishers.is_empty() {
            return Err(Failure::usage(anyhow::anyhow!(
                "no publisher to trust: give --publisher PUBKEY or a --config with [[publisher]] keys"
            )));
        }
        let texts: Vec<String> = if self.mirrors.is_empty() {
            config
                .reader
                .mirrors
                .iter()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .map(|u| u.to_string())
                .collect()
        } else {
            self.mirrors.clone()
        };
        let mirrors = texts
            .iter()
            .map(|t| {
                MirrorUrl::parse(t, &limits).map_err(|e| {
                    Failure::usage(anyhow::anyhow!(
                        "--mirror {t:?}: {e} (the page reads http:// or https:// mirrors only)"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let page = build(&PageConfig {
            publishers,
            mirrors,
        });
        qasid::reader_page::write(&page, &self.out)
            .with_context(|| format!("writing {}", self.out.display()))
            .map_err(Failure::runtime)?;
        if self.json {
            print_json(&serde_json::json!({
                "path": self.out.display().to_string(),
                "size": page.html.len(),
                "page_sha256": page.sha256,
            }))
        } else {
            println!("wrote {} ({} bytes)", self.out.display(), page.html.len());
            println!("sha256 {}", page.sha256);
            Ok(())
        }
    }
}
