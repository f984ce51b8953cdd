//! Shared test helpers: a seeded RNG whose seed is printed if the test fails, and can be
//! set with the `ACCRETION_SEED` environment variable to replay a failure; a snapshot of
//! a store's files; a B-tree's contents read into a map.

#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A seeded RNG. The seed comes from `ACCRETION_SEED` if set, else from the OS. Keep the
/// value alive for the whole test: if the test panics, dropping it prints the seed.
pub struct Seeded {
    pub seed: u64,
    pub rng: StdRng,
    test: &'static str,
}

impl Seeded {
    pub fn new(test: &'static str) -> Seeded {
        let seed = std::env::var("ACCRETION_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| rand::rng().random());
        Seeded {
            seed,
            rng: StdRng::seed_from_u64(seed),
            test,
        }
    }
}

impl Drop for Seeded {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{} failed: replay with ACCRETION_SEED={}",
                self.test, self.seed
            );
        }
    }
}

/// Every file of a store directory but its lock file, by path relative to `root`, with
/// its bytes.
pub fn snapshot(root: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    use std::path::{Path, PathBuf};
    fn walk(root: &Path, at: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(at).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.file_name().is_some_and(|n| n != "accretion.lock") {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Every entry of B-tree `name` in snapshot `r`, checked against the tree's `len`; `None`
/// if there is no such tree.
pub fn btree_contents(
    r: &accretion::ReadTxn<'_>,
    name: &str,
) -> Option<std::collections::BTreeMap<Vec<u8>, Vec<u8>>> {
    let t = r.open_tree(name).unwrap()?;
    let m: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = t
        .iter()
        .unwrap()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(t.len().unwrap(), m.len() as u64, "tree {name:?}: len");
    Some(m)
}

/// A copy of `dir`'s files as they are now, in a new temporary directory: what a process
/// killed at this instant leaves (nothing was shut down cleanly).
pub fn killed_image(dir: &accretion::Dir) -> accretion::Dir {
    let image = accretion::Dir::temporary().unwrap();
    for (rel, bytes) in snapshot(dir.path()) {
        let to = image.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
    image
}
