//! The reader pages of a real mirror in a real browser: the `qasid mirror` binary on a loopback
//! port, fed by the real `qasid keygen`, `bundle`, `publish` and `push` with the three seed
//! articles, then read by headless Chromium (every host name resolved to the mirror, so the
//! pages can load nothing from anywhere else).
//!
//! Checks what a reader sees (the DOM Chromium built, and a screenshot), that article images
//! come from the mirror's verified bundle byte for byte, and the security headers on pages.
//! Needs Debian's `chromium` (and `fonts-noto-core` for Urdu); without it the test fails.

use crate::chromium_support;
use crate::mirror_support;

use std::path::{Path, PathBuf};

use chromium_support::visible_text;
use mirror_support::{Process, WAIT};
use qasid::content_id::ContentId;
use qasid::keys::PublicKey;
use qasid::pages::{article_url, asset_url, bundle_url, CONTENT_SECURITY_POLICY};

/// The seed articles: folder (also the bundle name), title, date, language.
const SEEDS: [(&str, &str, &str, &str); 3] = [
    (
        "urdu-press-freedom",
        "انٹرنیٹ بندش میں بھی کمیونٹی ریڈیو کی آواز خاموش نہ ہوئی",
        "2026-11-18",
        "ur",
    ),
    (
        "mirror-network-launch",
        "A Volunteer Mirror Network Goes Live for Blocked Newsrooms",
        "2026-11-20",
        "en",
    ),
    (
        "long-read-shutdown-economics",
        "The Price of a Dark Screen and What Signed Mirrors Change",
        "2026-11-24",
        "en",
    ),
];
const IMAGE: &str = "images/mirror-map.png";

fn seed(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(path)
}

/// Runs `qasid <args>` (bounded), requires success, and returns its stdout parsed as JSON.
fn qasid_json(args: &[&str]) -> serde_json::Value {
    let out = assert_cmd::Command::cargo_bin("qasid")
        .unwrap()
        .args(args)
        .arg("--json")
        .timeout(WAIT)
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).expect("JSON output")
}

/// One response as received, redirects not followed.
struct Fetched {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Fetched {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
}

fn get(url: &str) -> Fetched {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(WAIT)
            .build()
            .unwrap();
        let response = client.get(url).send().await.unwrap();
        Fetched {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap().to_vec(),
        }
    })
}

/// The value of one metric line on the mirror's `/metrics`.
fn metric(base: &str, line_start: &str) -> u64 {
    let text = String::from_utf8(get(&format!("{base}/metrics")).body).unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
}

/// Every reader page carries the pages' CSP, `nosniff` and `no-referrer` as headers.
fn assert_page_headers(page: &Fetched, what: &str) {
    assert_eq!(page.status, 200, "{what}");
    assert!(
        page.header("content-type").starts_with("text/html"),
        "{what}"
    );
    assert_eq!(
        page.header("content-security-policy"),
        CONTENT_SECURITY_POLICY,
        "{what}"
    );
    assert_eq!(page.header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(page.header("referrer-policy"), "no-referrer", "{what}");
}

#[test]
fn chromium_reads_the_seed_articles_from_a_real_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let path = |p: &str| dir.path().join(p).to_str().unwrap().to_owned();

    // The publisher's side, with the real binary.
    let keygen = qasid_json(&["keygen", "--unencrypted", "--out", &path("keys")]);
    let key_id = keygen["publisher"]["key_id"].as_str().unwrap().to_owned();
    let key =
        PublicKey::from_file_text(&std::fs::read_to_string(path("keys/publisher.pub")).unwrap())
            .unwrap();
    assert_eq!(key.id().to_string(), key_id);
    let mut bundles = Vec::new();
    let mut sha256 = Vec::new();
    for (name, title, ..) in SEEDS {
        let out = path(&format!("{name}.zip"));
        let made = qasid_json(&[
            "bundle",
            seed(name).to_str().unwrap(),
            "--key",
            &path("keys/publisher.key"),
            "--out",
            &out,
        ]);
        assert_eq!(made["title"], title);
        let sha: ContentId = made["sha256"].as_str().unwrap().parse().unwrap();
        assert_eq!(sha, ContentId::of_bytes(&std::fs::read(&out).unwrap()));
        sha256.push(sha);
        bundles.push(out);
    }
    let (repo, secret) = (path("repo"), path("keys/publisher.key"));
    let mut publish = vec!["publish", "--repo", &repo, "--key", &secret];
    publish.extend(bundles.iter().map(String::as_str));
    qasid_json(&publish);

    // The mirror, trusting that publisher, and a push to it.
    let mirror = Process::start(&[
        "mirror",
        "--listen",
        "127.0.0.1:0",
        "--store",
        &path("store"),
        "--publisher",
        &path("keys/publisher.pub"),
    ]);
    let base = mirror.base.clone();
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let pushed = qasid_json(&["push", "--repo", &repo, "--to", &base]);
    assert_eq!(pushed["pushes"][0]["ok"], true, "{pushed}");

    // Home: every title, each linking to its article, with the language's direction.
    let home_response = get(&format!("{base}/"));
    assert_page_headers(&home_response, "home page");
    let home = chromium_support::dump_dom(addr, &format!("{base}/"));
    let home_text = visible_text(&home);
    for (name, title, _, language) in SEEDS {
        assert!(
            home_text.contains(title),
            "{title} not on the home page: {home}"
        );
        let dir = if language == "ur" { "rtl" } else { "ltr" };
        assert!(
            home.contains(&format!(
                "href=\"{}\" lang=\"{language}\" dir=\"{dir}\"",
                article_url(&key, name, 1)
            )),
            "no link to {name}: {home}"
        );
    }
    assert!(!home.contains("<script"), "{home}");

    // The Urdu article, through the latest-version redirect, as Chromium follows it.
    let (urdu, _, urdu_date, _) = SEEDS[0];
    let latest = format!("{base}/read/{}/{urdu}", key.hex());
    let redirect = get(&latest);
    assert_eq!(redirect.status, 302);
    let urdu_path = article_url(&key, urdu, 1);
    assert_eq!(redirect.header("location"), urdu_path);
    assert_page_headers(&get(&format!("{base}{urdu_path}")), "Urdu article");
    let dom = chromium_support::dump_dom(addr, &latest);
    assert!(dom.contains("<html lang=\"ur\" dir=\"rtl\">"), "{dom}");
    let text = visible_text(&dom);
    assert!(
        text.contains(&format!(
            "verified: signed by {key_id} on {urdu_date}, content hash {}",
            sha256[0]
        )),
        "{text}"
    );
    assert!(text.contains("ریڈیو کی ایک مدیرہ نے بتایا"), "{text}");
    assert!(
        dom.contains(&format!("href=\"{}\"", bundle_url(&key, &sha256[0]))),
        "no bundle download link: {dom}"
    );
    assert!(!dom.contains("<script"), "{dom}");
    let png = chromium_support::screenshot(addr, &latest, "mirror-urdu-article.png");
    assert_png_size(&png, 1000, 1400);

    // The English article and its image, from the verified bundle on the mirror.
    let (launch, _, launch_date, _) = SEEDS[1];
    let launch_url = format!("{base}{}", article_url(&key, launch, 1));
    assert_page_headers(&get(&launch_url), "English article");
    let image = asset_url(&key, launch, 1, IMAGE);
    let page_loads = "qasid_http_requests_total{route=\"page\",status=\"200\"}";
    let before = metric(&base, page_loads);
    let dom = chromium_support::dump_dom(addr, &launch_url);
    let loaded = metric(&base, page_loads) - before;
    assert!(dom.contains("<html lang=\"en\" dir=\"ltr\">"), "{dom}");
    assert!(
        dom.contains(&format!("<img src=\"{image}\" alt=\"Map of mirrors\">")),
        "{dom}"
    );
    assert!(
        visible_text(&dom).contains(&format!(
            "verified: signed by {key_id} on {launch_date}, content hash {}",
            sha256[1]
        )),
        "{dom}"
    );
    assert!(
        loaded >= 2,
        "Chromium loaded {loaded} pages/files, not the article and its image"
    );
    let served = get(&format!("{base}{image}"));
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), "image/png");
    assert_eq!(served.header("x-content-type-options"), "nosniff");
    assert_eq!(
        served.body,
        std::fs::read(seed(&format!("{launch}/{IMAGE}"))).unwrap(),
        "the image is not the seed's bytes"
    );

    assert!(mirror.terminate().success());
}

/// Checks a PNG's IHDR width and height.
fn assert_png_size(png: &[u8], width: u32, height: u32) {
    assert_eq!(&png[12..16], b"IHDR", "no IHDR chunk");
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), (width, height));
}
