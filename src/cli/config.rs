//! `ringtail serve --config FILE`: the daemon's configuration file (TOML).
//!
//! Every flag of `serve` is a top-level key spelled as the flag's long name
//! (`max-lines = 5000`, `socket-log = "/run/ringtail/log.sock"`,
//! `http = "127.0.0.1:7464"`, `echo = true`); a repeatable flag takes an
//! array. Each value goes through the same parser as the flag, so the file
//! and the command line accept exactly the same things. Flags given on the
//! command line win over the file.
//!
//! Sources and sinks with more to say than flags carry are lists of tables
//! (`[[syslog]]`, `[[forward]]`): two syslog listeners or three forwarders
//! are just more entries. Each kind reads its own tables
//! ([`ConfigTable::parse`]).
//!
//! An unknown key, a value of the wrong type, or a value its flag's parser
//! refuses is an error naming the file, the line and the key. The internal
//! flags of `-daemonize` have no key.
//!
//! How: the file's keys become flags (`--max-lines=5000`), placed before
//! the command line's own, for the flags the command line does not give;
//! clap then parses the whole as it parses any command line. Nothing about
//! a flag is written twice.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use serde::de::DeserializeOwned;

/// Flags with no config key: what `-daemonize` hands to its background
/// daemon, and the flags about the file itself.
const NOT_IN_FILE: &[&str] = &[
    "config",
    "check",
    "ready_fd",
    "inherit",
    "owned_socket",
    "help",
];

/// One `[[kind]]` table of the file.
#[derive(Clone, Debug)]
pub struct ConfigTable {
    file: PathBuf,
    kind: String,
    /// 1-based among the tables of its kind.
    index: usize,
    /// The line of its `[[kind]]` header.
    line: usize,
    /// The line of each of its keys.
    key_lines: HashMap<String, usize>,
    value: toml::Table,
}

impl ConfigTable {
    /// The table as the kind's configuration type (which should deny
    /// unknown fields). An error names the file and the line of the
    /// offending key when the message names one.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        T::deserialize(toml::Value::Table(self.value.clone())).map_err(|e| {
            let msg = e.to_string();
            let msg = msg.trim();
            let line = self
                .key_lines
                .iter()
                .find(|(k, _)| msg.contains(&format!("`{k}`")))
                .map_or(self.line, |(_, l)| *l);
            self.error_at(line, msg)
        })
    }

    /// An error about this table, at its header's line.
    pub fn error(&self, msg: &str) -> String {
        self.error_at(self.line, msg)
    }

    /// An error about one key of this table, at the key's line.
    pub fn key_error(&self, key: &str, msg: &str) -> String {
        let line = self.key_lines.get(key).copied().unwrap_or(self.line);
        self.error_at(line, &format!("key `{key}`: {msg}"))
    }

    fn error_at(&self, line: usize, msg: &str) -> String {
        format!(
            "{}:{line}: [[{}]] #{}: {msg}",
            self.file.display(),
            self.kind,
            self.index
        )
    }

    /// The table's keys and values.
    pub fn table(&self) -> &toml::Table {
        &self.value
    }
}

/// Every `[[kind]]` table of the file, by kind.
#[derive(Clone, Debug, Default)]
pub struct Tables(BTreeMap<String, Vec<ConfigTable>>);

impl Tables {
    /// The tables of one kind, in file order (none when the file has none).
    pub fn get(&self, kind: &str) -> &[ConfigTable] {
        self.0.get(kind).map_or(&[], Vec::as_slice)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[ConfigTable])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

/// What a config file adds to a command line.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Flags for the keys the command line does not give, in `--key=value`
    /// form, to go before the command line's own.
    pub flags: Vec<OsString>,
    pub tables: Tables,
    /// The file's line of each key (by clap id), for `--check`.
    pub lines: HashMap<String, usize>,
    /// The clap ids of the flags the file set.
    pub set: std::collections::HashSet<String>,
}

/// Reads `path` for the subcommand `serve` (whose flags are its keys):
/// `given` says whether the command line gave a flag (by clap id), and
/// `table_kinds` lists the `[[kind]]` tables sources and sinks read.
pub fn load(
    path: &Path,
    serve: &Command,
    given: impl Fn(&str) -> bool,
    table_kinds: &[&str],
) -> Result<Loaded, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {shown}: {e}"))?;
    let spanned = toml::de::DeTable::parse(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!(":{}", line_of(&text, s.start)))
            .unwrap_or_default();
        format!("{shown}{at}: not valid TOML: {}", e.message())
    })?;
    let value: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{shown}: not valid TOML: {}", e.message()))?;
    let key_line = |key: &str| -> usize {
        spanned
            .get_ref()
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map_or(1, |(k, _)| line_of(&text, k.span().start))
    };
    let mut out = Loaded::default();
    for (key, v) in &value {
        let line = key_line(key);
        let at = |msg: String| format!("{shown}:{line}: key `{key}`: {msg}");
        if table_kinds.contains(&key.as_str()) {
            let toml::Value::Array(items) = v else {
                return Err(at(format!(
                    "write it as a list of tables: [[{key}]] followed by its keys"
                )));
            };
            let spanned_items = spanned
                .get_ref()
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == key.as_str())
                .and_then(|(_, v)| match v.get_ref() {
                    toml::de::DeValue::Array(a) => Some(a),
                    _ => None,
                });
            let mut tables = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let toml::Value::Table(t) = item else {
                    return Err(at(format!("entry {} is not a table", i + 1)));
                };
                let (line, key_lines) = match spanned_items.and_then(|a| a.get(i)) {
                    Some(s) => {
                        let keys = match s.get_ref() {
                            toml::de::DeValue::Table(t) => t
                                .iter()
                                .map(|(k, _)| {
                                    (k.get_ref().to_string(), line_of(&text, k.span().start))
                                })
                                .collect(),
                            _ => HashMap::new(),
                        };
                        // The header is the line before the first key, or
                        // the item itself.
                        (line_of(&text, s.span().start), keys)
                    }
                    None => (line, HashMap::new()),
                };
                tables.push(ConfigTable {
                    file: path.to_path_buf(),
                    kind: key.clone(),
                    index: i + 1,
                    line,
                    key_lines,
                    value: t.clone(),
                });
            }
            out.tables.0.insert(key.clone(), tables);
            continue;
        }
        let Some(arg) = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .filter(|a| !NOT_IN_FILE.contains(&a.get_id().as_str()))
        else {
            let mut kinds = table_kinds.to_vec();
            kinds.sort();
            return Err(format!(
                "{shown}:{line}: unknown key `{key}`; the keys are the long flags of \
                 `ringtail serve` (see `ringtail serve --help`) and the tables [[{}]]",
                kinds.join("]], [[")
            ));
        };
        let id = arg.get_id().as_str().to_string();
        out.lines.insert(id.clone(), line);
        if given(&id) {
            continue;
        }
        out.set.insert(id.clone());
        let flag = format!("--{key}");
        match (arg.get_action(), v) {
            (ArgAction::SetTrue, toml::Value::Boolean(b)) => {
                if *b {
                    out.flags.push(flag.into());
                }
            }
            (ArgAction::SetTrue, _) => return Err(at("expected true or false".into())),
            (action, toml::Value::Array(items)) => {
                if !matches!(action, ArgAction::Append) {
                    return Err(at("takes one value, not a list".into()));
                }
                for item in items {
                    let text = scalar(item).map_err(at)?;
                    out.flags.push(format!("{flag}={text}").into());
                }
            }
            (_, v) => {
                let text = scalar(v).map_err(at)?;
                out.flags.push(format!("{flag}={text}").into());
            }
        }
    }
    Ok(out)
}

/// A TOML value as the text a flag takes.
fn scalar(v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Datetime(d) => Ok(d.to_string()),
        toml::Value::Array(_) => Err("expected one value, not a list".into()),
        toml::Value::Table(_) => Err("expected a value, not a table".into()),
    }
}

/// Says which key of the file a clap error about the merged command line
/// is about, if it is about one the file set: `FILE:LINE: key `k`: why`.
/// The flags' own parsers check the file's values; this puts the error
/// where the value came from.
pub fn blame(path: &Path, serve: &Command, loaded: &Loaded, e: &clap::Error) -> Option<String> {
    let arg = e.get(clap::error::ContextKind::InvalidArg)?.to_string();
    let long = arg.strip_prefix("--")?.split([' ', '=']).next()?;
    let id = serve
        .get_arguments()
        .find(|a| a.get_long() == Some(long))?
        .get_id()
        .as_str()
        .to_string();
    if !loaded.set.contains(&id) {
        return None;
    }
    let line = loaded.lines.get(&id)?;
    let msg = e.to_string();
    let first = msg.lines().next().unwrap_or("").trim();
    let why = first.strip_prefix("error: ").unwrap_or(first);
    Some(format!("{}:{line}: key `{long}`: {why}", path.display()))
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The effective configuration of a parsed `serve`, as a config file that
/// starts the same daemon (`ringtail serve --check`), each key commented
/// with where its value came from.
pub fn effective(
    serve: &Command,
    matches: &ArgMatches,
    file: Option<&Path>,
    loaded: &Loaded,
) -> String {
    let mut out = String::from("# ringtail serve: the effective configuration\n");
    for arg in serve.get_arguments() {
        let id = arg.get_id().as_str();
        if NOT_IN_FILE.contains(&id) || arg.is_hide_set() || arg.get_long().is_none() {
            continue;
        }
        let key = arg.get_long().expect("checked above");
        let from = match (matches.value_source(id), file, loaded.lines.get(id)) {
            (Some(ValueSource::CommandLine), Some(f), Some(line)) if loaded.set.contains(id) => {
                format!("from {}:{line}", f.display())
            }
            (Some(ValueSource::CommandLine), ..) => "from the command line".to_string(),
            (Some(ValueSource::DefaultValue), ..) => "default".to_string(),
            (Some(ValueSource::EnvVariable), ..) => "from the environment".to_string(),
            _ => "not set".to_string(),
        };
        let value = match arg.get_action() {
            ArgAction::SetTrue => Some(matches.get_flag(id).to_string()),
            _ => matches.get_raw(id).map(|vals| {
                let vals: Vec<String> = vals.map(|v| toml_text(&v.to_string_lossy())).collect();
                if matches!(arg.get_action(), ArgAction::Append) {
                    format!("[{}]", vals.join(", "))
                } else {
                    vals.join(" ")
                }
            }),
        };
        match value {
            Some(v) => out.push_str(&format!("{key} = {v}  # {from}\n")),
            None => out.push_str(&format!("# {key} is not set\n")),
        }
    }
    for (kind, tables) in loaded.tables.iter() {
        for t in tables {
            out.push_str(&format!("\n[[{kind}]]\n"));
            out.push_str(&toml::to_string(t.table()).unwrap_or_default());
        }
    }
    out
}

/// A flag's text as a TOML value: a number as it is, anything else quoted.
fn toml_text(v: &str) -> String {
    let digits = v.strip_prefix('-').unwrap_or(v);
    let number = !digits.is_empty()
        && digits.len() < 19
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if number {
        v.to_string()
    } else {
        toml::Value::String(v.to_string()).to_string()
    }
}
