//! What the mirror writes to its log about requests: always a line per refused push, and,
//! only when the operator turns it on, a line per request (the access log).
//!
//! Owns the privacy rule for both: no client address, user agent, referrer or any other
//! detail of who asked is ever logged, only what was asked and what the mirror answered. A
//! refusal names the object kind, the publisher by its key id (as the CLI shows it) and the
//! reason. Access-log lines go to the `qasid::access` tracing target at info level, so they
//! can be filtered or routed apart (`RUST_LOG=qasid::access=off`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{Method, StatusCode};

use crate::config::MirrorConfig;
use crate::store::PublisherId;

/// The request log's switch, changed by a configuration reload.
pub(super) struct RequestLog {
    access: AtomicBool,
}

impl RequestLog {
    pub(super) fn new(config: &MirrorConfig) -> Self {
        Self {
            access: AtomicBool::new(config.access_log),
        }
    }

    pub(super) fn reload(&self, config: &MirrorConfig) {
        self.access.store(config.access_log, Ordering::Relaxed);
    }

    pub(super) fn access_enabled(&self) -> bool {
        self.access.load(Ordering::Relaxed)
    }

    /// One access-log line: method, path (without the query), status, body bytes when
    /// known, time taken.
    pub(super) fn access(
        &self,
        method: &Method,
        path: &str,
        status: StatusCode,
        bytes: Option<u64>,
        elapsed: Duration,
    ) {
        let bytes = bytes.map_or_else(|| "-".to_owned(), |b| b.to_string());
        tracing::info!(
            target: "qasid::access",
            "{method} {path} {} {bytes} {:.1}ms",
            status.as_u16(),
            elapsed.as_secs_f64() * 1000.0
        );
    }
}

/// Logs a refused push on one line: what, for which publisher, why.
pub(super) fn refused_push(what: &str, publisher: &PublisherId, status: StatusCode, reason: &str) {
    tracing::warn!(
        "refused push of {what} for publisher {} ({}): {reason}",
        publisher.key_id(),
        status.as_u16()
    );
}
