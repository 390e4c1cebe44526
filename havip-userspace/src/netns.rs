//! Entering a network namespace (`havip-agent --netns NAME`).

use std::{fs::File, os::fd::AsRawFd};

use anyhow::{bail, Context, Result};

/// Moves the calling thread into the network namespace at `path` (only the
/// network namespace: the mount namespace, and so bpffs, stays the same).
///
/// # Errors
///
/// When `path` cannot be opened or `setns(2)` refuses it (not a network
/// namespace, no `CAP_SYS_ADMIN`).
pub fn enter(path: &str) -> Result<()> {
    let file = File::open(path).with_context(|| format!("opening {path}"))?;
    // SAFETY: valid fd; CLONE_NEWNET only affects this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns({path}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Moves the process into the named namespace `/run/netns/<name>` (as `ip
/// netns` names them). Call it before starting threads: threads created
/// later inherit it, those already running do not.
///
/// # Errors
///
/// As [`enter`].
pub fn enter_named(name: &str) -> Result<()> {
    enter(&format!("/run/netns/{name}"))
}
