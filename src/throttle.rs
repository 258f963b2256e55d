//! Log lines that a peer can make the proxy repeat (a server that writes garbage, a client
//! that falls behind, a remote that is down under load) are rate-limited, so that nobody can
//! fill the disk through the proxy's log: per kind of line, a few per window, then one line
//! that says how many were held back.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The window.
const WINDOW: Duration = Duration::from_secs(10);
/// Kinds of line remembered at once (a bound on the table itself).
const KINDS: usize = 1024;

struct Slot {
    since: Instant,
    logged: u32,
    held: u64,
}

static SLOTS: LazyLock<Mutex<HashMap<String, Slot>>> = LazyLock::new(Default::default);

/// Whether a line of kind `key` may be logged now: `Some(n)` with the number of lines of this
/// kind held back since the last one logged, or `None` to hold this one back.
pub fn allow(key: &str) -> Option<u64> {
    allow_within(key, crate::limits::get().log_repeat)
}

/// As [`allow`], with `burst` lines per window.
pub fn allow_within(key: &str, burst: u32) -> Option<u64> {
    let now = Instant::now();
    let Ok(mut slots) = SLOTS.lock() else {
        return Some(0);
    };
    if slots.len() >= KINDS && !slots.contains_key(key) {
        slots.retain(|_, s| now.duration_since(s.since) < WINDOW);
        if slots.len() >= KINDS {
            return None;
        }
    }
    let slot = slots.entry(key.to_owned()).or_insert(Slot {
        since: now,
        logged: 0,
        held: 0,
    });
    if now.duration_since(slot.since) >= WINDOW {
        slot.since = now;
        slot.logged = 0;
    }
    if slot.logged < burst {
        slot.logged += 1;
        Some(std::mem::take(&mut slot.held))
    } else {
        slot.held += 1;
        None
    }
}

/// `tracing::warn!` for lines a peer can make repeat: at most a few per kind (`$key`) every
/// ten seconds, then one that counts those held back.
#[macro_export]
macro_rules! warn_throttled {
    ($key:expr, $($arg:tt)+) => {
        if let Some(held) = $crate::throttle::allow(&$key) {
            if held > 0 {
                tracing::warn!("{} ({held} more like it not logged)", format_args!($($arg)+));
            } else {
                tracing::warn!($($arg)+);
            }
        }
    };
}

/// As [`warn_throttled!`], at info level.
#[macro_export]
macro_rules! info_throttled {
    ($key:expr, $($arg:tt)+) => {
        if let Some(held) = $crate::throttle::allow(&$key) {
            if held > 0 {
                tracing::info!("{} ({held} more like it not logged)", format_args!($($arg)+));
            } else {
                tracing::info!($($arg)+);
            }
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_burst_then_held_back_then_counted() {
        let key = "throttle-test";
        for _ in 0..crate::limits::get().log_repeat {
            assert_eq!(super::allow(key), Some(0));
        }
        assert_eq!(super::allow(key), None);
        assert_eq!(super::allow(key), None);
        // Another kind is not held back by this one.
        assert_eq!(super::allow("throttle-test-other"), Some(0));
    }
}
