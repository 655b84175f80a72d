//! The architecture, checked: which crate may depend on which, that the core pulls in no web
//! crate, that no crate's top-level modules form a cycle, that no door of the server imports
//! another door (nor an engine a door), and that every source file says what it holds in a
//! module doc comment. ARCHITECTURE.md states these rules; this file keeps them true. The
//! checkers are tested on small made-up trees too, so a checker that stopped seeing a cycle
//! or a forbidden edge would fail here rather than pass silently.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

/// Which workspace crate may depend on which (normal and build dependencies; tests may use more).
const ALLOWED_CRATE_EDGES: &[(&str, &[&str])] = &[
    ("baton-proto", &[]),
    ("baton-core", &["baton-proto"]),
    ("baton-server", &["baton-proto", "baton-core"]),
    ("baton-client", &["baton-proto"]),
    ("baton-agent", &["baton-proto"]),
    ("baton", &["baton-proto", "baton-core", "baton-server", "baton-client", "baton-agent"]),
    ("baton-testkit", &[]),
];

/// Crates the core must never pull in, even through another crate: web frameworks, templates,
/// the OpenAPI machinery and WebSockets belong to the doors.
const WEB_CRATES: &[&str] = &[
    "axum",
    "axum-core",
    "askama",
    "utoipa",
    "utoipa-axum",
    "utoipa-swagger-ui",
    "tungstenite",
    "tokio-tungstenite",
    // HTTP itself, client or server, however deep: the S3 store's client lives in the server.
    "tower-http",
    "tower",
    "hyper",
    "hyper-util",
    "reqwest",
];

/// The server's doors: each turns outside input into calls on the core.
const DOORS: &[&str] = &["api", "console", "agents", "mqtt"];
/// The server's engines: work no request starts.
const ENGINES: &[&str] = &["engines"];

#[test]
fn workspace_crates_depend_only_along_the_allowed_edges() {
    let found = workspace_crate_edges(&workspace_root());
    let allowed: BTreeMap<&str, BTreeSet<&str>> =
        ALLOWED_CRATE_EDGES.iter().map(|(c, deps)| (*c, deps.iter().copied().collect())).collect();
    let problems = forbidden_crate_edges(&found, &allowed);
    assert!(problems.is_empty(), "crate dependencies break the architecture:\n{}", problems.join("\n"));
    assert_eq!(
        found.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        allowed.keys().copied().collect::<BTreeSet<_>>(),
        "every workspace crate has a row in ALLOWED_CRATE_EDGES"
    );
}

#[test]
fn the_core_depends_on_no_web_crate() {
    let all = core_dependencies();
    assert!(all.contains("sqlx") && all.contains("libsqlite3-sys"), "the whole tree was read: {all:?}");
    let web: Vec<&&str> = WEB_CRATES.iter().filter(|c| all.contains(**c)).collect();
    assert!(web.is_empty(), "baton-core pulls in web crates {web:?}; they belong to baton-server");
}

/// The names in `cargo tree -p baton-core` (normal and build dependencies, the whole tree).
fn core_dependencies() -> BTreeSet<String> {
    let args = ["tree", "-p", "baton-core", "-e", "normal,build", "--prefix", "none", "--format", "{p}", "--offline"];
    let output =
        Command::new(env!("CARGO")).current_dir(workspace_root()).args(args).output().expect("cargo tree runs");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8_lossy(&output.stdout);
    tree.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| *n != "baton-core").map(String::from).collect()
}

#[test]
fn no_crate_has_a_cycle_among_its_top_level_modules() {
    let mut problems = Vec::new();
    for krate in workspace_crates(&workspace_root()) {
        let graph = module_graph(&krate.join("src"));
        for cycle in cycles(&graph) {
            problems.push(format!("{}: {}", krate.display(), describe_cycle(&graph, &cycle)));
        }
    }
    assert!(problems.is_empty(), "module cycles:\n{}", problems.join("\n"));
}

#[test]
fn no_door_imports_another_door_and_no_engine_imports_a_door() {
    let graph = module_graph(&workspace_root().join("crates/baton-server/src"));
    for door in DOORS.iter().chain(ENGINES) {
        assert!(graph.modules.contains(*door), "baton-server has a top-level module `{door}`");
    }
    let problems = door_violations(&graph);
    assert!(problems.is_empty(), "doors must not import doors:\n{}", problems.join("\n"));
}

#[test]
fn every_source_file_opens_with_a_module_doc_comment() {
    let mut missing = Vec::new();
    for krate in workspace_crates(&workspace_root()) {
        for file in rust_files(&krate.join("src")) {
            let text = std::fs::read_to_string(&file).expect("readable source");
            if !opens_with_module_doc(&text) {
                missing.push(file.display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "add a `//!` paragraph saying what lives here and why:\n{}", missing.join("\n"));
}

// The checkers, tested on made-up trees.

#[test]
fn a_cycle_through_a_use_group_is_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "lib.rs", "//! root\npub mod a;\npub mod b;\npub mod c;\n");
    write(dir.path(), "a.rs", "//! a\nuse crate::{\n    b::{One, Two},\n    c,\n};\n");
    write(dir.path(), "b/mod.rs", "//! b\nmod inner;\n");
    write(dir.path(), "b/inner.rs", "//! b's inner\nfn f() { super::super::c::go(); }\n");
    write(dir.path(), "c.rs", "//! c\nfn g() { crate::a::run() }\n");
    let graph = module_graph(dir.path());
    let found = cycles(&graph);
    assert_eq!(found, vec![vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]], "{:?}", graph.edges);
    assert!(describe_cycle(&graph, &found[0]).contains("b/inner.rs"), "the report names where the edge is");
}

#[test]
fn paths_in_tests_comments_and_root_reexports_are_read_right() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "lib.rs", "//! root\npub mod a;\npub mod b;\npub use b::Thing;\n");
    write(dir.path(), "a.rs", "//! a, which mentions crate::b in a comment only\n// crate::b::x\nuse crate::Thing;\n");
    write(
        dir.path(),
        "b.rs",
        "//! b\n#[cfg(test)]\nmod tests {\n    use crate::a::helper;\n    fn nested() { if true { } }\n}\n",
    );
    let graph = module_graph(dir.path());
    assert_eq!(graph.targets("a"), BTreeSet::from(["b".to_owned()]), "crate::Thing is b's, re-exported");
    assert!(graph.targets("b").is_empty(), "test modules do not count");
    assert!(cycles(&graph).is_empty());
}

#[test]
fn a_door_importing_a_door_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "lib.rs", "//! root\npub mod api;\npub mod console;\npub mod engines;\npub mod state;\n");
    write(dir.path(), "api.rs", "//! api\nuse crate::{console::Page, state::AppState};\n");
    write(dir.path(), "console.rs", "//! console\nuse crate::state::AppState;\n");
    write(dir.path(), "engines.rs", "//! engines\nuse crate::api::x;\n");
    write(dir.path(), "state.rs", "//! state\n");
    let problems = door_violations(&module_graph(dir.path()));
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("api → console") && problems[1].contains("engines → api"), "{problems:?}");
}

#[test]
fn a_forbidden_crate_edge_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "crates/baton-core/Cargo.toml",
        "[package]\nname = \"baton-core\"\n[dependencies]\nbaton-proto.workspace = true\nbaton-server = { path = \"../baton-server\" }\n[dev-dependencies]\nbaton-client.workspace = true\n",
    );
    write(
        dir.path(),
        "crates/baton-agent/Cargo.toml",
        "[package]\nname = \"baton-agent\"\n[target.'cfg(unix)'.dependencies]\nbaton-core.workspace = true\n",
    );
    let found = workspace_crate_edges(dir.path());
    let allowed: BTreeMap<&str, BTreeSet<&str>> =
        ALLOWED_CRATE_EDGES.iter().map(|(c, deps)| (*c, deps.iter().copied().collect())).collect();
    let problems = forbidden_crate_edges(&found, &allowed);
    assert_eq!(problems, ["baton-agent → baton-core", "baton-core → baton-server"], "dev-dependencies are allowed");
}

#[test]
fn a_file_without_a_module_doc_is_found() {
    assert!(opens_with_module_doc("#![allow(x)]\n\n//! What lives here.\nuse a;\n"));
    assert!(!opens_with_module_doc("/// An item's doc, not the module's.\nfn f() {}\n"));
    assert!(!opens_with_module_doc("use a;\n//! too late\n"));
}

// Reading crates.

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

fn workspace_crates(root: &Path) -> Vec<PathBuf> {
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    crates.sort();
    crates
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// Each workspace crate's dependencies on other `baton*` crates, from `[dependencies]`,
/// `[build-dependencies]` and their target-specific forms (not dev-dependencies).
fn workspace_crate_edges(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for krate in workspace_crates(root) {
        let text = std::fs::read_to_string(krate.join("Cargo.toml")).expect("Cargo.toml");
        let manifest: toml::Table = text.parse().expect("Cargo.toml parses");
        let name = manifest["package"]["name"].as_str().expect("package name").to_owned();
        let mut tables: Vec<&toml::Table> = Vec::new();
        for key in ["dependencies", "build-dependencies"] {
            tables.extend(manifest.get(key).and_then(|v| v.as_table()));
        }
        if let Some(targets) = manifest.get("target").and_then(|v| v.as_table()) {
            for target in targets.values().filter_map(|t| t.as_table()) {
                for key in ["dependencies", "build-dependencies"] {
                    tables.extend(target.get(key).and_then(|v| v.as_table()));
                }
            }
        }
        let deps = tables.iter().flat_map(|t| t.keys()).filter(|d| d.starts_with("baton")).cloned().collect();
        out.insert(name, deps);
    }
    out
}

fn forbidden_crate_edges(
    found: &BTreeMap<String, BTreeSet<String>>,
    allowed: &BTreeMap<&str, BTreeSet<&str>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (krate, deps) in found {
        let ok = allowed.get(krate.as_str());
        for dep in deps {
            if !ok.is_some_and(|ok| ok.contains(dep.as_str())) {
                problems.push(format!("{krate} → {dep}"));
            }
        }
    }
    problems
}

// Reading modules.

/// A crate's top-level modules and which of them each one names, with where.
struct Graph {
    modules: BTreeSet<String>,
    /// `(from, to)` → the first file and line that makes the edge.
    edges: BTreeMap<(String, String), String>,
}

impl Graph {
    fn targets(&self, from: &str) -> BTreeSet<String> {
        self.edges.keys().filter(|(f, _)| f == from).map(|(_, t)| t.clone()).collect()
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The top-level modules of the crate rooted at `src` (`lib.rs` or `main.rs`) and the edges
/// between them: `crate::x`, `crate::{x, y::…}` and `super::…` paths reaching the root, outside
/// `#[cfg(test)]` modules and comments. A name the root re-exports (`pub use x::Name`) counts as
/// its module.
fn module_graph(src: &Path) -> Graph {
    let files = rust_files(src);
    let mut modules = BTreeSet::new();
    let mut per_file = Vec::new();
    let mut reexports = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(src).expect("under src");
        let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let text = code_only(&std::fs::read_to_string(file).expect("readable source"));
        if parts.len() == 1 && matches!(parts[0].as_str(), "lib.rs" | "main.rs") {
            reexports.extend(root_reexports(&text));
            continue;
        }
        let top = parts[0].trim_end_matches(".rs").to_owned();
        // How many `super::` reach the crate root from this file.
        let depth = if parts.last().is_some_and(|p| p == "mod.rs") { parts.len() - 1 } else { parts.len() };
        modules.insert(top.clone());
        per_file.push((top, rel.display().to_string(), depth, text));
    }
    let mut edges = BTreeMap::new();
    for (top, rel, depth, text) in &per_file {
        for (line, name) in root_paths(text, *depth) {
            let target = reexports.get(&name).cloned().unwrap_or(name);
            if modules.contains(&target) && &target != top {
                edges.entry((top.clone(), target)).or_insert_with(|| format!("{rel}:{line}"));
            }
        }
    }
    Graph { modules, edges }
}

/// The source without comments, string literals' contents and `#[cfg(test)] mod … { … }`
/// blocks; newlines are kept so line numbers stay right.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '/' if at(i + 1) == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == Some('*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && at(i + 1) == Some('/')) {
                    if chars[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
                i += 2;
            }
            'r' if (at(i + 1) == Some('"') || at(i + 1) == Some('#'))
                && !out.chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_') =>
            {
                // A raw string, r"…" or r#"…"#: skip to the quote followed by as many hashes.
                let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
                if chars.get(i + 1 + hashes) != Some(&'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                i += 2 + hashes;
                while i < chars.len() && !(chars[i] == '"' && (0..hashes).all(|k| at(i + 1 + k) == Some('#'))) {
                    if chars[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
                out.push_str("\"\"");
                i += 1 + hashes;
            }
            '\'' if at(i + 2) == Some('\'')
                || (at(i + 1) == Some('\\') && chars[i + 2..].iter().take(8).any(|c| *c == '\'')) =>
            {
                // A char literal ('"', '\'', '\u{7f}'); lifetimes have no closing quote.
                i += if at(i + 1) == Some('\\') {
                    3 + chars[i + 3..].iter().position(|c| *c == '\'').unwrap_or(0)
                } else {
                    2
                };
                i += 1;
                out.push_str("' '");
            }
            '"' => {
                out.push('"');
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    if chars.get(i) == Some(&'\n') {
                        out.push('\n');
                    }
                    i += 1;
                }
                out.push('"');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    strip_test_modules(&out)
}

fn strip_test_modules(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let head = after.trim_start();
        let is_block_mod =
            (head.starts_with("mod ") || head.starts_with("pub mod ") || head.starts_with("pub(crate) mod "))
                && after.find('{').is_some_and(|b| after.find(';').is_none_or(|s| b < s));
        if !is_block_mod {
            out.push_str("#[cfg(test)]");
            rest = after;
            continue;
        }
        let open = after.find('{').expect("checked");
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.extend(after[..end].chars().filter(|c| *c == '\n'));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `pub use module::Name;` and `pub use module::{A, B};` in the crate root: name → module.
fn root_reexports(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stmt in text.split(';') {
        let Some(path) = stmt.trim().strip_prefix("pub use ") else { continue };
        let path = path.trim().trim_start_matches("crate::").trim_start_matches("self::");
        let Some((module, rest)) = path.split_once("::") else { continue };
        let names = rest.trim().trim_start_matches('{').trim_end_matches('}');
        for name in names.split(',') {
            let name = name.split(" as ").last().unwrap_or(name).trim();
            let name = name.rsplit("::").next().unwrap_or(name);
            if !name.is_empty() {
                out.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    out
}

/// Every name a path reaches at the crate root, with its line: `crate::name`, each first name
/// inside `crate::{…}`, and `super::` repeated `depth` times.
fn root_paths(text: &str, depth: usize) -> Vec<(usize, String)> {
    let mut prefixes = vec!["crate::".to_owned()];
    if depth > 0 {
        prefixes.push("super::".repeat(depth));
    }
    let mut out = Vec::new();
    for prefix in &prefixes {
        let mut from = 0;
        while let Some(found) = text[from..].find(prefix.as_str()) {
            let at = from + found;
            from = at + prefix.len();
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let line = text[..at].matches('\n').count() + 1;
            let rest = &text[from..];
            if let Some(group) = rest.strip_prefix('{') {
                for name in first_names_in_group(group) {
                    out.push((line, name));
                }
            } else {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name != "super" {
                    out.push((line, name));
                }
            }
        }
    }
    out
}

/// The first name of each item in a `{…}` group (the text after its `{`), at depth one only.
fn first_names_in_group(group: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 1;
    let mut expecting = true;
    let mut chars = group.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expecting = true,
            c if depth == 1 && expecting && (c.is_alphanumeric() || c == '_') => {
                let name: String = group[i..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                for _ in 1..name.chars().count() {
                    chars.next();
                }
                if name != "self" {
                    names.push(name);
                }
                expecting = false;
            }
            _ => {}
        }
    }
    names
}

/// Strongly connected components of more than one module (Tarjan), each sorted.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a Graph,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        found: Vec<Vec<String>>,
    }
    impl Walk<'_> {
        fn visit(&mut self, v: &str) {
            let n = self.index.len();
            self.index.insert(v.to_owned(), n);
            self.low.insert(v.to_owned(), n);
            self.stack.push(v.to_owned());
            for w in self.graph.targets(v) {
                if !self.index.contains_key(&w) {
                    self.visit(&w);
                    let lw = self.low[&w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[&w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    let done = w == v;
                    component.push(w);
                    if done {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for m in &graph.modules {
        if !walk.index.contains_key(m) {
            walk.visit(m);
        }
    }
    walk.found.sort();
    walk.found
}

/// A cycle in words: its modules and the edges between them with where each is made.
fn describe_cycle(graph: &Graph, cycle: &[String]) -> String {
    let edges: Vec<String> = graph
        .edges
        .iter()
        .filter(|((f, t), _)| cycle.contains(f) && cycle.contains(t))
        .map(|((f, t), at)| format!("{f} → {t} ({at})"))
        .collect();
    format!("{{{}}}: {}", cycle.join(", "), edges.join("; "))
}

fn door_violations(graph: &Graph) -> Vec<String> {
    graph
        .edges
        .iter()
        .filter(|((from, to), _)| {
            let from_door_or_engine = DOORS.contains(&from.as_str()) || ENGINES.contains(&from.as_str());
            from_door_or_engine && DOORS.contains(&to.as_str())
        })
        .map(|((from, to), at)| format!("{from} → {to} ({at})"))
        .collect()
}

/// Whether the file's first line of substance (after blank lines and inner attributes) is `//!`.
fn opens_with_module_doc(text: &str) -> bool {
    text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("#![")).is_some_and(|l| l.starts_with("//!"))
}
