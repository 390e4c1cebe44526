//! Task: the notify command (`[agent] notify_command`), keepalived's notify
//! idiom. On every owner change the agent runs the command with the change
//! as arguments and environment:
//!
//! ```text
//! <command> owner_changed <havip> <address> <member> <previous_member> <epoch> <trigger> <host>
//! ```
//!
//! (`-` for an absent member, address or host), and in the environment
//! `HAVIP_EVENT=owner_changed`, `HAVIP_ID`, `HAVIP_ADDRESS`, `HAVIP_MEMBER`,
//! `HAVIP_PREVIOUS_MEMBER`, `HAVIP_EPOCH`, `HAVIP_TRIGGER`, `HAVIP_HOST`,
//! `HAVIP_TIME` (RFC 3339 UTC; empty for an absent value).
//!
//! It never blocks the agent: the command is spawned (stdin and stdout
//! closed, stderr kept for the log), killed after `notify_timeout_ms`, and at
//! most `notify_max_running` run at once; a change that finds them all busy
//! is skipped. Each run's result (`ok`, `failed`, `timeout`, `skipped`,
//! `spawn_error`; `lagged` when this task fell behind the event buffer) is
//! logged and counted (`havip_notify_runs_total`). Runs for
//! successive changes may overlap: the epoch orders them.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use tokio::sync::{broadcast, Semaphore};
use tracing::{info, warn};

use super::metrics;
use crate::{
    config::AgentConfig,
    control::{history::Event, ControlPlane},
    model::OwnerChange,
};

/// Why a notify command is not usable.
///
/// # Errors
/// A message naming the problem: relative path, missing, not a regular
/// file, not executable.
pub fn check_command(path: &Path) -> Result<(), String> {
    if !path.is_absolute() {
        return Err(format!("{} is not an absolute path", path.display()));
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable", path.display()));
    }
    Ok(())
}

/// The settings of the notify task.
#[derive(Clone, Debug)]
struct Notifier {
    command: PathBuf,
    timeout: Duration,
    running: Arc<Semaphore>,
}

/// Starts the notify task if `notify_command` is set (a command that fails
/// [`check_command`] is logged; runs are attempted anyway and counted).
pub fn spawn(agent: &AgentConfig, cp: &Arc<ControlPlane>) {
    let Some(command) = agent.notify_command.clone() else {
        return;
    };
    if let Err(e) = check_command(&command) {
        warn!(error = %e, "notify_command is not usable; its runs will fail");
    }
    let n = Notifier {
        command,
        timeout: Duration::from_millis(agent.notify_timeout_ms.max(1)),
        running: Arc::new(Semaphore::new(agent.notify_max_running.max(1))),
    };
    info!(command = %n.command.display(), "notify command on owner changes");
    let mut rx = cp.events();
    let cp = Arc::clone(cp);
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(Event::OwnerChanged(c)) => n.fire(&cp, c),
                Ok(_) => {}
                // `missed` counts events of every kind, not only owner
                // changes: counted once per overrun.
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(missed, "notify: events missed (event buffer overrun); owner changes among them were not notified");
                    metrics::notify_run("lagged");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// `-` for an absent value (arguments).
fn arg(v: Option<&str>) -> String {
    v.unwrap_or("-").to_owned()
}

impl Notifier {
    /// Runs the command for `c` in a task of its own, or skips it when
    /// `notify_max_running` runs are in progress.
    fn fire(&self, cp: &Arc<ControlPlane>, c: OwnerChange) {
        let Ok(permit) = Arc::clone(&self.running).try_acquire_owned() else {
            warn!(havip = %c.havip, epoch = c.epoch, "notify: too many runs in progress; this change is skipped");
            metrics::notify_run("skipped");
            return;
        };
        let (n, cp) = (self.clone(), Arc::clone(cp));
        tokio::spawn(async move {
            let id = c.havip.clone();
            let address = tokio::task::spawn_blocking(move || {
                cp.with_state(|s| s.havips.get(&id).map(|h| h.address.to_string()))
            })
            .await
            .ok()
            .flatten();
            let result = n.run(&c, address.as_deref()).await;
            metrics::notify_run(result);
            drop(permit);
        });
    }

    async fn run(&self, c: &OwnerChange, address: Option<&str>) -> &'static str {
        let trigger = c.trigger.name();
        let epoch = c.epoch.to_string();
        let mut cmd = tokio::process::Command::new(&self.command);
        cmd.arg("owner_changed")
            .arg(&c.havip)
            .arg(arg(address))
            .arg(arg(c.member.as_deref()))
            .arg(arg(c.previous_member.as_deref()))
            .arg(&epoch)
            .arg(trigger)
            .arg(arg(c.host.as_deref()))
            .env("HAVIP_EVENT", "owner_changed")
            .env("HAVIP_ID", &c.havip)
            .env("HAVIP_ADDRESS", address.unwrap_or_default())
            .env("HAVIP_MEMBER", c.member.as_deref().unwrap_or_default())
            .env(
                "HAVIP_PREVIOUS_MEMBER",
                c.previous_member.as_deref().unwrap_or_default(),
            )
            .env("HAVIP_EPOCH", &epoch)
            .env("HAVIP_TRIGGER", trigger)
            .env("HAVIP_HOST", c.host.as_deref().unwrap_or_default())
            .env("HAVIP_TIME", &c.time)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                warn!(command = %self.command.display(), havip = %c.havip, error = %e, "notify: cannot run the command");
                return "spawn_error";
            }
        };
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) if out.status.success() => {
                info!(havip = %c.havip, epoch = c.epoch, "notify: command ran");
                "ok"
            }
            Ok(Ok(out)) => {
                let stderr: String = String::from_utf8_lossy(&out.stderr)
                    .chars()
                    .take(300)
                    .collect();
                warn!(havip = %c.havip, epoch = c.epoch, status = %out.status, stderr = %stderr.trim_end(), "notify: command failed");
                "failed"
            }
            Ok(Err(e)) => {
                warn!(havip = %c.havip, epoch = c.epoch, error = %e, "notify: waiting for the command failed");
                "failed"
            }
            // Dropping the child kills it (kill_on_drop).
            Err(_) => {
                warn!(havip = %c.havip, epoch = c.epoch, timeout_ms = self.timeout.as_millis() as u64, "notify: command killed after the timeout");
                "timeout"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("notify.sh");
        assert!(check_command(Path::new("notify.sh")).is_err_and(|e| e.contains("absolute")));
        assert!(check_command(&script).is_err(), "missing");
        std::fs::write(&script, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(check_command(&script).is_err_and(|e| e.contains("not executable")));
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(check_command(&script), Ok(()));
        assert!(check_command(dir.path()).is_err_and(|e| e.contains("regular file")));
    }
}
