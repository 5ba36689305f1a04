//! The reader pages of a real mirror over real HTTP: the signed index's mirrors on the home and
//! article pages (escaped, links only for http(s)), the link to the verifying reader page, the
//! title shown once, the byline date left-to-right in a right-to-left article, and files that
//! are not images listed with their size and served byte for byte.

use crate::mirror_support;

use std::path::Path;
use std::time::{Duration, SystemTime};

use mirror_support::*;
use qasid::bundle::{self, CreateOptions};
use qasid::index::MirrorUrl;
use qasid::keys::SecretKey;
use qasid::limits::{BundleLimits, IndexLimits};
use qasid::pages::{article_url, asset_url};
use qasid::repo::{PublishRequest, Repo};

const TITLE: &str = "خبر کی سرخی";
const CSV: &[u8] = b"year,budget\n2025,100\n2026,140\n";

/// An Urdu article whose first heading repeats its title, with an image and a CSV file.
fn urdu_bundle(dir: &Path, key: &SecretKey) -> std::path::PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("data")).unwrap();
    std::fs::create_dir_all(src.join("images")).unwrap();
    std::fs::write(
        src.join("article.md"),
        format!(
            "---\ntitle: {TITLE}\nauthor: ڈیسک\ndate: 2026-11-18\nlanguage: ur\n---\n\n\
             # {TITLE}\n\nمتن۔\n\n![نقشہ](images/map.png)\n"
        ),
    )
    .unwrap();
    std::fs::write(src.join("images/map.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    std::fs::write(src.join("data/budget.csv"), CSV).unwrap();
    let out = dir.join("khabar-v1.zip");
    bundle::create(
        &src,
        key,
        &out,
        &CreateOptions {
            name: Some("khabar".into()),
            version: Some(1),
            limits: BundleLimits::default(),
        },
    )
    .unwrap();
    out
}

/// Signs a new index for the repo with this mirror list (and `bundles` added).
fn publish_with_mirrors(repo: &Path, key: &SecretKey, bundles: &[&Path], mirrors: &[&str]) {
    let limits = IndexLimits::default();
    let mirrors = mirrors
        .iter()
        .map(|m| MirrorUrl::parse(m, &limits).unwrap())
        .collect();
    Repo::new(repo, key.public(), limits, BundleLimits::default())
        .publish(
            key,
            &PublishRequest {
                bundles: bundles.iter().map(|p| p.to_path_buf()).collect(),
                retract: Vec::new(),
                refresh: true,
                mirrors: Some(mirrors),
                expires_in: Duration::from_secs(7 * 24 * 3600),
                now: SystemTime::now(),
            },
        )
        .unwrap();
}

async fn get(url: &str, etag: Option<&str>) -> (u16, Option<String>, Vec<u8>) {
    let mut request = client().get(url);
    if let Some(etag) = etag {
        request = request.header("If-None-Match", etag);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, etag, response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn a_mirrors_pages_list_the_signed_mirrors_link_the_reader_and_list_attachments() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(3);
    let bundle = urdu_bundle(dir.path(), &key);
    let repo = dir.path().join("repo");
    // A mirror URL with characters that must be escaped in an attribute (`'` and `&` are
    // left as they are by URL parsing, `<` is percent-encoded).
    let hostile = "https://x.example/a'b&c<i>/";
    publish_with_mirrors(
        &repo,
        &key,
        &[&bundle],
        &["https://mirror-two.example/", hostile],
    );
    let server = Server::start(&dir.path().join("store"), &[&key]).await;
    push_repo(&server, &repo, &key).await;

    let (status, _, home) = get(&server.url("/"), None).await;
    assert_eq!(status, 200);
    let home = String::from_utf8(home).unwrap();
    let mirror_link =
        "<a href=\"https://mirror-two.example/\" rel=\"noopener noreferrer nofollow\">";
    let hostile_shown = "https://x.example/a&#39;b&amp;c%3Ci%3E/";
    assert!(home.contains("Mirrors of this publisher"), "{home}");
    assert!(home.contains(mirror_link), "{home}");
    assert!(
        home.contains(&format!("<a href=\"{hostile_shown}\"")),
        "{home}"
    );
    assert!(!home.contains("a'b") && !home.contains("<i>"), "{home}");
    assert!(home.contains("<a href=\"/reader.html\">verifying reader</a>"));

    let article = server.url(&article_url(key.public(), "khabar", 1));
    let (status, etag, page) = get(&article, None).await;
    assert_eq!(status, 200);
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains(mirror_link), "{page}");
    assert!(
        page.contains(&format!("<a href=\"{hostile_shown}\"")),
        "{page}"
    );
    assert!(
        page.contains("<a href=\"/reader.html#read=khabar\">verifying reader</a>"),
        "{page}"
    );
    assert_eq!(
        page.matches(TITLE).count(),
        2,
        "<title> and <h1> only: {page}"
    );
    assert_eq!(page.matches("<h1").count(), 1, "{page}");
    assert!(page.contains("<article lang=\"ur\" dir=\"rtl\">"), "{page}");
    assert!(
        page.contains("<time dir=\"ltr\">2026-11-18</time>"),
        "{page}"
    );
    // The CSV is listed with its size and type; the image (shown in the body) and
    // article.md are not.
    let csv_url = asset_url(key.public(), "khabar", 1, "data/budget.csv");
    assert!(
        page.contains(&format!(
            "<a href=\"{csv_url}\" download>data/budget.csv</a> <span class=\"meta\">{} bytes · \
             text/plain; charset=utf-8</span>",
            CSV.len()
        )),
        "{page}"
    );
    assert!(!page.contains("download>images/map.png") && !page.contains("download>article.md"));
    let (status, _, served) = get(&server.url(&csv_url), None).await;
    assert_eq!((status, served.as_slice()), (200, CSV));
    let (status, _, reader) = get(&server.url("/reader.html"), None).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&reader).contains("<html"));

    // A new signed mirror list changes the article page: a cached copy is not revalidated.
    let etag = etag.expect("article pages carry an ETag");
    assert_eq!(get(&article, Some(&etag)).await.0, 304);
    publish_with_mirrors(&repo, &key, &[], &["https://mirror-three.example/"]);
    push_repo(&server, &repo, &key).await;
    let (status, _, page) = get(&article, Some(&etag)).await;
    assert_eq!(
        status, 200,
        "the mirror list changed: the old ETag no longer matches"
    );
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("https://mirror-three.example/"), "{page}");
    assert!(!page.contains("mirror-two.example"), "{page}");
    server.stop().await;
}
