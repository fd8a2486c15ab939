//! Container images for the `container-apps` target: built once from the project's
//! Dockerfile with the local engine (`[build] engine`: docker, podman or buildah; by
//! default the first on PATH), exported as a `docker save`-style archive (the one format
//! all three write: `docker save`, `podman save --format docker-archive`, `buildah push
//! … docker-archive:`), and turned into an OCI image ready to push: layers gzipped
//! deterministically (flate2, mtime 0, so an unchanged layer gives the same blob and the
//! registry already has it), the engine's config blob as is, and an OCI image manifest
//! whose SHA-256 is the digest nubes deploys by. The manifest bytes are pushed exactly as
//! hashed here, so the digest is known before the push and is the registry's too.
//!
//! Prepared blobs live in `.nubes/images/blobs/` (named by digest; a gzipped layer is
//! found again by its uncompressed digest, so a rebuild compresses only new layers).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A container engine nubes can build with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
    Buildah,
}

impl Engine {
    pub fn program(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
            Engine::Buildah => "buildah",
        }
    }

    /// The configured engine (which must be on PATH), else the first of docker, podman,
    /// buildah found on PATH.
    pub fn find(configured: Option<&str>) -> Result<Engine> {
        let all = [Engine::Docker, Engine::Podman, Engine::Buildah];
        if let Some(name) = configured {
            let engine = all
                .into_iter()
                .find(|e| e.program() == name)
                .ok_or_else(|| {
                    Error::input(format!(
                        "unknown container engine `{}`",
                        crate::env_name::printable(name)
                    ))
                    .hint("[build] engine is one of docker, podman, buildah")
                })?;
            which::which(engine.program()).map_err(|_| {
                Error::input(format!(
                    "[build] engine is `{name}` but `{name}` is not on PATH"
                ))
                .hint(format!(
                    "install {name}, or set [build] engine to an engine that is installed"
                ))
            })?;
            return Ok(engine);
        }
        all.into_iter()
            .find(|e| which::which(e.program()).is_ok())
            .ok_or_else(|| {
                Error::input("building the image needs a container engine, and none of docker, podman, buildah is on PATH")
                    .hint("install one of them (GitHub's ubuntu runners have docker and buildah), or set [build] engine")
            })
    }

    fn build_args(self, tag: &str, dockerfile: &Path) -> Vec<String> {
        let file = dockerfile.display().to_string();
        match self {
            // `--layers`: buildah caches per instruction only when asked; without it an
            // unchanged base would be a new layer on every build.
            Engine::Buildah => vec![
                "bud".into(),
                "--layers".into(),
                "-t".into(),
                tag.into(),
                "-f".into(),
                file,
                ".".into(),
            ],
            Engine::Docker | Engine::Podman => vec![
                "build".into(),
                "-t".into(),
                tag.into(),
                "-f".into(),
                file,
                ".".into(),
            ],
        }
    }

    fn save_args(self, tag: &str, archive: &Path) -> Vec<String> {
        let out = archive.display().to_string();
        match self {
            Engine::Docker => vec!["save".into(), "-o".into(), out, tag.into()],
            Engine::Podman => vec![
                "save".into(),
                "--format".into(),
                "docker-archive".into(),
                "-o".into(),
                out,
                tag.into(),
            ],
            Engine::Buildah => vec![
                "push".into(),
                "--quiet".into(),
                tag.into(),
                format!("docker-archive:{out}:{tag}"),
            ],
        }
    }
}

/// One blob of the prepared image, stored in a file.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    pub media_type: &'static str,
    pub path: PathBuf,
}

/// A built image, ready to push: manifest bytes and the blobs they name.
#[derive(Debug, Clone)]
pub struct Image {
    /// The engine's local name, `nubes/<project>:<tag>`.
    pub local: String,
    /// `<env>-<commit>` (or `<env>` without a commit).
    pub tag: String,
    /// `sha256:<hex>` of [`Image::manifest`]: what the environment runs.
    pub digest: String,
    pub manifest: Vec<u8>,
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub engine: Engine,
    pub took: Duration,
}

impl Image {
    /// Bytes of all blobs (config and layers), compressed as pushed.
    pub fn size(&self) -> u64 {
        self.config.size + self.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// The image tag for an environment and commit: `<env>-<first 12 of the commit>`.
pub fn tag_for(env: &str, commit: Option<&str>) -> String {
    match commit.filter(|c| !c.is_empty()) {
        Some(c) => format!("{env}-{}", &c[..c.len().min(12)]),
        None => env.to_string(),
    }
}

/// Build the Dockerfile in `root` once with `engine`, export it and prepare the OCI
/// image. `project` names the local repository (lower-cased as engines require).
pub async fn build(
    root: &Path,
    engine: Engine,
    project: &str,
    tag: &str,
    env: &[(String, String)],
) -> Result<Image> {
    let started = Instant::now();
    let dockerfile = root.join("Dockerfile");
    if !dockerfile.is_file() {
        return Err(Error::input(format!(
            "deploy target `container-apps` builds an image from a Dockerfile, and there is none in {}",
            root.display()
        ))
        .hint("add a Dockerfile to the project root"));
    }
    let local = format!("nubes/{}:{tag}", project.to_ascii_lowercase());
    tracing::info!("build: {} image {local}", engine.program());
    run_engine(
        root,
        engine,
        &engine.build_args(&local, Path::new("Dockerfile")),
        env,
        "build",
    )
    .await?;
    let store = root.join(".nubes/images");
    fs_err::create_dir_all(store.join("blobs"))?;
    let scratch = tempfile::tempdir_in(&store)?;
    let archive = scratch.path().join("image.tar");
    run_engine(
        root,
        engine,
        &engine.save_args(&local, &archive),
        env,
        "build",
    )
    .await?;
    let unpacked = scratch.path().join("x");
    let store_blobs = store.join("blobs");
    let (manifest, config, layers) = tokio::task::spawn_blocking(move || {
        unpack(&archive, &unpacked)?;
        prepare(&unpacked, &store_blobs)
    })
    .await
    .map_err(|e| Error::failed(format!("preparing the image: {e}")))??;
    let digest = sha256_hex(&manifest);
    tracing::info!("image {local}: sha256:{digest}, {} layer(s)", layers.len());
    Ok(Image {
        local,
        tag: tag.to_string(),
        digest: format!("sha256:{digest}"),
        manifest,
        config,
        layers,
        engine,
        took: started.elapsed(),
    })
}

async fn run_engine(
    root: &Path,
    engine: Engine,
    args: &[String],
    env: &[(String, String)],
    prefix: &str,
) -> Result<()> {
    let mut cmd = tokio::process::Command::new(engine.program());
    cmd.args(args).current_dir(root);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let what = format!(
        "{} {}",
        engine.program(),
        args.first().map_or("", String::as_str)
    );
    crate::build::run_streamed(cmd, &what, prefix).await
}

fn unpack(archive: &Path, into: &Path) -> Result<()> {
    let file = fs_err::File::open(archive)?;
    let mut tar = tar::Archive::new(file);
    tar.unpack(into).map_err(|e| {
        Error::failed(format!(
            "cannot read the image archive the engine saved ({}): {e}",
            archive.display()
        ))
    })
}

/// `manifest.json` of a `docker save` archive (one image).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: String,
    layers: Vec<String>,
}

/// The manifest bytes, config blob and layer blobs of the unpacked archive in `dir`,
/// with blobs written into `store` by digest.
fn prepare(dir: &Path, store: &Path) -> Result<(Vec<u8>, Blob, Vec<Blob>)> {
    let bad = |why: String| {
        Error::failed(format!(
            "the image archive the engine saved is not usable: {why}"
        ))
    };
    let text = fs_err::read(dir.join("manifest.json"))?;
    let saved: Vec<SavedImage> =
        serde_json::from_slice(&text).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let [saved] = <[SavedImage; 1]>::try_from(saved)
        .map_err(|v| bad(format!("{} images in the archive, expected one", v.len())))?;
    let inside = |rel: &str| -> Result<PathBuf> {
        let p = dir.join(rel);
        let real = fs_err::canonicalize(&p)?;
        if !real.starts_with(fs_err::canonicalize(dir)?) {
            return Err(bad(format!("{rel} points outside the archive")));
        }
        Ok(real)
    };
    let config_bytes = fs_err::read(inside(&saved.config)?)?;
    let config = store_blob(store, &config_bytes, CONFIG_MEDIA_TYPE)?;
    let mut layers = Vec::with_capacity(saved.layers.len());
    for rel in &saved.layers {
        layers.push(gzip_layer(&inside(rel)?, store)?);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": descriptor(&config),
        "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| bad(e.to_string()))?;
    Ok((bytes, config, layers))
}

fn descriptor(b: &Blob) -> serde_json::Value {
    serde_json::json!({"mediaType": b.media_type, "digest": b.digest, "size": b.size})
}

fn store_blob(store: &Path, bytes: &[u8], media_type: &'static str) -> Result<Blob> {
    let hex = sha256_hex(bytes);
    let path = store.join(&hex);
    if !path.is_file() {
        crate::workdir::write_if_changed(&path, bytes)?;
    }
    Ok(Blob {
        digest: format!("sha256:{hex}"),
        size: bytes.len() as u64,
        media_type,
        path,
    })
}

/// The layer tar at `path`, gzipped (once per uncompressed content: the compressed blob
/// is found again by the layer's own digest). A layer the engine already compressed is
/// taken as is.
fn gzip_layer(path: &Path, store: &Path) -> Result<Blob> {
    let mut file = fs_err::File::open(path)?;
    let mut magic = [0u8; 2];
    let is_gzip = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    drop(file);
    if is_gzip {
        let bytes = fs_err::read(path)?;
        return store_blob(store, &bytes, LAYER_GZIP);
    }
    let diff_id = file_sha256(path)?;
    let known = store.join(format!("{diff_id}.gz"));
    let compressed = if known.is_file() {
        fs_err::read(&known)?
    } else {
        let mut encoder = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::default());
        std::io::copy(&mut fs_err::File::open(path)?, &mut encoder)?;
        let bytes = encoder.finish()?;
        let tmp = store.join(format!("{diff_id}.gz.tmp"));
        let mut out = fs_err::File::create(&tmp)?;
        out.write_all(&bytes)?;
        out.sync_all()?;
        fs_err::rename(&tmp, &known)?;
        bytes
    };
    store_blob(store, &compressed, LAYER_GZIP)
}

fn file_sha256(path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut fs_err::File::open(path)?, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_name_env_and_short_commit() {
        assert_eq!(
            tag_for("alice", Some("0123456789abcdef0123")),
            "alice-0123456789ab"
        );
        assert_eq!(tag_for("alice", None), "alice");
        assert_eq!(tag_for("alice", Some("")), "alice");
    }

    #[test]
    fn a_saved_archive_becomes_a_manifest_with_gzipped_layers_that_compress_the_same_twice() {
        let dir = tempfile::tempdir().unwrap();
        let x = dir.path().join("x");
        std::fs::create_dir_all(x.join("l1")).unwrap();
        std::fs::write(x.join("cfg.json"), br#"{"rootfs":{"type":"layers"}}"#).unwrap();
        let mut layer = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_cksum();
        layer.append_data(&mut h, "msg", &b"hello"[..]).unwrap();
        std::fs::write(x.join("l1/layer.tar"), layer.into_inner().unwrap()).unwrap();
        std::fs::write(
            x.join("manifest.json"),
            br#"[{"Config":"cfg.json","RepoTags":["a:b"],"Layers":["l1/layer.tar"]}]"#,
        )
        .unwrap();
        let store = dir.path().join("blobs");
        std::fs::create_dir_all(&store).unwrap();
        let (m1, config, layers) = prepare(&x, &store).unwrap();
        let (m2, _, _) = prepare(&x, &store).unwrap();
        assert_eq!(m1, m2, "the same archive gives the same manifest");
        let doc: serde_json::Value = serde_json::from_slice(&m1).unwrap();
        assert_eq!(doc["layers"][0]["mediaType"], LAYER_GZIP);
        assert_eq!(doc["config"]["digest"], config.digest.as_str());
        let gz = std::fs::read(&layers[0].path).unwrap();
        assert_eq!(format!("sha256:{}", sha256_hex(&gz)), layers[0].digest);
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, std::fs::read(x.join("l1/layer.tar")).unwrap());
        // A layer path escaping the archive is refused.
        std::fs::write(
            x.join("manifest.json"),
            br#"[{"Config":"cfg.json","Layers":["../../etc/passwd"]}]"#,
        )
        .unwrap();
        assert!(prepare(&x, &store).is_err());
    }
}
