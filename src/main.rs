//! The `ringtail` binary: everything is in the library's [`ringtail::cli`].
//!
//! `main` must stay free of threads and of an async runtime: `ringtail
//! serve -daemonize` forks, which is only sound in a single-threaded
//! process, and the daemon builds its runtime after the fork.

fn main() {
    std::process::exit(ringtail::cli::main_with_args(std::env::args_os().collect()));
}
