"""CTranslate2 ``model.bin`` reader and the Whisper encoder's conversion to transformers' names.

A CTranslate2 model file is a flat list of named tensors (little-endian):

    uint32 binary version (<= 6), string spec name, uint32 spec revision, uint32 variable count,
    per variable: string name, uint8 rank, uint32 dims[rank], uint8 dtype, uint32 byte count, bytes,
    uint32 alias count, per alias: string alias, string target

where a string is a uint16 length (the terminating NUL included) and its bytes. The Whisper spec names
the encoder's tensors ``encoder/conv1/weight``, ``encoder/layer_N/self_attention/linear_0/weight``
(query, key and value fused in that order), ``.../layer_norm/gamma|beta`` and so on;
``whisper_encoder_state`` maps them to ``transformers.WhisperEncoder``'s parameter names.

numpy only: the conversion runs wherever the daemon runs (a Jetson too), with no CTranslate2.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.errors import ModelFilesError

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_BFLOAT16 = 5
_MAX_VERSION = 6


@dataclass(frozen=True)
class Ct2Model:
    spec: str
    revision: int
    tensors: dict[str, np.ndarray]

    def scalar(self, name: str) -> int:
        return int(self.tensors[name].reshape(-1)[0])


def read_ct2(path: str | Path) -> Ct2Model:
    """All variables of a CTranslate2 model file (arrays are views of one read-only buffer)."""
    path = Path(path)
    try:
        buf = memoryview(path.read_bytes())
    except OSError as exc:
        raise ModelFilesError(f"cannot read {path}: {exc}") from exc
    pos = 0

    def take(fmt: str):
        nonlocal pos
        try:
            vals = struct.unpack_from(fmt, buf, pos)
        except struct.error as exc:
            raise ModelFilesError(f"{path} is truncated (at byte {pos})") from exc
        pos += struct.calcsize(fmt)
        return vals[0] if len(vals) == 1 else vals

    def text() -> str:
        nonlocal pos
        n = take("<H")
        if pos + n > len(buf):
            raise ModelFilesError(f"{path} is truncated (at byte {pos})")
        out = bytes(buf[pos:pos + n]).rstrip(b"\0").decode("utf-8", "replace")
        pos += n
        return out

    version = take("<I")
    if not 1 <= version <= _MAX_VERSION:
        raise ModelFilesError(f"{path} is not a CTranslate2 model (binary version {version})")
    spec, revision, count = text(), take("<I"), take("<I")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = text()
        rank = take("<B")
        dims = [take("<I") for _ in range(rank)]
        code, nbytes = take("<B"), take("<I")
        if pos + nbytes > len(buf):
            raise ModelFilesError(f"{path} is truncated in variable {name}")
        raw = np.frombuffer(buf, dtype=np.uint8, count=nbytes, offset=pos)
        pos += nbytes
        if code == _BFLOAT16:  # bfloat16 = the top half of a float32
            arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif code in _DTYPES:
            arr = raw.view(_DTYPES[code])
        else:
            raise ModelFilesError(f"{path}: variable {name} has unknown dtype code {code}")
        if arr.size != int(np.prod(dims, dtype=np.int64)):
            raise ModelFilesError(f"{path}: variable {name} holds {arr.size} values for shape {dims}")
        tensors[name] = arr.reshape(dims)
    for _ in range(take("<I")):  # aliases: another name for a variable (tied weights)
        alias, target = text(), text()
        if target in tensors:
            tensors[alias] = tensors[target]
    return Ct2Model(spec=spec, revision=revision, tensors=tensors)


_LAYER = re.compile(r"^encoder/layer_(\d+)/")


def whisper_encoder_state(model: Ct2Model) -> dict[str, np.ndarray]:
    """The encoder's tensors under ``transformers.WhisperEncoder`` names, as float16 arrays.

    The fused query/key/value projection is split in three; Whisper's key projection has no bias
    (CTranslate2 stores zeros there, checked)."""
    if model.spec != "WhisperSpec":
        raise ModelFilesError(f"the CTranslate2 model is a {model.spec}, not a Whisper model")
    t = model.tensors
    out: dict[str, np.ndarray] = {}

    def put(name: str, arr: np.ndarray) -> None:
        out[name] = np.ascontiguousarray(arr, dtype=np.float16)

    for i in (1, 2):
        put(f"conv{i}.weight", t[f"encoder/conv{i}/weight"])
        put(f"conv{i}.bias", t[f"encoder/conv{i}/bias"])
    put("embed_positions.weight", t["encoder/position_encodings/encodings"])
    put("layer_norm.weight", t["encoder/layer_norm/gamma"])
    put("layer_norm.bias", t["encoder/layer_norm/beta"])
    for i in range(encoder_layers(model)):
        src, dst = f"encoder/layer_{i}/", f"layers.{i}."
        qkv_w, qkv_b = t[src + "self_attention/linear_0/weight"], t[src + "self_attention/linear_0/bias"]
        d = qkv_w.shape[1]
        for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            put(f"{dst}self_attn.{proj}.weight", qkv_w[j * d:(j + 1) * d])
            if proj != "k_proj":
                put(f"{dst}self_attn.{proj}.bias", qkv_b[j * d:(j + 1) * d])
        if np.any(qkv_b[d:2 * d] != 0):
            raise ModelFilesError(f"layer {i}: a Whisper key projection has no bias, but this file has one")
        put(f"{dst}self_attn.out_proj.weight", t[src + "self_attention/linear_1/weight"])
        put(f"{dst}self_attn.out_proj.bias", t[src + "self_attention/linear_1/bias"])
        put(f"{dst}self_attn_layer_norm.weight", t[src + "self_attention/layer_norm/gamma"])
        put(f"{dst}self_attn_layer_norm.bias", t[src + "self_attention/layer_norm/beta"])
        put(f"{dst}fc1.weight", t[src + "ffn/linear_0/weight"])
        put(f"{dst}fc1.bias", t[src + "ffn/linear_0/bias"])
        put(f"{dst}fc2.weight", t[src + "ffn/linear_1/weight"])
        put(f"{dst}fc2.bias", t[src + "ffn/linear_1/bias"])
        put(f"{dst}final_layer_norm.weight", t[src + "ffn/layer_norm/gamma"])
        put(f"{dst}final_layer_norm.bias", t[src + "ffn/layer_norm/beta"])
    return out


def encoder_layers(model: Ct2Model) -> int:
    found = {int(m.group(1)) for name in model.tensors if (m := _LAYER.match(name))}
    if not found:
        raise ModelFilesError("the CTranslate2 Whisper model has no encoder layers")
    return max(found) + 1


def whisper_config(model: Ct2Model) -> dict:
    """transformers ``WhisperConfig`` fields for this model, read from its tensor shapes."""
    t = model.tensors
    d_model, n_mels, _ = t["encoder/conv1/weight"].shape
    dec_layers = {int(m.group(1)) for n in t if (m := re.match(r"^decoder/layer_(\d+)/", n))}
    vocab = int(t["decoder/embeddings/weight"].shape[0])
    return {
        "model_type": "whisper",
        "architectures": ["WhisperEncoder"],
        "d_model": int(d_model),
        "num_mel_bins": int(n_mels),
        "encoder_layers": encoder_layers(model),
        "encoder_attention_heads": model.scalar("encoder/num_heads"),
        "encoder_ffn_dim": int(t["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "max_source_positions": int(t["encoder/position_encodings/encodings"].shape[0]),
        "decoder_layers": max(dec_layers) + 1 if dec_layers else 0,
        "decoder_attention_heads": model.scalar("decoder/num_heads"),
        "decoder_ffn_dim": int(t["decoder/layer_0/ffn/linear_0/weight"].shape[0]) if dec_layers else 0,
        "max_target_positions": int(t["decoder/position_encodings/encodings"].shape[0]),
        "vocab_size": vocab,
        "activation_function": "gelu",
        "scale_embedding": False,
    }


def canonical_digest(state: dict[str, np.ndarray]) -> str:
    """sha256 over the tensors as float16, in sorted name order: the same for any file format of the
    same weights (a CTranslate2 float16 file, a hub float32 safetensors converted here)."""
    h = hashlib.sha256()
    for name in sorted(state):
        arr = np.ascontiguousarray(state[name], dtype=np.float16)
        h.update(name.encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()
