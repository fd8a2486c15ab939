//! The packaged crate (what `cargo install nubes` and `cargo binstall`'s source
//! fallback build) holds everything the binary embeds: `templates/` and `terraform/`
//! (read by `include_dir!`/`include_str!` for `nubes init` and `nubes bootstrap`), the
//! build script, the lock file for `--locked`; and none of the tests, examples,
//! scripts or CI files. Checked with `cargo package --list`, which computes the file
//! list without building.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Files under `dir` (relative to the repository, with `/`).
fn files_under(dir: &str) -> Vec<String> {
    walkdir::WalkDir::new(repo().join(dir))
        .into_iter()
        .map(|e| e.expect("walk"))
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(repo())
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect()
}

#[test]
fn the_packaged_crate_holds_the_sources_templates_and_modules_only() {
    let out = Command::new(env!("CARGO"))
        .args(["package", "--list", "--allow-dirty", "--offline"])
        .current_dir(repo())
        .output()
        .expect("run cargo package --list");
    assert!(
        out.status.success(),
        "cargo package --list failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();

    let mut expected: Vec<String> = [
        "Cargo.toml",
        "Cargo.toml.orig",
        "Cargo.lock",
        "build.rs",
        "README.md",
    ]
    .map(String::from)
    .to_vec();
    for dir in ["src", "templates", "terraform"] {
        let files = files_under(dir);
        assert!(!files.is_empty(), "{dir}/ is empty?");
        expected.extend(files);
    }
    let missing: Vec<&String> = expected.iter().filter(|f| !listed.contains(*f)).collect();
    assert!(
        missing.is_empty(),
        "not in the package: {missing:?}\nlisted: {listed:#?}"
    );

    // Only generated metadata besides: no tests, examples, scripts or CI files.
    let extra: Vec<&String> = listed
        .iter()
        .filter(|f| !expected.contains(f) && f.as_str() != ".cargo_vcs_info.json")
        .collect();
    assert!(
        extra.is_empty(),
        "unexpected files in the package: {extra:?}"
    );
    for f in &listed {
        for outside in [
            "tests/",
            "examples/",
            "scripts/",
            ".github/",
            "action.yml",
            "target/",
        ] {
            assert!(!f.starts_with(outside), "{f} is packaged");
        }
    }
}
