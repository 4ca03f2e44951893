//! The Loki forwarder's encoder, request and answer handling against the
//! strict fake Loki (tests/support/fake_loki.rs): every entry stored once
//! and in order per stream through scheduled 429s and 500s, duplicates from
//! a re-sent batch dropped, refusals counted by reason exactly as the
//! fake's Loki-format 400s list them.

mod support;

use support::fake_loki;

use std::time::Duration;

use fake_loki::{FakeLoki, Scripted};
use ringtail::entry::{EntryRef, Flags, Origin, Stream};
use ringtail::ring::Read;
use ringtail::sinks::backoff::{Backoff, BackoffPolicy};
use ringtail::sinks::http::{HttpClient, HttpOptions};
use ringtail::sinks::loki::sink::LokiShipper;
use ringtail::sinks::loki::{
    self, Admit, LokiBatch, LokiBatchConfig, LokiBatcher, LokiEncoding, LokiReason, LokiTarget,
    PushOutcome, RejectCounts, RetryCause,
};
use ringtail::sinks::SinkError;

/// What a forwarder loop saw for one batch.
#[derive(Debug, Default)]
struct Shipped {
    retries: u32,
    retry_after: Vec<Option<Duration>>,
    causes: Vec<RetryCause>,
    rejected: RejectCounts,
}

/// Sends one batch until it is acknowledged, as a forwarder would (waits
/// are shortened: the backoff's values are the subject of its own tests).
async fn ship(client: &HttpClient, target: &LokiTarget, batch: &LokiBatch) -> Shipped {
    let mut shipped = Shipped::default();
    let mut backoff = Backoff::new(BackoffPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(4),
    });
    let mut rng = fastrand::Rng::with_seed(1);
    loop {
        match loki::push(client, target, batch).await {
            PushOutcome::Accepted => return shipped,
            PushOutcome::Rejected { counts, .. } => {
                shipped.rejected = counts;
                return shipped;
            }
            PushOutcome::Retry {
                retry_after, cause, ..
            } => {
                shipped.retries += 1;
                assert!(shipped.retries < 100, "retries forever: {cause:?}");
                shipped.retry_after.push(retry_after);
                shipped.causes.push(cause);
                let wait = backoff.next_delay(None, &mut rng);
                tokio::time::sleep(wait).await;
            }
            PushOutcome::TooLarge { message } => panic!("too large: {message}"),
        }
    }
}

fn client() -> HttpClient {
    HttpClient::new(&HttpOptions::default()).unwrap()
}

/// Entries from three sources, interleaved, `n` in all; seqs from 1.
fn entries(origins: &[Origin], n: u64) -> Vec<(u64, usize, Vec<u8>)> {
    (1..=n)
        .map(|seq| {
            let o = (seq % origins.len() as u64) as usize;
            (seq, o, format!("entry {seq} from {o}").into_bytes())
        })
        .collect()
}

fn batches(
    config: LokiBatchConfig,
    origins: &[Origin],
    list: &[(u64, usize, Vec<u8>)],
    time: impl Fn(u64) -> u64,
) -> Vec<LokiBatch> {
    let mut b = LokiBatcher::new(config);
    let mut out = Vec::new();
    for (seq, o, msg) in list {
        let e = EntryRef {
            seq: *seq,
            time: time(*seq),
            source_time: Default::default(),
            origin: &origins[*o],
            flags: Flags::default().with_stream(Some(Stream::Stdout)),
            msg,
        };
        if b.push(&e) == Admit::Full {
            out.push(b.finish().unwrap());
            assert_eq!(b.push(&e), Admit::Added);
        }
    }
    out.extend(b.finish());
    out
}

fn origins() -> Vec<Origin> {
    vec![
        Origin::new("web.out").with_label("container.name", "web"),
        Origin::new("db.out").with_label("image", "postgres:16"),
        Origin::new("ringtail"),
    ]
}

async fn every_entry_once_through_errors(encoding: LokiEncoding) {
    let fake = FakeLoki::start().await;
    let origins = origins();
    let list = entries(&origins, 3000);
    let config = LokiBatchConfig {
        encoding,
        max_entries: 500,
        ..LokiBatchConfig::default()
    };
    let all = batches(config, &origins, &list, shared_times);
    assert_eq!(all.len(), 6);
    let target = LokiTarget::new(&fake.url, Some("tenant-1"), None).unwrap();
    let client = client();
    fake.script([
        Scripted::Status {
            status: 429,
            retry_after: Some("7".into()),
        },
        Scripted::status(500),
        Scripted::status(503),
    ]);
    let mut retries = 0;
    for (i, batch) in all.iter().enumerate() {
        let shipped = ship(&client, &target, batch).await;
        if i == 0 {
            assert_eq!(shipped.retries, 3);
            assert_eq!(shipped.retry_after[0], Some(Duration::from_secs(7)));
            assert_eq!(
                shipped.causes,
                [
                    RetryCause::Throttled,
                    RetryCause::Server(500),
                    RetryCause::Server(503)
                ]
            );
        }
        retries += shipped.retries;
        assert_eq!(shipped.rejected.total(), 0);
    }
    assert_eq!(retries, 3);
    assert_eq!(fake.stored_count(), 3000);
    assert_eq!(fake.state().duplicates, 0);
    let st = fake.state();
    // Every push (the scripted ones too) sent the same encoding.
    assert!(st.received.iter().all(|r| match encoding {
        LokiEncoding::Protobuf =>
            r.content_type == "application/x-protobuf" && r.content_encoding.is_none(),
        LokiEncoding::Json { gzip } =>
            r.content_type == "application/json"
                && r.content_encoding.as_deref() == gzip.then_some("gzip"),
    }));
    assert_eq!(st.received.len(), 6 + 3);
    drop(st);
    // Per stream: every line, in seq order.
    for (o, origin) in origins.iter().enumerate() {
        assert_eq!(
            fake.lines(&stream_labels(origin)),
            lines_of(&list, o),
            "stream of {}",
            origin.source
        );
    }
}

#[tokio::test]
async fn protobuf_every_entry_once_in_order_through_429_and_5xx() {
    every_entry_once_through_errors(LokiEncoding::Protobuf).await;
}

#[tokio::test]
async fn json_every_entry_once_in_order_through_429_and_5xx() {
    every_entry_once_through_errors(LokiEncoding::Json { gzip: false }).await;
}

#[tokio::test]
async fn gzip_json_every_entry_once_in_order_through_429_and_5xx() {
    every_entry_once_through_errors(LokiEncoding::Json { gzip: true }).await;
}

#[tokio::test]
async fn a_batch_sent_again_is_dropped_as_duplicates() {
    // After a crash between Loki's answer and the cursor write, the same
    // entries are sent again with the same times: Loki keeps one copy.
    let fake = FakeLoki::start().await;
    let origins = origins();
    let list = entries(&origins, 200);
    let target = LokiTarget::new(&fake.url, None, None).unwrap();
    let client = client();
    let first = batches(LokiBatchConfig::default(), &origins, &list, |seq| {
        1_000 + seq
    });
    let again = batches(LokiBatchConfig::default(), &origins, &list, |seq| {
        1_000 + seq
    });
    assert_eq!(first, again, "the same entries encode to the same body");
    for b in first.iter().chain(&again) {
        let shipped = ship(&client, &target, b).await;
        assert_eq!((shipped.retries, shipped.rejected.total()), (0, 0));
    }
    assert_eq!(fake.stored_count(), 200);
    assert_eq!(fake.state().duplicates, 200);
}

#[tokio::test]
async fn identical_lines_logged_together_all_arrive() {
    // One append batch shares one ring time; the batcher's per-stream
    // timestamps keep Loki from taking the copies for duplicates.
    let fake = FakeLoki::start().await;
    let o = [Origin::new("dots")];
    let list: Vec<(u64, usize, Vec<u8>)> = (1..=50).map(|seq| (seq, 0, b".".to_vec())).collect();
    let all = batches(
        LokiBatchConfig {
            max_entries: 20,
            ..LokiBatchConfig::default()
        },
        &o,
        &list,
        |_| 5_000,
    );
    let target = LokiTarget::new(&fake.url, None, None).unwrap();
    for b in &all {
        ship(&client(), &target, b).await;
    }
    assert_eq!(
        fake.lines(&[("source", "dots"), ("stream", "stdout")])
            .len(),
        50
    );
    assert_eq!(fake.state().duplicates, 0);
}

#[tokio::test]
async fn refusals_are_counted_by_reason() {
    let fake = FakeLoki::start().await;
    let origins = origins();
    let target = LokiTarget::new(&fake.url, None, None).unwrap();
    let client = client();

    // Too old: the fake, like Loki, refuses entries before a limit; the
    // good ones of the push are stored.
    fake.state().reject_older_than = Some(1_000_100);
    let list = entries(&origins, 300);
    let all = batches(LokiBatchConfig::default(), &origins, &list, |seq| {
        1_000_000 + seq
    });
    assert_eq!(all.len(), 1);
    let shipped = ship(&client, &target, &all[0]).await;
    assert_eq!(shipped.rejected.get(LokiReason::TooOld), 99);
    assert_eq!(shipped.rejected.total(), 99);
    assert_eq!(fake.stored_count(), 201);
    assert!(fake.state().received[0]
        .answer
        .contains("errors like: entry for stream"));
    fake.state().reject_older_than = None;

    // Out of order: entries older than their stream's newest (a fresh
    // batcher knows nothing of earlier pushes, like one after a restart
    // that was handed older entries). The fake answers in the ingester's
    // text for its last failing stream.
    let one = [Origin::new("late")];
    let newer = batches(
        LokiBatchConfig::default(),
        &one,
        &[(1, 0, b"new".to_vec())],
        |_| 9_000_000,
    );
    ship(&client, &target, &newer[0]).await;
    let older: Vec<(u64, usize, Vec<u8>)> = (2..=31)
        .map(|s| (s, 0, format!("old {s}").into_bytes()))
        .collect();
    let older = batches(LokiBatchConfig::default(), &one, &older, |s| 8_000_000 + s);
    let shipped = ship(&client, &target, &older[0]).await;
    // 30 refused; the fake lists 10 of them, the rest is in its total.
    assert_eq!(shipped.rejected.get(LokiReason::OutOfOrder), 30);
    assert_eq!(shipped.rejected.total(), 30);
    assert!(fake
        .state()
        .received
        .last()
        .unwrap()
        .answer
        .contains("total ignored: 30 out of 30"));

    // A line over the fake's limit (lowered here) that the batcher did not
    // split because it was configured for Loki's default.
    fake.state().max_line_bytes = 100;
    let long = [Origin::new("long")];
    let list = vec![(1, 0, vec![b'a'; 150]), (2, 0, b"short".to_vec())];
    let b = batches(LokiBatchConfig::default(), &long, &list, |s| 10_000_000 + s);
    let shipped = ship(&client, &target, &b[0]).await;
    assert_eq!(shipped.rejected.get(LokiReason::LineTooLong), 1);
    assert_eq!(
        fake.lines(&[("source", "long"), ("stream", "stdout")]),
        ["short"]
    );
}

#[tokio::test]
async fn long_lines_are_split_and_labels_fit_loki() {
    let fake = FakeLoki::start().await;
    let mut many = Origin::new("many");
    for i in 0..30 {
        many.set_label(format!("label.{i:02}"), "v");
    }
    let origins = [many];
    let line = "ü".repeat(300_000); // 600,000 bytes: three pieces
    let list = vec![(1, 0, line.clone().into_bytes())];
    let all = batches(LokiBatchConfig::default(), &origins, &list, |_| 77);
    assert_eq!(all[0].lines, 3);
    assert_eq!(all[0].dropped_labels, 30 + 2 - 15);
    let target = LokiTarget::new(&fake.url, None, None).unwrap();
    let shipped = ship(&client(), &target, &all[0]).await;
    assert_eq!((shipped.retries, shipped.rejected.total()), (0, 0));
    let st = fake.state();
    let (labels, entries) = st.streams.iter().next().unwrap();
    assert_eq!(labels.len(), 15);
    assert_eq!(
        entries.iter().map(|e| e.line.as_str()).collect::<String>(),
        line
    );
    assert!(entries.iter().all(|e| e.line.len() <= 256 * 1024));
}

/// Delivers `list` through a [`LokiShipper`] as the follower does: each
/// call gets every item not yet acknowledged, a partial answer
/// (`through`) moves the start, a retry calls again. Returns the retries.
async fn deliver_all(
    shipper: &mut LokiShipper,
    origins: &[Origin],
    list: &[(u64, usize, Vec<u8>)],
    time: impl Fn(u64) -> u64,
) -> (u32, u32) {
    let (mut retries, mut calls) = (0, 0);
    let mut from = 0;
    while from < list.len() {
        let items: Vec<Read<'_>> = list[from..]
            .iter()
            .map(|(seq, o, msg)| {
                Read::Entry(EntryRef {
                    seq: *seq,
                    time: time(*seq),
                    source_time: Default::default(),
                    origin: &origins[*o],
                    flags: Flags::default().with_stream(Some(Stream::Stdout)),
                    msg,
                })
            })
            .collect();
        calls += 1;
        match shipper.deliver(&items).await {
            Ok(d) => {
                assert!(d.rejected.is_empty(), "{d:?}");
                from = match d.through {
                    None => list.len(),
                    Some(seq) => list.iter().position(|(s, _, _)| *s > seq).unwrap(),
                };
            }
            Err(SinkError::Retry { .. }) => retries += 1,
            Err(e) => panic!("{e}"),
        }
    }
    (retries, calls)
}

fn stream_labels(origin: &Origin) -> Vec<(&str, &str)> {
    let mut labels = vec![("source", origin.source.as_str()), ("stream", "stdout")];
    labels.extend(origin.labels().iter().map(|(k, v)| {
        let k = if k == "container.name" {
            "container_name"
        } else {
            k.as_str()
        };
        (k, v.as_str())
    }));
    labels
}

/// The messages of origin `o` in `list`, in seq order.
fn lines_of(list: &[(u64, usize, Vec<u8>)], o: usize) -> Vec<String> {
    list.iter()
        .filter(|(_, oi, _)| *oi == o)
        .map(|(_, _, m)| String::from_utf8(m.clone()).unwrap())
        .collect()
}

/// A shipper to `fake` with pushes of at most 100 entries.
fn shipper(fake: &FakeLoki, in_flight: usize) -> LokiShipper {
    let batcher = LokiBatcher::new(LokiBatchConfig {
        max_entries: 100,
        ..LokiBatchConfig::default()
    });
    let target = LokiTarget::new(&fake.url, None, None).unwrap();
    LokiShipper::new(client(), target, batcher).with_in_flight(in_flight)
}

/// Seq `seq`'s time: seven entries share each nanosecond.
fn shared_times(seq: u64) -> u64 {
    1_700_000_000_000_000_000 + seq / 7
}

/// Two pushes in flight against a Loki that takes entries out of order
/// (its default): through scripted 429s and 5xx every entry arrives once,
/// none twice (a push answered while the one before it failed is not
/// sent again), and the shipper answers push by push.
#[tokio::test]
async fn pushes_in_flight_deliver_every_entry_once_through_errors() {
    let fake = FakeLoki::start().await;
    fake.state().unordered = true;
    let origins = origins();
    let list = entries(&origins, 2000);
    let mut shipper = shipper(&fake, 2);
    fake.script([
        Scripted::status(429),
        Scripted::status(500),
        Scripted::status(503),
    ]);
    let (retries, calls) = deliver_all(&mut shipper, &origins, &list, shared_times).await;
    // Each failed attempt is answered once, when its push is the oldest.
    assert_eq!(retries, 3);
    // One answer per push: 20 pushes, every call but the last answers
    // with the part up to its oldest push.
    assert!(calls >= 20, "{calls} calls");
    assert_eq!(fake.stored_count(), 2000);
    assert_eq!(
        fake.state().duplicates,
        0,
        "no push sent again once answered"
    );
    assert_eq!(fake.state().received.len(), 20 + 3);
    for (o, origin) in origins.iter().enumerate() {
        let mut got = fake.lines(&stream_labels(origin));
        // Arrival order may differ between pushes; the set may not.
        got.sort_by_key(|l| l.split(' ').nth(1).unwrap().parse::<u64>().unwrap());
        assert_eq!(got, lines_of(&list, o), "stream of {}", origin.source);
    }
}

/// One push in flight (`in-flight = 1`) against a Loki with ordered
/// writes: through the same errors every stream arrives in seq order.
#[tokio::test]
async fn one_push_in_flight_keeps_streams_in_order_for_an_ordered_loki() {
    let fake = FakeLoki::start().await;
    let origins = origins();
    let list = entries(&origins, 2000);
    let mut shipper = shipper(&fake, 1);
    fake.script([Scripted::status(429), Scripted::status(500)]);
    let (retries, _) = deliver_all(&mut shipper, &origins, &list, shared_times).await;
    assert_eq!(retries, 2);
    assert_eq!(fake.stored_count(), 2000);
    assert_eq!(fake.state().duplicates, 0);
    for (o, origin) in origins.iter().enumerate() {
        assert_eq!(
            fake.lines(&stream_labels(origin)),
            lines_of(&list, o),
            "stream of {}",
            origin.source
        );
    }
}
