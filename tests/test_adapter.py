"""The reply adapter (engine/adapter.py): trained with the build stage's own function on a tiny chat
bundle, on for replies only and only in the replying thread, saved and loaded by the bundle, and refused
with a clear error when it was trained for another LLM."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading

import pytest
import torch

from assistant.bundle import load_bundle, save_manifest
from assistant.engine.adapter import ADAPTER_JSON, AdapterSpec, attach, load_adapter, top_layer_modules
from assistant.engine.engine import Engine
from assistant.errors import BridgeMismatchError, ModelFilesError
from bench.real.reply_adapter import ADAPTER_DIR, ReplyRecipe, examples, train

PAIRS = [("set a timer", "ok timer"), ("call mom", "calling mom"), ("play jazz", "playing jazz"),
         ("lights off", "lights off now")]


def _logits(llm, text="set a timer"):
    ids = torch.tensor([llm.response_ids(text, [])])
    with torch.no_grad():
        return llm.model(input_ids=ids).logits


@pytest.fixture()
def chat_copy(tiny_chat_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(tiny_chat_bundle, dst)
    return dst


def test_an_untrained_adapter_changes_nothing_and_the_spec_names_real_layers(tiny_chat_bundle):
    engine = Engine.from_bundle(tiny_chat_bundle, device="cpu")
    before = _logits(engine.llm)
    modules = top_layer_modules(engine.llm.model, 1, ("q_proj", "down_proj"))
    assert modules == ("model.layers.1.self_attn.q_proj", "model.layers.1.mlp.down_proj")
    adapter = attach(engine.llm.model, AdapterSpec(4, 8.0, modules))
    with adapter.active():
        assert torch.equal(_logits(engine.llm), before)  # B starts at zero
    with pytest.raises(ModelFilesError, match="no linear layer named nope"):
        top_layer_modules(engine.llm.model, 2, ("nope",))


def test_examples_label_only_the_reply_and_its_end(tiny_chat_bundle):
    engine = Engine.from_bundle(tiny_chat_bundle, device="cpu")
    (ids, labels), = examples(engine.llm, [("call mom", "calling mom")])
    head = engine.llm.response_ids("call mom", [])
    assert ids[: len(head)] == head and labels[: len(head)] == [-100] * len(head)
    tail = engine.llm.tokenizer("calling mom" + engine.llm.tokenizer.eos_token, add_special_tokens=False).input_ids
    assert labels[len(head):] == tail


def test_trained_adapter_serves_replies_only_saves_and_loads(chat_copy):
    engine = Engine.from_bundle(chat_copy, device="cpu")
    llm = engine.llm
    plain = _logits(llm)
    recipe = ReplyRecipe(rank=4, alpha=8.0, top_layers=2, steps=30, batch=4, peak_lr=1e-2, warmup_steps=2)
    adapter, loss = train(llm, PAIRS, recipe, log=lambda *_: None)
    assert loss < 3.0
    assert torch.equal(_logits(llm), plain), "outside replying() the LLM is the pretrained one"
    with llm.replying():
        tuned = _logits(llm)
        seen_elsewhere = {}
        t = threading.Thread(target=lambda: seen_elsewhere.setdefault("logits", _logits(llm)))
        t.start()
        t.join(timeout=30)
    assert not torch.allclose(tuned, plain)
    assert torch.equal(seen_elsewhere["logits"], plain), "another thread never sees the reply adapter"

    from assistant.engine.adapter import save_adapter

    save_adapter(chat_copy / ADAPTER_DIR, adapter, llm_id=llm.identity, recipe=dataclasses.asdict(recipe),
                 metrics={"final_loss": loss})
    m = load_bundle(chat_copy).manifest
    save_manifest(chat_copy, dataclasses.replace(m, reply_adapter=ADAPTER_DIR))
    again = Engine.from_bundle(chat_copy, device="cpu")
    with again.llm.replying():
        assert torch.allclose(_logits(again.llm), tuned, atol=1e-5)
    assert torch.equal(_logits(again.llm), plain)
    reply, _ = again.respond_text("set a timer")  # replies decode through the adapter without error
    assert isinstance(reply, str)
    without = Engine.from_bundle(chat_copy, device="cpu", reply_adapter=False)
    assert without.llm.reply_adapter is None


def test_adapter_for_another_llm_or_damaged_is_refused_by_name(chat_copy):
    engine = Engine.from_bundle(chat_copy, device="cpu")
    adapter = attach(engine.llm.model, AdapterSpec(2, 2.0, top_layer_modules(engine.llm.model, 1, ("q_proj",))))
    from assistant.engine.adapter import save_adapter

    d = save_adapter(chat_copy / ADAPTER_DIR, adapter, llm_id="other/llm@123", recipe={}, metrics={})
    fresh = Engine.from_bundle(chat_copy, device="cpu").llm.model
    with pytest.raises(BridgeMismatchError, match="trained for LLM 'other/llm@123'"):
        load_adapter(d, fresh, llm_id=engine.llm.identity)
    meta = json.loads((d / ADAPTER_JSON).read_text())
    meta["llm_id"] = engine.llm.identity
    meta["modules"] = ["model.layers.7.self_attn.q_proj"]
    (d / ADAPTER_JSON).write_text(json.dumps(meta))
    with pytest.raises(BridgeMismatchError, match="no layer model.layers.7"):
        load_adapter(d, fresh, llm_id=engine.llm.identity)
    m = load_bundle(chat_copy).manifest
    save_manifest(chat_copy, dataclasses.replace(m, reply_adapter="missing_dir"))
    with pytest.raises(ModelFilesError, match="reply_adapter directory .*missing_dir does not exist"):
        load_bundle(chat_copy)
