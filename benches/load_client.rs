//! Load client for `scripts/load-test.sh`: many concurrent readers against one mirror, every
//! response checked.
//!
//! Each worker is one reader with its own connection. It cycles through the bundle list (a file
//! of `<path> <size>` lines that the script replaces atomically as the publisher pushes new
//! bundles; re-read every 250 ms) and downloads each bundle whole, hashing the body as it streams
//! in: a body whose size or sha256 differs from the name it was asked for is *corrupted*. Every
//! `--index-every`th request is the publisher's `index.json`, verified against the publisher key
//! with the library's `SignedHead::verify`; its sequence must never go down for that worker (the
//! mirror swaps the index while publishes land). Transport errors, timeouts and non-200 answers
//! are *failed*. Latency is from sending the request to the last body byte.
//!
//! Run by the script (`cargo bench --bench load_client --no-run` builds it); prints a summary and
//! writes it as JSON with `--json`; exits 1 if any request failed or was corrupted.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use clap::Parser;
use qasid::index::SignedHead;
use qasid::keys::PublicKey;
use qasid::limits::IndexLimits;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
struct Args {
    /// The mirror's base URL, e.g. http://127.0.0.1:8080/.
    #[arg(long)]
    base: String,
    /// File of `<path under base> <size>` lines, one per bundle; the name's stem is its sha256.
    #[arg(long)]
    urls: PathBuf,
    /// The publisher key (publisher.pub or one-line base64) that signs index.json.
    #[arg(long)]
    publisher: String,
    /// Concurrent readers.
    #[arg(long, default_value_t = 64)]
    workers: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Every Nth request of a worker is index.json (0: never).
    #[arg(long, default_value_t = 10)]
    index_every: u64,
    /// Write the summary here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone)]
struct Target {
    path: String,
    sha256: String,
    size: u64,
}

/// What one worker saw. Merged at the end; latencies in microseconds.
#[derive(Debug, Default)]
struct Tally {
    bundles: u64,
    indexes: u64,
    bytes: u64,
    failed: u64,
    corrupted: u64,
    index_rollbacks: u64,
    highest_sequence: u64,
    bundle_latency_us: Vec<u64>,
    index_latency_us: Vec<u64>,
    first_errors: Vec<String>,
}

impl Tally {
    fn note(&mut self, what: String) {
        if self.first_errors.len() < 5 {
            self.first_errors.push(what);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.bundles += other.bundles;
        self.indexes += other.indexes;
        self.bytes += other.bytes;
        self.failed += other.failed;
        self.corrupted += other.corrupted;
        self.index_rollbacks += other.index_rollbacks;
        self.highest_sequence = self.highest_sequence.max(other.highest_sequence);
        self.bundle_latency_us.extend(other.bundle_latency_us);
        self.index_latency_us.extend(other.index_latency_us);
        for e in other.first_errors {
            self.note(e);
        }
    }
}

fn read_targets(path: &PathBuf) -> std::io::Result<Vec<Target>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (path, size) = line.split_once(' ')?;
            let stem = path.rsplit('/').next()?.strip_suffix(".zip")?;
            let size = size.trim().parse().ok()?;
            (stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Target {
                path: path.to_owned(),
                sha256: stem.to_owned(),
                size,
            })
        })
        .collect())
}

/// Why a response was not the right bytes, or not a response at all.
enum Bad {
    Failed(String),
    Corrupted(String),
}

/// Downloads `url` whole, hashing as it streams; at most `cap` bytes are read.
async fn get(client: &reqwest::Client, url: &str, cap: u64) -> Result<(Vec<u8>, String), Bad> {
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| Bad::Failed(format!("{url}: {e}")))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(Bad::Failed(format!("{url}: HTTP {}", resp.status())));
    }
    let mut hasher = Sha256::new();
    let mut body = Vec::new();
    let mut total = 0u64;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Bad::Failed(format!("{url}: body: {e}")))?
    {
        total += chunk.len() as u64;
        if total > cap {
            return Err(Bad::Corrupted(format!("{url}: more than {cap} bytes")));
        }
        hasher.update(&chunk);
        if url.ends_with("index.json") {
            body.extend_from_slice(&chunk);
        }
    }
    Ok((body, hex::encode(hasher.finalize())))
}

async fn worker(
    id: usize,
    args: Arc<Args>,
    key: Arc<PublicKey>,
    targets: Arc<RwLock<Arc<Vec<Target>>>>,
    stop: CancellationToken,
) -> Tally {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build()
        .expect("static client settings");
    let index_url = format!("{}qasid/v1/publishers/{}/index.json", args.base, key.hex());
    let limits = IndexLimits::default();
    let mut tally = Tally::default();
    let mut next = id * 7;
    let mut n = 0u64;
    while !stop.is_cancelled() {
        n += 1;
        let start = Instant::now();
        if args.index_every > 0 && n.is_multiple_of(args.index_every) {
            tally.indexes += 1;
            match get(&client, &index_url, limits.max_head_bytes).await {
                Ok((body, _)) => {
                    tally.bytes += body.len() as u64;
                    match SignedHead::verify(&body, &*key, &limits) {
                        Ok(head) => {
                            let seq = head.head().sequence();
                            if seq < tally.highest_sequence {
                                tally.index_rollbacks += 1;
                                tally.note(format!(
                                    "index went back from sequence {} to {seq}",
                                    tally.highest_sequence
                                ));
                            }
                            tally.highest_sequence = tally.highest_sequence.max(seq);
                        }
                        Err(e) => {
                            tally.corrupted += 1;
                            tally.note(format!("index.json does not verify: {e}"));
                        }
                    }
                }
                Err(Bad::Failed(e)) => {
                    tally.failed += 1;
                    tally.note(e);
                }
                Err(Bad::Corrupted(e)) => {
                    tally.corrupted += 1;
                    tally.note(e);
                }
            }
            tally
                .index_latency_us
                .push(start.elapsed().as_micros() as u64);
            continue;
        }
        let list = targets.read().expect("not poisoned").clone();
        let target = &list[next % list.len()];
        next = next.wrapping_add(1);
        tally.bundles += 1;
        let url = format!("{}{}", args.base, target.path);
        match get(&client, &url, target.size).await {
            Ok((_, sha)) => {
                // `get` stops past `size`, so only the hash can still be wrong: a short body
                // hashes differently too.
                if sha == target.sha256 {
                    tally.bytes += target.size;
                } else {
                    tally.corrupted += 1;
                    tally.note(format!("{url}: sha256 {sha}"));
                }
            }
            Err(Bad::Failed(e)) => {
                tally.failed += 1;
                tally.note(e);
            }
            Err(Bad::Corrupted(e)) => {
                tally.corrupted += 1;
                tally.note(e);
            }
        }
        tally
            .bundle_latency_us
            .push(start.elapsed().as_micros() as u64);
    }
    tally
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn main() {
    let args = Arc::new(Args::parse());
    let key = Arc::new(PublicKey::from_arg(&args.publisher).expect("a valid publisher key"));
    let first = read_targets(&args.urls).expect("the bundle list");
    assert!(!first.is_empty(), "the bundle list is empty");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (total, elapsed, list_len) = runtime.block_on(async {
        let targets = Arc::new(RwLock::new(Arc::new(first)));
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for id in 0..args.workers {
            tasks.spawn(worker(
                id,
                args.clone(),
                key.clone(),
                targets.clone(),
                stop.clone(),
            ));
        }
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(args.seconds);
        // Refresh the list while the workers run; a list being replaced is read next time.
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250).min(deadline - Instant::now())).await;
            if let Ok(list) = read_targets(&args.urls) {
                if !list.is_empty() {
                    *targets.write().expect("not poisoned") = Arc::new(list);
                }
            }
        }
        stop.cancel();
        let mut total = Tally::default();
        while let Some(done) = tasks.join_next().await {
            total.merge(done.expect("a worker panicked"));
        }
        let list_len = targets.read().expect("not poisoned").len();
        (total, start.elapsed(), list_len)
    });

    let mut bundle_lat = total.bundle_latency_us.clone();
    bundle_lat.sort_unstable();
    let mut index_lat = total.index_latency_us.clone();
    index_lat.sort_unstable();
    let mut all_lat = [bundle_lat.as_slice(), index_lat.as_slice()].concat();
    all_lat.sort_unstable();
    let requests = total.bundles + total.indexes;
    let secs = elapsed.as_secs_f64();
    let summary = serde_json::json!({
        "workers": args.workers,
        "seconds": secs,
        "requests": requests,
        "bundle_requests": total.bundles,
        "index_requests": total.indexes,
        "bundles_listed_at_end": list_len,
        "highest_index_sequence": total.highest_sequence,
        "failed": total.failed,
        "corrupted": total.corrupted,
        "index_rollbacks": total.index_rollbacks,
        "bytes": total.bytes,
        "requests_per_second": requests as f64 / secs,
        "mib_per_second": total.bytes as f64 / secs / (1 << 20) as f64,
        "latency_ms": {
            "p50": percentile(&all_lat, 50.0),
            "p99": percentile(&all_lat, 99.0),
            "max": percentile(&all_lat, 100.0),
            "bundle_p50": percentile(&bundle_lat, 50.0),
            "bundle_p99": percentile(&bundle_lat, 99.0),
            "index_p50": percentile(&index_lat, 50.0),
            "index_p99": percentile(&index_lat, 99.0),
        },
        "first_errors": total.first_errors,
    });
    println!(
        "{} requests in {secs:.1} s from {} readers ({:.0}/s, {:.1} MiB/s): {} failed, {} corrupted, {} index rollbacks; latency p50 {:.2} ms, p99 {:.2} ms",
        requests,
        args.workers,
        requests as f64 / secs,
        total.bytes as f64 / secs / (1 << 20) as f64,
        total.failed,
        total.corrupted,
        total.index_rollbacks,
        percentile(&all_lat, 50.0),
        percentile(&all_lat, 99.0),
    );
    for e in &total.first_errors {
        println!("  error: {e}");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, format!("{summary:#}\n")).expect("writing the summary");
    }
    if total.failed + total.corrupted + total.index_rollbacks > 0 || requests == 0 {
        std::process::exit(1);
    }
}
