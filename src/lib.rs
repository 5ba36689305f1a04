//! qasid: signed, mirrorable article bundles that stay readable where news sites are blocked.
//!
//! All behaviour lives in this library; the `qasid` binary only parses arguments, calls in here
//! and maps errors to exit codes.
//!
//! # Layout
//! - [`content_id`]: the sha256 newtype every object is addressed and checked by.
//! - [`limits`]: every size, count and ratio cap in one documented place.
//! - [`keys`]: publisher key pairs, minisign-compatible key files and detached signatures.
//! - [`roots`]: a publisher's threshold root of trust, its delegated signing keys, rotation.
//! - [`article`]: the article folder's `article.md` front matter.
//! - [`manifest`]: the signed description of a bundle and its validated entry names.
//! - [`bucket`]: S3-compatible buckets as stores (`s3://bucket/prefix`): the client, its bounds
//!   and errors, and the upload rules (content-addressed objects, `index.json` last).
//! - [`bundle`]: writing deterministic bundles and verifying them (strict zip reading).
//! - [`demo`]: the one-command story on loopback (`qasid demo`).
//! - [`render`]: turning a verified article into terminal text.
//! - [`shown`]: the one rule for untrusted text on a terminal or a page (no controls, no bidi
//!   overrides or invisible characters).
//! - [`index`]: the publisher's signed, hash-chained index (head and immutable pieces).
//! - [`repo`]: the publisher's folder, which is also a complete static mirror.
//! - [`pages`]: the reader web pages (plain HTML and CSS, sanitised article Markdown).
//! - [`reader_page`]: the self-contained verifying reader page (browser code in `web/reader/`).
//! - [`config`]: `mirrors.toml`, validated, with documented defaults.
//! - [`store`]: the mirror's content-addressed store (the static layout on disk).
//! - [`mirror`]: the mirror's HTTP server (layout, push, reader pages, metrics).
//! - [`sync`]: the mirror's sync daemon (pull from upstream mirrors, verify, install, prune).
//! - [`note`]: signed mirror notes (`qasid:1:…` URIs, QR codes, DNS TXT records).
//! - [`daemon`]: `qasid mirror` composed: server, background sync, signals and reloads.
//! - [`status`]: what a store holds and how its sync is doing, for operators.
//! - [`reader`]: fetching verified indexes and bundles from racing mirrors (HTTP, Tor, folders).
//! - [`segmented`]: the chunk-verified download of a large bundle from several sources at once,
//!   shared by the reader and sync.
//!
//! Trust flows one way: bytes from disk or network become [`bundle::VerifiedBundle`] only through
//! the verifier, and everything that serves or shows an article takes that type.

pub mod article;
pub mod bucket;
pub mod bundle;
pub mod config;
pub mod content_id;
pub mod daemon;
pub mod demo;
pub mod index;
pub mod keys;
pub mod limits;
pub mod manifest;
pub mod mirror;
pub mod note;
pub mod pages;
pub mod reader;
pub mod reader_page;
pub mod render;
pub mod repo;
pub mod roots;
pub mod segmented;
pub mod shown;
pub mod status;
pub mod store;
pub mod sync;

/// How a failure should be reported to a user or script: the CLI maps each class to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Something outside the input's authenticity went wrong (I/O, network). Exit code 1.
    Runtime,
    /// The command was called wrongly (bad flag value, unreadable key string). Exit code 2.
    Usage,
    /// The input is not authentic or not whole: a signature, hash or structural check failed.
    /// Exit code 3.
    Verification,
}
