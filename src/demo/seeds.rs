//! The sample articles of `seeds/`, compiled into the binary so `qasid demo` works from an
//! installed binary far from the source tree.
//!
//! Owns only the embedded bytes and writing them out; a test checks this list against the
//! `seeds/` folder so a new seed file cannot be forgotten. Never decides anything about trust.

use std::fs;
use std::io;
use std::path::Path;

/// One embedded file: its path below `seeds/` and its bytes.
pub struct SeedFile {
    pub path: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! seed_files {
    ($($path:literal),* $(,)?) => {
        &[$(SeedFile {
            path: $path,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/seeds/", $path)),
        }),*]
    };
}

/// Every file of `seeds/`.
pub const SEED_FILES: &[SeedFile] = seed_files![
    "long-read-shutdown-economics/article.md",
    "mirror-network-launch/article.md",
    "mirror-network-launch/images/mirror-map.png",
    "urdu-press-freedom/article.md",
];

/// Writes the seeds below `dir` (one folder per article) and returns the article folder names,
/// sorted.
pub fn write_seeds(dir: &Path) -> io::Result<Vec<String>> {
    let mut articles = Vec::new();
    for file in SEED_FILES {
        let path = dir.join(file.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, file.bytes)?;
        let article = file.path.split('/').next().unwrap_or(file.path);
        if !articles.iter().any(|a| a == article) {
            articles.push(article.to_owned());
        }
    }
    articles.sort();
    Ok(articles)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_below(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files_below(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap();
                out.push(rel.to_str().unwrap().to_owned());
            }
        }
    }

    #[test]
    fn embedded_list_matches_the_seeds_folder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
        let mut on_disk = Vec::new();
        files_below(&root, &root, &mut on_disk);
        on_disk.sort();
        let embedded: Vec<&str> = SEED_FILES.iter().map(|f| f.path).collect();
        assert_eq!(on_disk, embedded, "update SEED_FILES in src/demo/seeds.rs");
    }

    #[test]
    fn written_seeds_are_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let articles = write_seeds(dir.path()).unwrap();
        assert_eq!(articles.len(), 3);
        for file in SEED_FILES {
            assert_eq!(fs::read(dir.path().join(file.path)).unwrap(), file.bytes);
        }
    }
}
