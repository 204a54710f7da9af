"""The user's own words served before any training (services/scheduler.py ``UserWords``): the words of
every label that the bundle does not know are spotted by the serving bridge as soon as a label names them,
updated when labels change, put back after another bridge comes in, and never swapped in for nothing."""

from __future__ import annotations

import concurrent.futures as cf
import copy
import threading
from datetime import datetime

import numpy as np
import pytest

from assistant.config import AlignmentConfig
from assistant.store import open_store, repo
from assistant_services.scheduler import JobContext, UserWords

VOCABULARY = ("call", "message", "about", "dinner", "the", "lights", "turn", "on")


@pytest.fixture()
def setup(tiny_engine, tmp_path):
    engine = copy.copy(tiny_engine)  # its own bridge reference; the models are shared and not changed
    engine.vocabulary = VOCABULARY
    store = open_store(tmp_path / "data")
    swaps, events = [], []

    def on_engine(fn) -> cf.Future:  # the inference thread, here the caller's
        fut: cf.Future = cf.Future()
        swaps.append(1)
        fut.set_result(fn(engine))
        return fut

    ctx = JobContext(config=AlignmentConfig(), store=store, data_dir=tmp_path / "data", engine=lambda: engine,
                     on_engine=on_engine, model_lock=threading.Lock(), preempt=threading.Event(),
                     publish=lambda kind, **data: events.append((kind, data)), idle_s=lambda: 0.0,
                     inference_busy=lambda: False, clock=datetime.now)
    yield engine, store, ctx, swaps, events
    store.close()


def label(store, text: str) -> None:
    with store.session() as s:
        u = repo.record_utterance(s, data_dir=store.data_dir, samples=np.zeros(8000, np.float32), source="api")
        repo.set_label(s, utterance_id=u.id, text=text, source="correction")


def test_a_label_naming_a_contact_is_spotted_at_once_and_only_swapped_when_it_changes(setup):
    engine, store, ctx, swaps, events = setup
    words = UserWords(ctx)
    base = engine.bridge
    assert not words.refresh() and swaps == []  # no labels: nothing to spot, nothing swapped
    label(store, "turn on the lights")  # only the bundle's words
    assert not words.refresh() and swaps == []
    label(store, "call leocadia")
    assert words.refresh() and engine.bridge.config.lexicon == ("leocadia",)
    assert engine.bridge.config.lexicon_spotting and engine.bridge.module is base.module
    assert engine.bridge.version == base.version and events[-1] == ("user_words", {"count": 1})
    assert not words.refresh() and len(swaps) == 1  # unchanged: no second swap
    label(store, "message barnaby about dinner")
    assert words.refresh() and set(engine.bridge.config.lexicon) == {"leocadia", "barnaby"}
    engine.swap_bridge(base)  # another bridge comes in (an activation, a job's version)
    assert words.refresh() and set(engine.bridge.config.lexicon) == {"leocadia", "barnaby"}


def test_off_or_without_a_vocabulary_nothing_is_spotted(setup, tiny_engine):
    engine, store, ctx, swaps, _ = setup
    label(store, "call leocadia")
    from dataclasses import replace

    assert not UserWords(replace(ctx, config=AlignmentConfig(spot_user_words=False))).refresh()
    assert not UserWords(replace(ctx, config=AlignmentConfig(lexicon_spotting=False))).refresh()
    engine.vocabulary = ()  # every word would look like the user's own
    assert not UserWords(ctx).refresh() and swaps == [] and engine.bridge.config.lexicon == ()


def test_a_bridge_that_refuses_the_words_keeps_serving_and_is_not_asked_again(setup):
    engine, store, ctx, swaps, _ = setup
    label(store, "call leocadia")

    def broken(fn):
        swaps.append(1)
        raise RuntimeError("the inference thread is gone")

    from dataclasses import replace

    words = UserWords(replace(ctx, on_engine=broken))
    assert not words.refresh() and not words.refresh() and len(swaps) == 1
    assert engine.bridge.config.lexicon == ()
