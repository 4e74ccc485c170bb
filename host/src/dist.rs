//! Data-parallel training across processes (`mpirun -np N acktr train …`): which rank this
//! process is, and the engine behind acktr-core's [`Collective`] — MPI with the `mpi`
//! feature, else one process. See MPI-NOTES.md for the maths and the costs.

use std::time::{Duration, Instant};

use acktr_core::{Collective, Parts, SingleProcess};

use crate::error::{HostError, Result};

/// The ranks a launcher (Open MPI's `mpirun`, a PMI/PMIx launcher) says this process is one
/// of, from its environment; `None` when started on its own.
pub fn launcher_ranks() -> Option<u32> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
}

/// This process's place in a data-parallel run, and its collective engine (which counts the
/// time spent in it: waiting for the slowest rank included).
pub struct World {
    rank: u32,
    coll: Box<dyn Collective>,
    /// Time inside collective calls since the last [`World::take_busy`].
    busy: Duration,
    /// Bytes handed to collective calls (per rank) since the last [`World::take_busy`].
    bytes: u64,
    #[cfg(feature = "mpi")]
    mpi: Option<(
        mpi::environment::Universe,
        mpi::topology::SimpleCommunicator,
    )>,
}

impl World {
    /// One process, no communication.
    pub fn single() -> World {
        World {
            rank: 0,
            coll: Box::new(SingleProcess),
            busy: Duration::ZERO,
            bytes: 0,
            #[cfg(feature = "mpi")]
            mpi: None,
        }
    }

    /// The world this process was started into: MPI's when a launcher started it (and the
    /// build has the `mpi` feature), else one process. A launcher's several ranks without the
    /// feature are refused: each would train on its own and write the same run folder.
    pub fn init() -> Result<World> {
        let Some(n) = launcher_ranks() else {
            return Ok(World::single());
        };
        #[cfg(feature = "mpi")]
        {
            let _ = n;
            use mpi::traits::Communicator;
            // Serialized: the CLI trains on a worker thread (a large stack), not the main one;
            // only that thread calls MPI.
            let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Serialized)
                .ok_or_else(|| {
                    HostError::Distributed("MPI was initialised twice in one process".into())
                })?;
            let world = universe.world();
            let rank = u32::try_from(world.rank()).unwrap_or(0);
            let coll = Box::new(MpiCollective::new(universe.world()));
            Ok(World {
                rank,
                coll,
                busy: Duration::ZERO,
                bytes: 0,
                mpi: Some((universe, world)),
            })
        }
        #[cfg(not(feature = "mpi"))]
        {
            if n > 1 {
                let (bin, package) = match crate::torch_hooks::get() {
                    Some(_) => (crate::cli::TORCH_BIN, "acktr-torch"),
                    None => (crate::cli::LEAN_BIN, "acktr-host"),
                };
                return Err(HostError::Distributed(format!(
                    "started as one of {n} MPI ranks, but this {bin} was built without MPI: \
                     build it with `cargo build --release -p {package} --features mpi`"
                )));
            }
            Ok(World::single())
        }
    }

    /// This process's rank, `0..ranks()`.
    pub fn rank(&self) -> u32 {
        self.rank
    }

    /// Processes taking part.
    pub fn ranks(&self) -> u32 {
        self.coll.ranks()
    }

    /// Rank 0: the one that writes the run folder and prints.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// `(time inside collective calls, bytes handed to them)` since the last call.
    pub fn take_busy(&mut self) -> (Duration, u64) {
        let r = (self.busy, self.bytes);
        (self.busy, self.bytes) = (Duration::ZERO, 0);
        r
    }

    /// Every rank's `(return, length, step in the batch)` episodes, rank 0's first, on every
    /// rank: two sums over ranks in which each rank fills only its own slots (`x + 0 = x`, so
    /// the numbers arrive exactly).
    pub fn gather_episodes(&mut self, mine: &[(f64, u64, u64)]) -> Result<Vec<(f64, u64, u64)>> {
        let (rank, ranks) = (self.rank as usize, self.ranks() as usize);
        if ranks == 1 {
            return Ok(mine.to_vec());
        }
        let mut counts = vec![0.0f64; ranks];
        counts[rank] = mine.len() as f64;
        self.all_reduce_sum_f64(&mut counts)
            .map_err(HostError::Core)?;
        let before: usize = counts[..rank].iter().map(|&c| c as usize).sum();
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let mut all = vec![0.0f64; 3 * total];
        for (i, &(ret, len, at)) in mine.iter().enumerate() {
            all[3 * (before + i)..3 * (before + i + 1)]
                .copy_from_slice(&[ret, len as f64, at as f64]);
        }
        self.all_reduce_sum_f64(&mut all).map_err(HostError::Core)?;
        Ok(all
            .chunks_exact(3)
            .map(|e| (e[0], e[1] as u64, e[2] as u64))
            .collect())
    }

    /// End every rank at once with `code` (MPI_Abort), after this rank's `message`; one
    /// process just exits.
    pub fn abort(&self, code: i32, message: &str) -> ! {
        eprintln!("acktr: rank {} of {}: {message}", self.rank, self.ranks());
        #[cfg(feature = "mpi")]
        if let Some((_, world)) = &self.mpi {
            use mpi::traits::Communicator;
            world.abort(code);
        }
        std::process::exit(code)
    }
}

impl Collective for World {
    fn ranks(&self) -> u32 {
        self.coll.ranks()
    }

    fn all_reduce_sum(&mut self, parts: &mut Parts<'_>) -> Result<(), acktr_core::Error> {
        let t = Instant::now();
        let mut n = 0usize;
        parts(&mut |s| n += s.len());
        let r = self.coll.all_reduce_sum(parts);
        self.busy += t.elapsed();
        self.bytes += 4 * n as u64;
        r
    }

    fn all_reduce_sum_f64(&mut self, buf: &mut [f64]) -> Result<(), acktr_core::Error> {
        let t = Instant::now();
        let r = self.coll.all_reduce_sum_f64(buf);
        self.busy += t.elapsed();
        self.bytes += 8 * buf.len() as u64;
        r
    }

    fn broadcast(&mut self, parts: &mut Parts<'_>) -> Result<(), acktr_core::Error> {
        let t = Instant::now();
        let r = self.coll.broadcast(parts);
        self.busy += t.elapsed();
        r
    }
}

/// [`Collective`] on an MPI communicator: each call packs the slices into one message (one
/// `MPI_Allreduce` or `MPI_Bcast` per call, whatever the number of slices). Open MPI's
/// all-reduce hands every rank the same sums, which keeps the ranks' weights bit-identical.
#[cfg(feature = "mpi")]
pub struct MpiCollective {
    comm: mpi::topology::SimpleCommunicator,
    send: Vec<f32>,
    recv: Vec<f32>,
    recv64: Vec<f64>,
}

#[cfg(feature = "mpi")]
impl MpiCollective {
    /// Collectives on `comm`.
    pub fn new(comm: mpi::topology::SimpleCommunicator) -> Self {
        Self {
            comm,
            send: Vec::new(),
            recv: Vec::new(),
            recv64: Vec::new(),
        }
    }

    /// Write `self.recv` back into the slices `parts` presents.
    fn unpack(recv: &[f32], parts: &mut Parts<'_>) {
        let mut pos = 0;
        parts(&mut |s| {
            s.copy_from_slice(&recv[pos..pos + s.len()]);
            pos += s.len();
        });
    }
}

#[cfg(feature = "mpi")]
impl Collective for MpiCollective {
    fn ranks(&self) -> u32 {
        use mpi::traits::Communicator;
        u32::try_from(self.comm.size()).unwrap_or(1)
    }

    fn all_reduce_sum(&mut self, parts: &mut Parts<'_>) -> Result<(), acktr_core::Error> {
        use mpi::collective::SystemOperation;
        use mpi::traits::CommunicatorCollectives;
        self.send.clear();
        let send = &mut self.send;
        parts(&mut |s| send.extend_from_slice(s));
        self.recv.resize(self.send.len(), 0.0);
        // Open MPI's default error handler ends the job on a failed call (a dead peer), so
        // a return here is a success.
        self.comm
            .all_reduce_into(&self.send[..], &mut self.recv[..], SystemOperation::sum());
        Self::unpack(&self.recv, parts);
        Ok(())
    }

    fn all_reduce_sum_f64(&mut self, buf: &mut [f64]) -> Result<(), acktr_core::Error> {
        use mpi::collective::SystemOperation;
        use mpi::traits::CommunicatorCollectives;
        self.recv64.resize(buf.len(), 0.0);
        self.comm
            .all_reduce_into(&buf[..], &mut self.recv64[..], SystemOperation::sum());
        buf.copy_from_slice(&self.recv64);
        Ok(())
    }

    fn broadcast(&mut self, parts: &mut Parts<'_>) -> Result<(), acktr_core::Error> {
        use mpi::traits::{Communicator, Root};
        self.send.clear();
        let send = &mut self.send;
        parts(&mut |s| send.extend_from_slice(s));
        self.comm
            .process_at_rank(0)
            .broadcast_into(&mut self.send[..]);
        let recv = std::mem::take(&mut self.send);
        Self::unpack(&recv, parts);
        self.send = recv;
        Ok(())
    }
}
