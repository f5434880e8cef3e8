//! The host's side of firmware update (control API, `vnvdimm ctl firmware`): what each
//! DIMM runs and has staged, where an update stands, and failures to provoke.

use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::config::FirmwareActivation;
use crate::firmware::{activation, FirmwareFault, Update};
use crate::NvdimmPlatform;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HostFirmwareError {
    #[error("no nvdimm #{index}: the platform has {count} nvdimms, numbered from 0")]
    NoSuchDimm { index: usize, count: usize },
    #[error("nvdimm #{index}: verify time {ms} ms is above the {max} ms ndctl waits at most")]
    VerifyTooLong { index: usize, ms: u64, max: u64 },
    #[error("fail_next: activation failures need live activation, but the platform runs --firmware-activation next-boot")]
    NoLiveActivation,
}

/// What `GET /dimms/{i}/firmware` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirmwareView {
    pub running_version: u64,
    /// A verified image waiting for activation; null when none.
    pub staged_version: Option<u64>,
    /// idle, receiving, verifying or done.
    pub update: &'static str,
    pub received_bytes: u64,
    pub armed: bool,
    /// The last live activation on this DIMM: none, success, not_staged or error.
    pub last_activation: &'static str,
    pub live_activation: bool,
    pub verify_time_ms: u64,
    pub pending_fault: Option<FirmwareFault>,
}

/// A host change; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirmwareChange {
    /// Some(Some(f)): provoke `f` once; Some(None): cancel a provoked failure.
    pub fail_next: Option<Option<FirmwareFault>>,
    pub verify_time: Option<Duration>,
}

impl NvdimmPlatform {
    pub fn firmware_view(&self, index: usize) -> Result<FirmwareView, HostFirmwareError> {
        let dimm =
            self.dimms.get(index).ok_or(HostFirmwareError::NoSuchDimm { index, count: self.dimms.len() })?;
        let s = &dimm.firmware_session;
        let (update, received) = match &s.update {
            Update::Idle => ("idle", 0),
            Update::Receiving { image, .. } => ("receiving", image.len() as u64),
            Update::Verifying { .. } => ("verifying", 0),
            Update::Done { .. } => ("done", 0),
        };
        Ok(FirmwareView {
            running_version: dimm.state.firmware.running,
            staged_version: dimm.state.firmware.staged,
            update,
            received_bytes: received,
            armed: s.armed,
            last_activation: match s.last_result {
                activation::RESULT_SUCCESS => "success",
                activation::RESULT_NOT_STAGED => "not_staged",
                activation::RESULT_ERROR => "error",
                _ => "none",
            },
            live_activation: s.live_activation,
            verify_time_ms: s.verify_time.as_millis() as u64,
            pending_fault: s.fault,
        })
    }

    /// Applies a host change, all or nothing.
    pub fn set_firmware(&mut self, index: usize, change: &FirmwareChange) -> Result<FirmwareView, HostFirmwareError> {
        let count = self.dimms.len();
        let max_ms = u64::from(crate::firmware::MAX_QUERY_TIME_US) / 1000;
        if index >= count {
            return Err(HostFirmwareError::NoSuchDimm { index, count });
        }
        if let Some(t) = change.verify_time.filter(|t| t.as_millis() as u64 > max_ms) {
            return Err(HostFirmwareError::VerifyTooLong { index, ms: t.as_millis() as u64, max: max_ms });
        }
        if change.fail_next == Some(Some(FirmwareFault::Activation))
            && self.config.firmware_activation == FirmwareActivation::NextBoot
        {
            return Err(HostFirmwareError::NoLiveActivation);
        }
        let session = &mut self.dimms[index].firmware_session;
        if let Some(f) = change.fail_next {
            session.fault = f;
        }
        if let Some(t) = change.verify_time {
            session.verify_time = t;
        }
        self.firmware_view(index)
    }
}
