//! No module imports one that imports it back, directly or through others (issue #22: types at
//! the bottom, behaviour above), in every crate of the workspace.
//!
//! The graph is read from the source: each file module is a node; an edge goes from a module to
//! the module that defines what a path in it names (`use crate::plan::Plan`, `super::Target`,
//! `run::one(..)` after `use crate::run`), through re-exports (`pub use load::LoadedPlan` makes
//! `crate::plan::LoadedPlan` an edge to `plan::load`). Re-exports themselves are not edges: they
//! are a module's table of contents, not something it uses. Code under `#[cfg(test)]`,
//! comments and string literals are left out. Inline modules count as part of their file.
//! Paths into other crates are not followed (Cargo already forbids cycles between crates).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Crates whose modules may still import each other in circles: none since issue #22 (types
/// at the bottom of each crate: `deploy::types`, `lifecycle::shell`, `weights::digest`,
/// `serve::activity`). Should one have to be listed for a while, the test fails once its
/// circles are gone, so that the list only shrinks.
const STILL_CIRCULAR: &[&str] = &[];

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the circles still allowed are shown, for whoever removes them"
)]
fn no_module_imports_one_that_imports_it_back() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut report = Vec::new();
    let mut checked = 0;
    let mut names: Vec<_> = std::fs::read_dir(&crates)
        .expect("crates/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    names.sort();
    for dir in names {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut circles = Vec::new();
        for root in ["lib.rs", "main.rs"] {
            let file = dir.join("src").join(root);
            if file.is_file() {
                checked += 1;
                circles.extend(cycles(&Graph::read(&file)));
            }
        }
        let allowed = STILL_CIRCULAR.contains(&name.as_str());
        if !circles.is_empty() && !allowed {
            report.push(format!("{name}:\n  {}", circles.join("\n  ")));
        } else if circles.is_empty() && allowed {
            report.push(format!(
                "{name} has no circle any more: remove it from STILL_CIRCULAR"
            ));
        } else if !circles.is_empty() {
            eprintln!(
                "{name} (still allowed): {} circle(s)\n  {}",
                circles.len(),
                circles.join("\n  ")
            );
        }
    }
    assert!(
        checked >= 8,
        "found only {checked} crate roots under {crates:?}"
    );
    assert!(
        report.is_empty(),
        "modules that import each other:\n{}",
        report.join("\n")
    );
}

/// The checker itself: it must see a circle through a re-export and a `use super::*`, and must
/// not see one in a folder whose `mod.rs` only declares and re-exports its children.
#[test]
fn the_checker_sees_circles_and_only_circles() {
    let tmp = std::env::temp_dir().join(format!("vlmctl-cycles-{}", std::process::id()));
    let write = |path: &str, text: &str| {
        let p = tmp.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write(
        "lib.rs",
        "pub mod plan;\npub mod run;\npub mod report;\npub use plan::Plan;\n",
    );
    write(
        "plan/mod.rs",
        "//! use crate::run; (a comment)\nmod load;\npub use load::Loaded;\npub struct Plan;\n\
         #[cfg(test)]\nmod tests { use crate::run::go; }\nconst S: &str = \"crate::run::go\";\n",
    );
    write(
        "plan/load.rs",
        "use super::Plan;\npub struct Loaded(Plan);\n",
    );
    write(
        "run.rs",
        "use crate::Plan;\npub fn go(_: crate::plan::Loaded) {}\n",
    );
    write("report/mod.rs", "mod html;\npub use html::page;\n");
    write(
        "report/html.rs",
        "use super::*;\npub fn page() { crate::run::go(todo!()) }\n",
    );
    let clean = cycles(&Graph::read(&tmp.join("lib.rs")));
    assert!(clean.is_empty(), "{clean:?}");
    // The report's page is now used by the plan's loader: load -> report::html -> run -> load.
    write(
        "plan/load.rs",
        "use super::Plan;\npub struct Loaded(Plan);\nfn f() { crate::report::page() }\n",
    );
    let found = cycles(&Graph::read(&tmp.join("lib.rs")));
    let _ = std::fs::remove_dir_all(&tmp);
    assert_eq!(found.len(), 1, "{found:?}");
    for m in ["plan::load", "report::html", "run"] {
        assert!(found[0].contains(m), "{found:?}");
    }
}

/// A module: its path from the crate root (`[]` is the root).
type Module = Vec<String>;

#[derive(Default)]
struct Graph {
    /// Each module's file.
    files: BTreeMap<Module, PathBuf>,
    /// Each module's child modules.
    children: BTreeMap<Module, BTreeSet<String>>,
    /// Per module, what its `pub use`s make visible: name -> the path it stands for.
    reexports: BTreeMap<Module, BTreeMap<String, Vec<String>>>,
    /// Per module, its tokens (tests, comments and literals left out).
    tokens: BTreeMap<Module, Vec<String>>,
    /// Edges: module -> modules it uses.
    edges: BTreeMap<Module, BTreeSet<Module>>,
}

impl Graph {
    fn read(root: &Path) -> Self {
        let mut g = Self::default();
        g.discover(Vec::new(), root);
        // Re-exports first: the paths through them are resolved afterwards.
        let modules: Vec<Module> = g.files.keys().cloned().collect();
        let mut uses = BTreeMap::new();
        for m in &modules {
            let list = use_trees(&g.tokens[m]);
            for (public, leaf) in &list {
                if *public && let Some(name) = leaf.last().filter(|s| *s != "*") {
                    let name = if name == "self" && leaf.len() > 1 {
                        leaf[leaf.len() - 2].clone()
                    } else {
                        name.clone()
                    };
                    let target: Vec<String> =
                        leaf.iter().filter(|s| *s != "self").cloned().collect();
                    g.reexports
                        .entry(m.clone())
                        .or_default()
                        .insert(name, target);
                }
            }
            uses.insert(m.clone(), list);
        }
        for m in &modules {
            // Names that stand for modules here: children, what `use` brought in.
            let mut known: BTreeMap<String, Module> = g
                .children
                .get(m)
                .into_iter()
                .flatten()
                .map(|c| (c.clone(), [m.clone(), vec![c.clone()]].concat()))
                .collect();
            for (public, leaf) in &uses[m] {
                let Some(to) = g.resolve(m, leaf, &known, 0) else {
                    continue;
                };
                if !public {
                    g.edge(m, &to);
                }
                match leaf.last().map(String::as_str) {
                    Some("*") => {
                        for c in g.children.get(&to).into_iter().flatten() {
                            known.insert(c.clone(), [to.clone(), vec![c.clone()]].concat());
                        }
                    }
                    Some(last) if to.last().map(String::as_str) == Some(last) || last == "self" => {
                        known.insert(to.last().cloned().unwrap_or_default(), to.clone());
                    }
                    _ => {}
                }
            }
            for path in code_paths(&g.tokens[m], &known) {
                if let Some(to) = g.resolve(m, &path, &known, 0) {
                    g.edge(m, &to);
                }
            }
        }
        g
    }

    fn edge(&mut self, from: &Module, to: &Module) {
        if from != to {
            self.edges
                .entry(from.clone())
                .or_default()
                .insert(to.clone());
        }
    }

    /// Reads the module at `file` and, through its `mod x;` lines, every module below it.
    fn discover(&mut self, module: Module, file: &Path) {
        let Ok(text) = std::fs::read_to_string(file) else {
            return;
        };
        let tokens = strip_tests(&tokenize(&text));
        let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned());
        let dir = match stem.as_deref() {
            Some("lib" | "main" | "mod") => file.parent().map(Path::to_owned),
            _ => file.parent().zip(stem.as_deref()).map(|(p, s)| p.join(s)),
        }
        .unwrap_or_default();
        let mut kids = BTreeSet::new();
        for w in tokens.windows(3) {
            if w[0] == "mod" && w[2] == ";" && is_ident(&w[1]) {
                kids.insert(w[1].clone());
            }
        }
        self.files.insert(module.clone(), file.to_owned());
        self.tokens.insert(module.clone(), tokens);
        for k in &kids {
            let child = [module.clone(), vec![k.clone()]].concat();
            let flat = dir.join(format!("{k}.rs"));
            let nested = dir.join(k).join("mod.rs");
            self.discover(child, if flat.is_file() { &flat } else { &nested });
        }
        self.children.insert(module, kids);
    }

    /// The module that defines what `path` (as written in `from`) names, or `None` for a path
    /// into another crate.
    fn resolve(
        &self,
        from: &Module,
        path: &[String],
        known: &BTreeMap<String, Module>,
        depth: usize,
    ) -> Option<Module> {
        if depth > 16 {
            return None;
        }
        let mut rest = path.iter().peekable();
        let mut at: Module = match rest.peek().map(|s| s.as_str()) {
            Some("crate") => {
                rest.next();
                Vec::new()
            }
            Some("self") => {
                rest.next();
                from.clone()
            }
            Some("super") => {
                let mut m = from.clone();
                while rest.peek().is_some_and(|s| *s == "super") {
                    rest.next();
                    m.pop();
                }
                m
            }
            Some(first) => {
                let m = known.get(first)?.clone();
                rest.next();
                m
            }
            None => return None,
        };
        for seg in rest {
            if self.children.get(&at).is_some_and(|c| c.contains(seg)) {
                at.push(seg.clone());
            } else if let Some(target) = self.reexports.get(&at).and_then(|r| r.get(seg)) {
                let kids = self
                    .children
                    .get(&at)
                    .into_iter()
                    .flatten()
                    .map(|c| (c.clone(), [at.clone(), vec![c.clone()]].concat()))
                    .collect();
                at = self.resolve(&at, target, &kids, depth + 1)?;
            } else {
                break;
            }
        }
        Some(at)
    }
}

/// Every circle once, as `a -> b -> a` (modules joined with `::`, the root as `crate`).
fn cycles(g: &Graph) -> Vec<String> {
    // Tarjan's strongly connected components.
    struct State<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on: BTreeSet<&'a Module>,
        out: Vec<Vec<&'a Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.g.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.files.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    let show = |m: &Module| {
        if m.is_empty() {
            "crate".to_owned()
        } else {
            m.join("::")
        }
    };
    s.out
        .iter()
        .map(|comp| {
            // One concrete circle through the component's first module (breadth first).
            let set: BTreeSet<&Module> = comp.iter().copied().collect();
            let start = *comp.iter().min().expect("non-empty");
            let mut prev: BTreeMap<&Module, &Module> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            let mut end = None;
            while let Some(v) = queue.pop_front() {
                for w in g.edges.get(v).into_iter().flatten() {
                    if !set.contains(w) {
                        continue;
                    }
                    if w == start {
                        end = Some(v);
                        queue.clear();
                        break;
                    }
                    if !prev.contains_key(w) {
                        prev.insert(w, v);
                        queue.push_back(w);
                    }
                }
            }
            let mut back = Vec::new();
            let mut v = end.unwrap_or(start);
            while v != start {
                back.push(v);
                v = prev[v];
            }
            back.reverse();
            let ring: Vec<String> = std::iter::once(start)
                .chain(back)
                .chain(std::iter::once(start))
                .map(show)
                .collect();
            let all: Vec<String> = comp.iter().map(|m| show(m)).collect();
            format!("{} (circle among: {})", ring.join(" -> "), all.join(", "))
        })
        .collect()
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Rust source as tokens: identifiers, `::`, and single punctuation characters; comments,
/// string, char and number literals left out (a literal becomes `""`).
fn tokenize(text: &str) -> Vec<String> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            i = block_comment_end(&c, i);
        } else if let Some(end) = raw_string_end(&c, i) {
            out.push("\"\"".to_owned());
            i = end;
        } else if ch == '"' || (ch == 'b' && at(i + 1) == '"') || (ch == 'c' && at(i + 1) == '"') {
            let mut j = if ch == '"' { i + 1 } else { i + 2 };
            while j < c.len() && c[j] != '"' {
                if c[j] == '\\' {
                    j += 1;
                }
                j += 1;
            }
            out.push("\"\"".to_owned());
            i = j + 1;
        } else if ch == '\'' || (ch == 'b' && at(i + 1) == '\'') {
            let j = if ch == '\'' { i + 1 } else { i + 2 };
            if at(j) == '\\' {
                // An escaped char literal: to its closing quote.
                let mut k = j + 2;
                while k < c.len() && c[k] != '\'' {
                    k += 1;
                }
                out.push("\"\"".to_owned());
                i = k + 1;
            } else if at(j + 1) == '\'' {
                out.push("\"\"".to_owned());
                i = j + 2;
            } else {
                // A lifetime or a label.
                out.push("'".to_owned());
                i += 1;
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let mut j = i;
            while j < c.len() && (c[j].is_alphanumeric() || c[j] == '_') {
                j += 1;
            }
            let word: String = c[i..j].iter().collect();
            // `r#type` is the identifier `type`.
            out.push(word.trim_start_matches("r#").to_owned());
            i = j;
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.') {
                if c[i] == '.' && !at(i + 1).is_ascii_digit() {
                    break;
                }
                i += 1;
            }
            out.push("0".to_owned());
        } else if ch == ':' && at(i + 1) == ':' {
            out.push("::".to_owned());
            i += 2;
        } else {
            out.push(ch.to_string());
            i += 1;
        }
    }
    out
}

/// Where the block comment at `i` (`/*`, nested) ends.
fn block_comment_end(c: &[char], mut i: usize) -> usize {
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut depth = 0;
    while i < c.len() {
        if c[i] == '/' && at(i + 1) == '*' {
            depth += 1;
            i += 2;
        } else if c[i] == '*' && at(i + 1) == '/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                break;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// Where the raw string at `i` (`r"..."`, `r#"..."#`, `br#"..."#`) ends; `None` when there is
/// none at `i`.
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut j = match (at(i), at(i + 1)) {
        ('r', _) => i + 1,
        ('b', 'r') => i + 2,
        _ => return None,
    };
    let open = j;
    while at(j) == '#' {
        j += 1;
    }
    let hashes = j - open;
    if at(j) != '"' || (i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_')) {
        return None;
    }
    j += 1;
    while j < c.len() {
        if c[j] == '"' && (1..=hashes).all(|h| at(j + h) == '#') {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(j)
}

/// The tokens without the items under `#[cfg(test)]` (to the end of their `{}` or their `;`).
fn strip_tests(t: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    let is = |i: usize, s: &str| t.get(i).is_some_and(|x| x == s);
    while i < t.len() {
        let cfg_test = is(i, "#")
            && is(i + 1, "[")
            && is(i + 2, "cfg")
            && is(i + 3, "(")
            && is(i + 4, "test")
            && is(i + 5, ")")
            && is(i + 6, "]");
        if !cfg_test {
            out.push(t[i].clone());
            i += 1;
            continue;
        }
        i += 7;
        let mut depth = 0usize;
        while i < t.len() {
            match t[i].as_str() {
                "{" | "(" | "[" => depth += 1,
                "}" | ")" | "]" => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 && t[i] == "}" {
                        i += 1;
                        break;
                    }
                }
                ";" if depth == 0 => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
    }
    out
}

/// Each `use` declaration's leaves, with whether it is a re-export (`pub use`, `pub(crate)
/// use`): `use a::{b, c::*}` gives `[a, b]` and `[a, c, *]`; an alias is left out.
fn use_trees(t: &[String]) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    for i in 0..t.len() {
        if t[i] != "use" || (i > 0 && (t[i - 1] == "::" || t[i - 1] == ".")) {
            continue;
        }
        let public = i > 0
            && (t[i - 1] == "pub"
                || (t[i - 1] == ")" && (1..i).rev().take(5).any(|j| t[j] == "pub")));
        let end = (i..t.len()).find(|&j| t[j] == ";").unwrap_or(t.len());
        let mut pos = i + 1;
        tree(&t[..end], &mut pos, &[], &mut |leaf| {
            out.push((public, leaf));
        });
    }
    out
}

/// Parses one use tree at `pos` under `prefix`.
fn tree(t: &[String], pos: &mut usize, prefix: &[String], leaf: &mut dyn FnMut(Vec<String>)) {
    let mut path = prefix.to_vec();
    if t.get(*pos).is_some_and(|s| s == "::") {
        *pos += 1;
    }
    while let Some(s) = t.get(*pos) {
        match s.as_str() {
            "{" => {
                *pos += 1;
                loop {
                    tree(t, pos, &path, leaf);
                    match t.get(*pos).map(String::as_str) {
                        Some(",") => {
                            *pos += 1;
                            if t.get(*pos).is_some_and(|s| s == "}") {
                                *pos += 1;
                                return;
                            }
                        }
                        Some("}") => {
                            *pos += 1;
                            return;
                        }
                        _ => return,
                    }
                }
            }
            "::" => *pos += 1,
            "as" => {
                *pos += 2;
                break;
            }
            "*" => {
                path.push("*".to_owned());
                *pos += 1;
                break;
            }
            "," | "}" => break,
            word if is_ident(word) => {
                path.push(word.to_owned());
                *pos += 1;
            }
            _ => {
                *pos += 1;
            }
        }
    }
    if path.len() > prefix.len() {
        leaf(path);
    }
}

/// The paths in code outside `use` declarations that start in this crate: `crate::..`,
/// `super::..`, `self::..`, or a module name known here followed by `::`.
fn code_paths(t: &[String], known: &BTreeMap<String, Module>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if t[i] == "use" {
            while i < t.len() && t[i] != ";" {
                i += 1;
            }
            continue;
        }
        let starts =
            matches!(t[i].as_str(), "crate" | "super" | "self") || known.contains_key(&t[i]);
        let after_path = i > 0 && (t[i - 1] == "::" || t[i - 1] == ".");
        if starts && !after_path && t.get(i + 1).is_some_and(|s| s == "::") {
            let mut path = vec![t[i].clone()];
            let mut j = i + 1;
            while t.get(j).is_some_and(|s| s == "::") && t.get(j + 1).is_some_and(|s| is_ident(s)) {
                path.push(t[j + 1].clone());
                j += 2;
            }
            out.push(path);
            i = j;
        } else {
            i += 1;
        }
    }
    out
}
