//! The `ringtail` binary: everything is in the library's [`ringtail::cli`].
//!
//! `main` must stay free of threads: `ringtail serve` changes the umask and
//! the environment before it builds its runtime (`-daemonize` re-executes the
//! program rather than forking).

#![deny(unsafe_code)]

fn main() {
    std::process::exit(ringtail::cli::main_with_args(std::env::args_os().collect()));
}
