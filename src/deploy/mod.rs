//! Deploying the built artifact into the environment, to the target named by
//! `[deploy] target` or inferred from the Terraform outputs:
//! `static-site` (output `static_site_account_url`), `app-service` / `functions`
//! (output `scm_url`, or `app_name`), `command` (`[deploy] command`).
//!
//! For `app-service` and `functions` the deployment API depends on the hosting plan
//! ([`crate::kudu::choose_api`]): it comes from the outputs `app_sku` (and `app_kind`),
//! else from one Resource Manager GET of the site (resource group from the output
//! `resource_group`, subscription from `ARM_SUBSCRIPTION_ID`), done once per run and
//! only for `functions` (a web app's plan never changes the API).

pub mod container_apps;
pub mod slot;
pub mod static_site;

use std::path::Path;

use serde_json::{Map, Value};

use crate::config::Settings;
use crate::env_name::EnvName;
use crate::error::{Error, Result};

/// What was deployed, for the report and provenance metadata.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// The target kind: `static-site`, `app-service`, `functions`, `command`.
    pub target: String,
    pub detail: String,
    /// SHA-256 (lowercase hex) of the bytes nubes shipped, when it shipped one artifact
    /// itself (the Kudu upload); `None` for a folder sync or a deploy command.
    pub sha256: Option<String>,
    /// Where it went: the app's SCM site, the storage account, or the command.
    pub destination: Option<String>,
    /// A `static-site` sync of a whole folder: its files with the digests the sync's one
    /// read of each gave, and the artifact's digest made from them (what `up` records
    /// and keeps as the release, without hashing the folder again).
    pub site: Option<std::sync::Arc<SiteManifest>>,
}

pub(crate) fn output(outputs: &Map<String, Value>, name: &str) -> Option<String> {
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
    if output(outputs, "container_app_id").is_some() {
        Some("container-apps".into())
    } else if output(outputs, "static_site_account_url").is_some() {
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

/// The account URL a `static-site` deploy syncs into (output `static_site_account_url`),
/// when the environment deploys to a static site.
pub fn site_account(settings: &Settings, outputs: &Map<String, Value>) -> Option<String> {
    (target(settings, outputs).as_deref() == Some("static-site"))
        .then(|| output(outputs, "static_site_account_url"))
        .flatten()
}

/// The sync options of a `static-site` deploy (what a rollback compares `$web` with).
pub fn site_options(settings: &Settings) -> static_site::SiteOptions {
    static_site::SiteOptions {
        cache_control: settings.deploy.cache_control.clone(),
        ..Default::default()
    }
}

/// Deploy `artifact`. `baseline`: for a `static-site` redeploy of a kept release, the
/// `$web` listing taken already and the names that keep their content (the artifact
/// folder then holds only the other files); None otherwise. `release`: the release's
/// digest (`sha256:<hex>`) when known, recorded as a zip deploy's Kudu `message` (see
/// `kudu`'s module doc) so that a slot can later be checked for it.
pub async fn deploy(
    settings: &Settings,
    env: &EnvName,
    artifact: &Path,
    outputs: &Map<String, Value>,
    baseline: Option<std::sync::Arc<static_site::Baseline>>,
    release: Option<&str>,
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
                baseline,
                ..site_options(settings)
            };
            let whole = options.baseline.is_none();
            let mut report = static_site::sync(&account, artifact, &options).await?;
            // A redeploy (baseline) synced part of the folder and knows its digest already.
            let site = if whole {
                let read = std::mem::take(&mut report.files);
                let dir = artifact.to_path_buf();
                let collected = tokio::task::spawn_blocking(move || site_manifest(&dir, &read))
                    .await
                    .map_err(|e| Error::failed(e.to_string()))
                    .and_then(|m| m);
                // Not fatal: `up` then hashes the folder for its record as before.
                collected
                    .map_err(|e| tracing::warn!("the synced files' digests were not kept: {e}"))
                    .ok()
                    .map(std::sync::Arc::new)
            } else {
                None
            };
            Ok(Some(Deployed {
                detail: format!(
                    "{} to {account}/{}",
                    report.summary(),
                    static_site::CONTAINER
                ),
                target,
                sha256: None,
                destination: Some(account),
                site,
            }))
        }
        "app-service" | "functions" => {
            let scm = scm_url(outputs).ok_or_else(|| {
                Error::input(format!("deploy target `{target}` needs the Terraform output `scm_url` (or `app_name`, or NubesGen's `application_name`)")).hint(
                    "output the app's Kudu site, e.g. output \"scm_url\" { value = \"https://${azurerm_linux_web_app.app.name}.scm.azurewebsites.net\" }",
                )
            })?;
            let site = site_access(outputs, &scm);
            let hosting = hosting(&target, outputs, site.as_ref()).await;
            let api = crate::kudu::choose_api(artifact, hosting)?;
            let mut kudu = crate::kudu::Kudu::from_env(&scm)?;
            if let Some(site) = site {
                kudu = kudu.with_site(site);
            }
            if let Some(digest) = release {
                kudu = kudu.with_message(crate::kudu::release_message(digest));
            }
            let report = kudu.deploy(artifact, api, KUDU_TIMEOUT).await?;
            let said = if report.status_text.trim().is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    crate::env_name::printable(report.status_text.trim())
                )
            };
            Ok(Some(Deployed {
                detail: format!(
                    "Kudu deployment {}{said} by {}, {} bytes, sha256 {}, to {scm}",
                    crate::env_name::printable(&report.deployment_id),
                    report.api.describe(),
                    report.bytes,
                    report.sha256
                ),
                target,
                sha256: Some(report.sha256),
                destination: Some(scm),
                site: None,
            }))
        }
        // The pipeline deploys images itself ([`container_apps::deploy`]); reaching here
        // means no image was built.
        "container-apps" => Err(Error::input(
            "deploy target `container-apps` deploys an image nubes builds from the project's Dockerfile, and none was built",
        )
        .hint("add a Dockerfile to the project root (and remove [build] command, which replaces the image build)")),
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

/// The app's Kudu (SCM) site: output `scm_url`, or derived from the app's name: output
/// `app_name` (what `nubes init` writes), else `application_name`, the output in which a
/// NubesGen project names its web or function app (so an unmodified NubesGen project
/// deploys once `[deploy] target` says which kind of app it is).
fn scm_url(outputs: &Map<String, Value>) -> Option<String> {
    output(outputs, "scm_url").or_else(|| {
        output(outputs, "app_name")
            .or_else(|| output(outputs, "application_name"))
            .map(|name| format!("https://{name}.scm.azurewebsites.net"))
    })
}

/// The app's resource in Resource Manager: group from the output `resource_group`, name
/// from `app_name` or the SCM host's first label, subscription from the environment.
/// `None` when any is missing (nubes then deploys without asking Resource Manager).
fn site_access(outputs: &Map<String, Value>, scm: &str) -> Option<crate::kudu::SiteAccess> {
    let group = output(outputs, "resource_group")?;
    let name = output(outputs, "app_name").or_else(|| {
        let host = url::Url::parse(scm).ok()?.host_str()?.to_string();
        host.split_once(".scm.").map(|(app, _)| app.to_string())
    })?;
    match crate::arm::Arm::from_env() {
        Ok(arm) => Some(crate::kudu::SiteAccess {
            arm: std::sync::Arc::new(arm),
            group,
            name,
        }),
        Err(e) => {
            tracing::debug!("no Resource Manager access for the app ({e}); deploying without it");
            None
        }
    }
}

/// The app's hosting plan: outputs `app_sku`/`app_kind`; else, for `functions`, one GET
/// of the site; else a dedicated plan (zip deploy or OneDeploy).
async fn hosting(
    target: &str,
    outputs: &Map<String, Value>,
    site: Option<&crate::kudu::SiteAccess>,
) -> crate::kudu::Hosting {
    use crate::kudu::Hosting;
    let kind = output(outputs, "app_kind");
    if let Some(sku) = output(outputs, "app_sku") {
        return Hosting::from_site(kind.as_deref(), Some(&sku));
    }
    if target != "functions" {
        return Hosting::Dedicated;
    }
    let Some(site) = site else {
        tracing::info!(
            "the function app's plan is unknown (no output app_sku, no resource_group or \
             ARM_SUBSCRIPTION_ID): deploying as to a dedicated or Premium plan"
        );
        return Hosting::Dedicated;
    };
    match site.arm.web_site(&site.group, &site.name).await {
        Ok(Some(found)) => {
            let hosting = Hosting::from_site(found.kind.as_deref(), found.sku.as_deref());
            tracing::info!("the function app runs on {}", hosting.describe());
            hosting
        }
        Ok(None) => {
            tracing::warn!(
                "Resource Manager does not know the app {} in {}; deploying as to a dedicated plan",
                crate::env_name::printable(&site.name),
                crate::env_name::printable(&site.group)
            );
            Hosting::Dedicated
        }
        Err(e) => {
            tracing::warn!(
                "the function app's plan could not be read ({e}); deploying as to a dedicated \
                 plan (output app_sku to say which plan it is)"
            );
            Hosting::Dedicated
        }
    }
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
        sha256: None,
        destination: Some(program.clone()),
        site: None,
    })
}

/// Artifact files opened to read their content (site sync, digests, kept releases),
/// counted so a test can see how often `up` reads each file; logged at debug level at
/// exit, as the storage request count is.
static ARTIFACT_READS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn artifact_reads() -> u64 {
    ARTIFACT_READS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Count one read of an artifact file's content.
pub(crate) fn reading_artifact_file() {
    ARTIFACT_READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Lower-case hex of `bytes` (digests as nubes records and names them).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One file of a folder artifact with its content's SHA-256: what [`digest`] hashes, and
/// what a kept static-site release stores (`releases::site`).
#[derive(Debug)]
pub struct FileDigest {
    /// Path relative to the artifact, with `/`.
    pub rel: String,
    /// SHA-256 of the content, lower-case hex.
    pub hex: String,
    pub path: std::path::PathBuf,
    pub size: u64,
    /// The content's MD5, when the pass that read it computed one (a site sync does).
    pub md5: Option<[u8; 16]>,
}

fn file_sha256(path: &Path) -> Result<([u8; 32], u64)> {
    use sha2::{Digest as _, Sha256};
    reading_artifact_file();
    let mut file = fs_err::File::open(path)?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)?;
    Ok((hasher.finalize().into(), size))
}

/// Every file of a folder artifact, sorted by path, with its SHA-256 (blocking I/O).
pub fn file_digests(artifact: &Path) -> Result<Vec<FileDigest>> {
    walk_files(artifact, |_, path, _| {
        let (sha, size) = file_sha256(path)?;
        Ok((sha, size, None))
    })
}

/// The files [`file_digests`] walks, in its order, each hashed by `hash(rel, path,
/// size on disk)` into (SHA-256, size, MD5 if known). Blocking I/O.
fn walk_files(
    artifact: &Path,
    mut hash: impl FnMut(&str, &Path, u64) -> Result<([u8; 32], u64, Option<[u8; 16]>)>,
) -> Result<Vec<FileDigest>> {
    let mut out = Vec::new();
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
        let on_disk = entry
            .metadata()
            .map_err(|e| Error::failed(format!("cannot read {}: {e}", entry.path().display())))?
            .len();
        let (sha, size, md5) = hash(&rel, entry.path(), on_disk)?;
        out.push(FileDigest {
            rel,
            hex: hex(&sha),
            path: entry.path().to_path_buf(),
            size,
            md5,
        });
    }
    Ok(out)
}

/// A folder artifact as a site sync read it: its [`FileDigest`]s (the very entries and
/// order [`file_digests`] gives) and its [`digest`].
#[derive(Debug)]
pub struct SiteManifest {
    pub files: Vec<FileDigest>,
    /// `sha256:<hex>` of the [`manifest`].
    pub digest: String,
}

/// The [`SiteManifest`] of `artifact` from the digests a sync computed while it read
/// the files (`read`). The folder is walked again for names and sizes only (the same
/// walk as [`file_digests`], so the digest is the one it would give); a file the sync
/// did not read (one it skips, such as `.DS_Store`) or whose size changed since is
/// hashed here. Blocking I/O.
pub fn site_manifest(artifact: &Path, read: &[static_site::SiteFile]) -> Result<SiteManifest> {
    use sha2::{Digest as _, Sha256};
    let by_rel: std::collections::HashMap<&str, &static_site::SiteFile> =
        read.iter().map(|f| (f.rel.as_str(), f)).collect();
    let files = walk_files(artifact, |rel, path, on_disk| match by_rel.get(rel) {
        Some(f) if f.size == on_disk => Ok((f.sha256, f.size, Some(f.md5))),
        _ => {
            let (md5, sha, size) = static_site::file_digests_blocking(path)?;
            Ok((sha, size, Some(md5)))
        }
    })?;
    let digest = format!(
        "sha256:{}",
        hex(&Sha256::digest(manifest(&files).as_bytes()))
    );
    Ok(SiteManifest { files, digest })
}

/// The manifest of a folder artifact: one `path NUL sha256(content)` line per file, sorted.
pub fn manifest(files: &[FileDigest]) -> String {
    files
        .iter()
        .map(|f| format!("{}\0{}\n", f.rel, f.hex))
        .collect()
}

/// The content digest of an artifact, `sha256:<hex>`: of the file itself, or for a
/// folder of its [`manifest`], so the same files give the same digest wherever they were
/// built. Recorded as the environment's provenance.
pub fn digest(artifact: &Path) -> Result<String> {
    use sha2::{Digest as _, Sha256};
    if artifact.is_file() {
        return Ok(format!("sha256:{}", hex(&file_sha256(artifact)?.0)));
    }
    let manifest = manifest(&file_digests(artifact)?);
    Ok(format!(
        "sha256:{}",
        hex(&Sha256::digest(manifest.as_bytes()))
    ))
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

    #[test]
    fn a_site_manifest_from_the_syncs_digests_is_the_digest_of_the_folder() {
        use md5::Digest as _;
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path();
        std::fs::create_dir_all(root.join("assets")).expect("mkdir");
        std::fs::write(root.join("index.html"), "<h1>hi</h1>").expect("write");
        std::fs::write(root.join("assets/app.js"), "1").expect("write");
        std::fs::write(root.join(".DS_Store"), "finder").expect("write");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("linked.js"), "l").expect("write");
        std::os::unix::fs::symlink(outside.path().join("linked.js"), root.join("linked.js"))
            .expect("symlink");
        let read = |rel: &str, bytes: &[u8]| static_site::SiteFile {
            rel: rel.into(),
            size: bytes.len() as u64,
            md5: md5::Md5::digest(bytes).into(),
            sha256: <sha2::Sha256 as sha2::Digest>::digest(bytes).into(),
        };
        // What a sync reads: not `.DS_Store`, but the file behind the symlink (which the
        // digest never counted), and app.js as it was before it changed on disk.
        let synced = [
            read("index.html", b"<h1>hi</h1>"),
            read("assets/app.js", b"old!"),
            read("linked.js", b"l"),
        ];
        let m = site_manifest(root, &synced).expect("manifest");
        assert_eq!(m.digest, digest(root).expect("digest"));
        let rels: Vec<&str> = m.files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, [".DS_Store", "assets/app.js", "index.html"]);
        for f in &m.files {
            let bytes = std::fs::read(&f.path).expect("read");
            assert_eq!(f.md5, Some(md5::Md5::digest(&bytes).into()), "{}", f.rel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!({ "value": v })))
            .collect()
    }

    #[test]
    fn the_kudu_site_comes_from_scm_url_then_app_name_then_nubesgens_application_name() {
        let all = outputs(&[
            ("scm_url", "https://given.scm.azurewebsites.net"),
            ("app_name", "app-x"),
            ("application_name", "app-nubesgen"),
        ]);
        assert_eq!(
            scm_url(&all).as_deref(),
            Some("https://given.scm.azurewebsites.net")
        );
        let named = outputs(&[("app_name", "app-x"), ("application_name", "app-y")]);
        assert_eq!(
            scm_url(&named).as_deref(),
            Some("https://app-x.scm.azurewebsites.net")
        );
        // An unmodified NubesGen project: outputs application_url, resource_group and
        // application_name (the app's generated name).
        let nubesgen = outputs(&[
            (
                "application_url",
                "https://app-demo-alice-001.azurewebsites.net",
            ),
            ("resource_group", "rg-demo-alice-001"),
            ("application_name", "app-demo-alice-001"),
        ]);
        assert_eq!(
            scm_url(&nubesgen).as_deref(),
            Some("https://app-demo-alice-001.scm.azurewebsites.net")
        );
        // The name alone never makes a project an App Service one: only a configured
        // target reads it.
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::config::load(dir.path(), None, &Default::default()).unwrap();
        assert_eq!(target(&settings, &nubesgen), None);
    }
}
