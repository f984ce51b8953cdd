//! Criterion benchmarks of each primitive's hot operations beside the std equivalent.

fn main() {}
