//! x86-64 specifics: CPUID, the e820 map, long-mode state and page tables, machine-check
//! banks and injection, and the Linux boot protocols.

pub mod cpuid;
pub mod e820;
pub mod long_mode;
pub mod page_tables;
pub mod mce;
pub mod linux_boot;
