//! The CloudWatch Logs forwarder's requests against moto_server: groups
//! and streams created on demand, batches stored and read back with
//! GetLogEvents, refusals counted, retries that never store a request
//! twice; every request checked against the service's batch rules, which
//! moto does not enforce.

mod support;

use support::moto;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use moto::Moto;
use ringtail::entry::{EntryRef, Flags, Origin};
use ringtail::sinks::cloudwatch::{
    check_request, AwsCredentials, BatchOutcome, BatchProgress, CloudWatchTarget, CredentialSource,
    CwBatch, CwBatchConfig, CwBatcher, NameKind, NameTemplate, RetryCause,
};
use ringtail::sinks::http::{HttpClient, HttpOptions};
use ringtail::sinks::ship::Admit;

fn target(moto: &Moto) -> CloudWatchTarget {
    let creds = CredentialSource::fixed(AwsCredentials {
        access_key_id: "AKIDTEST".into(),
        secret_access_key: "secret".into(),
        session_token: Some("token".into()),
    });
    CloudWatchTarget::new("us-east-1", Some(&moto.endpoint()), creds).unwrap()
}

fn batcher(group: &str) -> CwBatcher {
    CwBatcher::new(CwBatchConfig::new(
        NameTemplate::parse(group, NameKind::LogGroup).unwrap(),
        NameTemplate::parse(
            "{{.Label \"container_name\"}}-{{.Source}}",
            NameKind::LogStream,
        )
        .unwrap(),
    ))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The strict check of every rule on a whole batch.
fn check_batch(batch: &CwBatch) {
    for r in &batch.requests {
        check_request(r)
            .unwrap_or_else(|e| panic!("request for {}/{} breaks a rule: {e}", r.group, r.stream));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["logEvents"].as_array().unwrap().len(), r.events.len());
    }
}

/// Every event of a stream, oldest first, through GetLogEvents.
async fn read_back(
    client: &HttpClient,
    target: &CloudWatchTarget,
    group: &str,
    stream: &str,
) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = serde_json::json!({
            "logGroupName": group, "logStreamName": stream, "startFromHead": true, "limit": 10000
        });
        if let Some(t) = &token {
            body["nextToken"] = t.clone().into();
        }
        let req = target
            .request(
                "GetLogEvents",
                Bytes::from(body.to_string()),
                SystemTime::now(),
            )
            .unwrap();
        let answer = client.send(req).await.unwrap();
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        let events = v["events"].as_array().unwrap();
        for e in events {
            out.push((
                e["timestamp"].as_i64().unwrap(),
                e["message"].as_str().unwrap().to_string(),
            ));
        }
        let next = v["nextForwardToken"].as_str().map(str::to_string);
        if events.is_empty() || next == token {
            return out;
        }
        token = next;
    }
}

fn client() -> HttpClient {
    HttpClient::new(&HttpOptions {
        max_answer_bytes: 64 * 1024 * 1024,
        ..HttpOptions::default()
    })
    .unwrap()
}

#[tokio::test]
async fn batches_are_stored_once_and_read_back() {
    if !Moto::available("batches_are_stored_once_and_read_back") {
        return;
    }
    let moto = Moto::start();
    let mut target = target(&moto);
    target.create_missing = true;
    let client = client();

    let web = Origin::new("web.out").with_label("container_name", "web");
    let db = Origin::new("db.out").with_label("container_name", "db");
    let base = now_ms() - 60_000;
    let long = "é".repeat(150_000); // 300,000 bytes: two events
    let mut messages: Vec<(u64, &Origin, Vec<u8>)> = Vec::new();
    for i in 0..25_000u64 {
        let origin = if i % 3 == 0 { &db } else { &web };
        messages.push((
            i,
            origin,
            format!("line {i} {}", "x".repeat((i % 200) as usize)).into_bytes(),
        ));
    }
    messages.push((25_000, &web, long.clone().into_bytes()));
    messages.push((25_001, &web, b"not utf-8 \xff\xfe".to_vec()));
    messages.push((25_002, &web, Vec::new()));

    let mut b = batcher("/ringtail/test");
    let mut batches = Vec::new();
    for (seq, origin, msg) in &messages {
        let e = EntryRef {
            seq: *seq,
            time: (base + seq / 10) * 1_000_000,
            source_time: Default::default(),
            origin,
            flags: Flags::default(),
            msg,
        };
        if b.push(&e) == Admit::Full {
            batches.push(b.finish().unwrap());
            assert_eq!(b.push(&e), Admit::Added);
        }
    }
    batches.push(b.finish().unwrap());
    assert!(
        batches.len() >= 3,
        "the caps made only {} batches",
        batches.len()
    );
    let mut next_seq = 0;
    for batch in &batches {
        assert_eq!(
            batch.first_seq, next_seq,
            "batches cover the seqs without a gap"
        );
        next_seq = batch.last_seq + 1;
        check_batch(batch);
        let mut progress = BatchProgress::default();
        let outcome = target.put_batch(&client, batch, &mut progress).await;
        assert_eq!(outcome, BatchOutcome::Done, "{}", moto.output());
        assert_eq!(progress.rejected.total(), 0);
        assert!(progress.refused.is_empty(), "{:?}", progress.refused);
        // Sending a finished batch again stores nothing twice.
        assert_eq!(
            target.put_batch(&client, batch, &mut progress).await,
            BatchOutcome::Done
        );
    }
    assert_eq!(next_seq, 25_003);
    assert_eq!(batches.iter().map(|b| b.skipped_empty).sum::<u64>(), 1);

    let web_events = read_back(&client, &target, "/ringtail/test", "web-web.out").await;
    let db_events = read_back(&client, &target, "/ringtail/test", "db-db.out").await;
    let expect = |origin: &Origin| -> Vec<(i64, String)> {
        let mut out = Vec::new();
        for (seq, o, msg) in &messages {
            if *o != origin || msg.is_empty() {
                continue;
            }
            let ts = (base + seq / 10) as i64;
            let text = ringtail::sinks::ship::message_text(msg).into_owned();
            for piece in ringtail::sinks::ship::split_text(&text, 262_118) {
                out.push((ts, piece.to_string()));
            }
        }
        out
    };
    assert_eq!(db_events.len(), expect(&db).len());
    assert!(db_events == expect(&db), "db events differ");
    assert!(web_events == expect(&web), "web events differ");
    assert!(web_events.iter().any(|(_, m)| m == "not utf-8 \\xff\\xfe"));
}

#[tokio::test]
async fn refusals_are_counted_and_missing_groups_wait() {
    if !Moto::available("refusals_are_counted_and_missing_groups_wait") {
        return;
    }
    let moto = Moto::start();
    let mut target = target(&moto);
    let client = client();
    let o = Origin::new("app").with_label("container_name", "c");
    let now = now_ms();
    let day = 24 * 3600 * 1000;
    let mut b = batcher("/ringtail/refusals");
    // Two events too old (20 and 15 days), three good, one too new (3 h):
    // within 24 h of each other they would not fit one request, so the old
    // ones go first in a batch of their own.
    let old = [(1, now - 20 * day), (2, now - 20 * day + 1000)];
    for (seq, ms) in old {
        assert_eq!(
            b.push(&EntryRef {
                seq,
                time: ms * 1_000_000,
                source_time: Default::default(),
                origin: &o,
                flags: Flags::default(),
                msg: b"old"
            }),
            Admit::Added
        );
    }
    let old_batch = b.finish().unwrap();
    for (seq, ms) in [
        (3, now - 1000),
        (4, now),
        (5, now + 1000),
        (6, now + 3 * 3600 * 1000),
    ] {
        assert_eq!(
            b.push(&EntryRef {
                seq,
                time: ms * 1_000_000,
                source_time: Default::default(),
                origin: &o,
                flags: Flags::default(),
                msg: b"m"
            }),
            Admit::Added
        );
    }
    let batch = b.finish().unwrap();
    check_batch(&old_batch);
    check_batch(&batch);

    // No group yet and creating it is not configured: retry, nothing done.
    let mut progress = BatchProgress::default();
    let outcome = target.put_batch(&client, &batch, &mut progress).await;
    assert!(
        matches!(
            outcome,
            BatchOutcome::Retry {
                cause: RetryCause::Missing,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(progress.done, [false]);

    target.create_missing = true;
    assert_eq!(
        target.put_batch(&client, &batch, &mut progress).await,
        BatchOutcome::Done
    );
    assert_eq!(
        (progress.rejected.too_new, progress.rejected.too_old),
        (1, 0)
    );
    let mut old_progress = BatchProgress::default();
    assert_eq!(
        target
            .put_batch(&client, &old_batch, &mut old_progress)
            .await,
        BatchOutcome::Done
    );
    assert_eq!(old_progress.rejected.too_old, 2);

    let stored = read_back(&client, &target, "/ringtail/refusals", "c-app").await;
    assert_eq!(stored.len(), 3, "{stored:?}");
    // A request refused for good (out of order, as moto checks) is counted
    // with all its events, and the batch is done.
    let mut bad = batch.clone();
    bad.requests[0].events.reverse();
    bad.requests[0].body = ringtail::sinks::cloudwatch::api::put_log_events_body(
        &bad.requests[0].group,
        &bad.requests[0].stream,
        &bad.requests[0].events,
    )
    .into();
    assert!(
        check_request(&bad.requests[0]).is_err(),
        "the strict checker sees it too"
    );
    let mut progress = BatchProgress::default();
    assert_eq!(
        target.put_batch(&client, &bad, &mut progress).await,
        BatchOutcome::Done
    );
    assert_eq!(progress.refused_events(), 4);
    assert_eq!(progress.refused[0].2.name, "InvalidParameterException");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_retry() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let creds = CredentialSource::fixed(AwsCredentials {
        access_key_id: "AKIDTEST".into(),
        secret_access_key: "secret".into(),
        session_token: None,
    });
    let target = CloudWatchTarget::new(
        "us-east-1",
        Some(&format!("http://127.0.0.1:{port}")),
        creds,
    )
    .unwrap();
    let mut b = batcher("g");
    let o = Origin::new("s");
    b.push(&EntryRef {
        seq: 1,
        time: 1,
        source_time: Default::default(),
        origin: &o,
        flags: Flags::default(),
        msg: b"m",
    });
    let batch = b.finish().unwrap();
    let mut progress = BatchProgress::default();
    let client = HttpClient::new(&HttpOptions {
        connect_timeout: Duration::from_secs(2),
        ..HttpOptions::default()
    })
    .unwrap();
    let outcome = target.put_batch(&client, &batch, &mut progress).await;
    assert!(
        matches!(
            outcome,
            BatchOutcome::Retry {
                cause: RetryCause::Transport(_),
                ..
            }
        ),
        "{outcome:?}"
    );
}
