//! Integration tests: one binary, real SQLite files, a real PostgreSQL, real processes.

mod helpers;

mod alerts;
mod billing;
mod check;
mod daemon;
mod hosts;
mod http;
mod process;
mod queue;
mod replicas;
mod service;
mod store;
mod story;
