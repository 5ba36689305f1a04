//! What a reader run shows on a terminal while it waits: the stage (the index, then the
//! bundle), which mirrors are asked and the time so far; for a large bundle, a byte bar whose
//! rate and eta count only the bytes of this run (a resumed download starts at its offset, and
//! that offset is not speed).
//!
//! Drawn on stderr only when it is a terminal and text output is wanted: scripts and `--json`
//! see nothing new.

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration, ProgressDrawTarget, ProgressStyle};
use qasid::reader::{MirrorSpec, Progress, ProgressFn};

/// Bundles at least this large get a byte bar. 1 MiB: smaller ones arrive before a bar would
/// be worth drawing, even over Tor.
const PROGRESS_BAR_BYTES: u64 = 1 << 20;

/// A rate needs this much of the run behind it before it means anything.
const RATE_AFTER: Duration = Duration::from_millis(500);

/// How many mirrors the waiting line names before it says "and N more".
const NAMED_MIRRORS: usize = 3;

/// The waiting line and byte bar of one reader run.
pub struct Status {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    bar: indicatif::ProgressBar,
    /// Where this run's byte count started: set by the first progress report.
    run: Mutex<Option<RunStart>>,
}

#[derive(Debug, Clone, Copy)]
struct RunStart {
    at: Instant,
    bytes: u64,
}

impl Status {
    /// Draws only if `wanted` and stderr is a terminal.
    pub fn new(wanted: bool) -> Self {
        let shared = (wanted && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} waiting for {msg} · {elapsed}")
            {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(250));
            Arc::new(Shared {
                bar,
                run: Mutex::new(None),
            })
        });
        Self { shared }
    }

    /// Says what the run waits for now.
    pub fn stage(&self, what: String) {
        if let Some(s) = &self.shared {
            s.bar.set_message(what);
        }
    }

    /// The reader's download progress, turned into the byte bar.
    pub fn callback(&self) -> Option<ProgressFn> {
        let shared = self.shared.clone()?;
        Some(Arc::new(move |p: Progress| shared.advance(p)))
    }

    /// Clears the line (also on drop, so an early return leaves no half-drawn bar).
    pub fn finish(&self) {
        if let Some(s) = &self.shared {
            s.bar.finish_and_clear();
        }
    }
}

impl Drop for Status {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Shared {
    fn advance(&self, p: Progress) {
        if p.total < PROGRESS_BAR_BYTES {
            return;
        }
        let now = Instant::now();
        let mut run = self.run.lock().unwrap_or_else(|e| e.into_inner());
        let start = *run.get_or_insert_with(|| {
            if let Ok(style) =
                ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} · {elapsed}")
            {
                self.bar.set_style(style);
            }
            self.bar.set_length(p.total);
            RunStart {
                at: now,
                bytes: p.received,
            }
        });
        self.bar.set_position(p.received);
        self.bar.set_message(match run_rate(start, p, now) {
            Some((rate, Some(eta))) => {
                format!("{}/s, eta {}", HumanBytes(rate as u64), HumanDuration(eta))
            }
            Some((_, None)) => "stalled".to_owned(),
            None => "measuring".to_owned(),
        });
    }
}

/// This run's rate in bytes per second and the time left at that rate (`None` while nothing
/// moves); `None` until the run has lasted [`RATE_AFTER`]. Bytes before `start` (a resumed
/// offset) count for neither.
fn run_rate(start: RunStart, p: Progress, now: Instant) -> Option<(f64, Option<Duration>)> {
    let elapsed = now.checked_duration_since(start.at)?;
    if elapsed < RATE_AFTER {
        return None;
    }
    let rate = p.received.saturating_sub(start.bytes) as f64 / elapsed.as_secs_f64();
    let left = p.total.saturating_sub(p.received) as f64;
    let eta = (rate > 0.0).then(|| Duration::from_secs_f64((left / rate).min(1e9)));
    Some((rate, eta))
}

/// "the index from a, b, c and 2 more": the mirrors a run starts with, configured or from
/// notes (mirrors learned from earlier indexes are asked too, unnamed).
pub fn index_stage(mirrors: &[MirrorSpec]) -> String {
    let names: Vec<String> = mirrors
        .iter()
        .take(NAMED_MIRRORS)
        .map(|m| qasid::shown::line(&m.location.label()))
        .collect();
    let more = mirrors.len().saturating_sub(NAMED_MIRRORS);
    let mut text = match names.len() {
        0 => "the index from mirrors learned before".to_owned(),
        _ => format!("the index from {}", names.join(", ")),
    };
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a resume at 90 %, the old bar counted the 90 % as this run's speed: an absurd
    /// rate and an eta of zero. Only this run's bytes count now.
    #[test]
    fn a_resumed_offset_is_not_counted_as_speed() {
        let t0 = Instant::now();
        let start = RunStart {
            at: t0,
            bytes: 90_000_000,
        };
        let p = Progress {
            received: 91_000_000,
            total: 100_000_000,
        };
        let (rate, eta) = run_rate(start, p, t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(rate, 500_000.0);
        assert_eq!(eta, Some(Duration::from_secs(18)));
    }

    #[test]
    fn no_rate_before_half_a_second_and_none_for_a_stalled_run() {
        let t0 = Instant::now();
        let start = RunStart { at: t0, bytes: 10 };
        let p = Progress {
            received: 10,
            total: 100,
        };
        assert!(run_rate(start, p, t0 + Duration::from_millis(100)).is_none());
        let (rate, eta) = run_rate(start, p, t0 + Duration::from_secs(3)).unwrap();
        assert_eq!(rate, 0.0);
        assert_eq!(eta, None);
    }

    #[test]
    fn the_waiting_line_names_three_mirrors_and_counts_the_rest() {
        let limits = qasid::limits::IndexLimits::default();
        let spec = |url: &str| MirrorSpec {
            location: qasid::reader::MirrorLocation::parse(url, &limits).unwrap(),
            proxy: None,
            origin: qasid::reader::Origin::Flag,
        };
        let five: Vec<MirrorSpec> = (1..=5)
            .map(|i| spec(&format!("https://m{i}.example/")))
            .collect();
        assert_eq!(
            index_stage(&five),
            "the index from https://m1.example/, https://m2.example/, https://m3.example/ and 2 more"
        );
        assert_eq!(index_stage(&[]), "the index from mirrors learned before");
    }
}
