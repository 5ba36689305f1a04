//! The push endpoint's body handling: `PUT` of a bundle, piece, `index.json` or `.minisig`
//! driven through the mirror's real axum router in process (`tower::ServiceExt::oneshot`),
//! with a real store in a temp folder (put TMPDIR on a tmpfs). Nothing is mocked: the request
//! goes through the middleware, the strict path parser, `Content-Length` capping, the hashing
//! receiver, the verifiers and the store's install rules exactly as from the network.
//!
//! Input: byte 0 chooses the object kind (bits 0-1: bundle, piece, index, minisig), how the
//! `Content-Length` is given (bits 2-3: exact; one more, with the body ending in an error as
//! hyper reports a connection closed early; one less, with the body cut there as hyper frames
//! it; missing) and whether the
//! body is made authentic first (bit 4: a bundle goes through `fixup_bundle`, an index body is
//! taken as head JSON and wrapped in an envelope signed with the test key); the rest is the
//! body. The URL always names the body's real sha256, so the fuzzer gets past the hash check.
//!
//! Invariants: the mirror never answers 5xx (every refusal is a typed 4xx); every answer is
//! JSON (`status`, or `error` and `reason`) with `nosniff`, and never shows the store's path;
//! an accepted object really is what was verified (the bundle verifies and satisfies
//! `check_accepted_bundle`, the piece validates, the index verifies and is now served byte for
//! byte, the minisig verifies), and a refused bundle, piece or minisig is not in the store.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

use qasid::bundle;
use qasid::config::{Config, Keep, PublisherConfig};
use qasid::content_id::ContentId;
use qasid::index::{validate_piece, SignedHead};
use qasid::limits::{BundleLimits, IndexLimits};
use qasid::mirror::{Metrics, MirrorState};
use qasid::store::{ObjectKind, PublisherId, Store};
use qasid_fuzz::{check_accepted_bundle, fixup_bundle, public_key, sign_envelope};

/// The test vector bundle, installed at start so `.minisig` pushes have a bundle to sign.
const VECTOR_BUNDLE: &[u8] = include_bytes!("../../tests/vectors/bundle-v1/bundle.zip");

struct Env {
    runtime: tokio::runtime::Runtime,
    router: Router,
    store: Arc<Store>,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("store");
        let mut config = Config::default();
        config.mirror.store = root.clone();
        config.publishers = vec![PublisherConfig {
            name: Some("fuzz".into()),
            key: public_key().clone(),
        }];
        let store = Arc::new(Store::open(&root, Keep::All, IndexLimits::default()).unwrap());
        let state = MirrorState::new(&config, store.clone(), Arc::new(Metrics::new())).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let env = Env {
            runtime,
            router: qasid::mirror::router(Arc::new(state)),
            store,
            root,
            _dir: dir,
        };
        let (status, _) = env.put(
            &object_path(0, VECTOR_BUNDLE),
            Some(VECTOR_BUNDLE.len() as u64),
            VECTOR_BUNDLE.to_vec(),
        );
        assert_eq!(status, StatusCode::CREATED, "the vector bundle installs");
        env
    })
}

impl Env {
    fn put(&self, path: &str, length: Option<u64>, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let mut request = Request::builder().method("PUT").uri(path);
        if let Some(length) = length {
            request = request.header(header::CONTENT_LENGTH, length);
        }
        // What hyper hands the handler for this Content-Length on a real connection.
        let body = match length {
            Some(n) if n > body.len() as u64 => Body::new(EndsEarly(Some(body.into()))),
            Some(n) => Body::from(body[..n as usize].to_vec()),
            None => Body::from(body),
        };
        let request = request.body(body).unwrap();
        self.runtime.block_on(async {
            let response = self.router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            assert_eq!(
                response
                    .headers()
                    .get(header::X_CONTENT_TYPE_OPTIONS)
                    .unwrap(),
                "nosniff"
            );
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, body.to_vec())
        })
    }

    fn get(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        self.runtime.block_on(async {
            let response = self.router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, body.to_vec())
        })
    }
}

/// A body that yields its bytes and then fails, as a connection closed before the declared
/// `Content-Length` arrived does.
struct EndsEarly(Option<bytes::Bytes>);

impl http_body::Body for EndsEarly {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(Some(match self.0.take() {
            Some(data) => Ok(http_body::Frame::data(data)),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before the end of the body",
            )),
        }))
    }
}

fn publisher_dir() -> String {
    format!("/qasid/v1/publishers/{}", public_key().hex())
}

fn object_path(kind: u8, body: &[u8]) -> String {
    let id = ContentId::of_bytes(body);
    let vector = ContentId::of_bytes(VECTOR_BUNDLE);
    match kind {
        0 => format!("{}/bundles/{id}.zip", publisher_dir()),
        1 => format!("{}/pieces/{id}.json", publisher_dir()),
        2 => format!("{}/index.json", publisher_dir()),
        _ => format!("{}/bundles/{vector}.zip.minisig", publisher_dir()),
    }
}

fn store_kind(kind: u8, body: &[u8]) -> Option<ObjectKind> {
    let id = ContentId::of_bytes(body);
    match kind {
        0 => Some(ObjectKind::Bundle(id)),
        1 => Some(ObjectKind::Piece(id)),
        3 => Some(ObjectKind::Minisig(ContentId::of_bytes(VECTOR_BUNDLE))),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, body)) = data.split_first() else {
        return;
    };
    let env = env();
    let kind = control & 3;
    let authentic = control & 0x10 != 0;
    let body = match (kind, authentic) {
        (0, true) => fixup_bundle(body),
        (2, true) => sign_envelope(body),
        _ => body.to_vec(),
    };
    let exact = body.len() as u64;
    let length = match (control >> 2) & 3 {
        0 => Some(exact),
        1 => Some(exact + 1),
        2 => Some(exact.saturating_sub(1)),
        _ => None,
    };
    let path = object_path(kind, &body);
    let pid = PublisherId::of(public_key());
    let url_object = store_kind(kind, &body);
    let present_before = url_object.is_some_and(|k| env.store.contains(&pid, &k));

    let (status, response) = env.put(&path, length, body.clone());
    // What the handler received: hyper cuts a body at its Content-Length.
    let body = match length {
        Some(n) if n < exact => body[..n as usize].to_vec(),
        _ => body,
    };
    assert!(
        !status.is_server_error(),
        "{status}: {}",
        String::from_utf8_lossy(&response)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&response).expect("every push answer is JSON");
    let text = String::from_utf8_lossy(&response);
    assert!(
        !text.contains(env.root.to_str().unwrap()),
        "the answer shows a server path: {text}"
    );

    if length.is_none() {
        assert_eq!(status, StatusCode::LENGTH_REQUIRED);
    }
    if status.is_success() && json["status"] == "present" && url_object.is_some() {
        // Bundles and pieces are named by their hash and minisigs by their bundle's: the store
        // already has that object (verified when it was stored), so the body is not read.
        assert!(url_object.is_some_and(|k| env.store.contains(&pid, &k)) || kind == 1);
    } else if status.is_success() {
        // A body that ended early is never accepted; a cut one only where the URL does not
        // name its hash (index, minisig), since then it is simply a shorter body.
        let hashed = kind < 2;
        assert!(
            length == Some(exact) || (!hashed && length < Some(exact)),
            "accepted a body whose length was wrong ({length:?} for {exact} bytes)"
        );
        assert!(
            matches!(json["status"].as_str(), Some("stored" | "present")),
            "{json}"
        );
        let limits = BundleLimits::default();
        match kind {
            0 => {
                let verified = bundle::verify_reader(&body[..], public_key(), &limits)
                    .expect("the mirror stored a bundle that does not verify");
                check_accepted_bundle(&body, &verified, &limits);
            }
            1 => {
                validate_piece(&body, public_key(), &IndexLimits::default())
                    .expect("the mirror staged a piece that does not validate");
            }
            2 => {
                SignedHead::verify(&body, public_key(), &IndexLimits::default())
                    .expect("the mirror installed an index that does not verify");
                if json["status"] == "stored" {
                    let (status, served) = env.get(&format!("{}/index.json", publisher_dir()));
                    assert_eq!(status, StatusCode::OK);
                    assert_eq!(served, body, "the served index is not the one pushed");
                }
            }
            _ => {
                let text = std::str::from_utf8(&body).expect("an accepted minisig is text");
                qasid::keys::minisig::verify_file(public_key(), VECTOR_BUNDLE, text)
                    .expect("the mirror stored a minisig that does not verify");
            }
        }
    } else {
        assert!(status.is_client_error(), "{status}");
        assert!(
            json["error"].is_string() && json["reason"].is_string(),
            "{json}"
        );
        if let Some(k) = url_object {
            if !present_before {
                assert!(
                    !env.store.contains(&pid, &k),
                    "a refused object is in the store"
                );
            }
        }
    }
});
