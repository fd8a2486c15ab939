//! `nubes env new|open|rm|ls`: a developer's own environment from the shell, without
//! knowing the branch convention.
//!
//! * `new <name>` validates the name (the messages of `env-name`), creates branch
//!   `env-<name>` at HEAD (or `--from`) and pushes it to `origin` with the git CLI (the
//!   user's own credential helpers and SSH keys apply; nubes never handles a git
//!   credential). Then, with a GitHub token (`GITHUB_TOKEN`, `GH_TOKEN`, or an
//!   authenticated `gh`), it finds the workflow runs that push started, prints their
//!   progress (run status, then each step as it starts and ends) and ends with the
//!   environment's URL: the newest successful deployment status of GitHub environment
//!   `env-<name>` (what `up` records), else the URL kept in the state storage. Without a
//!   token it prints where to watch the run and exits 0.
//! * `rm <name>` asks for the typed name on a terminal (`--yes` elsewhere), refuses
//!   protected environments, deletes the remote branch (the workflow's `delete` event
//!   tears the environment down) and follows that run; `--local` runs `down` here instead.
//! * `open <name>` reads the URL from stored state (no Terraform) and hands it to the
//!   platform's opener when there is a browser to open it in; it always prints it.
//! * `ls` is `list` narrowed to the current user's environments (last actor, or creator
//!   of the branch as GitHub's repository activity records it).
//!
//! Following is bounded (`--timeout`), polls every few seconds, and stops on Ctrl-C
//! (the run itself goes on, on GitHub). Progress goes to stderr as plain lines; stdout
//! gets only the result (the URL), so scripts can take it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::Settings;
use crate::env_name::{EnvName, escaped, printable};
use crate::error::{Error, Result};
use crate::ghapi::Api;
use crate::ghapi::actions::{Job, RunFilter, WorkflowRun};

/// How long `new` and `rm` follow the run by default.
pub const DEFAULT_TIMEOUT: &str = "30m";
/// GitHub starts a run within seconds of a push; past this nothing is coming.
const RUN_APPEARS_WITHIN: Duration = Duration::from_secs(120);
/// Debug builds only: poll interval in milliseconds (tests), as `clock` does for time.
#[cfg(debug_assertions)]
const TEST_POLL_MS: &str = "NUBES_TEST_POLL_MS";

/// What `nubes env new` was asked.
pub struct NewOptions {
    pub from: Option<String>,
    pub no_wait: bool,
    pub timeout: Duration,
}

/// What `nubes env rm` was asked.
pub struct RmOptions {
    pub local: bool,
    pub yes: bool,
    pub no_wait: bool,
    pub timeout: Duration,
}

fn poll_interval() -> Duration {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var(TEST_POLL_MS)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Duration::from_millis(ms);
    }
    Duration::from_secs(5)
}

/// `--timeout` as a duration, or exit 2.
pub fn parse_timeout(text: &str) -> Result<Duration> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        Error::input(format!(
            "--timeout {} is not a duration ({e})",
            crate::env_name::quoted(text)
        ))
        .hint("use e.g. 30m, 1h or 90s")
    })
}

// ---------------------------------------------------------------------------------------
// git (the CLI, so the user's credential helpers, SSH agent and config apply)

/// One git command in the project folder; stdout on success, an error naming `what`
/// with git's own message otherwise.
fn git(root: &Path, args: &[&str], what: &str) -> Result<String> {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(root).args(args).stdin(Stdio::null());
    if !crate::ui::interactive() {
        // Nobody can answer a credential prompt: fail instead of hanging.
        cmd.env("GIT_TERMINAL_PROMPT", "0");
    }
    let out = cmd.output().map_err(|e| {
        Error::failed(format!("{what}: cannot run git: {e}"))
            .hint("install git and make sure it is on PATH")
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = crate::secrets::redact(stderr.trim());
    Err(Error::failed(format!(
        "{what} failed: {}",
        escaped(&text, 1000)
    )))
}

/// The commit `rev` names, or exit 2.
fn resolve_commit(root: &Path, rev: &str) -> Result<String> {
    git(
        root,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &format!("{rev}^{{commit}}"),
        ],
        "resolving the commit",
    )
    .map_err(|_| {
        Error::input(format!(
            "{} does not name a commit in this repository",
            crate::env_name::quoted(rev)
        ))
        .hint("give --from a branch, tag or commit (default: HEAD)")
    })
}

/// The commit `refs/heads/<branch>` points at on `origin`, `None` when it has no such
/// branch.
fn remote_branch(root: &Path, branch: &str) -> Result<Option<String>> {
    let reference = format!("refs/heads/{branch}");
    let out = git(
        root,
        &["ls-remote", "--heads", "origin", &reference],
        "reading the branches of origin",
    )
    .map_err(|e| e.hint("nubes pushes to the `origin` remote: check `git remote -v` and that you can fetch from it"))?;
    Ok(out.lines().find_map(|line| {
        let (sha, name) = line.split_once('\t')?;
        (name.trim() == reference).then(|| sha.trim().to_string())
    }))
}

fn local_branch(root: &Path, branch: &str) -> Option<String> {
    git(
        root,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ],
        "reading the local branch",
    )
    .ok()
    .filter(|s| !s.is_empty())
}

// ---------------------------------------------------------------------------------------
// GitHub access: token and repository

/// The GitHub client when a token and the repository are known: `GITHUB_TOKEN`, else
/// `GH_TOKEN`, else `gh auth token` (an authenticated GitHub CLI); the repository from
/// `GITHUB_REPOSITORY`, else the `origin` remote. `None` (with the reason, for the
/// message) when either is missing.
fn github(settings: &Settings) -> std::result::Result<(Api, String), String> {
    let repository = repository(settings).ok_or_else(|| {
        "the GitHub repository is unknown (origin is not on github.com and GITHUB_REPOSITORY is not set)"
            .to_string()
    })?;
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let token = var("GITHUB_TOKEN")
        .or_else(|| var("GH_TOKEN"))
        .or_else(gh_token)
        .ok_or_else(|| {
            "no GitHub token (set GITHUB_TOKEN or GH_TOKEN, or log in with `gh auth login`)"
                .to_string()
        })?;
    crate::secrets::register(&token);
    let api_url = var("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
    let api = Api::new(&api_url, &token, &repository).map_err(|e| {
        let hint = e.hint_text().map(|h| format!(" ({h})")).unwrap_or_default();
        format!("{e}{hint}")
    })?;
    Ok((api, repository))
}

/// `gh auth token`, when the GitHub CLI is installed and logged in. The token is read
/// from its stdout and registered as a secret at once; it is never shown.
fn gh_token() -> Option<String> {
    let gh = which::which("gh").ok()?;
    let out = Command::new(gh)
        .args(["auth", "token"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let token = String::from_utf8(out.stdout).ok()?.trim().to_string();
    if !out.status.success() || token.is_empty() {
        return None;
    }
    crate::secrets::register(&token);
    tracing::debug!("using the GitHub token of the GitHub CLI (gh auth token)");
    Some(token)
}

/// `owner/name`: `GITHUB_REPOSITORY`, else the `origin` remote when it is on github.com.
fn repository(settings: &Settings) -> Option<String> {
    if let Some(r) = std::env::var("GITHUB_REPOSITORY")
        .ok()
        .filter(|r| !r.trim().is_empty())
    {
        return Some(r.trim().to_string());
    }
    let repo = git2::Repository::discover(&settings.root).ok()?;
    let remote = repo.find_remote("origin").ok()?;
    crate::commands::bootstrap::options::github_repo_of(remote.url().ok()?)
}

/// Where a person watches the runs of `branch` (or of `event`) without a token.
fn actions_page(repository: Option<&str>, query: &str) -> Option<String> {
    let server = std::env::var("GITHUB_SERVER_URL")
        .ok()
        .filter(|s| s.starts_with("https://"))
        .unwrap_or_else(|| "https://github.com".into());
    let repository = repository?;
    let query = url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>();
    Some(format!(
        "{}/{repository}/actions?query={query}",
        server.trim_end_matches('/')
    ))
}

// ---------------------------------------------------------------------------------------
// env new

pub async fn new(settings: &Settings, name: &str, options: &NewOptions) -> Result<()> {
    // The name first: a bad one changes nothing, not even a local branch.
    let env = settings.env_name(name)?;
    let branch = env.branch(&settings.branch_prefix);
    let root = &settings.root;
    let from = options.from.as_deref().unwrap_or("HEAD");
    let commit = resolve_commit(root, from)?;
    let on_origin = remote_branch(root, &branch)?;
    match &on_origin {
        Some(sha) if *sha != commit => {
            return Err(Error::input(format!(
                "environment `{env}` already exists: origin has branch {branch} at {}",
                short(sha)
            ))
            .hint(format!(
                "to update it, push to that branch (`git push origin <commit>:{branch}`); \
                 to see it, `nubes env open {env}`; pick another name for a new one"
            )));
        }
        _ => {}
    }
    let created_local = match local_branch(root, &branch) {
        None => {
            git(
                root,
                &["branch", "--no-track", &branch, &commit],
                &format!("creating branch {branch}"),
            )?;
            true
        }
        Some(sha) if sha == commit => false,
        Some(sha) => {
            return Err(Error::input(format!(
                "a local branch {branch} already exists at {}, not at {} ({})",
                short(&sha),
                short(&commit),
                printable(from)
            ))
            .hint(format!(
                "push it yourself (`git push -u origin {branch}`), or delete it (`git branch -D {branch}`) and run this again"
            )));
        }
    };
    // Real time (GitHub's clock), never the test clock; a branch already pushed may
    // have its run from before.
    let started = if on_origin.is_some() {
        time::OffsetDateTime::UNIX_EPOCH
    } else {
        time::OffsetDateTime::now_utc()
    };
    if on_origin.is_some() {
        eprintln!(
            "origin already has {branch} at {}: nothing to push",
            short(&commit)
        );
    } else {
        let pushed = git(
            root,
            &[
                "push",
                "--quiet",
                "--set-upstream",
                "origin",
                &format!("refs/heads/{branch}:refs/heads/{branch}"),
            ],
            &format!("pushing {branch} to origin"),
        );
        if let Err(e) = pushed {
            if created_local {
                // Leave the repository as it was: the branch exists only if pushed.
                let _ = git(
                    root,
                    &["branch", "-D", &branch],
                    "removing the local branch",
                );
            }
            return Err(e.hint(
                "git pushes with your own credentials: check that `git push origin` works here",
            ));
        }
        eprintln!(
            "pushed {branch} ({}) to origin: the workflow creates environment `{env}`",
            short(&commit)
        );
    }
    if options.no_wait {
        return Ok(());
    }
    let filter = RunFilter {
        branch: Some(branch.clone()),
        event: Some("push".into()),
        head_sha: Some(commit.clone()),
    };
    let Some((api, runs)) =
        follow_or_point(settings, &filter, &branch, options.timeout, started).await?
    else {
        return Ok(());
    };
    check_runs(&runs, &env, "create")?;
    match environment_url(settings, &api, &env, &branch, &commit).await {
        Some(url) => {
            eprintln!("environment `{env}` is ready:");
            crate::outln!("{url}");
        }
        None => eprintln!(
            "environment `{env}` is ready; no URL is recorded for it (no deployment status \
             with an environment_url, no application_url output)"
        ),
    }
    Ok(())
}

fn short(sha: &str) -> String {
    printable(&sha.chars().take(12).collect::<String>())
}

/// Follow the runs `filter` finds, or, without GitHub access, say where to watch them
/// (`None`: nothing more to do).
async fn follow_or_point(
    settings: &Settings,
    filter: &RunFilter,
    branch: &str,
    timeout: Duration,
    since: time::OffsetDateTime,
) -> Result<Option<(Api, Vec<WorkflowRun>)>> {
    match github(settings) {
        Ok((api, _)) => {
            let runs = follow(&api, filter, timeout, since).await?;
            Ok(Some((api, runs)))
        }
        Err(why) => {
            let query = match filter.event.as_deref() {
                Some("delete") => "event:delete".to_string(),
                _ => format!("branch:{branch}"),
            };
            match actions_page(repository(settings).as_deref(), &query) {
                Some(page) => {
                    eprintln!("not following the run: {why}; watch it at:");
                    crate::outln!("{page}");
                }
                None => eprintln!(
                    "not following the run: {why}; watch it in the repository's Actions tab"
                ),
            }
            Ok(None)
        }
    }
}

/// The environment's URL: the deployment `up` recorded on GitHub for this commit (or
/// any), else what the state storage keeps. Failures only lose the URL, never the result.
async fn environment_url(
    settings: &Settings,
    api: &Api,
    env: &EnvName,
    branch: &str,
    commit: &str,
) -> Option<String> {
    for sha in [Some(commit), None] {
        match api.environment_url(branch, sha).await {
            Ok(Some(url)) => return Some(printable(&url)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("cannot read the deployments of {branch}: {e}");
                break;
            }
        }
    }
    match stored_url(settings, env).await {
        Ok(url) => url,
        Err(e) => {
            tracing::debug!("no URL from the state storage: {e}");
            None
        }
    }
}

/// The URL kept in the state storage: the `nubesappurl` metadata `up` records, else
/// the `application_url` output of the stored state.
async fn stored_url(settings: &Settings, env: &EnvName) -> Result<Option<String>> {
    let store = crate::state::open(settings)?;
    let meta = store.read_meta(env).await?.unwrap_or_default();
    if let Some(url) = meta
        .get(crate::state::meta::APP_URL)
        .filter(|u| !u.is_empty())
    {
        return Ok(Some(url.clone()));
    }
    let outputs = crate::pipeline::stored_outputs(&*store, env).await?;
    Ok(crate::pipeline::output_str(&outputs, "application_url").filter(|u| !u.is_empty()))
}

/// Every run found ended well, or exit 1 naming the one that did not.
fn check_runs(runs: &[WorkflowRun], env: &EnvName, doing: &str) -> Result<()> {
    for run in runs {
        let conclusion = run.conclusion.as_deref().unwrap_or("unknown");
        if !matches!(conclusion, "success" | "skipped" | "neutral") {
            return Err(Error::failed(format!(
                "workflow run {} `{}` ended `{}`: environment `{env}` may not {doing} as asked",
                run.id,
                escaped(run.name.as_deref().unwrap_or("?"), 100),
                escaped(conclusion, 40)
            ))
            .hint(format!("its log: {}", printable(&run.html_url))));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// following runs

/// Wait for the runs `filter` finds (created at or after `since`), print their progress
/// until all complete, and return them as they ended. Bounded by `timeout`; Ctrl-C stops
/// following (exit 130), not the runs.
async fn follow(
    api: &Api,
    filter: &RunFilter,
    timeout: Duration,
    since: time::OffsetDateTime,
) -> Result<Vec<WorkflowRun>> {
    let deadline = Instant::now() + timeout;
    let appear_by = Instant::now() + RUN_APPEARS_WITHIN.min(timeout);
    let interval = poll_interval();
    eprintln!(
        "waiting for the workflow run on GitHub (up to {})...",
        humantime::format_duration(timeout)
    );
    // Seconds of clock skew between here and GitHub do not hide the run.
    let not_before = since - time::Duration::seconds(30);
    let mut runs: Vec<WorkflowRun> = loop {
        let found: Vec<WorkflowRun> = api
            .workflow_runs(filter)
            .await?
            .into_iter()
            .filter(|r| crate::clock::parse(&r.created_at).is_none_or(|t| t >= not_before))
            .collect();
        if !found.is_empty() {
            break found;
        }
        if Instant::now() >= appear_by {
            return Err(Error::failed(format!(
                "no workflow run started within {} of the push",
                humantime::format_duration(RUN_APPEARS_WITHIN.min(timeout))
            ))
            .hint(
                "check that the repository has nubes's workflow (`nubes init` writes \
                 .github/workflows/nubes.yml) and that Actions are enabled",
            ));
        }
        pause(interval, None).await?;
    };
    // As listed first (usually queued), then as each read finds them.
    let mut seen = Progress::default();
    for run in &runs {
        seen.report(run, &[]);
    }
    loop {
        pause(interval, Some(&runs)).await?;
        let mut all_done = true;
        for run in runs.iter_mut() {
            if !run.completed() {
                *run = api.workflow_run(run.id).await?;
            }
            let jobs = if run.status.as_deref() == Some("queued") {
                Vec::new()
            } else {
                api.run_jobs(run.id).await?
            };
            seen.report(run, &jobs);
            all_done &= run.completed();
        }
        if all_done {
            return Ok(runs);
        }
        if Instant::now() >= deadline {
            let urls: Vec<String> = runs.iter().map(|r| printable(&r.html_url)).collect();
            return Err(Error::failed(format!(
                "the workflow run has not finished after {}",
                humantime::format_duration(timeout)
            ))
            .hint(format!(
                "it goes on on GitHub: {} (follow longer with --timeout)",
                urls.join(", ")
            )));
        }
    }
}

/// Sleep, unless Ctrl-C comes first: then say where the runs go on, and exit 130.
async fn pause(interval: Duration, runs: Option<&[WorkflowRun]>) -> Result<()> {
    tokio::select! {
        _ = tokio::time::sleep(interval) => Ok(()),
        caught = crate::signals::wait() => {
            let urls: Vec<String> = runs.unwrap_or_default().iter().map(|r| printable(&r.html_url)).collect();
            if urls.is_empty() {
                eprintln!("stopped following ({}); the run goes on on GitHub", caught.name());
            } else {
                eprintln!("stopped following ({}); the run goes on: {}", caught.name(), urls.join(", "));
            }
            Err(Error::Quiet(130))
        }
    }
}

/// What has been reported so far, so each change is printed once.
#[derive(Default)]
struct Progress {
    /// (run id, status) pairs printed.
    runs: std::collections::BTreeSet<(u64, String)>,
    /// (job id, step number, status) printed.
    steps: std::collections::BTreeSet<(u64, u64, String)>,
}

impl Progress {
    fn report(&mut self, run: &WorkflowRun, jobs: &[Job]) {
        let status = run.status.clone().unwrap_or_else(|| "unknown".into());
        let name = escaped(run.name.as_deref().unwrap_or("workflow"), 100);
        if self.runs.insert((run.id, status.clone())) {
            match status.as_str() {
                "completed" => {}
                "queued" => eprintln!(
                    "run {} `{name}` queued: {}",
                    run.id,
                    printable(&run.html_url)
                ),
                "in_progress" if self.runs.contains(&(run.id, "queued".into())) => {
                    eprintln!("run {} `{name}` in progress", run.id)
                }
                "in_progress" => eprintln!(
                    "run {} `{name}` in progress: {}",
                    run.id,
                    printable(&run.html_url)
                ),
                other => eprintln!("run {} `{name}`: {}", run.id, escaped(other, 40)),
            }
        }
        for job in jobs {
            let job_name = escaped(&job.name, 100);
            for step in &job.steps {
                let key = (job.id, step.number, step.status.clone());
                if step.status == "queued" || !self.steps.insert(key) {
                    continue;
                }
                let step_name = escaped(&step.name, 100);
                match step.status.as_str() {
                    "in_progress" => eprintln!("  {job_name}: {step_name} ..."),
                    "completed" => eprintln!(
                        "  {job_name}: {step_name}: {}",
                        escaped(step.conclusion.as_deref().unwrap_or("done"), 40)
                    ),
                    other => eprintln!("  {job_name}: {step_name}: {}", escaped(other, 40)),
                }
            }
        }
        // The run's end after its steps' (a run first seen completed prints only this).
        if run.completed() && self.runs.insert((run.id, "reported".into())) {
            eprintln!(
                "run {} `{name}` completed: {}",
                run.id,
                escaped(run.conclusion.as_deref().unwrap_or("unknown"), 40)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// env rm

pub async fn rm(settings: &Settings, name: &str, options: &RmOptions) -> Result<()> {
    let env = settings.env_name(name)?;
    let branch = env.branch(&settings.branch_prefix);
    if settings.protected(&env) {
        return Err(Error::input(format!(
            "environment `{env}` is protected: `nubes env rm` does not remove it"
        ))
        .hint(format!(
            "a protected environment goes only on purpose: `nubes down {env} --force` (and \
             then delete its branch)"
        )));
    }
    if options.local {
        let ctx = crate::pipeline::Context {
            settings,
            gh: crate::github::Github::from_env(),
            origin: crate::app::origin(settings, &env),
            actor: None,
            quiet: false,
            review: Default::default(),
        };
        let strategy = crate::pipeline::Strategy::Terraform;
        if !options.yes {
            if !crate::ui::interactive() {
                return Err(not_asked(&env));
            }
            crate::commands::pipeline::confirm_down(&ctx, &env, strategy).await?;
        }
        crate::commands::pipeline::down(&ctx, &env, false, strategy, false).await?;
        if remote_branch(&settings.root, &branch)
            .ok()
            .flatten()
            .is_some()
        {
            eprintln!(
                "branch {branch} is still on origin (a push to it brings the environment back): \
                 `git push origin --delete {branch}` removes it"
            );
        }
        return Ok(());
    }
    if remote_branch(&settings.root, &branch)?.is_none() {
        return Err(Error::input(format!(
            "origin has no branch {branch}: nothing to delete"
        ))
        .hint(format!(
            "if environment `{env}` still exists without its branch, `nubes env rm {env} --local` tears it down from here"
        )));
    }
    if !options.yes {
        if !crate::ui::interactive() {
            return Err(not_asked(&env));
        }
        confirm(&env, &branch)?;
    }
    let started = time::OffsetDateTime::now_utc();
    git(
        &settings.root,
        &[
            "push",
            "--quiet",
            "origin",
            "--delete",
            &format!("refs/heads/{branch}"),
        ],
        &format!("deleting branch {branch} on origin"),
    )
    .map_err(|e| {
        e.hint("git pushes with your own credentials: check that `git push origin` works here")
    })?;
    eprintln!("deleted {branch} on origin: the workflow tears environment `{env}` down");
    if options.no_wait {
        return Ok(());
    }
    // A `delete` event's run belongs to the default branch, not to the deleted one: the
    // runs of that event started since the deletion are the ones to follow (`follow`
    // keeps those created from `started` on; GitHub's `created` filter takes a search
    // expression its API description does not allow, so it is not used).
    let filter = RunFilter {
        branch: None,
        event: Some("delete".into()),
        head_sha: None,
    };
    let Some((_, runs)) =
        follow_or_point(settings, &filter, &branch, options.timeout, started).await?
    else {
        return Ok(());
    };
    check_runs(&runs, &env, "be torn down")?;
    eprintln!("environment `{env}` is torn down");
    Ok(())
}

fn not_asked(env: &EnvName) -> Error {
    Error::input(format!(
        "not removing `{env}` without asking: this is not a terminal"
    ))
    .hint("pass --yes to remove it without being asked")
}

/// Ask for the environment's name on the terminal.
fn confirm(env: &EnvName, branch: &str) -> Result<()> {
    use std::io::{BufRead, Write};
    eprintln!(
        "`nubes env rm {env}` deletes branch {branch} on origin; the workflow then destroys \
         environment `{env}` and its state (kept only as a tombstone copy)."
    );
    eprint!("Type the environment's name ({env}) to remove it, anything else to stop: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != env.as_str() {
        return Err(
            Error::input(format!("not confirmed: nothing was deleted for `{env}`")).hint(format!(
                "type `{env}` at the prompt, or pass --yes (scripts and CI are never asked)"
            )),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// env open

pub async fn open(settings: &Settings, name: &str, print_only: bool) -> Result<()> {
    let env = settings.env_name(name)?;
    let Some(url) = stored_url(settings, &env).await? else {
        return Err(Error::input(format!(
            "environment `{env}` has no URL recorded (no `application_url` output in its state)"
        ))
        .hint(format!(
            "`nubes status {env}` shows what it has; `nubes env new {env}` creates it"
        )));
    };
    // Whoever wrote the state chose the value: only a web address goes to an opener.
    let parsed = url::Url::parse(url.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    let Some(parsed) = parsed else {
        return Err(Error::failed(format!(
            "the URL recorded for `{env}` is not an http(s) address: {}",
            crate::env_name::quoted(&url)
        )));
    };
    let url = parsed.to_string();
    crate::outln!("{url}");
    if print_only {
        return Ok(());
    }
    match opener() {
        Some(mut cmd) => {
            let program = cmd.get_program().to_string_lossy().into_owned();
            cmd.arg(&url)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Err(e) = cmd.spawn() {
                eprintln!("could not start {}: {e}", printable(&program));
            }
        }
        None => tracing::debug!("no display or $BROWSER: the URL is printed only"),
    }
    Ok(())
}

/// The program that opens a URL in a browser, when there is one to open it in:
/// `$BROWSER` (its first entry), else `open` on macOS, else `xdg-open` when a graphical
/// session is there (`DISPLAY` or `WAYLAND_DISPLAY`). Over SSH, in CI or in a container
/// without a display there is none, and the URL is only printed.
fn opener() -> Option<Command> {
    if crate::ui::is_ci() {
        return None;
    }
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if let Some(browser) = var("BROWSER") {
        let first = browser
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        if !first.is_empty() {
            return Some(Command::new(first));
        }
    }
    if cfg!(target_os = "macos") {
        return Some(Command::new("open"));
    }
    if var("DISPLAY").is_some() || var("WAYLAND_DISPLAY").is_some() {
        return which::which("xdg-open").ok().map(Command::new);
    }
    None
}

// ---------------------------------------------------------------------------------------
// env ls

pub async fn ls(settings: &Settings, users: &[String], json_out: bool) -> Result<()> {
    // Who "I" am: the GitHub login (given, or the token's), and this machine's user as
    // runs from a shell record it (`user@host`).
    let mut me: Vec<String> = users.to_vec();
    let api = github(settings).ok().map(|(api, _)| api);
    if me.is_empty()
        && let Some(api) = &api
    {
        match api.authenticated_login().await {
            Ok(Some(login)) => me.push(login),
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot tell who the GitHub token belongs to: {e}"),
        }
    }
    me.push(crate::state::lockinfo::who());
    let mut created = std::collections::BTreeSet::new();
    if let Some(api) = &api {
        for login in me.iter().filter(|l| !l.contains('@')) {
            match api.branches_created_by(login).await {
                Ok(refs) => created.extend(refs.into_iter().filter_map(|r| {
                    let branch = r.strip_prefix("refs/heads/").unwrap_or(&r).to_string();
                    EnvName::from_short_branch(&branch, &settings.branch_prefix).ok()
                })),
                Err(e) => tracing::warn!("cannot read who created which branch: {e}"),
            }
        }
    }
    let rows: Vec<Value> = crate::commands::inspect::rows(settings, false)
        .await?
        .into_iter()
        .filter(|r| {
            let actor = r["activity"]["actor"]
                .as_str()
                .or(r["last_apply"]["actor"].as_str());
            let mine = actor.is_some_and(|a| me.iter().any(|m| m.eq_ignore_ascii_case(a)));
            let name = r["name"].as_str().unwrap_or_default();
            mine || created.iter().any(|e| e.as_str() == name)
        })
        .collect();
    if json_out {
        let doc = json!({ "users": me, "count": rows.len(), "environments": rows });
        crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    if rows.is_empty() {
        crate::outln!(
            "no environments of yours ({}); `nubes list` shows everyone's",
            me.iter()
                .map(|m| escaped(m, 60))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    }
    let now = crate::clock::now();
    crate::outln!(
        "{:<20} {:<16} {:<16} URL",
        "ENVIRONMENT",
        "ACTIVE",
        "EXPIRES"
    );
    for r in &rows {
        let s = |v: &Value| v.as_str().map(|t| escaped(t, 200));
        let active = r["activity"]["at"]
            .as_str()
            .and_then(crate::clock::parse)
            .map(|t| format!("{} ago", crate::clock::span(now - t)))
            .unwrap_or_else(|| "-".into());
        let expires = match r["expiry"]["expires_at"]
            .as_str()
            .and_then(crate::clock::parse)
        {
            None => "never".to_string(),
            Some(t) if t <= now => "expired".to_string(),
            Some(t) => format!("in {}", crate::clock::span(t - now)),
        };
        crate::outln!(
            "{:<20} {:<16} {:<16} {}",
            r["name"].as_str().unwrap_or_default(),
            active,
            expires,
            s(&r["deploy"]["application_url"]).unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actions_page_is_filtered_by_branch_and_escaped() {
        assert_eq!(
            actions_page(Some("octo/app"), "branch:env-alice").as_deref(),
            Some("https://github.com/octo/app/actions?query=branch%3Aenv-alice")
        );
        assert_eq!(actions_page(None, "branch:env-alice"), None);
    }

    #[test]
    fn timeouts_are_durations() {
        assert_eq!(parse_timeout("90s").expect("90s"), Duration::from_secs(90));
        assert_eq!(parse_timeout("soon").expect_err("soon").exit_code(), 2);
    }
}
