//! `ringtail serve`: the daemon's flags, and their translation into a
//! [`DaemonConfig`].
//!
//! memlogd's flags (`-max-lines`, `-socket-log`, `-socket-query`, `-fd-log`,
//! `-fd-query`, `-max-line-len`, `-daemonize`) are the same flags written
//! with two dashes; [`super::argv`] rewrites the single-dash forms. Each
//! source's flags are its own ([`SourceArgs`], one help heading each), and
//! every flag is also a key of the config file ([`super::config`]).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::config::Tables;
use crate::daemon::{self, daemonize, DaemonConfig, HTTP_LISTENER, QUERY_LISTENER};
use crate::listener::{Address, BindOptions, Handover, Listener, SocketKind};
use crate::ring::{default_max_bytes, RingConfig, DEFAULT_MAX_LINES};
use crate::serve::http::{self, HttpConfig, Token};
use crate::serve::memlogq::{QueryConfig, QueryFormat};
use crate::sinks::echo::Echo;
use crate::sinks::Sink;
use crate::sources::{
    pace, Defaults, IngestConfig, LongLines, RateLimit, SourceArgs, DEFAULT_MAX_LINE_LEN,
};

/// The smallest longest-entry the ring is opened with (see `to_config`).
const MIN_ENTRY_LEN: usize = 1024;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Read settings from this TOML file: every flag is a key spelled as
    /// its long name (max-lines = 5000), flags on the command line win.
    /// See examples/ringtail.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Check the flags and the config file, print the effective
    /// configuration, and exit without starting.
    #[arg(long)]
    pub check: bool,

    /// Entries kept in the ring; the oldest go first (memlogd's -max-lines).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_LINES)]
    pub max_lines: u64,

    /// Message bytes kept in the ring (e.g. 64MiB); whichever of
    /// --max-lines and --max-bytes is reached first evicts. Default: 120
    /// bytes per line, at least 64 KiB.
    #[arg(long, value_name = "SIZE", value_parser = super::parse_size)]
    pub max_bytes: Option<u64>,

    /// Longest entry, in bytes (memlogd's -max-line-len); longer lines are
    /// split into several entries flagged `partial`, or cut with
    /// --long-lines truncate.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE_LEN)]
    pub max_line_len: usize,

    /// What happens to a line longer than --max-line-len.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = LongLines::Split)]
    pub long_lines: LongLines,

    /// The most sources (registered fds) read at once, and the size of the
    /// ring's table of source names.
    #[arg(long, value_name = "N", default_value_t = crate::ring::DEFAULT_MAX_ORIGINS)]
    pub max_sources: u64,

    /// Keep the ring in this file instead of memory: every entry a writer
    /// finished survives a restart or a crash of the daemon, with its seq.
    #[arg(long, value_name = "PATH")]
    pub ring_file: Option<PathBuf>,

    /// Discard the contents of --ring-file when its size does not match
    /// --max-lines/--max-bytes/--max-sources (instead of refusing to start).
    #[arg(long, requires = "ring_file")]
    pub ring_reset: bool,

    /// Line format of memlogd's dump/follow queries: `json` (current
    /// memlogd) or `text` (memlogd before 2022: `<time>,<source>;<msg>`).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = QueryFormat::Json)]
    pub query_format: QueryFormat,

    /// Use memlogd's socket paths (/var/run/linuxkit-external-logging.sock
    /// and /var/run/memlogdq.sock) instead of ringtail's own directory.
    #[arg(long)]
    pub memlogd_paths: bool,

    /// The query socket (memlogd's -socket-query). Default: query.sock in
    /// the same directory as the default ingest socket.
    #[arg(long, value_name = "PATH")]
    pub socket_query: Option<PathBuf>,

    /// Use this inherited, already-listening stream socket as the query
    /// socket (memlogd's -fd-query; overrides --socket-query; -1 means none).
    #[arg(long, value_name = "FD", allow_negative_numbers = true)]
    pub fd_query: Option<i32>,

    /// Permissions of the socket files, in octal. The query socket hands
    /// out every log on the host: keep it away from other users.
    #[arg(long, value_name = "MODE", default_value = "0660", value_parser = parse_mode)]
    pub socket_mode: u32,

    /// Also print every entry to stdout, as memlogd does
    /// (`<RFC3339Nano>;<source>;<msg>`). A slow stdout never slows ingest.
    #[arg(long)]
    pub echo: bool,

    /// Ship entries to a central store, exactly once while the ring holds
    /// them: loki=URL (Loki's base URL or its push URL), syslog=tcp://HOST:PORT
    /// (also udp://, relp://), cloudwatch=REGION (log group and stream from
    /// RINGTAIL_CLOUDWATCH_GROUP/STREAM, default `ringtail` and the source;
    /// endpoint from AWS_ENDPOINT_URL_CLOUDWATCH_LOGS; credentials from the
    /// AWS environment or ~/.aws/credentials). Repeatable. In the config file,
    /// write [[forward]] tables instead (names, filters, batch caps, cursor
    /// files; see examples/ringtail.toml). With --ring-file, each keeps its
    /// cursor in <ring file>.forward/.
    #[arg(long, value_name = "KIND=URL")]
    pub forward: Vec<String>,

    /// Per-source rate limit LINES/INTERVAL (e.g. 1000/1s): the excess is
    /// dropped and counted in one "suppressed" entry per interval. Off by
    /// default.
    #[arg(long, value_name = "LINES/INTERVAL", value_parser = parse_rate_limit)]
    pub rate_limit: Option<RateLimit>,

    /// During a burst, fd sources pause reading while a query-socket
    /// follower that reads at full speed is more than half a ring behind
    /// (the pipe holds the writer's lines meanwhile), for at most this
    /// percentage of any stretch of time T plus the same percentage of one
    /// second (at 10: 10 % of T + 1 s). A follower whose client stops
    /// reading stops counting after 20 ms. 0 turns pacing off: followers
    /// then get gaps as soon as the ring laps them.
    #[arg(long, value_name = "PERCENT", default_value_t = pace::DEFAULT_PERCENT,
          value_parser = clap::value_parser!(u8).range(0..=50))]
    pub follower_pacing: u8,

    /// Address of the HTTP API, or `off` [default: 127.0.0.1:7464, where a
    /// port already taken only turns HTTP off with a warning]. Port 0 picks
    /// a free port; the address is printed at start. An address other than
    /// loopback needs --http-token or --http-insecure.
    #[arg(long, value_name = "ADDR|off", value_parser = parse_http)]
    pub http: Option<HttpListen>,

    /// Require `Authorization: Bearer TOKEN` on every HTTP route (but the
    /// health checks and the dashboard's page, which hold no logs), with
    /// TOKEN read from this file (surrounding whitespace dropped). Without
    /// it, the environment variable RINGTAIL_HTTP_TOKEN, if set, holds the
    /// token itself.
    #[arg(long, value_name = "FILE")]
    pub http_token: Option<PathBuf>,

    /// Serve HTTP on a non-loopback address without a token (when a
    /// firewall or an authenticating proxy protects it).
    #[arg(long)]
    pub http_insecure: bool,

    /// Most entries one JSON answer of GET /api/v1/entries holds (a larger
    /// `limit` is capped; streamed formats are not capped).
    #[arg(long, value_name = "N", default_value_t = http::DEFAULT_MAX_LIMIT)]
    pub http_max_limit: u64,

    /// Most follow streams (SSE or lines) open at once; more get 503.
    #[arg(long, value_name = "N", default_value_t = http::DEFAULT_MAX_FOLLOWERS)]
    pub http_max_followers: usize,

    /// Largest HTTP request body (POST /api/v1/entries), e.g. 1MiB; larger
    /// ones get 413.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = super::parse_size)]
    pub http_max_body: u64,

    /// Largest Loki push body (POST /loki/api/v1/push), compressed and
    /// once decompressed, e.g. 32MiB; larger ones get 413.
    #[arg(long, value_name = "SIZE", default_value = "32MiB", value_parser = super::parse_size)]
    pub loki_max_push: u64,

    /// Most request bytes held at once, over all ingest requests being
    /// decoded and stored (POST /api/v1/entries and Loki pushes: bodies,
    /// decompressed protobuf, 2 MiB of working room each); a request that
    /// cannot get its share within 2 s gets 429 with Retry-After.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = super::parse_size)]
    pub http_max_inflight: u64,

    /// Most HTTP connections open at once; past it a new connection gets
    /// 503 with Retry-After and is closed (counted, and noted in the self
    /// log).
    #[arg(long, value_name = "N", default_value_t = http::conn::DEFAULT_MAX_CONNECTIONS)]
    pub http_max_connections: usize,

    /// How long a client may take to send a request head once it has
    /// started one (closes connections that trickle headers).
    #[arg(long, value_name = "DURATION", default_value_t = Timeout(http::conn::DEFAULT_HEADER_TIMEOUT))]
    pub http_header_timeout: Timeout,

    /// How long a connection with no request in progress stays open
    /// (keep-alive, or opened and silent). Live follow streams are never
    /// idle.
    #[arg(long, value_name = "DURATION", default_value_t = Timeout(http::conn::DEFAULT_IDLE_TIMEOUT))]
    pub http_idle_timeout: Timeout,

    /// How long a non-streaming HTTP request may take (e.g. 30s); longer
    /// ones get 408.
    #[arg(long, value_name = "DURATION", default_value_t = Timeout(http::DEFAULT_TIMEOUT))]
    pub http_timeout: Timeout,

    /// Bind the sockets, then go to the background; the command returns
    /// once the daemon serves (memlogd's -daemonize).
    #[arg(long)]
    pub daemonize: bool,

    /// Internal, set by --daemonize on the background daemon it starts:
    /// write one byte to this inherited fd once serving.
    #[arg(long, value_name = "FD", hide = true, conflicts_with = "daemonize")]
    pub ready_fd: Option<i32>,

    /// Internal (--daemonize): the socket of listener NAME is the
    /// inherited fd FD. Repeated.
    #[arg(long, value_name = "NAME=FD", hide = true, requires = "ready_fd",
          value_parser = daemonize::parse_inherit)]
    pub inherit: Vec<(String, RawFd)>,

    /// Internal (--daemonize): a socket file the process that started this
    /// one created; removed at shutdown. Repeated.
    #[arg(long, value_name = "PATH", hide = true, requires = "ready_fd")]
    pub owned_socket: Vec<PathBuf>,

    #[command(flatten)]
    pub sources: SourceArgs,
}

/// The command line that starts this daemon again in the background for
/// `--daemonize` ([`DaemonConfig::relaunch`]), from `argv` (the program's
/// own, program name first): the same, without `--daemonize` (in any of
/// its spellings); the daemon appends the handover flags. The program name
/// is kept, so the background daemon shows under the same name (`memlogd`
/// included).
pub fn relaunch_command_line(argv: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(argv.len());
    for (i, arg) in argv.into_iter().enumerate() {
        let bytes = arg.as_encoded_bytes();
        let is_daemonize = i > 0
            && matches!(
                bytes,
                b"--daemonize" | b"-daemonize" | b"-daemonize=true" | b"--daemonize=true"
            );
        if !is_daemonize {
            out.push(arg);
        }
    }
    out
}

/// `--http`: an address, or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpListen {
    Off,
    Addr(SocketAddr),
}

fn parse_http(text: &str) -> Result<HttpListen, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(HttpListen::Off);
    }
    text.parse::<SocketAddr>()
        .map(HttpListen::Addr)
        .map_err(|_| {
            format!("{text:?} is not an address; write e.g. 127.0.0.1:7464, [::1]:7464 or off")
        })
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let ns = crate::timefmt::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?;
    if ns < 1_000_000 {
        return Err(format!("{text:?}: the timeout must be at least 1ms"));
    }
    Ok(Duration::from_nanos(ns))
}

/// A timeout flag's value: parsed from `10s`, `1m`, `500ms`, and printed
/// the same way, so that clap's `--help` shows the default defined by the
/// server module rather than a second copy of it written as text here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Duration);

impl std::str::FromStr for Timeout {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_timeout(text).map(Timeout)
    }
}

impl std::fmt::Display for Timeout {
    /// The largest whole unit: `90s` rather than `1m30s`, `1500ms`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            _ if ms.is_multiple_of(3_600_000) => write!(f, "{}h", ms / 3_600_000),
            _ if ms.is_multiple_of(60_000) => write!(f, "{}m", ms / 60_000),
            _ if ms.is_multiple_of(1000) => write!(f, "{}s", ms / 1000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

/// The HTTP token: from `--http-token FILE`, else `RINGTAIL_HTTP_TOKEN`.
fn http_token(file: Option<&std::path::Path>) -> Result<Option<Token>, String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "--http-token {}: cannot read the token file: {e}",
                path.display()
            )
        })?;
        return Token::new(&text)
            .map(Some)
            .map_err(|e| format!("--http-token {}: {e}", path.display()));
    }
    match std::env::var("RINGTAIL_HTTP_TOKEN") {
        Ok(text) => Token::new(&text)
            .map(Some)
            .map_err(|e| format!("RINGTAIL_HTTP_TOKEN: {e}")),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err("RINGTAIL_HTTP_TOKEN is not valid UTF-8".to_string())
        }
    }
}

fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!(
            "{text:?} is not a permission mode; write it in octal, e.g. 0660"
        )),
    }
}

/// `LINES/INTERVAL`, e.g. `1000/1s`; a bare `LINES` means per second.
pub fn parse_rate_limit(text: &str) -> Result<RateLimit, String> {
    let (lines, interval) = text.split_once('/').unwrap_or((text, "1s"));
    let lines: u64 = lines
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: the line count must be a number; write e.g. 1000/1s"))?;
    if lines == 0 {
        return Err(format!("{text:?}: the line count must be at least 1"));
    }
    // `1000/s` reads as `1000/1s`.
    let interval = interval.trim();
    let interval = if interval.starts_with(|c: char| c.is_ascii_digit()) {
        interval.to_string()
    } else {
        format!("1{interval}")
    };
    let interval = Duration::from_nanos(
        crate::timefmt::parse_duration(&interval).map_err(|e| format!("{text:?}: {e}"))?,
    );
    if interval < Duration::from_millis(1) {
        return Err(format!("{text:?}: the interval must be at least 1ms"));
    }
    Ok(RateLimit { lines, interval })
}

impl ServeArgs {
    /// Where the defaults of sources and servers come from.
    fn defaults(&self) -> Defaults {
        Defaults {
            memlogd_paths: self.memlogd_paths,
        }
    }

    /// The daemon configuration these flags and the config file's tables
    /// describe.
    pub fn to_config(&self, tables: &Tables) -> Result<DaemonConfig, String> {
        let mut ring = RingConfig::new(self.max_lines);
        ring.max_bytes = self
            .max_bytes
            .unwrap_or_else(|| default_max_bytes(self.max_lines));
        // Ingest cuts lines at --max-line-len itself; the ring keeps room
        // for at least 1 KiB so that ringtail's own entries stay whole.
        ring.max_entry_len = self.max_line_len.max(MIN_ENTRY_LEN);
        ring.max_origins = self.max_sources;
        ring.file = self.ring_file.clone();
        ring.reset = self.ring_reset;
        // Catch bad sizes here, with the flag names, rather than at open.
        ring.geometry().map_err(|e| e.to_string())?;

        let ingest = IngestConfig {
            max_line_len: self.max_line_len,
            long_lines: self.long_lines,
            rate_limit: self.rate_limit,
            max_sources: usize::try_from(self.max_sources).unwrap_or(usize::MAX),
            follower_pacing: self.follower_pacing,
        };
        let sources = self.sources.sources(&self.defaults(), tables)?;
        for (kind, t) in tables.iter() {
            if !SourceArgs::TABLES.contains(&kind) && !crate::sinks::forward::TABLES.contains(&kind)
            {
                if let Some(t) = t.first() {
                    return Err(t.error("no source or sink reads this kind of table"));
                }
            }
        }
        let query_address = match self.fd_query.filter(|&n| n >= 0) {
            Some(n) => Address::Fd(n),
            None => Address::Path(
                self.socket_query
                    .clone()
                    .unwrap_or_else(|| super::default_query_socket(self.memlogd_paths)),
            ),
        };
        let query = (
            Listener::new(
                QUERY_LISTENER,
                SocketKind::UnixStream,
                query_address,
                "queries",
                "--socket-query",
            ),
            QueryConfig {
                format: self.query_format,
                ..QueryConfig::default()
            },
        );
        let sink_registry = crate::sinks::Registry::default();
        let http = match self.http {
            Some(HttpListen::Off) => None,
            listen => {
                let (addr, explicit) = match listen {
                    Some(HttpListen::Addr(a)) => (a, true),
                    _ => (
                        http::DEFAULT_ADDR
                            .parse()
                            .expect("the default HTTP address parses"),
                        false,
                    ),
                };
                let token = http_token(self.http_token.as_deref())?;
                http::check_exposure(&addr, token.is_some(), self.http_insecure)?;
                if self.http_max_limit == 0 || self.http_max_followers == 0 {
                    return Err(
                        "--http-max-limit and --http-max-followers must be at least 1".to_string(),
                    );
                }
                let mut listener = Listener::new(
                    HTTP_LISTENER,
                    SocketKind::Tcp,
                    Address::Inet(addr),
                    "HTTP API",
                    "--http",
                );
                listener.optional = !explicit;
                Some((
                    listener,
                    HttpConfig {
                        token,
                        max_limit: self.http_max_limit,
                        default_limit: http::DEFAULT_LIMIT.min(self.http_max_limit),
                        max_followers: self.http_max_followers,
                        max_body: usize::try_from(self.http_max_body).unwrap_or(usize::MAX),
                        loki: crate::serve::loki::LokiLimits {
                            max_push_bytes: usize::try_from(self.loki_max_push)
                                .unwrap_or(usize::MAX),
                            ..Default::default()
                        },
                        timeout: self.http_timeout.0,
                        max_inflight: usize::try_from(self.http_max_inflight).unwrap_or(usize::MAX),
                        connections: http::conn::ConnLimits {
                            max_connections: self.http_max_connections.max(1),
                            header_timeout: self.http_header_timeout.0,
                            idle_timeout: self.http_idle_timeout.0,
                        },
                        sinks: sink_registry.clone(),
                        ..HttpConfig::default()
                    },
                ))
            }
        };
        let handover = self.ready_fd.map(|_| Handover {
            fds: self.inherit.clone(),
            owned_files: self.owned_socket.clone(),
        });
        let socket_dir = (!self.memlogd_paths).then(|| {
            let root = rustix::process::geteuid().is_root();
            (
                super::default_socket_dir(),
                if root { 0o755 } else { 0o700 },
            )
        });
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        if self.echo {
            sinks.push(Box::new(Echo::new()));
        }
        sinks.extend(crate::sinks::forward::forwarders(
            &self.forward,
            tables.get("forward"),
            &crate::sinks::forward::ForwardContext {
                ring_file: self.ring_file.clone(),
            },
        )?);
        let name = |v: Option<clap::builder::PossibleValue>| {
            v.map(|v| v.get_name().to_string()).unwrap_or_default()
        };
        let summary = vec![
            (
                "ring in".to_string(),
                match &self.ring_file {
                    Some(f) => format!("file {}", f.display()),
                    None => "memory".to_string(),
                },
            ),
            ("max-line-len".into(), self.max_line_len.to_string()),
            (
                "long-lines".into(),
                name(clap::ValueEnum::to_possible_value(&self.long_lines)),
            ),
            (
                "rate-limit".into(),
                match self.rate_limit {
                    Some(r) => format!("{}/{:?}", r.lines, r.interval),
                    None => "off".to_string(),
                },
            ),
            (
                "query-format".into(),
                name(clap::ValueEnum::to_possible_value(&self.query_format)),
            ),
        ];
        Ok(DaemonConfig {
            ring,
            ingest,
            sources,
            sinks,
            sink_registry,
            query,
            http,
            bind: BindOptions {
                socket_mode: self.socket_mode,
                socket_dir,
                systemd: true,
                handover,
                path_flags_hint: "--socket-log and --socket-query".into(),
            },
            daemonize: self.daemonize,
            // Filled in by `main`, which knows the program's command line.
            relaunch: Vec::new(),
            ready_fd: self.ready_fd,
            summary,
        })
    }
}

/// Runs `ringtail serve`; returns the exit code. `tables` are the config
/// file's lists; `effective` is the `--check` output.
pub fn main(args: ServeArgs, tables: &Tables, effective: Option<String>) -> i32 {
    let mut config = match args.to_config(tables) {
        Ok(c) => c,
        Err(e) => {
            super::print_error(e);
            return 2;
        }
    };
    if args.check {
        print!("{}", effective.unwrap_or_default());
        return 0;
    }
    if config.daemonize {
        // The background daemon is this program started again with this
        // program's own command line (the one `main` parsed).
        config.relaunch = relaunch_command_line(std::env::args_os().collect());
    }
    match daemon::run(config) {
        Ok(()) => 0,
        Err(e) => {
            super::print_error(e);
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> ServeArgs {
        T::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .unwrap()
            .serve
    }

    fn config(args: &[&str]) -> Result<DaemonConfig, String> {
        parse(args).to_config(&Tables::default())
    }

    /// Every listener of a configuration, by name.
    fn listeners(c: &DaemonConfig) -> Vec<(String, Address)> {
        let mut all: Vec<(String, Address)> = c
            .sources
            .iter()
            .flat_map(|s| s.listeners())
            .map(|l| (l.name, l.address))
            .collect();
        all.push((c.query.0.name.clone(), c.query.0.address.clone()));
        if let Some((l, _)) = &c.http {
            all.push((l.name.clone(), l.address.clone()));
        }
        all
    }

    fn address(c: &DaemonConfig, name: &str) -> Address {
        listeners(c)
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no listener {name}"))
            .1
    }

    #[test]
    fn defaults_are_memlogds() {
        let c = config(&[]).unwrap();
        assert_eq!(c.ring.max_lines, 5000);
        assert_eq!(c.ring.max_entry_len, 1024);
        assert_eq!(c.ingest.max_line_len, 1024);
        assert_eq!(c.bind.socket_mode, 0o660);
        let (l, h) = c.http.as_ref().expect("HTTP is on by default");
        assert_eq!(
            l.address,
            Address::Inet(http::DEFAULT_ADDR.parse().unwrap())
        );
        assert!(l.optional, "the default address may be taken");
        assert_eq!(h.max_limit, http::DEFAULT_MAX_LIMIT);
        assert_eq!(h.max_body, 1 << 20);
        assert!(c.sinks.is_empty() && !c.daemonize && c.bind.handover.is_none());
        let names: Vec<String> = listeners(&c).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["log", "query", "http"]);
    }

    /// Parses a whole command line as `main` does.
    fn parse_argv(argv: &[OsString]) -> ServeArgs {
        let cli = crate::cli::Cli::try_parse_from(crate::cli::argv::rewrite(argv.to_vec()))
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        match cli.command {
            crate::cli::Command::Serve(a) => *a,
            other => panic!("{argv:?} is not serve: {other:?}"),
        }
    }

    #[test]
    fn daemonize_starts_the_same_daemon_with_the_sockets_handed_over() {
        let cases = [
            (
                "ringtail serve --socket-log /a --socket-query=/b --daemonize --max-lines 100 --echo",
                false,
            ),
            (
                "/sbin/memlogd -daemonize -fd-log 3 -fd-query=4 -max-lines 100 --echo",
                true,
            ),
            (
                "/usr/bin/ringtail -socket-log /a -daemonize=true -max-lines=100 --echo",
                false,
            ),
        ];
        for (argv, as_memlogd) in cases {
            let argv: Vec<OsString> = argv.split_whitespace().map(OsString::from).collect();
            assert!(parse_argv(&argv).daemonize);
            let mut child = relaunch_command_line(argv.clone());
            assert_eq!(child[0], argv[0], "the program name is kept");
            assert_eq!(
                child.get(1).is_some_and(|a| a == "serve"),
                !as_memlogd && argv[1] == "serve"
            );
            let handover = Handover {
                fds: vec![("log".into(), 5), ("query".into(), 6), ("http".into(), 8)],
                owned_files: vec![PathBuf::from("/a"), PathBuf::from("-max-lines odd")],
            };
            child.extend(daemonize::background_args(&handover, 9));
            let c = parse_argv(&child).to_config(&Tables::default()).unwrap();
            assert!(!c.daemonize);
            assert_eq!(c.bind.handover.as_ref(), Some(&handover));
            assert_eq!(c.ready_fd, Some(9));
            assert_eq!(c.ring.max_lines, 100);
            assert_eq!(c.sinks.len(), 1, "--echo");
        }
        // The handover flags are internal to --daemonize.
        let argv: Vec<OsString> = ["ringtail", "serve", "--daemonize", "--ready-fd", "3"]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(crate::cli::Cli::try_parse_from(argv).is_err());
    }

    #[test]
    fn memlogd_paths_and_overrides() {
        let c = config(&["--memlogd-paths", "--socket-query", "/x/q.sock"]).unwrap();
        assert_eq!(
            address(&c, "log"),
            Address::Path(PathBuf::from("/var/run/linuxkit-external-logging.sock"))
        );
        assert_eq!(
            address(&c, "query"),
            Address::Path(PathBuf::from("/x/q.sock"))
        );
        assert!(c.bind.socket_dir.is_none());
        let c = config(&["--fd-log", "3", "--fd-query", "-1", "--socket-query", "/q"]).unwrap();
        assert_eq!(address(&c, "log"), Address::Fd(3));
        assert_eq!(address(&c, "query"), Address::Path(PathBuf::from("/q")));
    }

    #[test]
    fn flag_values() {
        assert_eq!(
            parse_rate_limit("1000/1s"),
            Ok(RateLimit {
                lines: 1000,
                interval: Duration::from_secs(1)
            })
        );
        assert_eq!(
            parse_rate_limit("50/s").unwrap().interval,
            Duration::from_secs(1)
        );
        assert_eq!(
            parse_rate_limit("50/500ms").unwrap().interval,
            Duration::from_millis(500)
        );
        assert!(parse_rate_limit("0/1s").is_err());
        assert!(parse_rate_limit("x/1s").is_err());
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert!(parse_mode("0999").is_err());
        assert_eq!(parse_http("off"), Ok(HttpListen::Off));
        assert!(matches!(parse_http("127.0.0.1:1"), Ok(HttpListen::Addr(_))));
        assert!(parse_http("localhost").is_err());
        let a = parse(&[
            "--max-bytes",
            "1MiB",
            "--long-lines",
            "truncate",
            "--query-format",
            "text",
        ]);
        assert_eq!(a.max_bytes, Some(1 << 20));
        assert_eq!(a.long_lines, LongLines::Truncate);
        assert!(config(&["--max-lines", "2"]).is_err());
    }

    #[test]
    fn http_flags() {
        assert!(config(&["--http", "off"]).unwrap().http.is_none());
        let (l, h) = config(&["--http", "127.0.0.1:0", "--http-max-limit", "50"])
            .unwrap()
            .http
            .unwrap();
        assert!(!l.optional, "an address given must be bound");
        assert_eq!(l.address, Address::Inet("127.0.0.1:0".parse().unwrap()));
        assert_eq!((h.max_limit, h.default_limit), (50, 50));
        assert_eq!(h.loki.max_push_bytes, 32 << 20);
        let (_, h) = config(&["--loki-max-push", "4MiB", "--http-max-body", "64KiB"])
            .unwrap()
            .http
            .unwrap();
        assert_eq!(h.loki.max_push_bytes, 4 << 20);
        assert_eq!(h.max_body, 64 << 10);
        // Beyond loopback: a token or --http-insecure, nothing else.
        let e = config(&["--http", "0.0.0.0:7464"]).unwrap_err();
        assert!(e.contains("--http-token"), "{e}");
        assert!(config(&["--http", "0.0.0.0:7464", "--http-insecure"]).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "t0ken\n").unwrap();
        let f = file.to_str().unwrap();
        let (_, h) = config(&["--http", "0.0.0.0:7464", "--http-token", f])
            .unwrap()
            .http
            .unwrap();
        assert_eq!(h.token, Some(Token::new("t0ken").unwrap()));
        std::fs::write(&file, " \n").unwrap();
        let e = config(&["--http-token", f]).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = config(&["--http-token", "/nonexistent/t"]).unwrap_err();
        assert!(e.contains("cannot read the token file"), "{e}");
        assert!(parse_timeout("10s").is_ok() && parse_timeout("0s").is_err());
        // What --help prints as a default parses back to the same value.
        for d in [
            http::conn::DEFAULT_HEADER_TIMEOUT,
            http::conn::DEFAULT_IDLE_TIMEOUT,
            http::DEFAULT_TIMEOUT,
            Duration::from_millis(1500),
            Duration::from_secs(90),
            Duration::from_secs(7200),
        ] {
            let text = Timeout(d).to_string();
            assert_eq!(text.parse::<Timeout>(), Ok(Timeout(d)), "{text}");
        }
        assert_eq!(Timeout(Duration::from_secs(60)).to_string(), "1m");
    }
}
