//! `moto_server` (PyPI `moto[server]`) as CloudWatch Logs on loopback, for
//! tests: `moto_server -H 127.0.0.1 -p PORT`, one per test, any SigV4
//! credentials accepted.
//!
//! Use from a test file with `#[path = "support/moto.rs"] mod moto;`.
//!
//! moto answers CreateLogGroup, CreateLogStream, PutLogEvents (it checks
//! chronological order and reports too old / too new events, though for
//! several too-new events it names the last one's index, not the first)
//! and GetLogEvents; it does not check the batch size rules, so tests check
//! those themselves ([`ringtail::sinks::cloudwatch::check_request`]).
//!
//! When moto_server is missing, [`Moto::available`] installs it with
//! `pip install "moto[server]"` or says why it cannot; tests then skip,
//! except under `CI`, where they fail.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    child: Child,
    pub port: u16,
    log: tempfile::NamedTempFile,
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_installed() -> Result<(), String> {
    if have("moto_server") {
        return Ok(());
    }
    let pip = if have("pip") { "pip" } else { "pip3" };
    let out = Command::new(pip)
        .args(["install", "-q", "moto[server]"])
        .output()
        .map_err(|e| format!("{pip}: {e}; install moto with `pip install \"moto[server]\"`"))?;
    if !out.status.success() {
        return Err(format!(
            "pip install \"moto[server]\" failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // pyenv puts new commands behind a shim that needs a rehash.
    let _ = Command::new("sh")
        .args(["-c", "command -v pyenv && pyenv rehash"])
        .status();
    if have("moto_server") {
        Ok(())
    } else {
        Err("pip installed moto but moto_server is not on PATH".into())
    }
}

impl Moto {
    /// Whether the test can run; prints why not (and panics under `CI`).
    pub fn available(test: &str) -> bool {
        match ensure_installed() {
            Ok(()) => true,
            Err(why) if std::env::var_os("CI").is_none() => {
                eprintln!("SKIPPED {test}: {why}");
                false
            }
            Err(why) => panic!("{test} must run in CI: {why}"),
        }
    }

    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("start moto_server");
        let mut moto = Moto { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = moto.child.try_wait().unwrap() {
                panic!("moto_server exited ({status}): {}", moto.output());
            }
            assert!(
                Instant::now() < deadline,
                "moto_server does not listen: {}",
                moto.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What moto_server printed.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
