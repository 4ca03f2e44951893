//! The `ringtail` binary: everything is in the library's [`ringtail::cli`].
//!
//! `main` must stay free of threads: `ringtail serve` changes the umask and
//! the environment before it builds its runtime (`-daemonize` re-executes the
//! program rather than forking).

#![deny(unsafe_code)]

fn main() {
    // `cargo test --features loom` builds this binary too (every
    // integration test gets one), with the ring on loom's atomics, which
    // panic outside a model: refuse to run rather than panic.
    if cfg!(feature = "loom") {
        eprintln!(
            "ringtail: this binary was built with the `loom` feature, for the ring's model \
             checks only; build it again without it: cargo build --release"
        );
        std::process::exit(2);
    }
    std::process::exit(ringtail::cli::main_with_args(std::env::args_os().collect()));
}
