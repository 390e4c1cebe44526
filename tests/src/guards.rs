//! Namespace and pin-dir guards, CPU pinning, polling.

use std::{
    fs::File,
    marker::PhantomData,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use havip::dataplane::loader;

use crate::lab::{self, Netns};

/// XDP verdicts (`enum xdp_action` in `include/uapi/linux/bpf.h`).
pub mod action {
    pub const ABORTED: u32 = 0;
    pub const DROP: u32 = 1;
    pub const PASS: u32 = 2;
    pub const TX: u32 = 3;
    pub const REDIRECT: u32 = 4;

    /// `XDP_DROP` and friends, for failure messages.
    pub fn name(action: u32) -> String {
        match action {
            ABORTED => "XDP_ABORTED".into(),
            DROP => "XDP_DROP".into(),
            PASS => "XDP_PASS".into(),
            TX => "XDP_TX".into(),
            REDIRECT => "XDP_REDIRECT".into(),
            other => format!("unknown action {other}"),
        }
    }
}

/// Polls `cond` every millisecond until it holds or `timeout` passes.
/// Returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Path of a named namespace's handle.
pub fn netns_path(ns: &Netns) -> String {
    format!("/run/netns/{}", ns.name())
}

/// Moves the current thread into a network namespace and moves it back on
/// drop (aya's `NetNsGuard`). Only this thread changes namespace, so the
/// guard is `!Send`. Mount namespace (and so bpffs) is unaffected.
pub struct NetnsGuard {
    previous: File,
    target: String,
    _not_send: PhantomData<*const ()>,
}

impl NetnsGuard {
    /// Enters `ns` on the calling thread.
    pub fn enter(ns: &Netns) -> Self {
        Self::enter_path(&netns_path(ns))
    }

    /// Enters the namespace whose handle is at `path` on the calling thread.
    pub fn enter_path(path: &str) -> Self {
        let previous = File::open("/proc/thread-self/ns/net")
            .unwrap_or_else(|e| panic!("opening /proc/thread-self/ns/net: {e}"));
        let target = File::open(path).unwrap_or_else(|e| panic!("opening netns {path}: {e}"));
        // SAFETY: valid fd; CLONE_NEWNET only affects the calling thread.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            panic!("setns({path}): {}", std::io::Error::last_os_error());
        }
        Self {
            previous,
            target: path.to_owned(),
            _not_send: PhantomData,
        }
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // SAFETY: valid fd opened in `enter_path`.
        if unsafe { libc::setns(self.previous.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            let msg = format!(
                "leaving netns {}: setns back failed: {}",
                self.target,
                std::io::Error::last_os_error()
            );
            if std::thread::panicking() {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}

/// A pin directory for one test's or one bench run's maps and links;
/// `loader::teardown` (unpin everything, detach links) runs on drop.
#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
    /// A bench run's dir: on drop, errors are ignored and whatever teardown
    /// does not know is removed too. A test's: a teardown error fails it.
    lenient: bool,
}

impl PinDir {
    /// `/sys/fs/bpf/havip-test-<unique>` for one test.
    pub fn for_test() -> Self {
        let path = PathBuf::from(format!("/sys/fs/bpf/havip-test-{}", lab::unique_name("")));
        // A run killed before its guards ran can leave a dir with our name:
        // never adopt its maps.
        loader::teardown(&path)
            .unwrap_or_else(|e| panic!("removing stale pin dir {}: {e}", path.display()));
        Self {
            path,
            lenient: false,
        }
    }

    /// `path`, removed with [`PinDir::remove`] on drop.
    pub fn lenient(path: PathBuf) -> Self {
        Self {
            path,
            lenient: true,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tears `path` down, then removes anything teardown does not know
    /// about (a newer map, a stray link); errors are ignored.
    pub fn remove(path: &Path) {
        let _ = loader::teardown(path);
        let _ = std::fs::remove_dir_all(path);
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if self.lenient {
            Self::remove(&self.path);
        } else if let Err(e) = loader::teardown(&self.path) {
            let msg = format!("tearing down pin dir {}: {e}", self.path.display());
            if std::thread::panicking() {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}

/// Pins the current thread to the CPU it runs on and restores its affinity
/// on drop: per-CPU state (the event rate limiter) then has one slot.
pub struct CpuPin {
    previous: libc::cpu_set_t,
    pub cpu: usize,
}

impl CpuPin {
    pub fn current() -> Self {
        // SAFETY: plain syscalls on this thread (pid 0) with a zeroed set.
        unsafe {
            let mut previous: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut previous)
                != 0
            {
                panic!("sched_getaffinity: {}", std::io::Error::last_os_error());
            }
            let cpu = usize::try_from(libc::sched_getcpu())
                .unwrap_or_else(|_| panic!("sched_getcpu: {}", std::io::Error::last_os_error()));
            pin_current_thread(cpu).unwrap_or_else(|e| panic!("sched_setaffinity: {e}"));
            Self { previous, cpu }
        }
    }
}

/// Lets the calling thread run on `cpu` only.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; the syscall (on this thread, pid 0)
    // only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Drop for CpuPin {
    fn drop(&mut self) {
        // SAFETY: restores the set read in `current`.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.previous);
        }
    }
}
