//! `ringtail run -n NAME -- CMD ARGS...`: runs a command with its stdout
//! logged as `NAME.out` and its stderr as `NAME` (LinuxKit's `logwrite`
//! wrapper).
//!
//! The command writes into two pipes that `run` reads; every chunk goes
//! both to `run`'s own stdout/stderr and to a second pipe per stream whose
//! read end was registered with the daemon (one datagram per stream,
//! because every fd of a datagram gets the datagram's one name). So the
//! output shows where it always did and is logged too, and the daemon sees
//! end of file exactly when the command's output ends.
//!
//! If the daemon cannot be reached, `run` says so once on stderr and runs
//! the command anyway: its output then only goes to stdout/stderr. SIGINT,
//! SIGTERM, SIGHUP and SIGQUIT are forwarded to the command; the exit code
//! is the command's, or 128 + the signal that killed it.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

use clap::Args;
use nix::sys::signal::{SigSet, Signal};

use crate::sources::fdpass;

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Source name: stdout is logged as NAME.out, stderr as NAME. Default:
    /// the command's file name.
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: Option<String>,

    /// The daemon's ingest socket (default: the one `ringtail serve` uses
    /// by default).
    #[arg(long, value_name = "PATH")]
    pub socket_log: Option<PathBuf>,

    /// Use memlogd's ingest socket (/var/run/linuxkit-external-logging.sock).
    #[arg(long)]
    pub memlogd_paths: bool,

    /// The command and its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// The signals passed on to the command.
const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Runs `ringtail run`; returns the exit code.
pub fn main(args: RunArgs) -> i32 {
    match run(&args) {
        Ok(code) => code,
        Err(RunError { msg, code }) => {
            super::print_error(msg);
            code
        }
    }
}

struct RunError {
    msg: String,
    code: i32,
}

fn run(args: &RunArgs) -> Result<i32, RunError> {
    let program = &args.command[0];
    let name = args.name.clone().unwrap_or_else(|| {
        Path::new(program)
            .file_name()
            .unwrap_or(program)
            .to_string_lossy()
            .into_owned()
    });
    let socket = args
        .socket_log
        .clone()
        .unwrap_or_else(|| super::default_log_socket(args.memlogd_paths));
    let fail = |msg: String| RunError { msg, code: 1 };

    // Block the forwarded signals before any thread exists, so every thread
    // inherits the mask and the signal thread below is the only one that
    // takes them. (The command starts with a clean mask: the standard
    // library resets it in the child.)
    let mut signals = SigSet::empty();
    for s in FORWARDED {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(|e| fail(format!("cannot block signals to forward them: {e}")))?;

    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| fail(format!("cannot create a pipe: {e}")))
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (daemon_out, daemon_err) = match register(&socket, &name, pipe) {
        Ok((o, e)) => (Some(File::from(o)), Some(File::from(e))),
        Err(e) => {
            eprintln!(
                "ringtail: warning: not logging {name}: {e}; the command's output goes to stdout/stderr only"
            );
            (None, None)
        }
    };

    let mut command = Command::new(program);
    command
        .args(&args.command[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    let spawned = command.spawn();
    // The command object holds our copies of the write ends: drop it so the
    // pipes reach end of file when the command (and its children) close them.
    drop(command);
    let mut child = spawned.map_err(|e| {
        let code = if e.kind() == io::ErrorKind::NotFound {
            127
        } else {
            126
        };
        RunError {
            msg: format!("cannot run {}: {e}", program.to_string_lossy()),
            code,
        }
    })?;

    let copy_out = spawn_copy(File::from(out_r), Target::Stdout, daemon_out)
        .map_err(|e| fail(format!("cannot start copying stdout: {e}")))?;
    let copy_err = spawn_copy(File::from(err_r), Target::Stderr, daemon_err)
        .map_err(|e| fail(format!("cannot start copying stderr: {e}")))?;

    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    std::thread::Builder::new()
        .name("ringtail-signals".into())
        .spawn(move || loop {
            match signals.wait() {
                // The command may already be gone; nothing to do then.
                Ok(sig) => {
                    let _ = nix::sys::signal::kill(pid, sig);
                }
                Err(_) => return,
            }
        })
        .map_err(|e| fail(format!("cannot start forwarding signals: {e}")))?;

    let status = child
        .wait()
        .map_err(|e| fail(format!("cannot wait for the command: {e}")))?;
    // The copies end when the command's output does (its children may hold
    // the pipes a little longer, as with LinuxKit's logwrite).
    let _ = copy_out.join();
    let _ = copy_err.join();
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    })
}

/// Two pipes whose read ends the daemon now holds, registered as
/// `NAME.out` and `NAME`; returns their write ends.
fn register(
    socket: &Path,
    name: &str,
    pipe: impl Fn() -> Result<(OwnedFd, OwnedFd), RunError>,
) -> Result<(OwnedFd, OwnedFd), String> {
    let (out_r, out_w) = pipe().map_err(|e| e.msg)?;
    let (err_r, err_w) = pipe().map_err(|e| e.msg)?;
    fdpass::register(socket, format!("{name}.out").as_bytes(), &[out_r.as_fd()])
        .map_err(|e| e.to_string())?;
    fdpass::register(socket, name.as_bytes(), &[err_r.as_fd()]).map_err(|e| e.to_string())?;
    // Our read ends close here; the daemon has its own copies.
    Ok((out_w, err_w))
}

#[derive(Clone, Copy)]
enum Target {
    Stdout,
    Stderr,
}

/// Copies `from` to our stdout/stderr and to the daemon's pipe until end
/// of file. A destination that fails (our stdout closed, the daemon gone)
/// is dropped; the other keeps getting the output.
fn spawn_copy(
    mut from: File,
    target: Target,
    mut daemon: Option<File>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringtail-copy".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut local_ok = true;
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                let chunk = &buf[..n];
                if local_ok {
                    let written = match target {
                        Target::Stdout => {
                            let mut o = io::stdout().lock();
                            o.write_all(chunk).and_then(|()| o.flush())
                        }
                        Target::Stderr => io::stderr().lock().write_all(chunk),
                    };
                    local_ok = written.is_ok();
                }
                if let Some(d) = daemon.as_mut() {
                    if d.write_all(chunk).is_err() {
                        daemon = None;
                    }
                }
            }
        })
}
