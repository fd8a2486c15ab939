//! The environment pipeline: `up`, `plan` and `down`, each a short list of stages
//! over a [`Session`] (the env lock, the rendered working copy, the loopback gateway).
//! Build and deploy slot in after the infrastructure stages of `up`.

use std::ffi::OsString;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::Settings;
use crate::env_name::EnvName;
use crate::error::{Error, Result};
use crate::gateway::Gateway;
use crate::github::Github;
use crate::plan::PlanSummary;
use crate::render::{self, Origin, Rendered};
use crate::state::lock::{self, HeldLock};
use crate::state::{self, StateStore, lockinfo};
use crate::terraform::{self, Io, Terraform};

/// Everything a pipeline run knows besides the settings.
pub struct Context<'a> {
    pub settings: &'a Settings,
    pub gh: Github,
    pub origin: Origin,
    pub actor: Option<String>,
    /// Keep Terraform's progress off the terminal (errors still show): several
    /// environments are being planned at once.
    pub quiet: bool,
    /// The pull request being planned, and the reviewed-plan override (`review.rs`).
    pub review: crate::review::Review,
}

impl<'a> Context<'a> {
    /// The context of one of several environments handled at once (`drift`, `reap`):
    /// the env's own branch, the checked-out commit, Terraform's progress kept quiet.
    pub fn quiet_for(settings: &'a Settings, gh: Github, env: &EnvName) -> Context<'a> {
        Context {
            settings,
            gh,
            origin: crate::app::origin(settings, env),
            actor: None,
            quiet: true,
            review: Default::default(),
        }
    }

    fn lock_timeout_arg(&self) -> OsString {
        format!(
            "-lock-timeout={}s",
            self.settings.state.lock_timeout.as_secs().max(1)
        )
        .into()
    }
}

/// The env lock, held for a whole command.
pub struct Locked {
    pub store: Arc<dyn StateStore>,
    pub held: HeldLock,
    pub env: EnvName,
}

impl Locked {
    pub async fn acquire(settings: &Settings, env: &EnvName, operation: &str) -> Result<Locked> {
        let store = state::open(settings)?;
        let stage = crate::ui::stage("lock");
        let held =
            lock::acquire(store.clone(), env, operation, settings.state.lock_timeout).await?;
        stage.done();
        tracing::info!("holding the lock on `{env}` ({})", store.location(env));
        Ok(Locked {
            store,
            held,
            env: env.clone(),
        })
    }

    /// Push the state an interrupted run could not save (see `recover.rs`), render the
    /// working copy and start the gateway. On failure the lock is released.
    pub async fn start(self, ctx: &Context<'_>, tf: Terraform) -> Result<Session> {
        let prepared = async {
            // Before rendering: a sync of the working copy would delete the file.
            crate::recover::errored_state(
                &*self.store,
                self.held.token(),
                &self.env,
                &crate::workdir::path(ctx.settings, &self.env),
            )
            .await?;
            let stage = crate::ui::stage("render");
            let rendered = render::render(ctx.settings, &self.env, &ctx.origin)?;
            stage.done();
            let gateway = Gateway::start(self.store.clone(), self.held.token().clone()).await?;
            Ok::<_, Error>((rendered, gateway))
        }
        .await;
        match prepared {
            Ok((rendered, gateway)) => {
                let mut tf_env = gateway.terraform_env();
                tf_env.push(("TF_IN_AUTOMATION", "1".into()));
                tf_env.push(("TF_INPUT", "0".into()));
                tf_env.extend(crate::state::auth::terraform_env());
                Ok(Session {
                    locked: self,
                    tf,
                    rendered,
                    gateway,
                    tf_env,
                })
            }
            Err(e) => {
                let _ = self.held.release().await;
                Err(e)
            }
        }
    }

    pub async fn release(self) -> Result<()> {
        self.held.release().await
    }
}

/// A locked environment with its rendered working copy and running gateway.
pub struct Session {
    pub locked: Locked,
    tf: Terraform,
    pub rendered: Rendered,
    gateway: Gateway,
    tf_env: Vec<(&'static str, String)>,
}

impl Session {
    /// Run one Terraform command in a log group; a failure carries the gateway's
    /// reasons (a refused write says why).
    pub async fn terraform(&self, ctx: &Context<'_>, args: &[OsString], io: Io) -> Result<Vec<u8>> {
        self.terraform_status(ctx, args, io, &[0])
            .await
            .map(|(_, out)| out)
    }

    /// Like [`Session::terraform`], accepting the exit codes in `ok` (e.g. 0 and 2 for
    /// `plan -detailed-exitcode`) and returning which one it was.
    pub async fn terraform_status(
        &self,
        ctx: &Context<'_>,
        args: &[OsString],
        io: Io,
        ok: &[i32],
    ) -> Result<(i32, Vec<u8>)> {
        let sub = args
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        let what = format!("terraform {sub} for env {}", self.locked.env);
        // A captured run shows nothing, so it gets no log group (it may also run
        // alongside another Terraform command).
        let io = if ctx.quiet && io == Io::Stream {
            Io::Capture
        } else {
            io
        };
        let visible = io != Io::Capture;
        if visible {
            ctx.gh.group(&what);
            if !ctx.gh.active {
                tracing::info!("{what}");
            }
        }
        let stage = crate::ui::stage(&format!("terraform {sub}"));
        let result =
            terraform::run_with(&self.tf, &self.rendered.dir, args, &self.tf_env, &what, io).await;
        stage.end_with(
            matches!(&result, Ok((o, _)) if o.interrupted.is_none() && ok.contains(&o.code())),
        );
        if visible {
            ctx.gh.endgroup();
        }
        let (outcome, out) = result?;
        if let Some(sig) = outcome.interrupted {
            return Err(Error::failed(format!(
                "{what}: interrupted by {}; Terraform stopped",
                sig.name()
            )));
        }
        if !ok.contains(&outcome.code()) {
            let problems = self.gateway.problems();
            let mut msg = format!("{what} failed (exit code {})", outcome.code());
            if !problems.is_empty() {
                msg.push_str(&format!(": {}", problems.join("; ")));
            }
            let mut hint = String::from("Terraform's own error is above");
            let errored = self.rendered.dir.join(crate::recover::ERRORED);
            if errored.exists() {
                hint.push_str(&format!(
                    "; Terraform kept the state it could not save in {}: the next nubes command \
                     on `{}` pushes it before anything else",
                    errored.display(),
                    self.locked.env
                ));
            }
            return Err(Error::failed(msg).hint(hint));
        }
        Ok((outcome.code(), out))
    }

    /// `terraform init` in the working copy (providers and modules; the backend is the
    /// gateway, so nothing about it is saved).
    pub async fn init(&self, ctx: &Context<'_>) -> Result<()> {
        self.terraform(
            ctx,
            &args(&["init", "-input=false", "-no-color"]),
            Io::Stream,
        )
        .await
        .map(|_| ())
    }

    pub fn fingerprint(&self, settings: &Settings) -> String {
        let _ = settings;
        self.rendered.fingerprint(&terraform::identity(&self.tf))
    }

    /// Stop the gateway and release the lock, keeping the first error.
    pub async fn close<T>(self, result: Result<T>) -> Result<T> {
        self.close_recording(result, &[]).await
    }

    /// [`Session::close`], merging `record` into the env's metadata as the lock is
    /// released (one write for both).
    pub async fn close_recording<T>(
        self,
        result: Result<T>,
        record: &[(&str, String)],
    ) -> Result<T> {
        self.gateway.stop().await;
        // A saved plan holds the prior state and every planned value in plain text,
        // sensitive ones included: it must not outlive the command in the working copy.
        match fs_err::remove_file(self.rendered.dir.join(PLAN_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove the saved plan: {e}"),
        }
        let released = self.locked.held.release_recording(record).await;
        let value = result?;
        released?;
        Ok(value)
    }
}

/// The saved plan `up` and `plan` apply or summarise, in the working copy while the
/// command runs (removed by [`Session::close`]).
pub(crate) const PLAN_FILE: &str = "nubes.tfplan";
const PLAN_OUT: &str = "-out=nubes.tfplan";

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

/// What `up` did.
#[derive(Debug)]
pub struct UpReport {
    pub env: EnvName,
    /// Terraform was skipped: nothing changed since the last successful apply.
    pub fast_path: bool,
    pub plan: Option<PlanSummary>,
    pub outputs: Map<String, Value>,
    pub built: Option<crate::build::Built>,
    pub deployed: Option<crate::deploy::Deployed>,
    pub health: Option<crate::health::Healthy>,
    /// Whether the plan applied was the reviewed one (`require_reviewed_plan`).
    pub review: crate::review::Verdict,
    /// The release left live (kept in the releases container), when one was kept.
    pub release: Option<crate::releases::flow::ReleaseNote>,
}

/// Metadata key of the fast-path fingerprint, recorded after a successful apply.
pub const META_FINGERPRINT: &str = state::meta::FINGERPRINT;

/// `nubes up <env>`: the whole pipeline, as one critical section under the env lock.
pub async fn up(ctx: &Context<'_>, env: &EnvName, refresh: bool) -> Result<UpReport> {
    let tf = terraform::locate(ctx.settings)?;
    let build = crate::build::detect(ctx.settings)?;
    let dirty = crate::git::is_dirty(&ctx.settings.root).unwrap_or(false);
    if dirty {
        tracing::warn!(
            "the working tree has uncommitted changes: `{env}` is recorded as commit {} plus those changes (dirty)",
            ctx.origin
                .commit
                .as_deref()
                .map_or("(none)", |c| &c[..c.len().min(12)])
        );
    }
    let session = Locked::acquire(ctx.settings, env, "nubes up")
        .await?
        .start(ctx, tf)
        .await?;
    let mut activity = Activity {
        dirty,
        ..Activity::default()
    };
    let result = stages(ctx, &session, refresh, build.as_ref(), &mut activity).await;
    let record = activity.record(ctx, result.is_ok());
    session.close_recording(result, &record).await
}

/// What an `up` reached, kept as the environment's activity and provenance record.
/// Filled in as the stages go, so a failed deploy or health check is recorded too.
#[derive(Debug, Default)]
pub struct Activity {
    pub dirty: bool,
    pub app_url: Option<String>,
    /// Target, artifact digest, and whether the deploy succeeded.
    pub deploy: Option<(String, Option<String>, bool)>,
    pub healthy: Option<bool>,
    /// The health check failed and the previous release was redeployed.
    pub rolled_back: bool,
    /// What the activity was, when not `up` (`rollback`, `promote from <env>`).
    pub action: Option<String>,
}

impl Activity {
    /// The metadata entries of this activity (see `state::meta`; empty values remove
    /// a key, so a clean tree clears an old `dirty`).
    pub fn record(&self, ctx: &Context<'_>, succeeded: bool) -> Vec<(&'static str, String)> {
        use crate::state::meta;
        let now = crate::clock::now_rfc3339();
        let in_actions = ctx.gh.active;
        let mut r = vec![
            (meta::ACTIVITY_AT, now.clone()),
            (meta::ACTIVITY, {
                let action = self.action.as_deref().unwrap_or("up");
                if succeeded {
                    action.to_string()
                } else {
                    format!("{action} (failed)")
                }
            }),
            (
                meta::ROLLED_BACK,
                if self.rolled_back {
                    "true".into()
                } else {
                    String::new()
                },
            ),
            (meta::CREATED_AT, now.clone()),
            (meta::ACTOR, ctx.actor.clone().unwrap_or_else(lockinfo::who)),
            (
                meta::RUN_URL,
                if in_actions {
                    lockinfo::run_info()
                } else {
                    String::new()
                },
            ),
            (
                meta::DIRTY,
                if self.dirty {
                    "true".into()
                } else {
                    String::new()
                },
            ),
        ];
        if let Some(url) = &self.app_url {
            r.push((meta::APP_URL, url.clone()));
        }
        if let Some((target, digest, ok)) = &self.deploy {
            r.push((
                meta::APP_COMMIT,
                ctx.origin.commit.clone().unwrap_or_default(),
            ));
            r.push((meta::ARTIFACT, digest.clone().unwrap_or_default()));
            r.push((meta::TARGET, target.clone()));
            r.push((
                meta::DEPLOY,
                if *ok { "succeeded" } else { "failed" }.into(),
            ));
            r.push((meta::DEPLOY_AT, now.clone()));
        }
        if let Some(healthy) = self.healthy {
            r.push((
                meta::HEALTH,
                if healthy { "healthy" } else { "unhealthy" }.into(),
            ));
            r.push((meta::HEALTH_AT, now));
        }
        r
    }
}

/// The stages of `up`. The build runs alongside the infrastructure unless it needs its
/// outputs (`after_infra`); a failure of either stops the pipeline before deploying, so
/// a half-deployed environment is never reported as a success.
async fn stages(
    ctx: &Context<'_>,
    s: &Session,
    refresh: bool,
    build: Option<&crate::build::BuildPlan>,
    activity: &mut Activity,
) -> Result<UpReport> {
    let env = s.locked.env.clone();
    let concurrent = build.filter(|b| !b.after_infra);
    let build_stage = async {
        match concurrent {
            Some(plan) => Some(crate::build::run(ctx.settings, plan, &build_env(ctx, &env)).await),
            None => None,
        }
    };
    let (infra, built) = tokio::join!(infrastructure(ctx, s, refresh), build_stage);
    let mut report = infra.map_err(|e| e.context("stage infrastructure"))?;
    activity.app_url = output_str(&report.outputs, "application_url");
    let built = match (built, build.filter(|b| b.after_infra)) {
        (Some(result), _) => Some(result.map_err(|e| e.context("stage build"))?),
        (None, Some(plan)) => {
            let artifact = ctx.settings.root.join(&plan.artifact);
            let mut vars = build_env(ctx, &env);
            vars.extend(crate::deploy::output_env(&env, &artifact, &report.outputs));
            Some(
                crate::build::run(ctx.settings, plan, &vars)
                    .await
                    .map_err(|e| e.context("stage build"))?,
            )
        }
        (None, None) => None,
    };
    if let Some(built) = &built
        && let Some(target) = crate::deploy::target(ctx.settings, &report.outputs)
    {
        let digest = match &built.image {
            // An image is recorded by its manifest digest, the one it runs by.
            Some(image) => Some(image.digest.clone()),
            // A folder synced into a static site: the sync hashes each file as it reads
            // it, and the digest is made from that (below), not from another pass.
            None if target == "static-site" && built.artifact.is_dir() => None,
            None => artifact_digest(&built.artifact).await,
        };
        tracing::info!("deploying `{env}` ({target}) and checking its health");
        let stage = crate::ui::stage("deploy + health check");
        let shipment = match (&built.image, target.as_str()) {
            (Some(image), "container-apps") => {
                // The rollout health-checks the new revision itself (its label URL at each
                // traffic step); then the application's URL is checked as after any deploy.
                let deployed = crate::deploy::container_apps::deploy(
                    ctx.settings,
                    image,
                    &report.outputs,
                    ctx.origin.commit.as_deref(),
                )
                .await
                .map(Some);
                crate::deploy::container_apps::checked(ctx.settings, &report.outputs, deployed)
                    .await
            }
            _ => {
                crate::deploy::slot::ship(
                    ctx.settings,
                    &env,
                    &built.artifact,
                    &report.outputs,
                    None,
                    digest.as_deref(),
                )
                .await
            }
        };
        stage.end_with(shipment.deployed.is_ok() && !matches!(shipment.health, Some(Err(_))));
        let (deployed, healthy) = (shipment.deployed, shipment.health);
        let site = match &deployed {
            Ok(Some(d)) => d.site.clone(),
            _ => None,
        };
        let digest = match (digest, &site) {
            (Some(d), _) => Some(d),
            (None, Some(site)) => Some(site.digest.clone()),
            // The sync failed or did not report its files: hash the folder.
            (None, None) if built.image.is_none() => artifact_digest(&built.artifact).await,
            (None, None) => None,
        };
        // A slot that was not swapped in left production's release (and record) as is.
        if shipment.went_live || deployed.is_err() {
            activity.deploy = Some((target.clone(), digest.clone(), deployed.is_ok()));
        }
        activity.healthy = healthy.as_ref().map(Result::is_ok);
        let shipped = crate::releases::flow::Shipped {
            target: &target,
            artifact: &built.artifact,
            digest: digest.as_deref(),
            site,
            commit: ctx.origin.commit.as_deref(),
            deployed: deployed.is_ok(),
            went_live: shipment.went_live,
            healthy: activity.healthy,
        };
        let outputs = report.outputs.clone();
        let rolled = release_stage(ctx, &env, &outputs, &shipped, activity, &mut report).await;
        report.deployed = deployed.map_err(|e| e.context("stage deploy"))?;
        if let Some(healthy) = healthy {
            if let (Err(_), Some(note)) = (&healthy, &report.release) {
                // The run fails, but the workflow's later steps still learn which release
                // is live and whether it was rolled back to.
                if let Err(e) = note.set_outputs(&ctx.gh, note.rolled_back_from.is_some()) {
                    tracing::warn!("the release outputs could not be written: {e}");
                }
            }
            report.health = Some(healthy.map_err(|e| match &rolled {
                Some(r) => r.explain(&e).context("stage health check"),
                None => e.context("stage health check"),
            })?);
        }
    }
    report.built = built;
    Ok(report)
}

/// The content digest of the artifact (`crate::deploy::digest`), or None (logged) when it
/// cannot be read.
async fn artifact_digest(artifact: &std::path::Path) -> Option<String> {
    let artifact = artifact.to_path_buf();
    tokio::task::spawn_blocking(move || crate::deploy::digest(&artifact))
        .await
        .ok()
        .and_then(|d| {
            d.map_err(|e| tracing::warn!("cannot record the artifact's digest: {e}"))
                .ok()
        })
}

/// Keep and record the release `up` shipped; after a failed health check, the automatic
/// rollback (see `releases::flow`), reflected in the activity record.
async fn release_stage(
    ctx: &Context<'_>,
    env: &EnvName,
    outputs: &Map<String, Value>,
    shipped: &crate::releases::flow::Shipped<'_>,
    activity: &mut Activity,
    report: &mut UpReport,
) -> Option<crate::releases::flow::AutoRollback> {
    let (note, rolled) =
        crate::releases::flow::after_deploy(ctx.settings, env, outputs, shipped).await;
    if let Some(r) = &rolled
        && r.error.is_none()
    {
        if let Some((_, digest, _)) = &mut activity.deploy {
            *digest = Some(format!("sha256:{}", r.restored));
        }
        activity.healthy = Some(r.verdict == "healthy");
        activity.rolled_back = true;
    }
    report.release = note;
    rolled
}

/// `nubes promote` into `env`: its infrastructure brought up to date from its own
/// configuration (as `up` does), then the kept `release` deployed and health-checked,
/// no build. Returns the report and how the redeploy ended.
pub async fn up_with_release(
    ctx: &Context<'_>,
    env: &EnvName,
    store: &crate::releases::Releases,
    release: &crate::releases::Record,
    action: &str,
) -> Result<(UpReport, crate::releases::flow::Redeployed)> {
    let tf = terraform::locate(ctx.settings)?;
    let session = Locked::acquire(ctx.settings, env, "nubes promote")
        .await?
        .start(ctx, tf)
        .await?;
    let mut activity = Activity {
        action: Some(action.to_string()),
        ..Activity::default()
    };
    let result = async {
        let mut report = infrastructure(ctx, &session, false)
            .await
            .map_err(|e| e.context("stage infrastructure"))?;
        activity.app_url = output_str(&report.outputs, "application_url");
        let verdict = crate::releases::flow::redeploy(
            ctx.settings,
            store,
            env,
            &report.outputs,
            release,
            action,
        )
        .await;
        // A slot that was not swapped in (or was swapped back) left production's
        // release, and its record, as they were.
        if verdict.as_ref().is_ok_and(|r| r.went_live) || verdict.is_err() {
            activity.deploy = Some((
                release.target.clone(),
                Some(release.digest.clone()),
                verdict.is_ok(),
            ));
        }
        let done = verdict.map_err(|e| e.context("stage deploy"))?;
        activity.healthy = match done.verdict {
            "healthy" => Some(true),
            "unhealthy" => Some(false),
            _ => None,
        };
        report.release = Some(crate::releases::flow::ReleaseNote {
            id: release.id.clone(),
            digest: release.digest.clone(),
            rolled_back_from: None,
        });
        Ok((report, done))
    }
    .await;
    let ok = matches!(&result, Ok((_, d)) if d.verdict != "unhealthy");
    let record = activity.record(ctx, ok);
    session.close_recording(result, &record).await
}

async fn infrastructure(ctx: &Context<'_>, s: &Session, refresh: bool) -> Result<UpReport> {
    let env = s.locked.env.clone();
    let fingerprint = s.fingerprint(ctx.settings);
    let recorded = s.locked.store.read_meta(&env).await?;
    // A state written since by plain Terraform may no longer match the configuration
    // the fingerprint describes: plan it.
    let unchanged = recorded
        .as_ref()
        .and_then(|m| m.get(META_FINGERPRINT))
        .is_some_and(|f| *f == fingerprint)
        && s.locked.store.changed_outside(&env).await?.is_none();
    if unchanged && !refresh {
        tracing::info!(
            "`{env}` is up to date: configuration, variables and Terraform unchanged since the last apply (--refresh plans anyway)"
        );
        let outputs = stored_outputs(&*s.locked.store, &env).await?;
        return Ok(UpReport {
            env,
            fast_path: true,
            plan: None,
            outputs,
            built: None,
            deployed: None,
            health: None,
            review: Default::default(),
            release: None,
        });
    }
    s.init(ctx).await?;
    let mut plan = args(&["plan", "-input=false", "-detailed-exitcode", PLAN_OUT]);
    plan.push(ctx.lock_timeout_arg());
    let (code, _) = s.terraform_status(ctx, &plan, Io::Stream, &[0, 2]).await?;
    let mut review = crate::review::Verdict::default();
    let summary = if code == 2 {
        let mut apply = args(&["apply", "-input=false", "-auto-approve"]);
        apply.push(ctx.lock_timeout_arg());
        apply.push(PLAN_FILE.into());
        let show_args = args(&["show", "-json", PLAN_FILE]);
        if crate::review::required(ctx, &env) {
            // The saved plan is checked against the reviewed one before it is applied.
            let show = s.terraform(ctx, &show_args, Io::Capture).await?;
            let summary = PlanSummary::from_show_json(&show)?;
            review = crate::review::check(ctx, s, &summary, &show).await?;
            s.terraform(ctx, &apply, Io::Stream).await?;
            summary
        } else {
            // The summary (show -json) and the apply both only read the saved plan: run
            // them side by side, so the summary costs no wall time.
            let (show, applied) = tokio::join!(
                s.terraform(ctx, &show_args, Io::Capture),
                s.terraform(ctx, &apply, Io::Stream)
            );
            applied?;
            PlanSummary::from_show_json(&show?)?
        }
    } else {
        tracing::info!("no changes for `{env}`");
        PlanSummary::default()
    };
    record_apply(ctx, s, &fingerprint).await?;
    let outputs = stored_outputs(&*s.locked.store, &env).await?;
    Ok(UpReport {
        env,
        fast_path: false,
        plan: Some(summary),
        outputs,
        built: None,
        deployed: None,
        health: None,
        review,
        release: None,
    })
}

pub(crate) async fn record_apply(ctx: &Context<'_>, s: &Session, fingerprint: &str) -> Result<()> {
    let Some(stored) = s.locked.store.read(&s.locked.env).await? else {
        return Ok(()); // nothing was ever stored (an empty configuration)
    };
    let mut entries = vec![
        (META_FINGERPRINT, fingerprint.to_string()),
        (
            state::meta::COMMIT,
            ctx.origin.commit.clone().unwrap_or_default(),
        ),
        (state::meta::BRANCH, ctx.origin.branch.clone()),
        (
            state::meta::ACTOR,
            ctx.actor.clone().unwrap_or_else(lockinfo::who),
        ),
        (state::meta::APPLIED_AT, crate::clock::now_rfc3339()),
        (state::meta::VERSION, env!("CARGO_PKG_VERSION").to_string()),
    ];
    // The plan just confirmed the stored state, whoever wrote it last: nubes's again.
    if let Ok(head) = state::StateHead::parse(&stored.bytes) {
        entries.extend(state::head_entries(&stored.bytes, &head));
    }
    s.locked
        .store
        .write_meta(s.locked.held.token(), &entries)
        .await
}

/// What every build sees: the environment and project (a Docker build tags with them).
fn build_env(ctx: &Context<'_>, env: &EnvName) -> Vec<(String, String)> {
    let mut vars = vec![
        ("NUBES_ENV".to_string(), env.to_string()),
        (
            "NUBES_PROJECT".to_string(),
            render::project_name(ctx.settings),
        ),
    ];
    if let Some(commit) = &ctx.origin.commit {
        vars.push(("NUBES_COMMIT".to_string(), commit.clone()));
    }
    vars
}

/// Terraform outputs read straight from the stored state (no Terraform run).
pub async fn stored_outputs(store: &dyn StateStore, env: &EnvName) -> Result<Map<String, Value>> {
    let Some(stored) = store.read(env).await? else {
        return Ok(Map::new());
    };
    let doc: Value = serde_json::from_slice(&stored.bytes)
        .map_err(|e| Error::failed(format!("the stored state of `{env}` is not JSON: {e}")))?;
    Ok(doc
        .get("outputs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default())
}

/// `nubes plan <env>`: render and plan only.
pub async fn plan(ctx: &Context<'_>, env: &EnvName) -> Result<PlanSummary> {
    plan_with_show(ctx, env).await.map(|(summary, _)| summary)
}

/// [`plan`], also returning `terraform show -json` of the saved plan (attribute values,
/// sensitive ones included: keep it in memory). A pull request's plan of an environment
/// that requires reviewed plans is recorded as reviewed (`review::record_entry`).
pub async fn plan_with_show(ctx: &Context<'_>, env: &EnvName) -> Result<(PlanSummary, Vec<u8>)> {
    let tf = terraform::locate(ctx.settings)?;
    let session = Locked::acquire(ctx.settings, env, "nubes plan")
        .await?
        .start(ctx, tf)
        .await?;
    let result = async {
        session.init(ctx).await?;
        let mut plan = args(&["plan", "-input=false", PLAN_OUT]);
        plan.push(ctx.lock_timeout_arg());
        session.terraform(ctx, &plan, Io::Stream).await?;
        let show = session
            .terraform(ctx, &args(&["show", "-json", PLAN_FILE]), Io::Capture)
            .await?;
        let summary = PlanSummary::from_show_json(&show)?;
        let record = crate::review::record_entry(ctx, &session, &summary, &show).await?;
        Ok((summary, show, record))
    }
    .await;
    let record: Vec<(&str, String)> = match &result {
        Ok((_, _, Some(entry))) => vec![entry.clone()],
        _ => Vec::new(),
    };
    session
        .close_recording(result, &record)
        .await
        .map(|(summary, show, _)| (summary, show))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// `terraform destroy` through the gateway
    Terraform,
    /// Delete the resource groups tagged with the env and project through Azure Resource Manager
    ResourceGroup,
}

/// What `down` did.
#[derive(Debug)]
pub enum DownReport {
    NothingToDo,
    Destroyed { tombstone: Option<String> },
}

/// `nubes down <env>`: tear the environment down and drop its state.
pub async fn down(
    ctx: &Context<'_>,
    env: &EnvName,
    force: bool,
    strategy: Strategy,
) -> Result<DownReport> {
    let protected = ctx.settings.environment(env).is_some_and(|e| e.protected);
    if protected && !force {
        return Err(Error::input(format!("environment `{env}` is protected; it was not torn down"))
            .hint(format!("run `nubes down {env} --force` if you really mean to destroy it, or set protected = false in [environments.{env}]")));
    }
    // Terraform is needed only to destroy through it; check before taking the lock.
    let tf = match strategy {
        Strategy::Terraform => Some(terraform::locate(ctx.settings)?),
        Strategy::ResourceGroup => None,
    };
    let arm = match strategy {
        Strategy::ResourceGroup => Some(crate::arm::Arm::from_env()?),
        Strategy::Terraform => None,
    };
    let locked = Locked::acquire(ctx.settings, env, "nubes down").await?;
    let has_state = match locked.store.read(env).await {
        Ok(s) => s.is_some(),
        Err(e) => {
            let _ = locked.release().await;
            return Err(e);
        }
    };
    if !has_state {
        locked.release().await?;
        return Ok(DownReport::NothingToDo);
    }
    match (tf, arm) {
        (Some(tf), _) => {
            let session = locked.start(ctx, tf).await?;
            let result = async {
                session.init(ctx).await?;
                let mut destroy = args(&["destroy", "-input=false", "-auto-approve"]);
                destroy.push(ctx.lock_timeout_arg());
                session.terraform(ctx, &destroy, Io::Stream).await?;
                let tombstone = session
                    .locked
                    .store
                    .delete(session.locked.held.token())
                    .await?;
                Ok(DownReport::Destroyed { tombstone })
            }
            .await;
            session.close(result).await
        }
        (None, Some(arm)) => {
            let result = async {
                delete_resource_groups(ctx, &arm, env).await?;
                let tombstone = locked.store.delete(locked.held.token()).await?;
                Ok::<_, Error>(DownReport::Destroyed { tombstone })
            }
            .await;
            let released = locked.release().await;
            let value = result?;
            released?;
            Ok(value)
        }
        (None, None) => Err(Error::failed("no teardown strategy")),
    }
}

/// How long resource-group deletions may take in all (Azure often needs minutes).
const RESOURCE_GROUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Delete the env's resource groups through Resource Manager. State is dropped only if
/// every group is gone; otherwise it is kept so a rerun can finish the job.
async fn delete_resource_groups(
    ctx: &Context<'_>,
    arm: &crate::arm::Arm,
    env: &EnvName,
) -> Result<()> {
    let project = render::project_name(ctx.settings);
    ctx.gh
        .group(&format!("delete resource groups of env {env}"));
    let outcomes = arm
        .delete_tagged_groups(env.as_str(), &project, RESOURCE_GROUP_TIMEOUT)
        .await;
    ctx.gh.endgroup();
    let outcomes = outcomes?;
    if outcomes.is_empty() {
        tracing::warn!(
            "no resource groups in subscription {} are tagged nubes-env={env} and nubes-project={project}",
            arm.subscription()
        );
    }
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().cloned())
        .collect();
    if !failures.is_empty() {
        return Err(Error::failed(format!(
            "{} of {} resource groups of `{env}` were not deleted, so its state was kept: {}",
            failures.len(),
            outcomes.len(),
            failures.join("; ")
        ))
        .hint(format!(
            "fix the cause and rerun `nubes down {env} --strategy resource-group`"
        )));
    }
    Ok(())
}

/// Outputs as printable `name = value` lines, sensitive ones hidden.
pub fn output_lines(outputs: &Map<String, Value>) -> Vec<String> {
    outputs
        .iter()
        .map(|(name, o)| {
            if is_sensitive(o) {
                format!("{name} = <sensitive>")
            } else {
                let v = o.get("value").cloned().unwrap_or(Value::Null);
                match v {
                    Value::String(s) => format!("{name} = {s}"),
                    other => format!("{name} = {other}"),
                }
            }
        })
        .collect()
}

pub fn is_sensitive(output: &Value) -> bool {
    output
        .get("sensitive")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// A string output's value, if present and not sensitive.
pub fn output_str(outputs: &Map<String, Value>, name: &str) -> Option<String> {
    let o = outputs.get(name)?;
    if is_sensitive(o) {
        return None;
    }
    o.get("value").and_then(Value::as_str).map(str::to_string)
}

/// Register every sensitive output value as a secret (masked on GitHub).
pub fn mask_sensitive(gh: &Github, outputs: &Map<String, Value>) {
    for o in outputs.values().filter(|o| is_sensitive(o)) {
        match o.get("value") {
            Some(Value::String(s)) => gh.mask(s),
            Some(other) => gh.mask(&other.to_string()),
            None => {}
        }
    }
}
