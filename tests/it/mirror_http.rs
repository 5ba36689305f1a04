//! The mirror's read side over real HTTP: headers, conditional and range requests,
//! compression, path validation, pages, metrics.

use crate::mirror_support;

use mirror_support::*;
use qasid::index::layout::PublisherLayout;
use reqwest::header;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_get_has_length_type_etag_and_immutable_caching() {
    let p = published(16 << 10).await;
    let path = url_path(&p.key, |l| l.bundle(&p.bundle.sha256));
    let response = client().get(p.server.url(&path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let h = response.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "application/zip");
    assert_eq!(
        h[header::CONTENT_LENGTH],
        p.bundle.size.to_string().as_str()
    );
    assert_eq!(h[header::ETAG], format!("\"{}\"", p.bundle.sha256).as_str());
    assert_eq!(
        h[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(h[header::ACCEPT_RANGES], "bytes");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(h.get(header::CONTENT_ENCODING).is_none());
    let body = response.bytes().await.unwrap();
    assert_eq!(body, std::fs::read(&p.bundle.path).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bundle_streams_with_ranges() {
    // Above the read-whole threshold, so the streaming path is used.
    let p = published(600 << 10).await;
    let path = url_path(&p.key, |l| l.bundle(&p.bundle.sha256));
    let bytes = std::fs::read(&p.bundle.path).unwrap();
    let full = client().get(p.server.url(&path)).send().await.unwrap();
    assert_eq!(full.bytes().await.unwrap(), bytes);
    let response = client()
        .get(p.server.url(&path))
        .header(header::RANGE, "bytes=300000-")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()[header::CONTENT_RANGE],
        format!("bytes 300000-{}/{}", bytes.len() - 1, bytes.len()).as_str()
    );
    assert_eq!(response.bytes().await.unwrap(), &bytes[300000..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_range_and_head_requests() {
    let p = published(16 << 10).await;
    let path = url_path(&p.key, |l| l.bundle(&p.bundle.sha256));
    let url = p.server.url(&path);
    let etag = format!("\"{}\"", p.bundle.sha256);
    let bytes = std::fs::read(&p.bundle.path).unwrap();
    let c = client();

    let not_modified = c
        .get(&url)
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    assert_eq!(not_modified.headers()[header::ETAG], etag.as_str());
    assert!(not_modified.bytes().await.unwrap().is_empty());

    let other = c
        .get(&url)
        .header(header::IF_NONE_MATCH, "\"0000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);

    let partial = c
        .get(&url)
        .header(header::RANGE, "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(partial.status(), 206);
    assert_eq!(
        partial.headers()[header::CONTENT_RANGE],
        format!("bytes 10-19/{}", bytes.len()).as_str()
    );
    assert_eq!(partial.headers()[header::CONTENT_LENGTH], "10");
    assert_eq!(partial.bytes().await.unwrap(), &bytes[10..20]);

    let suffix = c
        .get(&url)
        .header(header::RANGE, "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(suffix.status(), 206);
    assert_eq!(suffix.bytes().await.unwrap(), &bytes[bytes.len() - 5..]);

    for bad in [
        format!("bytes={}-", bytes.len()),
        "bytes=9-2".into(),
        "bytes=a-b".into(),
    ] {
        let r = c
            .get(&url)
            .header(header::RANGE, &bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 416, "{bad}");
        assert_eq!(
            r.headers()[header::CONTENT_RANGE],
            format!("bytes */{}", bytes.len()).as_str()
        );
    }

    // If-Range with another validator: the whole object, not a fragment of a different one.
    let stale = c
        .get(&url)
        .header(header::RANGE, "bytes=10-19")
        .header(header::IF_RANGE, "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);

    let head = c.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()[header::CONTENT_LENGTH],
        bytes.len().to_string().as_str()
    );
    assert_eq!(head.headers()[header::ETAG], etag.as_str());
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_is_json_short_cached_with_its_hash_as_etag_and_gzipped() {
    let p = published(1024).await;
    let path = url_path(&p.key, PublisherLayout::index);
    let bytes = std::fs::read(p.repo.join(&path[1..])).unwrap();
    let etag = format!("\"{}\"", qasid::content_id::ContentId::of_bytes(&bytes));
    let c = client();
    let plain = c.get(p.server.url(&path)).send().await.unwrap();
    assert_eq!(plain.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(plain.headers()[header::CACHE_CONTROL], "public, max-age=60");
    assert_eq!(plain.headers()[header::ETAG], etag.as_str());
    assert_eq!(plain.bytes().await.unwrap(), bytes);

    let gz = c
        .get(p.server.url(&path))
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()[header::CONTENT_ENCODING], "gzip");
    assert_eq!(gz.headers()[header::ETAG], format!("W/{etag}").as_str());
    let compressed = gz.bytes().await.unwrap();
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&compressed[..]),
        &mut decoded,
    )
    .unwrap();
    assert_eq!(decoded, bytes);

    // The weak tag still validates.
    let cached = c
        .get(p.server.url(&path))
        .header(header::IF_NONE_MATCH, format!("W/{etag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);

    // Zips are never compressed.
    let zip = c
        .get(
            p.server
                .url(&url_path(&p.key, |l| l.bundle(&p.bundle.sha256))),
        )
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert!(zip.headers().get(header::CONTENT_ENCODING).is_none());

    // Key and signature files are text.
    let key = c
        .get(
            p.server
                .url(&url_path(&p.key, PublisherLayout::publisher_pub)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), 200);
    assert!(key.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(key.text().await.unwrap(), p.key.public().to_file_text());
    let sig = c
        .get(
            p.server
                .url(&url_path(&p.key, |l| l.minisig(&p.bundle.sha256))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(sig.status(), 200);
    assert!(sig.text().await.unwrap().starts_with("untrusted comment:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_validated_layout_paths_map_to_files() {
    let p = published(1024).await;
    let hex = p.key.public().hex();
    let sha = p.bundle.sha256;
    let addr = p.server.addr;
    // Something sensitive-looking inside the store but outside the layout.
    std::fs::write(p.server.store_dir.join(".tmp").join("secret"), b"x").unwrap();
    let good = format!("/qasid/v1/publishers/{hex}/bundles/{sha}.zip");
    assert_eq!(raw_get_status(addr, &good), 200);
    let long = "a".repeat(10_000);
    let attacks = [
        format!("/qasid/v1/publishers/{hex}/../../../.tmp/secret"),
        format!("/qasid/v1/publishers/{hex}/%2e%2e/%2e%2e/%2e%2e/.tmp/secret"),
        format!("/qasid/v1/publishers/{hex}/bundles%2f{sha}.zip"),
        format!("/qasid/v1/publishers/{hex}/bundles/..%2f..%2fpublisher.pub"),
        format!("/qasid/v1/publishers/{hex}\\bundles\\{sha}.zip"),
        format!("/qasid/v1/publishers/{hex}/bundles/{sha}.zip%00"),
        format!(
            "/qasid/v1/publishers/{hex}/bundles/{}.zip",
            sha.to_hex().to_uppercase()
        ),
        format!("/qasid/v1/publishers/{hex}/bundles/{sha}.zip/"),
        format!("/qasid/v1/publishers/{hex}//bundles/{sha}.zip"),
        format!("/qasid/v1/publishers/{hex}/bundles/{long}.zip"),
        format!("/qasid/v1/{long}"),
        "/qasid/v1/publishers/../../etc/passwd".to_owned(),
        "/.tmp/secret".to_owned(),
        "/.state/".to_owned(),
        "/qasid/v1/publishers/".to_owned(),
        format!("/qasid/v1/publishers/{hex}/"),
        format!("/read/{hex}/..%2f..%2f.tmp/1/"),
        format!("/read/{hex}/launch/1/files/..%2f..%2f..%2f.tmp%2fsecret"),
        format!("/read/{hex}/launch/1/files/%2e%2e/%2e%2e/secret"),
    ];
    for path in &attacks {
        assert_eq!(raw_get_status(addr, path), 404, "{path}");
    }
    // A NUL byte in the request line is not even HTTP.
    let nul = raw_request(
        addr,
        format!("GET /qasid/v1/publishers/{hex}/index.json\0 HTTP/1.1\r\nHost: t\r\n\r\n")
            .as_bytes(),
    );
    assert!(nul.starts_with("HTTP/1.1 400"), "{nul:?}");
    // An untrusted publisher's folder is not served even if it exists on disk.
    let stranger = key(9);
    let dir = p
        .server
        .store_dir
        .join(PublisherLayout::new(stranger.public()).dir());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.json"), b"{}").unwrap();
    assert_eq!(
        raw_get_status(
            addr,
            &format!(
                "/{}/index.json",
                PublisherLayout::new(stranger.public()).dir()
            )
        ),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_list_and_show_verified_articles_with_security_headers() {
    let p = published(2048).await;
    let c = client();
    let home = c.get(p.server.url("/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    let h = home.headers().clone();
    assert_eq!(
        h[header::CONTENT_SECURITY_POLICY],
        qasid::pages::CONTENT_SECURITY_POLICY
    );
    assert!(h[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let html = home.text().await.unwrap();
    assert!(html.contains("Story launch"), "{html}");

    let hex = p.key.public().hex();
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let latest = no_redirect
        .get(p.server.url(&format!("/read/{hex}/launch")))
        .send()
        .await
        .unwrap();
    assert_eq!(latest.status(), 302);
    assert_eq!(
        latest.headers()[header::LOCATION],
        format!("/read/{hex}/launch/1/").as_str()
    );

    let article = c
        .get(p.server.url(&format!("/read/{hex}/launch/1/")))
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(article.status(), 200);
    assert_eq!(article.headers()[header::CONTENT_ENCODING], "gzip");
    assert_eq!(
        article.headers()[header::CONTENT_SECURITY_POLICY],
        qasid::pages::CONTENT_SECURITY_POLICY
    );
    let mut html = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&article.bytes().await.unwrap()[..]),
        &mut html,
    )
    .unwrap();
    assert!(html.contains("verified:"), "{html}");
    assert!(html.contains(&p.bundle.sha256.to_hex()));
    assert!(
        !html.contains("<script>alert"),
        "article script must be sanitised"
    );

    let image = c
        .get(
            p.server
                .url(&format!("/read/{hex}/launch/1/files/images/map.png")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()[header::CONTENT_TYPE], "image/png");
    assert_eq!(
        image.headers()[header::CONTENT_SECURITY_POLICY],
        "default-src 'none'; sandbox"
    );
    assert!(image.bytes().await.unwrap().starts_with(b"\x89PNG"));

    for missing in [
        format!("/read/{hex}/launch/1/files/images/other.png"),
        format!("/read/{hex}/launch/2/"),
        format!("/read/{hex}/nothing/1/"),
    ] {
        let r = c.get(p.server.url(&missing)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{missing}");
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics_counters_move() {
    let p = published(1024).await;
    let c = client();
    let health = c.get(p.server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");
    let path = url_path(&p.key, |l| l.bundle(&p.bundle.sha256));
    for _ in 0..3 {
        c.get(p.server.url(&path))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    c.get(p.server.url("/nothing")).send().await.unwrap();
    let bad = make_bundle(p.dir.path(), &key(2), "other", 1, 10);
    let (status, _) = put(
        &p.server,
        &url_path(&p.key, |l| l.bundle(&bad.sha256)),
        std::fs::read(&bad.path).unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    let text = c
        .get(p.server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |line_start: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
    };
    assert!(value("qasid_http_requests_total{route=\"object\",status=\"200\"}") >= 3);
    assert_eq!(
        value("qasid_http_requests_total{route=\"other\",status=\"404\"}"),
        1
    );
    assert!(value("qasid_http_response_bytes_total") >= 3 * p.bundle.size);
    assert_eq!(value("qasid_store_objects{kind=\"bundle\"}"), 1);
    assert_eq!(value("qasid_store_objects{kind=\"index\"}"), 1);
    assert_eq!(
        value("qasid_verification_failures_total{reason=\"bundle\"}"),
        1
    );
    assert_eq!(
        value("qasid_push_total{kind=\"bundle\",outcome=\"refused\"}"),
        1
    );
    assert!(value("qasid_push_total{kind=\"bundle\",outcome=\"accepted\"}") >= 1);
    assert!(text.contains("# TYPE qasid_sync_upstream_state gauge"));
}
