//! A real Garage cluster (three nodes on 127.0.0.1, replication factor 3) for the object-storage
//! tests, started by `scripts/garage-cluster.sh`. Tests that only need a bucket of their own share
//! one cluster ([`bucket`]); tests that stop nodes get a private one ([`Cluster::private`]).
//! Every cluster is stopped when its owner goes: a private one when it drops, the shared one by
//! the script's watchdog when this test process exits (a static is never dropped), so no Garage
//! outlives the tests, even after a panic or a kill.
#![allow(dead_code)] // Each test uses a different subset.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The script, from the crate root.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/garage-cluster.sh")
}

/// Runs the script on `dir` with `args`; its stdout, or a panic with its stderr. The script
/// bounds each of its own waits (60 s to boot).
fn run_script(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(script())
        .arg(dir)
        .args(args)
        .output()
        .expect("bash runs scripts/garage-cluster.sh");
    assert!(
        out.status.success(),
        "scripts/garage-cluster.sh {} {}: {}\n(needs Garage 2.5.0 on PATH: \
         cargo install --locked garage --version 2.5.0)",
        dir.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The `export KEY=VALUE` lines the script prints.
fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A running three-node cluster, stopped on drop (the shared one is a static: the script's
/// watchdog stops it).
pub struct Cluster {
    dir: tempfile::TempDir,
    /// What the script printed: node 1's endpoints, the key, all nodes' endpoints.
    env: Vec<(String, String)>,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("qasid-garage-")
            .tempdir()
            .unwrap();
        let owner = std::process::id().to_string();
        let env = parse_env(&run_script(dir.path(), &["start", "--owner", &owner]));
        Cluster { dir, env }
    }

    /// A cluster of the caller's own, for tests that stop nodes.
    pub fn private() -> Arc<Cluster> {
        Arc::new(Cluster::start())
    }

    /// The cluster's directory (configs, data, node logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn var(&self, key: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("garage-cluster.sh printed no {key}"))
    }

    /// Node `n`'s (1-3) S3 API endpoint, `http://127.0.0.1:PORT`.
    pub fn s3_url(&self, n: usize) -> String {
        self.var("GARAGE_S3_URLS")
            .split(',')
            .nth(n - 1)
            .unwrap()
            .to_owned()
    }

    /// Node `n`'s (1-3) website endpoint, `http://127.0.0.1:PORT/`.
    pub fn web_url(&self, n: usize) -> String {
        self.var("GARAGE_WEB_URLS")
            .split(',')
            .nth(n - 1)
            .unwrap()
            .to_owned()
    }

    /// The root domain of the website endpoints: `<bucket><root>` names a bucket in `Host`.
    pub fn web_root_domain(&self) -> String {
        self.var("GARAGE_WEB_ROOT_DOMAIN").to_owned()
    }

    /// Kills node `n` (1-3), as a crash would.
    pub fn node_stop(&self, n: usize) {
        run_script(self.dir(), &["node-stop", &n.to_string()]);
    }

    /// Starts node `n` again and waits (bounded) until the cluster is healthy.
    pub fn node_start(&self, n: usize) {
        run_script(self.dir(), &["node-start", &n.to_string()]);
    }

    /// A new bucket, readable and writable with the cluster's key, website access on. Its name
    /// starts with `hint` (lowercased, other characters as `-`) and is unique in this process.
    pub fn bucket(self: &Arc<Self>, hint: &str) -> Bucket {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let mut name: String = hint
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9') => c,
                _ => '-',
            })
            .take(40)
            .collect();
        name = format!(
            "{}-{}",
            name.trim_matches('-'),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let env = parse_env(&run_script(self.dir(), &["bucket", &name]));
        Bucket {
            name,
            env,
            cluster: self.clone(),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg(self.dir.path())
            .arg("stop")
            .output();
    }
}

/// A bucket of a test's own on the shared cluster (started on first use).
pub fn bucket(hint: &str) -> Bucket {
    static SHARED: OnceLock<Arc<Cluster>> = OnceLock::new();
    SHARED
        .get_or_init(|| Arc::new(Cluster::start()))
        .bucket(hint)
}

/// A bucket, with what a client needs to reach it.
pub struct Bucket {
    pub name: String,
    /// `AWS_*` and `GARAGE_*` variables for this bucket (node 1's endpoints).
    pub env: Vec<(String, String)>,
    pub cluster: Arc<Cluster>,
}

impl Bucket {
    /// Gives the bucket the global alias `alias` (`localhost`: the website endpoints answer
    /// `http://localhost:PORT/` with this bucket, no Host header needed).
    pub fn alias(&self, alias: &str) {
        run_script(self.cluster.dir(), &["alias", &self.name, alias]);
    }

    /// The CORS rule of docs/OBJECT-STORAGE.md on the bucket's website (any origin, GET and
    /// HEAD, Range), set through Garage's admin API: the browser reader can read it.
    pub fn cors(&self) {
        run_script(self.cluster.dir(), &["cors", &self.name]);
    }

    /// `s3://<bucket>/<prefix>` (no prefix when it is empty).
    pub fn url(&self, prefix: &str) -> String {
        if prefix.is_empty() {
            format!("s3://{}", self.name)
        } else {
            format!("s3://{}/{prefix}", self.name)
        }
    }

    /// Sets the bucket's `AWS_*` variables on `cmd` (node 1's S3 endpoint).
    pub fn envs<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.envs(
            self.env
                .iter()
                .filter(|(k, _)| k.starts_with("AWS_"))
                .map(|(k, v)| (k, v)),
        )
    }

    pub fn var(&self, key: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("garage-cluster.sh printed no {key}"))
    }
}

impl Bucket {
    /// `rclone` (a third-party S3 client) with this bucket's cluster as remote `garage:`,
    /// through node `n`'s S3 API. Tests use it to put objects the way any tool would, foreign
    /// and corrupt ones included.
    pub fn rclone(&self, n: usize) -> Command {
        let mut cmd = Command::new("rclone");
        // rclone's AWS SDK refuses a CA bundle over its own transport ("unsupported transport").
        cmd.env_remove("AWS_CA_BUNDLE")
            .env("RCLONE_CONFIG_GARAGE_TYPE", "s3")
            .env("RCLONE_CONFIG_GARAGE_PROVIDER", "Other")
            .env(
                "RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID",
                self.var("AWS_ACCESS_KEY_ID"),
            )
            .env(
                "RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY",
                self.var("AWS_SECRET_ACCESS_KEY"),
            )
            .env("RCLONE_CONFIG_GARAGE_REGION", self.var("AWS_REGION"))
            .env("RCLONE_CONFIG_GARAGE_ENDPOINT", self.cluster.s3_url(n))
            .env("RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE", "true")
            .args([
                "--config",
                "/dev/null",
                "--retries",
                "1",
                "--contimeout",
                "5s",
            ])
            .args(["--timeout", "20s", "--low-level-retries", "2"]);
        cmd
    }

    /// Puts `bytes` at `key` through node 1 (with rclone).
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("object");
        std::fs::write(&file, bytes).unwrap();
        let target = format!("garage:{}/{key}", self.name);
        let out = self
            .rclone(1)
            .arg("copyto")
            .arg(&file)
            .arg(&target)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rclone copyto {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Copies a folder (a published repo) under `prefix` through node 1 (with rclone).
    pub fn put_tree(&self, dir: &Path, prefix: &str) {
        let target = format!("garage:{}/{prefix}", self.name);
        let out = self
            .rclone(1)
            .arg("copy")
            .arg(dir)
            .arg(&target)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rclone copy {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
