//! Unit tests of the page functions, on the seed articles and on hostile values.

use super::*;
use crate::keys::SecretKey;

fn seed(path: &str) -> String {
    let full = format!("{}/seeds/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn key() -> PublicKey {
    SecretKey::from_seed(&[11u8; 32]).public().clone()
}

fn urdu_page() -> ArticlePage {
    ArticlePage {
        publisher: key(),
        publisher_name: Some("Radio Sangam".into()),
        name: "urdu-press-freedom".into(),
        version: 1,
        title: "انٹرنیٹ بندش میں بھی کمیونٹی ریڈیو کی آواز خاموش نہ ہوئی".into(),
        author: "فرحانہ قادری".into(),
        date: "2026-11-18".into(),
        language: "ur".into(),
        bundle_sha256: ContentId::of_bytes(b"urdu bundle"),
        bundle_size: 7_321,
        manifest_sha256: ContentId::of_bytes(b"urdu manifest"),
        files: vec!["article.md".into()],
        attachments: Vec::new(),
        mirrors: Vec::new(),
        markdown: seed("urdu-press-freedom/article.md"),
    }
}

fn launch_page() -> ArticlePage {
    ArticlePage {
        publisher: key(),
        publisher_name: None,
        name: "mirror-network-launch".into(),
        version: 2,
        title: "A Volunteer Mirror Network Goes Live for Blocked Newsrooms".into(),
        author: "Mariam Oyelaran".into(),
        date: "2026-11-20".into(),
        language: "en".into(),
        bundle_sha256: ContentId::of_bytes(b"launch bundle"),
        bundle_size: 48_213,
        manifest_sha256: ContentId::of_bytes(b"launch manifest"),
        files: vec!["article.md".into(), "images/mirror-map.png".into()],
        attachments: Vec::new(),
        mirrors: Vec::new(),
        markdown: seed("mirror-network-launch/article.md"),
    }
}

fn listing(name: Option<&str>, expired: bool, title: &str) -> PublisherListing {
    PublisherListing {
        publisher: key(),
        name: name.map(String::from),
        sequence: 42,
        issued: "2026-11-20T08:00:00Z".into(),
        expires: "2026-11-27T08:00:00Z".into(),
        expired,
        mirrors: Vec::new(),
        articles: vec![ArticleListing {
            name: "launch".into(),
            version: 1,
            title: title.into(),
            date: "2026-11-20".into(),
            language: "en".into(),
            bundle_sha256: ContentId::of_bytes(b"b"),
        }],
    }
}

/// The page's text with tags as spaces and whitespace runs collapsed, roughly as a reader
/// sees it.
fn visible_text(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What every page must be: one document, no script, nothing loaded from elsewhere.
fn assert_self_contained(page: &str) {
    assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\""), "{page}");
    assert_eq!(page.matches("<style>").count(), 1);
    assert!(page.contains(&format!(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">",
        html::Text(CONTENT_SECURITY_POLICY)
    )));
    let lower = page.to_ascii_lowercase();
    for bad in [
        "<script",
        "<link",
        "@import",
        "url(",
        "<iframe",
        "src=\"http",
        "src=\"//",
    ] {
        assert!(!lower.contains(bad), "{bad:?} in page");
    }
    // Every attribute this module writes is double-quoted and escaped values never contain
    // `"`, so an event handler attribute would show as ` on…="`.
    let handler = lower.match_indices(" on").any(|(i, _)| {
        let rest = &lower[i + 3..];
        let name = rest.bytes().take_while(u8::is_ascii_lowercase).count();
        name > 0 && rest[name..].starts_with("=\"")
    });
    assert!(!handler, "event handler attribute in page");
}

#[test]
fn urdu_article_is_right_to_left() {
    let page = article_page(&urdu_page());
    assert!(page.contains("<html lang=\"ur\" dir=\"rtl\">"), "{page}");
    assert!(page.contains("<article lang=\"ur\" dir=\"rtl\">"));
    assert!(
        page.contains("<h1>نیل پور کا کمیونٹی ریڈیو انٹرنیٹ بندش کے باوجود خبریں پہنچاتا رہا</h1>")
    );
    assert!(page.contains("<section class=\"verify\" lang=\"en\" dir=\"ltr\">"));
    assert!(
        !page.contains("language: ur"),
        "front matter must not be shown"
    );
    assert_self_contained(&page);
}

#[test]
fn english_article_is_left_to_right_with_its_image_from_the_bundle() {
    let page = article_page(&launch_page());
    assert!(page.contains("<html lang=\"en\" dir=\"ltr\">"));
    let image = asset_url(&key(), "mirror-network-launch", 2, "images/mirror-map.png");
    assert_eq!(
        image,
        format!(
            "/read/{}/mirror-network-launch/2/files/images/mirror-map.png",
            key().hex()
        )
    );
    assert!(
        page.contains(&format!("<img src=\"{image}\" alt=\"Map of mirrors\">")),
        "{page}"
    );
    assert_self_contained(&page);
}

#[test]
fn verification_box_states_the_check_and_how_to_repeat_it() {
    let a = launch_page();
    let page = article_page(&a);
    let text = visible_text(&page);
    let id = a.publisher.id();
    let sha = a.bundle_sha256;
    let key = a.publisher.to_base64();
    for expected in [
        format!("verified: signed by {id} on 2026-11-20, content hash {sha}"),
        format!("manifest sha256 {}", a.manifest_sha256),
        "bundle size 47.1 KiB (48213 bytes)".to_owned(),
        "sha256sum mirror-network-launch-v2.zip".to_owned(),
        format!("{sha}  mirror-network-launch-v2.zip")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        format!("qasid verify mirror-network-launch-v2.zip --publisher {key}"),
        format!("untrusted comment: minisign public key {id} {key}"),
        "minisign -Vm mirror-network-launch-v2.zip -p publisher.pub".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} missing from {text}");
    }
    // The expected sha256sum line keeps its two spaces in the page itself.
    assert!(page.contains(&format!("<pre>{sha}  mirror-network-launch-v2.zip</pre>")));
    assert!(page.contains(&format!(
        "<a href=\"{}\" download=\"mirror-network-launch-v2.zip\">",
        bundle_url(&a.publisher, &sha)
    )));
    assert!(page.contains(&format!(
        "<a href=\"/qasid/v1/publishers/{}/bundles/{sha}.zip.minisig\" download=\"mirror-network-launch-v2.zip.minisig\">",
        a.publisher.hex()
    )));
}

#[test]
fn web_links_in_the_article_are_listed() {
    let page = article_page(&urdu_page());
    let links = page
        .split("<h2>Links in this article</h2>")
        .nth(1)
        .expect("links section");
    assert!(links.contains(
        "<li><a href=\"https://example.org/ur/mirrors\" rel=\"noopener noreferrer nofollow\">https://example.org/ur/mirrors</a></li>"
    ));
    let page = article_page(&launch_page());
    assert!(
        page.contains(">https://example.org/mirrors</a></li>"),
        "{page}"
    );
}

#[test]
fn hostile_titles_names_and_dates_are_escaped() {
    let hostile = "<script>alert(\"x\")</script> & 'q' <img src=x onerror=alert(1)>";
    let mut p = listing(Some(hostile), false, hostile);
    p.issued = hostile.into();
    p.articles[0].language = "en\" onmouseover=\"alert(1)".into();
    p.articles[0].name = "../../x?y#z".into();
    let page = home_page(
        &SiteInfo {
            name: hostile.into(),
        },
        &[p],
    );
    assert_self_contained(&page);
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("<img src=x"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;"));
    assert!(
        page.contains("lang=\"en&quot; onmouseover=&quot;alert(1)\""),
        "{page}"
    );
    assert!(page.contains(&format!(
        "href=\"/read/{}/..%2F..%2Fx%3Fy%23z/1/\"",
        key().hex()
    )));

    let mut a = launch_page();
    a.title = hostile.into();
    a.author = hostile.into();
    a.publisher_name = Some(hostile.into());
    a.date = hostile.into();
    let page = article_page(&a);
    assert_self_contained(&page);
    assert!(!page.contains("<script>alert"));
    assert!(page.contains("<title>&lt;script&gt;"));
}

#[test]
fn hostile_article_body_cannot_run_script_or_load_third_party_content() {
    let mut a = launch_page();
    a.markdown = "---\ntitle: t\nauthor: a\ndate: 2026-01-01\nlanguage: en\n---\n\
        <script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n[x](javascript:alert(1))\n\n\
        <a href=\"data:text/html,<script>alert(1)</script>\">d</a>\n\n<iframe src=\"https://evil.example/\"></iframe>\n\n\
        <style>*{display:none}</style>\n\n<svg onload=alert(1)></svg>\n\n<form><input></form>\n\n\
        <p style=\"color:red\">s</p>\n\n![x](https://tracker.example/p.png)\n"
        .into();
    let page = article_page(&a);
    assert_self_contained(&page);
    let body = page
        .split("<article")
        .nth(1)
        .unwrap()
        .split("</article>")
        .next()
        .unwrap();
    for bad in [
        "alert",
        "javascript",
        "data:",
        "<iframe",
        "<style",
        "<svg",
        "<form",
        "<input",
        "style=",
        "src=",
    ] {
        assert!(!body.contains(bad), "{bad:?} survived: {body}");
    }
    // The raw `<img>` stays, without a source: it loads nothing and shows nothing.
    assert_eq!(body.matches("<img").count(), 1, "{body}");
    assert!(body.contains(
        "<a href=\"https://tracker.example/p.png\" rel=\"noopener noreferrer nofollow\">x</a>"
    ));
}

#[test]
fn home_page_lists_publishers_articles_and_stale_indexes() {
    let fresh = listing(Some("Radio Sangam"), false, "Fresh news");
    let mut stale = listing(None, true, "Old news");
    stale.articles[0].language = "fa".into();
    stale.articles[0].title = "خبر".into();
    let page = home_page(
        &SiteInfo {
            name: "Test mirror".into(),
        },
        &[fresh, stale],
    );
    assert_self_contained(&page);
    assert!(page.contains("<html lang=\"en\" dir=\"ltr\">"));
    assert!(page.contains("<h1>Test mirror</h1>"));
    assert!(page.contains("<h2>Radio Sangam</h2>"));
    let id = key().id();
    assert!(
        page.contains(&format!(
            "<h2>Publisher {id}<span class=\"badge stale\">stale</span></h2>"
        )),
        "{page}"
    );
    assert_eq!(page.matches("class=\"badge stale\"").count(), 1);
    let text = visible_text(&page);
    assert!(
        text.contains(&format!(
            "key {id} · index 42 · issued 2026-11-20T08:00:00Z · expires 2026-11-27T08:00:00Z"
        )),
        "{text}"
    );
    assert!(text.contains("index expired on 2026-11-27T08:00:00Z"));
    assert!(page.contains(&format!(
        "<a class=\"title\" href=\"/read/{}/launch/1/\" lang=\"fa\" dir=\"rtl\">خبر</a>",
        key().hex()
    )));
    assert!(text.contains("2026-11-20 · en · version 1 · bundle"));

    let empty = home_page(&SiteInfo { name: "m".into() }, &[]);
    assert!(empty.contains("no publishers yet"));
}

#[test]
fn error_page_escapes_its_message() {
    let page = error_page(404, "no article <b>here</b>");
    assert_self_contained(&page);
    assert!(page.contains("<title>Error 404</title>"));
    assert!(page.contains("<h1>Error 404</h1>\n<p>no article &lt;b&gt;here&lt;/b&gt;</p>"));
}

#[test]
fn sizes_are_shown_readably() {
    assert_eq!(size_text(999), "999 bytes");
    assert_eq!(size_text(16 * 1024), "16.0 KiB (16384 bytes)");
    assert_eq!(size_text(5 * 1024 * 1024 + 1), "5.0 MiB (5242881 bytes)");
}

#[test]
fn rtl_byline_dates_stay_left_to_right() {
    let html = article_page(&urdu_page());
    assert!(
        html.contains("<time dir=\"ltr\">2026-11-18</time>"),
        "{html}"
    );
}

#[test]
fn attachments_that_are_not_images_are_listed_with_size_and_type() {
    let mut page = launch_page();
    page.files.push("data/budget.csv".into());
    page.attachments = vec![Attachment {
        path: "data/budget.csv".into(),
        size: 2048,
        content_type: "text/plain; charset=utf-8".into(),
    }];
    let html = article_page(&page);
    assert!(html.contains("Files with this article"), "{html}");
    assert!(
        html.contains("files/data/budget.csv\" download>data/budget.csv</a>"),
        "{html}"
    );
    assert!(
        html.contains("2.0 KiB (2048 bytes) · text/plain; charset=utf-8"),
        "{html}"
    );
    assert!(!article_page(&launch_page()).contains("Files with this article"));
}

#[test]
fn the_mirrors_of_the_signed_index_are_listed_on_home_and_article_pages() {
    let mirrors = vec![
        "https://mirror-two.example/".to_owned(),
        "https://x.example/a'b&c/\"><script>alert(1)</script>".to_owned(),
        "javascript:alert(2)".to_owned(),
    ];
    let mut p = listing(None, false, "Title");
    p.mirrors = mirrors.clone();
    let home = home_page(&SiteInfo { name: "m".into() }, &[p]);
    assert_self_contained(&home);
    let mut a = launch_page();
    a.mirrors = mirrors;
    let page = article_page(&a);
    assert_self_contained(&page);
    for html in [&home, &page] {
        assert!(html.contains("Mirrors of this publisher"), "{html}");
        assert!(
            html.contains(
                "<a href=\"https://mirror-two.example/\" rel=\"noopener noreferrer nofollow\">"
            ),
            "{html}"
        );
        // Escaped, in the URL's parsed form; a non-web URL is text, never a link.
        assert!(
            !html.contains("<script>") && !html.contains("a'b"),
            "{html}"
        );
        assert!(html.contains("a&#39;b&amp;c/%22%3E%3Cscript%3E"), "{html}");
        assert!(
            html.contains("<li><code>javascript:alert(2)</code></li>"),
            "{html}"
        );
        assert!(!html.contains("href=\"javascript"), "{html}");
    }
    assert!(!article_page(&launch_page()).contains("Mirrors of this publisher"));
}

#[test]
fn home_and_article_pages_link_the_verifying_reader() {
    let home = home_page(&SiteInfo { name: "m".into() }, &[listing(None, false, "T")]);
    assert!(
        home.contains("<a href=\"/reader.html\">verifying reader</a>"),
        "{home}"
    );
    let page = article_page(&launch_page());
    assert!(
        page.contains("<a href=\"/reader.html#read=mirror-network-launch\">verifying reader</a>"),
        "{page}"
    );
}

#[test]
fn the_title_is_shown_once_when_the_first_heading_repeats_it() {
    // The seed's first heading is its title in sentence case.
    let page = article_page(&launch_page());
    assert_eq!(page.matches("<h1").count(), 1, "{page}");
    assert!(page.contains("<h1>A Volunteer Mirror Network Goes Live for Blocked Newsrooms</h1>"));
    // A first heading that says something else stays.
    let page = article_page(&urdu_page());
    assert_eq!(page.matches("<h1").count(), 2, "{page}");
}
