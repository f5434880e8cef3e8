//! Requests from other threads (the control API) to the thread running the vCPU, which
//! alone owns the `VcpuFd`: machine checks to inject and power-off.
//!
//! A request is queued, then the vCPU thread is kicked with a real-time signal whose
//! handler sets `kvm_run.immediate_exit`. The exit loop drains the queue before every
//! KVM_RUN, so:
//! - a kick during KVM_RUN makes it return EINTR at once;
//! - a kick between the drain and the next KVM_RUN sets `immediate_exit`, so that
//!   KVM_RUN returns EINTR without entering the guest and the loop drains again.
//!
//! No request waits for the guest's next exit; the latency is one signal delivery plus
//! one KVM_RUN round trip (docs/poison-consumption.md has the measured numbers).
//!
//! Requests are served by the boot vCPU's thread (`enter`/`leave`). The other vCPUs'
//! threads (`enter_ap`/`leave_ap`, Linux boots only) take no requests; `stop_all` asks
//! every vCPU thread to leave its loop before its next KVM_RUN and kicks them all, so
//! one vCPU's power-off, reset or crash ends the whole machine.

use nvdimm_model::sync::LockUnpoisoned;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use vmm_sys_util::signal::Killable;

use kvm_bindings::kvm_run;
use nvdimm_model::event_log::MachineCheckKind;

/// What the vCPU thread is asked to do before its next KVM_RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    MachineCheck { gpa: u64, kind: MachineCheckKind },
    PowerOff,
}

/// Life cycle as the control API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RunState {
    Created = 0,
    Running = 1,
    ShuttingDown = 2,
    Stopped = 3,
}

#[derive(Default)]
pub struct VcpuControl {
    queue: Mutex<Vec<Request>>,
    /// Requests queued so far, and requests the vCPU thread has served.
    queued: AtomicU64,
    served: Mutex<u64>,
    /// Signalled when `served` grows or the state changes (`wait_served` sleeps on it).
    progress: Condvar,
    state: AtomicU8,
    /// The thread inside `run_loop::run`, while it is there.
    thread: Mutex<Option<libc::pthread_t>>,
    /// The other vCPUs' threads, while they run.
    aps: Mutex<Vec<libc::pthread_t>>,
    /// Set by `stop_all`: every vCPU thread leaves its loop.
    stopping: AtomicBool,
}

thread_local! {
    // Const-initialised and destructor-free, so the signal handler may touch it.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = KVM_RUN.with(|r| r.get());
    if !run.is_null() {
        // SAFETY: set by `enter` on this thread to its vCPU's kvm_run mapping, cleared by
        // `leave` before the mapping can go away; a single byte store.
        unsafe { std::ptr::write_volatile(&mut (*run).immediate_exit, 1) };
    }
}

/// The kick signal (the first real-time signal), handler installed once per process.
fn kick_signal() -> libc::c_int {
    static INSTALL: Once = Once::new();
    let signal = vmm_sys_util::signal::SIGRTMIN();
    INSTALL.call_once(|| {
        if let Err(e) = vmm_sys_util::signal::register_signal_handler(signal, on_kick) {
            log::debug!("cannot install the vCPU kick signal handler: {e}");
        }
    });
    signal
}

impl VcpuControl {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock_queue(&self) -> MutexGuard<'_, Vec<Request>> {
        self.queue.lock_unpoisoned()
    }

    pub fn state(&self) -> RunState {
        match self.state.load(Ordering::SeqCst) {
            0 => RunState::Created,
            1 => RunState::Running,
            2 => RunState::ShuttingDown,
            _ => RunState::Stopped,
        }
    }

    pub fn set_state(&self, state: RunState) {
        self.state.store(state as u8, Ordering::SeqCst);
        // Taken so that a waiter between its state check and its wait cannot miss this.
        drop(self.served.lock_unpoisoned());
        self.progress.notify_all();
    }

    /// Queues `request` and kicks the vCPU thread; returns a ticket for `wait_served`.
    /// Refused once the vCPU has stopped.
    pub fn request(&self, request: Request) -> Result<u64, RunState> {
        let state = self.state();
        if state == RunState::Stopped {
            return Err(state);
        }
        let ticket = {
            let mut queue = self.lock_queue();
            queue.push(request);
            self.queued.fetch_add(1, Ordering::SeqCst) + 1
        };
        self.kick();
        Ok(ticket)
    }

    /// Waits until the vCPU thread has served request `ticket` (true) or has stopped or
    /// `timeout` passed (false).
    pub fn wait_served(&self, ticket: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut served = self.served.lock_unpoisoned();
        loop {
            if *served >= ticket {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.state() == RunState::Stopped || left.is_zero() {
                return false;
            }
            served = match self.progress.wait_timeout(served, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    fn kick(&self) {
        let signal = kick_signal();
        let thread = self.thread.lock_unpoisoned();
        if let Some(thread) = *thread {
            // The thread is inside run_loop::run (it clears this under the same lock
            // before leaving), so the pthread_t is live.
            kick_thread(thread, signal);
        }
    }

    /// Asks every vCPU thread to leave its loop, and kicks them out of KVM_RUN (an AP
    /// waiting for its SIPI blocks inside KVM_RUN until a signal arrives).
    pub fn stop_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.kick();
        let signal = kick_signal();
        for &thread in self.aps.lock_unpoisoned().iter() {
            // Registered by `enter_ap` and removed under this lock by `leave_ap` before
            // the thread ends, so the pthread_t is live.
            kick_thread(thread, signal);
        }
    }

    /// Whether `stop_all` was called since the boot vCPU entered.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Everything queued, oldest first.
    pub fn drain(&self) -> Vec<Request> {
        std::mem::take(&mut *self.lock_queue())
    }

    /// Called by the vCPU thread after it served what `drain` gave it.
    pub fn mark_served(&self, count: usize) {
        *self.served.lock_unpoisoned() += count as u64;
        self.progress.notify_all();
    }

    /// Called by the vCPU thread when it starts running `run`.
    ///
    /// # Safety
    /// `run` must stay mapped until the matching `leave` on this same thread.
    pub unsafe fn enter(&self, run: *mut kvm_run) {
        self.stopping.store(false, Ordering::SeqCst);
        // SAFETY: forwarded from the caller.
        unsafe { enter_thread(run) };
        // SAFETY: pthread_self has no preconditions.
        *self.thread.lock_unpoisoned() = Some(unsafe { libc::pthread_self() });
        if self.state() == RunState::Created {
            self.set_state(RunState::Running);
        }
    }

    /// Called by the vCPU thread when `run` returns: no more kicks, later requests refused.
    pub fn leave(&self) {
        *self.thread.lock_unpoisoned() = None;
        KVM_RUN.with(|r| r.set(std::ptr::null_mut()));
        self.set_state(RunState::Stopped);
    }

    /// Called by an application processor's thread before its first KVM_RUN.
    ///
    /// # Safety
    /// `run` must stay mapped until the matching `leave_ap` on this same thread.
    pub unsafe fn enter_ap(&self, run: *mut kvm_run) {
        // SAFETY: forwarded from the caller.
        unsafe { enter_thread(run) };
        // SAFETY: pthread_self has no preconditions.
        self.aps.lock_unpoisoned().push(unsafe { libc::pthread_self() });
    }

    /// Called by an application processor's thread when its loop ends.
    pub fn leave_ap(&self) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        self.aps.lock_unpoisoned().retain(|&t| t != me);
        KVM_RUN.with(|r| r.set(std::ptr::null_mut()));
    }
}

/// A vCPU thread known by its pthread_t, for vmm-sys-util's `Killable`.
struct VcpuThread(libc::pthread_t);

// SAFETY: callers pass only pthread_ts of threads that are alive while they hold the
// lock the thread removes itself under (see `kick` and `stop_all`).
unsafe impl Killable for VcpuThread {
    fn pthread_handle(&self) -> libc::pthread_t {
        self.0
    }
}

fn kick_thread(thread: libc::pthread_t, signal: libc::c_int) {
    if let Err(e) = VcpuThread(thread).kill(signal) {
        log::debug!("kicking a vCPU thread failed: {e}");
    }
}

/// Points the kick handler at this thread's `kvm_run` and lets the kick signal in.
///
/// # Safety
/// `run` must stay mapped until the thread clears `KVM_RUN` again.
unsafe fn enter_thread(run: *mut kvm_run) {
    kick_signal();
    KVM_RUN.with(|r| r.set(run));
    // The kick signal must reach this thread even if the caller blocked it.
    if let Err(e) = vmm_sys_util::signal::unblock_signal(kick_signal()) {
        log::debug!("cannot unblock the vCPU kick signal: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_queue_in_order_until_the_vcpu_stops() {
        let c = VcpuControl::new();
        assert_eq!(c.state(), RunState::Created);
        let mc = Request::MachineCheck { gpa: 0x1000, kind: MachineCheckKind::ActionOptional };
        assert_eq!(c.request(mc), Ok(1));
        assert_eq!(c.request(Request::PowerOff), Ok(2));
        assert!(!c.wait_served(1, Duration::from_millis(1)), "nothing served yet");
        assert_eq!(c.drain(), vec![mc, Request::PowerOff]);
        c.mark_served(2);
        assert!(c.wait_served(2, Duration::ZERO));
        assert!(c.drain().is_empty());
        c.leave();
        assert_eq!(c.request(Request::PowerOff), Err(RunState::Stopped));
        assert!(c.drain().is_empty(), "a refused request is not queued");
    }
}
