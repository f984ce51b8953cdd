//! The integration tests, one binary: each primitive through its public API against a std
//! model, concurrency, limits, corruption, old-format fixtures, other processes, full disk, hangs.

mod btree;
mod btree_review;
mod btree_review2;
mod btree_review3;
mod catalog;
mod common;
mod concurrency;
mod corruption;
mod crafted;
mod disk_full;
mod faults;
mod fixtures;
mod format2;
mod hangs;
mod hash_store;
mod limits;
mod log_corruption;
mod log_roll;
mod log_store;
mod lost_files;
mod lost_lanes;
mod model;
mod process;
mod process_sharded;
mod review;
mod review15;
mod review_hash;
mod review_sharded;
mod review_sharded_durable;
mod review_sharded_lists;
mod sharded_lists;
mod sharded_store;
mod soundness;
mod sync_cost;
