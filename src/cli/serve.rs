//! `ringtail serve`: the daemon's flags, and their translation into a
//! [`DaemonConfig`].
//!
//! memlogd's flags (`-max-lines`, `-socket-log`, `-socket-query`, `-fd-log`,
//! `-fd-query`, `-max-line-len`, `-daemonize`) are the same flags written
//! with two dashes; [`super::argv`] rewrites the single-dash forms.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::ring::{default_max_bytes, RingConfig};
use crate::serve::daemon::{self, DaemonConfig, Handover, SocketSpec};
use crate::serve::http::{self, HttpConfig, Token};
use crate::serve::memlogq::{QueryConfig, QueryFormat};
use crate::sources::{pace, IngestConfig, LongLines, RateLimit};

/// The smallest longest-entry the ring is opened with (see `to_config`).
const MIN_ENTRY_LEN: usize = 1024;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Entries kept in the ring; the oldest go first (memlogd's -max-lines).
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub max_lines: u64,

    /// Message bytes kept in the ring (e.g. 64MiB); whichever of
    /// --max-lines and --max-bytes is reached first evicts. Default: 120
    /// bytes per line, at least 64 KiB.
    #[arg(long, value_name = "SIZE", value_parser = super::parse_size)]
    pub max_bytes: Option<u64>,

    /// Longest entry, in bytes (memlogd's -max-line-len); longer lines are
    /// split into several entries flagged `partial`, or cut with
    /// --long-lines truncate.
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    pub max_line_len: usize,

    /// What happens to a line longer than --max-line-len.
    #[arg(long, value_enum, value_name = "MODE", default_value = "split")]
    pub long_lines: LongLines,

    /// The most sources (registered fds) read at once, and the size of the
    /// ring's table of source names.
    #[arg(long, value_name = "N", default_value_t = 65536)]
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
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "json")]
    pub query_format: QueryFormat,

    /// Use memlogd's socket paths (/var/run/linuxkit-external-logging.sock
    /// and /var/run/memlogdq.sock) instead of ringtail's own directory.
    #[arg(long)]
    pub memlogd_paths: bool,

    /// The fd-passing ingest socket (memlogd's -socket-log). Default:
    /// log.sock in /run/ringtail (root), $XDG_RUNTIME_DIR/ringtail or
    /// /tmp/ringtail-$UID.
    #[arg(long, value_name = "PATH")]
    pub socket_log: Option<PathBuf>,

    /// The query socket (memlogd's -socket-query). Default: query.sock in
    /// the same directory as the default ingest socket.
    #[arg(long, value_name = "PATH")]
    pub socket_query: Option<PathBuf>,

    /// Use this inherited, already-bound datagram socket as the ingest
    /// socket (memlogd's -fd-log; overrides --socket-log; -1 means none).
    #[arg(long, value_name = "FD", allow_negative_numbers = true)]
    pub fd_log: Option<i32>,

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

    /// Per-source rate limit LINES/INTERVAL (e.g. 1000/1s): the excess is
    /// dropped and counted in one "suppressed" entry per interval. Off by
    /// default.
    #[arg(long, value_name = "LINES/INTERVAL", value_parser = parse_rate_limit)]
    pub rate_limit: Option<RateLimit>,

    /// During a burst, fd sources pause reading while a query-socket
    /// follower that reads at full speed is more than half a ring behind,
    /// for at most this share of time in percent (the pipe holds the
    /// writer's lines meanwhile). A follower whose client stops reading
    /// stops counting after 100 ms. 0 turns pacing off: followers then get
    /// gaps as soon as the ring laps them.
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

    /// How long a non-streaming HTTP request may take (e.g. 30s); longer
    /// ones get 408.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub http_timeout: Duration,

    /// Bind the sockets, then go to the background; the command returns
    /// once the daemon serves (memlogd's -daemonize).
    #[arg(long)]
    pub daemonize: bool,

    /// Internal, set by --daemonize on the background daemon it starts:
    /// write one byte to this inherited fd once serving.
    #[arg(long, value_name = "FD", hide = true, conflicts_with = "daemonize")]
    pub ready_fd: Option<i32>,

    /// Internal (--daemonize): an inherited, listening TCP socket to serve
    /// HTTP on, instead of binding --http.
    #[arg(long, value_name = "FD", hide = true, requires = "ready_fd")]
    pub fd_http: Option<i32>,

    /// Internal (--daemonize): a socket file the process that started this
    /// one created; removed at shutdown. Repeated.
    #[arg(long, value_name = "PATH", hide = true, requires = "ready_fd")]
    pub owned_socket: Vec<PathBuf>,
}

/// The command line that starts this daemon again in the background for
/// `--daemonize` ([`DaemonConfig::relaunch`]), from `argv` (the program's
/// own, program name first): the flags clap saw, without those that choose
/// the sockets (`--socket-log`, `--socket-query`, `--fd-log`, `--fd-query`,
/// `--memlogd-paths`), `--daemonize`, and the hidden handover flags; the
/// daemon appends the fds it hands over. The program name is kept, so the
/// background daemon shows under the same name (`memlogd` included).
pub fn relaunch_command_line(argv: Vec<OsString>) -> Vec<OsString> {
    const FLAGS: &[&str] = &["--daemonize", "--memlogd-paths"];
    const WITH_VALUE: &[&str] = &[
        "--socket-log",
        "--socket-query",
        "--fd-log",
        "--fd-query",
        "--ready-fd",
        "--fd-http",
        "--owned-socket",
    ];
    let mut rewritten = super::argv::rewrite(argv).into_iter();
    let program = rewritten
        .next()
        .unwrap_or_else(|| OsString::from("ringtail"));
    // clap saw `PROGRAM serve FLAGS...`. serve takes no positional
    // argument, so every other token is a flag or the value of the flag
    // before it, and a value never looks like a flag: clap refuses
    // `--ring-file --daemonize`, and `--ring-file=--daemonize` is one token.
    let mut kept = Vec::new();
    let mut tokens = rewritten.skip_while(|a| a == "serve");
    while let Some(arg) = tokens.next() {
        let bytes = arg.as_encoded_bytes();
        if FLAGS.iter().any(|f| bytes == f.as_bytes()) {
            continue;
        }
        if WITH_VALUE.iter().any(|f| bytes == f.as_bytes()) {
            tokens.next();
            continue;
        }
        let with_equals =
            |f: &&str| bytes.starts_with(f.as_bytes()) && bytes.get(f.len()) == Some(&b'=');
        if WITH_VALUE.iter().any(with_equals) {
            continue;
        }
        kept.push(arg);
    }
    // The background daemon's command line goes through `argv::rewrite`
    // again: give it what yields `serve` plus the kept flags (which are in
    // the form `rewrite` leaves alone).
    let personality = super::argv::rewrite(vec![program.clone()]);
    let mut out = match &personality[1..] {
        [] => vec![program, OsString::from("serve")],
        // Invoked as memlogd: `rewrite` puts `serve --memlogd-paths` back.
        [serve, memlogd_paths] if serve == "serve" && memlogd_paths == "--memlogd-paths" => {
            vec![program]
        }
        _ => vec![OsString::from("ringtail"), OsString::from("serve")],
    };
    out.extend(kept);
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
    /// The daemon configuration these flags describe.
    pub fn to_config(&self) -> Result<DaemonConfig, String> {
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
        let query = QueryConfig {
            format: self.query_format,
            ..QueryConfig::default()
        };

        let uses_default_dir = self.socket_log.is_none() || self.socket_query.is_none();
        let fd = |v: Option<i32>| v.filter(|&n| n >= 0);
        let log_socket = match fd(self.fd_log) {
            Some(n) => SocketSpec::Fd(n),
            None => SocketSpec::Path(
                self.socket_log
                    .clone()
                    .unwrap_or_else(|| super::default_log_socket(self.memlogd_paths)),
            ),
        };
        let query_socket = match fd(self.fd_query) {
            Some(n) => SocketSpec::Fd(n),
            None => SocketSpec::Path(
                self.socket_query
                    .clone()
                    .unwrap_or_else(|| super::default_query_socket(self.memlogd_paths)),
            ),
        };
        let socket_dir = (uses_default_dir && !self.memlogd_paths).then(|| {
            let root = rustix::process::geteuid().is_root();
            (
                super::default_socket_dir(),
                if root { 0o755 } else { 0o700 },
            )
        });
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
                Some(http::ListenConfig {
                    addr,
                    explicit,
                    config: HttpConfig {
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
                        timeout: self.http_timeout,
                        max_line_len: self.max_line_len,
                        long_lines: self.long_lines,
                        ..HttpConfig::default()
                    },
                })
            }
        };
        let handover = self.ready_fd.map(|ready_fd| Handover {
            ready_fd,
            http_fd: self.fd_http,
            owned_sockets: self.owned_socket.clone(),
        });
        Ok(DaemonConfig {
            ring,
            ingest,
            query,
            log_socket,
            query_socket,
            socket_mode: self.socket_mode,
            socket_dir,
            systemd_activation: true,
            echo: self.echo,
            http,
            daemonize: self.daemonize,
            // Filled in by `main`, which knows the program's command line.
            relaunch: Vec::new(),
            handover,
            log_flag: "--socket-log".into(),
            query_flag: "--socket-query".into(),
        })
    }
}

/// Runs `ringtail serve`; returns the exit code.
pub fn main(args: ServeArgs) -> i32 {
    let mut config = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            super::print_error(e);
            return 2;
        }
    };
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

    #[test]
    fn defaults_are_memlogds() {
        let a = parse(&[]);
        let c = a.to_config().unwrap();
        assert_eq!(c.ring.max_lines, 5000);
        assert_eq!(c.ring.max_entry_len, 1024);
        assert_eq!(c.ingest.max_line_len, 1024);
        assert_eq!(c.socket_mode, 0o660);
        let h = c.http.expect("HTTP is on by default");
        assert_eq!(h.addr.to_string(), http::DEFAULT_ADDR);
        assert!(!h.explicit);
        assert_eq!(h.config.max_limit, http::DEFAULT_MAX_LIMIT);
        assert_eq!(h.config.max_body, 1 << 20);
        assert!(!c.echo && !c.daemonize && c.handover.is_none());
    }

    /// Parses a whole command line as `main` does.
    fn parse_argv(argv: &[OsString]) -> ServeArgs {
        let cli = crate::cli::Cli::try_parse_from(crate::cli::argv::rewrite(argv.to_vec()))
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        match cli.command {
            crate::cli::Command::Serve(a) => a,
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
            assert_eq!(child.get(1).is_some_and(|a| a == "serve"), !as_memlogd);
            let handover = Handover {
                ready_fd: 9,
                http_fd: Some(8),
                owned_sockets: vec![PathBuf::from("/a"), PathBuf::from("-max-lines odd")],
            };
            child.extend(daemon::background_args(5, 6, &handover));
            let c = parse_argv(&child).to_config().unwrap();
            assert!(!c.daemonize);
            assert_eq!(c.log_socket, SocketSpec::Fd(5));
            assert_eq!(c.query_socket, SocketSpec::Fd(6));
            assert_eq!(c.handover.as_ref(), Some(&handover));
            assert_eq!(c.ring.max_lines, 100);
            assert!(c.echo);
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
        let c = parse(&["--memlogd-paths", "--socket-query", "/x/q.sock"])
            .to_config()
            .unwrap();
        assert_eq!(
            c.log_socket,
            SocketSpec::Path(PathBuf::from("/var/run/linuxkit-external-logging.sock"))
        );
        assert_eq!(c.query_socket, SocketSpec::Path(PathBuf::from("/x/q.sock")));
        assert!(c.socket_dir.is_none());
        let c = parse(&["--fd-log", "3", "--fd-query", "-1", "--socket-query", "/q"])
            .to_config()
            .unwrap();
        assert_eq!(c.log_socket, SocketSpec::Fd(3));
        assert_eq!(c.query_socket, SocketSpec::Path(PathBuf::from("/q")));
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
        assert!(parse(&["--max-lines", "2"]).to_config().is_err());
    }

    #[test]
    fn http_flags() {
        assert!(parse(&["--http", "off"])
            .to_config()
            .unwrap()
            .http
            .is_none());
        let h = parse(&["--http", "127.0.0.1:0", "--http-max-limit", "50"])
            .to_config()
            .unwrap()
            .http
            .unwrap();
        assert!(h.explicit);
        assert_eq!(h.addr.port(), 0);
        assert_eq!((h.config.max_limit, h.config.default_limit), (50, 50));
        assert_eq!(h.config.loki.max_push_bytes, 32 << 20);
        let h = parse(&["--loki-max-push", "4MiB", "--http-max-body", "64KiB"])
            .to_config()
            .unwrap()
            .http
            .unwrap();
        assert_eq!(h.config.loki.max_push_bytes, 4 << 20);
        assert_eq!(h.config.max_body, 64 << 10);
        // Beyond loopback: a token or --http-insecure, nothing else.
        let e = parse(&["--http", "0.0.0.0:7464"]).to_config().unwrap_err();
        assert!(e.contains("--http-token"), "{e}");
        assert!(parse(&["--http", "0.0.0.0:7464", "--http-insecure"])
            .to_config()
            .is_ok());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "t0ken\n").unwrap();
        let f = file.to_str().unwrap();
        let h = parse(&["--http", "0.0.0.0:7464", "--http-token", f])
            .to_config()
            .unwrap()
            .http
            .unwrap();
        assert_eq!(h.config.token, Some(Token::new("t0ken").unwrap()));
        std::fs::write(&file, " \n").unwrap();
        let e = parse(&["--http-token", f]).to_config().unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = parse(&["--http-token", "/nonexistent/t"])
            .to_config()
            .unwrap_err();
        assert!(e.contains("cannot read the token file"), "{e}");
        assert!(parse_timeout("10s").is_ok() && parse_timeout("0s").is_err());
    }
}
