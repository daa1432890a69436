// `sqlx::migrate!` embeds the migrations at compile time; on stable Rust it cannot tell cargo
// to watch their directory, so without this a new migration is left out of an incremental
// build (what `sqlx migrate build-script` writes).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
