//! Load tool for the Loki API's two performance targets (work in progress).

use std::sync::Arc;
use std::time::Instant;

use ringtail::entry::{Flags, Origin};
use ringtail::ring::{Read, ReadBatch, Ring, RingConfig, Span};

fn main() {
    let ring = Arc::new(Ring::open(&RingConfig::new(1_000_000)).expect("ring"));
    let handles: Vec<_> = (0..8)
        .map(|i| ring.origin(Origin::new(format!("svc-{i}"))).unwrap())
        .collect();
    let line = [b'x'; 100];
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    for _ in 0..1000 {
        buf.clear();
        spans.clear();
        for _ in 0..125 {
            spans.push(Span { start: buf.len() as u32, len: 100, flags: Flags::default() });
            buf.extend_from_slice(&line);
        }
        for h in &handles {
            ring.append_batch(h, &buf, &spans).unwrap();
        }
    }
    let mut batch = ReadBatch::new();
    for max in [256usize, 1024, 4096, 16384, 65536] {
        let t = Instant::now();
        let snap = ring.snapshot();
        let mut c = snap.cursor(ringtail::ring::All);
        let mut n = 0u64;
        while c.read(&mut batch, max) == ringtail::ring::ReadStatus::More {
            for r in batch.iter() {
                if let Read::Entry(e) = r {
                    n += e.msg.len() as u64 & 1 | 1;
                }
            }
        }
        println!("batch {max}: scan {n} entries: {:?}", t.elapsed());
    }
}
