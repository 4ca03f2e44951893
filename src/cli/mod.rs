//! The `ringtail` command line: `serve` (the daemon), `read` (like
//! LinuxKit's logread; with `--ring-file`, post mortem), `run` (like
//! LinuxKit's logwrite wrapper), `export` (like LinuxKit's logwrite
//! service), `inspect` (a ring file's facts), and the hidden `man` and
//! `completions` for packagers.
//!
//! One vocabulary: a thing several subcommands take has one flag name
//! everywhere (`--socket-query`, `--socket-log`, `--ring-file`,
//! `--memlogd-paths`); other tools' spellings are aliases
//! (tests/cli_vocabulary.rs walks every flag).
//!
//! This module owns parsing and the defaults every subcommand shares (where
//! the sockets are, how sizes are written); each subcommand's module turns
//! its flags into the library's types and runs. Flags are documented once,
//! where they are defined, and `--help` shows that text.
//!
//! Before clap parses anything, [`argv::rewrite`] maps the single-dash flags
//! of memlogd, logread and logwrite to ringtail's, so that ringtail can be
//! installed under those names or called by their init scripts unchanged.

pub mod argv;
pub mod config;
pub mod docs;
pub mod export;
// Post-mortem reading maps ring files, which the loom build of the ring
// (the `loom` feature, anonymous rings only) leaves out.
#[cfg(not(feature = "loom"))]
pub mod inspect;
pub mod read;
pub mod run;
pub mod serve;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// memlogd's ingest (fd-passing) socket.
pub const MEMLOGD_LOG_SOCKET: &str = "/var/run/linuxkit-external-logging.sock";
/// memlogd's query socket.
pub const MEMLOGD_QUERY_SOCKET: &str = "/var/run/memlogdq.sock";
/// File name of the ingest socket in ringtail's own socket directory.
pub const LOG_SOCKET_NAME: &str = "log.sock";
/// File name of the query socket in ringtail's own socket directory.
pub const QUERY_SOCKET_NAME: &str = "query.sock";

/// A host's recent logs in a fixed-size ring in memory; a drop-in
/// replacement for LinuxKit's memlogd, logread and logwrite.
#[derive(Parser, Debug)]
#[command(name = "ringtail", version, propagate_version = true)]
#[command(after_help = "\
Start the daemon on its defaults:   ringtail serve
Log a command's output:             ringtail run -n web -- python3 -m http.server
Show everything logged so far:      ringtail read
Follow new lines:                   ringtail read -f
Read a ring file after a crash:     ringtail read --ring-file /var/lib/ringtail/ring

ringtail also accepts memlogd's own command line (`ringtail -max-lines 5000
-socket-log PATH ...`, no subcommand) and behaves as memlogd, logread or
logwrite when installed under those names.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: the fd-passing ingest socket, the query socket, the ring.
    Serve(Box<serve::ServeArgs>),
    /// Print the logs kept by a running daemon (like LinuxKit's logread).
    Read(read::ReadArgs),
    /// Run a command with its stdout and stderr logged as NAME.out and NAME.
    Run(run::RunArgs),
    /// Write the logs to per-source files with rotation (like LinuxKit's logwrite service).
    Export(export::ExportArgs),
    /// Show what a ring file holds (header, sizes, seqs, times, sources), without a daemon.
    #[cfg(not(feature = "loom"))]
    Inspect(inspect::InspectArgs),
    /// Print the man page, or write every page into a directory (for packagers).
    #[command(hide = true)]
    Man(docs::ManArgs),
    /// Print shell completions for bash, zsh or fish (for packagers).
    #[command(hide = true)]
    Completions(docs::CompletionsArgs),
}

/// The `ringtail` program: parses `args` (argv, program name first) and
/// runs the subcommand. Returns the process exit code.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let argv = argv::rewrite(args);
    let matches = Cli::command().get_matches_from(argv.clone());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Serve(args) => serve_with_config(*args, argv, &matches),
        Command::Read(args) => read::main(args),
        Command::Run(args) => run::main(args),
        Command::Export(args) => export::main(args),
        #[cfg(not(feature = "loom"))]
        Command::Inspect(args) => inspect::main(args),
        Command::Man(args) => docs::man(args),
        Command::Completions(args) => docs::completions(args),
    }
}

/// `ringtail serve`, with its config file (if any) merged under the
/// command line: the file's keys become flags before the command line's
/// own, for the flags the command line does not give, and the whole is
/// parsed again.
fn serve_with_config(
    args: serve::ServeArgs,
    argv: Vec<OsString>,
    matches: &clap::ArgMatches,
) -> i32 {
    let cmd = Cli::command();
    let serve_cmd = cmd
        .find_subcommand("serve")
        .expect("serve is a subcommand")
        .clone();
    let serve_matches = matches
        .subcommand_matches("serve")
        .expect("the serve subcommand matched");
    let Some(path) = args.config.clone() else {
        let effective = args.check.then(|| {
            config::effective(&serve_cmd, serve_matches, None, &config::Loaded::default())
        });
        return serve::main(args, &config::Tables::default(), effective);
    };
    let given =
        |id: &str| serve_matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    let table_kinds = [
        crate::sources::SourceArgs::TABLES,
        crate::sinks::forward::TABLES,
    ]
    .concat();
    let loaded = match config::load(&path, &serve_cmd, given, &table_kinds) {
        Ok(l) => l,
        Err(e) => {
            print_error(e);
            return 2;
        }
    };
    // argv is `PROGRAM serve FLAGS...` (argv::rewrite puts serve first).
    let mut merged: Vec<OsString> = argv[..2].to_vec();
    merged.extend(loaded.flags.iter().cloned());
    merged.extend(argv[2..].iter().cloned());
    let matches = match Cli::command().try_get_matches_from(merged) {
        Ok(m) => m,
        Err(e) => match config::blame(&path, &serve_cmd, &loaded, &e) {
            Some(msg) => {
                print_error(msg);
                return 2;
            }
            None => e.exit(),
        },
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let Command::Serve(args) = cli.command else {
        unreachable!("the merged command line is still serve")
    };
    let effective = args.check.then(|| {
        config::effective(
            &serve_cmd,
            matches.subcommand_matches("serve").expect("serve matched"),
            Some(&path),
            &loaded,
        )
    });
    serve::main(*args, &loaded.tables, effective)
}

/// The directory of ringtail's own sockets when none is given:
/// `/run/ringtail` for root, else `$XDG_RUNTIME_DIR/ringtail`, else
/// `/tmp/ringtail-$UID`.
pub fn default_socket_dir() -> PathBuf {
    let uid = rustix::process::geteuid();
    socket_dir_for(uid.as_raw(), std::env::var_os("XDG_RUNTIME_DIR"))
}

/// [`default_socket_dir`] for a given uid and `$XDG_RUNTIME_DIR`.
fn socket_dir_for(uid: u32, xdg_runtime_dir: Option<OsString>) -> PathBuf {
    if uid == 0 {
        return PathBuf::from("/run/ringtail");
    }
    match xdg_runtime_dir {
        // A relative or empty value is not a runtime dir (the XDG spec
        // says to ignore it).
        Some(dir) if PathBuf::from(&dir).is_absolute() => PathBuf::from(dir).join("ringtail"),
        _ => PathBuf::from(format!("/tmp/ringtail-{uid}")),
    }
}

/// The ingest socket clients use when none is given.
pub fn default_log_socket(memlogd_paths: bool) -> PathBuf {
    if memlogd_paths {
        PathBuf::from(MEMLOGD_LOG_SOCKET)
    } else {
        default_socket_dir().join(LOG_SOCKET_NAME)
    }
}

/// The query socket clients use when none is given.
pub fn default_query_socket(memlogd_paths: bool) -> PathBuf {
    if memlogd_paths {
        PathBuf::from(MEMLOGD_QUERY_SOCKET)
    } else {
        default_socket_dir().join(QUERY_SOCKET_NAME)
    }
}

/// Parses a byte size: plain bytes (`1048576`), or a number with a unit:
/// `KiB`/`MiB`/`GiB` (powers of 1024), `KB`/`MB`/`GB` (powers of 1000), `K`/
/// `M`/`G` (powers of 1024, as `ls -h` writes them), `B`. Case-insensitive,
/// optional space before the unit.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in size {text:?}; use bytes or KiB, MiB, GiB, KB, MB, GB"
            ))
        }
    };
    if num.is_empty() {
        return Err(format!(
            "size {text:?} has no number; write e.g. 1MiB or 1048576"
        ));
    }
    let value: f64 = num.parse().map_err(|_| {
        format!("cannot read the number in size {text:?}; write e.g. 1MiB or 1048576")
    })?;
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("size {text:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

/// Prints an error the way every subcommand does.
pub(crate) fn print_error(what: impl std::fmt::Display) {
    eprintln!("ringtail: {what}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("1.5 k"), Ok(1536));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn default_socket_dirs() {
        let dir = |uid, xdg: Option<&str>| socket_dir_for(uid, xdg.map(OsString::from));
        assert_eq!(dir(0, Some("/run/user/0")), PathBuf::from("/run/ringtail"));
        assert_eq!(
            dir(1000, Some("/run/user/1000")),
            PathBuf::from("/run/user/1000/ringtail")
        );
        assert_eq!(dir(1000, None), PathBuf::from("/tmp/ringtail-1000"));
        assert_eq!(dir(1000, Some("")), PathBuf::from("/tmp/ringtail-1000"));
        assert_eq!(
            dir(1000, Some("relative")),
            PathBuf::from("/tmp/ringtail-1000")
        );
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
