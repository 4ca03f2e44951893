//! RELP, rsyslog's acknowledged syslog transport, as a client: frames, the
//! parser for what the server sends, and the session logic without any I/O
//! (the socket side is [`super::transport::RelpClient`]).
//!
//! Protocol facts (librelp `doc/relp.md`, `src/relpframe.c`,
//! `src/relpsess.c`, `src/copen.c`, `src/scsyslog.c`):
//!
//! - A frame is `TXNR SP COMMAND SP DATALEN [SP DATA] LF`: TXNR and DATALEN
//!   are 1-9 digits, COMMAND 1-32 letters; with DATALEN 0 there is no SP
//!   and no DATA (`3 rsp 0\n`). TXNR 0 is for server hints; the client
//!   numbers its commands from 1 and wraps from 999,999,999 to 1.
//! - The session starts with `open`, whose data are offers, one per line
//!   (`relp_version=0`, `relp_software=...`, `commands=syslog`); the server
//!   answers `rsp` with `200 OK` and the offers it accepts. librelp speaks
//!   version 0 and so does this client. The session is usable only after
//!   that answer, and only if the server accepted `syslog`.
//! - Each `syslog` frame carries one message and is answered by an `rsp`
//!   with the same TXNR: `200 OK`, or `500 <reason>` (refused).
//! - `close` is answered by an `rsp` (with no data from librelp) and the
//!   connection closes; a server that shuts down sends the hint
//!   `0 serverclose 0` first (or just closes).
//! - Frames from the server longer than 128 KiB (librelp's default
//!   maximum) are refused here, so a broken server cannot make the client
//!   buffer without bound.
//!
//! # The window and what is re-sent
//!
//! At most `window` messages are unacknowledged at a time (librelp's
//! default is 128). Every message sent is kept, with the ring seq it came
//! from, until its `rsp` arrives. When the connection breaks, the unacked
//! messages stay in the window; after the next `open` they are sent again,
//! in their original order, under new TXNRs (as librelp does). Messages
//! the server had processed but whose `rsp` was lost arrive twice: RELP
//! is at-least-once, never lossy. A message is *done* when the server
//! answered it `200` or refused it (`500`, counted); the session reports
//! the highest seq such that it and every seq sent before it are done
//! ([`RelpSession::done_through`]), which is what a forwarder's cursor may
//! move to.

use std::collections::VecDeque;

use bytes::Bytes;

/// librelp's default maximum DATALEN.
pub const MAX_FRAME_DATA: usize = 128 * 1024;
/// The largest TXNR before it wraps to 1.
pub const MAX_TXNR: u32 = 999_999_999;
/// librelp's default window.
pub const DEFAULT_WINDOW: usize = 128;

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub txnr: u32,
    pub command: String,
    pub data: Vec<u8>,
}

/// Bytes that are not a RELP frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad RELP frame from the server: {0}")]
    Syntax(&'static str),
    #[error("RELP frame from the server announces {0} bytes of data, more than the {MAX_FRAME_DATA} allowed")]
    TooLong(usize),
}

/// Appends the frame `TXNR COMMAND DATALEN [DATA]\n`.
pub fn write_frame(out: &mut Vec<u8>, txnr: u32, command: &str, data: &[u8]) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(n.format(txnr).as_bytes());
    out.push(b' ');
    out.extend_from_slice(command.as_bytes());
    out.push(b' ');
    out.extend_from_slice(n.format(data.len()).as_bytes());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

/// Reads one frame from the start of `buf`: `Ok(None)` if `buf` holds only
/// the start of one, else the frame and how many bytes it took.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    let mut at = 0;
    let txnr = match number(buf, &mut at)? {
        Some(n) => n,
        None => return Ok(None),
    };
    match buf.get(at) {
        None => return Ok(None),
        Some(b' ') => at += 1,
        Some(_) => return Err(FrameError::Syntax("TXNR is not followed by a space")),
    }
    let cmd_start = at;
    while at < buf.len() && buf[at].is_ascii_alphabetic() {
        at += 1;
        if at - cmd_start > 32 {
            return Err(FrameError::Syntax("command longer than 32 letters"));
        }
    }
    match buf.get(at) {
        None => return Ok(None),
        Some(b' ') if at > cmd_start => at += 1,
        Some(_) => return Err(FrameError::Syntax("bad command")),
    }
    let command = String::from_utf8_lossy(&buf[cmd_start..at - 1]).into_owned();
    let len = match number(buf, &mut at)? {
        Some(n) => n as usize,
        None => return Ok(None),
    };
    if len > MAX_FRAME_DATA {
        return Err(FrameError::TooLong(len));
    }
    if len > 0 {
        match buf.get(at) {
            None => return Ok(None),
            Some(b' ') => at += 1,
            Some(_) => return Err(FrameError::Syntax("DATALEN is not followed by a space")),
        }
    }
    if buf.len() < at + len + 1 {
        return Ok(None);
    }
    let data = buf[at..at + len].to_vec();
    at += len;
    if buf[at] != b'\n' {
        return Err(FrameError::Syntax("frame does not end with a newline"));
    }
    Ok(Some((
        Frame {
            txnr: txnr as u32,
            command,
            data,
        },
        at + 1,
    )))
}

/// 1-9 digits at `*at`, ended by a non-digit; `Ok(None)` if `buf` ends first.
fn number(buf: &[u8], at: &mut usize) -> Result<Option<u64>, FrameError> {
    let start = *at;
    let mut value = 0u64;
    while *at < buf.len() && buf[*at].is_ascii_digit() {
        if *at - start == 9 {
            return Err(FrameError::Syntax("number longer than 9 digits"));
        }
        value = value * 10 + u64::from(buf[*at] - b'0');
        *at += 1;
    }
    if *at == buf.len() {
        return Ok(None);
    }
    if *at == start {
        return Err(FrameError::Syntax("number expected"));
    }
    Ok(Some(value))
}

/// Collects bytes from the connection and cuts them into frames.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if there is one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        match parse_frame(&self.buf)? {
            Some((frame, used)) => {
                self.buf.drain(..used);
                Ok(Some(frame))
            }
            None => Ok(None),
        }
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// The data of an `rsp`: `CODE [SP TEXT] [LF DATA]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub text: String,
    pub data: Vec<u8>,
}

impl Response {
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// Reads an `rsp`'s data. Empty data (librelp's answer to `close`) reads
/// as `200`.
pub fn parse_response(data: &[u8]) -> Result<Response, FrameError> {
    if data.is_empty() {
        return Ok(Response {
            code: 200,
            text: String::new(),
            data: Vec::new(),
        });
    }
    let (first, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if first.len() < 3 || !first[..3].iter().all(u8::is_ascii_digit) {
        return Err(FrameError::Syntax("rsp does not start with a 3-digit code"));
    }
    if first.len() > 3 && first[3] != b' ' {
        return Err(FrameError::Syntax("rsp code is not followed by a space"));
    }
    let code = first[..3]
        .iter()
        .fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
    let text = String::from_utf8_lossy(first.get(4..).unwrap_or_default()).into_owned();
    Ok(Response {
        code,
        text,
        data: rest.to_vec(),
    })
}

/// Offers as `(name, values)`, from `name[=v1[,v2...]]` lines.
pub fn parse_offers(data: &[u8]) -> Vec<(String, Vec<String>)> {
    String::from_utf8_lossy(data)
        .split('\n')
        .filter(|l| !l.trim().is_empty())
        .map(|line| match line.split_once('=') {
            Some((name, values)) => (
                name.trim().to_string(),
                values.split(',').map(|v| v.trim().to_string()).collect(),
            ),
            None => (line.trim().to_string(), Vec::new()),
        })
        .collect()
}

/// A session cannot go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the RELP server refused the session: {code} {text}")]
    OpenRefused { code: u16, text: String },
    #[error("the RELP server does not accept syslog messages (its offers: {0})")]
    NoSyslog(String),
    #[error("the RELP server answered transaction {0}, which is not outstanding")]
    UnknownTxnr(u32),
    #[error("the RELP server sent {0:?}, which a client does not expect")]
    UnexpectedCommand(String),
    #[error("the RELP server closed the session")]
    ServerClosed,
}

/// What an incoming frame meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// The session is open: send (the window first, see
    /// [`RelpSession::resend`]).
    Opened,
    /// A message is done; it was accepted.
    Acked { seq: u64 },
    /// A message is done; the server refused it for good.
    Refused { seq: u64, code: u16, text: String },
    /// The answer to `close`: the connection may be shut.
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No connection, or one that has not sent `open` yet.
    Idle,
    Opening {
        txnr: u32,
    },
    Open,
    Closing {
        txnr: u32,
    },
}

/// A message sent and not answered yet.
#[derive(Clone, Debug)]
struct Unacked {
    /// The TXNR it was last sent under (0 when it waits to be re-sent).
    txnr: u32,
    seq: u64,
    msg: Bytes,
    /// Answered; kept until every message before it is answered too.
    done: bool,
}

/// The client side of a RELP session, without I/O: it writes frames into
/// a buffer the caller sends, and reads frames the caller received.
#[derive(Debug)]
pub struct RelpSession {
    state: State,
    /// The TXNR of the next command.
    next_txnr: u32,
    /// Messages in send order, unanswered or answered out of order.
    window: VecDeque<Unacked>,
    /// At most this many unanswered messages.
    max_window: usize,
    /// The highest seq done with every earlier one, if any.
    done_through: Option<u64>,
    /// What the client calls itself in `relp_software`.
    software: String,
}

impl RelpSession {
    pub fn new(max_window: usize) -> RelpSession {
        RelpSession {
            state: State::Idle,
            next_txnr: 1,
            window: VecDeque::new(),
            max_window: max_window.max(1),
            done_through: None,
            software: format!(
                "ringtail,{},https://github.com/ringtail",
                env!("CARGO_PKG_VERSION")
            ),
        }
    }

    fn take_txnr(&mut self) -> u32 {
        let t = self.next_txnr;
        self.next_txnr = if t >= MAX_TXNR { 1 } else { t + 1 };
        t
    }

    /// Starts a session on a new connection: writes `open`. Messages of a
    /// broken session stay in the window and are re-sent once it is open.
    pub fn open(&mut self, out: &mut Vec<u8>) {
        self.next_txnr = 1;
        for m in &mut self.window {
            m.txnr = 0;
        }
        let offers = format!(
            "relp_version=0\nrelp_software={}\ncommands=syslog",
            self.software
        );
        let txnr = self.take_txnr();
        write_frame(out, txnr, "open", offers.as_bytes());
        self.state = State::Opening { txnr };
    }

    /// The connection is gone: what was unanswered waits for the next `open`.
    pub fn connection_lost(&mut self) {
        self.state = State::Idle;
    }

    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Messages sent (or waiting to be re-sent) and not answered.
    pub fn unanswered(&self) -> usize {
        self.window.iter().filter(|m| !m.done).count()
    }

    /// Whether another message may be sent now.
    pub fn has_room(&self) -> bool {
        self.is_open() && self.window.len() < self.max_window
    }

    /// The highest seq that is done, with every seq sent before it.
    pub fn done_through(&self) -> Option<u64> {
        self.done_through
    }

    /// The seqs of messages still in the window, in send order.
    pub fn window_seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.window.iter().map(|m| m.seq)
    }

    /// Writes the window's unanswered messages again under new TXNRs
    /// (after [`SessionEvent::Opened`] on a new connection); returns how
    /// many.
    pub fn resend(&mut self, out: &mut Vec<u8>) -> usize {
        let mut count = 0;
        for i in 0..self.window.len() {
            if self.window[i].done || self.window[i].txnr != 0 {
                continue;
            }
            let txnr = self.take_txnr();
            let m = &mut self.window[i];
            m.txnr = txnr;
            write_frame(out, txnr, "syslog", &m.msg);
            count += 1;
        }
        count
    }

    /// Sends one message (the session must be open with room).
    pub fn send(&mut self, seq: u64, msg: Bytes, out: &mut Vec<u8>) {
        debug_assert!(self.has_room());
        let txnr = self.take_txnr();
        write_frame(out, txnr, "syslog", &msg);
        self.window.push_back(Unacked {
            txnr,
            seq,
            msg,
            done: false,
        });
    }

    /// Writes `close`.
    pub fn close(&mut self, out: &mut Vec<u8>) {
        let txnr = self.take_txnr();
        write_frame(out, txnr, "close", b"");
        self.state = State::Closing { txnr };
    }

    /// Takes a frame from the server.
    pub fn on_frame(&mut self, frame: &Frame) -> Result<Option<SessionEvent>, SessionError> {
        match frame.command.as_str() {
            "serverclose" => {
                // librelp follows its answer to `close` with this hint.
                return match std::mem::replace(&mut self.state, State::Idle) {
                    State::Closing { .. } => Ok(Some(SessionEvent::Closed)),
                    State::Idle => Ok(None),
                    _ => Err(SessionError::ServerClosed),
                };
            }
            "rsp" => {}
            other => return Err(SessionError::UnexpectedCommand(other.to_string())),
        }
        let rsp = parse_response(&frame.data)?;
        match self.state {
            State::Opening { txnr } if txnr == frame.txnr => {
                if !rsp.is_ok() {
                    return Err(SessionError::OpenRefused {
                        code: rsp.code,
                        text: rsp.text,
                    });
                }
                let offers = parse_offers(&rsp.data);
                let syslog = offers.iter().any(|(name, values)| {
                    name == "commands" && values.iter().any(|v| v == "syslog")
                });
                if !syslog {
                    return Err(SessionError::NoSyslog(
                        String::from_utf8_lossy(&rsp.data).replace('\n', " "),
                    ));
                }
                self.state = State::Open;
                return Ok(Some(SessionEvent::Opened));
            }
            State::Closing { txnr } if txnr == frame.txnr => {
                self.state = State::Idle;
                return Ok(Some(SessionEvent::Closed));
            }
            _ => {}
        }
        let Some(i) = self
            .window
            .iter()
            .position(|m| m.txnr == frame.txnr && m.txnr != 0 && !m.done)
        else {
            return Err(SessionError::UnknownTxnr(frame.txnr));
        };
        self.window[i].done = true;
        let seq = self.window[i].seq;
        while self.window.front().is_some_and(|m| m.done) {
            let m = self.window.pop_front().expect("front exists");
            self.done_through = Some(m.seq);
        }
        Ok(Some(if rsp.is_ok() {
            SessionEvent::Acked { seq }
        } else {
            SessionEvent::Refused {
                seq,
                code: rsp.code,
                text: rsp.text,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &[u8]) -> Frame {
        let (f, used) = parse_frame(text).unwrap().unwrap();
        assert_eq!(used, text.len());
        f
    }

    fn rsp(txnr: u32, data: &str) -> Frame {
        let mut out = Vec::new();
        write_frame(&mut out, txnr, "rsp", data.as_bytes());
        frame(&out)
    }

    #[test]
    fn frames_round_trip() {
        let mut out = Vec::new();
        write_frame(&mut out, 7, "syslog", b"<13>1 - - - - - - hi\nthere");
        write_frame(&mut out, 8, "close", b"");
        assert_eq!(out, b"7 syslog 26 <13>1 - - - - - - hi\nthere\n8 close 0\n");
        let mut r = FrameReader::new();
        // Byte by byte: a frame is only returned once complete.
        let mut frames = Vec::new();
        for b in &out {
            r.extend(&[*b]);
            while let Some(f) = r.next_frame().unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].data, b"<13>1 - - - - - - hi\nthere");
        assert_eq!(frames[1].command, "close");
        assert!(frames[1].data.is_empty());
    }

    #[test]
    fn bad_frames() {
        let bad = |b: &[u8]| parse_frame(b).unwrap_err();
        assert!(matches!(bad(b"x rsp 0\n"), FrameError::Syntax(_)));
        assert!(matches!(bad(b"1234567890 rsp 0\n"), FrameError::Syntax(_)));
        assert!(matches!(bad(b"1 r5p 0\n"), FrameError::Syntax(_)));
        assert!(matches!(bad(b"1 rsp 2 okX"), FrameError::Syntax(_)));
        assert!(matches!(bad(b"1 rsp 0 \n"), FrameError::Syntax(_)));
        assert!(matches!(bad(b"1 rsp 999999999 "), FrameError::TooLong(_)));
        assert_eq!(parse_frame(b"1 rsp 6 200 O").unwrap(), None);
        assert_eq!(parse_frame(b"").unwrap(), None);
    }

    #[test]
    fn responses() {
        let r = parse_response(b"200 OK\nrelp_version=0\ncommands=syslog").unwrap();
        assert!(r.is_ok());
        assert_eq!(r.text, "OK");
        assert_eq!(
            parse_offers(&r.data),
            [
                ("relp_version".to_string(), vec!["0".to_string()]),
                ("commands".to_string(), vec!["syslog".to_string()])
            ]
        );
        let r = parse_response(b"500 command disabled").unwrap();
        assert_eq!(
            (r.code, r.text.as_str(), r.is_ok()),
            (500, "command disabled", false)
        );
        assert!(parse_response(b"").unwrap().is_ok());
        assert!(parse_response(b"20").is_err());
        assert!(parse_response(b"200OK").is_err());
    }

    fn opened(window: usize) -> RelpSession {
        let mut s = RelpSession::new(window);
        let mut out = Vec::new();
        s.open(&mut out);
        assert!(out.starts_with(b"1 open "));
        assert!(String::from_utf8_lossy(&out).contains("relp_version=0\n"));
        let ev = s
            .on_frame(&rsp(1, "200 OK\nrelp_version=0\ncommands=syslog"))
            .unwrap();
        assert_eq!(ev, Some(SessionEvent::Opened));
        s
    }

    #[test]
    fn window_and_acks_in_any_order() {
        let mut s = opened(3);
        let mut out = Vec::new();
        for seq in [10, 11, 12] {
            assert!(s.has_room());
            s.send(seq, Bytes::from(format!("m{seq}")), &mut out);
        }
        assert!(!s.has_room());
        assert_eq!(out, b"2 syslog 3 m10\n3 syslog 3 m11\n4 syslog 3 m12\n");
        // An answer to the second first: nothing is done through yet ...
        assert_eq!(
            s.on_frame(&frame(b"3 rsp 6 200 OK\n")).unwrap(),
            Some(SessionEvent::Acked { seq: 11 })
        );
        assert_eq!(s.done_through(), None);
        assert!(!s.has_room());
        // ... a refusal of the first is done too.
        assert_eq!(
            s.on_frame(&rsp(2, "500 queue full")).unwrap(),
            Some(SessionEvent::Refused {
                seq: 10,
                code: 500,
                text: "queue full".into()
            })
        );
        assert_eq!(s.done_through(), Some(11));
        assert!(s.has_room());
        assert_eq!(s.unanswered(), 1);
        assert!(matches!(
            s.on_frame(&frame(b"3 rsp 6 200 OK\n")),
            Err(SessionError::UnknownTxnr(3))
        ));
    }

    #[test]
    fn unanswered_messages_are_resent_after_reconnect() {
        let mut s = opened(10);
        let mut out = Vec::new();
        for seq in 1..=4 {
            s.send(seq, Bytes::from(format!("m{seq}")), &mut out);
        }
        s.on_frame(&frame(b"2 rsp 6 200 OK\n")).unwrap();
        s.on_frame(&frame(b"4 rsp 6 200 OK\n")).unwrap();
        assert_eq!(s.done_through(), Some(1));
        s.connection_lost();
        assert!(!s.has_room());

        let mut out = Vec::new();
        s.open(&mut out);
        assert!(out.starts_with(b"1 open "));
        s.on_frame(&rsp(1, "200 OK\ncommands=syslog")).unwrap();
        let mut out = Vec::new();
        // m2 and m4 are unanswered; m3 was answered but waits behind m2.
        assert_eq!(s.resend(&mut out), 2);
        assert_eq!(out, b"2 syslog 2 m2\n3 syslog 2 m4\n");
        s.on_frame(&frame(b"2 rsp 6 200 OK\n")).unwrap();
        assert_eq!(s.done_through(), Some(3));
        s.on_frame(&frame(b"3 rsp 6 200 OK\n")).unwrap();
        assert_eq!(s.done_through(), Some(4));
        assert_eq!(s.unanswered(), 0);
    }

    #[test]
    fn session_refusals() {
        let mut s = RelpSession::new(4);
        let mut out = Vec::new();
        s.open(&mut out);
        assert!(matches!(
            s.on_frame(&frame(b"1 rsp 20 500 command disabled\n")),
            Err(SessionError::OpenRefused { code: 500, .. })
        ));
        s.open(&mut out);
        assert!(matches!(
            s.on_frame(&rsp(1, "200 OK\ncommands=")),
            Err(SessionError::NoSyslog(_))
        ));
        let mut s = opened(4);
        assert_eq!(
            s.on_frame(&frame(b"0 serverclose 0\n")),
            Err(SessionError::ServerClosed)
        );
        assert!(!s.is_open());
        let mut s = opened(4);
        let mut out = Vec::new();
        s.close(&mut out);
        assert_eq!(out, b"2 close 0\n");
        assert_eq!(
            s.on_frame(&frame(b"2 rsp 0\n")).unwrap(),
            Some(SessionEvent::Closed)
        );
        // The hint that librelp sends after its answer to close.
        assert_eq!(s.on_frame(&frame(b"0 serverclose 0\n")).unwrap(), None);
    }

    #[test]
    fn txnrs_wrap() {
        let mut s = opened(2);
        s.next_txnr = MAX_TXNR;
        let mut out = Vec::new();
        s.send(1, Bytes::from_static(b"a"), &mut out);
        s.send(2, Bytes::from_static(b"b"), &mut out);
        assert_eq!(out, b"999999999 syslog 1 a\n1 syslog 1 b\n");
    }
}
