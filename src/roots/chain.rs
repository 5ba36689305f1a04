//! The chain of roots a verifier holds for one publisher, stored one file per version.
//!
//! Storage: `<dir>/<N>.json` for N = 1, 2, … (the exact bytes accepted, each re-verified in
//! order whenever the chain is opened). A publisher's repo and a mirror's store keep this folder
//! in the served layout (`qasid/v1/publishers/<id>/roots/`); a reader keeps it in its state.
//! Only a root that chains (version + 1, thresholds of the previous and its own root keys) is
//! ever written, so the folder always holds a valid chain. Evidence of root equivocation goes to
//! `<evidence>/root-<id hex>-<version>-<sha256 prefix>/`: deduplicated by content and at most
//! [`MAX_ROOT_EVIDENCE`] folders per publisher.

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Anchor, Authority, Root, RootError};
use crate::index::atomic;
use crate::keys::{PublicKey, Role};
use crate::limits::{MAX_ROOT_EVIDENCE, MAX_ROOT_STEPS, MAX_ROOT_VERSIONS};

/// Where a chain lives on disk.
#[derive(Debug, Clone)]
pub struct ChainStorage {
    /// The folder of `<N>.json` files.
    pub dir: PathBuf,
    /// A folder for temp files on the same file system, outside anything served.
    pub tmp: PathBuf,
    /// Where evidence of equivocation is written.
    pub evidence: PathBuf,
}

/// What [`Chain::offer`] did with an authentic root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// The root was the next version: it is now the current root.
    Accepted(u64),
    /// The same root (same payload) is already held.
    Unchanged,
}

/// A verified chain of roots `1 ..= N` for one publisher id (empty: the implicit one-key root).
#[derive(Debug)]
pub struct Chain {
    id: PublicKey,
    roots: Vec<Root>,
    storage: Option<ChainStorage>,
}

impl Chain {
    /// Opens the chain stored for `id` (creating nothing), re-verifying every held root. With
    /// `None`, an in-memory chain that holds nothing yet.
    pub fn open(id: &PublicKey, storage: Option<ChainStorage>) -> Result<Self, RootError> {
        let mut chain = Self {
            id: id.clone(),
            roots: Vec::new(),
            storage: None,
        };
        if let Some(storage) = &storage {
            for version in 1.. {
                if version > MAX_ROOT_VERSIONS {
                    return Err(RootError::TooMany {
                        limit: MAX_ROOT_VERSIONS,
                    });
                }
                let path = storage.dir.join(format!("{version}.json"));
                let bytes = match super::read_capped(&path) {
                    Ok(bytes) => bytes,
                    Err(RootError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        break
                    }
                    Err(e) => return Err(e),
                };
                let corrupt = |source| RootError::StateCorrupt {
                    path: path.clone(),
                    source: Box::new(source),
                };
                let root = Root::parse(&bytes).map_err(corrupt)?;
                chain.check_next(&root).map_err(corrupt)?;
                chain.roots.push(root);
            }
        }
        chain.storage = storage;
        Ok(chain)
    }

    /// Opens the chain for `anchor`'s id and, when the anchor is a root file, offers it (so a
    /// pinned first root is held from the start).
    pub fn anchored(anchor: &Anchor, storage: Option<ChainStorage>) -> Result<Self, RootError> {
        let mut chain = Self::open(anchor.id(), storage)?;
        if let Some(first) = anchor.first() {
            chain.offer(&first.to_bytes())?;
        }
        Ok(chain)
    }

    pub fn id(&self) -> &PublicKey {
        &self.id
    }

    /// The current root's version; 0 when no root is held (the implicit one-key root).
    pub fn version(&self) -> u64 {
        self.roots.len() as u64
    }

    pub fn current(&self) -> Option<&Root> {
        self.roots.last()
    }

    /// Every held root, version 1 first.
    pub fn roots(&self) -> &[Root] {
        &self.roots
    }

    /// Whom to trust at `now`: the current root's unexpired delegations, or the id alone.
    pub fn authority(&self, now: SystemTime) -> Authority {
        match self.roots.last() {
            Some(root) => Authority::from_root(&self.id, root, now),
            None => Authority::single(&self.id),
        }
    }

    /// Every key any held root ever delegated, for every role it had (and the id itself when
    /// it is a real one-key id), expiry ignored. For a bundle listed by an authentic head (the
    /// head vouches for its sha256; its own signature only has to be the publisher's, from any
    /// time: revoking a key must not erase the archive), and for a publisher re-reading its own
    /// repo (the index a dropped key signed must load so that a new key can sign over it).
    pub fn every_signer(&self) -> Authority {
        let mut signers: [Vec<PublicKey>; 3] = Default::default();
        let one_key_id = self
            .roots
            .first()
            .is_none_or(|r| r.body.root_keys == [self.id.clone()]);
        for (i, role) in Role::ALL.iter().enumerate() {
            let keys = &mut signers[i];
            if one_key_id {
                keys.push(self.id.clone());
            }
            for root in &self.roots {
                for d in &root.body.signing_keys {
                    if d.roles.contains(role) && !keys.contains(&d.key) {
                        keys.push(d.key.clone());
                    }
                }
            }
        }
        Authority {
            id: self.id.clone(),
            version: self.version(),
            signers,
        }
    }

    /// Does `root` chain onto the held roots as the next version?
    fn check_next(&self, root: &Root) -> Result<(), RootError> {
        match self.roots.last() {
            None => root.verify_first(&self.id),
            Some(previous) => root.verify_successor(previous),
        }
    }

    /// Offers a root file's bytes: the next version is verified and stored; a held version
    /// with the same payload changes nothing; a different valid root with a held version is
    /// equivocation (evidence saved); an older different invalid one is a rollback.
    pub fn offer(&mut self, bytes: &[u8]) -> Result<Offered, RootError> {
        let root = Root::parse(bytes)?;
        let held = self.version();
        let version = root.version();
        if version == held + 1 {
            if self.roots.len() as u64 >= MAX_ROOT_VERSIONS {
                return Err(RootError::TooMany {
                    limit: MAX_ROOT_VERSIONS,
                });
            }
            self.check_next(&root)?;
            if let Some(storage) = &self.storage {
                fs::create_dir_all(&storage.dir).map_err(RootError::io(&storage.dir))?;
                fs::create_dir_all(&storage.tmp).map_err(RootError::io(&storage.tmp))?;
                let path = storage.dir.join(format!("{version}.json"));
                atomic::write(&storage.tmp, &path, bytes).map_err(RootError::io(&path))?;
            }
            self.roots.push(root);
            return Ok(Offered::Accepted(version));
        }
        if version > held + 1 || version == 0 {
            return Err(RootError::WrongVersion {
                held,
                offered: version,
            });
        }
        let existing = &self.roots[(version - 1) as usize];
        if existing.payload() == root.payload() {
            return Ok(Offered::Unchanged);
        }
        let valid = match version {
            1 => root.verify_first(&self.id),
            _ => root.verify_successor(&self.roots[(version - 2) as usize]),
        };
        if valid.is_err() {
            return Err(RootError::Rollback {
                held,
                offered: version,
            });
        }
        let evidence = self.write_evidence(existing, &root, bytes);
        Err(RootError::Equivocation { version, evidence })
    }

    /// Walks forward from the held root: asks `fetch` for version N+1, N+2, … (at most
    /// [`MAX_ROOT_STEPS`]) until it has none, verifying each. When a root does not chain, or
    /// the source has none newer, the held version is fetched again from the same source: if
    /// that one is a different valid root, the source proves equivocation. Returns the number
    /// of roots accepted. The one walk every verifier uses (reader, `index show`, `root`
    /// commands); [`Chain::walk_now`] runs it over a source that never waits (a folder).
    pub async fn walk(
        &mut self,
        mut fetch: impl AsyncFnMut(u64) -> Option<Vec<u8>>,
    ) -> Result<u64, RootError> {
        let mut accepted = 0;
        while accepted < MAX_ROOT_STEPS {
            let next = self.version() + 1;
            let Some(bytes) = fetch(next).await else {
                // Nothing newer here: the source's copy of the held root must be the same one.
                if next > 1 {
                    if let Some(held) = fetch(next - 1).await {
                        if let Err(e @ RootError::Equivocation { .. }) = self.offer(&held) {
                            return Err(e);
                        }
                    }
                }
                break;
            };
            match self.offer(&bytes) {
                Ok(_) => accepted += 1,
                Err(e) => {
                    // Asking for the held version again tells a forgery from equivocation.
                    if e.breaks_chain() && next > 1 {
                        if let Some(held) = fetch(next - 1).await {
                            self.offer(&held)?;
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(accepted)
    }

    /// [`Chain::walk`] over a source that answers at once (files on disk).
    pub fn walk_now(
        &mut self,
        mut fetch: impl FnMut(u64) -> Option<Vec<u8>>,
    ) -> Result<u64, RootError> {
        let walk = std::pin::pin!(self.walk(async |version| fetch(version)));
        let waker = std::task::Waker::noop();
        match walk.poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(result) => result,
            std::task::Poll::Pending => {
                unreachable!("a walk whose fetch never waits is ready at once")
            }
        }
    }

    /// Keeps both roots as evidence; `None` when it could not be written or the per-publisher
    /// cap is reached (the error is returned all the same).
    fn write_evidence(&self, held: &Root, offered: &Root, offered_bytes: &[u8]) -> Option<PathBuf> {
        let storage = self.storage.as_ref()?;
        let prefix = format!("root-{}-", self.id.hex());
        let name = format!(
            "{prefix}{}-{}",
            offered.version(),
            &offered.id().to_string()[..16]
        );
        let dir = storage.evidence.join(&name);
        if dir.exists() {
            return Some(dir);
        }
        let count = fs::read_dir(&storage.evidence)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .count()
            })
            .unwrap_or(0);
        if count >= MAX_ROOT_EVIDENCE {
            tracing::warn!("root equivocation evidence not saved: {MAX_ROOT_EVIDENCE} folders already kept for this publisher");
            return None;
        }
        write_evidence_dir(&self.id, &dir, held, offered, offered_bytes)
            .map_err(|e| {
                tracing::warn!(
                    "saving root equivocation evidence in {}: {e}",
                    dir.display()
                )
            })
            .ok()
            .map(|()| dir)
    }
}

fn write_evidence_dir(
    id: &PublicKey,
    dir: &Path,
    held: &Root,
    offered: &Root,
    offered_bytes: &[u8],
) -> std::io::Result<()> {
    let parent = dir.parent().expect("evidence folders have a parent");
    fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(parent)?;
    fs::write(tmp.path().join("held.json"), held.to_bytes())?;
    fs::write(tmp.path().join("new.json"), offered_bytes)?;
    let readme = format!(
        "qasid found two different roots with version {version} for publisher {id}, both \
         validly signed: a threshold of root keys signed two histories.\n\n\
         held.json  the root this machine had accepted (payload sha256 {held_id})\n\
         new.json   the root just offered (payload sha256 {new_id})\n\n\
         docs/PROTOCOL.md (section 11) says how anyone can check them: each verifies against \
         the previous root. Root keys were stolen or their holders coerced. Keep these files \
         and tell the publisher through a channel you trust.\n",
        version = offered.version(),
        id = id.id(),
        held_id = held.id(),
        new_id = offered.id(),
    );
    fs::write(tmp.path().join("README.txt"), readme)?;
    for file in ["held.json", "new.json", "README.txt"] {
        fs::File::open(tmp.path().join(file))?.sync_all()?;
    }
    fs::rename(tmp.keep(), dir)?;
    atomic::sync_parent(dir)
}
