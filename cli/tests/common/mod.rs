//! What the binary's end-to-end tests share: running it, and reading what it printed.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The store kinds `create --kind` takes.
pub const KINDS: [&str; 4] = ["log", "btree", "hash", "sharded"];

/// Runs the binary with `args` (standard input empty).
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_accretion"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the binary")
}

/// Runs `args`, which must succeed; returns standard output.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// A path as an argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}
