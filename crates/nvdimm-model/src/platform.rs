//! The NVDIMM platform as the VMM sees it: DIMMs, the root device, and the
//! mailbox entry point that both backends call.

use std::sync::Arc;

use thiserror::Error;

use crate::ars::ArsEngine;
use crate::clock::{Clock, SystemClock};
use crate::config::PlatformConfig;
use crate::dimm::Dimm;
use crate::dsm::{no_functions, INTEL_UUID, ROOT_UUID};
use crate::event_log::{Event, EventKind, EventLog};
use crate::events::{DsmCallRecord, Notification};
use crate::layout::{LayoutError, PlatformLayout};
use crate::mailbox::{self, DsmRequest, MailboxMemory};
use crate::spa_map::SpaMap;
use crate::{dsm_firmware, dsm_intel, dsm_root, dsm_security};

#[derive(Debug, Error)]
pub enum PlatformError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("memory layout: {0}")]
    Layout(#[from] LayoutError),
}

pub struct NvdimmPlatform {
    pub(crate) config: PlatformConfig,
    pub(crate) layout: PlatformLayout,
    pub(crate) map: SpaMap,
    pub(crate) dimms: Vec<Dimm>,
    pub(crate) ars: ArsEngine,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) notifications: Vec<Notification>,
    pub(crate) log: EventLog,
}

impl NvdimmPlatform {
    /// A platform whose state lives only in memory (no backing or sidecar files touched).
    pub fn ephemeral(config: PlatformConfig, layout: PlatformLayout) -> Result<Self, PlatformError> {
        Self::ephemeral_with_clock(config, layout, Arc::new(SystemClock::new()))
    }

    pub fn ephemeral_with_clock(
        config: PlatformConfig,
        layout: PlatformLayout,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, PlatformError> {
        config.validate()?;
        layout.validate(&config)?;
        let dimms = config
            .dimms
            .iter()
            .zip(&layout.dimms)
            .map(|(c, p)| Dimm::ephemeral(c.clone(), p.clone()))
            .collect();
        Ok(Self::assemble(config, layout, dimms, clock))
    }

    /// The built-in default DIMMs on [`PlatformLayout::example`], in memory only: a
    /// ready platform for tests, benchmarks and examples.
    pub fn example() -> Self {
        let config = PlatformConfig::default_in(std::path::Path::new("/nonexistent"));
        let layout = PlatformLayout::example(&config);
        Self::ephemeral(config, layout).expect("the default platform on the example layout is valid")
    }

    pub(crate) fn assemble(config: PlatformConfig, layout: PlatformLayout, mut dimms: Vec<Dimm>, clock: Arc<dyn Clock>) -> Self {
        let live = config.firmware_activation == crate::config::FirmwareActivation::Live;
        for dimm in &mut dimms {
            dimm.firmware_session.live_activation = live;
        }
        NvdimmPlatform {
            map: SpaMap::new(&config, &layout),
            config,
            layout,
            dimms,
            ars: ArsEngine::default(),
            clock,
            notifications: Vec::new(),
            log: EventLog::default(),
        }
    }

    pub fn config(&self) -> &PlatformConfig {
        &self.config
    }

    pub fn layout(&self) -> &PlatformLayout {
        &self.layout
    }

    /// The system-address ranges the guest sees and the mapping to DIMM offsets.
    pub fn spa_map(&self) -> &SpaMap {
        &self.map
    }

    pub fn dimms(&self) -> &[Dimm] {
        &self.dimms
    }

    pub fn dimm_mut(&mut self, index: usize) -> Option<&mut Dimm> {
        self.dimms.get_mut(index)
    }

    /// Answers one `_DSM` call. Never panics on guest input; unknown UUIDs and
    /// handles get the answers the spec gives.
    pub fn call_dsm(&mut self, request: &DsmRequest) -> Vec<u8> {
        let (family, output) = if request.handle == 0 {
            if request.uuid == dsm_firmware::INTEL_BUS_UUID
                && self.config.firmware_activation == crate::config::FirmwareActivation::Live
            {
                let (output, changed) =
                    dsm_firmware::bus_call(&mut self.dimms, request.function, request.revision, &request.input);
                for index in changed {
                    if let Err(e) = self.dimms[index].save_state() {
                        self.log.push(EventKind::StateSaveFailed { dimm: index, error: e.to_string() });
                    }
                }
                ("intel-bus", output)
            } else if request.uuid == ROOT_UUID {
                let ctx = dsm_root::RootContext {
                    config: &self.config,
                    map: &self.map,
                    dimms: &mut self.dimms,
                    ars: &mut self.ars,
                    clock: self.clock.as_ref(),
                    notifications: &mut self.notifications,
                };
                ("root", dsm_root::call(ctx, request.function, request.revision, &request.input))
            } else {
                ("unknown", no_functions())
            }
        } else {
            let now = self.clock.now();
            match self.dimms.iter().position(|d| d.handle() == request.handle) {
                Some(index) if request.uuid == INTEL_UUID && is_security_call(&self.dimms[index], request) => {
                    let (mut output, erase) =
                        dsm_security::call(&mut self.dimms[index], request.function, &request.input, now);
                    if erase {
                        if let Err(e) = self.erase_media(index) {
                            self.log.push(EventKind::MediaEraseFailed { dimm: index, error: e.to_string() });
                            output = crate::dsm::status_only(crate::dsm::intel_status::HW_ERROR);
                        }
                    }
                    ("intel", output)
                }
                Some(index) if request.uuid == INTEL_UUID && is_firmware_call(&self.dimms[index], request) => {
                    let dimm = &mut self.dimms[index];
                    let (mut output, changed) = dsm_firmware::call(dimm, request.function, &request.input, now);
                    if changed && dimm.save_state().is_err() {
                        output = crate::dsm::status_only(crate::dsm::intel_status::HW_ERROR);
                    }
                    ("intel", output)
                }
                Some(index) if request.uuid == INTEL_UUID => (
                    "intel",
                    dsm_intel::call(
                        &mut self.dimms[index],
                        request.function,
                        request.revision,
                        &request.input,
                        &mut self.notifications,
                    ),
                ),
                Some(_) => ("unknown", no_functions()),
                // The AML only calls with handles it was generated for, so this is a
                // hand-crafted request: the Intel family has a status for it.
                None if request.uuid == INTEL_UUID => {
                    ("no-such-dimm", crate::dsm::status_only(crate::dsm::intel_status::NO_SUCH_DEVICE))
                }
                None => ("no-such-dimm", no_functions()),
            }
        };
        let status = (request.function != 0 && output.len() >= 4)
            .then(|| u32::from_le_bytes(output[..4].try_into().expect("4 bytes")));
        self.log.push(EventKind::Dsm(DsmCallRecord {
            handle: request.handle,
            family,
            function: request.function,
            revision: request.revision,
            status,
        }));
        output
    }

    /// Serves the request in `mem` (rung with `sequence`) and completes it.
    pub fn serve_mailbox(&mut self, mem: &mut dyn MailboxMemory, sequence: u32) {
        let output = match DsmRequest::read_from(mem) {
            Ok(request) => self.call_dsm(&request),
            // Too long for any function. The two families number "invalid input" differently.
            Err(_) => {
                let handle = mem.read_u32(mailbox::HANDLE);
                let code = if handle == 0 {
                    crate::dsm::root_status::INVALID_INPUT
                } else {
                    crate::dsm::intel_status::INVALID_INPUT
                };
                crate::dsm::status_only(code)
            }
        };
        mailbox::write_response(mem, &output, sequence);
    }

    /// Notifications raised since the last call (the VMM turns them into ACPI `Notify`).
    pub fn take_notifications(&mut self) -> Vec<Notification> {
        std::mem::take(&mut self.notifications)
    }

    /// The mailbox counter a backend increments to post `n` (docs/dsm-transport.md);
    /// None for a DIMM handle that is not on this platform.
    pub fn notify_counter(&self, n: &Notification) -> Option<crate::mailbox::NotifyCounter> {
        match n.target {
            crate::events::NotifyTarget::Root => crate::mailbox::root_notify_counter(n.code),
            crate::events::NotifyTarget::Dimm { handle } => {
                let index = self.dimms.iter().position(|d| d.handle() == handle)?;
                crate::mailbox::dimm_notify_counter(index)
            }
        }
    }

    /// Records something that happened outside the device model (flushes, machine checks, ...).
    pub fn log_event(&mut self, kind: EventKind) -> u64 {
        self.log.push(kind)
    }

    /// Events with a sequence number greater than `after`, oldest first.
    pub fn events_since(&self, after: u64) -> Vec<Event> {
        self.log.since(after)
    }
}

/// Whether `request` is an Intel-family call this DIMM offers (at the revision Linux
/// uses for it) to a function `family` claims: the security and firmware functions are
/// served outside dsm_intel because they need the clock or the whole platform.
fn offered_in(family: impl Fn(u32) -> bool, dimm: &crate::dimm::Dimm, request: &DsmRequest) -> bool {
    family(request.function)
        && request.revision == dsm_intel::revision_for(request.function)
        && dsm_intel::supported_functions(dimm, request.revision) & (1u64 << request.function) != 0
}

/// A security function (19-28) offered to this DIMM.
fn is_security_call(dimm: &crate::dimm::Dimm, request: &DsmRequest) -> bool {
    offered_in(|f| dsm_security::SECURITY_FUNCTIONS.contains(&f), dimm, request)
}

/// A firmware function (12-16, and 29-30 where offered) offered to this DIMM.
fn is_firmware_call(dimm: &crate::dimm::Dimm, request: &DsmRequest) -> bool {
    offered_in(|f| dsm_firmware::is_update_function(f) || dsm_firmware::is_activation_function(f), dimm, request)
}
