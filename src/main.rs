//! The switchboard node.
fn main() {}
