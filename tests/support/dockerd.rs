//! A private, real dockerd for end-to-end tests (toolchain.md, "A real
//! Docker daemon").
//!
//! [`Dockerd::start`] runs Debian's `dockerd` beside anything else on the
//! machine: its own data root, exec root, API socket, pid file and CLI
//! config, all in one temporary directory, with no iptables, no bridge and
//! vfs storage, so it needs no network and touches no other daemon. The
//! `bb:latest` image ([`Dockerd::import_busybox`]) is made offline from
//! `busybox-static` by `docker import`. Dropping the [`Dockerd`] stops the
//! daemon (SIGTERM, then SIGKILL if it will not go) and removes the
//! directory.
//!
//! What it cannot isolate: legacy plugins are found in the fixed
//! `/run/docker/plugins/` and plugin FIFOs live in `/run/docker/logging/`,
//! whatever the exec root; tests name their plugin sockets uniquely
//! ([`unique_plugin_name`]).
//!
//! Running it needs root, `dockerd` and `busybox` (`apt-get install -y
//! docker.io busybox-static`). Without them [`Dockerd::start`] returns
//! `None` after printing why, and the test returns early; with
//! `RINGTAIL_REQUIRE_DOCKER=1` in the environment (as `.ci/run` sets it
//! when it runs as root) a missing piece fails the test instead.
//!
//! Use it from a test file with
//! `#[path = "support/dockerd.rs"] mod dockerd;`.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long dockerd may take to answer after it started (it needs ~2 s).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long it may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where dockerd looks for legacy plugins, whatever its exec root.
pub const PLUGIN_DIR: &str = "/run/docker/plugins";

/// The busybox applets linked into the test image.
const APPLETS: [&str; 14] = [
    "sh", "echo", "seq", "sleep", "cat", "head", "tr", "printf", "yes", "true", "dd", "date",
    "env", "ls",
];

/// A running private dockerd.
pub struct Dockerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// `unix:///.../docker.sock`, for `DOCKER_HOST`.
    pub host: String,
    /// The CLI that matches the daemon.
    pub docker: PathBuf,
    /// dockerd's log file.
    pub log: PathBuf,
}

fn require() -> bool {
    std::env::var_os("RINGTAIL_REQUIRE_DOCKER").is_some_and(|v| v == "1")
}

/// `None` and a message when the test cannot run here.
fn skip(why: &str) -> Option<Dockerd> {
    if require() {
        panic!("RINGTAIL_REQUIRE_DOCKER=1 but {why}");
    }
    eprintln!("skipping: {why} (apt-get install -y docker.io busybox-static, run as root)");
    None
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A plugin name no other test or process on the machine uses.
pub fn unique_plugin_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Dockerd {
    /// Starts a private dockerd and waits until it answers; `None` if this
    /// machine cannot run one (see the module docs).
    pub fn start() -> Option<Dockerd> {
        if !rustix::process::geteuid().is_root() {
            return skip("a private dockerd needs root");
        }
        let Some(dockerd) = which("dockerd") else {
            return skip("dockerd is not installed");
        };
        if which("busybox").is_none() {
            return skip("busybox is not installed");
        }
        // The Debian CLI beside the daemon: another `docker` earlier in
        // PATH may be of a different version.
        let dockerd = std::fs::canonicalize(&dockerd).unwrap_or(dockerd);
        let docker = ["/usr/bin/docker"]
            .into_iter()
            .map(PathBuf::from)
            .chain(dockerd.parent().map(|d| d.join("docker")))
            .find(|p| p.is_file())
            .or_else(|| which("docker"))
            .expect("docker.io ships the docker CLI beside dockerd");

        let dir = tempfile::Builder::new()
            .prefix("rt-dockerd-")
            .tempdir_in("/tmp")
            .expect("a temporary directory");
        let d = dir.path();
        let sock = d.join("docker.sock");
        let log = d.join("dockerd.log");
        let log_file = std::fs::File::create(&log).expect("dockerd log file");
        let child = Command::new(&dockerd)
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .args(["--storage-driver=vfs"])
            .arg(format!("--data-root={}", d.join("data").display()))
            .arg(format!("--exec-root={}", d.join("exec").display()))
            .arg(format!("--pidfile={}", d.join("docker.pid").display()))
            .arg(format!("--host=unix://{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file)
            .spawn()
            .expect("dockerd starts");
        let mut me = Dockerd {
            host: format!("unix://{}", sock.display()),
            dir,
            child: Some(child),
            docker,
            log,
        };
        me.wait_ready();
        Some(me)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "dockerd exited ({status}) before it answered:\n{}",
                    self.log_tail()
                );
            }
            let out = self
                .docker()
                .args(["version", "--format", "{{.Server.Version}}"])
                .output();
            if out.as_ref().is_ok_and(|o| o.status.success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within {READY_TIMEOUT:?}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of dockerd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// dockerd's process id (while it runs).
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// The temporary directory everything lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `docker` command talking to this daemon.
    pub fn docker(&self) -> Command {
        let mut c = Command::new(&self.docker);
        c.env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.dir.path().join("cli"))
            .stdin(Stdio::null());
        c
    }

    /// Runs `docker ARGS`; panics with its stderr and dockerd's log if it
    /// fails.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.try_run(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}):\n{}\ndockerd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        out
    }

    /// Runs `docker ARGS` and returns whatever happened.
    pub fn try_run(&self, args: &[&str]) -> Output {
        self.docker()
            .args(args)
            .output()
            .expect("the docker CLI runs")
    }

    /// Builds `tag` (such as `bb:latest`) from busybox-static: `/bin/busybox`
    /// and a few applets linked to it, imported with `docker import`.
    pub fn import_busybox(&self, tag: &str) {
        let rootfs = self.dir.path().join("bb-rootfs");
        let bin = rootfs.join("bin");
        std::fs::create_dir_all(&bin).expect("rootfs");
        std::fs::create_dir_all(rootfs.join("tmp")).expect("rootfs /tmp");
        let busybox = which("busybox").expect("checked at start");
        std::fs::copy(&busybox, bin.join("busybox")).expect("copy busybox");
        for applet in APPLETS {
            let link = bin.join(applet);
            if !link.exists() {
                symlink("busybox", &link).expect("applet link");
            }
        }
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tar runs");
        let tar_out = tar.stdout.take().expect("piped");
        let out = self
            .docker()
            .args(["import", "-", tag])
            .stdin(tar_out)
            .output()
            .expect("docker import runs");
        assert!(tar.wait().expect("tar ends").success(), "tar failed");
        assert!(
            out.status.success(),
            "docker import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the daemon and waits for it (also done on drop).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM lets dockerd stop its containers and its containerd.
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Creates the legacy plugin directory and returns where a plugin named
/// `name` must listen.
pub fn plugin_socket_path(name: &str) -> PathBuf {
    std::fs::create_dir_all(PLUGIN_DIR).expect("create /run/docker/plugins");
    let path = Path::new(PLUGIN_DIR).join(format!("{name}.sock"));
    let _ = std::fs::remove_file(&path);
    path
}

/// Writes `text` to stderr (visible with `--nocapture`), flushed.
pub fn note(text: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{text}");
}
