//! Rebuilds when a migration is added: `sqlx::migrate!` embeds the
//! `migrations/` directories at compile time, and cargo does not watch them
//! on its own (what `sqlx migrate build-script` generates).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
