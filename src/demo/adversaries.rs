//! The demo's censor and liar: a blocked mirror (a tarpit that accepts connections and never
//! answers, as an IP-blocking firewall that drops packets looks to a client) and a hostile
//! mirror (a plain static server over a folder the demo fills with an old index or forged
//! bytes).
//!
//! Owns only these two toy servers. They exist to be distrusted: nothing here verifies, and
//! nothing else in qasid may use them.

use std::path::PathBuf;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts every connection and holds it open, silent, until `cancel` fires.
pub async fn tarpit(listener: TcpListener, cancel: CancellationToken) {
    let held = TaskTracker::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let cancel = cancel.clone();
                held.spawn(async move {
                    cancel.cancelled().await;
                    drop(socket);
                });
            }
        }
    }
    held.close();
    held.wait().await;
}

/// Serves `root` as a static site (like any web server a hostile operator might run) until
/// `cancel` fires.
pub async fn static_site(listener: TcpListener, root: PathBuf, cancel: CancellationToken) {
    let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(root));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::warn!("hostile demo mirror stopped: {e}");
    }
}
