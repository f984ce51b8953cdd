//! The catalog: what kind of structure lives under each name of a store directory, so
//! that a tool can list a directory and open each structure with the right type, and so
//! that opening a structure as another kind is refused with both kinds named.
//!
//! A composite structure (OnceMap, Content and the four stores) records its kind and
//! format version in `kind.acc` in its own directory, written atomically the first time
//! an open of it succeeds (and again if the format it reports changes). A primitive's own
//! files already say what it is (the common header's kind: an entropy file, a register,
//! lanes), so it records nothing more. A structure made before the record existed (the
//! format-1 fixtures) is recognised from its files: which files and sub-structures it
//! holds.
//!
//! ```
//! use accretion::catalog::{self, Kind};
//! use accretion::{Dir, HashOptions, HashStore, ShardedOptions, ShardedStore};
//!
//! let dir = Dir::temporary()?;
//! drop(HashStore::open(&dir, "users", HashOptions::default())?);
//! let found = catalog::list(&dir)?;
//! assert_eq!(found.len(), 1);
//! assert_eq!((found[0].name.as_str(), found[0].kind), ("users", Kind::HashStore));
//! // Opening it as another kind is refused, naming both.
//! let e = ShardedStore::open(&dir, "users", ShardedOptions::default()).unwrap_err();
//! assert!(e.to_string().contains("HashStore"), "{e}");
//! # Ok::<(), accretion::Error>(())
//! ```

use std::fmt;
use std::fs;
use std::path::Path;

use crate::dir::Dir;
use crate::error::{Error, Result};
use crate::face::{Figure, Figures};
use crate::raw::files;
use crate::raw::header::{self, HEADER_BYTES, Header, PARAMS};

/// The file a composite structure records its kind in.
const FILE: &str = "kind.acc";

/// What a structure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// An [`Entropy`](crate::Entropy).
    Entropy,
    /// A [`Journal`](crate::Journal).
    Journal,
    /// A [`RandomAccess`](crate::RandomAccess).
    RandomAccess,
    /// An [`AppendOnly`](crate::AppendOnly).
    AppendOnly,
    /// A [`OnceMap`](crate::OnceMap).
    OnceMap,
    /// A [`Content`](crate::Content) store.
    Content,
    /// A [`LogStore`](crate::LogStore).
    LogStore,
    /// A [`BTreeStore`](crate::BTreeStore).
    BTreeStore,
    /// A [`HashStore`](crate::HashStore).
    HashStore,
    /// A [`ShardedStore`](crate::ShardedStore).
    ShardedStore,
}

impl Kind {
    /// Every kind, in the order of their codes.
    pub const ALL: [Kind; 10] = [
        Kind::Entropy,
        Kind::Journal,
        Kind::RandomAccess,
        Kind::AppendOnly,
        Kind::OnceMap,
        Kind::Content,
        Kind::LogStore,
        Kind::BTreeStore,
        Kind::HashStore,
        Kind::ShardedStore,
    ];

    /// The type's name, as the crate spells it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Entropy => "Entropy",
            Kind::Journal => "Journal",
            Kind::RandomAccess => "RandomAccess",
            Kind::AppendOnly => "AppendOnly",
            Kind::OnceMap => "OnceMap",
            Kind::Content => "Content",
            Kind::LogStore => "LogStore",
            Kind::BTreeStore => "BTreeStore",
            Kind::HashStore => "HashStore",
            Kind::ShardedStore => "ShardedStore",
        }
    }

    /// The name with its indefinite article ("an AppendOnly", "a HashStore").
    pub fn article(self) -> String {
        let name = self.name();
        if name.starts_with(['A', 'E', 'O']) {
            format!("an {name}")
        } else {
            format!("a {name}")
        }
    }

    /// Whether this is a primitive, whose own files' headers say what it is (it writes
    /// no `kind.acc`, and its open does not ask the catalog).
    pub fn is_primitive(self) -> bool {
        matches!(
            self,
            Kind::Entropy | Kind::Journal | Kind::RandomAccess | Kind::AppendOnly
        )
    }

    /// Whether this is a key-value store (layer 2).
    pub fn is_store(self) -> bool {
        matches!(
            self,
            Kind::LogStore | Kind::BTreeStore | Kind::HashStore | Kind::ShardedStore
        )
    }

    /// The format version this build writes for a new structure of this kind (an open
    /// records the format it finds, for structures of older formats it serves).
    fn format(self) -> u32 {
        match self {
            Kind::AppendOnly | Kind::OnceMap | Kind::Content | Kind::LogStore => 2,
            _ => 1,
        }
    }

    /// The kind's code in `kind.acc` (1-based, in [`ALL`](Self::ALL)'s order).
    fn code(self) -> u64 {
        Kind::ALL
            .iter()
            .position(|&k| k == self)
            .map_or(0, |i| i as u64 + 1)
    }

    fn from_code(code: u64) -> Option<Kind> {
        let i = usize::try_from(code.checked_sub(1)?).ok()?;
        Kind::ALL.get(i).copied()
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A structure found in a store directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Structure {
    /// Its name in the directory (`users/index`).
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// Its format version, if known: the one its `kind.acc` records, or a primitive's
    /// file header's; `None` for a composite recognised only from its files.
    pub format: Option<u32>,
    /// Whether its kind was recorded (`kind.acc`, or a primitive's header), rather than
    /// recognised from the names of its files.
    pub recorded: bool,
}

/// Records that `name` in `dir` is a `kind` of format `format`, unless that is already
/// recorded: called by a composite structure's open once it has succeeded. The record is
/// written atomically (temporary file, fsync, rename, fsync of the directory).
///
/// # Errors
/// `Incompatible` if `name` is recorded or recognised as another kind (a primitive's
/// files say what it is); `InvalidName`; `Io`.
pub fn record(dir: &Dir, name: &str, kind: Kind, format: u32) -> Result<()> {
    let path = dir.structure_path(name)?;
    match identify_at(&path)? {
        // Unrecorded, a Content store's files are a OnceMap's.
        Some((Kind::OnceMap, _, false)) if kind == Kind::Content => {}
        Some((found, _, _)) if found != kind => return Err(wrong_kind(&path, found, kind)),
        Some((_, Some(f), true)) if f == format && path.join(FILE).is_file() => return Ok(()),
        _ => {}
    }
    write_record(&path, kind, format)
}

fn write_record(path: &Path, kind: Kind, format: u32) -> Result<()> {
    let params = [kind.code(), u64::from(format), 0, 0, 0];
    let bytes = Header::new(header::Kind::Catalog, params).encode();
    files::create_dirs(path)?;
    files::write_atomically(path, FILE, &bytes)
}

/// Admits an open of `name` in `dir` as a `kind`, before it touches any file: refuses a
/// name that is another kind (by its record, or with none by its files), that lies
/// inside another structure (whose own files it could be taken for, and removed with),
/// or whose directory holds other structures; and records the kind of a name that holds
/// nothing yet, so that a crash while the structure makes its files leaves it
/// recognisable. Called by every composite structure's open.
///
/// # Errors
/// `Incompatible` naming both kinds, or the structure it lies in or holds;
/// `Corrupted` for a damaged record; `InvalidName`; `Io`.
pub fn admit(dir: &Dir, name: &str, kind: Kind) -> Result<()> {
    let path = dir.structure_path(name)?;
    admit_composite(dir, name, &path, kind)?;
    dir.note_composite(name);
    Ok(())
}

fn admit_composite(dir: &Dir, name: &str, path: &Path, kind: Kind) -> Result<()> {
    let path = path.to_path_buf();
    let parts: Vec<&str> = name.split('/').collect();
    for depth in 1..parts.len() {
        let above = parts[..depth].join("/");
        if let Some((found, _, _)) = identify_at(&dir.path().join(&above))? {
            return Err(Error::incompatible(
                &path,
                format!("this name lies inside the {found} {above:?}"),
            ));
        }
    }
    let check = |found: Option<(Kind, Option<u32>, bool)>| match found {
        // Unrecorded, a Content store's files are a OnceMap's: either may open them.
        Some((Kind::OnceMap, _, false)) if kind == Kind::Content => Ok(true),
        Some((found, _, _)) if found != kind => Err(wrong_kind(&path, found, kind)),
        Some(_) => Ok(true),
        None => Ok(false),
    };
    if check(identify_at(&path)?)? {
        return Ok(());
    }
    let mut inside = Vec::new();
    walk(&path, "", &mut inside, &mut None)?;
    if let Some(other) = inside.first() {
        return Err(Error::incompatible(
            &path,
            format!(
                "this directory holds other structures (the {} {:?})",
                other.kind, other.name
            ),
        ));
    }
    // Held from here to the record: two first opens of one name (of two kinds) in this
    // process are taken one after the other, and the second sees the first's record.
    // (A structure claims only names below its own.)
    let _claim = dir.claim(name)?;
    if check(identify_at(&path)?)? {
        return Ok(());
    }
    write_record(&path, kind, kind.format())
}

/// Admits an open of the primitive `name` in `dir` as a `kind`, before it touches any
/// file: refuses a name that is a composite structure, or a primitive of another kind,
/// that lies inside another structure without being one of its parts (the parts a
/// composite keeps, by name and kind: [`part_kind`]), or whose directory holds other
/// structures. A primitive records nothing: its files' headers say what it is. Called
/// by every primitive's open, under its claim on the name.
///
/// # Errors
/// `Incompatible` naming both kinds, or the structure it lies in or holds;
/// `Corrupted` for a damaged record; `InvalidName`; `Io`.
pub(crate) fn admit_primitive(dir: &Dir, name: &str, kind: Kind) -> Result<()> {
    let path = dir.structure_path(name)?;
    let parts: Vec<&str> = name.split('/').collect();
    for depth in 1..parts.len() {
        let above = parts[..depth].join("/");
        if let Some((owner, _, _)) = identify_at(&dir.path().join(&above))? {
            let rel = parts[depth..].join("/");
            // A part the owner has made (its open checks its files), or one it makes
            // now: only an open of the owner makes parts (a part made by another opener
            // ahead of the owner, say a user's journal at a store's `state` in the
            // instant between the store's record and its state, would lock the store
            // out). Residual: once the owner was opened through this `Dir`, a part it has
            // not made yet is admitted from any opener in this process.
            if part_kind(owner, &rel) == Some(kind)
                && (identify_at(&path)?.is_some() || dir.composite_admitted(&above))
            {
                return Ok(());
            }
            if part_kind(owner, &rel) == Some(kind) {
                return Err(Error::incompatible(
                    &path,
                    format!(
                        "this name is a part the {owner} {above:?} has not made yet: only the {owner}'s own open makes it"
                    ),
                ));
            }
            return Err(Error::incompatible(
                &path,
                format!("this name lies inside the {owner} {above:?}, which keeps no {kind} there"),
            ));
        }
    }
    match identify_at(&path)? {
        Some((found, _, _)) if found == kind => Ok(()),
        // Their files are alike (a register and lanes): a format-1 AppendOnly with no
        // lane yet looks like a RandomAccess. Each one's open checks the register.
        Some((Kind::AppendOnly | Kind::RandomAccess, _, _))
            if matches!(kind, Kind::AppendOnly | Kind::RandomAccess) =>
        {
            Ok(())
        }
        Some((found, _, _)) => Err(wrong_kind(&path, found, kind)),
        None => {
            let mut inside = Vec::new();
            walk(&path, "", &mut inside, &mut None)?;
            match inside.first() {
                Some(other) => Err(Error::incompatible(
                    &path,
                    format!(
                        "this directory holds other structures (the {} {:?})",
                        other.kind, other.name
                    ),
                )),
                None => Ok(()),
            }
        }
    }
}

/// The kind of primitive a composite structure of kind `owner` keeps at `rel` (a name
/// relative to its own), or `None` if it keeps none there.
fn part_kind(owner: Kind, rel: &str) -> Option<Kind> {
    let parts: Vec<&str> = rel.split('/').collect();
    match (owner, parts.as_slice()) {
        (Kind::OnceMap | Kind::Content, ["entropy"]) => Some(Kind::Entropy),
        (Kind::OnceMap | Kind::Content, ["log"]) => Some(Kind::AppendOnly),
        (Kind::OnceMap | Kind::Content, ["index" | "filter"]) => Some(Kind::RandomAccess),
        (Kind::OnceMap | Kind::Content, ["meta"]) => Some(Kind::Journal),
        (Kind::LogStore | Kind::BTreeStore | Kind::HashStore | Kind::ShardedStore, ["state"]) => {
            Some(Kind::Journal)
        }
        (Kind::HashStore | Kind::ShardedStore, ["entropy"]) => Some(Kind::Entropy),
        // Log segments `log-0000000001` and base segments `g1/base-000000`, each with
        // its hint file (`-hint`).
        (Kind::LogStore, [segment]) => {
            numbered_exactly(segment.strip_suffix("-hint").unwrap_or(segment), "log-", 10)
                .then_some(Kind::AppendOnly)
        }
        (Kind::LogStore, [generation, segment]) => (numbered(generation, "g")
            && numbered_exactly(segment.strip_suffix("-hint").unwrap_or(segment), "base-", 6))
        .then_some(Kind::AppendOnly),
        (Kind::BTreeStore, [generation]) => numbered(generation, "g").then_some(Kind::AppendOnly),
        (Kind::HashStore, [data]) => numbered(data, "d").then_some(Kind::AppendOnly),
        (Kind::HashStore, [index, "slots" | "tags"]) => {
            numbered(index, "i").then_some(Kind::RandomAccess)
        }
        (Kind::ShardedStore, [shard, part]) if numbered(shard, "s") => match *part {
            "sigs" | "ptrs" => Some(Kind::RandomAccess),
            "meta" => Some(Kind::Journal),
            "data" => Some(Kind::AppendOnly),
            _ => None,
        },
        _ => None,
    }
}

/// Whether a composite of kind `owner` keeps parts in its sub-directory `sub` (a part
/// itself, or a directory of parts such as a log store's generation `g1`).
fn part_directory(owner: Kind, sub: &str) -> bool {
    part_kind(owner, sub).is_some()
        || match owner {
            Kind::LogStore => numbered(sub, "g"),
            Kind::HashStore => numbered(sub, "i"),
            Kind::ShardedStore => numbered(sub, "s"),
            _ => false,
        }
}

/// Whether `name` is `prefix` then decimal digits.
fn numbered(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` is `prefix` then exactly `digits` decimal digits.
fn numbered_exactly(name: &str, prefix: &str, digits: usize) -> bool {
    numbered(name, prefix) && name.len() == prefix.len() + digits
}

/// The value size of the state journal each store keeps at `state` (each store checks
/// its own at compile time), by which a store made before kinds were recorded is told
/// from a user's journal that happens to be called `state`.
pub(crate) const fn state_bytes(kind: Kind) -> u64 {
    match kind {
        Kind::LogStore => 64,
        Kind::BTreeStore => 40,
        Kind::HashStore => 104,
        Kind::ShardedStore => 64 + 8 * crate::limits::SHARDED_SHARDS_MAX as u64,
        _ => 0,
    }
}

/// What [`verify`] found in one structure.
#[derive(Debug)]
pub struct Verified {
    /// What was checked, as named figures (keys, entries, slots...).
    pub figures: Figures,
    /// The damage found: each a `Corrupted` error naming the file, the offset and what
    /// is wrong. Empty if the structure is whole.
    pub damage: Vec<Error>,
}

/// Walks every checksum and structural invariant of the structure `name`, whatever its
/// kind (found as [`identify`] finds it), and lists the damage. A store is opened with
/// default options and checked by its own `verify` ([`Store::verify`](crate::face::Store::verify));
/// a OnceMap or Content store reads every entry against its checksums (every blob
/// against its BLAKE3 id) and lists every damaged one; an AppendOnly walks its framed
/// records (format 2; format 1 has no checksums); a Journal checks its slots; a
/// RandomAccess (whose elements carry no checksums) its length and lanes; an Entropy
/// file its checksum. Opening is the structure's own open, which may write what such an
/// open writes (a torn tail dropped, a missing kind record or filter made, a register
/// slot rewritten), never anything that changes what the structure holds; an
/// unrecorded OnceMap is not labelled (it may be a Content store).
///
/// ```
/// use accretion::{Dir, OnceMap, catalog};
/// let dir = Dir::temporary()?;
/// let map = OnceMap::open(&dir, "m")?;
/// map.insert(b"k", b"v")?;
/// map.sync()?;
/// drop(map);
/// let found = catalog::verify(&dir, "m")?;
/// assert!(found.damage.is_empty());
/// # Ok::<(), accretion::Error>(())
/// ```
///
/// # Errors
/// `InvalidName`, or `Incompatible` if nothing is there; what keeps the structure from
/// being checked at all, other than damage: `Locked`, `NameInUse` (open in this
/// process), `UnsupportedVersion`, `Incompatible`, `Io`.
pub fn verify(dir: &Dir, name: &str) -> Result<Verified> {
    let path = dir.structure_path(name)?;
    let Some((kind, _, recorded)) = identify_at(&path)? else {
        return Err(Error::incompatible(&path, "no structure is there"));
    };
    let mut damage = Vec::new();
    // A composite's buffers first, before its own open appends to any: records a frame
    // that does not hold cuts off from the rest.
    if !kind.is_primitive() {
        let mut parts = Vec::new();
        walk(&path, "", &mut parts, &mut None)?;
        for part in parts.iter().filter(|p| p.kind == Kind::AppendOnly) {
            match records_past_end(dir, &format!("{name}/{}", part.name)) {
                Ok(None) => {}
                Ok(Some(e)) | Err(e @ Error::Corrupted { .. }) => damage.push(e),
                Err(e) => return Err(e),
            }
        }
    }
    let checked = (|| -> Result<Figures> {
        use crate::face::Store;
        match kind {
            Kind::Entropy => {
                crate::Entropy::open(dir, name)?;
                Ok(vec![("checked", Figure::Count(1))])
            }
            Kind::Journal => crate::primitives::journal::inspect(dir, name),
            Kind::RandomAccess => crate::primitives::random_access::inspect(dir, name),
            Kind::AppendOnly => {
                let (buf, past) = crate::AppendOnly::open_looking_past_end(dir, name)?;
                damage.extend(past.map(|at| past_end(&buf, at, &path)));
                let mut records = 0;
                if buf.format() != 1 {
                    for record in buf.records(0) {
                        match record {
                            Ok(_) => records += 1,
                            Err(e) => damage.push(e),
                        }
                    }
                }
                Ok(vec![
                    ("bytes", Figure::Count(buf.len())),
                    ("records", Figure::Count(records)),
                ])
            }
            Kind::OnceMap => {
                // Unrecorded, it may be a Content store: opened without labelling it.
                let map = if recorded {
                    crate::OnceMap::open(dir, name)?
                } else {
                    crate::OnceMap::open_unrecorded(dir, name)?
                };
                let mut entries = 0;
                for entry in map.iter() {
                    match entry {
                        Ok(_) => entries += 1,
                        Err(e) => damage.push(e),
                    }
                }
                Ok(vec![("entries", Figure::Count(entries))])
            }
            Kind::Content => {
                let blobs = crate::Content::open(dir, name)?;
                let mut ids = Vec::new();
                for id in blobs.ids() {
                    match id {
                        Ok(id) => ids.push(id),
                        Err(e) => damage.push(e),
                    }
                }
                let mut bytes = 0;
                for id in &ids {
                    match blobs.get(id) {
                        Ok(Some(blob)) => bytes += blob.len() as u64,
                        Ok(None) => {}
                        Err(e) => damage.push(e),
                    }
                }
                Ok(vec![
                    ("blobs", Figure::Count(ids.len() as u64)),
                    ("bytes", Figure::Count(bytes)),
                ])
            }
            Kind::LogStore => Store::verify(&crate::LogStore::open(dir, name, Default::default())?),
            Kind::BTreeStore => {
                Store::verify(&crate::BTreeStore::open(dir, name, Default::default())?)
            }
            Kind::HashStore => {
                Store::verify(&crate::HashStore::open(dir, name, Default::default())?)
            }
            Kind::ShardedStore => {
                Store::verify(&crate::ShardedStore::open(dir, name, Default::default())?)
            }
        }
    })();
    let figures = match checked {
        Ok(figures) => figures,
        Err(e @ Error::Corrupted { .. }) => {
            damage.push(e);
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    // The look past each buffer's end and the structure's own open may meet one damage
    // twice (a data file cut short): list it once.
    let mut seen = std::collections::HashSet::new();
    damage.retain(|e| seen.insert(e.to_string()));
    Ok(Verified { figures, damage })
}

/// The damage an AppendOnly's open would hide: records past the end it adopts.
fn records_past_end(dir: &Dir, name: &str) -> Result<Option<Error>> {
    let (buf, past) = crate::AppendOnly::open_looking_past_end(dir, name)?;
    Ok(past.map(|at| past_end(&buf, at, &dir.path().join(name))))
}

fn past_end(buf: &crate::AppendOnly, at: u64, path: &Path) -> Error {
    let end = buf.len();
    let (file, offset) = buf
        .file_position(end)
        .unwrap_or_else(|| (path.to_path_buf(), end));
    Error::corrupted(
        &file,
        offset,
        format!(
            "the frame at byte {end} of the buffer does not hold, but a record whose frame \
             holds lies past it, at byte {at}: an open keeps only the records before the \
             damage, and the next append writes over the rest"
        ),
    )
}

/// What `name` in `dir` is, if anything: its record, or what its files say.
///
/// # Errors
/// `Corrupted` for a damaged record; `InvalidName`; `Io`.
pub fn identify(dir: &Dir, name: &str) -> Result<Option<Structure>> {
    let path = dir.structure_path(name)?;
    Ok(
        identify_at(&path)?.map(|(kind, format, recorded)| Structure {
            name: name.to_owned(),
            kind,
            format,
            recorded,
        }),
    )
}

/// Every structure in `dir`, by name (a structure's own sub-structures, such as a store's
/// journal, are not listed apart from it).
///
/// # Errors
/// `Corrupted` for a damaged record; `Io`.
pub fn list(dir: &Dir) -> Result<Vec<Structure>> {
    let mut out = Vec::new();
    walk(dir.path(), "", &mut out, &mut None)?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A name whose kind record is damaged, and the `Corrupted` error reading it gave.
pub type Damaged = (String, Error);

/// As [`list`], going on past damaged kind records: the structures found, and for each
/// name whose record is damaged, the name and the `Corrupted` error (not looked into).
///
/// # Errors
/// `Io`.
pub fn list_despite_damage(dir: &Dir) -> Result<(Vec<Structure>, Vec<Damaged>)> {
    let mut out = Vec::new();
    let mut damaged = Some(Vec::new());
    walk(dir.path(), "", &mut out, &mut damaged)?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, damaged.unwrap_or_default()))
}

/// Lists the structures below `root/prefix` into `out`; with `damaged`, a damaged kind
/// record is noted there (with its name) instead of ending the walk.
fn walk(
    root: &Path,
    prefix: &str,
    out: &mut Vec<Structure>,
    damaged: &mut Option<Vec<Damaged>>,
) -> Result<()> {
    let at = if prefix.is_empty() {
        root.to_path_buf()
    } else {
        root.join(prefix)
    };
    for child in children(&at)? {
        let name = if prefix.is_empty() {
            child
        } else {
            format!("{prefix}/{child}")
        };
        let path = root.join(&name);
        let look = |damaged: &mut Option<Vec<Damaged>>| match identify_at(&path) {
            Err(e @ Error::Corrupted { .. }) if damaged.is_some() => {
                if let Some(d) = damaged.as_mut() {
                    d.push((name.clone(), e));
                }
                Ok(Err(()))
            }
            other => other.map(Ok),
        };
        let found = match look(damaged)? {
            Err(()) => continue,
            Ok(None) => {
                let mut inside = Vec::new();
                walk(root, &name, &mut inside, damaged)?;
                // A structure being made records its kind before its parts exist: parts
                // found after a look that saw no record belong to it if it has one now.
                match look(damaged)? {
                    Err(()) => continue,
                    Ok(None) => {
                        out.extend(inside);
                        continue;
                    }
                    Ok(some) => some,
                }
            }
            Ok(some) => some,
        };
        if let Some((kind, format, recorded)) = found {
            out.push(Structure {
                name,
                kind,
                format,
                recorded,
            });
        }
    }
    Ok(())
}

/// The sub-directories of `at` that can be structure names (no dot: files and set-aside
/// removals have one), sorted.
fn children(at: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let entries = match fs::read_dir(at) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(Error::io(at, "list directory", e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(at, "list directory", e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let is_dir = entry
            .file_type()
            .map_err(|e| Error::io(entry.path(), "look up", e))?
            .is_dir();
        if is_dir
            && !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn wrong_kind(path: &Path, found: Kind, wanted: Kind) -> Error {
    Error::incompatible(
        path,
        format!(
            "this structure is {}, not {}",
            found.article(),
            wanted.article()
        ),
    )
}

/// The kind and format `kind.acc` in `path` records, if it exists.
fn read_record(path: &Path) -> Result<Option<(Kind, u32)>> {
    let file = path.join(FILE);
    let Some(bytes) = files::read_if_exists(&file)? else {
        return Ok(None);
    };
    let h = Header::decode(&bytes, &file, header::Kind::Catalog)?;
    if bytes.len() != HEADER_BYTES {
        return Err(Error::corrupted(
            &file,
            HEADER_BYTES.min(bytes.len()) as u64,
            format!(
                "a kind record is {HEADER_BYTES} bytes, this one {}",
                bytes.len()
            ),
        ));
    }
    let kind = Kind::from_code(h.params[0]).ok_or_else(|| {
        Error::incompatible(
            &file,
            format!(
                "records structure kind {}, which this build does not know",
                h.params[0]
            ),
        )
    })?;
    let format = u32::try_from(h.params[1])
        .map_err(|_| Error::corrupted(&file, 24, "a format version past u32"))?;
    debug_assert_eq!(PARAMS, 5);
    Ok(Some((kind, format)))
}

/// What the directory `path` holds: (kind, format, recorded), or `None` if it holds no
/// structure (nothing, or only other structures' directories).
fn identify_at(path: &Path) -> Result<Option<(Kind, Option<u32>, bool)>> {
    if let Some((kind, format)) = read_record(path)? {
        return Ok(Some((kind, Some(format), true)));
    }
    let has_file = |name: &str| path.join(name).is_file();
    // A primitive: its files' headers say what it is.
    if has_file("entropy.acc") {
        return Ok(Some((Kind::Entropy, Some(1), true)));
    }
    if has_file("journal.acc") {
        return Ok(Some((Kind::Journal, Some(1), true)));
    }
    if has_file("length.acc") || has_file("data-00.acc") || has_file("cells-00.acc") {
        // Both keep their lanes beside a length register: the lanes' names tell them
        // apart, or, before the first lane, the register's value size (a format-2
        // AppendOnly's holds 32 bytes, a RandomAccess's 8; so did a format-1
        // AppendOnly's, which with no lane yet holds nothing and is listed as a
        // RandomAccess).
        // The register's value size, if its header reads: one being made (or damaged)
        // does not, and the structure is still listed (its open reports the damage).
        let register = || register_value_bytes(path, "length.acc");
        let (kind, format) = if has_file("cells-00.acc") {
            (Kind::RandomAccess, Some(1))
        } else {
            let value_bytes = register()?;
            let format = value_bytes.map(|b| if b == 8 { 1 } else { 2 });
            if has_file("data-00.acc") || value_bytes != Some(8) {
                (Kind::AppendOnly, format)
            } else {
                (Kind::RandomAccess, Some(1))
            }
        };
        return Ok(Some((kind, format, true)));
    }
    // A composite made before kinds were recorded: its sub-structures' names, every one
    // a part of that kind, and a state journal of that store's size.
    let subs = children(path)?;
    let has = |name: &str| subs.iter().any(|s| s == name);
    let any = |prefix: &str| subs.iter().any(|s| numbered(s, prefix));
    let kind = if has("state")
        && subs
            .iter()
            .any(|s| part_kind(Kind::LogStore, s).is_some() && s != "state")
    {
        Some(Kind::LogStore)
    } else if has("state") && has("entropy") && any("s") {
        Some(Kind::ShardedStore)
    } else if has("state") && has("entropy") && (any("d") || any("i")) {
        Some(Kind::HashStore)
    } else if has("state") && any("g") {
        Some(Kind::BTreeStore)
    } else if has("log") && has("index") && has("meta") {
        // A Content store is a OnceMap on disk; only its record tells them apart.
        Some(Kind::OnceMap)
    } else {
        None
    };
    let Some(kind) = kind else { return Ok(None) };
    if !subs.iter().all(|s| part_directory(kind, s)) {
        return Ok(None);
    }
    if kind.is_store()
        && register_value_bytes(&path.join("state"), "journal.acc")? != Some(state_bytes(kind))
    {
        return Ok(None);
    }
    Ok(Some((kind, None, false)))
}

/// The value size a register file (`length.acc`, `journal.acc`) in `path` records, if
/// it exists and its header reads (one being made, or damaged, does not).
fn register_value_bytes(path: &Path, file: &str) -> Result<Option<u64>> {
    let file = path.join(file);
    Ok(files::read_if_exists(&file)?.and_then(|bytes| {
        Header::decode(&bytes, &file, header::Kind::Register)
            .ok()
            .map(|h| h.params[0])
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_code(k.code()), Some(k));
        }
        assert_eq!(Kind::from_code(0), None);
        assert_eq!(Kind::from_code(11), None);
    }

    #[test]
    fn a_record_is_kept_and_refuses_another_kind() {
        let dir = Dir::temporary().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        assert_eq!(identify(&dir, "a/b").unwrap(), None);
        admit(&dir, "a/b", Kind::HashStore).unwrap();
        record(&dir, "a/b", Kind::HashStore, 1).unwrap();
        record(&dir, "a/b", Kind::HashStore, 1).unwrap();
        let s = identify(&dir, "a/b").unwrap().unwrap();
        assert_eq!(
            (s.kind, s.format, s.recorded),
            (Kind::HashStore, Some(1), true)
        );
        let e = admit(&dir, "a/b", Kind::LogStore).unwrap_err();
        assert!(matches!(e, Error::Incompatible { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("HashStore") && text.contains("LogStore"),
            "{text}"
        );
        assert!(record(&dir, "a/b", Kind::LogStore, 2).is_err());
        // A new format is recorded over the old.
        record(&dir, "a/b", Kind::HashStore, 2).unwrap();
        assert_eq!(identify(&dir, "a/b").unwrap().unwrap().format, Some(2));
        assert_eq!(list(&dir).unwrap().len(), 1);
    }

    #[test]
    fn damaged_or_foreign_records_are_errors() {
        let dir = Dir::temporary().unwrap();
        std::fs::create_dir_all(dir.path().join("x")).unwrap();
        record(&dir, "x", Kind::OnceMap, 2).unwrap();
        let file = dir.path().join("x").join(FILE);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert!(matches!(
            identify(&dir, "x").unwrap_err(),
            Error::Corrupted { .. }
        ));
        let unknown = Header::new(header::Kind::Catalog, [99, 1, 0, 0, 0]).encode();
        std::fs::write(&file, unknown).unwrap();
        let e = identify(&dir, "x").unwrap_err();
        assert!(matches!(e, Error::Incompatible { .. }), "{e}");
        std::fs::write(&file, &unknown[..10]).unwrap();
        assert!(matches!(
            identify(&dir, "x").unwrap_err(),
            Error::Corrupted { .. }
        ));
    }
}
