//! What `deploy/docker/Dockerfile` promises, checked without building it (no image can be pulled
//! here; building it belongs to the opt-in end-to-end test): a locked build, a runtime stage
//! that runs as a numeric non-root user with tini as PID 1 and `faisca` as the entrypoint, OCI
//! labels, and every shared library the `faisca` binary links provided by the runtime image.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::faisca_bin;

/// A Dockerfile's instructions (continuation lines joined, comments dropped), by stage.
fn stages(text: &str) -> Vec<Vec<(String, String)>> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(&format!("{} ", part.trim())),
            None => {
                current.push_str(line);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for instruction in instructions {
        let (keyword, rest) = instruction.split_once(' ').unwrap_or((&instruction, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push((keyword, rest.trim().to_string()));
        }
    }
    stages
}

fn all<'a>(stage: &'a [(String, String)], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|(k, _)| k == keyword)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The Debian package of a shared library the binary links; `None` for one this table does
/// not know (then the runtime stage needs a look, and the table a row).
fn debian_package(library: &str) -> Option<&'static str> {
    let name = library.split(".so").next().unwrap_or(library);
    Some(match name {
        "libc" | "libm" | "libdl" | "libpthread" | "librt" | "ld-linux-x86-64"
        | "ld-linux-aarch64" => "libc6",
        "libgcc_s" => "libgcc-s1",
        "libz" => "zlib1g",
        "libssl" | "libcrypto" => "libssl3",
        _ => return None,
    })
}

#[test]
fn the_dockerfile_builds_locked_and_runs_faisca_as_a_non_root_user_under_tini() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let text = std::fs::read_to_string(root.join("deploy/docker/Dockerfile")).unwrap();
    let stages = stages(&text);
    assert!(stages.len() >= 2, "a build stage and a runtime stage");
    let build = &stages[0];
    assert!(
        all(build, "RUN")
            .iter()
            .any(|r| r.contains("cargo build --locked --release")),
        "the build stage builds with --locked"
    );
    let runtime = stages.last().unwrap();

    // A numeric, non-root user (Kubernetes' runAsNonRoot checks it without a passwd entry).
    let user = all(runtime, "USER");
    let user = user.last().expect("the runtime stage sets USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("USER {user} is not numeric"));
    assert_ne!(uid, 0, "the runtime stage runs as root");

    // tini as PID 1, then the faisca binary the stage copied in.
    let entrypoint = all(runtime, "ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint.last().unwrap())
        .expect("ENTRYPOINT in exec (JSON) form, so that signals reach the process");
    assert!(entrypoint[0].ends_with("/tini"), "{entrypoint:?}");
    assert_eq!(entrypoint[1], "--", "{entrypoint:?}");
    let binary = entrypoint.last().unwrap();
    assert!(binary.ends_with("/faisca"), "{entrypoint:?}");
    assert!(
        all(runtime, "COPY")
            .iter()
            .any(|c| c.starts_with("--from=build") && c.ends_with(binary.as_str())),
        "the runtime stage copies the built binary to {binary}"
    );

    // OCI labels.
    let labels = all(runtime, "LABEL").join(" ");
    for label in [
        "title",
        "description",
        "version",
        "licenses",
        "source",
        "revision",
    ] {
        assert!(
            labels.contains(&format!("org.opencontainers.image.{label}=")),
            "no org.opencontainers.image.{label} label"
        );
    }

    // Every library the binary links comes with the base image or the runtime stage's packages.
    let installed: BTreeSet<&str> = all(runtime, "RUN")
        .iter()
        .flat_map(|r| r.split_whitespace())
        .collect();
    assert!(installed.contains("tini"), "tini is installed");
    let ldd = std::process::Command::new("ldd")
        .arg(faisca_bin())
        .output()
        .expect("ldd runs");
    let linked = String::from_utf8(ldd.stdout).unwrap();
    for library in linked.lines().filter_map(|l| l.split_whitespace().next()) {
        if library.starts_with("linux-vdso") {
            continue;
        }
        let library = library.rsplit('/').next().unwrap();
        let package = debian_package(library).unwrap_or_else(|| {
            panic!("faisca links {library}: install its package in the Dockerfile's runtime stage and name it in tests/src/deploy.rs")
        });
        assert!(
            ["libc6", "libgcc-s1"].contains(&package) || installed.contains(package),
            "faisca links {library}, but the runtime stage does not install {package}"
        );
    }

    // Nothing built goes into the build context.
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "{ignore}");
}

#[test]
fn dockerfile_instructions_are_read_by_stage() {
    let stages = stages(
        "# c\nFROM a AS build\nRUN x \\\n    && y\n\nFROM b\nUSER 1:1\nENTRYPOINT [\"/t\"]\n",
    );
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0][1], ("RUN".to_string(), "x && y".to_string()));
    assert_eq!(all(&stages[1], "USER"), ["1:1"]);
}
