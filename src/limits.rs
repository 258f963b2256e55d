//! Process-wide bounds that are not tied to one session or server: each has a flag, a
//! default (the value of [`Bounds::default`]) and a line in the README's limits table.
//!
//! They are set once at start-up from the command line ([`set`]); code that runs before
//! that (unit tests, the demo server) sees the defaults.

use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    /// Messages waiting in one client's queue (`--client-queue`), next to the byte bound of
    /// `--client-buffer`.
    pub client_queue: usize,
    /// Largest config or tool_config file read (`--max-config-size`).
    pub max_config_size: u64,
    /// Lines of one kind that a peer can make the proxy log per ten seconds (`--log-repeat`).
    pub log_repeat: u32,
    /// Lines of one server's stderr logged per ten seconds (`--stderr-lines`).
    pub stderr_lines: u32,
    /// Streams of one `/mcp` session kept for resumption (`--max-streams`).
    pub max_streams: usize,
    /// Size asked for the pipes to and from stdio servers (`--pipe-size`; 0 keeps the
    /// kernel's default).
    pub pipe_size: usize,
    /// Distinct tool names used as metric labels (`--metrics-max-tools`).
    pub metrics_max_tools: usize,
    /// Input rounds one request may take (`--max-input-rounds`).
    pub max_input_rounds: usize,
    /// Pages fetched from one member for one merged list (`--max-list-pages`).
    pub max_list_pages: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            client_queue: 1024,
            max_config_size: 4 << 20,
            log_repeat: 5,
            stderr_lines: 200,
            max_streams: 256,
            pipe_size: 1 << 20,
            metrics_max_tools: 2000,
            max_input_rounds: 64,
            max_list_pages: 100,
        }
    }
}

static BOUNDS: OnceLock<Bounds> = OnceLock::new();

/// The bounds in force.
pub fn get() -> &'static Bounds {
    BOUNDS.get_or_init(Bounds::default)
}

/// Set the bounds for this process; only the first call counts (returns whether it did).
pub fn set(bounds: Bounds) -> bool {
    BOUNDS.set(bounds).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let b = Bounds::default();
        assert_eq!(b.client_queue, 1024);
        assert_eq!(b.max_config_size, 4 * 1024 * 1024);
        assert_eq!(b.pipe_size, 1024 * 1024);
    }
}
