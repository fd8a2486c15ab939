//! Packaging the artifact for Kudu: a folder zipped deterministically (sorted entries,
//! fixed timestamps, unix permissions kept, `.nubesignore` applied), or an archive
//! (`.zip`, `.jar`, `.war`, `.ear`) checked and sent as is.

use std::io::{Cursor, Write as _};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{Error, Result};

/// The ignore file, gitignore syntax, read from the artifact folder's root.
pub const IGNORE_FILE: &str = ".nubesignore";

/// The body to upload: a folder zipped, or an archive read as is.
pub(super) async fn package(artifact: &Path) -> Result<Bytes> {
    let path = artifact.to_path_buf();
    let zipped = tokio::task::spawn_blocking(move || package_blocking(&path))
        .await
        .map_err(|e| Error::failed(format!("zipping the artifact stopped: {e}")))??;
    Ok(Bytes::from(zipped))
}

fn package_blocking(artifact: &Path) -> Result<Vec<u8>> {
    let meta = fs_err::metadata(artifact).map_err(|e| {
        Error::input(format!("the artifact to deploy cannot be read: {e}"))
            .hint("build the app first, or set [build] artifact in nubes.toml")
    })?;
    if meta.is_dir() {
        return zip_folder(artifact);
    }
    let extension = artifact
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(extension.as_deref(), Some("zip" | "jar" | "war" | "ear")) {
        return Err(Error::input(format!(
            "the artifact {} is neither a folder nor a .zip, .jar, .war or .ear file",
            artifact.display()
        )));
    }
    let bytes = fs_err::read(artifact)?;
    if !bytes.starts_with(b"PK") {
        return Err(Error::input(format!(
            "the artifact {} is not a zip archive",
            artifact.display()
        )));
    }
    Ok(bytes)
}

/// Zip a folder for Kudu: entries in a fixed (sorted) order with a fixed timestamp, so
/// the same files give the same bytes; unix permissions kept; `.nubesignore` (gitignore
/// syntax, in `dir`) applied, and itself left out. Symbolic links are followed.
pub fn zip_folder(dir: &Path) -> Result<Vec<u8>> {
    let ignore = ignore_rules(dir)?;
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let base = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .min_depth(1)
        .into_iter()
        .filter_entry(|entry| {
            let Ok(relative) = entry.path().strip_prefix(dir) else {
                return false;
            };
            let is_dir = entry.file_type().is_dir();
            let own_rules = !is_dir && relative == Path::new(IGNORE_FILE);
            !own_rules && !ignore.matched(relative, is_dir).is_ignore()
        });
    let zip_error = |path: &Path, e: zip::result::ZipError| {
        Error::failed(format!("zipping {}: {e}", path.display()))
    };
    for entry in walk {
        let entry = entry.map_err(|e| {
            Error::failed(format!(
                "reading the artifact folder {}: {e}",
                dir.display()
            ))
        })?;
        let path = entry.path();
        let name = entry_name(dir, path)?;
        let meta = entry
            .metadata()
            .map_err(|e| Error::failed(format!("reading {}: {e}", path.display())))?;
        let options = base
            .unix_permissions(mode(&meta))
            .large_file(meta.len() >= u64::from(u32::MAX));
        if meta.is_dir() {
            zip.add_directory(format!("{name}/"), options)
                .map_err(|e| zip_error(path, e))?;
        } else {
            zip.start_file(name, options)
                .map_err(|e| zip_error(path, e))?;
            let mut file = fs_err::File::open(path)?;
            std::io::copy(&mut file, &mut zip)?;
        }
    }
    zip.flush()?;
    let cursor = zip.finish().map_err(|e| zip_error(dir, e))?;
    Ok(cursor.into_inner())
}

/// The rules of `<dir>/.nubesignore`, or none.
fn ignore_rules(dir: &Path) -> Result<Gitignore> {
    let file = dir.join(IGNORE_FILE);
    let mut builder = GitignoreBuilder::new(dir);
    if file.is_file()
        && let Some(e) = builder.add(&file)
    {
        return Err(Error::input(format!("{}: {e}", file.display())));
    }
    builder
        .build()
        .map_err(|e| Error::input(format!("{}: {e}", file.display())))
}

/// The zip entry name: the path below `dir`, '/'-separated.
fn entry_name(dir: &Path, path: &Path) -> Result<String> {
    let relative: PathBuf = path
        .strip_prefix(dir)
        .map_err(|_| Error::failed(format!("{} is outside the artifact", path.display())))?
        .to_path_buf();
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect();
    parts.map(|p| p.join("/")).ok_or_else(|| {
        Error::input(format!(
            "{} has a name that is not UTF-8, which a zip for Kudu cannot carry",
            path.display()
        ))
    })
}

#[cfg(unix)]
fn mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn mode(meta: &std::fs::Metadata) -> u32 {
    if meta.is_dir() { 0o755 } else { 0o644 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::time::Duration;

    fn write(dir: &Path, relative: &str, content: &str) {
        let path = dir.join(relative);
        fs_err::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs_err::write(path, content).expect("write");
    }

    fn names(zip: &[u8]) -> Vec<String> {
        let archive = zip::ZipArchive::new(Cursor::new(zip)).expect("zip");
        archive
            .file_names()
            .map(|n| n.expect("name").to_string())
            .collect()
    }

    fn sample(dir: &Path) {
        write(dir, "index.js", "console.log('hi')");
        write(dir, "package.json", "{}");
        write(dir, "lib/util.js", "module.exports = 1");
        write(dir, "lib/debug.log", "noise");
        write(dir, "node_modules/left-pad/index.js", "x");
        write(dir, "logs/keep.log", "kept by negation");
        write(dir, "b/z.txt", "z");
        write(dir, "a.txt", "a");
        write(
            dir,
            IGNORE_FILE,
            "# build leftovers\nnode_modules/\n*.log\n!logs/keep.log\n",
        );
    }

    #[test]
    fn nubesignore_is_applied_and_left_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        sample(dir.path());
        let zip = zip_folder(dir.path()).expect("zip");
        let files: Vec<String> = names(&zip)
            .into_iter()
            .filter(|n| !n.ends_with('/'))
            .collect();
        assert_eq!(
            files,
            [
                "a.txt",
                "b/z.txt",
                "index.js",
                "lib/util.js",
                "logs/keep.log",
                "package.json"
            ]
        );
        let mut archive = zip::ZipArchive::new(Cursor::new(&zip)).expect("zip");
        let mut content = String::new();
        archive
            .by_name("lib/util.js")
            .expect("entry")
            .read_to_string(&mut content)
            .expect("read");
        assert_eq!(content, "module.exports = 1");
    }

    #[test]
    fn without_nubesignore_everything_is_zipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "node_modules/x.js", "x");
        write(dir.path(), "a.log", "a");
        let files = names(&zip_folder(dir.path()).expect("zip"));
        assert_eq!(files, ["a.log", "node_modules/", "node_modules/x.js"]);
    }

    #[test]
    fn zips_are_deterministic() {
        let one = tempfile::tempdir().expect("tempdir");
        let two = tempfile::tempdir().expect("tempdir");
        sample(one.path());
        // The same files written in another order, later.
        write(two.path(), "a.txt", "a");
        std::thread::sleep(Duration::from_millis(1100));
        sample(two.path());
        let first = zip_folder(one.path()).expect("zip");
        assert_eq!(first, zip_folder(one.path()).expect("zip again"));
        assert_eq!(first, zip_folder(two.path()).expect("zip of the copy"));
    }

    #[cfg(unix)]
    #[test]
    fn unix_permissions_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "run.sh", "#!/bin/sh\n");
        write(dir.path(), "data.txt", "d");
        fs_err::set_permissions(
            dir.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        fs_err::set_permissions(
            dir.path().join("data.txt"),
            std::fs::Permissions::from_mode(0o640),
        )
        .expect("chmod");
        let zip = zip_folder(dir.path()).expect("zip");
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).expect("zip");
        let mode = |archive: &mut zip::ZipArchive<_>, name: &str| {
            archive
                .by_name(name)
                .expect("entry")
                .unix_mode()
                .expect("mode")
                & 0o7777
        };
        assert_eq!(mode(&mut archive, "run.sh"), 0o755);
        assert_eq!(mode(&mut archive, "data.txt"), 0o640);
    }

    #[test]
    fn archives_are_used_as_is_and_other_files_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "src/a.txt", "a");
        let zip = zip_folder(&dir.path().join("src")).expect("zip");
        let jar = dir.path().join("app.JAR");
        fs_err::write(&jar, &zip).expect("write");
        assert_eq!(package_blocking(&jar).expect("jar"), zip);
        let fake = dir.path().join("fake.zip");
        fs_err::write(&fake, "not a zip").expect("write");
        assert_eq!(package_blocking(&fake).expect_err("fake").exit_code(), 2);
        let text = dir.path().join("app.txt");
        fs_err::write(&text, "x").expect("write");
        assert_eq!(package_blocking(&text).expect_err("txt").exit_code(), 2);
        let missing = dir.path().join("missing");
        assert_eq!(
            package_blocking(&missing).expect_err("missing").exit_code(),
            2
        );
    }
}
