//! Process hardening done first thing at start: no core dumps.
//!
//! A core dump of the service holds whatever its memory held — decrypted card numbers in flight,
//! CVCs, the unwrapped data keys (docs/reliability.md found PANs in one). So `oneclick` sets
//! `RLIMIT_CORE` to 0 (soft and hard: the process cannot raise it again) and, on Linux, clears
//! the "dumpable" flag (`PR_SET_DUMPABLE` 0), which also keeps same-user processes from
//! attaching a debugger (`gcore`, `ptrace`) or reading `/proc/<pid>/mem`. Both through `nix`'s
//! safe wrappers: `unsafe` stays forbidden in our crates.
//!
//! A failure is an error, not a warning: a service that may dump its keys must not start.

use anyhow::Context as _;

/// What [`disable_core_dumps`] left in force, read back from the kernel (logged at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreDumps {
    /// `RLIMIT_CORE` (soft, hard) in bytes.
    pub limit: (u64, u64),
    /// The dumpable flag (`PR_GET_DUMPABLE`); `None` where the platform has none.
    pub dumpable: Option<bool>,
}

/// Disables core dumps for this process (see the module header).
#[cfg(target_os = "linux")]
pub fn disable_core_dumps() -> anyhow::Result<CoreDumps> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    setrlimit(Resource::RLIMIT_CORE, 0, 0).context("setting RLIMIT_CORE to 0")?;
    nix::sys::prctl::set_dumpable(false).context("prctl(PR_SET_DUMPABLE, 0)")?;
    let limit = getrlimit(Resource::RLIMIT_CORE).context("reading RLIMIT_CORE")?;
    let dumpable = nix::sys::prctl::get_dumpable().context("prctl(PR_GET_DUMPABLE)")?;
    if limit != (0, 0) || dumpable {
        anyhow::bail!("core dumps still enabled after disabling them");
    }
    Ok(CoreDumps {
        limit,
        dumpable: Some(dumpable),
    })
}

/// Disables core dumps for this process (see the module header): `RLIMIT_CORE` only.
#[cfg(all(unix, not(target_os = "linux")))]
pub fn disable_core_dumps() -> anyhow::Result<CoreDumps> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    setrlimit(Resource::RLIMIT_CORE, 0, 0).context("setting RLIMIT_CORE to 0")?;
    let limit = getrlimit(Resource::RLIMIT_CORE).context("reading RLIMIT_CORE")?;
    Ok(CoreDumps {
        limit,
        dumpable: None,
    })
}
