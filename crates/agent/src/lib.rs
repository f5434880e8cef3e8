//! Host side of the vnvdimm guest agent.
//!
//! The default guest image (`images/`) starts `/sbin/vnv-agent`, a busybox shell script,
//! on its third serial port (ttyS2). It runs the commands the host sends and returns
//! their exit status and output, in base64 frames with a length and CRC-32, so noise on
//! the line (kernel messages, partial frames, a late answer) is skipped or detected,
//! never mistaken for output. The protocol is in `docs/guest-agent.md`.
//!
//! ```no_run
//! use std::time::Duration;
//! use vnvdimm_agent::AgentClient;
//! // QEMU: -chardev socket,id=agent,path=/tmp/agent.sock,server=on,wait=off -serial chardev:agent
//! let mut agent = AgentClient::connect_unix_within("/tmp/agent.sock".as_ref(), Duration::from_secs(5))?;
//! agent.wait_ready(Duration::from_secs(120))?;
//! let out = agent.exec("ndctl list -D", Duration::from_secs(60))?;
//! println!("status {}: {}", out.status, out.text());
//! # Ok::<(), vnvdimm_agent::AgentError>(())
//! ```

pub mod client;
mod link;
pub mod codec;
pub mod frame;
pub mod qemu;

#[cfg(test)]
mod script_tests;

pub use link::AgentLink;
pub use client::{AgentClient, AgentError, ExecOutput, CANCEL_POLL, STATUS_KILLED};
pub use frame::PROTOCOL_VERSION;
