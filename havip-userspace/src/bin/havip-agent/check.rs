//! `havip-agent check`: validates a config with no side effects, with
//! keepalived-style exit codes.

use std::path::{Path, PathBuf};

use havip::{
    config::{plan_seed, Config, ConfigError},
    model::State,
    store::RedbStore,
};

/// The config is valid.
pub const OK: i32 = 0;
/// The config is invalid (syntax, a value, or refused by the validation core).
pub const INVALID: i32 = 1;
/// Usage or I/O error (unreadable file, store that cannot be read).
pub const USAGE_OR_IO: i32 = 2;

/// Checks `path`: parse, `[agent]` values, then plans the seed over the
/// store at `state_db` (or the config's `[agent] state_db`) opened read-only
/// when it exists, else over an empty state. Writes nothing. Returns the
/// exit code; what it found goes to stdout (ok) or stderr.
pub fn run(path: &Path, state_db: Option<PathBuf>, quiet: bool) -> i32 {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e @ ConfigError::Read { .. }) => {
            eprintln!("error: {}", chain(&e));
            return USAGE_OR_IO;
        }
        Err(e) => {
            eprintln!("invalid: {}", chain(&e));
            return INVALID;
        }
    };
    // The API's start-up refusals (open TCP without a token, a token file
    // readable by others), as `run` would refuse them.
    if let Err(e) = havip::api::ApiSecurity::from_config(&cfg.agent) {
        eprintln!("invalid: API settings: {}", chain(&e));
        return INVALID;
    }
    if let Some(cmd) = &cfg.agent.notify_command {
        if let Err(e) = havip::agent::notify::check_command(cmd) {
            eprintln!("invalid: [agent] notify_command: {e}");
            return INVALID;
        }
    }
    let db = state_db.unwrap_or_else(|| cfg.agent.state_db.clone());
    let (state, against) = match RedbStore::load_read_only(&db) {
        Ok(Some(s)) => (s, format!("the store {}", db.display())),
        Ok(None) => (
            State::default(),
            format!("an empty state ({} does not exist)", db.display()),
        ),
        Err(e) => {
            eprintln!(
                "error: cannot read the store read-only (is an agent running with it? pass --state-db to check against a copy, or a path that does not exist for an empty state): {}",
                chain(&e)
            );
            return USAGE_OR_IO;
        }
    };
    match plan_seed(&cfg, &state) {
        Ok((_, report)) => {
            if !quiet {
                println!(
                    "{}: valid against {against}: {} to create, {} kept, {} to modify",
                    path.display(),
                    report.created.len(),
                    report.kept.len(),
                    report.modified.len()
                );
                for c in &report.created {
                    println!("  create {c}");
                }
                for m in &report.modified {
                    println!("  modify {m}");
                }
            }
            OK
        }
        Err(e) => {
            eprintln!("invalid: {}: {}", path.display(), chain(&e));
            INVALID
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
