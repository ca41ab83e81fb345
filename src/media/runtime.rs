//! The runtime that moves RTP: worker threads of its own, in the real-time `SCHED_RR`
//! class where the system allows it, as Asterisk (`-p`) and FreeSWITCH (`-rp`) run theirs.
//!
//! Why: a packet that arrives wakes the media task's thread, and that thread must run
//! now, not when the CPU's current task is done. Measured on the 2-core machines here
//! (benches/RESULTS.md, "Media jitter while transcribing"): with any CPU-bound
//! `SCHED_IDLE` work beside the calls — whisper, or a plain integer loop — the added jitter
//! of 500 calls went from p99 0.20 ms to 3 ms, because a woken normal-class thread waited
//! for the scheduler tick (4 ms) to get a core from the idle-class one. Threads of the
//! real-time class preempt at once: the same load left p99 unchanged. Signalling, the API
//! and the database stay on the main runtime at normal priority, so only the per-packet
//! work is favoured, and the kernel's real-time throttling (95 % of each second by
//! default) still leaves every core to the rest if a media thread ever spun.
//!
//! The sockets of a session are registered with this runtime's reactor (the session is
//! created inside [`MediaRuntime::handle`]'s context), so the epoll wake-up happens on a
//! real-time thread too. `SCHED_RESET_ON_FORK` makes any thread started from a media
//! thread start in the normal class.
//!
//! Without the permission (not root, no `CAP_SYS_NICE`, `RLIMIT_RTPRIO` 0) the threads stay
//! in the normal class and the hotline says so once at start-up and in `/healthz`.
//!
//! The prices. CPU: a thread that runs as soon as a packet wakes it handles fewer
//! packets per wake-up (about 10 % more CPU per call in `media_load`, up to twice the
//! media threads' CPU in `callflow_load` on a saturated 2-core box). And priority: with
//! more calls than the cores can move, the calls in progress keep their
//! audio and signalling (new calls, the API) gets what is left, down to the throttling's
//! 5 %. `limits.max_calls` is what keeps the load within the cores; 1,000 bridged,
//! recorded calls take about one of these machines' two (benches/RESULTS.md).

use serde::Serialize;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::runtime::{Builder, Handle, Runtime};

/// How long start-up waits for the worker threads to have set their class.
const START_WAIT: Duration = Duration::from_secs(5);

/// How the media threads are scheduled, for the logs and `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scheduling {
    pub threads: usize,
    /// The `SCHED_RR` priority they run at; `None`: the normal class.
    pub realtime_priority: Option<u8>,
    /// Why they are not real-time although it was asked for.
    pub warning: Option<String>,
}

/// Threads that have run the start hook, and the first refusal if any.
#[derive(Default)]
struct Started {
    threads: usize,
    refused: Option<io::Error>,
}

/// The media runtime; shut down (in the background) when dropped.
pub struct MediaRuntime {
    runtime: Option<Runtime>,
    handle: Handle,
    scheduling: Scheduling,
}

impl MediaRuntime {
    /// Starts `threads` workers; `priority` 1–99 asks for `SCHED_RR` at that priority, 0
    /// keeps the normal class.
    pub fn start(threads: usize, priority: u8) -> io::Result<MediaRuntime> {
        let threads = threads.max(1);
        let started: Arc<(Mutex<Started>, Condvar)> = Arc::default();
        let on_start = started.clone();
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("hotline-media")
            .enable_all()
            .on_thread_start(move || {
                let result = if priority == 0 {
                    Ok(())
                } else {
                    set_realtime(priority)
                };
                let (lock, cv) = &*on_start;
                if let Ok(mut s) = lock.lock() {
                    s.threads += 1;
                    if let Err(e) = result {
                        s.refused.get_or_insert(e);
                    }
                    cv.notify_all();
                }
            })
            .build()?;
        // The workers start on their own threads: wait (at start-up, briefly) until each
        // has asked, so that what is reported is what they got.
        let (lock, cv) = &*started;
        let refused = lock
            .lock()
            .ok()
            .and_then(|s| {
                cv.wait_timeout_while(s, START_WAIT, |s| s.threads < threads)
                    .ok()
            })
            .and_then(|(mut s, _)| s.refused.take());
        let warning = refused.map(|e| {
            format!(
                "media threads run in the normal scheduling class ({e}): grant CAP_SYS_NICE \
                 or LimitRTPRIO={priority} to the service; CPU-bound work beside the calls \
                 (transcription) adds jitter"
            )
        });
        let scheduling = Scheduling {
            threads,
            realtime_priority: (priority > 0 && warning.is_none()).then_some(priority),
            warning,
        };
        Ok(MediaRuntime {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            scheduling,
        })
    }

    /// Where media sessions are spawned.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    pub fn scheduling(&self) -> &Scheduling {
        &self.scheduling
    }

    /// Stops the threads once the sessions have ended (their tasks are done; anything
    /// left is dropped without waiting): what dropping it does, said where it happens.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for MediaRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which a runtime thread may not do: the hotline is
        // dropped from async code. The sessions have been stopped by then.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Puts the calling thread in `SCHED_RR` at `priority`, reset to the normal class in any
/// thread it starts.
pub fn set_realtime(priority: u8) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: a plain syscall on the calling thread (pid 0 = self) with a valid parameter
    // struct that outlives the call.
    let rc =
        unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The calling thread's scheduling policy (`SCHED_RR`, …) without the reset-on-fork flag.
pub fn current_policy() -> i32 {
    // SAFETY: a plain syscall on the calling thread.
    unsafe { libc::sched_getscheduler(0) & !libc::SCHED_RESET_ON_FORK }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        // SAFETY: no arguments, no memory.
        unsafe { libc::geteuid() == 0 }
    }

    /// The work spawned on the handle runs on the media threads, real-time when the
    /// process may be (the tests run as root on the machines here and in CI).
    #[test]
    fn sessions_run_on_real_time_media_threads() {
        let media = MediaRuntime::start(2, 10).unwrap();
        let (name, policy, priority) = media.handle().block_on_spawned(|| {
            // SAFETY: plain syscall with a valid out-parameter.
            let mut p = libc::sched_param { sched_priority: 0 };
            unsafe { libc::sched_getparam(0, &mut p) };
            (
                std::thread::current().name().map(str::to_owned),
                current_policy(),
                p.sched_priority,
            )
        });
        assert_eq!(name.as_deref(), Some("hotline-media"));
        if is_root() {
            assert_eq!(media.scheduling().realtime_priority, Some(10));
            assert_eq!(media.scheduling().warning, None);
            assert_eq!(policy, libc::SCHED_RR);
            assert_eq!(priority, 10);
        } else {
            assert_eq!(media.scheduling().realtime_priority, None);
            assert!(media.scheduling().warning.is_some());
            assert_eq!(policy, libc::SCHED_OTHER);
        }
        // A thread started from a media thread is back in the normal class.
        let child = media
            .handle()
            .block_on_spawned(|| std::thread::spawn(current_policy).join().unwrap());
        assert_eq!(child, libc::SCHED_OTHER);
    }

    #[test]
    fn priority_zero_keeps_the_normal_class() {
        let media = MediaRuntime::start(1, 0).unwrap();
        let policy = media.handle().block_on_spawned(current_policy);
        assert_eq!(policy, libc::SCHED_OTHER);
        assert_eq!(
            media.scheduling(),
            &Scheduling {
                threads: 1,
                realtime_priority: None,
                warning: None
            }
        );
    }

    /// A refused request (here: a priority out of the class's range, which root is
    /// refused too) leaves the threads working in the normal class, with the reason.
    #[test]
    fn a_refused_priority_is_a_warning_not_a_failure() {
        let media = MediaRuntime::start(1, 100).unwrap();
        let policy = media.handle().block_on_spawned(current_policy);
        assert_eq!(policy, libc::SCHED_OTHER);
        assert_eq!(media.scheduling().realtime_priority, None);
        let warning = media.scheduling().warning.clone().unwrap();
        assert!(warning.contains("normal scheduling class"), "{warning}");
    }

    /// Dropping the runtime from async code (as the hotline is dropped) does not panic.
    #[tokio::test]
    async fn dropped_from_async_code() {
        let media = MediaRuntime::start(1, 0).unwrap();
        let n = media.handle().spawn(async { 7 }).await.unwrap();
        assert_eq!(n, 7);
        drop(media);
    }

    trait SpawnedOn {
        fn block_on_spawned<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T;
    }

    impl SpawnedOn for Handle {
        fn block_on_spawned<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
            let (tx, rx) = std::sync::mpsc::channel();
            self.spawn(async move {
                let _ = tx.send(f());
            });
            rx.recv().unwrap()
        }
    }
}
