//! Label access through the Intel `_DSM`: what a guest pays to read and write labels.
//!
//! Run: `cargo bench -p nvdimm-model --bench labels -- --quick`
//! The F6 benchmark writes to a real file in a temp directory and includes the two
//! fsyncs and the rename of every crash-safe label write.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nvdimm_model::dimm::Dimm;
use nvdimm_model::dsm::INTEL_UUID;
use nvdimm_model::dsm_intel::{self, MAX_LABEL_TRANSFER};
use nvdimm_model::mailbox::DsmRequest;
use nvdimm_model::{DimmConfig, DimmPlacement, NvdimmPlatform, PlatformConfig, PlatformLayout};

const AREA: u32 = 128 << 10;

fn platform() -> NvdimmPlatform {
    let config = PlatformConfig::default_in(Path::new("/nonexistent-bench"));
    let layout = PlatformLayout::example(&config);
    NvdimmPlatform::ephemeral(config, layout).expect("valid default platform")
}

fn get_label(handle: u32, offset: u32, len: u32) -> DsmRequest {
    let input = [offset.to_le_bytes(), len.to_le_bytes()].concat();
    DsmRequest { handle, uuid: INTEL_UUID, revision: 1, function: dsm_intel::FN_GET_LABEL, input }
}

fn label_reads(c: &mut Criterion) {
    let mut p = platform();
    let handle = p.dimms()[0].handle();
    let one = get_label(handle, 0, MAX_LABEL_TRANSFER);
    let mut group = c.benchmark_group("labels");
    group.throughput(Throughput::Bytes(u64::from(MAX_LABEL_TRANSFER)));
    group.bench_function("f5_get_label_4088B_via_call_dsm", |b| b.iter(|| black_box(p.call_dsm(black_box(&one)))));

    let chunks: Vec<DsmRequest> = (0..AREA)
        .step_by(MAX_LABEL_TRANSFER as usize)
        .map(|off| get_label(handle, off, MAX_LABEL_TRANSFER.min(AREA - off)))
        .collect();
    group.throughput(Throughput::Bytes(u64::from(AREA)));
    group.bench_function("f5_full_128KiB_area_in_4088B_chunks", |b| {
        b.iter(|| {
            for req in &chunks {
                black_box(p.call_dsm(req));
            }
        })
    });
    group.finish();
}

fn label_write_persisted(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.img");
    std::fs::File::create(&path).and_then(|f| f.set_len(16 << 20)).expect("backing file");
    let config = DimmConfig::with_defaults(0, path, 16 << 20);
    let mut dimm = Dimm::open(config, DimmPlacement { spa_base: 4 << 30, flush_hints: vec![] }).expect("open");
    let data = vec![0x5a; MAX_LABEL_TRANSFER as usize];
    let input = [&0u32.to_le_bytes()[..], &MAX_LABEL_TRANSFER.to_le_bytes(), &data].concat();
    let mut events = Vec::new();
    let mut group = c.benchmark_group("labels");
    group.sample_size(20);
    group.bench_function("f6_set_label_4088B_persisted_incl_fsync", |b| {
        b.iter(|| black_box(dsm_intel::call(&mut dimm, dsm_intel::FN_SET_LABEL, 1, &input, &mut events)))
    });
    group.finish();
}

criterion_group!(benches, label_reads, label_write_persisted);
criterion_main!(benches);
