//! The cross-engine benchmark suite (to be written).

fn main() {}
