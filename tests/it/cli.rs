//! Command-line behaviour that needs no storage: env names, config errors, usage.

use crate::support::Project;

#[test]
fn env_name_prints_the_name_for_branches_and_refs() {
    let p = Project::new("", &[]);
    assert_eq!(
        p.run(&["env-name", "refs/heads/env-alice"]).ok().stdout,
        "alice\n"
    );
    assert_eq!(
        p.run(&["env-name", "env-feature-42"]).ok().stdout,
        "feature-42\n"
    );
}

#[test]
fn env_name_rejects_bad_branches_with_the_rule_and_canonical_branch() {
    let p = Project::new("", &[]);
    for (branch, rule) in [
        ("env-Alice", "uppercase"),
        ("env-a_b", "`_`"),
        ("env-", "nothing after"),
        ("env-abcdefghijklmnopqrstu", "limit is 20"),
        ("env-a;touch${IFS}pwned", "`;`"),
        ("env-$(id)", "`$`"),
        ("main", "does not start with `env-`"),
        ("refs/tags/env-a", "not a branch"),
    ] {
        let out = p.run(&["env-name", branch]).code(2);
        assert!(out.stderr.contains(rule), "{branch}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{branch}: printed {}", out.stdout);
    }
    let out = p.run(&["env-name", "env-Alice"]).code(2);
    assert!(out.stderr.contains("branch `env-alice`"), "{}", out.stderr);
    assert!(!p.path().join("pwned").exists());
}

#[test]
fn custom_branch_prefix_from_config() {
    let p = Project::new("[project]\nbranch_prefix = \"preview/\"\n", &[]);
    let out = p.run(&["env-name", "preview/bob"]).code(2);
    assert!(
        out.stderr.contains("usable branch prefix"),
        "{}",
        out.stderr
    );
    let p = Project::new("[project]\nbranch_prefix = \"pr-\"\n", &[]);
    assert_eq!(p.run(&["env-name", "pr-bob"]).ok().stdout, "bob\n");
}

#[test]
fn config_errors_name_file_line_column_and_allowed_values() {
    let p = Project::new("[state]\nbackend = \"local\"\nlease_seconds = 5\n", &[]);
    let out = p.run(&["state", "history", "alice"]).code(2);
    assert!(
        out.stderr.contains("nubes.toml:3:17") && out.stderr.contains("15 to 60"),
        "{}",
        out.stderr
    );

    let p = Project::new("[stat]\nbackend = \"local\"\n", &[]);
    let out = p.run(&["state", "history", "alice"]).code(2);
    assert!(
        out.stderr.contains("nubes.toml:1:2") && out.stderr.contains("unknown field `stat`"),
        "{}",
        out.stderr
    );
}

#[test]
fn environment_variables_override_the_file_and_flags_override_both() {
    let mut p = Project::new("[state]\nbackend = \"local\"\nlease_seconds = 30\n", &[]);
    p.set_env("NUBES_STATE_LEASE_SECONDS", "99");
    let out = p.run(&["state", "history", "alice"]).code(2);
    assert!(
        out.stderr
            .contains("environment variable NUBES_STATE_LEASE_SECONDS")
            && out.stderr.contains("99"),
        "{}",
        out.stderr
    );

    p.set_env("NUBES_STATE_LEASE_SECONDS", "30");
    p.set_env("NUBES_STATE_LOCK_TIMEOUT", "nonsense");
    let out = p.run(&["state", "history", "alice"]).code(2);
    assert!(
        out.stderr.contains("NUBES_STATE_LOCK_TIMEOUT"),
        "{}",
        out.stderr
    );
    // The flag wins over the bad environment value.
    p.run(&["--lock-timeout", "5s", "state", "history", "alice"])
        .ok();
    let out = p
        .run(&["--lock-timeout", "later", "state", "history", "alice"])
        .code(2);
    assert!(out.stderr.contains("--lock-timeout"), "{}", out.stderr);
}

#[test]
fn local_state_is_refused_on_ci_unless_explicit() {
    let mut p = Project::new("", &[]);
    p.set_env("CI", "true");
    let out = p.run(&["state", "history", "alice"]).code(2);
    assert!(
        out.stderr.contains("vanish with the runner"),
        "{}",
        out.stderr
    );
    let mut p = Project::new("[state]\nbackend = \"local\"\n", &[]);
    p.set_env("CI", "true");
    p.run(&["state", "history", "alice"]).ok();
}

#[test]
fn usage_errors_exit_2() {
    let p = Project::new("", &[]);
    assert_eq!(p.run(&["tf", "alice"]).code, 2, "tf without terraform args");
    assert_eq!(p.run(&["frobnicate"]).code, 2);
    let out = p
        .run(&["-C", "/nonexistent/dir", "state", "history", "a"])
        .code(2);
    assert!(out.stderr.contains("no such directory"));
    let out = p
        .run(&["--config", "missing.toml", "state", "history", "a"])
        .code(2);
    assert!(out.stderr.contains("missing.toml"), "{}", out.stderr);
}

#[test]
fn a_relative_terraform_binary_is_found_from_the_project_folder() {
    // Regression: `binary = "./tf.sh"` was resolved against the working copy.
    let p = Project::new(
        "[state]\nbackend = \"local\"\n[terraform]\nbinary = \"./tf.sh\"\n",
        &[("main.tf", "#\n")],
    );
    let script = p.path().join("tf.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"stand-in terraform: $*\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = p.run(&["tf", "alice", "--", "version"]).ok();
    assert!(
        out.stdout.contains("stand-in terraform: version"),
        "{}",
        out.stdout
    );
}

/// `plan`, `up` and `status` without an environment take the current `env-*` branch's
/// (and say so), and refuse on any other branch.
#[test]
fn commands_default_to_the_current_env_branch() {
    let p = Project::new(
        "[state]\nbackend = \"local\"\n",
        &[("main.tf", crate::support::STACK)],
    );
    let repo = git2::Repository::init(p.path()).unwrap();
    repo.set_head("refs/heads/env-alice").unwrap();
    let out = p.run(&["status"]).ok();
    assert!(
        out.stderr
            .contains("environment `alice` (from the current branch env-alice)"),
        "{}",
        out.all()
    );
    assert!(out.stdout.contains("environment `alice`"), "{}", out.stdout);
    let out = p.run(&["plan"]).ok();
    assert!(out.stdout.contains("3 to add"), "{}", out.all());
    repo.set_head("refs/heads/main").unwrap();
    for cmd in ["plan", "up", "status"] {
        let out = p.run(&[cmd]).code(2);
        assert!(
            out.stderr
                .contains("the current branch `main` is not an env-* branch")
                && out.stderr.contains(&format!("nubes {cmd} alice")),
            "{cmd}: {}",
            out.stderr
        );
    }
}

/// `nubes tf alice init` (no `--`) is a usage error whose hint is the fixed line.
#[test]
fn tf_without_the_separator_suggests_it() {
    let p = Project::new("", &[]);
    let out = p.run(&["tf", "alice", "init", "-upgrade"]).code(2);
    assert!(
        out.stderr.contains("nubes tf alice -- init -upgrade"),
        "{}",
        out.stderr
    );
}

/// Each command's `--help` lists the global options under their own heading.
#[test]
fn global_options_have_their_own_heading() {
    let p = Project::new("", &[]);
    let out = p.run(&["up", "--help"]).ok();
    let (own, global) = out
        .stdout
        .split_once("Global options:")
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        own.contains("--refresh") && !own.contains("--lock-timeout"),
        "{own}"
    );
    assert!(
        global.contains("--lock-timeout") && global.contains("--color"),
        "{global}"
    );
}

/// Completions and man pages come from the same definition as `--help`.
#[test]
fn completions_and_man_pages() {
    let p = Project::new("", &[]);
    let bash = p.run(&["completions", "bash"]).ok();
    assert!(
        bash.stdout.contains("complete -F") && bash.stdout.contains("drift"),
        "{}",
        bash.stdout
    );
    let zsh = p.run(&["completions", "zsh"]).ok();
    assert!(zsh.stdout.starts_with("#compdef nubes"), "{}", zsh.stdout);
    let out = p.run(&["completions", "tcsh"]).code(2);
    assert!(out.stderr.contains("bash"), "{}", out.stderr);
    let man = p.run(&["man"]).ok();
    assert!(
        man.stdout.contains(".TH nubes") && man.stdout.contains("up"),
        "{}",
        man.stdout
    );
    p.run(&["man", "--out", "pages"]).ok();
    let up = std::fs::read_to_string(p.path().join("pages/nubes-up.1")).unwrap();
    assert!(up.contains("\\-\\-refresh"), "{up}");
}
