//! The memlogq client: connect to a query socket and send a request,
//! for `ringtail read`, `ringtail export` and the tests. The answer is
//! read from the returned stream (NDJSON lines, see
//! [`crate::sinks::parse_record`]); a refusal arrives as one line that
//! parses into a [`super::Refusal`].

use std::io::{self, Write as _};
use std::path::Path;

use super::protocol::{JsonRequest, Mode};

/// What [`connect`] sends.
// One is built per connection: boxing the large variant would only make
// callers noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum ClientRequest {
    /// A memlogd mode byte.
    Mode(Mode),
    /// A JSON request line.
    Json(JsonRequest),
}

/// Connects to the query socket at `path` and sends `request`; read the
/// answer from the returned stream. Errors name the path and say what to
/// check.
pub fn connect(path: &Path, request: &ClientRequest) -> io::Result<std::os::unix::net::UnixStream> {
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::PermissionDenied => {
                "the query socket hands out every log on the host, so it is mode 0660: \
                 run as its owner or a member of its group"
            }
            _ => "is `ringtail serve` running? `ringtail read --socket PATH` reads another socket",
        };
        io::Error::new(
            e.kind(),
            format!("cannot connect to {}: {e}; {hint}", path.display()),
        )
    })?;
    let sent = match request {
        ClientRequest::Mode(m) => s.write_all(&[m.byte()]),
        ClientRequest::Json(r) => {
            let mut line = serde_json::to_vec(r).map_err(io::Error::other)?;
            line.push(b'\n');
            s.write_all(&line)
        }
    };
    sent.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot send the request to {}: {e}", path.display()),
        )
    })?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.sock");
        let e = connect(&path, &ClientRequest::Mode(Mode::Dump)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("nope.sock") && msg.contains("ringtail serve"),
            "{msg}"
        );
    }
}
