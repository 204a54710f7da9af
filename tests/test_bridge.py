"""Bridge shapes and lengths (both kinds), CTC compression on hand-made logits, checkpoints."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from assistant.engine.bridge import ConvBridge, CtcBridge, ctc_compress, run_bridge
from assistant.engine.checkpoint import (BridgeConfig, LoadedBridge, load_bridge, new_bridge, read_bridge_config,
                                         save_bridge)
from assistant.errors import BridgeMismatchError, ModelFilesError

BLANK = 0


def logits_for(labels: list[int], vocab: int = 6) -> torch.Tensor:
    """One-hot-ish logits whose argmax per frame is ``labels``."""
    out = torch.full((len(labels), vocab), -5.0)
    out[torch.arange(len(labels)), torch.tensor(labels)] = 5.0
    return out


def test_ctc_compress_drops_blanks_and_merges_runs():
    labels = [0, 1, 1, 0, 1, 2, 2, 0, 0, 3]
    feats = torch.arange(len(labels), dtype=torch.float32).unsqueeze(1).repeat(1, 3)
    seg = ctc_compress(feats, logits_for(labels), BLANK)
    # runs: frames 1-2 (label 1), frame 4 (label 1 again: a blank separates it), 5-6 (2), 9 (3)
    assert seg.shape == (4, 3)
    assert seg[:, 0].tolist() == [1.5, 4.0, 5.5, 9.0]


def test_ctc_compress_without_blanks_merges_adjacent_repeats_only():
    feats = torch.tensor([[1.0], [3.0], [5.0], [7.0]])
    seg = ctc_compress(feats, logits_for([2, 2, 4, 2]), BLANK)
    assert seg[:, 0].tolist() == [2.0, 5.0, 7.0]


def test_ctc_compress_all_blank_gives_one_mean_segment():
    feats = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    seg = ctc_compress(feats, logits_for([0, 0]), BLANK)
    assert seg.tolist() == [[2.0, 3.0]]


def test_ctc_compress_rejects_length_mismatch():
    with pytest.raises(ValueError, match="frames"):
        ctc_compress(torch.zeros(3, 2), torch.zeros(4, 6), BLANK)


@pytest.mark.parametrize("frames", [4, 5, 7, 8, 50, 101, 250])
def test_conv_bridge_downsamples_4x(frames):
    torch.manual_seed(0)
    bridge = ConvBridge(encoder_dim=16, llm_dim=24, hidden_dim=8).eval()
    out, lengths = bridge(torch.randn(1, frames, 16), torch.tensor([frames]))
    assert out.shape == (1, frames // 4, 24)
    assert lengths.tolist() == [frames // 4]


def test_conv_bridge_short_input_still_gives_one_position():
    bridge = ConvBridge(encoder_dim=4, llm_dim=6, hidden_dim=8).eval()
    out, lengths = bridge(torch.randn(1, 2, 4), torch.tensor([2]))
    assert out.shape[1] >= 1 and lengths.tolist() == [1]


def test_conv_bridge_padded_batch_equals_one_by_one():
    torch.manual_seed(0)
    bridge = ConvBridge(encoder_dim=16, llm_dim=24, hidden_dim=8).eval()
    feats = [torch.randn(n, 16) for n in (37, 52, 8, 90)]
    batched = run_bridge(bridge, feats)
    for f, b in zip(feats, batched):
        alone, _ = bridge(f.unsqueeze(0), torch.tensor([f.shape[0]]))
        assert b.shape == (f.shape[0] // 4, 24)
        torch.testing.assert_close(b, alone[0], rtol=1e-5, atol=1e-5)


def test_ctc_bridge_one_position_per_segment_and_batching():
    torch.manual_seed(0)
    bridge = CtcBridge(encoder_dim=8, llm_dim=12, hidden_dim=0, blank_id=BLANK).eval()
    labels_a = [0, 1, 1, 0, 2, 0, 3, 3]  # 3 segments
    labels_b = [4, 0, 0, 5, 5, 1]  # 3 segments
    labels_c = [0, 0, 0]  # all blank -> 1
    feats = [torch.randn(len(x), 8) for x in (labels_a, labels_b, labels_c)]
    outs = run_bridge(bridge, feats, [logits_for(x) for x in (labels_a, labels_b, labels_c)])
    assert [o.shape for o in outs] == [(3, 12), (3, 12), (1, 12)]
    alone = bridge.forward_segments(ctc_compress(feats[0], logits_for(labels_a), BLANK))
    torch.testing.assert_close(outs[0], alone)


def test_ctc_bridge_needs_logits():
    bridge = CtcBridge(encoder_dim=8, llm_dim=12, hidden_dim=0, blank_id=BLANK)
    with pytest.raises(ValueError, match="CTC logits"):
        run_bridge(bridge, [torch.randn(5, 8)])


def _ids(**kw):
    base = dict(encoder_id="enc@1", llm_id="llm@1", encoder_dim=16, llm_dim=24, ctc_blank_id=BLANK)
    base.update(kw)
    return base


@pytest.mark.parametrize("kind", ["conv", "ctc"])
def test_checkpoint_round_trip(tmp_path, kind):
    b = new_bridge(kind, encoder_dim=16, llm_dim=24, encoder_id="enc@1", llm_id="llm@1", hidden_dim=8,
                   ctc_blank_id=BLANK, version="v0001", seed=3)
    cfg = save_bridge(b, tmp_path / kind, parent_version="base", metrics={"wer": 0.25})
    data = json.loads((tmp_path / kind / "bridge.json").read_text())
    assert data["kind"] == kind and data["version"] == "v0001" and data["parent_version"] == "base"
    assert data["metrics"] == {"wer": 0.25} and data["sha256"] == cfg.sha256 and data["created_at"]
    loaded = load_bridge(tmp_path / kind, **_ids())
    feats = [torch.randn(40, 16)]
    logits = [logits_for([0, 1, 1, 2] * 10)]
    torch.testing.assert_close(run_bridge(loaded.module, feats, logits), run_bridge(b.module, feats, logits))
    assert read_bridge_config(tmp_path / kind) == loaded.config


def test_checkpoint_refuses_other_models_naming_both(tmp_path):
    b = new_bridge("conv", encoder_dim=16, llm_dim=24, encoder_id="enc@1", llm_id="llm@1", hidden_dim=8)
    save_bridge(b, tmp_path)
    with pytest.raises(BridgeMismatchError) as err:
        load_bridge(tmp_path, **_ids(encoder_id="enc@2"))
    assert "enc@1" in str(err.value) and "enc@2" in str(err.value)
    with pytest.raises(BridgeMismatchError, match="llm@1.*llm@9"):
        load_bridge(tmp_path, **_ids(llm_id="llm@9"))
    with pytest.raises(BridgeMismatchError, match="LLM dim: bridge 24, loaded LLM 896"):
        load_bridge(tmp_path, **_ids(llm_dim=896))
    with pytest.raises(BridgeMismatchError, match="encoder dim: bridge 16, loaded encoder 768"):
        load_bridge(tmp_path, **_ids(encoder_dim=768))


def test_ctc_checkpoint_refused_without_ctc_head(tmp_path):
    b = new_bridge("ctc", encoder_dim=16, llm_dim=24, encoder_id="enc@1", llm_id="llm@1", ctc_blank_id=BLANK)
    save_bridge(b, tmp_path)
    with pytest.raises(BridgeMismatchError, match="no CTC head.*conv bridge"):
        load_bridge(tmp_path, **_ids(ctc_blank_id=None))


def test_corrupt_or_incomplete_checkpoints_are_refused(tmp_path):
    b = new_bridge("conv", encoder_dim=16, llm_dim=24, encoder_id="enc@1", llm_id="llm@1", hidden_dim=8)
    save_bridge(b, tmp_path)
    w = tmp_path / "bridge.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 0xFF
    w.write_bytes(bytes(raw))
    with pytest.raises(ModelFilesError, match="corrupt"):
        load_bridge(tmp_path, **_ids())
    w.unlink()
    with pytest.raises(ModelFilesError, match="no bridge.safetensors"):
        load_bridge(tmp_path, **_ids())
    cfg = json.loads((tmp_path / "bridge.json").read_text())
    w.write_bytes(bytes(raw))
    (tmp_path / "bridge.json").write_text(json.dumps({**cfg, "sha256": ""}))
    with pytest.raises(ModelFilesError, match="no sha256"):
        load_bridge(tmp_path, **_ids())
    (tmp_path / "bridge.json").write_text("{not json")
    with pytest.raises(ModelFilesError, match="unreadable"):
        load_bridge(tmp_path, **_ids())
    (tmp_path / "bridge.json").unlink()
    with pytest.raises(ModelFilesError, match="no bridge.json"):
        load_bridge(tmp_path, **_ids())


def test_checkpoint_with_wrong_tensor_shapes_is_refused(tmp_path):
    b = new_bridge("conv", encoder_dim=16, llm_dim=24, encoder_id="enc@1", llm_id="llm@1", hidden_dim=8)
    save_bridge(b, tmp_path)
    other = new_bridge("conv", encoder_dim=16, llm_dim=24, encoder_id="enc@1", llm_id="llm@1", hidden_dim=12)
    save_bridge(other, tmp_path / "other")
    cfg = json.loads((tmp_path / "bridge.json").read_text())
    cfg["sha256"] = json.loads((tmp_path / "other" / "bridge.json").read_text())["sha256"]
    (tmp_path / "bridge.json").write_text(json.dumps(cfg))
    (tmp_path / "bridge.safetensors").write_bytes((tmp_path / "other" / "bridge.safetensors").read_bytes())
    with pytest.raises(ModelFilesError, match="do not match"):
        load_bridge(tmp_path, **_ids())


def test_unknown_kind_is_refused(tmp_path):
    b = new_bridge("conv", encoder_dim=16, llm_dim=24, encoder_id="enc@1", llm_id="llm@1", hidden_dim=8)
    save_bridge(b, tmp_path)
    cfg = json.loads((tmp_path / "bridge.json").read_text())
    cfg["kind"] = "qformer"
    (tmp_path / "bridge.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFilesError, match="qformer"):
        load_bridge(tmp_path, **_ids())


def test_ctc_segments_return_each_segments_label():
    from assistant.engine.bridge import ctc_segments

    labels = [0, 1, 1, 0, 1, 2, 2, 0, 0, 3]
    seg, lab = ctc_segments(torch.randn(len(labels), 4), logits_for(labels), BLANK)
    assert seg.shape[0] == 4 and lab.tolist() == [1, 1, 2, 3]
    _, lab = ctc_segments(torch.randn(2, 4), logits_for([0, 0]), BLANK)
    assert lab.tolist() == [BLANK]


def test_label_table_starts_from_the_llm_embeddings_and_round_trips(tmp_path, tiny_engine):
    from assistant.engine.bridge import init_label_table

    enc, llm = tiny_engine.encoder, tiny_engine.llm
    tokens = enc.ctc_tokenizer.convert_ids_to_tokens(list(range(len(enc.ctc_tokenizer))))
    b = new_bridge("ctc", encoder_dim=enc.dim, llm_dim=llm.dim, encoder_id=enc.identity, llm_id=llm.identity,
                   ctc_blank_id=enc.blank_id, ctc_vocab=len(tokens))
    found = init_label_table(b.module, tokens, "|", llm)
    assert found >= 27  # a-z, apostrophe and the word delimiter (as a space)
    a = tokens.index("a")
    torch.testing.assert_close(b.module.label_embed.weight[a], llm.embed_ids(llm.tokenizer("a", add_special_tokens=False).input_ids)[0, 0])
    with pytest.raises(ValueError, match="labels"):
        b.module.forward_segments(torch.randn(3, enc.dim))
    save_bridge(b, tmp_path)
    loaded = load_bridge(tmp_path, encoder_id=enc.identity, llm_id=llm.identity, encoder_dim=enc.dim,
                         llm_dim=llm.dim, ctc_blank_id=enc.blank_id)
    assert loaded.config.ctc_vocab == len(tokens)
    feats, logits = [torch.randn(20, enc.dim)], [logits_for([0, 5, 5, 0, 6, 4, 7] + [0] * 13, vocab=len(tokens))]
    torch.testing.assert_close(run_bridge(loaded.module, feats, logits), run_bridge(b.module, feats, logits))


def test_a_grown_personal_head_computes_what_its_parent_did_and_round_trips(tmp_path, tiny_engine):
    from assistant.engine.bridge import bridge_ctc_logits, with_personal_head

    enc, llm = tiny_engine.encoder, tiny_engine.llm
    tokens = enc.ctc_tokenizer.convert_ids_to_tokens(list(range(len(enc.ctc_tokenizer))))
    parent = new_bridge("ctc", encoder_dim=enc.dim, llm_dim=llm.dim, encoder_id=enc.identity, llm_id=llm.identity,
                        ctc_blank_id=enc.blank_id, ctc_vocab=len(tokens), hidden_dim=12, seed=1)
    grown = with_personal_head(parent.module, enc.ctc_head, adapter_dim=8)
    assert grown.owns_head and grown.adapter is not None and not parent.module.owns_head
    torch.manual_seed(0)
    feats = [torch.randn(30, enc.dim), torch.randn(17, enc.dim)]
    with torch.no_grad():
        logits = [enc.ctc_head(f) for f in feats]
        # the grown bridge reads the encoder's head itself: no logits needed, same outputs
        torch.testing.assert_close(run_bridge(grown, feats), run_bridge(parent.module, feats, logits))
        torch.testing.assert_close(bridge_ctc_logits(grown, feats[0], None), logits[0])
        assert bridge_ctc_logits(parent.module, feats[0], logits[0]) is logits[0]
        grown.adapter.up.weight.normal_()  # a trained adapter changes what the bridge hears
    with torch.no_grad():
        assert not torch.allclose(bridge_ctc_logits(grown, feats[0], None), logits[0])
    cand = LoadedBridge(module=grown, config=dataclasses.replace(parent.config, adapter_dim=8,
                                                                  head_vocab=grown.head.out_features))
    save_bridge(cand, tmp_path / "grown")
    loaded = load_bridge(tmp_path / "grown", encoder_id=enc.identity, llm_id=llm.identity, encoder_dim=enc.dim,
                         llm_dim=llm.dim, ctc_blank_id=enc.blank_id)
    assert loaded.config.adapter_dim == 8 and loaded.config.head_vocab == grown.head.out_features
    with torch.no_grad():
        torch.testing.assert_close(run_bridge(loaded.module, feats), run_bridge(grown, feats))
    with pytest.raises(ValueError, match="ctc bridge"):
        with_personal_head(ConvBridge(16, 24, 8), enc.ctc_head, 8)


def test_a_conv_config_with_a_personal_head_is_refused(tmp_path):
    b = new_bridge("conv", encoder_dim=16, llm_dim=24, encoder_id="enc@1", llm_id="llm@1", hidden_dim=8)
    save_bridge(b, tmp_path, head_vocab=5)
    with pytest.raises(ModelFilesError, match="no personal adapter or CTC head"):
        load_bridge(tmp_path, **_ids())


def test_a_personal_head_grows_in_the_bridges_dtype_when_the_encoder_runs_in_half():
    """On a GPU the encoder (and its CTC head) is fp16 while bridges stay fp32: the grown head must be
    fp32 and take the fp32 frames the encoder hands over (it failed on CUDA: Float vs Half)."""
    from assistant.engine.bridge import with_personal_head

    torch.manual_seed(0)
    parent = CtcBridge(8, 6, 0, blank_id=0)
    encoder_head = torch.nn.Linear(8, 5).half()
    grown = with_personal_head(parent, encoder_head, adapter_dim=4)
    assert {p.dtype for p in grown.parameters()} == {torch.float32}
    assert torch.equal(grown.head.weight, encoder_head.weight.float())
    out, lengths = grown(torch.randn(1, 7, 8), torch.tensor([7]))
    assert out.dtype == torch.float32 and int(lengths[0]) >= 1


def test_voice_routing_serves_the_personal_head_only_to_the_users_voice(tmp_path):
    """A routed bridge gives an utterance near the user's centroid its personal head and adapter, and
    any other its parent's path (encoder frames and logits); training always uses the personal path."""
    from assistant.engine.bridge import with_personal_head

    torch.manual_seed(0)
    parent = CtcBridge(8, 6, 0, blank_id=0)
    grown = with_personal_head(parent, torch.nn.Linear(8, 5), adapter_dim=4)
    with torch.no_grad():
        grown.head.weight.add_(torch.randn_like(grown.head.weight))  # the head learned something
    user, generic = torch.full((8,), 2.0), torch.full((8,), -2.0)
    grown.set_voice(user, generic, threshold=1.0)
    grown.eval()
    mine, other = user + 0.1 * torch.randn(7, 8), generic + 0.1 * torch.randn(7, 8)
    enc_logits = torch.randn(7, 5)
    f, logits = grown.frames(other, enc_logits)
    assert torch.equal(f, other) and torch.equal(logits, enc_logits)  # the parent's path
    f, logits = grown.frames(mine, enc_logits)
    assert torch.equal(logits, grown.head(grown.adapter(mine)))  # the personal path
    grown.train()
    assert not torch.equal(grown.frames(other, enc_logits)[1], enc_logits)  # training: never routed
    grown.eval()
    # the routing travels in the checkpoint: buffers in the weights, the flag in the JSON
    b = LoadedBridge(module=grown, config=BridgeConfig(kind="ctc", encoder_dim=8, llm_dim=6, hidden_dim=0,
                                                        encoder_id="e", llm_id="l", ctc_blank_id=0, adapter_dim=4,
                                                        head_vocab=5, voice_routing=True))
    save_bridge(b, tmp_path / "v")
    got = load_bridge(tmp_path / "v", encoder_id="e", llm_id="l", encoder_dim=8, llm_dim=6, ctc_blank_id=0)
    assert got.config.voice_routing and torch.equal(got.module.voice_user, user)
    assert torch.equal(got.module.frames(other, enc_logits)[1], enc_logits)
    # and run_bridge hands the encoder's logits over, so serving routes too
    out_other = run_bridge(got.module, [other], [enc_logits])[0]
    from assistant.engine.bridge import ctc_segments

    assert torch.allclose(out_other, got.module.forward_segments(*ctc_segments(other, enc_logits, 0)))


def test_a_temporal_adapter_sees_its_neighbours_ignores_padding_and_round_trips(tmp_path):
    """adapter_kernel > 1: a frame's output depends on the frames around it (not on frames farther than
    half the kernel), a padded batch gives what each utterance alone gives, dropout acts in training
    only, and the kernel and dropout come back from the bridge JSON."""
    from assistant.engine.bridge import ResidualAdapter, with_personal_head

    torch.manual_seed(0)
    ad = ResidualAdapter(8, 6, kernel_size=5, dropout=0.5)
    torch.nn.init.normal_(ad.up.weight)  # trained: no longer the identity
    ad.eval()
    x = torch.randn(20, 8)
    y = ad(x)
    x2 = x.clone()
    x2[10] += torch.randn(8)  # not a constant: LayerNorm would remove that
    changed = (ad(x2) - y).abs().sum(-1) > 1e-6
    assert changed.nonzero().flatten().tolist() == [8, 9, 10, 11, 12]  # kernel 5: two frames each side
    short = torch.randn(7, 8)
    batch = torch.nn.utils.rnn.pad_sequence([x, short], batch_first=True)
    out = ad(batch, torch.tensor([20, 7]))
    torch.testing.assert_close(out[1, :7], ad(short))
    torch.testing.assert_close(out[0], y)
    ad.train()
    assert not torch.allclose(ad(x), y)  # dropout on the hidden units
    with pytest.raises(ValueError, match="odd"):
        ResidualAdapter(8, 6, kernel_size=4)

    parent = new_bridge("ctc", encoder_dim=8, llm_dim=24, encoder_id="enc@1", llm_id="llm@1", ctc_blank_id=0,
                        hidden_dim=0)
    grown = with_personal_head(parent.module, torch.nn.Linear(8, 5), adapter_dim=6, adapter_kernel=5,
                               adapter_dropout=0.3)
    assert grown.adapter.kernel_size == 5 and grown.adapter.drop.p == 0.3
    cand = LoadedBridge(module=grown, config=dataclasses.replace(parent.config, adapter_dim=6, adapter_kernel=5,
                                                                  adapter_dropout=0.3, head_vocab=5))
    save_bridge(cand, tmp_path / "k5")
    loaded = load_bridge(tmp_path / "k5", encoder_id="enc@1", llm_id="llm@1", encoder_dim=8, llm_dim=24,
                         ctc_blank_id=0)
    assert (loaded.config.adapter_kernel, loaded.config.adapter_dropout) == (5, 0.3)
    assert loaded.module.adapter.kernel_size == 5


def test_a_text_input_bridge_hands_the_llm_its_own_tokens_and_grows_a_personal_head(tmp_path, tiny_engine):
    from assistant.engine.bridge import bridge_ctc_logits, with_personal_head
    from assistant.engine.engine import Engine
    from assistant.engine.encoder import EncoderOutput

    enc, llm = tiny_engine.encoder, tiny_engine.llm
    text = new_bridge("ctc", encoder_dim=enc.dim, llm_dim=llm.dim, encoder_id=enc.identity, llm_id=llm.identity,
                      ctc_blank_id=enc.blank_id, hidden_dim=0, text_input=True)
    assert sum(p.numel() for p in text.module.parameters()) == 0  # nothing to train until a head grows
    with pytest.raises(ValueError, match="trained with the 'ctc' alignment method"):
        text.module.forward_segments(torch.zeros(3, enc.dim))
    with pytest.raises(ValueError, match="no label table or projection"):
        new_bridge("ctc", encoder_dim=enc.dim, llm_dim=llm.dim, encoder_id=enc.identity, llm_id=llm.identity,
                   ctc_blank_id=enc.blank_id, hidden_dim=16, text_input=True)
    save_bridge(text, tmp_path / "text")
    loaded = load_bridge(tmp_path / "text", encoder_id=enc.identity, llm_id=llm.identity, encoder_dim=enc.dim,
                         llm_dim=llm.dim, ctc_blank_id=enc.blank_id)
    assert loaded.config.text_input and loaded.module.text_input

    torch.manual_seed(0)
    feats = torch.randn(40, enc.dim)
    logits = enc.ctc_head(feats).detach()
    engine = Engine(enc, loaded, llm, speculative=True)
    seen = []
    real_prefix = llm.speech_prefix
    llm.speech_prefix = lambda speech: seen.append(speech) or real_prefix(speech)
    try:
        engine.transcribe_encoded(EncoderOutput(feats, logits, enc.frame_rate_hz), 0.8)
    finally:
        del llm.speech_prefix
    reading = llm.embed_ids(llm.text_ids(enc.ctc_text(logits)))[0]
    torch.testing.assert_close(seen[0], reading)  # the LLM reads its own embeddings of the CTC reading

    grown = with_personal_head(loaded.module, enc.ctc_head, adapter_dim=8, adapter_kernel=3)
    assert grown.text_input and grown.owns_head and next(grown.parameters()).dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(bridge_ctc_logits(grown, feats, None), logits)
