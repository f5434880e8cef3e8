//! How a guest run ended: the one type both backends use (`vnvdimm_control::outcome`).

pub use vnvdimm_control::outcome::GuestOutcome;
