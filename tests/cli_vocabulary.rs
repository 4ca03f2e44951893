//! One CLI vocabulary: every subcommand names the same thing the same way.
//! Walks every flag of every subcommand (clap's own definitions, so a new
//! flag is checked without touching this file):
//! - a long flag used by several subcommands takes the same kind of value
//!   (same value name, same arity) everywhere;
//! - the things several subcommands share have one primary name: the
//!   query socket is `--socket-query`, the ingest socket `--socket-log`, a
//!   ring file `--ring-file`, memlogd's paths `--memlogd-paths`; other
//!   spellings (logread's `--socket`) are only aliases;
//! - no alias of one flag is the primary name of another flag elsewhere.

use std::collections::BTreeMap;

use clap::{CommandFactory, Parser};
use ringtail::cli::Cli;

/// Every (subcommand, flag) with a long name, hidden subcommands included.
fn flags() -> Vec<(String, clap::Arg)> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    for sub in cmd.get_subcommands() {
        for arg in sub.get_arguments() {
            if arg.get_long().is_some() {
                out.push((sub.get_name().to_string(), arg.clone()));
            }
        }
    }
    out
}

fn help(arg: &clap::Arg) -> String {
    arg.get_help()
        .map(|h| h.to_string().to_lowercase())
        .unwrap_or_default()
}

fn value_names(arg: &clap::Arg) -> Vec<String> {
    arg.get_value_names()
        .map(|v| v.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn a_shared_flag_takes_the_same_value_everywhere() {
    let mut by_long: BTreeMap<String, Vec<(String, Vec<String>, bool)>> = BTreeMap::new();
    for (sub, arg) in flags() {
        by_long
            .entry(arg.get_long().unwrap().to_string())
            .or_default()
            .push((sub, value_names(&arg), arg.get_action().takes_values()));
    }
    let mut bad = Vec::new();
    for (long, uses) in &by_long {
        let (_, names, takes) = &uses[0];
        if uses.iter().any(|(_, n, t)| n != names || t != takes) {
            bad.push(format!("--{long}: {uses:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "flags spelled alike that differ:\n{}",
        bad.join("\n")
    );
}

#[test]
fn shared_things_have_one_primary_name() {
    // (what the help says it is, the one primary name)
    let concepts = [
        ("query socket", "socket-query"),
        ("ingest socket", "socket-log"),
        ("ring file", "ring-file"),
    ];
    let mut bad = Vec::new();
    let mut found = BTreeMap::<&str, Vec<String>>::new();
    for (sub, arg) in flags() {
        let long = arg.get_long().unwrap();
        let h = help(&arg);
        // Only flags that give the thing's location, not ones that tune it.
        if value_names(&arg) != ["PATH"] {
            continue;
        }
        for (what, name) in concepts {
            let first_sentence = h.split(". ").next().unwrap_or_default();
            if first_sentence.contains(what) {
                found
                    .entry(name)
                    .or_default()
                    .push(format!("{sub} --{long}"));
                if long != name {
                    bad.push(format!(
                        "`ringtail {sub} --{long}` is the {what}: call it --{name}"
                    ));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // The walk found the flags it is about (it cannot pass vacuously).
    let subs = |name: &str| found.get(name).cloned().unwrap_or_default();
    for want in [
        "read --socket-query",
        "export --socket-query",
        "serve --socket-query",
    ] {
        assert!(
            subs("socket-query").contains(&want.to_string()),
            "{found:?}"
        );
    }
    assert!(
        subs("socket-log").contains(&"run --socket-log".to_string()),
        "{found:?}"
    );
    assert!(
        subs("ring-file").contains(&"read --ring-file".to_string()),
        "{found:?}"
    );
    // memlogd's paths: a switch of the same name wherever sockets are found.
    let mut switches = Vec::new();
    for (sub, arg) in flags() {
        if help(&arg).starts_with("use memlogd's") && !arg.get_action().takes_values() {
            assert_eq!(arg.get_long(), Some("memlogd-paths"), "ringtail {sub}");
            switches.push(sub);
        }
    }
    assert_eq!(switches, ["serve", "read", "run", "export"]);
}

#[test]
fn aliases_never_shadow_another_flag() {
    let all = flags();
    let primaries: BTreeMap<String, String> = all
        .iter()
        .map(|(sub, a)| {
            (
                a.get_long().unwrap().to_string(),
                format!("{sub} --{}", a.get_long().unwrap()),
            )
        })
        .collect();
    for (sub, arg) in &all {
        for alias in arg.get_all_aliases().unwrap_or_default() {
            assert!(
                !primaries.contains_key(alias),
                "`ringtail {sub} --{alias}` (alias of --{}) is also the primary name of {}",
                arg.get_long().unwrap(),
                primaries[alias]
            );
        }
    }
    // The aliases kept for logread's and logwrite's spelling still parse.
    for argv in [
        &["ringtail", "read", "--socket", "/q.sock"][..],
        &["ringtail", "export", "--socket", "/q.sock", "--dir", "/d"][..],
        &["ringtail", "read", "--socket-query", "/q.sock"][..],
    ] {
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    }
}
