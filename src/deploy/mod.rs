//! Deploying the built artifact into the environment, to the target named by
//! `[deploy] target` or inferred from the Terraform outputs:
//! `static-site` (output `static_site_account_url`), `app-service` / `functions`
//! (output `scm_url`, or `app_name`), `command` (`[deploy] command`).

pub mod static_site;

use std::path::Path;

use serde_json::{Map, Value};

use crate::config::Settings;
use crate::env_name::EnvName;
use crate::error::{Error, Result};

/// What was deployed, for the report.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub target: String,
    pub detail: String,
}

fn output(outputs: &Map<String, Value>, name: &str) -> Option<String> {
    outputs
        .get(name)?
        .get("value")?
        .as_str()
        .map(str::to_string)
}

/// Which target applies: configured, or inferred from the outputs.
pub fn target(settings: &Settings, outputs: &Map<String, Value>) -> Option<String> {
    if let Some(t) = &settings.deploy.target {
        return Some(t.clone());
    }
    if output(outputs, "static_site_account_url").is_some() {
        Some("static-site".into())
    } else if output(outputs, "scm_url").is_some() || output(outputs, "app_name").is_some() {
        Some("app-service".into())
    } else if settings.deploy.command.is_some() {
        Some("command".into())
    } else {
        None
    }
}

/// `NUBES_OUTPUT_<NAME>` for every output (name upper-cased, other characters `_`).
pub fn output_env(
    env: &EnvName,
    artifact: &Path,
    outputs: &Map<String, Value>,
) -> Vec<(String, String)> {
    let mut vars = vec![
        ("NUBES_ENV".to_string(), env.to_string()),
        ("NUBES_ARTIFACT".to_string(), artifact.display().to_string()),
    ];
    for (name, o) in outputs {
        let key: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        let value = match o.get("value") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => continue,
        };
        vars.push((format!("NUBES_OUTPUT_{key}"), value));
    }
    vars
}

pub async fn deploy(
    settings: &Settings,
    env: &EnvName,
    artifact: &Path,
    outputs: &Map<String, Value>,
) -> Result<Option<Deployed>> {
    let Some(target) = target(settings, outputs) else {
        tracing::info!(
            "no deploy target (set [deploy] target, or output static_site_account_url / scm_url): the build was not deployed"
        );
        return Ok(None);
    };
    match target.as_str() {
        "command" => deploy_command(settings, env, artifact, outputs)
            .await
            .map(Some),
        "static-site" => {
            let account = output(outputs, "static_site_account_url").ok_or_else(|| {
                Error::input("deploy target `static-site` needs the Terraform output `static_site_account_url`")
                    .hint("output the blob endpoint of the storage account whose static website serves the site")
            })?;
            let options = static_site::SiteOptions {
                cache_control: settings.deploy.cache_control.clone(),
                ..Default::default()
            };
            let report = static_site::sync(&account, artifact, &options).await?;
            Ok(Some(Deployed {
                detail: format!(
                    "{} to {account}/{}",
                    report.summary(),
                    static_site::CONTAINER
                ),
                target,
            }))
        }
        "app-service" | "functions" => {
            let scm = scm_url(outputs).ok_or_else(|| {
                Error::input(format!("deploy target `{target}` needs the Terraform output `scm_url` (or `app_name`)")).hint(
                    "output the app's Kudu site, e.g. output \"scm_url\" { value = \"https://${azurerm_linux_web_app.app.name}.scm.azurewebsites.net\" }",
                )
            })?;
            let report = crate::kudu::Kudu::from_env(&scm)?
                .zip_deploy(artifact, KUDU_TIMEOUT)
                .await?;
            Ok(Some(Deployed {
                detail: format!(
                    "Kudu deployment {} ({}), {} bytes, to {scm}",
                    report.deployment_id, report.status_text, report.bytes
                ),
                target,
            }))
        }
        other => Err(
            Error::input(format!("unknown deploy target `{other}`")).hint(format!(
                "allowed: {}",
                crate::config::ALLOWED_TARGETS.join(", ")
            )),
        ),
    }
}

/// How long a Kudu deployment may take (builds on the server can take minutes).
const KUDU_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// The app's Kudu (SCM) site: output `scm_url`, or derived from output `app_name`.
fn scm_url(outputs: &Map<String, Value>) -> Option<String> {
    output(outputs, "scm_url").or_else(|| {
        output(outputs, "app_name").map(|name| format!("https://{name}.scm.azurewebsites.net"))
    })
}

/// Run `[deploy] command` (an argument list, never a shell string: the outputs reach it
/// only through its environment).
async fn deploy_command(
    settings: &Settings,
    env: &EnvName,
    artifact: &Path,
    outputs: &Map<String, Value>,
) -> Result<Deployed> {
    let argv = settings.deploy.command.clone().unwrap_or_default();
    let Some((program, args)) = argv.split_first() else {
        return Err(
            Error::input("[deploy] target is \"command\" but [deploy] command is not set")
                .hint("set command = [\"./deploy.sh\", \"--flag\"] (a list: no shell)"),
        );
    };
    let program_path = if program.contains('/') {
        settings.root.join(program)
    } else {
        program.into()
    };
    let mut cmd = tokio::process::Command::new(&program_path);
    cmd.args(args).current_dir(&settings.root);
    for (k, v) in output_env(env, artifact, outputs) {
        cmd.env(k, v);
    }
    crate::build::run_streamed(cmd, &format!("deploy command `{program}`"), "deploy").await?;
    Ok(Deployed {
        target: "command".into(),
        detail: format!("ran {program}"),
    })
}

/// The content digest of an artifact, `sha256:<hex>`: of the file itself, or for a
/// folder of its sorted `path NUL sha256(content)` lines, so the same files give the
/// same digest wherever they were built. Recorded as the environment's provenance.
pub fn digest(artifact: &Path) -> Result<String> {
    use sha2::{Digest as _, Sha256};
    fn file_hash(path: &Path) -> Result<[u8; 32]> {
        let mut file = fs_err::File::open(path)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        Ok(hasher.finalize().into())
    }
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    if artifact.is_file() {
        return Ok(format!("sha256:{}", hex(&file_hash(artifact)?)));
    }
    let mut lines = Vec::new();
    for entry in walkdir::WalkDir::new(artifact).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            Error::failed(format!(
                "cannot read the artifact {}: {e}",
                artifact.display()
            ))
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(artifact)
            .unwrap_or(entry.path())
            .to_string_lossy()
            .replace('\\', "/");
        lines.push(format!("{rel}\0{}\n", hex(&file_hash(entry.path())?)));
    }
    let mut hasher = Sha256::new();
    for line in &lines {
        hasher.update(line.as_bytes());
    }
    Ok(format!("sha256:{}", hex(&hasher.finalize())))
}

#[cfg(test)]
mod digest_tests {
    use super::*;

    #[test]
    fn digests_name_content_not_location() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        for d in [a.path(), b.path()] {
            std::fs::create_dir_all(d.join("assets")).expect("mkdir");
            std::fs::write(d.join("index.html"), "<h1>hi</h1>").expect("write");
            std::fs::write(d.join("assets/app.js"), "1").expect("write");
        }
        let da = digest(a.path()).expect("digest");
        assert!(da.starts_with("sha256:") && da.len() == 7 + 64, "{da}");
        assert_eq!(da, digest(b.path()).expect("digest"));
        std::fs::write(b.path().join("assets/app.js"), "2").expect("write");
        assert_ne!(da, digest(b.path()).expect("digest"));
        // A single file: the well-known digest of its bytes.
        let f = a.path().join("assets/app.js");
        assert_eq!(
            digest(&f).expect("digest"),
            "sha256:6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"
        );
    }
}
