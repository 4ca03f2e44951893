//! systemd's notification protocol (`sd_notify`), as `Type=notify` units
//! and `WatchdogSec=` use it: `READY=1` once the daemon serves, `STATUS=`
//! lines, `WATCHDOG=1` pings, `STOPPING=1` at shutdown.
//!
//! Written here rather than taken from a crate because it is one datagram
//! to the path (or abstract name, when it starts with `@`) in
//! `NOTIFY_SOCKET`; the crates that do it pull in more than that, or use
//! `unsafe` for `sd_notify`'s fd passing, which ringtail does not need.
//!
//! Promises: nothing is sent when `NOTIFY_SOCKET` is unset; a failure to
//! send is a warning on stderr, never a stop. The watchdog is armed only
//! when `WATCHDOG_USEC` is set and `WATCHDOG_PID`, if set, names this
//! process (systemd sets both for the main process of a unit with
//! `WatchdogSec=`), and pings at half the interval, as sd_watchdog_enabled(3)
//! recommends.

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

/// Sends `state` (one or more `KEY=VALUE` lines) to `NOTIFY_SOCKET`, if
/// set. Returns whether it was sent.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    match send_to(&path, state.as_bytes()) {
        Ok(()) => true,
        Err(e) => {
            eprintln!(
                "ringtail: warning: cannot notify systemd through NOTIFY_SOCKET={}: {e}",
                path.to_string_lossy()
            );
            false
        }
    }
}

fn send_to(path: &OsString, msg: &[u8]) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(msg, &addr)?;
    } else {
        sock.send_to(msg, Path::new(path))?;
    }
    Ok(())
}

/// The interval at which systemd expects `WATCHDOG=1`, if it does.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// [`watchdog_interval`] from the variables' values and this process id.
fn watchdog_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// Pings the watchdog at half its interval until the future is dropped.
/// The ping comes from a task on the daemon's runtime, after `alive` says
/// the daemon is well, so a wedged runtime or a failing check stops the
/// pings and systemd restarts the unit.
pub async fn watchdog(interval: Duration, alive: impl Fn() -> bool) {
    let mut tick = tokio::time::interval(interval / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if alive() {
            notify("WATCHDOG=1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::watchdog_from;
    use std::time::Duration;

    #[test]
    fn watchdog_variables() {
        let d = Duration::from_micros;
        assert_eq!(watchdog_from(Some("2000000"), None, 7), Some(d(2_000_000)));
        assert_eq!(
            watchdog_from(Some("2000000"), Some("7"), 7),
            Some(d(2_000_000))
        );
        assert_eq!(watchdog_from(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_from(Some("x"), None, 7), None);
        assert_eq!(watchdog_from(None, Some("7"), 7), None);
    }
}
