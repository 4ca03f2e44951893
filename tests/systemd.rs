//! ringtail under systemd's protocols, with systemd's own tools:
//! - socket activation by name with `systemd-socket-activate` (Debian's
//!   `systemd` package): the ingest socket (datagram), the query and HTTP
//!   sockets (stream), each with its `FileDescriptorName=`, the daemon
//!   started by the first client the way systemd starts a unit;
//! - `Type=notify`: a `NOTIFY_SOCKET` listener (a path, and an abstract
//!   name) that gets `READY=1` once, only once every socket answers,
//!   `WATCHDOG=1` pings when `WATCHDOG_USEC` is set, `STOPPING=1` at stop;
//! - `systemd-analyze verify` on the units in contrib/systemd.
//!
//! The hardening options of ringtail.service need systemd as pid 1 to take
//! effect; `systemd-analyze verify` checks they parse.

mod support;

use std::io::{Read as _, Write as _};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ringtail::sources::fdpass;
use support::{bin, collect, free_port, wait_for, DEADLINE};

/// Whether a program is on the PATH.
fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Receives notification datagrams (one per message).
struct Notify {
    sock: UnixDatagram,
    /// What NOTIFY_SOCKET is set to.
    env: String,
}

impl Notify {
    fn path(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        Notify {
            sock,
            env: path.display().to_string(),
        }
    }

    fn abstract_name() -> Notify {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ringtail-test-notify-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        Notify {
            sock,
            env: format!("@{name}"),
        }
    }

    /// The next message, within the deadline.
    fn next(&self) -> String {
        self.sock.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self
            .sock
            .recv(&mut buf)
            .expect("a notification within the deadline");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// Messages already queued, without waiting.
    fn queued(&self) -> Vec<String> {
        self.sock.set_nonblocking(true).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            out.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        self.sock.set_nonblocking(false).unwrap();
        out
    }
}

/// One dump request on the query socket, answered (one connection, no
/// retry): the answer's text.
fn query_once(path: &Path) -> String {
    let mut s = UnixStream::connect(path).expect("the query socket answers");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"{\"format\":\"raw\"}\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// One `GET /healthz` (one connection, no retry): the status line.
fn http_once(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("the HTTP socket answers");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines().next().unwrap_or_default().to_string()
}

/// Registers a pipe named `name` on the ingest socket and writes `line`.
fn log_line(log: &Path, name: &str, line: &str) {
    let (r, mut w) = std::io::pipe().unwrap();
    fdpass::register(log, name.as_bytes(), &[r.as_fd()]).expect("the ingest socket answers");
    drop(r);
    writeln!(w, "{line}").unwrap();
}

fn sigterm(child: &std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

/// ringtail binding its own sockets: at the moment READY=1 arrives, each
/// socket answers on the first try, so READY=1 cannot have come before
/// they were bound and served. READY=1 comes once, STOPPING=1 at SIGTERM.
fn ready_only_once_serving(notify: Notify) {
    let dir = tempfile::tempdir().unwrap();
    let (log, query) = (dir.path().join("log.sock"), dir.path().join("query.sock"));
    let mut child = Command::new(bin())
        .args(["serve", "--socket-log"])
        .arg(&log)
        .arg("--socket-query")
        .arg(&query)
        .args(["--http", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &notify.env)
        .env_remove("WATCHDOG_USEC")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = collect(child.stderr.take().unwrap());
    let ready = notify.next();
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    assert!(ready.contains("STATUS=serving: "), "{ready:?}");
    // Right now, without waiting or retrying.
    log_line(&log, "app", "stored after READY");
    assert!(query_once(&query).contains("started"));
    // The address was printed before READY=1 was sent; only our reader of
    // the pipe may lag.
    let mut addr = String::new();
    wait_for("the HTTP address on stderr", || {
        let e = stderr.lock().unwrap().clone();
        if let Some(at) = e.find("http://") {
            addr = e[at + 7..].split('/').next().unwrap().to_string();
        }
        !addr.is_empty()
    });
    assert!(
        ready.contains(&addr),
        "STATUS names where it listens: {ready:?}"
    );
    assert_eq!(http_once(&addr), "HTTP/1.1 200 OK");
    wait_for("the line stored after READY", || {
        query_once(&query).contains("stored after READY")
    });
    sigterm(&child);
    let stopping = notify.next();
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping:?}");
    assert!(support::wait_exit(&mut child).success());
    let rest = notify.queued();
    assert!(
        rest.iter().all(|m| !m.contains("READY=1")),
        "READY=1 sent twice: {rest:?}"
    );
    assert!(
        rest.iter().all(|m| !m.contains("WATCHDOG=1")),
        "pings without WATCHDOG_USEC: {rest:?}"
    );
}

#[test]
fn ready_comes_once_every_socket_answers() {
    let dir = tempfile::tempdir().unwrap();
    ready_only_once_serving(Notify::path(dir.path()));
}

#[test]
fn ready_reaches_an_abstract_notify_socket() {
    ready_only_once_serving(Notify::abstract_name());
}

/// The real systemd-socket-activate, chained as systemd would hand over
/// three sockets of two types: the outer one binds the ingest socket
/// (datagram, named `log`) and waits for a client; the inner one passes
/// that through and adds the query and HTTP sockets (stream). The first
/// client (a registration on the ingest socket) starts ringtail, which
/// binds nothing itself: its sockets are the activated ones, by name.
#[test]
fn socket_activation_by_name_with_notify_and_watchdog() {
    if !have("systemd-socket-activate") {
        panic!("systemd-socket-activate is missing: apt-get install systemd");
    }
    let dir = tempfile::tempdir().unwrap();
    let (log, query) = (dir.path().join("log.sock"), dir.path().join("query.sock"));
    let http = format!("127.0.0.1:{}", free_port());
    let notify = Notify::path(dir.path());
    // The paths given must stay unused: the activated sockets replace them.
    let mut child = Command::new("systemd-socket-activate")
        .args(["--datagram", "--listen"])
        .arg(&log)
        .args(["--fdname=log", "--", "systemd-socket-activate", "--listen"])
        .arg(&query)
        .args(["--listen", &http, "--fdname=log:query:http"])
        .arg(format!("--setenv=NOTIFY_SOCKET={}", notify.env))
        .arg("--setenv=WATCHDOG_USEC=200000")
        .args([
            "--",
            bin(),
            "serve",
            "--socket-log",
            "/nonexistent/log.sock",
        ])
        .args(["--socket-query", "/nonexistent/query.sock"])
        .args(["--http", "127.0.0.1:1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = collect(child.stderr.take().unwrap());
    wait_for("systemd-socket-activate to listen", || log.exists());
    // The first client: its registration waits in the socket's queue
    // while ringtail starts.
    log_line(&log, "first", "sent before ringtail ran");
    let ready = notify.next();
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    // The "listening" line was written before READY=1; our pipe reader
    // may lag.
    wait_for("the listening line", || {
        stderr.lock().unwrap().contains("ringtail: listening")
    });
    let e = stderr.lock().unwrap().clone();
    let listening = e
        .lines()
        .find(|l| l.starts_with("ringtail: listening"))
        .unwrap();
    assert!(
        !listening.contains("/nonexistent")
            && !listening.contains(":1/")
            && listening.contains("(systemd fd 3)")
            && listening.contains("(systemd fd 4)"),
        "activated sockets replace the paths given: {listening}"
    );
    wait_for("the first client's line", || {
        query_once(&query).contains("sent before ringtail ran")
    });
    assert_eq!(http_once(&http), "HTTP/1.1 200 OK");
    // WATCHDOG_USEC=200000: a ping every 100 ms while it runs.
    for _ in 0..3 {
        assert_eq!(notify.next(), "WATCHDOG=1");
    }
    sigterm(&child);
    loop {
        let m = notify.next();
        if m.starts_with("STOPPING=1") {
            break;
        }
        assert_eq!(m, "WATCHDOG=1");
    }
    assert!(support::wait_exit(&mut child).success());
    assert!(!Path::new("/nonexistent").exists());
}

/// The units with their ExecStart pointed at this build's binary (verify
/// checks that the program exists and is executable), in a directory of
/// their own.
fn units_for_verify(dir: &Path) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // Drop-ins (ringtail.service.d/): verify reads them beside the unit.
            let sub = dir.join(path.file_name().unwrap());
            std::fs::create_dir_all(&sub).unwrap();
            for f in std::fs::read_dir(&path).unwrap() {
                let f = f.unwrap().path();
                let text = std::fs::read_to_string(&f).unwrap();
                std::fs::write(
                    sub.join(f.file_name().unwrap()),
                    text.replace("/usr/bin/ringtail", bin()),
                )
                .unwrap();
            }
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let dst = dir.join(path.file_name().unwrap());
        std::fs::write(&dst, text.replace("/usr/bin/ringtail", bin())).unwrap();
        out.push(dst);
    }
    out.sort();
    out
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        panic!("systemd-analyze is missing: apt-get install systemd");
    }
    let dir = tempfile::tempdir().unwrap();
    let units = units_for_verify(dir.path());
    let names: Vec<String> = units
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "ringtail-http.socket",
            "ringtail-query.socket",
            "ringtail-syslog.socket",
            "ringtail.service",
            "ringtail.socket"
        ]
    );
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.path().display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "systemd-analyze verify failed:\n{err}");
    // verify exits 0 on some findings; it prints them.
    let findings: Vec<&str> = err.lines().filter(|l| l.contains("ringtail")).collect();
    assert!(findings.is_empty(), "systemd-analyze verify:\n{err}");
    // A unit with a mistake is caught, so the check above can fail.
    let bad = dir.path().join("ringtail.service");
    let text = std::fs::read_to_string(&bad).unwrap();
    std::fs::write(&bad, text.replace("Type=notify", "Type=notfy")).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&bad)
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.path().display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("notfy"), "a bad unit passed verify: {err}");
}
