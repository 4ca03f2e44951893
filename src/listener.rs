//! Where the daemon's sockets come from: a [`Listener`] names a socket and
//! says how to get it, and [`bind_all`] gets every one of them, once, before
//! anything runs (and, with `-daemonize`, before the daemon goes to the
//! background, so that errors reach the caller).
//!
//! Each listener has a *name* (`log`, `query`, `http`, `syslog`, ...). A
//! socket is taken from, in this order:
//! 1. the parent of `-daemonize`, which hands every socket it bound to the
//!    background daemon by name ([`Handover`]);
//! 2. systemd socket activation: the fd whose `FileDescriptorName=` (in
//!    `LISTEN_FDNAMES`) is the listener's name. Units written for memlogd
//!    name none: an fd whose name matches no listener is then matched by
//!    type to `log` (datagram) or `query` (stream), as before names
//!    existed;
//! 3. an inherited fd given on the command line (memlogd's `-fd-log`,
//!    `-fd-query`), taken over without `unsafe` (see [`FdTaker`]): each
//!    number once, after checking it is open and a socket of the right
//!    type;
//! 4. a path or an address, bound here. A path is bound only after checking
//!    that nothing listens on it: a stale socket file left by a dead daemon
//!    is replaced, a live one is refused with an error that says what to
//!    do. Socket files get their mode (0660 by default, `--socket-mode`)
//!    from the moment they exist (a umask around the bind).
//!
//! Any number of listeners of one type coexist (a second datagram socket
//! for `/dev/log` beside memlogd's ingest socket); names must be unique.

use std::collections::HashMap;
use std::fs;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::socket::{getsockopt, sockopt, SockType};
use nix::sys::stat::Mode;

/// What type of socket a listener is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketKind {
    /// A unix datagram socket (memlogd's ingest socket, `/dev/log`).
    UnixDatagram,
    /// A listening unix stream socket (the query socket, Docker's plugin
    /// socket).
    UnixStream,
    /// A listening TCP socket.
    Tcp,
    /// A UDP socket.
    Udp,
}

impl SocketKind {
    fn describe(self) -> &'static str {
        match self {
            SocketKind::UnixDatagram => "a unix datagram socket",
            SocketKind::UnixStream => "a listening unix stream socket",
            SocketKind::Tcp => "a listening TCP socket",
            SocketKind::Udp => "a UDP socket",
        }
    }

    fn sock_type(self) -> SockType {
        match self {
            SocketKind::UnixDatagram | SocketKind::Udp => SockType::Datagram,
            SocketKind::UnixStream | SocketKind::Tcp => SockType::Stream,
        }
    }

    fn is_unix(self) -> bool {
        matches!(self, SocketKind::UnixDatagram | SocketKind::UnixStream)
    }
}

/// Where a listener's socket is when nothing hands it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A unix socket path, bound here.
    Path(PathBuf),
    /// An inherited, already-bound socket (memlogd's `-fd-log`); never
    /// unlinked by ringtail.
    Fd(RawFd),
    /// A TCP or UDP address, bound here.
    Inet(SocketAddr),
}

/// One socket the daemon needs.
#[derive(Clone, Debug)]
pub struct Listener {
    /// Unique; the systemd `FileDescriptorName=` that provides it.
    pub name: String,
    pub kind: SocketKind,
    pub address: Address,
    /// What it is, for messages ("the ingest socket").
    pub what: String,
    /// The flag that sets its address, for messages ("--socket-log").
    pub flag: String,
    /// Mode of a socket file created for it; `None`: `--socket-mode`.
    pub mode: Option<u32>,
    /// A bind that fails turns it off with a warning instead of stopping
    /// the start (the default HTTP address, when taken).
    pub optional: bool,
    /// Set socket options a receiver needs before it serves (receive
    /// buffer size, `SO_PASSCRED`), on whichever socket it gets.
    pub options: SocketOptions,
}

/// Socket options set on a bound socket, wherever it came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// `SO_RCVBUF` (as root, past `net.core.rmem_max`).
    pub receive_buffer: Option<usize>,
    /// `SO_PASSCRED`: the kernel attaches each sender's pid, uid and gid.
    pub pass_credentials: bool,
}

impl Listener {
    /// A listener with no mode override, not optional, no options.
    pub fn new(
        name: impl Into<String>,
        kind: SocketKind,
        address: Address,
        what: impl Into<String>,
        flag: impl Into<String>,
    ) -> Listener {
        Listener {
            name: name.into(),
            kind,
            address,
            what: what.into(),
            flag: flag.into(),
            mode: None,
            optional: false,
            options: SocketOptions::default(),
        }
    }
}

/// A bound socket of one of the [`SocketKind`]s.
#[derive(Debug)]
pub enum Socket {
    UnixDatagram(UnixDatagram),
    UnixListener(UnixListener),
    TcpListener(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

impl Socket {
    fn fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }

    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        match self {
            Socket::UnixDatagram(s) => s.as_fd(),
            Socket::UnixListener(s) => s.as_fd(),
            Socket::TcpListener(s) => s.as_fd(),
            Socket::Udp(s) => s.as_fd(),
        }
    }

    fn from_fd(kind: SocketKind, fd: OwnedFd) -> Socket {
        match kind {
            SocketKind::UnixDatagram => Socket::UnixDatagram(fd.into()),
            SocketKind::UnixStream => Socket::UnixListener(fd.into()),
            SocketKind::Tcp => Socket::TcpListener(fd.into()),
            SocketKind::Udp => Socket::Udp(fd.into()),
        }
    }

    /// The unix datagram socket, or an error naming what it is instead.
    pub fn into_unix_datagram(self) -> io::Result<UnixDatagram> {
        match self {
            Socket::UnixDatagram(s) => Ok(s),
            other => Err(wrong(&other, SocketKind::UnixDatagram)),
        }
    }

    pub fn into_unix_listener(self) -> io::Result<UnixListener> {
        match self {
            Socket::UnixListener(s) => Ok(s),
            other => Err(wrong(&other, SocketKind::UnixStream)),
        }
    }

    pub fn into_tcp_listener(self) -> io::Result<std::net::TcpListener> {
        match self {
            Socket::TcpListener(s) => Ok(s),
            other => Err(wrong(&other, SocketKind::Tcp)),
        }
    }

    pub fn into_udp(self) -> io::Result<std::net::UdpSocket> {
        match self {
            Socket::Udp(s) => Ok(s),
            other => Err(wrong(&other, SocketKind::Udp)),
        }
    }
}

fn wrong(got: &Socket, want: SocketKind) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("expected {}, got {got:?}", want.describe()),
    )
}

/// One listener, bound.
#[derive(Debug)]
pub struct Bound {
    pub name: String,
    /// `None` when an optional listener could not be bound (see `warning`).
    pub socket: Option<Socket>,
    /// Where it listens, for messages: a path, an address, `fd N`.
    pub shown: String,
    /// Why an optional listener is off.
    pub warning: Option<String>,
}

/// Why a socket cannot be had; the message says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ListenError(pub String);

/// What the parent of `-daemonize` hands the background daemon: the
/// sockets it bound, by listener name, and the socket files it created
/// (the background daemon removes them at shutdown).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Handover {
    pub fds: Vec<(String, RawFd)>,
    pub owned_files: Vec<PathBuf>,
}

/// How [`bind_all`] works.
#[derive(Clone, Debug)]
pub struct BindOptions {
    /// Mode of socket files that do not set their own.
    pub socket_mode: u32,
    /// A directory to create (with this mode) before binding a path in it:
    /// the default socket directory. `None` when every path was given.
    pub socket_dir: Option<(PathBuf, u32)>,
    /// Take sockets passed by systemd (`LISTEN_PID`/`LISTEN_FDS`).
    pub systemd: bool,
    /// Sockets handed over by the parent of `-daemonize`.
    pub handover: Option<Handover>,
    /// How to spell the flags that give paths, for the directory error.
    pub path_flags_hint: String,
}

/// Every listener, bound; with the socket files this process created, to
/// remove at shutdown.
#[derive(Debug)]
pub struct BoundAll {
    pub bound: Vec<Bound>,
    pub created: Vec<PathBuf>,
}

impl BoundAll {
    /// Takes the socket of listener `name` out.
    pub fn take(&mut self, name: &str) -> Option<Bound> {
        let i = self.bound.iter().position(|b| b.name == name)?;
        Some(self.bound.remove(i))
    }

    /// The fds to hand over to the background daemon, by name.
    pub fn fds(&self) -> Vec<(String, RawFd)> {
        self.bound
            .iter()
            .filter_map(|b| b.socket.as_ref().map(|s| (b.name.clone(), s.fd())))
            .collect()
    }
}

/// Binds every listener (see the module docs). On an error no socket file
/// created here is left behind. Call it before any thread exists: it
/// changes the umask around binds and unsets systemd's variables.
pub fn bind_all(
    listeners: &[Listener],
    options: &BindOptions,
    fds: &mut FdTaker,
) -> Result<BoundAll, ListenError> {
    let mut seen = HashMap::new();
    for l in listeners {
        if let Some(other) = seen.insert(l.name.as_str(), l) {
            return Err(ListenError(format!(
                "{} and {} are both named {:?}; give each listener its own name",
                other.what, l.what, l.name
            )));
        }
    }
    check_distinct(listeners)?;
    let mut handed: HashMap<String, RawFd> = HashMap::new();
    if let Some(h) = &options.handover {
        handed.extend(h.fds.iter().cloned());
    }
    let mut activated = if options.systemd && options.handover.is_none() {
        take_activated_sockets(listeners, fds)?
    } else {
        HashMap::new()
    };
    let mut out = BoundAll {
        bound: Vec::new(),
        created: Vec::new(),
    };
    let result = (|| {
        for l in listeners {
            let bound = if let Some(n) = handed.remove(&l.name) {
                let fd = fds.adopt(n, "--inherit")?;
                check_socket(&fd, l.kind, n, &l.what)?;
                let shown = shown_name(&fd, &format!("fd {n}"), options.handover.as_ref());
                Bound {
                    name: l.name.clone(),
                    socket: Some(Socket::from_fd(l.kind, fd)),
                    shown,
                    warning: None,
                }
            } else if let Some((fd, n)) = activated.remove(&l.name) {
                check_socket(&fd, l.kind, n, &l.what)?;
                let shown = shown_name(&fd, &format!("systemd fd {n}"), None);
                Bound {
                    name: l.name.clone(),
                    socket: Some(Socket::from_fd(l.kind, fd)),
                    shown,
                    warning: None,
                }
            } else if options.handover.is_some() && !matches!(l.address, Address::Fd(_)) {
                // The parent bound every socket it could; one it did not
                // hand over is an optional one that was off there too.
                Bound {
                    name: l.name.clone(),
                    socket: None,
                    shown: String::new(),
                    warning: None,
                }
            } else {
                bind_one(l, options, fds, &mut out.created)?
            };
            if let Some(socket) = &bound.socket {
                apply_options(socket, &l.options, &l.what)?;
            }
            out.bound.push(bound);
        }
        if let Some((name, (_, n))) = activated.into_iter().next() {
            return Err(ListenError(format!(
                "systemd passed fd {n} named {name:?}, which no listener of this configuration \
                 uses; name the sockets of the .socket unit after ringtail's listeners \
                 (FileDescriptorName=log, query, http, ...)"
            )));
        }
        Ok(())
    })();
    if let Some(h) = &options.handover {
        // Files the parent of `-daemonize` created for these sockets.
        out.created.extend(h.owned_files.iter().cloned());
    }
    match result {
        Ok(()) => Ok(out),
        Err(e) => {
            remove_files(&out.created);
            Err(e)
        }
    }
}

/// Two listeners of one address would fight over it.
fn check_distinct(listeners: &[Listener]) -> Result<(), ListenError> {
    for (i, a) in listeners.iter().enumerate() {
        for b in &listeners[i + 1..] {
            let same = match (&a.address, &b.address) {
                (Address::Path(x), Address::Path(y)) => x == y,
                (Address::Fd(x), Address::Fd(y)) => x == y,
                (Address::Inet(x), Address::Inet(y)) => {
                    x == y && (a.kind == SocketKind::Udp) == (b.kind == SocketKind::Udp)
                }
                _ => false,
            };
            if same {
                let at = match &a.address {
                    Address::Path(p) => p.display().to_string(),
                    Address::Fd(n) => format!("fd {n}"),
                    Address::Inet(s) => s.to_string(),
                };
                return Err(ListenError(format!(
                    "{} ({}) and {} ({}) are both {at}; give each its own",
                    a.what, a.flag, b.what, b.flag
                )));
            }
        }
    }
    Ok(())
}

fn bind_one(
    l: &Listener,
    options: &BindOptions,
    fds: &mut FdTaker,
    created: &mut Vec<PathBuf>,
) -> Result<Bound, ListenError> {
    let bound = |socket, shown| Bound {
        name: l.name.clone(),
        socket: Some(socket),
        shown,
        warning: None,
    };
    match &l.address {
        Address::Fd(n) => {
            let flag = l.flag.replace("socket", "fd");
            let fd = fds.adopt(*n, &flag)?;
            check_socket(&fd, l.kind, *n, &l.what)?;
            let shown = shown_name(&fd, &format!("fd {n}"), None);
            Ok(bound(Socket::from_fd(l.kind, fd), shown))
        }
        Address::Path(path) => {
            if !l.kind.is_unix() {
                return Err(ListenError(format!(
                    "{}: {} is a path, but {} listens on an address (HOST:PORT)",
                    l.flag,
                    path.display(),
                    l.what
                )));
            }
            if let Some((dir, mode)) = &options.socket_dir {
                if path.parent() == Some(dir.as_path()) {
                    prepare_socket_dir(dir, *mode, &options.path_flags_hint)?;
                }
            }
            check_stale(path, l.kind, &l.flag)?;
            let mode = l.mode.unwrap_or(options.socket_mode);
            let socket = with_umask(0o177, || match l.kind {
                SocketKind::UnixDatagram => UnixDatagram::bind(path).map(Socket::UnixDatagram),
                _ => UnixListener::bind(path).map(Socket::UnixListener),
            })
            .map_err(|e| bind_error(path, &e, &l.flag))?;
            created.push(path.clone());
            set_mode(path, mode)?;
            Ok(bound(socket, path.display().to_string()))
        }
        Address::Inet(addr) => {
            let socket = match l.kind {
                SocketKind::Udp => std::net::UdpSocket::bind(addr).map(Socket::Udp),
                SocketKind::Tcp => bind_tcp(*addr).map(Socket::TcpListener),
                _ => {
                    return Err(ListenError(format!(
                        "{}: {addr} is an address, but {} is a unix socket (give a path)",
                        l.flag, l.what
                    )))
                }
            };
            match socket {
                Ok(s) => {
                    let shown = match &s {
                        Socket::TcpListener(t) => t.local_addr().map(|a| a.to_string()),
                        Socket::Udp(u) => u.local_addr().map(|a| a.to_string()),
                        _ => Ok(addr.to_string()),
                    }
                    .unwrap_or_else(|_| addr.to_string());
                    Ok(bound(s, shown))
                }
                Err(e) if l.optional => {
                    let why = if e.kind() == io::ErrorKind::AddrInUse {
                        "is in use by another program".to_string()
                    } else {
                        format!("is not available ({})", e.kind())
                    };
                    Ok(Bound {
                        name: l.name.clone(),
                        socket: None,
                        shown: addr.to_string(),
                        warning: Some(format!(
                            "{} is off: its default address {addr} {why}; pass {} ADDR (port 0 \
                             picks a free port) or {} off",
                            l.what, l.flag, l.flag
                        )),
                    })
                }
                Err(e) => Err(ListenError(format!(
                    "cannot listen for {} on {addr}: {e}; pass another {} ADDR (port 0 picks a \
                     free port)",
                    l.what, l.flag
                ))),
            }
        }
    }
}

/// A TCP listener with the largest backlog the system allows (the
/// standard library's 128 makes a burst of connects wait for SYN retries).
fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use rustix::net::{AddressFamily, SocketType};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, max_backlog())?;
    Ok(std::net::TcpListener::from(fd))
}

/// The system's cap on a listen backlog (`net.core.somaxconn`); the kernel
/// caps a larger request to it anyway.
pub fn max_backlog() -> i32 {
    fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

fn apply_options(socket: &Socket, o: &SocketOptions, what: &str) -> Result<(), ListenError> {
    let fail =
        |opt: &str, e: rustix::io::Errno| ListenError(format!("cannot set {opt} on {what}: {e}"));
    let fd = socket.as_fd();
    if let Some(size) = o.receive_buffer {
        use rustix::net::sockopt;
        // As root the size may pass net.core.rmem_max; otherwise the kernel
        // caps it there, which is still the best an ordinary user gets.
        sockopt::set_socket_recv_buffer_size_force(fd, size)
            .or_else(|_| sockopt::set_socket_recv_buffer_size(fd, size))
            .map_err(|e| fail("SO_RCVBUF", e))?;
    }
    if o.pass_credentials {
        rustix::net::sockopt::set_socket_passcred(fd, true).map_err(|e| fail("SO_PASSCRED", e))?;
    }
    Ok(())
}

/// Removes socket files (at shutdown, or after a failed start).
pub fn remove_files(created: &[PathBuf]) {
    for p in created {
        let _ = fs::remove_file(p);
    }
}

/// Creates the default socket directory, or checks that an existing one is
/// ours: a directory someone else owns (or may write to) could hold a
/// socket file of theirs where clients expect ours.
fn prepare_socket_dir(dir: &Path, mode: u32, hint: &str) -> Result<(), ListenError> {
    let hint = format!("or pass {hint}");
    match fs::DirBuilder::new().recursive(true).mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(ListenError(format!(
                "cannot create the socket directory {}: permission denied; run as root {hint}",
                dir.display()
            )))
        }
        Err(e) => {
            return Err(ListenError(format!(
                "cannot create the socket directory {}: {e}; {hint}",
                dir.display()
            )))
        }
    }
    let md = fs::symlink_metadata(dir)
        .map_err(|e| ListenError(format!("cannot inspect {}: {e}", dir.display())))?;
    let me = rustix::process::geteuid().as_raw();
    if !md.file_type().is_dir() {
        return Err(ListenError(format!(
            "{} is not a directory (a symlink or a file is there); remove it {hint}",
            dir.display()
        )));
    }
    if md.uid() != me || md.mode() & 0o022 != 0 {
        return Err(ListenError(format!(
            "the socket directory {} belongs to uid {} with mode {:o}; it must be yours and \
             writable only by you: remove it {hint}",
            dir.display(),
            md.uid(),
            md.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Removes a stale socket file (nothing answers on it); refuses a live one.
fn check_stale(path: &Path, kind: SocketKind, flag: &str) -> Result<(), ListenError> {
    let md = match fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(ListenError(format!(
                "cannot inspect {}: {e}; pass {flag} PATH",
                path.display()
            )))
        }
    };
    if !md.file_type().is_socket() {
        return Err(ListenError(format!(
            "{} exists and is not a socket; remove it or pass {flag} PATH",
            path.display()
        )));
    }
    let probe = match kind {
        SocketKind::UnixDatagram => UnixDatagram::unbound().and_then(|s| s.connect(path)),
        _ => UnixStream::connect(path).map(drop),
    };
    let in_use = || {
        ListenError(format!(
            "another ringtail (or memlogd) is listening on {}; stop it or pass {flag} PATH",
            path.display()
        ))
    };
    match probe {
        Ok(()) => Err(in_use()),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ListenError(format!(
                "cannot remove the stale socket {}: {e}; remove it or pass {flag} PATH",
                path.display()
            ))),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        // A live socket of the other type answers with EPROTOTYPE.
        Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => Err(in_use()),
        Err(e) => Err(ListenError(format!(
            "{} exists and cannot be checked ({e}); remove it if no daemon uses it, or pass \
             {flag} PATH",
            path.display()
        ))),
    }
}

fn bind_error(path: &Path, e: &io::Error, flag: &str) -> ListenError {
    let shown = path.display();
    ListenError(match e.kind() {
        io::ErrorKind::PermissionDenied => {
            format!("cannot bind {shown}: permission denied; run as root or pass {flag} PATH")
        }
        io::ErrorKind::NotFound => format!(
            "cannot bind {shown}: the directory {} does not exist; create it or pass {flag} PATH",
            path.parent()
                .map(Path::display)
                .map(|d| d.to_string())
                .unwrap_or_default()
        ),
        io::ErrorKind::AddrInUse => format!(
            "another ringtail (or memlogd) is listening on {shown}; stop it or pass {flag} PATH"
        ),
        _ => format!("cannot bind {shown}: {e}; pass {flag} PATH"),
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ListenError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| {
        ListenError(format!(
            "cannot set mode {mode:o} on {}: {e}",
            path.display()
        ))
    })
}

/// Runs `f` with the umask set to `mask`, so a socket file is never
/// reachable with looser permissions than asked, not even between bind
/// and chmod. The umask is process-wide: this runs before any thread.
fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    let old = nix::sys::stat::umask(Mode::from_bits_truncate(mask));
    let out = f();
    nix::sys::stat::umask(old);
    out
}

/// The name of an inherited socket, for messages: its path (or address)
/// and where it came from; only the path for one the parent of
/// `-daemonize` bound, as the parent showed it so.
fn shown_name(fd: &OwnedFd, fallback: &str, handover: Option<&Handover>) -> String {
    let Ok(addr) = rustix::net::getsockname(fd) else {
        return fallback.to_string();
    };
    if let Ok(unix) = rustix::net::SocketAddrUnix::try_from(addr.clone()) {
        if let Some(path) = unix.path() {
            let path = Path::new(std::ffi::OsStr::from_bytes(path.to_bytes())).display();
            if handover.is_some() {
                return path.to_string();
            }
            return format!("{path} ({fallback})");
        }
        return fallback.to_string();
    }
    match SocketAddr::try_from(addr) {
        Ok(inet) => inet.to_string(),
        Err(_) => fallback.to_string(),
    }
}

fn check_socket(fd: &OwnedFd, want: SocketKind, n: RawFd, what: &str) -> Result<(), ListenError> {
    let ty = getsockopt(fd, sockopt::SockType).map_err(|e| {
        ListenError(format!(
            "fd {n} is not a socket ({e}); {what} must be {}",
            want.describe()
        ))
    })?;
    let family_ok = match rustix::net::getsockname(fd) {
        Ok(addr) => (addr.address_family() == rustix::net::AddressFamily::UNIX) == want.is_unix(),
        Err(_) => true,
    };
    if ty != want.sock_type() || !family_ok {
        return Err(ListenError(format!(
            "fd {n} is not {}, but {what} must be",
            want.describe()
        )));
    }
    Ok(())
}

/// Takes the sockets systemd passed (`LISTEN_PID` is this process,
/// `LISTEN_FDS` of them from fd 3), keyed by the listener name they are
/// for (see the module docs). Unsets the variables, as `sd_listen_fds(1)`
/// does.
fn take_activated_sockets(
    listeners: &[Listener],
    fds: &mut FdTaker,
) -> Result<HashMap<String, (OwnedFd, RawFd)>, ListenError> {
    let mut out = HashMap::new();
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(out);
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(out);
    }
    // Called before any thread exists (see `bind_all`), so changing the
    // environment races with nothing.
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let count: RawFd = count
        .trim()
        .parse()
        .map_err(|_| ListenError(format!("LISTEN_FDS={count:?} is not a number of sockets")))?;
    let names: Vec<String> = names
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    const SD_LISTEN_FDS_START: RawFd = 3;
    let mut unnamed = Vec::new();
    for (i, n) in (SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + count).enumerate() {
        let fd = fds.adopt(n, "LISTEN_FDS")?;
        match names.get(i) {
            Some(name) if listeners.iter().any(|l| &l.name == name) => {
                if out.insert(name.clone(), (fd, n)).is_some() {
                    return Err(ListenError(format!(
                        "systemd passed two sockets named {name:?}; give each \
                         FileDescriptorName= of the .socket unit once"
                    )));
                }
            }
            _ => unnamed.push((fd, n)),
        }
    }
    // memlogd's units name no socket: the datagram one is the ingest
    // socket, the stream one the query socket.
    for (fd, n) in unnamed {
        let name = match getsockopt(&fd, sockopt::SockType) {
            Ok(SockType::Datagram) => "log",
            Ok(SockType::Stream) => "query",
            _ => {
                return Err(ListenError(format!(
                    "systemd passed fd {n}, which is neither a datagram nor a stream socket"
                )))
            }
        };
        if out.contains_key(name) || !listeners.iter().any(|l| l.name == name) {
            return Err(ListenError(format!(
                "systemd passed fd {n} with no name ringtail knows, and it cannot stand for the \
                 {name} socket; name every socket of the .socket unit with \
                 FileDescriptorName= (log, query, http, ...)"
            )));
        }
        out.insert(name.to_string(), (fd, n));
    }
    Ok(out)
}

/// Takes over fds this process inherited and was told about by number
/// (flags, `LISTEN_FDS`, the handover of `-daemonize`), each number at most
/// once: taking one closes the number, which may then be reused by an fd
/// of ringtail's own.
#[derive(Default)]
pub struct FdTaker {
    /// The numbers taken so far, with the flag that named each.
    taken: Vec<(RawFd, String)>,
}

impl FdTaker {
    pub fn adopt(&mut self, n: RawFd, flag: &str) -> Result<OwnedFd, ListenError> {
        if let Some((_, by)) = self.taken.iter().find(|(t, _)| *t == n) {
            return Err(ListenError(format!(
                "{flag} {n}: fd {n} is already taken as {by}; name each inherited socket once"
            )));
        }
        let fd = adopt_fd(n, flag)?;
        self.taken.push((n, flag.to_string()));
        Ok(fd)
    }
}

/// Takes ownership of fd `n`, which this process inherited and was told
/// about by number: returns it as an `OwnedFd` (close-on-exec) and closes
/// the number itself. Only [`FdTaker::adopt`] calls it.
fn adopt_fd(n: RawFd, flag: &str) -> Result<OwnedFd, ListenError> {
    if n <= 2 {
        return Err(ListenError(format!(
            "{flag} {n} names stdin, stdout or stderr; pass the fd number of an inherited socket"
        )));
    }
    if let Err(e) = nix::fcntl::fcntl(n, nix::fcntl::FcntlArg::F_GETFD) {
        return Err(ListenError(format!(
            "{flag} {n}: fd {n} is not open ({e}); the process that starts ringtail must pass \
             the socket as fd {n}"
        )));
    }
    let fd = duplicate_fd(n).map_err(|e| {
        ListenError(format!(
            "{flag} {n}: cannot take over fd {n}: {e}; bind the sockets by path instead"
        ))
    })?;
    // The duplicate is ours now. The number itself is closed, so that the
    // socket is not held twice nor leaks into anything ringtail starts.
    // Closing by number is right here: fd `n` is open (F_GETFD), it was
    // inherited and named precisely so that ringtail takes it over, so
    // nothing else in this process owns it; and `FdTaker` never takes a
    // number twice, so a number closed here and since reused by an fd of
    // ringtail's own is never closed again. A failing close (EINTR or EIO:
    // Linux frees the number anyway) changes nothing for us.
    let _ = nix::unistd::close(n);
    Ok(fd)
}

/// A duplicate of fd `n`, as an `OwnedFd` (close-on-exec), without
/// `unsafe`: the fd is sent to this process itself over a socket pair
/// with SCM_RIGHTS; the kernel checks the number and installs a new fd for
/// the same open file, which rustix hands over as owned.
///
/// Not `pidfd_getfd(2)`, which would do the same in one call: it needs
/// Linux 5.6, and seccomp profiles commonly refuse it (Docker's default
/// one without CAP_SYS_PTRACE). Passing fds over a unix socket is what
/// ringtail's ingest socket is for, so this works wherever ringtail does.
fn duplicate_fd(n: RawFd) -> io::Result<OwnedFd> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    use rustix::net::{
        AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SocketFlags,
        SocketType,
    };
    let (tx, rx) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let fds = [n];
    sendmsg::<UnixAddr>(
        tx.as_raw_fd(),
        &[IoSlice::new(b"F")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_DONTWAIT,
        None,
    )?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    rustix::net::recvmsg(
        &rx,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
    )?;
    let received = control.drain().find_map(|message| match message {
        RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    });
    received.ok_or_else(|| io::Error::other("the kernel passed no fd back"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[test]
    fn an_fd_named_by_number_is_taken_over_once() {
        let (ours, peer) = UnixDatagram::pair().unwrap();
        // Give up ownership, as a socket inherited across exec has none.
        let n = ours.into_raw_fd();
        let mut fds = FdTaker::default();
        let taken = UnixDatagram::from(fds.adopt(n, "--fd-log").unwrap());
        taken.send(b"hi").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(peer.recv(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"hi");
        let flags = nix::fcntl::fcntl(taken.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert!(
            nix::fcntl::FdFlag::from_bits_truncate(flags).contains(nix::fcntl::FdFlag::FD_CLOEXEC)
        );
        // The number is closed (and may be reused): never taken again.
        let e = fds.adopt(n, "--fd-query").unwrap_err().to_string();
        assert!(e.contains("already taken as --fd-log"), "{e}");
    }

    #[test]
    fn fds_that_cannot_be_taken_over_are_refused_with_the_reason() {
        let mut fds = FdTaker::default();
        let e = fds.adopt(1, "--fd-log").unwrap_err().to_string();
        assert!(e.contains("stdin, stdout or stderr"), "{e}");
        // Above any possible fd number: never open.
        let e = fds
            .adopt(2_000_000_000, "--fd-query")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not open"), "{e}");
    }

    fn options() -> BindOptions {
        BindOptions {
            socket_mode: 0o660,
            socket_dir: None,
            systemd: false,
            handover: None,
            path_flags_hint: "--socket-log and --socket-query".into(),
        }
    }

    #[test]
    fn listeners_of_one_type_coexist_and_names_and_addresses_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let l = |name: &str, file: &str| {
            Listener::new(
                name,
                SocketKind::UnixDatagram,
                Address::Path(dir.path().join(file)),
                format!("the {name} socket"),
                format!("--{name}"),
            )
        };
        let mut fds = FdTaker::default();
        let all = bind_all(&[l("log", "a"), l("syslog", "b")], &options(), &mut fds).unwrap();
        assert_eq!(all.bound.len(), 2);
        assert_eq!(all.created.len(), 2);
        drop(all);
        let e = bind_all(&[l("log", "c"), l("log", "d")], &options(), &mut fds)
            .unwrap_err()
            .to_string();
        assert!(e.contains("both named \"log\""), "{e}");
        let e = bind_all(&[l("log", "e"), l("syslog", "e")], &options(), &mut fds)
            .unwrap_err()
            .to_string();
        assert!(e.contains("are both"), "{e}");
    }

    #[test]
    fn a_tcp_listener_gets_the_systems_largest_backlog() {
        let l = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        // The backlog is not readable back; at least the listener works.
        let addr = l.local_addr().unwrap();
        std::net::TcpStream::connect(addr).unwrap();
        assert!(max_backlog() >= 128);
    }
}
