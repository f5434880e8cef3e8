//! The process exit statuses of `vnvdimm`, one table for every subcommand and both
//! backends (docs/running.md lists them), so a script can tell a crashed guest from a
//! bad option whichever backend ran it.

/// Success; for `vnvdimm run` a clean end of the guest (power-off, reset, or stopped
/// by the host).
pub const OK: u8 = 0;
/// A failure that is not the user's input: the VMM or QEMU failed, I/O went wrong.
pub const FAILURE: u8 = 1;
/// Bad options or values (the same code clap uses); nothing was changed.
pub const USAGE: u8 = 2;
/// The guest crashed: kernel panic, triple fault, emulation failure, halted forever.
pub const GUEST_CRASHED: u8 = 3;
/// The options were fine but the host could not start the VM: an I/O error on a
/// backing file or sidecar, a full disk, a backing file another VM is using. Nothing
/// was changed.
pub const START_HOST: u8 = 4;
