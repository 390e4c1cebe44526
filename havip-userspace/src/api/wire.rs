//! Wire types of the API that are not resources or operations (those are
//! [`crate::model`]'s types and [`crate::control::HaVipView`]).

use serde::{Deserialize, Serialize};

/// Reply of the delete operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: String,
}
