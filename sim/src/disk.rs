//! A simulated disk per member: what the member synced survives a crash; it lives outside the
//! member's tasks, so a killed and restarted member finds it again.

use std::sync::{Arc, Mutex};

use detcd_engine::harness::Disk;
use detcd_engine::node::{Persist, Recovered};
use detcd_engine::raft::Snapshot;
use detcd_server::disk::{DiskError, Storage};

/// Cheap to clone; all clones are the same disk.
#[derive(Clone, Default)]
pub struct SimDisk {
    synced: Arc<Mutex<Disk>>,
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        // A panic while holding the lock means the run is over anyway.
        self.synced.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Storage for SimDisk {
    fn load(&mut self) -> Result<Recovered, DiskError> {
        Ok(self.disk().recovered())
    }

    /// `persist` has no await point: a crash in madsim (which stops tasks at await points) can
    /// never fall between the write and the sync, so a persist is either all there or not done.
    fn persist(&mut self, batch: &[Persist]) -> Result<(), DiskError> {
        let mut disk = self.disk();
        for p in batch {
            disk.apply(p);
        }
        Ok(())
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot, log_kept_from: u64) -> Result<(), DiskError> {
        self.disk().save_snapshot(snapshot, log_kept_from);
        Ok(())
    }
}
