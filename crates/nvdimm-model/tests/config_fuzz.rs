//! The config parser sees user input: whatever it is given, it answers Ok or Err, never panics.

use nvdimm_model::config::{parse_size, DimmConfig, PlatformConfig};
use proptest::prelude::*;

const KEYS: &[&str] = &[
    "path", "size", "label-size", "handle", "vendor", "device", "revision", "serial", "location", "date",
    "flush-hints", "health", "flags", "readonly", "bogus",
];

fn spec_strategy() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        "[0-9]{0,22}[KMGTkmgt]?(iB)?",
        "0x[0-9a-fA-F]{0,18}",
        "[a-z+-]{0,12}",
        any::<String>(),
    ];
    prop::collection::vec((prop::sample::select(KEYS), value), 0..8).prop_map(|pairs| {
        pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    })
}

proptest! {
    #[test]
    fn dimm_parser_never_panics(spec in spec_strategy()) {
        if let Ok(dimm) = DimmConfig::parse(&spec, 0) {
            // Anything accepted must also pass validation on its own.
            prop_assert!(dimm.validate().is_ok());
        }
    }

    #[test]
    fn raw_strings_never_panic(spec in any::<String>(), domain in any::<String>()) {
        let _ = DimmConfig::parse(&spec, 3);
        let _ = PlatformConfig::parse(&[spec.clone(), spec], &domain);
        let _ = parse_size(&domain);
    }

    #[test]
    fn accepted_platforms_are_valid(specs in prop::collection::vec(spec_strategy(), 0..4)) {
        if let Ok(config) = PlatformConfig::parse(&specs, "cpu_cache") {
            prop_assert!(config.validate().is_ok());
            prop_assert!(!config.dimms.is_empty());
        }
    }
}
