//! AWS credentials for signing, from where the AWS tools look first:
//!
//! 1. the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and,
//!    for temporary credentials, `AWS_SESSION_TOKEN`;
//! 2. the shared credentials file: `AWS_SHARED_CREDENTIALS_FILE`, else
//!    `~/.aws/credentials`, profile `AWS_PROFILE` (else `default`), keys
//!    `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`.
//!
//! Credentials are read again for every request (a file read of a few
//! hundred bytes), so rotated or refreshed credentials are picked up
//! without a restart. Instance roles (IMDS) and SSO are not supported.
//!
//! The credentials file is INI. It is read here by a few lines of code
//! rather than a crate: only one section's three keys matter, and the
//! rules the AWS CLI applies are simple (`[name]` sections, `key = value`
//! lines, `#` and `;` comment lines, keys and names compared after
//! trimming, the last value of a repeated key wins). The file is read up to
//! [`MAX_FILE`] bytes.

use std::fmt;
use std::path::{Path, PathBuf};

/// A credentials file is small; more is not one.
pub const MAX_FILE: u64 = 1024 * 1024;

/// Keys to sign with.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for AwsCredentials {
    // The secret and the token are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"..")
            .field("session_token", &self.session_token.as_ref().map(|_| ".."))
            .finish()
    }
}

/// No usable credentials.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or write them \
         to {path} under [{profile}] (aws_access_key_id, aws_secret_access_key)"
    )]
    None { path: String, profile: String },
    #[error("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not (or the other way round)")]
    HalfEnvironment,
    #[error("cannot read the AWS credentials file {path}: {detail}")]
    File { path: String, detail: String },
    #[error("the AWS credentials file {path} has no profile [{profile}]")]
    NoProfile { path: String, profile: String },
    #[error("profile [{profile}] of {path} lacks {key}")]
    MissingKey {
        path: String,
        profile: String,
        key: &'static str,
    },
}

/// Where credentials come from; built from the environment once, read on
/// every [`CredentialSource::load`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialSource {
    /// `(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)` as
    /// seen at construction, if any was set.
    env: Option<(Option<String>, Option<String>, Option<String>)>,
    file: PathBuf,
    profile: String,
}

impl CredentialSource {
    /// From the process environment.
    pub fn from_env() -> CredentialSource {
        CredentialSource::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// From a lookup of environment variables (for tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> CredentialSource {
        let id = var("AWS_ACCESS_KEY_ID");
        let secret = var("AWS_SECRET_ACCESS_KEY");
        let env =
            (id.is_some() || secret.is_some()).then(|| (id, secret, var("AWS_SESSION_TOKEN")));
        let file = var("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = var("HOME").unwrap_or_else(|| "/root".to_string());
                Path::new(&home).join(".aws").join("credentials")
            });
        let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
        CredentialSource { env, file, profile }
    }

    /// Fixed credentials (from a config file).
    pub fn fixed(creds: AwsCredentials) -> CredentialSource {
        CredentialSource {
            env: Some((
                Some(creds.access_key_id),
                Some(creds.secret_access_key),
                creds.session_token,
            )),
            file: PathBuf::new(),
            profile: String::new(),
        }
    }

    /// The current credentials.
    pub fn load(&self) -> Result<AwsCredentials, CredentialsError> {
        if let Some((id, secret, token)) = &self.env {
            return match (id, secret) {
                (Some(id), Some(secret)) => Ok(AwsCredentials {
                    access_key_id: id.clone(),
                    secret_access_key: secret.clone(),
                    session_token: token.clone(),
                }),
                _ => Err(CredentialsError::HalfEnvironment),
            };
        }
        let path = self.file.display().to_string();
        let text = match read_bounded(&self.file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CredentialsError::None {
                    path,
                    profile: self.profile.clone(),
                })
            }
            Err(e) => {
                return Err(CredentialsError::File {
                    path,
                    detail: e.to_string(),
                })
            }
        };
        parse_credentials_file(&text, &self.profile).map_err(|e| e.at(&path))
    }
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    let mut file = std::fs::File::open(path)?.take(MAX_FILE + 1);
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_FILE} bytes"
        )));
    }
    text.push_str(&String::from_utf8_lossy(&bytes));
    Ok(text)
}

impl CredentialsError {
    /// Names the file in an error from [`parse_credentials_file`].
    fn at(self, path: &str) -> CredentialsError {
        match self {
            CredentialsError::NoProfile { profile, .. } => CredentialsError::NoProfile {
                path: path.to_string(),
                profile,
            },
            CredentialsError::MissingKey { profile, key, .. } => CredentialsError::MissingKey {
                path: path.to_string(),
                profile,
                key,
            },
            other => other,
        }
    }
}

/// The credentials of `profile` in the text of a credentials file.
pub fn parse_credentials_file(
    text: &str,
    profile: &str,
) -> Result<AwsCredentials, CredentialsError> {
    let mut in_profile = false;
    let mut seen = false;
    let mut id = None;
    let mut secret = None;
    let mut token = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            seen |= in_profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = Some(value.trim().to_string()).filter(|v| !v.is_empty());
        match key.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => id = value,
            "aws_secret_access_key" => secret = value,
            "aws_session_token" => token = value,
            _ => {}
        }
    }
    let missing = |key| CredentialsError::MissingKey {
        path: String::new(),
        profile: profile.to_string(),
        key,
    };
    if !seen {
        return Err(CredentialsError::NoProfile {
            path: String::new(),
            profile: profile.to_string(),
        });
    }
    Ok(AwsCredentials {
        access_key_id: id.ok_or_else(|| missing("aws_access_key_id"))?,
        secret_access_key: secret.ok_or_else(|| missing("aws_secret_access_key"))?,
        session_token: token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# comment
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key=secret-default

[ work ]
; another comment
aws_access_key_id =AKIDWORK
aws_secret_access_key = secret-work
aws_session_token = token-work
aws_access_key_id = AKIDWORK2
[broken]
aws_access_key_id = X
";

    #[test]
    fn profiles() {
        let c = parse_credentials_file(FILE, "default").unwrap();
        assert_eq!(c.access_key_id, "AKIDDEFAULT");
        assert_eq!(c.secret_access_key, "secret-default");
        assert_eq!(c.session_token, None);
        let c = parse_credentials_file(FILE, "work").unwrap();
        assert_eq!(c.access_key_id, "AKIDWORK2");
        assert_eq!(c.session_token.as_deref(), Some("token-work"));
        assert!(matches!(
            parse_credentials_file(FILE, "broken"),
            Err(CredentialsError::MissingKey {
                key: "aws_secret_access_key",
                ..
            })
        ));
        assert!(matches!(
            parse_credentials_file(FILE, "nope"),
            Err(CredentialsError::NoProfile { .. })
        ));
        assert!(!format!("{c:?}").contains("secret-work"));
        assert!(!format!("{c:?}").contains("token-work"));
    }

    #[test]
    fn environment_first_then_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("creds");
        std::fs::write(&file, FILE).unwrap();
        let vars = |pairs: &'static [(&'static str, &'static str)], file: PathBuf| {
            move |k: &str| {
                if k == "AWS_SHARED_CREDENTIALS_FILE" {
                    return Some(file.display().to_string());
                }
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let env = CredentialSource::from_vars(vars(
            &[
                ("AWS_ACCESS_KEY_ID", "AKIDENV"),
                ("AWS_SECRET_ACCESS_KEY", "s"),
                ("AWS_SESSION_TOKEN", "t"),
            ],
            file.clone(),
        ));
        let c = env.load().unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.session_token.as_deref()),
            ("AKIDENV", Some("t"))
        );
        let half =
            CredentialSource::from_vars(vars(&[("AWS_ACCESS_KEY_ID", "AKIDENV")], file.clone()));
        assert_eq!(half.load(), Err(CredentialsError::HalfEnvironment));
        let work = CredentialSource::from_vars(vars(&[("AWS_PROFILE", "work")], file.clone()));
        assert_eq!(work.load().unwrap().access_key_id, "AKIDWORK2");
        let missing = CredentialSource::from_vars(vars(&[], dir.path().join("none")));
        let err = missing.load().unwrap_err().to_string();
        assert!(
            err.contains("AWS_ACCESS_KEY_ID") && err.contains("none"),
            "{err}"
        );
        let nope = CredentialSource::from_vars(vars(&[("AWS_PROFILE", "nope")], file));
        assert!(nope.load().unwrap_err().to_string().contains("creds"));
    }
}
