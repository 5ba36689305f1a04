//! The self-contained verifying reader page (`qasid reader-page`, a mirror's `/reader.html`).
//!
//! Owns turning the browser sources in `web/reader/` (embedded at build time) into one HTML
//! file: the scripts concatenated in dependency order inside one strict-mode function, the style
//! and script allowed by their sha256 in the page's own Content-Security-Policy (no inline
//! handlers, nothing loaded from anywhere), and the trusted publisher keys and mirror URLs
//! pinned in a JSON data block. The output is a pure function of its inputs, so a publisher can
//! announce the file's sha256 and a reader can compare it. It never fetches or verifies
//! anything itself: the page does that in the browser, by the rules of `docs/PROTOCOL.md`.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::index::MirrorUrl;
use crate::keys::PublicKey;

const TEMPLATE: &str = include_str!("../web/reader/reader.html");
const STYLE: &str = include_str!("../web/reader/style.css");
/// In dependency order: helpers first, the page's entry point last.
const SCRIPTS: [&str; 9] = [
    include_str!("../web/reader/bytes.js"),
    include_str!("../web/reader/verify.js"),
    include_str!("../web/reader/roots.js"),
    include_str!("../web/reader/note.js"),
    include_str!("../web/reader/zip.js"),
    include_str!("../web/reader/fetch.js"),
    include_str!("../web/reader/state.js"),
    include_str!("../web/reader/render.js"),
    include_str!("../web/reader/main.js"),
];

/// Largest page we are willing to hand out: phones on throttled links load it first.
pub const MAX_PAGE_BYTES: usize = 100 * 1024;

/// What the page trusts and where it starts looking.
#[derive(Debug, Clone, Default)]
pub struct PageConfig {
    /// Publishers whose articles the page shows (at least one).
    pub publishers: Vec<PagePublisher>,
    /// Mirrors to race first; mirrors named in signed indexes are learned at run time.
    pub mirrors: Vec<MirrorUrl>,
}

/// A publisher the page trusts: its id and, when known, roots pinned with it (root 1 given as
/// `--publisher root.json`); the page walks on from there to the newest root mirrors serve.
#[derive(Debug, Clone)]
pub struct PagePublisher {
    pub id: PublicKey,
    pub roots: Vec<Vec<u8>>,
}

impl From<PublicKey> for PagePublisher {
    fn from(id: PublicKey) -> Self {
        Self {
            id,
            roots: Vec::new(),
        }
    }
}

impl From<&crate::roots::Anchor> for PagePublisher {
    fn from(anchor: &crate::roots::Anchor) -> Self {
        Self {
            id: anchor.id().clone(),
            roots: anchor.first().map(|r| r.to_bytes()).into_iter().collect(),
        }
    }
}

/// The page and its sha256 (lowercase hex), the value a publisher announces.
#[derive(Debug, Clone)]
pub struct Page {
    pub html: String,
    pub sha256: String,
}

fn csp_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The origin (`scheme://host[:port]`) of a mirror URL, for `connect-src`.
fn origin(url: &MirrorUrl) -> String {
    let text = url.as_str();
    let after_scheme = text.find("://").map(|i| i + 3).unwrap_or(0);
    let end = text[after_scheme..]
        .find('/')
        .map(|i| after_scheme + i)
        .unwrap_or(text.len());
    text[..end].to_owned()
}

/// Writes the page atomically (temp file beside `path`, flushed, renamed), readable by others
/// under the umask like every published file: a reader never sees half a page.
pub fn write(page: &Page, path: &std::path::Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    crate::index::atomic::write(dir, path, page.html.as_bytes())
}

/// Builds the page. Pure: the same configuration always gives the same bytes.
pub fn build(config: &PageConfig) -> Page {
    let code: Vec<String> = SCRIPTS.iter().map(|s| without_comment_lines(s)).collect();
    let script = format!("(() => {{\n\"use strict\";\n{}\n}})();\n", code.join("\n"));
    let publishers: Vec<serde_json::Value> = config
        .publishers
        .iter()
        .map(|p| match p.roots.as_slice() {
            [] => serde_json::json!(p.id.to_base64()),
            roots => serde_json::json!({
                "id": p.id.to_base64(),
                "roots": roots
                    .iter()
                    .map(|r| base64::engine::general_purpose::STANDARD.encode(r))
                    .collect::<Vec<_>>(),
            }),
        })
        .collect();
    let mirrors: Vec<&str> = config.mirrors.iter().map(|m| m.as_str()).collect();
    // `<` is escaped so no value can close the data block's <script> element.
    let data = serde_json::json!({ "publishers": publishers, "mirrors": mirrors })
        .to_string()
        .replace('<', "\\u003c");
    let mut connect: Vec<String> = vec!["'self'".into()];
    for m in &config.mirrors {
        let o = origin(m);
        if !connect.contains(&o) {
            connect.push(o);
        }
    }
    // Mirrors learned at run time (from signed indexes and signed mirror notes) can be any
    // http(s) origin: onion mirrors are plain http. The script is allowed only by its hash, and
    // it asks only pinned mirrors and mirrors from signed data, so this opens no other channel.
    connect.push("https:".into());
    connect.push("http:".into());
    let csp = format!(
        "default-src 'none'; script-src {}; style-src {}; img-src blob:; connect-src {}; base-uri 'none'; form-action 'none'",
        csp_hash(&script),
        csp_hash(STYLE),
        connect.join(" ")
    );
    let html = TEMPLATE
        .replacen("{{CSP}}", &csp, 1)
        .replacen("{{STYLE}}", STYLE, 1)
        .replacen("{{CONFIG}}", &data, 1)
        .replacen("{{SCRIPT}}", &script, 1);
    let sha256 = hex::encode(Sha256::digest(html.as_bytes()));
    Page { html, sha256 }
}

/// The page's code without its comment lines (whole lines that are `//` comments or lines of
/// a `/* … */` block that starts a line): a phone on a throttled link downloads the page, and
/// the comments are for the people reading web/reader/*.js. Code lines are kept byte for byte
/// (web/reader never starts a line inside a string with `//`, `/*` or `*`).
fn without_comment_lines(js: &str) -> String {
    let mut out = String::with_capacity(js.len());
    let mut in_block = false;
    for line in js.lines() {
        let t = line.trim_start();
        if in_block || t.starts_with("/*") {
            let body = if in_block { t } else { &t[2..] };
            match body.find("*/") {
                // Code after the block's end on the same line: keep the line as it is.
                Some(end) if !body[end + 2..].trim().is_empty() => {}
                Some(_) => {
                    in_block = false;
                    continue;
                }
                None => {
                    in_block = true;
                    continue;
                }
            }
            in_block = false;
        } else if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;
    use crate::limits::IndexLimits;

    fn config() -> PageConfig {
        PageConfig {
            publishers: vec![SecretKey::from_seed(&[7; 32]).public().clone().into()],
            mirrors: vec![
                MirrorUrl::parse("http://127.0.0.1:8080/m", &IndexLimits::default()).unwrap(),
            ],
        }
    }

    #[test]
    fn comment_lines_are_left_out_and_code_is_kept() {
        let js = "// a\nconst a = 1; // b\n/**\n * doc\n */\nfunction f() {}\n  /* one */\n/* x */ g();\nconst u = \"http://x\";\n";
        assert_eq!(
            without_comment_lines(js),
            "const a = 1; // b\nfunction f() {}\n/* x */ g();\nconst u = \"http://x\";\n"
        );
    }

    #[test]
    fn the_page_is_deterministic_small_and_self_contained() {
        let a = build(&config());
        let b = build(&config());
        assert_eq!(a.html, b.html);
        assert_eq!(a.sha256, b.sha256);
        assert!(a.html.len() < MAX_PAGE_BYTES, "{} bytes", a.html.len());
        assert!(!a.html.contains("{{"), "a placeholder was left");
        assert!(
            !a.html.contains("src=\"http"),
            "the page must not load anything"
        );
        assert!(a
            .html
            .contains("connect-src 'self' http://127.0.0.1:8080 https: http:;"));
    }

    #[test]
    fn the_csp_allows_exactly_the_inline_script_and_style() {
        let page = build(&config());
        let script_start = page.html.find("<script>").unwrap() + "<script>".len();
        let script_end = page.html[script_start..].find("</script>").unwrap() + script_start;
        let script = &page.html[script_start..script_end];
        assert!(page.html.contains(&csp_hash(script)));
        assert!(page.html.contains(&csp_hash(STYLE)));
        // No inline handlers anywhere in the markup.
        let attrs = TEMPLATE.split(|c: char| c.is_whitespace()).filter(|w| {
            w.starts_with("on")
                && w.contains('=')
                && w[2..w.find('=').unwrap()]
                    .chars()
                    .all(|c| c.is_ascii_alphabetic())
        });
        assert_eq!(attrs.count(), 0, "inline event handler in the template");
    }

    #[test]
    fn pinned_values_cannot_close_the_data_block() {
        let page = build(&config());
        let start = page.html.find("id=\"qasid-config\">").unwrap();
        let block = &page.html[start..];
        let end = block.find("</script>").unwrap();
        assert!(!block[..end].contains('<'));
    }
}
