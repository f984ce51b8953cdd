//! The `accretion` binary end to end: every verb on every store kind, the JSON output
//! parsed back, damage planted in a copy found by `verify`, a locked directory, bad
//! arguments.

use std::path::{Path, PathBuf};
use std::process::Command;

use accretion::Dir;

mod common;
use common::{KINDS, ok, run, s};

/// Runs `args`, which must fail with `code`; returns standard error.
fn fails(args: &[&str], code: i32) -> String {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8(out.stderr).expect("UTF-8 errors");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(!err.contains("backtrace"), "{args:?}: {err}");
    err
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn fill(dir: &str, name: &str) {
    for (k, v) in [("apple", "red"), ("pear", "green"), ("plum", "purple")] {
        ok(&["put", dir, name, k, v]);
    }
    ok(&["put", dir, name, "x:00ff", "x:0102"]);
}

#[test]
fn every_verb_on_every_store_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let d = s(&dir);
    for kind in KINDS {
        let name = format!("kv-{kind}");
        let n = name.as_str();
        assert!(ok(&["create", d, n, "--kind", kind]).contains("created"));
        fill(d, n);
        assert_eq!(ok(&["get", d, n, "apple"]), "apple\tred\n");
        // Options before or after the positional arguments.
        let got = json_lines(&ok(&["--json", "get", d, n, "x:00ff"]));
        assert_eq!(
            got,
            [serde_json::json!({"key_hex": "00ff", "value": "\u{1}\u{2}"})]
        );
        let got = json_lines(&ok(&["get", d, n, "X64'00FF'", "--json"]));
        assert_eq!(got[0]["key_hex"], "00ff");
        assert_eq!(ok(&["len", d, n]), "4\n");
        assert_eq!(json_lines(&ok(&["len", d, n, "--json"]))[0]["len"], 4);
        // Scans: by prefix, bounds and limit, in any store.
        let mut prefixed: Vec<String> = json_lines(&ok(&["scan", d, n, "--prefix", "p", "--json"]))
            .iter()
            .map(|o| o["key"].as_str().unwrap().to_owned())
            .collect();
        prefixed.sort();
        assert_eq!(prefixed, ["pear", "plum"], "{kind}");
        let bounded = ok(&["scan", d, n, "--from", "b", "--to", "pl"]);
        assert_eq!(bounded, "pear\tgreen\n", "{kind}");
        assert_eq!(ok(&["scan", d, n, "--limit", "2"]).lines().count(), 2);
        assert_eq!(ok(&["delete", d, n, "plum"]), "deleted\n", "{kind}");
        assert_eq!(ok(&["delete", d, n, "plum"]), "absent\n", "{kind}");
        fails(&["get", d, n, "plum"], 1);
        assert_eq!(ok(&["len", d, n]), "3\n");
        let verified = ok(&["verify", d, n]);
        assert!(
            verified.contains("ok") && verified.contains("keys 3"),
            "{verified}"
        );
        assert!(ok(&["compact", d, n]).contains("reclaimed"));
        assert_eq!(ok(&["get", d, n, "pear"]), "pear\tgreen\n");
        let ordered = kind == "log" || kind == "btree";
        if ordered {
            let all = ok(&["scan", d, n]);
            assert_eq!(all, "\\x00\\xff\t\\x01\\x02\napple\tred\npear\tgreen\n");
            assert_eq!(
                ok(&["scan", d, n, "--reverse", "--limit", "2"]),
                "pear\tgreen\napple\tred\n"
            );
            assert_eq!(ok(&["first", d, n]), "\\x00\\xff\t\\x01\\x02\n");
            assert_eq!(ok(&["last", d, n]), "pear\tgreen\n");
            assert_eq!(ok(&["above", d, n, "apple"]), "pear\tgreen\n");
            assert_eq!(ok(&["below", d, n, "apple"]), "\\x00\\xff\t\\x01\\x02\n");
            fails(&["above", d, n, "pear"], 1);
        } else {
            for verb in [&["first", d, n][..], &["scan", d, n, "--reverse"]] {
                let err = fails(verb, 1);
                assert!(err.contains("ordered store"), "{err}");
            }
        }
    }
    // ls: every store with its kind and keys.
    let listed = json_lines(&ok(&["ls", d, "--json"]));
    assert_eq!(listed.len(), 4);
    for (o, kind) in listed
        .iter()
        .zip(["BTreeStore", "HashStore", "LogStore", "ShardedStore"])
    {
        assert_eq!(o["kind"], kind);
        assert_eq!(o["keys"], 3);
        assert!(o["disk_bytes"].as_u64().unwrap() > 0);
    }
    let table = ok(&["ls", d]);
    assert!(table.starts_with("NAME"), "{table}");
    assert_eq!(table.lines().count(), 5);
    let all = ok(&["verify", d]);
    assert_eq!(
        all.lines().filter(|l| l.contains(" ok: ")).count(),
        4,
        "{all}"
    );
    // Creating over an existing structure is refused.
    let err = fails(&["create", d, "kv-hash", "--kind", "log"], 1);
    assert!(err.contains("exists"), "{err}");
}

#[test]
fn merge_uses_the_operator_the_log_store_registered() {
    let tmp = tempfile::tempdir().unwrap();
    let d = s(tmp.path());
    ok(&["create", d, "counts", "--kind", "log"]);
    // No operator registered yet: one must be named, and it must be one the tool knows.
    assert!(fails(&["merge", d, "counts", "hits", "1"], 1).contains("--operator"));
    assert!(fails(&["merge", d, "counts", "hits", "1", "--operator", "sum"], 1).contains("concat"));
    assert_eq!(
        ok(&["merge", d, "counts", "hits", "5", "--operator", "add"]),
        "hits\t5\n"
    );
    // From then on the store's own operator is used, and another is refused.
    assert_eq!(ok(&["merge", d, "counts", "hits", "-7"]), "hits\t-2\n");
    let line = ok(&[
        "merge",
        d,
        "counts",
        "hits",
        "2",
        "--operator",
        "add",
        "--json",
    ]);
    assert_eq!(json_lines(&line)[0]["value"], "0");
    assert!(
        fails(
            &["merge", d, "counts", "hits", "x", "--operator", "concat"],
            1
        )
        .contains("\"add\"")
    );
    // What add cannot add is refused before anything is written.
    assert!(fails(&["merge", d, "counts", "hits", "ten"], 1).contains("decimal"));
    ok(&["put", d, "counts", "word", "abc"]);
    assert!(fails(&["merge", d, "counts", "word", "1"], 1).contains("abc"));
    assert_eq!(ok(&["get", d, "counts", "word"]), "word\tabc\n");
    assert_eq!(ok(&["get", d, "counts", "hits"]), "hits\t0\n");
    // Only a log store has merge operators.
    ok(&["create", d, "tree", "--kind", "btree"]);
    assert!(fails(&["merge", d, "tree", "k", "v", "--operator", "concat"], 1).contains("LogStore"));
    // The other operators.
    ok(&["create", d, "words", "--kind", "log"]);
    ok(&["merge", d, "words", "w", "ab", "--operator", "concat"]);
    assert_eq!(
        ok(&["merge", d, "words", "w", "x:00ff"]),
        "w\tab\\x00\\xff\n"
    );
    for (op, first, second, want) in [("max", "b", "a", "b"), ("min", "b", "a", "a")] {
        let name = format!("by-{op}");
        ok(&["create", d, &name, "--kind", "log"]);
        ok(&["merge", d, &name, "k", first, "--operator", op]);
        assert_eq!(
            ok(&["merge", d, &name, "k", second]),
            format!("k\t{want}\n")
        );
    }
}

#[test]
fn values_from_files_and_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let d = s(&dir);
    ok(&["create", d, "kv", "--kind", "hash"]);
    let file = tmp.path().join("value.bin");
    std::fs::write(&file, [0u8, 1, 2, 255]).unwrap();
    let at = format!("@{}", s(&file));
    ok(&["put", d, "kv", "blob", &at]);
    assert_eq!(
        ok(&["get", d, "kv", "blob"]),
        "blob\t\\x00\\x01\\x02\\xff\n"
    );
    for args in [
        &["get", d, "kv", "x:0"][..],
        &["get", d, "kv", "x:zz"],
        &["put", d, "kv", "k", "@/no/such/file"],
        &["get", d, "nothing", "k"],
        &["get", s(&tmp.path().join("absent")), "kv", "k"],
    ] {
        let err = fails(args, 1);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("accretion: "), "{err}");
    }
    // Unknown verbs and missing arguments: clap's usage error.
    let out = run(&["frobnicate"]);
    assert!(!out.status.success());
    let out = run(&["get", d]);
    assert!(!out.status.success());
    assert!(!tmp.path().join("absent").exists(), "reads create nothing");
}

#[test]
fn a_locked_directory_is_reported_with_status_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let d = s(&dir);
    ok(&["create", d, "kv", "--kind", "log"]);
    let held = Dir::open(&dir).unwrap();
    for args in [
        &["get", d, "kv", "k"][..],
        &["ls", d],
        &["put", d, "kv", "k", "v"],
    ] {
        let err = fails(args, 2);
        assert!(err.contains("locked") || err.contains("Locked"), "{err}");
        assert!(err.contains(d), "names the path: {err}");
    }
    drop(held);
    ok(&["put", d, "kv", "k", "v"]);
}

/// Damage planted in a copy of a store: `verify` lists it and exits non-zero; the
/// original still verifies.
#[test]
fn verify_finds_damage_in_a_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let d = s(&dir);
    ok(&["create", d, "kv", "--kind", "hash"]);
    for i in 0..200 {
        ok(&["put", d, "kv", &format!("key-{i:03}"), &"v".repeat(40)]);
    }
    let copy = tmp.path().join("copy");
    copy_dir(&dir, &copy);
    // Flip a byte inside a record of the data log (past the lane's header).
    let data = copy.join("kv/d0/data-00.acc");
    let mut bytes = std::fs::read(&data).unwrap();
    let at = 4096 + 2000;
    bytes[at] ^= 0x5a;
    std::fs::write(&data, bytes).unwrap();
    let out = run(&["verify", s(&copy)]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("DAMAGED"), "{stdout}");
    assert!(
        stdout.contains("data-00.acc") || stdout.contains("kv"),
        "{stdout}"
    );
    assert!(ok(&["verify", d]).contains("ok"));
}

/// `verify` checks primitives too, and lists every damaged entry it finds in a OnceMap
/// (file, offset, what), in text and in JSON.
#[test]
fn verify_walks_primitives_and_lists_each_damage() {
    use accretion::{AppendOnly, Content, Entropy, Journal, OnceMap, RandomAccess};
    let tmp = tempfile::tempdir().unwrap();
    let d = s(tmp.path());
    {
        let dir = Dir::open(tmp.path()).unwrap();
        let map = OnceMap::open(&dir, "m").unwrap();
        for i in 0..100 {
            map.insert(
                format!("key-{i:03}").as_bytes(),
                format!("value-{i:03}-{}", "x".repeat(64)).as_bytes(),
            )
            .unwrap();
        }
        map.sync().unwrap();
        let j = Journal::<u64>::open(&dir, "j").unwrap();
        j.set(7).unwrap();
        j.sync().unwrap();
        let a = AppendOnly::open(&dir, "a").unwrap();
        a.append(b"one").unwrap();
        a.append(b"two").unwrap();
        a.sync().unwrap();
        let r = RandomAccess::<u32>::open(&dir, "r").unwrap();
        r.set(5, 9).unwrap();
        r.sync().unwrap();
        Entropy::open(&dir, "e").unwrap();
        let c = Content::open(&dir, "c").unwrap();
        c.insert(b"blob").unwrap();
        c.sync().unwrap();
    }
    let all = ok(&["verify", d]);
    for name in ["m ", "j ", "a ", "r ", "e ", "c "] {
        let line = all
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {all}"));
        assert!(line.contains(" ok: "), "{line}");
    }
    assert!(all.contains("entries 100"), "{all}");
    assert!(all.contains("records 2"), "{all}");
    // An entry of the map damaged: its frame no longer holds, so an open keeps only the
    // entries before it; verify says so, naming the file and the offset.
    let data = tmp.path().join("m/log/data-00.acc");
    let mut bytes = std::fs::read(&data).unwrap();
    let value = b"value-010";
    let at = bytes.windows(value.len()).position(|w| w == value).unwrap();
    bytes[at + 20] ^= 0x5a;
    std::fs::write(&data, bytes).unwrap();
    let out = run(&["verify", d, "m"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("DAMAGED (1 found)"), "{text}");
    let line = text.lines().find(|l| l.starts_with("  ")).unwrap();
    assert!(
        line.contains("m/log/data-00.acc at byte ") && line.contains("past it"),
        "{text}"
    );
    let out = run(&["verify", d, "m", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let found = &json_lines(&String::from_utf8_lossy(&out.stdout))[0];
    assert_eq!(found["ok"], false);
    let damage = found["damage"].as_array().unwrap();
    assert_eq!(damage.len(), 1, "{found}");
    assert!(
        damage[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("m/log/data-00.acc"),
        "{found}"
    );
    assert!(damage[0]["offset"].as_u64().unwrap() > 4096, "{found}");
    // The whole directory: one structure damaged, the others still checked.
    let out = run(&["verify", d]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| l.contains(" ok: ")).count(),
        5,
        "{text}"
    );
    // The journal with every slot damaged: reported, and the others still pass.
    let journal = tmp.path().join("j/journal.acc");
    let mut bytes = std::fs::read(&journal).unwrap();
    let len = bytes.len();
    for b in &mut bytes[512..len] {
        *b ^= 0xff;
    }
    std::fs::write(&journal, bytes).unwrap();
    let out = run(&["verify", d, "j"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("journal.acc at byte 0: none of its slots"),
        "{text}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target: PathBuf = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "accretion.lock" {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Every store exported and imported into a store of every other kind: the same entries,
/// binary keys and values included.
#[test]
fn export_and_import_round_trip_between_every_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let d = s(&dir);
    ok(&["create", d, "source", "--kind", "hash"]);
    fill(d, "source");
    for i in 0..300 {
        ok_quiet(d, i);
    }
    let dump = tmp.path().join("dump.jsonl");
    ok(&["export", d, "source", "--out", s(&dump)]);
    let mut want: Vec<serde_json::Value> = json_lines(&std::fs::read_to_string(&dump).unwrap());
    assert_eq!(want.len(), 304);
    let key_of = |o: &serde_json::Value| {
        o.get("key")
            .or_else(|| o.get("key_hex"))
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    };
    want.sort_by_key(key_of);
    for kind in KINDS {
        let name = format!("copy-{kind}");
        ok(&["create", d, &name, "--kind", kind]);
        let said = ok(&["import", d, &name, s(&dump)]);
        assert!(said.contains("imported 304 entries"), "{said}");
        // Export to standard output this time.
        let mut got = json_lines(&ok(&["export", d, &name]));
        got.sort_by_key(key_of);
        assert_eq!(got, want, "{kind}");
    }
    // A bad line names its line number, and what came before it stays.
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"key\":\"a\",\"value\":\"1\"}\n{\"key\":\"b\"}\n").unwrap();
    ok(&["create", d, "partial", "--kind", "log"]);
    let err = fails(&["import", d, "partial", s(&bad)], 1);
    assert!(err.contains("line 2"), "{err}");
    assert_eq!(ok(&["get", d, "partial", "a"]), "a\t1\n");
}

fn ok_quiet(d: &str, i: u32) {
    let key = format!("bulk-{i:04}");
    let value = format!("x:{:08x}00ff", i);
    ok(&["put", d, "source", &key, &value]);
}

#[test]
fn content_put_and_get() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let d = s(&dir);
    let file = tmp.path().join("blob.bin");
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    std::fs::write(&file, &blob).unwrap();
    let id = ok(&["content", "put", d, "blobs", s(&file)]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    // The same bytes, the same id.
    assert_eq!(ok(&["content", "put", d, "blobs", s(&file)]).trim(), id);
    let out = run(&["content", "get", d, "blobs", id]);
    assert!(out.status.success());
    assert_eq!(out.stdout, blob);
    let json = json_lines(&ok(&["content", "get", d, "blobs", id, "--json"]));
    assert_eq!(json[0]["bytes"], 100_000);
    fails(&["content", "get", d, "blobs", &"0".repeat(64)], 1);
    fails(&["content", "get", d, "blobs", "not-an-id"], 1);
    fails(&["content", "get", d, "nothing", id], 1);
    let listed = json_lines(&ok(&["ls", d, "--json"]));
    assert_eq!(listed[0]["kind"], "Content");
    // A key-value verb on a Content store is refused.
    let err = fails(&["get", d, "blobs", "k"], 1);
    assert!(err.contains("not a key-value store"), "{err}");
}

/// The shell through a real terminal (a pty): commands, an error in the middle that does
/// not end it, history (the up arrow runs the last command again), completion of verbs
/// and structure names, `help`, `quit`.
#[test]
fn the_shell_in_a_terminal() {
    use expectrl::{Eof, Expect, Session};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let d = s(&dir);
    ok(&["create", d, "kv", "--kind", "btree"]);
    ok(&["create", d, "other", "--kind", "hash"]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_accretion"));
    cmd.args(["shell", d, "kv"]);
    let mut p = Session::spawn(cmd).expect("spawn the shell in a pty");
    p.set_expect_timeout(Some(std::time::Duration::from_secs(20)));
    let prompt = "accretion> ";
    p.expect(prompt).unwrap();
    p.send_line("put apple red").unwrap();
    p.expect(prompt).unwrap();
    p.send_line("get apple").unwrap();
    p.expect("apple\tred").unwrap();
    p.expect(prompt).unwrap();
    // An error in the middle: reported, and the shell goes on.
    p.send_line("get nothing-here").unwrap();
    p.expect("not found").unwrap();
    p.expect(prompt).unwrap();
    p.send_line("frobnicate").unwrap();
    p.expect("unrecognized subcommand").unwrap();
    p.expect(prompt).unwrap();
    // History: the up arrow once gives the unknown verb, twice the failed get, three
    // times `get apple`, which runs again.
    p.send("\x1b[A\x1b[A\x1b[A\r").unwrap();
    p.expect("apple\tred").unwrap();
    p.expect(prompt).unwrap();
    // Completion: a verb, then a structure name.
    p.send("le\t").unwrap();
    p.send("oth\t").unwrap();
    p.send("\r").unwrap();
    p.expect("len other").unwrap();
    p.expect("0\r\n").unwrap();
    p.expect(prompt).unwrap();
    p.send_line("help").unwrap();
    p.expect("Commands are").unwrap();
    p.expect(prompt).unwrap();
    p.send_line("quit").unwrap();
    p.expect(Eof).unwrap();
    // What the shell wrote is there.
    assert_eq!(ok(&["get", d, "kv", "apple"]), "apple\tred\n");
}

/// Scripted: commands piped in, no prompt; a failed command does not stop the rest, and
/// the exit status says one failed.
#[test]
fn the_shell_reads_a_script_from_a_pipe() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let d = s(&dir);
    ok(&["create", d, "kv", "--kind", "sharded"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_accretion"))
        .args(["shell", d])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"put kv a 1\nget kv missing\nput kv 'b c' \"d e\"\nscan kv --json\nlen kv\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("accretion>"), "no prompt: {stdout}");
    assert!(stdout.ends_with("2\n"), "{stdout}");
    let mut lines: Vec<&str> = stdout.lines().take(2).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            r#"{"key":"a","value":"1"}"#,
            r#"{"key":"b c","value":"d e"}"#
        ]
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("missing: not found"), "{stderr}");
}
