//! Host-side SMART health changes on the platform (control API): validate everything
//! first, apply, queue the DIMM's health notification and log the change, so a caller
//! that gets an error knows nothing changed.

use thiserror::Error;

use crate::dimm::DimmError;
use crate::event_log::EventKind;
use crate::health::{SmartHealth, SmartThresholds};
use crate::NvdimmPlatform;

#[derive(Debug, Error)]
pub enum HostHealthError {
    #[error("no nvdimm #{index}: the platform has {count} nvdimms, numbered from 0")]
    NoSuchDimm { index: usize, count: usize },
    /// The values are not valid (a percentage above 100, too much vendor data, ...).
    #[error("nvdimm #{index}: {source}")]
    Invalid {
        index: usize,
        #[source]
        source: crate::health::HealthError,
    },
    /// The DIMM state could not be saved; the step that failed was rolled back (when
    /// both are given, thresholds are applied first and stay applied).
    #[error("nvdimm #{index}: {source}")]
    Dimm {
        index: usize,
        #[source]
        source: DimmError,
    },
}

/// What [`NvdimmPlatform::set_dimm_health`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthChange {
    /// A DIMM Notify 0x81 was queued (take it with `take_notifications`).
    pub notified: bool,
}

impl NvdimmPlatform {
    /// Host: replaces the SMART values and/or the alarm thresholds of DIMM `index`.
    /// Both are validated before either is applied. When the guest-visible health
    /// changes, the DIMM's health notification is queued for the backend to raise;
    /// every applied change is logged as `HealthChanged`.
    pub fn set_dimm_health(
        &mut self,
        index: usize,
        health: Option<SmartHealth>,
        thresholds: Option<SmartThresholds>,
    ) -> Result<HealthChange, HostHealthError> {
        let count = self.dimms.len();
        let dimm = self.dimms.get_mut(index).ok_or(HostHealthError::NoSuchDimm { index, count })?;
        let invalid = |source| HostHealthError::Invalid { index, source };
        if let Some(h) = &health {
            h.validate().map_err(invalid)?;
        }
        if let Some(t) = &thresholds {
            t.validate().map_err(invalid)?;
        }
        let dimm_err = |source| HostHealthError::Dimm { index, source };
        let mut queued = Vec::new();
        if let Some(t) = thresholds {
            queued.extend(dimm.set_thresholds(t).map_err(dimm_err)?);
        }
        if let Some(h) = health {
            queued.extend(dimm.set_health(h).map_err(dimm_err)?);
        }
        // Setting thresholds then health can report the same event twice; one Notify is enough.
        queued.dedup();
        let notified = !queued.is_empty();
        self.notifications.extend(queued);
        self.log.push(EventKind::HealthChanged { dimm: index });
        Ok(HealthChange { notified })
    }

    /// Speed of full scrubs started from now on, in bytes per second.
    pub fn ars_rate(&self) -> u64 {
        self.config.ars.scrub_rate
    }

    /// Whether an Address Range Scrub is running now.
    pub fn ars_running(&self) -> bool {
        self.ars.running(self.clock.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Notification, NotifyTarget, NOTIFY_DIMM_HEALTH};
    use crate::health::HealthState;

    fn platform() -> NvdimmPlatform {
        NvdimmPlatform::example()
    }

    #[test]
    fn a_visible_change_queues_one_notify_and_logs() {
        let mut p = platform();
        let health = SmartHealth::with_state(HealthState::Critical);
        let change = p.set_dimm_health(1, Some(health), None).unwrap();
        assert!(change.notified);
        let handle = p.dimms()[1].handle();
        assert_eq!(
            p.take_notifications(),
            vec![Notification { target: NotifyTarget::Dimm { handle }, code: NOTIFY_DIMM_HEALTH }]
        );
        assert_eq!(p.dimms()[1].smart().state, HealthState::Critical);
        assert_eq!(p.events_since(0).last().unwrap().kind, EventKind::HealthChanged { dimm: 1 });
    }

    #[test]
    fn an_invisible_change_is_logged_without_notify() {
        let mut p = platform();
        let health = SmartHealth { life_used_percent: 7, ..p.dimms()[0].state.health.clone() };
        assert!(!p.set_dimm_health(0, Some(health), None).unwrap().notified);
        assert!(p.take_notifications().is_empty());
        assert_eq!(p.dimms()[0].smart().life_used_percent, 7);
        assert_eq!(p.events_since(0).len(), 1);
    }

    #[test]
    fn invalid_values_change_nothing() {
        let mut p = platform();
        let before = p.dimms()[0].state.clone();
        let health = SmartHealth::with_state(HealthState::Fatal);
        let thresholds = SmartThresholds { spares_percent: 101, ..SmartThresholds::default() };
        let err = p.set_dimm_health(0, Some(health), Some(thresholds)).unwrap_err();
        assert!(matches!(err, HostHealthError::Invalid { index: 0, .. }), "{err}");
        assert!(err.to_string().contains("101"), "{err}");
        assert_eq!(p.dimms()[0].state, before);
        assert!(p.events_since(0).is_empty());
        assert!(matches!(p.set_dimm_health(2, None, None), Err(HostHealthError::NoSuchDimm { index: 2, count: 2 })));
    }

    #[test]
    fn ars_rate_reads_back() {
        let mut p = platform();
        p.set_ars_rate(12345).unwrap();
        assert_eq!(p.ars_rate(), 12345);
        assert!(!p.ars_running());
    }
}
