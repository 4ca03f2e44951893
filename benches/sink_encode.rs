//! CPU cost of the forwarders' encoders, one core, no I/O: 1M entries of
//! about 100 bytes from 8 sources (interleaved, as a busy host logs them)
//! through the Loki batcher (protobuf + snappy, gzip JSON) and the
//! CloudWatch batcher, in batches of their default caps. Prints entries per
//! second and ns per entry, the median of 5 passes.
//!
//! Run: `cargo bench --bench sink_encode`.

use std::time::Instant;

use ringtail::entry::{EntryRef, Flags, Origin, Stream};
use ringtail::sinks::cloudwatch::{CwBatchConfig, CwBatcher, NameKind, NameTemplate};
use ringtail::sinks::loki::{Admit, LokiBatchConfig, LokiBatcher, LokiEncoding};

const LINES: u64 = 1_000_000;
const SOURCES: usize = 8;

fn main() {
    let origins: Vec<Origin> = (0..SOURCES)
        .map(|i| Origin::new(format!("svc-{i}.out")).with_label("app", format!("app{i}")))
        .collect();
    let msgs: Vec<Vec<u8>> = (0..LINES)
        .map(|n| {
            format!(
                "{} /api/v1/items/{n} HTTP/1.1 status={} bytes={} took={}us user-agent=curl/8.0",
                ["GET", "POST", "PUT", "DELETE"][(n % 4) as usize],
                200 + n % 5,
                n * 7 % 10_000,
                n % 997
            )
            .into_bytes()
        })
        .collect();
    let flags = Flags::default().with_stream(Some(Stream::Stdout));
    let entry = |seq: u64| EntryRef {
        seq,
        time: 1_700_000_000_000_000_000 + seq * 1000,
        source_time: Default::default(),
        origin: &origins[(seq % SOURCES as u64) as usize],
        flags,
        msg: &msgs[seq as usize],
    };
    let mean_len = msgs.iter().map(Vec::len).sum::<usize>() as f64 / LINES as f64;
    println!("{LINES} entries of {mean_len:.0} bytes on average from {SOURCES} sources");

    let run = |name: &str, pass: &mut dyn FnMut() -> (u64, usize)| {
        let mut times = Vec::new();
        let mut out = (0, 0);
        for _ in 0..5 {
            let start = Instant::now();
            out = pass();
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let t = times[2];
        println!(
            "{name:<28} {:>6.2} M entries/s  {:>5.0} ns/entry  ({} batches, {} body bytes)",
            LINES as f64 / t / 1e6,
            t * 1e9 / LINES as f64,
            out.0,
            out.1
        );
    };

    for (name, encoding) in [
        ("loki protobuf+snappy", LokiEncoding::Protobuf),
        ("loki json+gzip", LokiEncoding::Json { gzip: true }),
    ] {
        let mut batcher = LokiBatcher::new(LokiBatchConfig {
            encoding,
            ..LokiBatchConfig::default()
        });
        run(name, &mut || {
            let (mut batches, mut bytes) = (0, 0);
            for seq in 0..LINES {
                let e = entry(seq);
                if batcher.push(&e) == Admit::Full {
                    let b = batcher.finish().expect("a full batch");
                    batches += 1;
                    bytes += b.body.len();
                    batcher.push(&e);
                }
            }
            let b = batcher.finish().expect("the last batch");
            (batches + 1, bytes + b.body.len())
        });
    }

    let config = CwBatchConfig::new(
        NameTemplate::parse("/ringtail/host", NameKind::LogGroup).expect("template"),
        NameTemplate::parse("{{.Source}}", NameKind::LogStream).expect("template"),
    );
    let mut batcher = CwBatcher::new(config);
    run("cloudwatch json", &mut || {
        let (mut batches, mut bytes) = (0, 0);
        for seq in 0..LINES {
            let e = entry(seq);
            if batcher.push(&e) == Admit::Full {
                let b = batcher.finish().expect("a full batch");
                batches += 1;
                bytes += b.requests.iter().map(|r| r.body.len()).sum::<usize>();
                batcher.push(&e);
            }
        }
        let b = batcher.finish().expect("the last batch");
        (
            batches + 1,
            bytes + b.requests.iter().map(|r| r.body.len()).sum::<usize>(),
        )
    });
}
