//! The update and activation state machine, step by step and under any sequence.

use proptest::prelude::*;

use super::*;

fn fresh() -> (FirmwareVersions, FirmwareSession) {
    (FirmwareVersions::default(), FirmwareSession::default())
}

macro_rules! fw {
    ($v:expr, $s:expr) => {
        Firmware { versions: &mut $v, session: &mut $s }
    };
}

const T0: Duration = Duration::ZERO;

fn upload(v: &mut FirmwareVersions, s: &mut FirmwareSession, image: &[u8]) -> (u32, u32) {
    let context = fw!(*v, *s).start().unwrap();
    for (i, chunk) in image.chunks(MAX_SEND_LEN as usize).enumerate() {
        assert_eq!(fw!(*v, *s).send(context, (i * MAX_SEND_LEN as usize) as u32, chunk), 0);
    }
    (context, fw!(*v, *s).finish(context, false, T0))
}

#[test]
fn an_update_is_verified_staged_and_runs_after_a_power_cycle() {
    let (mut v, mut s) = fresh();
    let image = build_image(0x0002_0000_0000_0007, &vec![0x5a; 10_000]);
    let (context, finished) = upload(&mut v, &mut s, &image);
    assert_eq!(finished, 0);
    assert_eq!(fw!(v, s).query(context, Duration::from_millis(500)).0, status::DONE_OR_VERIFYING);
    assert_eq!(v.staged, None, "not staged while verifying");
    let (st, version, effect) = fw!(v, s).query(context, DEFAULT_VERIFY_TIME);
    assert_eq!((st, version, effect), (0, 0x0002_0000_0000_0007, Effect::VersionsChanged));
    assert_eq!((v.running, v.staged), (FACTORY_VERSION, Some(0x0002_0000_0000_0007)));
    assert_eq!(fw!(v, s).finish(context, false, T0), status::DONE_OR_VERIFYING, "already done");
    assert!(v.power_on());
    assert_eq!((v.running, v.staged), (0x0002_0000_0000_0007, None));
    assert!(!v.power_on());
}

#[test]
fn images_that_fail_the_check_are_rejected_at_finish() {
    let good = build_image(9, b"payload");
    let mut bad_crc = good.clone();
    bad_crc[17] ^= 1;
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    for (name, image) in [("crc", bad_crc), ("magic", bad_magic), ("version 0", build_image(0, b"x")), ("short", b"VNVDFW01".to_vec())] {
        let (mut v, mut s) = fresh();
        let (_, finished) = upload(&mut v, &mut s, &image);
        assert_eq!(finished, status::BAD_IMAGE, "{name}");
        assert_eq!(s.update, Update::Idle, "{name}");
        assert_eq!(v.staged, None);
    }
}

#[test]
fn host_faults_are_taken_once() {
    let (mut v, mut s) = fresh();
    s.fault = Some(FirmwareFault::Busy);
    assert_eq!(fw!(v, s).start(), Err(status::BUSY_OR_BAD_CONTEXT));
    assert!(fw!(v, s).start().is_ok(), "the fault was taken");
    let (mut v, mut s) = fresh();
    s.fault = Some(FirmwareFault::BadImage);
    assert_eq!(upload(&mut v, &mut s, &build_image(5, b"ok")).1, status::BAD_IMAGE);
    assert_eq!(upload(&mut v, &mut s, &build_image(5, b"ok")).1, 0);
}

#[test]
fn contexts_sequence_and_bounds_are_checked() {
    let (mut v, mut s) = fresh();
    assert_eq!(fw!(v, s).send(1, 0, b"x"), status::RETRY, "no update started");
    let c = fw!(v, s).start().unwrap();
    assert_eq!(fw!(v, s).start(), Err(status::BUSY_OR_BAD_CONTEXT), "one at a time");
    assert_eq!(fw!(v, s).send(c + 1, 0, b"x"), status::BUSY_OR_BAD_CONTEXT);
    assert_eq!(fw!(v, s).send(c, STORAGE_SIZE - 1, b"xy"), intel_status::INVALID_INPUT);
    assert_eq!(fw!(v, s).send(c, 0, &vec![0; MAX_SEND_LEN as usize + 1]), intel_status::INVALID_INPUT);
    assert_eq!(fw!(v, s).query(c, T0).0, status::ABORTED_OR_SEQUENCE, "query before finish");
    assert_eq!(fw!(v, s).finish(c + 1, false, T0), status::BUSY_OR_BAD_CONTEXT);
    assert_eq!(fw!(v, s).finish(c, true, T0), status::ABORTED_OR_SEQUENCE, "aborted");
    assert_eq!(s.update, Update::Idle);
    assert_ne!(fw!(v, s).start().unwrap(), c, "a new context");
}

#[test]
fn live_activation_runs_the_staged_image_on_armed_dimms_only() {
    let (mut v, mut s) = fresh();
    let (c, _) = upload(&mut v, &mut s, &build_image(77, b"fw"));
    fw!(v, s).query(c, DEFAULT_VERIFY_TIME);
    assert_eq!(fw!(v, s).activate(), (activation::RESULT_NONE, Effect::None), "not armed: nothing happens");
    fw!(v, s).arm(true);
    assert_eq!(fw!(v, s).activate(), (activation::RESULT_SUCCESS, Effect::VersionsChanged));
    assert_eq!((v.running, v.staged, s.armed), (77, None, false));
    fw!(v, s).arm(true);
    assert_eq!(fw!(v, s).activate().0, activation::RESULT_NOT_STAGED);
    let (c, _) = upload(&mut v, &mut s, &build_image(78, b"fw"));
    fw!(v, s).query(c, DEFAULT_VERIFY_TIME);
    s.fault = Some(FirmwareFault::Activation);
    fw!(v, s).arm(true);
    assert_eq!(fw!(v, s).activate(), (activation::RESULT_ERROR, Effect::None));
    assert_eq!((v.running, v.staged), (77, Some(78)), "a failed activation keeps the image staged");
}

#[derive(Debug, Clone)]
enum Op {
    Start,
    Send { offset: u32, len: usize, byte: u8 },
    SendGood,
    Finish { abort: bool },
    Query,
    Arm(bool),
    Activate,
    PowerOn,
    Wait,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Start),
        (0u32..300_000, 0usize..5000, any::<u8>()).prop_map(|(offset, len, byte)| Op::Send { offset, len, byte }),
        Just(Op::SendGood),
        any::<bool>().prop_map(|abort| Op::Finish { abort }),
        Just(Op::Query),
        any::<bool>().prop_map(Op::Arm),
        Just(Op::Activate),
        Just(Op::PowerOn),
        Just(Op::Wait),
    ]
}

proptest! {
    /// Whatever the guest does: only a version from a well-formed image is ever staged
    /// or run, and the running version changes only by activation or power-on.
    #[test]
    fn only_verified_images_are_ever_staged_or_run(ops in prop::collection::vec(op(), 1..50)) {
        let good = build_image(0xabc, b"good image");
        let (mut v, mut s) = fresh();
        let mut now = T0;
        let mut context = 0;
        for op in ops {
            let running_before = v.running;
            match op {
                Op::Start => { if let Ok(c) = fw!(v, s).start() { context = c; } }
                Op::Send { offset, len, byte } => { fw!(v, s).send(context, offset, &vec![byte; len]); }
                Op::SendGood => { fw!(v, s).send(context, 0, &good); }
                Op::Finish { abort } => { fw!(v, s).finish(context, abort, now); }
                Op::Query => { fw!(v, s).query(context, now); }
                Op::Arm(a) => fw!(v, s).arm(a),
                Op::Activate => { fw!(v, s).activate(); }
                Op::PowerOn => { v.power_on(); s = FirmwareSession::default(); }
                Op::Wait => now += DEFAULT_VERIFY_TIME,
            }
            prop_assert!(v.staged.is_none() || v.staged == Some(0xabc));
            prop_assert!(v.running == FACTORY_VERSION || v.running == 0xabc);
            if v.running != running_before {
                prop_assert!(matches!(op, Op::Activate | Op::PowerOn));
            }
        }
    }
}
