//! ringtail as a *managed* Docker plugin, end to end and offline: the
//! folder `contrib/docker-plugin/build.sh` makes (its `config.json` and a
//! rootfs holding only the static binary) goes through `docker plugin
//! create`, `docker plugin set` and `docker plugin enable` on a real,
//! private dockerd (see `support/dockerd.rs`); dockerd starts the plugin
//! itself, a busybox container logs through it, `docker logs` reads the
//! lines back, and the host reaches the plugin's ring the two ways the
//! plugin README documents: its HTTP API on the host's loopback (host
//! network) and its query socket in the mounted directory.
//!
//! Needs root, `dockerd` and `busybox`; elsewhere it returns early unless
//! `RINGTAIL_REQUIRE_DOCKER=1`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::dockerd::{unique_plugin_name, Dockerd};
use support::{free_port, static_bin, wait_for, DEADLINE};

/// `GET path` on the plugin's HTTP API (HTTP/1.0: the body comes whole,
/// not chunked); `None` while it does not answer.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(DEADLINE)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: t\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_string())
}

/// Disables and removes the plugin when the test ends, however it ends,
/// so that dockerd stops its process before the daemon itself goes.
struct Installed<'a> {
    docker: &'a Dockerd,
    name: String,
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        let _ = self
            .docker
            .try_run(&["plugin", "disable", "-f", &self.name]);
        let _ = self.docker.try_run(&["plugin", "rm", "-f", &self.name]);
    }
}

#[test]
fn managed_plugin_is_created_enabled_and_serves_the_host() {
    let Some(docker) = Dockerd::start() else {
        return;
    };
    docker.import_busybox("bb:latest");
    let work = tempfile::tempdir().unwrap();
    let folder = work.path().join("plugin");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("contrib/docker-plugin/build.sh"))
        .arg(&folder)
        .env("RINGTAIL_BIN", static_bin())
        .output()
        .expect("run contrib/docker-plugin/build.sh");
    assert!(
        built.status.success(),
        "build.sh: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    // The rootfs holds the binary and empty mount points, nothing else.
    assert!(folder.join("rootfs/bin/ringtail").is_file());
    assert!(folder.join("config.json").is_file());

    let sockets = work.path().join("sockets");
    std::fs::create_dir(&sockets).unwrap();
    let port = free_port();
    let name = unique_plugin_name("rtm");
    docker.run(&["plugin", "create", &name, folder.to_str().unwrap()]);
    let plugin = Installed {
        docker: &docker,
        name: name.clone(),
    };
    docker.run(&[
        "plugin",
        "set",
        &name,
        &format!("sockets.source={}", sockets.display()),
        &format!("args=--http 127.0.0.1:{port} --max-lines 10000"),
    ]);
    docker.run(&["plugin", "enable", &name]);
    let listed = String::from_utf8(docker.run(&["plugin", "ls"]).stdout).unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.contains(&name) && l.trim_end().ends_with("true")),
        "the plugin is listed as enabled:\n{listed}"
    );
    // dockerd started it: its HTTP API answers on the host's loopback.
    wait_for("the plugin's HTTP API on the host", || {
        http_get(port, "/healthz").is_some()
    });

    // A container logs through the plugin (stdout and stderr).
    let out = docker.run(&[
        "run",
        "--name",
        "web",
        "--log-driver",
        &name,
        "bb:latest",
        "sh",
        "-c",
        "echo hello from web; echo oops >&2; echo bye",
    ]);
    assert!(out.status.success());
    let logs = docker.run(&["logs", "web"]);
    assert_eq!(
        String::from_utf8_lossy(&logs.stdout),
        "hello from web\nbye\n"
    );
    assert_eq!(String::from_utf8_lossy(&logs.stderr), "oops\n");

    // The host reads the same lines from the plugin's HTTP API, labelled
    // with the container's metadata...
    let body = http_get(
        port,
        "/api/v1/entries?label.container_name=web&format=ndjson",
    )
    .expect("the entries answer");
    let entries: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    // stdout and stderr are copied by two goroutines in dockerd: their
    // order between streams is not fixed, within a stream it is.
    let stream = |name: &str| -> Vec<&str> {
        entries
            .iter()
            .filter(|e| e["stream"] == name)
            .filter_map(|e| e["msg"].as_str())
            .collect()
    };
    assert_eq!(stream("stdout"), ["hello from web", "bye"], "{body}");
    assert_eq!(stream("stderr"), ["oops"], "{body}");
    assert!(
        entries
            .iter()
            .all(|e| e["labels"]["image_name"] == "bb:latest"),
        "{body}"
    );

    // ...and from its query socket, bound into the mounted directory.
    let query = sockets.join("query.sock");
    wait_for("the query socket in the mounted directory", || {
        query.exists()
    });
    let read = Command::new(env!("CARGO_BIN_EXE_ringtail"))
        .args(["read", "--socket"])
        .arg(&query)
        .args(["--label", "container_name=web", "-o", "raw"])
        .output()
        .expect("run ringtail read");
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let mut read_lines: Vec<&str> = std::str::from_utf8(&read.stdout).unwrap().lines().collect();
    read_lines.sort_unstable();
    assert_eq!(read_lines, ["bye", "hello from web", "oops"]);

    docker.run(&["rm", "web"]);
    docker.run(&["plugin", "disable", &name]);
    drop(plugin);
    let listed = String::from_utf8(docker.run(&["plugin", "ls"]).stdout).unwrap();
    assert!(!listed.contains(&name), "removed:\n{listed}");
}
