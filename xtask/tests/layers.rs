//! Dependencies point one way. Every `crate::` (and `super::`) path in `shadow-daemon/src`
//! names a top-level module of an earlier layer than the file's own (or the file's own module),
//! so no stage imports a later stage or a sink and there is no import cycle between modules;
//! `shadow-core` stays sans-IO (no aya, tokio or hyper).
//!
//! A plain text scan: comments and string literals are skipped, `use` groups
//! (`crate::{a, b::c}`) are expanded. Adding a top-level module means placing it in [`LAYERS`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The daemon's top-level modules, lowest layer first. A module may import only from earlier
/// layers (and `shadow_core`); modules of one layer do not import each other.
const LAYERS: &[&[&str]] = &[
    // Plumbing every part may use (`security`: permission checks and the admin token).
    // (`privileges`: dropping every capability once the tap is attached).
    // (`logging`: the log format, rate-limited repeated warnings).
    &[
        "allocator",
        "shutdown",
        "error",
        "security",
        "privileges",
        "logging",
    ],
    // The live capture backends (config names one of them: `CaptureKind`); beside them, the
    // service manager's view (systemd notify, watchdog heartbeat).
    &["capture", "service"],
    // The configuration, and the events stages report (implemented by `sinks::metrics`).
    &["config", "telemetry"],
    // The stages: live front end, admission (filter, sample, breaker, rate, queue), replay;
    // beside them, the resource monitor of the model servers and shadowd.
    &["exchange_source", "admission", "replay", "resources"],
    // The runtime joining admission → replay → compare and handing results to the sinks.
    &["mirror"],
    // Acting on verdicts: the rollback executor (command, webhook), called by the decision loop.
    &["rollback"],
    // Where results go: metrics (implements telemetry), admin server, discrepancy log.
    &["sinks"],
    // The decision loop: measurements → criteria → verdict (published through the sinks).
    &["decision"],
    // The subcommands wiring stages and sinks together.
    &["commands"],
    // The command line, dispatching to the subcommands.
    &["cli"],
];

/// Dependencies `shadow-core` must never have: it is the sans-IO core.
const FORBIDDEN_IN_CORE: &[&str] = &["aya", "tokio", "hyper"];

fn workspace_path(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join(path)
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The module path of a source file relative to `src`: `capture/ebpf.rs` → `[capture, ebpf]`,
/// `capture/mod.rs` → `[capture]`, `lib.rs` → `[]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap();
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// `source` with comments and the contents of string and char literals blanked out.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && matches!(next, Some('"' | '#')) && !ident_char_before(&chars, i) {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): only literals are skipped.
            let literal_end = if next == Some('\\') {
                (i + 2..chars.len()).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match literal_end {
                Some(end) => {
                    out.push_str("' '");
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The first segments of the paths following a `::` at `rest`: `a::b` → `[a]`,
/// `{a, b::c, d::{e}}` → `[a, b, d]`.
fn first_segments(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 1;
        let mut items = Vec::new();
        let mut current = String::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => {
                    items.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            }
            if depth >= 1 {
                current.push(c);
            }
        }
        items.push(current);
        items
            .iter()
            .flat_map(|item| first_segments(item))
            .filter(|s| s != "self")
            .collect()
    } else {
        let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
        if name.is_empty() {
            Vec::new()
        } else {
            vec![name]
        }
    }
}

/// The top-level modules a file at module path `own` references through `crate::` and
/// `super::` paths.
fn referenced_modules(code: &str, own: &[String]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    for (at, _) in code.match_indices("crate::") {
        if at > 0 && is_ident(bytes[at - 1] as char) {
            continue; // e.g. `shadow_crate::`
        }
        found.extend(first_segments(&code[at + "crate::".len()..]));
    }
    // `super::` from a file resolves against the file's module path; a chain reaching the
    // crate root names a top-level module.
    let mut search = 0;
    while let Some(found_at) = code[search..].find("super::") {
        let at = search + found_at;
        search = at + 1;
        if at > 0 && (is_ident(bytes[at - 1] as char) || code[..at].ends_with("::")) {
            continue; // the second `super` of a chain, or part of a longer identifier
        }
        let mut rest = &code[at..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        if ups == own.len() {
            found.extend(first_segments(rest));
        } else if ups < own.len() {
            found.insert(own[0].clone());
        }
    }
    found
}

/// Top-level module → the top-level modules its files reference (itself excluded).
fn daemon_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = workspace_path("shadow-daemon/src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let top_level: BTreeSet<String> = code_only(&lib)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .chain(
            code_only(&lib)
                .lines()
                .filter_map(|l| l.trim().strip_prefix("mod ")),
        )
        .map(|m| m.trim_end_matches(';').trim().to_string())
        .collect();
    assert!(
        top_level.len() >= 10,
        "lib.rs changed shape; found only {top_level:?}"
    );
    for module in &top_level {
        assert!(
            layer_of(module).is_some(),
            "module `{module}` (lib.rs) has no place in LAYERS: add it to the layer it belongs to"
        );
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = top_level
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).unwrap();
        // The binary is its own crate: its `crate::` is not the library's.
        if relative == Path::new("main.rs") || relative == Path::new("lib.rs") {
            continue;
        }
        let own = module_path(relative);
        let module = &own[0];
        assert!(
            top_level.contains(module),
            "{} belongs to no module declared in lib.rs",
            relative.display()
        );
        let code = code_only(&std::fs::read_to_string(&file).unwrap());
        for target in referenced_modules(&code, &own) {
            if top_level.contains(&target) && &target != module {
                graph.get_mut(module).unwrap().insert(target);
            }
        }
    }
    graph
}

/// One cycle of `graph`, if any (as the modules along it).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

fn describe(graph: &BTreeMap<String, BTreeSet<String>>) -> String {
    graph
        .iter()
        .map(|(m, deps)| format!("  {m} -> {deps:?}\n"))
        .collect()
}

#[test]
fn daemon_modules_have_no_import_cycle() {
    let graph = daemon_graph();
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle: {}\nthe graph:\n{}",
            cycle.join(" -> "),
            describe(&graph)
        );
    }
}

#[test]
fn daemon_modules_import_only_earlier_layers() {
    let graph = daemon_graph();
    let mut wrong = Vec::new();
    for (module, deps) in &graph {
        let own = layer_of(module).unwrap();
        for dep in deps {
            if layer_of(dep).unwrap() >= own {
                wrong.push(format!("{module} -> {dep}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layer order (a module may use only earlier layers):\n  {}\nthe graph:\n{}",
        wrong.join("\n  "),
        describe(&graph)
    );
}

#[test]
fn shadow_core_has_no_io_runtime_dependency() {
    let manifest = std::fs::read_to_string(workspace_path("shadow-core/Cargo.toml")).unwrap();
    let mut section = String::new();
    let mut deps = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[') {
            section = header.trim_end_matches(']').to_string();
        } else if section.ends_with("dependencies")
            && let Some((name, _)) = line.split_once('=')
        {
            deps.push(name.trim().trim_matches('"').to_string());
        }
    }
    assert!(
        deps.iter().any(|d| d == "shadow-common"),
        "Cargo.toml changed shape; dependencies found: {deps:?}"
    );
    for dep in &deps {
        assert!(
            !FORBIDDEN_IN_CORE.iter().any(|f| dep.starts_with(f)),
            "shadow-core depends on `{dep}`: it must stay sans-IO (no {FORBIDDEN_IN_CORE:?})"
        );
    }
}

// ---- the scanner itself ----

#[test]
fn scanner_reads_groups_super_and_skips_comments_and_strings() {
    let code = code_only(
        "use crate::{config::Config, sinks::{admin, metrics}, self};\n\
         // use crate::cli;\n\
         /* crate::commands */\n\
         let s = \"crate::mirror\"; let r = r#\"crate::replay\"#; let c = '\"';\n\
         fn f<'a>(x: &'a crate::capture::Segment) {}\n\
         use super::super::shutdown::Shutdown;\n\
         use super::filter;\n",
    );
    let own = vec!["admission".to_string(), "filter".to_string()];
    let found = referenced_modules(&code, &own);
    let want: BTreeSet<String> = ["config", "sinks", "capture", "shutdown", "admission"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, want);
}

#[test]
fn cycle_finder_finds_a_cycle() {
    let edge = |a: &str, b: &[&str]| {
        (
            a.to_string(),
            b.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        )
    };
    let graph: BTreeMap<_, _> = [edge("a", &["b"]), edge("b", &["c"]), edge("c", &["a"])]
        .into_iter()
        .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let acyclic: BTreeMap<_, _> = [edge("a", &["b", "c"]), edge("b", &["c"]), edge("c", &[])]
        .into_iter()
        .collect();
    assert_eq!(find_cycle(&acyclic), None);
}
