//! Command-line overrides of the config's `[agent]` table.

use std::path::PathBuf;

use crate::config::Config;

/// Command-line overrides of the config's `[agent]` table.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub pin_dir: Option<PathBuf>,
    pub api_socket: Option<PathBuf>,
    pub state_db: Option<PathBuf>,
    /// Detach and unpin everything on exit (the demo); default is to leave
    /// the data plane forwarding for the next agent.
    pub teardown_on_exit: bool,
}

impl Overrides {
    /// Writes the overrides that are set into `cfg`.
    pub fn apply(&self, cfg: &mut Config) {
        if let Some(p) = &self.pin_dir {
            cfg.agent.pin_dir.clone_from(p);
        }
        if let Some(p) = &self.api_socket {
            cfg.agent.api_socket.clone_from(p);
        }
        if let Some(p) = &self.state_db {
            cfg.agent.state_db.clone_from(p);
        }
    }
}
