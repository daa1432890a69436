//! What making one reminder's message costs, part by part, apart from the databases and the
//! SMTP exchange: the invoice's context (`invoice_context`, on the sample invoice), the
//! template's render (`Templates::render`, the shipped `friendly`, for an email) and the
//! email's building (`Email::wire_bytes`: lettre's message, its parts' bodies encoded).
//!
//! This VM has no hardware counters and its timings move by 20-30 % from run to run, so the
//! parts are compared by the instructions callgrind counts, which do not move:
//! `bench/instructions.sh LABEL=BINARY...` runs this binary under callgrind and prints each
//! part's instructions per message.
//!
//! `cargo bench --bench messages -- PART [N]`: does PART (`context`, `render`, `email`, or
//! `none`, the setup alone) N times (default 2,000) and prints the wall time per message.

use std::time::Instant;

use tickler::billing::messages::sample_invoice_context;
use tickler::notify::ChannelKind;
use tickler::notify::email::{Email, EmailConfig};
use tickler::notify::templates::Templates;

mod common;

fn main() {
    let (part, n) = common::part_and_count("render");
    let part = part.as_str();
    let mut vars = serde_json::Map::new();
    vars.insert("company".into(), "Acme Rentals".into());
    vars.insert("support_email".into(), "help@acme.example".into());
    let templates = Templates::load(None, &vars).expect("the shipped templates load");
    let context = sample_invoice_context(Some(7), None);
    let config: EmailConfig = toml::from_str(
        "transport = \"smtp\"\nhost = \"127.0.0.1\"\nport = 2525\ntls = \"none\"\n\
         from = \"Acme Billing <billing@acme.example>\"",
    )
    .expect("an email section");
    let state = tempfile::tempdir().expect("a temporary directory");
    let (email, _, _) = Email::build(config, state.path()).expect("the email channel builds");
    let rendered = templates
        .render("friendly", ChannelKind::Email, &context)
        .expect("friendly renders");
    let start = Instant::now();
    let mut bytes = 0usize;
    for _ in 0..n {
        bytes += match part {
            "none" => 0,
            "context" => std::hint::black_box(sample_invoice_context(Some(7), None))
                .as_object()
                .map_or(0, |o| o.len()),
            "render" => {
                let r = templates
                    .render("friendly", ChannelKind::Email, &context)
                    .expect("friendly renders");
                r.text.len() + r.html.map_or(0, |h| h.len())
            }
            "email" => email
                .wire_bytes("thandi@example.com", &rendered, true)
                .expect("the email builds")
                .len(),
            other => panic!("unknown part `{other}`: write context, render, email or none"),
        };
    }
    let took = start.elapsed();
    println!(
        "{part}: {n} messages, {:.2} µs each (wall), {bytes} bytes",
        took.as_secs_f64() * 1e6 / n.max(1) as f64
    );
}
