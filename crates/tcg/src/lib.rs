//! QEMU TCG backend for vnvdimm: boots an unmodified Linux guest under QEMU's
//! software CPU with guest RAM in a shared file, hands QEMU our NFIT and NVDIMM SSDT
//! with `-acpitable`, and serves the `_DSM` mailbox by polling that file.
//!
//! Pieces, each usable on its own:
//! - [`layout`]: where RAM, the NVDIMM windows, the mailbox and flush hints go, and the
//!   `memmap=exactmap` kernel arguments that hide the windows and mailbox from Linux;
//! - [`ram`]: the shared RAM file, its mailbox mapping and DIMM content copies;
//! - [`poller`]: the mailbox as a source of the host I/O loop: woken by the guest's kick,
//!   it reads the doorbell word and calls the device model; [`exit_watch`]: QEMU's end, seen
//!   by the loop through a pidfd;
//! - [`qemu`]: the QEMU command line; [`spawn`]: starting it with a clean signal state,
//!   killed when vnvdimm ends;
//! - [`image`] and [`cpio`]: the guest kernel/initramfs and the per-run test script;
//! - [`script`] and [`results`]: steps for the default image's init and what it printed
//!   about them;
//! - [`setup`]: the ACPI tables and the RAM memfd QEMU starts with;
//! - [`vm`]: the runner `vnvdimm run --backend tcg`, the tests and the demo all use
//!   (console, QMP, file-backed device model), and [`backend`]: its control-API
//!   [`vnvdimm_control::Backend`];
//! - [`qmp`]: QEMU's machine protocol; [`event_zone`]: how host notifications reach
//!   the guest's `\_SB.NVDR.NEVT` (a polled ACPI thermal zone).

pub mod backend;
pub mod console_in;
pub mod cpio;
pub mod event_zone;
pub mod exit_watch;
pub mod image;
pub mod layout;
pub mod poller;
pub mod qemu;
pub mod qmp;
pub mod ram;
pub mod results;
pub mod script;
pub mod setup;
pub mod spawn;
pub mod vm;

pub use script::Script;
pub use setup::SetupError;
pub use image::GuestImage;
pub use layout::{TcgLayout, TcgLayoutOptions};
pub use poller::MailboxPoller;
pub use results::{StepResult, StepResults};
pub use vm::{TcgVm, TcgVmSpec, GuestOutcome};
