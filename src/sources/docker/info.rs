//! The logging-plugin API's JSON bodies, and what ringtail makes of a
//! container's `Info`: its source name, its labels, Docker's etwlogs line.
//!
//! Bodies are parsed at the edge into types ([`StartLogging`],
//! [`StopLogging`], [`ReadLogs`]) and answers are rendered from types
//! ([`ErrAnswer`], [`ActivateAnswer`], [`CapabilitiesAnswer`]). Field names
//! are Go's, as dockerd's `encoding/json` writes them; dockerd writes a nil
//! map or slice as `null`, which is read as empty. Unknown fields are
//! ignored (newer daemons may add some).
//!
//! # What a container's entries carry
//!
//! [`ContainerMeta::from_info`] turns `Info` into the origin of the
//! container's entries:
//!
//! | label | value |
//! |-------|-------|
//! | `container_id` | the full 64-hex id |
//! | `container_name` | the name without its leading `/` |
//! | `image_name` | the image as given to `docker run` (`bb:latest`) |
//! | `image_id` | the full image id (`sha256:...`) |
//! | `stream` | `stdout` or `stderr` ([`ContainerMeta::origin`]) |
//! | selected | what the log-opts `labels`, `labels-regex`, `env`, `env-regex` select |
//!
//! The source name is the `tag` log-opt rendered ([`super::tag`]; default
//! `{{.Name}}`). Selection follows Docker's `Info.ExtraAttributes`:
//! `labels` and `env` are comma-separated names, `labels-regex` and
//! `env-regex` are regular expressions searched anywhere in the name (Go's
//! `MatchString`; the `regex` crate's syntax is RE2's, as Go's is), and a
//! later option overrides an earlier one for the same key. Two things
//! differ on purpose: a selected key is rewritten to a label name LogQL can
//! query (every character outside `[A-Za-z0-9_]` becomes `_`, and a
//! leading digit gets a `_` before it: `com.example.team` becomes
//! `com_example_team`), and a selected key that collides with one of the
//! five built-in labels above is dropped (the built-in one is what filters
//! and the etwlogs line rely on).
//!
//! Log-opts that neither ringtail nor dockerd knows are refused when the
//! container starts, as Docker's own drivers refuse them (a misspelt
//! `lables` must not be silently ignored). dockerd itself reads `mode`,
//! `max-buffer-size` and the `cache-*` options of its dual-logging cache
//! and passes them on too; they are accepted and left to dockerd.
//!
//! # Docker's etwlogs message
//!
//! [`write_etw_message`] renders, byte for byte, the message that Docker's
//! Windows `etwlogs` driver builds with
//! `fmt.Sprintf("container_name: %s, image_name: %s, container_id: %s, image_id: %s, source: %s, log: %s", ...)`
//! from `info.Name()` (no leading `/`), `ContainerImageName`,
//! `ContainerID`, `ContainerImageID`, the stream and the line: Go's `%s`
//! copies strings and byte slices verbatim, and so does this function. It
//! adds no newline (an ETW event is not a line) and escapes nothing; a
//! line-oriented output that must keep one entry per line has to escape
//! what it needs on top of it. The driver then hands the message to
//! `EventWriteString` as UTF-16: invalid UTF-8 becomes U+FFFD there, and a
//! message containing NUL is refused by Go's `UTF16FromString` (the event
//! is lost). Those steps belong to ETW, not to the message.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::tag::{TagError, TagTemplate};
use crate::entry::{Origin, Stream};
use crate::ring::MAX_SOURCE_LEN;

/// What dockerd tells a plugin about a container (`logger.Info`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// The `--log-opt` map.
    #[serde(rename = "Config", default, deserialize_with = "null_as_empty")]
    pub config: BTreeMap<String, String>,
    /// 64 hex digits.
    #[serde(rename = "ContainerID", default, deserialize_with = "null_as_empty")]
    pub container_id: String,
    /// With a leading `/` (`/web`).
    #[serde(rename = "ContainerName", default, deserialize_with = "null_as_empty")]
    pub container_name: String,
    #[serde(
        rename = "ContainerEntrypoint",
        default,
        deserialize_with = "null_as_empty"
    )]
    pub container_entrypoint: String,
    #[serde(rename = "ContainerArgs", default, deserialize_with = "null_as_empty")]
    pub container_args: Vec<String>,
    /// `sha256:` and 64 hex digits.
    #[serde(
        rename = "ContainerImageID",
        default,
        deserialize_with = "null_as_empty"
    )]
    pub container_image_id: String,
    /// As given to `docker run`.
    #[serde(
        rename = "ContainerImageName",
        default,
        deserialize_with = "null_as_empty"
    )]
    pub container_image_name: String,
    /// RFC 3339, as Go writes a `time.Time`; kept as text.
    #[serde(
        rename = "ContainerCreated",
        default,
        deserialize_with = "null_as_empty"
    )]
    pub container_created: String,
    /// `KEY=value` strings.
    #[serde(rename = "ContainerEnv", default, deserialize_with = "null_as_empty")]
    pub container_env: Vec<String>,
    #[serde(
        rename = "ContainerLabels",
        default,
        deserialize_with = "null_as_empty"
    )]
    pub container_labels: BTreeMap<String, String>,
    /// Empty for plugins.
    #[serde(rename = "LogPath", default, deserialize_with = "null_as_empty")]
    pub log_path: String,
    /// `docker`.
    #[serde(rename = "DaemonName", default, deserialize_with = "null_as_empty")]
    pub daemon_name: String,
}

/// Reads JSON `null` (Go's nil map or slice) as the empty value.
fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Info {
    /// The container name without its leading `/` (Docker's `Info.Name()`).
    pub fn name(&self) -> &str {
        self.container_name
            .strip_prefix('/')
            .unwrap_or(&self.container_name)
    }
}

/// `/LogDriver.StartLogging`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartLogging {
    /// The FIFO dockerd created (`/run/docker/logging/<id>`).
    #[serde(rename = "File")]
    pub file: PathBuf,
    #[serde(rename = "Info")]
    pub info: Info,
}

/// `/LogDriver.StopLogging`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopLogging {
    #[serde(rename = "File")]
    pub file: PathBuf,
}

/// `/LogDriver.ReadLogs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadLogs {
    pub info: Info,
    pub config: ReadConfig,
}

/// What `docker logs` asked for. Times are ns since the Unix epoch;
/// both bounds are inclusive, as dockerd's own check is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadConfig {
    /// `--since`: entries before it are skipped; `None` when not given.
    pub since: Option<u64>,
    /// `--until`: the answer ends at the first entry after it; `None` when
    /// not given.
    pub until: Option<u64>,
    /// `--tail N`: only the last N lines before following; `None` is all
    /// (`-1` on the wire).
    pub tail: Option<u64>,
    /// `-f`: keep the answer open and send new lines as they come.
    pub follow: bool,
}

/// The wire form of [`ReadLogs`].
#[derive(Deserialize)]
struct ReadLogsWire {
    #[serde(rename = "Info", default)]
    info: Info,
    #[serde(rename = "Config", default)]
    config: ReadConfigWire,
}

#[derive(Deserialize, Default)]
struct ReadConfigWire {
    #[serde(rename = "Since", default, deserialize_with = "null_as_empty")]
    since: String,
    #[serde(rename = "Until", default, deserialize_with = "null_as_empty")]
    until: String,
    #[serde(rename = "Tail", default)]
    tail: i64,
    #[serde(rename = "Follow", default)]
    follow: bool,
}

/// A request body that is not what the call expects.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the {call} body is not valid JSON for this call: {source}")]
    Json {
        call: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the {call} body has no {field}")]
    Missing {
        call: &'static str,
        field: &'static str,
    },
    #[error("the {call} File {file:?} is not an absolute path")]
    RelativeFile { call: &'static str, file: PathBuf },
    #[error("ReadLogs Config.{field} {value:?} is not an RFC 3339 time: {reason}")]
    BadTime {
        field: &'static str,
        value: String,
        reason: String,
    },
}

fn parse_json<'a, T: Deserialize<'a>>(call: &'static str, body: &'a [u8]) -> Result<T, BodyError> {
    serde_json::from_slice(body).map_err(|source| BodyError::Json { call, source })
}

fn check_file(call: &'static str, file: &std::path::Path) -> Result<(), BodyError> {
    if file.as_os_str().is_empty() {
        return Err(BodyError::Missing {
            call,
            field: "File",
        });
    }
    if !file.is_absolute() {
        return Err(BodyError::RelativeFile {
            call,
            file: file.to_path_buf(),
        });
    }
    Ok(())
}

fn check_container_id(call: &'static str, info: &Info) -> Result<(), BodyError> {
    if info.container_id.is_empty() {
        return Err(BodyError::Missing {
            call,
            field: "Info.ContainerID",
        });
    }
    Ok(())
}

impl StartLogging {
    pub fn parse(body: &[u8]) -> Result<StartLogging, BodyError> {
        let req: StartLogging = parse_json("StartLogging", body)?;
        check_file("StartLogging", &req.file)?;
        check_container_id("StartLogging", &req.info)?;
        Ok(req)
    }
}

impl StopLogging {
    pub fn parse(body: &[u8]) -> Result<StopLogging, BodyError> {
        let req: StopLogging = parse_json("StopLogging", body)?;
        check_file("StopLogging", &req.file)?;
        Ok(req)
    }
}

impl ReadLogs {
    pub fn parse(body: &[u8]) -> Result<ReadLogs, BodyError> {
        let wire: ReadLogsWire = parse_json("ReadLogs", body)?;
        check_container_id("ReadLogs", &wire.info)?;
        let c = wire.config;
        Ok(ReadLogs {
            info: wire.info,
            config: ReadConfig {
                since: parse_go_time("Since", &c.since)?,
                until: parse_go_time("Until", &c.until)?,
                tail: u64::try_from(c.tail).ok(),
                follow: c.follow,
            },
        })
    }
}

/// A Go `time.Time` as JSON: RFC 3339 with optional fraction and offset;
/// the zero time (`0001-01-01T00:00:00Z`) or an empty string means "not
/// given". A time before 1970 counts as the epoch.
fn parse_go_time(field: &'static str, s: &str) -> Result<Option<u64>, BodyError> {
    if s.is_empty() {
        return Ok(None);
    }
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| BodyError::BadTime {
        field,
        value: s.to_string(),
        reason: e.to_string(),
    })?;
    if t == time::macros::datetime!(0001-01-01 0:00 UTC) {
        return Ok(None);
    }
    let ns = t.unix_timestamp_nanos();
    Ok(Some(u64::try_from(ns.max(0)).unwrap_or(u64::MAX)))
}

/// The answer to a call that succeeded (`{"Err":""}`) or failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrAnswer {
    #[serde(rename = "Err")]
    pub err: String,
}

/// `/Plugin.Activate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActivateAnswer {
    #[serde(rename = "Implements")]
    pub implements: [&'static str; 1],
}

impl Default for ActivateAnswer {
    fn default() -> Self {
        ActivateAnswer {
            implements: ["LogDriver"],
        }
    }
}

/// `/LogDriver.Capabilities`: dockerd reads the `Cap` wrapper.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CapabilitiesAnswer {
    #[serde(rename = "Cap")]
    pub cap: Capabilities,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    #[serde(rename = "ReadLogs")]
    pub read_logs: bool,
}

impl Default for CapabilitiesAnswer {
    fn default() -> Self {
        CapabilitiesAnswer {
            cap: Capabilities { read_logs: true },
        }
    }
}

/// Log-opts ringtail reads.
pub const RINGTAIL_LOG_OPTS: [&str; 5] = ["tag", "labels", "labels-regex", "env", "env-regex"];

/// Log-opts dockerd reads itself and passes on: accepted, not used.
pub const DOCKERD_LOG_OPTS: [&str; 2] = ["mode", "max-buffer-size"];

/// The prefix of dockerd's dual-logging cache options (`cache-disabled`,
/// `cache-max-size`, ...): accepted, not used.
pub const DOCKERD_CACHE_OPT_PREFIX: &str = "cache-";

/// The most bytes of compiled program a `labels-regex`/`env-regex` may
/// take: ample for a name pattern, small enough that a hostile one costs
/// little.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Why a container's `Info` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    #[error(transparent)]
    Tag(#[from] TagError),
    #[error("log-opt {opt}: {source}")]
    Regex {
        opt: &'static str,
        #[source]
        source: regex::Error,
    },
    #[error(
        "unknown log-opt {opt:?} for the ringtail log driver: it takes {}",
        RINGTAIL_LOG_OPTS.join(", ")
    )]
    UnknownOpt { opt: String },
}

/// The built-in labels; selected labels never replace them.
pub const BUILTIN_LABELS: [&str; 5] = [
    "container_id",
    "container_name",
    "image_name",
    "image_id",
    "stream",
];

/// What every entry of one container carries (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerMeta {
    /// The rendered `tag`: the entries' source name (at most
    /// [`MAX_SOURCE_LEN`] bytes, no NUL).
    pub source: String,
    /// Every label but `stream`, as `(key, value)`.
    pub labels: Vec<(String, String)>,
}

impl ContainerMeta {
    /// Checks the log-opts and builds the metadata; an error is meant for
    /// the user (dockerd shows it when the container starts).
    pub fn from_info(info: &Info) -> Result<ContainerMeta, InfoError> {
        for opt in info.config.keys() {
            let known = RINGTAIL_LOG_OPTS.contains(&opt.as_str())
                || DOCKERD_LOG_OPTS.contains(&opt.as_str())
                || opt.starts_with(DOCKERD_CACHE_OPT_PREFIX);
            if !known {
                return Err(InfoError::UnknownOpt { opt: opt.clone() });
            }
        }
        let tag = TagTemplate::parse(info.config.get("tag").map_or("", String::as_str))?;
        let source = Origin::source_from_bytes(tag.render(info).as_bytes(), MAX_SOURCE_LEN);
        let mut labels: BTreeMap<String, String> = extra_labels(info)?
            .into_iter()
            .filter(|(k, _)| !BUILTIN_LABELS.contains(&k.as_str()))
            .collect();
        labels.insert("container_id".into(), info.container_id.clone());
        labels.insert("container_name".into(), info.name().to_string());
        labels.insert("image_name".into(), info.container_image_name.clone());
        labels.insert("image_id".into(), info.container_image_id.clone());
        Ok(ContainerMeta {
            source,
            labels: labels.into_iter().collect(),
        })
    }

    /// The origin of the container's entries on one stream (`stream` is a
    /// label when known).
    pub fn origin(&self, stream: Option<Stream>) -> Origin {
        let mut o = Origin::new(self.source.clone());
        for (k, v) in &self.labels {
            o.set_label(k.clone(), v.clone());
        }
        if let Some(s) = stream {
            o.set_label("stream", s.as_str());
        }
        o
    }
}

/// The labels the log-opts `labels`, `labels-regex`, `env`, `env-regex`
/// select, keys rewritten to label names, in Docker's order of precedence
/// (a later option wins for the same key).
pub fn extra_labels(info: &Info) -> Result<BTreeMap<String, String>, InfoError> {
    let opt = |name: &str| info.config.get(name).filter(|v| !v.is_empty());
    let regex = |name: &'static str, pattern: &str| {
        regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|source| InfoError::Regex { opt: name, source })
    };
    let mut extra = BTreeMap::new();
    if let Some(names) = opt("labels") {
        for name in names.split(',') {
            if let Some(v) = info.container_labels.get(name) {
                extra.insert(label_name(name), v.clone());
            }
        }
    }
    if let Some(pattern) = opt("labels-regex") {
        let re = regex("labels-regex", pattern)?;
        for (k, v) in &info.container_labels {
            if re.is_match(k) {
                extra.insert(label_name(k), v.clone());
            }
        }
    }
    let env: BTreeMap<&str, &str> = info
        .container_env
        .iter()
        .filter_map(|e| e.split_once('='))
        .collect();
    if let Some(names) = opt("env") {
        for name in names.split(',') {
            if let Some(v) = env.get(name) {
                extra.insert(label_name(name), v.to_string());
            }
        }
    }
    if let Some(pattern) = opt("env-regex") {
        let re = regex("env-regex", pattern)?;
        for (k, v) in &env {
            if re.is_match(k) {
                extra.insert(label_name(k), v.to_string());
            }
        }
    }
    Ok(extra)
}

/// A Docker label or env name as a label name LogQL can query.
pub fn label_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 1);
    if key.is_empty() || key.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

/// The four container fields of an etwlogs message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EtwFields<'a> {
    /// Without the leading `/`.
    pub container_name: &'a str,
    pub image_name: &'a str,
    /// The full id.
    pub container_id: &'a str,
    /// The full `sha256:...` id.
    pub image_id: &'a str,
}

impl<'a> EtwFields<'a> {
    /// From the labels [`ContainerMeta::origin`] sets (empty when absent).
    pub fn from_origin(origin: &'a Origin) -> EtwFields<'a> {
        let label = |k| origin.label(k).unwrap_or("");
        EtwFields {
            container_name: label("container_name"),
            image_name: label("image_name"),
            container_id: label("container_id"),
            image_id: label("image_id"),
        }
    }
}

/// Appends Docker's etwlogs message for one line (see the module docs):
/// `container_name: N, image_name: I, container_id: C, image_id: D, source: S, log: L`,
/// every field verbatim, no newline.
pub fn write_etw_message(out: &mut Vec<u8>, fields: &EtwFields<'_>, source: &str, line: &[u8]) {
    out.extend_from_slice(b"container_name: ");
    out.extend_from_slice(fields.container_name.as_bytes());
    out.extend_from_slice(b", image_name: ");
    out.extend_from_slice(fields.image_name.as_bytes());
    out.extend_from_slice(b", container_id: ");
    out.extend_from_slice(fields.container_id.as_bytes());
    out.extend_from_slice(b", image_id: ");
    out.extend_from_slice(fields.image_id.as_bytes());
    out.extend_from_slice(b", source: ");
    out.extend_from_slice(source.as_bytes());
    out.extend_from_slice(b", log: ");
    out.extend_from_slice(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A StartLogging body as dockerd 20.10 sends it (nil maps and slices
    /// as null).
    const START: &str = r#"{"File":"/run/docker/logging/5b7e","Info":{"Config":{"tag":"{{.ImageName}}/{{.Name}}","labels":"com.example.team,missing","env-regex":"^APP_"},"ContainerID":"3e6c1cd85a7d8a1fd7b0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6","ContainerName":"/web","ContainerEntrypoint":"sh","ContainerArgs":["-c","echo hi"],"ContainerImageID":"sha256:9c7a54a9a43cca047013b82af109fe963fde787f63f9e016fdc3384500c2823d","ContainerImageName":"bb:latest","ContainerCreated":"2026-12-02T10:00:00.123456789Z","ContainerEnv":["PATH=/bin","APP_MODE=prod","APP_X=a=b"],"ContainerLabels":{"com.example.team":"core","9lives":"x"},"LogPath":"","DaemonName":"docker","NewerField":{"x":1}}}"#;

    #[test]
    fn start_logging_as_dockerd_sends_it() {
        let req = StartLogging::parse(START.as_bytes()).unwrap();
        assert_eq!(req.file, PathBuf::from("/run/docker/logging/5b7e"));
        assert_eq!(req.info.name(), "web");
        assert_eq!(req.info.container_args, ["-c", "echo hi"]);
        let meta = ContainerMeta::from_info(&req.info).unwrap();
        assert_eq!(meta.source, "bb:latest/web");
        let o = meta.origin(Some(Stream::Stderr));
        assert_eq!(o.label("container_name"), Some("web"));
        assert_eq!(
            o.label("container_id"),
            Some(req.info.container_id.as_str())
        );
        assert_eq!(o.label("image_name"), Some("bb:latest"));
        assert_eq!(
            o.label("image_id"),
            Some(req.info.container_image_id.as_str())
        );
        assert_eq!(o.label("stream"), Some("stderr"));
        assert_eq!(o.label("com_example_team"), Some("core"));
        assert_eq!(o.label("APP_MODE"), Some("prod"));
        assert_eq!(o.label("APP_X"), Some("a=b"));
        assert_eq!(o.label("missing"), None);
        assert_eq!(o.labels().len(), 8);
        assert_eq!(meta.origin(None).label("stream"), None);
    }

    #[test]
    fn nulls_and_missing_fields_are_empty() {
        let body = r#"{"File":"/run/docker/logging/x","Info":{"Config":null,"ContainerID":"abc","ContainerArgs":null,"ContainerEnv":null,"ContainerLabels":null}}"#;
        let req = StartLogging::parse(body.as_bytes()).unwrap();
        assert!(req.info.config.is_empty() && req.info.container_env.is_empty());
        let meta = ContainerMeta::from_info(&req.info).unwrap();
        assert_eq!(meta.source, "", "no name, default tag");
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let e = StartLogging::parse(b"{").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the StartLogging body is not valid JSON"),
            "{e}"
        );
        let e = StartLogging::parse(br#"{"Info":{"ContainerID":"a"}}"#).unwrap_err();
        assert!(e.to_string().contains("File"), "{e}");
        let e = StartLogging::parse(br#"{"File":"","Info":{"ContainerID":"a"}}"#).unwrap_err();
        assert_eq!(e.to_string(), "the StartLogging body has no File");
        let e = StartLogging::parse(br#"{"File":"x/y","Info":{"ContainerID":"a"}}"#).unwrap_err();
        assert!(e.to_string().contains("not an absolute path"), "{e}");
        let e = StartLogging::parse(br#"{"File":"/x","Info":{}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the StartLogging body has no Info.ContainerID"
        );
        let e = StopLogging::parse(b"").unwrap_err();
        assert!(e.to_string().contains("StopLogging"), "{e}");
        let e = StartLogging::parse(br#"{"File":1}"#).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
    }

    #[test]
    fn read_logs_config() {
        let body = r#"{"Info":{"ContainerID":"abc"},"Config":{"Since":"0001-01-01T00:00:00Z","Until":"0001-01-01T00:00:00Z","Tail":-1,"Follow":false}}"#;
        let r = ReadLogs::parse(body.as_bytes()).unwrap();
        assert_eq!(r.config, ReadConfig::default());
        let body = r#"{"Info":{"ContainerID":"abc"},"Config":{"Since":"2026-12-02T10:00:00.5+01:00","Until":"1969-01-01T00:00:00Z","Tail":100,"Follow":true}}"#;
        let r = ReadLogs::parse(body.as_bytes()).unwrap();
        assert_eq!(
            r.config,
            ReadConfig {
                since: Some(1_796_202_000_500_000_000),
                until: Some(0),
                tail: Some(100),
                follow: true
            }
        );
        let body = r#"{"Info":{"ContainerID":"abc"},"Config":{"Since":"yesterday"}}"#;
        let e = ReadLogs::parse(body.as_bytes()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("ReadLogs Config.Since \"yesterday\" is not an RFC 3339 time"),
            "{e}"
        );
        // The docs' "ReadConfig" key is not what dockerd sends: it is ignored.
        let body = r#"{"Info":{"ContainerID":"abc"},"ReadConfig":{"Tail":5}}"#;
        assert_eq!(
            ReadLogs::parse(body.as_bytes()).unwrap().config.tail,
            Some(0)
        );
    }

    #[test]
    fn answers_render_as_dockerd_reads_them() {
        assert_eq!(
            serde_json::to_string(&ActivateAnswer::default()).unwrap(),
            r#"{"Implements":["LogDriver"]}"#
        );
        assert_eq!(
            serde_json::to_string(&CapabilitiesAnswer::default()).unwrap(),
            r#"{"Cap":{"ReadLogs":true}}"#
        );
        assert_eq!(
            serde_json::to_string(&ErrAnswer::default()).unwrap(),
            r#"{"Err":""}"#
        );
    }

    #[test]
    fn log_opts_are_checked() {
        let mut info = Info {
            container_id: "abc".into(),
            ..Info::default()
        };
        for ok in ["mode", "max-buffer-size", "cache-disabled", "tag"] {
            info.config = [(ok.to_string(), String::new())].into();
            ContainerMeta::from_info(&info).unwrap();
        }
        info.config = [("lables".to_string(), "a".to_string())].into();
        let e = ContainerMeta::from_info(&info).unwrap_err();
        assert!(e.to_string().contains("unknown log-opt \"lables\""), "{e}");
        info.config = [("labels-regex".to_string(), "(".to_string())].into();
        let e = ContainerMeta::from_info(&info).unwrap_err();
        assert!(e.to_string().starts_with("log-opt labels-regex: "), "{e}");
        info.config = [("tag".to_string(), "{{.Nope}}".to_string())].into();
        let e = ContainerMeta::from_info(&info).unwrap_err();
        assert!(e.to_string().contains("{{.Nope}} is not supported"), "{e}");
        info.config = [("labels-regex".to_string(), "a{1000}{1000}".to_string())].into();
        assert!(
            ContainerMeta::from_info(&info).is_err(),
            "a huge regex is refused"
        );
    }

    #[test]
    fn selection_precedence_and_builtins() {
        let info = Info {
            container_id: "abc".into(),
            container_name: "/real".into(),
            config: [
                ("labels".to_string(), "k,stream,container_name".to_string()),
                ("env".to_string(), "k".to_string()),
            ]
            .into(),
            container_labels: [
                ("k".to_string(), "from-label".to_string()),
                ("stream".to_string(), "fake".to_string()),
                ("container_name".to_string(), "fake".to_string()),
            ]
            .into(),
            container_env: vec!["k=from-env".into(), "novalue".into()],
            ..Info::default()
        };
        let meta = ContainerMeta::from_info(&info).unwrap();
        let o = meta.origin(Some(Stream::Stdout));
        assert_eq!(
            o.label("k"),
            Some("from-env"),
            "env is applied after labels"
        );
        assert_eq!(o.label("stream"), Some("stdout"));
        assert_eq!(o.label("container_name"), Some("real"));
        assert_eq!(label_name("com.docker/x-y"), "com_docker_x_y");
        assert_eq!(label_name("1a"), "_1a");
        assert_eq!(label_name(""), "_");
        assert_eq!(label_name("é"), "_");
    }

    #[test]
    fn source_names_are_cleaned() {
        let info = Info {
            container_id: "abc".into(),
            config: [("tag".to_string(), format!("a\0b{}", "x".repeat(400)))].into(),
            ..Info::default()
        };
        let meta = ContainerMeta::from_info(&info).unwrap();
        assert!(meta.source.starts_with("a\\x00b"));
        assert_eq!(meta.source.len(), MAX_SOURCE_LEN);
    }

    /// `-o etw` (format.rs) is this message plus `\n` for a container's
    /// plain line; it differs only where a line must stay one line
    /// (a `\n` inside) or bytes are not UTF-8 (written `\xNN`).
    #[test]
    fn format_etw_matches_for_plain_lines() {
        use crate::entry::{EntryRef, Flags};
        use crate::format::{write_entry, Format};
        let info = Info {
            container_id: "3e6c1cd85a7d8a1fd7b0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6".into(),
            container_name: "/web".into(),
            container_image_id: "sha256:9c7a".into(),
            container_image_name: "bb:latest".into(),
            ..Info::default()
        };
        let origin = ContainerMeta::from_info(&info)
            .unwrap()
            .origin(Some(Stream::Stdout));
        for (line, same) in [
            (&b"GET / 200 \xc3\xa9"[..], true),
            (b"", true),
            (b"bad \xff", false),
            (b"two\nlines", false),
        ] {
            let e = EntryRef {
                seq: 1,
                time: 0,
                source_time: crate::entry::SourceTime::None,
                origin: &origin,
                flags: Flags::default().with_stream(Some(Stream::Stdout)),
                msg: line,
            };
            let mut ours = Vec::new();
            write_etw_message(&mut ours, &EtwFields::from_origin(&origin), "stdout", line);
            ours.push(b'\n');
            let mut theirs = Vec::new();
            write_entry(&mut theirs, Format::Etw, &e);
            assert_eq!(
                ours == theirs,
                same,
                "{:?}",
                String::from_utf8_lossy(&theirs)
            );
        }
    }

    #[test]
    fn etw_message_is_dockers_sprintf() {
        let o = Origin::new("web")
            .with_label("container_name", "web")
            .with_label("image_name", "bb:latest")
            .with_label("container_id", "3e6c")
            .with_label("image_id", "sha256:9c7a");
        let mut out = Vec::new();
        write_etw_message(
            &mut out,
            &EtwFields::from_origin(&o),
            "stderr",
            b"oops \xff\r",
        );
        assert_eq!(
            out,
            b"container_name: web, image_name: bb:latest, container_id: 3e6c, image_id: sha256:9c7a, source: stderr, log: oops \xff\r".to_vec()
        );
        out.clear();
        write_etw_message(&mut out, &EtwFields::default(), "stdout", b"");
        assert_eq!(
            out,
            b"container_name: , image_name: , container_id: , image_id: , source: stdout, log: "
                .to_vec()
        );
    }
}
