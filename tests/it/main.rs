//! Integration tests: one binary, real SQLite files, a real PostgreSQL, real processes.

mod helpers;

mod alerts;
mod billing;
mod browser;
mod check;
mod claims;
mod console;
mod console_browser;
mod contacts;
mod daemon;
mod examples;
mod examples_run;
mod hosts;
mod http;
mod input;
mod monitoring;
mod operate;
mod optouts;
mod payments;
mod process;
mod queue;
mod replicas;
mod service;
mod store;
mod store_billing;
mod store_queue;
mod story;
mod user_data;
mod windows;
