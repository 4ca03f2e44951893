//! Rewriting the command line of the programs ringtail replaces, before clap
//! sees it.
//!
//! ringtail is a drop-in for LinuxKit's memlogd, logread and logwrite, whose
//! flags are Go `flag` package flags: one dash, long names, `-name value` or
//! `-name=value`. clap would read `-max-lines` as the short flags `-m -a -x
//! ...`, so this module maps exactly the names below to their `--` forms and
//! leaves everything else alone. The mapping is a plain table, tested below.
//!
//! | invoked as | becomes |
//! |---|---|
//! | `ringtail serve -max-lines 100 ...` | `ringtail serve --max-lines 100 ...` |
//! | `ringtail -max-lines 100 ...` (first argument a memlogd flag) | `ringtail serve --memlogd-paths --max-lines 100 ...` |
//! | `memlogd ARGS` (argv\[0\] is `memlogd`) | `ringtail serve --memlogd-paths ARGS` |
//! | `logread [-f] [-F] [-socket P]` | `ringtail read --memlogd-paths -o logread [-f] [-F] [--socket P]` |
//! | `logwrite [-socket P] [-n NAME] CMD ARGS` | `ringtail run --memlogd-paths [--socket-log P] [-n NAME] -- CMD ARGS` |
//! | `logwrite [-socket P] [-log-dir D] [-max-log-files N] [-max-log-size B]` (no command) | `ringtail export --memlogd-paths [--socket P] --dir D ...` |
//!
//! memlogd-style invocations imply `--memlogd-paths`, because a script
//! written for memlogd relies on memlogd's default socket paths; a path
//! given on the command line still wins. LinuxKit ships two programs named
//! `logwrite` (the command wrapper in `pkg/memlogd` and the file-writing
//! service in `pkg/logwrite`): a command after the flags means the wrapper,
//! none means the service.
//!
//! Go's boolean flags also take `-name=true` / `-name=false`; both are
//! understood for `-daemonize`, `-f` and `-F`.

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// memlogd's flags that take a value.
const MEMLOGD_VALUE_FLAGS: &[&str] = &[
    "max-lines",
    "socket-log",
    "socket-query",
    "fd-log",
    "fd-query",
    "max-line-len",
];

/// memlogd's boolean flags.
const MEMLOGD_BOOL_FLAGS: &[&str] = &["daemonize"];

/// Returns the argument list clap should parse.
pub fn rewrite(args: Vec<OsString>) -> Vec<OsString> {
    let mut args = args.into_iter();
    let argv0 = args.next().unwrap_or_else(|| OsString::from("ringtail"));
    let rest: Vec<OsString> = args.collect();
    let program = Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = vec![argv0.clone()];
    match program.as_str() {
        "memlogd" => {
            out.extend(["serve", "--memlogd-paths"].map(OsString::from));
            out.extend(rewrite_memlogd(rest));
        }
        "logread" => {
            out.extend(["read", "--memlogd-paths", "-o", "logread"].map(OsString::from));
            out.extend(rewrite_logread(rest));
        }
        "logwrite" => out.extend(rewrite_logwrite(rest)),
        _ => match rest.first().and_then(|a| a.to_str()) {
            Some("serve") => {
                out.push(rest[0].clone());
                out.extend(rewrite_memlogd(rest[1..].to_vec()));
            }
            Some(first) if is_memlogd_flag(first) => {
                out.extend(["serve", "--memlogd-paths"].map(OsString::from));
                out.extend(rewrite_memlogd(rest));
            }
            _ => out.extend(rest),
        },
    }
    out
}

/// Whether `arg` is one of memlogd's flags written the Go way (one dash).
fn is_memlogd_flag(arg: &str) -> bool {
    let Some(body) = arg.strip_prefix('-') else {
        return false;
    };
    if body.starts_with('-') {
        return false;
    }
    let name = body.split_once('=').map_or(body, |(n, _)| n);
    MEMLOGD_VALUE_FLAGS.contains(&name) || MEMLOGD_BOOL_FLAGS.contains(&name)
}

/// Maps memlogd's single-dash flags to `--` flags; leaves the rest alone.
fn rewrite_memlogd(args: Vec<OsString>) -> Vec<OsString> {
    let table = |name: &str| -> Option<(&'static str, bool)> {
        MEMLOGD_VALUE_FLAGS
            .iter()
            .find(|n| **n == name)
            .map(|n| (*n, true))
            .or_else(|| {
                MEMLOGD_BOOL_FLAGS
                    .iter()
                    .find(|n| **n == name)
                    .map(|n| (*n, false))
            })
    };
    map_go_flags(args, |name| table(name).map(|(n, v)| (format!("--{n}"), v)))
}

/// logread's flags: `-f`, `-F`, `-socket PATH`.
fn rewrite_logread(args: Vec<OsString>) -> Vec<OsString> {
    map_go_flags(args, |name| match name {
        "socket" => Some(("--socket".to_string(), true)),
        "f" => Some(("-f".to_string(), false)),
        "F" => Some(("-F".to_string(), false)),
        _ => None,
    })
}

/// Both of LinuxKit's `logwrite` programs (see the module doc).
fn rewrite_logwrite(args: Vec<OsString>) -> Vec<OsString> {
    // Go's flag parsing stops at the first argument that is not a flag:
    // find it, skipping the values of flags that take one.
    let takes_value = |name: &str| {
        matches!(
            name,
            "socket" | "n" | "log-dir" | "max-log-files" | "max-log-size"
        )
    };
    let mut command_at = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "--" {
            command_at = Some(i + 1).filter(|&c| c < args.len());
            break;
        }
        match a.strip_prefix('-').map(|b| b.trim_start_matches('-')) {
            Some(body) if !body.is_empty() => {
                if !body.contains('=') && takes_value(body) {
                    i += 1;
                }
            }
            _ => {
                command_at = Some(i);
                break;
            }
        }
        i += 1;
    }
    let mut out: Vec<OsString> = Vec::new();
    match command_at {
        Some(at) => {
            out.extend(["run", "--memlogd-paths"].map(OsString::from));
            let flags: Vec<OsString> = args[..at]
                .iter()
                .filter(|a| a.as_os_str() != OsStr::new("--"))
                .cloned()
                .collect();
            out.extend(map_go_flags(flags, |name| match name {
                "socket" => Some(("--socket-log".to_string(), true)),
                "n" => Some(("-n".to_string(), true)),
                _ => None,
            }));
            out.push(OsString::from("--"));
            out.extend(args[at..].iter().cloned());
        }
        None => {
            out.extend(["export", "--memlogd-paths"].map(OsString::from));
            let mapped = map_go_flags(args, |name| match name {
                "socket" => Some(("--socket".to_string(), true)),
                "log-dir" => Some(("--dir".to_string(), true)),
                "max-log-files" => Some(("--max-log-files".to_string(), true)),
                "max-log-size" => Some(("--max-log-size".to_string(), true)),
                _ => None,
            });
            // The service's default directory is /var/log.
            let has_dir = mapped.iter().any(|a| {
                let a = a.to_string_lossy();
                a == "--dir" || a.starts_with("--dir=")
            });
            if !has_dir {
                out.extend(["--dir", "/var/log"].map(OsString::from));
            }
            out.extend(mapped);
        }
    }
    out
}

/// Rewrites Go-style flags. `lookup(name)` gives the replacement flag and
/// whether it takes a value, for the names to rewrite. Accepts `-name`,
/// `--name`, `-name=value`; for boolean flags `-name=true` becomes the flag
/// and `-name=false` disappears. The value after a value-taking flag is
/// copied untouched, whatever it looks like.
fn map_go_flags(
    args: Vec<OsString>,
    lookup: impl Fn(&str) -> Option<(String, bool)>,
) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            out.extend(args.by_ref());
            break;
        }
        let body = match text.strip_prefix("--").or_else(|| text.strip_prefix('-')) {
            Some(b) if !b.is_empty() => b,
            _ => {
                out.push(arg);
                continue;
            }
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some((flag, takes_value)) = lookup(name) else {
            out.push(arg);
            continue;
        };
        match (takes_value, value) {
            (true, Some(v)) => {
                out.push(OsString::from(flag));
                out.push(OsString::from(v));
            }
            (true, None) => {
                out.push(OsString::from(flag));
                if let Some(v) = args.next() {
                    out.push(v);
                }
            }
            (false, None) => out.push(OsString::from(flag)),
            (false, Some(v)) => match v {
                "true" | "1" | "t" | "T" | "TRUE" | "True" => out.push(OsString::from(flag)),
                "false" | "0" | "f" | "F" | "FALSE" | "False" => {}
                // Let clap report the odd value against the flag.
                _ => out.push(OsString::from(format!("{flag}={v}"))),
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(args: &[&str]) -> Vec<String> {
        rewrite(args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn subcommands_pass_through() {
        assert_eq!(
            rw(&["ringtail", "read", "-n", "5"]),
            ["ringtail", "read", "-n", "5"]
        );
        assert_eq!(
            rw(&["ringtail", "run", "-n", "x", "--", "sh", "-max-lines", "1"]),
            ["ringtail", "run", "-n", "x", "--", "sh", "-max-lines", "1"]
        );
        assert_eq!(rw(&["ringtail"]), ["ringtail"]);
    }

    #[test]
    fn memlogd_flags_under_serve() {
        assert_eq!(
            rw(&[
                "ringtail",
                "serve",
                "-max-lines",
                "100",
                "-socket-log=/a",
                "-socket-query",
                "/b",
                "-fd-log",
                "-1",
                "-daemonize",
                "--echo"
            ]),
            [
                "ringtail",
                "serve",
                "--max-lines",
                "100",
                "--socket-log",
                "/a",
                "--socket-query",
                "/b",
                "--fd-log",
                "-1",
                "--daemonize",
                "--echo"
            ]
        );
        assert_eq!(
            rw(&["ringtail", "serve", "-daemonize=false", "-max-line-len=64"]),
            ["ringtail", "serve", "--max-line-len", "64"]
        );
    }

    #[test]
    fn memlogd_without_subcommand() {
        assert_eq!(
            rw(&["/usr/bin/ringtail", "-socket-log", "X", "-max-lines", "100"]),
            [
                "/usr/bin/ringtail",
                "serve",
                "--memlogd-paths",
                "--socket-log",
                "X",
                "--max-lines",
                "100"
            ]
        );
        // Not a memlogd flag: left for clap to report.
        assert_eq!(rw(&["ringtail", "-bogus"]), ["ringtail", "-bogus"]);
        assert_eq!(rw(&["ringtail", "--help"]), ["ringtail", "--help"]);
    }

    #[test]
    fn invoked_as_memlogd() {
        assert_eq!(
            rw(&["/sbin/memlogd", "-daemonize", "-fd-log", "3"]),
            [
                "/sbin/memlogd",
                "serve",
                "--memlogd-paths",
                "--daemonize",
                "--fd-log",
                "3"
            ]
        );
        assert_eq!(rw(&["memlogd"]), ["memlogd", "serve", "--memlogd-paths"]);
    }

    #[test]
    fn invoked_as_logread() {
        assert_eq!(
            rw(&["logread", "-F", "-socket", "/q.sock"]),
            [
                "logread",
                "read",
                "--memlogd-paths",
                "-o",
                "logread",
                "-F",
                "--socket",
                "/q.sock"
            ]
        );
    }

    #[test]
    fn invoked_as_logwrite_wrapper() {
        assert_eq!(
            rw(&["logwrite", "-n", "svc", "/bin/sh", "-c", "echo -n hi"]),
            [
                "logwrite",
                "run",
                "--memlogd-paths",
                "-n",
                "svc",
                "--",
                "/bin/sh",
                "-c",
                "echo -n hi"
            ]
        );
        assert_eq!(
            rw(&["logwrite", "-socket=/l.sock", "--", "true"]),
            [
                "logwrite",
                "run",
                "--memlogd-paths",
                "--socket-log",
                "/l.sock",
                "--",
                "true"
            ]
        );
    }

    #[test]
    fn invoked_as_logwrite_service() {
        assert_eq!(
            rw(&["logwrite", "-log-dir", "/d", "-max-log-size", "1000"]),
            [
                "logwrite",
                "export",
                "--memlogd-paths",
                "--dir",
                "/d",
                "--max-log-size",
                "1000"
            ]
        );
        assert_eq!(
            rw(&["logwrite"]),
            ["logwrite", "export", "--memlogd-paths", "--dir", "/var/log"]
        );
    }
}
