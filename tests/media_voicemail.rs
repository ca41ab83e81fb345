//! Voicemail over real loopback RTP: a media session records the caller's voice into a mono
//! WAV file of its own, ends the message on silence, on length, when told or when the call
//! ends, reports it once (before the session's end), and the call recording goes on.

mod support;

use hotline::media::ports;
use hotline::media::session::{
    Command, LegConfig, Session, SessionConfig, SessionEvent, VoicemailSpec, VoicemailStop,
    VoicemailSummary,
};
use hotline::media::voicemail::Voicemail;
use hotline::sip::sdp::{Codec, Direction, Negotiated};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use support::rtp::*;
use tokio::sync::mpsc::UnboundedReceiver;

const FRAME: usize = 160;

/// A caller UA and the media session that answers it.
struct Call {
    /// `None` once hung up.
    session: Option<Session>,
    events: UnboundedReceiver<(u64, SessionEvent)>,
    peer: RtpPeer,
    /// Where the session receives the caller's RTP.
    media: SocketAddr,
    dir: tempfile::TempDir,
}

impl Call {
    async fn start() -> Call {
        let dir = tempfile::tempdir().unwrap();
        let peer = RtpPeer::bind().await;
        let remote: SocketAddr = format!("127.0.0.1:{}", peer.port()).parse().unwrap();
        let socket = ports::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let media = socket.local_addr().unwrap();
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        let session = Session::spawn(
            SessionConfig {
                call: 9,
                caller: LegConfig {
                    socket,
                    media: Negotiated {
                        codecs: vec![(0, Codec::Pcmu)],
                        telephone_event: Some(101),
                        remote_rtp: Some(remote),
                        direction: Direction::SendRecv,
                        ptime: Some(20),
                        srtp: None,
                    },
                },
                recording: Some(dir.path().join("recordings/call.wav")),
                rtp_timeout: None,
            },
            events_tx,
        )
        .unwrap();
        Call {
            session: Some(session),
            events,
            peer,
            media,
            dir,
        }
    }

    /// Limits short enough for a test: 1 s of silence ends a message, 0.5 s of speech
    /// makes one.
    fn spec(&self) -> VoicemailSpec {
        VoicemailSpec {
            silence: Duration::from_secs(1),
            min_speech: Duration::from_millis(500),
            ..VoicemailSpec::new(self.dir.path().join("voicemail/2026/12/02/vm.wav"))
        }
    }

    fn command(&self, command: Command) -> bool {
        self.session.as_ref().expect("a session").command(command)
    }

    fn record(&self, spec: VoicemailSpec) {
        assert!(self.command(Command::RecordVoicemail(spec)));
    }

    /// The caller hangs up: the session stops (and has finalised its files on return).
    async fn hang_up(&mut self) {
        self.session.take().expect("a session").stop().await;
    }

    async fn say(&mut self, ulaw: &[u8]) {
        self.peer.stream(self.media, 0, ulaw).await;
    }

    /// The next event, within `wait`; `None` when none came or the session is gone.
    async fn event(&mut self, wait: Duration) -> Option<SessionEvent> {
        match tokio::time::timeout(wait, self.events.recv()).await {
            Ok(Some((9, ev))) => Some(ev),
            Ok(Some(other)) => panic!("another call's event: {other:?}"),
            // The session ended and dropped its sender, or nothing came.
            Ok(None) | Err(_) => None,
        }
    }

    /// Presses `#` and waits for the session to report it (and nothing else).
    async fn press_hash(&mut self) {
        self.peer.press(self.media, 101, '#').await;
        loop {
            match self.event(Duration::from_secs(2)).await {
                Some(SessionEvent::Dtmf('#')) => return,
                Some(SessionEvent::VoicemailDone(s)) => panic!("stopped by the session: {s:?}"),
                Some(_) => {}
                None => panic!("no digit"),
            }
        }
    }

    /// Waits for `VoicemailDone`, skipping other events.
    async fn voicemail_done(&mut self) -> VoicemailSummary {
        loop {
            match self.event(Duration::from_secs(5)).await {
                Some(SessionEvent::VoicemailDone(s)) => return s,
                Some(SessionEvent::Ended(_)) => panic!("ended without VoicemailDone"),
                Some(_) => {}
                None => panic!("no VoicemailDone"),
            }
        }
    }
}

/// A loud chirp (300 → 900 Hz, about −12 dBFS) in µ-law: speech for the detector, and
/// never the same frame twice, so that where it lies in a file is unambiguous.
fn chirp(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            let phase = 2.0 * std::f64::consts::PI * (300.0 * t + 60.0 * t * t);
            ulaw_encode((8000.0 * phase.sin()) as i16)
        })
        .collect()
}

/// µ-law silence.
fn silence(n: usize) -> Vec<u8> {
    vec![0xFF; n]
}

fn decoded(ulaw: &[u8]) -> Vec<i16> {
    ulaw.iter().map(|&b| ulaw_decode(b)).collect()
}

/// A voicemail file: mono, 8 kHz, 16-bit; its samples.
fn read_mono(path: &Path) -> Vec<i16> {
    let reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 8000, 16)
    );
    read_wav(path).0
}

fn samples(d: Duration) -> usize {
    (d.as_micros() * 8 / 1000) as usize
}

fn assert_near(got: Duration, want: Duration, slack: Duration) {
    let off = got.abs_diff(want);
    assert!(off <= slack, "{got:?}, expected {want:?} ± {slack:?}");
}

#[tokio::test]
async fn tone_then_silence_ends_on_silence_and_the_file_holds_the_tone() {
    let mut call = Call::start().await;
    let spec = call.spec();
    call.record(spec.clone());
    let tone = chirp(8000);
    call.say(&tone).await;
    // Silence for longer than the 1 s that ends the message.
    call.say(&silence(12_000)).await;
    let vm = call.voicemail_done().await;
    assert_eq!(vm.stop, VoicemailStop::Silence);
    assert_eq!(vm.path, spec.path);
    assert!(!vm.empty);
    // One second of speech, then one of silence, kept as recorded.
    assert_near(vm.speech, Duration::from_secs(1), Duration::from_millis(40));
    assert_near(
        vm.duration,
        Duration::from_secs(2),
        Duration::from_millis(60),
    );
    let file = read_mono(&vm.path);
    assert_eq!(file.len(), samples(vm.duration));
    let at = find(&file, &decoded(&tone)).expect("the tone is in the voicemail");
    assert!(file[at + 8000..].iter().all(|&s| s == 0));
    call.hang_up().await;
    // Exactly once: the session's end reports no second voicemail.
    match call.event(Duration::from_secs(2)).await {
        Some(SessionEvent::Ended(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn stop_voicemail_ends_it_with_key_and_hash_is_only_reported() {
    let mut call = Call::start().await;
    let spec = call.spec();
    call.record(spec);
    let tone = chirp(6400);
    call.say(&tone).await;
    // `#` is reported as a digit; the flow decides, so the message goes on meanwhile.
    call.press_hash().await;
    let more = chirp(9600);
    call.say(&more[6400..]).await;
    // The flow's answer to the next `#`.
    call.press_hash().await;
    assert!(call.command(Command::StopVoicemail));
    let vm = call.voicemail_done().await;
    assert_eq!(vm.stop, VoicemailStop::Key);
    assert!(!vm.empty);
    let file = read_mono(&vm.path);
    assert_eq!(file.len(), samples(vm.duration));
    // Both stretches of speech are in it, the key press between them as silence.
    let first = find(&file, &decoded(&tone)).expect("first part");
    let second = find(&file, &decoded(&more[6400..])).expect("second part");
    assert!(second > first + 6400);
    assert_near(
        vm.speech,
        Duration::from_millis(1200),
        Duration::from_millis(60),
    );
    // A second stop does nothing.
    assert!(call.command(Command::StopVoicemail));
    call.hang_up().await;
    match call.event(Duration::from_secs(2)).await {
        Some(SessionEvent::Ended(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn max_length_cuts_the_message_within_a_frame() {
    let mut call = Call::start().await;
    let spec = VoicemailSpec {
        max_length: Duration::from_secs(1),
        ..call.spec()
    };
    call.record(spec);
    let tone = chirp(12_000);
    call.say(&tone).await;
    let vm = call.voicemail_done().await;
    assert_eq!(vm.stop, VoicemailStop::MaxLength);
    assert_near(
        vm.duration,
        Duration::from_secs(1),
        Duration::from_millis(20),
    );
    let file = read_mono(&vm.path);
    assert_eq!(file.len(), samples(vm.duration));
    // What it holds is the stream, contiguous from its first frame to the cut.
    let pcm = decoded(&tone);
    let at = find(&file, &pcm[..FRAME]).expect("the start of the stream");
    assert_eq!(&file[at..], &pcm[..file.len() - at]);
    call.hang_up().await;
}

#[tokio::test]
async fn hang_up_mid_message_keeps_what_was_said_and_reports_it_before_the_end() {
    let mut call = Call::start().await;
    let spec = call.spec();
    call.record(spec.clone());
    let tone = chirp(8000);
    call.say(&tone).await;
    // Mid-sentence: the call ends.
    call.hang_up().await;
    let mut seen = Vec::new();
    while let Some(ev) = call.event(Duration::from_secs(2)).await {
        seen.push(ev);
    }
    let kinds: Vec<&str> = seen
        .iter()
        .map(|e| match e {
            SessionEvent::VoicemailDone(_) => "voicemail",
            SessionEvent::Ended(_) => "ended",
            _ => "other",
        })
        .filter(|k| *k != "other")
        .collect();
    assert_eq!(kinds, ["voicemail", "ended"]);
    let Some(SessionEvent::VoicemailDone(vm)) = seen
        .iter()
        .find(|e| matches!(e, SessionEvent::VoicemailDone(_)))
    else {
        unreachable!()
    };
    assert_eq!(vm.stop, VoicemailStop::HangUp);
    assert!(!vm.empty);
    assert_near(vm.speech, Duration::from_secs(1), Duration::from_millis(40));
    // The file is final (its header covers it all) and holds everything sent.
    let file = read_mono(&vm.path);
    assert_eq!(file.len(), samples(vm.duration));
    let bytes = std::fs::read(&vm.path).unwrap();
    assert_eq!(bytes.len(), 44 + 2 * file.len());
    assert!(
        find(&file, &decoded(&tone)).is_some(),
        "the message is kept"
    );

    // The call recording went on meanwhile: the caller is on its left channel.
    let Some(SessionEvent::Ended(summary)) = seen.last() else {
        unreachable!()
    };
    let recording = summary.recording.as_ref().expect("a call recording");
    let (stereo, channels) = read_wav(&recording.path);
    assert_eq!(channels, 2);
    let left: Vec<i16> = stereo.iter().step_by(2).copied().collect();
    assert!(
        find(&left, &decoded(&tone)).is_some(),
        "the caller is in the call recording too"
    );
}

#[tokio::test]
async fn only_silence_is_an_empty_message() {
    let mut call = Call::start().await;
    let spec = call.spec();
    call.record(spec);
    // Line noise below the threshold, then nothing at all.
    let hiss: Vec<u8> = (0..4000u32)
        .map(|i| ulaw_encode(if i.is_multiple_of(2) { 40 } else { -40 }))
        .collect();
    call.say(&hiss).await;
    let vm = call.voicemail_done().await;
    assert_eq!(vm.stop, VoicemailStop::Silence);
    assert!(vm.empty);
    assert_eq!(vm.speech, Duration::ZERO);
    // The last packet leaves half a second of hiss; the rest is the clock's, caught by a
    // 200 ms housekeeping tick.
    assert!(vm.duration >= Duration::from_secs(1), "{:?}", vm.duration);
    assert!(
        vm.duration <= Duration::from_millis(1250),
        "{:?}",
        vm.duration
    );
    // Kept (and so journaled) all the same.
    let file = read_mono(&vm.path);
    assert_eq!(file.len(), samples(vm.duration));
    call.hang_up().await;
}

#[tokio::test]
async fn no_rtp_at_all_ends_on_silence_by_the_clock() {
    let mut call = Call::start().await;
    let spec = call.spec();
    call.record(spec);
    let started = Instant::now();
    let vm = call.voicemail_done().await;
    let waited = started.elapsed();
    assert_eq!(vm.stop, VoicemailStop::Silence);
    assert!(vm.empty);
    assert!(waited >= Duration::from_millis(950), "after {waited:?}");
    assert!(waited < Duration::from_millis(1600), "after {waited:?}");
    // The file covers the silence by the clock (to the 200 ms tick that caught it).
    assert!(vm.duration >= Duration::from_secs(1), "{:?}", vm.duration);
    assert!(
        vm.duration <= Duration::from_millis(1250),
        "{:?}",
        vm.duration
    );
    let file = read_mono(&vm.path);
    assert_eq!(file.len(), samples(vm.duration));
    assert!(file.iter().all(|&s| s == 0));
    call.hang_up().await;
}

#[tokio::test]
async fn a_file_that_cannot_be_created_is_reported_and_the_call_goes_on() {
    let mut call = Call::start().await;
    std::fs::write(call.dir.path().join("blocked"), b"a file, not a directory").unwrap();
    let path = call.dir.path().join("blocked/vm.wav");
    call.record(VoicemailSpec::new(&path));
    let vm = call.voicemail_done().await;
    assert_eq!(
        vm,
        VoicemailSummary {
            path: path.clone(),
            duration: Duration::ZERO,
            speech: Duration::ZERO,
            empty: true,
            stop: VoicemailStop::Error,
        }
    );
    // The caller still hears the session (silence) and a later voicemail works.
    let (heard, _) = call.peer.collect(Duration::from_millis(200)).await;
    assert!(heard.len() >= 5, "{} packets", heard.len());
    let spec = call.spec();
    call.record(spec.clone());
    call.say(&chirp(1600)).await;
    assert!(call.command(Command::StopVoicemail));
    let vm = call.voicemail_done().await;
    assert_eq!((vm.stop, vm.path), (VoicemailStop::Key, spec.path));
    call.hang_up().await;
}

#[tokio::test]
async fn a_second_voicemail_while_one_records_is_refused() {
    let mut call = Call::start().await;
    let spec = call.spec();
    call.record(spec.clone());
    let other = call.dir.path().join("other.wav");
    call.record(VoicemailSpec::new(&other));
    let refused = call.voicemail_done().await;
    assert_eq!(refused.stop, VoicemailStop::Error);
    assert_eq!(refused.path, other);
    assert!(!other.exists());
    call.say(&chirp(1600)).await;
    call.hang_up().await;
    let vm = call.voicemail_done().await;
    assert_eq!((vm.stop, vm.path), (VoicemailStop::HangUp, spec.path));
}

// ------------------------------------------------------------------ no allocation

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

/// Counts the allocations of the thread that turned counting on (tests run in parallel).
struct Counting;

impl Counting {
    fn note() {
        let _ = COUNTING.try_with(|on| {
            if on.get() {
                let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            }
        });
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Counting::note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Counting::note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The voicemail's per-packet work (audio, lost packets, ticks with padding and flushes)
/// allocates nothing once started.
#[test]
fn voicemail_does_not_allocate_per_packet() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let spec = VoicemailSpec {
        silence: Duration::from_secs(60),
        ..VoicemailSpec::new(dir.path().join("vm.wav"))
    };
    let mut vm = Voicemail::start(&spec, t0).unwrap();
    let voice = decoded(&chirp(FRAME * 1500));
    COUNTING.with(|c| c.set(true));
    let mut stops = 0;
    for (k, frame) in voice.chunks(FRAME).enumerate() {
        let k = k as u64;
        // Every 97th packet lost; a 500 ms stretch without RTP at 10 s.
        if k.is_multiple_of(97) || (500..525).contains(&k) {
            continue;
        }
        let gap = if k % 97 == 1 { FRAME as u32 } else { 0 };
        stops += usize::from(vm.audio(gap, frame).is_some());
        if k.is_multiple_of(10) {
            stops += usize::from(vm.tick(t0 + Duration::from_millis(20 * k)).is_some());
        }
    }
    COUNTING.with(|c| c.set(false));
    let allocations = ALLOCATIONS.with(Cell::get);
    assert_eq!(stops, 0);
    assert_eq!(
        allocations, 0,
        "allocations on the voicemail's per-packet path"
    );
    let summary = vm.finish(VoicemailStop::HangUp);
    // 30 s by the clock; the stretch without RTP is padded to within 200 ms of it.
    assert_near(
        summary.duration,
        Duration::from_secs(30),
        Duration::from_millis(250),
    );
}
