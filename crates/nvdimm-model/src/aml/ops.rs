//! AML opcodes that `acpi_tables::aml` lacks, written through its public `Aml` trait.

use acpi_tables::{Aml, AmlSink};

const EXT_OP_PREFIX: u8 = 0x5b;
const STALL_OP: u8 = 0x21;
const INCREMENT_OP: u8 = 0x75;
const LAND_OP: u8 = 0x90;

/// Already-encoded AML, so pieces can be built one at a time and owned by a `Vec`.
pub struct Raw(pub Vec<u8>);

impl Raw {
    pub fn of(aml: &dyn Aml) -> Self {
        let mut bytes = Vec::new();
        aml.to_aml_bytes(&mut bytes);
        Raw(bytes)
    }
}

impl Aml for Raw {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

/// Borrows a list of encoded pieces the way `acpi_tables` constructors want them.
pub fn refs(items: &[Raw]) -> Vec<&dyn Aml> {
    items.iter().map(|r| r as &dyn Aml).collect()
}

/// `Stall(usec)`: busy-waits; ACPI allows at most 100 us per call.
pub struct Stall(pub u8);

impl Aml for Stall {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.byte(EXT_OP_PREFIX);
        sink.byte(STALL_OP);
        self.0.to_aml_bytes(sink);
    }
}

/// `Increment(target)`.
pub struct Increment<'a>(pub &'a dyn Aml);

impl Aml for Increment<'_> {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.byte(INCREMENT_OP);
        self.0.to_aml_bytes(sink);
    }
}

/// `LAnd(a, b)`: both operands are always evaluated (AML does not short-circuit).
pub struct LAnd<'a>(pub &'a dyn Aml, pub &'a dyn Aml);

impl Aml for LAnd<'_> {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.byte(LAND_OP);
        self.0.to_aml_bytes(sink);
        self.1.to_aml_bytes(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acpi_tables::aml::{Local, ONE, ZERO};

    fn enc(aml: &dyn Aml) -> Vec<u8> {
        Raw::of(aml).0
    }

    #[test]
    fn encodings() {
        assert_eq!(enc(&Stall(10)), [0x5b, 0x21, 0x0a, 0x0a]);
        assert_eq!(enc(&Increment(&Local(2))), [0x75, 0x62]);
        assert_eq!(enc(&LAnd(&ONE, &ZERO)), [0x90, 0x01, 0x00]);
    }
}
