//! Tidy checks on the source tree: the rules of ARCHITECTURE.md and STYLE that a compiler
//! does not enforce. Every source file opens with a `//!` paragraph; `unsafe` appears only
//! in the mapping layer and every block carries a `// SAFETY:` line; the layers import only
//! what they may; no test is ignored and no stub is left.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("readable source tree") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .expect("inside the crate")
        .to_string_lossy()
        .replace('\\', "/")
}

/// Lines of code, with `//` comments (and doc comments) dropped.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("")))
}

#[test]
fn every_source_file_opens_with_a_doc_paragraph() {
    let mut missing = Vec::new();
    for dir in ["src", "tests", "examples", "benches"] {
        for file in rust_files(&root().join(dir)) {
            let text = fs::read_to_string(&file).expect("utf-8 source");
            if !text.starts_with("//!") {
                missing.push(relative(&file));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files without a leading //! paragraph: {missing:?}"
    );
}

#[test]
fn unsafe_lives_only_in_the_mapping_layer_with_safety_comments() {
    let mut outside = Vec::new();
    let mut undocumented = Vec::new();
    for file in rust_files(&root().join("src")) {
        let rel = relative(&file);
        let text = fs::read_to_string(&file).expect("utf-8 source");
        let lines: Vec<&str> = text.lines().collect();
        for (n, code) in code_lines(&text) {
            let is_unsafe = code.contains("unsafe {")
                || code.contains("unsafe fn")
                || code.contains("unsafe impl");
            if !is_unsafe {
                continue;
            }
            if !rel.starts_with("src/raw/lanes/") {
                outside.push(format!("{rel}:{n}"));
            }
            if code.contains("unsafe {") {
                let above = &lines[n.saturating_sub(6)..n - 1];
                if !above.iter().any(|l| l.contains("// SAFETY:")) {
                    undocumented.push(format!("{rel}:{n}"));
                }
            }
            if code.contains("unsafe fn") {
                let above = &lines[n.saturating_sub(12)..n - 1];
                if !above.iter().any(|l| l.contains("# Safety")) {
                    undocumented.push(format!("{rel}:{n} (no # Safety section)"));
                }
            }
        }
    }
    assert!(
        outside.is_empty(),
        "unsafe outside src/raw/lanes/: {outside:?}"
    );
    assert!(
        undocumented.is_empty(),
        "unsafe without SAFETY: {undocumented:?}"
    );
}

/// (files whose path starts with this, imports they must not have)
const FORBIDDEN_IMPORTS: &[(&str, &[&str])] = &[
    (
        "src/raw/",
        &["crate::primitives", "crate::dir", "crate::Dir"],
    ),
    (
        "src/primitives/entropy.rs",
        &[
            "primitives::once_map",
            "primitives::content",
            "primitives::journal",
        ],
    ),
    (
        "src/primitives/journal.rs",
        &[
            "primitives::once_map",
            "primitives::content",
            "primitives::append_only",
        ],
    ),
    (
        "src/primitives/append_only.rs",
        &[
            "primitives::once_map",
            "primitives::content",
            "primitives::journal",
        ],
    ),
    (
        "src/primitives/random_access.rs",
        &[
            "primitives::once_map",
            "primitives::content",
            "primitives::journal",
        ],
    ),
    ("src/primitives/once_map/", &["crate::raw"]),
    ("src/primitives/content.rs", &["crate::raw"]),
    // Stores use the primitives' public types (through the crate root) only, and never
    // another store.
    (
        "src/stores/",
        &[
            "crate::raw",
            "crate::primitives",
            "crate::stores",
            "super::super",
        ],
    ),
];

#[test]
fn layers_import_only_what_they_may() {
    let mut bad = Vec::new();
    for file in rust_files(&root().join("src")) {
        let rel = relative(&file);
        let text = fs::read_to_string(&file).expect("utf-8 source");
        for (prefix, forbidden) in FORBIDDEN_IMPORTS {
            if !rel.starts_with(prefix) {
                continue;
            }
            for (n, code) in code_lines(&text) {
                for f in *forbidden {
                    if code.contains(f) {
                        bad.push(format!("{rel}:{n} uses {f}"));
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "imports across layers: {bad:?}");
}

#[test]
fn no_ignored_tests_and_no_stubs() {
    let mut bad = Vec::new();
    for dir in ["src", "tests", "examples", "benches"] {
        for file in rust_files(&root().join(dir)) {
            if file.ends_with("tidy.rs") {
                continue;
            }
            let text = fs::read_to_string(&file).expect("utf-8 source");
            for (n, code) in code_lines(&text) {
                if code.contains(concat!("#[", "ignore"))
                    || code.contains("todo!(")
                    || code.contains("unimplemented!(")
                {
                    bad.push(format!("{}:{n}", relative(&file)));
                }
            }
        }
    }
    assert!(bad.is_empty(), "ignored tests or stubs: {bad:?}");
}

#[test]
fn the_checks_catch_what_they_look_for() {
    // A check that cannot fail is a defect: feed each scanner a bad line.
    let bad = "fn f() { let x = unsafe { 1 }; }";
    assert!(code_lines(bad).any(|(_, c)| c.contains("unsafe {")));
    let commented = "// unsafe { in a comment }";
    assert!(!code_lines(commented).any(|(_, c)| c.contains("unsafe {")));
}
