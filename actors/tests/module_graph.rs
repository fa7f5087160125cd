//! The actors crate's modules import each other in one direction only: no import circle among
//! them, and no module imports a module of a higher layer (issue 13).
//!
//! The graph is read from the sources: every path that starts with `crate::`, `super::` or
//! `self::` — in `use` trees, in code and types, and in macro invocations — is resolved to the
//! deepest module it names. Nodes are files (`engine/payment.rs` is `engine::payment`); an
//! inline `mod` belongs to its file. A module using its own descendants is structure, not a
//! dependency (a facade calling its parts), so only those edges are left out; a child using its
//! parent, siblings using each other and anything across top-level modules count.
//!
//! Layers, lowest first: a top-level module may use only modules of lower layers (within itself,
//! only the circle check applies). A new top-level module must be given a layer here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Top-level modules of `actors/src` and their layer: lower layers never import higher ones.
const LAYERS: &[(&str, u32)] = &[
    ("fault", 0),
    ("secret", 0),
    ("domain", 1),
    ("crypto", 2),
    ("acquirer", 2),
    ("reply", 2),
    ("vault", 3),
    ("error", 4),
    ("settings", 4),
    ("decide", 4),
    ("pipeline", 5),
    ("customer", 6),
    ("engine", 7),
];

type Module = Vec<String>;

fn show(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// One source file: its module path and its text.
struct SourceFile {
    module: Module,
    text: String,
}

fn read_tree(src: &Path) -> Vec<SourceFile> {
    fn walk(dir: &Path, src: &Path, out: &mut Vec<SourceFile>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read src dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, src, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(src)
                    .expect("under src")
                    .with_extension("");
                let mut module: Module = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if module == ["lib"] || module == ["main"] {
                    module.clear();
                }
                if module.last().is_some_and(|l| l == "mod") {
                    module.pop();
                }
                out.push(SourceFile {
                    module,
                    text: std::fs::read_to_string(&path).expect("read source"),
                });
            }
        }
    }
    let mut out = Vec::new();
    walk(src, src, &mut out);
    out
}

/// Every `crate::`/`super::`/`self::` path of one file, as segments (the keyword first), with
/// the depth of inline modules (`mod tests { … }`) it was found in.
#[derive(Default)]
struct Paths {
    found: Vec<(usize, Vec<String>)>,
    inline_depth: usize,
}

impl Paths {
    fn push(&mut self, path: Vec<String>) {
        self.found.push((self.inline_depth, path));
    }

    fn use_tree(&mut self, prefix: &[String], tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                let mut next = prefix.to_vec();
                next.push(p.ident.to_string());
                self.use_tree(&next, &p.tree);
            }
            syn::UseTree::Name(n) => {
                let mut path = prefix.to_vec();
                path.push(n.ident.to_string());
                self.push(path);
            }
            syn::UseTree::Rename(r) => {
                let mut path = prefix.to_vec();
                path.push(r.ident.to_string());
                self.push(path);
            }
            syn::UseTree::Glob(_) => self.push(prefix.to_vec()),
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    self.use_tree(prefix, item);
                }
            }
        }
    }

    /// `crate :: a :: b` sequences inside a macro's tokens (`$crate` is written `crate` there).
    fn tokens(&mut self, tokens: TokenStream) {
        let flat: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < flat.len() {
            match &flat[i] {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(id) if ["crate", "super", "self"].contains(&&*id.to_string()) => {
                    let mut path = vec![id.to_string()];
                    let mut j = i + 1;
                    loop {
                        let colons = matches!(
                            (flat.get(j), flat.get(j + 1)),
                            (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                                if a.as_char() == ':' && b.as_char() == ':'
                        );
                        match (colons, flat.get(j + 2)) {
                            (true, Some(TokenTree::Ident(next))) => {
                                path.push(next.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    if path.len() > 1 {
                        self.push(path);
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&[], &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1 && ["crate", "super", "self"].contains(&segments[0].as_str()) {
            self.push(segments);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.inline_depth += 1;
        syn::visit::visit_item_mod(self, item);
        self.inline_depth -= 1;
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        self.tokens(mac.tokens.clone());
    }
}

/// The modules a file's paths name. Inline modules (`mod tests { … }`) count as their file: their
/// `super::` is the file's module, which is what `use super::*` in a test module means.
fn edges_of(file: &SourceFile, modules: &BTreeSet<Module>) -> Result<BTreeSet<Module>, String> {
    let ast = syn::parse_file(&file.text).map_err(|e| format!("{}: {e}", show(&file.module)))?;
    let mut paths = Paths::default();
    paths.visit_file(&ast);
    let mut targets = BTreeSet::new();
    for (inline_depth, path) in paths.found {
        // `self` and the first `super`s of an inline module stay in the file's module.
        let (mut base, rest): (Module, &[String]) = match path[0].as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (file.module.clone(), &path[1..]),
            _ => {
                let supers = path.iter().take_while(|s| *s == "super").count();
                let mut base = file.module.clone();
                for _ in 0..supers.saturating_sub(inline_depth) {
                    base.pop();
                }
                (base, &path[supers..])
            }
        };
        for segment in rest {
            let mut next = base.clone();
            next.push(segment.clone());
            if modules.contains(&next) {
                base = next;
            } else {
                break;
            }
        }
        let own_part = base.len() >= file.module.len() && base[..file.module.len()] == file.module;
        if !own_part {
            targets.insert(base);
        }
    }
    Ok(targets)
}

/// The import graph of a source tree: module → modules it uses (its own descendants left out).
fn graph(files: &[SourceFile]) -> Result<BTreeMap<Module, BTreeSet<Module>>, String> {
    let modules: BTreeSet<Module> = files.iter().map(|f| f.module.clone()).collect();
    files
        .iter()
        .map(|f| Ok((f.module.clone(), edges_of(f, &modules)?)))
        .collect()
}

/// A circle in the graph, as `a -> b -> a`, if there is one.
fn find_cycle(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        marks: &mut BTreeMap<Module, Mark>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = stack.iter().position(|m| m == node).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(node.clone());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut marks, &mut Vec::new()))
}

/// Every edge from a top-level module to another of the same or a higher layer, and every
/// top-level module without a layer.
fn layer_violations(
    graph: &BTreeMap<Module, BTreeSet<Module>>,
    layers: &[(&str, u32)],
) -> Vec<String> {
    let layer = |m: &Module| {
        m.first()
            .and_then(|top| layers.iter().find(|(name, _)| name == top))
            .map(|(_, l)| *l)
    };
    let mut problems = Vec::new();
    for (from, targets) in graph {
        let Some(top) = from.first() else { continue };
        let Some(from_layer) = layer(from) else {
            problems.push(format!("module `{top}` has no layer in LAYERS"));
            continue;
        };
        for to in targets {
            if to.is_empty() || to.first() == from.first() {
                continue;
            }
            match layer(to) {
                Some(to_layer) if to_layer < from_layer => {}
                _ => problems.push(format!(
                    "`{}` (layer {from_layer}) imports `{}` (layer {:?})",
                    show(from),
                    show(to),
                    layer(to)
                )),
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

fn check(files: &[SourceFile], layers: &[(&str, u32)]) -> Result<(), String> {
    let graph = graph(files)?;
    if let Some(cycle) = find_cycle(&graph) {
        let shown: Vec<String> = cycle.iter().map(|m| show(m)).collect();
        return Err(format!("import circle: {}", shown.join(" -> ")));
    }
    let problems = layer_violations(&graph, layers);
    if !problems.is_empty() {
        return Err(format!("layering: {}", problems.join("; ")));
    }
    Ok(())
}

#[test]
fn the_actors_crate_has_no_import_circle_and_no_upward_import() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_tree(&src);
    assert!(files.len() > 20, "read the crate's sources");
    if let Err(problem) = check(&files, LAYERS) {
        panic!("{problem}");
    }
}

// ---- the checker itself, on small made-up crates ------------------------------------------------

fn tree(files: &[(&str, &str)]) -> Vec<SourceFile> {
    files
        .iter()
        .map(|(module, text)| SourceFile {
            module: if module.is_empty() {
                Vec::new()
            } else {
                module.split("::").map(String::from).collect()
            },
            text: (*text).to_string(),
        })
        .collect()
}

const TOY_LAYERS: &[(&str, u32)] = &[("low", 0), ("high", 1)];

#[test]
fn the_checker_finds_a_deliberately_introduced_circle() {
    let acyclic = [
        ("", "pub mod low; pub mod high;"),
        ("low", "pub struct Thing;"),
        ("high", "use crate::low::Thing; pub fn f(_: Thing) {}"),
    ];
    assert_eq!(check(&tree(&acyclic), TOY_LAYERS), Ok(()));
    // The circle: `low` now uses `high` back, inside a function body.
    let cyclic = [
        ("", "pub mod low; pub mod high;"),
        (
            "low",
            "pub struct Thing; pub fn g() { crate::high::f(Thing) }",
        ),
        ("high", "use crate::low::Thing; pub fn f(_: Thing) {}"),
    ];
    let err = check(&tree(&cyclic), TOY_LAYERS).expect_err("a circle");
    assert!(err.contains("import circle"), "{err}");
    assert!(
        err.contains("high -> low -> high") || err.contains("low -> high -> low"),
        "{err}"
    );
}

#[test]
fn the_checker_sees_circles_through_children_use_groups_and_macros() {
    // engine -> customer (a use group) and customer -> engine::payment (inside a macro): a
    // circle through the child, even though engine may use its own child freely.
    let files = [
        ("", "pub mod customer; pub mod engine;"),
        ("customer", "pub struct Actor; pub fn run() { tracing::info!(\"{}\", crate::engine::payment::X); }"),
        ("engine", "pub mod payment; use crate::{customer::{Actor}, engine::payment::X}; pub fn go(_: Actor) {}"),
        ("engine::payment", "pub const X: u8 = 1; use super::go;"),
    ];
    let layers = [("customer", 0), ("engine", 1)];
    let err = check(&tree(&files), &layers).expect_err("a circle");
    assert!(
        err.contains("customer -> engine::payment -> engine -> customer"),
        "{err}"
    );
    // The parent using its child, and the child its parent, is no circle.
    let files = [
        ("", "pub mod engine;"),
        (
            "engine",
            "pub mod payment; pub struct Deps; pub fn go() { payment::pay() }",
        ),
        (
            "engine::payment",
            "use super::Deps; pub fn pay() { let _ = Deps; }",
        ),
    ];
    assert_eq!(check(&tree(&files), &[("engine", 0)]), Ok(()));
}

#[test]
fn the_checker_refuses_an_upward_import_and_an_unlayered_module() {
    let upward = [
        ("", "pub mod low; pub mod high;"),
        ("low", "use super::high::Reply; pub fn f(_: Reply) {}"),
        ("high", "pub struct Reply;"),
    ];
    let err = check(&tree(&upward), TOY_LAYERS).expect_err("upward");
    assert!(err.contains("`low` (layer 0) imports `high`"), "{err}");
    let unlayered = [("", "pub mod extra;"), ("extra", "pub struct X;")];
    let err = check(&tree(&unlayered), TOY_LAYERS).expect_err("no layer");
    assert!(err.contains("`extra` has no layer"), "{err}");
}
