//! `ringtail serve --config FILE`: the shipped example starts a daemon, the
//! command line wins over the file, `--check` prints what would run, and
//! every mistake in a file names the file, the line and the key.

mod support;

use std::path::{Path, PathBuf};

use support::Daemon;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ringtail.toml")
}

use support::serve_check as check;

fn write(dir: &Path, text: &str) -> String {
    let path = dir.join("ringtail.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn the_example_config_starts_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let example = example();
    let d = Daemon::start(
        dir.path(),
        &[
            "--config",
            example.to_str().unwrap(),
            // The example's paths are the system's; a test keeps to its dir.
            "--http",
            "127.0.0.1:0",
        ],
    );
    let out = d.read_until(&[], "the start entry", |o| o.contains("started:"));
    assert!(out.contains("5000 lines"), "{out}");
    assert!(out.contains("max-line-len 1024"), "{out}");
    assert!(d.http_addr().is_some(), "{}", d.stderr());
    assert!(d
        .run(&["-n", "cfg", "--", "echo", "from a configured daemon"])
        .status
        .success());
    d.read_until(&["-o", "raw", "--source", "cfg.out"], "the line", |o| {
        o == "from a configured daemon\n"
    });
    assert!(d.stop().success());
}

#[test]
fn check_prints_the_effective_configuration_and_where_each_value_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "max-lines = 200\nlong-lines = \"truncate\"\nsocket-mode = \"0600\"\nmax-bytes = \"1MiB\"\n",
    );
    let (code, out, err) = check(&["--config", &file, "--max-lines", "300"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("max-lines = 300  # from the command line"),
        "{out}"
    );
    assert!(
        out.contains(&format!("long-lines = \"truncate\"  # from {file}:2")),
        "{out}"
    );
    assert!(out.contains("max-line-len = 1024  # default"), "{out}");
    // What --check prints is itself a config file that says the same.
    let again = dir.path().join("again.toml");
    let printed: String = out
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{}\n", l.split("  #").next().unwrap()))
        .collect();
    std::fs::write(&again, printed).unwrap();
    let (code, out2, err) = check(&["--config", again.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out2.contains("max-lines = 300"), "{out2}");
    assert!(out2.contains("socket-mode = \"0600\""), "{out2}");
}

#[test]
fn mistakes_name_the_file_the_line_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        ("max-lines = 100\n\nbogus = 1\n", ":3: unknown key `bogus`"),
        (
            "max-lines = 100\nmax-bytes = \"lots\"\n",
            ":2: key `max-bytes`: invalid value 'lots'",
        ),
        ("echo = \"yes\"\n", ":1: key `echo`: expected true or false"),
        (
            "max-lines = [1, 2]\n",
            ":1: key `max-lines`: takes one value, not a list",
        ),
        ("ready-fd = 3\n", ":1: unknown key `ready-fd`"),
        ("max-lines = \n", ":1: not valid TOML"),
        ("[[fdpass]]\nx = 1\n", "[[fdpass]] #1"),
        ("max-lines = 2\n", "max lines is 2"),
    ];
    for (text, want) in cases {
        let file = write(dir.path(), text);
        let (code, _, err) = check(&["--config", &file]);
        assert_eq!(code, 2, "{text:?}: {err}");
        assert!(err.contains(want), "{text:?}: {err}");
        if want.starts_with(':') {
            assert!(err.contains(&format!("{file}{want}")), "{text:?}: {err}");
        }
    }
    let (code, _, err) = check(&["--config", "/nonexistent/ringtail.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read the config file"), "{err}");
}
