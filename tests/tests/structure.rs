//! The code map's rules, checked on the source: no import circles between
//! modules, SQL only in the publisher's `db/`, git only in its `store/`, and a
//! `//!` line at the top of every module. ARCHITECTURE.md says how to run it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path inside its crate, e.g. `["web", "ads"]`; the crate root is `[]`.
type ModPath = Vec<String>;

struct SourceFile {
    path: PathBuf,
    module: ModPath,
    /// The file without comments, string contents kept, tests cut off.
    code: String,
    /// The whole file, comments included.
    text: String,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "lib" | "main" | "mod") {
        parts.push(stem.to_string());
    }
    parts
}

/// Drops `//` comments (doc links are not imports) and everything from the
/// first `#[cfg(test)]` on: unit tests may reach anywhere.
fn code_of(text: &str) -> String {
    let cut = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..cut]
        .lines()
        .map(|line| match line.trim_start().starts_with("//") {
            true => "",
            false => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn sources(crate_dir: &str) -> Vec<SourceFile> {
    let src = workspace_root().join(crate_dir).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|f| !f.ends_with("main.rs"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            SourceFile {
                module: module_of(&src, &path),
                code: code_of(&text),
                text,
                path,
            }
        })
        .collect()
}

fn ident_at(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// Every module path a file names through `crate::a::b` or `super::a`,
/// including the heads of `crate::{a, b::c}` groups.
fn referenced_paths(file: &SourceFile) -> Vec<ModPath> {
    let mut out = Vec::new();
    // `super` of `a/b.rs` and of `a/b/mod.rs` is `a`.
    let parent: ModPath = file.module[..file.module.len().saturating_sub(1)].to_vec();
    for (prefix, base) in [("crate::", ModPath::new()), ("super::", parent)] {
        let mut rest = file.code.as_str();
        while let Some(i) = rest.find(prefix) {
            let preceded_by_ident = rest[..i]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            rest = &rest[i + prefix.len()..];
            if preceded_by_ident {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let body = &group[..group.find('}').unwrap_or(group.len())];
                for item in body.split(',') {
                    out.push(path_from(&base, item.trim()));
                }
            } else {
                out.push(path_from(&base, rest));
            }
        }
    }
    out
}

fn path_from(base: &ModPath, mut s: &str) -> ModPath {
    let mut path = base.clone();
    while let Some(id) = ident_at(s) {
        path.push(id.to_string());
        s = &s[id.len()..];
        match s.strip_prefix("::") {
            Some(next) => s = next,
            None => break,
        }
    }
    path
}

/// The import graph between sibling modules: a use from `a::x` of `b::y` is an
/// edge `a → b` (in their common parent). A module using its parent or child
/// is not an edge: `mod.rs` declaring its children is not an import.
fn sibling_graph(files: &[SourceFile]) -> BTreeMap<ModPath, BTreeMap<ModPath, String>> {
    let modules: BTreeSet<ModPath> = files.iter().map(|f| f.module.clone()).collect();
    let mut graph: BTreeMap<ModPath, BTreeMap<ModPath, String>> = BTreeMap::new();
    for file in files {
        for target in referenced_paths(file) {
            // The longest prefix that is a module: `crate::error::Result` is `error`.
            let Some(target) = (0..=target.len())
                .rev()
                .map(|n| target[..n].to_vec())
                .find(|p| modules.contains(p))
            else {
                continue;
            };
            let common = file
                .module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == file.module.len() || common == target.len() {
                continue;
            }
            let from = file.module[..=common].to_vec();
            let to = target[..=common].to_vec();
            graph
                .entry(from)
                .or_default()
                .entry(to.clone())
                .or_insert_with(|| format!("{} names {}", file.path.display(), to.join("::")));
        }
    }
    graph
}

/// One circle of the graph, as the list of its modules, if there is any.
fn find_cycle(graph: &BTreeMap<ModPath, BTreeMap<ModPath, String>>) -> Option<Vec<ModPath>> {
    fn visit(
        node: &ModPath,
        graph: &BTreeMap<ModPath, BTreeMap<ModPath, String>>,
        stack: &mut Vec<ModPath>,
        done: &mut BTreeSet<ModPath>,
    ) -> Option<Vec<ModPath>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            return Some(stack[i..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flat_map(|m| m.keys()) {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

fn assert_acyclic(crate_dir: &str) {
    let files = sources(crate_dir);
    let graph = sibling_graph(&files);
    if let Some(cycle) = find_cycle(&graph) {
        let mut why = String::new();
        for (i, from) in cycle.iter().enumerate() {
            let to = &cycle[(i + 1) % cycle.len()];
            why.push_str(&format!(
                "\n  {} → {}: {}",
                from.join("::"),
                to.join("::"),
                graph[from][to]
            ));
        }
        panic!("{crate_dir}: modules import each other in a circle:{why}");
    }
}

#[test]
fn no_publisher_modules_import_each_other_in_a_circle() {
    assert_acyclic("publisher");
}

#[test]
fn no_puller_modules_import_each_other_in_a_circle() {
    assert_acyclic("puller");
}

#[test]
fn no_schema_modules_import_each_other_in_a_circle() {
    assert_acyclic("schema");
}

#[test]
fn the_circle_check_finds_a_planted_circle() {
    let file = |module: &str, code: &str| SourceFile {
        path: PathBuf::from(format!("{module}.rs")),
        module: module.split('/').map(str::to_string).collect(),
        code: code_of(code),
        text: code.to_string(),
    };
    let files = [
        file("a", "use crate::b::Thing;"),
        file("b", "use crate::{c::Other, d};"),
        file("c", "fn f() { super::a::g() }"),
        file("d", "// use crate::a;"),
    ];
    let cycle = find_cycle(&sibling_graph(&files)).expect("a → b → c → a is a circle");
    assert_eq!(cycle.len(), 3, "{cycle:?}");
    let files = [
        file("a", "use crate::b::Thing;"),
        file("b", "// crate::a in a comment"),
    ];
    assert_eq!(find_cycle(&sibling_graph(&files)), None);
}

/// Files of the publisher outside `dir`, that contain any of `needles` in code.
fn publisher_files_naming(outside: &str, needles: &[&str]) -> Vec<String> {
    sources("publisher")
        .iter()
        .filter(|f| f.module.first().map(String::as_str) != Some(outside))
        .flat_map(|f| {
            needles
                .iter()
                .filter(|n| f.code.contains(*n))
                .map(move |n| format!("{} names `{n}`", f.path.display()))
        })
        .collect()
}

#[test]
fn only_the_publisher_db_module_runs_sql() {
    let found = publisher_files_naming(
        "db",
        &[
            "rusqlite",
            "\"SELECT ",
            "\"INSERT ",
            "\"UPDATE ",
            "\"DELETE ",
            "SELECT {",
            ".conn()",
            "query_row(",
            ".execute(",
        ],
    );
    assert!(
        found.is_empty(),
        "SQL outside publisher/src/db:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_publisher_store_module_names_git2() {
    let found = publisher_files_naming("store", &["git2"]);
    assert!(
        found.is_empty(),
        "git2 outside publisher/src/store:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_database_connection_is_private() {
    for f in sources("publisher") {
        assert!(
            !f.code.contains("pub fn conn(") && !f.code.contains("pub(crate) fn conn("),
            "{} exposes the database connection",
            f.path.display()
        );
    }
}

#[test]
fn every_module_starts_with_a_doc_line() {
    let mut missing = Vec::new();
    for dir in ["schema", "publisher", "puller", "web", "tests"] {
        let src = workspace_root().join(dir).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            if !text.trim_start().starts_with("//!") {
                missing.push(path.display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "modules without a `//!` line:\n{}",
        missing.join("\n")
    );
}

#[test]
fn source_files_are_read_whole() {
    // Guards the checks above against a layout change that would leave them
    // reading nothing: each crate has modules, and the publisher has db and store.
    let publisher = sources("publisher");
    assert!(publisher.iter().any(|f| f.module == ["db"]));
    assert!(publisher.iter().any(|f| f.module == ["store"]));
    assert!(publisher.iter().all(|f| !f.text.is_empty()));
    assert!(sources("puller").len() > 5 && sources("schema").len() > 5);
}
