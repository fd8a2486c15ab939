//! A `static-site` release: a manifest (`path NUL sha256 LF` per file, in the order
//! [`crate::deploy::digest`] walks the folder, so the manifest's own SHA-256 is the
//! artifact's digest) plus each file stored once under `<project>/files/<sha256>`.
//! Each file blob carries its Content-MD5, set when it is stored.
//!
//! Redeploying into a static site ([`fetch_needed`]) lists the release's files (their
//! MD5 and size) and `$web` (what it serves) at once, fetches only the files whose
//! content `$web` does not serve already (each checked against its SHA-256) into a
//! temporary folder, and hands it to the ordinary site sync with a baseline that leaves
//! the matching names alone: about two listings, N GETs and N PUTs for N differing
//! files. Every check (a file missing from the container, or not matching its digest)
//! happens before the sync starts, so a broken release never reaches `$web`.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use super::{PARALLEL, Releases, SiteTarget, hex_of};
use crate::deploy::static_site::{self, Baseline};
use crate::env_name::printable;
use crate::error::{Error, Result};

use crate::deploy::{
    FileDigest as Entry, SiteManifest, file_digests as walk, hex, manifest as manifest_of,
};

/// Store the files of `artifact` that are not stored yet; return the manifest and the
/// total size. Refuses when the manifest's hash is not `expected` (the folder changed
/// since its digest was taken).
///
/// `read`: the folder as the site sync read it (its digests); when it is the release
/// `expected` names, nothing is hashed again and only the files new to the container are
/// read, once each, to be stored. Without it the folder is walked and hashed here.
pub(super) async fn keep_files(
    store: &Releases,
    artifact: &Path,
    expected: &str,
    read: Option<&SiteManifest>,
) -> Result<(Bytes, u64)> {
    let walked;
    let entries: &[Entry] = match read.filter(|m| hex_of(&m.digest).as_deref() == Some(expected)) {
        Some(m) => &m.files,
        None => {
            let dir = artifact.to_path_buf();
            walked = tokio::task::spawn_blocking(move || walk(&dir))
                .await
                .map_err(|e| Error::failed(format!("reading the artifact stopped: {e}")))??;
            &walked
        }
    };
    let manifest = manifest_of(entries);
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
    // One permit per buffer of at most a block in memory, across all files.
    let buffers = Arc::new(Semaphore::new(PARALLEL));
    futures::stream::iter(missing)
        .map(|e| store.put_file(e, &buffers))
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

/// Fetch into `folder` only the files of `manifest` that `target`'s `$web` does not
/// serve already, and return the baseline that leaves the others alone.
pub(super) async fn fetch_needed(
    store: &Releases,
    manifest: &[u8],
    folder: &Path,
    target: &SiteTarget,
) -> Result<Baseline> {
    let entries = parse(manifest)?;
    for (rel, _) in &entries {
        safe_relative(rel)?;
    }
    let prefix = format!("{}/files/", store.project);
    let (kept, listing) = tokio::try_join!(
        store.list_flat(&prefix),
        static_site::listing(&target.account_url, &target.options)
    )?;
    // Hash -> (size, MD5 if the blob carries one).
    let kept: HashMap<String, (u64, Option<Vec<u8>>)> = kept
        .into_iter()
        .map(|l| (l.name[prefix.len()..].to_string(), (l.size, l.md5)))
        .collect();
    let cache_control = target.options.cache_control.as_deref();
    let mut keep = Vec::new();
    let mut fetch = Vec::new();
    for (rel, hex) in entries {
        let Some((size, md5)) = kept.get(&hex) else {
            return Err(missing(&rel, &hex));
        };
        match md5 {
            Some(md5) if listing.holds(&rel, *size, md5, cache_control) => keep.push(rel),
            _ => fetch.push((rel, hex)),
        }
    }
    tracing::info!(
        "release: {} files served already, fetching {}",
        keep.len(),
        fetch.len()
    );
    fetch_into(store, folder, fetch).await?;
    Ok(listing.keeping(keep))
}

fn missing(rel: &str, hex: &str) -> Error {
    Error::failed(format!(
        "the release's file {} (sha256 {}) is missing from the releases container",
        printable(rel),
        super::short(hex)
    ))
    .hint("the release cannot be redeployed; choose another with --to")
}

/// Write the files of `manifest` into `folder`, checking each file's hash.
pub(super) async fn fetch_files(store: &Releases, manifest: &[u8], folder: &Path) -> Result<()> {
    fetch_into(store, folder, parse(manifest)?).await
}

/// Fetch each `(path, hex)` of `plan` into its path under `folder` (created even when
/// the plan is empty), checking each file's hash.
async fn fetch_into(store: &Releases, folder: &Path, plan: Vec<(String, String)>) -> Result<()> {
    let plan = plan
        .into_iter()
        .map(|(rel, hex)| Ok((folder.join(safe_relative(&rel)?), rel, hex)))
        .collect::<Result<Vec<_>>>()?;
    tokio::fs::create_dir_all(folder)
        .await
        .map_err(|e| super::io_error(folder, e))?;
    futures::stream::iter(plan)
        .map(|(path, rel, hex)| async move {
            let Some((bytes, _)) = store.get(&store.file_name(&hex)).await? else {
                return Err(missing(&rel, &hex));
            };
            if self::hex(&Sha256::digest(&bytes)) != hex {
                return Err(Error::failed(format!(
                    "the kept file for {} does not match its digest (sha256 {}): the releases \
                     container holds other bytes under its name",
                    printable(&rel),
                    super::short(&hex)
                ))
                .hint("the release cannot be redeployed; choose another with --to"));
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
