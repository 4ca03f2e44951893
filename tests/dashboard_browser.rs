//! The dashboard in a real browser: headless Chromium driven through
//! chromedriver's WebDriver HTTP API loads the page from an in-process
//! server (HTTP API + Loki API + dashboard on one port), and the test
//! checks what a person would see: the source list with counts, entries
//! appearing live after an ingest, the volume chart drawn, a click on a
//! source filtering the tail, pause and resume. It saves screenshots to
//! `target/dashboard.png` and `target/dashboard-dark.png`.
//!
//! A second test runs two `ringtail serve` processes, one forwarding to
//! the other over the Loki push API, and checks the dashboard's
//! forwarding card: the forwarder's target, state, lag, shipped, retries
//! and evicted-before-shipped counts, through an outage of the receiver
//! long enough for the ring to evict what was waiting.
//!
//! Needs Debian's `chromium` and `chromium-driver`. When they are missing
//! the test installs them with apt-get (as root); it skips, saying why,
//! only when it cannot (not root, or no apt-get) and `CI` is not set. In
//! CI it always runs.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringtail::entry::{Flags, Origin, Stream};
use ringtail::ring::{Ring, RingConfig};
use ringtail::selflog::SelfLog;
use ringtail::serve::http::{self, HttpConfig, HttpState};
use ringtail::serve::{dashboard, loki};
use serde_json::{json, Value};
use support::free_port;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes sure chromium and chromedriver are there; `Err` says why the
/// test cannot run here.
fn ensure_browser() -> Result<(), String> {
    if have("chromium") && have("chromedriver") {
        return Ok(());
    }
    let root = rustix::process::geteuid().is_root();
    if !root || !have("apt-get") {
        return Err(format!(
            "chromium and chromium-driver are not installed and this test cannot install them \
             ({}); install them with `apt-get install chromium chromium-driver`",
            if root { "no apt-get" } else { "not root" }
        ));
    }
    let run = |args: &[&str]| {
        let out = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map_err(|e| format!("apt-get: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "apt-get {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(&["update", "-q"])?;
    run(&["install", "-y", "-q", "chromium", "chromium-driver"])?;
    if have("chromium") && have("chromedriver") {
        Ok(())
    } else {
        Err(
            "apt-get installed chromium-driver but chromium or chromedriver is still missing"
                .into(),
        )
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// chromedriver, stopped when dropped.
struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver session.
struct Session {
    http: reqwest::Client,
    url: String,
}

impl Session {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("webdriver request");
        let status = resp.status();
        let v: Value = resp.json().await.expect("webdriver JSON");
        assert!(status.is_success(), "webdriver {path}: {status} {v}");
        v["value"].clone()
    }

    async fn script(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Polls `script` until it returns true.
    async fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.script(script).await == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                let state = self
                    .script("return {lines: window.ringtail && window.ringtail.lines(), info: document.getElementById('tail-info').textContent, err: document.getElementById('filter-error').textContent, status: document.getElementById('status-text').textContent}")
                    .await;
                panic!("timed out waiting for {what}; page state: {state}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 screenshot"))
            .expect("valid base64");
        let path = target_dir().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, png).unwrap();
        path
    }
}

fn append(ring: &Ring, source: &str, flags: Flags, lines: &[String]) {
    let h = ring
        .origin(Origin::new(source).with_label("app", source))
        .unwrap();
    for l in lines {
        ring.append(&h, flags, l.as_bytes());
    }
}

/// Serves the HTTP API, the Loki API and the dashboard on one port, as the
/// daemon does; returns the address.
async fn start_server(
    ring: &Arc<Ring>,
    selflog: &SelfLog,
    shutdown: &CancellationToken,
) -> std::net::SocketAddr {
    let pipeline =
        ringtail::sources::Pipeline::new(ring.clone(), selflog.clone(), Default::default());
    let state = HttpState::new(pipeline.clone(), HttpConfig::default(), shutdown.clone());
    let app = http::app_with(
        state.clone(),
        [
            loki::router(
                pipeline,
                loki::LokiLimits::default(),
                state.budget().clone(),
            ),
            dashboard::router(),
        ],
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = shutdown.clone();
    tokio::spawn(async move { http::serve(listener, app, shutdown, &state).await });
    addr
}

/// Starts chromedriver and a headless Chromium session with a fresh
/// profile (kept alive by the returned guards).
async fn start_browser() -> (Driver, Session, tempfile::TempDir, reqwest::Client) {
    let port = free_port();
    let driver = Driver {
        child: Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let ready = http
            .get(format!("{}/status", driver.base))
            .send()
            .await
            .ok()
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--window-size=1440,900",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    }}});
    let r: Value = http
        .post(format!("{}/session", driver.base))
        .json(&caps)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no session: {r}"))
        .to_string();
    let session = Session {
        http: http.clone(),
        url: format!("{}/session/{id}", driver.base),
    };
    (driver, session, profile, http)
}

/// `Ok(true)` to run, `Ok(false)` to skip (said why), panics in CI.
fn browser_or_skip(test: &str) -> bool {
    match ensure_browser() {
        Ok(()) => true,
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED {test}: {why}");
            false
        }
        Err(why) => panic!("the browser test must run in CI: {why}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    if !browser_or_skip("dashboard_in_headless_chromium") {
        return;
    }
    let ring = Arc::new(Ring::open(&RingConfig::new(100_000)).unwrap());
    let selflog = SelfLog::new(ring.clone()).unwrap();
    let shutdown = CancellationToken::new();
    let addr = start_server(&ring, &selflog, &shutdown).await;
    selflog.info("ringtail started (browser test)");
    let out = Flags::default()
        .with_stream(Some(Stream::Stdout))
        .with_level(Some(ringtail::entry::Level::Info));
    let err = Flags::default()
        .with_stream(Some(Stream::Stderr))
        .with_level(Some(ringtail::entry::Level::Error));
    let warn = Flags::default()
        .with_stream(Some(Stream::Stderr))
        .with_level(Some(ringtail::entry::Level::Warning));
    let paths = ["/", "/login", "/api/items", "/static/app.css", "/health"];
    append(
        &ring,
        "web.out",
        out,
        &(0..300)
            .map(|i| format!("GET {} 200 {}ms", paths[i % paths.len()], 3 + i % 40))
            .collect::<Vec<_>>(),
    );
    append(
        &ring,
        "db",
        warn,
        &(0..80)
            .map(|i| format!("slow query on table orders: {}.{}s", 1 + i % 3, i % 10))
            .collect::<Vec<_>>(),
    );
    append(
        &ring,
        "onboot.001-dhcpcd.out",
        out,
        &(0..40)
            .map(|i| {
                format!(
                    "dhcpcd[412]: eth0: leased 10.0.2.{} for 86400 seconds",
                    15 + i
                )
            })
            .collect::<Vec<_>>(),
    );
    append(
        &ring,
        "worker",
        err,
        &(0..25)
            .map(|i| format!("job {i} failed: connection refused (retrying in 5s)"))
            .collect::<Vec<_>>(),
    );

    let (_driver, s, _profile, http) = start_browser().await;
    s.cmd(
        reqwest::Method::POST,
        "/url",
        Some(json!({"url": format!("http://{addr}/")})),
    )
    .await;
    assert_eq!(s.script("return document.title").await, json!("ringtail"));

    // The source list, with counts.
    s.wait_for(
        "the source list",
        "return document.querySelectorAll('#sources li[data-source]').length === 5",
    )
    .await;
    let web_count = s
        .script("return document.querySelector('#sources li[data-source=\"web.out\"] .count b').textContent")
        .await;
    assert_eq!(web_count, json!("300"));

    // The backlog, then a live entry after an ingest (through Loki push).
    s.wait_for("the backlog", "return window.ringtail.lines() >= 200")
        .await;
    let marker = format!("live entry {}", std::process::id());
    let push = json!({"streams": [{"stream": {"source": "web.out", "app": "web.out", "stream": "stdout", "level": "info"},
        "values": [[ringtail::timefmt::now_ns().to_string(), marker.clone()]]}]});
    let r = http
        .post(format!("http://{addr}/loki/api/v1/push"))
        .json(&push)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    s.wait_for(
        "the pushed entry in the tail",
        &format!(
            "return [...document.querySelectorAll('#log .line .msg')].some(e => e.textContent === {})",
            json!(marker)
        ),
    )
    .await;

    // The chart: bars drawn, in colour.
    s.wait_for("the chart's bars", "return window.ringtail.bars() > 0")
        .await;
    let colored = s
        .script(
            "const c = document.getElementById('chart');
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let n = 0;
             for (let i = 0; i < d.length; i += 4) {
               const hi = Math.max(d[i], d[i+1], d[i+2]), lo = Math.min(d[i], d[i+1], d[i+2]);
               if (d[i+3] > 200 && hi - lo > 60) n++;
             }
             return n;",
        )
        .await;
    assert!(
        colored.as_u64().unwrap() > 200,
        "the chart has {colored} coloured pixels"
    );
    let shot = s.screenshot("dashboard.png").await;
    eprintln!("screenshot: {}", shot.display());

    // Pause: new entries wait; resume: they appear.
    s.script("document.getElementById('pause').click(); return true")
        .await;
    let before = s.script("return window.ringtail.lines()").await;
    append(&ring, "worker", err, &["while paused".to_string()]);
    s.wait_for(
        "the paused notice",
        "return document.getElementById('tail-info').textContent.includes('1 new entries waiting')",
    )
    .await;
    assert_eq!(s.script("return window.ringtail.lines()").await, before);
    s.script("document.getElementById('pause').click(); return true")
        .await;
    s.wait_for(
        "the held entry after resume",
        "return [...document.querySelectorAll('#log .line .msg')].some(e => e.textContent === 'while paused')",
    )
    .await;

    // Clicking a source filters the tail (and the chart) by it.
    s.script("document.querySelector('#sources li[data-source=\"db\"]').click(); return true")
        .await;
    s.wait_for(
        "the tail filtered to db",
        "const src = [...document.querySelectorAll('#log .line .src')].map(e => e.textContent);
         return src.length === 80 && src.every(s => s === 'db')
           && document.getElementById('f-source').value === 'db'",
    )
    .await;
    s.wait_for(
        "the chart filtered to db",
        "return document.getElementById('legend').textContent === 'db'",
    )
    .await;
    s.script("document.querySelector('#sources li.all').click(); return true")
        .await;
    s.wait_for("all sources again", "return window.ringtail.lines() >= 200")
        .await;

    // Dark mode, as a system preference.
    s.cmd(
        reqwest::Method::POST,
        "/goog/cdp/execute",
        Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}})),
    )
    .await;
    s.wait_for(
        "the dark scheme",
        "return matchMedia('(prefers-color-scheme: dark)').matches",
    )
    .await;
    let bg = s
        .script("return getComputedStyle(document.body).backgroundColor")
        .await;
    assert_eq!(bg, json!("rgb(15, 19, 24)"));
    let shot = s.screenshot("dashboard-dark.png").await;
    eprintln!("screenshot: {}", shot.display());

    s.cmd(reqwest::Method::DELETE, "", None).await;
    shutdown.cancel();
}

/// On a full ring of 1M 100-byte lines the page still comes up at once:
/// prints how long the first lines, the source list, the chart and a live
/// entry take (each must take under 5 s; typically well under one).
/// Run: `cargo test --release --test dashboard_browser -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fills a 1M-entry ring; a performance check, run on demand"]
async fn dashboard_on_a_full_ring() {
    if !browser_or_skip("dashboard_on_a_full_ring") {
        return;
    }
    let ring = Arc::new(Ring::open(&RingConfig::new(1_000_000)).unwrap());
    let selflog = SelfLog::new(ring.clone()).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|i| ring.origin(Origin::new(format!("svc-{i}.out"))).unwrap())
        .collect();
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    for round in 0..1000u64 {
        for h in &handles {
            buf.clear();
            spans.clear();
            for j in 0..125u64 {
                let mut line =
                    format!("GET /api/items/{} 200 {}ms", round * 125 + j, j % 40).into_bytes();
                line.resize(100, b' ');
                spans.push(ringtail::ring::Span::new(
                    buf.len() as u32,
                    100,
                    Flags::default().with_stream(Some(Stream::Stdout)),
                ));
                buf.extend_from_slice(&line);
            }
            ring.append_batch(h, &buf, &spans).unwrap();
        }
    }
    assert!(ring.stats().retained >= 999_000);
    let shutdown = CancellationToken::new();
    let addr = start_server(&ring, &selflog, &shutdown).await;
    let (_driver, s, _profile, _http) = start_browser().await;
    let t0 = Instant::now();
    s.cmd(
        reqwest::Method::POST,
        "/url",
        Some(json!({"url": format!("http://{addr}/")})),
    )
    .await;
    let mut timings = Vec::new();
    for (what, script) in [
        ("first 200 lines", "return window.ringtail.lines() >= 200"),
        (
            "source list",
            "return document.querySelectorAll('#sources li[data-source]').length >= 8",
        ),
        ("chart", "return window.ringtail.bars() > 0"),
    ] {
        s.wait_for(what, script).await;
        timings.push((what, t0.elapsed()));
    }
    let t1 = Instant::now();
    let h = ring.origin(Origin::new("marker")).unwrap();
    ring.append(&h, Flags::default(), b"the newest entry");
    s.wait_for(
        "a live entry",
        "return [...document.querySelectorAll('#log .line .msg')].some(e => e.textContent === 'the newest entry')",
    )
    .await;
    timings.push(("live entry after append", t1.elapsed()));
    for (what, t) in &timings {
        eprintln!("{what}: {t:?}");
        assert!(*t < Duration::from_secs(5), "{what} took {t:?}");
    }
    let lines = s
        .script("return document.querySelectorAll('#log .line').length")
        .await;
    assert!(lines.as_u64().unwrap() <= 2000);
    s.screenshot("dashboard-full-ring.png").await;
    shutdown.cancel();
}

/// What the dashboard's forwarding card shows for one forwarder, read from
/// the page: `null` while the row is not there.
const FORWARDER_ROW: &str = r#"
const card = document.getElementById('forwarders');
const r = document.querySelector('#fwd-rows tr[data-sink="loki:central"]');
if (!r || card.hidden) return null;
const cell = (k) => r.querySelector(`td[data-k="${k}"]`);
const pill = r.querySelector('.pill');
return {
  state: r.dataset.state,
  pill: pill.textContent,
  error: pill.title,
  target: r.querySelector('.target').textContent,
  shipped: Number(cell('shipped').dataset.v),
  shipped_text: cell('shipped').querySelector('.n').textContent,
  lag: Number(cell('lag-entries').dataset.v),
  lag_text: cell('lag-entries').textContent,
  lag_seconds: Number(cell('lag-entries').dataset.seconds),
  retries: Number(cell('retries').dataset.v),
  evicted: Number(cell('evicted').dataset.v),
  evicted_text: cell('evicted').querySelector('.n').textContent,
};"#;

/// `n` with thousands separators, as the page writes numbers.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Session {
    /// Polls the forwarder's row until `cond` holds; returns the row.
    async fn wait_row(&self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let row = self.script(FORWARDER_ROW).await;
            if !row.is_null() && cond(&row) {
                return row;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the row shows {row}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs blocking test-harness code (process starts, socket reads) from
/// the async test.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// The `app` lines a daemon holds, in order.
fn app_lines(d: &support::Daemon) -> Vec<String> {
    d.read(&["-o", "ndjson", "--source", "app"])
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_slice(l).unwrap();
            v["msg"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_each_forwarders_lag() {
    if !browser_or_skip("dashboard_shows_each_forwarders_lag") {
        return;
    }
    use support::{wait_for, Daemon};
    // The receiver keeps its address across its restart, as a central
    // store does.
    let http = format!("127.0.0.1:{}", free_port());
    let receiver_dir = tempfile::tempdir().unwrap();
    // A ring file: it keeps what it received across its restart.
    let receiver_ring = receiver_dir.path().join("ring").display().to_string();
    let receiver_args = [
        "--max-lines",
        "100000",
        "--ring-file",
        receiver_ring.as_str(),
        "--http",
        http.as_str(),
    ];
    let mut receiver = blocking(|| Daemon::start(receiver_dir.path(), &receiver_args));
    // The sender's ring holds 3000 entries: an outage with more waiting
    // makes it evict some before they are shipped.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ringtail.toml");
    std::fs::write(
        &config,
        format!(
            "max-lines = 3000\n[[forward]]\nname = \"central\"\nloki = \"http://{http}\"\n\
             sources = [\"app\"]\nbatch-delay = \"5ms\"\nbatch-entries = 500\n"
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let sender = blocking(|| {
        Daemon::start(
            dir.path(),
            &[
                "--config",
                &config,
                "--http",
                "127.0.0.1:0",
                "--follower-pacing",
                "0",
            ],
        )
    });
    let addr = blocking(|| sender.http_addr()).expect("the sender's HTTP address");
    let all: Vec<String> = (0..5500).map(|i| format!("app {i:06}")).collect();

    let (_driver, s, _profile, http_client) = start_browser().await;
    s.cmd(
        reqwest::Method::POST,
        "/url",
        Some(json!({"url": format!("http://{addr}/")})),
    )
    .await;
    let stats = || async {
        let v: Value = http_client
            .get(format!("http://{addr}/api/v1/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["sinks"][0].clone()
    };

    // Caught up: everything shipped, no lag.
    let row = s
        .wait_row("the forwarder's row", |r| r["state"] == "idle")
        .await;
    assert_eq!(
        row["target"],
        json!(format!("→ http://{http}/loki/api/v1/push")),
        "{row}"
    );
    blocking(|| sender.log_lines(b"app", &all[..1000]));
    blocking(|| {
        wait_for("1000 lines at the receiver", || {
            app_lines(&receiver).len() == 1000
        })
    });
    let row = s
        .wait_row("1000 shipped and caught up", |r| {
            r["shipped"] == 1000 && r["lag"] == 0 && r["state"] == "idle"
        })
        .await;
    assert_eq!(row["shipped_text"], "1,000", "{row}");
    assert_eq!(row["pill"], "caught up", "{row}");
    assert_eq!(
        (row["retries"].as_u64(), row["evicted"].as_u64()),
        (Some(0), Some(0)),
        "{row}"
    );
    assert_eq!(row["lag_seconds"], 0.0, "{row}");
    assert!(app_lines(&receiver) == all[..1000]);

    // The receiver goes away: the forwarder backs off and falls behind.
    blocking(|| receiver.stop());
    blocking(|| sender.log_lines(b"app", &all[1000..1500]));
    let row = s
        .wait_row("backing off, 500 entries behind", |r| {
            r["state"] == "backing_off"
                && r["retries"].as_u64() >= Some(1)
                && r["lag"].as_u64() >= Some(500)
        })
        .await;
    assert!(
        row["pill"].as_str().unwrap().starts_with("backing off"),
        "{row}"
    );
    assert!(
        !row["error"].as_str().unwrap().is_empty(),
        "the reason: {row}"
    );
    assert!(row["lag_seconds"].as_f64().unwrap() > 0.0, "{row}");
    // What the page shows is what the API says (nothing else arrives
    // while the forwarder waits, so the lag holds still).
    let deadline = Instant::now() + WAIT;
    loop {
        let api = stats().await;
        let row = s.script(FORWARDER_ROW).await;
        if row["lag"] == api["lag_entries"] && row["shipped"] == api["delivered_entries_total"] {
            assert_eq!(row["shipped"], 1000, "{row}");
            assert!(
                row["lag_text"]
                    .as_str()
                    .unwrap()
                    .starts_with(&grouped(row["lag"].as_u64().unwrap())),
                "{row}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page shows {row}, the API {api}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // More than the ring holds arrives while the receiver is away; then
    // it comes back on the same address.
    blocking(|| sender.log_lines(b"app", &all[1500..]));
    blocking(|| {
        wait_for("the sender's ring to hold the last line", || {
            app_lines(&sender).last() == all.last()
        })
    });
    receiver = blocking(|| Daemon::start(receiver_dir.path(), &receiver_args));
    let row = s
        .wait_row("caught up again, with evictions counted", |r| {
            r["state"] == "idle" && r["lag"] == 0 && r["evicted"].as_u64() > Some(0)
        })
        .await;
    // The receiver has the first 1000 and then every line from the oldest
    // the ring still held: none lost while the ring held it.
    let got = blocking(|| app_lines(&receiver));
    assert!(got.len() > 1000 && got.len() < 5500, "{} lines", got.len());
    let first_kept = 5500 - (got.len() - 1000);
    assert!(got[..1000] == all[..1000], "the first 1000 lines");
    assert!(
        got[1000..] == all[first_kept..],
        "a contiguous tail from {}: it starts with {:?}",
        all[first_kept],
        &got[1000..1003]
    );
    let api = stats().await;
    assert_eq!(
        row["shipped"], api["delivered_entries_total"],
        "{row} {api}"
    );
    assert_eq!(row["shipped"].as_u64(), Some(got.len() as u64), "{row}");
    assert_eq!(
        row["shipped_text"],
        json!(grouped(got.len() as u64)),
        "{row}"
    );
    assert_eq!(row["evicted"], api["evicted_total"], "{row} {api}");
    assert_eq!(
        row["evicted_text"],
        json!(grouped(row["evicted"].as_u64().unwrap()))
    );
    // Entries of any source count; the app lines among them were lost.
    assert!(
        row["evicted"].as_u64().unwrap() >= (first_kept - 1000) as u64,
        "{row}: {} app lines never shipped",
        first_kept - 1000
    );
    assert_eq!(row["retries"], api["retries_total"], "{row} {api}");
    let shot = s.screenshot("dashboard-forwarders.png").await;
    eprintln!("screenshot: {}", shot.display());
    s.cmd(reqwest::Method::DELETE, "", None).await;
    blocking(|| {
        sender.stop();
        receiver.stop();
    });
}
