//! The adversarial corpus (issue 8): every malicious input the generator in
//! `tests/it/adversarial/generator.rs` makes is run against every entry point it applies to —
//! `verify` (library and binary), the push endpoint of a real mirror, sync from a hostile
//! upstream, and the reader against a hostile mirror — and must be refused with its specific
//! reason, leave the store or output folder unchanged and leave the daemon serving. Each entry
//! point first runs a control (the unmodified input is accepted), so a check that could never
//! fail would show. Servers are shared across the cases of a test; failures are collected and
//! reported together, each with its case name. `tests/it/adversarial/README.md` lists the cases.

use crate::mirror_support;

mod generator;

mod hostile;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use generator::{copy_tree, Case, Class, Paths, PushRequest, Who, World};
use hostile::{HostileMirror, Reply, Scene};
use qasid::bundle;
use qasid::config::{Keep, UpstreamConfig};
use qasid::content_id::ContentId;
use qasid::limits::{BundleLimits, IndexLimits};
use qasid::mirror::Metrics;
use qasid::reader::{ArticleRequest, MirrorLocation, MirrorSpec, Origin, Reader, ReaderOptions};
use qasid::store::Store;
use qasid::sync::{error_chain, Backoff, SyncOptions, Syncer, Timeouts};
use qasid::ErrorClass;
use tokio_util::sync::CancellationToken;

/// Every wait on a single case is bounded by this.
const CASE_LIMIT: Duration = Duration::from_secs(40);

/// Panics listing every failure; each line starts with its case's name.
fn report(entry_point: &str, ran: usize, failures: Vec<String>) {
    let mut failed: Vec<&str> = failures
        .iter()
        .map(|f| f.split_once(':').map_or(f.as_str(), |(name, _)| name))
        .collect();
    failed.dedup();
    assert!(
        failures.is_empty(),
        "{entry_point}: {} of {ran} cases failed:\n  {}",
        failed.len(),
        failures.join("\n  ")
    );
    assert!(ran > 0, "{entry_point}: no case ran");
}

/// Every file under `dir` (relative path → sha256), skipping paths for which `skip` holds.
fn tree(dir: &Path, skip: &dyn Fn(&Path) -> bool) -> BTreeMap<PathBuf, ContentId> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(dir).unwrap().to_owned();
            if skip(&relative) {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.insert(relative, ContentId::of_bytes(&bytes));
            }
        }
    }
    out
}

/// The part of a store that is served: everything outside its private dot folders.
fn served(store: &Path) -> BTreeMap<PathBuf, ContentId> {
    tree(store, &|p| p.to_string_lossy().starts_with('.'))
}

/// What differs between two trees, for a failure message.
fn diff(before: &BTreeMap<PathBuf, ContentId>, after: &BTreeMap<PathBuf, ContentId>) -> String {
    let mut lines = Vec::new();
    for (path, id) in after {
        match before.get(path) {
            None => lines.push(format!("+{}", path.display())),
            Some(old) if old != id => lines.push(format!("~{}", path.display())),
            _ => {}
        }
    }
    for path in before.keys().filter(|p| !after.contains_key(*p)) {
        lines.push(format!("-{}", path.display()));
    }
    lines.join(" ")
}

/// Temp files left in a store's `.tmp`.
fn temp_files(store: &Path) -> Vec<PathBuf> {
    tree(&store.join(".tmp"), &|_| false).into_keys().collect()
}

/// Scenes name "the other host" by a placeholder until the test knows its URL.
fn resolve(scene: &Scene, other: &str) -> Scene {
    let mut scene = scene.clone();
    for reply in scene.replies.values_mut() {
        if let Reply::Redirect(to) = reply {
            *to = to.replace("{OTHER_HOST}", other);
        }
    }
    scene
}

fn qasid_binary() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_qasid"));
    cmd.env("NO_COLOR", "1").env_remove("RUST_LOG");
    cmd
}

// ---- the corpus itself ----

#[test]
fn the_corpus_covers_every_attack_class_and_its_table_is_checked_in() {
    let world = World::build();
    let cases = world.cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are not unique");
    for class in Class::ALL {
        assert!(
            cases.iter().any(|c| c.class == class),
            "no case of class {}",
            class.label()
        );
    }
    for case in &cases {
        let applies = case.verify.is_some()
            || case.push.is_some()
            || case
                .net
                .as_ref()
                .is_some_and(|n| n.sync.is_some() || n.reader.is_some());
        assert!(applies, "{}: runs against no entry point", case.name);
    }
    let table = readme_table(&cases);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/adversarial/README.md");
    let readme = std::fs::read_to_string(&path).unwrap_or_default();
    let (start, end) = ("<!-- cases:start -->\n", "<!-- cases:end -->");
    let (Some(a), Some(b)) = (readme.find(start), readme.find(end)) else {
        panic!("{} lacks the case table markers", path.display());
    };
    let current = &readme[a + start.len()..b];
    if current != table {
        if std::env::var_os("QASID_BLESS").is_some() {
            let updated = format!("{}{table}{}", &readme[..a + start.len()], &readme[b..]);
            std::fs::write(&path, updated).unwrap();
        } else {
            panic!(
                "tests/it/adversarial/README.md is out of date with the generator; rerun with \
                 QASID_BLESS=1 to rewrite its table"
            );
        }
    }
}

fn readme_table(cases: &[Case]) -> String {
    let cell = |s: Option<String>| {
        s.map(|s| format!("`{}`", s.replace('|', "\\|").replace('`', "'")))
            .unwrap_or_else(|| "—".to_owned())
    };
    let mut out = String::from(
        "| # | case | class | input | verify | push | sync | reader |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for (i, c) in cases.iter().enumerate() {
        let verify = c.verify.as_ref().map(|v| v.reason.clone());
        let push = c.push.as_ref().map(|p| match p.status {
            0 => "connection closed".to_owned(),
            s if p.reason.is_empty() => format!("{s}"),
            s => format!("{s} {}", p.reason),
        });
        let net = c.net.as_ref();
        let sync = net.and_then(|n| n.sync.as_ref()).map(|s| s.reason.clone());
        let reader = net.and_then(|n| n.reader.as_ref()).map(|r| {
            let fate = r
                .fate
                .map(|f| format!("{}: ", f.as_str()))
                .unwrap_or_default();
            let exit = match r.error {
                Some(ErrorClass::Verification) => " (exit 3)",
                Some(ErrorClass::Runtime) => " (exit 1)",
                Some(ErrorClass::Usage) => " (exit 2)",
                None if r.warning => " (warning, exit 0)",
                None => "",
            };
            format!("{fate}{}{exit}", r.reason)
        });
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} | {} | {} |\n",
            i + 1,
            c.name,
            c.class.label(),
            c.attack.replace('|', "\\|"),
            cell(verify),
            cell(push),
            cell(sync),
            cell(reader),
        ));
    }
    out
}

// ---- verify ----

#[test]
fn verify_refuses_every_hostile_bundle_in_the_library_and_the_binary() {
    let world = World::build();
    let limits = BundleLimits::default();
    let dir = world.dir.path().join("verify");
    std::fs::create_dir_all(&dir).unwrap();
    let control = dir.join("control.zip");
    std::fs::write(&control, &world.insider_control).unwrap();
    bundle::verify_file(&control, world.insider.public(), &limits)
        .expect("control: the unmodified raw bundle verifies");
    let out = qasid_binary()
        .arg("verify")
        .arg(&control)
        .args(["--publisher", &world.insider.public().to_base64()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "control: qasid verify exits 0");

    let mut failures = Vec::new();
    let mut ran = 0;
    for case in world.cases() {
        let Some(v) = &case.verify else { continue };
        ran += 1;
        let name = &case.name;
        let key = world.key(v.publisher).public();
        let path = dir.join(format!("{name}.zip"));
        std::fs::write(&path, &v.bytes).unwrap();
        match bundle::verify_reader(&v.bytes[..], key, &limits) {
            Ok(_) => failures.push(format!("{name}: verify accepted it")),
            Err(e) if !e.to_string().contains(&v.reason) => failures.push(format!(
                "{name}: verify said {e:?} ({e}), expected {:?}",
                v.reason
            )),
            Err(e) if e.class() != ErrorClass::Verification => {
                failures.push(format!("{name}: {e} is not a verification failure"))
            }
            Err(_) => {}
        }
        // Extraction refuses it the same way and leaves nothing behind.
        let parent = dir.join(format!("{name}-out"));
        std::fs::create_dir_all(&parent).unwrap();
        let extracted = bundle::extract_verified(&path, key, &limits, &parent.join("article"));
        if !matches!(&extracted, Err(e) if e.to_string().contains(&v.reason)) {
            failures.push(format!("{name}: extract_verified gave {extracted:?}"));
        }
        if std::fs::read_dir(&parent).unwrap().count() != 0 {
            failures.push(format!("{name}: a refused extraction left files behind"));
        }
        let out = qasid_binary()
            .arg("verify")
            .arg(&path)
            .args(["--publisher", &key.to_base64()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(3)
            || !stderr.contains("verification failed")
            || !stderr.contains(&v.reason)
        {
            failures.push(format!(
                "{name}: qasid verify exited {:?} with {stderr:?}, expected 3 and {:?}",
                out.status.code(),
                v.reason
            ));
        }
    }
    report("verify", ran, failures);
}

// ---- the push endpoint ----

/// Sends one push request; returns the status (0: closed without an answer) and the body.
async fn send_push(server: &mirror_support::Server, request: &PushRequest) -> (u16, String) {
    match request {
        PushRequest::Put {
            path,
            body,
            headers,
        } => {
            let mut put = mirror_support::client()
                .put(server.url(path))
                .body(body.clone());
            for (name, value) in headers {
                put = put.header(*name, value);
            }
            let response = put.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        PushRequest::Raw(bytes) => {
            let (addr, bytes) = (server.addr, bytes.clone());
            tokio::task::spawn_blocking(move || {
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(CASE_LIMIT)).unwrap();
                let _ = stream.write_all(&bytes);
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let mut out = Vec::new();
                let _ = stream.read_to_end(&mut out);
                parse_raw_response(&out)
            })
            .await
            .unwrap()
        }
        PushRequest::SlowHeaders => {
            let addr = server.addr;
            tokio::task::spawn_blocking(move || {
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                let _ = stream.write_all(b"PUT /qasid/v1/ HTTP/1.1\r\nHost: m\r\nX-Slow: ");
                let started = Instant::now();
                let mut out = Vec::new();
                // One byte a second until the server gives up on us (or we do).
                while started.elapsed() < Duration::from_secs(10) {
                    let mut buf = [0u8; 1024];
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => out.extend_from_slice(&buf[..n]),
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                    if started.elapsed().as_millis() % 1000 < 60 && stream.write_all(b"a").is_err()
                    {
                        break;
                    }
                }
                let (status, body) = parse_raw_response(&out);
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "the mirror held a slow-loris client for {:?}",
                    started.elapsed()
                );
                (status, body)
            })
            .await
            .unwrap()
        }
    }
}

fn parse_raw_response(out: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_push_endpoint_refuses_every_case_and_keeps_serving() {
    let world = World::build();
    let store_dir = world.dir.path().join("push-store");
    let server =
        mirror_support::Server::start_with(&store_dir, &[&world.publisher, &world.insider], |c| {
            c.mirror.header_timeout = Duration::from_secs(1)
        })
        .await;
    mirror_support::push_repo(&server, &world.seq2, &world.publisher).await;
    let alpha = Paths::of(world.publisher.public()).bundle(&world.alpha.sha256);
    // Equivocation evidence and the record of recent refusals (`qasid status`) are kept on
    // purpose, both in the private state folder; everything else must stay as it was.
    let store = |dir: &Path| {
        tree(dir, &|p| {
            p.starts_with(".state/evidence") || p == Path::new(".state/refusals.json")
        })
    };

    let mut failures = Vec::new();
    let mut ran = 0;
    for case in world.cases() {
        let Some(push) = &case.push else { continue };
        ran += 1;
        let name = &case.name;
        let before = store(&store_dir);
        let (status, body) = send_push(&server, &push.request).await;
        let reason = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_owned))
            .unwrap_or(body.clone());
        if status != push.status || !reason.contains(&push.reason) {
            failures.push(format!(
                "{name}: answered {status} {body:?}, expected {} with {:?}",
                push.status, push.reason
            ));
        }
        let after = store(&store_dir);
        if after != before {
            failures.push(format!(
                "{name}: the store changed: {}",
                diff(&before, &after)
            ));
        }
        if !temp_files(&store_dir).is_empty() {
            failures.push(format!(
                "{name}: temp files left: {:?}",
                temp_files(&store_dir)
            ));
        }
        // Still serving: health, and a good object byte for byte.
        let health = mirror_support::client()
            .get(server.url("/healthz"))
            .send()
            .await;
        if !matches!(&health, Ok(r) if r.status() == 200) {
            failures.push(format!("{name}: /healthz after the case: {health:?}"));
        }
        let good = match mirror_support::client()
            .get(server.url(&alpha))
            .send()
            .await
        {
            Ok(r) => r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        if good != world.alpha.bytes {
            failures.push(format!("{name}: a good bundle no longer downloads intact"));
        }
    }
    report("push", ran, failures);

    // The refusals were recorded for `qasid status`, in the state folder that is never served.
    let refusals = store_dir.join(".state/refusals.json");
    assert!(refusals.is_file(), "refusals were recorded");
    for target in ["/.state/refusals.json", "/%2estate/refusals.json"] {
        let status = mirror_support::client()
            .get(server.url(target))
            .send()
            .await
            .map(|r| r.status().as_u16());
        assert!(matches!(status, Ok(404)), "{target}: {status:?}");
    }

    // Control: the unmodified raw bundle is accepted, and the store check sees the change.
    let before = store(&store_dir);
    let control =
        Paths::of(world.insider.public()).bundle(&ContentId::of_bytes(&world.insider_control));
    let (status, body) =
        mirror_support::put(&server, &control, world.insider_control.clone()).await;
    assert_eq!(status, 201, "control push: {body}");
    assert_ne!(
        store(&store_dir),
        before,
        "control push: the store check saw no change"
    );
    server.stop().await;
}

// ---- sync ----

fn sync_options() -> SyncOptions {
    SyncOptions {
        interval: Duration::from_secs(3600),
        use_index_mirrors: false,
        timeouts: Timeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_secs(1),
        },
        max_downloads: 4,
        prune_grace: Duration::ZERO,
        backoff: Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(400),
        },
    }
}

fn upstream(url: &str) -> UpstreamConfig {
    UpstreamConfig {
        url: reqwest::Url::parse(url).unwrap(),
        proxy: None,
    }
}

/// A store of both trusted publishers, as a mirror runs it.
struct SyncStore {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
}

impl SyncStore {
    fn open(dir: &Path) -> SyncStore {
        SyncStore {
            store: Arc::new(Store::open(dir, Keep::All, IndexLimits::default()).unwrap()),
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// One round from `url`, trusting both publishers.
    async fn round(&self, world: &World, url: &str) -> qasid::sync::RoundReport {
        let syncer = Syncer::new(
            self.store.clone(),
            &[
                world.publisher.public().clone(),
                world.insider.public().clone(),
            ],
            &[upstream(url)],
            sync_options(),
            self.metrics.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("the syncer does not open: {}", error_chain(&e)));
        tokio::time::timeout(CASE_LIMIT, syncer.run_once(&CancellationToken::new()))
            .await
            .expect("a round ends in time")
    }

    fn sequence(&self, key: &qasid::keys::SecretKey) -> Option<u64> {
        self.store
            .index(key.public())
            .unwrap()
            .map(|i| i.head().sequence())
    }
}

/// Runs one case against a copy of the baseline store: the hostile round must fail with the
/// reason and change nothing served, the other host must not be contacted, and a round from
/// the good upstream afterwards must bring the publisher to sequence 3.
async fn sync_case(
    world: &World,
    case: &Case,
    baseline: &Path,
    hostile: &HostileMirror,
    good: &HostileMirror,
) -> Vec<String> {
    let name = &case.name;
    let net = case.net.as_ref().unwrap();
    let expect = net.sync.as_ref().unwrap();
    let mut failures = Vec::new();
    let dir = world.dir.path().join(format!("sync-{name}"));
    copy_tree(baseline, &dir);
    let s = SyncStore::open(&dir);
    hostile.set(resolve(&net.scene, &good.url));
    good.take_requests();
    let before = served(&dir);
    let report = s.round(world, &hostile.url).await;
    let errors: Vec<(String, ErrorClass)> = report
        .upstreams
        .iter()
        .flat_map(|u| &u.errors)
        .chain(report.publishers.iter().flat_map(|p| &p.errors))
        .map(|e| (error_chain(e), e.class()))
        .collect();
    if !errors
        .iter()
        .any(|(text, class)| text.contains(&expect.reason) && *class == expect.class)
    {
        failures.push(format!(
            "{name}: no {:?} error holding {:?}; the round reported {errors:?}",
            expect.class, expect.reason
        ));
    }
    let after = served(&dir);
    if after != before {
        failures.push(format!(
            "{name}: the served store changed: {}",
            diff(&before, &after)
        ));
    }
    if !temp_files(&dir).is_empty() {
        failures.push(format!("{name}: temp files left: {:?}", temp_files(&dir)));
    }
    let contacted = good.take_requests();
    if !contacted.is_empty() {
        failures.push(format!(
            "{name}: the other host was contacted: {contacted:?}"
        ));
    }
    // The next good upstream still works.
    let report = s.round(world, &good.url).await;
    let good_errors: Vec<String> = report
        .upstreams
        .iter()
        .flat_map(|u| &u.errors)
        .map(|e| error_chain(e))
        .collect();
    if !good_errors.is_empty() || s.sequence(&world.publisher) != Some(3) {
        failures.push(format!(
            "{name}: the good upstream afterwards: sequence {:?}, errors {good_errors:?}",
            s.sequence(&world.publisher)
        ));
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_refuses_every_case_and_the_next_good_upstream_still_works() {
    let world = Arc::new(World::build());
    let baseline = world.dir.path().join("sync-baseline");
    let hostile = HostileMirror::start(Scene::files(&world.seq2)).await;
    let good = HostileMirror::start(Scene::files(&world.good)).await;
    {
        let s = SyncStore::open(&baseline);
        let report = s.round(&world, &hostile.url).await;
        assert_eq!(report.failure(), None, "baseline sync: {report:#?}");
        assert_eq!(s.sequence(&world.publisher), Some(2));
    }
    let cases: Vec<Case> = world
        .cases()
        .into_iter()
        .filter(|c| c.net.as_ref().is_some_and(|n| n.sync.is_some()))
        .collect();

    // Control: an index listing the unmodified raw bundle is installed (so the checks below
    // can see a change).
    {
        let dir = world.dir.path().join("sync-control");
        copy_tree(&baseline, &dir);
        let s = SyncStore::open(&dir);
        let root = world.insider_listing("control", "hostile", 1, &world.insider_control);
        hostile.set(Scene::files(&root));
        let before = served(&dir);
        let report = s.round(&world, &hostile.url).await;
        assert_eq!(report.failure(), None, "control sync: {report:#?}");
        assert_eq!(s.sequence(&world.insider), Some(1), "control sync");
        assert_ne!(
            served(&dir),
            before,
            "control sync: the store check saw no change"
        );
    }

    // Slow-loris cases wait out the sync's deadlines: they run alongside the others, each with
    // servers of its own.
    let (slow_cases, cases): (Vec<Case>, Vec<Case>) =
        cases.into_iter().partition(|c| c.class == Class::SlowLoris);
    let mut slow = tokio::task::JoinSet::new();
    let mut ran = 0;
    for case in slow_cases {
        ran += 1;
        let (world, baseline) = (world.clone(), baseline.clone());
        slow.spawn(async move {
            let hostile = HostileMirror::start(Scene::default()).await;
            let good = HostileMirror::start(Scene::files(&world.good)).await;
            sync_case(&world, &case, &baseline, &hostile, &good).await
        });
    }
    let mut failures = Vec::new();
    for case in &cases {
        ran += 1;
        failures.extend(sync_case(&world, case, &baseline, &hostile, &good).await);
    }
    while let Some(joined) = slow.join_next().await {
        failures.extend(joined.unwrap());
    }
    report("sync", ran, failures);
}

// ---- the reader ----

fn reader_options(world: &World, who: Who, mirrors: &[&str], state: &Path) -> ReaderOptions {
    let limits = IndexLimits::default();
    let mut options = ReaderOptions::new(
        mirrors
            .iter()
            .map(|m| MirrorSpec {
                location: MirrorLocation::parse(m, &limits).unwrap(),
                proxy: None,
                origin: Origin::Flag,
            })
            .collect(),
        vec![world.key(who).public().clone()],
        state.to_owned(),
    );
    options.race_window = Duration::from_millis(100);
    options.hedge_delay = Duration::from_millis(200);
    options.connect_timeout = Duration::from_secs(1);
    options.read_timeout = Duration::from_secs(1);
    options
}

/// The text of an error and its sources.
fn chain(e: &dyn std::error::Error) -> String {
    error_chain(e)
}

/// Runs one case: a reader holding the baseline state asks only the hostile mirror (and, with
/// `binary`, `qasid fetch` does the same with a fresh copy of the state).
async fn reader_case(
    world: &World,
    case: &Case,
    baseline: &Path,
    hostile: &HostileMirror,
    other: &HostileMirror,
    binary: bool,
) -> Vec<String> {
    let name = &case.name;
    let net = case.net.as_ref().unwrap();
    let expect = net.reader.as_ref().unwrap();
    let mut failures = Vec::new();
    let state = world.dir.path().join(format!("reader-state-{name}"));
    copy_tree(baseline, &state);
    let out = world.dir.path().join(format!("reader-out-{name}"));
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("kept.txt"), b"a file the reader must not touch").unwrap();
    let before = tree(&out, &|_| false);
    hostile.set(resolve(&net.scene, &other.url));
    other.take_requests();

    let options = reader_options(world, net.reader_publisher, &[&hostile.url], &state);
    let mut reader = Reader::open(options).expect("the reader opens");
    let run = async {
        let updates = reader.update().await;
        match &net.fetch {
            None => updates
                .into_iter()
                .next()
                .unwrap()
                .result
                .map(|_| ())
                .map_err(|e| (chain(&e), e.class())),
            Some(article) => {
                let request: ArticleRequest = article.parse().unwrap();
                reader
                    .fetch(&updates, &request, &out, None)
                    .await
                    .map(|_| ())
                    .map_err(|e| (chain(&e), e.class()))
            }
        }
    };
    let result = tokio::time::timeout(CASE_LIMIT, run)
        .await
        .unwrap_or_else(|_| Err(("the run did not end in time".into(), ErrorClass::Runtime)));
    match (&result, expect.error) {
        (Ok(()), None) => {}
        (Ok(()), Some(class)) => failures.push(format!(
            "{name}: the run succeeded, expected a {class:?} error"
        )),
        (Err((text, _)), None) => failures.push(format!("{name}: the run failed: {text}")),
        (Err((text, class)), Some(expected)) => {
            if *class != expected || !text.contains(&expect.reason) {
                failures.push(format!(
                    "{name}: {class:?} error {text:?}, expected {expected:?} with {:?}",
                    expect.reason
                ));
            }
        }
    }
    let report = reader.report();
    let mirror = report.mirrors.iter().find(|m| m.mirror == hostile.url);
    if let Some(fate) = expect.fate {
        let ok = mirror.is_some_and(|m| {
            m.fate == fate && m.detail.as_deref().unwrap_or("").contains(&expect.reason)
        });
        if !ok {
            failures.push(format!(
                "{name}: the mirror's fate is {mirror:?}, expected {} with {:?}",
                fate.as_str(),
                expect.reason
            ));
        }
    }
    if expect.warning {
        let warned = report
            .warnings
            .iter()
            .any(|w| w.to_string().contains(&expect.reason));
        if !warned {
            failures.push(format!(
                "{name}: no warning holding {:?}: {:?}",
                expect.reason, report.warnings
            ));
        }
    }
    let after = tree(&out, &|_| false);
    if after != before {
        failures.push(format!(
            "{name}: the output folder changed: {}",
            diff(&before, &after)
        ));
    }
    let contacted = other.take_requests();
    if !contacted.is_empty() {
        failures.push(format!(
            "{name}: the other host was contacted: {contacted:?}"
        ));
    }
    if binary {
        failures.extend(reader_binary(world, case, baseline, &hostile.url).await);
    }
    failures
}

/// `qasid fetch` against the hostile mirror: the documented exit code (3 verification, 1
/// runtime, 0 with a warning), the reason on stderr, and nothing saved.
async fn reader_binary(world: &World, case: &Case, baseline: &Path, mirror: &str) -> Vec<String> {
    let name = &case.name;
    let net = case.net.as_ref().unwrap();
    let expect = net.reader.as_ref().unwrap();
    let state = world.dir.path().join(format!("reader-bin-state-{name}"));
    copy_tree(baseline, &state);
    let out = world.dir.path().join(format!("reader-bin-out-{name}"));
    std::fs::create_dir_all(&out).unwrap();
    let mut cmd = qasid_binary();
    cmd.arg("fetch");
    if let Some(article) = &net.fetch {
        cmd.arg(article);
    }
    cmd.args(["--mirror", mirror])
        .args([
            "--publisher",
            &world.key(net.reader_publisher).public().to_base64(),
        ])
        .arg("--state")
        .arg(&state)
        .arg("--out")
        .arg(&out)
        .args(["--race-window", "100ms", "--hedge-delay", "200ms"])
        .args(["--connect-timeout", "1s", "--timeout", "1s"]);
    let output = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = match expect.error {
        Some(ErrorClass::Verification) => 3,
        Some(ErrorClass::Runtime) => 1,
        Some(ErrorClass::Usage) => 2,
        None => 0,
    };
    let mut failures = Vec::new();
    if output.status.code() != Some(code) || !stderr.contains(&expect.reason) {
        failures.push(format!(
            "{name}: qasid fetch exited {:?}, expected {code} with {:?} on stderr: {stderr}",
            output.status.code(),
            expect.reason
        ));
    }
    if std::fs::read_dir(&out).unwrap().count() != 0 {
        failures.push(format!("{name}: qasid fetch saved something"));
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reader_refuses_every_case_and_saves_nothing() {
    let world = World::build();
    let hostile = HostileMirror::start(Scene::files(&world.seq2)).await;
    let other = HostileMirror::start(Scene::files(&world.good)).await;
    let baseline = world.dir.path().join("reader-baseline");
    {
        let options = reader_options(&world, Who::Publisher, &[&hostile.url], &baseline);
        let mut reader = Reader::open(options).unwrap();
        let updates = reader.update().await;
        let index = &updates[0].result.as_ref().expect("baseline update").index;
        assert_eq!(index.head().sequence(), 2, "baseline");
    }
    // Control: the unmodified raw bundle, listed by the insider, is fetched and saved.
    {
        let state = world.dir.path().join("reader-control-state");
        copy_tree(&baseline, &state);
        let root = world.insider_listing("control", "hostile", 1, &world.insider_control);
        hostile.set(Scene::files(&root));
        let out = world.dir.path().join("reader-control-out");
        let options = reader_options(&world, Who::Insider, &[&hostile.url], &state);
        let mut reader = Reader::open(options).unwrap();
        let updates = reader.update().await;
        let saved = reader
            .fetch(&updates, &"hostile".parse().unwrap(), &out, None)
            .await
            .expect("control fetch");
        assert!(saved.path.is_file(), "control: saved");
    }
    let mut failures = Vec::new();
    let mut ran = 0;
    // The real binary runs the first case of every class (the library runs them all).
    let mut classes_run = Vec::new();
    for case in world.cases() {
        if case.net.as_ref().is_none_or(|n| n.reader.is_none()) {
            continue;
        }
        ran += 1;
        let binary = !classes_run.contains(&case.class);
        if binary {
            classes_run.push(case.class);
        }
        failures.extend(reader_case(&world, &case, &baseline, &hostile, &other, binary).await);
    }
    report("reader", ran, failures);
}

// ---- regressions for bugs the corpus found ----

/// The reader's hedge timer was reset by every byte, so a mirror dripping the bundle a byte at
/// a time (each within the hedge delay) held the download while a good mirror sat idle: the
/// next mirror must be asked as soon as the download stops moving at the minimum rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_the_reader_hedges_past_a_mirror_that_drips_the_bundle() {
    let world = World::build();
    let paths = Paths::of(world.publisher.public());
    let gamma = paths.bundle(&world.gamma.sha256);
    let drip = Reply::Drip {
        body: world.gamma.bytes.clone(),
        every: Duration::from_millis(50),
    };
    let dripping = HostileMirror::start(Scene::files(&world.good).with(&gamma, drip)).await;
    // The good mirror answers the index later, so the dripping one is asked for the bundle
    // first.
    let index = world.index_of(&world.good, &world.publisher);
    let late = Reply::Delayed(
        Duration::from_millis(150),
        Box::new(Reply::ok("application/json", index)),
    );
    let good = HostileMirror::start(Scene::files(&world.good).with(&paths.index(), late)).await;
    let state = world.dir.path().join("hedge-state");
    let out = world.dir.path().join("hedge-out");
    let mut options = reader_options(&world, Who::Publisher, &[&dripping.url, &good.url], &state);
    options.race_window = Duration::from_millis(500);
    let mut reader = Reader::open(options).unwrap();
    let updates = reader.update().await;
    let started = Instant::now();
    let saved = reader
        .fetch(&updates, &"gamma".parse().unwrap(), &out, None)
        .await
        .expect("the good mirror delivers");
    let took = started.elapsed();
    assert_eq!(saved.source.as_deref(), Some(good.url.as_str()));
    // Well inside the dripping mirror's own deadline (2 s of timeouts + the size at 4 KiB/s):
    // the hedge, not the deadline, brought in the good mirror.
    assert!(
        took < Duration::from_millis(1500),
        "the download took {took:?}"
    );
    let report = reader.report();
    let fate = report
        .mirrors
        .iter()
        .find(|m| m.mirror == dripping.url)
        .unwrap();
    assert_eq!(fate.fate, qasid::reader::Fate::NotNeeded, "{fate:?}");
}
