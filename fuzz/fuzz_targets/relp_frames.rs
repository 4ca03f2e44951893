//! Fuzzes what a RELP server sends the forwarder's client: frames cut from
//! a byte stream, `rsp` data, offers, and a session fed those frames.
//!
//! Input: the byte stream from the server, fed in pieces whose sizes come
//! from the first byte (so frames split across reads are covered).
//!
//! Checked: no panic; a parsed frame is within the data limit and
//! re-encodes to a frame that parses back the same; the session's done seq
//! only grows and its window never exceeds its size.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringtail::sinks::syslog::relp::{
    parse_frame, parse_offers, parse_response, write_frame, FrameReader, RelpSession, MAX_FRAME_DATA,
};

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;

    if let Ok(Some((frame, used))) = parse_frame(stream) {
        assert!(used <= stream.len() && frame.data.len() <= MAX_FRAME_DATA);
        let mut again = Vec::new();
        write_frame(&mut again, frame.txnr, &frame.command, &frame.data);
        let (reparsed, n) = parse_frame(&again).expect("a written frame parses").expect("whole");
        assert_eq!((reparsed, n), (frame.clone(), again.len()));
        let _ = parse_response(&frame.data);
        let _ = parse_offers(&frame.data);
    }

    let mut session = RelpSession::new(4);
    let mut out = Vec::new();
    session.open(&mut out);
    let mut reader = FrameReader::new();
    let mut seq = 0u64;
    let mut done = None;
    for chunk in stream.chunks(step) {
        reader.extend(chunk);
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    let _ = session.on_frame(&frame);
                    // Keep the window busy so answers can match.
                    while session.has_room() {
                        seq += 1;
                        session.send(seq, Bytes::from_static(b"<13>1 - - - - - - m"), &mut out);
                    }
                    assert!(session.window_seqs().count() <= 4);
                    assert!(session.done_through() >= done);
                    done = session.done_through();
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        out.clear();
    }
});
