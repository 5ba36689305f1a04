//! `qasid status`: an operator's view of a mirror's store.

use std::path::PathBuf;

use clap::Args;

use super::{print_json, Failure};

/// Show what a mirror's store holds and how its sync is doing.
///
/// Per publisher: the installed index (sequence, issued, expiry, listed mirrors), objects and
/// bytes. Per upstream: its state (ok, failing, backing off), last success and last error, as
/// the sync last recorded them. Then the recent refusals (pushes and synced content refused,
/// newest last). Reads only: safe while the mirror runs. Each index is verified again against
/// the publisher's roots in the store; one that fails (changed on disk) exits 3.
///
/// A bucket store (s3://bucket/prefix, credentials as for push) shows per publisher its
/// objects, its index.json and the head copies under heads/, each verified against the
/// publisher's key and roots; anything that fails verification exits 3.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  qasid status --store /var/lib/qasid/store\n  qasid status --store qasid-store --json\n  qasid status --store s3://news-mirror/qasid"
)]
pub struct StatusArgs {
    /// The store: a folder (as given to `qasid mirror` or `qasid sync`) or a bucket store
    /// s3://bucket/prefix (credentials and endpoint from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, an AWS profile (AWS_PROFILE), or
    /// [s3] of --config).
    #[arg(long, value_name = "DIR|S3_URL", default_value = "qasid-store")]
    store: PathBuf,
    /// mirrors.toml whose [s3] endpoint, region and path_style apply to an s3:// store.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

impl StatusArgs {
    pub fn run(self) -> Result<(), Failure> {
        let text = self.store.to_string_lossy();
        if text.starts_with(qasid::bucket::SCHEME) {
            let url = qasid::bucket::BucketUrl::parse(&text)?;
            return self.run_bucket(&url);
        }
        let status = qasid::status::read(&self.store)?;
        let unverified = status.unverified();
        if self.json {
            return json_or_refusal(&status, unverified);
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
            print_publisher(p);
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
        refusal(unverified)
    }

    fn run_bucket(&self, url: &qasid::bucket::BucketUrl) -> Result<(), Failure> {
        let settings = match &self.config {
            Some(path) => qasid::config::Config::load(path)?.s3,
            None => qasid::bucket::Settings::default(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Failure::runtime)?;
        let status = runtime.block_on(async {
            let bucket =
                qasid::bucket::Bucket::connect(url, &settings, qasid::bucket::Access::List).await?;
            qasid::status::read_bucket(&bucket).await
        })?;
        let unverified = status.unverified();
        if self.json {
            return json_or_refusal(&status, unverified);
        }
        println!("store {}", status.store);
        if status.publishers.is_empty() {
            println!("  no publishers yet");
        }
        for p in &status.publishers {
            print_publisher(p);
            let heads: Vec<String> = p
                .heads
                .iter()
                .flatten()
                .map(|h| match h.verified {
                    true => h.sequence.to_string(),
                    false => format!("{} (DOES NOT VERIFY)", h.sequence),
                })
                .collect();
            if !heads.is_empty() {
                println!("  head copies: {}", heads.join(", "));
            }
            match &p.note {
                Some(n) if n.verified => println!(
                    "  note sequence {}, expires {}{} (verified)",
                    n.sequence.unwrap_or_default(),
                    n.expires.as_deref().unwrap_or_default(),
                    if n.expired == Some(true) {
                        " (EXPIRED)"
                    } else {
                        ""
                    }
                ),
                Some(n) => println!(
                    "  note FAILS VERIFICATION: {}",
                    n.error.as_deref().unwrap_or_default()
                ),
                None => {}
            }
        }
        refusal(unverified)
    }
}

/// The two lines every kind of store prints for a publisher: its index, then what it holds.
fn print_publisher(p: &qasid::status::PublisherStatus) {
    let index = match (&p.index, &p.error) {
        (_, Some(e)) if p.unverified => format!("FAILS VERIFICATION: {e}"),
        (_, Some(e)) => format!("index unreadable: {e}"),
        (Some(i), None) => format!(
            "index {} issued {}, expires {}{} (verified)",
            i.sequence,
            i.issued,
            i.expires,
            if i.expired { " (EXPIRED)" } else { "" }
        ),
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

/// The report as JSON: printed when everything verified, else carried by the verification
/// failure (exit 3) that `unverified` names.
fn json_or_refusal<T: serde::Serialize>(
    status: &T,
    unverified: Option<String>,
) -> Result<(), Failure> {
    let Some(line) = unverified else {
        return print_json(status);
    };
    let fields =
        serde_json::to_value(status).map_err(|e| Failure::runtime(std::io::Error::from(e)))?;
    Err(Failure::new(qasid::ErrorClass::Verification, anyhow::anyhow!(line)).with_json(fields))
}

/// Exit 3 with the line `unverified` gives, if any.
fn refusal(unverified: Option<String>) -> Result<(), Failure> {
    match unverified {
        None => Ok(()),
        Some(line) => Err(Failure::new(
            qasid::ErrorClass::Verification,
            anyhow::anyhow!(line),
        )),
    }
}
