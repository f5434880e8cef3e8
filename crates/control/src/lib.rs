//! vnvdimm's control API: HTTP/1.1 with JSON bodies over a Unix socket (the
//! `--api-socket` of `vnvdimm run`), in the style of firecracker and cloud-hypervisor.
//! Every path starts with `/api/v1`; docs/api.md and docs/api.yaml describe them.
//!
//! - [`backend::Backend`]: what a VMM backend (KVM, QEMU TCG) implements.
//! - [`ApiServer::serve_on`]: serves a backend on a socket as a source of the VM's host
//!   I/O loop (`api_source.rs`, one non-blocking `api_connection.rs` per client) within
//!   [`limits::ServerLimits`], requests run off the loop (`api_worker.rs`);
//!   [`ApiServer::start`] does the same in a loop of its own; [`http`] reads requests
//!   with size caps.
//! - [`client::ApiClient`]: a blocking client (used by `vnvdimm ctl`).
//! - [`routes::ROUTES`]: the paths and methods answered.
//! - [`host_io::HostIo`]: the host I/O loop (event-manager) each backend's VM runs, with
//!   [`signal_source::SignalSource`] for the stop signals.
//! - [`lifecycle::run`]: one run of a guest (start, API, watch, run, close), the same
//!   steps on every backend.
//! - `fake::FakeBackend` (feature `fake`): a backend for tests.

mod api_connection;
mod api_source;
mod api_worker;
pub mod backend;
pub mod client;
pub mod exec_queue;
pub mod exit_status;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
mod firmware;
pub mod handlers;
pub mod host_io;
pub mod http;
pub mod lifecycle;
pub mod limits;
pub mod outcome;
pub mod routes;
mod security;
pub mod server;
pub mod signal_source;
pub mod types;

pub use backend::{Backend, BackendError, Capabilities, ExecOutput, VmInfo, VmState};
pub use client::{ApiClient, ApiResponse, ClientError};
pub use limits::ServerLimits;
pub use outcome::GuestOutcome;
pub use server::{ApiError, ApiServer, ApiServerHandle};
