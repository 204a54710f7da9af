"""The engine on tiny random bundles: encoder outputs, turns, bridge kinds, chat path, hot-swap checks."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from assistant.engine.checkpoint import new_bridge, read_bridge_config, save_bridge
from assistant.engine.engine import Engine
from assistant.errors import BridgeMismatchError, ModelFilesError

from conftest import noise_wave


def test_encoder_batch_gives_unpadded_50hz_frames_and_ctc_logits(tiny_engine):
    enc = tiny_engine.encoder
    assert enc.has_ctc and enc.frame_rate_hz == pytest.approx(50, abs=0.5)
    waves = [noise_wave(s, i) for i, s in enumerate((0.5, 1.0, 2.3))]
    outs = enc.encode(waves)
    for w, o in zip(waves, outs):
        assert abs(o.n_frames - len(w) / 320) <= 1.5
        assert o.features.shape == (o.n_frames, enc.dim)
        assert o.ctc_logits.shape[0] == o.n_frames and o.features.dtype == torch.float32
    # one at a time gives the same number of frames (batching pads, outputs are cut back)
    assert [o.n_frames for o in outs] == [enc.encode([w])[0].n_frames for w in waves]


def test_run_returns_a_turn_with_timings_and_version(tiny_engine):
    turn = tiny_engine.run(noise_wave(2.0, 3))
    assert isinstance(turn.transcript, str) and isinstance(turn.response, str)
    assert turn.bridge_version == "random-0" and turn.audio_duration_s == pytest.approx(2.0)
    t = turn.timings
    assert min(t.encoder_s, t.bridge_s, t.transcript_s, t.response_s) > 0
    assert t.total_s == pytest.approx(t.encoder_s + t.bridge_s + t.transcript_s + t.response_s)
    budget = tiny_engine.llm.transcript_budget(2.0)
    assert 1 <= turn.transcript_passes <= budget
    d = turn.to_json()
    assert set(d) >= {"transcript", "response", "timings", "bridge_version"} and "encoded" not in d
    json.dumps(d)


def test_transcribe_only_skips_the_response(tiny_engine):
    turn = tiny_engine.run(noise_wave(1.0, 4), respond=False)
    assert turn.response is None and turn.timings.response_s == 0


def test_ctc_bridge_kind_runs(tiny_bundle):
    engine = Engine.from_bundle(tiny_bundle, bridge_kind="ctc", device="cpu")
    assert engine.bridge.kind == "ctc"
    assert isinstance(engine.run(noise_wave(1.5, 5)).transcript, str)


def test_chat_template_path_and_bounded_history(tiny_chat_bundle):
    engine = Engine.from_bundle(tiny_chat_bundle, device="cpu")
    assert engine.llm.prompt.response == "chat"
    ids = engine.llm.response_ids("hello there", [("hi", "yo")])
    text = engine.llm.tokenizer.decode(ids)
    assert "user: hi\nassistant: yo\nuser: hello there\nassistant:" in text
    for i in range(5):
        engine.run(noise_wave(1.0, 10 + i))
    assert len(engine.history) == engine.llm.prompt.history_turns == 3


def test_plain_prompt_format_is_documented_shape(tiny_engine):
    ids = tiny_engine.llm.response_ids("turn on the light", [("hi", "hello")])
    text = tiny_engine.llm.tokenizer.decode(ids, skip_special_tokens=True)
    assert text == "User: hi\nAssistant: hello\nUser: turn on the light\nAssistant:"


def _without_ctc_head(bundle, tmp_path):
    """Replace the bundle's encoder by the same HuBERT without its CTC head; re-key bridges to it."""
    from transformers import HubertModel

    from assistant.bundle import fingerprint, load_bundle

    enc_dir = bundle / "encoder"
    base = HubertModel.from_pretrained(enc_dir)
    shutil.rmtree(enc_dir)
    base.save_pretrained(enc_dir)
    from transformers import Wav2Vec2FeatureExtractor

    Wav2Vec2FeatureExtractor(return_attention_mask=False).save_pretrained(enc_dir)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["encoder"]["id"] = fingerprint(enc_dir, "headless")
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    for kind in ("conv", "ctc"):
        cfg = read_bridge_config(bundle / "bridge" / kind)
        b = new_bridge(kind, encoder_dim=cfg.encoder_dim, llm_dim=cfg.llm_dim, encoder_id=manifest["encoder"]["id"],
                       llm_id=cfg.llm_id, hidden_dim=cfg.hidden_dim, ctc_blank_id=cfg.ctc_blank_id)
        save_bridge(b, bundle / "bridge" / kind)
    return load_bundle(bundle)


def test_ctc_bridge_falls_back_to_conv_without_ctc_head(bundle_copy, tmp_path, caplog):
    _without_ctc_head(bundle_copy, tmp_path)
    engine = Engine.from_bundle(bundle_copy, bridge_kind="ctc", device="cpu")
    assert engine.bridge.kind == "conv" and not engine.encoder.has_ctc and not engine.speculative
    assert "no CTC head" in caplog.text
    assert isinstance(engine.run(noise_wave(1.0, 1)).transcript, str)
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    del manifest["bridges"]["conv"]
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BridgeMismatchError, match="needs an encoder with a CTC head"):
        Engine.from_bundle(bundle_copy, bridge_kind="ctc", device="cpu")


def test_bundle_with_a_bridge_for_other_models_is_refused(bundle_copy):
    cfg = json.loads((bundle_copy / "bridge" / "conv" / "bridge.json").read_text())
    cfg["llm_id"] = "someone-else@0000"
    (bundle_copy / "bridge" / "conv" / "bridge.json").write_text(json.dumps(cfg))
    with pytest.raises(BridgeMismatchError, match="someone-else@0000"):
        Engine.from_bundle(bundle_copy, device="cpu")


def test_missing_model_files_name_the_directory(bundle_copy):
    (bundle_copy / "llm" / "model.safetensors").unlink()
    with pytest.raises(ModelFilesError, match="cannot load the LLM from"):
        Engine.from_bundle(bundle_copy, device="cpu")
    shutil.rmtree(bundle_copy / "encoder")
    with pytest.raises(ModelFilesError, match="encoder directory .* has no config.json"):
        Engine.from_bundle(bundle_copy, device="cpu")
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(ModelFilesError, match="manifest.json is missing"):
        Engine.from_bundle(bundle_copy, device="cpu")


def test_swap_bridge_checks_shapes_and_returns_previous(tiny_bundle):
    engine = Engine.from_bundle(tiny_bundle, device="cpu")
    old = engine.bridge
    cfg = old.config
    new = new_bridge("conv", encoder_dim=cfg.encoder_dim, llm_dim=cfg.llm_dim, encoder_id=cfg.encoder_id,
                     llm_id=cfg.llm_id, hidden_dim=16, version="v0002", seed=9)
    assert engine.swap_bridge(new) is old
    assert engine.run(noise_wave(1.0, 2)).bridge_version == "v0002"
    wrong_dims = new_bridge("conv", encoder_dim=cfg.encoder_dim + 1, llm_dim=cfg.llm_dim, encoder_id=cfg.encoder_id,
                            llm_id=cfg.llm_id)
    with pytest.raises(BridgeMismatchError, match="dims"):
        engine.swap_bridge(wrong_dims)
    other_llm = new_bridge("conv", encoder_dim=cfg.encoder_dim, llm_dim=cfg.llm_dim, encoder_id=cfg.encoder_id,
                           llm_id="another-llm@1")
    with pytest.raises(BridgeMismatchError, match="another-llm@1"):
        engine.swap_bridge(other_llm)
    assert engine.bridge is new


def test_preset_shapes_match_hubert_base_and_qwen_half_billion():
    """The preset-shaped random bundle really has the real models' sizes (built on the meta device)."""
    from transformers import AutoModelForCausalLM, AutoModelForCTC

    from assistant.modelgen import _encoder_config, _llm_config, char_tokenizer

    tok = char_tokenizer(vocab_size=151936)
    with torch.device("meta"):
        enc = AutoModelForCTC.from_config(_encoder_config("preset", 32))
        llm = AutoModelForCausalLM.from_config(_llm_config("preset", tok))
    n_enc = sum(p.numel() for p in enc.parameters())
    n_llm = sum(p.numel() for p in llm.parameters())
    assert 94e6 < n_enc < 96e6  # HuBERT-base: 94.4M + CTC head
    assert 490e6 < n_llm < 500e6  # Qwen2.5-0.5B: 494M
    assert len(tok) == 151936


def test_ctc_text_keeps_word_boundaries(tiny_engine):
    """Greedy CTC reading: repeats merged, blanks dropped, the word delimiter becomes a space."""
    enc = tiny_engine.encoder
    tok = enc.ctc_tokenizer
    seq = ["<pad>", "h", "h", "<pad>", "i", "|", "|", "y", "<pad>", "o", "o", "|"]
    ids = tok.convert_tokens_to_ids(seq)
    logits = torch.full((len(ids), len(tok)), -5.0)
    logits[torch.arange(len(ids)), torch.tensor(ids)] = 5.0
    assert enc.ctc_text(logits) == "hi yo"


def test_transcript_loss_computes_logits_only_where_needed_and_equals_the_full_loss(tiny_engine):
    from assistant.alignment.objective import speech_batch, target_ids, transcript_loss

    llm = tiny_engine.llm
    torch.manual_seed(0)
    speech = [torch.randn(7, llm.dim), torch.randn(12, llm.dim)]
    targets = [target_ids(llm, "set a timer"), target_ids(llm, "call mary")]
    embeds, mask, labels = speech_batch(llm, speech, targets)
    full = llm.model(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(transcript_loss(llm, speech, targets), full, rtol=1e-5, atol=1e-5)
