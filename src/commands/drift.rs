//! `nubes drift [<env>...] [--pending] [--fix]`: judge every (or the named)
//! environment against its own branch `env-<name>`, a few at a time, and report what
//! drifted (changed outside Terraform) apart from what is pending (on the branch, not
//! applied yet); with `--fix`, re-apply drifted environments from their own branch.
//!
//! Per environment, under its lock (so drift never races an apply and never breaks a
//! lock): the branch's tip is read from the local repository (`branch.rs`), its
//! configuration file and Terraform folder are extracted into
//! `.nubes/branches/<env>/<project folder name>/` (never the checkout nubes runs in), that
//! copy is rendered into its own working copy and planned once (`drift.rs` reads the
//! plan), the saved plan is applied when `--fix` asks for it, and the verdict is recorded
//! in the state's metadata (`nubesdrift`, `nubesdriftat`).

use std::path::{Path, PathBuf};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::branch::{Repo, Tip};
use crate::config::{self, Settings};
use crate::drift::{self, EnvDrift, Fix, Verdict, findings};
use crate::env_name::EnvName;
use crate::error::{Error, Result, exit};
use crate::github::Github;
use crate::pipeline::{self, Context, Locked, Session};
use crate::render::Origin;
use crate::state::{self, lockinfo, meta};
use crate::terraform::{self, Io, Terraform};

/// The resolved flags of `nubes drift`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub envs: Vec<String>,
    pub jobs: usize,
    pub json: bool,
    pub markdown: bool,
    /// List pending changes, and let them count (exit 4; applied by `--fix`).
    pub pending: bool,
    pub fix: bool,
    /// Keep one GitHub issue per drifted environment (`drift_issues`).
    pub issue: bool,
}

pub async fn run(settings: &Settings, opts: &Options) -> Result<()> {
    // Checked before any plan: a missing token is a usage error (exit 2).
    let api = opts
        .issue
        .then(|| crate::ghapi::Api::from_env("`drift --issue`"))
        .transpose()?;
    if opts.fix && crate::ui::interactive() {
        confirm_protected_fixes(settings, opts)?;
    }
    let checked = check_all(settings, opts).await?;
    if checked.is_empty() {
        crate::outln!("no environments to check");
        return Ok(());
    }
    let gh = Github::from_env();
    report(&gh, &checked, opts)?;
    if let Some(api) = &api {
        issues_on_github(settings, &gh, api, &checked, opts.envs.is_empty()).await?;
    }
    match exit_code(&checked, opts) {
        exit::OK => Ok(()),
        code => Err(Error::Quiet(code)),
    }
}

/// On a terminal, a protected environment named for `--fix` is corrected only after its
/// name is typed again (CI names it explicitly on the command line, which is the flag).
fn confirm_protected_fixes(settings: &Settings, opts: &Options) -> Result<()> {
    use std::io::{BufRead, Write};
    for name in &opts.envs {
        let env = settings.env_name(name)?;
        if !settings.protected(&env) {
            continue;
        }
        eprint!(
            "`{env}` is protected: `drift --fix` re-applies it from branch `{}` if it drifted. \
             Type its name ({env}) to allow that, anything else to stop: ",
            env.branch(&settings.branch_prefix)
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != env.as_str() {
            return Err(Error::input(format!(
                "not confirmed: nothing was checked or corrected (protected `{env}`)"
            ))
            .hint("type the name at the prompt, or run without a terminal (CI) where naming it is the confirmation"));
        }
    }
    Ok(())
}

/// Failures first (the check is incomplete), then held locks, then drift (and pending
/// changes with `--pending`) that is still there.
pub fn exit_code(checked: &[EnvDrift], opts: &Options) -> i32 {
    let failed = checked.iter().any(|d| {
        d.error.as_ref().is_some_and(|(_, c)| *c != exit::LOCKED)
            || matches!(d.fix, Some(Fix::Failed(_)))
    });
    if failed {
        exit::FAILED
    } else if checked.iter().any(|d| d.error.is_some()) {
        exit::LOCKED
    } else if checked
        .iter()
        .any(|d| d.drift_remains() || opts.pending && d.pending_remains())
    {
        exit::CHANGES
    } else {
        exit::OK
    }
}

/// Check (and with `--fix` correct) every target environment, sorted by name.
pub async fn check_all(settings: &Settings, opts: &Options) -> Result<Vec<EnvDrift>> {
    let envs = targets(settings, &opts.envs).await?;
    if envs.is_empty() {
        return Ok(vec![]);
    }
    let repo = Repo::discover(&settings.root)?;
    let tf = terraform::locate(settings)?;
    let gh = Github::from_env();
    let named = !opts.envs.is_empty();
    let jobs = opts.jobs.clamp(1, 16);
    tracing::info!(
        "checking {} environments against their own branches, {jobs} at a time",
        envs.len()
    );
    let mut checked: Vec<EnvDrift> = futures::stream::iter(envs)
        .map(|env| {
            let job = Job {
                settings,
                repo: &repo,
                tf: &tf,
                gh: gh.clone(),
                named,
                opts,
            };
            async move { job.one(env).await }
        })
        .buffer_unordered(jobs)
        .collect()
        .await;
    checked.sort_by(|a, b| a.env.cmp(&b.env));
    Ok(checked)
}

async fn targets(settings: &Settings, names: &[String]) -> Result<Vec<EnvName>> {
    if !names.is_empty() {
        let mut envs = names
            .iter()
            .map(|n| settings.env_name(n))
            .collect::<Result<Vec<_>>>()?;
        envs.dedup();
        return Ok(envs);
    }
    let store = state::open(settings)?;
    let mut envs: Vec<EnvName> = store
        .list()
        .await?
        .into_iter()
        .filter(|l| !l.tombstone)
        .filter_map(|l| l.env)
        .collect();
    envs.sort();
    envs.dedup();
    Ok(envs)
}

/// What every environment's check shares.
struct Job<'a> {
    settings: &'a Settings,
    repo: &'a Repo,
    tf: &'a Terraform,
    gh: Github,
    /// The environments were named on the command line (protected ones may be fixed).
    named: bool,
    opts: &'a Options,
}

impl Job<'_> {
    async fn one(&self, env: EnvName) -> EnvDrift {
        let branch = env.branch(&self.settings.branch_prefix);
        let mut d = EnvDrift::new(env.clone(), branch.clone());
        let tip = match self.repo.tip(&branch) {
            Ok(Some(tip)) => tip,
            Ok(None) => {
                d.verdict = Verdict::NoBranch;
                if self.opts.fix {
                    d.fix = Some(Fix::Skipped(format!("there is no branch {branch}")));
                }
                record_unlocked(self.settings, &env, Verdict::NoBranch).await;
                return d;
            }
            Err(e) => return d.failed(&e),
        };
        d.reference = Some(tip.reference.clone());
        d.commit = Some(tip.commit.clone());
        let locked = match Locked::acquire(self.settings, &env, "nubes drift").await {
            Ok(l) => l,
            Err(e) => {
                if self.opts.fix {
                    d.fix = Some(Fix::Skipped("its lock is held".into()));
                }
                return d.failed(&e);
            }
        };
        // The branch's copy is written under the lock: another nubes on this machine
        // may be checking the same environment.
        let branch_settings = match branch_settings(self.settings, self.repo, &tip, &env) {
            Ok(s) => s,
            Err(e) => {
                record(&locked, Verdict::Failed).await;
                let _ = locked.release().await;
                return d.failed(&e);
            }
        };
        let ctx = Context {
            settings: &branch_settings,
            gh: self.gh.clone(),
            origin: Origin {
                branch,
                commit: Some(tip.commit.clone()),
            },
            actor: std::env::var("GITHUB_ACTOR").ok().filter(|a| !a.is_empty()),
            quiet: true,
            review: Default::default(),
        };
        let session = match locked.start(&ctx, self.tf.clone()).await {
            Ok(s) => s,
            Err(e) => return d.failed(&e),
        };
        let result = self.check_and_fix(&ctx, &session, &mut d).await;
        match session.close(result).await {
            Ok(()) => d,
            Err(e) => d.failed(&e),
        }
    }

    /// Plan, read the plan, apply it if asked, record the verdict.
    async fn check_and_fix(&self, ctx: &Context<'_>, s: &Session, d: &mut EnvDrift) -> Result<()> {
        let checked = check(ctx, s).await;
        let (found, fingerprint) = match checked {
            Ok(c) => c,
            Err(e) => {
                record(&s.locked, Verdict::Failed).await;
                return Err(e);
            }
        };
        d.verdict = found.verdict();
        d.drifted = found.drifted;
        d.pending = found.pending;
        d.pending_outputs = found.pending_outputs;
        let mut verdict = d.verdict;
        if self.opts.fix && matches!(d.verdict, Verdict::Drifted | Verdict::Pending) {
            d.fix = self.decide_fix(d);
            if d.fix.is_none() {
                match apply(ctx, s, &fingerprint).await {
                    Ok(()) => {
                        d.fix = Some(Fix::Corrected);
                        verdict = Verdict::Clean;
                    }
                    Err(e) => {
                        d.fix = Some(Fix::Failed(crate::secrets::redact(&e.to_string())));
                    }
                }
            }
        }
        record(&s.locked, verdict).await;
        Ok(())
    }

    /// For a drifted (or pending) environment: `None` to correct it, else why not.
    fn decide_fix(&self, d: &EnvDrift) -> Option<Fix> {
        let env = &d.env;
        if d.verdict == Verdict::Pending && !self.opts.pending {
            return Some(Fix::Skipped(format!(
                "only pending changes: a push to {} applies them (or --fix --pending)",
                d.branch
            )));
        }
        let protected = self.settings.environment(env).is_some_and(|e| e.protected);
        if protected && !self.named {
            return Some(Fix::Skipped(format!(
                "protected: correct it with `nubes drift --fix {env}`"
            )));
        }
        None
    }
}

/// The settings the environment's branch gives itself, for rendering: its configuration
/// file and Terraform folder are extracted from the branch's commit into
/// `.nubes/branches/<env>/<name of the project folder>/` (the folder name matters: it
/// is the project name when nubes.toml sets none, as in a checkout of the branch). What
/// belongs to the machine running the check stays this checkout's: the state storage
/// and lock timeout, the branch prefix and the Terraform binary (found once, by the
/// caller), and which environments are protected.
fn branch_settings(running: &Settings, repo: &Repo, tip: &Tip, env: &EnvName) -> Result<Settings> {
    let name = running
        .root
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "project".into());
    let dest = running
        .root
        .join(".nubes")
        .join("branches")
        .join(env.as_str())
        .join(name);
    let keep = Path::new(".nubes");
    fs_err::create_dir_all(&dest)?;
    // The configuration file first (it names the Terraform folder), at the same place
    // relative to the project as the one in use here.
    let (config_rel, explicit) = match &running.config_file {
        Some(f) => match f.strip_prefix(&running.root) {
            Ok(rel) if crate::branch::is_plain_relative(rel) => (rel.to_path_buf(), true),
            _ => (PathBuf::from("nubes.toml"), false),
        },
        None => (PathBuf::from("nubes.toml"), false),
    };
    repo.extract(&tip.commit, std::slice::from_ref(&config_rel), &dest, keep)?;
    let in_branch = |e: Error| {
        e.context(format!(
            "the configuration of branch {} ({})",
            env.branch(&running.branch_prefix),
            drift::short(&tip.commit)
        ))
    };
    let mut s = config::load(
        &dest,
        explicit.then_some(config_rel.as_path()),
        &config::Overrides::default(),
    )
    .map_err(in_branch)?;
    let tf_rel = s
        .terraform_dir
        .strip_prefix(&dest)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| s.terraform_dir.clone());
    repo.extract(&tip.commit, &[config_rel, tf_rel], &dest, keep)
        .map_err(in_branch)?;
    s.state = running.state.clone();
    s.branch_prefix = running.branch_prefix.clone();
    s.terraform_binary = running.terraform_binary.clone();
    Ok(s)
}

/// The saved plan (the name `Session::close` removes).
const PLAN_FILE: &str = pipeline::PLAN_FILE;

fn lock_timeout_arg(settings: &Settings) -> String {
    format!(
        "-lock-timeout={}s",
        settings.state.lock_timeout.as_secs().max(1)
    )
}

/// One plan of the branch's configuration, read as drift and pending changes; also the
/// rendered configuration's fingerprint (recorded if the plan is applied).
async fn check(ctx: &Context<'_>, s: &Session) -> Result<(drift::Findings, String)> {
    let fingerprint = s.fingerprint(ctx.settings);
    let recorded = s.locked.store.read_meta(&s.locked.env).await?;
    let applied = recorded
        .as_ref()
        .and_then(|m| m.get(meta::FINGERPRINT))
        .is_some_and(|f| *f == fingerprint);
    s.init(ctx).await?;
    let plan: Vec<std::ffi::OsString> = [
        "plan".to_string(),
        "-input=false".into(),
        format!("-out={PLAN_FILE}"),
        lock_timeout_arg(ctx.settings),
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    s.terraform(ctx, &plan, Io::Stream).await?;
    let show = s
        .terraform(
            ctx,
            &["show".into(), "-json".into(), PLAN_FILE.into()],
            Io::Capture,
        )
        .await?;
    Ok((findings(&show, applied)?, fingerprint))
}

/// Apply the saved plan just read (the lock was held since, so it is not stale), and
/// record the apply as `up` does: the branch, its commit, the fingerprint.
async fn apply(ctx: &Context<'_>, s: &Session, fingerprint: &str) -> Result<()> {
    let apply: Vec<std::ffi::OsString> = [
        "apply".to_string(),
        "-input=false".into(),
        "-auto-approve".into(),
        lock_timeout_arg(ctx.settings),
        PLAN_FILE.into(),
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    s.terraform(ctx, &apply, Io::Stream).await?;
    pipeline::record_apply(ctx, s, fingerprint).await
}

fn verdict_entries(verdict: Verdict) -> [(&'static str, String); 2] {
    [
        (meta::DRIFT, verdict.as_str().to_string()),
        (meta::DRIFT_AT, lockinfo::now_rfc3339()),
    ]
}

/// Record the verdict under the held lock, if the environment has a state (the lock
/// may have created an empty placeholder). Not being able to is not worth failing the
/// check for.
async fn record(locked: &Locked, verdict: Verdict) {
    let store = &locked.store;
    let result = async {
        if store.read_meta(&locked.env).await?.is_some() {
            store
                .write_meta(locked.held.token(), &verdict_entries(verdict))
                .await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(
            "the drift verdict of `{}` was not recorded: {e}",
            locked.env
        );
    }
}

/// Record a verdict reached without the lock (no branch): only if the lock is free now,
/// never waiting for it.
async fn record_unlocked(settings: &Settings, env: &EnvName, verdict: Verdict) {
    let Ok(store) = state::open(settings) else {
        return;
    };
    match state::lock::acquire(store.clone(), env, "nubes drift", std::time::Duration::ZERO).await {
        Ok(held) => {
            let locked = Locked {
                store,
                held,
                env: env.clone(),
            };
            record(&locked, verdict).await;
            let _ = locked.release().await;
        }
        Err(e) => tracing::info!("the drift verdict of `{env}` was not recorded: {e}"),
    }
}

// ---------------------------------------------------------------------------------
// Reports.

struct Counts {
    drifted: usize,
    pending: usize,
    no_branch: usize,
    failed: usize,
    corrected: usize,
    fix_failed: usize,
    skipped: usize,
}

fn counts(checked: &[EnvDrift]) -> Counts {
    let n = |v: Verdict| checked.iter().filter(|d| d.verdict == v).count();
    let fixes = |f: fn(&Fix) -> bool| {
        checked
            .iter()
            .filter(|d| d.fix.as_ref().is_some_and(f))
            .count()
    };
    Counts {
        drifted: n(Verdict::Drifted),
        pending: checked.iter().filter(|d| d.has_pending()).count(),
        no_branch: n(Verdict::NoBranch),
        failed: n(Verdict::Failed),
        corrected: fixes(|f| *f == Fix::Corrected),
        fix_failed: fixes(|f| matches!(f, Fix::Failed(_))),
        skipped: fixes(|f| matches!(f, Fix::Skipped(_))),
    }
}

fn report(gh: &Github, checked: &[EnvDrift], opts: &Options) -> Result<()> {
    let c = counts(checked);
    if opts.json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&json_report(checked, &c)).unwrap_or_default()
        );
    } else if opts.markdown {
        crate::out!("{}", markdown_report(checked, &c, opts));
    } else {
        text_report(checked, &c, opts);
    }
    gh.summary(&markdown_report(checked, &c, opts))
}

fn json_report(checked: &[EnvDrift], c: &Counts) -> Value {
    let rows: Vec<Value> = checked
        .iter()
        .map(|d| {
            let mut row = json!({
                "environment": d.env.as_str(),
                "verdict": d.verdict,
                "branch": d.branch,
                "reference": d.reference,
                "commit": d.commit,
                "drifted": d.drifted,
                "pending": d.pending,
                "pending_outputs": d.pending_outputs,
                "fix": d.fix,
            });
            if let Some((msg, code)) = &d.error {
                row["error"] = json!(msg);
                row["exit_code"] = json!(code);
            }
            row
        })
        .collect();
    json!({
        "checked": checked.len(),
        "drifted": c.drifted,
        "pending": c.pending,
        "no_branch": c.no_branch,
        "failed": c.failed,
        "corrected": c.corrected,
        "fix_failed": c.fix_failed,
        "skipped": c.skipped,
        "environments": rows,
    })
}

/// `<address>: <attribute>, ...`, escaped for a terminal or log.
fn resource_line(r: &drift::ResourceChange) -> String {
    let address = drift::shown(&r.address);
    if r.attributes.is_empty() {
        address
    } else {
        let a: Vec<String> = r.attributes.iter().map(|a| drift::shown(a)).collect();
        format!("{address}: {}", a.join(", "))
    }
}

fn text_report(checked: &[EnvDrift], c: &Counts, opts: &Options) {
    for d in checked {
        let at = match &d.commit {
            Some(commit) => format!("{} @ {}", d.branch, drift::short(commit)),
            None => d.branch.clone(),
        };
        match d.verdict {
            Verdict::Drifted => crate::outln!("{}: DRIFTED ({at})", d.env),
            Verdict::Clean => crate::outln!("{}: no drift ({at})", d.env),
            Verdict::Pending => crate::outln!("{}: no drift, changes pending ({at})", d.env),
            Verdict::NoBranch => crate::outln!(
                "{}: no branch {} (reap --gone-branches is what handles it)",
                d.env,
                d.branch
            ),
            Verdict::Failed => crate::outln!(
                "{}: not checked: {}",
                d.env,
                d.error.as_ref().map(|(m, _)| m.as_str()).unwrap_or("")
            ),
        }
        for r in &d.drifted {
            crate::outln!(
                "    changed outside Terraform: {:?} {}",
                r.action,
                resource_line(r)
            );
        }
        if d.has_pending() {
            if opts.pending {
                for r in &d.pending {
                    crate::outln!("    pending: {:?} {}", r.action, resource_line(r));
                }
                for o in &d.pending_outputs {
                    crate::outln!("    pending: output {}", drift::shown(o));
                }
            } else {
                crate::outln!(
                    "    {} pending change(s) on {} (--pending lists them)",
                    d.pending.len() + d.pending_outputs.len(),
                    d.branch
                );
            }
        }
        match &d.fix {
            Some(Fix::Corrected) => crate::outln!("    corrected: re-applied from {}", d.branch),
            Some(Fix::Failed(why)) => crate::outln!("    correction failed: {why}"),
            Some(Fix::Skipped(why)) => crate::outln!("    skipped: {why}"),
            _ => {}
        }
    }
    let mut line = format!(
        "{} checked: {} drifted, {} with pending changes, {} without a branch, {} not checked",
        checked.len(),
        c.drifted,
        c.pending,
        c.no_branch,
        c.failed
    );
    if opts.fix {
        line.push_str(&format!(
            "; {} corrected, {} correction(s) failed",
            c.corrected, c.fix_failed
        ));
    }
    crate::outln!("{line}");
}

fn markdown_report(checked: &[EnvDrift], c: &Counts, opts: &Options) -> String {
    let mut md = format!(
        "### nubes drift\n\n{} checked against their own branches: **{} drifted**, {} with pending changes, {} without a branch, {} not checked.",
        checked.len(),
        c.drifted,
        c.pending,
        c.no_branch,
        c.failed
    );
    if opts.fix {
        md.push_str(&format!(
            " Corrected {}, correction failed {}.",
            c.corrected, c.fix_failed
        ));
    }
    md.push_str("\n\n| environment | verdict | branch | changed outside Terraform | pending | correction |\n|---|---|---|---|---|---|\n");
    for d in checked {
        let list = |items: &[drift::ResourceChange]| {
            items
                .iter()
                .map(|r| {
                    let a: Vec<String> = r.attributes.iter().map(|a| drift::md_code(a)).collect();
                    let a = if a.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", a.join(", "))
                    };
                    format!(
                        "{:?} `{}`{}",
                        r.action,
                        drift::md_text(&drift::md_code(&r.address)),
                        drift::md_text(&a)
                    )
                })
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let pending = if !d.has_pending() {
            String::new()
        } else if opts.pending {
            let mut p = list(&d.pending);
            for o in &d.pending_outputs {
                p.push_str(&format!(
                    "<br>output `{}`",
                    drift::md_text(&drift::md_code(o))
                ));
            }
            p
        } else {
            format!(
                "{} (`--pending` lists them)",
                d.pending.len() + d.pending_outputs.len()
            )
        };
        let drifted = match &d.error {
            Some((msg, _)) => drift::md_text(msg),
            None => list(&d.drifted),
        };
        let branch = match &d.commit {
            Some(commit) => format!("`{}` @ `{}`", d.branch, drift::short(commit)),
            None => format!("`{}` (none)", d.branch),
        };
        let fix = match &d.fix {
            None => String::new(),
            Some(Fix::Corrected) => "corrected".into(),
            Some(Fix::Failed(why)) => format!("failed: {}", drift::md_text(why)),
            Some(Fix::Skipped(why)) => format!("skipped: {}", drift::md_text(why)),
        };
        md.push_str(&format!(
            "| `{}` | {} | {branch} | {drifted} | {pending} | {fix} |\n",
            d.env,
            d.verdict.as_str()
        ));
    }
    md
}

/// `--issue`: hand each environment's verdict and report to `drift_issues::sync`. GitHub
/// failures are warnings (in the log and the job summary), never the command's result.
async fn issues_on_github(
    settings: &Settings,
    gh: &Github,
    api: &crate::ghapi::Api,
    checked: &[EnvDrift],
    complete: bool,
) -> Result<()> {
    use super::drift_issues::{self, Judged};
    let reports: Vec<String> = checked.iter().map(EnvDrift::markdown).collect();
    let envs: Vec<drift_issues::EnvDrift> = checked
        .iter()
        .zip(&reports)
        .map(|(d, report)| drift_issues::EnvDrift {
            env: &d.env,
            // Corrected by --fix, or only pending: nothing drifted is left.
            judged: match d.verdict {
                Verdict::NoBranch | Verdict::Failed => Judged::NotJudged,
                _ if d.drift_remains() => Judged::Drifted,
                _ => Judged::Clean,
            },
            report,
        })
        .collect();
    let run = crate::state::lockinfo::run_info();
    let options = drift_issues::Options {
        // Only a check of every environment may close the issues of vanished ones, and
        // only when none failed to be listed or checked.
        complete: complete && checked.iter().all(|d| d.error.is_none()),
        run_url: run.starts_with("http").then_some(run),
        branch_prefix: settings.branch_prefix.clone(),
    };
    let lines: Vec<String> = match drift_issues::sync(api, &envs, &options).await {
        Ok(outcomes) => outcomes
            .iter()
            .map(|o| {
                if o.result.is_err() {
                    tracing::warn!("{}", o.describe());
                } else {
                    tracing::info!("{}", o.describe());
                }
                o.describe()
            })
            .collect(),
        Err(e) => {
            let e: Error = e.into();
            let text = crate::secrets::redact(&format!(
                "drift issues were not updated: {e}{}",
                e.hint_text().map(|h| format!(" ({h})")).unwrap_or_default()
            ));
            tracing::warn!("{text}");
            vec![text]
        }
    };
    if lines.is_empty() {
        return Ok(());
    }
    let mut md = String::from("\n#### Drift issues\n\n");
    for line in lines {
        md.push_str(&format!("- {}\n", line.replace('\n', " ")));
    }
    gh.summary(&md)
}
