//! The crate map holds: every dependency between Faísca's crates is one that
//! `docs/architecture.md`'s crate table allows ("may depend on"), and every crate is in the table.
//! The table is the rule; this test reads it, so the guide and the code cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The crate table of `docs/architecture.md`: crate → the Faísca crates it may depend on.
fn allowed_arrows(guide: &str) -> BTreeMap<String, BTreeSet<String>> {
    let section = guide
        .split("## The crates")
        .nth(1)
        .expect("docs/architecture.md has a '## The crates' section");
    let mut table = BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | crate | lines | what | may depend on |
        if cells.len() < 6 || !cells[1].starts_with('`') {
            continue;
        }
        let name = cells[1]
            .split('`')
            .nth(1)
            .expect("a crate name in backticks");
        let allowed = cells[4]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        table.insert(name.to_string(), allowed);
    }
    table
}

/// Workspace members → their normal and build dependencies on other members, from `cargo metadata`.
fn actual_arrows(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("a name").to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .filter_map(|d| d["name"].as_str())
                .filter(|d| members.contains(*d))
                .map(str::to_string)
                .collect();
            (p["name"].as_str().expect("a name").to_string(), deps)
        })
        .collect()
}

/// The violations of `allowed` in `actual`, one line each (the test crate is exempt: its
/// dependencies are dev-dependencies and may reach any crate).
fn violations(
    allowed: &BTreeMap<String, BTreeSet<String>>,
    actual: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut found = Vec::new();
    for (krate, deps) in actual {
        if krate == "faisca-tests" {
            continue;
        }
        let Some(may) = allowed.get(krate) else {
            found.push(format!(
                "{krate} is not in docs/architecture.md's crate table"
            ));
            continue;
        };
        for dep in deps.difference(may) {
            found.push(format!(
                "{krate} depends on {dep}, which docs/architecture.md's crate table does not allow"
            ));
        }
    }
    found
}

#[test]
fn crates_depend_only_on_what_the_architecture_guide_allows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let guide =
        std::fs::read_to_string(root.join("docs/architecture.md")).expect("docs/architecture.md");
    let allowed = allowed_arrows(&guide);
    assert!(
        allowed.len() >= 10,
        "the crate table was not found or lost rows: {allowed:?}"
    );
    let found = violations(&allowed, &actual_arrows(root));
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
    // The rule the guide states for the CLI, checked on its own as well.
    let cli = &allowed["faisca-cli"];
    assert!(!cli.contains("faisca-planner") && !cli.contains("faisca-proto"));
}

#[test]
fn a_forbidden_arrow_is_reported() {
    let guide = "## The crates\n\n| crate | lines | what | may depend on |\n|---|---|---|---|\n\
                 | `a` | 1 | x | — |\n| `b` | 1 | y | `a` |\n\n## Next\n";
    let allowed = allowed_arrows(guide);
    let actual = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
        ("c".to_string(), BTreeSet::new()),
    ]);
    assert_eq!(
        violations(&allowed, &actual),
        vec![
            "a depends on b, which docs/architecture.md's crate table does not allow".to_string(),
            "c is not in docs/architecture.md's crate table".to_string(),
        ]
    );
}
