//! Runs `vnvdimm test`'s jobs as child processes, at most N at once. A child per
//! scenario keeps each VM's threads, panics and output apart, and a hung or crashed one
//! cannot take the others with it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nvdimm_model::sync::LockUnpoisoned;

use super::report::Outcome;

pub struct Job {
    pub name: String,
    pub command: Command,
    /// Where the child's stdout and stderr go (kept with `--keep`).
    pub log: PathBuf,
}

/// Runs every job, `parallel` at a time; `on_done` sees each outcome as it finishes.
/// Returns the outcomes in the jobs' order.
pub fn run_all(jobs: Vec<Job>, parallel: usize, mut on_done: impl FnMut(&Outcome, usize, usize)) -> Vec<Outcome> {
    let total = jobs.len();
    let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
    let queue = Arc::new(Mutex::new(jobs.into_iter().enumerate().collect::<VecDeque<_>>()));
    let (done_tx, done_rx) = mpsc::channel::<(usize, Outcome)>();
    let workers: Vec<_> = (0..parallel.max(1).min(total.max(1)))
        .map(|_| {
            let queue = queue.clone();
            let done = done_tx.clone();
            std::thread::spawn(move || loop {
                let Some((index, job)) = queue.lock_unpoisoned().pop_front() else { return };
                let _ = done.send((index, run_one(job)));
            })
        })
        .collect();
    drop(done_tx);
    let mut outcomes: Vec<Option<Outcome>> = vec![None; total];
    let mut finished = 0;
    for (index, outcome) in done_rx {
        finished += 1;
        on_done(&outcome, finished, total);
        outcomes[index] = Some(outcome);
    }
    for worker in workers {
        let _ = worker.join();
    }
    outcomes
        .into_iter()
        .zip(names)
        .map(|(o, name)| {
            o.unwrap_or_else(|| Outcome { name, passed: false, time: Default::default(), output: "the job never ran (a vnvdimm bug)".into() })
        })
        .collect()
}

fn run_one(mut job: Job) -> Outcome {
    let started = Instant::now();
    let failed = |output: String| Outcome { name: job.name.clone(), passed: false, time: started.elapsed(), output };
    let log = match std::fs::File::create(&job.log).and_then(|f| Ok((f.try_clone()?, f))) {
        Ok(pair) => pair,
        Err(e) => return failed(format!("cannot create the log {}: {e}", job.log.display())),
    };
    let status = job.command.stdin(Stdio::null()).stdout(Stdio::from(log.0)).stderr(Stdio::from(log.1)).status();
    let output = std::fs::read(&job.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    match status {
        Ok(status) => Outcome { name: job.name, passed: status.success(), time: started.elapsed(), output },
        Err(e) => failed(format!("cannot start {:?}: {e}", job.command.get_program())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(dir: &std::path::Path, name: &str, script: &str) -> Job {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        Job { name: name.into(), command, log: dir.join(format!("{name}.log")) }
    }

    #[test]
    fn outcomes_come_back_in_job_order_with_their_output() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = vec![
            job(dir.path(), "slow", "sleep 0.3; echo slow-out"),
            job(dir.path(), "fails", "echo boom >&2; exit 3"),
            job(dir.path(), "fast", "echo fast-out"),
        ];
        let mut seen = Vec::new();
        let outcomes = run_all(jobs, 2, |o, n, total| seen.push((o.name.clone(), n, total)));
        let summary: Vec<_> = outcomes.iter().map(|o| (o.name.as_str(), o.passed)).collect();
        assert_eq!(summary, [("slow", true), ("fails", false), ("fast", true)]);
        assert_eq!(outcomes[0].output.trim(), "slow-out");
        assert_eq!(outcomes[1].output.trim(), "boom");
        assert_eq!(seen.len(), 3);
        assert_eq!(seen.last().map(|s| (s.1, s.2)), Some((3, 3)));
        assert_ne!(seen[0].0, "slow", "finishing order, not job order, for the live lines");
    }
}
