//! `qasid read`: verify a bundle, then show the article in the terminal or extract it; or, given
//! an article NAME, fetch it from racing mirrors first (see `qasid fetch`).

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use clap::Args;
use qasid::bundle;
use qasid::keys::Trusted as _;
use qasid::limits::BundleLimits;
use qasid::reader::ArticleRequest;
use qasid::render::{self, ArticleHeader, RenderOptions};

use super::fetch::{self, SourceArgs};
use super::progress::{index_stage, Status};
use super::Failure;

/// Verify a bundle, then read the article in the terminal (or extract it with --out).
///
/// Nothing is shown or written unless the whole bundle verifies. With --out, the files are
/// extracted into DIR (which must not exist yet or be empty) and never outside it.
///
/// Given an article NAME (or NAME@VERSION) instead of a file, the bundle is first fetched from
/// the mirrors exactly as `qasid fetch NAME` does (same flags, same checks), kept in the state
/// folder's articles/, and then shown.
#[derive(Debug, Args)]
#[command(after_help = format!("Examples:
  qasid read launch.zip --publisher keys/publisher.pub | less
  qasid read launch.zip --publisher keys/publisher.pub --out launch/
  qasid read launch --config mirrors.toml
  qasid read launch --mirror /media/usb/qasid-repo --publisher keys/publisher.pub

{}", fetch::EXIT_CODES))]
pub struct ReadArgs {
    /// The bundle to read, or an article NAME[@VERSION] to fetch from mirrors.
    #[arg(value_name = "FILE.zip|NAME")]
    target: String,
    /// The publisher's public key: a publisher.pub file or its one-line base64 form. With a
    /// NAME, repeat for several trusted publishers (default: the config's).
    #[arg(long = "publisher", value_name = "PUBKEY")]
    publishers: Vec<String>,
    /// Extract the verified files into DIR instead of rendering.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Wrap text at this many columns (default: the terminal's width, or 80).
    #[arg(long, value_name = "COLUMNS")]
    width: Option<usize>,
    #[command(flatten)]
    source: SourceArgs,
}

impl ReadArgs {
    pub fn run(self) -> Result<(), Failure> {
        // An existing file, or anything that cannot be an article name, is a bundle file.
        let request = match Path::new(&self.target).exists() {
            true => None,
            false => self.target.parse::<ArticleRequest>().ok(),
        };
        let Some(request) = request else {
            let publisher = match self.publishers.as_slice() {
                [one] => {
                    let state = qasid::index::default_state_dir();
                    super::offline_chain(one, state.as_deref())?
                        .authority(std::time::SystemTime::now())
                }
                _ => {
                    return Err(Failure::usage(anyhow::anyhow!(
                        "reading a bundle file needs exactly one --publisher PUBKEY"
                    )))
                }
            };
            return self.show(Path::new(&self.target), &publisher);
        };
        let options = self.source.options(&self.publishers)?;
        let articles = fetch::articles_dir(&options.state_dir);
        let state_dir = options.state_dir.clone();
        let runtime = fetch::runtime()?;
        let mut asked = options.mirrors.clone();
        let (mut reader, notes) = fetch::open_reader(options, &runtime)?;
        asked.extend(notes.mirrors.iter().cloned());
        let status = Status::new(true);
        status.stage(index_stage(&asked));
        let updates = runtime.block_on(reader.update());
        status.stage(format!("the bundle of {}", request.name));
        let fetched =
            runtime.block_on(reader.fetch(&updates, &request, &articles, status.callback()));
        status.finish();
        fetch::print_report(&reader.report(), fetched.is_ok());
        let saved = fetched?;
        let chain = super::offline_chain(&saved.publisher.to_base64(), Some(&state_dir))?;
        self.show(&saved.path, &chain.authority(std::time::SystemTime::now()))
    }

    /// Verifies the bundle at `file` and renders it (or extracts it with --out).
    fn show(&self, file: &Path, publisher: &qasid::roots::Authority) -> Result<(), Failure> {
        let limits = BundleLimits::default();
        if let Some(out) = &self.out {
            let verified = bundle::extract_verified(file, publisher, &limits, out)?;
            let m = verified.manifest();
            println!(
                "extracted {} verified files of \"{}\" into {}",
                m.files().len(),
                qasid::shown::line(m.title()),
                out.display()
            );
            return Ok(());
        }
        let (verified, markdown) = bundle::read_article(file, publisher, &limits)?;
        let m = verified.manifest();
        let header = ArticleHeader {
            title: m.title(),
            author: m.author(),
            date: m.created(),
            language: m.language(),
        };
        let width = self.width.unwrap_or_else(terminal_width);
        let text = render::render_article(&header, &markdown, RenderOptions { width });
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| {
                writeln!(
                    stdout,
                    "\n-- verified: signed by publisher {} · content {}",
                    publisher.publisher().id(),
                    verified.manifest_id()
                )
            })
            .map_err(Failure::runtime)
    }
}

/// The terminal's width from `COLUMNS` when stdout is a terminal; 80 otherwise.
fn terminal_width() -> usize {
    if !std::io::stdout().is_terminal() {
        return 80;
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c: &usize| c >= 20)
        .unwrap_or(80)
}
