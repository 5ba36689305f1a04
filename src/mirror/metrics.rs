//! The mirror's counters and gauges, rendered in the Prometheus text format for `/metrics`.
//!
//! Owns every metric name and label. Label values are either fixed strings chosen by the code
//! (route classes, reasons, states) or upstreams (escaped when rendered); never request data,
//! so a client cannot grow the label sets without bound. An upstream is labelled by its URL
//! without credentials ([`display_url`]) only when the operator asked for it; by default it is
//! `upstream-N`, numbered in the order upstreams were first reported (configuration order),
//! because `/metrics` is served to anyone and an origin's address is what a censor wants.
//! It never decides anything: callers report what happened.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::config::display_url;
use crate::store::ObjectCounts;

/// What a request was for, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteClass {
    /// `index.json`.
    Index,
    /// Content-addressed objects and `publisher.pub`.
    Object,
    /// `PUT` of anything.
    Push,
    /// Reader pages and their assets.
    Page,
    /// `/healthz` and `/metrics`.
    Ops,
    /// Anything that matched no route.
    Other,
}

impl RouteClass {
    fn label(self) -> &'static str {
        match self {
            RouteClass::Index => "index",
            RouteClass::Object => "object",
            RouteClass::Push => "push",
            RouteClass::Page => "page",
            RouteClass::Ops => "ops",
            RouteClass::Other => "other",
        }
    }
}

/// The outcome of one push, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PushOutcome {
    /// Verified and stored.
    Accepted,
    /// Already present: nothing written.
    Present,
    /// Refused (any 4xx).
    Refused,
}

impl PushOutcome {
    fn label(self) -> &'static str {
        match self {
            PushOutcome::Accepted => "accepted",
            PushOutcome::Present => "present",
            PushOutcome::Refused => "refused",
        }
    }
}

/// What the sync daemon is doing with one upstream. Rendered as one gauge per state, 1 for the
/// current one and 0 for the others, the usual Prometheus shape for an enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamState {
    /// Waiting for the next round; the last round succeeded.
    Idle,
    /// A round is running.
    Syncing,
    /// The last round failed; waiting out a backoff.
    BackingOff,
}

impl UpstreamState {
    const ALL: [UpstreamState; 3] = [
        UpstreamState::Idle,
        UpstreamState::Syncing,
        UpstreamState::BackingOff,
    ];

    fn label(self) -> &'static str {
        match self {
            UpstreamState::Idle => "idle",
            UpstreamState::Syncing => "syncing",
            UpstreamState::BackingOff => "backing_off",
        }
    }
}

#[derive(Debug, Default)]
struct UpstreamMetrics {
    state: Option<UpstreamState>,
    last_success: Option<SystemTime>,
    failures: BTreeMap<&'static str, u64>,
}

/// All of the mirror's metrics. Cheap to update from any thread.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Keyed by (route class, status). A std `Mutex`: held for a map update only, never across
    /// an `.await`, and uncontended locks cost less than a sharded atomic scheme would save.
    requests: Mutex<BTreeMap<(RouteClass, u16), u64>>,
    response_bytes: AtomicU64,
    received_bytes: AtomicU64,
    verification_failures: Mutex<BTreeMap<&'static str, u64>>,
    pushes: Mutex<BTreeMap<(&'static str, PushOutcome), u64>>,
    /// Keyed by label (see [`Metrics::upstream_label`]).
    upstreams: Mutex<BTreeMap<String, UpstreamMetrics>>,
    /// Whether upstream labels are URLs; otherwise `upstream-N` from `aliases`.
    show_upstream_urls: bool,
    /// Upstream as reported → `upstream-N`, in order of first report.
    aliases: Mutex<BTreeMap<String, String>>,
    /// A front end's reads of its bucket, by outcome (`cache_hit`, `get`).
    bucket_reads: Mutex<BTreeMap<&'static str, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a metrics lock cannot leave a map half-updated in a way that
    // matters: keep counting.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    /// Metrics that label upstreams by URL (credentials and query removed). Tests and tools
    /// use this; a mirror uses [`Metrics::with_upstream_urls`] with the operator's choice.
    pub fn new() -> Self {
        Self::with_upstream_urls(true)
    }

    /// Metrics that label upstreams by URL (`show_urls`), or as `upstream-1`, `upstream-2`, ...
    pub fn with_upstream_urls(show_urls: bool) -> Self {
        Self {
            show_upstream_urls: show_urls,
            ..Self::default()
        }
    }

    /// The label value for an upstream as the sync daemon reports it.
    fn upstream_label(&self, upstream: &str) -> String {
        if self.show_upstream_urls {
            return match reqwest::Url::parse(upstream) {
                Ok(url) => display_url(&url),
                // Not a URL: nothing that display_url could remove.
                Err(_) => upstream.to_owned(),
            };
        }
        let mut aliases = lock(&self.aliases);
        let next = aliases.len() + 1;
        aliases
            .entry(upstream.to_owned())
            .or_insert_with(|| format!("upstream-{next}"))
            .clone()
    }

    /// Counts one finished request.
    pub fn request(&self, class: RouteClass, status: u16) {
        *lock(&self.requests).entry((class, status)).or_default() += 1;
    }

    /// Counts response body bytes handed to the connection.
    pub fn bytes_served(&self, n: u64) {
        self.response_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts pushed body bytes received.
    pub fn bytes_received(&self, n: u64) {
        self.received_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts content refused by verification, by a fixed reason such as `"bad_signature"`.
    pub fn verification_failure(&self, reason: &'static str) {
        *lock(&self.verification_failures).entry(reason).or_default() += 1;
    }

    /// Counts a front end's read of an object from its bucket: answered from the verified
    /// cache (`"cache_hit"`) or by a request to the bucket (`"get"`).
    pub fn bucket_read(&self, outcome: &'static str) {
        *lock(&self.bucket_reads).entry(outcome).or_default() += 1;
    }

    /// Counts one push of an object kind (`"bundle"`, `"minisig"`, `"piece"`, `"index"`).
    pub fn push(&self, kind: &'static str, outcome: PushOutcome) {
        *lock(&self.pushes).entry((kind, outcome)).or_default() += 1;
    }

    /// Sets what the sync daemon is doing with `upstream`.
    pub fn set_upstream_state(&self, upstream: &str, state: UpstreamState) {
        let label = self.upstream_label(upstream);
        lock(&self.upstreams).entry(label).or_default().state = Some(state);
    }

    /// Records a completed sync round with `upstream`.
    pub fn upstream_success(&self, upstream: &str, at: SystemTime) {
        let label = self.upstream_label(upstream);
        lock(&self.upstreams).entry(label).or_default().last_success = Some(at);
    }

    /// Counts a failed request to `upstream`, by a fixed reason such as `"timeout"`.
    pub fn upstream_failure(&self, upstream: &str, reason: &'static str) {
        let label = self.upstream_label(upstream);
        *lock(&self.upstreams)
            .entry(label)
            .or_default()
            .failures
            .entry(reason)
            .or_default() += 1;
    }

    /// The count of requests with this class and status (for tests and health checks).
    pub fn requests(&self, class: RouteClass, status: u16) -> u64 {
        lock(&self.requests)
            .get(&(class, status))
            .copied()
            .unwrap_or(0)
    }

    /// Renders everything in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, objects: ObjectCounts) -> String {
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "qasid_http_requests_total",
            "counter",
            "HTTP requests by route class and status.",
        );
        for ((class, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "qasid_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                class.label()
            );
        }
        family(
            &mut out,
            "qasid_http_response_bytes_total",
            "counter",
            "Response body bytes sent.",
        );
        let _ = writeln!(
            out,
            "qasid_http_response_bytes_total {}",
            self.response_bytes.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "qasid_push_received_bytes_total",
            "counter",
            "Request body bytes received by push endpoints.",
        );
        let _ = writeln!(
            out,
            "qasid_push_received_bytes_total {}",
            self.received_bytes.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "qasid_store_objects",
            "gauge",
            "Objects in the store, by kind.",
        );
        for (kind, n) in [
            ("bundle", objects.bundles),
            ("minisig", objects.minisigs),
            ("piece", objects.pieces),
            ("index", objects.indexes),
        ] {
            let _ = writeln!(out, "qasid_store_objects{{kind=\"{kind}\"}} {n}");
        }
        family(
            &mut out,
            "qasid_verification_failures_total",
            "counter",
            "Content refused because it failed verification, by reason.",
        );
        for (reason, n) in lock(&self.verification_failures).iter() {
            let _ = writeln!(
                out,
                "qasid_verification_failures_total{{reason=\"{reason}\"}} {n}"
            );
        }
        family(
            &mut out,
            "qasid_push_total",
            "counter",
            "Pushed objects by kind and outcome.",
        );
        for ((kind, outcome), n) in lock(&self.pushes).iter() {
            let _ = writeln!(
                out,
                "qasid_push_total{{kind=\"{kind}\",outcome=\"{}\"}} {n}",
                outcome.label()
            );
        }
        let bucket_reads = lock(&self.bucket_reads);
        if !bucket_reads.is_empty() {
            family(
                &mut out,
                "qasid_bucket_reads_total",
                "counter",
                "Object reads of a front end over a bucket: from its verified cache, or from the bucket.",
            );
            for (outcome, n) in bucket_reads.iter() {
                let _ = writeln!(out, "qasid_bucket_reads_total{{outcome=\"{outcome}\"}} {n}");
            }
        }
        drop(bucket_reads);
        self.render_upstreams(&mut out);
        out
    }

    fn render_upstreams(&self, out: &mut String) {
        let upstreams = lock(&self.upstreams);
        family(
            out,
            "qasid_sync_upstream_state",
            "gauge",
            "What sync is doing with each upstream (1 for the current state).",
        );
        for (url, m) in upstreams.iter() {
            let Some(current) = m.state else { continue };
            for state in UpstreamState::ALL {
                let _ = writeln!(
                    out,
                    "qasid_sync_upstream_state{{upstream=\"{}\",state=\"{}\"}} {}",
                    escape(url),
                    state.label(),
                    u8::from(state == current)
                );
            }
        }
        family(
            out,
            "qasid_sync_upstream_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last completed sync round with each upstream.",
        );
        for (url, m) in upstreams.iter() {
            if let Some(at) = m.last_success {
                let secs = at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let _ = writeln!(
                    out,
                    "qasid_sync_upstream_last_success_timestamp_seconds{{upstream=\"{}\"}} {secs}",
                    escape(url)
                );
            }
        }
        family(
            out,
            "qasid_sync_upstream_failures_total",
            "counter",
            "Failed requests to each upstream, by reason.",
        );
        for (url, m) in upstreams.iter() {
            for (reason, n) in &m.failures {
                let _ = writeln!(
                    out,
                    "qasid_sync_upstream_failures_total{{upstream=\"{}\",reason=\"{reason}\"}} {n}",
                    escape(url)
                );
            }
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Escapes a label value: backslash, double quote and newline, as the text format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_upstream_states() {
        let m = Metrics::new();
        m.request(RouteClass::Object, 200);
        m.request(RouteClass::Object, 200);
        m.request(RouteClass::Other, 404);
        m.bytes_served(10);
        m.verification_failure("bad_signature");
        m.push("bundle", PushOutcome::Accepted);
        m.set_upstream_state("a \"quoted\" upstream", UpstreamState::BackingOff);
        m.upstream_failure("a \"quoted\" upstream", "timeout");
        let text = m.render(ObjectCounts {
            bundles: 3,
            ..ObjectCounts::default()
        });
        for line in [
            "qasid_http_requests_total{route=\"object\",status=\"200\"} 2",
            "qasid_http_requests_total{route=\"other\",status=\"404\"} 1",
            "qasid_http_response_bytes_total 10",
            "qasid_store_objects{kind=\"bundle\"} 3",
            "qasid_verification_failures_total{reason=\"bad_signature\"} 1",
            "qasid_push_total{kind=\"bundle\",outcome=\"accepted\"} 1",
            "qasid_sync_upstream_state{upstream=\"a \\\"quoted\\\" upstream\",state=\"backing_off\"} 1",
            "qasid_sync_upstream_state{upstream=\"a \\\"quoted\\\" upstream\",state=\"idle\"} 0",
            "qasid_sync_upstream_failures_total{upstream=\"a \\\"quoted\\\" upstream\",reason=\"timeout\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        assert_eq!(m.requests(RouteClass::Object, 200), 2);
    }

    #[test]
    fn upstream_credentials_never_reach_metrics() {
        let m = Metrics::new();
        m.set_upstream_state("https://alice:pw@origin.example/", UpstreamState::Idle);
        let text = m.render(ObjectCounts::default());
        assert!(!text.contains("alice") && !text.contains("pw@"), "{text}");
        assert!(
            text.contains("upstream=\"https://origin.example/\""),
            "{text}"
        );
    }

    #[test]
    fn hidden_upstreams_are_numbered_in_order() {
        let m = Metrics::with_upstream_urls(false);
        m.set_upstream_state("https://origin.example/", UpstreamState::Idle);
        m.set_upstream_state("http://other.example/", UpstreamState::Idle);
        m.upstream_failure("https://origin.example/", "timeout");
        let text = m.render(ObjectCounts::default());
        assert!(!text.contains("example"), "{text}");
        assert!(
            text.contains(
                "qasid_sync_upstream_failures_total{upstream=\"upstream-1\",reason=\"timeout\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("upstream=\"upstream-2\",state=\"idle\"} 1"),
            "{text}"
        );
    }
}
