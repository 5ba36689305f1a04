//! S3-compatible object storage on a real Garage cluster (three nodes on loopback, replication
//! factor 3, started by scripts/garage-cluster.sh through `garage_support`): the cluster itself,
//! readers reading a bucket through the S3 API and the website endpoint, `qasid mirror` front
//! ends serving from a bucket, and what happens when a node stops or an object is corrupt.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qasid::index::layout::PublisherLayout;
use qasid::keys::SecretKey;

use crate::garage_support::{self, Bucket, Cluster};
use crate::mirror_support::{self, make_bundle, Process};

/// Every wait here is bounded by this.
const WAIT: Duration = Duration::from_secs(30);

/// GET through a website endpoint, naming the bucket in `Host` (Garage finds the bucket by its
/// global alias): status and body.
async fn web_get(web_url: &str, host: &str, path: &str) -> (u16, Vec<u8>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = client
        .get(format!("{}{}", web_url.trim_end_matches('/'), path))
        .header(reqwest::header::HOST, host)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// `web_get` until it answers 200 with `want`, within [`WAIT`].
async fn web_eventually(web_url: &str, host: &str, path: &str, want: &[u8]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = web_get(web_url, host, path).await;
        if status == 200 && body == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{web_url}{path} (Host {host}) answered {status}, {} bytes",
            body.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn garage_cluster_replicates_to_every_node_and_keeps_writing_with_one_node_down() {
    let cluster = Cluster::private();
    let bucket = cluster.bucket("replicates");
    bucket.put("a/one.txt", b"first object");
    // Written through node 1, readable through each node's website endpoint.
    for n in 1..=3 {
        web_eventually(
            &cluster.web_url(n),
            &bucket.name,
            "/a/one.txt",
            b"first object",
        )
        .await;
    }
    // Replication factor 3 writes a quorum of 2: with node 3 down, writes and reads go on.
    cluster.node_stop(3);
    bucket.put("a/two.txt", b"second object");
    web_eventually(
        &cluster.web_url(2),
        &bucket.name,
        "/a/two.txt",
        b"second object",
    )
    .await;
    cluster.node_start(3);
    web_eventually(
        &cluster.web_url(3),
        &bucket.name,
        "/a/two.txt",
        b"second object",
    )
    .await;
    // The virtual-hosted name `<bucket><root domain>` names the same bucket.
    let host = format!("{}{}", bucket.name, cluster.web_root_domain());
    web_eventually(&cluster.web_url(1), &host, "/a/one.txt", b"first object").await;
    // The S3 API refuses anonymous reads: only the website endpoint serves without a key.
    let anonymous = reqwest::get(format!("{}/{}/a/one.txt", cluster.s3_url(1), bucket.name))
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 403);
}

#[tokio::test]
async fn garage_shared_cluster_gives_each_test_its_own_bucket() {
    let a = garage_support::bucket("own-a");
    let b = garage_support::bucket("own-b");
    assert_ne!(a.name, b.name);
    a.put("x", b"in a");
    let web = a.cluster.web_url(1);
    web_eventually(&web, &a.name, "/x", b"in a").await;
    assert_eq!(web_get(&web, &b.name, "/x").await.0, 404);
}

/// Every file under `repo`'s `qasid/` folder, as layout paths (`qasid/v1/...`).
fn layout_files(repo: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                let relative = path.strip_prefix(base).unwrap();
                out.push(relative.to_str().unwrap().to_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo.join("qasid"), repo, &mut out);
    out.sort();
    out
}

fn pub_file(dir: &Path, key: &SecretKey) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{}.pub", key.public().id()));
    std::fs::write(&path, key.public().to_file_text()).unwrap();
    path
}

/// `qasid mirror --store s3://bucket/prefix` (the real binary, on 127.0.0.1 port 0, its own
/// work folder under `dir`) trusting `key`, with the bucket's `AWS_*` variables.
fn front_end(bucket: &Bucket, prefix: &str, key: &SecretKey, dir: &Path) -> Process {
    let url = bucket.url(prefix);
    let work = dir.join("work");
    let key_file = pub_file(dir, key);
    Process::start_env(
        &[
            "mirror",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &url,
            "--work",
            work.to_str().unwrap(),
            "--publisher",
            key_file.to_str().unwrap(),
        ],
        &bucket.env,
    )
}

/// `qasid push --repo repo --to to` (a mirror URL or `s3://…`) with `env`; panics unless it
/// succeeds.
pub(crate) fn push(repo: &Path, to: &str, env: &[(String, String)]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qasid"))
        .args(["push", "--repo", repo.to_str().unwrap(), "--to", to])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "push to {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// GET with optional headers: status, headers, body.
async fn get(
    server: &Process,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = mirror_support::client().get(format!("{}{path}", server.base));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

/// A repo with one article of 16 KiB published by `key`, under `dir/repo`.
fn published_repo(dir: &Path, key: &SecretKey, name: &str, version: u64) -> PathBuf {
    let bundle = make_bundle(dir, key, name, version, 16 << 10);
    let repo = dir.join("repo");
    mirror_support::publish(&repo, key, &[&bundle.path]);
    repo
}

#[tokio::test]
async fn two_front_ends_over_one_bucket_serve_the_same_verified_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let key = mirror_support::key(1);
    let repo = published_repo(dir.path(), &key, "launch", 1);
    let bucket = garage_support::bucket("front-ends");
    push(&repo, &bucket.url("news"), &bucket.env);
    let a = front_end(&bucket, "news", &key, &dir.path().join("a"));
    let b = front_end(&bucket, "news", &key, &dir.path().join("b"));
    let files = layout_files(&repo);
    assert!(files.iter().any(|f| f.ends_with(".zip")), "{files:?}");
    for file in &files {
        let want = std::fs::read(repo.join(file)).unwrap();
        for server in [&a, &b] {
            let (status, _, body) = get(server, &format!("/{file}"), &[]).await;
            assert_eq!(status, 200, "{file}");
            assert!(body == want, "{file}: not the published bytes");
        }
    }
    // ETag and 304, Range, as for a folder store.
    let index = format!("/{}", PublisherLayout::new(key.public()).index());
    let (_, headers, body) = get(&a, &index, &[]).await;
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(get(&b, &index, &[("if-none-match", &etag)]).await.0, 304);
    let zip = files.iter().find(|f| f.ends_with(".zip")).unwrap();
    let (status, headers, part) = get(&b, &format!("/{zip}"), &[("range", "bytes=10-19")]).await;
    assert_eq!(status, 206);
    assert_eq!(
        headers["content-range"].to_str().unwrap().split('/').next(),
        Some("bytes 10-19")
    );
    assert_eq!(part, std::fs::read(repo.join(zip)).unwrap()[10..20]);
    // A push through front end A (into the bucket, through its store) is served by B within
    // the refresh bound (1 s).
    let next = make_bundle(dir.path(), &key, "second", 1, 16 << 10);
    let envelope = mirror_support::publish(&repo, &key, &[&next.path]);
    assert_ne!(envelope, body);
    push(&repo, &a.base, &[]);
    let started = Instant::now();
    for server in [&b, &a] {
        let deadline = Instant::now() + WAIT;
        while get(server, &index, &[]).await.2 != envelope {
            assert!(Instant::now() < deadline, "the new index never showed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let zip = format!(
        "/{}",
        PublisherLayout::new(key.public()).bundle(&next.sha256)
    );
    let (status, _, bytes) = get(&b, &zip, &[]).await;
    assert_eq!(status, 200);
    assert!(bytes == std::fs::read(&next.path).unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_corrupt_object_planted_in_the_bucket_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let key = mirror_support::key(1);
    let repo = published_repo(dir.path(), &key, "launch", 1);
    let bucket = garage_support::bucket("corrupt");
    bucket.put_tree(&repo.join("qasid"), "qasid");
    let a = front_end(&bucket, "", &key, &dir.path().join("a"));
    let files = layout_files(&repo);
    let index = PublisherLayout::new(key.public()).index();
    let served_index = get(&a, &format!("/{index}"), &[]).await.2;
    // Every content-addressed object swapped for other bytes: refused, never served.
    for file in files
        .iter()
        .filter(|f| f.ends_with(".zip") || f.contains("/pieces/"))
    {
        let mut bytes = std::fs::read(repo.join(file)).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        bucket.put(file, &bytes);
        let (status, _, body) = get(&a, &format!("/{file}"), &[]).await;
        assert_eq!(
            status,
            502,
            "{file} served: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // A reader reading the bucket directly (S3 API) refuses the corrupt bundle: exit 3.
    let reader = dir.path().join("reader");
    let refused = fetch(&reader, &key, "launch", &bucket.url(""), &bucket.env, &[]);
    assert_eq!(
        refused.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // An index signed by another key: a front end that never verified one serves none; one
    // that did keeps serving the verified one.
    let thief = mirror_support::key(9);
    let forged_repo = published_repo(&dir.path().join("thief"), &thief, "launch", 1);
    let forged =
        std::fs::read(forged_repo.join(PublisherLayout::new(thief.public()).index())).unwrap();
    bucket.put(&index, &forged);
    let fresh = front_end(&bucket, "", &key, &dir.path().join("fresh"));
    assert_eq!(get(&fresh, &format!("/{index}"), &[]).await.0, 502);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = get(&a, &format!("/{index}"), &[]).await;
    assert_eq!(status, 200);
    assert!(body == served_index, "the forged index was served");
    let metrics = get(&a, "/metrics", &[]).await.2;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("qasid_verification_failures_total{reason=\"bucket_object\"}"),
        "{metrics}"
    );
}

/// GET `path` on `server` until its body contains `want` (200), within [`WAIT`]: the body.
async fn page_eventually(server: &Process, path: &str, want: &str) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, _, body) = get(server, path, &[]).await;
        if status == 200 && String::from_utf8_lossy(&body).contains(want) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never showed {want:?}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn front_ends_over_one_bucket_show_the_same_pages_from_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let key = mirror_support::key(1);
    let repo = published_repo(dir.path(), &key, "launch", 1);
    let bucket = garage_support::bucket("pages");
    // Pushed to the bucket directly: neither front end ever saw it go through.
    push(&repo, &bucket.url("news"), &bucket.env);
    let a = front_end(&bucket, "news", &key, &dir.path().join("a"));
    let b = front_end(&bucket, "news", &key, &dir.path().join("b"));
    let article = qasid::pages::article_url(key.public(), "launch", 1);
    let home_a = page_eventually(&a, "/", "Story launch").await;
    let home_b = page_eventually(&b, "/", "Story launch").await;
    assert!(home_a == home_b, "the home pages differ");
    let page_a = page_eventually(&a, &article, "Body text.").await;
    let page_b = page_eventually(&b, &article, "Body text.").await;
    assert!(page_a == page_b, "the article pages differ");
    let (status, _, png) = get(&b, &format!("{article}files/images/map.png"), &[]).await;
    assert_eq!(status, 200);
    assert!(png.starts_with(b"\x89PNG"));
    // A push through front end A shows on B's home page (B re-reads the head each second).
    let next = make_bundle(dir.path(), &key, "second", 1, 16 << 10);
    mirror_support::publish(&repo, &key, &[&next.path]);
    push(&repo, &a.base, &[]);
    page_eventually(&b, "/", "Story second").await;
    let second = qasid::pages::article_url(key.public(), "second", 1);
    page_eventually(&b, &second, "Story second").await;
    // A bundle corrupted in the bucket after it was listed: an error page, never its text.
    let third = make_bundle(dir.path(), &key, "third", 1, 16 << 10);
    mirror_support::publish(&repo, &key, &[&third.path]);
    push(&repo, &bucket.url("news"), &bucket.env);
    let mut bytes = std::fs::read(&third.path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let zip = PublisherLayout::new(key.public()).bundle(&third.sha256);
    bucket.put(&format!("news/{zip}"), &bytes);
    page_eventually(&b, "/", "Story third").await;
    let third_url = qasid::pages::article_url(key.public(), "third", 1);
    let (status, headers, body) = get(&b, &third_url, &[]).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{body}");
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(body.contains("did not verify"), "{body}");
    assert!(!body.contains("Body text"), "{body}");
}

/// `qasid fetch NAME` from `mirror` trusting `key`, saving under `dir/out`, with `env`;
/// `wrap` runs it under another program (e.g. `unshare`) when not empty.
fn fetch(
    dir: &Path,
    key: &SecretKey,
    name: &str,
    mirror: &str,
    env: &[(String, String)],
    wrap: &[&str],
) -> std::process::Output {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let qasid = env!("CARGO_BIN_EXE_qasid");
    let (program, mut args): (&str, Vec<String>) = match wrap.split_first() {
        Some((first, rest)) => (
            first,
            rest.iter()
                .map(|s| s.to_string())
                .chain([qasid.to_owned()])
                .collect(),
        ),
        None => (qasid, Vec::new()),
    };
    args.extend(
        [
            "fetch",
            name,
            "--mirror",
            mirror,
            "--publisher",
            &key.public().to_base64(),
            "--state",
            dir.join("state").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--connect-timeout",
            "5s",
            "--timeout",
            "10s",
        ]
        .map(str::to_owned),
    );
    let mut cmd = std::process::Command::new(program);
    cmd.args(&args).envs(env.iter().map(|(k, v)| (k, v)));
    cmd.output().unwrap()
}

/// The one bundle saved under `dir/out`, which must be `want`.
fn saved_is(dir: &Path, want: &Path) {
    let saved: Vec<_> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert!(std::fs::read(&saved[0]).unwrap() == std::fs::read(want).unwrap());
}

#[test]
fn a_reader_reads_a_bucket_through_the_s3_api_and_the_website_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let key = mirror_support::key(1);
    let bundle = make_bundle(dir.path(), &key, "launch", 1, 16 << 10);
    let repo = dir.path().join("repo");
    mirror_support::publish(&repo, &key, &[&bundle.path]);
    let bucket = garage_support::bucket("reader");
    push(&repo, &bucket.url("site"), &bucket.env);
    let ok = |out: &std::process::Output, how: &str| {
        assert!(
            out.status.success(),
            "{how}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The S3 API, with the AWS_* credentials (Garage has no anonymous S3 reads).
    let s3 = dir.path().join("s3");
    ok(
        &fetch(&s3, &key, "launch", &bucket.url("site"), &bucket.env, &[]),
        "s3://",
    );
    saved_is(&s3, &bundle.path);
    // Without credentials (the same endpoint), the S3 API refuses: a runtime failure, not a
    // verification one.
    let no_keys: Vec<(String, String)> = bucket
        .env
        .iter()
        .filter(|(k, _)| k == "AWS_ENDPOINT_URL" || k == "AWS_REGION")
        .cloned()
        .collect();
    let anon = dir.path().join("anon");
    let anonymous = fetch(&anon, &key, "launch", &bucket.url("site"), &no_keys, &[]);
    assert_eq!(
        anonymous.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&anonymous.stderr)
    );
    // The website endpoint is a plain HTTP mirror: by a bucket alias that is the URL's host
    // (localhost), with the prefix as a path, like a path-style bucket URL.
    bucket.alias("localhost");
    let port = bucket
        .cluster
        .web_url(2)
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let web = dir.path().join("web");
    let url = format!("http://localhost:{port}/site/");
    ok(&fetch(&web, &key, "launch", &url, &[], &[]), &url);
    saved_is(&web, &bundle.path);
    // And virtual-hosted, `<bucket>.<root domain>`: resolved by an /etc/hosts of the reader's
    // own (a private mount namespace), since the system's resolver knows no such name.
    let host = format!("{}{}", bucket.name, bucket.cluster.web_root_domain());
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1 localhost\n127.0.0.1 {host}\n")).unwrap();
    let probe = std::process::Command::new("unshare")
        .args(["--mount", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipping the virtual-hosted form: no mount namespaces here (needs root)");
        return;
    }
    let vhost = dir.path().join("vhost");
    let url = format!("http://{host}:{port}/site/");
    let script = format!(
        "mount --bind {} /etc/hosts && exec \"$0\" \"$@\"",
        hosts.display()
    );
    ok(
        &fetch(
            &vhost,
            &key,
            "launch",
            &url,
            &[],
            &["unshare", "--mount", "sh", "-c", &script],
        ),
        &url,
    );
    saved_is(&vhost, &bundle.path);
}

#[test]
fn stopping_a_garage_node_during_a_sync_loses_nothing_and_readers_keep_reading() {
    let dir = tempfile::tempdir().unwrap();
    let key = mirror_support::key(1);
    let repo = dir.path().join("repo");
    let bundles: Vec<_> = (0..8)
        .map(|i| make_bundle(dir.path(), &key, &format!("story-{i}"), 1, 64 << 10))
        .collect();
    let paths: Vec<&Path> = bundles.iter().map(|b| b.path.as_path()).collect();
    mirror_support::publish(&repo, &key, &paths);
    // The upstream: the published repo served by a folder-store mirror.
    let key_file = pub_file(&dir.path().join("keys"), &key);
    let upstream = Process::start(&[
        "mirror",
        "--listen",
        "127.0.0.1:0",
        "--store",
        repo.to_str().unwrap(),
        "--publisher",
        key_file.to_str().unwrap(),
    ]);
    let cluster = Cluster::private();
    let bucket = cluster.bucket("node-down");
    let sync = std::process::Command::new(env!("CARGO_BIN_EXE_qasid"))
        .args(["sync", "--once", "--store", &bucket.url("m"), "--work"])
        .arg(dir.path().join("work"))
        .args([
            "--publisher",
            key_file.to_str().unwrap(),
            "--upstream",
            &upstream.base,
        ])
        .envs(bucket.env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Node 3 goes down while the sync runs: replication factor 3 writes a quorum of two.
    cluster.node_stop(3);
    let out = sync.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sync with a node down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Readers keep reading, through the S3 API (node 1) and a website endpoint (node 2).
    let s3 = dir.path().join("s3");
    let got = fetch(&s3, &key, "story-7", &bucket.url("m"), &bucket.env, &[]);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    saved_is(&s3, &bundles[7].path);
    cluster.node_start(3);
    // Node 3, back, serves what was written while it was down (its website endpoint, by Host).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let path = format!(
        "/m/{}",
        PublisherLayout::new(key.public()).bundle(&bundles[0].sha256)
    );
    rt.block_on(web_eventually(
        &cluster.web_url(3),
        &bucket.name,
        &path,
        &std::fs::read(&bundles[0].path).unwrap(),
    ));
}
