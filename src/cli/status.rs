//! `qasid status`: an operator's view of a mirror's store.

use std::path::PathBuf;

use clap::Args;

use super::{print_json, Failure};

/// Show what a mirror's store holds and how its sync is doing.
///
/// Per publisher: the installed index (sequence, issued, expiry, listed mirrors), objects and
/// bytes. Per upstream: its state (ok, failing, backing off), last success and last error, as
/// the sync last recorded them. Then the recent refusals (pushes and synced content refused,
/// newest last). Reads only: safe while the mirror runs.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  qasid status --store /var/lib/qasid/store\n  qasid status --store qasid-store --json"
)]
pub struct StatusArgs {
    /// The store folder (as given to `qasid mirror` or `qasid sync`).
    #[arg(long, value_name = "DIR", default_value = "qasid-store")]
    store: PathBuf,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

impl StatusArgs {
    pub fn run(self) -> Result<(), Failure> {
        let status = qasid::status::read(&self.store)?;
        if self.json {
            return print_json(&status);
        }
        let running = if status.in_use {
            "a mirror or sync is running on it"
        } else {
            "no mirror or sync is running on it"
        };
        println!("store {} ({running})", status.store.display());
        if status.publishers.is_empty() {
            println!("  no publishers yet");
        }
        for p in &status.publishers {
            let index = match (&p.index, &p.error) {
                (Some(i), _) => format!(
                    "index {} issued {}, expires {}{}",
                    i.sequence,
                    i.issued,
                    i.expires,
                    if i.expired { " (EXPIRED)" } else { "" }
                ),
                (None, Some(e)) => format!("index unreadable: {e}"),
                (None, None) => "no index yet".to_owned(),
            };
            println!("publisher {}: {index}", p.publisher.key_id);
            println!(
                "  {} bundle(s), {} signature(s), {} piece(s), {}",
                p.bundles,
                p.minisigs,
                p.pieces,
                super::sync::human_bytes(p.bytes)
            );
        }
        if status.upstreams.is_empty() {
            println!("upstreams: none synced yet");
        }
        for u in &status.upstreams {
            let last = u.last_success.as_deref().unwrap_or("never");
            println!("upstream {}: {}, last success {last}", u.url, u.state);
            if let Some(e) = &u.last_error {
                println!("  {} failed round(s); last error: {e}", u.failures);
            }
        }
        if status.refusals.is_empty() {
            println!("refusals: none recorded");
        } else {
            println!("recent refusals ({}, newest last):", status.refusals.len());
            let now = std::time::SystemTime::now();
            for r in &status.refusals {
                let ago = qasid::store::refusals::age(r, now);
                let ago = humantime::format_duration(ago);
                let publisher = r
                    .key_id
                    .as_deref()
                    .map(|p| format!(" publisher {p}"))
                    .unwrap_or_default();
                let from = r
                    .upstream
                    .as_deref()
                    .map(|u| format!(" from {u}"))
                    .unwrap_or_default();
                println!(
                    "  {ago} ago: {} {}{publisher}{from}: {}",
                    r.source, r.what, r.reason
                );
            }
        }
        Ok(())
    }
}
