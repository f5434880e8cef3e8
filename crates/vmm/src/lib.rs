//! vnvdimm's KVM VMM core: turns a `vnvdimm_machine::Machine` into a running
//! KVM VM whose NVDIMM windows are the users' backing files, and serves the
//! guest's port and MMIO exits (serial console, `_DSM` doorbell, flush hints,
//! power off).

