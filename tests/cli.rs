//! The `ringtail` binary end to end: `serve`, `run`, `read`, memlogd's
//! command line, signals, `-daemonize`, inherited and systemd sockets, and
//! a ring file across a restart. Sockets live in temp dirs; every wait
//! polls for a condition with a generous deadline instead of sleeping.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

mod support;

use support::{bin, wait_exit, wait_for, Daemon, DEADLINE};

fn is_socket(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The lines of a pipe, read on a thread of its own.
fn line_channel(from: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn next_line(rx: &std::sync::mpsc::Receiver<String>, what: &str) -> String {
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|e| panic!("no line while waiting for {what}: {e}"))
}

#[test]
fn serve_prints_where_it_listens_and_echoes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--echo"]);
    let err = d.stderr();
    assert!(err.contains(&d.log.display().to_string()), "{err}");
    assert!(err.contains(&d.query.display().to_string()), "{err}");
    assert!(is_socket(&d.log) && is_socket(&d.query));
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode(&d.log), 0o660);
    assert_eq!(mode(&d.query), 0o660);
    let o = d.run(&["-n", "echoed", "--", "sh", "-c", "echo hello"]);
    assert!(o.status.success());
    wait_for("the echo of the line on stdout", || {
        d.stdout().contains(";echoed.out;hello\n")
    });
    // The start entry is echoed too, memlogd style.
    assert!(d.stdout().contains(";ringtail;ringtail "), "{}", d.stdout());
    assert!(d.stop().success());
}

#[test]
fn memlogd_command_line_without_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("l.sock");
    let query = dir.path().join("q.sock");
    let args: Vec<String> = vec![
        "-socket-log".into(),
        log.display().to_string(),
        "-socket-query".into(),
        query.display().to_string(),
        "-max-lines".into(),
        "100".into(),
        "-max-line-len=64".into(),
    ];
    let d = Daemon::spawn(&args, log, query);
    let out = d.read_until(&[], "the start entry", |o| {
        o.contains("ringtail started") || o.contains("started:")
    });
    assert!(out.contains("100 lines"), "{out}");
    assert!(out.contains("max-line-len 64"), "{out}");
    assert!(d.stop().success());
}

#[test]
fn run_logs_both_streams_and_passes_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let o = d.run(&[
        "-n",
        "NAME",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(text(&o.stdout), "out\n");
    assert!(text(&o.stderr).contains("err\n"));

    let logread = d.read_until(&[], "both lines", |o| {
        o.contains(";NAME.out;out\n") && o.contains(";NAME;err\n")
    });
    for line in logread.lines() {
        let (time, _) = line.split_once(';').unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{line}");
    }

    let json = text(&d.read(&["-o", "json", "--source", "NAME*"]).stdout);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{json}");
    let mut pairs: Vec<(String, String)> = lines
        .iter()
        .map(|v| {
            (
                v["source"].as_str().unwrap().into(),
                v["msg"].as_str().unwrap().into(),
            )
        })
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("NAME".into(), "err".into()),
            ("NAME.out".into(), "out".into())
        ]
    );

    let raw = text(&d.read(&["-o", "raw", "--source", "NAME.out"]).stdout);
    assert_eq!(raw, "out\n");
    let old_memlogd = text(&d.read(&["-o", "text", "--source", "NAME.out"]).stdout);
    assert!(old_memlogd.ends_with("Z,NAME.out;out\n"), "{old_memlogd}");
    let etw = text(&d.read(&["-o", "etw", "--source", "NAME"]).stdout);
    assert!(etw.contains(", log: err"), "{etw}");

    let exact = text(&d.read(&["-o", "logread", "--source", "NAME"]).stdout);
    assert_eq!(exact.lines().count(), 1, "{exact}");
    assert!(exact.ends_with(";NAME;err\n"), "{exact}");

    let ndjson = text(&d.read(&["-o", "ndjson", "--source", "NAME*"]).stdout);
    for l in ndjson.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["seq"].as_u64().unwrap() > 0, "{l}");
    }
    assert!(d.stop().success());
}

#[test]
fn read_last_n_contains_and_regex() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let o = d.run(&[
        "-n",
        "count",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i; done",
    ]);
    assert!(o.status.success());
    d.read_until(&["--source", "count.out"], "ten lines", |o| {
        o.lines().count() == 10
    });
    let last = text(
        &d.read(&["-o", "raw", "--source", "count.out", "-n", "3"])
            .stdout,
    );
    assert_eq!(last, "line8\nline9\nline10\n");
    let with = text(&d.read(&["-o", "raw", "--contains", "line1"]).stdout);
    assert_eq!(with, "line1\nline10\n");
    let re = text(&d.read(&["-o", "raw", "--regex", "^line[2-3]$"]).stdout);
    assert_eq!(re, "line2\nline3\n");
    let none = d.read(&["--since", "1h", "--source", "nothing-like-this"]);
    assert!(none.status.success());
    assert!(none.stdout.is_empty());
    let bad = d.read(&["--regex", "("]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("regex") || text(&bad.stderr).contains("regular"),
        "{}",
        text(&bad.stderr)
    );
    assert!(d.stop().success());
}

#[test]
fn read_follow_sees_new_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let mut follower = Command::new(bin())
        .args([
            "read",
            "-F",
            "-o",
            "raw",
            "--source",
            "later.out",
            "--socket",
        ])
        .arg(&d.query)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = line_channel(follower.stdout.take().unwrap());
    // Lines logged after the follower connected, or before: -F gets both.
    assert!(d
        .run(&["-n", "later", "--", "echo", "first"])
        .status
        .success());
    assert_eq!(next_line(&lines, "the first line"), "first");
    assert!(d
        .run(&["-n", "later", "--", "echo", "second"])
        .status
        .success());
    assert_eq!(next_line(&lines, "the second line"), "second");
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(d.stop().success());
}

#[test]
fn read_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    assert!(d
        .run(&["-n", "many", "--", "seq", "1", "4000"])
        .status
        .success());
    d.read_until(
        &["-o", "raw", "--source", "many.out", "-n", "1"],
        "the last line",
        |o| o == "4000\n",
    );
    let mut reader = Command::new(bin())
        .args(["read", "--socket"])
        .arg(&d.query)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = reader.stdout.take().unwrap();
    let mut first = [0u8; 16];
    out.read_exact(&mut first).unwrap();
    drop(out);
    let status = wait_exit(&mut reader);
    let mut err = String::new();
    reader
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status:?} {err}");
    assert_eq!(err, "");
    assert!(d.stop().success());
}

#[test]
fn sigterm_removes_the_sockets_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let (log, query) = (d.log.clone(), d.query.clone());
    let status = d.stop();
    assert_eq!(status.code(), Some(0));
    assert!(!log.exists() && !query.exists());
}

#[test]
fn a_second_daemon_on_the_same_sockets_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let second = Command::new(bin())
        .arg("serve")
        .arg("--socket-log")
        .arg(&d.log)
        .arg("--socket-query")
        .arg(&d.query)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = text(&second.stderr);
    assert!(
        err.contains("another ringtail (or memlogd) is listening on")
            && err.contains("stop it or pass --socket"),
        "{err}"
    );
    // The first one is untouched.
    assert!(is_socket(&d.log) && is_socket(&d.query));
    assert!(d.read(&[]).status.success());
    assert!(d.stop().success());
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    // Sockets of a daemon that died: bound, then closed without unlinking.
    drop(std::os::unix::net::UnixDatagram::bind(dir.path().join("log.sock")).unwrap());
    drop(std::os::unix::net::UnixListener::bind(dir.path().join("query.sock")).unwrap());
    let d = Daemon::start(dir.path(), &[]);
    assert!(d.read(&[]).status.success());
    assert!(d.stop().success());
}

#[test]
fn a_file_where_the_socket_goes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("query.sock");
    std::fs::write(&path, b"precious").unwrap();
    let o = Command::new(bin())
        .arg("serve")
        .arg("--socket-log")
        .arg(dir.path().join("log.sock"))
        .arg("--socket-query")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("is not a socket"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    // The ingest socket it had bound is gone again.
    assert!(!dir.path().join("log.sock").exists());
}

#[test]
fn ring_file_keeps_entries_and_seqs_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("ring");
    let ring_arg = ring.display().to_string();
    let d = Daemon::start(
        dir.path(),
        &["--ring-file", &ring_arg, "--max-lines", "1000"],
    );
    assert!(d
        .run(&["-n", "kept", "--", "sh", "-c", "echo one; echo two"])
        .status
        .success());
    let before = d.read_until(
        &["-o", "ndjson", "--source", "kept.out"],
        "both lines",
        |o| o.lines().count() == 2,
    );
    assert!(d.stop().success());

    let d = Daemon::start(
        dir.path(),
        &["--ring-file", &ring_arg, "--max-lines", "1000"],
    );
    let after = text(&d.read(&["-o", "ndjson", "--source", "kept.out"]).stdout);
    assert_eq!(before, after);
    let own = text(&d.read(&["-o", "raw", "--source", "ringtail"]).stdout);
    assert!(own.contains("reopened") && own.contains("intact"), "{own}");
    assert!(own.contains("stopped (SIGTERM)"), "{own}");
    assert!(d.stop().success());
}

#[test]
fn run_without_a_daemon_still_runs_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(bin())
        .arg("run")
        .arg("--socket-log")
        .arg(dir.path().join("nobody.sock"))
        .args(["-n", "x", "--", "sh", "-c", "echo still; exit 5"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(text(&o.stdout), "still\n");
    let err = text(&o.stderr);
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert!(err.contains("nobody.sock"), "{err}");
}

#[test]
fn run_reports_a_missing_command_and_forwards_signals() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Command::new(bin())
        .arg("run")
        .arg("--socket-log")
        .arg(dir.path().join("nobody.sock"))
        .args(["--", "/nonexistent/command"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(127));

    let d = Daemon::start(dir.path(), &[]);
    let mut run = Command::new(bin())
        .arg("run")
        .arg("--socket-log")
        .arg(&d.log)
        .args([
            "-n",
            "trapper",
            "--",
            "sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = line_channel(run.stdout.take().unwrap());
    assert_eq!(next_line(&lines, "the command to start"), "ready");
    kill(Pid::from_raw(run.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(next_line(&lines, "the trap to run"), "got-term");
    assert_eq!(wait_exit(&mut run).code(), Some(7));
    d.read_until(
        &["-o", "raw", "--source", "trapper.out"],
        "the trap's line",
        |o| o.contains("got-term"),
    );

    // Killed by a signal it does not catch: 128 + signal.
    let o = d.run(&["--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(o.status.code(), Some(128 + 9));
    assert!(d.stop().success());
}

#[test]
fn daemonize_returns_once_serving() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.sock");
    let query = dir.path().join("query.sock");
    let o = Command::new(bin())
        .arg("-socket-log")
        .arg(&log)
        .arg("-socket-query")
        .arg(&query)
        .arg("-daemonize")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success());
    // The parent returned only once the child served: no waiting needed.
    assert!(is_socket(&log) && is_socket(&query));
    let dump = Command::new(bin())
        .arg("read")
        .arg("--socket")
        .arg(&query)
        .args(["-o", "raw"])
        .output()
        .unwrap();
    let dump = text(&dump.stdout);
    let pid: i32 = dump
        .split(", pid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in the start entry: {dump}"));
    let guard = KillOnDrop(Pid::from_raw(pid));
    kill(guard.0, Signal::SIGTERM).unwrap();
    wait_for("the daemon to remove its sockets", || {
        !log.exists() && !query.exists()
    });
}

/// Kills a daemon this test started (possibly indirectly) if the test
/// fails first.
struct KillOnDrop(Pid);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = kill(self.0, Signal::SIGKILL);
        }
    }
}

/// Starts ringtail with two sockets bound here passed as fds 3 and 4
/// (through python3, which can place fds and set LISTEN_PID to its own
/// pid before exec). Returns `None` without python3.
fn spawn_with_fds(dir: &Path, env_systemd: bool, args: &[&str]) -> Option<Daemon> {
    if Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        eprintln!("python3 is not installed; skipping the inherited-socket test");
        return None;
    }
    let log = dir.join("inherited-log.sock");
    let query = dir.join("inherited-query.sock");
    let script = r#"
import fcntl, os, socket, sys
log, query, systemd = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); d.bind(log)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(query); s.listen(16)
# Move both out of the way first, so placing one never closes the other.
hd = fcntl.fcntl(d.fileno(), fcntl.F_DUPFD, 50); hs = fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 50)
os.dup2(hd, 3); os.dup2(hs, 4)
os.set_inheritable(3, True); os.set_inheritable(4, True)
env = dict(os.environ)
if systemd:
    env["LISTEN_PID"] = str(os.getpid()); env["LISTEN_FDS"] = "2"
os.execve(sys.argv[4], sys.argv[4:], env)
"#;
    let mut full: Vec<String> = vec![
        "-c".into(),
        script.into(),
        log.display().to_string(),
        query.display().to_string(),
        if env_systemd { "1".into() } else { "0".into() },
        bin().into(),
    ];
    full.extend(args.iter().map(|s| s.to_string()));
    let mut command = Command::new("python3");
    command.args(&full);
    let d = Daemon::spawn_command(command, log, query);
    Some(d)
}

#[test]
fn inherited_sockets_by_fd_number() {
    let dir = tempfile::tempdir().unwrap();
    let Some(d) = spawn_with_fds(dir.path(), false, &["-fd-log", "3", "-fd-query", "4"]) else {
        return;
    };
    assert!(d.run(&["-n", "viafd", "--", "echo", "hi"]).status.success());
    d.read_until(&["-o", "raw", "--source", "viafd.out"], "the line", |o| {
        o == "hi\n"
    });
    let (log, query) = (d.log.clone(), d.query.clone());
    assert!(d.stop().success());
    // Inherited sockets are not ringtail's to remove.
    assert!(is_socket(&log) && is_socket(&query));
}

#[test]
fn systemd_socket_activation() {
    let dir = tempfile::tempdir().unwrap();
    let Some(d) = spawn_with_fds(dir.path(), true, &["serve"]) else {
        return;
    };
    assert!(d.stderr().contains("systemd fd"), "{}", d.stderr());
    assert!(d
        .run(&["-n", "activated", "--", "echo", "hi"])
        .status
        .success());
    d.read_until(
        &["-o", "raw", "--source", "activated.out"],
        "the line",
        |o| o == "hi\n",
    );
    assert!(d.stop().success());
}

#[test]
fn bad_flags_say_what_is_wrong() {
    let o = Command::new(bin())
        .args(["serve", "--max-lines", "2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("at least 4"),
        "{}",
        text(&o.stderr)
    );
    let o = Command::new(bin())
        .args(["serve", "--rate-limit", "lots"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("1000/1s"), "{}", text(&o.stderr));
    let o = Command::new(bin()).arg("-bogus-flag").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn installed_as_memlogd_logwrite_and_logread() {
    let dir = tempfile::tempdir().unwrap();
    let link = |name: &str| {
        let p = dir.path().join(name);
        std::os::unix::fs::symlink(bin(), &p).unwrap();
        p
    };
    let (memlogd, logwrite, logread) = (link("memlogd"), link("logwrite"), link("logread"));
    let log = dir.path().join("l.sock");
    let query = dir.path().join("q.sock");
    let mut child = Command::new(&memlogd)
        .arg("-socket-log")
        .arg(&log)
        .arg("-socket-query")
        .arg(&query)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(Pid::from_raw(child.id() as i32));
    wait_for("memlogd's sockets", || is_socket(&log) && is_socket(&query));

    let o = Command::new(&logwrite)
        .arg("-socket")
        .arg(&log)
        .args(["-n", "svc", "sh", "-c", "echo via-logwrite"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "via-logwrite\n");

    let mut out = String::new();
    wait_for("logread to show the line", || {
        let o = Command::new(&logread)
            .arg("-socket")
            .arg(&query)
            .output()
            .unwrap();
        out = text(&o.stdout);
        out.contains(";svc.out;via-logwrite\n")
    });
    kill(guard.0, Signal::SIGTERM).unwrap();
    assert!(wait_exit(&mut child).success());
}
