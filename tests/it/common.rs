//! Shared test helpers: a seeded RNG whose seed is printed if the test fails, and can be
//! set with the `ACCRETION_SEED` environment variable to replay a failure.

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
