//! Locking that survives a panicked holder. The VMM's threads (vCPUs, API, agent,
//! pollers) share the platform and device state; one thread's panic must not turn
//! every later lock into a second panic that takes the VM down with the guest's data
//! unflushed. The guarded state changes only through methods that keep it valid at
//! every step where they can panic, so the value behind a poisoned lock is usable.

use std::sync::{Mutex, MutexGuard};

pub trait LockUnpoisoned<T: ?Sized> {
    /// Locks, taking the value over from a holder that panicked.
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockUnpoisoned<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_lock_whose_holder_panicked_still_gives_the_value() {
        let shared = Arc::new(Mutex::new(41));
        let holder = shared.clone();
        let _ = std::thread::spawn(move || {
            let mut value = holder.lock().unwrap();
            *value += 1;
            panic!("a holder that panics poisons the lock");
        })
        .join();
        assert!(shared.is_poisoned());
        assert_eq!(*shared.lock_unpoisoned(), 42);
    }
}
