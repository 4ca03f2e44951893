//! A RELP server the test holds by the hand: it opens sessions as librelp
//! does, records every `syslog` message in arrival order (with the
//! connection it came on), and answers `200 OK` only as far as an
//! acknowledgement budget allows. A test can so hold a forwarder in the
//! middle of a batch with an exact number of messages answered, which
//! rsyslog cannot be made to do on cue.
//!
//! Frames are read and written with ringtail's own RELP frame code; what
//! this fake adds is the server's side of the session.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use ringtail::sinks::syslog::relp::{write_frame, FrameReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the fake saw and did.
#[derive(Debug, Default)]
pub struct RelpState {
    /// Every message received, in order: (connection number from 1, text).
    pub received: Vec<(u32, String)>,
    /// Messages answered `200 OK`, in order.
    pub acked: Vec<String>,
    /// How many more messages may be answered; `None`: every one.
    pub budget: Option<u64>,
    /// Connections accepted.
    pub connections: u32,
}

/// A running fake.
pub struct FakeRelp {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    state: Arc<Mutex<RelpState>>,
    /// Bumped whenever the budget changes, to wake connections that wait.
    changed: watch::Sender<u64>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeRelp {
    /// Starts on a free loopback port, answering every message.
    pub async fn start() -> FakeRelp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(RelpState::default()));
        let (changed, _) = watch::channel(0u64);
        let (st, ch) = (state.clone(), changed.clone());
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let number = {
                    let mut s = st.lock().unwrap();
                    s.connections += 1;
                    s.connections
                };
                tokio::spawn(serve(number, stream, st.clone(), ch.subscribe()));
            }
        });
        FakeRelp {
            addr,
            state,
            changed,
            server,
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, RelpState> {
        self.state.lock().unwrap()
    }

    /// From now on answer at most `budget` more messages (`None`: all).
    pub fn set_budget(&self, budget: Option<u64>) {
        self.state().budget = budget;
        self.changed.send_modify(|n| *n += 1);
    }
}

impl Drop for FakeRelp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One connection: answers `open` and `close`, records messages, answers
/// them within the budget, in order.
async fn serve(
    number: u32,
    mut stream: TcpStream,
    state: Arc<Mutex<RelpState>>,
    mut changed: watch::Receiver<u64>,
) {
    let mut reader = FrameReader::new();
    // Messages received and not answered yet: (txnr, text).
    let mut waiting: VecDeque<(u32, String)> = VecDeque::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut out = Vec::new();
        {
            let mut s = state.lock().unwrap();
            while !waiting.is_empty() && s.budget != Some(0) {
                let (txnr, text) = waiting.pop_front().unwrap();
                if let Some(b) = &mut s.budget {
                    *b -= 1;
                }
                s.acked.push(text);
                write_frame(&mut out, txnr, "rsp", b"200 OK");
            }
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
        tokio::select! {
            read = stream.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                reader.extend(&buf[..n]);
                let mut out = Vec::new();
                while let Ok(Some(frame)) = reader.next_frame() {
                    match frame.command.as_str() {
                        "open" => write_frame(
                            &mut out,
                            frame.txnr,
                            "rsp",
                            b"200 OK\nrelp_version=0\nrelp_software=fake\ncommands=syslog",
                        ),
                        "syslog" => {
                            let text = String::from_utf8_lossy(&frame.data).into_owned();
                            state.lock().unwrap().received.push((number, text.clone()));
                            waiting.push_back((frame.txnr, text));
                        }
                        "close" => {
                            write_frame(&mut out, frame.txnr, "rsp", b"");
                            write_frame(&mut out, 0, "serverclose", b"");
                            let _ = stream.write_all(&out).await;
                            return;
                        }
                        _ => {}
                    }
                }
                if !out.is_empty() && stream.write_all(&out).await.is_err() {
                    return;
                }
            }
            gone = changed.changed() => {
                if gone.is_err() {
                    return;
                }
            }
        }
    }
}
