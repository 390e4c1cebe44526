//! Durable control-plane state behind the [`Store`] trait: the state is a
//! set of records (`kind/id` -> JSON), loaded whole at start and changed by
//! [`Change`]s, each committed atomically and durably. [`RedbStore`] is the
//! backend today; a replicated one (etcd, later) implements the same trait.

mod etcd;
mod etcd_config;
mod redb;

use std::path::PathBuf;

use thiserror::Error;

pub use self::etcd::{EtcdHandle, EtcdShared, EtcdStore};
pub use self::etcd_config::EtcdConfig;
pub(crate) use self::redb::{decode, encode_keyed};
pub use self::redb::{RedbStore, SCHEMA_VERSION};
use crate::model::{Change, State};

/// A durable home for the control-plane state.
///
/// Implementations guarantee: when [`Store::commit_all`] returns `Ok`, every
/// change is durable; on `Err`, none is (all or nothing).
pub trait Store: Send {
    /// Reads the whole state.
    ///
    /// # Errors
    /// Storage errors, [`StoreError::Corrupt`] for a record that does not
    /// decode.
    fn load(&self) -> Result<State, StoreError>;

    /// Writes several changes, in order, in one durable transaction.
    ///
    /// # Errors
    /// Storage errors; the store is then unchanged.
    fn commit_all(&self, changes: &[Change]) -> Result<(), StoreError>;

    /// Writes `change` in one durable transaction.
    ///
    /// # Errors
    /// As [`Store::commit_all`].
    fn commit(&self, change: &Change) -> Result<(), StoreError> {
        self.commit_all(std::slice::from_ref(change))
    }

    /// A cheap read that proves the store answers (readiness).
    ///
    /// # Errors
    /// Storage errors.
    fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// After [`StoreError::Conflict`], with this batch's changes undone:
    /// brings `state` up to the store from what the failed commit read,
    /// if the store can (true); false means a full [`Store::load`] is
    /// needed.
    fn catch_up(&self, _state: &mut State) -> bool {
        false
    }

    /// Other writers share this store (etcd): the in-memory state may lag
    /// behind it, so a refusal is only final once checked against a fresh
    /// read.
    fn shared(&self) -> bool {
        false
    }
}

/// Errors of the durable store.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot create the store directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the store {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<::redb::DatabaseError>,
    },
    #[error("store transaction failed")]
    Transaction(#[source] Box<::redb::TransactionError>),
    #[error("store table access failed")]
    Table(#[source] Box<::redb::TableError>),
    #[error("store read/write failed")]
    Storage(#[source] Box<::redb::StorageError>),
    #[error("store commit failed")]
    Commit(#[source] Box<::redb::CommitError>),
    #[error("corrupt record {key:?} in the store")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("unknown record key {0:?} in the store")]
    UnknownKey(String),
    /// Another backend's failure.
    #[error("store backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot create or set the mode of the store file {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the store {path} has schema version {found}; this havip supports up to {supported} (written by a newer havip: upgrade havip, or restore a backup)")]
    SchemaTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("the store is open read-only")]
    ReadOnly,
    /// Another writer committed since the state was read (etcd): re-read,
    /// re-validate, retry.
    #[error("the shared state changed since it was read")]
    Conflict,
    /// A commit with more writes than one etcd txn takes.
    #[error("one commit of {writes} writes does not fit in one etcd transaction (limit {limit} operations, with 2 of the store's own): start etcd with a larger --max-txn-ops and set [agent.etcd] max_txn_ops to it, or commit in smaller batches (a seed: fewer records per config)")]
    TooLarge { writes: usize, limit: usize },
    #[error("cannot encode record {key:?}")]
    Encode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

impl StoreError {
    /// True for an I/O failure of the storage (disk full, EIO), as opposed
    /// to a refused or undecodable state.
    pub fn is_io(&self) -> bool {
        use ::redb::StorageError as S;
        let storage = match self {
            StoreError::Storage(e) => Some(&**e),
            StoreError::Transaction(e) => match &**e {
                ::redb::TransactionError::Storage(s) => Some(s),
                _ => None,
            },
            StoreError::Table(e) => match &**e {
                ::redb::TableError::Storage(s) => Some(s),
                _ => None,
            },
            StoreError::Commit(e) => match &**e {
                ::redb::CommitError::Storage(s) => Some(s),
                _ => None,
            },
            _ => None,
        };
        matches!(storage, Some(S::Io(_) | S::PreviousIo))
    }
}

/// `From` each redb error into its (boxed) [`StoreError`] variant.
macro_rules! from_redb {
    ($($error:ident => $variant:ident),* $(,)?) => {$(
        impl From<::redb::$error> for StoreError {
            fn from(e: ::redb::$error) -> Self {
                StoreError::$variant(Box::new(e))
            }
        }
    )*};
}

from_redb! {
    TransactionError => Transaction,
    TableError => Table,
    StorageError => Storage,
    CommitError => Commit,
}
