//! Bare-metal guest programs (firmware/) on the KVM VMM: loading them, the test-only
//! devices they talk to (the debug ports that report words and end the run with any
//! exit code, the command port idle.S polls), the harness that boots and runs them for
//! the KVM tests and benchmarks, and `vnvdimm selftest`. None of it is on a Linux
//! guest's bus: only this crate puts these devices there, on machines it builds.

pub mod bare_metal;
pub mod command_port;
pub mod debug_port;
pub mod firmware;
pub mod harness;
pub mod selftest;
