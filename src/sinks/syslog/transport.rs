//! Sending formatted syslog messages: plain TCP with octet counting, UDP,
//! and RELP. Each client takes a batch of `(seq, message)` pairs in seq
//! order and answers with a [`SyslogAck`]: the highest seq the forwarder's
//! cursor may move to. `send_batch` answers once the whole batch is done;
//! `send_some` (TCP, RELP) as soon as more of it is done than before, so
//! that the forwarder's cursor follows the acknowledgements.
//!
//! # Idempotent by seq
//!
//! A client remembers the highest seq it has taken. Sending a batch again
//! (what a forwarder does after an error) skips the messages the client
//! already has, so a retry never sends a message twice through the
//! client's own fault; RELP re-sends its unanswered window itself after
//! reconnecting. A new client (after a restart of ringtail) starts from
//! whatever it is given.
//!
//! # What each transport promises
//!
//! - **RELP**: a message is done when rsyslog answered it (`200`, or a
//!   refusal counted in [`SyslogAck::refused`]). Nothing is lost on the
//!   way; after a broken connection the unanswered window is sent again,
//!   so up to a window of messages may arrive twice. (rsyslog answers once
//!   a message is in its queue; whether the queue survives a crash of
//!   rsyslog is its configuration: a `Direct` or disk queue does.)
//! - **TCP** (RFC 6587 octet counting, `LEN SP MSG`): nothing tells the
//!   sender that the receiver *processed* a message. What sat in the
//!   kernel's send buffer when the receiver died is lost silently, which
//!   is plain TCP syslog's known weakness. The client narrows that window:
//!   with [`TcpOptions::drain_timeout`] set it acknowledges a message only
//!   once the receiver's kernel acknowledged its last byte (the socket's
//!   unacknowledged send queue, read from `/proc/net/tcp`, has drained past
//!   it); TCP keepalive and `TCP_USER_TIMEOUT` make a dead peer an error
//!   within [`TcpOptions::user_timeout`] instead of after the kernel's
//!   15 minutes of retransmissions. What remains is what the receiver's
//!   kernel had acknowledged and the receiving process had not yet
//!   written when it died: its socket's receive buffer (Linux sizes it up
//!   to several MB; against rsyslog on loopback, killed while stalled,
//!   1.7-1.8 MB were unread, about 17,000 messages of 110 bytes) plus what
//!   the process had read into its own buffer (rsyslog's imtcp reads up to
//!   128 KiB at a time). Everything after that is sent again.
//! - **UDP**: one message per datagram, no acknowledgement at all; a
//!   datagram larger than [`UdpOptions::max_datagram`] is cut (counted).
//!
//! Why `/proc/net/tcp` for the send queue: the direct way is the
//! `SIOCOUTQ` ioctl, which needs `unsafe` (no safe wrapper exists in
//! rustix, nix or socket2), and ringtail keeps `unsafe` inside `ring/`. The
//! proc file gives the same number (`tx_queue` = bytes written but not
//! acknowledged by the peer) for the socket's inode, at the cost of a read
//! of the table per poll.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::relp::{FrameReader, RelpSession, SessionError, SessionEvent, DEFAULT_WINDOW};

/// A message the server refused for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub seq: u64,
    pub code: u16,
    pub text: String,
}

/// What a batch achieved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyslogAck {
    /// Every message up to this seq is done (`None`: nothing yet).
    pub done_through: Option<u64>,
    /// Messages refused for good (RELP `500`), included in `done_through`.
    pub refused: Vec<Refusal>,
    /// Messages cut to fit a datagram (UDP).
    pub truncated: u64,
}

/// Why a batch did not complete. `done_through` says what did.
#[derive(Debug, thiserror::Error)]
#[error("{problem} (done through seq {done_through:?})")]
pub struct SyslogError {
    /// Messages done before the failure; the cursor may move this far.
    pub done_through: Option<u64>,
    pub problem: SyslogProblem,
}

#[derive(Debug, thiserror::Error)]
pub enum SyslogProblem {
    #[error("cannot connect to the syslog server {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("the connection to the syslog server {addr} failed: {source}")]
    Io { addr: String, source: io::Error },
    #[error("the syslog server {addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("the syslog server {addr} closed the connection")]
    Closed { addr: String },
    #[error("RELP with {addr}: {source}")]
    Relp { addr: String, source: SessionError },
}

/// Appends an RFC 6587 octet-counted frame: `LEN SP MSG`.
pub fn write_octet_counted(out: &mut Vec<u8>, msg: &[u8]) {
    out.extend_from_slice(itoa::Buffer::new().format(msg.len()).as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg);
}

/// The part of a batch not taken yet: messages after `taken`.
fn new_part(msgs: &[(u64, Bytes)], taken: Option<u64>) -> &[(u64, Bytes)] {
    let skip = match taken {
        Some(t) => msgs.partition_point(|(seq, _)| *seq <= t),
        None => 0,
    };
    &msgs[skip..]
}

async fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, SyslogProblem> {
    let connect_err = |source| SyslogProblem::Connect {
        addr: addr.to_string(),
        source,
    };
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            connect_err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {timeout:?}"),
            ))
        })?
        .map_err(connect_err)?;
    stream.set_nodelay(true).map_err(connect_err)?;
    Ok(stream)
}

/// Keepalive and `TCP_USER_TIMEOUT`, so a dead peer turns into an error.
fn set_liveness(stream: &TcpStream, user_timeout: Duration) -> io::Result<()> {
    use rustix::net::sockopt;
    let fd = stream.as_fd();
    sockopt::set_socket_keepalive(fd, true)?;
    let idle = (user_timeout / 3).max(Duration::from_secs(1));
    sockopt::set_tcp_keepidle(fd, idle)?;
    sockopt::set_tcp_keepintvl(fd, idle)?;
    sockopt::set_tcp_keepcnt(fd, 3)?;
    let ms = u32::try_from(user_timeout.as_millis()).unwrap_or(u32::MAX);
    sockopt::set_tcp_user_timeout(fd, ms)?;
    Ok(())
}

/// Bytes written to `stream` and not yet acknowledged by the peer's
/// kernel; `None` when the socket is no longer in the table (closed).
pub fn unacknowledged_bytes(stream: &TcpStream) -> io::Result<Option<u64>> {
    let inode = rustix::fs::fstat(stream.as_fd())?.st_ino;
    let inode = inode.to_string();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(9) != Some(&inode.as_str()) {
                continue;
            }
            let tx = fields
                .get(4)
                .and_then(|q| q.split(':').next())
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                .ok_or_else(|| io::Error::other(format!("unreadable line in {table}: {line}")))?;
            return Ok(Some(tx));
        }
    }
    Ok(None)
}

/// Plain TCP settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    pub connect_timeout: Duration,
    /// `TCP_USER_TIMEOUT`, and keepalive probes at a third of it: a peer
    /// that stops acknowledging is an error after this long.
    pub user_timeout: Duration,
    /// Wait up to this long for the peer's kernel to acknowledge a batch
    /// before acknowledging it (`None`: acknowledge once written).
    pub drain_timeout: Option<Duration>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            connect_timeout: Duration::from_secs(5),
            user_timeout: Duration::from_secs(30),
            drain_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// RFC 5424 over TCP with octet counting.
#[derive(Debug)]
pub struct TcpSyslogClient {
    addr: String,
    options: TcpOptions,
    stream: Option<TcpStream>,
    /// Bytes written on the current connection.
    written: u64,
    /// `(end offset on the connection, seq)` of messages written and not
    /// yet acknowledged by the peer's kernel.
    in_flight: VecDeque<(u64, u64)>,
    /// The highest seq taken (written on some connection).
    taken: Option<u64>,
    done_through: Option<u64>,
}

impl TcpSyslogClient {
    /// `addr` is `host:port`.
    pub fn new(addr: impl Into<String>, options: TcpOptions) -> TcpSyslogClient {
        TcpSyslogClient {
            addr: addr.into(),
            options,
            stream: None,
            written: 0,
            in_flight: VecDeque::new(),
            taken: None,
            done_through: None,
        }
    }

    fn fail(&mut self, problem: SyslogProblem) -> SyslogError {
        // What was written and not acknowledged is in doubt; the forwarder
        // sends it again on the next connection.
        self.stream = None;
        self.in_flight.clear();
        self.taken = self.done_through;
        SyslogError {
            done_through: self.done_through,
            problem,
        }
    }

    fn io_problem(&self, source: io::Error) -> SyslogProblem {
        SyslogProblem::Io {
            addr: self.addr.clone(),
            source,
        }
    }

    /// Sends a batch and waits until all of it is done; see the module doc
    /// for what the answer means.
    pub async fn send_batch(&mut self, msgs: &[(u64, Bytes)]) -> Result<SyslogAck, SyslogError> {
        self.send(msgs, true).await
    }

    /// Sends what of `msgs` it has not taken yet and returns as soon as
    /// more of it is done than before the call (or all of it is), so that
    /// a forwarder's cursor follows the peer's acknowledgements.
    pub async fn send_some(&mut self, msgs: &[(u64, Bytes)]) -> Result<SyslogAck, SyslogError> {
        self.send(msgs, false).await
    }

    /// The highest seq written on the current connection (or done): a
    /// message at or before it need not be given again.
    pub fn taken(&self) -> Option<u64> {
        self.taken
    }

    async fn send(&mut self, msgs: &[(u64, Bytes)], all: bool) -> Result<SyslogAck, SyslogError> {
        if self.stream.is_none() {
            let stream = match connect(&self.addr, self.options.connect_timeout).await {
                Ok(s) => s,
                Err(p) => return Err(self.fail(p)),
            };
            if let Err(e) = set_liveness(&stream, self.options.user_timeout) {
                let p = self.io_problem(e);
                return Err(self.fail(p));
            }
            self.stream = Some(stream);
            self.written = 0;
        }
        let todo = new_part(msgs, self.taken);
        let mut buf = Vec::with_capacity(todo.iter().map(|(_, m)| m.len() + 8).sum());
        for (seq, msg) in todo {
            write_octet_counted(&mut buf, msg);
            self.in_flight
                .push_back((self.written + buf.len() as u64, *seq));
        }
        if let Some((seq, _)) = todo.last() {
            self.taken = Some(*seq);
        }
        let stream = self.stream.as_mut().expect("connected above");
        if let Err(e) = stream.write_all(&buf).await {
            let p = self.io_problem(e);
            return Err(self.fail(p));
        }
        self.written += buf.len() as u64;

        match self.options.drain_timeout {
            None => {
                if let Some((_, seq)) = self.in_flight.back() {
                    self.done_through = Some(*seq);
                }
                self.in_flight.clear();
            }
            Some(limit) => {
                if let Err(p) = self.wait_for_peer(limit, all).await {
                    return Err(self.fail(p));
                }
            }
        }
        Ok(SyslogAck {
            done_through: self.done_through,
            ..SyslogAck::default()
        })
    }

    /// Polls the send queue until the peer acknowledged everything written
    /// (`all`), or at least one more message.
    async fn wait_for_peer(&mut self, limit: Duration, all: bool) -> Result<(), SyslogProblem> {
        let start = self.done_through;
        let deadline = tokio::time::Instant::now() + limit;
        let mut pause = Duration::from_micros(200);
        loop {
            let stream = self.stream.as_ref().expect("connected");
            // A receiver that closed or reset the connection shows up as
            // a readable end of stream or an error.
            let mut probe = [0u8; 1];
            match stream.try_read(&mut probe) {
                Ok(0) => {
                    return Err(SyslogProblem::Closed {
                        addr: self.addr.clone(),
                    })
                }
                Ok(_) => {} // a syslog receiver sends nothing; ignore it
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(self.io_problem(e)),
            }
            let unacked = match unacknowledged_bytes(stream) {
                Ok(Some(n)) => n,
                Ok(None) => {
                    return Err(SyslogProblem::Closed {
                        addr: self.addr.clone(),
                    })
                }
                Err(e) => return Err(self.io_problem(e)),
            };
            let acked = self.written.saturating_sub(unacked);
            while let Some(&(end, seq)) = self.in_flight.front() {
                if end > acked {
                    break;
                }
                self.in_flight.pop_front();
                self.done_through = Some(seq);
            }
            if self.in_flight.is_empty() || (!all && self.done_through != start) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SyslogProblem::Timeout {
                    addr: self.addr.clone(),
                    timeout: limit,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Closes the connection (messages in flight stay unacknowledged).
    pub async fn close(&mut self) {
        if let Some(mut s) = self.stream.take() {
            let _ = s.shutdown().await;
        }
    }
}

/// UDP settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpOptions {
    /// Datagrams are cut to this many bytes. RFC 5426 asks receivers to
    /// take 480 bytes and should take 2048; rsyslog takes 8 KiB by
    /// default; IPv4 carries at most 65,507. Default 8192.
    pub max_datagram: usize,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions { max_datagram: 8192 }
    }
}

/// RFC 5424 over UDP (RFC 5426): fire and forget.
#[derive(Debug)]
pub struct UdpSyslogClient {
    addr: String,
    options: UdpOptions,
    socket: Option<UdpSocket>,
    taken: Option<u64>,
}

impl UdpSyslogClient {
    pub fn new(addr: impl Into<String>, options: UdpOptions) -> UdpSyslogClient {
        UdpSyslogClient {
            addr: addr.into(),
            options: UdpOptions {
                max_datagram: options.max_datagram.clamp(480, 65_507),
            },
            socket: None,
            taken: None,
        }
    }

    /// The highest seq sent.
    pub fn taken(&self) -> Option<u64> {
        self.taken
    }

    /// Sends what of `msgs` it has not sent yet; a message is done once
    /// sent.
    pub async fn send_batch(&mut self, msgs: &[(u64, Bytes)]) -> Result<SyslogAck, SyslogError> {
        let fail = |done_through, problem| SyslogError {
            done_through,
            problem,
        };
        if self.socket.is_none() {
            let bind = if self.addr.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let socket = UdpSocket::bind(bind).await.map_err(|source| {
                fail(
                    self.taken,
                    SyslogProblem::Connect {
                        addr: self.addr.clone(),
                        source,
                    },
                )
            })?;
            socket.connect(&self.addr).await.map_err(|source| {
                fail(
                    self.taken,
                    SyslogProblem::Connect {
                        addr: self.addr.clone(),
                        source,
                    },
                )
            })?;
            self.socket = Some(socket);
        }
        let socket = self.socket.as_ref().expect("bound above");
        let mut truncated = 0;
        for (seq, msg) in new_part(msgs, self.taken) {
            let datagram = if msg.len() > self.options.max_datagram {
                truncated += 1;
                &msg[..self.options.max_datagram]
            } else {
                &msg[..]
            };
            if let Err(source) = socket.send(datagram).await {
                // ECONNREFUSED from an earlier datagram's ICMP error: the
                // receiver is down; the forwarder retries from here.
                self.socket = None;
                return Err(fail(
                    self.taken,
                    SyslogProblem::Io {
                        addr: self.addr.clone(),
                        source,
                    },
                ));
            }
            self.taken = Some(*seq);
        }
        Ok(SyslogAck {
            done_through: self.taken,
            refused: Vec::new(),
            truncated,
        })
    }
}

/// RELP settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelpOptions {
    /// Unanswered messages at most (librelp's default: 128).
    pub window: usize,
    pub connect_timeout: Duration,
    /// The server must answer something within this while messages are
    /// outstanding, else the connection counts as dead.
    pub answer_timeout: Duration,
    pub user_timeout: Duration,
}

impl Default for RelpOptions {
    fn default() -> Self {
        RelpOptions {
            window: DEFAULT_WINDOW,
            connect_timeout: Duration::from_secs(5),
            answer_timeout: Duration::from_secs(30),
            user_timeout: Duration::from_secs(30),
        }
    }
}

/// A RELP client (see [`super::relp`] for the protocol and its window).
#[derive(Debug)]
pub struct RelpClient {
    addr: String,
    options: RelpOptions,
    session: RelpSession,
    conn: Option<(TcpStream, FrameReader)>,
    /// The highest seq handed to the session.
    taken: Option<u64>,
    refused: Vec<Refusal>,
    /// Messages sent again after reconnects, in total.
    resent: u64,
}

impl RelpClient {
    /// `addr` is `host:port`.
    pub fn new(addr: impl Into<String>, options: RelpOptions) -> RelpClient {
        RelpClient {
            addr: addr.into(),
            session: RelpSession::new(options.window),
            options,
            conn: None,
            taken: None,
            refused: Vec::new(),
            resent: 0,
        }
    }

    /// Messages re-sent after reconnects so far.
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// Messages in the window that the server has not answered.
    pub fn unanswered(&self) -> usize {
        self.session.unanswered()
    }

    fn fail(&mut self, problem: SyslogProblem) -> SyslogError {
        self.conn = None;
        self.session.connection_lost();
        SyslogError {
            done_through: self.session.done_through(),
            problem,
        }
    }

    fn io_problem(&self, source: io::Error) -> SyslogProblem {
        SyslogProblem::Io {
            addr: self.addr.clone(),
            source,
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SyslogProblem> {
        let (stream, _) = self.conn.as_mut().expect("connected");
        match stream.write_all(bytes).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.io_problem(e)),
        }
    }

    /// Reads until at least one frame arrived and feeds every complete
    /// frame to the session.
    async fn read_answers(&mut self) -> Result<Vec<SessionEvent>, SyslogProblem> {
        let timeout = self.options.answer_timeout;
        let mut events = Vec::new();
        loop {
            let (stream, reader) = self.conn.as_mut().expect("connected");
            loop {
                let frame = reader.next_frame().map_err(|e| SyslogProblem::Relp {
                    addr: self.addr.clone(),
                    source: e.into(),
                })?;
                let Some(frame) = frame else { break };
                match self.session.on_frame(&frame) {
                    Ok(Some(SessionEvent::Refused { seq, code, text })) => {
                        self.refused.push(Refusal { seq, code, text });
                        events.push(SessionEvent::Acked { seq });
                    }
                    Ok(Some(ev)) => events.push(ev),
                    Ok(None) => {}
                    Err(source) => {
                        return Err(SyslogProblem::Relp {
                            addr: self.addr.clone(),
                            source,
                        })
                    }
                }
            }
            if !events.is_empty() {
                return Ok(events);
            }
            let mut buf = [0u8; 16 * 1024];
            let n = match tokio::time::timeout(timeout, stream.read(&mut buf)).await {
                Err(_) => {
                    return Err(SyslogProblem::Timeout {
                        addr: self.addr.clone(),
                        timeout,
                    })
                }
                Ok(Err(e)) => return Err(self.io_problem(e)),
                Ok(Ok(0)) => {
                    return Err(SyslogProblem::Closed {
                        addr: self.addr.clone(),
                    })
                }
                Ok(Ok(n)) => n,
            };
            reader.extend(&buf[..n]);
        }
    }

    /// Connects, opens a session and re-sends the unanswered window.
    async fn ensure_open(&mut self) -> Result<(), SyslogProblem> {
        if self.conn.is_some() && self.session.is_open() {
            return Ok(());
        }
        let stream = connect(&self.addr, self.options.connect_timeout).await?;
        set_liveness(&stream, self.options.user_timeout).map_err(|e| self.io_problem(e))?;
        self.conn = Some((stream, FrameReader::new()));
        let mut out = Vec::new();
        self.session.open(&mut out);
        self.write(&out).await?;
        while !self.session.is_open() {
            self.read_answers().await?;
        }
        let mut out = Vec::new();
        let resent = self.session.resend(&mut out);
        if resent > 0 {
            self.resent += resent as u64;
            self.write(&out).await?;
        }
        Ok(())
    }

    /// Sends a batch and waits until every message in it is answered.
    pub async fn send_batch(&mut self, msgs: &[(u64, Bytes)]) -> Result<SyslogAck, SyslogError> {
        self.send(msgs, true).await
    }

    /// Sends what of `msgs` it has not taken yet, as far as the window
    /// allows, and returns as soon as the server's answers make more
    /// messages done than before the call (or every message taken is
    /// done). The rest of the window stays in flight; the next call
    /// refills it.
    pub async fn send_some(&mut self, msgs: &[(u64, Bytes)]) -> Result<SyslogAck, SyslogError> {
        self.send(msgs, false).await
    }

    /// The highest seq handed to the session: a message at or before it
    /// need not be given again (the window re-sends what is unanswered).
    pub fn taken(&self) -> Option<u64> {
        self.taken
    }

    async fn send(&mut self, msgs: &[(u64, Bytes)], all: bool) -> Result<SyslogAck, SyslogError> {
        if let Err(p) = self.ensure_open().await {
            return Err(self.fail(p));
        }
        let start = self.session.done_through();
        let todo = new_part(msgs, self.taken);
        let mut next = 0;
        loop {
            let mut out = Vec::new();
            while next < todo.len() && self.session.has_room() {
                let (seq, msg) = &todo[next];
                self.session.send(*seq, msg.clone(), &mut out);
                self.taken = Some(*seq);
                next += 1;
            }
            if !out.is_empty() {
                if let Err(p) = self.write(&out).await {
                    return Err(self.fail(p));
                }
            }
            if next == todo.len() && self.session.unanswered() == 0 {
                break;
            }
            if let Err(p) = self.read_answers().await {
                return Err(self.fail(p));
            }
            // Return before refilling the window: while the forwarder
            // writes its cursor, nothing is in flight beyond the window
            // that the last written cursor allowed, so a crash then re-sends
            // at most one window.
            if !all && self.session.done_through() != start {
                break;
            }
        }
        Ok(SyslogAck {
            done_through: self.session.done_through(),
            refused: std::mem::take(&mut self.refused),
            truncated: 0,
        })
    }

    /// Ends the session politely (`close`, then waits for its answer).
    pub async fn close(&mut self) -> Result<(), SyslogError> {
        if self.conn.is_none() || !self.session.is_open() {
            self.conn = None;
            return Ok(());
        }
        let mut out = Vec::new();
        self.session.close(&mut out);
        if let Err(p) = self.write(&out).await {
            return Err(self.fail(p));
        }
        loop {
            match self.read_answers().await {
                Ok(events) if events.contains(&SessionEvent::Closed) => break,
                Ok(_) => {}
                Err(p) => return Err(self.fail(p)),
            }
        }
        self.conn = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octet_counting() {
        let mut out = Vec::new();
        write_octet_counted(&mut out, b"<13>1 - - - - - - hi");
        write_octet_counted(&mut out, "é\n".as_bytes());
        assert_eq!(out, "20 <13>1 - - - - - - hi3 é\n".as_bytes());
    }

    #[test]
    fn new_part_skips_what_was_taken() {
        let m = |s: u64| (s, Bytes::new());
        let msgs = [m(3), m(5), m(9)];
        assert_eq!(new_part(&msgs, None).len(), 3);
        assert_eq!(new_part(&msgs, Some(5))[0].0, 9);
        assert!(new_part(&msgs, Some(9)).is_empty());
        assert_eq!(new_part(&msgs, Some(1)).len(), 3);
    }

    #[tokio::test]
    async fn tcp_acknowledges_once_the_peer_has_the_bytes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.unwrap();
            all
        });
        let mut client = TcpSyslogClient::new(addr, TcpOptions::default());
        let batch: Vec<(u64, Bytes)> = (1..=100)
            .map(|i| (i, Bytes::from(format!("<13>1 - - - - - m{i}"))))
            .collect();
        let ack = client.send_batch(&batch).await.unwrap();
        assert_eq!(ack.done_through, Some(100));
        // The same batch again sends nothing twice.
        let ack = client.send_batch(&batch).await.unwrap();
        assert_eq!(ack.done_through, Some(100));
        client.close().await;
        let all = reader.await.unwrap();
        let mut expected = Vec::new();
        for (_, m) in &batch {
            write_octet_counted(&mut expected, m);
        }
        assert_eq!(all, expected);
    }

    #[tokio::test]
    async fn tcp_to_nobody_is_an_error_that_acknowledges_nothing() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        let mut client = TcpSyslogClient::new(addr, TcpOptions::default());
        let err = client
            .send_batch(&[(1, Bytes::from_static(b"x"))])
            .await
            .unwrap_err();
        assert!(
            matches!(err.problem, SyslogProblem::Connect { .. }),
            "{err}"
        );
        assert_eq!(err.done_through, None);
    }

    #[tokio::test]
    async fn udp_datagrams_are_cut_and_counted() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap().to_string();
        let mut client = UdpSyslogClient::new(addr, UdpOptions { max_datagram: 500 });
        let big = Bytes::from(vec![b'a'; 600]);
        let ack = client
            .send_batch(&[(1, Bytes::from_static(b"small")), (2, big)])
            .await
            .unwrap();
        assert_eq!((ack.done_through, ack.truncated), (Some(2), 1));
        let mut buf = [0u8; 2048];
        assert_eq!(server.recv(&mut buf).await.unwrap(), 5);
        assert_eq!(server.recv(&mut buf).await.unwrap(), 500);
    }
}
