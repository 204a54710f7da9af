"""The inference worker with a real store and the tiny engine: queue policies, activation modes, failures."""

from __future__ import annotations

import threading
import time

import pytest

from assistant.store import open_store, repo
from assistant_services.worker import Activation, InferenceWorker, UtteranceJob

from conftest import noise_wave


@pytest.fixture()
def store(tmp_path):
    s = open_store(tmp_path / "data")
    yield s
    s.close()


class Ends:
    """The worker's publish and metrics, recording its events and counting the utterances that ended:
    ``observe_turn`` comes after a turn's row is committed ``done``, ``utterance_skipped`` and
    ``utterance_failed`` after their rows are written. ``wait(n)`` blocks (bounded) until n have ended."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self._ended = 0
        self._cond = threading.Condition()

    def _end(self) -> None:
        with self._cond:
            self._ended += 1
            self._cond.notify_all()

    def publish(self, kind: str, **data) -> None:
        self.events.append((kind, data))
        if kind in ("utterance_skipped", "utterance_failed"):
            self._end()

    def observe_turn(self, timings: dict, source: str) -> None:  # metrics: a turn is done
        self._end()

    def count(self, what: str) -> None:  # metrics: "failed" (its utterance_failed event counted it)
        pass

    def wait(self, n: int, timeout_s: float = 60) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._ended >= n, timeout_s)


def make_worker(store, tiny_engine, tmp_path, *, queue_max=2, policy="drop_oldest", mode="always", ends=None):
    ends = ends if ends is not None else Ends()
    w = InferenceWorker(lambda: tiny_engine, store=store, data_dir=tmp_path / "data",
                        activation=Activation(mode, "hey assistant", 5.0), publish=ends.publish, metrics=ends,
                        queue_max=queue_max, queue_policy=policy)
    w.ends = ends
    w.start()
    assert w.ready.wait(60)
    return w


def hold(w) -> tuple[threading.Event, object]:
    """Occupy the inference thread with a call until the returned gate is set; returns once the call runs."""
    gate, running = threading.Event(), threading.Event()

    def held(engine):
        running.set()
        return gate.wait(30)

    call = w.call(held)
    assert running.wait(30), "the inference thread never ran the call"
    return gate, call


def store_utterance(store, tmp_path, seed: int) -> tuple[int, object]:
    x = noise_wave(0.8, seed)
    with store.session() as s:
        u = repo.record_utterance(s, data_dir=tmp_path / "data", samples=x, source="mic")
        return u.id, x


def settle(w, store, n: int, timeout_s: float = 60) -> None:
    """Wait until n utterances reached a final status (stop() leaves queued ones for the next start)."""
    assert w.ends.wait(n, timeout_s), statuses(store)


def statuses(store) -> dict[int, str]:
    with store.session(write=False) as s:
        rows, _ = repo.list_utterances(s, limit=100)
        return {r.id: r.status for r in rows}


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_full_queue_skips_one_utterance_by_policy_and_keeps_its_row(store, tiny_engine, tmp_path, policy):
    w = make_worker(store, tiny_engine, tmp_path, queue_max=2, policy=policy)
    gate, blocker = hold(w)
    ids = [store_utterance(store, tmp_path, i) for i in range(3)]
    dropped = [w.submit(UtteranceJob(uid, x, "mic", time.time())) for uid, x in ids]
    gate.set()
    assert blocker.result(30) is True
    settle(w, store, 3)
    assert w.stop(60)
    expected_skip = ids[0][0] if policy == "drop_oldest" else ids[2][0]
    assert [d for d in dropped if d is not None] == [expected_skip]
    st = statuses(store)
    assert st[expected_skip] == "skipped" and sum(v == "done" for v in st.values()) == 2
    assert any(kind == "utterance_skipped" for kind, _ in w.ends.events)


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_enrollment_recordings_are_never_dropped_by_the_queue_bound(store, tiny_engine, tmp_path, policy):
    """Labelled recordings queue past the bound (submit(backlog=True)); live speech arriving after them
    is counted and dropped on its own."""
    w = make_worker(store, tiny_engine, tmp_path, queue_max=2, policy=policy)
    gate, blocker = hold(w)
    enrolled = [store_utterance(store, tmp_path, i) for i in range(4)]
    live = [store_utterance(store, tmp_path, 10 + i) for i in range(3)]
    for uid, x in enrolled:
        assert w.submit(UtteranceJob(uid, x, "enrollment", time.time(), respond=False), backlog=True) is None
    dropped = [w.submit(UtteranceJob(uid, x, "mic", time.time())) for uid, x in live]
    assert (w.depth, w.bounded_depth) == (6, 2)  # 4 enrollment + 2 live: the bound counts the live ones
    gate.set()
    assert blocker.result(30) is True
    settle(w, store, 7)
    assert w.stop(60)
    st = statuses(store)
    assert all(st[uid] == "done" for uid, _ in enrolled), st
    expected_skip = live[0][0] if policy == "drop_oldest" else live[2][0]
    assert [d for d in dropped if d is not None] == [expected_skip]
    assert st[expected_skip] == "skipped"


def test_a_reply_opens_a_follow_up_and_a_quiet_window_answers_nothing():
    act = Activation("wake_phrase", "hey assistant", 5.0, followup_s=8.0)
    now = time.time()
    assert act.decide("what time is it", now)[0] is False
    act.replied()  # a reply was given: the next request needs no phrase...
    assert act.decide("and the date", time.time()) == (True, "and the date")
    assert act.decide("and the weather", time.time())[0] is False  # ...one request, not all that follow
    act.replied()
    assert act.decide("too late", time.time() + 9)[0] is False  # nor one after the window
    assert act.decide("hey sistont", time.time(), after_phrase="") == (True, "")  # the phrase alone: "Yes?"
    assert act.decide("hey sistont what time", time.time(), after_phrase="what time is it") == (True, "what time is it")
    always = Activation("always", "", 5.0)
    always.quiet(10.0)  # e.g. `assistant enroll` recording a prompt from the microphone
    assert always.decide("set a timer for five minutes", time.time())[0] is False
    assert always.decide("set a timer for five minutes", time.time() + 11)[0] is True
    always.quiet(10.0)
    always.quiet(0.0)  # ended early
    assert always.decide("set a timer", time.time())[0] is True
    assert Activation("always", "", 5.0, followup_s=8.0).followup_s == 8.0


def test_wake_phrase_mode_logs_everything_but_answers_only_the_phrase(store, tiny_engine, tmp_path):
    act = Activation("wake_phrase", "hey assistant", 5.0)
    assert act.decide("Hey, assistant: set a timer", time.time()) == (True, "set a timer")
    assert act.decide("set a timer", time.time()) == (False, "set a timer")
    assert act.decide("hey assistants are great", time.time())[0] is False
    ptt = Activation("push_to_talk", "", 5.0)
    assert ptt.decide("x", time.time())[0] is False
    ptt.open_window(2.0)
    assert ptt.decide("x", time.time())[0] is True
    assert ptt.decide("x", time.time() + 10)[0] is False
    w = make_worker(store, tiny_engine, tmp_path, mode="wake_phrase")
    uid, x = store_utterance(store, tmp_path, 7)
    w.submit(UtteranceJob(uid, x, "mic", time.time()))
    settle(w, store, 1)
    assert w.stop(60)
    with store.session(write=False) as s:
        u = repo.get_utterance(s, utterance_id=uid)
        assert u.status == "done" and u.activation == "logged_only" and u.response is None
        assert u.transcript is not None and u.encoded_path


def test_a_failing_utterance_is_marked_and_the_worker_goes_on(store, tiny_engine, tmp_path):
    import numpy as np

    w = make_worker(store, tiny_engine, tmp_path)
    bad_id, _ = store_utterance(store, tmp_path, 1)
    good_id, good = store_utterance(store, tmp_path, 2)
    w.submit(UtteranceJob(bad_id, np.zeros(0, dtype=np.float32), "mic", time.time()))  # nothing to encode
    w.submit(UtteranceJob(good_id, good, "mic", time.time()))
    settle(w, store, 2)
    assert w.stop(60)
    st = statuses(store)
    assert st[bad_id] == "failed" and st[good_id] == "done"
    assert any(kind == "utterance_failed" for kind, _ in w.ends.events)


def test_engine_load_failure_is_reported(store, tmp_path):
    from assistant.errors import ModelFilesError

    def boom():
        raise ModelFilesError("no bundle here")

    w = InferenceWorker(boom, store=store, data_dir=tmp_path, activation=Activation("always", "", 1.0),
                        publish=lambda *a, **k: None, queue_max=1, queue_policy="drop_oldest")
    w.start()
    assert w.ready.wait(10) and isinstance(w.load_error, ModelFilesError)


def test_stop_finishes_the_job_in_flight_and_leaves_the_queue_stored(store, tiny_engine, tmp_path):
    w = make_worker(store, tiny_engine, tmp_path, queue_max=10)
    gate, in_flight = hold(w)
    ids = [store_utterance(store, tmp_path, i) for i in range(3)]
    for uid, x in ids:
        w.submit(UtteranceJob(uid, x, "mic", time.time()))
    assert not w.stop(0)  # stopping now; the job in flight holds the thread, so it cannot be joined yet
    gate.set()  # the job in flight ends only after the stop was asked for
    assert w.stop(60)
    assert in_flight.result(0) is True  # it was finished, not abandoned
    assert set(statuses(store).values()) == {"captured"}  # still pending: the next start processes them
