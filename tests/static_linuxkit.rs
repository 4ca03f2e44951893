//! The static binary and the LinuxKit package, run for real in scratch
//! roots (as root: `chroot` and a `proc` mount):
//! - the binary from `scripts/build-static` asks for no dynamic loader and
//!   no shared library, and serves, logs, reads and reads a ring file post
//!   mortem in a root that holds nothing but itself;
//! - the LinuxKit package's root (`contrib/linuxkit/build.sh
//!   --rootfs-only`), with a static busybox as LinuxKit's init provides
//!   one: its init script starts ringtail on memlogd's socket paths under
//!   /var/run and returns once it serves; `logwrite` and `logread` (the
//!   package's names for ringtail) work against it;
//! - memlogd's `startmemlogd` handover: the sockets bound by the parent
//!   and passed as fds 3 and 4 to `memlogd -fd-log 3 -fd-query 4`.
//!
//! The static binary is `RINGTAIL_STATIC_BIN` if set, else built here by
//! scripts/build-static (in the same profile as this test; the first build
//! takes minutes, later ones reuse it).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::{static_bin, wait_for};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}): {}{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Runs `args` (program first) chrooted into `root`.
fn chroot(root: &Path, args: &[&str]) -> Output {
    Command::new("chroot")
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .expect("run chroot")
}

/// /proc mounted in a scratch root while it lives (`-daemonize`
/// re-executes /proc/self/exe).
struct ProcMount(PathBuf);

impl ProcMount {
    fn new(root: &Path) -> ProcMount {
        let at = root.join("proc");
        std::fs::create_dir_all(&at).unwrap();
        let o = Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(&at)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount proc: {}", text(&o.stderr));
        ProcMount(at)
    }
}

impl Drop for ProcMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The processes whose root directory is `root`: the daemons started in
/// it (found by their root, since `-daemonize` leaves no child of ours).
fn processes_in(root: &Path) -> Vec<i32> {
    let root = root.canonicalize().unwrap();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(e.path().join("root")).is_ok_and(|r| r == root) {
            out.push(pid);
        }
    }
    out
}

/// Stops (SIGTERM) every daemon started in `root`, and waits for them.
fn stop_in(root: &Path) {
    let pids = processes_in(root);
    for &pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    wait_for("the daemons in the scratch root to stop", || {
        processes_in(root).is_empty()
    });
}

/// Stops the daemons of a root when the test ends, failing or not.
struct StopOnDrop(PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for pid in processes_in(&self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn the_static_binary_runs_in_an_empty_root() {
    let bin = static_bin();
    let elf = ok(
        Command::new("readelf")
            .arg("-ld")
            .arg(bin)
            .output()
            .unwrap(),
        "readelf",
    );
    assert!(!elf.contains("INTERP"), "asks for a dynamic loader:\n{elf}");
    assert!(!elf.contains("(NEEDED)"), "needs shared libraries:\n{elf}");

    // Nothing in the root but the binary and an empty /tmp.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy(bin, root.join("ringtail")).unwrap();
    let _stop = StopOnDrop(root.clone());
    let version = ok(chroot(&root, &["/ringtail", "--version"]), "--version");
    assert!(version.starts_with("ringtail "), "{version}");

    let mut daemon = Command::new("chroot")
        .arg(&root)
        .args(["/ringtail", "serve", "--socket-log", "/log.sock"])
        .args(["--socket-query", "/query.sock", "--http", "off"])
        .args(["--ring-file", "/ring"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = support::collect(daemon.stderr.take().unwrap());
    wait_for("the static daemon to listen", || {
        stderr.lock().unwrap().contains("listening")
    });
    ok(
        chroot(
            &root,
            &[
                "/ringtail",
                "run",
                "--socket-log",
                "/log.sock",
                "-n",
                "self",
                "--",
                "/ringtail",
                "--version",
            ],
        ),
        "run",
    );
    let mut out = String::new();
    wait_for("the logged line", || {
        out = ok(
            chroot(&root, &["/ringtail", "read", "--socket", "/query.sock"]),
            "read",
        );
        out.contains(";self.out;ringtail ")
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(support::wait_exit(&mut daemon).success());
    // Post-mortem, in the same empty root.
    let dead = ok(
        chroot(
            &root,
            &[
                "/ringtail",
                "read",
                "--ring-file",
                "/ring",
                "--source",
                "self.out",
            ],
        ),
        "read --ring-file",
    );
    assert!(dead.contains(";self.out;ringtail "), "{dead}");
}

/// A LinuxKit-like root: the package's files, a static busybox as /bin/sh,
/// /var/run, /proc.
fn linuxkit_root(dir: &Path) -> PathBuf {
    let pkg = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/linuxkit");
    let root = dir.join("root");
    ok(
        Command::new(pkg.join("build.sh"))
            .arg("--rootfs-only")
            .env("RINGTAIL_BIN", static_bin())
            .env("ROOTFS", &root)
            .output()
            .unwrap(),
        "contrib/linuxkit/build.sh",
    );
    for d in ["bin", "var/run", "tmp", "dev"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    // LinuxKit's root has /dev/null (-daemonize puts the daemon's stdin
    // there).
    ok(
        Command::new("mknod")
            .args(["-m", "666"])
            .arg(root.join("dev/null"))
            .args(["c", "1", "3"])
            .output()
            .unwrap(),
        "mknod /dev/null",
    );
    let busybox = ok(
        Command::new("sh")
            .args(["-c", "command -v busybox"])
            .output()
            .unwrap(),
        "busybox (apt-get install busybox-static)",
    );
    let busybox = busybox.trim();
    let file = ok(
        Command::new("file")
            .arg("-L")
            .arg(busybox)
            .output()
            .unwrap(),
        "file",
    );
    assert!(
        file.contains("statically linked"),
        "a static busybox is needed (apt-get install busybox-static): {file}"
    );
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    root
}

#[test]
fn the_linuxkit_init_script_starts_ringtail_on_memlogd_paths() {
    let dir = tempfile::tempdir().unwrap();
    let root = linuxkit_root(dir.path());
    let _stop = StopOnDrop(root.clone());
    let _proc = ProcMount::new(&root);
    // The init script returns once the daemon serves: no wait after it.
    ok(chroot(&root, &["/etc/init.d/ringtail"]), "the init script");
    assert!(root.join("var/run/linuxkit-external-logging.sock").exists());
    assert!(root.join("var/run/memlogdq.sock").exists());
    // logwrite (the wrapper) as a LinuxKit service would run it.
    ok(
        chroot(
            &root,
            &[
                "/usr/bin/logwrite",
                "-n",
                "svc",
                "/bin/sh",
                "-c",
                "echo from a service; echo oops >&2",
            ],
        ),
        "logwrite",
    );
    let mut out = String::new();
    wait_for("logread to show the service's lines", || {
        out = ok(chroot(&root, &["/usr/bin/logread"]), "logread");
        out.contains(";svc.out;from a service") && out.contains(";svc;oops")
    });
    // ringtail's own reader on memlogd's paths, with a filter.
    let json = ok(
        chroot(
            &root,
            &[
                "/usr/bin/ringtail",
                "read",
                "--memlogd-paths",
                "--source",
                "svc",
                "-o",
                "json",
            ],
        ),
        "ringtail read",
    );
    let v: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(
        (v["source"].as_str(), v["msg"].as_str()),
        (Some("svc"), Some("oops"))
    );
    stop_in(&root);
    assert!(
        !root.join("var/run/memlogdq.sock").exists(),
        "the daemon removes its sockets when it stops"
    );
}

/// startmemlogd binds both sockets, then starts memlogd with them as fds 3
/// (datagram, fd passing) and 4 (stream, queries): `memlogd -fd-log 3
/// -fd-query 4`. Here python binds and passes them the same way (Go's
/// ExtraFiles become fds 3 and 4).
#[test]
fn memlogd_handover_of_fds_3_and_4() {
    let dir = tempfile::tempdir().unwrap();
    let root = linuxkit_root(dir.path());
    let _stop = StopOnDrop(root.clone());
    let script = r#"
import os, socket, sys
root = sys.argv[1]
log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
log.bind(root + "/var/run/linuxkit-external-logging.sock")
query = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
query.bind(root + "/var/run/memlogdq.sock")
query.listen(16)
# Above 4 first, so that dup2 onto 3 and 4 never meets itself (a no-op
# that would leave close-on-exec set).
l, q = os.dup(log.fileno()) + 10, os.dup(query.fileno()) + 10
os.dup2(log.fileno(), l)
os.dup2(query.fileno(), q)
log.close()
query.close()
os.dup2(l, 3)
os.dup2(q, 4)
os.execvp("chroot", ["chroot", root, "/usr/bin/memlogd", "-fd-log", "3", "-fd-query", "4", "-max-lines", "100"])
"#;
    let mut daemon = Command::new("python3")
        .args(["-c", script])
        .arg(&root)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (apt-get install python3)");
    let stderr = support::collect(daemon.stderr.take().unwrap());
    wait_for("memlogd (ringtail) to listen on fds 3 and 4", || {
        let e = stderr.lock().unwrap().clone();
        assert!(!e.contains("error"), "{e}");
        e.contains("listening")
    });
    let e = stderr.lock().unwrap().clone();
    assert!(e.contains("fd 3") && e.contains("fd 4"), "{e}");
    ok(
        chroot(
            &root,
            &[
                "/usr/bin/logwrite",
                "-n",
                "handed",
                "/bin/sh",
                "-c",
                "echo over fd 3",
            ],
        ),
        "logwrite",
    );
    let mut out = String::new();
    wait_for("the line through the handed-over sockets", || {
        out = ok(chroot(&root, &["/usr/bin/logread"]), "logread");
        out.contains(";handed.out;over fd 3")
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(support::wait_exit(&mut daemon).success());
    // Sockets it did not create are not its to remove.
    assert!(root.join("var/run/memlogdq.sock").exists());
}
