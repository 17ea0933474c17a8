//! Test-only: opens a rendered report in Debian's headless chromium (a fresh profile per run,
//! killed after [`TIMEOUT`]) to dump the DOM after its JS ran or to take a screenshot, and reads
//! start tags back out of the dumped DOM without a parser crate. [`chromium_or_skip`] decides
//! what a test does on a machine without chromium: skip, saying so, or (under
//! `SEGWARD_REQUIRE_COMPONENTS=1`, which CI and `scripts/test.sh` set) fail.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest one chromium run may take before it is killed and the test fails.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The variable under which a missing component fails the test instead of skipping it.
const REQUIRE: &str = "SEGWARD_REQUIRE_COMPONENTS";

/// Whether `test` can drive chromium. Without it on `PATH`: panics under
/// `SEGWARD_REQUIRE_COMPONENTS=1`, else writes one skip line straight to stderr (libtest does
/// not capture that, so a passing run still shows it) and returns `false`.
pub fn chromium_or_skip(test: &str) -> bool {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("chromium").is_file()));
    if on_path {
        return true;
    }
    let missing = "chromium is not on PATH (Debian package `chromium`)";
    if std::env::var_os(REQUIRE).is_some_and(|v| v == "1") {
        panic!("{test}: {missing}, and {REQUIRE}=1; scripts/test.sh installs it");
    }
    // One write of the whole line, so parallel tests' output cannot split it.
    let line = format!(
        "SKIPPED cli::policy::report::tests::{test}: {missing}; scripts/test.sh installs it \
         and runs the tests\n"
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    false
}

/// The DOM of `page` opened at `#hash`, serialized after its scripts ran.
pub fn dump_dom(page: &Path, hash: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dom.html");
    run(dir.path(), &["--dump-dom".into(), url(page, hash)], &out);
    std::fs::read_to_string(&out).unwrap()
}

/// Writes a `width`×`height` PNG screenshot of `page` opened at `#hash` to `png`.
pub fn screenshot(page: &Path, hash: &str, png: &Path, (width, height): (u32, u32)) {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        format!("--screenshot={}", png.display()),
        format!("--window-size={width},{height}"),
        "--hide-scrollbars".into(),
        url(page, hash),
    ];
    run(dir.path(), &args, &dir.path().join("stdout"));
}

/// Runs chromium headless with `args` and a fresh profile under `dir`, stdout to `stdout`.
fn run(dir: &Path, args: &[String], stdout: &Path) {
    let stderr_path = dir.join("stderr");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(stdout).unwrap())
        .stderr(File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start `chromium` ({e}): the report's browser test needs it; \
                 scripts/test.sh installs it"
            )
        });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // Child::kill signals exactly this PID; its helpers exit when it does.
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {TIMEOUT:?}: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "chromium failed ({status}): {stderr}");
}

/// `file://` URL of `page` with `#hash`, percent-encoding what a fragment may not hold as is.
fn url(page: &Path, hash: &str) -> String {
    let page = page.canonicalize().unwrap();
    let mut url = format!("file://{}", page.display());
    if !hash.is_empty() {
        url.push('#');
        for b in hash.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~/:=@!$'()*,;".contains(&b) {
                url.push(char::from(b));
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
    }
    url
}

/// One start tag's attributes, entity references decoded.
#[derive(Debug)]
pub struct Tag(Vec<(String, String)>);

impl Tag {
    /// The attribute's value, if the tag has it.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the `class` attribute lists `class`.
    pub fn has_class(&self, class: &str) -> bool {
        self.attr("class")
            .is_some_and(|c| c.split_ascii_whitespace().any(|c| c == class))
    }
}

/// Every start tag of `dom` that carries the attribute `name` (`name="` in the serialization).
pub fn tags_with(dom: &str, name: &str) -> Vec<Tag> {
    let needle = format!(" {name}=\"");
    let mut tags = Vec::new();
    let mut from = 0;
    while let Some(hit) = dom[from..].find(&needle) {
        let at = from + hit;
        let start = dom[..at].rfind('<').unwrap();
        let (tag, end) = parse_tag(dom, start);
        tags.push(tag);
        from = end.max(at + needle.len());
    }
    tags
}

/// Parses the start tag at `start` (its `<`); returns it and the offset after its `>`.
fn parse_tag(dom: &str, start: usize) -> (Tag, usize) {
    let bytes = dom.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
        i += 1;
    }
    let mut attrs = Vec::new();
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] == b'>' || bytes[i] == b'/' {
            let end = dom[i..].find('>').map_or(dom.len(), |e| i + e + 1);
            return (Tag(attrs), end);
        }
        let name_start = i;
        while i < bytes.len() && !b"= \t\n>".contains(&bytes[i]) {
            i += 1;
        }
        let name = dom[name_start..i].to_owned();
        let mut value = String::new();
        if bytes.get(i) == Some(&b'=') && bytes.get(i + 1) == Some(&b'"') {
            let close = dom[i + 2..].find('"').unwrap() + i + 2;
            value = decode(&dom[i + 2..close]);
            i = close + 1;
        }
        attrs.push((name, value));
    }
}

/// Decodes the entity references chromium writes in attribute values.
fn decode(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}
