use super::*;
use vm_memory::GuestAddress;

fn ram_only(blocks: &[(u64, usize)]) -> GuestMemory {
    let ranges: Vec<_> = blocks.iter().map(|&(gpa, len)| (GuestAddress(gpa), len)).collect();
    GuestMemory { ram: GuestMemoryMmap::from_ranges(&ranges).unwrap(), pmem: Vec::new() }
}

#[test]
fn ram_copies_are_bounds_checked() {
    let mem = ram_only(&[(0, 4096), (0x10_0000, 4096)]);
    mem.write_ram(4092, &[1, 2, 3, 4]).unwrap();
    let mut buf = [0u8; 4];
    mem.read_ram(4092, &mut buf).unwrap();
    assert_eq!(buf, [1, 2, 3, 4]);
    assert!(matches!(mem.write_ram(4093, &[1, 2, 3, 4]), Err(GuestMemoryError::OutsideRam { gpa: 4093, len: 4 })));
    assert!(mem.write_ram(u64::MAX, &[1]).is_err());
    assert!(mem.read_ram(4096, &mut [0u8; 1]).is_err());
    mem.write_ram(0x10_0ffc, &[9; 4]).unwrap();
}

#[test]
fn the_mailbox_is_a_view_of_guest_ram() {
    use nvdimm_model::mailbox::{MailboxMemory, MAILBOX_SIZE};
    let size = MAILBOX_SIZE as usize;
    let mem = ram_only(&[(0, 2 * size), (0x100_0000, size)]);
    let mailbox = mem.mailbox(size as u64).expect("inside the first block");
    assert!(mailbox.increment_u32(8));
    assert!(mailbox.increment_u32(8));
    let mut word = [0u8; 4];
    mem.read_ram(size as u64 + 8, &mut word).unwrap();
    assert_eq!(u32::from_le_bytes(word), 2);
    mem.write_ram(size as u64 + 32, b"dsm").unwrap();
    let mut back = [0u8; 3];
    mailbox.read_bytes(32, &mut back);
    assert_eq!(&back, b"dsm");
    assert!(mem.mailbox(size as u64 + 4096).is_none(), "runs past the end of its block");
    assert!(mem.mailbox(0x200_0000).is_none(), "outside RAM");
}

#[test]
fn ram_regions_report_every_block() {
    let mem = ram_only(&[(0, 4096), (0x10_0000, 8192)]);
    let regions: Vec<_> = mem.ram_regions().map(|(gpa, size, _)| (gpa, size)).collect();
    assert_eq!(regions, vec![(0, 4096), (0x10_0000, 8192)]);
}
