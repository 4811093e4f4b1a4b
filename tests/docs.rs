//! The README and the guide under `docs/` are checked against the repository, so that what
//! they tell a reader stays true of the code:
//!
//! - every relative link (and the heading it points to) and every `src/` path they name exists;
//! - the "Life of a chat line" walkthrough (`docs/life-of-a-line.md`) names, step by step,
//!   functions that are in an impl of the type it names, in the file the step links to
//!   (parsed with `syn`, not searched as text);
//! - a real line, traced with `--log-level trace`, passes the walkthrough's steps in its order.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed expect in a test is a failed test, with its message"
)]

mod common;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use common::{Client, ServerProcess};

/// The top of the repository.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The page that holds the walkthrough.
const WALKTHROUGH: &str = "docs/life-of-a-line.md";

/// Every Markdown file a reader is sent to: the README, the guide, and the dated logs beside
/// the raw results.
fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md")];
    for dir in ["docs", "benches/results"] {
        let mut pages: Vec<PathBuf> = fs::read_dir(root().join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
            .map(|path| {
                path.strip_prefix(root())
                    .expect("under the root")
                    .to_path_buf()
            })
            .collect();
        pages.sort();
        files.extend(pages);
    }
    files
}

fn read(file: &Path) -> String {
    fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The text outside fenced code blocks, line by line (code in a fence is not a link).
fn prose(md: &str) -> Vec<&str> {
    let mut fenced = false;
    md.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The targets of the Markdown links and images in `md`: `[text](target)`.
fn links(md: &str) -> Vec<String> {
    prose(md)
        .iter()
        .flat_map(|line| line.split("](").skip(1))
        .filter_map(|rest| rest.split(')').next())
        .filter(|target| !target.contains(' '))
        .map(str::to_string)
        .collect()
}

/// The anchors GitHub makes for the headings of `md`: lower case, punctuation but `-` and
/// `_` dropped, spaces as `-`; a repeated heading gets `-1`, `-2`...
fn anchors(md: &str) -> HashSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = HashSet::new();
    for line in prose(md) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let text = heading.trim_start_matches('#');
        if !text.starts_with(' ') {
            continue;
        }
        let slug: String = text
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let count = seen.entry(slug.clone()).or_insert(0);
        anchors.insert(if *count == 0 {
            slug.clone()
        } else {
            format!("{slug}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// What is wrong with the relative links of `file` (whose text is `md`): targets that do not
/// exist, and anchors that are not a heading of the page they point to.
fn broken_links(file: &Path, md: &str) -> Vec<String> {
    let dir = file.parent().unwrap_or(Path::new(""));
    let mut broken = Vec::new();
    for target in links(md) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
        if path.is_empty() {
            if !anchors(md).contains(anchor) {
                broken.push(format!(
                    "{}: no heading {target} on this page",
                    file.display()
                ));
            }
            continue;
        }
        let linked = dir.join(path);
        let on_disk = root().join(&linked);
        if !on_disk.exists() {
            broken.push(format!("{}: {target} does not exist", file.display()));
            continue;
        }
        if !anchor.is_empty() {
            let page = fs::read_to_string(&on_disk).unwrap_or_default();
            if !anchors(&page).contains(anchor) {
                broken.push(format!(
                    "{}: {target}: no heading #{anchor} in {}",
                    file.display(),
                    linked.display()
                ));
            }
        }
    }
    broken
}

/// Paths into the repository named in `md`, linked or not: `src/...`, `tests/...`,
/// `scripts/...`, `benches/...`, relative to the top (as a reader types them).
fn named_paths(md: &str) -> Vec<String> {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-');
    let mut paths = Vec::new();
    for prefix in ["src/", "tests/", "scripts/", "benches/"] {
        let mut from = 0;
        while let Some(at) = md[from..].find(prefix) {
            let start = from + at;
            from = start + prefix.len();
            // Part of a longer path (`../src/`, `target/release/...`) or a word: not ours.
            if md[..start].chars().next_back().is_some_and(is_path_char) {
                continue;
            }
            let path: String = md[start..]
                .chars()
                .take_while(|&c| is_path_char(c))
                .collect();
            let path = path.trim_end_matches(['.', ',', ':']).to_string();
            if path.len() > prefix.len() {
                paths.push(path);
            }
        }
    }
    paths
}

/// Every relative link in the README, the guide and the results' logs leads to a file that
/// exists, and every `#anchor` to a heading of that page.
#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in doc_files() {
        let md = read(&file);
        checked += links(&md).len();
        broken.extend(broken_links(&file, &md));
    }
    assert!(checked >= 100, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Every `src/`, `tests/`, `scripts/` and `benches/` path the docs name exists.
#[test]
fn every_path_the_docs_name_exists() {
    let mut missing = Vec::new();
    let mut checked = 0;
    for file in doc_files() {
        for path in named_paths(&read(&file)) {
            checked += 1;
            if !root().join(&path).exists() {
                missing.push(format!("{}: {path}", file.display()));
            }
        }
    }
    assert!(checked >= 100, "only {checked} paths found");
    assert!(
        missing.is_empty(),
        "paths that do not exist:\n{}",
        missing.join("\n")
    );
}

/// The link checker itself: a missing file, a missing heading and a path that is not there
/// are caught; what exists passes.
#[test]
fn the_link_checker_catches_what_is_missing() {
    let page = "# Top\n\n## A heading, with `code`\n\n\
                [ok](#a-heading-with-code) [ok](how-it-works.md) [ok](../src/lib.rs)\n\
                [bad](#no-such-heading) [bad](no-such-page.md) [bad](how-it-works.md#nowhere)\n\
                ```text\n[not a link](nowhere.md)\n```\n";
    let broken = broken_links(Path::new("docs/x.md"), page);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(broken[0].contains("#no-such-heading"));
    assert!(broken[1].contains("no-such-page.md"));
    assert!(broken[2].contains("#nowhere"));
    assert_eq!(
        named_paths("see src/lib.rs, `src/nowhere.rs` and ../src/skipped.rs."),
        ["src/lib.rs", "src/nowhere.rs"]
    );
}

// The walkthrough.

/// One unit of the walkthrough that says where its names live: a table row (a step), or a
/// bullet with the lines that continue it.
#[derive(Debug)]
struct Unit {
    text: String,
    /// The step's number, for a table row.
    step: Option<u32>,
    /// The trace line the step logs (the row's last cell), if any.
    trace: Option<String>,
}

/// The walkthrough proper: the page up to its first `## ` heading (what follows says how the
/// page is checked, and names wrong rows on purpose).
fn walkthrough(page: &str) -> &str {
    page.find("\n## ").map_or(page, |end| &page[..end])
}

fn units(section: &str) -> Vec<Unit> {
    let mut units: Vec<Unit> = Vec::new();
    for line in prose(section) {
        if let Some(row) = line.strip_prefix("| ") {
            let cells: Vec<&str> = row
                .trim_end_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let step = cells.first().and_then(|c| c.parse().ok());
            let trace = cells
                .get(3)
                .and_then(|cell| cell.strip_prefix('`'))
                .and_then(|cell| cell.strip_suffix('`'))
                .map(str::to_string);
            units.push(Unit {
                text: line.to_string(),
                step,
                trace,
            });
        } else if line.starts_with("- ") {
            units.push(Unit {
                text: line.to_string(),
                step: None,
                trace: None,
            });
        } else if line.starts_with("  ")
            && let Some(last) = units.last_mut()
            && last.text.starts_with("- ")
        {
            last.text.push(' ');
            last.text.push_str(line.trim());
        }
    }
    units
}

/// The names a unit gives, each with the file linked after it: in "`A::f` → `B::g` in
/// [src/b.rs](../src/b.rs), `C::h` in [src/c.rs](../src/c.rs)", `A::f` and `B::g` are
/// claimed to be in src/b.rs and `C::h` in src/c.rs. A name with no link after it is paired
/// with `None`. Names are code spans of the form `Owner::name`, with no call or arguments.
fn claims(unit: &str) -> Vec<(String, Option<String>)> {
    let mut claims = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut rest = unit;
    while !rest.is_empty() {
        if rest.starts_with('[')
            && let Some(close) = rest.find("](")
            && let Some(end) = rest[close..].find(')')
        {
            let target = &rest[close + 2..close + end];
            if let Some(at) = target.find("src/") {
                let file = target[at..].to_string();
                claims.extend(pending.drain(..).map(|name| (name, Some(file.clone()))));
            }
            rest = &rest[close + end + 1..];
        } else if let Some(code) = rest.strip_prefix('`') {
            let end = code.find('`').unwrap_or(code.len());
            let span = &code[..end];
            if span.contains("::")
                && span
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            {
                pending.push(span.to_string());
            }
            rest = code.get(end + 1..).unwrap_or("");
        } else {
            let next = rest[1..].find(['[', '`']).map_or(rest.len(), |i| i + 1);
            rest = &rest[next..];
        }
    }
    claims.extend(pending.into_iter().map(|name| (name, None)));
    claims
}

/// The last segment of a type's path (`crate::room::Room<T>` is `Room`).
fn type_name(ty: &syn::Type) -> Option<String> {
    match ty {
        syn::Type::Path(path) => path.path.segments.last().map(|s| s.ident.to_string()),
        syn::Type::Reference(reference) => type_name(&reference.elem),
        _ => None,
    }
}

/// Whether `path` (`Owner::item`) is in `source`, the text of `file`: a function in an impl
/// (inherent or of a trait) of the type `Owner`; a variant of the enum `Owner`; or, when
/// `Owner` is the module `file` is (`cmd` for src/cmd/mod.rs), a function of that file.
/// Only the file's own items count, not those of modules inside it (such as its tests).
fn defined_in(file: &str, source: &str, path: &str) -> Result<(), String> {
    let (owner, item) = path
        .rsplit_once("::")
        .ok_or_else(|| format!("`{path}` is not Owner::item"))?;
    let owner = owner.rsplit("::").next().unwrap_or(owner);
    let parsed =
        syn::parse_file(source).map_err(|e| format!("{file} does not parse as Rust: {e}"))?;
    let mut functions_of_owner = Vec::new();
    for it in &parsed.items {
        match it {
            syn::Item::Impl(block) if type_name(&block.self_ty).as_deref() == Some(owner) => {
                for member in &block.items {
                    if let syn::ImplItem::Fn(function) = member {
                        if function.sig.ident == item {
                            return Ok(());
                        }
                        functions_of_owner.push(function.sig.ident.to_string());
                    }
                }
            }
            syn::Item::Enum(enumeration)
                if enumeration.ident == owner
                    && enumeration.variants.iter().any(|v| v.ident == item) =>
            {
                return Ok(());
            }
            _ => {}
        }
    }
    let module = Path::new(file)
        .file_stem()
        .and_then(|stem| stem.to_str())
        .filter(|&stem| stem != "mod")
        .or_else(|| Path::new(file).parent()?.file_name()?.to_str());
    if module == Some(owner) {
        let free = parsed
            .items
            .iter()
            .any(|it| matches!(it, syn::Item::Fn(function) if function.sig.ident == item));
        if free {
            return Ok(());
        }
        return Err(format!(
            "`{path}`: {file} (module {owner}) has no function `{item}`"
        ));
    }
    if functions_of_owner.is_empty() {
        Err(format!(
            "`{path}`: {file} has no impl of `{owner}` (nor enum {owner} with {item})"
        ))
    } else {
        functions_of_owner.sort();
        Err(format!(
            "`{path}`: no `{item}` in the impls of `{owner}` in {file} (they have: {})",
            functions_of_owner.join(", ")
        ))
    }
}

/// Checks every claim of `section` against the files under the root: how many names were
/// checked, and what is wrong.
fn check_walkthrough(section: &str) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for unit in units(section) {
        for (name, file) in claims(&unit.text) {
            checked += 1;
            let Some(file) = file else {
                wrong.push(format!("`{name}` is followed by no link to its file"));
                continue;
            };
            match fs::read_to_string(root().join(&file)) {
                Ok(source) => {
                    if let Err(why) = defined_in(&file, &source, &name) {
                        wrong.push(why);
                    }
                }
                Err(e) => wrong.push(format!("`{name}`: {file}: {e}")),
            }
        }
    }
    (checked, wrong)
}

fn walkthrough_page() -> String {
    read(Path::new(WALKTHROUGH))
}

/// Every function the walkthrough names is in an impl of the type it names, in the file the
/// step links to after the name.
#[test]
fn every_function_the_walkthrough_names_is_in_an_impl_of_its_type_in_its_file() {
    let page = walkthrough_page();
    let (checked, wrong) = check_walkthrough(walkthrough(&page));
    assert!(
        checked >= 30,
        "only {checked} names found: is the walkthrough still a table?"
    );
    assert!(
        wrong.is_empty(),
        "the walkthrough drifted from the code:\n{}",
        wrong.join("\n")
    );
}

/// Rows that name what does not exist, or name it in the wrong file, are rejected, each with
/// a reason; a right row passes. (`Room::deliver` was accepted by the old check because
/// `struct RoomRules` contains `struct Room`.)
#[test]
fn the_walkthrough_check_rejects_wrong_rows() {
    let rows = "\
| 1 | wrong | `Room::deliver` in [src/room.rs](../src/room.rs) | |
| 2 | wrong | `Listed::flush` in [src/table/mod.rs](../src/table/mod.rs) | |
| 3 | wrong | `Encoded::read` in [src/transport/mod.rs](../src/transport/mod.rs) | |
| 4 | wrong file | `ConnTable::send` in [src/room.rs](../src/room.rs) | |
| 5 | no file | `Room::say` and nothing linked | |
| 6 | right | `ConnTable::send` in [src/table/mod.rs](../src/table/mod.rs) | |
";
    let (checked, wrong) = check_walkthrough(rows);
    for why in &wrong {
        println!("rejected: {why}");
    }
    assert_eq!(checked, 6);
    assert_eq!(wrong.len(), 5, "{wrong:#?}");
    for (why, name) in wrong.iter().zip([
        "Room::deliver",
        "Listed::flush",
        "Encoded::read",
        "ConnTable::send",
        "Room::say",
    ]) {
        assert!(why.contains(name), "{why}");
    }
}

/// The parser, on crafted sources: a name in a type whose name merely starts the same, a
/// function of another type, or a function inside the file's tests module is not enough.
#[test]
fn the_walkthrough_check_reads_impls_not_text() {
    let source = "
        struct RoomRules;
        impl RoomRules { fn deliver(&self) {} }
        impl Room { pub fn say(&mut self) {} }
        impl Outbox for Table { fn send(&mut self) {} }
        pub enum Phase { Handshaking, Chatting }
        pub fn handle_line() {}
        #[cfg(test)]
        mod tests { impl super::Room { fn in_tests(&self) {} } }
    ";
    assert_eq!(defined_in("src/room.rs", source, "Room::say"), Ok(()));
    assert_eq!(defined_in("src/room.rs", source, "Table::send"), Ok(()));
    assert_eq!(
        defined_in("src/room.rs", source, "Phase::Handshaking"),
        Ok(())
    );
    assert_eq!(
        defined_in("src/cmd/mod.rs", source, "cmd::handle_line"),
        Ok(())
    );
    assert_eq!(
        defined_in("src/room.rs", source, "room::handle_line"),
        Ok(())
    );
    for wrong in [
        "Room::deliver",
        "Room::in_tests",
        "Room::send",
        "Phase::Leaving",
        "cmd::handle_line",
        "Missing::say",
    ] {
        assert!(
            defined_in("src/room.rs", source, wrong).is_err(),
            "{wrong} accepted"
        );
    }
}

/// The walkthrough's steps, in the table's order.
fn steps(page: &str) -> Vec<Unit> {
    units(walkthrough(page))
        .into_iter()
        .filter(|u| u.step.is_some())
        .collect()
}

/// The walkthrough stays short enough to follow: at most twelve steps, numbered 1, 2, 3...
#[test]
fn the_walkthrough_has_at_most_twelve_steps_in_order() {
    let page = walkthrough_page();
    let numbers: Vec<u32> = steps(&page).iter().filter_map(|u| u.step).collect();
    assert!((1..=12).contains(&numbers.len()), "{} steps", numbers.len());
    assert_eq!(numbers, (1..=numbers.len() as u32).collect::<Vec<_>>());
}

/// The steps that say they make the `read(2)` and the `writev(2)` name the function that
/// makes it, in src/nonblocking.rs, where every non-blocking rule lives.
#[test]
fn the_walkthrough_names_where_read_and_writev_happen() {
    let page = walkthrough_page();
    for call in ["`read(2)`", "`writev(2)`"] {
        let named: Vec<(String, Option<String>)> = steps(&page)
            .iter()
            .filter(|u| u.text.contains(call))
            .flat_map(|u| claims(&u.text))
            .filter(|(_, file)| file.as_deref() == Some("src/nonblocking.rs"))
            .collect();
        assert!(
            !named.is_empty(),
            "no step that says {call} names its function in src/nonblocking.rs"
        );
    }
}

/// `line` with its `token N` numbers as a real run gave them: the walkthrough's token 0
/// (the sender) is `sender`, its token 1 (the recipient) `recipient`.
fn with_tokens(line: &str, sender: usize, recipient: usize) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find("token ") {
        out.push_str(&rest[..at + "token ".len()]);
        rest = &rest[at + "token ".len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        match &rest[..digits] {
            "0" => out.push_str(&sender.to_string()),
            "1" => out.push_str(&recipient.to_string()),
            other => out.push_str(other),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// The token a client got, from the server's "connected as NICK (token N)" log line.
fn token_of(server: &mut ServerProcess, nick: &str) -> usize {
    let line = server.wait_for_log(&format!("connected as {nick} (token "));
    line.rsplit("(token ")
        .next()
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no token in {line:?}"))
}

/// One real line, traced: guest-1 says `hi` to guest-2 on a server at `--log-level trace`,
/// and the trace lines the walkthrough's steps say they log come in the steps' order (the
/// example at the top of the page is those lines).
#[test]
fn a_traced_line_passes_the_walkthrough_steps_in_order() {
    let page = walkthrough_page();
    let traced: Vec<(u32, String)> = steps(&page)
        .into_iter()
        .filter_map(|u| Some((u.step?, u.trace?)))
        .collect();
    assert!(
        traced.len() >= 4,
        "only {} steps say what they log",
        traced.len()
    );
    let example: Vec<String> = page
        .lines()
        .filter_map(|line| line.strip_prefix("[TRACE] "))
        .map(str::to_string)
        .collect();
    let expected: Vec<String> = traced.iter().map(|(_, line)| line.clone()).collect();
    assert_eq!(
        example, expected,
        "the example trace and the steps' trace lines differ"
    );

    let mut server = ServerProcess::start(&["--log-level", "trace", "--quiet-joins"]);
    let mut alice = Client::connect(server.addr);
    let sender = token_of(&mut server, &alice.nick);
    let mut bob = Client::connect(server.addr);
    let recipient = token_of(&mut server, &bob.nick);
    assert_eq!(
        (alice.nick.as_str(), bob.nick.as_str()),
        ("guest-1", "guest-2")
    );
    // Bob's welcome written: everything before the line is in the log already.
    server.wait_for_log(&format!("token {recipient}: wrote "));

    alice.send("hi");
    bob.expect("<guest-1> hi");
    let trace: Vec<String> = server
        .log_until(&format!("token {recipient}: wrote "))
        .iter()
        .filter_map(|line| line.split_once("[TRACE] ").map(|(_, m)| m.to_string()))
        .collect();

    let mut from = 0;
    for (step, line) in &traced {
        let want = with_tokens(line, sender, recipient);
        match trace[from..].iter().position(|got| *got == want) {
            Some(at) => from += at + 1,
            None => panic!(
                "step {step} says it logs {want:?}, but the trace has no such line after \
                 the previous step's:\n{}",
                trace.join("\n")
            ),
        }
    }
}

// The dependency lists.

/// The crates `Cargo.toml` names under `[dependencies]` and `[dev-dependencies]`.
fn cargo_dependencies() -> Vec<String> {
    let manifest = read(Path::new("Cargo.toml"));
    let mut section = "";
    let mut crates = Vec::new();
    for line in manifest.lines() {
        if line.starts_with('[') {
            section = line;
        } else if matches!(section, "[dependencies]" | "[dev-dependencies]")
            && let Some((name, _)) = line.split_once('=')
            && !line.starts_with('#')
        {
            crates.push(name.trim().to_string());
        }
    }
    crates
}

/// The crates a "| crate | why |" table names in its first column: its code spans.
fn listed_crates(md: &str) -> Vec<String> {
    let start = md
        .find("| crate | why |")
        .expect("a `| crate | why |` table");
    md[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_string))
        .collect()
}

/// The README's dependency list and the guide's are the project's: every crate `Cargo.toml`
/// depends on is listed with a reason, and every crate listed is a dependency somewhere
/// (`Cargo.toml`, `fuzz/Cargo.toml`, or the browser test's `package.json`).
#[test]
fn the_dependency_lists_match_the_manifests() {
    let manifests = [
        "Cargo.toml",
        "fuzz/Cargo.toml",
        "tests/browser/package.json",
    ]
    .map(|file| read(Path::new(file)))
    .join("\n");
    let depends_on = |name: &str| {
        manifests.lines().any(|line| {
            let line = line.trim().trim_start_matches('"');
            line.starts_with(&format!("{name} ="))
                || line.starts_with(&format!("{name}\":"))
                || line.contains(&format!("package = \"{name}\""))
        })
    };
    let crates = cargo_dependencies();
    assert!(
        crates.len() >= 20,
        "only {} crates in Cargo.toml",
        crates.len()
    );
    for file in ["README.md", "docs/dependencies.md"] {
        let listed = listed_crates(&read(Path::new(file)));
        let unlisted: Vec<&String> = crates.iter().filter(|c| !listed.contains(c)).collect();
        assert!(unlisted.is_empty(), "{file} does not list {unlisted:?}");
        let stray: Vec<&String> = listed.iter().filter(|c| !depends_on(c)).collect();
        assert!(
            stray.is_empty(),
            "{file} lists {stray:?}, which nothing depends on"
        );
    }
}
