//! A fresh app per test on SQLite (its own file) or Postgres (a database
//! created for this test run), with typed helpers to seed and query it.
//!
//! By concern: `app` holds `TestApp` and its constructors, `database` the
//! per-test databases' lifecycle, `seed` rows written straight into tables,
//! `client` requests through the router or over HTTP, `process` a real
//! `deployql serve` process.

mod app;
mod client;
mod database;
mod process;
mod provider;
mod seed;

pub use app::*;
pub use client::*;
pub use process::*;
pub use provider::*;
pub use seed::*;
