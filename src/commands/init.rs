//! `nubes init`: settle the choices (flags > what a previous `init` recorded in
//! nubes.toml > what the repository suggests > defaults, and a prompt on a terminal),
//! render the project's files, decide for each one against what is on disk and what
//! init wrote last time (`nubes-init.lock`, see `init/manifest.rs`), then write:
//! untouched files updated, edits kept or merged, conflicts beside as `.nubes-new`
//! (or, with `--force`, overwritten with a `.nubes-backup`). No edit is ever lost.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use crate::cli::InitArgs;
use crate::error::{Error, Result, exit};
use crate::init::manifest::{self, Action, Manifest};
use crate::init::matrix::{self, Addon, Choice, Combination, Database, Runtime, Target, Tier};
use crate::init::scan::{self, Scan};
use crate::init::{self as engine, Answers, File, PLACEHOLDER_ACTION};

/// What happens to one file (the decision of [`manifest::decide`], plus `--force`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Create,
    Unchanged,
    /// Not edited since init wrote it: replaced by the new version.
    Update,
    /// Edited, and init's version has not changed: left alone.
    Keep,
    /// Edited, and init's version changed elsewhere: merged three-way.
    Merge,
    /// Cannot be merged: the new version is written beside it as `.nubes-new`.
    Conflict,
    /// A conflict overwritten because of `--force`, the user's version backed up.
    Overwrite,
}

impl Status {
    fn done(self) -> &'static str {
        match self {
            Status::Create => "created",
            Status::Unchanged => "unchanged",
            Status::Update => "updated",
            Status::Keep => "kept",
            Status::Merge => "merged",
            Status::Conflict => "conflict",
            Status::Overwrite => "overwritten",
        }
    }

    fn would(self) -> &'static str {
        match self {
            Status::Create => "would create",
            Status::Unchanged => "unchanged",
            Status::Update => "would update",
            Status::Keep => "kept",
            Status::Merge => "would merge",
            Status::Conflict => "conflict",
            Status::Overwrite => "would overwrite",
        }
    }

    /// Whether the file on disk would change (or needs the user).
    fn changes(self) -> bool {
        !matches!(self, Status::Unchanged | Status::Keep)
    }
}

/// One generated file: what is on disk, what happens to it, and what to write.
struct Planned {
    file: File,
    status: Status,
    /// What is on disk now, byte for byte (for the conflict's diff and the backup).
    disk: Option<Vec<u8>>,
    /// The text written to `file.path` (new or merged), when it is written.
    write: Option<String>,
}

/// Where init's version of a conflicting file is written, beside the user's.
fn new_path(path: &str) -> String {
    format!("{path}.nubes-new")
}

/// `config`: the `--config` path (relative to `root`), written instead of nubes.toml.
pub fn run(root: &Path, config: Option<&Path>, args: &InitArgs) -> Result<()> {
    if !root.is_dir() {
        return Err(Error::input(format!(
            "-C {}: no such directory",
            root.display()
        )));
    }
    let config = config.unwrap_or(Path::new("nubes.toml"));
    let scan = scan::scan(root);
    if let Some(evidence) = &scan.evidence {
        tracing::info!(
            "found {evidence}: proposing runtime {} on {}",
            scan.runtime.map(|r| r.name()).unwrap_or("?"),
            scan.target.map(|t| t.name()).unwrap_or("?")
        );
    }
    let answers = resolve(root, config, &scan, args, interactive(args))?;
    let mut files = engine::generate(&answers)?;
    for f in &mut files {
        if f.path == "nubes.toml" {
            f.path = config.to_string_lossy().replace('\\', "/");
        }
        // An existing ignore file keeps its lines and gains only those it lacks.
        if engine::append_only(&f.path)
            && let Ok(disk) = std::fs::read_to_string(root.join(&f.path))
        {
            f.content = engine::merge_lines(&disk, &f.content);
        }
    }
    let mut recorded = match read_manifest(root) {
        Some(m) => m,
        None => reconstructed_base(root, config, &scan).unwrap_or_default(),
    };
    let plan = compare(root, &files, &recorded, args.force)?;
    if args.check {
        for p in &plan {
            crate::outln!("{:<12} {}", p.status.would(), p.file.path);
        }
        if plan.iter().all(|p| !p.status.changes()) {
            crate::outln!("nubes init: everything is up to date");
            return Ok(());
        }
        eprintln!(
            "nubes init: files would change; run `nubes init` (edited files are merged or kept; conflicts get a .nubes-new beside them)"
        );
        return Err(Error::Quiet(exit::CHANGES));
    }
    write(root, &plan)?;
    for p in &plan {
        recorded.record(&p.file.path, &p.file.content);
    }
    crate::workdir::write_if_changed(&root.join(manifest::PATH), recorded.to_text().as_bytes())?;
    report(&plan);
    let conflicts: Vec<&str> = plan
        .iter()
        .filter(|p| p.status == Status::Conflict)
        .map(|p| p.file.path.as_str())
        .collect();
    if !conflicts.is_empty() {
        return Err(Error::failed(format!(
            "{} edited file(s) could not be merged with init's new version, which is beside each as .nubes-new:\n  {}",
            conflicts.len(),
            conflicts.join("\n  ")
        ))
        .hint("merge what you want from each .nubes-new into the file and delete the .nubes-new (init leaves the file alone while it exists), or rerun with --force to take init's version (yours is kept as .nubes-backup)"));
    }
    if plan.iter().all(|p| p.status == Status::Unchanged) {
        crate::outln!("nubes init: nothing changed, the project is up to date");
    }
    next_steps(&answers);
    Ok(())
}

/// The manifest of the last run; `None` when there is none (a project initialised
/// before nubes kept one).
fn read_manifest(root: &Path) -> Option<Manifest> {
    match std::fs::read_to_string(root.join(manifest::PATH)) {
        Ok(text) => Some(Manifest::parse(&text).unwrap_or_else(|| {
            tracing::warn!(
                "{} is not a manifest this nubes reads: files that differ from init's version are treated as conflicts",
                manifest::PATH
            );
            Manifest::default()
        })),
        Err(_) => None,
    }
}

/// For a project initialised before nubes kept `nubes-init.lock`: the files init
/// generates for the choices its nubes.toml records (`# nubes init: …`), taken as what
/// was generated. A file the user left alone then matches and is updated; an edit is
/// merged against it; only what cannot be merged is a conflict (as it was for every
/// differing file without a base). `None` when nubes.toml records no choices.
fn reconstructed_base(root: &Path, config: &Path, scan: &Scan) -> Option<Manifest> {
    let toml = std::fs::read_to_string(root.join(config)).ok()?;
    if crate::init::read_choices(&toml).is_empty() {
        return None;
    }
    let previous = match resolve(root, config, scan, &InitArgs::default(), false)
        .and_then(|a| engine::generate(&a))
    {
        Ok(files) => files,
        Err(e) => {
            tracing::debug!("cannot regenerate the previous choices: {e}");
            return None;
        }
    };
    tracing::info!(
        "no {}: the files init generates for the choices recorded in {} are taken as what it generated before (edits are merged against them)",
        manifest::PATH,
        config.display()
    );
    let mut base = Manifest::default();
    for f in previous {
        let path = if f.path == "nubes.toml" {
            config.to_string_lossy().replace('\\', "/")
        } else {
            f.path
        };
        base.record(&path, &f.content);
    }
    Some(base)
}

/// Write what the plan says, each file on its own (nothing the user wrote is lost:
/// conflicts go beside, overwrites keep a backup).
fn write(root: &Path, plan: &[Planned]) -> Result<()> {
    for p in plan {
        let path = root.join(&p.file.path);
        let beside = root.join(new_path(&p.file.path));
        match p.status {
            Status::Conflict => {
                crate::workdir::write_if_changed(&beside, p.file.content.as_bytes())?
            }
            Status::Overwrite => {
                if let Some(disk) = &p.disk {
                    let backup = free_backup_path(root, &p.file.path);
                    fs_err::write(root.join(&backup), disk)?;
                }
                fs_err::write(&path, &p.file.content)?;
            }
            _ => {
                if let Some(text) = &p.write {
                    crate::workdir::write_if_changed(&path, text.as_bytes())?;
                }
            }
        }
        // A resolved conflict (the file is init's version now, or --force took it):
        // the .nubes-new beside it has done its job.
        if matches!(p.status, Status::Unchanged | Status::Overwrite) && beside.exists() {
            fs_err::remove_file(&beside)?;
        }
    }
    Ok(())
}

/// `<path>.nubes-backup`, or `-2`, `-3`… when an older backup is there (never lost).
fn free_backup_path(root: &Path, path: &str) -> String {
    let first = format!("{path}.nubes-backup");
    if !root.join(&first).exists() {
        return first;
    }
    (2..)
        .map(|n| format!("{first}-{n}"))
        .find(|p| !root.join(p).exists())
        .unwrap_or(first)
}

fn report(plan: &[Planned]) {
    for p in plan {
        let note = match p.status {
            Status::Keep => " (your edits; init's version has not changed)",
            Status::Merge => " (your edits kept, init's changes merged in)",
            Status::Conflict => " (init's version written beside it as .nubes-new)",
            Status::Overwrite => " (yours kept as .nubes-backup)",
            _ => "",
        };
        crate::outln!("{:<12} {}{note}", p.status.done(), p.file.path);
    }
    for p in plan.iter().filter(|p| p.status == Status::Conflict) {
        crate::outln!();
        let new = new_path(&p.file.path);
        let disk = String::from_utf8_lossy(p.disk.as_deref().unwrap_or_default());
        crate::out!(
            "{}",
            manifest::diff(&p.file.path, &disk, &new, &p.file.content, 80)
        );
    }
}

/// Prompt only when a person is there: stdin and stderr on a terminal, not in CI.
fn interactive(args: &InitArgs) -> bool {
    wants_prompt(
        args.yes,
        std::io::stdin().is_terminal(),
        std::io::stderr().is_terminal(),
        std::env::var("CI").ok().as_deref(),
    )
}

fn wants_prompt(yes: bool, stdin_tty: bool, stderr_tty: bool, ci: Option<&str>) -> bool {
    let in_ci = ci.is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
    !yes && stdin_tty && stderr_tty && !in_ci
}

/// Each file with what would happen to it: the three-way decision against what init
/// recorded last time; `--force` turns a conflict into an overwrite (with a backup);
/// while a `.nubes-new` from an earlier conflict is there, the file stays a conflict.
fn compare(root: &Path, files: &[File], recorded: &Manifest, force: bool) -> Result<Vec<Planned>> {
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let path = root.join(&f.path);
        let disk = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Error::failed(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        // A file that is not UTF-8 cannot be merged: its text is no ancestor's.
        let action = match disk.as_deref().map(std::str::from_utf8) {
            None => Action::Create,
            // Its content is the file's own lines plus the missing ones (see `run`).
            Some(Ok(t)) if engine::append_only(&f.path) => {
                if t == f.content {
                    Action::Unchanged
                } else {
                    Action::Update
                }
            }
            Some(Ok(t)) => manifest::decide(recorded.base(&f.path), Some(t), &f.content),
            Some(Err(_)) => Action::Conflict,
        };
        let pending = root.join(new_path(&f.path)).exists();
        let (status, write) = match action {
            Action::Create => (Status::Create, Some(f.content.clone())),
            Action::Unchanged => (Status::Unchanged, None),
            _ if force && (pending || action == Action::Conflict) => (Status::Overwrite, None),
            _ if pending => (Status::Conflict, None),
            Action::Update => (Status::Update, Some(f.content.clone())),
            Action::Keep => (Status::Keep, None),
            Action::Merge(merged) => (Status::Merge, Some(merged)),
            Action::Conflict => (Status::Conflict, None),
        };
        out.push(Planned {
            file: f.clone(),
            status,
            disk,
            write,
        });
    }
    Ok(out)
}

/// What a previous init left in nubes.toml: the recorded choices, the project's name,
/// location and state account.
#[derive(Default)]
struct Previous {
    choices: Vec<(String, String)>,
    name: Option<String>,
    location: Option<String>,
    state_account: Option<String>,
    /// `[deploy] traffic_steps` of the existing nubes.toml (whoever wrote it).
    traffic_steps: Option<usize>,
}

impl Previous {
    fn read(root: &Path, config: &Path) -> Previous {
        let Ok(text) = std::fs::read_to_string(root.join(config)) else {
            return Previous::default();
        };
        let table: toml::Table = toml::from_str(&text).unwrap_or_default();
        let get = |section: &str, key: &str| {
            table
                .get(section)
                .and_then(|s| s.get(key))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        Previous {
            choices: engine::read_choices(&text),
            name: get("project", "name"),
            location: get("project", "location"),
            state_account: get("state", "account"),
            traffic_steps: table
                .get("deploy")
                .and_then(|d| d.get("traffic_steps"))
                .and_then(|v| v.as_array())
                .map(Vec::len),
        }
    }

    fn choice(&self, flag: &str) -> Option<&str> {
        self.choices
            .iter()
            .find(|(f, _)| f == flag)
            .map(|(_, v)| v.as_str())
    }
}

/// A choice from the flag, else the previous init, else the proposal.
fn pick<T: Choice>(flag: &Option<String>, previous: Option<&str>, proposed: T) -> Result<T> {
    match flag.as_deref().or(previous) {
        Some(v) => T::parse(v),
        None => Ok(proposed),
    }
}

/// The answers from the flags, the choices nubes.toml recorded, the `scan` of the
/// repository (and the prompts, when `ask`).
fn resolve(root: &Path, config: &Path, scan: &Scan, args: &InitArgs, ask: bool) -> Result<Answers> {
    let prev = Previous::read(root, config);
    let runtime_given = args.runtime.as_deref().or(prev.choice("runtime"));
    let mut runtime = match (runtime_given, scan.runtime) {
        (Some(r), _) => Some(Runtime::parse(r)?),
        (None, found) => found,
    };
    if ask {
        runtime = Some(prompt("runtime", runtime)?);
    }
    let Some(runtime) = runtime else {
        return Err(Error::input(
            "could not tell what this repository is (no pom.xml, build.gradle, package.json, requirements.txt, pyproject.toml, *.csproj, Dockerfile or index.html)",
        )
        .hint(format!(
            "pass --runtime ({})",
            names::<Runtime>()
        )));
    };
    let target = pick(
        &args.target,
        prev.choice("target"),
        proposed_target(scan, runtime),
    )?;
    let mut target = target;
    if ask {
        target = prompt("target", Some(target))?;
    }
    let mut database = pick(&args.database, prev.choice("database"), Database::None)?;
    let mut addons = match args.addons.as_deref().or(prev.choice("addons")) {
        Some(list) => matrix::parse_addons(list)?,
        None => vec![],
    };
    let mut tier = pick(&args.tier, prev.choice("tier"), Tier::Dev)?;
    if ask && target != Target::StaticSite {
        database = prompt("database", Some(database))?;
        addons = prompt_addons(&addons)?;
        tier = prompt("tier", Some(tier))?;
    }
    let combination = Combination {
        target,
        runtime,
        database,
        addons,
    };
    matrix::check(&combination)?;
    if target == Target::ContainerApps && !scan.has_dockerfile {
        tracing::warn!(
            "there is no Dockerfile: the container-apps deploy builds the image from one in the repository root"
        );
    }

    let name = match args.name.clone().or(prev.name.clone()) {
        Some(n) => n,
        None => scan::name_from_folder(&std::path::absolute(root)?).ok_or_else(|| {
            Error::input("the folder's name does not make a project name")
                .hint("pass --name, e.g. --name petclinic")
        })?,
    };
    if !scan::valid_name(&name) {
        return Err(
            Error::input(format!("--name `{name}` is not a usable project name")).hint(format!(
                "1 to {} lowercase letters, digits and single hyphens, starting with a letter",
                scan::MAX_NAME
            )),
        );
    }
    let location = args
        .location
        .clone()
        .or(prev.location.clone())
        .unwrap_or_else(|| "eastus".into());
    if location.is_empty()
        || !location
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Err(Error::input(format!(
            "--location `{location}` is not an Azure region name"
        ))
        .hint(
            "use the short name, e.g. eastus, westeurope (`az account list-locations -o table`)",
        ));
    }
    let state_account = args.state_account.clone().or(prev.state_account.clone());
    if let Some(a) = &state_account
        && !((3..=24).contains(&a.len())
            && a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
    {
        return Err(Error::input(format!(
            "--state-account `{a}` is not a storage account name"
        ))
        .hint("3 to 24 lowercase letters and digits"));
    }
    let action = args
        .action
        .clone()
        .or(prev.choice("action").map(str::to_string))
        .unwrap_or_else(|| PLACEHOLDER_ACTION.to_string());
    if !valid_action(&action) {
        return Err(Error::input(format!(
            "--action `{action}` is not a pinned action reference"
        ))
        .hint("use OWNER/REPO@<the full 40-character commit SHA>, e.g. my-org/nubes@0123…"));
    }
    let shared_registry = match args
        .shared_registry
        .clone()
        // A recorded one applies while the target stays container-apps.
        .or(prev
            .choice("shared-registry")
            .filter(|_| target == Target::ContainerApps)
            .map(str::to_string))
    {
        Some(raw) => Some(shared_registry(&raw, target)?),
        None => None,
    };
    let traffic_steps = match args.traffic_steps.clone().or(prev
        .choice("traffic-steps")
        .filter(|_| target == Target::ContainerApps)
        .map(str::to_string))
    {
        Some(_) if target != Target::ContainerApps => {
            return Err(Error::input(format!(
                "--traffic-steps is for --target container-apps, not {target}"
            ))
            .hint("drop --traffic-steps, or choose --target container-apps"));
        }
        Some(_) if prev.traffic_steps.is_some() && prev.choice("traffic-steps").is_none() => {
            return Err(Error::input(
                "--traffic-steps: nubes.toml sets [deploy] traffic_steps already",
            )
            .hint("change them there and run `nubes init` again without --traffic-steps (it reads them)"));
        }
        Some(raw) => Some(crate::config::traffic_steps_flag(&raw)?),
        None => None,
    };
    // Traffic shifts only between revisions side by side: more than one step (given now,
    // or already in nubes.toml) needs the Multiple revision mode.
    let multiple_revisions = target == Target::ContainerApps
        && traffic_steps
            .as_ref()
            .map(Vec::len)
            .or(prev.traffic_steps)
            .is_some_and(|n| n > 1);
    Ok(Answers {
        combination,
        tier,
        project: name,
        location,
        state_account,
        action,
        shared_registry,
        traffic_steps,
        multiple_revisions,
    })
}

/// `--shared-registry RESOURCE_GROUP/NAME`: an Azure Container Registry (5–50 letters and
/// digits) in a resource group (1–90 of letters, digits, `-_.()`, not ending in `.`), for
/// container-apps only.
fn shared_registry(raw: &str, target: Target) -> Result<(String, String)> {
    let shown = crate::env_name::quoted(raw);
    if target != Target::ContainerApps {
        return Err(Error::input(format!(
            "--shared-registry {shown} is for --target container-apps, not {target}"
        ))
        .hint("drop --shared-registry, or choose --target container-apps"));
    }
    let hint = "use RESOURCE_GROUP/NAME of an existing Azure Container Registry, e.g. rg-shared/crpetclinic";
    let Some((group, name)) = raw.split_once('/') else {
        return Err(Error::input(format!(
            "--shared-registry {shown} is not RESOURCE_GROUP/NAME"
        ))
        .hint(hint));
    };
    let group_ok = (1..=90).contains(&group.len())
        && !group.ends_with('.')
        && group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'));
    let name_ok = (5..=50).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric());
    if !group_ok || !name_ok {
        return Err(Error::input(format!(
            "--shared-registry {shown}: {} is not a valid {}",
            if group_ok {
                "the name"
            } else {
                "the resource group"
            },
            if group_ok {
                "registry name (5 to 50 letters and digits)"
            } else {
                "resource group name"
            }
        ))
        .hint(hint));
    }
    Ok((group.to_string(), name.to_string()))
}

/// `owner/repo[/path]@<40 hex>`.
fn valid_action(s: &str) -> bool {
    let Some((repo, sha)) = s.split_once('@') else {
        return false;
    };
    let parts: Vec<&str> = repo.split('/').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
        && sha.len() == 40
        && sha
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// The scanned target if it can run the runtime, else the first target that can.
fn proposed_target(scan: &Scan, runtime: Runtime) -> Target {
    let fits = |t: Target| {
        matrix::check(&Combination {
            target: t,
            runtime,
            database: Database::None,
            addons: vec![],
        })
        .is_ok()
    };
    if let Some(t) = scan
        .target
        .filter(|t| fits(*t) && scan.runtime == Some(runtime))
    {
        return t;
    }
    [
        Target::AppService,
        Target::ContainerApps,
        Target::Functions,
        Target::StaticSite,
    ]
    .into_iter()
    .find(|t| fits(*t))
    .unwrap_or(Target::AppService)
}

fn names<T: Choice>() -> String {
    T::ALL
        .iter()
        .map(|v| v.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_answer(question: &str) -> Result<String> {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        return Err(
            Error::input("no answer (end of input)").hint("pass the choices as flags, or --yes")
        );
    }
    Ok(line.trim().to_string())
}

/// Ask for one choice until the answer is valid; Enter keeps the proposal.
fn prompt<T: Choice + std::fmt::Display>(what: &str, proposed: Option<T>) -> Result<T> {
    loop {
        let default = proposed.map(|p| format!(" [{p}]")).unwrap_or_default();
        let answer = read_answer(&format!("{what} ({}){default}: ", names::<T>()))?;
        match (answer.is_empty(), proposed) {
            (true, Some(p)) => return Ok(p),
            (true, None) => continue,
            _ => match T::parse(&answer) {
                Ok(v) => return Ok(v),
                Err(e) => eprintln!("{e}"),
            },
        }
    }
}

fn prompt_addons(proposed: &[Addon]) -> Result<Vec<Addon>> {
    let current = if proposed.is_empty() {
        "none".to_string()
    } else {
        proposed
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(",")
    };
    loop {
        let answer = read_answer(&format!(
            "add-ons, comma-separated ({}, or none) [{current}]: ",
            names::<Addon>()
        ))?;
        if answer.is_empty() {
            return Ok(proposed.to_vec());
        }
        match matrix::parse_addons(&answer) {
            Ok(a) => return Ok(a),
            Err(e) => eprintln!("{e}"),
        }
    }
}

fn next_steps(a: &Answers) {
    crate::outln!();
    crate::outln!("next:");
    let mut step = 1;
    if a.state_account.is_none() {
        crate::outln!(
            "  {step}. nubes bootstrap    # create the state storage, then set [state] account in nubes.toml"
        );
        step += 1;
    }
    if a.action == PLACEHOLDER_ACTION {
        crate::outln!(
            "  {step}. pin the nubes action: nubes init --action <owner>/nubes@<commit sha>"
        );
        step += 1;
    }
    crate::outln!(
        "  {step}. set the repository variables AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_SUBSCRIPTION_ID (OIDC)"
    );
    crate::outln!(
        "  {}. git add nubes.toml nubes-init.lock terraform .github && git commit -m \"nubes init\" && git switch -c env-dev && git push -u origin env-dev",
        step + 1
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_only_for_a_person_at_a_terminal_outside_ci() {
        assert!(wants_prompt(false, true, true, None));
        assert!(wants_prompt(false, true, true, Some("false")));
        assert!(!wants_prompt(false, true, true, Some("true")));
        assert!(!wants_prompt(false, true, true, Some("1")));
        assert!(!wants_prompt(true, true, true, None));
        assert!(!wants_prompt(false, false, true, None));
        assert!(!wants_prompt(false, true, false, None));
    }

    #[test]
    fn action_references_must_be_pinned() {
        assert!(valid_action(PLACEHOLDER_ACTION));
        assert!(valid_action(
            "my-org/nubes@0123456789abcdef0123456789abcdef01234567"
        ));
        assert!(!valid_action("my-org/nubes@v1"));
        assert!(!valid_action(
            "nubes@0123456789abcdef0123456789abcdef01234567"
        ));
        assert!(!valid_action(
            "my-org/nu bes@0123456789abcdef0123456789abcdef01234567"
        ));
    }

    #[test]
    fn a_runtime_without_a_scanned_target_gets_one_that_runs_it() {
        let none = Scan {
            runtime: None,
            target: None,
            evidence: None,
            has_dockerfile: false,
        };
        assert_eq!(
            proposed_target(&none, Runtime::Docker),
            Target::ContainerApps
        );
        assert_eq!(proposed_target(&none, Runtime::Static), Target::StaticSite);
        assert_eq!(proposed_target(&none, Runtime::Quarkus), Target::AppService);
    }
}
