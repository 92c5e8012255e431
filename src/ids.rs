//! Typed ids: a user's and a deployment's id are both UUIDs, and a function
//! taking one of each cannot be called with the two swapped.

use std::fmt;

use sea_orm::Value;
use uuid::Uuid;

/// The id of a user: the `sub` of a verified bearer token. Every query is
/// scoped to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub Uuid);

/// The id of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeploymentId(pub Uuid);

macro_rules! uuid_newtype {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$name> for Value {
            fn from(id: $name) -> Self {
                id.0.into()
            }
        }
    };
}

uuid_newtype!(UserId);
uuid_newtype!(DeploymentId);
