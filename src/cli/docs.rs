//! `ringtail man` and `ringtail completions`: man pages and shell
//! completions generated from the clap definitions, so they always say
//! what `--help` says (clap_mangen and clap_complete, the clap project's
//! own generators). Both are hidden from `--help`: they are for packagers
//! (the Debian package runs them at build time) and for installing by
//! hand, as the README's "Running in production" section shows.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, ValueEnum};

use super::Cli;

#[derive(Args, Debug, Clone)]
pub struct ManArgs {
    /// Write ringtail.1 and one ringtail-SUBCOMMAND.1 per subcommand into
    /// this directory (created if missing) instead of printing ringtail.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// The shell to print completions for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells completions are generated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The command as users see it: hidden subcommands (these two) left out
/// of the pages and completions.
fn visible_command() -> clap::Command {
    let mut cmd = Cli::command();
    cmd.build();
    cmd
}

/// Runs `ringtail man`; returns the exit code.
pub fn man(args: ManArgs) -> i32 {
    let result = match &args.dir {
        Some(dir) => write_pages(dir).map(|files| {
            for f in files {
                println!("{}", f.display());
            }
        }),
        None => {
            let mut out = io::stdout().lock();
            clap_mangen::Man::new(visible_command())
                .render(&mut out)
                .and_then(|()| out.flush())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            super::print_error(format!("cannot write the man pages: {e}"));
            1
        }
    }
}

/// Writes every page into `dir`; returns the files written.
pub fn write_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let cmd = visible_command();
    let mut written = Vec::new();
    let mut page = |cmd: clap::Command, file: String| -> io::Result<()> {
        let path = dir.join(file);
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        std::fs::write(&path, buf)?;
        written.push(path);
        Ok(())
    };
    page(cmd.clone(), "ringtail.1".into())?;
    // clap's own `help` subcommand needs no page.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("ringtail-{}", sub.get_name());
        // The page's title and synopsis name the whole command.
        let sub = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("ringtail {}", sub.get_name()));
        page(sub, format!("{name}.1"))?;
    }
    Ok(written)
}

/// Runs `ringtail completions SHELL`; returns the exit code.
pub fn completions(args: CompletionsArgs) -> i32 {
    let mut cmd = visible_command();
    let mut out = io::stdout().lock();
    match args.shell {
        Shell::Bash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "ringtail", &mut out)
        }
        Shell::Zsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, "ringtail", &mut out)
        }
        Shell::Fish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, "ringtail", &mut out)
        }
    }
    let _ = out.flush();
    0
}
