//! `nubes init`'s engine: from a set of choices to the files of a project
//! (`nubes.toml`, `terraform/` with the modules it uses, `.github/workflows/nubes.yml`),
//! computed as data first; `commands/init.rs` decides what to do with them.
//!
//! Templates (`templates/`) and modules (`terraform/modules/`) are embedded in the
//! binary; the templates are parsed once into one tera registry.

pub mod manifest;
pub mod matrix;
pub mod scan;
pub mod wiring;

use std::sync::OnceLock;

use include_dir::{Dir, include_dir};

use crate::error::{Error, Result};
use matrix::{Addon, Choice, Combination, Database, Runtime, Target, Tier};

static TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");
static MODULES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/terraform/modules");

/// The nubes action a generated workflow uses until `--action` names a real commit.
pub const PLACEHOLDER_ACTION: &str = "your-org/nubes@0000000000000000000000000000000000000000";

/// Everything `init` needs to write a project.
#[derive(Debug, Clone)]
pub struct Answers {
    pub combination: Combination,
    pub tier: Tier,
    pub project: String,
    pub location: String,
    /// `[state] account`, when known.
    pub state_account: Option<String>,
    /// `owner/repo@<40-hex sha>` of the nubes action.
    pub action: String,
    /// container-apps: an existing registry shared by every environment, as
    /// (resource group, name) (NubesGen #367); `None`: one registry per environment.
    pub shared_registry: Option<(String, String)>,
    /// container-apps: `--traffic-steps`, written to `[deploy] traffic_steps`.
    pub traffic_steps: Option<Vec<u8>>,
    /// container-apps: the app's revision mode is `Multiple` (more than one traffic step,
    /// from `--traffic-steps` or the existing nubes.toml), so traffic can shift.
    pub multiple_revisions: bool,
}

/// The build context's ignore file of a container project: nubes's working folder
/// (Terraform working copies with their providers and variables, exported image
/// layers) must not be sent to the engine or end up in the image.
pub const DOCKERIGNORE: &str = ".dockerignore";
const DOCKERIGNORE_LINES: &str = "# nubes's working folder (Terraform working copies, exported images): not part of the image\n.nubes\n";

/// Files init only adds lines to: an existing one keeps every line of its own, and gets
/// the lines of init's version it lacks appended ([`merge_lines`]), whether or not init
/// wrote it before.
pub fn append_only(path: &str) -> bool {
    path == DOCKERIGNORE
}

/// `disk` with the lines of `ours` it lacks appended (comments only along with a line
/// that is missing).
pub fn merge_lines(disk: &str, ours: &str) -> String {
    let have: std::collections::HashSet<&str> = disk.lines().map(str::trim).collect();
    let missing: Vec<&str> = ours
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !have.contains(l.trim()))
        .collect();
    if missing.is_empty() {
        return disk.to_string();
    }
    let mut out = disk.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for l in ours.lines() {
        if l.starts_with('#') || missing.contains(&l) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// One file to write, relative to the project root (with `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub content: String,
}

/// The tera registry of every template, parsed once.
fn registry() -> Result<&'static tera::Tera> {
    static REGISTRY: OnceLock<std::result::Result<tera::Tera, String>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| {
            let mut t = tera::Tera::default();
            // Terraform, YAML and TOML are not HTML.
            t.autoescape_on(vec![]);
            let mut files = Vec::new();
            collect(&TEMPLATES, &mut files);
            t.add_raw_templates(files).map_err(|e| {
                format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                )
            })?;
            Ok(t)
        })
        .as_ref()
        .map_err(|e| Error::failed(format!("the embedded templates do not parse: {e}")))
}

fn collect<'a>(dir: &'a Dir<'a>, out: &mut Vec<(&'a str, &'a str)>) {
    for f in dir.files() {
        if let (Some(name), Some(text)) = (f.path().to_str(), f.contents_utf8()) {
            out.push((name, text));
        }
    }
    for d in dir.dirs() {
        collect(d, out);
    }
}

/// The names of every embedded template (for the test that renders each one).
pub fn template_names() -> Result<Vec<String>> {
    Ok(registry()?
        .get_template_names()
        .map(str::to_string)
        .collect())
}

/// The module folder of each part.
fn target_module(t: Target) -> &'static str {
    t.name()
}

fn database_module(d: Database) -> Option<&'static str> {
    match d {
        Database::None => None,
        other => Some(other.name()),
    }
}

/// The modules a combination uses, in a stable order.
pub fn modules(c: &Combination) -> Vec<&'static str> {
    let mut m = vec![target_module(c.target)];
    m.extend(database_module(c.database));
    m.extend(c.addons.iter().map(|a| a.name()));
    m.sort();
    m
}

/// The language stack App Service, Functions or the container run.
fn app_runtime(r: Runtime) -> &'static str {
    match r {
        r if r.is_java() => "java",
        Runtime::Node => "node",
        Runtime::Python => "python",
        Runtime::Dotnet => "dotnet",
        _ => "docker",
    }
}

/// The port a container of this runtime usually listens on.
fn container_port(r: Runtime) -> u16 {
    match r {
        Runtime::Node => 3000,
        Runtime::Python => 8000,
        _ => 8080,
    }
}

/// An HCL map literal of aligned `key = value` lines, or `{}`.
fn hcl_map(pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return "{}".into();
    }
    let mut s = String::from("{\n");
    for line in wiring::align(pairs) {
        s += "    ";
        s += &line;
        s += "\n";
    }
    s + "  }"
}

/// The arguments every module takes, as the lines inside a module block.
const COMMON: &str = "
  name                = local.name
  compact             = local.compact
  suffix              = local.suffix
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  tags                = local.tags
  tier                = var.tier";

fn context(a: &Answers) -> tera::Context {
    let c = &a.combination;
    let w = wiring::wiring(c);
    let quote = |s: &str| format!("\"{s}\"");
    let app_settings: Vec<(String, String)> = w
        .settings
        .iter()
        .filter_map(|(k, v)| match v {
            wiring::Value::Plain(e) => Some((k.clone(), e.clone())),
            wiring::Value::Secret(_) => None,
        })
        .collect();
    let secret_settings: Vec<(String, String)> = w
        .settings
        .iter()
        .filter_map(|(k, v)| match v {
            wiring::Value::Secret(s) => Some((k.clone(), quote(s))),
            wiring::Value::Plain(_) => None,
        })
        .collect();
    let secret_values: Vec<(String, String)> = w
        .secrets
        .iter()
        .map(|(n, e)| (quote(n), e.to_string()))
        .collect();
    let secret_names = w
        .secrets
        .iter()
        .map(|(n, _)| quote(n))
        .collect::<Vec<_>>()
        .join(", ");
    let key_vault = c.has(Addon::KeyVault);
    let secret_mode = if key_vault {
        "Key Vault references"
    } else if c.target == Target::ContainerApps {
        "container app secrets"
    } else {
        "sensitive Terraform values (choose key-vault to keep them in Key Vault)"
    };
    // Every target is one of nubes's own: container-apps builds the image once, pushes it
    // and rolls the revision out itself (no `az` in the workflow, no second build).
    let (deploy_target, deploy_command): (&str, Option<String>) = (c.target.name(), None);
    let mut t = tera::Context::new();
    t.insert("id", &c.id());
    t.insert("choices", &choices_line(a));
    t.insert("project", &a.project);
    t.insert("location", &a.location);
    t.insert("tier", a.tier.name());
    t.insert("target", c.target.name());
    t.insert("runtime", c.runtime.name());
    t.insert("app_runtime", app_runtime(c.runtime));
    t.insert("database_module", &database_module(c.database));
    t.insert(
        "random",
        &database_module(c.database).is_some_and(|m| m != "cosmosdb-mongodb"),
    );
    t.insert("redis", &c.has(Addon::Redis));
    t.insert("storage_blob", &c.has(Addon::StorageBlob));
    t.insert("application_insights", &c.has(Addon::ApplicationInsights));
    t.insert("key_vault", &key_vault);
    t.insert("secret_mode", secret_mode);
    t.insert("app_settings", &hcl_map(&app_settings));
    t.insert("secret_settings", &hcl_map(&secret_settings));
    t.insert("secret_values", &hcl_map(&secret_values));
    t.insert("secret_names", &secret_names);
    t.insert("common", COMMON);
    t.insert("port", &container_port(c.runtime));
    t.insert("health_path", "/");
    // Containers and servers building on first start take a while.
    t.insert(
        "health_timeout",
        if c.target == Target::StaticSite {
            "2m"
        } else {
            "10m"
        },
    );
    t.insert("deploy_target", deploy_target);
    t.insert("deploy_command", &deploy_command);
    t.insert("state_account", &a.state_account);
    t.insert(
        "traffic_steps",
        &a.traffic_steps.as_ref().map(|s| {
            format!(
                "[{}]",
                s.iter().map(u8::to_string).collect::<Vec<_>>().join(", ")
            )
        }),
    );
    t.insert(
        "multiple_revisions",
        &(a.multiple_revisions && c.target == Target::ContainerApps),
    );
    t.insert("action", &a.action);
    t.insert("placeholder", &(a.action == PLACEHOLDER_ACTION));
    t.insert(
        "shared_registry",
        &a.shared_registry.as_ref().map(|(group, name)| {
            format!("{{\n    resource_group_name = \"{group}\"\n    name                = \"{name}\"\n  }}")
        }),
    );
    t
}

fn render(name: &str, ctx: &tera::Context) -> Result<String> {
    registry()?.render(name, ctx).map_err(|e| {
        let mut chain = vec![e.to_string()];
        let mut cur = std::error::Error::source(&e);
        while let Some(s) = cur {
            chain.push(s.to_string());
            cur = s.source();
        }
        Error::failed(format!("template {name}: {}", chain.join(": ")))
    })
}

/// The choices as the `# nubes init:` line of nubes.toml, read back by
/// [`read_choices`] so that running `init` again proposes the same project.
pub fn choices_line(a: &Answers) -> String {
    let c = &a.combination;
    let addons = c
        .addons
        .iter()
        .map(|x| x.name())
        .collect::<Vec<_>>()
        .join(",");
    let shared = a
        .shared_registry
        .as_ref()
        .map(|(group, name)| format!(" --shared-registry {group}/{name}"))
        .unwrap_or_default();
    let steps = a
        .traffic_steps
        .as_ref()
        .map(|s| {
            format!(
                " --traffic-steps {}",
                s.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
            )
        })
        .unwrap_or_default();
    format!(
        "--target {} --runtime {} --database {} --addons {} --tier {} --action {}{shared}{steps}",
        c.target,
        c.runtime,
        c.database,
        if addons.is_empty() { "none" } else { &addons },
        a.tier,
        a.action
    )
}

/// The choices a previous `init` recorded in nubes.toml: flag name -> value.
pub fn read_choices(nubes_toml: &str) -> Vec<(String, String)> {
    let Some(line) = nubes_toml
        .lines()
        .find_map(|l| l.strip_prefix("# nubes init: "))
    else {
        return vec![];
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .chunks(2)
        .filter_map(|pair| match pair {
            [flag, value] => flag
                .strip_prefix("--")
                .map(|f| (f.to_string(), value.to_string())),
            _ => None,
        })
        .collect()
}

/// The files of the project, in the order they are reported.
pub fn generate(a: &Answers) -> Result<Vec<File>> {
    matrix::check(&a.combination)?;
    let ctx = context(a);
    let mut files = vec![File {
        path: "nubes.toml".into(),
        content: render("nubes.toml.tera", &ctx)?,
    }];
    for name in ["main.tf", "variables.tf", "outputs.tf"] {
        files.push(File {
            path: format!("terraform/{name}"),
            content: render(&format!("terraform/{name}.tera"), &ctx)?,
        });
    }
    for module in modules(&a.combination) {
        let dir = MODULES.get_dir(module).ok_or_else(|| {
            Error::failed(format!("the module {module} is not embedded in this nubes"))
        })?;
        for f in dir.files() {
            let text = f.contents_utf8().ok_or_else(|| {
                Error::failed(format!("module file {} is not UTF-8", f.path().display()))
            })?;
            files.push(File {
                path: format!("terraform/modules/{}", f.path().display()),
                content: text.to_string(),
            });
        }
    }
    files.push(File {
        path: ".github/workflows/nubes.yml".into(),
        content: render("workflow/nubes.yml.tera", &ctx)?,
    });
    if a.combination.target == Target::ContainerApps {
        files.push(File {
            path: DOCKERIGNORE.into(),
            content: DOCKERIGNORE_LINES.into(),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(c: Combination) -> Answers {
        Answers {
            combination: c,
            tier: Tier::Dev,
            project: "petclinic".into(),
            location: "eastus".into(),
            state_account: None,
            action: PLACEHOLDER_ACTION.into(),
            shared_registry: None,
            traffic_steps: None,
            multiple_revisions: false,
        }
    }

    #[test]
    fn ignore_files_gain_only_the_lines_they_lack() {
        assert_eq!(merge_lines("", DOCKERIGNORE_LINES), DOCKERIGNORE_LINES);
        assert_eq!(
            merge_lines("target\nnode_modules", DOCKERIGNORE_LINES),
            format!("target\nnode_modules\n{DOCKERIGNORE_LINES}")
        );
        let has = "# mine\n.nubes/\n.nubes\n*.log\n";
        assert_eq!(merge_lines(has, DOCKERIGNORE_LINES), has);
    }

    #[test]
    fn more_than_one_traffic_step_makes_the_revision_mode_multiple() {
        let c = matrix::all()
            .into_iter()
            .find(|c| c.target == Target::ContainerApps)
            .unwrap();
        let main_of = |a: &Answers| {
            let files = generate(a).unwrap();
            let main = files
                .iter()
                .find(|f| f.path == "terraform/main.tf")
                .unwrap()
                .content
                .clone();
            (main, files[0].content.clone())
        };
        let (main, toml) = main_of(&answers(c.clone()));
        assert!(!main.contains("revision_mode"), "{main}");
        assert!(!toml.contains("traffic_steps"), "{toml}");
        let mut a = answers(c);
        a.traffic_steps = Some(vec![10, 50, 100]);
        a.multiple_revisions = true;
        let (main, toml) = main_of(&a);
        assert!(main.contains("  revision_mode = \"Multiple\"\n"), "{main}");
        assert!(toml.contains("\ntraffic_steps = [10, 50, 100]\n"), "{toml}");
        assert!(
            read_choices(&toml).contains(&("traffic-steps".into(), "10,50,100".into())),
            "{toml}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nubes.toml"), &toml).unwrap();
        let settings = crate::config::load(dir.path(), None, &Default::default()).unwrap();
        assert_eq!(settings.deploy.traffic_steps, vec![10, 50, 100]);
    }

    #[test]
    fn a_shared_registry_is_passed_to_the_module_and_recorded() {
        let c = matrix::all()
            .into_iter()
            .find(|c| c.target == Target::ContainerApps)
            .unwrap();
        let mut a = answers(c.clone());
        a.shared_registry = Some(("rg-shared".into(), "crshared".into()));
        let files = generate(&a).unwrap();
        let main = &files
            .iter()
            .find(|f| f.path == "terraform/main.tf")
            .unwrap()
            .content;
        assert!(
            main.contains("  shared_registry = {\n    resource_group_name = \"rg-shared\"\n    name                = \"crshared\"\n  }"),
            "{main}"
        );
        let toml = &files[0].content;
        let choices = read_choices(toml);
        assert!(
            choices.contains(&(
                "shared-registry".to_string(),
                "rg-shared/crshared".to_string()
            )),
            "{choices:?}"
        );
        // Without it, each environment has its own registry.
        let files = generate(&answers(c)).unwrap();
        let main = &files
            .iter()
            .find(|f| f.path == "terraform/main.tf")
            .unwrap()
            .content;
        assert!(!main.contains("shared_registry"));
    }

    #[test]
    fn every_template_is_registered_and_used() {
        let mut names = template_names().unwrap();
        names.sort();
        assert_eq!(
            names,
            [
                "nubes.toml.tera",
                "terraform/main.tf.tera",
                "terraform/outputs.tf.tera",
                "terraform/variables.tf.tera",
                "workflow/nubes.yml.tera"
            ]
        );
    }

    #[test]
    fn every_module_folder_is_embedded() {
        let embedded: Vec<_> = MODULES
            .dirs()
            .map(|d| d.path().display().to_string())
            .collect();
        let mut used: Vec<&str> = matrix::all().iter().flat_map(modules).collect();
        used.sort();
        used.dedup();
        assert_eq!(used.len(), embedded.len(), "{embedded:?} vs {used:?}");
        for m in used {
            assert!(embedded.iter().any(|e| e == m), "{m}");
        }
    }

    #[test]
    fn github_expressions_survive_and_the_action_is_pinned() {
        let c = matrix::all()
            .into_iter()
            .find(|c| c.target == Target::ContainerApps)
            .unwrap();
        let files = generate(&answers(c)).unwrap();
        let wf = &files
            .iter()
            .find(|f| f.path.ends_with("nubes.yml"))
            .unwrap()
            .content;
        assert!(wf.contains("${{ vars.AZURE_CLIENT_ID }}"), "{wf}");
        // The container deploy is nubes's own: no Azure CLI login, no `az` commands.
        assert!(!wf.contains("azure/login") && !wf.contains("az "), "{wf}");
        assert!(wf.contains(&format!("uses: {PLACEHOLDER_ACTION}")), "{wf}");
        assert!(!wf.contains("{%") && !wf.contains("{{ action"), "{wf}");
    }
}
