//! `qasid read`: verify a bundle, then show the article in the terminal or extract it.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use clap::Args;
use qasid::bundle;
use qasid::keys::PublicKey;
use qasid::limits::BundleLimits;
use qasid::render::{self, ArticleHeader, RenderOptions};

use super::Failure;

/// Verify a bundle, then read the article in the terminal (or extract it with --out).
///
/// Nothing is shown or written unless the whole bundle verifies. With --out, the files are
/// extracted into DIR (which must not exist yet or be empty) and never outside it.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  qasid read launch.zip --publisher keys/publisher.pub | less\n  qasid read launch.zip --publisher keys/publisher.pub --out launch/"
)]
pub struct ReadArgs {
    /// The bundle to read.
    file: PathBuf,
    /// The publisher's public key: a publisher.pub file or its one-line base64 form.
    #[arg(long, value_name = "PUBKEY")]
    publisher: String,
    /// Extract the verified files into DIR instead of rendering.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Wrap text at this many columns (default: the terminal's width, or 80).
    #[arg(long, value_name = "COLUMNS")]
    width: Option<usize>,
}

impl ReadArgs {
    pub fn run(self) -> Result<(), Failure> {
        let publisher = PublicKey::from_arg(&self.publisher)?;
        let limits = BundleLimits::default();
        if let Some(out) = &self.out {
            let verified = bundle::extract_verified(&self.file, &publisher, &limits, out)?;
            let m = verified.manifest();
            println!(
                "extracted {} verified files of \"{}\" into {}",
                m.files().len(),
                m.title(),
                out.display()
            );
            return Ok(());
        }
        let (verified, markdown) = bundle::read_article(&self.file, &publisher, &limits)?;
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
                    publisher.id(),
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
