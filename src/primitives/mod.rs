//! Layer 1: the primitives. `entropy`, `journal`, `random_access` and `append_only` are
//! leaves built on `raw`; `once_map` and `content` are composed from the leaves' public
//! types only.

pub(crate) mod append_only;
pub(crate) mod content;
pub(crate) mod entropy;
pub(crate) mod journal;
pub(crate) mod once_map;
pub(crate) mod random_access;
