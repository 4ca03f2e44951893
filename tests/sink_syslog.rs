//! The syslog forwarder's clients against a real rsyslog: RELP (`imrelp`)
//! and plain TCP with octet counting (`imtcp`), formatted by ringtail's
//! RFC 5424 formatter.
//!
//! Each message carries a unique `id=N` so the receiver's file can be
//! checked for loss and duplicates exactly.

mod support;

use support::rsyslog;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringtail::entry::{EntryRef, Flags, Origin};
use ringtail::sinks::syslog::{
    format_batch, RelpClient, RelpOptions, SyslogFormat, TcpOptions, TcpSyslogClient,
};
use rsyslog::{Input, Rsyslog};

/// `n` formatted messages, seqs `first..first + n`, each `... id=<seq>`.
fn messages(first: u64, n: u64) -> Vec<(u64, Bytes)> {
    let origin = Origin::new("sink-test").with_label("pid", "4242");
    let format = SyslogFormat::new("test-host");
    let texts: Vec<String> = (first..first + n)
        .map(|seq| format!("message id={seq} {}", "x".repeat((seq % 50) as usize)))
        .collect();
    let entries = texts.iter().zip(first..).map(|(t, seq)| EntryRef {
        seq,
        time: 1_700_000_000_000_000_000 + seq,
        source_time: Default::default(),
        origin: &origin,
        flags: Flags::default().with_level(ringtail::entry::Level::from_severity(6)),
        msg: t.as_bytes(),
    });
    let (out, cut) = format_batch(&format, entries);
    assert_eq!(cut, 0);
    out
}

/// How often each id occurs in the receiver's lines; checks every line is
/// one of ours, intact.
fn id_counts(lines: &[String]) -> BTreeMap<u64, u32> {
    let mut counts = BTreeMap::new();
    for line in lines {
        assert!(
            line.starts_with("<14>1 ")
                && line.contains(" test-host sink-test 4242 - - message id="),
            "unexpected line {line:?}"
        );
        let id: u64 = line
            .split("id=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no id in {line:?}"));
        assert!(
            line.ends_with(&format!("id={id} {}", "x".repeat((id % 50) as usize))),
            "{line:?}"
        );
        *counts.entry(id).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn relp_delivers_every_message_exactly_once() {
    if !Rsyslog::available("relp_delivers_every_message_exactly_once") {
        return;
    }
    let rs = Rsyslog::start(Input::Relp);
    let mut client = RelpClient::new(rs.addr(), RelpOptions::default());
    let all = messages(1, 5000);
    for batch in all.chunks(700) {
        let ack = client.send_batch(batch).await.unwrap();
        assert_eq!(ack.done_through, Some(batch.last().unwrap().0));
        assert!(ack.refused.is_empty());
    }
    client.close().await.unwrap();
    // Acknowledged means written (Direct queue): no waiting needed.
    let lines = rs.lines();
    let counts = id_counts(&lines);
    assert_eq!(counts.len(), 5000, "{}", rs.stderr());
    assert!(
        counts.values().all(|&c| c == 1),
        "duplicates without any failure"
    );
    let ids: Vec<u64> = lines
        .iter()
        .map(|l| {
            id_counts(std::slice::from_ref(l))
                .into_keys()
                .next()
                .unwrap()
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert_eq!(client.resent(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relp_resends_its_unanswered_window_after_rsyslog_is_killed() {
    if !Rsyslog::available("relp_resends_its_unanswered_window_after_rsyslog_is_killed") {
        return;
    }
    let mut rs = Rsyslog::start(Input::Relp);
    let addr = rs.addr();
    let all = messages(1, 20_000);
    let total = all.len();
    let options = RelpOptions {
        window: 128,
        ..RelpOptions::default()
    };
    // The forwarder's loop: send the batch, and after an error send the
    // same batch again (the client skips what it already has and re-sends
    // its window itself) until it is done.
    let sender = tokio::spawn(async move {
        let mut client = RelpClient::new(addr, options);
        let mut errors = 0;
        let mut done_through = None;
        for batch in all.chunks(2000) {
            loop {
                match client.send_batch(batch).await {
                    Ok(ack) => {
                        done_through = ack.done_through;
                        break;
                    }
                    Err(e) => {
                        errors += 1;
                        assert!(errors < 10_000, "never recovers: {e}");
                        // Cursor moves only forward.
                        assert!(e.done_through >= done_through);
                        done_through = e.done_through;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
        client.close().await.unwrap();
        (client.resent(), errors, done_through)
    });

    // Mid-stream: freeze rsyslog, wait until messages sit unread in its
    // socket (so the client has unanswered ones), then kill it: those
    // messages and any answers not yet read are gone with the socket.
    let started = Instant::now();
    rs.wait_for_lines(3000, Duration::from_secs(60));
    rs.freeze();
    while rs.unread_bytes() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the client sends nothing"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let before_kill = rs.lines().len();
    rs.kill();
    rs.restart();

    let (resent, errors, done_through) = sender.await.unwrap();
    assert_eq!(done_through, Some(total as u64));
    assert!(errors >= 1, "the kill went unnoticed");
    assert!(
        resent >= 1,
        "nothing was re-sent although messages were unanswered"
    );
    let lines = rs.lines();
    let counts = id_counts(&lines);
    let missing: Vec<u64> = (1..=total as u64)
        .filter(|id| !counts.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "lost {} messages, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let duplicates: u64 = counts.values().map(|&c| u64::from(c - 1)).sum();
    // Only messages rsyslog wrote but whose answer died with it can come
    // twice, and those were re-sent from the window.
    assert!(
        duplicates <= resent,
        "{duplicates} duplicates, {resent} re-sent"
    );
    eprintln!(
        "RELP across kill -9: {total} messages, {before_kill} written before the kill, \
         {resent} re-sent from the window, {duplicates} duplicates, {errors} failed attempts"
    );
}

#[tokio::test]
async fn tcp_octet_counting_delivers_every_message_once() {
    if !Rsyslog::available("tcp_octet_counting_delivers_every_message_once") {
        return;
    }
    let rs = Rsyslog::start(Input::Tcp);
    let mut client = TcpSyslogClient::new(rs.addr(), TcpOptions::default());
    let mut all = messages(1, 3000);
    // A message with a newline inside: octet counting keeps it one message.
    let origin = Origin::new("sink-test").with_label("pid", "4242");
    let multi = EntryRef {
        seq: 3001,
        time: 1_700_000_000_000_000_000,
        source_time: Default::default(),
        origin: &origin,
        flags: Flags::default().with_level(ringtail::entry::Level::from_severity(6)),
        msg: b"message id=3001 first\nsecond",
    };
    all.extend(format_batch(&SyslogFormat::new("test-host"), [multi]).0);
    for batch in all.chunks(500) {
        let ack = client.send_batch(batch).await.unwrap();
        // Acknowledged once rsyslog's kernel has every byte.
        assert_eq!(ack.done_through, Some(batch.last().unwrap().0));
    }
    client.close().await;
    let lines = rs.wait_for_lines(3001, Duration::from_secs(30));
    // The multi-line message is one message; rsyslog writes its newline as
    // `#012` (its default EscapeControlCharactersOnReceive).
    assert_eq!(lines.len(), 3001, "{}", rs.stderr());
    assert!(
        lines[3000].ends_with("message id=3001 first#012second"),
        "{}",
        lines[3000]
    );
    let counts = id_counts(&lines[..3000]);
    assert_eq!(counts.len(), 3000);
    assert!(counts.values().all(|&c| c == 1));
}

/// Plain TCP across `kill -9` of rsyslog: the client acknowledges only what
/// rsyslog's kernel acknowledged, so what is lost is exactly what sat
/// unread in rsyslog's socket, and everything the client had not seen
/// acknowledged is sent again on the next connection. The test measures
/// that window (it is printed) and checks the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_loses_only_what_rsyslog_had_not_read() {
    if !Rsyslog::available("tcp_loses_only_what_rsyslog_had_not_read") {
        return;
    }
    let mut rs = Rsyslog::start(Input::Tcp);
    let addr = rs.addr();
    let all = messages(1, 60_000);
    let total = all.len() as u64;
    let bytes_of: BTreeMap<u64, usize> = all.iter().map(|(s, m)| (*s, m.len())).collect();
    let sender = tokio::spawn(async move {
        let mut client = TcpSyslogClient::new(addr, TcpOptions::default());
        let mut errors = 0;
        let mut done_through = None;
        let mut done_at_failure = Vec::new();
        for batch in all.chunks(5000) {
            loop {
                match client.send_batch(batch).await {
                    Ok(ack) => {
                        done_through = ack.done_through;
                        break;
                    }
                    Err(e) => {
                        errors += 1;
                        assert!(errors < 10_000, "never recovers: {e}");
                        assert!(e.done_through >= done_through);
                        done_through = e.done_through;
                        done_at_failure.push(done_through);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
        client.close().await;
        (done_through, done_at_failure)
    });

    rs.wait_for_lines(10_000, Duration::from_secs(60));
    rs.freeze();
    // Wait until rsyslog's receive buffer is full (the sender is blocked on
    // a zero window): its content no longer changes.
    let started = Instant::now();
    let mut last = 0;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = rs.unread_bytes();
        if now > 0 && now == last {
            break;
        }
        last = now;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "rsyslog's buffer never fills"
        );
    }
    let unread_at_kill = last;
    rs.kill();
    rs.restart();

    let (done_through, done_at_failure) = sender.await.unwrap();
    assert_eq!(done_through, Some(total));
    // The last message went over the last connection after all the others
    // on it: once it is written, so is everything rsyslog will ever write.
    let deadline = Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let counts = id_counts(&rs.lines());
        if counts.contains_key(&total) {
            break counts;
        }
        assert!(Instant::now() < deadline, "the last message never arrives");
        std::thread::sleep(Duration::from_millis(20));
    };
    let lost: Vec<u64> = (1..=total).filter(|id| !counts.contains_key(id)).collect();
    let lost_bytes: u64 = lost
        .iter()
        .map(|id| bytes_of[id] as u64 + 1 + bytes_of[id].to_string().len() as u64)
        .sum();
    let duplicates: u64 = counts.values().map(|&c| u64::from(c - 1)).sum();
    eprintln!(
        "plain TCP across kill -9: {total} messages, {} lost ({lost_bytes} bytes framed; \
         {unread_at_kill} bytes were unread in rsyslog's socket), {duplicates} duplicates, \
         cursor at the failures: {done_at_failure:?}",
        lost.len()
    );
    // Every lost message had been acknowledged by rsyslog's kernel (the
    // cursor was past it when the connection failed): whatever the client
    // had not seen acknowledged was sent again.
    let cursor_at_failure = done_at_failure.first().copied().flatten().unwrap_or(0);
    assert!(
        lost.iter().all(|id| *id <= cursor_at_failure),
        "lost after the cursor: {lost:?}"
    );
    // The loss is what rsyslog held and had not written: its socket's unread
    // bytes plus at most one read of imtcp (128 KiB, tcpsrv's buffer; the
    // message cut by that read's end is lost whole).
    let longest = bytes_of.values().max().copied().unwrap_or(0) as u64 + 8;
    assert!(
        lost_bytes <= unread_at_kill + 128 * 1024 + longest,
        "lost {lost_bytes} bytes, only {unread_at_kill} were unread"
    );
    if let (Some(first), Some(last)) = (lost.first(), lost.last()) {
        assert_eq!(last - first + 1, lost.len() as u64, "the loss is one run");
    }
}

/// An orderly restart of rsyslog (SIGTERM: it closes its RELP sessions,
/// librelp sends `serverclose`) while messages flow: nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relp_survives_an_orderly_restart() {
    if !Rsyslog::available("relp_survives_an_orderly_restart") {
        return;
    }
    let mut rs = Rsyslog::start(Input::Relp);
    let addr = rs.addr();
    let all = messages(1, 20_000);
    let total = all.len() as u64;
    let sender = tokio::spawn(async move {
        let mut client = RelpClient::new(addr, RelpOptions::default());
        let mut errors = 0;
        for batch in all.chunks(1000) {
            loop {
                match client.send_batch(batch).await {
                    Ok(ack) => {
                        assert_eq!(ack.done_through, Some(batch.last().unwrap().0));
                        break;
                    }
                    Err(e) => {
                        errors += 1;
                        assert!(errors < 10_000, "never recovers: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
        client.close().await.unwrap();
        (client.resent(), errors)
    });
    rs.wait_for_lines(3000, Duration::from_secs(60));
    rs.stop();
    rs.restart();
    let (resent, errors) = sender.await.unwrap();
    let counts = id_counts(&rs.lines());
    let missing = (1..=total).filter(|id| !counts.contains_key(id)).count();
    let duplicates: u64 = counts.values().map(|&c| u64::from(c - 1)).sum();
    eprintln!("RELP across an orderly restart: {errors} failed attempts, {resent} re-sent, {duplicates} duplicates");
    assert_eq!(missing, 0, "lost messages");
    assert!(duplicates <= resent);
}
