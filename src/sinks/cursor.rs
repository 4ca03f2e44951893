//! A forwarder's cursor file: where shipping resumes after a restart.
//!
//! The file holds the last seq the backend acknowledged and the id of the
//! ring that seq counts in (seqs of another ring mean nothing), plus the
//! forwarder's name and a format version so that a file of another
//! forwarder or of another program is refused instead of trusted. One JSON
//! object on one line:
//!
//! ```text
//! {"format":"ringtail-forwarder-cursor","version":1,"forwarder":"central-loki","ring_id":"00c0ffee00c0ffee","last_acked_seq":123456}
//! ```
//!
//! (`ring_id` is 16 hex digits, as the query protocol writes ring ids.)
//!
//! # Crash safety
//!
//! [`write_cursor`] never leaves a torn or empty file behind: it writes a
//! temporary file in the same directory, `fsync`s it, renames it over the
//! cursor (atomic within a file system) and `fsync`s the directory so the
//! rename itself survives a power cut. After a crash the file holds either
//! the previous cursor or the new one. A stale temporary file from a crash
//! is overwritten by the next write.
//!
//! # Reading
//!
//! [`read_cursor`] answers `Ok(None)` when there is no file (a new
//! forwarder) and an error naming the file and what to do for anything it
//! cannot trust: unreadable, not JSON, another format, a newer version,
//! another forwarder's cursor. It reads at most [`MAX_CURSOR_FILE`] bytes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::serve::memlogq::{parse_ring_id, ring_id_text};

/// The `format` field of a cursor file.
pub const CURSOR_FORMAT: &str = "ringtail-forwarder-cursor";
/// The format version this build writes and reads.
pub const CURSOR_VERSION: u32 = 1;
/// A cursor file is a few hundred bytes; anything larger is not one.
pub const MAX_CURSOR_FILE: u64 = 64 * 1024;

/// Where a forwarder stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwarderCursor {
    /// The forwarder's configured name.
    pub forwarder: String,
    /// The ring the seq counts in.
    pub ring_id: u64,
    /// The last seq the backend acknowledged (accepted, or rejected for
    /// good and counted): shipping resumes at the next one.
    pub last_acked_seq: u64,
}

#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    format: &'a str,
    version: u32,
    forwarder: String,
    ring_id: String,
    last_acked_seq: u64,
}

/// Why bytes are not a cursor this build can use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CursorFormatError {
    #[error("not a forwarder cursor: {0}")]
    Malformed(String),
    #[error("a file of another kind (format {0:?}), not a forwarder cursor")]
    Foreign(String),
    #[error(
        "cursor format version {0}, newer than this ringtail reads (version {CURSOR_VERSION})"
    )]
    Version(u32),
    #[error("bad ring id {0:?} (16 hex digits expected)")]
    RingId(String),
}

/// A cursor file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("cannot {action} the forwarder cursor {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "{path}: {problem}; move it away to start the forwarder from the ring's oldest \
         entry (entries shipped before may be sent again)"
    )]
    Unusable {
        path: PathBuf,
        problem: CursorFormatError,
    },
    #[error(
        "{path} is the cursor of forwarder {found:?}, not of {expected:?}: give each \
         forwarder its own cursor file"
    )]
    OtherForwarder {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

impl ForwarderCursor {
    /// The file's content, newline-terminated.
    pub fn to_bytes(&self) -> Vec<u8> {
        let wire = Wire {
            format: CURSOR_FORMAT,
            version: CURSOR_VERSION,
            forwarder: self.forwarder.clone(),
            ring_id: ring_id_text(self.ring_id),
            last_acked_seq: self.last_acked_seq,
        };
        let mut out = serde_json::to_vec(&wire).expect("a cursor always serializes");
        out.push(b'\n');
        out
    }

    /// Reads a cursor from a file's content.
    pub fn parse(bytes: &[u8]) -> Result<ForwarderCursor, CursorFormatError> {
        // The format field is checked before the rest so that a foreign
        // JSON file is named as such, not as a broken cursor.
        #[derive(Deserialize)]
        struct Kind<'a> {
            #[serde(borrow)]
            format: Option<std::borrow::Cow<'a, str>>,
        }
        let kind: Kind = serde_json::from_slice(bytes)
            .map_err(|e| CursorFormatError::Malformed(e.to_string()))?;
        match kind.format.as_deref() {
            Some(CURSOR_FORMAT) => {}
            Some(other) => return Err(CursorFormatError::Foreign(clip(other))),
            None => return Err(CursorFormatError::Malformed("no \"format\" field".into())),
        }
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let version: Version = serde_json::from_slice(bytes)
            .map_err(|e| CursorFormatError::Malformed(e.to_string()))?;
        if version.version > CURSOR_VERSION {
            return Err(CursorFormatError::Version(version.version));
        }
        let wire: Wire = serde_json::from_slice(bytes)
            .map_err(|e| CursorFormatError::Malformed(e.to_string()))?;
        let ring_id = parse_ring_id(&wire.ring_id)
            .ok_or_else(|| CursorFormatError::RingId(clip(&wire.ring_id)))?;
        Ok(ForwarderCursor {
            forwarder: wire.forwarder,
            ring_id,
            last_acked_seq: wire.last_acked_seq,
        })
    }
}

/// At most 64 bytes of an untrusted string, for an error message.
fn clip(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Replaces the cursor file at `path` atomically (see the module doc).
pub fn write_cursor(path: &Path, cursor: &ForwarderCursor) -> Result<(), CursorError> {
    let io_err = |action: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| CursorError::Io {
            action,
            path: p,
            source,
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| CursorError::Io {
        action: "write",
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"),
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);

    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    file.write_all(&cursor.to_bytes())
        .map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync the directory of", path))?;
    Ok(())
}

/// Reads the cursor of forwarder `forwarder`; `Ok(None)` if there is none yet.
pub fn read_cursor(path: &Path, forwarder: &str) -> Result<Option<ForwarderCursor>, CursorError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CursorError::Io {
                action: "open",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_CURSOR_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| CursorError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > MAX_CURSOR_FILE {
        return Err(CursorError::Unusable {
            path: path.to_path_buf(),
            problem: CursorFormatError::Malformed(format!("larger than {MAX_CURSOR_FILE} bytes")),
        });
    }
    let cursor = ForwarderCursor::parse(&bytes).map_err(|problem| CursorError::Unusable {
        path: path.to_path_buf(),
        problem,
    })?;
    if cursor.forwarder != forwarder {
        return Err(CursorError::OtherForwarder {
            path: path.to_path_buf(),
            found: cursor.forwarder,
            expected: forwarder.to_string(),
        });
    }
    Ok(Some(cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(seq: u64) -> ForwarderCursor {
        ForwarderCursor {
            forwarder: "central".into(),
            ring_id: 0x00c0_ffee_1234_5678,
            last_acked_seq: seq,
        }
    }

    #[test]
    fn round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("central.cursor");
        assert!(read_cursor(&path, "central").unwrap().is_none());
        write_cursor(&path, &cursor(5)).unwrap();
        assert_eq!(read_cursor(&path, "central").unwrap(), Some(cursor(5)));
        write_cursor(&path, &cursor(u64::MAX)).unwrap();
        assert_eq!(
            read_cursor(&path, "central").unwrap(),
            Some(cursor(u64::MAX))
        );
        // Only the cursor is left in the directory: the temporary file was
        // renamed, not copied.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["central.cursor"]);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"format\":\"ringtail-forwarder-cursor\",\"version\":1,\"forwarder\":\"central\",\
             \"ring_id\":\"00c0ffee12345678\",\"last_acked_seq\":18446744073709551615}\n"
        );
    }

    #[test]
    fn refuses_what_it_cannot_trust() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let check = |content: &[u8], expect: &str| {
            fs::write(&path, content).unwrap();
            let err = read_cursor(&path, "central").unwrap_err().to_string();
            assert!(err.contains(expect), "{err:?} lacks {expect:?}");
            assert!(
                err.contains(path.to_str().unwrap()),
                "{err:?} names no file"
            );
        };
        check(b"", "not a forwarder cursor");
        check(
            b"{\"format\":\"ringtail-forwarder-cu",
            "not a forwarder cursor",
        );
        check(b"\x00\xff garbage", "not a forwarder cursor");
        check(b"{\"format\":\"ringtail-export-state\"}", "another kind");
        check(b"[1,2]", "not a forwarder cursor");
        check(
            b"{\"format\":\"ringtail-forwarder-cursor\",\"version\":2}",
            "newer than this ringtail reads",
        );
        check(
            b"{\"format\":\"ringtail-forwarder-cursor\",\"version\":1,\"forwarder\":\"central\",\"ring_id\":\"xyz\",\"last_acked_seq\":1}",
            "bad ring id",
        );
        check(
            b"{\"format\":\"ringtail-forwarder-cursor\",\"version\":1,\"forwarder\":\"central\",\"ring_id\":\"00c0ffee12345678\",\"last_acked_seq\":-1}",
            "not a forwarder cursor",
        );
        check(&vec![b' '; 70_000], "larger than");
        write_cursor(&path, &cursor(1)).unwrap();
        let err = read_cursor(&path, "other").unwrap_err();
        assert!(matches!(err, CursorError::OtherForwarder { .. }), "{err}");
    }

    #[test]
    fn write_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("c");
        let err = write_cursor(&path, &cursor(1)).unwrap_err().to_string();
        assert!(err.contains("missing-dir"), "{err}");
    }
}
