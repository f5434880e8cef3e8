//! AML for the NVDIMM root device and its DIMMs. STUB: filled in by the ACPI work.
