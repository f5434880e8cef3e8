use vnvdimm_vmm::{firmware, harness};

#[test]
fn smoke() {
    for (name, prog) in [("acpi", firmware::ACPI_NFIT), ("dsm", firmware::DSM), ("pattern", firmware::PATTERN), ("flush", firmware::FLUSH), ("poison", firmware::POISON), ("bench", firmware::BENCH)] {
        let dir = tempfile::tempdir().unwrap();
        let machine = harness::sparse_machine(dir.path(), 2, 64 << 20).unwrap();
        let mut vm = harness::boot(machine, prog, Box::new(std::io::sink())).unwrap();
        let t = std::time::Instant::now();
        let r = harness::run(&mut vm, None).unwrap();
        eprintln!("{name} {:?}: {r:x?} flushes {:?}", t.elapsed(), vm.stats.flushes.all());
    }
}
