//! Benchmarks of oidc-gate (in progress).
fn main() {}
