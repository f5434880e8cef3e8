//! Architecture-specific code (only x86-64 today).

pub mod x86_64;
