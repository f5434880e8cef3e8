//! The `vnvdimm` command: the clap tree in `cli`, one module per subcommand.

pub mod acpi_dump;
pub mod cli;
pub mod console_input;
mod console_pipe;
pub mod ctl;
pub mod ctl_poison_batch;
pub mod demo;
pub mod firmware_image;
pub mod guest_boot;
pub mod kernel_check;
pub mod keyboard_to_qemu;
pub mod modules;
pub mod platform_args;
pub mod run;
pub mod run_tcg;
pub mod selftest;
pub mod stop_signals;
pub mod test_cmd;
pub mod work_dir;
