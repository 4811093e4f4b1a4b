//! The README's "Life of a chat line" names, step by step, the functions a line passes
//! through and the files they are in. These tests check every name against the code, so the
//! walkthrough cannot drift from it again.

#![allow(
    clippy::expect_used,
    reason = "a failed expect in a test helper is a failed test, with its message"
)]

use std::fs;
use std::path::Path;

/// The README from the top of the repository.
fn readme() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    fs::read_to_string(root.join("README.md")).expect("README.md")
}

/// The walkthrough: from its heading to the next heading of the same level.
fn walkthrough(readme: &str) -> &str {
    let start = readme
        .find("### Life of a chat line")
        .expect("the README has a \"Life of a chat line\" section");
    let rest = &readme[start + 4..];
    let end = rest.find("\n### ").map_or(rest.len(), |i| i);
    &rest[..end]
}

/// The pieces that each say where their names live: a table row, or a bullet with the lines
/// that continue it.
fn units(section: &str) -> Vec<String> {
    let mut units: Vec<String> = Vec::new();
    for line in section.lines() {
        let continues = line.starts_with("  ") && units.last().is_some_and(|u| u.starts_with("- "));
        if line.starts_with("| ") || line.starts_with("- ") {
            units.push(line.to_string());
        } else if continues {
            let last = units.last_mut().expect("checked above");
            last.push(' ');
            last.push_str(line.trim());
        }
    }
    units
}

/// The `src/...` files a unit links to.
fn linked_files(unit: &str) -> Vec<String> {
    unit.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|target| target.starts_with("src/"))
        .map(str::to_string)
        .collect()
}

/// Code spans of the form `Owner::name` (or `module::sub::name`), with no call or arguments.
fn named_items(unit: &str) -> Vec<String> {
    unit.split('`')
        .skip(1)
        .step_by(2)
        .filter(|code| code.contains("::"))
        .filter(|code| {
            code.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        })
        .map(str::to_string)
        .collect()
}

/// Whether `owner::item` is in `source` (the text of `file`): `owner` a type, trait or enum
/// defined or implemented there, or the module the file is; `item` a function in it, or a
/// variant of the enum.
fn defined_in(file: &str, source: &str, path: &str) -> bool {
    let (owners, item) = path
        .rsplit_once("::")
        .expect("named_items keeps paths only");
    let owner = owners.rsplit("::").next().unwrap_or(owners);
    let is_module =
        file.ends_with(&format!("{owner}.rs")) || file.ends_with(&format!("{owner}/mod.rs"));
    let is_type = [
        format!("struct {owner}"),
        format!("enum {owner}"),
        format!("trait {owner}"),
        format!("for {owner} "),
        format!("impl {owner} "),
    ]
    .iter()
    .any(|needle| source.contains(needle.as_str()));
    let has_item = if item.starts_with(char::is_uppercase) {
        source.contains(&format!("enum {owner}")) && source.contains(&format!("    {item}"))
    } else {
        source.contains(&format!("fn {item}(")) || source.contains(&format!("fn {item}<"))
    };
    (is_module || is_type) && has_item
}

/// Every function the walkthrough names is in one of the files its step links to.
#[test]
fn every_function_the_walkthrough_names_is_in_the_file_it_names() {
    let readme = readme();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    let mut missing = Vec::new();
    for unit in units(walkthrough(&readme)) {
        let files = linked_files(&unit);
        for path in named_items(&unit) {
            checked += 1;
            let found = files.iter().any(|file| {
                let source = fs::read_to_string(root.join(file))
                    .unwrap_or_else(|e| panic!("the walkthrough links to {file}: {e}"));
                defined_in(file, &source, &path)
            });
            if !found {
                missing.push(format!("`{path}` is not in {files:?}"));
            }
        }
    }
    assert!(
        checked >= 30,
        "only {checked} names found: is the walkthrough still a table?"
    );
    assert!(
        missing.is_empty(),
        "the walkthrough drifted:\n{}",
        missing.join("\n")
    );
}

/// The walkthrough stays short enough to follow: at most twelve steps.
#[test]
fn the_walkthrough_has_at_most_twelve_steps() {
    let readme = readme();
    let steps = units(walkthrough(&readme))
        .iter()
        .filter(|u| u.starts_with("| ") && u[2..].starts_with(char::is_numeric))
        .count();
    assert!((1..=12).contains(&steps), "{steps} steps");
}

/// The checker itself: a name in the wrong file, or a function that does not exist, is caught.
#[test]
fn a_name_in_the_wrong_file_is_caught() {
    let source = "impl Room {\n    pub fn say(&mut self) {}\n}\n";
    assert!(defined_in("src/room.rs", source, "Room::say"));
    assert!(!defined_in("src/room.rs", source, "Room::shout"));
    assert!(!defined_in("src/room.rs", source, "Table::say"));
    assert!(defined_in(
        "src/cmd/mod.rs",
        "pub fn handle_line(",
        "cmd::handle_line"
    ));
}
