//! `qasid demo`: run the story on loopback and narrate it.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use qasid::demo::{self, DemoOptions, Narration};

use super::Failure;

/// Watch the whole story on this machine: a publisher signs the sample articles, mirrors
/// spread them, a censor blocks some mirrors, a hostile mirror replays an old index and forges
/// an article, and a reader still gets the real article, verified.
///
/// Everything runs on 127.0.0.1 with the same code as the real commands. At the end the
/// mirrors' reader pages stay up for a browser until Ctrl-C (or stop at once with --exit).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  qasid demo\n  qasid demo --dir /tmp/qasid-demo --exit")]
pub struct DemoArgs {
    /// Keep the working files (keys, bundles, repo, mirror stores) in DIR instead of a
    /// temporary folder that is removed at the end.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Stop as soon as the story is told instead of serving the pages until Ctrl-C.
    #[arg(long)]
    exit: bool,
}

impl DemoArgs {
    pub fn run(self) -> Result<(), Failure> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(Failure::runtime)?;
        runtime.block_on(async move {
            let started = Instant::now();
            let mut out = std::io::stdout().lock();
            let mut print = |n: Narration| {
                let took = n
                    .took
                    .map(|d| format!(" ({} ms)", d.as_millis()))
                    .unwrap_or_default();
                // Narration goes to stdout as it happens; a closed pipe just ends the output.
                let _ = writeln!(
                    out,
                    "[{:>5.2}s] {:<9} {}{took}",
                    started.elapsed().as_secs_f64(),
                    n.actor.label(),
                    n.text
                );
            };
            let kept = self.dir.is_some();
            let told = demo::run(DemoOptions { dir: self.dir }, &mut print).await;
            let told = told.map_err(|e| Failure::new(e.class(), e))?;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "\n{}", told.article_text);
            let took = started.elapsed().as_secs_f64();
            if self.exit {
                // Only what still exists once the demo stops: no URLs of stopped servers, no
                // temporary folder that is gone.
                drop(out);
                let dir = told.dir().to_owned();
                told.shutdown().await;
                let mut out = std::io::stdout().lock();
                let _ = match kept {
                    true => writeln!(
                        out,
                        "Story told in {took:.1} s. Working files kept in {}.",
                        dir.display()
                    ),
                    false => writeln!(
                        out,
                        "Story told in {took:.1} s. Its temporary working files are removed \
                         (keep them with --dir DIR)."
                    ),
                };
                let _ = writeln!(
                    out,
                    "The mirrors are stopped; run `qasid demo` without --exit to browse their \
                     reader pages."
                );
                return Ok(());
            }
            let _ = writeln!(
                out,
                "Story told in {took:.1} s. Working files: {}",
                told.dir().display()
            );
            let _ = writeln!(out, "Reader pages (plain HTML, no JavaScript):");
            for (actor, url) in &told.pages {
                let _ = writeln!(out, "  {:<9} {url}", actor.label());
            }
            let _ = writeln!(out, "  article   {}", told.article_page);
            let _ = writeln!(out, "Serving until Ctrl-C.");
            drop(out);
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!("cannot listen for Ctrl-C: {e}");
            }
            told.shutdown().await;
            Ok(())
        })
    }
}
