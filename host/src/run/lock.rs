//! The run folder's lock: one trainer per folder.
//!
//! A trainer (a new start or `--resume`) holds an exclusive advisory lock (`flock(2)`) on
//! [`LOCK_FILE`] in the run folder for as long as it runs, and writes its process id into the
//! file. A second trainer on the same folder fails at once with
//! [`HostError::RunFolderInUse`], which names that pid. The kernel releases the lock when the
//! process ends, however it ends (`kill -9` included), so a lock is never left behind; the
//! file itself stays (an unlocked lock file means nothing).
//!
//! Readers (`acktr eval`, `export`, `plot`) take no lock: checkpoints and `config.json` are
//! replaced atomically, so a reader sees the last complete checkpoint of a run in progress.
//! On systems without `flock` (non-Unix) the file is written but not locked.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{HostError, Result};

/// The lock file's name inside a run folder.
pub const LOCK_FILE: &str = ".acktr.lock";

/// The held lock; released when dropped (and when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Lock the run folder `dir` (which must exist) for this process and write its pid into
    /// the lock file. Fails with [`HostError::RunFolderInUse`] when another process holds
    /// the lock, with [`HostError::Io`] when the lock file cannot be opened or locked.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| HostError::io(&path, e))?;
        #[cfg(unix)]
        {
            use rustix::fs::{flock, FlockOperation};
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    return Err(HostError::RunFolderInUse {
                        path: dir.to_path_buf(),
                        pid: text.lines().next().and_then(|l| l.trim().parse().ok()),
                    });
                }
                Err(e) => return Err(HostError::io(&path, e.into())),
            }
        }
        // The pid first, then the length: a reader never sees an empty file after the first
        // holder, at worst a stale pid's tail on a second line (only the first is read).
        let pid = format!("{}\n", std::process::id());
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .and_then(|_| file.set_len(pid.len() as u64))
            .map_err(|e| HostError::io(&path, e))?;
        Ok(RunLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
