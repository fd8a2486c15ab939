//! `nubes.toml`: parsing (unknown keys and bad values rejected with file:line:column and
//! the allowed values) and resolution into [`Settings`] with the precedence
//! flags > `NUBES_*` environment variables > file > defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::env_name::{DEFAULT_PREFIX, EnvName, printable, quoted};
use crate::error::{Error, Result};

// ---------------------------------------------------------------------------------
// The file, as written.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    project: FileProject,
    #[serde(default)]
    state: FileState,
    #[serde(default)]
    terraform: FileTerraform,
    #[serde(default)]
    environments: BTreeMap<Spanned<String>, FileEnvironment>,
    build: Option<FileBuild>,
    #[serde(default)]
    deploy: FileDeploy,
    #[serde(default)]
    expiry: FileExpiry,
    #[serde(default)]
    github: FileGithub,
}

/// `[github]`: what nubes does on GitHub besides the job summary.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGithub {
    comment: Option<Spanned<String>>,
}

/// `[expiry]`, and an environment's `[environments.<name>.expiry]` override.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileExpiry {
    idle: Option<Spanned<String>>,
    max_age: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProject {
    name: Option<Spanned<String>>,
    location: Option<Spanned<String>>,
    branch_prefix: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileState {
    backend: Option<Spanned<String>>,
    account_url: Option<Spanned<String>>,
    account: Option<Spanned<String>>,
    container: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    lease_seconds: Option<Spanned<i64>>,
    lock_timeout: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    history: Option<Spanned<i64>>,
    path: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTerraform {
    dir: Option<Spanned<String>>,
    binary: Option<Spanned<String>>,
    #[serde(default)]
    vars: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEnvironment {
    #[serde(default)]
    protected: bool,
    require_reviewed_plan: Option<bool>,
    #[serde(default)]
    vars: toml::Table,
    expiry: Option<FileExpiry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBuild {
    command: Option<String>,
    artifact: Option<String>,
    #[serde(default)]
    after_infra: bool,
    engine: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDeploy {
    target: Option<Spanned<String>>,
    traffic_steps: Option<Spanned<Vec<i64>>>,
    health_path: Option<String>,
    health_timeout: Option<Spanned<String>>,
    command: Option<Vec<String>>,
    cache_control: Option<String>,
    keep_releases: Option<usize>,
    rollback_on_failure: Option<bool>,
    releases_container: Option<String>,
    slot: Option<String>,
    container: Option<String>,
}

// ---------------------------------------------------------------------------------
// The resolved settings the rest of nubes uses.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Azure,
    Local,
}

#[derive(Debug, Clone)]
pub struct StateSettings {
    pub backend: Backend,
    /// Whether the backend was chosen (rather than defaulted to local).
    pub backend_explicit: bool,
    /// Set for the Azure backend: `https://<account>.blob.core.windows.net`.
    pub account_url: Option<String>,
    pub container: String,
    pub key: String,
    pub lease_seconds: u32,
    pub lock_timeout: Duration,
    /// How long storage may keep failing (unreachable, 5xx, throttled) before an
    /// operation gives up; requests are retried with backoff until then.
    pub timeout: Duration,
    pub history: usize,
    /// Folder of the local backend.
    pub local_path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct EnvironmentSettings {
    pub protected: bool,
    /// Apply only a plan reviewed on a pull request (default: `protected`).
    pub require_reviewed_plan: bool,
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// `[expiry]` with this environment's overrides applied.
    pub expiry: crate::expiry::Rules,
}

#[derive(Debug, Clone)]
pub struct BuildSettings {
    pub command: Option<String>,
    pub artifact: Option<String>,
    pub after_infra: bool,
    /// The container engine that builds a Dockerfile (`docker`, `podman`, `buildah`);
    /// `None`: the first of them found on PATH.
    pub engine: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DeploySettings {
    pub target: Option<String>,
    pub health_path: String,
    pub health_timeout: Duration,
    pub command: Option<Vec<String>>,
    pub cache_control: Option<String>,
    /// Releases kept per environment (`[deploy] keep_releases`, default 10; see
    /// `releases.rs`).
    pub keep_releases: usize,
    /// `[deploy] rollback_on_failure`: `None` = the default (roll back when a previous
    /// healthy release exists).
    pub rollback_on_failure: Option<bool>,
    /// The container of the state account releases are kept in (`nubes-releases`).
    pub releases_container: String,
    /// `[deploy] slot`: app-service / functions deploy to this slot, health-check it
    /// and swap it into production (`deploy::slot`).
    pub slot: Option<String>,
    /// Container Apps: the new revision's share of traffic at each step, in percent,
    /// rising to 100 (each step health-checked). Default `[100]`.
    pub traffic_steps: Vec<u8>,
    /// `[deploy] container`: Container Apps, the container of the app's template that
    /// runs the built image (needed only when the template has several, e.g. sidecars).
    pub container: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// The project folder (`-C`), against which relative paths resolve.
    pub root: PathBuf,
    /// The config file read, if any.
    pub config_file: Option<PathBuf>,
    pub project_name: Option<String>,
    pub location: Option<String>,
    pub branch_prefix: String,
    pub state: StateSettings,
    pub terraform_dir: PathBuf,
    pub terraform_binary: String,
    pub vars: serde_json::Map<String, serde_json::Value>,
    pub environments: BTreeMap<String, EnvironmentSettings>,
    pub build: Option<BuildSettings>,
    pub deploy: DeploySettings,
    /// `[expiry]` for environments without an override of their own.
    pub expiry: crate::expiry::Rules,
    /// `[github] comment`: when a pull request's plan is posted as a comment.
    pub comment: CommentMode,
}

/// `[github] comment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommentMode {
    /// Comment when the plan has changes; a later plan without changes edits an existing
    /// comment to say so and creates none.
    #[default]
    Changes,
    Always,
    Never,
}

pub const ALLOWED_COMMENT_MODES: &[&str] = &["changes", "always", "never"];

/// Values given on the command line (highest precedence).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub lock_timeout: Option<String>,
}

pub const ALLOWED_TARGETS: &[&str] = &[
    "static-site",
    "app-service",
    "functions",
    "container-apps",
    "command",
];
pub const ALLOWED_ENGINES: &[&str] = &["docker", "podman", "buildah"];

impl Settings {
    pub fn env_name(&self, arg: &str) -> Result<EnvName> {
        EnvName::from_arg(arg, &self.branch_prefix)
    }

    pub fn environment(&self, env: &EnvName) -> Option<&EnvironmentSettings> {
        self.environments.get(env.as_str())
    }

    pub fn protected(&self, env: &EnvName) -> bool {
        self.environment(env).is_some_and(|e| e.protected)
    }

    /// Whether `env` applies only a plan reviewed on a pull request
    /// (`require_reviewed_plan`, by default on for protected environments).
    pub fn requires_reviewed_plan(&self, env: &EnvName) -> bool {
        self.environment(env)
            .is_some_and(|e| e.require_reviewed_plan)
    }

    /// The expiry rules that apply to `env`.
    pub fn expiry(&self, env: &EnvName) -> crate::expiry::Rules {
        self.environment(env).map_or(self.expiry, |e| e.expiry)
    }
}

// ---------------------------------------------------------------------------------
// Where a value came from, for error messages.

enum Origin<'a> {
    Flag(&'a str),
    Env(&'a str),
    File {
        path: &'a Path,
        text: &'a str,
        span: std::ops::Range<usize>,
        key: &'a str,
    },
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(name) => write!(f, "{name}"),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::File {
                path,
                text,
                span,
                key,
            } => {
                let (line, col) = line_col(text, span.start);
                write!(f, "{}:{line}:{col}: {key}", path.display())
            }
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A raw value and its origin, chosen by precedence.
struct Pick<'a> {
    value: String,
    origin: Origin<'a>,
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl<'a> Ctx<'a> {
    fn pick_str(
        &self,
        flag: Option<(&'a str, &'a str)>,
        env: &'a str,
        file: &'a Option<Spanned<String>>,
        key: &'a str,
    ) -> Option<Pick<'a>> {
        if let Some((name, v)) = flag {
            return Some(Pick {
                value: v.to_string(),
                origin: Origin::Flag(name),
            });
        }
        if let Some(v) = env_var(env) {
            return Some(Pick {
                value: v,
                origin: Origin::Env(env),
            });
        }
        file.as_ref().map(|s| Pick {
            value: s.get_ref().clone(),
            origin: self.file_origin(s.span(), key),
        })
    }

    fn pick_int(
        &self,
        env: &'a str,
        file: &'a Option<Spanned<i64>>,
        key: &'a str,
    ) -> Option<Pick<'a>> {
        if let Some(v) = env_var(env) {
            return Some(Pick {
                value: v,
                origin: Origin::Env(env),
            });
        }
        file.as_ref().map(|s| Pick {
            value: s.get_ref().to_string(),
            origin: self.file_origin(s.span(), key),
        })
    }

    fn file_origin(&self, span: std::ops::Range<usize>, key: &'a str) -> Origin<'a> {
        Origin::File {
            path: self.path,
            text: self.text,
            span,
            key,
        }
    }
}

fn bad(origin: &Origin, problem: impl fmt::Display, allowed: impl Into<String>) -> Error {
    Error::input(format!("{origin}: {problem}")).hint(allowed)
}

fn int_in(p: &Pick, lo: i64, hi: i64, why: &str) -> Result<i64> {
    let n: i64 = p.value.trim().parse().map_err(|_| {
        bad(
            &p.origin,
            format!("{} is not a whole number", quoted(&p.value)),
            format!("allowed: {lo} to {hi} ({why})"),
        )
    })?;
    if !(lo..=hi).contains(&n) {
        return Err(bad(
            &p.origin,
            format!("{n} is out of range"),
            format!("allowed: {lo} to {hi} ({why})"),
        ));
    }
    Ok(n)
}

/// The longest duration a setting may have. Longer waits make no sense for a lock or a
/// health check, and Terraform rejects a `-lock-timeout` past ~292 years, which used to
/// surface only as a failed `terraform plan` (exit 1) instead of a configuration error.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

fn duration(p: &Pick) -> Result<Duration> {
    let d = humantime::parse_duration(p.value.trim()).map_err(|e| {
        bad(
            &p.origin,
            format!("{} is not a duration ({e})", quoted(&p.value)),
            "use a number with a unit, e.g. \"90s\", \"10m\" or \"1h\"",
        )
    })?;
    if d > MAX_DURATION {
        return Err(bad(
            &p.origin,
            format!("{} is too long", quoted(&p.value)),
            "allowed: up to 7d",
        ));
    }
    Ok(d)
}

/// The longest expiry rule: ten years is "never" in all but name.
const MAX_EXPIRY: Duration = Duration::from_secs(3650 * 24 * 3600);

/// An expiry rule: a duration (at least a minute, at most ten years) or `"never"`.
fn expiry_rule(p: &Pick) -> Result<Option<Duration>> {
    let v = p.value.trim();
    if v == "never" {
        return Ok(None);
    }
    let hint = "use a duration such as \"14d\" or \"36h\", or \"never\"";
    let d = humantime::parse_duration(v).map_err(|e| {
        bad(
            &p.origin,
            format!("{} is not a duration ({e})", quoted(&p.value)),
            hint,
        )
    })?;
    if d < Duration::from_secs(60) || d > MAX_EXPIRY {
        return Err(bad(
            &p.origin,
            format!("{} is out of range", quoted(&p.value)),
            format!("allowed: 1m to 3650d, or \"never\" ({hint})"),
        ));
    }
    Ok(Some(d))
}

fn expiry_rules(
    ctx: &Ctx<'_>,
    file: &FileExpiry,
    base: crate::expiry::Rules,
    global: bool,
) -> Result<crate::expiry::Rules> {
    // Per-environment overrides have no environment variable.
    let (idle, max_age) = if global {
        (
            ctx.pick_str(None, "NUBES_EXPIRY_IDLE", &file.idle, "[expiry] idle"),
            ctx.pick_str(
                None,
                "NUBES_EXPIRY_MAX_AGE",
                &file.max_age,
                "[expiry] max_age",
            ),
        )
    } else {
        (
            value_pick(ctx, &file.idle, "expiry.idle"),
            value_pick(ctx, &file.max_age, "expiry.max_age"),
        )
    };
    Ok(crate::expiry::Rules {
        idle: match idle {
            Some(p) => expiry_rule(&p)?,
            None => base.idle,
        },
        max_age: match max_age {
            Some(p) => expiry_rule(&p)?,
            None => base.max_age,
        },
    })
}

/// `nubes init --traffic-steps 10,50,100`: the same rules as `[deploy] traffic_steps`.
pub fn traffic_steps_flag(raw: &str) -> Result<Vec<u8>> {
    let steps: Vec<i64> = raw
        .split(',')
        .map(|s| s.trim().parse::<i64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| {
            Error::input(format!(
                "--traffic-steps {} is not a list of numbers",
                crate::env_name::quoted(raw)
            ))
            .hint("list rising percentages that end at 100, e.g. 10,50,100")
        })?;
    traffic_steps(&steps, &Origin::Flag("--traffic-steps"))
}

/// `[deploy] traffic_steps`: percentages, each 1..=100, strictly rising, ending at 100.
fn traffic_steps(steps: &[i64], origin: &Origin) -> Result<Vec<u8>> {
    let hint =
        "list rising percentages that end at 100, e.g. [10, 50, 100] (or [100] to switch at once)";
    if steps.last() != Some(&100) {
        return Err(bad(origin, "the last step must be 100", hint));
    }
    let mut out = Vec::with_capacity(steps.len());
    for &s in steps {
        if !(1..=100).contains(&s) || out.last().is_some_and(|&last: &u8| i64::from(last) >= s) {
            return Err(bad(
                origin,
                format!("{s} is not a rising percentage from 1 to 100"),
                hint,
            ));
        }
        out.push(s as u8);
    }
    Ok(out)
}

/// A value from the file only (per-environment settings have no variable).
fn value_pick<'a>(
    ctx: &Ctx<'a>,
    value: &'a Option<Spanned<String>>,
    key: &'a str,
) -> Option<Pick<'a>> {
    value.as_ref().map(|s| Pick {
        value: s.get_ref().clone(),
        origin: ctx.file_origin(s.span(), key),
    })
}

fn one_of(p: &Pick, allowed: &[&str]) -> Result<String> {
    if allowed.contains(&p.value.as_str()) {
        Ok(p.value.clone())
    } else {
        Err(bad(
            &p.origin,
            format!("{} is not allowed", quoted(&p.value)),
            format!("allowed values: {}", allowed.join(", ")),
        ))
    }
}

fn to_json(table: &toml::Table) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(table) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

fn valid_container(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn valid_account(name: &str) -> bool {
    (3..=24).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// Load and resolve the configuration. `config` is the `--config` value (relative to
/// `root`); a missing default `nubes.toml` is fine, a missing explicit one is not.
pub fn load(root: &Path, config: Option<&Path>, overrides: &Overrides) -> Result<Settings> {
    let (path, explicit) = match config {
        Some(p) => (root.join(p), true),
        None => (root.join("nubes.toml"), false),
    };
    let text = match fs_err::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => None,
        Err(e) => {
            return Err(Error::input(format!("cannot read the configuration: {e}"))
                .hint("pass an existing file with --config, or run without it to use nubes.toml"));
        }
    };
    let file: FileConfig = match &text {
        None => FileConfig::default(),
        Some(t) => parse_file(t).map_err(|(e, key)| {
            let at = match e.span() {
                Some(span) => {
                    let (l, c) = line_col(t, span.start);
                    format!("{}:{l}:{c}", path.display())
                }
                None => path.display().to_string(),
            };
            // serde's "invalid type: string \"20\", expected i64" says nothing of
            // which key: name it, as the file shows it.
            let key = key.map(|k| format!("{k}: ")).unwrap_or_default();
            Error::input(format!("{at}: {key}{}", e.message().trim_end()))
                .hint("see the configuration reference in README.md")
        })?,
    };
    let empty = String::new();
    let ctx = Ctx {
        path: &path,
        text: text.as_ref().unwrap_or(&empty),
    };
    resolve(
        root,
        text.is_some().then(|| path.clone()),
        &ctx,
        &file,
        overrides,
    )
}

/// Parse nubes.toml; an error comes with the key it concerns (`[state] history`), read
/// by `serde_path_to_error` (none for a syntax error, which has no key yet).
fn parse_file(text: &str) -> std::result::Result<FileConfig, (toml::de::Error, Option<String>)> {
    let de = toml::Deserializer::parse(text).map_err(|e| (e, None))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let mut key = key_as_written(&e.path().to_string());
        let inner = e.into_inner();
        // A map key serde could not name (`[environments.?]`): the table header above
        // the error in the file names it.
        if let (Some(k), Some(span)) = (&key, inner.span())
            && k.contains('?')
            && let Some(header) = text[..span.start.min(text.len())]
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| l.starts_with('['))
        {
            let header = crate::env_name::printable(header);
            key = Some(match k.split_once("] ") {
                Some((_, rest)) => format!("{header} {rest}"),
                None => header,
            });
        }
        (inner, key)
    })
}

/// `state.history` → `[state] history`; `environments.prod.vars.x` →
/// `[environments.prod] vars.x`; a top-level key as is; `.` (no path) → none.
fn key_as_written(path: &str) -> Option<String> {
    if path.is_empty() || path == "." {
        return None;
    }
    // `toml::Spanned` fields add a private segment: not part of the key as written.
    let parts: Vec<&str> = path.split('.').filter(|p| !p.starts_with("$__")).collect();
    let path = parts.join(".");
    let table_len = if parts.first() == Some(&"environments") {
        2
    } else {
        1
    };
    if parts.len() <= table_len {
        return Some(path);
    }
    Some(format!(
        "[{}] {}",
        parts[..table_len].join("."),
        parts[table_len..].join(".")
    ))
}

fn resolve(
    root: &Path,
    config_file: Option<PathBuf>,
    ctx: &Ctx,
    file: &FileConfig,
    ov: &Overrides,
) -> Result<Settings> {
    let s = &file.state;

    let branch_prefix = match ctx.pick_str(
        None,
        "NUBES_BRANCH_PREFIX",
        &file.project.branch_prefix,
        "[project] branch_prefix",
    ) {
        // Letters, digits, `-`, `_`, `.`: the prefix is shown in messages and hints, and
        // control or invisible characters (which no git branch can carry anyway) must
        // not reach the terminal or the job log through it.
        Some(p)
            if p.value.is_empty()
                || p.value.len() > 40
                || !p
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) =>
        {
            return Err(bad(
                &p.origin,
                format!("{} is not a usable branch prefix", quoted(&p.value)),
                "use letters, digits, `-`, `_` or `.` (at most 40), e.g. \"env-\"",
            ));
        }
        Some(p) => p.value,
        None => DEFAULT_PREFIX.to_string(),
    };

    let account_url = match ctx.pick_str(
        None,
        "NUBES_STATE_ACCOUNT_URL",
        &s.account_url,
        "[state] account_url",
    ) {
        Some(p) => {
            let url = p.value.trim().trim_end_matches('/').to_string();
            match url::Url::parse(&url) {
                Ok(u)
                    if matches!(u.scheme(), "https" | "http")
                        && u.host().is_some()
                        && u.query().is_none() =>
                {
                    Some(url)
                }
                _ => {
                    // A query string here is most likely a SAS: never echo it.
                    let shown = match p.value.split_once('?') {
                        Some((base, _)) => format!("`{}?…`", printable(base)),
                        None => quoted(&p.value),
                    };
                    return Err(bad(
                        &p.origin,
                        format!("{shown} is not an account URL"),
                        "use https://<account>.blob.core.windows.net (no query string: give a SAS through NUBES_STORAGE_SAS)",
                    ));
                }
            }
        }
        None => match ctx.pick_str(None, "NUBES_STATE_ACCOUNT", &s.account, "[state] account") {
            Some(p) if valid_account(&p.value) => {
                Some(format!("https://{}.blob.core.windows.net", p.value))
            }
            Some(p) => {
                return Err(bad(
                    &p.origin,
                    format!("{} is not a storage account name", quoted(&p.value)),
                    "3 to 24 lowercase letters and digits",
                ));
            }
            None => None,
        },
    };

    let backend = match ctx.pick_str(None, "NUBES_STATE_BACKEND", &s.backend, "[state] backend") {
        Some(p) => match one_of(&p, &["azure", "local"])?.as_str() {
            "azure" => {
                if account_url.is_none() {
                    return Err(bad(
                        &p.origin,
                        "the azure backend needs a storage account",
                        "set [state] account_url (or account), or NUBES_STATE_ACCOUNT_URL",
                    ));
                }
                Backend::Azure
            }
            _ => Backend::Local,
        },
        None if account_url.is_some() => Backend::Azure,
        None => Backend::Local,
    };
    let backend_explicit = file.state.backend.is_some() || env_var("NUBES_STATE_BACKEND").is_some();

    let container = match ctx.pick_str(
        None,
        "NUBES_STATE_CONTAINER",
        &s.container,
        "[state] container",
    ) {
        Some(p) if valid_container(&p.value) => p.value,
        Some(p) => {
            return Err(bad(
                &p.origin,
                format!("{} is not a valid container name", quoted(&p.value)),
                "3 to 63 lowercase letters, digits and single hyphens",
            ));
        }
        None => "tfstate".to_string(),
    };

    let key = match ctx.pick_str(None, "NUBES_STATE_KEY", &s.key, "[state] key") {
        Some(p) if !p.value.contains("{env}") => {
            return Err(bad(
                &p.origin,
                format!(
                    "{} does not contain {{env}}, so every environment would share one state",
                    quoted(&p.value)
                ),
                "keep {env} in the key, e.g. \"{env}.terraform.tfstate\" (the NubesGen-compatible default)",
            ));
        }
        Some(p)
            if p.value.starts_with('/')
                || p.value.split('/').any(|seg| seg == ".." || seg == ".")
                || p.value.contains('\\') =>
        {
            return Err(bad(
                &p.origin,
                format!("{} is not a valid blob name", quoted(&p.value)),
                "no leading `/`, no `.` or `..` segments, no `\\`",
            ));
        }
        Some(p) => p.value,
        None => "{env}.terraform.tfstate".to_string(),
    };

    let lease_seconds = match ctx.pick_int(
        "NUBES_STATE_LEASE_SECONDS",
        &s.lease_seconds,
        "[state] lease_seconds",
    ) {
        Some(p) => int_in(&p, 15, 60, "Azure blob leases last 15 to 60 seconds")? as u32,
        None => 60,
    };
    let lock_timeout = match ctx.pick_str(
        ov.lock_timeout.as_deref().map(|v| ("--lock-timeout", v)),
        "NUBES_STATE_LOCK_TIMEOUT",
        &s.lock_timeout,
        "[state] lock_timeout",
    ) {
        Some(p) => duration(&p)?,
        None => Duration::from_secs(600),
    };
    let timeout = match ctx.pick_str(None, "NUBES_STATE_TIMEOUT", &s.timeout, "[state] timeout") {
        Some(p) => {
            let d = duration(&p)?;
            if d < Duration::from_secs(1) || d > Duration::from_secs(600) {
                return Err(bad(
                    &p.origin,
                    format!("{} is out of range", quoted(&p.value)),
                    "use a duration from 1s to 10m (how long storage may stay unreachable before nubes gives up)",
                ));
            }
            d
        }
        None => Duration::from_secs(30),
    };
    let history = match ctx.pick_int("NUBES_STATE_HISTORY", &s.history, "[state] history") {
        Some(p) => int_in(&p, 1, 1000, "previous versions kept per environment")? as usize,
        None => 20,
    };
    let local_path = match ctx.pick_str(None, "NUBES_STATE_PATH", &s.path, "[state] path") {
        Some(p) => root.join(p.value),
        None => root.join(".nubes").join("state"),
    };

    let terraform_dir = match ctx.pick_str(
        None,
        "NUBES_TERRAFORM_DIR",
        &file.terraform.dir,
        "[terraform] dir",
    ) {
        Some(p) => root.join(p.value),
        None => root.join("terraform"),
    };
    let terraform_binary = match ctx.pick_str(
        None,
        "NUBES_TERRAFORM_BINARY",
        &file.terraform.binary,
        "[terraform] binary",
    ) {
        Some(p) if p.value.trim().is_empty() => {
            return Err(bad(
                &p.origin,
                "is empty",
                "\"terraform\", \"tofu\" or a path",
            ));
        }
        Some(p) => p.value,
        None => "terraform".to_string(),
    };

    let expiry = expiry_rules(ctx, &file.expiry, Default::default(), true)?;
    let mut environments = BTreeMap::new();
    for (name, env) in &file.environments {
        if let Err(e) = EnvName::parse(name.get_ref(), &branch_prefix) {
            let origin = ctx.file_origin(name.span(), "[environments]");
            return Err(bad(
                &origin,
                e.to_string(),
                e.hint_text().unwrap_or_default(),
            ));
        }
        environments.insert(
            name.get_ref().clone(),
            EnvironmentSettings {
                protected: env.protected,
                require_reviewed_plan: env.require_reviewed_plan.unwrap_or(env.protected),
                vars: to_json(&env.vars),
                expiry: match &env.expiry {
                    Some(e) => expiry_rules(ctx, e, expiry, false)?,
                    None => expiry,
                },
            },
        );
    }

    let target = match ctx.pick_str(
        None,
        "NUBES_DEPLOY_TARGET",
        &file.deploy.target,
        "[deploy] target",
    ) {
        Some(p) => Some(one_of(&p, ALLOWED_TARGETS)?),
        None => None,
    };
    let health_timeout = match ctx.pick_str(
        None,
        "NUBES_DEPLOY_HEALTH_TIMEOUT",
        &file.deploy.health_timeout,
        "[deploy] health_timeout",
    ) {
        Some(p) => duration(&p)?,
        None => Duration::from_secs(120),
    };
    let comment = match ctx.pick_str(
        None,
        "NUBES_GITHUB_COMMENT",
        &file.github.comment,
        "[github] comment",
    ) {
        Some(p) => match one_of(&p, ALLOWED_COMMENT_MODES)?.as_str() {
            "always" => CommentMode::Always,
            "never" => CommentMode::Never,
            _ => CommentMode::Changes,
        },
        None => CommentMode::Changes,
    };

    let keep_releases = file.deploy.keep_releases.unwrap_or(10);
    if keep_releases == 0 {
        return Err(Error::input(
            "[deploy] keep_releases = 0: nubes needs at least the live release to roll back to",
        )
        .hint("set keep_releases to 1 or more (default 10)"));
    }
    let releases_container = file
        .deploy
        .releases_container
        .clone()
        .unwrap_or_else(|| "nubes-releases".into());
    if !crate::releases::container_name_ok(&releases_container) {
        return Err(Error::input(format!(
            "[deploy] releases_container `{}` is not a valid container name",
            crate::env_name::printable(&releases_container)
        ))
        .hint("3 to 63 lower-case letters, digits and single hyphens, starting with a letter or digit"));
    }
    let slot = file.deploy.slot.clone().filter(|s| !s.is_empty());
    if let Some(name) = &slot {
        let ok = name.len() <= 59
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && name != "production";
        if !ok {
            return Err(Error::input(format!(
                "[deploy] slot `{}` is not a deployment slot name nubes can swap",
                crate::env_name::printable(name)
            ))
            .hint("the name of the slot your Terraform creates, e.g. slot = \"staging\" (lower-case letters, digits and hyphens; not `production`)"));
        }
    }

    let traffic_steps = match &file.deploy.traffic_steps {
        Some(steps) => traffic_steps(
            steps.get_ref(),
            &ctx.file_origin(steps.span(), "[deploy] traffic_steps"),
        )?,
        None => vec![100],
    };

    Ok(Settings {
        root: root.to_path_buf(),
        config_file,
        project_name: ctx
            .pick_str(
                None,
                "NUBES_PROJECT_NAME",
                &file.project.name,
                "[project] name",
            )
            .map(|p| p.value),
        location: ctx
            .pick_str(
                None,
                "NUBES_PROJECT_LOCATION",
                &file.project.location,
                "[project] location",
            )
            .map(|p| p.value),
        branch_prefix,
        state: StateSettings {
            backend,
            backend_explicit,
            account_url,
            container,
            key,
            lease_seconds,
            lock_timeout,
            timeout,
            history,
            local_path,
        },
        terraform_dir,
        terraform_binary,
        vars: to_json(&file.terraform.vars),
        environments,
        build: match file.build.as_ref() {
            Some(b) => Some(BuildSettings {
                command: b.command.clone(),
                artifact: b.artifact.clone(),
                after_infra: b.after_infra,
                engine: match ctx.pick_str(None, "NUBES_BUILD_ENGINE", &b.engine, "[build] engine")
                {
                    Some(p) => Some(one_of(&p, ALLOWED_ENGINES)?),
                    None => None,
                },
            }),
            None => None,
        },
        deploy: DeploySettings {
            target,
            health_path: file
                .deploy
                .health_path
                .clone()
                .unwrap_or_else(|| "/".into()),
            health_timeout,
            command: file.deploy.command.clone(),
            cache_control: file.deploy.cache_control.clone(),
            keep_releases,
            rollback_on_failure: file.deploy.rollback_on_failure,
            releases_container,
            slot,
            traffic_steps,
            container: file.deploy.container.clone(),
        },
        expiry,
        comment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("nubes.toml"), text).unwrap();
        load(dir.path(), None, &Overrides::default())
    }

    fn err(text: &str) -> String {
        let e = load_text(text).expect_err("should be rejected");
        assert_eq!(e.exit_code(), 2);
        format!("{e} | {}", e.hint_text().unwrap_or_default())
    }

    #[test]
    fn defaults_are_nubesgen_compatible() {
        let s = load_text("").unwrap();
        assert_eq!(s.state.backend, Backend::Local);
        assert!(!s.state.backend_explicit);
        assert_eq!(s.state.container, "tfstate");
        assert_eq!(s.state.key, "{env}.terraform.tfstate");
        assert_eq!(s.state.lease_seconds, 60);
        assert_eq!(s.state.lock_timeout, Duration::from_secs(600));
        assert_eq!(s.state.history, 20);
    }

    #[test]
    fn account_name_becomes_url_and_selects_azure() {
        let s = load_text("[state]\naccount = \"stpetclinic\"\n").unwrap();
        assert_eq!(s.state.backend, Backend::Azure);
        assert_eq!(
            s.state.account_url.as_deref(),
            Some("https://stpetclinic.blob.core.windows.net")
        );
    }

    #[test]
    fn unknown_keys_are_reported_with_position_and_allowed_keys() {
        let m = err("[state]\ncontainer = \"tfstate\"\nleas_seconds = 30\n");
        assert!(m.contains("nubes.toml:3:1"), "{m}");
        assert!(
            m.contains("unknown field `leas_seconds`") && m.contains("lease_seconds"),
            "{m}"
        );
    }

    #[test]
    fn reviewed_plans_default_to_protection_and_comment_modes_are_checked() {
        let s = load_text(
            "[environments.prod]\nprotected = true\n[environments.stage]\nrequire_reviewed_plan = true\n\
             [environments.demo]\nprotected = true\nrequire_reviewed_plan = false\n[environments.dev]\n",
        )
        .unwrap();
        let required = |n: &str| s.requires_reviewed_plan(&EnvName::parse(n, "env-").unwrap());
        assert!(required("prod") && required("stage"));
        assert!(!required("demo") && !required("dev") && !required("other"));
        assert_eq!(s.comment, CommentMode::Changes);
        let s = load_text("[github]\ncomment = \"never\"\n").unwrap();
        assert_eq!(s.comment, CommentMode::Never);
        let m = err("[github]\ncomment = \"sometimes\"\n");
        assert!(
            m.contains("nubes.toml:2:11") && m.contains("changes, always, never"),
            "{m}"
        );
    }

    #[test]
    fn storage_timeout_is_a_bounded_duration() {
        assert_eq!(
            load_text("").unwrap().state.timeout,
            Duration::from_secs(30)
        );
        let s = load_text("[state]\ntimeout = \"2m\"\n").unwrap();
        assert_eq!(s.state.timeout, Duration::from_secs(120));
        let m = err("[state]\ntimeout = \"0s\"\n");
        assert!(
            m.contains("nubes.toml:2:11") && m.contains("out of range") && m.contains("1s to 10m"),
            "{m}"
        );
        let m = err("[state]\ntimeout = \"1h\"\n");
        assert!(m.contains("out of range"), "{m}");
        let m = err("[state]\ntimeout = \"soon\"\n");
        assert!(m.contains("not a duration"), "{m}");
    }

    #[test]
    fn expiry_rules_with_per_environment_overrides_and_never() {
        let day = Duration::from_secs(86_400);
        let s = load_text("").unwrap();
        assert_eq!(
            s.expiry,
            crate::expiry::Rules::default(),
            "no expiry unless asked"
        );
        let s = load_text(
            "[expiry]\nidle = \"14d\"\nmax_age = \"90d\"\n\
             [environments.demo.expiry]\nidle = \"never\"\n\
             [environments.qa.expiry]\nmax_age = \"7d\"\n\
             [environments.prod]\nprotected = true\n",
        )
        .unwrap();
        assert_eq!(s.expiry.idle, Some(14 * day));
        let rules = |n: &str| s.expiry(&EnvName::parse(n, "env-").unwrap());
        assert_eq!(rules("demo").idle, None);
        assert_eq!(
            rules("demo").max_age,
            Some(90 * day),
            "unset keys inherit [expiry]"
        );
        assert_eq!(rules("qa").idle, Some(14 * day));
        assert_eq!(rules("qa").max_age, Some(7 * day));
        assert_eq!(rules("other").idle, Some(14 * day));
        assert!(s.protected(&EnvName::parse("prod", "env-").unwrap()));
        let m = err("[expiry]\nidle = \"30s\"\n");
        assert!(
            m.contains("nubes.toml:2:8") && m.contains("out of range") && m.contains("never"),
            "{m}"
        );
        let m = err("[environments.qa.expiry]\nmax_age = \"a while\"\n");
        assert!(
            m.contains("expiry.max_age") && m.contains("not a duration"),
            "{m}"
        );
        let m = err("[expiry]\nidel = \"1d\"\n");
        assert!(m.contains("idel"), "{m}");
    }

    #[test]
    fn traffic_steps_and_engine_are_read() {
        let s =
            load_text("[build]\nengine = \"buildah\"\n[deploy]\ntraffic_steps = [10, 50, 100]\n")
                .unwrap();
        assert_eq!(s.deploy.traffic_steps, vec![10, 50, 100]);
        assert_eq!(s.build.and_then(|b| b.engine).as_deref(), Some("buildah"));
        assert_eq!(load_text("").unwrap().deploy.traffic_steps, vec![100]);
    }

    #[test]
    fn bad_values_name_position_and_allowed_values() {
        let m = err("[state]\nlease_seconds = 90\n");
        assert!(
            m.contains("nubes.toml:2:17: [state] lease_seconds: 90 is out of range")
                && m.contains("15 to 60"),
            "{m}"
        );
        let m = err("[state]\nbackend = \"s3\"\n");
        assert!(
            m.contains("nubes.toml:2:11") && m.contains("azure, local"),
            "{m}"
        );
        let m = err("[state]\nlock_timeout = \"soon\"\n");
        assert!(m.contains("not a duration") && m.contains("10m"), "{m}");
        let m = err("[state]\nkey = \"state.tfstate\"\n");
        assert!(m.contains("{env}"), "{m}");
        let m = err("[deploy]\ntarget = \"k8s\"\n");
        assert!(
            m.contains("static-site, app-service, functions, container-apps, command"),
            "{m}"
        );
        let m = err("[build]\nengine = \"kaniko\"\n");
        assert!(
            m.contains("nubes.toml:2:10: [build] engine") && m.contains("docker, podman, buildah"),
            "{m}"
        );
        for bad in [
            "[50]",
            "[50, 10, 100]",
            "[0, 100]",
            "[10, 100, 100]",
            "[100, 101]",
        ] {
            let m = err(&format!("[deploy]\ntraffic_steps = {bad}\n"));
            assert!(
                m.contains("nubes.toml:2:17: [deploy] traffic_steps")
                    && m.contains("[10, 50, 100]"),
                "{bad}: {m}"
            );
        }
        let m = err("[environments.Prod]\nprotected = true\n");
        assert!(
            m.contains("nubes.toml:1:15") && m.contains("uppercase"),
            "{m}"
        );
        let m = err("[state]\ncontainer = 5\n");
        assert!(
            m.contains("nubes.toml:2:13") && m.contains("invalid type"),
            "{m}"
        );
        let m = err("[state]\nhistory = \"20\"\n");
        assert!(
            m.contains("nubes.toml:2:11") && m.contains("[state] history: invalid type"),
            "{m}"
        );
        let m = err("[environments.prod]\nprotected = \"yes\"\n");
        assert!(m.contains("[environments.prod] protected: "), "{m}");
        let m = err("[state\n");
        assert!(m.contains("nubes.toml:1:"), "{m}");
    }

    #[test]
    fn a_branch_prefix_with_invisible_or_control_characters_is_refused() {
        // Regression: only whitespace and `/` were refused, so a prefix with a bidi
        // override or ESC was accepted and later printed raw in every env-name hint.
        for prefix in [
            "env\\u202e-",
            "env\\u001b[2J-",
            "env\\u200d-",
            "env~",
            "env:",
        ] {
            let m = err(&format!("[project]\nbranch_prefix = \"{prefix}\"\n"));
            assert!(m.contains("not a usable branch prefix"), "{m}");
        }
        for prefix in ["env-", "pr_", "preview.", "Env-"] {
            let s = load_text(&format!("[project]\nbranch_prefix = \"{prefix}\"\n")).unwrap();
            assert_eq!(s.branch_prefix, prefix);
        }
    }

    #[test]
    fn values_are_shown_escaped_in_errors() {
        // Regression: a value was quoted raw, so a newline in it could start a line of its
        // own in the job log (`::warning::...` is a workflow command) and ESC drove the
        // terminal.
        let m = err("[deploy]\ntarget = \"x\\n::warning::pwned\\u001b[2J\"\n");
        assert!(m.contains("`x\\n::warning::pwned\\u{1b}[2J`"), "{m}");
        assert!(!m.contains('\n') && !m.contains('\u{1b}'), "{m}");
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(
            dir.path().join("nubes.toml"),
            "[state]\nlock_timeout = \"1m\"\n",
        )
        .unwrap();
        let s = load(dir.path(), None, &Overrides::default()).unwrap();
        assert_eq!(s.state.lock_timeout, Duration::from_secs(60));
        let s = load(
            dir.path(),
            None,
            &Overrides {
                lock_timeout: Some("5s".into()),
            },
        )
        .unwrap();
        assert_eq!(s.state.lock_timeout, Duration::from_secs(5));
        // The environment layer is exercised by the CLI integration tests, where each
        // test runs nubes as its own process with its own environment.
    }

    #[test]
    fn missing_explicit_config_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(
            dir.path(),
            Some(Path::new("nope.toml")),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
