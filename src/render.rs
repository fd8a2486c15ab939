//! Rendering the project's Terraform for one environment into its working copy
//! (`.nubes/work/<env>/`): `*.tera` files rendered with {env, branch, commit, project,
//! location, vars, tags}, other files copied, the backend override and
//! `nubes.auto.tfvars.json` written, and a fingerprint of it all for the fast path.
//!
//! Variables are only set when the configuration declares them (read with an HCL
//! parser): `environment` always; `application_name` and `location` only when
//! nubes.toml sets them, so an existing project's baked-in defaults are never
//! overridden silently (every resource would be renamed); `terraform_storage_account`
//! (NubesGen declares it without a default); `tags`; then the user's `vars`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use walkdir::WalkDir;

use crate::config::Settings;
use crate::env_name::EnvName;
use crate::error::{Error, Result};
use crate::workdir::{self, OVERRIDE_FILE};

pub const TFVARS_FILE: &str = "nubes.auto.tfvars.json";

/// Where the environment comes from: its branch and commit.
#[derive(Debug, Clone)]
pub struct Origin {
    pub branch: String,
    pub commit: Option<String>,
}

/// The rendered working copy.
#[derive(Debug)]
pub struct Rendered {
    pub dir: PathBuf,
    /// Variables written to `nubes.auto.tfvars.json`.
    pub vars: Map<String, Value>,
    /// User variables that the configuration does not declare (not passed).
    pub ignored: Vec<String>,
    /// Files from the project (after rendering), relative path -> content hash.
    files: BTreeMap<String, String>,
}

impl Rendered {
    /// Fingerprint of what Terraform would run: rendered files, variables, the
    /// Terraform binary's identity (not its output: the fast path starts no Terraform).
    pub fn fingerprint(&self, terraform_identity: &str) -> String {
        let mut h = Sha256::new();
        for (path, digest) in &self.files {
            h.update(path.as_bytes());
            h.update([0]);
            h.update(digest.as_bytes());
            h.update([0]);
        }
        h.update(serde_json::to_vec(&self.vars).unwrap_or_default());
        h.update([0]);
        h.update(terraform_identity.as_bytes());
        h.update([0]);
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        hex(&h.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tags every environment's resources get.
pub fn tags(settings: &Settings, env: &EnvName, origin: &Origin) -> Map<String, Value> {
    let mut t = Map::new();
    t.insert("nubes-env".into(), json!(env.as_str()));
    t.insert("nubes-project".into(), json!(project_name(settings)));
    t.insert("nubes-branch".into(), json!(origin.branch));
    t
}

/// `[project] name`, else the project folder's name.
pub fn project_name(settings: &Settings) -> String {
    settings.project_name.clone().unwrap_or_else(|| {
        settings
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "project".into())
    })
}

/// Account name of the state storage, for `terraform_storage_account`.
fn state_account(settings: &Settings) -> Option<String> {
    let url = url::Url::parse(settings.state.account_url.as_deref()?).ok()?;
    let host = url.host_str()?;
    if host.ends_with(".blob.core.windows.net") {
        return host.split('.').next().map(str::to_string);
    }
    // Emulators: http://127.0.0.1:10000/<account>
    url.path_segments()?
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// User variables: `[terraform] vars`, overridden by `[environments.<env>] vars`.
pub fn user_vars(settings: &Settings, env: &EnvName) -> Map<String, Value> {
    let mut vars = settings.vars.clone();
    if let Some(e) = settings.environment(env) {
        for (k, v) in &e.vars {
            vars.insert(k.clone(), v.clone());
        }
    }
    vars
}

pub fn render(settings: &Settings, env: &EnvName, origin: &Origin) -> Result<Rendered> {
    let src = &settings.terraform_dir;
    if !src.is_dir() {
        return Err(Error::input(format!(
            "there is no Terraform configuration at {}",
            src.display()
        ))
        .hint(
            "create it, or point [terraform] dir in nubes.toml at the folder with your .tf files",
        ));
    }
    let dst = workdir::path(settings, env);
    fs_err::create_dir_all(&dst)?;
    workdir::ignore_nubes_folder(settings)?;

    let vars = user_vars(settings, env);
    let tags = tags(settings, env, origin);
    let context = template_context(settings, env, origin, &vars, &tags);

    let mut files = BTreeMap::new();
    let mut wanted = BTreeSet::new();
    for entry in WalkDir::new(src)
        .min_depth(1)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry =
            entry.map_err(|e| Error::failed(format!("cannot read {}: {e}", src.display())))?;
        let rel = entry
            .path()
            .strip_prefix(src)
            .unwrap_or(entry.path())
            .to_path_buf();
        if workdir::is_skipped(&rel) {
            continue;
        }
        if entry.file_type().is_dir() {
            fs_err::create_dir_all(dst.join(&rel))?;
            wanted.insert(rel);
            continue;
        }
        let raw = fs_err::read(entry.path())?;
        let (rel, bytes) = match rel.to_str().and_then(|s| s.strip_suffix(".tera")) {
            Some(stripped) => {
                let text = String::from_utf8(raw).map_err(|_| {
                    Error::input(format!(
                        "{}: a .tera template must be UTF-8 text",
                        entry.path().display()
                    ))
                })?;
                (
                    PathBuf::from(stripped),
                    render_template(entry.path(), &text, &context)?.into_bytes(),
                )
            }
            None => (rel, raw),
        };
        workdir::write_if_changed(&dst.join(&rel), &bytes)?;
        files.insert(
            rel.to_string_lossy().replace('\\', "/"),
            hex(&Sha256::digest(&bytes)),
        );
        wanted.insert(rel);
    }
    workdir::remove_stale(&dst, &wanted)?;
    workdir::write_if_changed(&dst.join(OVERRIDE_FILE), workdir::OVERRIDE.as_bytes())?;

    if settings.state.backend == crate::config::Backend::Local && targets_azure(&dst) {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            tracing::warn!(
                "this Terraform targets Azure (azurerm), but its state stays on this machine \
                 ({}, the local backend): nobody else, and no CI run, can see or tear down what it creates; \
                 set [state] account_url in nubes.toml (`nubes bootstrap` creates the storage) to share it",
                settings.state.local_path.display()
            );
        });
    }
    let declared = declared_variables(&dst)?;
    let (tfvars, ignored) = assemble_vars(settings, env, &declared, &vars, &tags);
    let text = serde_json::to_vec_pretty(&Value::Object(tfvars.clone())).unwrap_or_default();
    workdir::write_if_changed(&dst.join(TFVARS_FILE), &text)?;
    for name in &ignored {
        tracing::warn!(
            "variable `{name}` from nubes.toml is not declared by the Terraform configuration; it was not passed"
        );
    }
    Ok(Rendered {
        dir: dst,
        vars: tfvars,
        ignored,
        files,
    })
}

/// Whether the root module talks to Azure: an `azurerm` provider or backend (the
/// local-backend warning). Text search of the top-level `.tf` files is enough here: a
/// false hit only costs a warning.
fn targets_azure(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.path().extension().is_some_and(|x| x == "tf")
            && std::fs::read_to_string(e.path()).is_ok_and(|t| {
                t.contains("provider \"azurerm\"")
                    || t.contains("backend \"azurerm\"")
                    || t.contains("hashicorp/azurerm")
            })
    })
}

fn template_context(
    settings: &Settings,
    env: &EnvName,
    origin: &Origin,
    vars: &Map<String, Value>,
    tags: &Map<String, Value>,
) -> tera::Context {
    let mut c = tera::Context::new();
    c.insert("env", env.as_str());
    c.insert("branch", &origin.branch);
    c.insert("commit", &origin.commit.clone().unwrap_or_default());
    c.insert("project", &project_name(settings));
    c.insert("location", &settings.location.clone().unwrap_or_default());
    c.insert("vars", vars);
    c.insert("tags", tags);
    c
}

/// Render one template; errors name the file, the line and the undefined variable.
fn render_template(path: &Path, text: &str, context: &tera::Context) -> Result<String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tera = tera::Tera::default();
    // Terraform files are not HTML.
    tera.autoescape_on(vec![]);
    let result = tera
        .add_raw_template(&name, text)
        .and_then(|_| tera.render(&name, context));
    result.map_err(|e| {
        let mut chain = Vec::new();
        let mut cur: Option<&dyn std::error::Error> = Some(&e);
        while let Some(err) = cur {
            chain.push(err.to_string());
            cur = err.source();
        }
        let detail = chain.last().cloned().unwrap_or_default();
        let line = undefined_variable(&detail).and_then(|var| find_line(text, &var));
        let at = match line {
            Some(l) => format!("{}:{l}", path.display()),
            None => path.display().to_string(),
        };
        Error::input(format!("{at}: template error: {}", detail.trim())).hint(
            "templates can use env, branch, commit, project, location, vars.<name> and tags.<name>",
        )
    })
}

fn undefined_variable(message: &str) -> Option<String> {
    let start = message.find("Variable `")? + "Variable `".len();
    let end = message[start..].find('`')?;
    Some(message[start..start + end].to_string())
}

/// The first line where `var` is used inside a tag.
fn find_line(text: &str, var: &str) -> Option<usize> {
    text.lines()
        .position(|l| (l.contains("{{") || l.contains("{%")) && l.contains(var))
        .map(|i| i + 1)
}

/// Names of the variables the root module declares, from its `.tf` and `.tf.json` files.
pub fn declared_variables(dir: &Path) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for entry in fs_err::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".tf") {
            let text = fs_err::read_to_string(&path)?;
            match hcl::parse(&text) {
                Ok(body) => {
                    for block in body.blocks() {
                        if block.identifier() == "variable"
                            && let Some(label) = block.labels().first()
                        {
                            names.insert(label.as_str().to_string());
                        }
                    }
                }
                // Terraform will report the syntax error itself, with better context.
                Err(e) => tracing::debug!("{}: not parsed for variables: {e}", path.display()),
            }
        } else if name.ends_with(".tf.json") {
            let doc: Value =
                serde_json::from_str(&fs_err::read_to_string(&path)?).unwrap_or(Value::Null);
            if let Some(vars) = doc.get("variable").and_then(Value::as_object) {
                names.extend(vars.keys().cloned());
            }
        }
    }
    Ok(names)
}

fn assemble_vars(
    settings: &Settings,
    env: &EnvName,
    declared: &BTreeSet<String>,
    user: &Map<String, Value>,
    tags: &Map<String, Value>,
) -> (Map<String, Value>, Vec<String>) {
    let mut out = Map::new();
    let mut set = |name: &str, value: Value| {
        if declared.contains(name) {
            out.insert(name.to_string(), value);
        }
    };
    set("environment", json!(env.as_str()));
    if let Some(name) = &settings.project_name {
        set("application_name", json!(name));
    }
    if let Some(loc) = &settings.location {
        set("location", json!(loc));
    }
    if let Some(account) = state_account(settings) {
        set("terraform_storage_account", json!(account));
    }
    set("tags", Value::Object(tags.clone()));
    let mut ignored = Vec::new();
    for (k, v) in user {
        if declared.contains(k) {
            out.insert(k.clone(), v.clone());
        } else {
            ignored.push(k.clone());
        }
    }
    (out, ignored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_variables_come_from_hcl_and_json_not_from_comments_or_strings() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(
            dir.path().join("main.tf"),
            "# variable \"commented\" {}\nvariable \"environment\" {\n  type = string\n}\nlocals {\n  s = <<EOT\nvariable \"heredoc\" {}\nEOT\n}\nvariable \"tags\" {\n  default = {}\n}\n",
        )
        .unwrap();
        fs_err::write(
            dir.path().join("extra.tf.json"),
            r#"{"variable":{"from_json":{"type":"string"}}}"#,
        )
        .unwrap();
        let names: Vec<_> = declared_variables(dir.path())
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(names, ["environment", "from_json", "tags"]);
    }

    #[test]
    fn template_errors_name_file_line_and_variable() {
        let ctx = tera::Context::new();
        let e = render_template(
            Path::new("terraform/main.tf.tera"),
            "a = 1\nb = \"{{ nope }}\"\n",
            &ctx,
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("terraform/main.tf.tera:2") && m.contains("nope"),
            "{m}"
        );
        assert_eq!(e.exit_code(), 2);
        let e = render_template(Path::new("x.tf.tera"), "{% if %}", &ctx).unwrap_err();
        assert!(e.to_string().contains("x.tf.tera"), "{e}");
    }
}
