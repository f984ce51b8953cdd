//! The foundation, private to the crate: files and locks, the file header and checksum,
//! the pure slot-choice functions, the multi-slot register, and the lanes (the only
//! `unsafe` code). Nothing here knows about the primitives built on top.

pub(crate) mod files;
pub(crate) mod frame;
pub(crate) mod header;
#[allow(unsafe_code)]
pub(crate) mod lanes;
pub(crate) mod poison;
pub(crate) mod register;
pub(crate) mod slots;
pub(crate) mod sync;
