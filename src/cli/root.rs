//! `qasid root ...`: make, sign, install, rotate and show a publisher's threshold root of trust.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use qasid::index::{http_client, walk_roots_dir, walk_roots_http, MirrorUrl};
use qasid::keys::{PublicKey, Role};
use qasid::limits::IndexLimits;
use qasid::repo::roots_storage;
use qasid::roots::{Anchor, Chain, Delegation, Offered, Root, RootBody, RootError};

use super::{load_secret_key, print_json, Failure};

/// A publisher's root of trust: root keys (offline, a threshold signs), delegated signing keys.
///
/// A root names the root keys (for example three editors' keys, each on its own offline
/// machine) and how many of them must sign (the threshold), and delegates signing keys that
/// sign indexes and bundles (`publish --key S.key`). A new root version needs a threshold of
/// the previous root's keys and of its own; readers and mirrors follow the chain with no
/// action. docs/KEYS.md is the newsroom guide; docs/PROTOCOL.md §11 the exact rules.
#[derive(Debug, Subcommand)]
pub enum RootCommand {
    Create(CreateArgs),
    Sign(SignArgs),
    Install(InstallArgs),
    Rotate(RotateArgs),
    Upgrade(UpgradeArgs),
    Show(ShowArgs),
}

impl RootCommand {
    pub fn run(self) -> Result<(), Failure> {
        match self {
            RootCommand::Create(args) => args.run(),
            RootCommand::Sign(args) => args.run(),
            RootCommand::Install(args) => args.run(),
            RootCommand::Rotate(args) => args.run(),
            RootCommand::Upgrade(args) => args.run(),
            RootCommand::Show(args) => args.run(),
        }
    }
}

impl From<RootError> for Failure {
    fn from(e: RootError) -> Self {
        Failure::new(e.class(), e)
    }
}

/// Options that say how a signing key is delegated.
#[derive(Debug, Args)]
struct Delegate {
    /// What the new signing keys may sign (comma-separated: bundle, index, note).
    #[arg(
        long,
        value_name = "ROLES",
        default_value = "bundle,index,note",
        value_delimiter = ','
    )]
    roles: Vec<String>,
    /// How long the new signing keys are valid (renew them with `root rotate` before then).
    #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = humantime::parse_duration)]
    signing_expires: Duration,
}

impl Delegate {
    fn delegation(&self, key: PublicKey) -> Result<Delegation, Failure> {
        let mut roles = Vec::new();
        for name in &self.roles {
            let role = Role::parse(name.trim()).ok_or_else(|| {
                Failure::usage(anyhow::anyhow!(
                    "unknown role {name:?}: use bundle, index, note"
                ))
            })?;
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        roles.sort();
        let expires = whole_seconds(SystemTime::now() + self.signing_expires);
        Ok(Delegation {
            key,
            roles,
            expires,
        })
    }
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn read_key(arg: &Path) -> Result<PublicKey, Failure> {
    Ok(PublicKey::from_arg(&arg.to_string_lossy())?)
}

fn sorted_keys(mut keys: Vec<PublicKey>) -> Result<Vec<PublicKey>, Failure> {
    keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return Err(Failure::usage(anyhow::anyhow!("a key is given twice")));
    }
    Ok(keys)
}

fn sorted_delegations(mut d: Vec<Delegation>) -> Result<Vec<Delegation>, Failure> {
    d.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
    if d.windows(2).any(|w| w[0].key == w[1].key) {
        return Err(Failure::usage(anyhow::anyhow!(
            "a signing key is given twice"
        )));
    }
    Ok(d)
}

/// Writes `bytes` to `out` atomically, refusing to overwrite unless `force`.
fn write_out(out: &Path, bytes: &[u8], force: bool) -> Result<(), Failure> {
    if !force && out.exists() {
        return Err(Failure::usage(anyhow::anyhow!(
            "{} already exists (use --force to overwrite)",
            out.display()
        )));
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(Failure::runtime)?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(Failure::runtime)?;
    tmp.as_file().sync_all().map_err(Failure::runtime)?;
    tmp.persist(out).map_err(|e| Failure::runtime(e.error))?;
    Ok(())
}

fn read_root(path: &Path) -> Result<Root, Failure> {
    let bytes = qasid::roots::read_capped(path)?;
    Root::parse(&bytes).map_err(|e| {
        Failure::new(
            e.class(),
            anyhow::Error::new(e).context(path.display().to_string()),
        )
    })
}

/// Write an unsigned first root (version 1) for a new publisher.
///
/// Each root key holder then signs it on their own machine (`root sign`), and once a threshold
/// signed it, `root install` puts it into the repo. The publisher id (the folder name readers
/// use) is derived from this root and never changes.
#[derive(Debug, Args)]
#[command(after_help = "Example:
  qasid root create --root-key A.pub --root-key B.pub --root-key C.pub --threshold 2 \\
      --signing-key S.pub --out root.json")]
pub struct CreateArgs {
    /// A root key's public key file (repeat; at most 16).
    #[arg(long = "root-key", value_name = "PUB", required = true)]
    root_keys: Vec<PathBuf>,
    /// How many root keys must sign a root.
    #[arg(long, value_name = "N")]
    threshold: u64,
    /// A signing key's public key file (repeat).
    #[arg(long = "signing-key", value_name = "PUB", required = true)]
    signing_keys: Vec<PathBuf>,
    #[command(flatten)]
    delegate: Delegate,
    /// Where to write the unsigned root.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Overwrite --out if it exists.
    #[arg(long)]
    force: bool,
}

impl CreateArgs {
    fn run(self) -> Result<(), Failure> {
        let root_keys = sorted_keys(
            self.root_keys
                .iter()
                .map(|p| read_key(p))
                .collect::<Result<_, _>>()?,
        )?;
        let signing_keys = sorted_delegations(
            self.signing_keys
                .iter()
                .map(|p| self.delegate.delegation(read_key(p)?))
                .collect::<Result<_, _>>()?,
        )?;
        let root = Root::unsigned(RootBody {
            version: 1,
            previous: None,
            threshold: self.threshold,
            root_keys,
            signing_keys,
        })
        .map_err(Failure::usage)?;
        write_out(&self.out, &root.to_bytes(), self.force)?;
        println!(
            "wrote unsigned root 1 to {}: publisher {}",
            self.out.display(),
            root.publisher_id().id()
        );
        println!(
            "next: {} of its root keys sign it (qasid root sign {} --key ROOT.key)",
            root.body().threshold,
            self.out.display()
        );
        Ok(())
    }
}

/// Add one root key's signature to a root file (in place).
///
/// Run it on the machine that holds the root key; the file travels between holders (USB).
/// It shows what is being signed, so check the keys and the version before you sign.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  qasid root sign root.json --key A.key")]
pub struct SignArgs {
    /// The root file to sign.
    file: PathBuf,
    /// A root key's secret key file (of this root, or of the previous root for a rotation).
    #[arg(long, value_name = "SECRET")]
    key: PathBuf,
}

impl SignArgs {
    fn run(self) -> Result<(), Failure> {
        let mut root = read_root(&self.file)?;
        let key = load_secret_key(&self.key)?;
        if !root.body().root_keys.contains(key.public()) {
            eprintln!(
                "qasid: note: key {} is not a root key of this root; its signature counts only \
                 if it is a root key of the previous root",
                key.public().id()
            );
        }
        root.sign(&key);
        write_out(&self.file, &root.to_bytes(), true)?;
        println!(
            "signed root {} with key {} ({} signatures)",
            root.version(),
            key.public().id(),
            root.signatures().len()
        );
        Ok(())
    }
}

/// Check a signed root against the repo's chain and put it in the repo layout.
///
/// Root 1 must be signed by a threshold of its own keys; a later root by a threshold of the
/// previous root's keys and of its own. Push or copy the repo to mirrors afterwards, then (after
/// a rotation) publish with the new signing key (`publish --refresh --key S2.key`).
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  qasid root install root.json --repo site")]
pub struct InstallArgs {
    /// The signed root file.
    file: PathBuf,
    /// The repo folder.
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
}

impl InstallArgs {
    fn run(self) -> Result<(), Failure> {
        let bytes = qasid::roots::read_capped(&self.file)?;
        let root = Root::parse(&bytes)?;
        let id = if root.version() == 1 {
            root.publisher_id()
        } else {
            find_publisher(&self.repo, |chain| {
                chain.version() + 1 == root.version()
                    || chain
                        .roots()
                        .get(root.version() as usize - 1)
                        .is_some_and(|r| r.payload() == root.payload())
            })?
        };
        std::fs::create_dir_all(self.repo.join(qasid::repo::PRIVATE_DIR).join("tmp"))
            .map_err(Failure::runtime)?;
        let mut chain = Chain::open(&id, Some(roots_storage(&self.repo, &id)))?;
        match chain.offer(&bytes)? {
            Offered::Accepted(v) => println!(
                "installed root {v} for publisher {} in {}",
                id.id(),
                self.repo.display()
            ),
            Offered::Unchanged => println!("root {} is already installed", root.version()),
        }
        Ok(())
    }
}

/// The publisher in `repo` whose chain `matches`; exactly one must.
fn find_publisher(repo: &Path, matches: impl Fn(&Chain) -> bool) -> Result<PublicKey, Failure> {
    let mut found = Vec::new();
    for id in repo_publishers(repo)? {
        let chain = Chain::open(&id, Some(roots_storage(repo, &id)))?;
        if chain.version() > 0 && matches(&chain) {
            found.push(id);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Failure::usage(anyhow::anyhow!(
            "no publisher in {} has a root this one follows (install root 1 first, or run \
             `qasid root upgrade` for a one-key repo)",
            repo.display()
        ))),
        _ => Err(Failure::usage(anyhow::anyhow!(
            "several publishers in {} match; use --publisher",
            repo.display()
        ))),
    }
}

/// Every publisher folder in a repo.
fn repo_publishers(repo: &Path) -> Result<Vec<PublicKey>, Failure> {
    let dir = repo.join("qasid").join("v1").join("publishers");
    let read = std::fs::read_dir(&dir)
        .map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e} (not a repo?)", dir.display())))?;
    let mut ids = Vec::new();
    for entry in read.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(id) = hex::decode(&name)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .and_then(|b| PublicKey::from_raw(&b).ok())
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The one publisher in a repo, or the one `--publisher` names.
fn repo_publisher(repo: &Path, publisher: Option<&str>) -> Result<Anchor, Failure> {
    if let Some(arg) = publisher {
        return Ok(Anchor::from_arg(arg)?);
    }
    let mut ids = repo_publishers(repo)?;
    match ids.len() {
        1 => Ok(Anchor::key(ids.remove(0))),
        0 => Err(Failure::usage(anyhow::anyhow!(
            "no publisher in {}",
            repo.display()
        ))),
        _ => Err(Failure::usage(anyhow::anyhow!(
            "several publishers in {}: say which with --publisher",
            repo.display()
        ))),
    }
}

/// Write the next root version, unsigned: the current root with the changes asked for.
///
/// Signing keys: the current ones minus --revoke, plus --signing-key (a key given again gets a
/// new expiry: that is how a key is renewed). --root-key replaces the root keys (list them
/// all); --threshold sets a new threshold. The result needs a threshold of the current root's
/// keys and of its own (`root sign`), then `root install`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  qasid root rotate --repo site --out root-2.json --signing-key S2.pub --revoke S.pub
  qasid root rotate --repo site --out root-3.json --root-key A.pub --root-key B.pub \\
      --root-key D.pub --threshold 2")]
pub struct RotateArgs {
    /// The repo folder.
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
    /// Which publisher, when the repo holds several (its id's key or its root.json).
    #[arg(long, value_name = "PUBKEY|ROOT")]
    publisher: Option<String>,
    /// Where to write the unsigned next root.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// A signing key to add (or renew), repeatable.
    #[arg(long = "signing-key", value_name = "PUB")]
    signing_keys: Vec<PathBuf>,
    /// A signing key to drop: everything it signed is refused once readers see this root.
    #[arg(long, value_name = "PUB")]
    revoke: Vec<PathBuf>,
    /// The new root keys (replaces the list; repeat for each).
    #[arg(long = "root-key", value_name = "PUB")]
    root_keys: Vec<PathBuf>,
    /// The new threshold.
    #[arg(long, value_name = "N")]
    threshold: Option<u64>,
    #[command(flatten)]
    delegate: Delegate,
    /// Overwrite --out if it exists.
    #[arg(long)]
    force: bool,
}

impl RotateArgs {
    fn run(self) -> Result<(), Failure> {
        let anchor = repo_publisher(&self.repo, self.publisher.as_deref())?;
        let chain = Chain::anchored(&anchor, None).and_then(|mut c| {
            walk_roots_dir(&mut c, &self.repo)?;
            Ok(c)
        })?;
        let Some(current) = chain.current() else {
            return Err(Failure::usage(anyhow::anyhow!(
                "publisher {} has no root yet: run `qasid root upgrade` (one-key repo) or \
                 `qasid root create` first",
                anchor.id().id()
            )));
        };
        let mut body = current.body().clone();
        body.version += 1;
        body.previous = Some(current.id());
        for path in &self.revoke {
            let key = read_key(path)?;
            let before = body.signing_keys.len();
            body.signing_keys.retain(|d| d.key != key);
            if body.signing_keys.len() == before {
                return Err(Failure::usage(anyhow::anyhow!(
                    "{}: key {} is not a signing key of root {}",
                    path.display(),
                    key.id(),
                    current.version()
                )));
            }
        }
        for path in &self.signing_keys {
            let d = self.delegate.delegation(read_key(path)?)?;
            body.signing_keys.retain(|old| old.key != d.key);
            body.signing_keys.push(d);
        }
        body.signing_keys = sorted_delegations(body.signing_keys)?;
        if !self.root_keys.is_empty() {
            body.root_keys = sorted_keys(
                self.root_keys
                    .iter()
                    .map(|p| read_key(p))
                    .collect::<Result<_, _>>()?,
            )?;
        }
        if let Some(t) = self.threshold {
            body.threshold = t;
        }
        let next = Root::unsigned(body).map_err(Failure::usage)?;
        write_out(&self.out, &next.to_bytes(), self.force)?;
        println!(
            "wrote unsigned root {} to {}: it needs {} signatures of root {}'s keys and {} of \
             its own (qasid root sign {} --key ROOT.key), then qasid root install",
            next.version(),
            self.out.display(),
            current.body().threshold,
            current.version(),
            next.body().threshold,
            self.out.display()
        );
        Ok(())
    }
}

/// Give a one-key repo an explicit root 1 without changing its publisher id.
///
/// The key stays the only root key (threshold 1) and signs root 1; the signing key is the key
/// itself unless --signing-key delegates another. Readers and mirrors that trust the key keep
/// working, and from then on a rotation (`root rotate`) can add root keys and change signing
/// keys without anyone changing what they trust.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  qasid root upgrade --repo site --key keys/publisher.key --signing-key keys/desk.pub"
)]
pub struct UpgradeArgs {
    /// The repo folder.
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
    /// The publisher's key (from `qasid keygen`): it becomes the root key.
    #[arg(long, value_name = "SECRET")]
    key: PathBuf,
    /// A signing key to delegate instead of the key itself (repeatable).
    #[arg(long = "signing-key", value_name = "PUB")]
    signing_keys: Vec<PathBuf>,
    #[command(flatten)]
    delegate: Delegate,
    /// Also write root 1 to this file (give it to readers and mirrors as `root.json`).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

impl UpgradeArgs {
    fn run(self) -> Result<(), Failure> {
        let key = load_secret_key(&self.key)?;
        let id = key.public().clone();
        let signing = if self.signing_keys.is_empty() {
            vec![self.delegate.delegation(id.clone())?]
        } else {
            self.signing_keys
                .iter()
                .map(|p| self.delegate.delegation(read_key(p)?))
                .collect::<Result<_, _>>()?
        };
        let mut root = Root::unsigned(RootBody {
            version: 1,
            previous: None,
            threshold: 1,
            root_keys: vec![id.clone()],
            signing_keys: sorted_delegations(signing)?,
        })
        .map_err(Failure::usage)?;
        root.sign(&key);
        std::fs::create_dir_all(self.repo.join(qasid::repo::PRIVATE_DIR).join("tmp"))
            .map_err(Failure::runtime)?;
        let mut chain = Chain::open(&id, Some(roots_storage(&self.repo, &id)))?;
        if chain.version() > 0 {
            return Err(Failure::usage(anyhow::anyhow!(
                "publisher {} already has roots (version {}): use `qasid root rotate`",
                id.id(),
                chain.version()
            )));
        }
        chain.offer(&root.to_bytes())?;
        if let Some(out) = &self.out {
            write_out(out, &root.to_bytes(), false)?;
        }
        println!(
            "installed root 1 for publisher {} (id unchanged) in {}",
            id.id(),
            self.repo.display()
        );
        Ok(())
    }
}

/// Print a publisher's verified chain of roots and its current signing keys.
///
/// From a repo or mirror folder or URL (walking roots/1.json, 2.json, … and checking each
/// against the one before), or a single root file. The current signing keys are printed in
/// minisign form, for `minisign -Vm bundle.zip -P KEY`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  qasid root show --repo site
  qasid root show --repo https://mirror.example/ --publisher root.json --json
  qasid root show root.json")]
pub struct ShowArgs {
    /// A root file to show (signatures checked, thresholds reported).
    #[arg(
        value_name = "FILE",
        conflicts_with = "repo",
        required_unless_present = "repo"
    )]
    file: Option<PathBuf>,
    /// A repo or mirror folder, or the http(s) URL of one.
    #[arg(long, value_name = "DIR|URL")]
    repo: Option<String>,
    /// The publisher (its id's key or its root.json); needed with a URL or a folder holding
    /// several publishers.
    #[arg(long, value_name = "PUBKEY|ROOT")]
    publisher: Option<String>,
    /// Print a JSON document instead of text.
    #[arg(long)]
    json: bool,
}

impl ShowArgs {
    fn run(self) -> Result<(), Failure> {
        if let Some(file) = &self.file {
            let root = read_root(file)?;
            return self.print(None, std::slice::from_ref(&root), SystemTime::now());
        }
        let repo = self.repo.as_deref().expect("clap requires FILE or --repo");
        let is_url = repo.starts_with("http://") || repo.starts_with("https://");
        let anchor = match (&self.publisher, is_url) {
            (Some(p), _) => Anchor::from_arg(p)?,
            (None, false) => repo_publisher(Path::new(repo), None)?,
            (None, true) => {
                return Err(Failure::usage(anyhow::anyhow!(
                    "--publisher is needed with a URL: a mirror cannot say whom to trust"
                )))
            }
        };
        let mut chain = Chain::anchored(&anchor, None)?;
        if is_url {
            let base = MirrorUrl::parse(repo, &IndexLimits::default()).map_err(Failure::usage)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(Failure::runtime)?;
            runtime.block_on(walk_roots_http(&mut chain, &http_client(), &base))?;
        } else {
            walk_roots_dir(&mut chain, Path::new(repo))?;
        }
        self.print(Some(anchor.id()), chain.roots(), SystemTime::now())
    }

    fn print(
        &self,
        id: Option<&PublicKey>,
        roots: &[Root],
        now: SystemTime,
    ) -> Result<(), Failure> {
        let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        let id = id.cloned().or_else(|| {
            roots
                .first()
                .filter(|r| r.version() == 1)
                .map(Root::publisher_id)
        });
        let current = roots.last();
        if self.json {
            let doc = serde_json::json!({
                "publisher": id.as_ref().map(super::json::publisher),
                "version": current.map_or(0, Root::version),
                "roots": roots.iter().map(|r| serde_json::json!({
                    "version": r.version(),
                    "sha256": r.id(),
                    "threshold": r.body().threshold,
                    "root_keys": r.body().root_keys.iter().map(PublicKey::to_base64).collect::<Vec<_>>(),
                    "signing_keys": r.body().signing_keys.iter().map(|d| serde_json::json!({
                        "key": d.key.to_base64(),
                        "key_id": d.key.id().to_string(),
                        "roles": d.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                        "expires": time(d.expires),
                        "expired": d.expires <= now,
                    })).collect::<Vec<_>>(),
                    "signed_by": r.signatures().iter().map(|(k, _)| k.id().to_string()).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "signing_keys": current.map(|r| r.body().signing_keys.iter().filter(|d| d.expires > now).map(|d| serde_json::json!({
                    "minisign": d.key.to_file_text(),
                    "roles": d.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                })).collect::<Vec<_>>()).unwrap_or_default(),
            });
            // docs/JSON.md: no nulls; an unknown publisher (a lone root file past version 1)
            // is left out.
            let mut doc = doc;
            if id.is_none() {
                if let Some(map) = doc.as_object_mut() {
                    map.remove("publisher");
                }
            }
            return print_json(&doc);
        }
        // Written, not printed: a closed stdout (`root show | head`) ends quietly.
        write_text(&mut std::io::stdout().lock(), id.as_ref(), roots, now).map_err(Failure::runtime)
    }
}

/// `root show`'s text form.
fn write_text(
    out: &mut impl std::io::Write,
    id: Option<&PublicKey>,
    roots: &[Root],
    now: SystemTime,
) -> std::io::Result<()> {
    let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let current = roots.last();
    match &id {
        Some(id) => writeln!(out, "publisher: {}", id.id())?,
        None => writeln!(out, "publisher: (not root 1: unknown from this file alone)")?,
    }
    if roots.is_empty() {
        writeln!(
            out,
            "no roots: a one-key publisher (its key signs everything)"
        )?;
    }
    for r in roots {
        let b = r.body();
        writeln!(
            out,
            "root {} (sha256 {}): threshold {} of {} root keys, signed by {} keys",
            r.version(),
            r.id(),
            b.threshold,
            b.root_keys.len(),
            r.signatures().len()
        )?;
        for k in &b.root_keys {
            let signed = r.signatures().iter().any(|(s, _)| s == k);
            writeln!(
                out,
                "  root key    {} {}",
                k.id(),
                if signed { "(signed)" } else { "" }
            )?;
        }
        for d in &b.signing_keys {
            let roles: Vec<_> = d.roles.iter().map(|r| r.as_str()).collect();
            writeln!(
                out,
                "  signing key {} [{}] expires {}{}",
                d.key.id(),
                roles.join(","),
                time(d.expires),
                if d.expires <= now { " (EXPIRED)" } else { "" }
            )?;
        }
    }
    if let Some(current) = current {
        writeln!(
            out,
            "current signing keys (minisign public key form, for minisign -Vm):"
        )?;
        for d in current
            .body()
            .signing_keys
            .iter()
            .filter(|d| d.expires > now)
        {
            write!(out, "{}", d.key.to_file_text())?;
        }
    }
    Ok(())
}
