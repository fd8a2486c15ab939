//! The local-folder state store (`.nubes/state`), for trying nubes without Azure.
//!
//! Same guarantees as the Azure store, with local means: the lock is an OS file lock on
//! `<key>.lock` (released by the kernel if the process dies, so it can never go stale)
//! whose content is the lock info; writes go to a temporary file renamed into place,
//! conditional on the content hash read earlier; previous versions are kept in
//! `<key>.history/`; `delete` leaves `<key>.tombstone.<UTC time>`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use md5::{Digest, Md5};

use super::azure::TOMBSTONE_INFIX;
use super::{
    Attempt, Holder, LockInfo, LockToken, StateHead, StateStore, Stored, Version, WriteConflict,
    meta,
};
use crate::env_name::EnvName;
use crate::error::{Error, Result};

pub struct LocalStore {
    root: PathBuf,
    key_template: String,
    history: usize,
    held: Mutex<HashMap<String, File>>,
}

impl LocalStore {
    pub fn new(root: PathBuf, key_template: String, history: usize) -> Self {
        LocalStore {
            root,
            key_template,
            history,
            held: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, env: &EnvName) -> String {
        self.key_template.replace("{env}", env.as_str())
    }

    fn state_path(&self, env: &EnvName) -> PathBuf {
        self.root.join(self.key(env))
    }

    fn sibling(&self, env: &EnvName, suffix: &str) -> PathBuf {
        self.root.join(format!("{}{suffix}", self.key(env)))
    }

    fn open_lock_file(&self, env: &EnvName) -> Result<File> {
        let path = self.sibling(env, ".lock");
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir)?;
        }
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                Error::failed(format!("cannot open the lock file {}: {e}", path.display()))
            })
    }

    fn read_info(file: &mut File) -> Option<LockInfo> {
        let mut text = String::new();
        file.rewind().ok()?;
        file.read_to_string(&mut text).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn held_file(&self, token: &LockToken) -> Result<File> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(token.env.as_str())
            .and_then(|f| f.try_clone().ok())
            .ok_or_else(|| {
                Error::failed(format!("nubes does not hold the lock on `{}`", token.env))
            })
    }

    fn current(&self, env: &EnvName) -> Result<Option<Stored>> {
        let path = self.state_path(env);
        match fs_err::read(&path) {
            Ok(bytes) if bytes.is_empty() => Ok(None),
            Ok(bytes) => Ok(Some(Stored {
                etag: etag(&bytes),
                bytes: Bytes::from(bytes),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::failed(format!(
                "cannot read the state of `{env}`: {e}"
            ))),
        }
    }

    fn history_dir(&self, env: &EnvName) -> PathBuf {
        self.sibling(env, ".history")
    }

    /// After a commit: record what nubes wrote, so a later write by anyone else shows
    /// (`changed_outside`).
    async fn committed(
        &self,
        token: &LockToken,
        md5: [u8; 16],
        head: &StateHead,
    ) -> Result<std::result::Result<String, WriteConflict>> {
        let md5_b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, md5);
        self.write_meta(token, &[(meta::WRITTEN_MD5, md5_b64)])
            .await?;
        tracing::debug!("wrote serial {} of `{}`", head.serial, token.env);
        Ok(Ok(hex(&md5)))
    }

    fn versions(&self, env: &EnvName) -> Result<Vec<(String, PathBuf)>> {
        let dir = self.history_dir(env);
        let mut out = Vec::new();
        match fs_err::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let path = entry?.path();
                    if let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                        && path.extension().is_some_and(|e| e == "tfstate")
                    {
                        out.push((stem.to_string(), path.clone()));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        out.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(out)
    }
}

/// Pieces of a streamed read.
const PIECE: usize = 256 << 10;

fn etag(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes).into())
}

fn hex(md5: &[u8; 16]) -> String {
    md5.iter().map(|b| format!("{b:02x}")).collect()
}

/// The MD5 and length of a file, read in pieces; `None` when it does not exist.
fn file_md5(path: &Path) -> Result<Option<([u8; 16], u64)>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::failed(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; PIECE];
    let mut len = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::failed(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok(Some((hasher.finalize().into(), len)))
}

/// Copy `from` to `to` through a temporary file renamed into place.
fn copy_atomic(from: &Path, to: &Path) -> Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| {
        Error::failed(format!(
            "cannot create a temporary file in {}: {e}",
            dir.display()
        ))
    })?;
    let mut source = fs_err::File::open(from)?;
    std::io::copy(&mut source, tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(to)
        .map_err(|e| Error::failed(format!("cannot write {}: {}", to.display(), e.error)))?;
    Ok(())
}

fn md5_b64(bytes: &[u8]) -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        Md5::digest(bytes),
    )
}

fn mtime(path: &Path) -> String {
    fs_err::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| {
            time::OffsetDateTime::from(t)
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "an unknown time".into())
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| {
        Error::failed(format!(
            "cannot create a temporary file in {}: {e}",
            dir.display()
        ))
    })?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| Error::failed(format!("cannot write {}: {}", path.display(), e.error)))?;
    Ok(())
}

#[async_trait]
impl StateStore for LocalStore {
    fn location(&self, env: &EnvName) -> String {
        self.state_path(env).display().to_string()
    }

    fn lock_path(&self, env: &EnvName) -> String {
        self.location(env)
    }

    fn renew_every(&self) -> Option<Duration> {
        None
    }

    async fn try_lock(&self, env: &EnvName, info: &LockInfo) -> Result<Attempt> {
        let mut file = self.open_lock_file(env)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0)?;
                file.rewind()?;
                file.write_all(&serde_json::to_vec(info).unwrap_or_default())?;
                file.sync_data()?;
                self.held
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(env.to_string(), file);
                Ok(Attempt::Acquired(LockToken {
                    env: env.clone(),
                    lease_id: info.id.clone(),
                    info: info.clone(),
                }))
            }
            Err(TryLockError::WouldBlock) => Ok(Attempt::Held(Holder {
                info: Self::read_info(&mut file),
                infinite: false,
            })),
            Err(TryLockError::Error(e)) => Err(Error::failed(format!("cannot lock `{env}`: {e}"))),
        }
    }

    async fn renew(&self, _token: &LockToken) -> Result<bool> {
        Ok(true)
    }

    async fn unlock(&self, token: &LockToken) -> Result<()> {
        let file = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token.env.as_str());
        if let Some(file) = file {
            file.set_len(0)?;
            file.unlock()?;
        }
        Ok(())
    }

    async fn holder(&self, env: &EnvName) -> Result<Option<Holder>> {
        if !self.sibling(env, ".lock").exists() {
            return Ok(None);
        }
        let mut file = self.open_lock_file(env)?;
        match file.try_lock() {
            Ok(()) => {
                file.unlock()?;
                Ok(None)
            }
            Err(TryLockError::WouldBlock) => Ok(Some(Holder {
                info: Self::read_info(&mut file),
                infinite: false,
            })),
            Err(TryLockError::Error(e)) => Err(Error::failed(format!(
                "cannot read the lock of `{env}`: {e}"
            ))),
        }
    }

    async fn break_lock(&self, env: &EnvName, _by: &LockInfo) -> Result<Option<Holder>> {
        match self.holder(env).await? {
            None => Ok(None),
            Some(h) => Err(Error::input(format!(
                "the local lock on `{env}` is held by a running process ({})",
                h.describe()
            ))
            .hint("local locks are released by the operating system when their process ends: stop that process instead")),
        }
    }

    async fn read(&self, env: &EnvName) -> Result<Option<Stored>> {
        self.current(env)
    }

    async fn read_stream(&self, env: &EnvName) -> Result<Option<super::StoredStream>> {
        let path = self.state_path(env);
        let Some((md5, len)) = file_md5(&path)? else {
            return Ok(None);
        };
        if len == 0 {
            return Ok(None);
        }
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Error::failed(format!("cannot read the state of `{env}`: {e}")))?;
        let doing = format!("cannot read the state of `{env}`");
        let body = futures::stream::try_unfold(file, move |mut file| {
            let doing = doing.clone();
            async move {
                use tokio::io::AsyncReadExt as _;
                let mut buf = bytes::BytesMut::with_capacity(PIECE);
                match file.read_buf(&mut buf).await {
                    Ok(0) => Ok(None),
                    Ok(_) => Ok(Some((buf.freeze(), file))),
                    Err(e) => Err(Error::failed(format!("{doing}: {e}"))),
                }
            }
        });
        Ok(Some(super::StoredStream {
            etag: hex(&md5),
            len,
            head: None,
            body: Box::pin(body),
        }))
    }

    async fn stage(
        &self,
        token: &LockToken,
        body: &mut dyn super::Body,
        _hint: &super::BodyHint,
    ) -> Result<std::result::Result<super::Staged, WriteConflict>> {
        use tokio::io::AsyncWriteExt as _;
        self.held_file(token)?; // still ours
        let path = self.state_path(&token.env);
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        fs_err::create_dir_all(&dir)?;
        let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| {
            Error::failed(format!(
                "cannot create a temporary file in {}: {e}",
                dir.display()
            ))
        })?;
        let (file, tmp) = tmp.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let written =
            |e: std::io::Error| Error::failed(format!("cannot write {}: {e}", tmp.display()));
        let mut len = 0u64;
        while let Some(piece) = body.next_piece().await? {
            file.write_all(&piece).await.map_err(written)?;
            len += piece.len() as u64;
        }
        file.sync_all().await.map_err(written)?;
        Ok(Ok(super::Staged {
            len,
            kind: super::StagedKind::File(tmp),
        }))
    }

    async fn commit(
        &self,
        token: &LockToken,
        staged: super::Staged,
        expected: Option<&str>,
        head: &StateHead,
        md5: [u8; 16],
    ) -> Result<std::result::Result<String, WriteConflict>> {
        let env = &token.env;
        self.held_file(token)?; // still ours
        let path = self.state_path(env);
        let current = file_md5(&path)?.filter(|(_, len)| *len > 0);
        if current.map(|(m, _)| hex(&m)).as_deref() != expected {
            return Ok(Err(WriteConflict::Changed));
        }
        if current.is_some() {
            // The previous version, copied (not read into memory) into the history.
            let serial = fs_err::File::open(&path)
                .ok()
                .and_then(|f| StateHead::parse_reader(f).ok())
                .map(|h| h.serial)
                .unwrap_or(0);
            let name = format!("{:020}-s{serial}.tfstate", nanos());
            copy_atomic(&path, &self.history_dir(env).join(name))?;
            for (_, old) in self.versions(env)?.into_iter().skip(self.history) {
                let _ = fs_err::remove_file(old);
            }
        }
        let super::StagedKind::File(tmp) = staged.kind else {
            let super::StagedKind::Memory(bytes) = staged.kind else {
                return Err(Error::failed(
                    "a document staged by another store cannot be committed to a local folder",
                ));
            };
            write_atomic(&path, &bytes)?;
            return self.committed(token, md5, head).await;
        };
        tmp.persist(&path)
            .map_err(|e| Error::failed(format!("cannot write {}: {}", path.display(), e.error)))?;
        self.committed(token, md5, head).await
    }

    async fn delete(&self, token: &LockToken) -> Result<Option<String>> {
        let env = &token.env;
        let Some(current) = self.current(env)? else {
            let _ = fs_err::remove_file(self.state_path(env));
            return Ok(None);
        };
        let now = time::OffsetDateTime::now_utc();
        let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let name = format!(
            "{}{TOMBSTONE_INFIX}{}",
            self.key(env),
            now.format(&f).unwrap_or_default()
        );
        write_atomic(&self.root.join(&name), &current.bytes)?;
        fs_err::remove_file(self.state_path(env))?;
        let _ = fs_err::remove_dir_all(self.history_dir(env));
        let _ = fs_err::remove_file(self.sibling(env, ".meta.json"));
        Ok(Some(name))
    }

    async fn read_meta(
        &self,
        env: &EnvName,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>> {
        if self.current(env)?.is_none() {
            return Ok(None);
        }
        match fs_err::read(self.sibling(env, ".meta.json")) {
            Ok(bytes) => Ok(Some(meta::normalise(
                serde_json::from_slice::<std::collections::BTreeMap<String, String>>(&bytes)
                    .unwrap_or_default(),
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(Default::default())),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_meta(&self, token: &LockToken, entries: &[(&str, String)]) -> Result<()> {
        self.held_file(token)?;
        let mut meta = self.read_meta(&token.env).await?.unwrap_or_default();
        super::meta::merge(&mut meta, entries);
        write_atomic(
            &self.sibling(&token.env, ".meta.json"),
            &serde_json::to_vec_pretty(&meta).unwrap_or_default(),
        )
    }

    async fn list(&self) -> Result<Vec<super::Listed>> {
        let mut out = Vec::new();
        let mut locks = Vec::new();
        let entries = match fs_err::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !entry.file_type()?.is_file() || name.ends_with(".meta.json") {
                continue;
            }
            if let Some(state_name) = name.strip_suffix(".lock") {
                locks.push(state_name.to_string());
                continue;
            }
            let (state_name, tombstone) = match name.split_once(TOMBSTONE_INFIX) {
                Some((base, _)) => (base.to_string(), true),
                None => (name.clone(), false),
            };
            let Some(env) = super::env_of(&self.key_template, &state_name, "") else {
                continue;
            };
            let fs_meta = entry.metadata()?;
            let size = fs_meta.len();
            let last_modified = fs_meta.modified().ok().map(time::OffsetDateTime::from);
            let created = fs_meta.created().ok().map(time::OffsetDateTime::from);
            if size == 0 && !tombstone && self.holder(&env).await?.is_none() {
                continue;
            }
            let (metadata, holder, changed_outside) = if tombstone {
                (Default::default(), None, None)
            } else {
                let changed_outside = self.changed_outside(&env).await?;
                let mut meta = self.read_meta(&env).await?.unwrap_or_default();
                // The Azure store keeps these in blob metadata; here the file is at hand.
                if let Some(Ok(head)) = self.current(&env)?.map(|s| StateHead::parse(&s.bytes)) {
                    meta.insert(super::azure::META_SERIAL.into(), head.serial.to_string());
                    meta.insert(
                        super::azure::META_RESOURCES.into(),
                        head.resources.to_string(),
                    );
                }
                (meta, self.holder(&env).await?, changed_outside)
            };
            out.push(super::Listed {
                env: Some(env),
                name,
                tombstone,
                size,
                metadata,
                last_modified,
                created,
                holder,
                changed_outside,
                versions: None,
            });
        }
        // An environment whose first `up` is running has a held lock and no state file
        // yet: listed (empty, with its holder), as the Azure store lists its empty
        // leased blob, so `list` shows it being created.
        for state_name in locks {
            let Some(env) = super::env_of(&self.key_template, &state_name, "") else {
                continue;
            };
            if out
                .iter()
                .any(|l| !l.tombstone && l.env.as_ref() == Some(&env))
            {
                continue;
            }
            let Some(holder) = self.holder(&env).await? else {
                continue;
            };
            let since = fs_err::metadata(self.sibling(&env, ".lock"))
                .ok()
                .and_then(|m| m.modified().ok())
                .map(time::OffsetDateTime::from);
            out.push(super::Listed {
                env: Some(env),
                name: state_name,
                tombstone: false,
                size: 0,
                metadata: Default::default(),
                last_modified: since,
                created: since,
                holder: Some(holder),
                changed_outside: None,
                versions: None,
            });
        }
        Ok(out)
    }

    async fn list_with_versions(&self) -> Result<Vec<super::Listed>> {
        let mut out = self.list().await?;
        for l in &mut out {
            if let (Some(env), false) = (&l.env, l.tombstone) {
                l.versions = Some(self.versions(env)?.len());
            }
        }
        Ok(out)
    }

    async fn history(&self, env: &EnvName) -> Result<Vec<Version>> {
        let mut out = Vec::new();
        for (id, path) in self.versions(env)? {
            let meta = fs_err::metadata(&path)?;
            // Labels from the content itself (a local file is cheap to read); for an
            // unreadable one, the serial nubes put in the file name when it kept it.
            let head = StateHead::parse(&fs_err::read(&path)?).ok();
            let named = id.rsplit_once("-s").and_then(|(_, s)| s.parse().ok());
            let saved_at = id
                .split_once('-')
                .and_then(|(n, _)| n.parse::<i128>().ok())
                .and_then(|n| time::OffsetDateTime::from_unix_timestamp_nanos(n).ok())
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            out.push(Version {
                id,
                serial: head.as_ref().map(|h| h.serial).or(named),
                lineage: head.map(|h| h.lineage),
                saved_at,
                size: meta.len(),
            });
        }
        Ok(out)
    }

    async fn changed_outside(&self, env: &EnvName) -> Result<Option<String>> {
        let Some(current) = self.current(env)? else {
            return Ok(None);
        };
        // Local metadata never held a serial: a state without the record was written by
        // an older nubes, not judged.
        let meta = self.read_meta(env).await?.unwrap_or_default();
        let changed = meta
            .get(meta::WRITTEN_MD5)
            .is_some_and(|w| *w != md5_b64(&current.bytes));
        Ok(changed.then(|| mtime(&self.state_path(env))))
    }

    async fn read_version(&self, env: &EnvName, id: &str) -> Result<Bytes> {
        let bad = || {
            Error::input(format!(
                "environment `{env}` has no kept version `{}`",
                crate::env_name::printable(id)
            ))
            .hint(format!(
                "list the versions with `nubes state history {env}`"
            ))
        };
        if id.is_empty() || id.contains(['/', '\\']) || id.contains("..") {
            return Err(bad());
        }
        match fs_err::read(self.history_dir(env).join(format!("{id}.tfstate"))) {
            Ok(b) => Ok(Bytes::from(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(bad()),
            Err(e) => Err(e.into()),
        }
    }
}
