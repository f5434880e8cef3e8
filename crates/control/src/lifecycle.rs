//! One run of a guest, in the same steps on every backend (docs/architecture.md). The
//! caller has opened the DIMMs; then
//! 1. the backend starts its guest. A failed start puts the DIMMs' state files back as
//!    they were: no `running` marker, no shutdown counted (issue 10, point 6);
//! 2. the control API is served on `--api-socket`, when one was given, as a source of
//!    the guest's host I/O loop. A socket that cannot be served stops the guest and puts
//!    the state back the same way;
//! 3. the caller's `running` hook gets the started guest (stop signals, console input)
//!    and may keep something alive until the run ends;
//! 4. a write-back watch powers the guest off when its stores stop reaching a backing
//!    file, naming the file (point 7);
//! 5. the backend runs the guest to its end;
//! 6. the watch and the API stop (a check racing the final one could take its error
//!    away, a request could change a DIMM after it closed), then every DIMM is closed
//!    cleanly.

use std::path::Path;
use std::sync::{Arc, Mutex};

use nvdimm_model::platform_open::{PlatformCloseError, PlatformOpenError};
use nvdimm_model::sync::LockUnpoisoned;
use nvdimm_model::{writeback_watch, NvdimmPlatform};

use crate::host_io::HostIo;
use crate::{ApiError, ApiServer, Backend, GuestOutcome};

/// A guest a backend has started: what the API, the stop paths and the write-back
/// watch talk to.
pub trait StartedGuest {
    fn backend(&self) -> Arc<dyn Backend>;
    /// The VM's host I/O loop, which serves the control API among its sources.
    fn host_io(&self) -> &HostIo;
}

/// Where a run failed; `E` is the backend's own error (starting, running).
#[derive(Debug)]
pub enum LifecycleError<E> {
    Start(E),
    Api(ApiError),
    Run(E),
    Close {
        outcome: GuestOutcome,
        source: PlatformCloseError,
    },
    /// A start failed, and putting the DIMMs' state back failed too.
    Undo {
        start: Box<LifecycleError<E>>,
        undo: PlatformOpenError,
    },
}

// Written out: a derived Display would need `Box<Self>: Display` to prove itself.
impl<E: std::fmt::Display> std::fmt::Display for LifecycleError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LifecycleError::Start(e) | LifecycleError::Run(e) => write!(f, "{e}"),
            LifecycleError::Api(e) => write!(f, "{e}"),
            LifecycleError::Close { outcome, source } => write!(f, "the guest stopped ({outcome}), but {source}"),
            LifecycleError::Undo { start, undo } => write!(f, "{start}; {undo}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for LifecycleError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LifecycleError::Start(e) | LifecycleError::Run(e) => e.source(),
            LifecycleError::Api(e) => e.source(),
            LifecycleError::Close { source, .. } => Some(source),
            LifecycleError::Undo { undo, .. } => Some(undo),
        }
    }
}

/// Runs a guest on `platform` through the steps above; how the guest ended.
pub fn run<G: StartedGuest, E: std::error::Error + 'static, R>(
    platform: &Arc<Mutex<NvdimmPlatform>>,
    api_socket: Option<&Path>,
    start: impl FnOnce() -> Result<G, E>,
    running: impl FnOnce(&G) -> Result<R, E>,
    run_to_end: impl FnOnce(G) -> Result<GuestOutcome, E>,
) -> Result<GuestOutcome, LifecycleError<E>> {
    let guest = start().map_err(|e| undo_start(platform, LifecycleError::Start(e)))?;
    let api = match api_socket {
        Some(path) => match ApiServer::serve_on(guest.host_io(), path, guest.backend()) {
            Ok(api) => Some(api),
            Err(e) => {
                drop(guest); // the backend stops its guest
                return Err(undo_start(platform, LifecycleError::Api(e)));
            }
        },
        None => None,
    };
    let kept = match running(&guest) {
        Ok(kept) => kept,
        Err(e) => {
            drop(api);
            drop(guest);
            return Err(undo_start(platform, LifecycleError::Start(e)));
        }
    };
    let backend = guest.backend();
    let watch = writeback_watch::power_off_on_loss(platform, move || {
        let _ = backend.power_off();
    });
    let outcome = run_to_end(guest);
    drop(watch);
    drop(api);
    drop(kept);
    let outcome = outcome.map_err(LifecycleError::Run)?;
    platform
        .lock_unpoisoned()
        .close_clean_all()
        .map_err(|source| LifecycleError::Close { outcome: outcome.clone(), source })?;
    Ok(outcome)
}

fn undo_start<E: std::error::Error + 'static>(
    platform: &Arc<Mutex<NvdimmPlatform>>,
    start: LifecycleError<E>,
) -> LifecycleError<E> {
    match platform.lock_unpoisoned().undo_open() {
        Ok(()) => start,
        Err(undo) => LifecycleError::Undo { start: Box::new(start), undo },
    }
}

impl<E: std::error::Error + 'static> LifecycleError<E> {
    /// The backend's own error, when the failure was the backend's.
    pub fn backend_error(&self) -> Option<&E> {
        match self {
            LifecycleError::Start(e) | LifecycleError::Run(e) => Some(e),
            LifecycleError::Undo { start, .. } => start.backend_error(),
            LifecycleError::Api(_) | LifecycleError::Close { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use nvdimm_model::clock::SystemClock;
    use nvdimm_model::{PlatformConfig, PlatformLayout};

    use super::*;
    use crate::fake::FakeBackend;

    /// A guest that says when it was dropped (a backend stops its guest on drop).
    struct Guest {
        backend: Arc<FakeBackend>,
        host_io: HostIo,
        dropped: Arc<AtomicBool>,
    }

    impl StartedGuest for Guest {
        fn backend(&self) -> Arc<dyn Backend> {
            self.backend.clone()
        }

        fn host_io(&self) -> &HostIo {
            &self.host_io
        }
    }

    impl Drop for Guest {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the backend failed")]
    struct Failed;

    fn config(dir: &Path) -> PlatformConfig {
        let mut config = PlatformConfig::default_in(dir);
        for dimm in &mut config.dimms {
            dimm.size = 16 << 20;
            std::fs::File::create(&dimm.path).unwrap().set_len(dimm.size).unwrap();
        }
        config
    }

    fn open(config: &PlatformConfig) -> Arc<Mutex<NvdimmPlatform>> {
        let layout = PlatformLayout::example(config);
        Arc::new(Mutex::new(NvdimmPlatform::open(config.clone(), layout, Arc::new(SystemClock::new())).unwrap()))
    }

    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap_or_default()))
            .collect();
        files.sort();
        files
    }

    fn unsafe_shutdowns(config: &PlatformConfig) -> Vec<u32> {
        let platform = open(config);
        let counts = platform.lock_unpoisoned().dimms().iter().map(|d| d.state.health.unsafe_shutdown_count).collect();
        counts
    }

    fn guest(dropped: &Arc<AtomicBool>) -> Guest {
        Guest {
            backend: Arc::new(FakeBackend::with_default_platform()),
            host_io: HostIo::start().unwrap(),
            dropped: dropped.clone(),
        }
    }

    #[test]
    fn a_failed_start_leaves_the_dimm_files_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let before = files(dir.path());
        let platform = open(&config);
        assert_ne!(files(dir.path()), before, "opening writes the DIMMs' state files");
        let err = run(&platform, None, || Err::<Guest, _>(Failed), |_| Ok(()), |_| unreachable!()).unwrap_err();
        assert!(matches!(err, LifecycleError::Start(Failed)), "{err}");
        assert_eq!(files(dir.path()), before);
    }

    #[test]
    fn a_socket_that_cannot_be_served_stops_the_guest_and_puts_the_state_back() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let socket_dir = tempfile::tempdir().unwrap();
        let not_a_socket = socket_dir.path().join("api.sock");
        std::fs::write(&not_a_socket, b"a regular file").unwrap();
        let before = files(dir.path());
        let platform = open(&config);
        let dropped = Arc::new(AtomicBool::new(false));
        let err =
            run(&platform, Some(&not_a_socket), || Ok::<_, Failed>(guest(&dropped)), |_| Ok(()), |_| unreachable!())
                .unwrap_err();
        assert!(matches!(err, LifecycleError::Api(_)), "{err}");
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert!(dropped.load(Ordering::SeqCst), "the guest was not stopped");
        assert_eq!(files(dir.path()), before);
    }

    #[test]
    fn a_guest_that_ran_to_its_end_leaves_every_dimm_closed_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let platform = open(&config);
        let dropped = Arc::new(AtomicBool::new(false));
        let kept_until_the_end = Arc::new(AtomicBool::new(true));
        let kept = kept_until_the_end.clone();
        let outcome = run(
            &platform,
            None,
            || Ok::<_, Failed>(guest(&dropped)),
            |_| Ok(scopeguard(kept)),
            |g| {
                assert!(kept_until_the_end.load(Ordering::SeqCst), "the running hook's value went before the run");
                drop(g);
                Ok(GuestOutcome::PowerOff)
            },
        )
        .unwrap();
        assert_eq!(outcome, GuestOutcome::PowerOff);
        assert!(!kept_until_the_end.load(Ordering::SeqCst), "the running hook's value outlived the run");
        drop(platform);
        assert_eq!(unsafe_shutdowns(&config), vec![0, 0]);
    }

    #[test]
    fn a_failed_run_is_not_a_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let platform = open(&config);
        let dropped = Arc::new(AtomicBool::new(false));
        let err = run(&platform, None, || Ok::<_, Failed>(guest(&dropped)), |_| Ok(()), |_| Err(Failed)).unwrap_err();
        assert!(matches!(err, LifecycleError::Run(Failed)), "{err}");
        drop(platform);
        assert_eq!(unsafe_shutdowns(&config), vec![1, 1]);
    }

    /// Clears `flag` when dropped.
    fn scopeguard(flag: Arc<AtomicBool>) -> impl Drop {
        struct Clear(Arc<AtomicBool>);
        impl Drop for Clear {
            fn drop(&mut self) {
                self.0.store(false, Ordering::SeqCst);
            }
        }
        Clear(flag)
    }
}
