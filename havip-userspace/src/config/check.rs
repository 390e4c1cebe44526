//! `havip-agent check`: the config file checked as the agent would use it,
//! against the store opened read-only (never created, repaired, migrated or
//! written), without touching the data plane.

use std::path::Path;

use anyhow::{Context, Result};

use super::{plan_seed, Config, SeedReport};
use crate::store::{RedbStore, Store, StoreError};

/// What [`check`] found.
#[derive(Debug)]
pub enum CheckOutcome {
    /// The seed plans cleanly against the store as it is.
    Seeded(SeedReport),
    /// No store yet: the config was checked against an empty state.
    NoStore(SeedReport),
    /// The store is held by a running agent (redb locks it); only the file
    /// itself was checked.
    StoreInUse,
}

/// Loads `config_path` (with `state_db` overriding `[agent].state_db`),
/// checks the API's security settings and plans the seed against the store
/// opened read-only.
///
/// # Errors
/// The config does not parse or its seed is refused; the API settings are
/// refused; the store is unreadable or of a newer schema.
pub fn check(config_path: &Path, state_db: Option<&Path>) -> Result<CheckOutcome> {
    let mut cfg =
        Config::load(config_path).with_context(|| format!("config {}", config_path.display()))?;
    if let Some(db) = state_db {
        cfg.agent.state_db = db.to_path_buf();
    }
    crate::api::ApiSecurity::from_config(&cfg.agent).context("API settings")?;
    let db = &cfg.agent.state_db;
    if !db.exists() {
        let (_, report) = plan_seed(&cfg, &crate::model::State::default())?;
        return Ok(CheckOutcome::NoStore(report));
    }
    let store = match RedbStore::open_read_only(db) {
        Ok(s) => s,
        Err(StoreError::Open { source, .. })
            if matches!(*source, ::redb::DatabaseError::DatabaseAlreadyOpen) =>
        {
            return Ok(CheckOutcome::StoreInUse)
        }
        Err(e) => return Err(e).with_context(|| format!("store {}", db.display())),
    };
    let state = store
        .load()
        .with_context(|| format!("reading store {}", db.display()))?;
    let (_, report) = plan_seed(&cfg, &state)?;
    Ok(CheckOutcome::Seeded(report))
}
