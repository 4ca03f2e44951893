//! Post-mortem reading of ring files: `ringtail read --ring-file` and
//! `ringtail inspect --ring-file`, with no daemon, on files a crash left
//! behind, on damaged files, and beside a daemon that has the file open.
//!
//! The crash is real: a child process (this test binary re-run) writes
//! with several threads and is killed with SIGKILL wherever it is. What a
//! crash only tears by luck (an entry claimed but not published) is made
//! deterministic by moving the claim word of a file forward the way a
//! writer dying between claim and publish leaves it.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ringtail::entry::{Flags, Origin};
use ringtail::ring::{Ring, RingConfig, Span};
use support::verify::{check, message};
use support::{bin, Daemon};

const CHILD_ENV: &str = "RINGTAIL_POSTMORTEM_CHILD_FILE";
const WRITERS: u32 = 3;

fn config(path: &Path) -> RingConfig {
    let mut c = RingConfig::new(2048);
    c.max_bytes = 128 * 1024;
    c.max_entry_len = 512;
    c.max_origins = 64;
    c.file = Some(path.to_path_buf());
    c
}

fn ringtail(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("run ringtail")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `ringtail read --ring-file PATH -o ndjson ARGS` as (seq, source, msg).
fn read_file(path: &Path, args: &[&str]) -> (Vec<(u64, String, String)>, String) {
    let mut all = vec![
        "read",
        "--ring-file",
        path.to_str().unwrap(),
        "-o",
        "ndjson",
    ];
    all.extend_from_slice(args);
    let o = ringtail(&all);
    assert!(o.status.success(), "read failed: {}", text(&o.stderr));
    let entries = text(&o.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["seq"].as_u64().unwrap(),
                v["source"].as_str().unwrap().to_string(),
                v["msg"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (entries, text(&o.stderr))
}

/// Runs only as the child: writes until killed.
#[test]
fn postmortem_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let ring = Ring::open(&config(path.as_ref())).unwrap();
    println!("opened");
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let ring = &ring;
            s.spawn(move || {
                let origin = ring.origin(Origin::new(format!("writer-{w}"))).unwrap();
                let mut n = 0u64;
                let (mut buf, mut spans) = (Vec::new(), Vec::new());
                loop {
                    buf.clear();
                    spans.clear();
                    for _ in 0..(1 + n % 5) {
                        let m = message(w, n, 200);
                        spans.push(Span::new(
                            buf.len() as u32,
                            m.len() as u32,
                            Flags::default(),
                        ));
                        buf.extend_from_slice(&m);
                        n += 1;
                    }
                    ring.append_batch(&origin, &buf, &spans).unwrap();
                    if w == 0 && n % 500 < 5 {
                        println!("progress {}", ring.published_seq());
                    }
                }
            });
        }
    });
}

/// A ring file left by a writer killed with SIGKILL; `while_writing`
/// runs while the writer is at full speed.
fn crashed_file(dir: &Path, while_writing: impl FnOnce(&Path)) -> PathBuf {
    let path = dir.join("crashed.ring");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "postmortem_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Several laps of the ring, then kill it wherever it is.
    let mut progress = lines
        .map(|l| l.unwrap())
        .filter(|l| l.starts_with("progress"));
    let lapped = progress.nth(10).is_some();
    if lapped {
        // Keep draining its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in progress {});
        while_writing(&path);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lapped, "the child stopped early");
    path
}

/// The same ring reopened the way a restarting daemon reopens it: every
/// entry as (seq, source, msg), and the torn count.
fn reopened(path: &Path, dir: &Path) -> (Vec<(u64, String, String)>, u64) {
    let copy = dir.join("reopened.ring");
    std::fs::copy(path, &copy).unwrap();
    let ring = Ring::open(&config(&copy)).unwrap();
    let entries = support::entries(&ring)
        .into_iter()
        .map(|e| {
            (
                e.seq,
                e.origin.source.clone(),
                String::from_utf8(e.msg.clone()).unwrap(),
            )
        })
        .collect();
    (entries, ring.recovery().torn)
}

/// Reads a file that three threads of another process append to at full
/// speed: every entry shown is intact, seqs have no holes, each writer's
/// counters only grow.
fn read_while_written(path: &Path) {
    for _ in 0..3 {
        let (got, _) = read_file(path, &[]);
        assert!(!got.is_empty());
        let mut last = [None::<u64>; WRITERS as usize];
        for (i, (seq, source, msg)) in got.iter().enumerate() {
            assert_eq!(*seq, got[0].0 + i as u64, "a hole before seq {seq}");
            let (w, n) = check(msg.as_bytes()).unwrap_or_else(|e| panic!("seq {seq}: {e}"));
            assert_eq!(source, &format!("writer-{w}"));
            assert!(
                last[w as usize].is_none_or(|l| n > l),
                "seq {seq} out of order"
            );
            last[w as usize] = Some(n);
        }
    }
}

#[test]
fn read_after_sigkill_matches_a_reopening_daemon_and_leaves_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = crashed_file(dir.path(), read_while_written);
    let before = std::fs::read(&path).unwrap();
    // A read-only copy, as taken from a crashed host.
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&path, perms).unwrap();

    let (got, stderr) = read_file(&path, &[]);
    let (want, torn) = reopened(&path, dir.path());
    assert!(!want.is_empty());
    assert_eq!(got, want, "read --ring-file shows what a reopen keeps");
    for (seq, source, msg) in &got {
        let (w, _) = check(msg.as_bytes()).unwrap_or_else(|e| panic!("seq {seq}: {e}"));
        assert_eq!(source, &format!("writer-{w}"));
    }
    if torn > 0 {
        assert!(
            stderr.contains(&format!("dropped {torn} torn")),
            "torn entries counted on stderr: {stderr}"
        );
    } else {
        assert!(stderr.is_empty(), "{stderr}");
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "reading changed the file"
    );

    let o = ringtail(&["inspect", "--ring-file", path.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["entries"].as_u64().unwrap(), want.len() as u64);
    assert_eq!(v["first_seq"].as_u64().unwrap(), want[0].0);
    assert_eq!(v["end_seq"].as_u64().unwrap(), want.last().unwrap().0 + 1);
    assert_eq!(v["torn"].as_u64().unwrap(), torn);
    assert_eq!(v["geometry"]["lines"], 2048);
    assert_eq!(v["geometry"]["bytes"], 128 * 1024);
    assert_eq!(v["epoch"], 1);
    // Per source, what the kept entries add up to. Which writers those are
    // is up to the scheduler: on a loaded machine one writer can fill the
    // last lap of the ring alone.
    let sources: Vec<(String, u64, u64)> = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["origin"].as_str().unwrap().to_string(),
                s["entries"].as_u64().unwrap(),
                s["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut tally = std::collections::BTreeMap::<&str, (u64, u64)>::new();
    for (_, source, msg) in &want {
        let t = tally.entry(source).or_default();
        t.0 += 1;
        t.1 += msg.len() as u64;
    }
    let tally: Vec<(String, u64, u64)> = tally
        .into_iter()
        .map(|(k, (n, b))| (k.to_string(), n, b))
        .collect();
    assert_eq!(sources, tally);
    assert!(sources.iter().all(|(k, ..)| k.starts_with("writer-")));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

/// A file with `published` entries and then `torn` entries claimed whose
/// slots hold garbage: what a writer that died between claim and publish
/// leaves.
fn torn_file(path: &Path, published: u64, torn: u64) {
    {
        let ring = Ring::open(&config(path)).unwrap();
        let o = ring.origin(Origin::new("app")).unwrap();
        for i in 0..published {
            ring.append(&o, Flags::default(), format!("line {i}").as_bytes());
        }
    }
    let mut bytes = std::fs::read(path).unwrap();
    let word = |b: &[u8], i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
    let set =
        |b: &mut [u8], i: usize, v: u64| b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    // Header words 8 (claim position) and 9 (claim seq), 16 (published).
    assert_eq!(word(&bytes, 16), published + 1);
    let (pos, seq) = (word(&bytes, 8), word(&bytes, 9));
    set(&mut bytes, 8, pos + torn * 4);
    set(&mut bytes, 9, seq + torn);
    // The torn slots (3 words each from word 64): a time, a position and a
    // meta word pointing at 4 words of garbage data.
    let data_at = 64 + 2048 * 3;
    for k in 0..torn {
        let slot = 64 + ((seq + k) % 2048) as usize * 3;
        set(&mut bytes, slot, u64::MAX);
        set(&mut bytes, slot + 1, pos + k * 4);
        set(&mut bytes, slot + 2, 32 | 1 << 32);
        for d in 0..4 {
            set(
                &mut bytes,
                data_at + (pos + k * 4) as usize + d,
                0x4b_4e_55_52_47_5f_4e_52,
            );
        }
    }
    std::fs::write(path, &bytes).unwrap();
}

#[test]
fn torn_entries_are_dropped_and_counted_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torn.ring");
    torn_file(&path, 10, 3);
    let (got, stderr) = read_file(&path, &[]);
    let msgs: Vec<&str> = got.iter().map(|(_, _, m)| m.as_str()).collect();
    let want: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
    assert_eq!(msgs, want);
    assert!(
        stderr.contains("dropped 3 torn entries"),
        "stderr: {stderr}"
    );
    // Every format hides them.
    for format in ["logread", "json", "text", "raw", "etw"] {
        let o = ringtail(&["read", "--ring-file", path.to_str().unwrap(), "-o", format]);
        assert!(o.status.success());
        assert!(!text(&o.stdout).contains("RN_GRUNK"), "{format}");
        assert_eq!(text(&o.stdout).lines().count(), 10, "{format}");
    }
    // A daemon reopening the file agrees.
    let (reopened, torn) = reopened(&path, dir.path());
    assert_eq!(torn, 3);
    assert_eq!(reopened, got);

    let o = ringtail(&["inspect", "--ring-file", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("10 (seq 1 to 10)"), "{out}");
    assert!(
        out.contains("3 entries (seqs 11 to 13) were claimed but never published"),
        "{out}"
    );
    assert!(out.contains("app"), "{out}");
}

/// Runs `ringtail read` and `ringtail inspect` on `path`, expecting both
/// to fail with exit code 1 and a message containing `want`.
fn refused(path: &Path, want: &str) {
    for cmd in ["read", "inspect"] {
        let o = ringtail(&[cmd, "--ring-file", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {}", text(&o.stderr));
        assert!(o.stdout.is_empty(), "{cmd}");
        let e = text(&o.stderr);
        assert!(e.contains(want), "{cmd}: expected {want:?} in {e:?}");
        assert!(
            e.contains(path.to_str().unwrap()),
            "{cmd} names the file: {e}"
        );
    }
}

fn patched(dir: &Path, name: &str, patch: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let path = dir.join(name);
    {
        let ring = Ring::open(&config(&path)).unwrap();
        let o = ring.origin(Origin::new("app")).unwrap();
        ring.append(&o, Flags::default(), b"hello");
    }
    let mut bytes = std::fs::read(&path).unwrap();
    patch(&mut bytes);
    std::fs::write(&path, &bytes).unwrap();
    path
}

#[test]
fn damaged_files_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let truncated = patched(d, "truncated.ring", |b| b.truncate(b.len() / 2));
    refused(&truncated, "is truncated");
    let stub = patched(d, "stub.ring", |b| b.truncate(100));
    refused(&stub, "not a ringtail ring file");
    let magic = patched(d, "magic.ring", |b| b[0..8].copy_from_slice(b"NOTARING"));
    refused(&magic, "not a ringtail ring file");
    let geometry = patched(d, "geometry.ring", |b| {
        b[16..24].copy_from_slice(&7u64.to_le_bytes())
    });
    refused(&geometry, "corrupt header");
    let seqs = patched(d, "seqs.ring", |b| {
        b[128..136].copy_from_slice(&0u64.to_le_bytes())
    });
    refused(&seqs, "corrupt header");
    let future = patched(d, "future.ring", |b| {
        b[8..16].copy_from_slice(&3u64.to_le_bytes())
    });
    refused(&future, "version 3");
    refused(&future, "newer ringtail");
    let text_file = d.join("notes.txt");
    std::fs::write(&text_file, "just some text, long enough? no.".repeat(40)).unwrap();
    refused(&text_file, "not a ringtail ring file");
    refused(&d.join("missing.ring"), "cannot open ring file");
    refused(d, "not a regular file");
}

/// Beside a running daemon that has the file open, `read --ring-file`
/// gives, for every filter and output format, exactly what the daemon's
/// query socket gives; and the daemon goes on working.
#[test]
fn beside_a_running_daemon_every_filter_and_format_matches_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("live.ring");
    let d = Daemon::start(
        dir.path(),
        &["--ring-file", ring.to_str().unwrap(), "--max-lines", "500"],
    );
    let web: Vec<String> = (0..40).map(|i| format!("GET /page/{i} 200")).collect();
    let db: Vec<String> = (0..30)
        .map(|i| format!("query {i} took {}ms", i * 3))
        .collect();
    d.log_lines(b"web", &web);
    d.log_lines(b"db", &db);
    // The daemon's own lines (source `ringtail`) are in the ring too.
    d.read_until(&[], "every line stored", |out| {
        out.lines().filter(|l| !l.contains(";ringtail;")).count() == 70
    });

    let cases: &[&[&str]] = &[
        &[],
        &["--source", "web"],
        &["--source", "d*"],
        &["--contains", "/page/1"],
        &["--regex", "took [0-9]{2}ms"],
        &["-n", "5"],
        &["--lines", "7", "--source", "db"],
        &["--since", "1h"],
        &["--since", "2000-01-01T00:00:00Z", "--contains", "200"],
    ];
    let file = ring.to_str().unwrap();
    for format in ["logread", "json", "text", "raw", "etw", "ndjson"] {
        for case in cases {
            let mut args = vec!["-o", format];
            args.extend_from_slice(case);
            let live = d.read(&args);
            assert!(live.status.success(), "{}", text(&live.stderr));
            let mut post = vec!["read", "--ring-file", file];
            post.extend_from_slice(&args);
            let o = ringtail(&post);
            assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
            assert!(!live.stdout.is_empty() || case.contains(&"--regex"));
            assert_eq!(text(&o.stdout), text(&live.stdout), "{args:?}");
            assert!(o.stderr.is_empty(), "{args:?}: {}", text(&o.stderr));
        }
    }
    // Follow needs a daemon; the error says why.
    let o = ringtail(&["read", "--ring-file", file, "-f"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("--ring-file"),
        "{}",
        text(&o.stderr)
    );

    let o = ringtail(&["inspect", "--ring-file", file]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let held = text(&d.read(&[]).stdout).lines().count();
    assert!(out.contains("500 lines"), "{out}");
    assert!(
        out.contains(&format!("entries      {held} (seq 1 to {held})")),
        "{out}"
    );
    assert!(out.contains("validation   clean"), "{out}");
    for source in ["web", "db", "ringtail"] {
        assert!(out.contains(&format!("\n  {source} ")), "{out}");
    }
    // The daemon still serves and stores.
    d.log_lines(b"web", &["after the post-mortem read".to_string()]);
    d.read_until(&["--source", "web"], "the new line", |out| {
        out.contains("after the post-mortem read")
    });
    assert!(d.stop().success());
}
