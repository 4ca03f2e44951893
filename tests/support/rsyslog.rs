//! A real rsyslog (Debian's `rsyslog` and `rsyslog-relp`) as a syslog
//! receiver for tests: one `rsyslogd -n` in the foreground per test, with
//! its own temp directory, config, port and output file.
//!
//! Use from a test file with `#[path = "support/rsyslog.rs"] mod rsyslog;`.
//!
//! The receiver writes each message's raw text (`%rawmsg%`, the syslog
//! message without its octet count or RELP frame) as one line of
//! `raw.log`. Its ruleset runs with a `Direct` queue, so rsyslog writes a
//! message to the file before imrelp acknowledges it: an acknowledged
//! message survives even `kill -9` of rsyslog, and a test can demand that
//! every acknowledged message is in the file.
//!
//! The same command line a test runs, for trying it by hand:
//!
//! ```text
//! D=$(mktemp -d); cat > $D/rsyslog.conf <<EOF
//! global(workDirectory="$D" maxMessageSize="256k")
//! module(load="imrelp")            # or imtcp
//! template(name="raw" type="string" string="%rawmsg%\n")
//! ruleset(name="in" queue.type="Direct") { action(type="omfile" file="$D/raw.log" template="raw") }
//! input(type="imrelp" address="127.0.0.1" port="PORT" ruleset="in")
//! EOF
//! rsyslogd -n -f $D/rsyslog.conf -i $D/rsyslogd.pid
//! ```
//!
//! When rsyslog is missing, [`Rsyslog::available`] installs it with
//! apt-get (as root) or says why it cannot; tests then skip, except under
//! `CI`, where they fail.

#![allow(dead_code)]

use std::fs;
use std::net::TcpStream;

use super::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which input module listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// `imrelp`: RELP.
    Relp,
    /// `imtcp`: plain TCP, octet counting or LF framing.
    Tcp,
}

/// A running (or stopped) rsyslogd.
pub struct Rsyslog {
    dir: tempfile::TempDir,
    pub input: Input,
    pub port: u16,
    child: Option<Child>,
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn relp_module_present() -> bool {
    // Debian puts rsyslog's modules here; imrelp comes with rsyslog-relp.
    [
        "/usr/lib/x86_64-linux-gnu/rsyslog/imrelp.so",
        "/usr/lib/rsyslog/imrelp.so",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists())
        || Command::new("sh")
            .args(["-c", "ls /usr/lib/*/rsyslog/imrelp.so"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn ensure_installed() -> Result<(), String> {
    if have("rsyslogd") && relp_module_present() {
        return Ok(());
    }
    let root = rustix::process::geteuid().is_root();
    if !root || !have("apt-get") {
        return Err(format!(
            "rsyslog and rsyslog-relp are not installed and this test cannot install them ({}); \
             install them with `apt-get install rsyslog rsyslog-relp`",
            if root { "no apt-get" } else { "not root" }
        ));
    }
    for args in [
        &["update", "-q"][..],
        &["install", "-y", "-q", "rsyslog", "rsyslog-relp"][..],
    ] {
        let out = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map_err(|e| format!("apt-get: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "apt-get {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    if have("rsyslogd") && relp_module_present() {
        Ok(())
    } else {
        Err("apt-get ran but rsyslogd or imrelp is still missing".into())
    }
}

impl Rsyslog {
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

    /// Starts rsyslogd listening on a free loopback port.
    pub fn start(input: Input) -> Rsyslog {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        let (module, kind) = match input {
            Input::Relp => ("imrelp", "imrelp"),
            Input::Tcp => ("imtcp", "imtcp"),
        };
        let conf = format!(
            "global(workDirectory=\"{d}\" maxMessageSize=\"256k\")\n\
             module(load=\"{module}\")\n\
             template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             ruleset(name=\"in\" queue.type=\"Direct\") {{ action(type=\"omfile\" file=\"{d}/raw.log\" template=\"raw\") }}\n\
             input(type=\"{kind}\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"in\")\n"
        );
        fs::write(dir.path().join("rsyslog.conf"), conf).unwrap();
        let mut r = Rsyslog {
            dir,
            input,
            port,
            child: None,
        };
        r.restart();
        r
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn raw_log(&self) -> PathBuf {
        self.dir.path().join("raw.log")
    }

    /// Starts rsyslogd again (same config, port and output file) and waits
    /// until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "rsyslogd is already running");
        let d = self.dir.path();
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("rsyslogd.stderr"))
            .unwrap();
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(d.join("rsyslog.conf"))
            .arg("-i")
            .arg(d.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(self.addr()).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "rsyslogd exited ({status}) before listening: {}",
                    fs::read_to_string(d.join("rsyslogd.stderr")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd does not listen on {}",
                self.addr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let child = self.child.as_ref().expect("rsyslogd is not running");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child pid");
        rustix::process::kill_process(pid, sig).expect("signal rsyslogd");
    }

    /// SIGTERM and wait: rsyslog's orderly shutdown.
    pub fn stop(&mut self) {
        self.signal(rustix::process::Signal::TERM);
        self.child.take().unwrap().wait().unwrap();
    }

    /// SIGKILL and wait.
    pub fn kill(&mut self) {
        self.signal(rustix::process::Signal::KILL);
        self.child.take().unwrap().wait().unwrap();
    }

    /// SIGSTOP: rsyslogd freezes, its sockets stay open.
    pub fn freeze(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// SIGCONT: rsyslogd goes on after [`freeze`](Self::freeze).
    pub fn thaw(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    /// Bytes that arrived on rsyslog's side of connections to its port and
    /// that it has not read yet (from `/proc/net/tcp`).
    pub fn unread_bytes(&self) -> u64 {
        let port = format!(":{:04X}", self.port);
        let text = fs::read_to_string("/proc/net/tcp").unwrap();
        text.lines()
            .skip(1)
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                // Established (01) connections whose local end is the port.
                (f.get(1)?.ends_with(&port) && f.get(3)? == &"01").then(|| {
                    let rx = f[4].split(':').nth(1)?;
                    u64::from_str_radix(rx, 16).ok()
                })?
            })
            .sum()
    }

    /// The lines written so far.
    pub fn lines(&self) -> Vec<String> {
        match fs::read_to_string(self.raw_log()) {
            Ok(text) => text.lines().map(str::to_string).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Waits until at least `n` lines are written (or `timeout` passes)
    /// and returns the lines.
    pub fn wait_for_lines(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.lines();
            if lines.len() >= n || Instant::now() >= deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// rsyslogd's own stderr, for failure messages.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("rsyslogd.stderr")).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen rsyslogd only dies of SIGKILL.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
