//! `accretion shell DIR [NAME]`: the tool's verbs at a prompt, with history, completion
//! of verbs and structure names, and `help`. A command is a verb line without the
//! directory (`get kv apple`); started with NAME, a verb that takes a structure name may
//! leave it out when its first argument names no structure (`get apple`). An error is
//! printed and the shell goes on. When standard input is not a terminal, commands are read
//! line by line with no prompt and no editing, and the exit status is 1 if any failed.
//!
//! The directory is opened (and locked) for each command and closed after it, so other
//! processes may use it between commands.

use std::borrow::Cow;
use std::io::{BufRead, IsTerminal};
use std::path::Path;

use accretion::{Dir, catalog};
use clap::{CommandFactory, Parser};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Context, Editor, Helper, Highlighter, Hinter, Validator};

use crate::{Cli, Failure, Outcome, print_failure, run as run_verb, usage_line};

/// The shell's own commands, then the tool's verbs.
const VERBS: &[&str] = &[
    "help", "quit", "exit", "ls", "create", "get", "put", "delete", "merge", "scan", "first",
    "last", "above", "below", "len", "verify", "compact", "export", "import", "content",
];

/// Verbs whose first argument (after the directory) is a structure's name.
const NAMED: &[&str] = &[
    "create", "get", "put", "delete", "merge", "scan", "first", "last", "above", "below", "len",
    "verify", "compact", "export", "import",
];

/// Runs the shell on `dir`, with `name` as the default structure.
pub fn run(dir: &Path, name: Option<&str>) -> Outcome {
    if !dir.join("accretion.acc").is_file() {
        return Err(Failure::Usage(format!(
            "{}: no accretion store directory there",
            dir.display()
        )));
    }
    if !std::io::stdin().is_terminal() {
        let mut failed = false;
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(|e| Failure::Usage(format!("standard input: {e}")))?;
            match one(dir, name, &line) {
                Step::Quit => break,
                Step::Failed => failed = true,
                Step::Done => {}
            }
        }
        return if failed {
            Err(Failure::Reported)
        } else {
            Ok(())
        };
    }
    let mut editor: Editor<Completion, DefaultHistory> =
        Editor::new().map_err(|e| Failure::Usage(format!("terminal: {e}")))?;
    editor.set_helper(Some(Completion {
        dir: dir.to_path_buf(),
    }));
    say!(
        "accretion shell on {} ({}); `help` lists the commands, `quit` leaves",
        dir.display(),
        name.map_or("no default structure".to_owned(), |n| format!(
            "default structure {n}"
        ))
    );
    loop {
        match editor.readline("accretion> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                if let Step::Quit = one(dir, name, &line) {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => {}
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Failure::Usage(format!("terminal: {e}"))),
        }
    }
    Ok(())
}

enum Step {
    Done,
    Failed,
    Quit,
}

/// Runs one command line.
fn one(dir: &Path, name: Option<&str>, line: &str) -> Step {
    let words = match split(line) {
        Ok(words) => words,
        Err(what) => {
            eprintln!("accretion: {what}");
            return Step::Failed;
        }
    };
    let Some(verb) = words.first().map(String::as_str) else {
        return Step::Done;
    };
    let rest = &words[1..];
    match verb {
        "quit" | "exit" => return Step::Quit,
        "help" => {
            say!(
                "Commands are the tool's verbs without the directory, e.g. `get NAME KEY`; \
                 with a default structure, `get KEY`. `quit` leaves.\n"
            );
            let _ = Cli::command().print_help();
            say!();
            return Step::Done;
        }
        "shell" => {
            eprintln!("accretion: a shell cannot be started from a shell");
            return Step::Failed;
        }
        _ => {}
    }
    let dir_arg = dir.display().to_string();
    let mut args = vec!["accretion".to_owned()];
    if verb == "content" {
        // `content put NAME FILE`: the directory goes after the sub-verb.
        args.push(verb.to_owned());
        args.extend(rest.first().cloned());
        args.push(dir_arg);
        args.extend(rest.iter().skip(1).cloned());
    } else {
        args.push(verb.to_owned());
        args.push(dir_arg);
        // `create` names the structure it makes, which is none yet.
        if let Some(n) = name
            && NAMED.contains(&verb)
            && verb != "create"
            && !rest.first().is_some_and(|w| names_structure(dir, w))
        {
            args.push(n.to_owned());
        }
        args.extend(rest.iter().cloned());
    }
    match Cli::try_parse_from(&args) {
        Ok(cli) => match run_verb(&cli) {
            Ok(()) => Step::Done,
            Err(f) => {
                print_failure(&f);
                Step::Failed
            }
        },
        Err(e) if e.use_stderr() => {
            eprintln!("accretion: {}", usage_line(&e));
            Step::Failed
        }
        Err(e) => {
            // Help from clap, as the tool prints it.
            let _ = e.print();
            Step::Done
        }
    }
}

/// Whether `word` is the name of a structure in `dir` (a flag never is).
fn names_structure(dir: &Path, word: &str) -> bool {
    if word.starts_with('-') {
        return false;
    }
    Dir::open(dir)
        .and_then(|d| catalog::identify(&d, word))
        .is_ok_and(|s| s.is_some())
}

/// Splits a command line into words: blanks separate them; a word that starts with a
/// quote (' or ") runs to the matching quote and may hold blanks; a quote inside a word
/// is an ordinary character (`X64'00ff'`).
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Ok(words);
        };
        let mut word = String::new();
        if first == '\'' || first == '"' {
            chars.next();
            loop {
                match chars.next() {
                    Some(c) if c == first => break,
                    Some(c) => word.push(c),
                    None => return Err(format!("unclosed {first} in the line")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
}

/// Completes the first word from the verbs, later words from the structure names.
#[derive(Helper, Hinter, Highlighter, Validator)]
struct Completion {
    dir: std::path::PathBuf,
}

impl Completer for Completion {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let partial = &before[start..];
        let candidates: Vec<Cow<'_, str>> = if start == 0 {
            VERBS.iter().map(|v| Cow::Borrowed(*v)).collect()
        } else {
            Dir::open(&self.dir)
                .and_then(|d| catalog::list(&d))
                .map(|list| list.into_iter().map(|s| Cow::Owned(s.name)).collect())
                .unwrap_or_default()
        };
        let pairs = candidates
            .into_iter()
            .filter(|c| c.starts_with(partial))
            .map(|c| Pair {
                display: c.to_string(),
                replacement: format!("{c} "),
            })
            .collect();
        Ok((start, pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn lines_split_into_words() {
        assert_eq!(split("  get kv apple ").unwrap(), ["get", "kv", "apple"]);
        assert_eq!(
            split("put kv 'a key' \"a value\"").unwrap(),
            ["put", "kv", "a key", "a value"]
        );
        assert_eq!(
            split("get kv X64'00ff'").unwrap(),
            ["get", "kv", "X64'00ff'"]
        );
        assert_eq!(split("").unwrap(), Vec::<String>::new());
        assert!(split("get 'open").is_err());
    }
}
