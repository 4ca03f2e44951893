//! The plugin's restart state: which FIFOs it reads, and each one's `Info`.
//!
//! dockerd never repeats StartLogging to a plugin that restarted ("it is up
//! to the plugin to keep track of pipes it should re-attach to"), so the
//! plugin writes down every FIFO it reads and re-opens them at start
//! (issue 12, item 6). This module owns that file and promises:
//! - a save is atomic: the state is written to a temporary file in the
//!   same directory, flushed to disk (`fsync`), renamed over the old file,
//!   and the directory is flushed too; a crash leaves the old state or the
//!   new one, never half of one;
//! - the file is small and bounded: a save that would exceed `max_len`
//!   bytes is refused ([`StateError::TooBig`]) and the old file is kept; a
//!   load reads at most `max_len` bytes;
//! - a missing file is an empty state (first start); a file that cannot be
//!   read back (cut short, not JSON, an unknown version) is a
//!   [`StateError::Corrupt`] saying which file and why: the caller reports
//!   it and starts empty, and the next save replaces the file;
//! - the file is readable by its owner only (mode 0600): `Info` holds the
//!   containers' environment, which may hold secrets.
//!
//! The format is JSON, `{"version":1,"fifos":[{"file":...,"info":{...}}]}`,
//! with `Info` in dockerd's own field names, so a person can read it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::info::Info;

/// Where the state file lives unless configured otherwise.
pub const DEFAULT_STATE_PATH: &str = "/run/ringtail/docker-plugin.json";

/// The default bound on the file: about a thousand containers with a
/// generous environment each.
pub const DEFAULT_MAX_STATE_LEN: usize = 16 * 1024 * 1024;

/// The version this code writes and reads.
pub const STATE_VERSION: u32 = 1;

/// One FIFO being read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FifoRecord {
    /// The path dockerd gave in StartLogging.
    pub file: PathBuf,
    pub info: Info,
}

/// Everything the plugin must remember across a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginState {
    /// In the order StartLogging arrived.
    pub fifos: Vec<FifoRecord>,
}

#[derive(Serialize, Deserialize)]
struct StateFileBody {
    version: u32,
    #[serde(flatten)]
    state: PluginState,
}

/// Why the state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the docker plugin state {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the docker plugin state {path} is unusable ({reason}); starting with no FIFOs to re-attach: containers that were logging keep their pipes but are not read until they restart"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "the docker plugin state would be {len} bytes, over its limit of {max}; the previous state is kept: raise the limit or run fewer containers with this driver"
    )]
    TooBig { len: usize, max: usize },
    #[error("cannot write the docker plugin state {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The state file at one path.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
    max_len: usize,
}

impl StateFile {
    /// The file at `path`, refusing to grow beyond `max_len` bytes.
    pub fn new(path: impl Into<PathBuf>, max_len: usize) -> StateFile {
        StateFile {
            path: path.into(),
            max_len,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state; a missing file is the empty state.
    pub fn load(&self) -> Result<PluginState, StateError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PluginState::default()),
            Err(source) => {
                return Err(StateError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let mut bytes = Vec::new();
        file.take(self.max_len as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| StateError::Read {
                path: self.path.clone(),
                source,
            })?;
        let corrupt = |reason: String| StateError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        if bytes.len() > self.max_len {
            return Err(corrupt(format!(
                "longer than its limit of {} bytes",
                self.max_len
            )));
        }
        let body: StateFileBody =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if body.version != STATE_VERSION {
            return Err(corrupt(format!(
                "version {} where {STATE_VERSION} was expected",
                body.version
            )));
        }
        Ok(body.state)
    }

    /// Replaces the file with `state`, atomically (see the module docs).
    pub fn save(&self, state: &PluginState) -> Result<(), StateError> {
        let body = StateFileBody {
            version: STATE_VERSION,
            state: state.clone(),
        };
        let bytes = serde_json::to_vec(&body).expect("the state serializes");
        if bytes.len() > self.max_len {
            return Err(StateError::TooBig {
                len: bytes.len(),
                max: self.max_len,
            });
        }
        let write_err = |path: &Path, source| StateError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state".into());
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            File::open(dir)?.sync_all()
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(write_err(&self.path, e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn record(n: usize) -> FifoRecord {
        FifoRecord {
            file: PathBuf::from(format!("/run/docker/logging/{n:064x}")),
            info: Info {
                container_id: format!("{n:064x}"),
                container_name: format!("/c{n}"),
                container_env: vec!["SECRET=x".into()],
                config: [("tag".to_string(), "{{.ID}}".to_string())].into(),
                ..Info::default()
            },
        }
    }

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path().join("sub/state.json"), DEFAULT_MAX_STATE_LEN);
        assert_eq!(f.load().unwrap(), PluginState::default());
        let state = PluginState {
            fifos: (0..3).map(record).collect(),
        };
        f.save(&state).unwrap();
        assert_eq!(f.load().unwrap(), state);
        let mode = fs::metadata(f.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Saving again replaces, and leaves no temporary file behind.
        let fewer = PluginState {
            fifos: vec![record(7)],
        };
        f.save(&fewer).unwrap();
        assert_eq!(f.load().unwrap(), fewer);
        let names: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        let text = fs::read_to_string(f.path()).unwrap();
        assert!(
            text.starts_with(r#"{"version":1,"fifos":[{"file":"/run/docker/logging/"#),
            "{text}"
        );
        assert!(text.contains(r#""ContainerName":"/c7""#), "{text}");
    }

    #[test]
    fn corrupt_files_are_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let f = StateFile::new(&path, 4096);
        f.save(&PluginState {
            fifos: vec![record(1)],
        })
        .unwrap();
        let good = fs::read(&path).unwrap();
        for (bad, why) in [
            (good[..good.len() / 2].to_vec(), "EOF"),
            (b"garbage".to_vec(), "expected"),
            (br#"{"version":2,"fifos":[]}"#.to_vec(), "version 2"),
            (br#"{"fifos":[]}"#.to_vec(), "version"),
            (vec![b' '; 5000], "limit of 4096"),
        ] {
            fs::write(&path, &bad).unwrap();
            let e = f.load().unwrap_err();
            assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
            assert!(e.to_string().contains(why), "{e}");
            assert!(e.to_string().contains("state.json"), "{e}");
        }
        // The next save replaces a corrupt file.
        f.save(&PluginState::default()).unwrap();
        assert_eq!(f.load().unwrap(), PluginState::default());
    }

    #[test]
    fn a_state_over_the_limit_is_refused_and_the_old_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path().join("state.json"), 2048);
        let small = PluginState {
            fifos: vec![record(1)],
        };
        f.save(&small).unwrap();
        let big = PluginState {
            fifos: (0..20).map(record).collect(),
        };
        let e = f.save(&big).unwrap_err();
        assert!(matches!(e, StateError::TooBig { max: 2048, .. }), "{e}");
        assert_eq!(f.load().unwrap(), small);
    }

    #[test]
    fn an_unwritable_place_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        let f = StateFile::new(blocker.join("state.json"), 4096);
        let e = f.save(&PluginState::default()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot write the docker plugin state"),
            "{e}"
        );
    }
}
