//! Snapshot tests (insta) of every command's `--help` and of the main error messages,
//! as a user sees them. Ports, temporary paths and the version are filtered out, so a
//! snapshot changes only when the text does.
//!
//! After changing a command or a message: `INSTA_UPDATE=always cargo nextest run --test
//! it snapshots` rewrites the `.snap` files under `tests/it/snapshots/` (or `cargo insta
//! review` to accept them one by one); review the diff and commit it. In CI (`CI=true`)
//! a missing or differing snapshot fails.

use clap::CommandFactory;

use crate::support::{Project, STACK};

/// Filters applied to every snapshot.
fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\b\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?\b", "[VERSION]"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
        (r"/tmp/\.tmp[0-9A-Za-z]+", "[TEMP]"),
        (r"/tmp/[0-9A-Za-z._-]+", "[TEMP]"),
    ]
}

/// Every command path: `up`, `state history`, ... (hidden ones left out).
fn command_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            walk(sub, &path, out);
        }
    }
    let mut out = vec![vec![]];
    walk(&nubes::cli::Cli::command(), &[], &mut out);
    out
}

#[test]
fn help_of_every_command() {
    let mut p = Project::new("", &[]);
    // clap wraps help at COLUMNS when set: fix it, so the snapshots do not depend on it.
    p.set_env("COLUMNS", "100");
    for path in command_paths() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = p.run(&args).ok();
        let name = if path.is_empty() {
            "help".to_string()
        } else {
            format!("help_{}", path.join("_"))
        };
        // Every command (the parents of subcommands aside) shows an example.
        let cmd = path.iter().fold(nubes::cli::Cli::command(), |c, n| {
            c.find_subcommand(n).cloned().unwrap_or(c)
        });
        if !path.is_empty() && cmd.get_subcommands().next().is_none() {
            assert!(out.stdout.contains("Example: "), "{name} has no example");
        }
        insta::with_settings!({ filters => filters(), prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(name, out.stdout);
        });
    }
}

/// The messages a newcomer meets first: bad names, config types, a missing `--`, an
/// unknown command, a branch that is no environment, a missing Terraform.
#[test]
fn main_error_messages() {
    let p = Project::new("[state]\nbackend = \"local\"\n", &[("main.tf", STACK)]);
    let bad_config = Project::new("[state]\nhistory = \"20\"\n", &[("main.tf", STACK)]);
    let no_tf = Project::new(
        "[state]\nbackend = \"local\"\n[terraform]\nbinary = \"terraform-not-installed\"\n",
        &[("main.tf", STACK)],
    );
    let repo = git2::Repository::init(p.path()).unwrap();
    repo.set_head("refs/heads/main").unwrap();
    let cases: Vec<(&str, &Project, Vec<&str>)> = vec![
        ("error_env_name_uppercase", &p, vec!["plan", "env-Alice_B"]),
        (
            "error_env_name_not_env_branch",
            &p,
            vec!["env-name", "main"],
        ),
        ("error_config_type", &bad_config, vec!["status", "alice"]),
        (
            "error_tf_without_separator",
            &p,
            vec!["tf", "alice", "init"],
        ),
        ("error_unknown_command", &p, vec!["deploy", "alice"]),
        ("error_no_env_on_main", &p, vec!["plan"]),
        ("error_terraform_missing", &no_tf, vec!["plan", "alice"]),
        ("error_plan_json", &p, vec!["plan", "Alice", "--json"]),
    ];
    for (name, project, args) in cases {
        let out = project.run(&args);
        assert_ne!(out.code, 0, "{name}: {}", out.all());
        let text = format!(
            "$ nubes {}\nexit code: {}\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            out.code,
            out.stdout,
            out.stderr
        );
        insta::with_settings!({ filters => filters(), prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(name, text);
        });
    }
}
