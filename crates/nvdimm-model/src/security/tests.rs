//! The state machine against the table in security.rs, and its invariants under any
//! sequence of requests.

use proptest::prelude::*;

use super::*;

fn pass(byte: u8) -> Passphrase {
    [byte; PASSPHRASE_LEN]
}

const T0: Duration = Duration::ZERO;

struct Dimm {
    keys: SecurityKeys,
    session: SecuritySession,
}

impl Dimm {
    fn new() -> Self {
        let keys = SecurityKeys::default();
        let session = SecuritySession::power_on(&keys);
        Dimm { keys, session }
    }

    fn with_passphrase(p: Passphrase) -> Self {
        let mut d = Dimm::new();
        assert_eq!(d.apply(Request::SetPassphrase { old: ZERO, new: p }), Ok(Effect::KeysChanged));
        d
    }

    fn sec(&mut self) -> Security<'_> {
        Security { keys: &mut self.keys, session: &mut self.session }
    }

    fn apply(&mut self, r: Request) -> Result<Effect, u32> {
        self.sec().apply(r, T0)
    }

    fn power_cycle(&mut self) {
        self.session = SecuritySession::power_on(&self.keys);
    }

    fn state(&mut self) -> u8 {
        self.sec().state(T0).1
    }
}

#[test]
fn a_passphrase_locks_the_dimm_at_the_next_power_on() {
    let mut d = Dimm::with_passphrase(pass(1));
    assert_eq!(d.state(), state_bits::ENABLED);
    d.power_cycle();
    assert_eq!(d.state(), state_bits::ENABLED | state_bits::LOCKED);
    assert_eq!(d.apply(Request::Unlock { passphrase: pass(2) }), Err(INVALID_PASS));
    assert_eq!(d.apply(Request::Unlock { passphrase: pass(1) }), Ok(Effect::None));
    assert_eq!(d.state(), state_bits::ENABLED);
    assert_eq!(d.apply(Request::Unlock { passphrase: pass(1) }), Err(INVALID_STATE), "not locked any more");
}

#[test]
fn changing_the_passphrase_needs_the_old_one_and_an_unlocked_dimm() {
    let mut d = Dimm::new();
    assert_eq!(d.apply(Request::SetPassphrase { old: pass(9), new: pass(1) }), Err(INVALID_PASS), "none set: old is zeros");
    let mut d = Dimm::with_passphrase(pass(1));
    assert_eq!(d.apply(Request::SetPassphrase { old: pass(2), new: pass(3) }), Err(INVALID_PASS));
    assert_eq!(d.apply(Request::SetPassphrase { old: pass(1), new: pass(3) }), Ok(Effect::KeysChanged));
    d.power_cycle();
    assert_eq!(d.apply(Request::SetPassphrase { old: pass(3), new: pass(4) }), Err(INVALID_STATE), "locked");
}

#[test]
fn frozen_means_frozen_until_power_off() {
    let mut d = Dimm::new();
    assert_eq!(d.apply(Request::Freeze), Err(INVALID_STATE), "no passphrase, nothing to freeze");
    let mut d = Dimm::with_passphrase(pass(1));
    assert_eq!(d.apply(Request::Freeze), Ok(Effect::None));
    assert_eq!(d.state(), state_bits::ENABLED | state_bits::FROZEN);
    for r in [
        Request::SetPassphrase { old: pass(1), new: pass(2) },
        Request::Disable { passphrase: pass(1) },
        Request::SecureErase { passphrase: pass(1) },
        Request::Overwrite { passphrase: pass(1) },
        Request::SetMaster { old: ZERO, new: pass(5) },
        Request::MasterErase { passphrase: ZERO },
    ] {
        assert_eq!(d.apply(r), Err(INVALID_STATE), "{r:?} while frozen");
    }
    assert_eq!(d.keys.passphrase, Some(pass(1)));
    d.power_cycle();
    assert_eq!(d.state() & state_bits::FROZEN, 0);
}

#[test]
fn wrong_passphrases_count_to_the_limit_then_everything_is_refused() {
    let mut d = Dimm::with_passphrase(pass(1));
    d.power_cycle();
    for _ in 0..MAX_ATTEMPTS {
        assert_eq!(d.apply(Request::Unlock { passphrase: pass(7) }), Err(INVALID_PASS));
    }
    assert_ne!(d.state() & state_bits::PLIMIT, 0);
    assert_eq!(d.apply(Request::Unlock { passphrase: pass(1) }), Err(INVALID_STATE), "even the right one");
    d.power_cycle();
    assert_eq!(d.apply(Request::Unlock { passphrase: pass(1) }), Ok(Effect::None));
}

#[test]
fn erase_and_disable_remove_the_passphrase() {
    let mut d = Dimm::with_passphrase(pass(1));
    assert_eq!(d.apply(Request::SecureErase { passphrase: pass(2) }), Err(INVALID_PASS));
    assert_eq!(d.apply(Request::SecureErase { passphrase: pass(1) }), Ok(Effect::EraseMedia));
    assert_eq!((d.keys.passphrase, d.state()), (None, 0));
    assert_eq!(d.apply(Request::SecureErase { passphrase: ZERO }), Ok(Effect::EraseMedia), "no passphrase: zeros");
    let mut d = Dimm::with_passphrase(pass(1));
    assert_eq!(d.apply(Request::Disable { passphrase: pass(1) }), Ok(Effect::KeysChanged));
    assert_eq!(d.apply(Request::Disable { passphrase: pass(1) }), Err(INVALID_STATE));
}

#[test]
fn overwrite_runs_for_its_time_and_is_queried_to_the_end() {
    let mut d = Dimm::with_passphrase(pass(1));
    d.session.overwrite_time = Duration::from_secs(3);
    assert_eq!(d.sec().query_overwrite(T0), OVERWRITE_SEQUENCE_ERROR);
    assert_eq!(d.sec().apply(Request::Overwrite { passphrase: pass(1) }, T0), Ok(Effect::EraseMedia));
    let at = |s| Duration::from_secs(s);
    assert_ne!(d.sec().state(at(1)).1 & state_bits::OVERWRITE, 0);
    assert_eq!(d.sec().apply(Request::Freeze, at(1)), Err(INVALID_STATE), "busy");
    assert_eq!(d.sec().query_overwrite(at(2)), OVERWRITE_IN_PROGRESS);
    assert_eq!(d.sec().query_overwrite(at(3)), intel_status::SUCCESS);
    assert_eq!(d.sec().query_overwrite(at(4)), OVERWRITE_SEQUENCE_ERROR);
    assert_eq!(d.sec().state(at(4)).1, state_bits::ENABLED, "the passphrase stays");
}

#[test]
fn the_master_passphrase_has_its_own_limit_and_erase() {
    let mut d = Dimm::with_passphrase(pass(1));
    assert_eq!(d.apply(Request::SetMaster { old: pass(3), new: pass(4) }), Err(INVALID_PASS));
    assert_eq!(d.apply(Request::SetMaster { old: ZERO, new: pass(4) }), Ok(Effect::KeysChanged));
    d.power_cycle();
    assert_eq!(d.apply(Request::MasterErase { passphrase: pass(4) }), Ok(Effect::EraseMedia));
    assert_eq!(d.state(), 0, "unlocked, no user passphrase");
    for _ in 0..MAX_ATTEMPTS {
        assert_eq!(d.apply(Request::MasterErase { passphrase: pass(9) }), Err(INVALID_PASS));
    }
    assert_eq!(d.sec().state(T0).0, state_bits::MASTER_ENABLED | state_bits::MASTER_PLIMIT);
    assert_eq!(d.apply(Request::MasterErase { passphrase: pass(4) }), Err(INVALID_STATE));
    d.keys.master_enabled = false;
    assert_eq!(d.apply(Request::SetMaster { old: pass(4), new: pass(5) }), Err(intel_status::NOT_SUPPORTED));
}

#[test]
fn keys_round_trip_through_the_state_file_format() {
    let keys = SecurityKeys { passphrase: Some(pass(0xab)), master_passphrase: pass(1), master_enabled: true };
    let json = serde_json::to_string(&keys).unwrap();
    assert!(json.contains(&"ab".repeat(32)), "{json}");
    assert_eq!(serde_json::from_str::<SecurityKeys>(&json).unwrap(), keys);
    assert!(serde_json::from_str::<SecurityKeys>(r#"{"passphrase":"abc"}"#).is_err());
    assert_eq!(serde_json::from_str::<SecurityKeys>("{}").unwrap(), SecurityKeys::default());
    assert_eq!(passphrase_from_text("abc").unwrap()[..4], [b'a', b'b', b'c', 0]);
    assert!(passphrase_from_text(&"x".repeat(33)).is_err());
}

fn request() -> impl Strategy<Value = Request> {
    let p = (0u8..3).prop_map(pass);
    prop_oneof![
        (p.clone(), p.clone()).prop_map(|(old, new)| Request::SetPassphrase { old, new }),
        p.clone().prop_map(|passphrase| Request::Disable { passphrase }),
        p.clone().prop_map(|passphrase| Request::Unlock { passphrase }),
        Just(Request::Freeze),
        p.clone().prop_map(|passphrase| Request::SecureErase { passphrase }),
        p.clone().prop_map(|passphrase| Request::Overwrite { passphrase }),
        (p.clone(), p.clone()).prop_map(|(old, new)| Request::SetMaster { old, new }),
        p.prop_map(|passphrase| Request::MasterErase { passphrase }),
    ]
}

proptest! {
    /// Any sequence, with power cycles and time passing: locked only with a passphrase,
    /// frozen never thaws within a power cycle, nothing succeeds while frozen except
    /// unlock-free reads, and a refused request changes no key.
    #[test]
    fn invariants_hold_for_any_sequence(steps in prop::collection::vec((request(), 0u8..10, 0u64..3), 1..60)) {
        let mut d = Dimm::new();
        let mut now = T0;
        for (r, dice, secs) in steps {
            if dice == 0 {
                d.power_cycle();
            }
            now += Duration::from_secs(secs);
            let (keys_before, frozen_before) = (d.keys.clone(), d.session.frozen);
            let result = d.sec().apply(r, now);
            if let Err(status) = result {
                prop_assert_eq!(&d.keys, &keys_before, "refused {:?} ({}) changed the keys", r, status);
                prop_assert!([INVALID_STATE, INVALID_PASS, intel_status::NOT_SUPPORTED].contains(&status));
            }
            if frozen_before {
                prop_assert!(d.session.frozen);
                let allowed = result.is_err() || matches!(r, Request::Unlock { .. } | Request::Freeze);
                prop_assert!(allowed, "{:?} succeeded while frozen", r);
            }
            prop_assert!(!d.session.locked || d.keys.passphrase.is_some());
            prop_assert!(d.session.failed_attempts <= MAX_ATTEMPTS && d.session.failed_master_attempts <= MAX_ATTEMPTS);
        }
    }
}
