//! GitHub Actions files: `action.yml`, nubes's own workflows and the example workflow
//! for application repositories pass actionlint and zizmor (both installed by
//! `scripts/install-prereqs.sh`, pinned in `scripts/lint-tools.sh`), and the action
//! declares the inputs and outputs that README.md documents.
//!
//! actionlint checks workflows, not action metadata, so `action.yml` gets zizmor
//! directly and actionlint through a throwaway workflow that uses it as `./`: that
//! makes actionlint load the action and check every input given and every output read.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const INPUTS: [&str; 4] = ["command", "working-directory", "version", "release-url"];
const OUTPUTS: [&str; 7] = [
    "environment",
    "application_url",
    "resource_group",
    "changes",
    "release_id",
    "release_digest",
    "rolled_back",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A linter from `$<var>`, else from `.cache/tools/venv-lint/bin/`.
pub fn tool(var: &str, name: &str) -> PathBuf {
    tool_in(var, ".cache/tools/venv-lint/bin", name)
}

/// A tool from `$<var>`, else from `dir` (relative to the repository).
pub fn tool_in(var: &str, dir: &str, name: &str) -> PathBuf {
    let (path, from) = match std::env::var_os(var) {
        Some(p) => (PathBuf::from(p), format!("${var}")),
        None => (repo().join(dir).join(name), format!("${var} is not set")),
    };
    assert!(
        path.is_file(),
        "{name} not found at {} ({from}): run scripts/install-prereqs.sh \
         (scripts/test.sh does it), which writes ${var} into .cache/tools/env.sh",
        path.display()
    );
    path
}

fn actionlint() -> PathBuf {
    tool("NUBES_TEST_ACTIONLINT", "actionlint")
}

fn zizmor() -> PathBuf {
    tool("NUBES_TEST_ZIZMOR", "zizmor")
}

struct Run {
    code: Option<i32>,
    output: String,
}

fn run(tool: &Path, args: &[&str], dir: &Path) -> Run {
    let out = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    Run {
        code: out.status.code(),
        output: format!(
            "--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[track_caller]
fn assert_clean(tool: &Path, args: &[&str], dir: &Path) {
    let r = run(tool, args, dir);
    assert_eq!(
        r.code,
        Some(0),
        "{} {} (in {}) found problems:\n{}",
        tool.display(),
        args.join(" "),
        dir.display(),
        r.output
    );
}

/// Workflow files, relative to the repository: nubes's own and the example's.
fn workflows() -> Vec<String> {
    let mut files = vec![];
    for dir in [".github/workflows", "examples/workflows"] {
        for entry in std::fs::read_dir(repo().join(dir)).expect(dir) {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.ends_with(".yml") || name.ends_with(".yaml") {
                files.push(format!("{dir}/{name}"));
            }
        }
    }
    files.sort();
    assert!(
        files.contains(&".github/workflows/ci.yml".to_string())
            && files.contains(&"examples/workflows/nubes.yml".to_string()),
        "workflow files missing: {files:?}"
    );
    files
}

#[test]
fn actionlint_passes_on_the_workflows() {
    let files = workflows();
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    assert_clean(&actionlint(), &args, repo());
}

#[test]
fn zizmor_passes_on_the_workflows_and_the_action() {
    let files = workflows();
    let mut args = vec!["--offline"];
    args.extend(files.iter().map(String::as_str));
    args.push("action.yml");
    assert_clean(&zizmor(), &args, repo());
}

/// A project folder holding a copy of `action.yml` and a workflow that uses it as
/// `./`. actionlint resolves local actions from the project root, which it finds by
/// a `.git` entry.
fn project_using_the_action(workflow: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    std::fs::create_dir_all(dir.path().join(".github/workflows")).unwrap();
    std::fs::copy(repo().join("action.yml"), dir.path().join("action.yml")).unwrap();
    std::fs::write(dir.path().join(".github/workflows/use.yml"), workflow).unwrap();
    dir
}

/// A workflow running the local action with `with` and reading `outputs` in env:.
fn workflow_using(with: &[(&str, &str)], outputs: &[&str]) -> String {
    let mut w = String::from(
        "name: use\non: push\npermissions: {}\njobs:\n  use:\n    name: use\n    \
         runs-on: ubuntu-latest\n    steps:\n      - uses: ./\n        id: nubes\n        with:\n",
    );
    for (k, v) in with {
        w += &format!("          {k}: {v}\n");
    }
    w += "      - run: env | grep ^OUT_\n        env:\n";
    for o in outputs {
        w += &format!(
            "          OUT_{}: ${{{{ steps.nubes.outputs.{o} }}}}\n",
            o.to_uppercase()
        );
    }
    w
}

#[test]
fn action_used_with_every_input_and_output_passes_actionlint() {
    let text = read(&repo().join("action.yml"));
    let lines: Vec<&str> = text.lines().collect();
    let inputs = keys(&block(&lines, 0, "inputs").expect("inputs:"));
    let outputs = keys(&block(&lines, 0, "outputs").expect("outputs:"));
    let with: Vec<(&str, &str)> = inputs
        .iter()
        .map(|i| match i.as_str() {
            "command" => (i.as_str(), "plan alice"),
            "working-directory" => (i.as_str(), "app"),
            "version" => (i.as_str(), "0.1.0"),
            "release-url" => (i.as_str(), "https://mirror.example/nubes"),
            other => (other, "x"),
        })
        .collect();
    let outputs: Vec<&str> = outputs.iter().map(String::as_str).collect();
    let project = project_using_the_action(&workflow_using(&with, &outputs));
    assert_clean(
        &actionlint(),
        &[".github/workflows/use.yml"],
        project.path(),
    );
}

/// The check above is only worth something if actionlint really loads the action:
/// an unknown input and an unknown output must be reported.
#[test]
fn actionlint_checks_the_local_action() {
    let workflow = workflow_using(&[("no-such-input", "x")], &["no_such_output"]);
    let project = project_using_the_action(&workflow);
    let r = run(
        &actionlint(),
        &[".github/workflows/use.yml"],
        project.path(),
    );
    assert_eq!(r.code, Some(1), "actionlint should fail:\n{}", r.output);
    assert!(
        r.output
            .contains(r#"input "no-such-input" is not defined in action"#)
            && r.output
                .contains(r#"property "no_such_output" is not defined"#),
        "actionlint did not check the local action:\n{}",
        r.output
    );
}

#[test]
fn action_declares_its_inputs_outputs_and_composite_steps() {
    let text = read(&repo().join("action.yml"));
    assert!(text.contains("\nname: nubes\n") && text.contains("\ndescription: "));
    let lines: Vec<&str> = text.lines().collect();

    let inputs = block(&lines, 0, "inputs").expect("inputs:");
    assert_eq!(keys(&inputs), INPUTS);
    let default = |input: &str| {
        let body = block(&inputs, 2, input).expect(input);
        field(&body, "default").unwrap_or_else(|| panic!("input {input}: no default"))
    };
    assert_eq!(default("command"), "run");
    assert_eq!(default("working-directory"), ".");
    assert_eq!(default("version"), "''");
    assert_eq!(default("release-url"), "''");
    for input in INPUTS {
        let body = block(&inputs, 2, input).unwrap();
        assert!(
            field(&body, "description").is_some(),
            "input {input}: no description"
        );
        assert_eq!(
            field(&body, "required").as_deref(),
            Some("false"),
            "input {input}"
        );
    }

    let outputs = block(&lines, 0, "outputs").expect("outputs:");
    assert_eq!(keys(&outputs), OUTPUTS);
    for output in OUTPUTS {
        let body = block(&outputs, 2, output).unwrap();
        assert_eq!(
            field(&body, "value"),
            Some(format!("${{{{ steps.nubes.outputs.{output} }}}}")),
            "output {output}"
        );
    }

    let runs = block(&lines, 0, "runs").expect("runs:");
    assert_eq!(field(&runs, "using").as_deref(), Some("composite"));
    let steps = block(&runs, 2, "steps").expect("runs.steps");
    let steps = list_items(&steps);
    assert!(
        steps
            .iter()
            .any(|s| field(s, "id").as_deref() == Some("nubes")),
        "no step with id nubes (the outputs map its outputs)"
    );
    for step in &steps {
        let step_text = step.join("\n");
        if let Some(uses) = field(step, "uses") {
            let pin = uses
                .split_once('@')
                .map(|(_, r)| r.split(' ').next().unwrap());
            assert!(
                pin.is_some_and(|p| p.len() == 40 && p.chars().all(|c| c.is_ascii_hexdigit())),
                "`uses: {uses}` is not pinned to a commit SHA"
            );
        }
        if field(step, "run").is_some() {
            assert_eq!(field(step, "shell").as_deref(), Some("bash"), "{step_text}");
            // Expressions reach scripts only through env: (template injection).
            let script = script(step);
            assert!(!script.trim().is_empty(), "empty run: script?\n{step_text}");
            assert!(
                !script.contains("${{"),
                "an expression is interpolated into a run: script:\n{script}"
            );
            assert!(
                !script.split_whitespace().any(|w| w == "eval"),
                "eval in a run: script:\n{script}"
            );
        }
    }
}

#[test]
fn readme_shows_the_example_workflow_and_the_action_interface() {
    let readme = read(&repo().join("README.md"));
    let example = read(&repo().join("examples/workflows/nubes.yml"));
    assert!(
        readme.contains(&format!("```yaml\n{example}```")),
        "README.md must show examples/workflows/nubes.yml verbatim in a ```yaml block"
    );
    let section = readme
        .split_once("\n## GitHub Actions\n")
        .expect("README.md: a `## GitHub Actions` section")
        .1;
    let section = section.split("\n## ").next().unwrap();
    for name in INPUTS.iter().chain(OUTPUTS.iter()) {
        assert!(
            section.contains(&format!("`{name}`")),
            "README.md's GitHub Actions section does not document `{name}`"
        );
    }
}

// --- A tiny reader for block-style YAML mappings: enough for action.yml, and no YAML
// crate is a dependency of nubes.

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_filler(line: &str) -> bool {
    line.trim().is_empty() || line.trim_start().starts_with('#')
}

/// The lines under `key:` written at `indent` spaces: the following lines that are
/// blank, comments, or indented further.
fn block<'a>(lines: &[&'a str], indent: usize, key: &str) -> Option<Vec<&'a str>> {
    let head = format!("{}{key}:", " ".repeat(indent));
    let mut lines = lines.iter().copied();
    lines.by_ref().find(|l| {
        l.strip_prefix(&head)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    })?;
    Some(
        lines
            .take_while(|l| is_filler(l) || indent_of(l) > indent)
            .collect(),
    )
}

/// The keys of the mapping in `body` (those at its first line's indentation).
fn keys(body: &[&str]) -> Vec<String> {
    let Some(first) = body.iter().find(|l| !is_filler(l)) else {
        return vec![];
    };
    let indent = indent_of(first);
    body.iter()
        .filter(|l| !is_filler(l) && indent_of(l) == indent)
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.to_string()))
        .collect()
}

/// The scalar value of `key` at the top level of `body` (a list item's `- ` counts as
/// indentation), without a trailing comment.
fn field(body: &[&str], key: &str) -> Option<String> {
    // A list item's first line: "- key: v" stands for "  key: v".
    let undash = |l: &str| match l.trim_start().strip_prefix("- ") {
        Some(rest) => format!("{}  {rest}", " ".repeat(indent_of(l))),
        None => l.to_string(),
    };
    let indent = indent_of(&undash(body.iter().find(|l| !is_filler(l))?));
    body.iter().find_map(|l| {
        let l = undash(l);
        if is_filler(&l) || indent_of(&l) != indent {
            return None;
        }
        let value = l.trim().strip_prefix(key)?.strip_prefix(':')?;
        let value = match value.find(" #") {
            Some(i) => &value[..i],
            None => value,
        };
        Some(value.trim().to_string())
    })
}

/// The items of the block-style list in `body`, each as its lines.
fn list_items<'a>(body: &[&'a str]) -> Vec<Vec<&'a str>> {
    let mut items: Vec<Vec<&str>> = vec![];
    let Some(indent) = body
        .iter()
        .find(|l| l.trim_start().starts_with("- "))
        .map(|l| indent_of(l))
    else {
        return items;
    };
    for line in body {
        if indent_of(line) == indent && line.trim_start().starts_with("- ") {
            items.push(vec![line]);
        } else if let Some(item) = items.last_mut() {
            item.push(line);
        }
    }
    items
}

/// The block scalar of a step's `run: |`.
fn script(step: &[&str]) -> String {
    let Some(at) = step.iter().position(|l| l.trim_start().starts_with("run:")) else {
        return String::new();
    };
    let indent = indent_of(step[at]);
    step[at + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent_of(l) > indent)
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}
