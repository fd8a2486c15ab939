//! A `static-site` release: a manifest (`path NUL sha256 LF` per file, in the order
//! [`crate::deploy::digest`] walks the folder, so the manifest's own SHA-256 is the
//! artifact's digest) plus each file stored once under `<project>/files/<sha256>`.
//! Redeploying materialises the files into a temporary folder and hands it to the
//! ordinary site sync, which uploads only the files whose content differs from what
//! `$web` serves.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest as _, Sha256};

use super::{PARALLEL, Releases};
use crate::env_name::printable;
use crate::error::{Error, Result};

use crate::deploy::{FileDigest as Entry, file_digests as walk, hex, manifest as manifest_of};

/// Store the files of `artifact` that are not stored yet; return the manifest and the
/// total size. Refuses when the manifest's hash is not `expected` (the folder changed
/// since its digest was taken).
pub(super) async fn keep_files(
    store: &Releases,
    artifact: &Path,
    expected: &str,
) -> Result<(Bytes, u64)> {
    let dir = artifact.to_path_buf();
    let entries = tokio::task::spawn_blocking(move || walk(&dir))
        .await
        .map_err(|e| Error::failed(format!("reading the artifact stopped: {e}")))??;
    let manifest = manifest_of(&entries);
    let got = hex(&Sha256::digest(manifest.as_bytes()));
    if got != expected {
        return Err(Error::failed(format!(
            "the artifact {} changed while it was being kept as a release",
            artifact.display()
        )));
    }
    let prefix = format!("{}/files/", store.project);
    let present: HashSet<String> = store
        .list_flat(&prefix)
        .await?
        .into_iter()
        .map(|l| l.name[prefix.len()..].to_string())
        .collect();
    let mut seen = HashSet::new();
    let missing: Vec<&Entry> = entries
        .iter()
        .filter(|e| !present.contains(&e.hex) && seen.insert(e.hex.clone()))
        .collect();
    let total: u64 = entries.iter().map(|e| e.size).sum();
    tracing::info!(
        "keeping the site release: {} of {} files are new",
        missing.len(),
        entries.len()
    );
    futures::stream::iter(missing)
        .map(|e| async move {
            let bytes = tokio::fs::read(&e.path)
                .await
                .map_err(|err| super::io_error(&e.path, err))?;
            store
                .put_absent(&store.file_name(&e.hex), Bytes::from(bytes))
                .await
        })
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<()>>()
        .await?;
    Ok((Bytes::from(manifest), total))
}

/// The (path, hex) pairs of a manifest; a line that does not parse is an error.
fn parse(manifest: &[u8]) -> Result<Vec<(String, String)>> {
    let text = std::str::from_utf8(manifest)
        .map_err(|_| Error::failed("a kept site manifest is not UTF-8"))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (rel, hex) = line
                .split_once('\0')
                .ok_or_else(|| Error::failed("a kept site manifest has a malformed line"))?;
            Ok((rel.to_string(), hex.to_string()))
        })
        .collect()
}

/// The file hashes a manifest lists (for pruning; an unreadable manifest lists none).
pub(super) fn file_hexes(manifest: &[u8]) -> Vec<String> {
    parse(manifest)
        .map(|v| v.into_iter().map(|(_, h)| h).collect())
        .unwrap_or_default()
}

/// A manifest path as a relative path inside the folder, or an error: the manifest is
/// read from storage and must not write outside the folder.
fn safe_relative(rel: &str) -> Result<PathBuf> {
    let path = Path::new(rel);
    let ok = !rel.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(path.to_path_buf())
    } else {
        Err(Error::failed(format!(
            "a kept site manifest names the path {}, which is not inside the site",
            printable(rel)
        )))
    }
}

/// Write the files of `manifest` into `folder`, checking each file's hash.
pub(super) async fn fetch_files(store: &Releases, manifest: &[u8], folder: &Path) -> Result<()> {
    let entries = parse(manifest)?;
    let mut plan = Vec::new();
    for (rel, hex) in entries {
        plan.push((folder.join(safe_relative(&rel)?), hex));
    }
    tokio::fs::create_dir_all(folder)
        .await
        .map_err(|e| super::io_error(folder, e))?;
    futures::stream::iter(plan)
        .map(|(path, hex)| async move {
            let Some((bytes, _)) = store.get(&store.file_name(&hex)).await? else {
                return Err(Error::failed(format!(
                    "the release's file {} (sha256 {}) is missing from the releases container",
                    path.display(),
                    super::short(&hex)
                ))
                .hint("the release cannot be redeployed; choose another with --to"));
            };
            if self::hex(&Sha256::digest(&bytes)) != hex {
                return Err(Error::failed(format!(
                    "the kept file for {} does not match its digest (sha256 {})",
                    path.display(),
                    super::short(&hex)
                )));
            }
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| super::io_error(parent, e))?;
            }
            tokio::fs::write(&path, &bytes)
                .await
                .map_err(|e| super::io_error(&path, e))?;
            Ok(())
        })
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_hash_is_the_recorded_digest() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("a")).expect("mkdir");
        std::fs::write(d.path().join("a/x.js"), "x").expect("write");
        std::fs::write(d.path().join("index.html"), "<p>").expect("write");
        let entries = walk(d.path()).expect("walk");
        let manifest = manifest_of(&entries);
        assert_eq!(
            format!("sha256:{}", hex(&Sha256::digest(manifest.as_bytes()))),
            crate::deploy::digest(d.path()).expect("digest")
        );
        assert_eq!(parse(manifest.as_bytes()).expect("parse").len(), 2);
    }

    #[test]
    fn manifest_paths_stay_inside_the_folder() {
        assert!(safe_relative("a/b.html").is_ok());
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }
}
