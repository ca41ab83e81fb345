//! IVR prompts: the WAVs listed in `ivr-prompts/prompts.toml`, loaded once at start-up.
//!
//! Every prompt is validated when the hotline starts (the file opens, is a WAV, is 8000 Hz
//! mono 16-bit PCM, not empty, at most ten minutes long, and every prompt the call flow needs
//! is configured), so a bad prompt stops start-up with a message naming the file instead of
//! surfacing as silence in the middle of a customer's call.
//!
//! The samples are padded with silence to whole 20 ms frames and encoded once in both G.711
//! laws, so playing a prompt is copying 160 ready bytes per frame: nothing is decoded or
//! encoded on the media path, whichever codec a call negotiated. A [`Prompt`] is immutable
//! and shared between all calls through [`Arc`]; cloning [`Prompts`] or a prompt handle
//! never copies audio.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::media::g711;
use crate::sip::sdp::Codec;

/// Samples in one 20 ms frame at 8 kHz: the unit prompts are cut into and paced by.
pub const FRAME_SAMPLES: usize = 160;

/// The only sample rate G.711 (and so a prompt) has.
pub const SAMPLE_RATE: u32 = 8000;

/// The longest prompt accepted. Anything longer is a wrong file (a recording dropped into the
/// directory by mistake), and would hold its samples in memory for the life of the process.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

/// The configuration file inside the prompts directory.
pub const CONFIG_FILE: &str = "prompts.toml";

/// The prompts the call flow plays. [`Prompts::load`] fails if one is not configured, so a
/// call never finds one missing. The after-hours times and queue numbers are looked up
/// when needed and are not listed: which of them are played depends on the calendar and
/// the queue.
pub const REQUIRED: &[&str] = &[
    "greeting_working",
    "all_busy",
    "after_hours_intro",
    "after_hours_outro",
    "beep",
    "hold",
    "queue_position",
    "message_saved",
    "goodbye",
];

/// Why the prompts could not be loaded. Every message names the file at fault, since that is
/// what the administrator has to fix.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a WAV file: {source}", path.display())]
    NotWav { path: PathBuf, source: hound::Error },
    #[error("{}: wrong format: {found} (need 8000 Hz mono 16-bit PCM)", path.display())]
    WrongFormat { path: PathBuf, found: String },
    #[error("{}: empty", path.display())]
    Empty { path: PathBuf },
    #[error("{}: too long: {seconds:.0} s (at most {} s)", path.display(), MAX_DURATION.as_secs())]
    TooLong { path: PathBuf, seconds: f64 },
    /// `prompts.toml` is not valid TOML or does not describe prompts as expected.
    #[error("{}: {error}", path.display())]
    Config { path: PathBuf, error: String },
    #[error("prompt {0} is not configured")]
    NotConfigured(String),
}

/// One prompt, ready to play: frame-padded PCM plus the same frames pre-encoded in µ-law and
/// A-law.
pub struct Prompt {
    name: String,
    text: Option<String>,
    purpose: Option<String>,
    /// A whole number of frames: the file's samples followed by silence.
    samples: Arc<[i16]>,
    /// `samples` in µ-law, byte for sample.
    pcmu: Arc<[u8]>,
    /// `samples` in A-law, byte for sample.
    pcma: Arc<[u8]>,
}

impl Prompt {
    /// Pads `samples` to whole frames and encodes them, so that every later read is a slice.
    fn new(
        name: String,
        text: Option<String>,
        purpose: Option<String>,
        mut samples: Vec<i16>,
    ) -> Prompt {
        let frames = samples.len().div_ceil(FRAME_SAMPLES);
        samples.resize(frames * FRAME_SAMPLES, 0);
        Prompt {
            name,
            text,
            purpose,
            pcmu: encode_frames(Codec::Pcmu, &samples),
            pcma: encode_frames(Codec::Pcma, &samples),
            samples: samples.into(),
        }
    }

    /// The prompt's name in `prompts.toml` (`[prompts.NAME]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the prompt says, with the variables substituted; `None` for tones and music.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// Where the call flow plays it, as documented in `prompts.toml`.
    pub fn purpose(&self) -> Option<&str> {
        self.purpose.as_deref()
    }

    /// Number of 20 ms frames; at least 1 (empty files are rejected).
    pub fn frames(&self) -> usize {
        self.samples.len() / FRAME_SAMPLES
    }

    /// Playing time, including the silence that completes the last frame.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.frames() as u64 * 20)
    }

    /// All samples, padded to whole frames.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// Frame `k` encoded for `codec`: the payload of one RTP packet.
    ///
    /// # Panics
    ///
    /// If `k >= self.frames()`, like slice indexing: the player counts frames with
    /// [`frames`](Self::frames), so this is a bug in the caller, never a bad file.
    pub fn frame(&self, codec: Codec, k: usize) -> &[u8] {
        let bytes = match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        };
        &bytes[k * FRAME_SAMPLES..(k + 1) * FRAME_SAMPLES]
    }

    /// Frame `k` as linear PCM, for the call recording.
    ///
    /// # Panics
    ///
    /// If `k >= self.frames()`, as [`frame`](Self::frame).
    pub fn pcm_frame(&self, k: usize) -> &[i16] {
        &self.samples[k * FRAME_SAMPLES..(k + 1) * FRAME_SAMPLES]
    }
}

/// By hand, so that logging a prompt does not print its samples.
impl fmt::Debug for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prompt")
            .field("name", &self.name)
            .field("frames", &self.frames())
            .field("text", &self.text)
            .finish_non_exhaustive()
    }
}

/// Encodes frame by frame, so the encoder is only ever asked for one frame at a time, as on
/// the media path.
fn encode_frames(codec: Codec, samples: &[i16]) -> Arc<[u8]> {
    let mut out = vec![0u8; samples.len()];
    for (pcm, bytes) in samples
        .chunks(FRAME_SAMPLES)
        .zip(out.chunks_mut(FRAME_SAMPLES))
    {
        g711::encode(codec, pcm, bytes);
    }
    out.into()
}

/// All configured prompts by name. Cheap to clone: the map itself is shared.
#[derive(Clone, Debug, Default)]
pub struct Prompts {
    by_name: Arc<HashMap<String, Arc<Prompt>>>,
}

/// One `[prompts.NAME]` table. Unknown fields are refused, so a misspelt `text` or `file`
/// is reported rather than silently ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The WAV, relative to the prompts directory.
    file: PathBuf,
    /// What is spoken, `{variables}` not yet substituted.
    text: Option<String>,
    /// The sox recipe of a tone; only `generate.sh` uses it.
    synth: Option<String>,
    purpose: Option<String>,
}

impl Prompts {
    /// Reads `dir/prompts.toml` and every WAV it names, validating each (see the module
    /// documentation), and checks that every [`REQUIRED`] prompt is configured.
    pub fn load(dir: &Path) -> Result<Prompts, PromptError> {
        let config_path = dir.join(CONFIG_FILE);
        let config_error = |error: String| PromptError::Config {
            path: config_path.clone(),
            error,
        };
        let source = std::fs::read_to_string(&config_path).map_err(|source| PromptError::Read {
            path: config_path.clone(),
            source,
        })?;
        let mut config: toml::Table = source
            .parse()
            .map_err(|e: toml::de::Error| config_error(e.to_string().trim_end().to_owned()))?;

        let table = match config.remove("prompts") {
            Some(toml::Value::Table(table)) => table,
            Some(_) => {
                return Err(config_error(
                    "`prompts` must be a table of [prompts.NAME] tables".into(),
                ))
            }
            None => return Err(config_error("no [prompts.NAME] tables".into())),
        };
        // Top-level strings are the variables of the texts; anything else at the top level
        // is left to other readers of the file.
        let variables: HashMap<String, String> = config
            .into_iter()
            .filter_map(|(key, value)| match value {
                toml::Value::String(s) => Some((key, s)),
                _ => None,
            })
            .collect();

        // Checked before any WAV is read: a missing entry is the likelier mistake after an edit.
        if let Some(missing) = REQUIRED.iter().find(|name| !table.contains_key(**name)) {
            return Err(config_error(format!(
                "prompt {missing} is not configured (the call flow needs it)"
            )));
        }

        let mut by_name = HashMap::with_capacity(table.len());
        for (name, value) in table {
            let entry: Entry = value.try_into().map_err(|e: toml::de::Error| {
                config_error(format!("prompts.{name}: {}", e.message()))
            })?;
            if entry.text.is_some() && entry.synth.is_some() {
                return Err(config_error(format!(
                    "prompts.{name}: has both `text` and `synth`"
                )));
            }
            let text = entry
                .text
                .as_deref()
                .map(|text| substitute(text, &variables))
                .transpose()
                .map_err(|e| config_error(format!("prompts.{name}: {e}")))?;
            let samples = read_wav(&dir.join(&entry.file))?;
            let prompt = Prompt::new(name.clone(), text, entry.purpose, samples);
            by_name.insert(name, Arc::new(prompt));
        }

        Ok(Prompts {
            by_name: Arc::new(by_name),
        })
    }

    /// The prompt called `name`, if configured.
    pub fn get(&self, name: &str) -> Option<Arc<Prompt>> {
        self.by_name.get(name).cloned()
    }

    /// The prompt called `name`, or an error naming it: for the call flow's start-up checks
    /// and for prompts picked at run time (an after-hours time the calendar asks for).
    pub fn require(&self, name: &str) -> Result<Arc<Prompt>, PromptError> {
        self.get(name)
            .ok_or_else(|| PromptError::NotConfigured(name.to_owned()))
    }

    /// The after-hours greeting for opening time `open` and closing time `close` (hours,
    /// minutes), as the prompts to play in order: `after_hours_intro`, `from_HH`,
    /// `minutes_MM` (unless the minutes are 0), `to_HH`, `minutes_MM` (likewise),
    /// `after_hours_outro`. This is the one place that knows how the regulation's sentence is
    /// cut up (see `ivr-prompts/README.md`). A closing time of 24:00 may be given as (24, 0)
    /// or (0, 0). A time without a prompt (minutes other than 0, 15, 30, 45) is an error
    /// naming the missing prompt, so the caller can fall back to another greeting.
    pub fn after_hours(
        &self,
        open: (u8, u8),
        close: (u8, u8),
    ) -> Result<Vec<Arc<Prompt>>, PromptError> {
        let mut names = vec!["after_hours_intro".to_owned()];
        for (prefix, (hour, minute)) in [("from", open), ("to", close)] {
            let hour = if prefix == "to" && (hour, minute) == (24, 0) {
                0
            } else {
                hour
            };
            names.push(format!("{prefix}_{hour:02}"));
            if minute != 0 {
                names.push(format!("minutes_{minute:02}"));
            }
        }
        names.push("after_hours_outro".to_owned());
        names.iter().map(|name| self.require(name)).collect()
    }

    /// The configured names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Number of configured prompts.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when no prompt is configured (only for an empty [`Prompts::default`]: `load`
    /// always has the required ones).
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Replaces `{name}` by the variable `name`. Braces around anything but a plain name
/// (letters, digits, `_`) are kept as they are, so only real placeholders can fail, and they
/// fail when the variable is unknown: a prompt must not say "{bank}" to a customer.
/// `generate.sh` substitutes the same way, so `text` is what the WAV says.
fn substitute(text: &str, variables: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let key = after.find('}').map(|close| &after[..close]);
        match key {
            Some(key)
                if !key.is_empty()
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                let value = variables
                    .get(key)
                    .ok_or_else(|| format!("unknown variable {{{key}}}"))?;
                out.push_str(value);
                rest = &after[key.len() + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    // generate.sh speaks the text with runs of white space collapsed (TOML multi-line
    // strings); do the same so that the text matches the audio.
    Ok(out.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Reads one prompt WAV, checking everything a prompt must be before reading the samples
/// (so a huge wrong file is refused without being read into memory).
fn read_wav(path: &Path) -> Result<Vec<i16>, PromptError> {
    let read_error = |source| PromptError::Read {
        path: path.to_owned(),
        source,
    };
    let not_wav = |source| PromptError::NotWav {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    if !file.metadata().map_err(read_error)?.is_file() {
        return Err(read_error(std::io::Error::other("not a regular file")));
    }
    let reader = hound::WavReader::new(BufReader::new(file)).map_err(not_wav)?;
    let spec = reader.spec();
    if spec.sample_rate != SAMPLE_RATE
        || spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        let format = match spec.sample_format {
            hound::SampleFormat::Int => "PCM",
            hound::SampleFormat::Float => "float",
        };
        return Err(PromptError::WrongFormat {
            path: path.to_owned(),
            found: format!(
                "{} Hz, {} channel(s), {}-bit {format}",
                spec.sample_rate, spec.channels, spec.bits_per_sample
            ),
        });
    }
    let len = u64::from(reader.duration());
    if len == 0 {
        return Err(PromptError::Empty {
            path: path.to_owned(),
        });
    }
    if len > MAX_DURATION.as_secs() * u64::from(SAMPLE_RATE) {
        return Err(PromptError::TooLong {
            path: path.to_owned(),
            seconds: len as f64 / f64::from(SAMPLE_RATE),
        });
    }
    // A data chunk shorter than its header claims (a truncated copy) fails here.
    reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(not_wav)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prompts shipped in the repository.
    const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ivr-prompts");

    fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }

    /// A sine-ish ramp that exercises many G.711 segments, `n` samples long.
    fn signal(n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| ((i as f64 * 0.07).sin() * 30000.0 * ((i % 97) as f64 / 97.0)) as i16)
            .collect()
    }

    /// A directory with every required prompt (and one extra with a `{bank}` text).
    fn good_set() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut toml = String::from("bank = \"Банк\"\nversion = 3\n\n");
        for name in REQUIRED {
            toml.push_str(&format!("[prompts.{name}]\nfile = \"{name}.wav\"\n"));
            if *name == "greeting_working" {
                toml.push_str("text = \"Вы позвонили в {bank}.\"\npurpose = \"greeting\"\n");
            }
            write_wav(
                &dir.path().join(format!("{name}.wav")),
                8000,
                1,
                &signal(1000),
            );
        }
        std::fs::write(dir.path().join(CONFIG_FILE), toml).unwrap();
        dir
    }

    fn add_prompt(dir: &Path, name: &str, file: &str) {
        let path = dir.join(CONFIG_FILE);
        let mut toml = std::fs::read_to_string(&path).unwrap();
        toml.push_str(&format!("\n[prompts.{name}]\nfile = \"{file}\"\n"));
        std::fs::write(path, toml).unwrap();
    }

    fn load_err(dir: &Path) -> String {
        Prompts::load(dir).unwrap_err().to_string()
    }

    #[test]
    fn good_set_loads_and_frames_are_pre_encoded() {
        let dir = good_set();
        let prompts = Prompts::load(dir.path()).unwrap();
        assert_eq!(prompts.len(), REQUIRED.len());
        assert_eq!(prompts.names().len(), REQUIRED.len());

        let greeting = prompts.require("greeting_working").unwrap();
        assert_eq!(greeting.text(), Some("Вы позвонили в Банк."));
        assert_eq!(greeting.purpose(), Some("greeting"));
        // 1000 samples → 7 frames, the last one padded with silence.
        assert_eq!(greeting.frames(), 7);
        assert_eq!(greeting.duration(), Duration::from_millis(140));
        assert_eq!(greeting.samples().len(), 7 * FRAME_SAMPLES);
        assert_eq!(&greeting.samples()[..1000], &signal(1000)[..]);
        assert!(greeting.samples()[1000..].iter().all(|&s| s == 0));

        for k in 0..greeting.frames() {
            let pcm = greeting.pcm_frame(k);
            assert_eq!(
                pcm,
                &greeting.samples()[k * FRAME_SAMPLES..(k + 1) * FRAME_SAMPLES]
            );
            for codec in [Codec::Pcmu, Codec::Pcma] {
                let mut expected = [0u8; FRAME_SAMPLES];
                g711::encode(codec, pcm, &mut expected);
                assert_eq!(
                    greeting.frame(codec, k),
                    &expected[..],
                    "{codec:?} frame {k}"
                );
            }
        }
        // Tones have no text.
        assert_eq!(prompts.require("beep").unwrap().text(), None);

        // Clones share the audio.
        let again = prompts.clone().require("greeting_working").unwrap();
        assert!(Arc::ptr_eq(&greeting, &again));
    }

    #[test]
    fn unknown_prompt_is_an_error_naming_it() {
        let prompts = Prompts::load(good_set().path()).unwrap();
        assert!(prompts.get("no_such").is_none());
        assert_eq!(
            prompts.require("no_such").unwrap_err().to_string(),
            "prompt no_such is not configured"
        );
    }

    #[test]
    fn after_hours_is_assembled_in_order() {
        let dir = good_set();
        for name in ["from_08", "minutes_30", "to_17", "minutes_45", "to_00"] {
            write_wav(
                &dir.path().join(format!("{name}.wav")),
                8000,
                1,
                &signal(200),
            );
            add_prompt(dir.path(), name, &format!("{name}.wav"));
        }
        let prompts = Prompts::load(dir.path()).unwrap();
        let names = |open, close| -> Vec<String> {
            let seq = prompts.after_hours(open, close).unwrap();
            seq.iter().map(|p| p.name().to_owned()).collect()
        };
        assert_eq!(
            names((8, 30), (17, 45)),
            [
                "after_hours_intro",
                "from_08",
                "minutes_30",
                "to_17",
                "minutes_45",
                "after_hours_outro"
            ]
        );
        assert_eq!(
            names((8, 0), (24, 0)),
            ["after_hours_intro", "from_08", "to_00", "after_hours_outro"]
        );
        assert_eq!(
            prompts
                .after_hours((9, 0), (17, 0))
                .unwrap_err()
                .to_string(),
            "prompt from_09 is not configured"
        );
        assert_eq!(
            prompts
                .after_hours((8, 10), (17, 45))
                .unwrap_err()
                .to_string(),
            "prompt minutes_10 is not configured"
        );
    }

    #[test]
    fn missing_file_names_the_file() {
        let dir = good_set();
        std::fs::remove_file(dir.path().join("hold.wav")).unwrap();
        let err = load_err(dir.path());
        assert!(err.contains("hold.wav: cannot read:"), "{err}");
    }

    #[test]
    fn wrong_format_names_the_file_and_the_format() {
        let dir = good_set();
        write_wav(&dir.path().join("beep.wav"), 44100, 2, &signal(4410));
        let err = load_err(dir.path());
        assert!(
            err.contains("beep.wav: wrong format: 44100 Hz, 2 channel(s), 16-bit PCM"),
            "{err}"
        );
        assert!(err.ends_with("(need 8000 Hz mono 16-bit PCM)"), "{err}");
    }

    #[test]
    fn garbage_and_truncated_files_are_not_wav() {
        let dir = good_set();
        std::fs::write(dir.path().join("goodbye.wav"), b"this is not audio at all").unwrap();
        let err = load_err(dir.path());
        assert!(err.contains("goodbye.wav: not a WAV file:"), "{err}");

        let dir = good_set();
        let path = dir.path().join("goodbye.wav");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 301]).unwrap();
        let err = load_err(dir.path());
        assert!(err.contains("goodbye.wav: not a WAV file:"), "{err}");

        let dir = good_set();
        std::fs::write(dir.path().join("goodbye.wav"), &bytes[..20]).unwrap();
        let err = load_err(dir.path());
        assert!(err.contains("goodbye.wav: not a WAV file:"), "{err}");
    }

    #[test]
    fn empty_and_overlong_files_are_refused() {
        let dir = good_set();
        write_wav(&dir.path().join("all_busy.wav"), 8000, 1, &[]);
        let err = load_err(dir.path());
        assert!(err.ends_with("all_busy.wav: empty"), "{err}");

        let dir = good_set();
        let too_long = vec![0i16; MAX_DURATION.as_secs() as usize * 8000 + 1];
        write_wav(&dir.path().join("all_busy.wav"), 8000, 1, &too_long);
        let err = load_err(dir.path());
        assert!(err.contains("all_busy.wav: too long: 600 s"), "{err}");
    }

    #[test]
    fn configuration_errors_name_prompts_toml() {
        let dir = good_set();
        let config = dir.path().join(CONFIG_FILE);
        let original = std::fs::read_to_string(&config).unwrap();

        // A required prompt missing from the file.
        let without_beep = original.replace("[prompts.beep]\nfile = \"beep.wav\"\n", "");
        std::fs::write(&config, without_beep).unwrap();
        let err = load_err(dir.path());
        assert!(
            err.contains("prompts.toml: prompt beep is not configured"),
            "{err}"
        );

        // Not TOML.
        std::fs::write(&config, "[prompts.beep\nfile = ").unwrap();
        let err = load_err(dir.path());
        assert!(err.contains("prompts.toml: "), "{err}");

        // A table without `file`, and a misspelt field.
        std::fs::write(
            &config,
            format!("{original}\n[prompts.extra]\ntext = \"x\"\n"),
        )
        .unwrap();
        let err = load_err(dir.path());
        assert!(
            err.contains("prompts.toml: prompts.extra: missing field `file`"),
            "{err}"
        );
        std::fs::write(
            &config,
            format!("{original}\n[prompts.extra]\nfile = \"beep.wav\"\ntxt = \"x\"\n"),
        )
        .unwrap();
        let err = load_err(dir.path());
        assert!(
            err.contains("prompts.toml: prompts.extra: unknown field `txt`"),
            "{err}"
        );

        // An unknown variable.
        std::fs::write(&config, original.replace("{bank}", "{bnak}")).unwrap();
        let err = load_err(dir.path());
        assert!(
            err.contains("prompts.greeting_working: unknown variable {bnak}"),
            "{err}"
        );

        // No prompts.toml at all.
        std::fs::remove_file(&config).unwrap();
        let err = load_err(dir.path());
        assert!(err.contains("prompts.toml: cannot read:"), "{err}");
    }

    #[test]
    fn substitution_only_touches_placeholders() {
        let vars = HashMap::from([("bank".to_owned(), "Банк".to_owned())]);
        assert_eq!(substitute("в {bank}.", &vars).unwrap(), "в Банк.");
        assert_eq!(
            substitute("{ x } {} {a-b} {{bank}}", &vars).unwrap(),
            "{ x } {} {a-b} {Банк}"
        );
        assert_eq!(substitute("a\n   b", &vars).unwrap(), "a b");
        assert!(substitute("{nope}", &vars).is_err());
    }

    #[test]
    fn shipped_prompts_load() {
        let prompts = Prompts::load(Path::new(SHIPPED)).unwrap();
        let toml: toml::Table = std::fs::read_to_string(Path::new(SHIPPED).join(CONFIG_FILE))
            .unwrap()
            .parse()
            .unwrap();
        let configured = toml["prompts"].as_table().unwrap();
        assert_eq!(prompts.len(), configured.len());
        for name in configured.keys() {
            assert!(prompts.require(name).unwrap().frames() >= 1, "{name}");
        }

        let greeting = prompts.require("greeting_working").unwrap();
        let secs = greeting.duration().as_secs_f64();
        assert!(
            (5.0..=20.0).contains(&secs),
            "greeting_working lasts {secs} s"
        );
        let text = greeting.text().unwrap();
        assert!(text.contains("«Севастопольский Морской банк»"), "{text}");
        assert!(!text.contains('{'), "{text}");

        // Every after-hours time on the hour and quarter hour can be said.
        for hour in 0..24 {
            for minute in [0, 15, 30, 45] {
                prompts.after_hours((hour, minute), (hour, minute)).unwrap();
            }
        }
        for n in 1..=20 {
            prompts.require(&format!("number_{n}")).unwrap();
        }
    }
}
