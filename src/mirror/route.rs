//! Strict parsing of request paths into the objects of the layout.
//!
//! Owns the only mapping from a URL path to a store object. The raw path is matched byte for
//! byte, never percent-decoded or normalised: only `qasid/v1/publishers/<64 hex>/` followed by
//! `index.json`, `publisher.pub`, `note`, `pieces/<64 hex>.json`, `bundles/<64 hex>.zip`,
//! `bundles/<64 hex>.zip.minisig` or `chunks/<64 hex>` is an object, so `..`, `%2e%2e`, `%2f`,
//! backslashes, NUL and every other trick simply match nothing. It never touches the file
//! system.

use crate::content_id::ContentId;
use crate::store::{ObjectKind, PublisherId};

/// The longest path that can name an object: anything longer is refused before looking at it.
const MAX_OBJECT_PATH: usize = 256;

/// A parsed object path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectPath {
    pub publisher: PublisherId,
    pub kind: ObjectKind,
}

/// Parses a raw request path (`Uri::path()`, still percent-encoded). `None` for anything that is
/// not exactly an object of the layout.
pub fn parse(path: &str) -> Option<ObjectPath> {
    if path.len() > MAX_OBJECT_PATH {
        return None;
    }
    let rest = path.strip_prefix("/qasid/v1/publishers/")?;
    let (publisher, rest) = rest.split_at_checked(64)?;
    let publisher = publisher.parse::<PublisherId>().ok()?;
    let kind = match rest.strip_prefix('/')? {
        "index.json" => ObjectKind::Index,
        "publisher.pub" => ObjectKind::PublisherPub,
        "note" => ObjectKind::Note,
        file => {
            if let Some(name) = file.strip_prefix("pieces/") {
                ObjectKind::Piece(hash_with_suffix(name, ".json")?)
            } else if let Some(name) = file.strip_prefix("chunks/") {
                ObjectKind::Chunks(name.parse().ok()?)
            } else if let Some(name) = file.strip_prefix("roots/") {
                ObjectKind::Root(root_version(name)?)
            } else if let Some(name) = file.strip_prefix("bundles/") {
                if let Some(hash) = name.strip_suffix(".minisig") {
                    ObjectKind::Minisig(hash_with_suffix(hash, ".zip")?)
                } else {
                    ObjectKind::Bundle(hash_with_suffix(name, ".zip")?)
                }
            } else {
                return None;
            }
        }
    };
    Some(ObjectPath { publisher, kind })
}

/// `<N>.json` with N a decimal root version: 1 to the most a verifier holds, no leading zero,
/// so each root has one path.
fn root_version(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse()
        .ok()
        .filter(|n| (1..=crate::limits::MAX_ROOT_VERSIONS).contains(n))
}

fn hash_with_suffix(name: &str, suffix: &str) -> Option<ContentId> {
    name.strip_suffix(suffix)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const H: &str = "abababababababababababababababababababababababababababababababab";

    #[test]
    fn every_object_kind_parses() {
        let h: ContentId = H.parse().unwrap();
        let cases = [
            (
                format!("/qasid/v1/publishers/{P}/index.json"),
                ObjectKind::Index,
            ),
            (
                format!("/qasid/v1/publishers/{P}/publisher.pub"),
                ObjectKind::PublisherPub,
            ),
            (format!("/qasid/v1/publishers/{P}/note"), ObjectKind::Note),
            (
                format!("/qasid/v1/publishers/{P}/pieces/{H}.json"),
                ObjectKind::Piece(h),
            ),
            (
                format!("/qasid/v1/publishers/{P}/bundles/{H}.zip"),
                ObjectKind::Bundle(h),
            ),
            (
                format!("/qasid/v1/publishers/{P}/bundles/{H}.zip.minisig"),
                ObjectKind::Minisig(h),
            ),
            (
                format!("/qasid/v1/publishers/{P}/chunks/{H}"),
                ObjectKind::Chunks(h),
            ),
        ];
        for (path, kind) in cases {
            let parsed = parse(&path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(parsed.kind, kind);
            assert_eq!(parsed.publisher.to_string(), P);
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let upper = H.to_uppercase();
        let bad = [
            String::new(),
            "/".into(),
            format!("/qasid/v1/publishers/{P}"),
            format!("/qasid/v1/publishers/{P}/"),
            format!("/qasid/v1/publishers/{P}/index.json/"),
            format!("/qasid/v1/publishers/{P}//index.json"),
            format!("/qasid/v1/publishers/{P}/../{P}/index.json"),
            format!("/qasid/v1/publishers/{P}/%2e%2e/index.json"),
            format!("/qasid/v1/publishers/{P}/bundles%2f{H}.zip"),
            format!("/qasid/v1/publishers/{P}\\bundles\\{H}.zip"),
            format!("/qasid/v1/publishers/{P}/bundles/{upper}.zip"),
            format!("/qasid/v1/publishers/{P}/bundles/{H}.ZIP"),
            format!("/qasid/v1/publishers/{P}/bundles/{H}.zip\0"),
            format!("/qasid/v1/publishers/{P}/bundles/{H}.json"),
            format!("/qasid/v1/publishers/{P}/pieces/{H}.zip"),
            format!("/qasid/v1/publishers/{P}/pieces/{H}"),
            format!("/qasid/v1/publishers/{P}/chunks/{upper}"),
            format!("/qasid/v1/publishers/{P}/chunks/{H}.json"),
            format!("/qasid/v1/publishers/{P}/chunks/{H}/"),
            format!("/qasid/v1/publishers/{P}/.tmp/{H}"),
            format!("/qasid/v1/publishers/{P}/bundles/{H}.zip.minisig.zip"),
            format!("/qasid/v1/publishers/{}/index.json", &P[..63]),
            format!("/qasid/v1/publishers/{P}1/index.json"),
            format!("/qasid/v2/publishers/{P}/index.json"),
            format!("//qasid/v1/publishers/{P}/index.json"),
            format!(
                "/qasid/v1/publishers/{P}/bundles/{}.zip",
                "a".repeat(100_000)
            ),
            format!("/qasid/v1/publishers/ü{}/index.json", &P[2..]),
        ];
        for path in bad {
            assert_eq!(parse(&path), None, "{path:?}");
        }
    }
}
