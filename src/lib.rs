//! tickler: a scheduler daemon for billing and collections back offices.
//!
//! The flow follows DESIGN.md: `config` parses and validates `config.toml`, `schedule` turns
//! triggers into instants, `daemon` fires them and records each run through `store`, and
//! `jobs` holds one file per job kind, which send through `notify`. `billing` holds what the
//! billing jobs and commands share: billing periods, CSV import, the demo data. `queue` is the durable queue of delayed tasks
//! and the collection campaigns that schedule them.

pub mod billing;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod jobs;
pub mod logging;
pub mod notify;
pub mod queue;
pub mod schedule;
pub mod store;
