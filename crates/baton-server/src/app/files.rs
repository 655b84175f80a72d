//! Open files: the server raises its soft `RLIMIT_NOFILE` to the hard limit at start (the
//! usual soft limit of 1,024 is far below what a fleet's connections need) and keeps its
//! connections a margin below whatever it got, so the database, artifacts and logs always have
//! descriptors left.

use baton_core::config::Settings;

/// Descriptors kept for everything that is not a client connection.
const RESERVED: u64 = 128;

/// Raises the soft open-file limit to the hard one; returns the soft limit now in force
/// (`None` where there is no such limit to read).
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
        // An unlimited hard limit still meets the kernel's cap (fs.nr_open, 2^20 by default).
        let target = hard.min(1 << 20);
        if soft < target && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
            return Some(target);
        }
        Some(soft)
    }
    #[cfg(not(unix))]
    None
}

/// How many connections the server takes at once: `max_connections` (0: no figure of its own),
/// or fewer if the open-file limit (raised first) would not hold them.
pub fn connection_budget(settings: &Settings) -> u32 {
    let configured = match settings.max_connections {
        0 => u32::MAX,
        n => n,
    };
    let Some(files) = raise_open_file_limit() else { return configured };
    let room = u32::try_from(files.saturating_sub(RESERVED).max(16)).unwrap_or(u32::MAX);
    let budget = configured.min(room);
    tracing::info!(open_files = files, connections = budget, "open-file limit");
    if budget < configured && settings.max_connections > 0 {
        tracing::warn!(
            max_connections = configured,
            open_files = files,
            "the open-file limit holds fewer connections than max_connections; raise the hard limit \
             (LimitNOFILE= in the systemd unit, or ulimit -Hn) to take more"
        );
    }
    budget
}
