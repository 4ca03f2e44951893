//! `-daemonize` (memlogd's flag) and readiness.
//!
//! The sockets are bound in the foreground, so that errors reach the
//! caller. Then ringtail starts itself again in the background, with the
//! same command line minus `-daemonize`, plus the hidden flags that hand
//! over every bound socket by listener name (`--inherit NAME=FD`), the
//! socket files to remove at shutdown (`--owned-socket=PATH`) and a
//! readiness pipe (`--ready-fd FD`). The background daemon takes a handed
//! socket in place of binding its listener, whatever else the command line
//! says about it, so every source's sockets travel the same way. The
//! caller's process exits 0 only once the background daemon reports that
//! it serves, or 1 with its exit status if it died first.
//!
//! It re-executes rather than forks because `fork` is `unsafe` in Rust (a
//! child of a multi-threaded process may only run async-signal-safe code),
//! while a fresh process image is sound whatever threads existed before,
//! and needs no `unsafe`. The background daemon runs in a session of its
//! own with stdin on /dev/null; until it serves, its errors go to the
//! caller's stderr, then stderr is /dev/null too, and so is stdout unless
//! `--echo` prints there.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::fcntl::{FcntlArg, FdFlag, OFlag};

use super::{DaemonConfig, DaemonError};
use crate::listener::{BoundAll, Handover};

/// The hidden flags that hand the bound sockets and the readiness pipe to
/// the background daemon, appended to [`DaemonConfig::relaunch`].
pub fn background_args(handover: &Handover, ready_fd: RawFd) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--ready-fd".into(), ready_fd.to_string().into()];
    for (name, fd) in &handover.fds {
        args.push(format!("--inherit={name}={fd}").into());
    }
    for path in &handover.owned_files {
        // One token, `--owned-socket=PATH`, so that no path (one starting
        // with a dash, say) can be read as a flag.
        let mut arg = OsString::from("--owned-socket=");
        arg.push(path);
        args.push(arg);
    }
    args
}

/// Parses `NAME=FD` of `--inherit`.
pub fn parse_inherit(text: &str) -> Result<(String, RawFd), String> {
    let (name, fd) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected NAME=FD"))?;
    let fd = fd
        .parse()
        .map_err(|_| format!("{text:?}: {fd:?} is not an fd number"))?;
    Ok((name.to_string(), fd))
}

/// Starts this program again in the background (see the module docs) with
/// the sockets handed over, and returns `Ok` once it serves; an error, with
/// its exit status, if it exits before. The caller removes the socket files
/// it created when this fails; once it succeeds they are the background
/// daemon's.
pub(super) fn relaunch(config: &DaemonConfig, bound: &BoundAll) -> Result<(), DaemonError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        DaemonError::Start(format!("-daemonize: {what}: {e}"))
    };
    let Some((arg0, args)) = config.relaunch.split_first() else {
        return Err(DaemonError::Start(
            "-daemonize: no command line to start the background daemon with".to_string(),
        ));
    };
    let exe = std::env::current_exe().map_err(|e| {
        fail(
            "cannot find this program's executable (is /proc mounted?)",
            &e,
        )
    })?;
    let (ready_read, ready_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| fail("cannot create the readiness pipe", &e))?;
    let handover = Handover {
        fds: bound.fds(),
        owned_files: bound.created.clone(),
    };
    // The fds the background daemon inherits, at the same numbers: these
    // lose close-on-exec (this process starts nothing else, and exits
    // soon); every other fd of this process keeps it.
    let mut inherited: Vec<RawFd> = handover.fds.iter().map(|(_, fd)| *fd).collect();
    inherited.push(ready_write.as_raw_fd());
    for fd in inherited {
        nix::fcntl::fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))
            .map_err(|e| fail("cannot pass the sockets on", &e))?;
    }
    let echo = config.sinks.iter().any(|s| s.writes_stdout());
    let mut command = Command::new(&exe);
    command
        .arg0(arg0)
        .args(args)
        .args(background_args(&handover, ready_write.as_raw_fd()))
        .stdin(Stdio::null())
        // Errors before it serves reach the caller; it then moves stderr to
        // /dev/null itself (see `report_ready`).
        .stderr(Stdio::inherit())
        .stdout(if echo {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    let mut child = command
        .spawn()
        .map_err(|e| fail(&format!("cannot start {}", exe.display()), &e))?;
    // Only the background daemon holds the write end from now on, so that
    // its exit reads as end-of-file here.
    drop(ready_write);
    let mut pipe = fs::File::from(ready_read);
    let mut byte = [0u8; 1];
    let outcome = loop {
        match io::Read::read(&mut pipe, &mut byte) {
            Ok(n) => break Ok(n == 1),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        }
    };
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => {
            let status = match child.wait() {
                Ok(status) => status.to_string(),
                Err(e) => format!("exit status unknown: {e}"),
            };
            Err(DaemonError::Start(format!(
                "the background daemon exited before it served ({status}); its error, if it \
                 printed one, is above"
            )))
        }
        Err(e) => Err(DaemonError::Start(format!(
            "cannot tell whether the background daemon (pid {}) serves: reading its readiness \
             pipe failed: {e}",
            child.id()
        ))),
    }
}

/// Tells whoever waits that the daemon serves: the process that started
/// it with `-daemonize`, and systemd (`NOTIFY_SOCKET`, `Type=notify`).
pub(super) fn report_ready(ready: Option<OwnedFd>, status: &str) {
    if let Some(fd) = ready {
        // The caller of `-daemonize` returns now. stderr goes to /dev/null
        // first (as memlogd's background daemon's does), so that the daemon
        // neither writes to a terminal it has left nor keeps open a pipe
        // that the caller's caller reads to the end.
        if let Ok(null) = fs::OpenOptions::new().write(true).open("/dev/null") {
            let _ = nix::unistd::dup2(null.as_raw_fd(), 2);
        }
        let _ = nix::unistd::write(fd.as_fd(), b"R");
    }
    super::notify::notify(&format!("READY=1\nSTATUS={status}"));
}
