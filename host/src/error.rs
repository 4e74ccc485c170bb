//! The host crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `acktr-host`. The CLI prints these with their cause chain
/// and exits non-zero; nothing here panics on user input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// An error from the core (update, environment, policy file). Transparent: the core's
    /// message is printed once, not again as its own cause.
    #[error(transparent)]
    Core(#[from] acktr_core::Error),
    /// The environment id is not known to any enabled environment source.
    #[error("unknown environment `{id}`; built in: {known}")]
    UnknownEnv {
        /// What was asked for.
        id: String,
        /// What exists, comma separated.
        known: String,
    },
    /// A setting that cannot work (sizes, counts, combinations).
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    /// The environment's spaces cannot be handled by the policy heads.
    #[error("unsupported space: {0}")]
    UnsupportedSpace(String),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A file that exists but cannot be used (checkpoint, config, CSV).
    #[error("{path}: {reason}")]
    BadFile {
        /// Which file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Training produced NaN or ±∞.
    #[error("non-finite {what} at update {update}; last checkpoint left intact")]
    NonFinite {
        /// Which quantity.
        what: &'static str,
        /// Which update.
        update: u64,
    },
    /// Another process holds the run folder's lock (see [`crate::run::lock`]): a second
    /// trainer on one folder would interleave its logs and checkpoints with the first's.
    #[error(
        "run folder {} is in use by another acktr process ({}); wait for it to end or stop it, \
         or choose another --out",
        path.display(),
        pid.map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}"))
    )]
    RunFolderInUse {
        /// The run folder.
        path: PathBuf,
        /// The holder's process id, as it wrote it into the lock file.
        pid: Option<u32>,
    },
    /// A data-parallel run (`mpirun`) that cannot go on: a build without MPI, a resume with
    /// another number of ranks, a setting the ranks cannot share.
    #[error("data-parallel run: {0}")]
    Distributed(String),
    /// An error from the embedded Python (Gymnasium bridge).
    #[error("gymnasium: {0}")]
    Python(String),
    /// The work needs libtorch, which this process has not loaded (no
    /// [`crate::torch_hooks`] installed: the lean `acktr`). Returned before anything is
    /// written, so that the CLI can hand the whole command to `acktr-torch` instead.
    #[error("{0} needs libtorch, which only `acktr-torch` loads")]
    NeedsTorch(String),
}

impl HostError {
    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HostError::Io {
            path: path.into(),
            source,
        }
    }
}

/// `Result` with [`HostError`].
pub type Result<T, E = HostError> = std::result::Result<T, E>;
