//! Writes whisper models in whisper.cpp's legacy ggml format whose weights are chosen, not
//! trained: the decoder emits a given phrase whatever the audio, then end-of-text.
//!
//! No whisper model can be downloaded where the tests run, and whisper.cpp's own
//! `for-tests-*` models carry no weights at all (whisper.cpp leaves them uninitialised, so
//! their output is noise). These files go through the same loader, mel front end, encoder,
//! decoder and sampler as `ggml-base.bin`, so the tests exercise the production code path
//! with a known result; the benchmark uses a base-sized one to measure the compute cost
//! on this machine.
//!
//! How the phrase comes out: every block's weights are zero, so each residual layer adds
//! nothing and the decoder's output at position `p` is `LN(tok_emb[t] + pos_emb[p])`,
//! scored against every token embedding. Each phrase token (and end-of-text) owns one
//! dimension of the embedding space; `pos_emb[p]` points strongly at the dimension of the
//! token that must follow position `p`. The prompt is `sot, language, transcribe,
//! no-timestamps` (positions 0–3, see [`super::engine`]), so the first sampled token is
//! scored at position 3. The winning logit is about 60 above the rest, so greedy decoding
//! is certain and whisper's temperature fallback never triggers.

use half::f16;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// A model's dimensions.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub n_state: usize,
    pub n_head: usize,
    pub n_audio_layer: usize,
    pub n_text_layer: usize,
}

impl Shape {
    /// Smallest that works: a few MB, loads and runs in well under a second.
    pub const TEST: Shape = Shape {
        n_state: 32,
        n_head: 1,
        n_audio_layer: 1,
        n_text_layer: 1,
    };
    /// The dimensions of `ggml-base.bin` (74 M parameters): the same arithmetic per
    /// second of audio as the real model, for the benchmark.
    pub const BASE: Shape = Shape {
        n_state: 512,
        n_head: 8,
        n_audio_layer: 6,
        n_text_layer: 6,
    };
}

/// The multilingual vocabulary size (`ggml-base.bin`, `ggml-small.bin`).
const N_VOCAB: usize = 51_865;
/// Whisper's context lengths and mel bands.
const N_AUDIO_CTX: usize = 1500;
const N_TEXT_CTX: usize = 448;
const N_MELS: usize = 80;
/// FFT bins of whisper's 400-sample window.
const N_FFT_BINS: usize = 201;
/// Special token ids of the multilingual vocabulary (whisper.cpp shifts them so).
const TOKEN_EOT: usize = 50_257;
/// ggml's file type "mostly f16".
const FTYPE_F16: usize = 1;
/// Where the phrase's own tokens start in the vocabulary.
const FIRST_WORD: usize = 1000;
/// Id of the single space, which whisper's blank suppression looks up.
const TOKEN_SPACE: usize = 220;
/// The position whose output picks the first word: after sot, language, transcribe and
/// no-timestamps.
const FIRST_OUTPUT_POS: usize = 3;

/// A small model that transcribes any audio as `phrase`.
pub fn write_test_model(path: &Path, phrase: &str) -> io::Result<()> {
    write_model(path, phrase, Shape::TEST)
}

/// A model of `shape` that transcribes any audio as `phrase`.
pub fn write_model(path: &Path, phrase: &str, shape: Shape) -> io::Result<()> {
    let words: Vec<String> = phrase.split_whitespace().map(|w| format!(" {w}")).collect();
    if words.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty phrase"));
    }
    // One vocabulary id and one embedding dimension per distinct word; end-of-text too.
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for w in &words {
        let next = FIRST_WORD + ids.len();
        ids.entry(w.as_str()).or_insert(next);
    }
    let d = shape.n_state;
    if ids.len() + 1 > d || shape.n_head == 0 || !d.is_multiple_of(shape.n_head) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "phrase has more distinct words than the model has dimensions",
        ));
    }
    let slot = |id: usize| {
        if id == TOKEN_EOT {
            ids.len()
        } else {
            id - FIRST_WORD
        }
    };
    let sequence: Vec<usize> = words.iter().map(|w| ids[w.as_str()]).collect();

    // Magnitudes: the logit of the winner is ≈ beta·√d, the input token's own ≈ beta²√d/gamma.
    let beta = 60.0 / (d as f32).sqrt();
    let gamma = 10.0 * beta;

    let mut out = Model {
        w: BufWriter::with_capacity(1 << 20, File::create(path)?),
    };
    out.header(shape)?;
    out.mel_filters()?;
    out.vocabulary(&ids)?;

    use Fill::*;
    use Kind::*;
    let (ne_a, ne_t) = (N_AUDIO_CTX, N_TEXT_CTX);
    out.tensor("encoder.positional_embedding", &[d, ne_a], F32, Zeros)?;
    out.tensor("encoder.conv1.weight", &[3, N_MELS, d], F16, Zeros)?;
    out.tensor("encoder.conv1.bias", &[1, d], F32, Zeros)?;
    out.tensor("encoder.conv2.weight", &[3, d, d], F16, Zeros)?;
    out.tensor("encoder.conv2.bias", &[1, d], F32, Zeros)?;
    out.tensor("encoder.ln_post.weight", &[d], F32, Ones)?;
    out.tensor("encoder.ln_post.bias", &[d], F32, Zeros)?;
    for i in 0..shape.n_audio_layer {
        out.block(&format!("encoder.blocks.{i}"), d, false)?;
    }

    // Row p of the positional embedding points at the token that follows position p.
    let mut pos = Vec::new();
    for p in FIRST_OUTPUT_POS..ne_t {
        let k = p - FIRST_OUTPUT_POS;
        let next = sequence.get(k).copied().unwrap_or(TOKEN_EOT);
        pos.push((p * d + slot(next), gamma));
    }
    out.tensor("decoder.positional_embedding", &[d, ne_t], F32, Sparse(pos))?;
    let mut emb: Vec<(usize, f32)> = ids
        .values()
        .chain(std::iter::once(&TOKEN_EOT))
        .map(|&id| (id * d + slot(id), beta))
        .collect();
    emb.sort_unstable_by_key(|e| e.0);
    out.tensor(
        "decoder.token_embedding.weight",
        &[d, N_VOCAB],
        F16,
        Sparse(emb),
    )?;
    out.tensor("decoder.ln.weight", &[d], F32, Ones)?;
    out.tensor("decoder.ln.bias", &[d], F32, Zeros)?;
    for i in 0..shape.n_text_layer {
        out.block(&format!("decoder.blocks.{i}"), d, true)?;
    }
    out.w.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// How a tensor is stored: biases, norms and positional embeddings in f32, the weight
/// matrices and convolution kernels in f16.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    F32,
    F16,
}

enum Fill {
    Zeros,
    Ones,
    /// Zero except these (flat index, value), sorted by index.
    Sparse(Vec<(usize, f32)>),
}

struct Model {
    w: BufWriter<File>,
}

impl Model {
    fn i32(&mut self, v: usize) -> io::Result<()> {
        let v = i32::try_from(v).map_err(|_| io::Error::other("value out of i32 range"))?;
        self.w.write_all(&v.to_le_bytes())
    }

    fn header(&mut self, s: Shape) -> io::Result<()> {
        self.w.write_all(&super::engine::GGML_MAGIC.to_le_bytes())?;
        for v in [
            N_VOCAB,
            N_AUDIO_CTX,
            s.n_state,
            s.n_head,
            s.n_audio_layer,
            N_TEXT_CTX,
            s.n_state,
            s.n_head,
            s.n_text_layer,
            N_MELS,
            FTYPE_F16,
        ] {
            self.i32(v)?;
        }
        Ok(())
    }

    /// Triangular filters on the mel scale from 0 to 8 kHz (what whisper's are, up to
    /// normalisation): the front end computes a meaningful spectrogram of the audio.
    fn mel_filters(&mut self) -> io::Result<()> {
        self.i32(N_MELS)?;
        self.i32(N_FFT_BINS)?;
        let mel = |f: f32| 2595.0 * (1.0 + f / 700.0).log10();
        let hz = |m: f32| 700.0 * (10f32.powf(m / 2595.0) - 1.0);
        let top = mel(8000.0);
        let edges: Vec<f32> = (0..N_MELS + 2)
            .map(|i| hz(top * i as f32 / (N_MELS + 1) as f32))
            .collect();
        for m in 0..N_MELS {
            let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
            for k in 0..N_FFT_BINS {
                let f = k as f32 * 8000.0 / (N_FFT_BINS - 1) as f32;
                let v = if f <= lo || f >= hi {
                    0.0
                } else if f <= mid {
                    (f - lo) / (mid - lo)
                } else {
                    (hi - f) / (hi - mid)
                };
                self.w.write_all(&v.to_le_bytes())?;
            }
        }
        Ok(())
    }

    /// The text tokens up to the phrase's words; whisper.cpp names the specials itself.
    fn vocabulary(&mut self, ids: &HashMap<&str, usize>) -> io::Result<()> {
        let n = FIRST_WORD + ids.len();
        let mut by_id = vec![String::new(); n];
        for (i, t) in by_id.iter_mut().enumerate().take(FIRST_WORD) {
            *t = if i == TOKEN_SPACE {
                " ".into()
            } else {
                format!("[{i}]")
            };
        }
        for (word, &id) in ids {
            by_id[id] = (*word).to_owned();
        }
        self.i32(n)?;
        for t in &by_id {
            self.i32(t.len())?;
            self.w.write_all(t.as_bytes())?;
        }
        Ok(())
    }

    /// The zero-weight residual block (identity); `cross` adds the decoder's
    /// cross-attention.
    fn block(&mut self, prefix: &str, d: usize, cross: bool) -> io::Result<()> {
        use Fill::*;
        use Kind::*;
        self.tensor(&format!("{prefix}.mlp_ln.weight"), &[d], F32, Ones)?;
        self.tensor(&format!("{prefix}.mlp_ln.bias"), &[d], F32, Zeros)?;
        self.tensor(&format!("{prefix}.mlp.0.weight"), &[d, 4 * d], F16, Zeros)?;
        self.tensor(&format!("{prefix}.mlp.0.bias"), &[4 * d], F32, Zeros)?;
        self.tensor(&format!("{prefix}.mlp.2.weight"), &[4 * d, d], F16, Zeros)?;
        self.tensor(&format!("{prefix}.mlp.2.bias"), &[d], F32, Zeros)?;
        let attentions: &[&str] = if cross {
            &["attn", "cross_attn"]
        } else {
            &["attn"]
        };
        for attn in attentions {
            self.tensor(&format!("{prefix}.{attn}_ln.weight"), &[d], F32, Ones)?;
            self.tensor(&format!("{prefix}.{attn}_ln.bias"), &[d], F32, Zeros)?;
            for (part, bias) in [
                ("query", true),
                ("key", false),
                ("value", true),
                ("out", true),
            ] {
                let name = format!("{prefix}.{attn}.{part}");
                self.tensor(&format!("{name}.weight"), &[d, d], F16, Zeros)?;
                if bias {
                    self.tensor(&format!("{name}.bias"), &[d], F32, Zeros)?;
                }
            }
        }
        Ok(())
    }

    /// One tensor record: dims, name length, type, dims (ggml order), name, data.
    fn tensor(&mut self, name: &str, ne: &[usize], kind: Kind, fill: Fill) -> io::Result<()> {
        let half = kind == Kind::F16;
        self.i32(ne.len())?;
        self.i32(name.len())?;
        self.i32(usize::from(half))?;
        for &n in ne {
            self.i32(n)?;
        }
        self.w.write_all(name.as_bytes())?;
        let n: usize = ne.iter().product();
        let (one, sparse) = match fill {
            Fill::Zeros => (false, Vec::new()),
            Fill::Ones => (true, Vec::new()),
            Fill::Sparse(s) => (false, s),
        };
        let mut next = sparse.into_iter().peekable();
        let mut buf = Vec::with_capacity(1 << 16);
        for i in 0..n {
            let v = match next.peek() {
                Some(&(at, v)) if at == i => {
                    next.next();
                    v
                }
                _ if one => 1.0,
                _ => 0.0,
            };
            if half {
                buf.extend_from_slice(&f16::from_f32(v).to_le_bytes());
            } else {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            if buf.len() >= 1 << 16 {
                self.w.write_all(&buf)?;
                buf.clear();
            }
        }
        self.w.write_all(&buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcribe::engine::{Transcriber, WhisperTranscriber};

    /// Real whisper.cpp loads the file and decodes the phrase from real audio.
    #[test]
    fn whisper_loads_the_model_and_decodes_the_phrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ggml-test.bin");
        write_test_model(&path, "Банкомат съел карту").unwrap();
        let engine = WhisperTranscriber::load(&path, "ru", 1).unwrap();
        let audio: Vec<f32> = (0..16_000 * 3)
            .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin() * 0.3)
            .collect();
        assert_eq!(engine.transcribe(&audio).unwrap(), "Банкомат съел карту");
    }

    /// Each 30 s window is decoded on its own, without the earlier text as a prompt.
    #[test]
    fn a_long_message_is_decoded_window_by_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ggml-test.bin");
        write_test_model(&path, "да да нет").unwrap();
        let engine = WhisperTranscriber::load(&path, "ru", 2).unwrap();
        let audio = vec![0.01f32; 16_000 * 45];
        assert_eq!(engine.transcribe(&audio).unwrap(), "да да нет да да нет");
    }

    #[test]
    fn too_many_words_for_the_shape_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let phrase: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
        let err = write_test_model(&dir.path().join("m.bin"), &phrase.join(" ")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
