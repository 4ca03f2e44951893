//! `ringtail inspect --ring-file PATH`: what a ring file holds, without a
//! daemon: its header, geometry, seq and time ranges, the sources of its
//! entries, and what validating it found (the recovery a reopening daemon
//! would run, done on a read-only copy: see [`Ring::open_copy`]).
//!
//! Text for people by default; `--json` prints one JSON object with the
//! same facts for scripts.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use crate::ring::{All, FileInfo, Read, ReadBatch, ReadStatus, Ring};
use crate::timefmt::rfc3339_nanos;

#[derive(Args, Debug, Clone)]
pub struct InspectArgs {
    /// The ring file to inspect (`serve --ring-file`). It is only read, so
    /// a read-only copy, or a file a running daemon has open, is fine.
    #[arg(long, value_name = "PATH")]
    pub ring_file: PathBuf,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `ringtail inspect`; returns the exit code (1 when the file cannot
/// be read as a ring file).
pub fn main(args: InspectArgs) -> i32 {
    match inspect(&args) {
        Ok(()) => 0,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            super::print_error(e);
            1
        }
    }
}

/// Entries and message bytes of one origin.
#[derive(Default)]
struct Tally {
    entries: u64,
    bytes: u64,
}

/// What a scan of the retained entries found.
#[derive(Default)]
struct Scan {
    first_time: Option<u64>,
    last_time: Option<u64>,
    /// Keyed by the origin as `source{k="v",...}`.
    origins: BTreeMap<String, Tally>,
    entries: u64,
    bytes: u64,
}

fn scan(ring: &Ring) -> Scan {
    let snap = ring.snapshot();
    let mut cursor = snap.cursor(All);
    let mut batch = ReadBatch::new();
    let mut s = Scan::default();
    loop {
        let status = cursor.read(&mut batch, 4096);
        for item in batch.iter() {
            if let Read::Entry(e) = item {
                s.first_time.get_or_insert(e.time);
                s.last_time = Some(e.time);
                let mut name = e.origin.source.clone();
                if !e.origin.labels().is_empty() {
                    let labels: Vec<String> = e
                        .origin
                        .labels()
                        .iter()
                        .map(|(k, v)| format!("{k}={v:?}"))
                        .collect();
                    name = format!("{name}{{{}}}", labels.join(","));
                }
                let t = s.origins.entry(name).or_default();
                t.entries += 1;
                t.bytes += e.msg.len() as u64;
                s.entries += 1;
                s.bytes += e.msg.len() as u64;
            }
        }
        if status != ReadStatus::More {
            return s;
        }
    }
}

fn inspect(args: &InspectArgs) -> io::Result<()> {
    let path = &args.ring_file;
    let (ring, info) = Ring::open_copy(path).map_err(io::Error::other)?;
    let scan = scan(&ring);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let v = to_json(path, &ring, &info, &scan);
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        write_text(&mut out, path, &ring, &info, &scan)?;
    }
    out.flush()
}

/// What validation found, one finding per line; empty when the file is
/// clean.
fn findings(ring: &Ring, info: &FileInfo) -> Vec<String> {
    let mut f = Vec::new();
    let torn = ring.recovery().torn;
    if torn > 0 {
        f.push(format!(
            "{torn} entries (seqs {} to {}) were claimed but never published: torn by a writer \
             that died while storing them, or being stored by a running daemon; dropped",
            info.header.published_seq,
            info.header.claim_seq - 1
        ));
    }
    if info.header.torn_before > 0 {
        f.push(format!(
            "earlier recoveries dropped {} torn entries in all (crashes of the daemon that wrote this file)",
            info.header.torn_before
        ));
    }
    if info.header.version != crate::ring::FORMAT_VERSION {
        f.push(format!(
            "layout version {} (older); a daemon upgrades it in place when it reopens the file",
            info.header.version
        ));
    }
    f
}

fn write_text(
    out: &mut impl Write,
    path: &Path,
    ring: &Ring,
    info: &FileInfo,
    scan: &Scan,
) -> io::Result<()> {
    let h = &info.header;
    let g = &info.geometry;
    let snap = ring.snapshot();
    writeln!(
        out,
        "ring file    {} ({} bytes)",
        path.display(),
        h.file_len
    )?;
    writeln!(out, "layout       version {}", h.version)?;
    writeln!(out, "ring id      {:016x}", h.ring_id)?;
    writeln!(out, "opened       {} times (epoch {})", h.epoch, h.epoch)?;
    writeln!(
        out,
        "geometry     {} lines, {} bytes of messages, {} origins",
        g.slots,
        g.data_words * 8,
        g.origin_slots
    )?;
    if snap.is_empty() {
        writeln!(out, "entries      none (next seq {})", snap.end())?;
    } else {
        writeln!(
            out,
            "entries      {} (seq {} to {}), {} bytes of messages",
            scan.entries,
            snap.first(),
            snap.end() - 1,
            scan.bytes
        )?;
    }
    if let (Some(a), Some(b)) = (scan.first_time, scan.last_time) {
        writeln!(
            out,
            "received     {} to {}",
            rfc3339_nanos(a),
            rfc3339_nanos(b)
        )?;
    }
    writeln!(
        out,
        "appended     {} over the file's life; {} evicted or lost",
        snap.end() - 1,
        snap.first() - 1
    )?;
    writeln!(out, "sources      {}", scan.origins.len())?;
    let width = scan.origins.keys().map(|k| k.len()).max().unwrap_or(0);
    for (name, t) in &scan.origins {
        writeln!(
            out,
            "  {name:width$}  {} entries, {} bytes",
            t.entries, t.bytes
        )?;
    }
    let f = findings(ring, info);
    if f.is_empty() {
        writeln!(out, "validation   clean: every published entry is intact")?;
    } else {
        writeln!(out, "validation")?;
        for line in f {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(())
}

fn to_json(path: &Path, ring: &Ring, info: &FileInfo, scan: &Scan) -> serde_json::Value {
    let h = &info.header;
    let g = &info.geometry;
    let snap = ring.snapshot();
    let sources: Vec<_> = scan
        .origins
        .iter()
        .map(|(k, t)| json!({"origin": k, "entries": t.entries, "bytes": t.bytes}))
        .collect();
    json!({
        "file": path.display().to_string(),
        "file_bytes": h.file_len,
        "version": h.version,
        "ring_id": format!("{:016x}", h.ring_id),
        "epoch": h.epoch,
        "geometry": {
            "lines": g.slots,
            "bytes": g.data_words * 8,
            "origins": g.origin_slots,
        },
        "first_seq": snap.first(),
        "end_seq": snap.end(),
        "entries": scan.entries,
        "bytes": scan.bytes,
        "first_time": scan.first_time.map(rfc3339_nanos),
        "last_time": scan.last_time.map(rfc3339_nanos),
        "torn": ring.recovery().torn,
        "torn_before": h.torn_before,
        "sources": sources,
        "findings": findings(ring, info),
    })
}
