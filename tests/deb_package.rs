//! The Debian package from scripts/build-deb (cargo-deb): its contents,
//! its control data (conffile, alternatives in postinst), and the installed
//! files at work: unpacked into a scratch root (`dpkg -x`), the installed
//! binary runs there with nothing else, checks the installed config, and
//! its man pages render.

use std::path::{Path, PathBuf};
use std::process::Command;

fn ok(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn build_deb() -> PathBuf {
    let have = Command::new("cargo").args(["deb", "--version"]).output();
    assert!(
        have.is_ok_and(|o| o.status.success()),
        "cargo-deb is missing: cargo install cargo-deb --locked"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = ok(Command::new(root.join("scripts/build-deb")).current_dir(root));
    PathBuf::from(out.trim())
}

#[test]
fn the_package_installs_a_working_ringtail() {
    let deb = build_deb();
    assert!(
        deb.extension().is_some_and(|e| e == "deb"),
        "{}",
        deb.display()
    );
    let contents = ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for want in [
        "./usr/bin/ringtail",
        "./etc/ringtail/ringtail.toml",
        "./lib/systemd/system/ringtail.service",
        "./lib/systemd/system/ringtail.socket",
        "./lib/systemd/system/ringtail-query.socket",
        "./lib/systemd/system/ringtail-http.socket",
        "./lib/systemd/system/ringtail-syslog.socket",
        "./usr/share/man/man1/ringtail.1.gz",
        "./usr/share/man/man1/ringtail-read.1.gz",
        "./usr/share/man/man1/ringtail-inspect.1.gz",
        "./usr/share/bash-completion/completions/ringtail",
        "./usr/share/zsh/vendor-completions/_ringtail",
        "./usr/share/fish/vendor_completions.d/ringtail.fish",
        "./usr/share/doc/ringtail/examples/ringtail.service.d/syslog.conf",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(want)),
            "{want} missing from the package:\n{contents}"
        );
    }
    // No file under memlogd's, logread's or logwrite's name: alternatives.
    for name in ["memlogd", "logread", "logwrite"] {
        assert!(
            !contents.contains(&format!("/usr/bin/{name}")),
            "{contents}"
        );
    }
    let info = ok(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(info.contains("Package: ringtail"), "{info}");
    let conffiles = ok(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/ringtail/ringtail.toml");
    let postinst = ok(Command::new("dpkg-deb").arg("-I").arg(&deb).arg("postinst"));
    assert!(postinst.contains("update-alternatives --install \"/usr/bin/$name\""));

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    ok(Command::new("dpkg").arg("-x").arg(&deb).arg(&root));
    // The installed binary in a root holding only the package's files.
    let version = ok(Command::new("chroot")
        .arg(&root)
        .args(["/usr/bin/ringtail", "--version"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"));
    assert_eq!(
        version.trim(),
        format!("ringtail {}", env!("CARGO_PKG_VERSION"))
    );
    // The config the service reads is valid for the binary it ships with.
    let check = ok(Command::new("chroot")
        .arg(&root)
        .args([
            "/usr/bin/ringtail",
            "serve",
            "--config",
            "/etc/ringtail/ringtail.toml",
            "--check",
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"));
    assert!(check.contains("max-lines"), "{check}");
    // The unit starts what the package installed, with that config.
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/ringtail.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/ringtail serve --config /etc/ringtail/ringtail.toml"));
    // man reads the installed pages.
    let page = root.join("usr/share/man/man1/ringtail-read.1.gz");
    let o = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output();
    if let Ok(o) = o {
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("ring-file") || text.contains("ring‐file"),
            "{text}"
        );
    }
}
