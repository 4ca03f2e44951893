//! Forwarders: the sinks that ship entries to a central store (Grafana
//! Loki, a syslog server, AWS CloudWatch Logs), configured by
//! `--forward KIND=URL` or by `[[forward]]` tables of the config file.
//!
//! Each forwarder is one [`Forwarder`] sink under its own follower, so
//! everything the follower promises holds for it: a cursor file written
//! after each acknowledged batch (resumed after a restart with
//! `--ring-file`), retries with backoff while the ring holds the entries,
//! exact counts of what the ring evicted before it was shipped, and no
//! effect on ingest. The backends ([`LokiShipper`], [`SyslogShipper`],
//! [`CloudWatchShipper`]) add what each protocol needs to make a retry
//! safe (see their modules).
//!
//! # Where the cursor lives
//!
//! `cursor = PATH` in the table, else, when the ring is in a file,
//! `<ring file>.forward/<name>.cursor` (the ring's seqs survive a restart
//! only with a ring file, so only then is a cursor worth keeping); else
//! none: a daemon with the ring in memory starts each forwarder at the
//! ring's oldest entry, which is the first entry of a new ring.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::cloudwatch::sink::CloudWatchShipper;
use super::cloudwatch::{
    CloudWatchTarget, CredentialSource, CwBatchConfig, CwBatcher, NameKind, NameTemplate,
};
use super::http::{HttpClient, HttpOptions};
use super::loki::sink::{LokiShipper, DEFAULT_IN_FLIGHT};
use super::loki::{LabelRules, LokiAuth, LokiBatchConfig, LokiBatcher, LokiEncoding, LokiTarget};
use super::syslog::sink::{SyslogClient, SyslogShipper};
use super::syslog::{
    parse_syslog_url, RelpClient, RelpOptions, SyslogFormat, TcpOptions, TcpSyslogClient,
    UdpOptions, UdpSyslogClient,
};
use super::{Delivering, FollowOptions, Position, Sink, Start};
use crate::filter::{Filter, FilterBuilder};
use crate::ring::Read;

/// The config-file tables sinks read.
pub const TABLES: &[&str] = &["forward"];

/// Default batch caps: entries, message bytes, and how long a small batch
/// waits for more (promtail's and Alloy's 1 s wait; 1 MiB as Loki's and
/// CloudWatch's request sizes suggest).
pub const DEFAULT_BATCH_ENTRIES: usize = 10_000;
pub const DEFAULT_BATCH_BYTES: usize = 1 << 20;
pub const DEFAULT_BATCH_DELAY: Duration = Duration::from_secs(1);

/// A size: a number of bytes or text such as `1MiB`.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// One `[[forward]]` table. Exactly one of `loki`, `syslog`, `cloudwatch`
/// says the kind and where to.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ForwardTable {
    pub name: Option<String>,
    /// Loki's base URL or push URL.
    pub loki: Option<String>,
    /// `tcp://`, `udp://` or `relp://HOST:PORT`.
    pub syslog: Option<String>,
    /// The AWS region.
    pub cloudwatch: Option<String>,

    /// Which entries: source patterns (`*` wildcards), labels (each
    /// `name = value` must match), levels (any of them).
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub levels: Vec<String>,

    pub batch_entries: Option<usize>,
    batch_bytes: Option<Size>,
    pub batch_delay: Option<String>,
    /// The cursor file (see the module doc for the default).
    pub cursor: Option<PathBuf>,
    /// Where a forwarder with no cursor starts: `oldest` (default) or
    /// `next`.
    pub start: Option<String>,

    // Loki.
    pub tenant: Option<String>,
    pub bearer_token_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// `protobuf` (default), `json` or `json-gzip`.
    pub encoding: Option<String>,
    /// Labels every stream gets.
    #[serde(default)]
    pub static_labels: BTreeMap<String, String>,
    /// Origin labels never sent as stream labels.
    #[serde(default)]
    pub exclude_labels: Vec<String>,
    /// Pushes sent at once (default 1, which keeps streams in order; more
    /// for a Loki that takes entries out of order, for throughput).
    pub in_flight: Option<usize>,
    pub ca_file: Option<PathBuf>,

    // Syslog.
    pub hostname: Option<String>,

    // CloudWatch Logs.
    pub group: Option<String>,
    pub stream: Option<String>,
    pub endpoint: Option<String>,
    #[serde(default)]
    pub create_missing: bool,
    pub credentials_file: Option<PathBuf>,
    pub profile: Option<String>,
}

/// What the command line and the environment say besides the tables.
#[derive(Clone, Debug, Default)]
pub struct ForwardContext {
    /// `--ring-file`, for the default cursor location.
    pub ring_file: Option<PathBuf>,
}

/// `--forward KIND=URL` as a table.
pub fn table_of_flag(text: &str) -> Result<ForwardTable, String> {
    let (kind, url) = text.split_once('=').ok_or_else(|| {
        format!(
            "--forward {text:?}: write KIND=URL, such as loki=http://loki:3100, \
             syslog=tcp://HOST:514 or cloudwatch=eu-west-1"
        )
    })?;
    let mut t = ForwardTable::default();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match kind.trim() {
        "loki" => t.loki = Some(url.to_string()),
        "syslog" => t.syslog = Some(url.to_string()),
        "cloudwatch" => {
            t.cloudwatch = Some(url.to_string());
            t.group = env("RINGTAIL_CLOUDWATCH_GROUP");
            t.stream = env("RINGTAIL_CLOUDWATCH_STREAM");
            t.create_missing = env("RINGTAIL_CLOUDWATCH_CREATE")
                .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
        }
        other => {
            return Err(format!(
                "--forward {text:?}: unknown kind {other:?} (loki, syslog or cloudwatch)"
            ))
        }
    }
    Ok(t)
}

/// The forwarders of `--forward` flags and `[[forward]]` tables, each
/// checked (an error names the flag or the table and what to change).
pub fn forwarders(
    flags: &[String],
    tables: &[crate::cli::config::ConfigTable],
    context: &ForwardContext,
) -> Result<Vec<Box<dyn Sink>>, String> {
    // Each forwarder's table and how to word an error about it.
    type ErrorAt = Box<dyn Fn(&str) -> String>;
    let mut specs: Vec<(ForwardTable, ErrorAt)> = Vec::new();
    for f in flags {
        let t = table_of_flag(f)?;
        let f = f.clone();
        specs.push((t, Box::new(move |m: &str| format!("--forward {f}: {m}"))));
    }
    for table in tables {
        let t: ForwardTable = table.parse()?;
        let table = table.clone();
        specs.push((t, Box::new(move |m: &str| table.error(m))));
    }
    let mut out: Vec<Box<dyn Sink>> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (t, err) in specs {
        let kind = match (&t.loki, &t.syslog, &t.cloudwatch) {
            (Some(_), None, None) => "loki",
            (None, Some(_), None) => "syslog",
            (None, None, Some(_)) => "cloudwatch",
            _ => {
                return Err(err(
                    "give exactly one of loki = URL, syslog = URL or cloudwatch = REGION",
                ))
            }
        };
        // Unnamed forwarders are named after their kind, numbered when a
        // kind repeats.
        let name = match &t.name {
            Some(n) => n.clone(),
            None => {
                let same = names
                    .iter()
                    .filter(|n| *n == kind || n.starts_with(&format!("{kind}-")))
                    .count();
                if same == 0 {
                    kind.to_string()
                } else {
                    format!("{kind}-{}", same + 1)
                }
            }
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(err(&format!(
                "name {name:?}: use letters, digits, '-', '_' and '.' (it names the cursor file \
                 and the metrics)"
            )));
        }
        if names.contains(&name) {
            return Err(err(&format!(
                "a forwarder named {name:?} exists already; give each a distinct name"
            )));
        }
        names.push(name.clone());
        let sink = build(kind, name, t, context).map_err(|e| err(&e))?;
        out.push(Box::new(sink));
    }
    Ok(out)
}

fn build(
    kind: &str,
    name: String,
    t: ForwardTable,
    context: &ForwardContext,
) -> Result<Forwarder, String> {
    let max_entries = t.batch_entries.unwrap_or(DEFAULT_BATCH_ENTRIES).max(1);
    let max_bytes = match &t.batch_bytes {
        None => DEFAULT_BATCH_BYTES,
        Some(Size::Bytes(n)) => usize::try_from(*n).unwrap_or(usize::MAX),
        Some(Size::Text(s)) => crate::cli::parse_size(s)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .map_err(|e| format!("batch-bytes: {e}"))?,
    }
    .max(1);
    let max_delay = match &t.batch_delay {
        None => DEFAULT_BATCH_DELAY,
        Some(s) => Duration::from_nanos(
            crate::timefmt::parse_duration(s).map_err(|e| format!("batch-delay {s:?}: {e}"))?,
        ),
    };
    let start = match t.start.as_deref() {
        None | Some("oldest") => Start::Oldest,
        Some("next") => Start::Next,
        Some(other) => return Err(format!("start {other:?}: write oldest or next")),
    };
    let cursor_file = t.cursor.clone().or_else(|| {
        context
            .ring_file
            .as_deref()
            .map(|f| default_cursor_dir(f).join(format!("{name}.cursor")))
    });
    let filter = filter_of(&t)?;
    let http_options = || HttpOptions {
        ca_file: t.ca_file.clone(),
        ..HttpOptions::default()
    };
    // Where it ships, for people (set by each kind below).
    let shown: String;
    // Follower batches hold this many pushes' worth (Loki: its in-flight).
    let mut read_scale = 1;
    let backend = match kind {
        "loki" => {
            let url = t.loki.as_deref().unwrap_or_default();
            let auth = match (&t.bearer_token_file, &t.username, &t.password_file) {
                (Some(f), None, None) => Some(LokiAuth::Bearer(read_secret(f)?)),
                (None, Some(u), Some(f)) => Some(LokiAuth::Basic {
                    username: u.clone(),
                    password: read_secret(f)?,
                }),
                (None, None, None) => None,
                _ => {
                    return Err("give bearer-token-file, or username with password-file, \
                                not both"
                        .into())
                }
            };
            let target = LokiTarget::new(url, t.tenant.as_deref(), auth.as_ref())
                .map_err(|e| e.to_string())?;
            shown = public_url(target.push_url());
            let encoding = match t.encoding.as_deref() {
                None | Some("protobuf") => LokiEncoding::Protobuf,
                Some("json") => LokiEncoding::Json { gzip: false },
                Some("json-gzip") => LokiEncoding::Json { gzip: true },
                Some(other) => {
                    return Err(format!(
                        "encoding {other:?}: write protobuf, json or json-gzip"
                    ))
                }
            };
            // The batch caps are each push's (a 413 lowers them); the
            // follower reads as many pushes' worth at once as may be in
            // flight, so that the next push can be sent while Loki takes
            // the one before.
            let in_flight = match t.in_flight {
                None => DEFAULT_IN_FLIGHT,
                Some(0) => return Err("in-flight 0: at least one push must be sent".into()),
                Some(n) => n,
            };
            read_scale = in_flight;
            let batcher = LokiBatcher::new(LokiBatchConfig {
                encoding,
                max_entries,
                max_bytes,
                labels: LabelRules {
                    static_labels: t
                        .static_labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    exclude: t.exclude_labels.clone(),
                    ..LabelRules::default()
                },
                ..LokiBatchConfig::default()
            });
            let client = HttpClient::new(&http_options()).map_err(|e| e.to_string())?;
            Backend::Loki(LokiShipper::new(client, target, batcher).with_in_flight(in_flight))
        }
        "syslog" => {
            let url = t.syslog.as_deref().unwrap_or_default();
            let (transport, addr) = parse_syslog_url(url).map_err(|e| e.to_string())?;
            shown = format!("{}://{addr}", transport.scheme());
            let hostname = t
                .hostname
                .clone()
                .unwrap_or_else(super::syslog::rfc5424::local_hostname);
            let format = SyslogFormat::new(&hostname);
            use super::syslog::SyslogTransport as T;
            let client = match transport {
                T::Tcp => SyslogClient::Tcp(TcpSyslogClient::new(addr, TcpOptions::default())),
                T::Udp => SyslogClient::Udp(UdpSyslogClient::new(addr, UdpOptions::default())),
                T::Relp => SyslogClient::Relp(RelpClient::new(addr, RelpOptions::default())),
            };
            Backend::Syslog(SyslogShipper::new(format, client))
        }
        _ => {
            let region = t.cloudwatch.as_deref().unwrap_or_default();
            let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
            let endpoint = t
                .endpoint
                .clone()
                .or_else(|| env("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"))
                .or_else(|| env("AWS_ENDPOINT_URL"));
            let file = t.credentials_file.clone();
            let profile = t.profile.clone();
            let credentials = CredentialSource::from_vars(|k| match k {
                "AWS_SHARED_CREDENTIALS_FILE" if file.is_some() => {
                    file.as_ref().map(|f| f.display().to_string())
                }
                "AWS_PROFILE" if profile.is_some() => profile.clone(),
                // A file or profile in the table wins over keys in the
                // environment.
                "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" | "AWS_SESSION_TOKEN"
                    if file.is_some() || profile.is_some() =>
                {
                    None
                }
                _ => env(k),
            });
            let mut target = CloudWatchTarget::new(region, endpoint.as_deref(), credentials)
                .map_err(|e| e.to_string())?;
            shown = public_url(target.endpoint());
            target.create_missing = t.create_missing;
            let group =
                NameTemplate::parse(t.group.as_deref().unwrap_or("ringtail"), NameKind::LogGroup)
                    .map_err(|e| format!("group: {e}"))?;
            let stream = NameTemplate::parse(
                t.stream.as_deref().unwrap_or("{{.Source}}"),
                NameKind::LogStream,
            )
            .map_err(|e| format!("stream: {e}"))?;
            let mut config = CwBatchConfig::new(group, stream);
            config.max_events = config.max_events.min(max_entries);
            let client = HttpClient::new(&http_options()).map_err(|e| e.to_string())?;
            Backend::CloudWatch(CloudWatchShipper::new(
                client,
                target,
                CwBatcher::new(config),
            ))
        }
    };
    Ok(Forwarder {
        name: format!("{kind}:{name}"),
        kind: kind.to_string(),
        target: shown,
        options: FollowOptions {
            start,
            cursor_file,
            filter,
            max_entries: max_entries.saturating_mul(read_scale),
            max_bytes: max_bytes.saturating_mul(read_scale),
            max_delay,
        },
        backend,
    })
}

/// `uri` without user information (`user:password@`), for display.
fn public_url(uri: &http::Uri) -> String {
    let mut out = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.host().unwrap_or_default()
    );
    if let Some(port) = uri.port_u16() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(uri.path());
    out
}

/// `<ring file>.forward/`: where forwarders keep their cursors by default.
pub fn default_cursor_dir(ring_file: &Path) -> PathBuf {
    let mut dir = ring_file.as_os_str().to_owned();
    dir.push(".forward");
    PathBuf::from(dir)
}

fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the secret file {}: {e}", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("the secret file {} is empty", path.display()));
    }
    Ok(text.to_string())
}

fn filter_of(t: &ForwardTable) -> Result<Filter, String> {
    let mut b = FilterBuilder::new();
    for s in &t.sources {
        b = b.source(s.clone());
    }
    for (k, v) in &t.labels {
        b = b.label(k.clone(), v.clone());
    }
    for l in &t.levels {
        let level = crate::entry::Level::parse(l).ok_or_else(|| {
            format!("levels: {l:?} is not a level (emerg, alert, crit, error, warning, notice, info, debug)")
        })?;
        b = b.label("level", level.as_str());
    }
    b.build().map_err(|e| e.to_string())
}

/// How a forwarder sends.
enum Backend {
    Loki(LokiShipper),
    Syslog(SyslogShipper),
    CloudWatch(CloudWatchShipper),
}

/// One forwarder: a [`Sink`] with its backend.
pub struct Forwarder {
    /// `KIND:NAME`.
    name: String,
    /// `loki`, `syslog` or `cloudwatch`.
    kind: String,
    /// Where it ships: Loki's push URL, `relp://HOST:PORT`, the CloudWatch
    /// endpoint; never credentials.
    target: String,
    options: FollowOptions,
    backend: Backend,
}

impl Forwarder {
    /// Its follow options (for tests and `--check`).
    pub fn follow_options(&self) -> &FollowOptions {
        &self.options
    }
}

impl Sink for Forwarder {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn kind(&self) -> String {
        self.kind.clone()
    }

    fn target(&self) -> String {
        self.target.clone()
    }

    fn options(&self) -> FollowOptions {
        if let Some(dir) = self.options.cursor_file.as_deref().and_then(Path::parent) {
            // Best effort: a directory that cannot be made shows as the
            // cursor write's own error.
            let _ = std::fs::create_dir_all(dir);
        }
        self.options.clone()
    }

    fn resuming(&mut self, ring: &crate::ring::Ring, from: Position) {
        if let Backend::Loki(b) = &mut self.backend {
            b.replay(ring, from.next_seq, &self.options.filter);
        }
    }

    fn deliver<'a>(&'a mut self, batch: &'a [Read<'a>], _next: Position) -> Delivering<'a> {
        Box::pin(async move {
            match &mut self.backend {
                Backend::Loki(b) => b.deliver(batch).await,
                Backend::Syslog(b) => b.deliver(batch).await,
                Backend::CloudWatch(b) => b.deliver(batch).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(flag: &str, ring_file: Option<&str>) -> Result<Box<dyn Sink>, String> {
        let ctx = ForwardContext {
            ring_file: ring_file.map(PathBuf::from),
        };
        forwarders(&[flag.to_string()], &[], &ctx).map(|mut v| v.remove(0))
    }

    #[test]
    fn flags_make_forwarders() {
        let s = one("loki=http://127.0.0.1:3100", Some("/var/lib/r/ring")).unwrap();
        assert_eq!(s.name(), "loki:loki");
        let o = s.options();
        assert_eq!(
            o.cursor_file.as_deref(),
            Some(Path::new("/var/lib/r/ring.forward/loki.cursor"))
        );
        assert_eq!(o.start, Start::Oldest);
        // Follower batches hold the pushes that may be in flight at once.
        assert_eq!(o.max_entries, DEFAULT_BATCH_ENTRIES * DEFAULT_IN_FLIGHT);
        assert_eq!(
            (s.kind(), s.target()),
            (
                "loki".to_string(),
                "http://127.0.0.1:3100/loki/api/v1/push".to_string()
            )
        );
        let s = one("loki=https://u:secret@loki.example/prefix", None).unwrap();
        assert_eq!(s.target(), "https://loki.example/prefix/loki/api/v1/push");
        let s = one("syslog=relp://127.0.0.1:2514", None).unwrap();
        assert_eq!(s.name(), "syslog:syslog");
        assert_eq!(s.target(), "relp://127.0.0.1:2514");
        assert!(s.options().cursor_file.is_none(), "no ring file, no cursor");
        assert!(one("cloudwatch=eu-west-1", None).is_ok());
        for bad in [
            "loki",
            "kafka=x",
            "loki=ftp://x",
            "syslog=http://x:1",
            "cloudwatch=EU WEST",
        ] {
            assert!(one(bad, None).is_err(), "{bad}");
        }
        let both = forwarders(
            &["loki=http://a:1".into(), "loki=http://b:1".into()],
            &[],
            &ForwardContext::default(),
        )
        .unwrap();
        let names: Vec<String> = both.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["loki:loki", "loki:loki-2"]);
    }
}
