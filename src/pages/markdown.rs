//! An article's Markdown as sanitised HTML: the only code that turns publisher-written markup
//! into page markup.
//!
//! A verified article is only as honest as its publisher, so its HTML is built to be harmless
//! whoever wrote it. pulldown-cmark renders the body (front matter skipped); links and images
//! whose targets are not allowed are unwrapped to their text first, and ammonia then enforces
//! the policy on everything, raw HTML in the Markdown included:
//! - elements: text structure only (paragraphs, headings, lists, quotes, code, tables,
//!   emphasis, links, images); no script, style, iframe, object, embed, form, svg or math, and
//!   the content of script-like elements is dropped with them;
//! - attributes: `href` on links, `src`/`alt` on images, `start` on lists, `lang`/`dir`/`title`
//!   anywhere; never `style`, `class`, `id` or an event handler;
//! - link targets: `http`/`https` URLs (rewritten to their parsed form, so an international
//!   domain shows as the punycode a browser will visit) and relative paths naming a file in the
//!   bundle's manifest (rewritten to its asset URL); anything else (`javascript:`, `data:`,
//!   `mailto:`, other paths, absolute paths, `//host`) is removed, and every link gets
//!   `rel="noopener noreferrer nofollow"`;
//! - image sources: only files in the manifest, as asset URLs, so reading a page loads nothing
//!   from a third party. A Markdown image on the web becomes a link to it instead.
//!
//! Unicode bidi overrides and isolates are removed from the source, as [`crate::render`] does.
//! This module never reads files and never decides whether an article is authentic.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use ammonia::{Builder, UrlRelative};
use pulldown_cmark::{Event, LinkType, Options, Parser, Tag, TagEnd};

use super::html::is_invisible;
use super::urls;
use crate::keys::PublicKey;

/// `rel` on every link: no `window.opener`, no `Referer` naming the article a reader came
/// from, and no endorsement of the target.
const LINK_REL: &str = "noopener noreferrer nofollow";

/// Elements kept (without their disallowed attributes).
const ALLOWED_TAGS: &[&str] = &[
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "code",
    "del",
    "div",
    "em",
    "figcaption",
    "figure",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "ins",
    "kbd",
    "li",
    "mark",
    "ol",
    "p",
    "pre",
    "q",
    "s",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "u",
    "ul",
];

/// Elements removed together with everything inside them; other disallowed elements are
/// removed but keep their text.
const DROPPED_WITH_CONTENT: &[&str] = &[
    "embed", "frame", "frameset", "iframe", "math", "noembed", "noframes", "noscript", "object",
    "script", "select", "style", "svg", "template", "textarea", "title", "xmp",
];

/// The files of one bundle that its article may link to or show.
#[derive(Debug, Clone)]
pub(super) struct Assets {
    pub(super) publisher: PublicKey,
    pub(super) name: String,
    pub(super) version: u64,
    /// The manifest's paths, exactly as listed.
    pub(super) files: HashSet<String>,
}

/// Where a link or image reference in the article points.
enum Target {
    /// A file of this bundle, as its asset URL.
    Asset(String),
    /// An `http`/`https` URL, in parsed form.
    Web(String),
    /// Anything else: the reference is removed.
    Refused,
}

impl Assets {
    fn target(&self, reference: &str) -> Target {
        if let Some(path) = self.manifest_path(reference) {
            return Target::Asset(urls::asset_url(
                &self.publisher,
                &self.name,
                self.version,
                path,
            ));
        }
        match urls::web_url(reference) {
            Some(url) => Target::Web(url),
            None => Target::Refused,
        }
    }

    /// The manifest path a relative reference names: as written or percent-decoded, with an
    /// optional leading `./`. Manifest paths never contain `:`, so a URL with a scheme can
    /// never match one.
    fn manifest_path(&self, reference: &str) -> Option<&str> {
        let reference = reference.strip_prefix("./").unwrap_or(reference);
        match self.files.get(reference) {
            Some(path) => Some(path),
            None => self.files.get(&percent_decode(reference)?),
        }
        .map(String::as_str)
    }
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let (escape, tail) = (tail.get(..2)?, &tail[2..]);
            bytes.extend(hex::decode(escape).ok()?);
            rest = tail;
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// An article body as safe HTML, with the web links it contains.
#[derive(Debug)]
pub(super) struct Body {
    pub(super) html: String,
    /// Every `http`/`https` link target left in the body, in order, without repeats: listed
    /// under the article so a reader sees where links go whatever their text says.
    pub(super) web_links: Vec<String>,
}

/// Renders `article.md` (front matter skipped) as sanitised HTML. See the module
/// documentation for the policy. A first heading that repeats `title` (which the page already
/// shows as its heading) is left out.
pub(super) fn render(markdown: &str, assets: Assets, title: &str) -> Body {
    let source: String = without_repeated_title(body_of(markdown), title)
        .chars()
        .filter(|&c| !is_invisible(c))
        .collect();
    let assets = Arc::new(assets);
    let mut unsafe_html = String::with_capacity(source.len() * 3 / 2);
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    pulldown_cmark::html::push_html(
        &mut unsafe_html,
        Unwrap::new(Parser::new_ext(&source, options), &assets),
    );
    let web_links = Arc::new(Mutex::new(Vec::new()));
    let html = sanitiser(Arc::clone(&assets), Arc::clone(&web_links))
        .clean(&unsafe_html)
        .to_string();
    let web_links = std::mem::take(&mut *web_links.lock().unwrap_or_else(PoisonError::into_inner));
    Body { html, web_links }
}

/// `body` without its first line(s) when they are a level-1 heading (`# Title`, or `Title`
/// underlined with `=`) whose text is `title` (whitespace and case aside).
fn without_repeated_title<'a>(body: &'a str, title: &str) -> &'a str {
    let same = |text: &str| {
        let words = |s: &str| {
            s.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        };
        !title.trim().is_empty() && words(text) == words(title)
    };
    let start = body.len() - body.trim_start_matches(['\n', '\r', ' ', '\t']).len();
    // Back to the start of the first non-blank line.
    let start = body[..start].rfind('\n').map_or(0, |i| i + 1);
    let rest = &body[start..];
    let mut lines = rest.split_inclusive('\n');
    let Some(first) = lines.next() else {
        return body;
    };
    let line = first.trim();
    if let Some(text) = line.strip_prefix("# ") {
        if same(text.trim_end_matches('#')) {
            return &rest[first.len()..];
        }
    }
    if let Some(underline) = lines.next() {
        let u = underline.trim();
        if !u.is_empty() && u.bytes().all(|b| b == b'=') && same(line) {
            return &rest[first.len() + underline.len()..];
        }
    }
    body
}

/// The Markdown after the front matter. A verified article has valid front matter; if it does
/// not parse, the whole text is rendered rather than guessing where the body starts.
fn body_of(markdown: &str) -> &str {
    crate::article::parse(markdown).map_or(markdown, |article| article.body)
}

/// The ammonia policy for one article. `web_links` collects the web link targets it keeps.
fn sanitiser(assets: Arc<Assets>, web_links: Arc<Mutex<Vec<String>>>) -> Builder<'static> {
    let mut builder = Builder::empty();
    builder
        .tags(ALLOWED_TAGS.iter().copied().collect())
        .clean_content_tags(DROPPED_WITH_CONTENT.iter().copied().collect())
        .generic_attributes(["lang", "dir", "title"].into_iter().collect())
        .tag_attributes(
            [
                ("a", ["href"].into_iter().collect()),
                ("img", ["src", "alt"].into_iter().collect()),
                ("ol", ["start"].into_iter().collect()),
            ]
            .into_iter()
            .collect(),
        )
        .url_schemes(["http", "https"].into_iter().collect())
        // The attribute filter below has already decided every relative URL.
        .url_relative(UrlRelative::PassThrough)
        .link_rel(Some(LINK_REL))
        .strip_comments(true)
        .attribute_filter(
            move |element, attribute, value| match (element, attribute) {
                ("a", "href") => match assets.target(value) {
                    Target::Asset(url) => Some(Cow::Owned(url)),
                    Target::Web(url) => {
                        let mut links = web_links.lock().unwrap_or_else(PoisonError::into_inner);
                        if !links.contains(&url) {
                            links.push(url.clone());
                        }
                        Some(Cow::Owned(url))
                    }
                    Target::Refused => None,
                },
                ("img", "src") => match assets.target(value) {
                    Target::Asset(url) => Some(Cow::Owned(url)),
                    Target::Web(_) | Target::Refused => None,
                },
                _ => Some(Cow::Borrowed(value)),
            },
        );
    builder
}

/// What an opened link or image became, to close it the same way.
enum Opened {
    Link,
    Image,
    Nothing,
}

/// Unwraps Markdown links and images whose targets are refused to their text, and turns web
/// images into links, so the page reads naturally where the sanitiser would leave an empty
/// `<a>` or `<img>`. Allowed targets are left as written: the sanitiser rewrites them.
struct Unwrap<'a, I> {
    events: I,
    assets: &'a Assets,
    opened: Vec<Opened>,
}

impl<'a, I> Unwrap<'a, I> {
    fn new(events: I, assets: &'a Assets) -> Self {
        Self {
            events,
            assets,
            opened: Vec::new(),
        }
    }
}

impl<'e, I: Iterator<Item = Event<'e>>> Iterator for Unwrap<'_, I> {
    type Item = Event<'e>;

    fn next(&mut self) -> Option<Event<'e>> {
        loop {
            let event = self.events.next()?;
            let event = match event {
                Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. })
                    if matches!(self.assets.target(&dest_url), Target::Refused) =>
                {
                    self.opened.push(Opened::Nothing);
                    continue;
                }
                Event::Start(Tag::Image {
                    link_type,
                    dest_url,
                    title,
                    id,
                }) => match self.assets.target(&dest_url) {
                    Target::Web(_) => {
                        self.opened.push(Opened::Link);
                        Event::Start(Tag::Link {
                            link_type: LinkType::Inline,
                            dest_url,
                            title,
                            id,
                        })
                    }
                    _ => {
                        self.opened.push(Opened::Image);
                        Event::Start(Tag::Image {
                            link_type,
                            dest_url,
                            title,
                            id,
                        })
                    }
                },
                Event::Start(link @ Tag::Link { .. }) => {
                    self.opened.push(Opened::Link);
                    Event::Start(link)
                }
                Event::End(TagEnd::Link | TagEnd::Image) => match self.opened.pop() {
                    Some(Opened::Link) => Event::End(TagEnd::Link),
                    Some(Opened::Image) => Event::End(TagEnd::Image),
                    Some(Opened::Nothing) | None => continue,
                },
                other => other,
            };
            return Some(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn assets() -> Assets {
        Assets {
            publisher: SecretKey::from_seed(&[4u8; 32]).public().clone(),
            name: "story".into(),
            version: 3,
            files: ["article.md", "images/map.png", "images/city map.jpg"]
                .into_iter()
                .map(String::from)
                .collect(),
        }
    }

    fn asset(path: &str) -> String {
        let a = assets();
        urls::asset_url(&a.publisher, &a.name, a.version, path)
    }

    fn html(markdown: &str) -> String {
        render(markdown, assets(), "").html
    }

    #[test]
    fn hostile_markdown_keeps_no_script_style_or_active_content() {
        let cases: &[(&str, &[&str])] = &[
            ("<script>alert(1)</script>", &["<script", "alert"]),
            ("<img src=x onerror=alert(1)>", &["onerror", "alert", "src="]),
            ("[x](javascript:alert(1))", &["javascript", "href", "alert"]),
            ("[x](JaVaScRiPt:alert(1))", &["javascript", "href"]),
            ("<a href=\"jav&#x09;ascript:alert(1)\">x</a>", &["ascript", "href"]),
            (
                "<a href=\"data:text/html,<script>alert(1)</script>\">x</a>",
                &["data:", "href", "<script"],
            ),
            ("![x](data:image/png;base64,AAAA)", &["data:", "<img", "src="]),
            ("<iframe src=\"https://evil.example/\"></iframe>", &["<iframe", "evil"]),
            ("<style>body{display:none}</style>", &["<style", "display"]),
            ("<svg onload=alert(1)><circle r=9 /></svg>", &["<svg", "onload", "alert", "circle"]),
            (
                "<form action=\"https://evil.example/\"><input name=q><button>go</button></form>",
                &["<form", "<input", "<button", "action"],
            ),
            ("<p style=\"position:fixed\">x</p>", &["style", "fixed"]),
            ("<div onclick=\"alert(1)\" onmouseover=alert(1)>x</div>", &["onclick", "onmouse", "alert"]),
            ("<object data=\"x.swf\"></object><embed src=\"x.swf\">", &["<object", "<embed", "swf"]),
            ("<meta http-equiv=refresh content=\"0;url=https://evil.example/\">", &["<meta", "refresh", "evil"]),
            ("<base href=\"https://evil.example/\"><link rel=stylesheet href=\"https://evil.example/\">", &["<base", "<link", "evil"]),
            ("<a href=\"x\" target=\"_blank\" rel=\"opener\">x</a>", &["target", "\"opener\"", "href"]),
            ("<p class=\"x\" id=\"main\">x</p>", &["class", "id="]),
            ("<math><mi xlink:href=\"javascript:alert(1)\">x</mi></math>", &["<math", "javascript"]),
            ("<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></noscript>", &["onerror", "alert"]),
            ("<!-- <script>alert(1)</script> -->", &["<!--", "alert"]),
        ];
        for (markdown, forbidden) in cases {
            let out = html(markdown).to_ascii_lowercase();
            for bad in *forbidden {
                assert!(!out.contains(bad), "{markdown:?} left {bad:?} in {out:?}");
            }
        }
    }

    #[test]
    fn a_first_heading_repeating_the_title_is_dropped_once() {
        for body in [
            "# The Launch\n\nText.\n",
            "\n#  the  launch #\n\nText.\n",
            "The Launch\n==========\n\nText.\n",
        ] {
            let out = render(body, assets(), "The Launch").html;
            assert!(!out.contains("<h1"), "{body:?} → {out}");
            assert!(out.contains("Text."), "{out}");
        }
        // Another heading, or the title later in the text, stays.
        let out = render("# Background\n\n# The Launch\n", assets(), "The Launch").html;
        assert_eq!(out.matches("<h1").count(), 2, "{out}");
        let out = render("Intro.\n\n# The Launch\n", assets(), "The Launch").html;
        assert!(out.contains("<h1"), "{out}");
    }

    #[test]
    fn web_images_become_links_and_load_nothing() {
        let body = render(
            "![tracker pixel](https://tracker.example/p.png)\n",
            assets(),
            "",
        );
        assert!(!body.html.contains("<img"), "{}", body.html);
        assert!(
            body.html.contains(
                "<a href=\"https://tracker.example/p.png\" rel=\"noopener noreferrer nofollow\">tracker pixel</a>"
            ),
            "{}",
            body.html
        );
        let raw = html("<img src=\"https://tracker.example/raw.png\" alt=\"r\"> <img src=\"//tracker.example/x.png\">");
        assert!(!raw.contains("tracker"), "{raw}");
        assert!(!raw.contains("src="), "{raw}");
    }

    #[test]
    fn bundle_images_and_links_become_asset_urls() {
        let out = html(
            "![Map](images/map.png) ![again](./images/map.png) ![city](images/city%20map.jpg)\n\n\
             <img src=\"images/map.png\" alt=\"raw\"> [full size](images/map.png)\n",
        );
        let map = asset("images/map.png");
        assert_eq!(
            out.matches(&format!("<img src=\"{map}\"")).count(),
            3,
            "{out}"
        );
        assert!(
            out.contains(&format!("<img src=\"{}\"", asset("images/city map.jpg"))),
            "{out}"
        );
        assert!(out.contains(&format!("<a href=\"{map}\" rel=")), "{out}");
        assert!(asset("images/city map.jpg").ends_with("/files/images/city%20map.jpg"));
    }

    #[test]
    fn references_outside_the_manifest_are_unwrapped_to_text() {
        let out = html(
            "![lost](images/missing.png) [up](../../etc/passwd) [root](/qasid/v1/x) \
             [mail](mailto:a@b.example) <a@b.example> [frag](#top)\n",
        );
        assert!(!out.contains("<img"), "{out}");
        assert!(!out.contains("href"), "{out}");
        for text in ["lost", "up", "root", "mail", "frag"] {
            assert!(out.contains(text), "{text} missing from {out}");
        }
    }

    #[test]
    fn web_links_get_rel_and_are_listed_once_in_parsed_form() {
        let body = render(
            "[a](https://example.org/a) [again](https://example.org/a) \
             <a href=\"http://EXAMPLE.org/b\">b</a> [idn](https://bücher.example/)\n",
            assets(),
            "",
        );
        assert_eq!(
            body.web_links,
            [
                "https://example.org/a",
                "http://example.org/b",
                "https://xn--bcher-kva.example/"
            ]
        );
        assert_eq!(
            body.html
                .matches("rel=\"noopener noreferrer nofollow\"")
                .count(),
            4,
            "{}",
            body.html
        );
    }

    #[test]
    fn front_matter_is_skipped_and_structure_kept() {
        let out = html(
            "---\ntitle: Secret title\nauthor: a\ndate: 2026-01-01\nlanguage: en\n---\n\
             # Head\n\n> quote\n\n- one\n\n| a | b |\n|---|:-:|\n| 1 | 2 |\n\n`code` ~~gone~~\n",
        );
        assert!(!out.contains("Secret title"), "{out}");
        for tag in [
            "<h1>Head</h1>",
            "<blockquote>",
            "<li>one</li>",
            "<table>",
            "<td>2</td>",
            "<code>code</code>",
            "<del>gone</del>",
        ] {
            assert!(out.contains(tag), "{tag} missing from {out}");
        }
    }

    #[test]
    fn bidi_overrides_are_removed() {
        let out = html("see photo\u{202E}gnp.exe and \u{2067}x\u{2069}\n");
        assert!(out.contains("see photognp.exe and x"), "{out}");
    }
}
