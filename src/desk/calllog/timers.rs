//! The call log's clock, tested without sleeping: the writer runs on tokio's paused clock
//! against a scripted database, so the bound on a caller's wait, the retry backoff and the
//! retry at shutdown are checked to the millisecond, and each test takes no wall time. The
//! spool is the real file in a temporary directory.

use super::*;
use std::sync::Mutex;

/// What the scripted database does with the next transaction.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// Commits at once.
    Commit,
    /// Fails at once, as a lost connection does (transient).
    Fail,
    /// Never answers.
    Hang,
    /// Commits after this long.
    Slow(Duration),
}

/// A database that answers from a script (then commits), and notes when each transaction
/// was started and what committed.
struct Script {
    start: Instant,
    answers: Mutex<VecDeque<Answer>>,
    /// When each transaction began (since `start`) and how many writes it held.
    tries: Mutex<Vec<(Duration, usize)>>,
    /// What committed, and when (milliseconds since the start).
    committed: Arc<Mutex<Vec<(u128, Op)>>>,
}

impl Script {
    fn new(answers: &[Answer]) -> Arc<Script> {
        Arc::new(Script {
            start: Instant::now(),
            answers: Mutex::new(answers.iter().copied().collect()),
            tries: Mutex::new(Vec::new()),
            committed: Arc::default(),
        })
    }

    fn then(&self, answers: &[Answer]) {
        self.answers.lock().unwrap().extend(answers);
    }

    /// When each transaction began, in milliseconds since the start.
    fn tries_ms(&self) -> Vec<u128> {
        let tries = self.tries.lock().unwrap();
        tries.iter().map(|(t, _)| t.as_millis()).collect()
    }

    fn committed(&self) -> Vec<String> {
        let committed = self.committed.lock().unwrap();
        committed.iter().map(|(_, op)| call_id(op)).collect()
    }

    /// When each write committed, in milliseconds since the start.
    fn committed_ms(&self) -> Vec<u128> {
        let committed = self.committed.lock().unwrap();
        committed.iter().map(|(t, _)| *t).collect()
    }

    fn elapsed_ms(&self) -> u128 {
        self.start.elapsed().as_millis()
    }
}

impl Sink for Script {
    fn apply(&self, ops: Vec<Op>) -> Applying {
        let answer = self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Answer::Commit);
        self.tries
            .lock()
            .unwrap()
            .push((self.start.elapsed(), ops.len()));
        let committed = self.committed.clone();
        let start = self.start;
        Box::pin(async move {
            match answer {
                Answer::Commit => {}
                Answer::Fail => return Err(Failure::Transient("connection refused".into())),
                Answer::Hang => std::future::pending::<()>().await,
                Answer::Slow(d) => tokio::time::sleep(d).await,
            }
            let at = start.elapsed().as_millis();
            committed
                .lock()
                .unwrap()
                .extend(ops.into_iter().map(|op| (at, op)));
            Ok(())
        })
    }
}

fn call_id(op: &Op) -> String {
    match op {
        Op::Arrived { call_id, .. }
        | Op::Progress { call_id, .. }
        | Op::Voicemail { call_id, .. } => call_id.clone(),
    }
}

struct Rig {
    script: Arc<Script>,
    log: CallLog,
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
    dir: tempfile::TempDir,
}

impl Rig {
    fn start(answers: &[Answer]) -> Rig {
        let script = Script::new(answers);
        let dir = tempfile::tempdir().unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let (log, task) = CallLog::spawn_on(
            script.clone(),
            dir.path().to_path_buf(),
            DEFAULT_BOUND,
            stop_rx,
        )
        .unwrap();
        Rig {
            script,
            log,
            task,
            stop,
            dir,
        }
    }

    fn arrive(&self, call_id: &str) -> Ack {
        self.log.arrived(NewCall {
            call_id: Some(call_id.into()),
            arrived_at: chrono::Utc::now(),
            phone: "+79780000001".into(),
            caller_name: None,
        })
    }

    /// Lines in the spool file.
    fn spooled(&self) -> usize {
        let text = std::fs::read_to_string(self.dir.path().join(SPOOL_FILE)).unwrap();
        text.lines().count()
    }

    /// Asks the task to stop and waits until it has.
    async fn shut_down(&mut self) {
        self.stop.send(true).unwrap();
        (&mut self.task).await.unwrap();
    }

    /// Waits (on the paused clock: no wall time) until nothing is pending.
    async fn drained(&self) {
        for _ in 0..10_000 {
            if self.log.pending() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} writes still pending", self.log.pending());
    }
}

#[tokio::test(start_paused = true)]
async fn a_database_that_hangs_keeps_a_caller_waiting_exactly_the_bound() {
    let rig = Rig::start(&[Answer::Hang]);
    let answer = rig.arrive("a").await.unwrap();
    assert_eq!(answer, Durable::Spooled);
    assert_eq!(
        rig.script.elapsed_ms(),
        2000,
        "answered at the bound, not before"
    );
    assert_eq!(rig.spooled(), 1);

    // The hung try is given up at the bound; the next one, half a second on, commits.
    rig.drained().await;
    assert_eq!(rig.script.tries_ms(), [0, 2500]);
    assert_eq!(rig.script.committed_ms(), [2500]);
    assert_eq!(
        rig.spooled(),
        0,
        "the spool is emptied once all of it is in"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_from_half_a_second_doubling_to_five() {
    let rig = Rig::start(&[Answer::Fail; 7]);
    // A failure answers the caller from the spool at once.
    assert_eq!(rig.arrive("a").await.unwrap(), Durable::Spooled);
    assert_eq!(rig.script.elapsed_ms(), 0);

    rig.drained().await;
    // Gaps: 0.5, 1, 2, 4, 5, 5, 5 s.
    assert_eq!(
        rig.script.tries_ms(),
        [0, 500, 1500, 3500, 7500, 12500, 17500, 22500]
    );
    assert_eq!(rig.script.committed(), ["a"]);
    assert_eq!(rig.spooled(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_commit_resets_the_backoff() {
    let rig = Rig::start(&[Answer::Fail, Answer::Fail, Answer::Fail]);
    let _ = rig.arrive("a").await.unwrap();
    rig.drained().await;
    assert_eq!(rig.script.tries_ms(), [0, 500, 1500, 3500]);

    tokio::time::sleep(Duration::from_secs(10)).await;
    rig.script.then(&[Answer::Fail]);
    let t = rig.script.elapsed_ms();
    let _ = rig.arrive("b").await.unwrap();
    rig.drained().await;
    let tries = rig.script.tries_ms();
    assert_eq!(tries[4..], [t, t + 500], "half a second again, not five");
    assert_eq!(rig.script.committed(), ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn writes_queued_behind_a_slow_commit_go_in_the_next_batch_and_keep_their_bound() {
    let rig = Rig::start(&[
        Answer::Slow(Duration::from_millis(1500)),
        Answer::Slow(Duration::from_millis(1800)),
    ]);
    let a = rig.arrive("a");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let b = rig.arrive("b");
    let c = rig.arrive("c");
    assert_eq!(a.await.unwrap(), Durable::Stored);
    assert_eq!(rig.script.elapsed_ms(), 1500);

    // b and c wait in one batch that starts at 1.5 s and takes 1.8 s: their callers are
    // answered from the spool at their bound (3 s), and the batch in flight still commits.
    assert_eq!(b.await.unwrap(), Durable::Spooled);
    assert_eq!(c.await.unwrap(), Durable::Spooled);
    assert_eq!(rig.script.elapsed_ms(), 3000);
    assert_eq!(rig.spooled(), 2);
    rig.drained().await;
    assert_eq!(rig.script.committed_ms(), [1500, 3300, 3300]);
    assert_eq!(
        rig.script.tries.lock().unwrap()[1],
        (Duration::from_millis(1500), 2)
    );
    assert_eq!(rig.script.committed(), ["a", "b", "c"]);
    assert_eq!(rig.spooled(), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_the_backoff_tries_once_more_at_once() {
    let mut rig = Rig::start(&[Answer::Fail, Answer::Fail, Answer::Fail]);
    let _ = rig.arrive("a").await.unwrap();
    // Tries at 0, 0.5 and 1.5 s fail; the next would be at 3.5 s.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(rig.script.tries_ms(), [0, 500, 1500]);
    rig.shut_down().await;
    assert_eq!(rig.script.tries_ms(), [0, 500, 1500, 2000]);
    assert_eq!(rig.script.committed(), ["a"]);
    assert_eq!(rig.spooled(), 0);
    assert_eq!(rig.log.pending(), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_the_database_still_away_leaves_the_spool_for_the_next_start() {
    let mut rig = Rig::start(&[Answer::Fail, Answer::Fail]);
    let _ = rig.arrive("a").await.unwrap();
    let _ = rig.arrive("b").await.unwrap();
    rig.shut_down().await;
    assert!(rig.script.committed().is_empty());
    assert_eq!(rig.spooled(), 2);

    // The next start replays the spool before anything new, and empties it.
    let (stop, stop_rx) = watch::channel(false);
    let script = Script::new(&[]);
    let (log, _task) = CallLog::spawn_on(
        script.clone(),
        rig.dir.path().to_path_buf(),
        DEFAULT_BOUND,
        stop_rx,
    )
    .unwrap();
    assert_eq!(log.pending(), 2);
    let c = log.arrived(NewCall {
        call_id: Some("c".into()),
        arrived_at: chrono::Utc::now(),
        phone: "+79780000001".into(),
        caller_name: None,
    });
    // Stored, or spooled behind the replay if it came in before the replay committed.
    c.await.unwrap();
    for _ in 0..1000 {
        if log.pending() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(log.pending(), 0);
    assert_eq!(script.committed(), ["a", "b", "c"]);
    assert_eq!(rig.spooled(), 0);
    drop(stop);
}
