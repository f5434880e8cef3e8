//! vCPUs: the run loop that dispatches exits to the buses, and the control channel
//! other threads use to ask the vCPU thread for things.

pub mod run_loop;
pub mod vcpu_control;
pub mod vcpu_port;
