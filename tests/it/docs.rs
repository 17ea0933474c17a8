//! Docs that cannot drift. Every ```` ```console ```` block of README.md, ARCHITECTURE.md,
//! CONTRIBUTING.md, SECURITY.md and docs/*.md runs here against the built binary, its output
//! checked; every relative link of those files resolves (the file exists; a `#anchor` is a
//! heading of it); and the README's test command is the one `.ci/run` runs.
//!
//! The format is trycmd's Markdown one, run by a runner of our own (~200 lines) because the
//! examples are written to be typed from the repository's root (`policies/`) and share state
//! within a page (`certs init`, then `certs issue --ca certs/`): each page gets one scratch
//! folder holding a copy of `policies/`, and its blocks run there in order.
//! - `$ segward ARGS` (continued by a trailing `\`) is a command; shell quoting applies, no
//!   pipes or variables. The lines up to the next `$ ` are its output: stdout, then stderr.
//! - `? N` right after the command expects exit code N (default 0).
//! - In an expected line `[..]` matches any text; a line `...` matches any number of lines.
//! - `<!-- file: PATH -->` right before a fenced block writes that block into the scratch
//!   folder at PATH before the commands after it run (a policy or config the page shows).
//!
//! Blocks that cannot run here (a long-running `segward run`, docker, kubectl, curl) are
//! ```` ```sh ````: shown, never run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown files whose examples and links are checked.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = [
        "README.md",
        "ARCHITECTURE.md",
        "CONTRIBUTING.md",
        "SECURITY.md",
    ]
    .iter()
    .map(|p| root().join(p))
    .collect();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// One step of a page, in order.
#[derive(Debug)]
enum Step {
    /// A file written into the scratch folder.
    Fixture { path: String, text: String },
    /// A command, the exit code it must end with, and its expected output lines.
    Run {
        line: usize,
        args: Vec<String>,
        status: i32,
        expected: Vec<String>,
    },
}

/// The steps of `text`: fixtures and ```` ```console ```` commands, in order.
fn steps(text: &str) -> Vec<Step> {
    let lines: Vec<&str> = text.lines().collect();
    let mut steps = Vec::new();
    let mut fixture: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        if let Some(path) = line
            .strip_prefix("<!-- file: ")
            .and_then(|r| r.strip_suffix(" -->"))
        {
            fixture = Some(path.to_owned());
        } else if let Some(lang) = line.strip_prefix("```") {
            let start = i + 1;
            let mut end = start;
            while end < lines.len() && lines[end].trim_end() != "```" {
                end += 1;
            }
            let body = &lines[start..end.min(lines.len())];
            if let Some(path) = fixture.take() {
                let text = body.iter().map(|l| format!("{l}\n")).collect();
                steps.push(Step::Fixture { path, text });
            } else if lang == "console" {
                steps.extend(console(body, start + 1));
            }
            i = end;
        } else if !line.is_empty() {
            fixture = None;
        }
        i += 1;
    }
    steps
}

/// The commands of one console block whose first line is line `first` of its page.
fn console(body: &[&str], first: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let Some(command) = body[i].strip_prefix("$ ") else {
            panic!(
                "line {}: a console block line outside a command: {}",
                first + i,
                body[i]
            );
        };
        let line = first + i;
        let mut command = command.trim_end().to_owned();
        while let Some(head) = command.strip_suffix('\\') {
            i += 1;
            command = format!("{head}{}", body[i].trim());
        }
        i += 1;
        let mut status = 0;
        if let Some(code) = body.get(i).and_then(|l| l.strip_prefix("? ")) {
            status = code.trim().parse().unwrap_or(1);
            i += 1;
        }
        let mut expected = Vec::new();
        while i < body.len() && !body[i].starts_with("$ ") {
            expected.push(body[i].trim_end().to_owned());
            i += 1;
        }
        let args = words(&command);
        assert_eq!(
            args.first().map(String::as_str),
            Some("segward"),
            "line {line}: {command}"
        );
        steps.push(Step::Run {
            line,
            args: args[1..].to_vec(),
            status,
            expected,
        });
    }
    steps
}

/// Shell words: whitespace splits, '…' and "…" quote, `\` escapes outside single quotes.
fn words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    let mut quote = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => word.get_or_insert_default().push(c),
            (_, '\\') => word.get_or_insert_default().extend(chars.next()),
            (_, c) => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    words
}

/// Whether `actual` matches the expected line `pattern` (`[..]` matches any text).
fn line_matches(pattern: &str, actual: &str) -> bool {
    let parts: Vec<&str> = pattern.split("[..]").collect();
    if parts.len() == 1 {
        return pattern == actual;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !actual.starts_with(first)
        || actual.len() < first.len() + last.len()
        || !actual.ends_with(last)
    {
        return false;
    }
    let mut rest = &actual[first.len()..actual.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether `actual` matches `expected` line by line (a line `...` matches any lines).
fn lines_match(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first == "..." => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((first, rest)) => {
            actual.first().is_some_and(|a| line_matches(first, a))
                && lines_match(rest, &actual[1..])
        }
    }
}

/// Copies the folder `from` into `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Runs the steps of `page` in a fresh scratch folder; returns one message per mismatch.
fn run_page(page: &Path) -> Vec<String> {
    let name = page.strip_prefix(root()).unwrap().display().to_string();
    let scratch = tempfile::tempdir().unwrap();
    copy_dir(&root().join("policies"), &scratch.path().join("policies"));
    let mut failures = Vec::new();
    for step in steps(&std::fs::read_to_string(page).unwrap()) {
        match step {
            Step::Fixture { path, text } => {
                let target = scratch.path().join(path);
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::write(target, text).unwrap();
            }
            Step::Run {
                line,
                args,
                status,
                expected,
            } => {
                let out = Command::new(env!("CARGO_BIN_EXE_segward"))
                    .args(&args)
                    .current_dir(scratch.path())
                    .env_remove("SEGWARD_LOG")
                    .env_remove("SPIFFE_ENDPOINT_SOCKET")
                    .output()
                    .unwrap();
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                let mut actual: Vec<&str> = text.lines().map(str::trim_end).collect();
                while actual.last() == Some(&"") {
                    actual.pop();
                }
                let code = out.status.code().unwrap_or(-1);
                if code != status || !lines_match(&expected, &actual) {
                    failures.push(format!(
                        "{name}:{line}: segward {}\n  exit {code} (expected {status})\n--- expected\n{}\n--- actual\n{}\n",
                        args.join(" "),
                        expected.join("\n"),
                        actual.join("\n")
                    ));
                }
            }
        }
    }
    failures
}

#[test]
fn every_console_example_in_the_docs_runs_with_the_output_shown() {
    let mut failures = Vec::new();
    let mut commands = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        commands += steps(&text)
            .iter()
            .filter(|s| matches!(s, Step::Run { .. }))
            .count();
        failures.extend(run_page(&page));
    }
    assert!(
        commands >= 20,
        "only {commands} console commands found in the docs"
    );
    assert!(
        failures.is_empty(),
        "{} example(s) drifted:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to `-`.
fn slug(heading: &str) -> String {
    let kept: String = heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .collect();
    kept.replace(' ', "-")
}

/// The lines of `text` outside fenced blocks, numbered from 1.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push((n + 1, line));
        }
    }
    out
}

/// The anchors of `page`'s headings (a repeated heading gets `-1`, `-2`, … as on GitHub).
fn anchors(page: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(page).unwrap();
    let mut anchors: Vec<String> = Vec::new();
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for (_, line) in prose(&text) {
        if let Some(heading) = line.strip_prefix('#') {
            let base = slug(heading.trim_start_matches('#'));
            let count = seen.entry(base.clone()).or_default();
            anchors.push(if *count == 0 {
                base
            } else {
                format!("{base}-{count}")
            });
            *count += 1;
        }
    }
    anchors
}

/// The relative link targets of one line (`](target)`), without titles.
fn link_targets(line: &str) -> Vec<&str> {
    line.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &line[at + 2..];
            let target = &rest[..rest.find(')')?];
            let target = target.split_whitespace().next().unwrap_or("");
            (!target.contains("://") && !target.starts_with("mailto:")).then_some(target)
        })
        .collect()
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let name = page.strip_prefix(root()).unwrap().display().to_string();
        for (n, line) in prose(&text) {
            for target in link_targets(line) {
                let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
                let file = if path.is_empty() {
                    page.clone()
                } else {
                    page.parent().unwrap().join(path)
                };
                if !file.exists() {
                    broken.push(format!("{name}:{n}: {target}: no such file"));
                } else if !anchor.is_empty() && !anchors(&file).iter().any(|a| a == anchor) {
                    broken.push(format!("{name}:{n}: {target}: no heading with that anchor"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_test_command_is_the_one_ci_runs() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    // The README's first shell block holds the two commands: the demo, then the tests.
    let block = readme
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands, ["cargo run --release -- demo", "scripts/test.sh"]);
    assert!(
        ci.lines().any(|l| l.trim() == commands[1]),
        ".ci/run must run the README's test command `{}` as a line of its own",
        commands[1]
    );
}

#[test]
fn the_docs_runner_matches_wildcards_and_parses_commands() {
    assert!(line_matches(
        "contained c-[..]: wrote [..].yaml",
        "contained c-1: wrote a/b.yaml"
    ));
    assert!(!line_matches("a[..]b", "ab-"));
    let expected = ["x".to_owned(), "...".to_owned(), "z".to_owned()];
    assert!(lines_match(&expected, &["x", "1", "2", "z"]));
    assert!(!lines_match(&expected, &["x", "y"]));
    assert_eq!(
        words(r#"segward a 'b c' "d\"e" f\ g"#),
        ["segward", "a", "b c", "d\"e", "f g"]
    );
    assert_eq!(slug("Decision order"), "decision-order");
    assert_eq!(slug("L4 (TCP) mode"), "l4-tcp-mode");
}
