//! tickler: a scheduler daemon for billing and collections back offices.
//!
//! The boxes follow DESIGN.md, top to bottom; a box imports only boxes below it and the leaves
//! (`scripts/imports.py` prints the graph and checks it has no circle):
//! - `cli`: the command line, one file per command group;
//! - `daemon`: the timer loop, runner, ledger writer, reload, shutdown, alerts, metrics, the
//!   `[http]` listener, systemd;
//! - `config`: `config.toml` read and validated into typed specs (it builds each job and
//!   channel from its parameters, so it sits above them);
//! - `queue`: the durable queue of one-off tasks and the collection campaigns;
//! - `jobs`: one file per job kind; `billing`: periods, money and invoice messages, CSV import,
//!   demo data; `notify`: channels, templates, the one delivery pipeline;
//! - `schedule`: triggers into instants; `store`: every SQL statement, both backends;
//! - the leaves every box may use: `time` (clock, durations, zones), `secret`, `net` (the HTTP
//!   client, output tails), `retry` (retry policy, backoff, waiting for the database), `cores`
//!   (a long slice's work shared out among the cores, in order), and `logging`.

pub mod billing;
pub mod cli;
pub mod config;
pub mod cores;
pub mod daemon;
pub mod http;
pub mod jobs;
pub mod logging;
pub mod net;
pub mod notify;
pub mod queue;
pub mod retry;
pub mod schedule;
pub mod secret;
pub mod store;
pub mod time;
