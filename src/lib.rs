//! tickler: a scheduler daemon for billing and collections back offices.
//!
//! The flow follows DESIGN.md: `config` parses and validates `config.toml`, `schedule` turns
//! triggers into instants, `daemon` fires them and records each run through `store`, and
//! `jobs` holds one file per job kind, which send through `notify`. `billing` holds what the
//! billing jobs and commands share: billing periods, CSV import, the demo data.

pub mod billing;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod jobs;
pub mod notify;
pub mod schedule;
pub mod store;
