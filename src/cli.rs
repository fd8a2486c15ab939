//! The command line, as parsed: raw flags only. `app.rs` turns them into settings
//! and dispatches.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `nubes --version`: the version, then the commit and target the binary was built
/// from and for (recorded by `build.rs`). The action's installer reads the first two
/// lines; `-V` prints the first line only.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("NUBES_BUILD_COMMIT"),
    "\ntarget: ",
    env!("NUBES_BUILD_TARGET"),
);

#[derive(Debug, Parser)]
#[command(
    name = "nubes",
    version,
    long_version = LONG_VERSION,
    about = "A cloud environment per branch: env-<name> branches get their own Terraform-managed Azure environment",
    long_about = None,
    propagate_version = true,
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// The heading the global options are listed under in every command's `--help`, apart
/// from the command's own options.
const GLOBAL: &str = "Global options";

#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file, relative to the project folder
    #[arg(long, global = true, value_name = "PATH", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,
    /// Run as if started in DIR (the project folder)
    #[arg(short = 'C', global = true, value_name = "DIR", help_heading = GLOBAL)]
    pub dir: Option<PathBuf>,
    /// More output (-v: debug, -vv: debug for libraries too)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet", help_heading = GLOBAL)]
    pub verbose: u8,
    /// Only warnings and errors
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    /// When to colour output (NO_COLOR and CI=true turn it off in auto)
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN", help_heading = GLOBAL)]
    pub color: ColorChoice,
    /// How long to wait for an environment's lock (overrides [state] lock_timeout), e.g. 30s, 10m
    #[arg(long, global = true, value_name = "DURATION", help_heading = GLOBAL)]
    pub lock_timeout: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// GitHub Actions entry point: read the event and run up, plan or down
    ///
    /// push to env-* -> up; delete of an env-* branch -> down; pull_request into env-*
    /// -> plan (summary to the job summary); workflow_dispatch with inputs `environment`
    /// and `action` (up|plan|down); anything else -> says why there is nothing to do.
    /// Outside GitHub Actions: the current git branch, as a push.
    #[command(
        after_help = "Example: nubes run            # in a GitHub Actions step: push to env-alice -> up alice\n         nubes run --json     # the same, one JSON document on stdout"
    )]
    Run {
        /// One JSON document on stdout (schema 1): what was decided and its result
        #[arg(long)]
        json: bool,
    },
    /// Create or update an environment: plan and apply, build, deploy, health check
    #[command(
        after_help = "Example: nubes up alice\n         nubes up             # on branch env-alice: the same\n         nubes up alice --json | jq -r .application_url"
    )]
    Up {
        /// Environment (alice, env-alice or refs/heads/env-alice); default: the current
        /// branch's, when it is an env-* branch
        env: Option<String>,
        /// Plan even if configuration, variables and Terraform are unchanged since the last apply
        #[arg(long)]
        refresh: bool,
        /// Apply even when the plan is not the one reviewed on a pull request
        /// (require_reviewed_plan); recorded in the summary and the GitHub deployment
        #[arg(long)]
        accept_unreviewed: bool,
        /// One JSON document on stdout (schema 1); Terraform's and the build's output stay on stderr
        #[arg(long)]
        json: bool,
    },
    /// Render and plan an environment; print a summary of the changes
    #[command(
        after_help = "Example: nubes plan alice\n         nubes plan alice --json --detailed-exitcode   # exit 4 when there are changes"
    )]
    Plan {
        /// Environment; default: the current branch's, when it is an env-* branch
        env: Option<String>,
        /// Stable JSON summary
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Markdown summary
        #[arg(long)]
        markdown: bool,
        /// Exit 4 when there are changes
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Tear an environment down and drop its state (keeps a tombstone copy)
    #[command(
        after_help = "Example: nubes down alice           # on a terminal: shows what goes, asks for the name\n         nubes down alice --yes --json"
    )]
    Down {
        env: String,
        /// Tear down even a protected environment
        #[arg(long)]
        force: bool,
        /// How to destroy the infrastructure
        #[arg(long, value_enum, default_value_t = crate::pipeline::Strategy::Terraform)]
        strategy: crate::pipeline::Strategy,
        /// Do not ask on a terminal (CI and scripts are never asked)
        #[arg(long, short = 'y')]
        yes: bool,
        /// One JSON document on stdout (schema 1)
        #[arg(long)]
        json: bool,
    },
    /// Scaffold nubes.toml, terraform/ and .github/workflows/nubes.yml for this repository
    ///
    /// Scans the repository (Maven, Gradle, npm, Python, .NET, Dockerfile, static files;
    /// for Java the framework) and proposes defaults; every choice can be given as a flag.
    /// Asks on a terminal only (never in CI, never with --yes). Running it again keeps
    /// your edits: files you did not touch are updated, edited ones merged three-way
    /// with init's change (from nubes-init.lock), and an edit that cannot be merged gets
    /// init's version beside it as <file>.nubes-new.
    #[command(
        after_help = "Example: nubes init --database postgresql --addons key-vault\n         nubes init --action my-org/nubes@<40-hex commit sha>   # pin the action; edits are kept"
    )]
    Init(InitArgs),
    /// Print the environment name for a branch or ref, or explain why it has none
    #[command(after_help = "Example: nubes env-name refs/heads/env-alice   # prints alice")]
    EnvName {
        /// A branch (env-alice), a full ref (refs/heads/env-alice) or a name (alice)
        branch_or_ref: String,
    },
    /// Run any Terraform command against an environment's remote state
    ///
    /// Runs in a working copy of the project's Terraform folder (.nubes/work/<env>) whose
    /// backend is nubes's loopback state gateway, holding the environment's lock for the
    /// whole command. Exits with Terraform's own exit code.
    #[command(after_help = "Example: nubes tf alice -- plan -var app_sku=B1")]
    Tf {
        /// Environment (alice, env-alice or refs/heads/env-alice)
        env: String,
        /// Arguments for Terraform, after `--`
        #[arg(last = true, required = true, value_name = "TERRAFORM ARGS")]
        args: Vec<OsString>,
    },
    /// Judge every (or the named) environment against its own branch env-<name>
    ///
    /// Reports, per environment, what drifted (changed outside Terraform) and, apart
    /// from it, what is pending (configuration on the branch not applied yet). Reads the
    /// branches from the local repository (refs/remotes/origin/env-*, else
    /// refs/heads/env-*); an environment without a branch is reported as such. Exits 4
    /// when an environment drifted (or, with --pending, has pending changes), 3 when one
    /// stayed locked, 1 when a check or a correction failed.
    #[command(
        after_help = "Example: nubes drift                # every environment, exit 4 if one drifted\n         nubes drift alice --fix --json"
    )]
    Drift {
        /// Environments to check (default: every environment in the state storage)
        envs: Vec<String>,
        /// Plans run at once
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        /// Stable JSON report
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Markdown report (for a job summary or an issue body)
        #[arg(long)]
        markdown: bool,
        /// List pending changes too, and let them count: exit 4, and applied by --fix
        #[arg(long)]
        pending: bool,
        /// Re-apply each drifted environment from its own branch (infrastructure only,
        /// under its lock); protected environments only when named
        #[arg(long)]
        fix: bool,
        /// Keep one GitHub issue per drifted environment (label nubes-drift): opened,
        /// updated, closed when clean. Needs GITHUB_TOKEN (or GH_TOKEN) with
        /// `issues: write` and GITHUB_REPOSITORY
        #[arg(long)]
        issue: bool,
    },
    /// Tear down environments whose branch is gone, that expired, or that sat idle
    #[command(
        after_help = "Example: nubes reap --gone-branches --dry-run\n         nubes reap --expired --older-than 14d"
    )]
    Reap {
        /// Environments whose env-* branch no longer exists on the remote
        #[arg(long)]
        gone_branches: bool,
        /// Environments past their expiry ([expiry] idle / max_age, `nubes keep` pins)
        #[arg(long)]
        expired: bool,
        /// Environments without activity (up, deploy, health check) for longer than
        /// this, e.g. 7d, 36h
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
        /// Only list the environments that expire within this duration (e.g. 2d), as
        /// a warning; tears nothing down by itself
        #[arg(long, value_name = "DURATION")]
        warn: Option<String>,
        /// Only say what would be torn down, and why
        #[arg(long)]
        dry_run: bool,
        /// Teardowns run at once
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        /// Stable JSON report
        #[arg(long)]
        json: bool,
    },
    /// Pin an environment past its expiry, until a date or for a duration
    #[command(
        after_help = "Example: nubes keep alice --until 2026-12-24\n         nubes keep alice --until 30d"
    )]
    Keep {
        env: String,
        /// A date (2026-12-24), a time (RFC 3339), a duration from now (30d), or `now`
        /// to remove the pin
        #[arg(long, value_name = "WHEN")]
        until: String,
    },
    /// An environment's kept releases (artifacts by digest), newest first
    #[command(
        after_help = "Example: nubes releases alice\n         nubes releases alice --json | jq -r '.releases[0].id'"
    )]
    Releases {
        env: String,
        /// Stable JSON
        #[arg(long)]
        json: bool,
    },
    /// Redeploy a kept release (the previous healthy one, or --to), without building;
    /// infrastructure is untouched
    #[command(
        after_help = "Example: nubes rollback alice              # the previous healthy release\n         nubes rollback alice --to 3f2a9c1     # a release id from `nubes releases alice`\n         nubes rollback alice --json | jq -r .release.id"
    )]
    Rollback {
        env: String,
        /// A release id (at least 7 hex digits) or digest from `nubes releases <env>`
        #[arg(long, value_name = "RELEASE")]
        to: Option<String>,
        /// One JSON document on stdout (schema 1)
        #[arg(long)]
        json: bool,
    },
    /// Bring <TO>'s infrastructure up to date, then deploy the release live in <FROM>
    /// (same digest, no build)
    #[command(
        after_help = "Example: nubes promote candidate production --force   # from another branch than env-production"
    )]
    Promote {
        from: String,
        to: String,
        /// Promote into a protected environment from another branch
        #[arg(long)]
        force: bool,
        /// One JSON document on stdout (schema 1)
        #[arg(long)]
        json: bool,
    },
    /// Every environment: last activity, deploy, health, expiry, lock holder
    #[command(
        after_help = "Example: nubes list\n         nubes list --json | jq -r '.environments[].name'"
    )]
    List {
        /// Stable JSON
        #[arg(long)]
        json: bool,
        /// Include torn-down environments (their tombstones)
        #[arg(long)]
        all: bool,
    },
    /// Write one self-contained HTML page of every environment (and optionally publish it)
    ///
    /// Name, branch, application URL, last activity, deployed commit, health, lock,
    /// expiry and last drift verdict (and kept versions with --versions) of every
    /// environment, from one listing of the state storage. Locked, unhealthy, drifted and expiring rows are marked; the
    /// page sorts by column and needs nothing but itself (no network, works offline).
    #[command(
        after_help = "Example: nubes dashboard --out site\n         nubes dashboard --publish --account-url https://stdemo.blob.core.windows.net"
    )]
    Dashboard {
        /// Folder to write index.html into, relative to the project
        #[arg(long, value_name = "DIR", default_value = crate::commands::dashboard::DEFAULT_OUT)]
        out: PathBuf,
        /// Also upload the page to the `$web` container (static website) of --account-url
        #[arg(long)]
        publish: bool,
        /// Blob endpoint of the storage account to publish to, e.g. https://<account>.blob.core.windows.net
        /// (credentials: NUBES_SITE_SAS, else the state storage credentials)
        #[arg(long, value_name = "URL", env = "NUBES_DASHBOARD_ACCOUNT_URL")]
        account_url: Option<String>,
        /// Folder of `$web` the page goes to; `/` for the root (then every other blob in
        /// `$web` is deleted, as a site deploy does)
        #[arg(long, value_name = "FOLDER", default_value = crate::commands::dashboard::DEFAULT_PREFIX, requires = "publish")]
        prefix: String,
        /// Also show how many state versions each environment keeps (snapshots are then
        /// included in the one listing, which grows with [state] history)
        #[arg(long)]
        versions: bool,
    },
    /// One environment's details: state, last apply, lock holder, outputs
    #[command(
        after_help = "Example: nubes status alice\n         nubes status --json   # on branch env-alice"
    )]
    Status {
        /// Environment; default: the current branch's, when it is an env-* branch
        env: Option<String>,
        /// Stable JSON
        #[arg(long)]
        json: bool,
    },
    /// An environment's Terraform outputs, read from stored state
    #[command(after_help = "Example: nubes outputs alice --json")]
    Outputs {
        env: String,
        /// Stable JSON
        #[arg(long)]
        json: bool,
        /// Print sensitive values too
        #[arg(long)]
        show_sensitive: bool,
    },
    /// Check config, credentials, state storage, Terraform and the build; say how to fix
    ///
    /// In order: nubes.toml valid; which credential nubes uses (never the secret), its
    /// tenant, client ID and token expiry; the state container reachable and a probe
    /// blob written, leased, read and deleted; Terraform found and its version; the
    /// build and deploy target; in GitHub Actions, the job's permissions. Exit 0 when
    /// all pass, 1 otherwise.
    #[command(
        after_help = "Example: nubes doctor\n         nubes doctor --json | jq '.checks[] | select(.ok | not)'"
    )]
    Doctor {
        /// Stable JSON: {"ok", "checks": [{"check", "ok", "detail", "fix"}]}
        #[arg(long)]
        json: bool,
    },
    /// Break a stale lock on an environment (records who broke it)
    #[command(
        after_help = "Example: nubes unlock alice     # shows the holder and asks\n         nubes unlock alice --yes"
    )]
    Unlock {
        env: String,
        /// Do not ask for confirmation (required when not on a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Kept versions of an environment's state: list, print, restore
    #[command(subcommand)]
    #[command(
        after_help = "Example: nubes state history alice\n         nubes state restore alice 7   # a serial or version ID from history"
    )]
    State(StateCommand),
    /// Print shell completions for nubes (bash, zsh, fish, elvish, powershell)
    #[command(
        after_help = "Example: nubes completions bash > ~/.local/share/bash-completion/completions/nubes\n         nubes completions zsh > \"${fpath[1]}/_nubes\""
    )]
    Completions {
        /// The shell to complete in
        shell: clap_complete::Shell,
    },
    /// Print nubes's man page (roff), or write one page per command into a folder
    #[command(
        after_help = "Example: nubes man | man -l -\n         nubes man --out target/man   # nubes.1, nubes-up.1, ... (release packaging)"
    )]
    Man {
        /// Write nubes.1 and nubes-<command>.1 into this folder instead of printing nubes.1
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Create (or adopt) the state storage with secure defaults, and print the settings to use
    ///
    /// Applies nubes's embedded Terraform module `terraform/bootstrap`: a resource group, a
    /// StorageV2 account (HTTPS only, TLS 1.2, no public blobs, no shared keys, blob
    /// versioning and soft delete) and a private `tfstate` container. Resources that already
    /// exist are adopted with Terraform import blocks, so running it again changes nothing.
    /// Then prints the [state] section for nubes.toml and the GitHub variables to set (and
    /// sets them with `gh`, after asking, when it is installed and logged in).
    /// Works without a nubes.toml; uses its [project] name and location when there is one.
    #[command(
        after_help = "Example: nubes bootstrap --subscription 00000000-0000-0000-0000-000000000000 --location westeurope"
    )]
    Bootstrap(BootstrapArgs),
    /// Your own environment from the shell: create (push env-<name>), open, remove, list
    #[command(
        after_help = "Example: nubes env new alice && nubes env open alice\n         nubes env rm alice"
    )]
    #[command(subcommand)]
    Env(EnvCommand),
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// Azure subscription ID (default: ARM_SUBSCRIPTION_ID, then AZURE_SUBSCRIPTION_ID)
    #[arg(long, value_name = "ID")]
    pub subscription: Option<String>,
    /// Resource group of the state storage (default: rg-<project>-tfstate)
    #[arg(long, value_name = "NAME")]
    pub resource_group: Option<String>,
    /// Storage account name, 3-24 lowercase letters and digits, globally unique
    /// (default: st<project><hash of subscription and project>)
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// Azure region, e.g. westeurope (default: [project] location, else the existing account's)
    #[arg(long, value_name = "REGION")]
    pub location: Option<String>,
    /// Container for the state (default: [state] container, else tfstate)
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
    /// Days deleted state blobs and containers are kept (7 to 365)
    #[arg(long, value_name = "DAYS", default_value_t = 7, value_parser = clap::value_parser!(u16).range(7..=365))]
    pub soft_delete_days: u16,
    /// Redundancy of a new account (default: GRS; an existing account keeps its own)
    #[arg(long, value_enum, ignore_case = true, value_name = "TYPE")]
    pub replication: Option<Replication>,
    /// GitHub repository (owner/name) the variables and federated credentials are for
    /// (default: GITHUB_REPOSITORY, else the `origin` remote)
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: Option<String>,
    /// Client ID of the identity GitHub Actions logs in as (default: ARM_CLIENT_ID, then AZURE_CLIENT_ID)
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// Entra ID tenant of that identity (default: ARM_TENANT_ID, then AZURE_TENANT_ID)
    #[arg(long, value_name = "ID")]
    pub tenant_id: Option<String>,
    /// Only check Azure and show what would be created or adopted; change nothing
    #[arg(long, visible_alias = "dry-run")]
    pub plan: bool,
    /// Do not ask: apply, and set the GitHub variables when gh can (on a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Storage redundancy accepted for the state account (LRS keeps a single copy in one
/// datacenter, too little for every environment's state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum Replication {
    Zrs,
    Grs,
    Ragrs,
    Gzrs,
    Ragzrs,
}

impl Replication {
    pub fn as_str(self) -> &'static str {
        match self {
            Replication::Zrs => "ZRS",
            Replication::Grs => "GRS",
            Replication::Ragrs => "RAGRS",
            Replication::Gzrs => "GZRS",
            Replication::Ragzrs => "RAGZRS",
        }
    }
}

#[derive(Debug, Default, Args)]
pub struct InitArgs {
    /// Language and framework: spring-boot, quarkus, micronaut, java, node, python, dotnet, docker, static
    #[arg(long, value_name = "RUNTIME")]
    pub runtime: Option<String>,
    /// Where the application runs: app-service, functions, container-apps, static-site
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// Size of the resources: dev, standard, premium (a Terraform variable, per environment overridable)
    #[arg(long, value_name = "TIER")]
    pub tier: Option<String>,
    /// none, postgresql, mysql, sql-server, cosmosdb-mongodb
    #[arg(long, value_name = "DATABASE")]
    pub database: Option<String>,
    /// Comma-separated: application-insights, key-vault, redis, storage-blob (or none)
    #[arg(long, value_name = "LIST")]
    pub addons: Option<String>,
    /// Azure region, e.g. eastus, westeurope
    #[arg(long, value_name = "REGION")]
    pub location: Option<String>,
    /// Project name used in resource names and tags (lowercase letters, digits, hyphens)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Storage account holding Terraform state ([state] account), e.g. from `nubes bootstrap`
    #[arg(long, value_name = "ACCOUNT")]
    pub state_account: Option<String>,
    /// container-apps: one existing Azure Container Registry for every environment
    /// (images tagged per environment) instead of one per environment: RESOURCE_GROUP/NAME
    #[arg(long, value_name = "RESOURCE_GROUP/NAME")]
    pub shared_registry: Option<String>,
    /// container-apps: the new revision's traffic share at each rollout step, e.g.
    /// 10,50,100 ([deploy] traffic_steps); more than one step makes the app's revision
    /// mode Multiple in the generated Terraform
    #[arg(long, value_name = "LIST")]
    pub traffic_steps: Option<String>,
    /// The nubes GitHub Action the workflow uses, pinned: OWNER/REPO@<40-hex commit SHA>
    #[arg(long, value_name = "OWNER/REPO@SHA")]
    pub action: Option<String>,
    /// Take init's version of files whose edits cannot be merged (yours is kept as
    /// <file>.nubes-backup)
    #[arg(long)]
    pub force: bool,
    /// Write nothing: say what would change, exit 4 if anything would
    #[arg(long, conflicts_with = "force")]
    pub check: bool,
    /// Take the detected defaults without asking, even on a terminal
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the kept previous versions, newest first
    #[command(after_help = "Example: nubes state history alice --json")]
    History {
        env: String,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Print the current state, or a kept version, to stdout
    #[command(
        after_help = "Example: nubes state pull alice > alice.tfstate\n         nubes state pull alice 7"
    )]
    Pull {
        env: String,
        /// A version ID or serial from `nubes state history`
        #[arg(value_name = "VERSION")]
        version_id: Option<String>,
    },
    /// Make a kept version current again (written as a new serial, under the lock)
    #[command(after_help = "Example: nubes state restore alice 7")]
    Restore {
        env: String,
        /// A version ID or serial from `nubes state history`
        #[arg(value_name = "VERSION")]
        version_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create branch env-<name> at HEAD, push it to origin, follow the workflow run, print the URL
    ///
    /// Pushes with git and your own credentials. With GITHUB_TOKEN, GH_TOKEN or a logged-in
    /// `gh`, follows the run the push started and ends with the environment's URL (its
    /// GitHub deployment, else the state storage); without, prints where to watch the run.
    #[command(
        after_help = "Example: nubes env new alice               # push env-alice, follow the run, print the URL\n         nubes env new alice --from main --no-wait"
    )]
    New {
        /// Environment name (lowercase letters, digits, single hyphens; at most 20)
        name: String,
        /// Branch, tag or commit to start from
        #[arg(long, value_name = "REF", default_value = "HEAD")]
        from: String,
        /// Return right after the push
        #[arg(long)]
        no_wait: bool,
        /// How long to follow the run
        #[arg(long, value_name = "DURATION", default_value = crate::commands::env::DEFAULT_TIMEOUT)]
        timeout: String,
    },
    /// Open the environment's URL in a browser (printed always; only printed without a display)
    #[command(after_help = "Example: nubes env open alice\n         nubes env open alice --print")]
    Open {
        name: String,
        /// Only print the URL
        #[arg(long)]
        print: bool,
    },
    /// Delete branch env-<name> on origin (the workflow tears the environment down) and follow it
    #[command(
        after_help = "Example: nubes env rm alice               # asks for the name, deletes env-alice on origin\n         nubes env rm alice --local --yes   # nubes down here instead"
    )]
    Rm {
        name: String,
        /// Run `nubes down` here instead of deleting the branch (for teams without the workflow)
        #[arg(long)]
        local: bool,
        /// Do not ask (required when not on a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
        /// Return right after deleting the branch
        #[arg(long, conflicts_with = "local")]
        no_wait: bool,
        /// How long to follow the teardown run
        #[arg(long, value_name = "DURATION", default_value = crate::commands::env::DEFAULT_TIMEOUT)]
        timeout: String,
    },
    /// Your environments (last actor or branch creator is you), with URL and expiry
    #[command(after_help = "Example: nubes env ls\n         nubes env ls --json")]
    Ls {
        /// Your GitHub login (default: the token's user); may be repeated
        #[arg(long, value_name = "LOGIN")]
        user: Vec<String>,
        /// Stable JSON (the rows of `nubes list --json`)
        #[arg(long)]
        json: bool,
    },
}

/// A hint for a usage error clap reports, when nubes knows the likely fix: Terraform's
/// arguments given to `nubes tf` without `--` (`nubes tf alice init`).
pub fn usage_tip(kind: clap::error::ErrorKind, args: &[OsString]) -> Option<String> {
    if kind != clap::error::ErrorKind::UnknownArgument {
        return None;
    }
    let words: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let tf = words.iter().position(|w| w == "tf")?;
    if words.iter().any(|w| w == "--") {
        return None;
    }
    // `tf`, then options and the environment, then what was meant for Terraform.
    let env = words[tf + 1..].iter().position(|w| !w.starts_with('-'))? + tf + 1;
    let rest = &words[env + 1..];
    if rest.is_empty() {
        return None;
    }
    let line = words[..=env]
        .iter()
        .chain(std::iter::once(&"--".to_string()))
        .chain(rest.iter())
        .map(|w| crate::env_name::printable(w))
        .collect::<Vec<_>>()
        .join(" ");
    Some(format!(
        "  hint: Terraform's arguments go after `--`: nubes {line}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tip(line: &str) -> Option<String> {
        let args: Vec<OsString> = line.split(' ').map(OsString::from).collect();
        usage_tip(clap::error::ErrorKind::UnknownArgument, &args)
    }

    #[test]
    fn tf_arguments_without_the_separator_get_the_fixed_line() {
        assert_eq!(
            tip("nubes tf alice init").as_deref(),
            Some("  hint: Terraform's arguments go after `--`: nubes tf alice -- init")
        );
        assert_eq!(
            tip("nubes -v tf alice plan -out p").as_deref(),
            Some("  hint: Terraform's arguments go after `--`: nubes -v tf alice -- plan -out p")
        );
        assert_eq!(tip("nubes tf alice -- init"), None);
        assert_eq!(tip("nubes up alice extra"), None);
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
