//! Task: the XDP program's aya-log records (ring full, refused owner update)
//! into tracing.

use tracing::warn;

use crate::dataplane::Dataplane;

/// Starts the log reader if the program has a logger.
pub fn spawn(dp: &mut Dataplane) {
    let Some(logs) = dp.logs.take() else {
        return;
    };
    // SAFETY: the logger owns its ring buffer fd for the AsyncFd's life.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logs, tokio::io::Interest::READABLE)
    };
    match registered {
        Ok(mut fd) => {
            tokio::spawn(async move {
                while let Ok(mut guard) = fd.readable_mut().await {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            });
        }
        Err(e) => warn!(error = %e.to_string(), "aya-log reader not started"),
    }
}
