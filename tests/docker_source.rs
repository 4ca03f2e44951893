//! ringtail as a Docker logging driver, end to end: a real dockerd (see
//! `support/dockerd.rs`) runs busybox containers with
//! `--log-driver <ringtail's plugin socket name>`, a real `ringtail serve
//! --docker-plugin` stores their lines, and `docker logs` reads them back.
//!
//! They need root, `dockerd` and `busybox` (`apt-get install -y docker.io
//! busybox-static`); elsewhere they return early unless
//! `RINGTAIL_REQUIRE_DOCKER=1`. `driver_figures` (ignored by default)
//! measures the driver against Docker's own in the same run:
//! `cargo test --release --test docker_source -- --ignored --nocapture`.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::dockerd::{note, plugin_socket_path, unique_plugin_name, Dockerd};
use support::{wait_for, Daemon};

/// One dockerd at a time: they share `/run/docker/plugins` and two cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// A private dockerd with the busybox image, and ringtail serving the
/// plugin socket `name`.
struct Setup {
    docker: Dockerd,
    ringtail: Option<Daemon>,
    dir: tempfile::TempDir,
    name: String,
    sock: PathBuf,
    extra: Vec<String>,
}

impl Setup {
    fn new(extra: &[&str]) -> Option<Setup> {
        let docker = Dockerd::start()?;
        docker.import_busybox("bb:latest");
        let name = unique_plugin_name("rt");
        let sock = plugin_socket_path(&name);
        let mut s = Setup {
            docker,
            ringtail: None,
            dir: tempfile::tempdir().unwrap(),
            name,
            sock,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.start_ringtail();
        Some(s)
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("docker-plugin.json")
    }

    fn start_ringtail(&mut self) {
        let mut args = vec![
            "--docker-plugin".to_string(),
            self.sock.display().to_string(),
            "--docker-state".to_string(),
            self.state().display().to_string(),
        ];
        args.extend(self.extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ringtail = Some(Daemon::start(self.dir.path(), &args));
    }

    fn ringtail(&self) -> &Daemon {
        self.ringtail.as_ref().expect("ringtail runs")
    }

    fn run(&self, args: &[&str]) -> String {
        String::from_utf8(self.docker.run(args).stdout).unwrap()
    }

    /// `docker run -d --log-driver <ringtail> ARGS`: the container id.
    fn start(&self, args: &[&str]) -> String {
        let mut all = vec!["run", "-d", "--log-driver", &self.name];
        all.extend_from_slice(args);
        self.run(&all).trim().to_string()
    }

    /// `docker logs ARGS` as bytes.
    fn logs(&self, args: &[&str]) -> Vec<u8> {
        let mut all = vec!["logs"];
        all.extend_from_slice(args);
        self.docker.run(&all).stdout
    }

    /// The container's entries in the ring, every field (ndjson).
    fn entries(&self, container: &str) -> Vec<Value> {
        let out = self.ringtail().read(&["-o", "ndjson"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["labels"]["container_id"] == container)
            .collect()
    }

    fn wait_entries(&self, container: &str, n: usize) -> Vec<Value> {
        let mut got = Vec::new();
        wait_for(&format!("{n} entries of {container}"), || {
            got = self.entries(container);
            got.len() >= n
        });
        got
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // Containers first, while the plugin still answers StopLogging.
        let ids = self.docker.try_run(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker.try_run(&["rm", "-f", id]);
        }
        self.docker.stop();
        let _ = std::fs::remove_file(&self.sock);
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn msgs(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["msg"].as_str().unwrap().to_string())
        .collect()
}

fn seq_text(from: u64, to: u64) -> String {
    (from..=to).map(|i| format!("{i}\n")).collect()
}

#[test]
fn container_lines_arrive_with_their_metadata() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s) = Setup::new(&["--max-line-len", "131072"]) else {
        return;
    };
    let before = now_ns();
    let out = s.docker.run(&[
        "run",
        "--name",
        "web",
        "--log-driver",
        &s.name,
        "--log-opt",
        "labels=com.example.team",
        "--log-opt",
        "env=APP_MODE",
        "--label",
        "com.example.team=core",
        "-e",
        "APP_MODE=prod",
        "bb:latest",
        "sh",
        "-c",
        "echo out; echo err >&2; printf 'bin\\001\\377x\\n'",
    ]);
    let after = now_ns();
    assert_eq!(out.stdout, b"out\nbin\x01\xffx\n");
    let id = s
        .run(&["inspect", "--format", "{{.Id}}", "web"])
        .trim()
        .to_string();
    let image = s
        .run(&["inspect", "--format", "{{.Image}}", "web"])
        .trim()
        .to_string();
    let entries = s.wait_entries(&id, 3);
    note(&format!("entries of a container: {entries:#?}"));
    let mut by_msg: BTreeMap<String, &Value> = BTreeMap::new();
    for e in &entries {
        by_msg.insert(e["msg"].as_str().unwrap().to_string(), e);
    }
    assert_eq!(by_msg["out"]["stream"], "stdout");
    assert_eq!(by_msg["err"]["stream"], "stderr");
    for e in &entries {
        assert_eq!(e["source"], "web", "the default tag is {{{{.Name}}}}");
        let l = &e["labels"];
        assert_eq!(l["container_id"], id.as_str());
        assert_eq!(l["container_name"], "web");
        assert_eq!(l["image_name"], "bb:latest");
        assert_eq!(l["image_id"], image.as_str());
        assert_eq!(l["com_example_team"], "core");
        assert_eq!(l["APP_MODE"], "prod");
        let t = e["source_time_ns"].as_u64().expect("time_nano kept");
        assert!(
            (before..=after).contains(&t),
            "{t} not in {before}..{after}"
        );
        assert!(e["time_ns"].as_u64().unwrap() >= t);
    }
    // Binary bytes are kept (shown escaped by ndjson).
    assert!(
        by_msg
            .keys()
            .any(|m| m.starts_with("bin") && m.ends_with('x')),
        "{by_msg:?}"
    );

    // Docker's etwlogs message, byte for byte.
    let etw = s.ringtail().read(&["-o", "etw"]);
    let etw = String::from_utf8_lossy(&etw.stdout).into_owned();
    let want = format!(
        "container_name: web, image_name: bb:latest, container_id: {id}, image_id: {image}, source: stdout, log: out"
    );
    assert!(etw.lines().any(|l| l == want), "{want}\nnot in\n{etw}");

    // Labels filter queries: the query socket's JSON request.
    let other = s.start(&["--name", "api", "bb:latest", "echo", "other"]);
    s.wait_entries(&other, 1);
    let q = s
        .ringtail()
        .read(&["--label", "container_name=web", "-o", "raw"]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let got = String::from_utf8_lossy(&q.stdout);
    assert!(got.contains("out\n") && !got.contains("other"), "{got}");

    // A 100 KiB line comes back whole: one entry, and one line in
    // `docker logs` (dockerd cut it in 16 KiB pieces).
    let long = s.start(&[
        "bb:latest",
        "sh",
        "-c",
        "head -c 102400 /dev/zero | tr '\\0' a; echo; echo short",
    ]);
    s.run(&["wait", &long]);
    let e = s.wait_entries(&long, 2);
    assert_eq!(
        e.len(),
        2,
        "{:?}",
        msgs(&e).iter().map(|m| m.len()).collect::<Vec<_>>()
    );
    assert_eq!(e[0]["msg"].as_str().unwrap().len(), 102_400);
    assert!(e[0].get("partial").is_none());
    let want = format!("{}\nshort\n", "a".repeat(102_400));
    assert_eq!(String::from_utf8(s.logs(&[&long])).unwrap(), want);
}

#[test]
fn docker_logs_reads_the_ring() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s) = Setup::new(&["--max-line-len", "1000"]) else {
        return;
    };
    // A running container.
    let id = s.start(&["bb:latest", "sh", "-c", "seq 1 5; exec sleep 300"]);
    s.wait_entries(&id, 5);
    assert_eq!(s.logs(&[&id]), seq_text(1, 5).as_bytes());
    assert_eq!(s.logs(&["--tail", "2", &id]), b"4\n5\n");
    assert_eq!(s.logs(&["--tail", "0", &id]), b"");
    assert_eq!(s.logs(&["--tail", "all", &id]), seq_text(1, 5).as_bytes());
    assert_eq!(s.logs(&["--since", "2099-01-01T00:00:00Z", &id]), b"");
    assert_eq!(
        s.logs(&[
            "--since",
            "2020-01-01T00:00:00Z",
            "--until",
            "2099-01-01T00:00:00Z",
            &id
        ]),
        seq_text(1, 5).as_bytes()
    );
    assert_eq!(s.logs(&["--until", "2020-01-01T00:00:00Z", &id]), b"");
    // Timestamps come from the container's own time_nano.
    let stamped = String::from_utf8(s.logs(&["-t", "--tail", "1", &id])).unwrap();
    assert!(
        stamped.starts_with("20") && stamped.ends_with(" 5\n"),
        "{stamped}"
    );
    // Lines longer than --max-line-len (stored as partial pieces) are one
    // line again.
    let long = s.start(&[
        "bb:latest",
        "sh",
        "-c",
        "head -c 5000 /dev/zero | tr '\\0' b; echo; echo end",
    ]);
    s.run(&["wait", &long]);
    assert_eq!(s.wait_entries(&long, 6).len(), 6, "5 pieces and one line");
    assert_eq!(
        String::from_utf8(s.logs(&["--tail", "2", &long])).unwrap(),
        format!("{}\nend\n", "b".repeat(5000))
    );
    s.run(&["rm", "-f", &id]);

    // `docker logs -f` while the container writes: it ends when the
    // container stops, with every line.
    let slow = s.start(&[
        "bb:latest",
        "sh",
        "-c",
        "for i in $(seq 1 20); do echo $i; sleep 0.05; done",
    ]);
    let follower = s
        .docker
        .docker()
        .args(["logs", "-f", &slow])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = follower.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), seq_text(1, 20));

    // `--tail 100 -f` prints its lines at once, then follows.
    let live = s.start(&[
        "bb:latest",
        "sh",
        "-c",
        "seq 1 1000; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after",
    ]);
    s.wait_entries(&live, 1000);
    let t = Instant::now();
    let mut child = s
        .docker
        .docker()
        .args(["logs", "--tail", "100", "-f", &live])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = support::collect(child.stdout.take().unwrap());
    wait_for("the last 100 lines", || {
        stdout.lock().unwrap().ends_with("1000\n")
    });
    note(&format!(
        "docker logs --tail 100 -f printed its lines in {:?} (including the docker CLI's start)",
        t.elapsed()
    ));
    s.run(&["exec", &live, "sh", "-c", "echo > /tmp/go"]);
    let status = child.wait().unwrap();
    assert!(status.success());
    assert_eq!(
        *stdout.lock().unwrap(),
        format!("{}after\n", seq_text(901, 1000))
    );

    // A stopped container's logs.
    let gone = s.start(&["bb:latest", "sh", "-c", "echo x; echo y"]);
    s.run(&["wait", &gone]);
    s.wait_entries(&gone, 2);
    assert_eq!(s.logs(&[&gone]), b"x\ny\n");
    assert_eq!(
        s.logs(&["-f", &gone]),
        b"x\ny\n",
        "-f ends for a stopped container"
    );
}

/// A container that logs as fast as it can is not slowed down, and every
/// line is stored, in order.
#[test]
fn a_fast_container_loses_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s) = Setup::new(&["--max-lines", "400000"]) else {
        return;
    };
    let n = 200_000;
    let t = Instant::now();
    s.run(&[
        "run",
        "--name",
        "fast",
        "--log-driver",
        &s.name,
        "bb:latest",
        "seq",
        "1",
        &n.to_string(),
    ]);
    let took = t.elapsed();
    let id = s
        .run(&["inspect", "--format", "{{.Id}}", "fast"])
        .trim()
        .to_string();
    let logs = s.logs(&[&id]);
    assert_eq!(logs.len(), seq_text(1, n).len(), "every line");
    assert!(logs == seq_text(1, n).as_bytes(), "in order");
    note(&format!("{n} lines through ringtail in {took:?}"));

    // 20 containers at once.
    let ids: Vec<String> = (0..20)
        .map(|_| s.start(&["bb:latest", "seq", "1", "5000"]))
        .collect();
    for id in &ids {
        s.run(&["wait", id]);
    }
    for id in &ids {
        assert_eq!(
            s.logs(&[id]),
            seq_text(1, 5000).as_bytes(),
            "container {id}"
        );
    }
}

/// ringtail restarted while a container logs: the FIFO is re-attached and
/// no line is lost (the ring file keeps what was stored before).
#[test]
fn a_restarted_ringtail_reattaches() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ring_file = tempfile::NamedTempFile::new().unwrap();
    let ring = ring_file.path().display().to_string();
    let Some(mut s) = Setup::new(&["--ring-file", &ring]) else {
        return;
    };
    let id = s.start(&[
        "bb:latest",
        "sh",
        "-c",
        "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo $i; if [ $((i % 100)) = 0 ]; then sleep 0.05; fi; done",
    ]);
    s.wait_entries(&id, 300);
    let state = std::fs::read_to_string(s.state()).unwrap();
    assert!(
        state.contains(&id),
        "the state file names the FIFO: {state}"
    );
    let status = s.ringtail.take().unwrap().stop();
    assert!(status.success(), "{status}");
    // The container goes on writing into the pipe meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    s.start_ringtail();
    s.run(&["wait", &id]);
    wait_for("all 3000 lines", || {
        s.logs(&[&id]) == seq_text(1, 3000).as_bytes()
    });
    let selflog = s.ringtail().read(&["-o", "raw"]);
    assert!(
        String::from_utf8_lossy(&selflog.stdout).contains("re-attached to 1 container FIFO"),
        "{}",
        String::from_utf8_lossy(&selflog.stdout)
    );
    // StopLogging forgot it.
    wait_for("the state to forget the FIFO", || {
        !std::fs::read_to_string(s.state()).unwrap().contains(&id)
    });
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The figures, against Docker's own drivers in the same run.
#[test]
#[ignore = "a benchmark: run it on purpose (see the module docs)"]
fn driver_figures() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s) = Setup::new(&["--max-lines", "4000000"]) else {
        return;
    };
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let n = 1_000_000u64;
    let expected = seq_text(1, n);
    let mut run_times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut logs_times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut cpu_per_line = Vec::new();
    let mut logs_cpu: BTreeMap<&str, [Vec<f64>; 3]> = BTreeMap::new();
    let drivers = ["none", "local", "json-file", s.name.as_str()];
    for k in 0..runs {
        // Interleaved: one run of each driver per round.
        for driver in drivers {
            let name = format!("b{k}-{}", driver.replace('-', ""));
            let cpu0 = process_cpu(s.ringtail().pid().as_raw());
            let t = Instant::now();
            s.run(&[
                "run",
                "--name",
                &name,
                "--log-driver",
                driver,
                "bb:latest",
                "seq",
                "1",
                &n.to_string(),
            ]);
            let key = if driver == s.name { "ringtail" } else { driver };
            run_times
                .entry(key)
                .or_default()
                .push(t.elapsed().as_secs_f64());
            if key == "ringtail" {
                let cpu = process_cpu(s.ringtail().pid().as_raw()) - cpu0;
                cpu_per_line.push(cpu * 1e6 / n as f64);
            }
            if driver != "none" {
                // Who spends the CPU of a `docker logs`: dockerd, the CLI
                // (a child of this process) and, for ours, ringtail.
                let dockerd = s.docker.pid().expect("dockerd runs");
                let cpu0 = (
                    process_cpu(dockerd),
                    children_cpu(),
                    process_cpu(s.ringtail().pid().as_raw()),
                );
                let t = Instant::now();
                let out = s.logs(&[&name]);
                logs_times
                    .entry(key)
                    .or_default()
                    .push(t.elapsed().as_secs_f64());
                let cpu1 = (
                    process_cpu(dockerd),
                    children_cpu(),
                    process_cpu(s.ringtail().pid().as_raw()),
                );
                let spent = logs_cpu
                    .entry(key)
                    .or_insert_with(|| [Vec::new(), Vec::new(), Vec::new()]);
                spent[0].push(cpu1.0 - cpu0.0);
                spent[1].push(cpu1.1 - cpu0.1);
                spent[2].push(cpu1.2 - cpu0.2);
                assert!(
                    out == expected.as_bytes(),
                    "{driver}: docker logs gave every line"
                );
            }
            s.run(&["rm", &name]);
        }
    }
    // `docker logs --tail 100 -f` of the last 1M-line container: time to
    // its 100th line (the docker CLI's own start included).
    let last = s.start(&["bb:latest", "sh", "-c", "seq 1 1000000; exec sleep 300"]);
    wait_for("1M lines stored", || {
        s.logs(&["--tail", "1", &last]) == b"1000000\n"
    });
    let mut tail_times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut child = s
            .docker
            .docker()
            .args(["logs", "--tail", "100", "-f", &last])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = support::collect(child.stdout.take().unwrap());
        wait_for("100 lines", || {
            stdout.lock().unwrap().ends_with("1000000\n")
        });
        tail_times.push(t.elapsed().as_secs_f64() * 1000.0);
        let _ = child.kill();
        let _ = child.wait();
    }
    s.run(&["rm", "-f", &last]);

    // 50 containers at full speed at once: nothing lost, CPU per line.
    let per = 20_000u64;
    let cpu_before = process_cpu(s.ringtail().pid().as_raw());
    let t = Instant::now();
    let ids: Vec<String> = (0..50)
        .map(|_| s.start(&["bb:latest", "seq", "1", &per.to_string()]))
        .collect();
    for id in &ids {
        s.run(&["wait", id]);
    }
    let fifty = t.elapsed().as_secs_f64();
    let cpu_fifty = process_cpu(s.ringtail().pid().as_raw()) - cpu_before;
    for id in &ids {
        assert!(
            s.logs(&[id]) == seq_text(1, per).as_bytes(),
            "container {id} lost lines"
        );
    }
    let cpu = process_cpu(s.ringtail().pid().as_raw());
    let report: Vec<String> = run_times
        .iter()
        .map(|(d, v)| format!("run --log-driver {d}: {v:.2?} median {:.2} s", median(v.clone())))
        .chain(logs_times.iter().map(|(d, v)| {
            format!("docker logs ({d}, 1M lines): {v:.2?} median {:.2} s", median(v.clone()))
        }))
        .chain(logs_cpu.iter().map(|(d, [dockerd, cli, ringtail])| {
            let ringtail = if *d == "ringtail" {
                format!(", ringtail {:.2} s", median(ringtail.clone()))
            } else {
                String::new()
            };
            format!(
                "docker logs ({d}) CPU, medians: dockerd {:.2} s, docker CLI {:.2} s{ringtail}",
                median(dockerd.clone()),
                median(cli.clone())
            )
        }))
        .chain([
            format!(
                "ringtail CPU while a 1M-line container ran: {cpu_per_line:.2?} median {:.2} us/line",
                median(cpu_per_line.clone())
            ),
            format!(
                "docker logs --tail 100 -f, ms to the 100th line: {tail_times:.0?} median {:.0} ms",
                median(tail_times.clone())
            ),
            format!(
                "50 containers x {per} lines at once: {fifty:.2} s, all lines there; ringtail \
                 CPU {cpu_fifty:.2} s = {:.2} us/line (incl. container starts)",
                cpu_fifty * 1e6 / (50 * per) as f64
            ),
        ])
        .collect();
    note(&format!(
        "driver figures ({runs} interleaved runs, load {}):\n  {}\n  ringtail CPU so far: {cpu:.2} s",
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        report.join("\n  ")
    ));
}

/// User + system CPU seconds of this process's children that ended.
fn children_cpu() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(u.user_time()) + secs(u.system_time())
}

/// User + system CPU seconds of a process.
fn process_cpu(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}
