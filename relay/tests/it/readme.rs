//! The README's REST table (section "REST API") lists every route of the router, with the right
//! methods, and nothing else (issue 22, item 5). The routes are read from `app()` in
//! `relay/src/lib.rs`, one `.route(...)` per line; README paths write `{param}` as `:param`.

use std::collections::BTreeSet;

fn read(path: &str) -> String {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// `(METHOD, /path/:param)` of every route `app()` registers.
fn router_routes() -> BTreeSet<(String, String)> {
    let source = read("src/lib.rs");
    let start = source.find("pub fn app(").expect("app() in lib.rs");
    let end = start + source[start..].find("\n}\n").expect("the end of app()");
    let mut routes = BTreeSet::new();
    for line in source[start..end].lines().map(str::trim).filter(|l| l.starts_with(".route(\"")) {
        let rest = &line[".route(\"".len()..];
        let (path, handlers) = rest.split_once('"').unwrap();
        let path = path.replace('{', ":").replace('}', "");
        let mut methods = 0;
        for method in ["get", "post", "put", "delete", "patch"] {
            let called = handlers.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0 || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric() && handlers.as_bytes()[i - 1] != b'_'
            });
            if called {
                routes.insert((method.to_uppercase(), path.clone()));
                methods += 1;
            }
        }
        assert!(methods > 0, "no method read from {line:?}");
    }
    assert!(routes.len() > 30, "only {} routes read from app(): {routes:?}", routes.len());
    routes
}

/// `(METHOD, path)` of every row of the README's REST table: one method, one or more paths.
fn readme_routes() -> BTreeSet<(String, String)> {
    let readme = read("../README.md");
    let start = readme.find("\n## REST API\n").expect("a \"REST API\" section in README.md");
    let section = &readme[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |i| i + 1)];
    let mut routes = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let method = cells[0].trim_start_matches("| ").trim_matches('`').to_string();
        for path in cells[1].split(", ") {
            routes.insert((method.clone(), path.trim_matches('`').to_string()));
        }
    }
    routes
}

#[test]
fn the_readme_lists_every_route_of_the_router() {
    let (router, readme) = (router_routes(), readme_routes());
    let missing: Vec<_> = router.difference(&readme).collect();
    let extra: Vec<_> = readme.difference(&router).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README.md's REST table and the router differ:\n  not in the README: {missing:?}\n  not in the router: {extra:?}"
    );
}
