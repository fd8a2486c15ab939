//! Every combination `nubes init` accepts (the matrix in `src/init/matrix.rs`) is
//! rendered, and each project must: parse as HCL; have every module reference resolve
//! to a module folder it carries (and carry no other); tag every resource that takes
//! tags; declare the variables nubes passes, with only `environment` left without a
//! default; output what its deploy target needs; give a nubes.toml nubes's own loader
//! accepts; hold no secret values; and pass `terraform fmt -check`, checkov (no failed
//! check) and, for the workflow, actionlint and zizmor.
//!
//! The external tools start once (their start-up costs seconds) over the distinct
//! contents: identical files or Terraform trees give identical results, so each is
//! checked once and a failure names the combinations that rendered it. checkov, whose
//! cost is per project, runs as one process per core. The count and times are printed;
//! speed is measured by `scripts/bench.sh init`, never asserted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use nubes::init::matrix::{self, Choice, Combination, Runtime, Target, Tier};
use nubes::init::{self, Answers};

use crate::workflows::tool;

/// Projects per checkov run.
const CHECKOV_BATCH: usize = 60;

/// Resource types that take no `tags` argument.
const UNTAGGABLE: &[&str] = &[
    "azurerm_role_assignment",
    "azurerm_postgresql_flexible_server_firewall_rule",
    "azurerm_postgresql_flexible_server_database",
    "azurerm_mysql_flexible_server_firewall_rule",
    "azurerm_mysql_flexible_server_configuration",
    "azurerm_mysql_flexible_database",
    "azurerm_mssql_firewall_rule",
    "azurerm_cosmosdb_mongo_database",
    "azurerm_key_vault_secret",
    "azurerm_storage_container",
    "azurerm_storage_account_static_website",
    "random_password",
];

pub fn answers(c: Combination, tier: Tier) -> Answers {
    // Container apps with stepped traffic: the Multiple revision mode goes through
    // validate and checkov too.
    let containers = c.target == Target::ContainerApps;
    Answers {
        combination: c,
        tier,
        project: "petclinic".into(),
        location: "eastus".into(),
        state_account: Some("stpetclinicstate".into()),
        action: "my-org/nubes@0123456789abcdef0123456789abcdef01234567".into(),
        shared_registry: None,
        traffic_steps: containers.then(|| vec![10, 50, 100]),
        multiple_revisions: containers,
    }
}

/// Render each combination into `<root>/<id>/`; returns the ids.
fn render_all(root: &Path, combos: &[(Combination, Tier)]) -> Vec<String> {
    let mut ids = vec![];
    for (c, tier) in combos {
        let id = format!("{}.{}", c.id(), tier);
        let files =
            init::generate(&answers(c.clone(), *tier)).unwrap_or_else(|e| panic!("{id}: {e}"));
        for f in files {
            let path = root.join(&id).join(&f.path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, f.content).unwrap();
        }
        ids.push(id);
    }
    ids
}

fn hcl_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "tf"))
        .map(|e| e.into_path())
        .collect()
}

fn string_attr(block: &hcl::Block, name: &str) -> Option<String> {
    block
        .body()
        .attributes()
        .find(|a| a.key() == name)
        .and_then(|a| match a.expr() {
            hcl::Expression::String(s) => Some(s.clone()),
            _ => None,
        })
}

fn has_attr(block: &hcl::Block, name: &str) -> bool {
    block.body().attributes().any(|a| a.key() == name)
}

/// The checks done in Rust on one rendered project; returns the problems.
fn check_project(dir: &Path, c: &Combination) -> Vec<String> {
    let mut problems = vec![];
    let tf = dir.join("terraform");
    let mut module_sources = BTreeSet::new();
    let mut variables: BTreeMap<String, bool> = BTreeMap::new();
    let mut outputs = BTreeSet::new();
    for file in hcl_files(&tf) {
        let rel = file.strip_prefix(dir).unwrap().display().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let body = match hcl::parse(&text) {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("{rel}: not HCL: {e}"));
                continue;
            }
        };
        let root_file = file.parent() == Some(tf.as_path());
        for block in body.blocks() {
            let labels: Vec<&str> = block.labels().iter().map(|l| l.as_str()).collect();
            match (block.identifier(), labels.as_slice()) {
                ("module", [name]) => {
                    match string_attr(block, "source") {
                        Some(s) => {
                            module_sources.insert(s);
                        }
                        None => problems.push(format!("{rel}: module {name} has no source")),
                    }
                    if !has_attr(block, "tags") {
                        problems.push(format!("{rel}: module {name} is not given tags"));
                    }
                }
                ("resource", [kind, name])
                    if !UNTAGGABLE.contains(kind) && !has_attr(block, "tags") =>
                {
                    problems.push(format!("{rel}: resource {kind}.{name} has no tags"));
                }
                ("variable", [name]) if root_file => {
                    variables.insert(name.to_string(), has_attr(block, "default"));
                }
                ("output", [name]) if root_file => {
                    outputs.insert(name.to_string());
                }
                _ => {}
            }
        }
        for bad in [
            "password = \"",
            "AccountKey=",
            "-----BEGIN",
            "client_secret",
        ] {
            if text.contains(bad) {
                problems.push(format!("{rel}: contains `{bad}`"));
            }
        }
    }
    // Every module reference resolves to a folder with Terraform in it, and every
    // carried module is used.
    let mut carried = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(tf.join("modules")) {
        for e in entries.flatten() {
            carried.insert(format!("./modules/{}", e.file_name().to_string_lossy()));
        }
    }
    for s in &module_sources {
        let local = s.strip_prefix("./").map(|p| tf.join(p));
        if local.as_ref().is_none_or(|p| hcl_files(p).is_empty()) {
            problems.push(format!(
                "module source {s} does not resolve to a module folder"
            ));
        }
    }
    if carried != module_sources {
        problems.push(format!(
            "modules carried {carried:?} differ from modules used {module_sources:?}"
        ));
    }
    // The variables nubes passes; only `environment` without a default.
    for v in [
        "environment",
        "application_name",
        "location",
        "terraform_storage_account",
        "tags",
    ] {
        if !variables.contains_key(v) {
            problems.push(format!("variable {v} is not declared"));
        }
    }
    let required: Vec<_> = variables
        .iter()
        .filter(|(_, d)| !**d)
        .map(|(n, _)| n)
        .collect();
    if required != ["environment"] {
        problems.push(format!("variables without a default: {required:?}"));
    }
    let declared = nubes::render::declared_variables(&tf).unwrap();
    if declared.iter().collect::<Vec<_>>() != variables.keys().collect::<Vec<_>>() {
        problems.push(format!("nubes reads other variables: {declared:?}"));
    }
    // Outputs the pipeline and the deploy target read.
    let mut needed = vec!["application_url", "resource_group"];
    needed.extend(match c.target {
        Target::StaticSite => &["static_site_account_url"][..],
        Target::AppService | Target::Functions => &["app_name", "scm_url"][..],
        Target::ContainerApps => &["container_app_id", "container_registry_login_server"][..],
    });
    for o in needed {
        if !outputs.contains(o) {
            problems.push(format!("output {o} is missing"));
        }
    }
    // nubes.toml as nubes itself reads it.
    match nubes::config::load(dir, None, &Default::default()) {
        Err(e) => problems.push(format!("nubes.toml is refused: {e}")),
        Ok(s) => {
            let want = c.target.name();
            if s.deploy.target.as_deref() != Some(want) {
                problems.push(format!("[deploy] target is {:?}", s.deploy.target));
            }
            if let Some(argv) = &s.deploy.command {
                // Outputs reach the command only as NUBES_OUTPUT_<NAME>, of real outputs.
                let joined = argv.join(" ");
                for var in joined.split('$').skip(1) {
                    let name: String = var
                        .trim_start_matches('{')
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if let Some(o) = name.strip_prefix("NUBES_OUTPUT_")
                        && !outputs.contains(&o.to_lowercase())
                    {
                        problems.push(format!("deploy command reads {name}, not an output"));
                    }
                }
            }
        }
    }
    let workflow = std::fs::read_to_string(dir.join(".github/workflows/nubes.yml")).unwrap();
    let template_left = workflow.contains("{%") || workflow.replace("${{", "").contains("{{");
    if workflow.contains("${{ secrets.") || template_left {
        problems.push("workflow uses secrets or kept template syntax".into());
    }
    for line in workflow
        .lines()
        .filter(|l| l.trim_start().starts_with("- uses:") || l.trim_start().starts_with("uses:"))
    {
        let pin = line
            .split('@')
            .nth(1)
            .and_then(|r| r.split_whitespace().next());
        if !pin.is_some_and(|p| p.len() == 40 && p.chars().all(|c| c.is_ascii_hexdigit())) {
            problems.push(format!(
                "workflow: `{}` is not pinned to a commit SHA",
                line.trim()
            ));
        }
    }
    problems
}

fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// checkov over the tree: (failures as "id: check resource file", skipped check IDs).
fn checkov(root: &Path, quiet: bool) -> (Vec<String>, BTreeSet<String>) {
    let mut cmd = Command::new(tool("NUBES_TEST_CHECKOV", "checkov"));
    cmd.args(["--framework", "terraform", "--compact", "-o", "json", "-d"])
        .arg(root);
    if quiet {
        cmd.arg("--quiet");
    }
    let (code, stdout, stderr) = run(&mut cmd);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov (exit {code:?}) did not print JSON ({e}):\n{stderr}\n{}",
            &stdout[..stdout.len().min(2000)]
        )
    });
    let reports = match doc {
        serde_json::Value::Array(a) => a,
        other => vec![other],
    };
    let mut failed = vec![];
    let mut skipped = BTreeSet::new();
    for r in &reports {
        let parsing = r["summary"]["parsing_errors"].as_u64().unwrap_or(0);
        assert_eq!(
            parsing, 0,
            "checkov could not parse some files: {}",
            r["summary"]
        );
        for f in r["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            failed.push(format!(
                "{} {} {}",
                f["check_id"].as_str().unwrap_or("?"),
                f["resource"].as_str().unwrap_or("?"),
                f["file_path"].as_str().unwrap_or("?"),
            ));
        }
        for f in r["results"]["skipped_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            skipped.insert(f["check_id"].as_str().unwrap_or("?").to_string());
        }
    }
    (failed, skipped)
}

/// The inline `#checkov:skip=ID:reason` comments of the modules shipped with nubes.
fn inline_skips() -> BTreeMap<String, Vec<String>> {
    let mut skips: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("terraform/modules");
    for file in hcl_files(&dir) {
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            if let Some(rest) = line.trim().strip_prefix("#checkov:skip=") {
                let (id, reason) = rest.split_once(':').unwrap_or((rest, ""));
                assert!(
                    reason.trim().len() > 10,
                    "{}: checkov:skip={id} without a reason",
                    file.display()
                );
                skips
                    .entry(id.to_string())
                    .or_default()
                    .push(file.display().to_string());
            }
        }
    }
    skips
}

/// Files with the same content, written once each into `dir` as `<n>.<ext>`; returns,
/// per written file, the ids of the combinations that rendered it.
fn unique_files(
    dir: &Path,
    ext: &str,
    files: impl Iterator<Item = (String, String)>,
) -> Vec<Vec<String>> {
    std::fs::create_dir_all(dir).unwrap();
    let mut by_content: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, content) in files {
        by_content.entry(content).or_default().push(id);
    }
    let mut owners = vec![];
    for (n, (content, ids)) in by_content.into_iter().enumerate() {
        std::fs::write(dir.join(format!("{n}.{ext}")), content).unwrap();
        owners.push(ids);
    }
    owners
}

/// The combinations behind the `<n>.<ext>` files a tool's output names.
fn owners_named(owners: &[Vec<String>], ext: &str, output: &str) -> Vec<String> {
    let mut out = vec![];
    for (n, ids) in owners.iter().enumerate() {
        if output.contains(&format!("{n}.{ext}")) {
            out.extend(ids.iter().take(3).cloned());
        }
    }
    out.truncate(20);
    out
}

#[test]
fn every_combination_init_accepts_renders_a_sound_project() {
    let combos: Vec<(Combination, Tier)> =
        matrix::all().into_iter().map(|c| (c, Tier::Dev)).collect();
    let tmp = tempfile::tempdir().unwrap();
    let projects = tmp.path().join("projects");
    let started = Instant::now();
    let ids = render_all(&projects, &combos);
    eprintln!(
        "rendered {} combinations (target × runtime × database × add-on set) in {:.2?}",
        ids.len(),
        started.elapsed()
    );

    let mut problems = vec![];
    for ((c, _), id) in combos.iter().zip(&ids) {
        for p in check_project(&projects.join(id), c) {
            problems.push(format!("{id}: {p}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems[..problems.len().min(40)].join("\n")
    );

    // The tools see each distinct file (or Terraform tree) once: identical content gives
    // identical results, and the module files are the same in every project.
    let read =
        |id: &String, rel: &str| std::fs::read_to_string(projects.join(id).join(rel)).unwrap();
    let tf_files = ids.iter().flat_map(|id| {
        hcl_files(&projects.join(id))
            .into_iter()
            .map(move |f| (id.clone(), std::fs::read_to_string(f).unwrap()))
    });
    let t = Instant::now();
    let fmt_dir = tmp.path().join("fmt");
    let owners = unique_files(&fmt_dir, "tf", tf_files);
    let (code, out, err) = run(Command::new("terraform")
        .args(["fmt", "-check", "-list=true"])
        .arg(&fmt_dir));
    assert_eq!(
        code,
        Some(0),
        "terraform fmt -check: files to reformat, from {:?}:\n{out}\n{err}",
        owners_named(&owners, "tf", &out)
    );
    eprintln!(
        "terraform fmt -check: {} distinct .tf files in {:.2?}",
        owners.len(),
        t.elapsed()
    );

    let t = Instant::now();
    let wf_dir = tmp.path().join("workflows");
    let owners = unique_files(
        &wf_dir,
        "yml",
        ids.iter()
            .map(|id| (id.clone(), read(id, ".github/workflows/nubes.yml"))),
    );
    let names: Vec<String> = (0..owners.len()).map(|n| format!("{n}.yml")).collect();
    let (code, out, err) = run(Command::new(tool("NUBES_TEST_ACTIONLINT", "actionlint"))
        .args(&names)
        .current_dir(&wf_dir));
    assert_eq!(
        code,
        Some(0),
        "actionlint, in {:?}:\n{out}\n{err}",
        owners_named(&owners, "yml", &out)
    );
    let (code, out, err) = run(Command::new(tool("NUBES_TEST_ZIZMOR", "zizmor"))
        .arg("--offline")
        .args(&names)
        .current_dir(&wf_dir));
    assert_eq!(
        code,
        Some(0),
        "zizmor, in {:?}:\n{out}\n{err}",
        owners_named(&owners, "yml", &out)
    );
    eprintln!(
        "actionlint + zizmor: {} distinct workflows in {:.2?}",
        owners.len(),
        t.elapsed()
    );

    // checkov: each distinct Terraform tree once, in batches (its cost grows faster than
    // the number of projects in one run) taken from a queue by one worker per core.
    let t = Instant::now();
    let mut trees: BTreeMap<String, &String> = BTreeMap::new();
    for id in &ids {
        let mut key = String::new();
        for f in hcl_files(&projects.join(id).join("terraform")) {
            key += &f
                .strip_prefix(projects.join(id))
                .unwrap()
                .display()
                .to_string();
            key += &std::fs::read_to_string(&f).unwrap();
        }
        trees.entry(key).or_insert(id);
    }
    let scan = tmp.path().join("checkov");
    let batches = trees.len().div_ceil(CHECKOV_BATCH);
    for (n, id) in trees.values().enumerate() {
        let to = scan.join(format!("batch{}", n % batches)).join(id);
        copy_dir(&projects.join(id).join("terraform"), &to);
    }
    let jobs = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<(Vec<String>, BTreeSet<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..jobs)
            .map(|_| {
                let (scan, next) = (&scan, &next);
                s.spawn(move || {
                    let mut out = vec![];
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if k >= batches {
                            return out;
                        }
                        out.push(checkov(&scan.join(format!("batch{k}")), true));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let failed: Vec<String> = results.into_iter().flat_map(|(f, _)| f).collect();
    eprintln!(
        "checkov: {} distinct Terraform trees, {batches} runs on {jobs} workers, {:.2?}",
        trees.len(),
        t.elapsed()
    );
    assert!(
        failed.is_empty(),
        "checkov: {} failed checks, e.g.:\n{}",
        failed.len(),
        failed[..failed.len().min(40)].join("\n")
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from).into_iter().flatten() {
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// Every tier, on the combinations that use each module, and every inline checkov skip
/// is one checkov actually applies (no stale exceptions).
#[test]
fn every_tier_passes_and_every_checkov_skip_is_needed() {
    let mut combos = vec![];
    for &tier in Tier::ALL {
        // Every add-on, for each target and database, covers every module.
        for c in matrix::all() {
            let all_addons = c.addons.len() == 4 || c.target == Target::StaticSite;
            let one_runtime = match c.target {
                Target::StaticSite => c.runtime == Runtime::Static,
                Target::ContainerApps => c.runtime == Runtime::Docker,
                _ => c.runtime == Runtime::Java,
            };
            if all_addons && one_runtime {
                combos.push((c, tier));
            }
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let ids = render_all(tmp.path(), &combos);
    let (code, out, err) = run(Command::new("terraform")
        .args(["fmt", "-check", "-recursive", "-list=true"])
        .arg(tmp.path()));
    assert_eq!(code, Some(0), "terraform fmt -check:\n{out}\n{err}");
    let (failed, skipped) = checkov(tmp.path(), false);
    assert!(
        failed.is_empty(),
        "checkov over {} projects:\n{}",
        ids.len(),
        failed.join("\n")
    );
    let inline = inline_skips();
    let unused: Vec<_> = inline
        .iter()
        .filter(|(id, _)| !skipped.contains(*id))
        .collect();
    assert!(
        unused.is_empty(),
        "checkov:skip comments for checks that never fire: {unused:?}"
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `scripts/bench.sh init`: the time to render every combination (in memory, and
/// written to disk), and one `nubes init` run of the real binary in a fresh repository.
/// Prints a Markdown table; asserts nothing about speed.
#[test]
#[ignore = "benchmark: scripts/bench.sh init"]
fn bench_init() {
    let runs: usize = std::env::var("NUBES_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let combos: Vec<(Combination, Tier)> =
        matrix::all().into_iter().map(|c| (c, Tier::Dev)).collect();
    let (mut memory, mut disk, mut one) = (vec![], vec![], vec![]);
    let mut files = 0;
    for _ in 0..runs {
        let t = Instant::now();
        files = 0;
        for (c, tier) in &combos {
            files += init::generate(&answers(c.clone(), *tier)).unwrap().len();
        }
        memory.push(t.elapsed().as_secs_f64());
        let tmp = tempfile::tempdir().unwrap();
        let t = Instant::now();
        render_all(tmp.path(), &combos);
        disk.push(t.elapsed().as_secs_f64());

        let repo = tempfile::tempdir().unwrap();
        std::fs::write(
            repo.path().join("pom.xml"),
            "<project><parent><artifactId>spring-boot-starter-parent</artifactId></parent></project>",
        )
        .unwrap();
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_nubes"))
            .args([
                "init",
                "--name",
                "bench",
                "--database",
                "postgresql",
                "--addons",
            ])
            .arg("application-insights,key-vault,redis,storage-blob")
            .current_dir(repo.path())
            .stdin(Stdio::null())
            .env_remove("CI")
            .output()
            .unwrap();
        one.push(t.elapsed().as_secs_f64());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!("| benchmark | median of {runs} |");
    println!("|---|---|");
    println!(
        "| render all {} combinations in memory ({files} files) | {:.2} s |",
        combos.len(),
        median(memory)
    );
    println!(
        "| render all {} combinations and write them to disk | {:.2} s |",
        combos.len(),
        median(disk)
    );
    println!(
        "| one `nubes init` (spring-boot, postgresql, 4 add-ons: 11 files), process start to exit | {:.0} ms |",
        median(one) * 1000.0
    );
}
