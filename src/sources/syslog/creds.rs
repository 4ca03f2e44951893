//! Receiving a `/dev/log` datagram with the sender's credentials.
//!
//! With `SO_PASSCRED` set on a unix datagram socket the kernel attaches an
//! `SCM_CREDENTIALS` message to every datagram: the sender's pid, uid and
//! gid as the kernel knows them (a sender may only claim its own unless it
//! has CAP_SYS_ADMIN / CAP_SETUID / CAP_SETGID), so they can be trusted
//! labels where nothing in the message can. This uses rustix's safe
//! `recvmsg` with a `RecvAncillaryBuffer` sized by `cmsg_space!`: no
//! `unsafe` here.
//!
//! Batched receives: rustix 1.1 has no `recvmmsg` (it is listed among its
//! not-implemented calls); nix 0.29 has `nix::sys::socket::recvmmsg`,
//! used by [`recv_batch_with_creds`] and, for UDP, [`recv_batch_from`].

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use rustix::net::{
    recvmsg, sockopt, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
};

/// Who sent a datagram, as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// One datagram received into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes stored in the buffer.
    pub len: usize,
    /// The datagram was longer than the buffer and was cut (the rest is
    /// lost, as for any datagram socket).
    pub truncated: bool,
    /// `None` when `SO_PASSCRED` is off.
    pub credentials: Option<Credentials>,
}

/// Turns on `SO_PASSCRED`, so every datagram carries its sender's
/// credentials.
pub fn enable_passcred(socket: impl AsFd) -> io::Result<()> {
    sockopt::set_socket_passcred(socket, true)?;
    Ok(())
}

/// Receives one datagram with `recvmsg(2)`. On a nonblocking socket an
/// empty queue is `ErrorKind::WouldBlock`, as from `recv`.
pub fn recv_with_creds(socket: impl AsFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg(socket, &mut iov, &mut control, RecvFlags::empty())?;
    let mut credentials = None;
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmCredentials(c) = m {
            credentials = Some(Credentials {
                pid: c.pid.as_raw_nonzero().get(),
                uid: c.uid.as_raw(),
                gid: c.gid.as_raw(),
            });
        }
    }
    Ok(Received {
        len: msg.bytes.min(iov[0].len()),
        truncated: msg.flags.contains(ReturnFlags::TRUNC),
        credentials,
    })
}

/// Receives up to `bufs.len()` datagrams in one `recvmmsg(2)` call,
/// without waiting (`MSG_DONTWAIT`): one [`Received`] per datagram in
/// `out` (cleared first), the datagram in the buffer of the same index.
/// An empty queue is `ErrorKind::WouldBlock`.
pub fn recv_batch_with_creds(
    socket: impl AsFd,
    bufs: &mut [Vec<u8>],
    out: &mut Vec<Received>,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{recvmmsg, ControlMessageOwned, MsgFlags, MultiHeaders};

    out.clear();
    let mut headers =
        MultiHeaders::<()>::preallocate(bufs.len(), Some(nix::cmsg_space!(libc::ucred)));
    let mut iovs: Vec<[io::IoSliceMut<'_>; 1]> =
        bufs.iter_mut().map(|b| [io::IoSliceMut::new(b)]).collect();
    let results = recvmmsg(
        socket.as_fd().as_raw_fd(),
        &mut headers,
        iovs.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )?;
    for msg in results {
        let mut credentials = None;
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmCredentials(c) = cmsg {
                credentials = Some(Credentials {
                    pid: c.pid(),
                    uid: c.uid(),
                    gid: c.gid(),
                });
            }
        }
        out.push(Received {
            len: msg.bytes,
            truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
            credentials,
        });
    }
    Ok(())
}

/// Receives up to `bufs.len()` UDP datagrams in one `recvmmsg(2)` call,
/// without waiting: one `(length, truncated, peer)` per datagram in `out`
/// (cleared first), the datagram in the buffer of the same index. An
/// empty queue is `ErrorKind::WouldBlock`.
pub fn recv_batch_from(
    socket: impl AsFd,
    bufs: &mut [Vec<u8>],
    out: &mut Vec<(usize, bool, Option<std::net::SocketAddr>)>,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};

    out.clear();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(bufs.len(), None);
    let mut iovs: Vec<[io::IoSliceMut<'_>; 1]> =
        bufs.iter_mut().map(|b| [io::IoSliceMut::new(b)]).collect();
    let results = recvmmsg(
        socket.as_fd().as_raw_fd(),
        &mut headers,
        iovs.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )?;
    for msg in results {
        let peer = msg.address.and_then(|a: SockaddrStorage| {
            match (a.as_sockaddr_in(), a.as_sockaddr_in6()) {
                (Some(v4), _) => Some(std::net::SocketAddr::V4((*v4).into())),
                (None, Some(v6)) => Some(std::net::SocketAddr::V6((*v6).into())),
                (None, None) => None,
            }
        });
        out.push((msg.bytes, msg.flags.contains(MsgFlags::MSG_TRUNC), peer));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;
    use std::process::Command;

    use super::*;

    #[test]
    fn credentials_of_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let rx = UnixDatagram::bind(&path).unwrap();
        enable_passcred(&rx).unwrap();
        let tx = UnixDatagram::unbound().unwrap();
        tx.send_to(b"<13>me: hi", &path).unwrap();
        let mut buf = [0u8; 64];
        let got = recv_with_creds(&rx, &mut buf).unwrap();
        assert_eq!(&buf[..got.len], b"<13>me: hi");
        assert!(!got.truncated);
        assert_eq!(
            got.credentials,
            Some(Credentials {
                pid: std::process::id() as i32,
                uid: rustix::process::getuid().as_raw(),
                gid: rustix::process::getgid().as_raw(),
            })
        );
    }

    #[test]
    fn credentials_of_a_real_logger_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let rx = UnixDatagram::bind(&path).unwrap();
        enable_passcred(&rx).unwrap();
        let child = Command::new("logger")
            .arg("-u")
            .arg(&path)
            .args(["-t", "credtest", "a message longer than sixteen bytes"])
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("logger(1) not installed; skipped");
            return;
        };
        let pid = child.id() as i32;
        let mut buf = [0u8; 16];
        let got = recv_with_creds(&rx, &mut buf).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(got.len, 16);
        assert!(got.truncated);
        assert_eq!(got.credentials.map(|c| c.pid), Some(pid));
    }

    #[test]
    fn batches_with_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let rx = UnixDatagram::bind(&path).unwrap();
        enable_passcred(&rx).unwrap();
        let tx = UnixDatagram::unbound().unwrap();
        for m in [&b"<13>a: 1"[..], b"<13>a: 22", b"<13>a: 333"] {
            tx.send_to(m, &path).unwrap();
        }
        let mut bufs = vec![vec![0u8; 9]; 8];
        let mut got = Vec::new();
        recv_batch_with_creds(&rx, &mut bufs, &mut got).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(&bufs[0][..got[0].len], b"<13>a: 1");
        assert_eq!(&bufs[1][..got[1].len], b"<13>a: 22");
        assert!(!got[1].truncated);
        assert!(got[2].truncated, "10 bytes into 9");
        let me = std::process::id() as i32;
        assert!(got.iter().all(|r| r.credentials.map(|c| c.pid) == Some(me)));
        let err = recv_batch_with_creds(&rx, &mut bufs, &mut got).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn without_passcred_there_are_none_and_empty_is_would_block() {
        let (a, b) = UnixDatagram::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 8];
        let err = recv_with_creds(&b, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        a.send(b"x").unwrap();
        let got = recv_with_creds(&b, &mut buf).unwrap();
        assert_eq!((got.len, got.credentials), (1, None));
    }
}
