//! `ringtail export` end to end against a real daemon: rotation, resuming
//! by seq without duplicates or holes (also after an interrupted batch),
//! hostile source names that must stay inside the directory, the skip
//! rules, symlinks, gaps, and a clean stop on SIGTERM.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use ringtail::entry::Origin;
use ringtail::serve::memlogq::{self, ClientRequest, JsonRequest};
use ringtail::sinks::export::{log_file_name, STATE_FILE};
use ringtail::sinks::{parse_record, Record};

mod support;

use support::{bin, wait_for, Daemon};

/// What these tests ask of a daemon besides [`Daemon`]'s own.
trait ExportTests {
    fn dump(&self) -> Vec<(u64, String, String)>;
    fn wait_msg(&self, msg: &str);
    fn export(&self, dir: &Path, extra: &[&str]) -> Output;
}

impl ExportTests for Daemon {
    /// Every entry the daemon holds now: (seq, source, msg).
    fn dump(&self) -> Vec<(u64, String, String)> {
        let req = ClientRequest::Json(JsonRequest::default());
        let mut conn = memlogq::connect(&self.query, &req).unwrap();
        let mut text = Vec::new();
        conn.read_to_end(&mut text).unwrap();
        text.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| match parse_record(l).unwrap() {
                Record::Entry(e) => Some((
                    e.seq,
                    e.origin.source.clone(),
                    String::from_utf8_lossy(&e.msg).into_owned(),
                )),
                Record::Gap { .. } | Record::Ring { .. } => None,
            })
            .collect()
    }

    /// Waits until the daemon holds an entry with message `msg`.
    fn wait_msg(&self, msg: &str) {
        wait_for(&format!("the daemon to hold {msg:?}"), || {
            self.dump().iter().any(|(_, _, m)| m == msg)
        });
    }

    fn export(&self, dir: &Path, extra: &[&str]) -> Output {
        Command::new(bin())
            .arg("export")
            .arg("--dir")
            .arg(dir)
            .arg("--socket")
            .arg(&self.query)
            .args(extra)
            .output()
            .unwrap()
    }
}

fn lines(prefix: &str, range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i:02}")).collect()
}

/// The messages of a log file's lines (`<time> <source> <msg>`).
fn messages(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let time = parts.next().unwrap();
            assert!(time.len() == 20 && time.ends_with('Z'), "{l}");
            parts.next().unwrap();
            parts.next().unwrap_or("").to_string()
        })
        .collect()
}

#[test]
fn rotation_keeps_max_log_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path(), &[]);
    // Each line is 32 bytes: three pass 80 bytes, two do not.
    d.log_lines(b"rot", &lines("line", 1..=10));
    d.wait_msg("line10");
    let out = tmp.path().join("logs");
    let o = d.export(
        &out,
        &["--once", "--max-log-size", "80", "--max-log-files", "2"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(messages(&out.join("rot.log")), ["line10"]);
    assert_eq!(
        messages(&out.join("rot.log.0")),
        ["line07", "line08", "line09"]
    );
    assert_eq!(
        messages(&out.join("rot.log.1")),
        ["line04", "line05", "line06"]
    );
    assert!(!out.join("rot.log.2").exists());
    let line = fs::read_to_string(out.join("rot.log")).unwrap();
    assert!(line.ends_with(" rot line10\n"), "{line}");
}

#[test]
fn a_restart_neither_repeats_nor_skips() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path(), &[]);
    let out = tmp.path().join("logs");
    d.log_lines(b"web", &lines("a", 1..=5));
    d.wait_msg("a05");
    assert!(d.export(&out, &["--once"]).status.success());
    assert!(out.join(STATE_FILE).exists());
    d.log_lines(b"web", &lines("b", 1..=5));
    d.wait_msg("b05");
    assert!(d.export(&out, &["--once"]).status.success());
    // Nothing new: a third run writes nothing.
    assert!(d.export(&out, &["--once"]).status.success());
    let mut want = lines("a", 1..=5);
    want.extend(lines("b", 1..=5));
    assert_eq!(messages(&out.join("web.log")), want);
}

#[test]
fn an_interrupted_batch_is_cut_back_and_written_again() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path(), &[]);
    let out = tmp.path().join("logs");
    d.log_lines(b"job", &lines("x", 1..=6));
    d.wait_msg("x06");
    assert!(d.export(&out, &["--once"]).status.success());
    let file = out.join("job.log");
    let complete = fs::read(&file).unwrap();

    // Make it look as if the exporter died in the middle of writing the
    // last three lines: the state says they were pending, and a torn line
    // follows them.
    let seq_x4 = d.dump().iter().find(|(_, _, m)| m == "x04").unwrap().0;
    let keep = complete
        .split_inclusive(|b| *b == b'\n')
        .take(3)
        .map(|l| l.len())
        .sum::<usize>();
    let mut f = fs::OpenOptions::new().append(true).open(&file).unwrap();
    f.write_all(b"2026-01-01T00:00:00Z job torn-li").unwrap();
    drop(f);
    let state = format!(r#"{{"next_seq":{seq_x4},"pending":{{"job.log":{keep}}}}}"#);
    fs::write(out.join(STATE_FILE), state).unwrap();

    assert!(d.export(&out, &["--once"]).status.success());
    assert_eq!(fs::read(&file).unwrap(), complete);
}

#[test]
fn hostile_source_names_stay_inside_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path(), &[]);
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let out = root.join("logs");
    let names: Vec<&[u8]> = vec![
        b"../../etc/passwd",
        b"../escape",
        b"/abs/path",
        b"a/b",
        b"",
        b".",
        b"..",
        b".hidden",
        b"nul\0byte",
        b"new\nline",
        b"ctl\x1b[31m",
        b"100%",
        b"%empty",
        b"\xff\xfe",
        b"sp ace",
    ];
    for (i, name) in names.iter().enumerate() {
        d.log_lines(name, &[format!("from-{i}")]);
    }
    d.wait_msg(&format!("from-{}", names.len() - 1));
    for i in 0..names.len() {
        d.wait_msg(&format!("from-{i}"));
    }
    let o = d.export(&out, &["--once"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Nothing but the export directory was created next to it or above.
    let beside: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, [std::ffi::OsString::from("logs")]);
    assert!(!tmp.path().join("etc").exists() && !tmp.path().join("escape.log").exists());
    for entry in fs::read_dir(&out).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        assert!(entry.file_type().unwrap().is_file(), "{name}");
        if name.starts_with(".ringtail-export") {
            continue;
        }
        assert!(!name.starts_with('.'), "{name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-%~".contains(&b)),
            "{name}"
        );
    }
    for (i, name) in names.iter().enumerate() {
        let source = Origin::source_from_bytes(name, 255);
        let file = out.join(log_file_name(&source));
        // (A source may contain spaces: look at the end of the line.)
        let text = fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.ends_with(&format!(" from-{i}\n")),
            "source {source:?}: {text:?}"
        );
    }
}

#[test]
fn its_own_output_and_logwrite_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path(), &[]);
    let out = tmp.path().join("logs");
    d.log_lines(b"logwrite", &["skip-1".to_string()]);
    d.log_lines(b"logwrite.out", &["skip-2".to_string()]);
    d.log_lines(b"ringtail-export", &["skip-3".to_string()]);
    d.log_lines(b"kept", &["keep".to_string()]);
    for m in ["skip-1", "skip-2", "skip-3", "keep"] {
        d.wait_msg(m);
    }
    assert!(d.export(&out, &["--once"]).status.success());
    assert_eq!(messages(&out.join("kept.log")), ["keep"]);
    for f in ["logwrite.log", "logwrite.out.log", "ringtail-export.log"] {
        assert!(!out.join(f).exists(), "{f}");
    }
}

#[test]
fn a_symlink_in_the_directory_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path(), &[]);
    let out = tmp.path().join("logs");
    fs::create_dir(&out).unwrap();
    let victim = tmp.path().join("victim");
    fs::write(&victim, b"untouched").unwrap();
    std::os::unix::fs::symlink(&victim, out.join("web.log")).unwrap();
    d.log_lines(b"web", &["attack".to_string()]);
    d.wait_msg("attack");
    let o = d.export(&out, &["--once"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("symbolic link"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(fs::read(&victim).unwrap(), b"untouched");
}

#[test]
fn evicted_entries_are_noted_as_a_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path(), &["--max-lines", "8"]);
    let out = tmp.path().join("logs");
    d.log_lines(b"fast", &lines("early", 1..=2));
    d.wait_msg("early02");
    assert!(d.export(&out, &["--once"]).status.success());
    d.log_lines(b"fast", &lines("late", 1..=30));
    d.wait_msg("late30");
    let o = d.export(&out, &["--once"]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("missed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let own = messages(&out.join("ringtail.log"));
    assert!(
        own.iter().any(|m| m.starts_with("export: missed ")),
        "{own:?}"
    );
    let fast = messages(&out.join("fast.log"));
    assert_eq!(&fast[..2], ["early01", "early02"]);
    assert_eq!(fast.last().unwrap(), "late30");
}

#[test]
fn follow_mode_stops_cleanly_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path(), &[]);
    let out = tmp.path().join("logs");
    let mut exporter = Command::new(bin())
        .arg("export")
        .arg("--dir")
        .arg(&out)
        .arg("--socket")
        .arg(&d.query)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    d.log_lines(b"live", &lines("f", 1..=3));
    let file = out.join("live.log");
    wait_for("the exporter to write the lines", || {
        file.exists() && messages(&file).len() == 3
    });
    kill(Pid::from_raw(exporter.id() as i32), Signal::SIGTERM).unwrap();
    let mut status = None;
    wait_for("the exporter to stop", || {
        status = exporter.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success());
    d.log_lines(b"live", &lines("g", 1..=2));
    d.wait_msg("g02");
    assert!(d.export(&out, &["--once"]).status.success());
    assert_eq!(messages(&file), ["f01", "f02", "f03", "g01", "g02"]);
}

#[test]
fn two_exporters_do_not_share_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path(), &[]);
    let out = tmp.path().join("logs");
    let mut first = Command::new(bin())
        .arg("export")
        .arg("--dir")
        .arg(&out)
        .arg("--socket")
        .arg(&d.query)
        .spawn()
        .unwrap();
    // The first one holds the lock once its state file exists.
    wait_for("the first exporter to start", || {
        out.join(STATE_FILE).exists()
    });
    let second = d.export(&out, &["--once"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another `ringtail export`"));
    let _ = first.kill();
    let _ = first.wait();
}

#[test]
fn a_replaced_ring_is_exported_from_its_start_not_from_the_old_seq() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("logs");
    let d = Daemon::start(tmp.path(), &[]);
    d.log_lines(b"web", &lines("old", 1..=3));
    d.wait_msg("old03");
    assert!(d.export(&out, &["--once"]).status.success());
    let state = fs::read_to_string(out.join(STATE_FILE)).unwrap();
    assert!(state.contains("ring_id"), "{state}");
    drop(d);
    // A new daemon without --ring-file: a new ring, whose seqs start over
    // and soon pass the seq the export state holds.
    let d = Daemon::start(tmp.path(), &[]);
    d.log_lines(b"web", &lines("new", 1..=20));
    d.wait_msg("new20");
    let o = d.export(&out, &["--once"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut want = lines("old", 1..=3);
    want.extend(lines("new", 1..=20));
    assert_eq!(messages(&out.join("web.log")), want);
    let own = messages(&out.join("ringtail.log"));
    assert!(
        own.iter().any(|m| m.contains("ring was replaced")),
        "{own:?}"
    );
}
