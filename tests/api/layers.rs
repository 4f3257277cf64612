//! The house's one rule, checked: imports only go down (docs/architecture.md). Every file under
//! `src/` has a layer, found from its path; a file that names a module of a higher layer —
//! by `use crate::…`, an inline `crate::…` path or `super::…` — fails this test, with the
//! file, the module and both layers named. The HTTP error type and `AppState` live in `http/`,
//! so a domain file naming either fails here too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, bottom first. A file belongs to the first rule whose prefix its module path
/// starts with (`pledges::http` before `pledges`); within the domains each has a rank of its
/// own, so two domains never import each other both ways.
const LAYERS: &[(&str, u32)] = &[
    // The top: builds the app, gathers the router, parses the settings of every layer.
    ("app", 90),
    ("background", 90),
    ("config", 90),
    ("db::errors", 10),
    ("db", 90),
    ("", 90), // lib.rs
    // The clock's jobs, run by `background` beside the router: a tick moves rounds; the retention
    // purge is SQL over several tables, with the domains.
    ("jobs::retention", 56),
    ("jobs", 65),
    // The HTTP layer: its parts, every domain's handlers, the sandbox's test controls.
    ("http", 80),
    ("books::http", 80),
    ("sandbox", 80),
    ("projects::http", 80),
    ("investors::http", 80),
    ("offers::http", 80),
    ("pledges::http", 80),
    ("pledges::http::batcher", 80),
    ("sponsors::http", 80),
    ("cheques::http", 80),
    ("console", 80),
    ("matchfunding::http", 80),
    ("webhooks::http", 80),
    ("ledger::http", 80),
    ("payments::http", 80),
    // The providers' events, applied to rounds and deposits.
    ("webhooks::inbound", 70),
    // A round's money moves.
    ("rounds", 60),
    ("matchfunding", 57),
    // The domains, in the order they may call each other (higher calls lower).
    ("pledges", 56),
    ("offers", 55),
    ("cheques", 54),
    ("sponsors", 53),
    ("investors", 52),
    ("projects", 51),
    ("payments", 50),
    ("webhooks", 45),
    // The books the domains keep, the ledger, and the small types everybody uses.
    ("books", 30),
    ("ledger", 20),
    ("outbox", 10),
    ("batch", 10),
    ("money", 10),
    ("paging", 10),
    ("fields", 10),
    ("clock", 10),
    ("keys", 10),
    ("audit", 10),
];

fn layer(module: &str) -> u32 {
    LAYERS
        .iter()
        .filter(|(prefix, _)| {
            module == *prefix || prefix.is_empty() && module.is_empty() || module.starts_with(&format!("{prefix}::"))
        })
        .map(|(_, rank)| *rank)
        .next()
        .unwrap_or_else(|| panic!("no layer for module `{module}`: add it to LAYERS in {}", file!()))
}

/// `src/pledges/http.rs` → `pledges::http`; `src/pledges/mod.rs` → `pledges`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its unit tests (which may reach anywhere).
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands the tree of a `use` (`a::{b, c::{d, e}}`) into its paths.
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let mut depth = 0;
    let mut item = String::new();
    let mut items = Vec::new();
    for c in tree.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if c == ',' && depth == 0 {
            items.push(std::mem::take(&mut item));
        } else {
            item.push(c);
        }
    }
    items.push(item);
    for item in items {
        let item: String = item.split_whitespace().collect::<Vec<_>>().join(" ");
        let item = item.split(" as ").next().unwrap_or_default().trim();
        if item.is_empty() {
            continue;
        }
        if let Some(open) = item.find('{') {
            let head: Vec<String> = item[..open]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            let inner = &item[open + 1..item.rfind('}').unwrap()];
            expand(&[prefix, &head[..]].concat(), inner, out);
        } else {
            let path = item
                .split("::")
                .filter(|s| !s.is_empty() && *s != "self" && *s != "*")
                .map(String::from);
            out.push(prefix.iter().cloned().chain(path).collect());
        }
    }
}

/// Every module path a file names below `crate::` (or `super::`, resolved from `module`).
fn references(module: &str, code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use crate::") {
        let after = &rest[i + "use crate::".len()..];
        let end = after.find(';').unwrap_or(after.len());
        expand(&[], after[..end].trim(), &mut out);
        rest = &after[end..];
    }
    // `super` of `a::b` is `a` (whether in a/b.rs or a/b/mod.rs); of `a`, the crate.
    let mut parent: Vec<String> = module.split("::").filter(|s| !s.is_empty()).map(String::from).collect();
    parent.pop();
    for (needle, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut rest = code;
        while let Some(i) = rest.find(needle) {
            let before = rest[..i].chars().last();
            let after = &rest[i + needle.len()..];
            let path: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            // `use crate::…` lines were read above, tree and all.
            let in_use = rest[..i].ends_with("use ");
            if before.is_none_or(|c| !c.is_alphanumeric() && c != '_') && !path.is_empty() && !in_use {
                let segments = path.split("::").filter(|s| !s.is_empty()).map(String::from);
                out.push(base.iter().cloned().chain(segments).collect());
            }
            rest = after;
        }
    }
    out
}

#[test]
fn imports_only_go_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // The binary is the CLI over the library: above everything, and not a module of it.
    files.retain(|f| f != &src.join("main.rs") && !f.starts_with(src.join("bin")));
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut upward = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let mut named = BTreeSet::new();
        for path in references(&module, &code(&text)) {
            // The longest prefix of the path that is a module of the crate.
            let target = (1..=path.len())
                .map(|n| path[..n].join("::"))
                .rfind(|m| modules.contains(m));
            if let Some(target) = target
                && target != module
                && !module.starts_with(&format!("{target}::"))
            {
                named.insert(target);
            }
        }
        for target in named {
            if layer(&target) > layer(&module) {
                upward.push(format!(
                    "{} (layer {}) imports {target} (layer {})",
                    file.strip_prefix(&src).unwrap().display(),
                    layer(&module),
                    layer(&target)
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that go up (docs/architecture.md):\n  {}",
        upward.join("\n  ")
    );
}

#[test]
fn the_check_sees_an_upward_import() {
    let refs = references(
        "pledges::rules",
        &code(
            "use crate::http::error::ApiError;\nuse crate::{money::Money, rounds::{self, ending}};\n// crate::app\nfn f() { super::store::get(); }",
        ),
    );
    let joined: Vec<String> = refs.iter().map(|r| r.join("::")).collect();
    assert_eq!(
        joined,
        [
            "http::error::ApiError",
            "money::Money",
            "rounds",
            "rounds::ending",
            "pledges::store::get"
        ]
    );
    assert!(layer("http::error") > layer("pledges::rules"));
    assert!(layer("rounds::ending") > layer("pledges"));
    assert!(layer("pledges::http") > layer("rounds"));
}
