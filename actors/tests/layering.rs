//! The import graph of the actor systems, read from their sources: no circle among the crate's
//! modules, and no system that imports another's module, for the systems talk in the
//! vocabulary of `messages` (design.md "Messages between the systems"). Test code inside a
//! module (its `#[cfg(test)]` part) may wire systems together and is not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The actor systems of design.md, as modules of the crate.
const SYSTEMS: &[&str] = &[
    "sip_proxy",
    "registrar",
    "sip_cluster",
    "call_state",
    "agent_state",
    "ors",
    "rq",
    "tenant",
];

/// Every `.rs` file below `dir`.
fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readable source folder")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// A file's code as it is built for the node: comments and its test part left out.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The crate's modules each of `text`'s paths names (`crate::events::...`, and each path of a
/// `use crate::{...}` group).
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for path in group[..end].split(',') {
                if let Some((module, _)) = path.trim().split_once("::") {
                    named.insert(module.trim().to_owned());
                }
            }
            continue;
        }
        // A name in lowercase is a module (or a function of the crate's root, which names no
        // module and so makes no circle); `crate::Error` is the crate's own.
        let module: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
            .collect();
        if !module.is_empty() {
            named.insert(module);
        }
    }
    named
}

/// Each top-level module of the crate and the modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("below src");
        // A module's `tests/` folder is its test part.
        if relative.components().any(|c| c.as_os_str() == "tests") {
            continue;
        }
        let first = relative.components().next().expect("a path");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        let named = named_modules(&code(&text));
        let edges = graph.entry(module.clone()).or_default();
        edges.extend(named.into_iter().filter(|m| *m != module));
    }
    graph
}

/// A circle in `graph`, as the modules along it, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut found = path[at..].to_vec();
            found.push(module.to_owned());
            return Some(found);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(module, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_modules_of_the_crate_import_each_other_in_no_circle() {
    let graph = graph();
    for system in SYSTEMS {
        assert!(graph.contains_key(*system), "no module {system}: {graph:?}");
    }
    if let Some(found) = circle(&graph) {
        panic!(
            "the modules import each other in a circle: {}",
            found.join(" -> ")
        );
    }
}

#[test]
fn no_system_imports_another_they_share_the_messages_instead() {
    let graph = graph();
    let mut crossing = Vec::new();
    for system in SYSTEMS {
        for named in &graph[*system] {
            // The tenant's configuration is what its ConfigChanged carries: every system
            // reads it (design.md "Messages between the systems").
            if SYSTEMS.contains(&named.as_str()) && *named != "tenant" {
                crossing.push(format!("{system} -> {named}"));
            }
        }
    }
    assert!(
        crossing.is_empty(),
        "systems that import another system's module (its messages belong in `messages`): {crossing:?}"
    );
}

#[test]
fn the_check_finds_a_circle_and_paths_in_groups() {
    let named = named_modules(
        "use crate::{events::EventSink, tenant::Tenant};\nlet x = crate::rq::Rq::new(); crate::Error",
    );
    assert_eq!(
        named.into_iter().collect::<Vec<_>>(),
        ["events", "rq", "tenant"]
    );
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    assert_eq!(circle(&graph), None);
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        circle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        code("x // crate::rq::\n#[cfg(test)]\nmod tests {\ncrate::ors::"),
        "x "
    );
}
