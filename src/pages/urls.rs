//! The URLs the reader pages link to, built from validated values: one place, so the pages and
//! the server's router agree.
//!
//! Every path segment that comes from a bundle (article name, file path) is percent-encoded, so
//! no value can add a segment, a query or a fragment. This module never decides whether a file
//! may be linked: [`super::markdown`] does that, against the manifest.

use crate::content_id::ContentId;
use crate::index::layout::PublisherLayout;
use crate::keys::PublicKey;

/// `/qasid/v1/publishers/<key hex>/bundles/<sha256>.zip`: the bundle itself, where the static
/// repository layout ([`PublisherLayout`]) puts it.
pub fn bundle_url(publisher: &PublicKey, bundle: &ContentId) -> String {
    format!("/{}", PublisherLayout::new(publisher).bundle(bundle))
}

/// The bundle's detached minisign signature: [`bundle_url`] with `.minisig` appended.
pub fn minisig_url(publisher: &PublicKey, bundle: &ContentId) -> String {
    format!("/{}", PublisherLayout::new(publisher).minisig(bundle))
}

/// `/read/<key hex>/<name>/<version>/`: an article's reading page.
pub fn article_url(publisher: &PublicKey, name: &str, version: u64) -> String {
    format!(
        "/read/{}/{}/{version}/",
        publisher.hex(),
        encode_segment(name)
    )
}

/// `/read/<key hex>/<name>/<version>/files/<path>`: one file of the verified bundle, by its
/// manifest path (`/`-separated; each segment percent-encoded).
pub fn asset_url(publisher: &PublicKey, name: &str, version: u64, path: &str) -> String {
    let mut url = article_url(publisher, name, version);
    url.push_str("files");
    for segment in path.split('/') {
        url.push('/');
        url.push_str(&encode_segment(segment));
    }
    url
}

/// Where `qasid mirror` serves the verifying reader page (`web/reader/`), which checks every
/// signature in the browser instead of trusting the mirror.
pub const READER_PAGE_PATH: &str = "/reader.html";

/// The verifying reader page opened on the article `name` (`#read=<name>`).
pub fn reader_page_url(name: &str) -> String {
    format!("{READER_PAGE_PATH}#read={}", encode_segment(name))
}

/// `text` as a link target if it is an `http` or `https` URL (in its parsed form, so what the
/// page links to is what a browser would open); anything else is never made a link.
pub(super) fn web_url(text: &str) -> Option<String> {
    match ammonia::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url.into()),
        _ => None,
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    #[test]
    fn urls_follow_the_layout_and_encode_segments() {
        let key = SecretKey::from_seed(&[5u8; 32]);
        let hex = key.public().hex();
        let id = ContentId::of_bytes(b"bundle");
        assert_eq!(
            bundle_url(key.public(), &id),
            format!("/qasid/v1/publishers/{hex}/bundles/{id}.zip")
        );
        assert_eq!(
            minisig_url(key.public(), &id),
            format!("/qasid/v1/publishers/{hex}/bundles/{id}.zip.minisig")
        );
        assert_eq!(reader_page_url("launch-2"), "/reader.html#read=launch-2");
        assert_eq!(
            web_url("HTTPS://Mirror.Example").as_deref(),
            Some("https://mirror.example/")
        );
        for refused in [
            "javascript:alert(1)",
            "data:text/html,x",
            "ftp://x.example/",
            "/x",
        ] {
            assert_eq!(web_url(refused), None, "{refused}");
        }
        assert_eq!(
            asset_url(key.public(), "launch", 2, "images/a map#1?.png"),
            format!("/read/{hex}/launch/2/files/images/a%20map%231%3F.png")
        );
        assert_eq!(
            asset_url(key.public(), "n", 1, "تصاویر/x.png"),
            format!("/read/{hex}/n/1/files/%D8%AA%D8%B5%D8%A7%D9%88%DB%8C%D8%B1/x.png")
        );
    }
}
