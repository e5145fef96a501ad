//! The layers import downwards only: the transport knows nothing of authorization or the Web API
//! client, and authorization knows nothing of the client that uses its tokens.

use std::fs;
use std::path::Path;

/// Every `crate::` path a module tree under `src/<dir>` refers to, with its file.
fn crate_paths(dir: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    assert!(root.is_dir(), "{} is a folder", root.display());
    let mut found = Vec::new();
    for entry in fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("crate::") {
            let tail = &rest[at + "crate::".len()..];
            let module: String = tail
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push((path.display().to_string(), module));
            rest = tail;
        }
    }
    assert!(
        !found.is_empty() || root.exists(),
        "{} exists",
        root.display()
    );
    found
}

fn assert_never_imports(dir: &str, forbidden: &[&str]) {
    let offending: Vec<_> = crate_paths(dir)
        .into_iter()
        .filter(|(_, module)| forbidden.contains(&module.as_str()))
        .collect();
    assert!(
        offending.is_empty(),
        "src/{dir} imports upwards: {offending:?}"
    );
}

#[test]
fn the_transport_imports_neither_auth_nor_the_client() {
    assert_never_imports(
        "transport",
        &["auth", "client", "source", "job", "metadata"],
    );
}

#[test]
fn authorization_does_not_import_the_client() {
    assert_never_imports("auth", &["client", "source", "job", "metadata"]);
}
