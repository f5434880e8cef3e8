//! NFIT table generation. STUB: filled in by the ACPI work.
