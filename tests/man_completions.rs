//! `ringtail man` and `ringtail completions`: pages and completions come
//! from the clap definitions, for every visible subcommand, and are
//! well-formed for the tools that read them (bash's parser; groff or man
//! when installed).

mod support;

use std::process::Command;

use support::bin;

fn run(args: &[&str]) -> String {
    let o = Command::new(bin()).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn man_pages_cover_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let listed = run(&["man", "--dir", dir.path().to_str().unwrap()]);
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "ringtail-export.1",
            "ringtail-inspect.1",
            "ringtail-read.1",
            "ringtail-run.1",
            "ringtail-serve.1",
            "ringtail.1"
        ]
    );
    assert_eq!(listed.lines().count(), files.len());
    let read = std::fs::read_to_string(dir.path().join("ringtail-read.1")).unwrap();
    assert!(
        read.starts_with(".ie") || read.contains(".TH ringtail-read 1"),
        "{read}"
    );
    assert!(
        read.contains("ring\\-file"),
        "the page documents --ring-file"
    );
    // The top page lists the subcommands but not the hidden ones.
    let top = run(&["man"]);
    assert!(top.contains(".TH ringtail 1"));
    assert!(top.contains("ringtail\\-inspect(1)") || top.contains("inspect"));
    assert!(!top.contains("completions"), "hidden subcommands stay out");
    // groff renders it without complaint, when installed.
    if let Ok(o) = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(dir.path().join("ringtail-serve.1"))
        .output()
    {
        assert!(o.status.success());
        assert!(
            o.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn completions_for_bash_zsh_fish() {
    let bash = run(&["completions", "bash"]);
    assert!(bash.contains("--socket-query") && bash.contains("--ring-file"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ringtail.bash");
    std::fs::write(&file, &bash).unwrap();
    let o = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        o.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Loaded into bash, it completes subcommands.
    let script = format!(
        "source {}; COMP_WORDS=(ringtail ins); COMP_CWORD=1; COMP_LINE='ringtail ins'; \
         COMP_POINT=${{#COMP_LINE}}; _ringtail ringtail ins ringtail; echo \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let o = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "inspect");
    let zsh = run(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef ringtail"), "{}", &zsh[..40]);
    let fish = run(&["completions", "fish"]);
    assert!(fish.contains("complete -c ringtail"));
    assert!(
        Command::new(bin())
            .args(["completions", "tcsh"])
            .output()
            .unwrap()
            .status
            .code()
            == Some(2)
    );
}
