"""The synthetic speakers world: voice specs, engines (real espeak-ng/flite/festival/sox), text
splits, the clip cache and manifests. Bounded: a few dozen short clips in all."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from assistant import units
from assistant.synth import corpus, lexicon, voices
from assistant.synth.text import (
    Utterance, base_sentences, enrollment_prompts, has_personal_word, lm_training_text,
    normalize_text, personal_sentences, split_of,
)
from assistant.synth.voice_spec import SynthError, VoiceSpec, parse
from assistant.synth.voices_sets import (
    HELDOUT_VOICES, NEW_USER_EXAMPLES, TRAIN_VOICES, check_voice_sets, train_voice_for,
)

WARP = "espeak-ng:en-us+klatt2|sox:pitch -400 highpass 300 lowpass 3400 reverb 30|noise:15"


def _need(*binaries: str) -> None:
    for b in binaries:
        if shutil.which(b) is None:
            pytest.skip(f"{b} is not installed")


# --- voice specs --------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "espeak-ng:en-gb-scotland+m3,rate=160,pitch=40", "flite:slt", "festival:kal_diphone",
    "flite:slt|sox:highpass 300 lowpass 3400", WARP, "flite:kal,rate=150|noise:7.5",
    "espeak-ng:en-us|sox:compand 0.3,1 6:-70,-60,-20 -5 -90 0.2 gain -n",
])
def test_spec_round_trip(text):
    spec = parse(text)
    assert str(spec) == text
    assert parse(str(spec)) == spec == VoiceSpec.parse(text)


def test_spec_fields_and_loose_input():
    s = parse(" espeak-ng:en-us+f2, pitch=70 ,rate=130 | noise:15 | sox:gain -3 ")
    assert (s.engine, s.voice, s.variant, s.rate, s.pitch) == ("espeak-ng", "en-us", "f2", 130, 70)
    assert s.sox_effects == ("gain", "-3") and s.noise_snr_db == 15.0
    assert str(s) == "espeak-ng:en-us+f2,rate=130,pitch=70|sox:gain -3|noise:15"
    odd = VoiceSpec("espeak-ng", "en-us", noise_snr_db=12.345678912)
    assert parse(str(odd)) == odd


@pytest.mark.parametrize("text, parts", [
    ("say:en-us", ["'say'", "espeak-ng, flite, festival"]),
    ("en-us+m3", ["no ENGINE:VOICE", "ENGINE:VOICE"]),
    ("espeak-ng:", ["missing voice", "espeak-ng:VOICE"]),
    ("espeak-ng:en-us+", ["empty variant"]),
    ("espeak-ng:en-us,speed=3", ["'speed=3'", "rate=N and pitch=N"]),
    ("espeak-ng:en-us,rate=fast", ["rate='fast'", "integer"]),
    ("espeak-ng:en-us,rate=20", ["rate=20", "80..450"]),
    ("espeak-ng:en-us,pitch=120", ["pitch=120", "0..99"]),
    ("espeak-ng:en-us,rate=150,rate=160", ["rate= given twice"]),
    ("flite:slt,rate=300", ["rate=300", "50..200"]),
    ("flite:slt,pitch=40", ["pitch=40", "flite", "|sox:pitch"]),
    ("festival:kal_diphone+m3", ["+m3", "only espeak-ng"]),
    ("espeak-ng:en-us|sox:trim 0 1", ["'trim'", "highpass"]),
    ("espeak-ng:en-us|sox:highpass 300 loud", ["'loud'", "allowed effects"]),
    ("espeak-ng:en-us|sox:highpass 3$0", ["'3$0'", "numbers"]),
    ("espeak-ng:en-us|noise:loud", ["'loud'", "|noise:"]),
    ("espeak-ng:en-us|noise:200", ["200", "-10 to 80"]),
    ("espeak-ng:en-us|noise:nan", ["nan", "-10 to 80"]),
    ("espeak-ng:en-us|echo:3", ["'echo:3'", "|sox:EFFECTS"]),
])
def test_spec_errors_name_the_bad_part(text, parts):
    with pytest.raises(SynthError) as e:
        parse(text)
    for p in parts:
        assert p in str(e.value), (p, str(e.value))
    assert e.value.fix


def test_unknown_voices_are_refused():
    _need("espeak-ng", "flite", "festival")
    for text, part in [("espeak-ng:en-zz", "'en-zz'"), ("espeak-ng:en-us+M3", "'M3'"),
                       ("espeak-ng:en-us+nosuch", "'nosuch'"), ("flite:nosuch", "'nosuch'"),
                       ("flite:awb_time", "clock times"), ("festival:nosuch", "'nosuch'")]:
        with pytest.raises(SynthError, match=part):
            voices.check_voice(text)


def test_missing_engine_gives_install_hint(monkeypatch):
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name in ("flite", "sox") else real(name))
    with pytest.raises(SynthError, match="apt-get install flite"):
        voices.check_engine("flite")
    with pytest.raises(SynthError, match="apt-get install flite"):
        voices.synthesize("flite:slt", "hello there")
    with pytest.raises(SynthError, match="apt-get install sox"):
        voices.check_voice("espeak-ng:en-us|sox:gain -3")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(shutil, "which", real)
    with pytest.raises(SynthError, match="apt-get install festival festvox-kallpc16k"):
        voices.check_engine("festival")
    with pytest.raises(SynthError, match="apt-get install espeak-ng"):
        voices.synthesize("espeak-ng:en-us", "hello there")


# --- engines ------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, binary", [
    ("espeak-ng:en-gb-scotland+m3,rate=160,pitch=40", "espeak-ng"), ("flite:slt", "flite"),
    ("flite:kal,rate=120", "flite"), ("festival:kal_diphone", "text2wave"),
    ("festival:kal_diphone,rate=80", "text2wave"), (WARP, "espeak-ng"),
])
def test_engines_make_16k_speech(spec, binary):
    _need(binary, "sox")
    x = voices.synthesize(spec, "set a timer for five minutes", seed=0)
    assert x.dtype == np.float32 and x.ndim == 1
    assert 0.8 < len(x) / units.TARGET_RATE_HZ < 5.0  # about two seconds of speech
    assert np.sqrt(np.mean(x ** 2)) > 0.01 and np.max(np.abs(x)) <= 0.99 + 1e-6


def test_synthesis_is_deterministic():
    _need("espeak-ng", "sox")
    a = voices.synthesize(WARP, "call anna on her mobile", seed=3)
    b = voices.synthesize(WARP, "call anna on her mobile", seed=3)
    c = voices.synthesize(WARP, "call anna on her mobile", seed=4)
    assert a.tobytes() == b.tobytes()
    assert len(a) == len(c) and not np.array_equal(a, c)  # same speech, other noise
    plain = "espeak-ng:en-us+m3,rate=170"
    assert np.array_equal(voices.synthesize(plain, "hello there", seed=1),
                          voices.synthesize(plain, "hello there", seed=2))  # no noise: seed unused


def test_noise_has_the_asked_snr():
    _need("espeak-ng", "sox")
    clean = voices.synthesize("espeak-ng:en-us+m3|sox:gain -12", "turn on the kitchen lights")
    noisy = voices.synthesize("espeak-ng:en-us+m3|sox:gain -12|noise:10", "turn on the kitchen lights")
    snr = 10 * np.log10(np.mean(clean.astype(float) ** 2) / np.mean((noisy - clean).astype(float) ** 2))
    assert abs(snr - 10) < 0.5


def test_empty_text_is_refused():
    _need("espeak-ng")
    with pytest.raises(SynthError, match="empty"):
        voices.synthesize("espeak-ng:en-us", "   ")


# --- voice sets ---------------------------------------------------------------------------
def test_voice_sets():
    assert len(TRAIN_VOICES) == 140 and len({str(v) for v in TRAIN_VOICES}) == 140
    train = {(v.voice, v.variant) for v in TRAIN_VOICES}
    assert not train & {(v.voice, v.variant) for v in HELDOUT_VOICES}
    assert {v.engine for v in NEW_USER_EXAMPLES} == {"espeak-ng", "flite", "festival"}
    v = train_voice_for("timers-0123456789", 0)
    assert v == train_voice_for("timers-0123456789", 0) and (v.voice, v.variant) in train
    drawn = [train_voice_for(f"u{i}", 0) for i in range(300)]
    assert all(130 <= d.rate <= 190 and 30 <= d.pitch <= 70 for d in drawn)
    assert len({(d.voice, d.variant) for d in drawn}) > 80
    _need("espeak-ng", "flite", "festival", "sox")
    check_voice_sets()  # every named voice and variant is installed


# --- text ---------------------------------------------------------------------------------
def test_normalize_text():
    assert normalize_text("  Set a Timer for twenty-five minutes, please! ") == \
        "set a timer for twenty five minutes please"
    assert normalize_text("What\u2019s 'the' weather in São Paulo?") == "what's the weather in sao paulo"
    assert normalize_text("") == ""


def test_base_splits_are_disjoint_and_large():
    splits = base_sentences(0)
    sizes = {k: len(v) for k, v in splits.items()}
    assert sizes["train"] >= 5000 and sizes["dev"] >= 500 and sizes["test"] >= 500, sizes
    texts = {k: {u.text for u in v} for k, v in splits.items()}
    assert all(len(texts[k]) == sizes[k] for k in texts)  # no duplicates inside a split
    assert not texts["train"] & texts["dev"] and not texts["train"] & texts["test"]
    assert not texts["dev"] & texts["test"]
    every = [u for v in splits.values() for u in v]
    assert len({u.id for u in every}) == len(every)
    assert all(u.text == normalize_text(u.text) and u.reply and not u.personal for u in every)
    assert not any(has_personal_word(u.text) for u in every)
    personal = {w for n in (*lexicon.PERSONAL_NAMES, *lexicon.PERSONAL_PLACES) for w in n.split()}
    assert not any(personal & set(u.text.replace("'s", "").split()) for u in every)
    assert len({u.domain for u in every}) == 9
    # seed changes the order, never the membership
    other = base_sentences(7)
    assert {k: {u.text for u in v} for k, v in other.items()} == texts
    assert [u.text for u in other["train"]] != [u.text for u in splits["train"]]


def test_personal_sentences():
    allp = personal_sentences(0)
    adapt, test = personal_sentences(0, "adapt"), personal_sentences(0, "test")
    assert len(allp) >= 600 and len(adapt) + len(test) == len(allp)
    assert len(adapt) >= 300 and len(test) >= 300
    assert not {u.text for u in adapt} & {u.text for u in test}
    assert all(u.personal and has_personal_word(u.text) for u in allp)
    assert {split_of(u) for u in adapt} == {"adapt"} and {split_of(u) for u in test} == {"test"}
    named = {w for u in allp for w in u.text.replace("'s", "").split()}
    assert set(lexicon.PERSONAL_NAMES) <= named and set(lexicon.PERSONAL_PLACES) <= named


def test_lm_text_is_train_only():
    splits = base_sentences(0)
    lm = lm_training_text(0)
    lm_texts = {t for t, _ in lm}
    assert lm_texts == {u.text for u in splits["train"]}
    held = {u.text for u in splits["test"] + splits["dev"]} | {u.text for u in personal_sentences(0)}
    assert not lm_texts & held
    assert not any(has_personal_word(t) or has_personal_word(r) for t, r in lm)


def test_enrollment_prompts():
    prompts = enrollment_prompts(20, seed=0)
    assert len(prompts) == 20 and len({u.text for u in prompts}) == 20
    assert sum(u.personal for u in prompts) == 10
    assert {split_of(u) for u in prompts} <= {"dev", "adapt"}  # never a test sentence


# --- corpus -------------------------------------------------------------------------------
def test_generate_manifest_and_cache(tmp_path, monkeypatch):
    _need("espeak-ng", "sox")
    monkeypatch.setenv("ASSISTANT_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[str] = []
    real = corpus.synthesize

    def counting(spec, text, *, seed=0):
        calls.append(text)
        return real(spec, text, seed=seed)

    monkeypatch.setattr(corpus, "synthesize", counting)
    utts = base_sentences(0)["test"][:4] + personal_sentences(0, "adapt")[:1]
    specs = ["espeak-ng:en-us+m3,rate=170,pitch=40", "espeak-ng:en-029+f2|sox:gain -3|noise:20"]
    items = [(s, u) for s in specs for u in utts]
    seen: list[tuple[int, int]] = []
    m = corpus.generate(items, tmp_path / "a", seed=1, workers=2, progress=lambda d, t: seen.append((d, t)))
    assert m == tmp_path / "a" / "manifest.jsonl" and len(calls) == 10 and seen[-1] == (10, 10)
    rows = corpus.read_manifest(m)
    assert len(rows) == 10 and len({r["id"] for r in rows}) == 10
    assert [r["text"] for r in rows] == [u.text for _, u in items]
    assert {r["split"] for r in rows} == {"test", "adapt"} and sum(r["personal"] for r in rows) == 2
    for r in rows:
        info = sf.info(r["audio"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert abs(info.frames / 16000 - r["duration_s"]) < 1e-3 and r["audio"].startswith(str(tmp_path / "cache"))
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    mtimes = {r["audio"]: corpus.Path(r["audio"]).stat().st_mtime_ns for r in rows}
    m2 = corpus.generate(items[:3], tmp_path / "b", seed=1)  # all cached: nothing synthesized
    assert len(calls) == 10
    assert [r["audio"] for r in corpus.read_manifest(m2)] == [r["audio"] for r in rows[:3]]
    assert all(corpus.Path(a).stat().st_mtime_ns == t for a, t in mtimes.items())
    corpus.generate(items[:1], tmp_path / "c", seed=2)  # another seed is another clip
    assert len(calls) == 11


def test_failed_synthesis_leaves_no_partial_files(tmp_path, monkeypatch):
    _need("espeak-ng")

    def failing(spec, text, *, seed=0):
        raise SynthError("engine exploded", fix="none")

    monkeypatch.setattr(corpus, "synthesize", failing)
    utt = Utterance("x-1", "hello there", "Hi.", "calls")
    with pytest.raises(SynthError, match="exploded"):
        corpus.generate([("espeak-ng:en-us", utt)], tmp_path / "out", cache_dir=tmp_path / "cache")
    assert not list(tmp_path.rglob("*.wav")) and not list(tmp_path.rglob("*.tmp"))
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


def test_read_manifest_errors_name_the_line(tmp_path):
    good = {"id": "a", "voice": "flite:slt", "text": "hi", "reply": "Hi.", "audio": "a.wav",
            "duration_s": 1.0, "domain": "calls", "personal": False, "split": "train"}
    (tmp_path / "a.wav").write_bytes(b"")
    cases = [("{not json", "not JSON"), (json.dumps({**good, "split": "val"}), "split 'val'"),
             (json.dumps({k: v for k, v in good.items() if k != "reply"}), "missing field 'reply'"),
             (json.dumps({**good, "personal": "no"}), "'personal' has the wrong type"),
             (json.dumps({**good, "voice": "say:x"}), "bad voice spec"),
             (json.dumps({**good, "audio": "gone.wav"}), "gone.wav is missing")]
    for line, part in cases:
        p = tmp_path / "manifest.jsonl"
        p.write_text(json.dumps(good) + "\n" + line + "\n")
        with pytest.raises(SynthError) as e:
            corpus.read_manifest(p)
        assert "manifest.jsonl:2" in str(e.value) and part in str(e.value), str(e.value)
    p.write_text(json.dumps(good) + "\n")
    assert corpus.read_manifest(p)[0]["audio"] == str(tmp_path / "a.wav")


def test_cli(tmp_path, capsys):
    _need("espeak-ng")
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert corpus.main(["--voice", "espeak-ng:en-us+m5", "--split", "personal-test", "--n", "3",
                        "--out", str(out), "--cache-dir", str(cache)]) == 0
    rows = corpus.read_manifest(out / "manifest.jsonl")
    assert len(rows) == 3 and all(r["personal"] and r["split"] == "test" for r in rows)
    assert corpus.main(["--voice", "espeak-ng:en-us+nosuch", "--out", str(out), "--n", "1",
                        "--cache-dir", str(cache)]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert corpus.main(["--base", "--out", str(tmp_path / "base"), "--train-n", "2", "--dev-n", "0",
                        "--test-n", "1", "--heldout-n", "2", "--cache-dir", str(cache)]) == 0
    held = corpus.read_manifest(tmp_path / "base" / "test-heldout" / "manifest.jsonl")
    assert {r["voice"] for r in held} <= {str(v) for v in HELDOUT_VOICES}
    assert len(corpus.read_manifest(tmp_path / "base" / "train" / "manifest.jsonl")) == 2
