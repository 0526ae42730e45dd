//! Where a run's server lives on disk, and the lock that makes it one per manifest.
//!
//! For a manifest, in its workdir: `run/<stem>-<key>.lock` (an advisory `flock` held for the
//! server's whole life; it holds a [`ServerInfo`] as JSON) and `run/<stem>-<key>.sock` (the Unix
//! socket, mode 0600), where `<key>` is a hash of the manifest's absolute path; the server's log is
//! `logs/server.log`. A socket path longer than a Unix socket address allows (about 100 bytes)
//! goes to the runtime directory instead. Every live server also has an entry
//! `servers/<key>.json` in the runtime directory (`$SWITCHYARD_RUNTIME_DIR`, else
//! `$XDG_RUNTIME_DIR/switchyard`, else `/tmp/switchyard-<uid>`; mode 0700), which `ls` and
//! `attach` without a manifest read.
//!
//! The kernel drops a `flock` when its process dies, so a killed server can never leave the
//! lock held: a lock file nobody holds, or a socket nobody answers, is stale and is replaced.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What a live server says about itself (the lock file's and the registry entry's content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// The server's process id.
    pub pid: u32,
    /// The manifest it runs (absolute).
    pub manifest: PathBuf,
    /// Its socket.
    pub socket: PathBuf,
    /// When it started, Unix ms.
    pub started_ms: u64,
    /// switchyard version of the server.
    pub version: String,
}

/// The files of one manifest's server.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    /// The manifest (absolute).
    pub manifest: PathBuf,
    /// The lock file.
    pub lock: PathBuf,
    /// The socket.
    pub socket: PathBuf,
    /// The server's log (`<workdir>/logs/server.log`).
    pub log: PathBuf,
    /// The registry entry in the runtime directory.
    pub registry: PathBuf,
}

/// Errors finding or taking the lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live server holds it.
    #[error("a server for {manifest} already runs (pid {pid}); `switchyard attach {manifest}` opens it, `switchyard stop {manifest}` ends it")]
    Held {
        /// Its pid (0 when the lock file could not be read).
        pid: u32,
        /// The manifest.
        manifest: String,
    },
    /// The lock file or its directory could not be made.
    #[error("cannot use the lock file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Longest socket path used in the workdir, bytes (`sun_path` holds 108 with its NUL).
const MAX_SOCKET_PATH: usize = 100;

impl ServerFiles {
    /// The files for the manifest at `manifest` (absolute) with this workdir.
    pub fn new(manifest: &Path, workdir: &Path) -> ServerFiles {
        let key = key_of(manifest);
        let stem = manifest
            .file_stem()
            .map(|s| s.to_string_lossy().chars().take(40).collect::<String>())
            .unwrap_or_else(|| "manifest".into());
        let run = workdir.join("run");
        let mut socket = run.join(format!("{stem}-{key}.sock"));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            socket = runtime_dir().join(format!("{key}.sock"));
        }
        ServerFiles {
            manifest: manifest.to_path_buf(),
            lock: run.join(format!("{stem}-{key}.lock")),
            socket,
            log: workdir.join("logs").join("server.log"),
            registry: runtime_dir().join("servers").join(format!("{key}.json")),
        }
    }

    /// Takes the lock for this process, or says who holds it. The lock file then holds `info`.
    pub fn acquire(&self, info: &ServerInfo) -> Result<ServerLock, LockError> {
        let io = |source| LockError::Io {
            path: self.lock.clone(),
            source,
        };
        if let Some(dir) = self.lock.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock)
            .map_err(io)?;
        if file.try_lock().is_err() {
            let pid = read_info(&mut file).map_or(0, |i| i.pid);
            return Err(LockError::Held {
                pid,
                manifest: self.manifest.display().to_string(),
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        let text = serde_json::to_string(info).expect("server info serializes");
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(ServerLock { _file: file })
    }

    /// What is there now: a live server, the remains of a dead one, or nothing.
    pub fn probe(&self) -> Probe {
        let Ok(mut file) = OpenOptions::new().read(true).write(true).open(&self.lock) else {
            return if self.socket.exists() {
                Probe::Stale(None)
            } else {
                Probe::None
            };
        };
        let info = read_info(&mut file);
        if file.try_lock().is_err() {
            return match info {
                Some(i) => Probe::Live(i),
                // Locked but not written yet: a server is starting.
                None => Probe::Starting,
            };
        }
        let _ = file.unlock();
        if info.is_some() || self.socket.exists() {
            Probe::Stale(info)
        } else {
            Probe::None
        }
    }

    /// Writes the registry entry for `ls` (best effort).
    pub fn register(&self, info: &ServerInfo) {
        if let Some(dir) = self.registry.parent() {
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir);
        }
        let _ = std::fs::write(
            &self.registry,
            serde_json::to_string(info).expect("server info serializes"),
        );
    }

    /// Removes the socket and the registry entry (at the server's end, or of a stale server).
    pub fn remove_remains(&self) {
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.registry);
    }
}

/// What [`ServerFiles::probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A server holds the lock.
    Live(ServerInfo),
    /// A server holds the lock but has not written its info yet.
    Starting,
    /// Nobody holds the lock but a dead server's info or socket is left.
    Stale(Option<ServerInfo>),
    /// No server ran here (or it cleaned up).
    None,
}

/// The held lock; dropping it (or the process dying) releases it. A clean drop also empties
/// the lock file, so the next start finds nothing stale.
#[derive(Debug)]
pub struct ServerLock {
    _file: File,
}

impl Drop for ServerLock {
    fn drop(&mut self) {
        let _ = self._file.set_len(0);
        // Unlock before the close: a process forked at this moment (the server starts workers
        // all the time) shares the open file until its exec, and closing our descriptor alone
        // would leave the lock held by it until then.
        let _ = self._file.unlock();
    }
}

fn read_info(file: &mut File) -> Option<ServerInfo> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// The registry entries of every server that registered (live or not; check with
/// [`ServerFiles::probe`]).
pub fn registered() -> Vec<ServerInfo> {
    let Ok(dir) = std::fs::read_dir(runtime_dir().join("servers")) else {
        return Vec::new();
    };
    let mut out: Vec<ServerInfo> = dir
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect();
    out.sort_by(|a, b| a.manifest.cmp(&b.manifest));
    out
}

/// The per-user runtime directory (see the module docs), created with mode 0700.
pub fn runtime_dir() -> PathBuf {
    let dir = if let Some(d) = std::env::var_os("SWITCHYARD_RUNTIME_DIR") {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        PathBuf::from(d).join("switchyard")
    } else {
        // SAFETY: getuid(2) cannot fail and touches no memory.
        let uid = unsafe { libc::getuid() };
        std::env::temp_dir().join(format!("switchyard-{uid}"))
    };
    if !dir.exists() {
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir);
    }
    dir
}

/// Makes the socket at `path` owner-only (0600).
pub fn restrict_socket(path: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// A short stable key for a path: 12 hex digits of its 64-bit FNV-1a hash.
pub fn key_of(path: &Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:012x}", h >> 16)
}

/// True when a process with this pid exists (signal 0).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks the process exists; no memory is touched.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(files: &ServerFiles) -> ServerInfo {
        ServerInfo {
            pid: std::process::id(),
            manifest: files.manifest.clone(),
            socket: files.socket.clone(),
            started_ms: 1,
            version: "test".into(),
        }
    }

    #[test]
    fn one_lock_per_manifest_and_a_dropped_lock_is_stale_not_held() {
        let dir = tempfile::tempdir().unwrap();
        let files = ServerFiles::new(&dir.path().join("m.json"), dir.path());
        assert_eq!(files.probe(), Probe::None);
        let lock = files.acquire(&info(&files)).unwrap();
        assert_eq!(files.probe(), Probe::Live(info(&files)));
        // flock locks belong to the open file: a second open of the same file cannot take it.
        let err = files.acquire(&info(&files)).unwrap_err().to_string();
        assert!(
            err.contains("already runs") && err.contains("switchyard stop"),
            "{err}"
        );
        drop(lock);
        assert_eq!(
            files.probe(),
            Probe::None,
            "a clean end leaves nothing stale"
        );
        // A server killed outright leaves its info in a lock nobody holds: stale.
        std::fs::write(&files.lock, serde_json::to_string(&info(&files)).unwrap()).unwrap();
        assert_eq!(files.probe(), Probe::Stale(Some(info(&files))));
        let again = files.acquire(&info(&files));
        assert!(again.is_ok());
    }

    #[test]
    fn a_dropped_lock_is_free_while_another_descriptor_shares_its_open_file() {
        // What a worker forked at the moment of the drop holds until its exec: the same open
        // file description (a duplicate descriptor).
        let dir = tempfile::tempdir().unwrap();
        let files = ServerFiles::new(&dir.path().join("m.json"), dir.path());
        let lock = files.acquire(&info(&files)).unwrap();
        let shared = lock._file.try_clone().unwrap();
        drop(lock);
        assert_eq!(
            files.probe(),
            Probe::None,
            "released, not held by the duplicate"
        );
        assert!(files.acquire(&info(&files)).is_ok());
        drop(shared);
    }

    #[test]
    fn sockets_stay_short_enough_to_bind() {
        let long = PathBuf::from(format!("/tmp/{}", "d".repeat(120)));
        let files = ServerFiles::new(&long.join("run.json"), &long);
        assert!(files.socket.as_os_str().len() <= MAX_SOCKET_PATH + 40);
        assert!(!files.socket.starts_with(&long));
        assert_eq!(
            key_of(Path::new("/a/b.json")),
            key_of(Path::new("/a/b.json"))
        );
        assert_ne!(
            key_of(Path::new("/a/b.json")),
            key_of(Path::new("/a/c.json"))
        );
    }
}
