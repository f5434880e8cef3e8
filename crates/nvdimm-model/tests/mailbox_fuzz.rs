//! Whatever a hostile guest leaves in the mailbox, the host answers and completes
//! the call without panicking, and never writes outside the output area and header.

use nvdimm_model::dsm::{INTEL_UUID, ROOT_UUID};
use nvdimm_model::mailbox::{self, MailboxMemory, MAILBOX_SIZE};
use nvdimm_model::NvdimmPlatform;
use proptest::prelude::*;

fn platform() -> NvdimmPlatform {
    NvdimmPlatform::example()
}

fn uuid_strategy() -> impl Strategy<Value = [u8; 16]> {
    prop_oneof![Just(ROOT_UUID), Just(INTEL_UUID), any::<[u8; 16]>()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_request_is_answered(
        handle in prop_oneof![Just(0u32), Just(1), Just(0x11), any::<u32>()],
        uuid in uuid_strategy(),
        revision in prop_oneof![Just(1u32), Just(2), any::<u32>()],
        function in prop_oneof![0u32..32, any::<u32>()],
        declared_len in prop_oneof![0u32..64, Just(4096), Just(4097), any::<u32>()],
        input in prop::collection::vec(any::<u8>(), 0..128),
        sequence in 1u32..,
    ) {
        let mut platform = platform();
        let mut mem = vec![0u8; MAILBOX_SIZE as usize];
        mem.write_u32(mailbox::HANDLE, handle);
        mem.write_u32(mailbox::REVISION, revision);
        mem.write_u32(mailbox::FUNCTION, function);
        mem.write_u32(mailbox::INPUT_LEN, declared_len);
        mem.write_bytes(mailbox::UUID, &uuid);
        mem.write_bytes(mailbox::INPUT, &input);
        let before = mem.clone();

        platform.serve_mailbox(&mut mem, sequence);

        prop_assert_eq!(mem.read_u32(mailbox::COMPLETION), sequence);
        let out_len = mem.read_u32(mailbox::OUTPUT_LEN) as usize;
        prop_assert!((1..=mailbox::MAX_OUTPUT).contains(&out_len), "output length {}", out_len);
        // The host writes only the output area, the output length and the completion word.
        prop_assert_eq!(&mem[..mailbox::OUTPUT_LEN], &before[..mailbox::OUTPUT_LEN]);
        prop_assert_eq!(&mem[mailbox::DOORBELL_SLOT..mailbox::OUTPUT], &before[mailbox::DOORBELL_SLOT..mailbox::OUTPUT]);
    }
}
