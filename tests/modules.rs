//! The crate's module graph, read from the source: imports only run down the floors below
//! (`FLOORS`: a backend never imports the model, the engine or the load policy), no circle of
//! imports among the files of one folder, and every export to JavaScript (`#[wasm_bindgen]` on a
//! function, struct or impl; `extern "C"` imports of JS functions may sit where they are used) in
//! `src/wasm/`. A new top-level module must be given a floor here.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules, lowest floor first; a module imports only from floors below its own.
const FLOORS: &[&[&str]] = &[
    &["error", "budget", "timer", "holdback", "hash"],
    &["logits"],
    &["quant", "sampling"],
    &["gguf"],
    &["backend", "tokenizer", "storage"],
    &["model", "constrain", "chat", "session", "speculate"],
    &["engine"],
    &["selfcheck"],
    &["load"],
    &["preflight"],
    &["wasm", "bin"],
];

fn floor(module: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src/` (`backend/gpu/mod.rs` -> `["backend", "gpu"]`;
/// `src/bin/...` -> `["bin", ...]`).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

/// The source without comments (line comments and doc comments; strings are left as they are).
fn code(text: &str) -> String {
    text.lines().map(|l| if l.trim_start().starts_with("//") { "" } else { l }).collect::<Vec<_>>().join("\n")
}

/// Every path the code names from `prefix` (`crate::`, `super::`, `browser_llm::`), groups
/// expanded one level: `crate::a::{b, c::d}` gives `a::b` and `a::c::d`.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = code[at..].find(prefix) {
        let start = at + i;
        at = start + prefix.len();
        // Not the tail of a longer path (`foo_crate::`).
        if code[..start].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let mut segs = Vec::new();
        let mut rest = &code[at..];
        loop {
            let id = ident(rest);
            if id.is_empty() {
                break;
            }
            rest = &rest[id.len()..];
            segs.push(id);
            match rest.strip_prefix("::") {
                Some(r) => rest = r,
                None => break,
            }
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let item = item.trim();
                let first: Vec<String> = item.split("::").map(|s| ident(s.trim())).filter(|s| !s.is_empty()).collect();
                if !first.is_empty() {
                    out.push(segs.iter().cloned().chain(first).collect());
                }
            }
        } else if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

struct Crate {
    /// file (relative to src/) -> module path
    files: BTreeMap<PathBuf, Vec<String>>,
    /// module path -> file
    by_module: BTreeMap<Vec<String>, PathBuf>,
    text: BTreeMap<PathBuf, String>,
}

fn read_crate() -> Crate {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    rust_files(&src, &mut all);
    let mut c = Crate { files: BTreeMap::new(), by_module: BTreeMap::new(), text: BTreeMap::new() };
    for p in all {
        let rel = p.strip_prefix(&src).unwrap().to_path_buf();
        let m = module_path(&rel);
        c.by_module.insert(m.clone(), rel.clone());
        c.files.insert(rel.clone(), m);
        c.text.insert(rel, std::fs::read_to_string(&p).unwrap());
    }
    c
}

impl Crate {
    /// The file a path names: its longest prefix that is a module of the crate.
    fn resolve(&self, path: &[String]) -> Option<&PathBuf> {
        (1..=path.len()).rev().find_map(|n| self.by_module.get(&path[..n]))
    }

    /// (file, the module paths it names: absolute, `super::` resolved).
    fn imports(&self) -> Vec<(PathBuf, Vec<Vec<String>>)> {
        self.files
            .iter()
            .map(|(file, m)| {
                let text = code(&self.text[file]);
                let mut named = paths_after(&text, "crate::");
                named.extend(paths_after(&text, "browser_llm::"));
                let parent: Vec<String> = m[..m.len().saturating_sub(1)].to_vec();
                named.extend(paths_after(&text, "super::").into_iter().map(|p| parent.iter().cloned().chain(p).collect()));
                (file.clone(), named)
            })
            .collect()
    }
}

#[test]
fn imports_only_run_down_the_floors() {
    let c = read_crate();
    let mut wrong = Vec::new();
    for (file, named) in c.imports() {
        let own = &c.files[&file];
        let Some(own_top) = own.first() else { continue }; // lib.rs declares every module
        let own_floor = floor(own_top).unwrap_or_else(|| panic!("module `{own_top}` ({}) has no floor in FLOORS", file.display()));
        for p in named {
            let top = &p[0];
            if top == own_top || (own_top == "bin" && c.by_module.get(&p[..1]).is_none() && floor(top).is_none()) {
                continue;
            }
            match floor(top) {
                Some(f) if f < own_floor => {}
                Some(_) => wrong.push(format!("{} (floor {own_floor}) imports {} (floor {})", file.display(), p.join("::"), floor(top).unwrap())),
                None if c.by_module.contains_key(&p[..1]) => panic!("module `{top}` has no floor in FLOORS"),
                None => {}
            }
        }
    }
    assert!(wrong.is_empty(), "imports that run up a floor (or across one):\n{}", wrong.join("\n"));
}

#[test]
fn no_import_circles_within_a_folder() {
    let c = read_crate();
    // Edges between sibling files (not a folder's mod.rs, which declares its children).
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (file, named) in c.imports() {
        if file.file_name().is_some_and(|n| n == "mod.rs" || n == "lib.rs" || n == "main.rs") {
            continue;
        }
        for p in named {
            if let Some(to) = c.resolve(&p) {
                let sibling = to.parent() == file.parent() && to != &file && !to.ends_with("mod.rs");
                // Top-level files are siblings too (src/engine.rs, src/load.rs, ...); their
                // order is the floors' business.
                if sibling && file.parent() != Some(Path::new("")) {
                    edges.entry(file.clone()).or_default().insert(to.clone());
                }
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(n: &PathBuf, edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>, state: &mut BTreeMap<PathBuf, u8>, stack: &mut Vec<PathBuf>) -> Option<Vec<PathBuf>> {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let i = stack.iter().position(|x| x == m).unwrap();
                    return Some(stack[i..].to_vec());
                }
                0 => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            if let Some(circle) = visit(n, &edges, &mut state, &mut Vec::new()) {
                panic!("import circle: {}", circle.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" -> "));
            }
        }
    }
}

#[test]
fn every_export_to_javascript_is_in_src_wasm() {
    let c = read_crate();
    let mut outside = Vec::new();
    for (file, text) in &c.text {
        if file.starts_with("wasm") {
            continue;
        }
        let code = code(text);
        let lines: Vec<&str> = code.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if !l.trim_start().starts_with("#[wasm_bindgen") {
                continue;
            }
            // What the attribute is on: the next line that is not an attribute.
            let item = lines[i + 1..].iter().map(|l| l.trim()).find(|l| !l.is_empty() && !l.starts_with("#[")).unwrap_or("");
            // Inside an `extern "C"` block (an import's own attribute) or on the block itself.
            let in_extern = lines[..i].iter().rev().take_while(|l| l.trim() != "}").any(|l| l.contains("extern \"C\""));
            if !(item.starts_with("extern \"C\"") || in_extern) {
                outside.push(format!("{}:{}: {item}", file.display(), i + 1));
            }
        }
    }
    assert!(outside.is_empty(), "#[wasm_bindgen] exports outside src/wasm/:\n{}", outside.join("\n"));
}

#[test]
fn javascript_holds_no_tool_call_markup_or_hold_back_logic() {
    // Chat generation is wasm's (`beginChat`: src/chat/tools.rs, src/holdback.rs); the package's
    // JS converts shapes only.
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/js");
    for e in std::fs::read_dir(&js).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "js") {
            let text = std::fs::read_to_string(&p).unwrap();
            for markup in ["<tool_call>", "</tool_call>", "ToolCallStream", "startsWith(this"] {
                assert!(!text.contains(markup), "{} holds {markup:?}", p.display());
            }
        }
    }
}
