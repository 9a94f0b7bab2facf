//! Which packages a program needs: its imports, found with a real Python parser, minus the standard library and
//! the program's own modules, mapped to PyPI distributions.
//!
//! The original scanned for `import` with regular expressions: it missed `import os; import numpy` and imports
//! inside functions, and installed local modules and some standard-library names. Here the code is parsed with
//! tree-sitter's Python grammar (error-tolerant, so a syntax error elsewhere does not hide the imports), every
//! `import` and `from ... import` anywhere in the tree counts, relative imports never do, and the interpreter's own
//! `sys.stdlib_module_names` decides what is standard. An import inside a `try` that handles `ImportError` is
//! *optional* ([`imports`]): the program runs without it, so a backend skips it when the package index lacks it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::LazyLock;

/// The import-name → distribution table, as data.
const IMPORT_MAP: &str = include_str!("../data/import_map.tsv");

static MAP: LazyLock<HashMap<&'static str, &'static str>> = LazyLock::new(|| {
    IMPORT_MAP
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once('\t'))
        .map(|(module, dist)| (module.trim(), dist.trim()))
        .collect()
});

/// The distributions the import-name table maps to (the packages programs use most), for the built-in
/// auto-install allow-list.
pub fn mapped_distributions() -> BTreeSet<&'static str> {
    MAP.values().copied().collect()
}

/// Number of entries in the import-name table.
pub fn import_map_len() -> usize {
    MAP.len()
}

/// Every module a source file imports (dotted, as written), excluding relative imports and `__future__`.
pub fn imported_modules(source: &str) -> BTreeSet<String> {
    imports(source).into_keys().collect()
}

/// Exception names whose handler makes the imports of its `try` body optional: the program handles their absence.
/// `Exception` and `BaseException` (and a bare `except:`) catch `ImportError` too.
const IMPORT_GUARDS: [&str; 4] = ["ImportError", "ModuleNotFoundError", "Exception", "BaseException"];

/// Every module a source file imports, as [`imported_modules`], each with whether it is *optional*: every import of
/// it sits in the body of a `try` whose handlers catch `ImportError` (or `ModuleNotFoundError`, a tuple holding
/// either, `Exception`, `BaseException`, a bare `except:`), in the same function. An import in a function defined
/// inside such a `try` is not guarded by it: the function runs later, outside the `try`.
pub fn imports(source: &str) -> BTreeMap<String, bool> {
    let mut found: BTreeMap<String, bool> = BTreeMap::new();
    let mut parser = tree_sitter::Parser::new();
    if parser.set_language(&tree_sitter_python::LANGUAGE.into()).is_err() {
        return found;
    }
    let Some(tree) = parser.parse(source, None) else { return found };
    let bytes = source.as_bytes();
    let text = |n: tree_sitter::Node<'_>| n.utf8_text(bytes).ok().map(|t| t.split_whitespace().collect::<String>());
    let mut add = |module: String, guarded: bool| {
        let optional = found.entry(module).or_insert(true);
        *optional &= guarded;
    };
    // Iterative walk: deeply nested code must not exhaust the stack. `stack` holds the current node and its
    // ancestors, each with whether code there runs inside a `try` body that handles a failed import.
    let mut cursor = tree.walk();
    let mut stack: Vec<(tree_sitter::Node<'_>, bool)> = vec![(cursor.node(), false)];
    'walk: while let Some(&(node, guarded)) = stack.last() {
        match node.kind() {
            "import_statement" => {
                let mut c = node.walk();
                for name in node.children_by_field_name("name", &mut c) {
                    let dotted =
                        if name.kind() == "aliased_import" { name.child_by_field_name("name") } else { Some(name) };
                    if let Some(module) = dotted.and_then(text) {
                        add(module, guarded);
                    }
                }
            }
            "import_from_statement" => {
                if let Some(module) = node.child_by_field_name("module_name")
                    && module.kind() == "dotted_name"
                    && let Some(module) = text(module)
                {
                    add(module, guarded);
                }
            }
            _ => {}
        }
        if cursor.goto_first_child() {
            stack.push((cursor.node(), child_guarded(&cursor, node, guarded, bytes)));
            continue;
        }
        loop {
            stack.pop();
            let Some(&(parent, parent_guarded)) = stack.last() else { break 'walk };
            if cursor.goto_next_sibling() {
                stack.push((cursor.node(), child_guarded(&cursor, parent, parent_guarded, bytes)));
                break;
            }
            if !cursor.goto_parent() {
                break 'walk;
            }
        }
    }
    found.remove("__future__");
    found
}

/// Whether code at the cursor's node runs guarded, given its parent and whether the parent's code does.
fn child_guarded(
    cursor: &tree_sitter::TreeCursor<'_>,
    parent: tree_sitter::Node<'_>,
    parent_guarded: bool,
    src: &[u8],
) -> bool {
    match cursor.node().kind() {
        // A function's body runs when the function is called, not inside the `try` that defines it.
        "function_definition" | "lambda" => false,
        _ if parent.kind() == "try_statement" && cursor.field_name() == Some("body") => {
            parent_guarded || catches_import_error(parent, src)
        }
        _ => parent_guarded,
    }
}

/// Whether one of the `except` clauses of a `try` statement catches a failed import.
fn catches_import_error(try_statement: tree_sitter::Node<'_>, src: &[u8]) -> bool {
    let mut c = try_statement.walk();
    let clauses: Vec<tree_sitter::Node<'_>> = try_statement
        .named_children(&mut c)
        .filter(|n| matches!(n.kind(), "except_clause" | "except_group_clause"))
        .collect();
    clauses.into_iter().any(|clause| {
        let mut c = clause.walk();
        let values: Vec<tree_sitter::Node<'_>> = clause.children_by_field_name("value", &mut c).collect();
        if values.is_empty() {
            // `except:` catches everything; an older grammar puts the type in the first named child instead.
            return match clause.named_child(0) {
                Some(first) if first.kind() != "block" => names_an_import_guard(first, src),
                _ => true,
            };
        }
        values.into_iter().any(|v| names_an_import_guard(v, src))
    })
}

/// Whether an `except` clause's expression names one of [`IMPORT_GUARDS`]: a name, `builtins.ImportError`, or a
/// tuple (parenthesized or not) holding one.
fn names_an_import_guard(expression: tree_sitter::Node<'_>, src: &[u8]) -> bool {
    // Iterative, like the walk: a tuple may nest.
    let mut todo = vec![expression];
    while let Some(node) = todo.pop() {
        match node.kind() {
            "identifier" if node.utf8_text(src).is_ok_and(|name| IMPORT_GUARDS.contains(&name)) => return true,
            "attribute" => {
                if let Some(attr) = node.child_by_field_name("attribute") {
                    todo.push(attr);
                }
            }
            // `except ImportError as e` in grammars that wrap it: the type is the first child.
            "as_pattern" => todo.extend(node.named_child(0)),
            "tuple" | "parenthesized_expression" | "expression_list" => {
                let mut c = node.walk();
                todo.extend(node.named_children(&mut c));
            }
            _ => {}
        }
    }
    false
}

/// PEP 503 normalisation of a distribution name: lower case, runs of `-`, `_` and `.` become `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The distribution that provides an import, or `None` for names that are not installable as such.
pub fn distribution_for(module: &str) -> Option<String> {
    let parts: Vec<&str> = module.split('.').collect();
    for n in (1..=parts.len()).rev() {
        if let Some(dist) = MAP.get(parts[..n].join(".").as_str()) {
            return Some((*dist).to_owned());
        }
    }
    match parts.as_slice() {
        // Namespace packages: google.cloud.X and azure.X.Y are separate distributions; the bare names are not.
        ["google", "cloud", sub, ..] => Some(format!("google-cloud-{}", sub.replace('_', "-"))),
        ["azure", rest @ ..] if !rest.is_empty() => Some(format!("azure-{}", rest.join("-").replace('_', "-"))),
        ["google" | "azure", ..] => None,
        [top, ..] => Some((*top).to_owned()),
        [] => None,
    }
}

/// Top-level module names a project provides itself, seen from the root and from the entrypoint's directory
/// (both are on `sys.path`): `helper.py` → `helper`, `pkg/...` → `pkg`.
pub fn local_modules<'a>(paths: impl IntoIterator<Item = &'a str>, entry_dir: &str) -> HashSet<String> {
    let mut local = HashSet::new();
    let prefixes: Vec<String> =
        if entry_dir.is_empty() { vec![String::new()] } else { vec![String::new(), format!("{entry_dir}/")] };
    for path in paths {
        for prefix in &prefixes {
            let Some(rest) = path.strip_prefix(prefix.as_str()) else { continue };
            let first = rest.split('/').next().unwrap_or(rest);
            if rest.contains('/') {
                local.insert(first.to_owned());
            } else if let Some((stem, ext)) = first.split_once('.')
                && matches!(ext.rsplit('.').next(), Some("py" | "pyc" | "so" | "pyd"))
            {
                local.insert(stem.to_owned());
            }
        }
    }
    local
}

/// A distribution found by import detection.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Detected {
    /// The distribution, as [`distribution_for`] names it.
    pub name: String,
    /// Every import that needs it is guarded by a handler of `ImportError` ([`imports`]): the program runs without
    /// it.
    pub optional: bool,
}

/// The distributions to install for a project's files: imports of every `.py` file, minus the standard library
/// (`is_stdlib`) and the project's own modules, mapped and sorted.
pub fn detect_requirements<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
    entry_dir: &str,
    is_stdlib: impl Fn(&str) -> bool,
) -> Vec<String> {
    detect_imports(files, entry_dir, is_stdlib).into_iter().map(|d| d.name).collect()
}

/// [`detect_requirements`], each distribution with whether it is optional: only imported under a guard, in every
/// file that imports it.
pub fn detect_imports<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
    entry_dir: &str,
    is_stdlib: impl Fn(&str) -> bool,
) -> Vec<Detected> {
    let local = local_modules(files.clone().into_iter().map(|(p, _)| p), entry_dir);
    let mut out: BTreeMap<String, bool> = BTreeMap::new();
    for (path, content) in files {
        if !path.ends_with(".py") {
            continue;
        }
        for (module, optional) in imports(content) {
            let top = module.split('.').next().unwrap_or(&module);
            if top.is_empty() || is_stdlib(top) || local.contains(top) {
                continue;
            }
            if let Some(dist) = distribution_for(&module) {
                *out.entry(dist).or_insert(true) &= optional;
            }
        }
    }
    out.into_iter().map(|(name, optional)| Detected { name, optional }).collect()
}

/// The requirement name of a `requirements.txt` line (before any version, extra or marker), normalised.
pub(crate) fn requirement_name(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with('-') {
        return None;
    }
    let end = line.find(['=', '>', '<', '!', '~', '[', ';', ' ', '@']).unwrap_or(line.len());
    Some(normalize_name(&line[..end]))
}

/// The original's merge (docs/compatibility.md, C71): the user's requirements verbatim, then every detected one
/// the user did not name.
pub fn merge_requirements(detected: &[String], user: &str) -> String {
    let named: HashSet<String> = user.lines().filter_map(requirement_name).collect();
    let mut out = user.trim_end().to_owned();
    for dist in detected {
        if !named.contains(&normalize_name(dist)) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(dist);
        }
    }
    out
}

/// The standard-library module names (`sys.stdlib_module_names`) of a supported CPython version, kept as data for
/// backends that cannot ask the interpreter (Kubernetes: it runs in a Pod). `None` for other versions.
pub fn stdlib_modules(version: crate::PythonVersion) -> Option<&'static BTreeSet<&'static str>> {
    use std::sync::OnceLock;
    static SETS: OnceLock<[(u8, BTreeSet<&'static str>); 4]> = OnceLock::new();
    let sets = SETS.get_or_init(|| {
        let parse = |text: &'static str| text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        [
            (10, parse(include_str!("../data/stdlib/3.10.txt"))),
            (11, parse(include_str!("../data/stdlib/3.11.txt"))),
            (12, parse(include_str!("../data/stdlib/3.12.txt"))),
            (13, parse(include_str!("../data/stdlib/3.13.txt"))),
        ]
    });
    sets.iter().find(|(minor, _)| *minor == version.minor).map(|(_, set)| set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules(src: &str) -> Vec<String> {
        imported_modules(src).into_iter().collect()
    }

    #[test]
    fn finds_imports_the_regex_detector_missed() {
        assert_eq!(modules("import a, b as c"), ["a", "b"]);
        assert_eq!(modules("import os; import numpy"), ["numpy", "os"]);
        assert_eq!(modules("x = 1; import pandas"), ["pandas"]);
        assert_eq!(modules("from x.y import z"), ["x.y"]);
        assert_eq!(modules("def f():\n    import scipy.stats as st\n    return st"), ["scipy.stats"]);
        assert_eq!(modules("try:\n    import ujson as json\nexcept ImportError:\n    import json"), ["json", "ujson"]);
        assert_eq!(
            modules("from . import sibling\nfrom .pkg import mod\nfrom __future__ import annotations"),
            Vec::<String>::new()
        );
        assert_eq!(modules("s = 'import fake'\n# import fake2\nimport real"), ["real"]);
        assert_eq!(
            modules("import numpy\ndef broken(:\n    pass\nimport requests"),
            ["numpy", "requests"],
            "error tolerant"
        );
        assert_eq!(
            modules("class A:\n    async def f(self):\n        from   sklearn . linear_model   import X"),
            ["sklearn.linear_model"]
        );
    }

    /// `(module, optional)` of a source, sorted.
    fn guarded(src: &str) -> Vec<(String, bool)> {
        imports(src).into_iter().collect()
    }

    fn g(pairs: &[(&str, bool)]) -> Vec<(String, bool)> {
        pairs.iter().map(|(m, o)| ((*m).to_owned(), *o)).collect()
    }

    #[test]
    fn imports_guarded_by_an_import_error_handler_are_optional() {
        assert_eq!(
            guarded("try:\n    import ujson as json\nexcept ImportError:\n    import json"),
            g(&[("json", false), ("ujson", true)]),
            "the fallback in the handler is not guarded"
        );
        for handler in [
            "except ModuleNotFoundError:",
            "except ImportError as e:",
            "except (ImportError, AttributeError):",
            "except (AttributeError, ModuleNotFoundError) as e:",
            "except builtins.ImportError:",
            "except:",
            "except Exception:",
            "except BaseException as e:",
            "except* ImportError:",
            "except ValueError:\n    pass\nexcept ImportError:",
        ] {
            let src = format!("try:\n    import fancy\n    from extra.sub import x\n{handler}\n    fancy = None");
            assert_eq!(guarded(&src), g(&[("extra.sub", true), ("fancy", true)]), "{handler}");
        }
        for handler in ["except ValueError:", "except (ValueError, KeyError):", "except AttributeError as e:"] {
            let src = format!("try:\n    import fancy\n{handler}\n    pass");
            assert_eq!(guarded(&src), g(&[("fancy", false)]), "not guarded by {handler}");
        }
    }

    #[test]
    fn guards_nest_and_stop_at_function_boundaries() {
        let nested =
            "try:\n    try:\n        import a\n    except ValueError:\n        pass\nexcept ImportError:\n    pass";
        assert_eq!(guarded(nested), g(&[("a", true)]), "an outer guard counts");
        let inner =
            "try:\n    try:\n        import a\n    except ImportError:\n        pass\nexcept ValueError:\n    pass";
        assert_eq!(guarded(inner), g(&[("a", true)]), "an inner guard counts");
        let in_function =
            "def f():\n    try:\n        import a\n    except ImportError:\n        return None\n    return a";
        assert_eq!(guarded(in_function), g(&[("a", true)]), "a try inside a function");
        let method = "class C:\n    async def m(self):\n        try:\n            from b import c\n        except ImportError:\n            pass";
        assert_eq!(guarded(method), g(&[("b", true)]));
        let defined_in_try = "try:\n    def f():\n        import a\nexcept ImportError:\n    pass";
        assert_eq!(guarded(defined_in_try), g(&[("a", false)]), "the function runs outside the try");
        let class_in_try = "try:\n    class A:\n        import a\nexcept ImportError:\n    pass";
        assert_eq!(guarded(class_in_try), g(&[("a", true)]), "a class body runs where it is defined");
        let other_clauses =
            "try:\n    pass\nexcept ImportError:\n    import a\nelse:\n    import b\nfinally:\n    import c";
        assert_eq!(guarded(other_clauses), g(&[("a", false), ("b", false), ("c", false)]), "only the body is guarded");
        let both = "import a\ntry:\n    import a\nexcept ImportError:\n    pass";
        assert_eq!(guarded(both), g(&[("a", false)]), "one unguarded import makes it required");
        let deep = format!(
            "try:\n    x = {}1{}\n    import deep\nexcept ImportError:\n    pass",
            "(".repeat(3000),
            ")".repeat(3000)
        );
        assert_eq!(guarded(&deep), g(&[("deep", true)]));
    }

    #[test]
    fn detection_says_which_distributions_are_optional() {
        let stdlib = |m: &str| m == "json";
        let files = [
            (
                "main.py",
                "import numpy\ntry:\n    import ujson as json\nexcept ImportError:\n    import json\ntry:\n    import yaml\nexcept ImportError:\n    yaml = None",
            ),
            (
                "helper.py",
                "import yaml\ntry:\n    from PIL import Image\nexcept ModuleNotFoundError:\n    Image = None",
            ),
        ];
        let detected = detect_imports(files, "", stdlib);
        let pairs: Vec<(&str, bool)> = detected.iter().map(|d| (d.name.as_str(), d.optional)).collect();
        assert_eq!(pairs, [("Pillow", true), ("PyYAML", false), ("numpy", false), ("ujson", true)]);
        assert_eq!(detect_requirements(files, "", stdlib), ["Pillow", "PyYAML", "numpy", "ujson"]);
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let src = format!("x = {}1{}\nimport deep", "(".repeat(5000), ")".repeat(5000));
        assert!(modules(&src).contains(&"deep".to_string()));
    }

    #[test]
    fn maps_imports_to_distributions() {
        assert!(import_map_len() >= 140, "at least as complete as the original's table");
        for (import, dist) in [
            ("PIL.Image", "Pillow"),
            ("sklearn.linear_model", "scikit-learn"),
            ("cv2", "opencv-python"),
            ("yaml", "PyYAML"),
            ("bs4", "beautifulsoup4"),
            ("google.protobuf.message", "protobuf"),
            ("google.cloud.storage", "google-cloud-storage"),
            ("google.cloud.secret_manager", "google-cloud-secret-manager"),
            ("azure.keyvault.secrets", "azure-keyvault-secrets"),
            ("numpy", "numpy"),
            ("unknownpkg.sub", "unknownpkg"),
        ] {
            assert_eq!(distribution_for(import).as_deref(), Some(dist), "{import}");
        }
        assert_eq!(distribution_for("google"), None);
    }

    #[test]
    fn never_installs_stdlib_or_local_modules() {
        let stdlib = |m: &str| ["os", "sys", "json", "cProfile", "sqlite3"].contains(&m);
        let files = [
            (
                "main.py",
                "import os, sys, json, cProfile\nimport requests\nfrom helper import x\nfrom pkg.util import y\nimport numpy as np",
            ),
            ("helper.py", "import sqlite3\nimport yaml"),
            ("pkg/util.py", "import attr"),
            ("requests_shim/__init__.py", ""),
        ];
        assert_eq!(detect_requirements(files, "", stdlib), ["PyYAML", "attrs", "numpy", "requests"]);
        let shadow = [("main.py", "import requests\nimport flask"), ("requests.py", "")];
        assert_eq!(detect_requirements(shadow, "", stdlib), ["Flask"], "a local module named like a package");
        let nested = [("src/main.py", "import tool\nimport rich"), ("src/tool.py", "")];
        assert_eq!(detect_requirements(nested, "src", stdlib), ["rich"], "modules next to the entrypoint are local");
    }

    #[test]
    fn merges_like_the_original() {
        let detected = vec!["Flask".to_owned(), "Pillow".to_owned()];
        assert_eq!(merge_requirements(&detected, "flask>=2.0.0"), "flask>=2.0.0\nPillow");
        assert_eq!(merge_requirements(&detected, ""), "Flask\nPillow");
        assert_eq!(merge_requirements(&["scikit-learn".into()], "# ml\nScikit_Learn==1.5"), "# ml\nScikit_Learn==1.5");
        assert_eq!(normalize_name("Ruamel.YAML__clib"), "ruamel-yaml-clib");
    }

    #[test]
    fn stdlib_data_per_version() {
        let v = |minor| crate::PythonVersion { minor };
        let s310 = stdlib_modules(v(10)).unwrap();
        assert!(s310.contains("distutils") && s310.contains("asyncio") && !s310.contains("tomllib"));
        let s312 = stdlib_modules(v(12)).unwrap();
        assert!(s312.contains("tomllib") && !s312.contains("distutils"));
        assert!(stdlib_modules(v(9)).is_none());
    }
}
