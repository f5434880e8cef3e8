//! The guest's devices: the buses and every device on them (UARTs and the host end of
//! their lines, the `_DSM` doorbell, flush hints, the GED and its notifications, power
//! and pvpanic). Each device keeps its bus handler and, where it has one, its AML side.

pub mod agent_port;
pub mod buffered_uart;
pub mod bus;
pub mod console_escape;
pub mod doorbell;
pub mod flush_hint;
pub mod ged;
pub mod notifications;
pub mod power;
pub mod pvpanic;
pub mod serial;
pub mod uart_feed;
