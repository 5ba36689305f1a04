//! AWS profiles: the shared credentials and config files (`~/.aws/credentials`,
//! `~/.aws/config`) that AWS's own tools read, for when the `AWS_*` variables do not say it all.
//!
//! Owns the choice of profile (`AWS_PROFILE`, else `default`), where the files are
//! (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`, else under `$HOME/.aws/`) and a small INI
//! reader: each file at most [`MAX_AWS_PROFILE_FILE_BYTES`], `[section]` and `key = value`
//! lines, `#`/`;` comments, indented sub-settings skipped; anything else is a one-line error
//! naming the file and line. Credentials are taken as a unit (key id, secret and token from one
//! place). A profile named by `AWS_PROFILE` that neither file has is a usage error naming it;
//! a missing `default` profile or missing files are no error (there is just no profile).

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use super::BucketError;
use crate::limits::MAX_AWS_PROFILE_FILE_BYTES;

/// What a profile says; any field may be absent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Profile")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Where a profile comes from: its name and the two files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileFiles {
    pub name: String,
    /// `AWS_PROFILE` named it (so it must exist).
    pub named: bool,
    pub credentials: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

impl ProfileFiles {
    /// From `var` (the process's environment, or a test's): `AWS_PROFILE`,
    /// `AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE` and `HOME`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> ProfileFiles {
        let home = var("HOME").map(PathBuf::from);
        let under_home = |file: &str| home.as_ref().map(|h| h.join(".aws").join(file));
        let named = var("AWS_PROFILE");
        ProfileFiles {
            named: named.is_some(),
            name: named.unwrap_or_else(|| "default".to_owned()),
            credentials: var("AWS_SHARED_CREDENTIALS_FILE")
                .map(PathBuf::from)
                .or_else(|| under_home("credentials")),
            config: var("AWS_CONFIG_FILE")
                .map(PathBuf::from)
                .or_else(|| under_home("config")),
        }
    }

    /// Reads the profile. `Ok(None)` when there is none (no files, or no `default` profile).
    pub fn load(&self) -> Result<Option<Profile>, BucketError> {
        // The credentials file names sections by the bare profile name; the config file by
        // `profile NAME`, except `default`.
        let in_credentials = match &self.credentials {
            Some(path) => read(path)?.and_then(|mut s| s.remove(&self.name)),
            None => None,
        };
        let config_section = match self.name.as_str() {
            "default" => "default".to_owned(),
            name => format!("profile {name}"),
        };
        let in_config = match &self.config {
            Some(path) => read(path)?.and_then(|mut s| s.remove(&config_section)),
            None => None,
        };
        if in_credentials.is_none() && in_config.is_none() {
            if !self.named {
                return Ok(None);
            }
            let shown = |p: &Option<PathBuf>| {
                p.as_ref()
                    .map_or("(no file: HOME is not set)".to_owned(), |p| {
                        p.display().to_string()
                    })
            };
            return Err(BucketError::NoProfile {
                name: self.name.clone(),
                credentials: shown(&self.credentials),
                config: shown(&self.config),
            });
        }
        let credentials = in_credentials.unwrap_or_default();
        let config = in_config.unwrap_or_default();
        // Credentials as a unit: the credentials file's if it has a key id, else the config's.
        let keys = if credentials.contains_key("aws_access_key_id") {
            &credentials
        } else {
            &config
        };
        let get = |map: &HashMap<String, String>, key: &str| map.get(key).cloned();
        Ok(Some(Profile {
            access_key_id: get(keys, "aws_access_key_id"),
            secret_access_key: get(keys, "aws_secret_access_key"),
            session_token: get(keys, "aws_session_token"),
            region: get(&config, "region"),
            endpoint: get(&config, "endpoint_url"),
        }))
    }
}

type Sections = HashMap<String, HashMap<String, String>>;

/// Reads and parses one file; `Ok(None)` when it does not exist.
fn read(path: &Path) -> Result<Option<Sections>, BucketError> {
    let bad = |line: Option<usize>, reason: String| BucketError::Profile {
        path: path.to_owned(),
        line,
        reason,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(None, e.to_string())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_AWS_PROFILE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(None, e.to_string()))?;
    if bytes.len() as u64 > MAX_AWS_PROFILE_FILE_BYTES {
        return Err(bad(
            None,
            format!("larger than {MAX_AWS_PROFILE_FILE_BYTES} bytes: not an AWS profile file"),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| bad(None, "not UTF-8 text".into()))?;
    parse(&text)
        .map(Some)
        .map_err(|(line, reason)| bad(Some(line), reason))
}

/// Parses INI text into sections of lowercase keys; an error is (line number, reason).
fn parse(text: &str) -> Result<Sections, (usize, String)> {
    let mut sections = Sections::new();
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        // Indented lines are sub-settings of the key above (`s3 =` then `  addressing_style
        // = path`): none of them is one qasid reads.
        if raw.starts_with([' ', '\t']) && current.is_some() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let Some(name) = name.strip_suffix(']') else {
                return Err((number, "a section header must end with `]`".into()));
            };
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            if name.is_empty() {
                return Err((number, "an empty section name".into()));
            }
            sections.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err((number, "expected `key = value` or `[section]`".into()));
        };
        let Some(section) = &current else {
            return Err((number, "a setting before any `[section]`".into()));
        };
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err((number, "a setting without a name".into()));
        }
        sections
            .get_mut(section)
            .expect("entered above")
            .insert(key, value.trim().to_owned());
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keys_comments_and_sub_settings() {
        let text = "# comment\n[default]\nregion = eu-west-1\n\n[profile garage]\n\
                    AWS_ACCESS_KEY_ID=GK1\n; another\nendpoint_url = http://127.0.0.1:3900\n\
                    s3 =\n  addressing_style = path\nregion=garage\n";
        let s = parse(text).unwrap();
        assert_eq!(s["default"]["region"], "eu-west-1");
        let g = &s["profile garage"];
        assert_eq!(g["aws_access_key_id"], "GK1");
        assert_eq!(g["endpoint_url"], "http://127.0.0.1:3900");
        assert_eq!(g["region"], "garage");
        assert!(!g.contains_key("addressing_style"));
    }

    #[test]
    fn fail_malformed_lines_name_their_line() {
        assert_eq!(parse("region = x\n").unwrap_err().0, 1);
        assert_eq!(parse("[default]\nregion\n").unwrap_err().0, 2);
        assert_eq!(parse("[default]\n[broken\n").unwrap_err().0, 2);
        assert_eq!(parse("[default]\n= x\n").unwrap_err().0, 2);
    }

    fn files(dir: &Path, profile: Option<&str>) -> ProfileFiles {
        let home = dir.to_str().unwrap().to_owned();
        let profile = profile.map(str::to_owned);
        ProfileFiles::from_vars(move |k| match k {
            "HOME" => Some(home.clone()),
            "AWS_PROFILE" => profile.clone(),
            _ => None,
        })
    }

    #[test]
    fn a_named_profile_must_exist_and_default_may_not() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(files(dir.path(), None).load().unwrap(), None);
        let e = files(dir.path(), Some("news")).load().unwrap_err();
        assert!(e.to_string().contains("news"), "{e}");
        assert_eq!(e.class(), crate::ErrorClass::Usage);
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        std::fs::write(
            dir.path().join(".aws/credentials"),
            "[news]\naws_access_key_id = A\naws_secret_access_key = S\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(".aws/config"),
            "[profile news]\nregion = r\nendpoint_url = https://s3.example.org\n\
             aws_access_key_id = ignored\n",
        )
        .unwrap();
        let p = files(dir.path(), Some("news")).load().unwrap().unwrap();
        assert_eq!(p.access_key_id.as_deref(), Some("A"));
        assert_eq!(p.secret_access_key.as_deref(), Some("S"));
        assert_eq!(p.region.as_deref(), Some("r"));
        assert_eq!(p.endpoint.as_deref(), Some("https://s3.example.org"));
        std::fs::write(dir.path().join(".aws/config"), "[profile news\n").unwrap();
        let e = files(dir.path(), Some("news")).load().unwrap_err();
        assert!(e.to_string().contains("config line 1"), "{e}");
    }

    #[test]
    fn fail_an_oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, vec![b'#'; MAX_AWS_PROFILE_FILE_BYTES as usize + 1]).unwrap();
        let e = read(&path).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }
}
