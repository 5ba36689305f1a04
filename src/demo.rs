//! `qasid demo`: the whole story on one machine, with real components on loopback.
//!
//! A publisher signs the sample articles and pushes them to an origin mirror; mirror A syncs
//! from the origin and mirror B only from A ("inside the firewall"); a censor's tarpit and a
//! hostile mirror (an old index, then a forged article) sit in the reader's list; the reader
//! refuses the rollback and the forgery with their reasons and gets the real article from B.
//!
//! Owns the choreography only: every step runs the same library code as the real commands
//! (bundle, repo, mirror, push, sync, reader), and the adversaries are deliberately dumb
//! servers. It never prints: each step is reported through the `narrate` callback and the
//! caller decides how to show it. All tasks it starts are owned by [`Demo`] and stopped by
//! [`Demo::shutdown`].

mod adversaries;
mod seeds;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bundle::{self, CreateOptions};
use crate::config::{Config, Keep, PublisherConfig, UpstreamConfig};
use crate::index::layout::PublisherLayout;
use crate::index::MirrorUrl;
use crate::keys::{self, PublicKey, SecretKey};
use crate::limits::{BundleLimits, IndexLimits};
use crate::mirror::{self, Metrics, MirrorState};
use crate::reader::{
    ArticleRequest, Fate, MirrorLocation, MirrorSpec, Origin, Reader, ReaderOptions,
};
use crate::render::{self, ArticleHeader, RenderOptions};
use crate::repo::{PublishRequest, Repo};
use crate::store::Store;
use crate::sync::{SyncOptions, Syncer};
use crate::ErrorClass;

pub use seeds::SEED_FILES;

/// The article the hostile mirror forges and the reader finally prints.
const FORGED_ARTICLE: &str = "mirror-network-launch";
/// The article published later, so that an older index exists to replay.
const LATE_ARTICLE: &str = "urdu-press-freedom";

/// Who did something in the story.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Publisher,
    Origin,
    MirrorA,
    MirrorB,
    Censor,
    Hostile,
    Reader,
}

impl Actor {
    pub fn label(self) -> &'static str {
        match self {
            Actor::Publisher => "publisher",
            Actor::Origin => "origin",
            Actor::MirrorA => "mirror A",
            Actor::MirrorB => "mirror B",
            Actor::Censor => "censor",
            Actor::Hostile => "hostile",
            Actor::Reader => "reader",
        }
    }
}

/// One line of the story: who, what, and how long the step took.
#[derive(Debug, Clone)]
pub struct Narration {
    pub actor: Actor,
    pub text: String,
    pub took: Option<Duration>,
}

/// Why the demo could not tell its story. Any of these is a bug or a broken machine (no
/// loopback, full disk), never an expected outcome: the refusals the story shows are successes.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo step \"{step}\" failed: {reason}")]
    Step { step: &'static str, reason: String },
    #[error("demo step \"{step}\" did not turn out as the story says: {what}")]
    Unexpected { step: &'static str, what: String },
}

impl DemoError {
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Runtime
    }
}

fn step_error(step: &'static str) -> impl Fn(&dyn std::fmt::Display) -> DemoError {
    move |e| DemoError::Step {
        step,
        reason: e.to_string(),
    }
}

/// Where to work.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Keep working files here; `None` uses a temporary folder removed at shutdown.
    pub dir: Option<PathBuf>,
}

/// A finished story with its servers still running.
pub struct Demo {
    /// Holds the temporary working folder (if any) until shutdown.
    _temp: Option<tempfile::TempDir>,
    dir: PathBuf,
    cancel: CancellationToken,
    tasks: TaskTracker,
    /// Mirrors whose reader pages stay up: (who, base URL).
    pub pages: Vec<(Actor, String)>,
    /// The page of the article the reader printed, on mirror B.
    pub article_page: String,
    /// The verified article, rendered for a terminal.
    pub article_text: String,
}

impl Demo {
    /// The working folder (keys, bundles, repo, stores, reader state).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops every server and background task and removes a temporary working folder.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// What [`Story::spread`] moves, and where.
struct Spread<'a> {
    repo_dir: &'a Path,
    publisher: &'a PublicKey,
    origin_url: &'a str,
    a_url: &'a str,
    mirror_a: &'a RunningMirror,
    mirror_b: &'a RunningMirror,
}

/// A mirror started for the story.
struct RunningMirror {
    url: String,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
}

/// Tells the story. `narrate` is called once per step, in order.
pub async fn run(
    options: DemoOptions,
    mut narrate: impl FnMut(Narration),
) -> Result<Demo, DemoError> {
    let (temp, dir) = match options.dir {
        Some(dir) => {
            fs::create_dir_all(&dir).map_err(|e| step_error("create working folder")(&e))?;
            (None, dir)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("qasid-demo-")
                .tempdir()
                .map_err(|e| step_error("create working folder")(&e))?;
            let dir = temp.path().to_owned();
            (Some(temp), dir)
        }
    };
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let story = Story {
        dir: dir.clone(),
        cancel: cancel.clone(),
        tasks: tasks.clone(),
    };
    match story.tell(&mut narrate).await {
        Ok((pages, article_page, article_text)) => Ok(Demo {
            _temp: temp,
            dir,
            cancel,
            tasks,
            pages,
            article_page,
            article_text,
        }),
        Err(e) => {
            cancel.cancel();
            tasks.close();
            tasks.wait().await;
            Err(e)
        }
    }
}

struct Story {
    dir: PathBuf,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

type Told = (Vec<(Actor, String)>, String, String);

impl Story {
    async fn tell(&self, narrate: &mut impl FnMut(Narration)) -> Result<Told, DemoError> {
        let mut say = |actor: Actor, text: String, started: Option<Instant>| {
            narrate(Narration {
                actor,
                text,
                took: started.map(|s| s.elapsed()),
            });
        };

        // The publisher: a key, and the sample articles signed into bundles.
        let t = Instant::now();
        let seeds_dir = self.dir.join("seeds");
        let articles = blocking("write seeds", {
            let seeds_dir = seeds_dir.clone();
            move || seeds::write_seeds(&seeds_dir)
        })
        .await?;
        let secret = SecretKey::generate();
        let key_dir = self.dir.join("keys");
        let paths = keys::write_key_pair(&key_dir, &secret, None, true)
            .map_err(|e| step_error("keygen")(&e))?;
        let publisher = secret.public().clone();
        let secret = Arc::new(secret);
        let bundles = {
            let secret = secret.clone();
            let (seeds_dir, out_dir) = (seeds_dir.clone(), self.dir.join("bundles"));
            let articles = articles.clone();
            blocking("bundle", move || {
                fs::create_dir_all(&out_dir)?;
                let mut made = Vec::new();
                for name in &articles {
                    let out = out_dir.join(format!("{name}.zip"));
                    let created = bundle::create(
                        &seeds_dir.join(name),
                        &secret,
                        &out,
                        &CreateOptions {
                            name: None,
                            version: None,
                            limits: BundleLimits::default(),
                        },
                    )
                    .map_err(std::io::Error::other)?;
                    made.push((name.clone(), created.path().to_owned()));
                }
                Ok(made)
            })
            .await?
        };
        say(
            Actor::Publisher,
            format!(
                "created key {} ({}) and signed {} articles into bundles",
                publisher.id(),
                paths.public.display(),
                bundles.len()
            ),
            Some(t),
        );

        // The network: every server listens on loopback before anything is published, so
        // the publisher can sign the mirrors' addresses into the index.
        let origin_l = listen("origin").await?;
        let a_l = listen("mirror A").await?;
        let b_l = listen("mirror B").await?;
        let tarpit_l = listen("tarpit").await?;
        let hostile_l = listen("hostile").await?;
        let url = |l: &TcpListener| -> Result<String, DemoError> {
            let addr: SocketAddr = l.local_addr().map_err(|e| step_error("listen")(&e))?;
            Ok(format!("http://{addr}/"))
        };
        let (origin_url, a_url, b_url) = (url(&origin_l)?, url(&a_l)?, url(&b_l)?);
        let (tarpit_url, hostile_url) = (url(&tarpit_l)?, url(&hostile_l)?);
        let names = [
            (origin_url.clone(), "origin"),
            (a_url.clone(), "mirror A"),
            (b_url.clone(), "mirror B"),
            (tarpit_url.clone(), "blocked mirror"),
            (hostile_url.clone(), "hostile mirror"),
        ];
        let who = |url: &str| match names.iter().find(|(u, _)| u == url) {
            Some((u, name)) => format!("{name} {u}"),
            None => url.to_owned(),
        };

        let trusted = Config {
            publishers: vec![PublisherConfig {
                name: Some("Qasid demo desk".to_owned()),
                key: publisher.clone(),
            }],
            ..Config::default()
        };
        self.start_mirror(origin_l, "origin", &trusted).await?;
        let mirror_a = self.start_mirror(a_l, "mirror-a", &trusted).await?;
        let mirror_b = self.start_mirror(b_l, "mirror-b", &trusted).await?;
        let hostile_root = self.dir.join("hostile-site");
        fs::create_dir_all(&hostile_root).map_err(|e| step_error("hostile site")(&e))?;
        self.tasks
            .spawn(adversaries::tarpit(tarpit_l, self.cancel.clone()));
        self.tasks.spawn(adversaries::static_site(
            hostile_l,
            hostile_root.clone(),
            self.cancel.clone(),
        ));

        // First publish: everything but the late article (index sequence 1).
        let repo_dir = self.dir.join("repo");
        let repo = Arc::new(Repo::new(
            &repo_dir,
            &publisher,
            IndexLimits::default(),
            BundleLimits::default(),
        ));
        let early: Vec<PathBuf> = bundles
            .iter()
            .filter(|(name, _)| name != LATE_ARTICLE)
            .map(|(_, path)| path.clone())
            .collect();
        let late: Vec<PathBuf> = bundles
            .iter()
            .filter(|(name, _)| name == LATE_ARTICLE)
            .map(|(_, path)| path.clone())
            .collect();
        // The readers' mirrors the publisher announces: B, and one the censor will block.
        let signed_mirrors = vec![
            MirrorUrl::parse(&tarpit_url, &IndexLimits::default())
                .map_err(|e| step_error("mirror url")(&e))?,
            MirrorUrl::parse(&b_url, &IndexLimits::default())
                .map_err(|e| step_error("mirror url")(&e))?,
        ];
        let t = Instant::now();
        let seq = publish(&repo, &secret, early, Some(signed_mirrors)).await?;
        say(
            Actor::Publisher,
            format!(
                "published {} articles: signed index sequence {seq}, announcing 2 reader mirrors",
                bundles.len() - 1
            ),
            Some(t),
        );
        let spread = Spread {
            repo_dir: &repo_dir,
            publisher: &publisher,
            origin_url: &origin_url,
            a_url: &a_url,
            mirror_a: &mirror_a,
            mirror_b: &mirror_b,
        };
        self.spread(&spread, &mut say).await?;

        // The hostile mirror keeps a copy of this first index to replay later.
        copy_layout(&repo_dir, &hostile_root).map_err(|e| step_error("hostile copy")(&e))?;

        // Second publish: the late article (sequence 2), spread the same way.
        let t = Instant::now();
        let seq = publish(&repo, &secret, late, None).await?;
        say(
            Actor::Publisher,
            format!("published \"{LATE_ARTICLE}\": index sequence {seq}"),
            Some(t),
        );
        self.spread(&spread, &mut say).await?;

        say(
            Actor::Censor,
            format!(
                "the reader's network cannot reach the origin or mirror A, and the {} \
                 announced in the index accepts connections but never answers",
                who(&tarpit_url)
            ),
            None,
        );
        say(
            Actor::Hostile,
            format!(
                "{} replays the publisher's old index (sequence 1)",
                who(&hostile_url)
            ),
            None,
        );

        // The reader, behind the firewall: tarpit, hostile and B.
        let state_dir = self.dir.join("reader-state");
        let out_dir = self.dir.join("reader-downloads");
        let all = [tarpit_url.as_str(), hostile_url.as_str(), b_url.as_str()];
        let t = Instant::now();
        let mut reader = open_reader(&all, &publisher, &state_dir)?;
        let updates = reader.update().await;
        let listed = match updates.first().map(|u| &u.result) {
            Some(Ok(index)) => index.index.current().len(),
            Some(Err(e)) => {
                return Err(DemoError::Unexpected {
                    step: "reader lists articles",
                    what: e.to_string(),
                })
            }
            None => 0,
        };
        say(
            Actor::Reader,
            format!(
                "asked 3 mirrors at once; took the freshest authentic index: {listed} articles"
            ),
            Some(t),
        );
        let report = reader.report();
        for m in &report.mirrors {
            say(
                Actor::Reader,
                describe_fate(m.fate, &who(&m.mirror), m.detail.as_deref()),
                None,
            );
        }
        expect_fate(
            &report.mirrors,
            &hostile_url,
            Fate::Stale,
            "hostile index is stale",
        )?;
        expect_fate(
            &report.mirrors,
            &b_url,
            Fate::Ok,
            "mirror B serves the index",
        )?;

        // Asked again, the hostile mirror's replay is a rollback against what the reader has
        // already seen (its state), whatever else answers.
        let t = Instant::now();
        let mut again = open_reader(&[hostile_url.as_str()], &publisher, &state_dir)?;
        let kept = match again.update().await.into_iter().next().map(|u| u.result) {
            Some(Ok(index)) => (index.index.head().sequence(), index.source),
            other => {
                return Err(DemoError::Unexpected {
                    step: "rollback",
                    what: format!("no index held after the replay: {other:?}"),
                })
            }
        };
        let report = again.report();
        expect_fate(&report.mirrors, &hostile_url, Fate::Stale, "rollback")?;
        let refused = report
            .mirrors
            .iter()
            .find(|m| m.mirror == hostile_url)
            .and_then(|m| m.detail.clone())
            .unwrap_or_default();
        if kept.0 != seq {
            return Err(DemoError::Unexpected {
                step: "rollback",
                what: format!("reader holds sequence {}, expected {seq}", kept.0),
            });
        }
        say(
            Actor::Reader,
            format!(
                "next run, the hostile mirror's replay is refused as a rollback ({refused}); \
                 the reader keeps sequence {} (from {})",
                kept.0,
                who(&kept.1)
            ),
            Some(t),
        );

        // The hostile mirror turns to forgery: the current index (public, authentic) with a
        // forged article stored under the real article's hash.
        let forged_id = self
            .forge(&repo_dir, &hostile_root, &publisher, &seeds_dir)
            .await?;
        say(
            Actor::Hostile,
            format!(
                "now serves the current index, with a forged \"{FORGED_ARTICLE}\" (changed text, \
                 signed by the forger's key) at the real bundle's address {}…",
                &forged_id[..16]
            ),
            None,
        );

        // A reader who knows only the hostile mirror gets nothing rather than a forgery.
        let request: ArticleRequest = FORGED_ARTICLE.parse().map_err(|e| step_error("name")(&e))?;
        let t = Instant::now();
        let lone_state = self.dir.join("reader-state-hostile-only");
        let mut lone = open_reader(&[hostile_url.as_str()], &publisher, &lone_state)?;
        let updates = lone.update().await;
        let lone_out = self.dir.join("reader-hostile-only");
        if lone
            .fetch(&updates, &request, &lone_out, None)
            .await
            .is_ok()
        {
            return Err(DemoError::Unexpected {
                step: "forgery",
                what: "the forged bundle was accepted".to_owned(),
            });
        }
        let report = lone.report();
        expect_fate(&report.mirrors, &hostile_url, Fate::Lying, "forgery")?;
        let lie = report
            .mirrors
            .iter()
            .find(|m| m.mirror == hostile_url)
            .and_then(|m| m.detail.clone())
            .unwrap_or_default();
        let saved_nothing = fs::read_dir(&lone_out).map_or(true, |mut d| d.next().is_none());
        if !saved_nothing {
            return Err(DemoError::Unexpected {
                step: "forgery",
                what: format!("something was saved in {}", lone_out.display()),
            });
        }
        say(
            Actor::Reader,
            format!(
                "a reader who knows only the hostile mirror: forgery refused ({lie}); nothing saved"
            ),
            Some(t),
        );

        // The reader behind the firewall, with its list and what it learned from the index.
        let t = Instant::now();
        let mut reader = open_reader(&all, &publisher, &state_dir)?;
        let updates = reader.update().await;
        let saved = reader
            .fetch(&updates, &request, &out_dir, None)
            .await
            .map_err(|e| DemoError::Unexpected {
                step: "reader fetches the article",
                what: e.to_string(),
            })?;
        let source = who(&saved.source.clone().unwrap_or_default());
        say(
            Actor::Reader,
            format!(
                "fetched \"{FORGED_ARTICLE}\" racing its mirrors: verified copy from {source}, \
                 saved to {}",
                saved.path.display()
            ),
            Some(t),
        );
        for m in reader.report().mirrors {
            say(
                Actor::Reader,
                describe_fate(m.fate, &who(&m.mirror), m.detail.as_deref()),
                None,
            );
        }

        let text = {
            let path = saved.path.clone();
            let publisher = publisher.clone();
            blocking("read article", move || {
                let (verified, markdown) =
                    bundle::read_article(&path, &publisher, &BundleLimits::default())
                        .map_err(std::io::Error::other)?;
                let m = verified.manifest();
                let header = ArticleHeader {
                    title: m.title(),
                    author: m.author(),
                    date: m.created(),
                    language: m.language(),
                };
                Ok(render::render_article(
                    &header,
                    &markdown,
                    RenderOptions { width: 80 },
                ))
            })
            .await?
        };
        let article_page = format!("{b_url}read/{}/{FORGED_ARTICLE}", publisher.hex());
        let pages = vec![
            (Actor::Origin, origin_url),
            (Actor::MirrorA, a_url),
            (Actor::MirrorB, b_url),
        ];
        Ok((pages, article_page, text))
    }

    /// Pushes the repo to the origin, then lets A sync from the origin and B from A.
    async fn spread(
        &self,
        s: &Spread<'_>,
        say: &mut impl FnMut(Actor, String, Option<Instant>),
    ) -> Result<(), DemoError> {
        let t = Instant::now();
        let sent = push(s.repo_dir, s.publisher, s.origin_url).await?;
        say(
            Actor::Origin,
            format!(
                "accepted {sent} new objects pushed by the publisher, each verified before \
                 storing ({})",
                s.origin_url
            ),
            Some(t),
        );
        let origin = (s.origin_url, "origin");
        let a = (s.a_url, "mirror A only");
        for (mirror, actor, (upstream, from)) in [
            (s.mirror_a, Actor::MirrorA, origin),
            (s.mirror_b, Actor::MirrorB, a),
        ] {
            self.sync(mirror, s.publisher, upstream, actor, say, from)
                .await?;
        }
        Ok(())
    }

    async fn start_mirror(
        &self,
        listener: TcpListener,
        name: &str,
        trusted: &Config,
    ) -> Result<RunningMirror, DemoError> {
        let url = format!(
            "http://{}/",
            listener
                .local_addr()
                .map_err(|e| step_error("listen")(&e))?
        );
        let store = Arc::new(
            Store::open(&self.dir.join(name), Keep::All, IndexLimits::default())
                .map_err(|e| step_error("open store")(&e))?,
        );
        let metrics = Arc::new(Metrics::new());
        let state = MirrorState::new(trusted, store.clone(), metrics.clone())
            .map_err(|e| step_error("start mirror")(&e))?;
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            if let Err(e) = mirror::run(listener, Arc::new(state), async move {
                cancel.cancelled().await
            })
            .await
            {
                tracing::warn!("demo mirror stopped: {e}");
            }
        });
        Ok(RunningMirror {
            url,
            store,
            metrics,
        })
    }

    /// One sync round of `mirror` from `upstream`, narrated.
    async fn sync(
        &self,
        mirror: &RunningMirror,
        publisher: &PublicKey,
        upstream: &str,
        actor: Actor,
        say: &mut impl FnMut(Actor, String, Option<Instant>),
        from: &str,
    ) -> Result<(), DemoError> {
        let t = Instant::now();
        let upstreams = [UpstreamConfig {
            url: reqwest::Url::parse(upstream).map_err(|e| step_error("upstream url")(&e))?,
            proxy: None,
        }];
        let syncer = Syncer::new(
            mirror.store.clone(),
            std::slice::from_ref(publisher),
            &upstreams,
            SyncOptions::from_config(&Default::default()),
            mirror.metrics.clone(),
        )
        .await
        .map_err(|e| step_error("sync")(&e))?;
        let report = syncer.run_once(&self.cancel).await;
        if let Some(class) = report.failure() {
            return Err(DemoError::Unexpected {
                step: "sync",
                what: format!("{} sync failed ({class:?}): {report:?}", actor.label()),
            });
        }
        let counts = mirror.store.counts();
        drop(syncer);
        say(
            actor,
            format!(
                "synced from {from}: holds {} bundles, every one verified before storing ({})",
                counts.bundles, mirror.url
            ),
            Some(t),
        );
        Ok(())
    }

    /// Fills the hostile site with the current repo, except the forged article's bundle,
    /// which is replaced by a bundle of changed text signed with another key. Returns the
    /// real bundle's sha256 (the address the forgery hides behind).
    async fn forge(
        &self,
        repo_dir: &Path,
        hostile_root: &Path,
        publisher: &PublicKey,
        seeds_dir: &Path,
    ) -> Result<String, DemoError> {
        let (repo_dir, hostile_root) = (repo_dir.to_owned(), hostile_root.to_owned());
        let layout = PublisherLayout::new(publisher);
        let source = seeds_dir.join(FORGED_ARTICLE);
        let work = self.dir.join("forgery");
        let repo = Repo::new(
            &repo_dir,
            publisher,
            IndexLimits::default(),
            BundleLimits::default(),
        );
        blocking("forge", move || {
            let index = repo
                .current()
                .map_err(std::io::Error::other)?
                .ok_or_else(|| std::io::Error::other("no index"))?;
            let real = index
                .current()
                .into_iter()
                .find(|(_, a)| a.name() == FORGED_ARTICLE)
                .ok_or_else(|| std::io::Error::other("article not listed"))?
                .1
                .bundle()
                .sha256;
            let _ = fs::remove_dir_all(&hostile_root);
            fs::create_dir_all(&hostile_root)?;
            copy_layout(&repo_dir, &hostile_root)?;

            // The forger's version: same folder, one sentence changed, signed by the forger.
            let forged_src = work.join(FORGED_ARTICLE);
            fs::create_dir_all(forged_src.join("images"))?;
            let text = fs::read_to_string(source.join("article.md"))?;
            let forged_text = text.replacen(
                "\n\n",
                "\n\nCORRECTION: the mirror network has been shut down by its own organisers; \
                 readers should stop using it.\n\n",
                2,
            );
            fs::write(forged_src.join("article.md"), forged_text)?;
            fs::copy(
                source.join("images/mirror-map.png"),
                forged_src.join("images/mirror-map.png"),
            )?;
            let forger = SecretKey::generate();
            let forged = work.join("forged.zip");
            bundle::create(
                &forged_src,
                &forger,
                &forged,
                &CreateOptions {
                    name: Some(FORGED_ARTICLE.to_owned()),
                    version: None,
                    limits: BundleLimits::default(),
                },
            )
            .map_err(std::io::Error::other)?;
            let target = crate::index::layout::on_disk(&hostile_root, &layout.bundle(&real));
            fs::copy(&forged, target)?;
            Ok(real.to_hex())
        })
        .await
    }
}

async fn listen(what: &'static str) -> Result<TcpListener, DemoError> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| DemoError::Step {
            step: what,
            reason: format!("cannot listen on 127.0.0.1: {e}"),
        })
}

async fn blocking<T: Send + 'static>(
    step: &'static str,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, DemoError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| step_error(step)(&e))?
        .map_err(|e| step_error(step)(&e))
}

async fn publish(
    repo: &Arc<Repo>,
    secret: &Arc<SecretKey>,
    bundles: Vec<PathBuf>,
    mirrors: Option<Vec<MirrorUrl>>,
) -> Result<u64, DemoError> {
    let (repo, secret) = (repo.clone(), secret.clone());
    blocking("publish", move || {
        let report = repo
            .publish(
                &secret,
                &PublishRequest {
                    bundles,
                    retract: Vec::new(),
                    refresh: false,
                    mirrors,
                    expires_in: Duration::from_secs(7 * 24 * 3600),
                    now: SystemTime::now(),
                },
            )
            .map_err(std::io::Error::other)?;
        report
            .signed
            .map(|s| s.head().sequence())
            .ok_or_else(|| std::io::Error::other("nothing was published"))
    })
    .await
}

/// Pushes the repo to `to`; returns how many objects were sent.
async fn push(repo_dir: &Path, publisher: &PublicKey, to: &str) -> Result<usize, DemoError> {
    let plan = {
        let (repo_dir, publisher) = (repo_dir.to_owned(), publisher.clone());
        tokio::task::spawn_blocking(move || mirror::client::plan(&repo_dir, &publisher))
            .await
            .map_err(|e| step_error("push")(&e))?
            .map_err(|e| step_error("push")(&e))?
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| step_error("push")(&e))?;
    let base = reqwest::Url::parse(to).map_err(|e| step_error("push")(&e))?;
    let summary = mirror::client::push(&client, &base, &plan, Arc::new(mirror::client::NoProgress))
        .await
        .map_err(|e| step_error("push")(&e))?;
    Ok(summary.sent)
}

fn open_reader(
    mirrors: &[&str],
    publisher: &PublicKey,
    state_dir: &Path,
) -> Result<Reader, DemoError> {
    let limits = IndexLimits::default();
    let specs = mirrors
        .iter()
        .map(|m| {
            Ok(MirrorSpec {
                location: MirrorLocation::parse(m, &limits)
                    .map_err(|e| step_error("reader")(&e))?,
                proxy: None,
                origin: Origin::Flag,
            })
        })
        .collect::<Result<Vec<_>, DemoError>>()?;
    let mut options = ReaderOptions::new(specs, vec![publisher.clone()], state_dir.to_owned());
    // Loopback answers in microseconds; the tarpit must not hold the story up for long.
    options.connect_timeout = Duration::from_secs(2);
    options.read_timeout = Duration::from_secs(2);
    Reader::open(options).map_err(|e| step_error("reader")(&e))
}

fn describe_fate(fate: Fate, mirror: &str, detail: Option<&str>) -> String {
    let what = match fate {
        Fate::Ok => "ok",
        Fate::Stale => "stale, not used",
        Fate::Lying => "LYING, not used again",
        Fate::TimedOut => "timed out (blocked), skipped",
        Fate::Refused => "connection refused, skipped",
        Fate::Failed => "failed",
        Fate::NotNeeded => "not needed",
    };
    match detail {
        Some(d) => format!("  {mirror}: {what} ({d})"),
        None => format!("  {mirror}: {what}"),
    }
}

fn expect_fate(
    mirrors: &[crate::reader::MirrorReport],
    url: &str,
    fate: Fate,
    step: &'static str,
) -> Result<(), DemoError> {
    match mirrors.iter().find(|m| m.mirror == url) {
        Some(m) if m.fate == fate => Ok(()),
        Some(m) => Err(DemoError::Unexpected {
            step,
            what: format!("{url} was {:?}, expected {fate:?}", m.fate),
        }),
        None => Err(DemoError::Unexpected {
            step,
            what: format!("{url} missing from the reader's report"),
        }),
    }
}

/// Copies the served part of a repo (`qasid/`) into `to`, leaving out its private folders.
fn copy_layout(repo: &Path, to: &Path) -> std::io::Result<()> {
    copy_tree(&repo.join("qasid"), &to.join("qasid"))
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
