"""The personalization CLI verbs (enroll, align, bridges list / diff) against a scripted daemon API, and
what they rely on: how many labels a job needs, the shipped prompts, the prompts listing route."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import re
from types import SimpleNamespace

import pytest
import torch

from assistant.alignment.data import HELDOUT, labels_needed, split_of
from assistant.config import AlignmentConfig, Config


class FakeDaemon:
    """Answers the client calls the CLI makes: ``answers[(method, path)]`` is a value or a list of
    values taken in turn (the last one repeats)."""

    def __init__(self, answers: dict) -> None:
        self.answers, self.calls = answers, []

    def _answer(self, method: str, path: str, body=None):
        self.calls.append((method, path, body))
        a = self.answers[(method, path)]
        if isinstance(a, list):
            return a.pop(0) if len(a) > 1 else a[0]
        return a

    def get(self, path, params=None):
        return self._answer("GET", path)

    def post(self, path, body=None):
        return self._answer("POST", path, body)

    def request_raw(self, method, path, body, content_type):
        return self._answer(method, path, body)


@pytest.fixture()
def daemon(monkeypatch):
    import assistant_services.cli_align as cli_align

    fake = FakeDaemon({})
    monkeypatch.setattr(cli_align, "_client", lambda args, config_of: fake)
    monkeypatch.setattr(cli_align.time, "sleep", lambda s: None)
    return fake


def run(argv: list[str]) -> int:
    from assistant_services.cli import main

    return main(argv)


# --- how many labels a job needs ------------------------------------------------------------------------
@pytest.mark.parametrize("share, min_heldout, expected", [(0.2, 10, 50), (0.25, 10, 40), (0.5, 3, 6),
                                                          (0.9, 1, 20), (0.1, 10, 100)])
def test_labels_needed_is_where_the_expected_heldout_count_reaches_the_gate_s_minimum(share, min_heldout, expected):
    a = AlignmentConfig(heldout_share=share, min_heldout=min_heldout)
    n = labels_needed(a)
    assert n == expected
    assert n * share >= min_heldout - 1e-9 and n * (1 - share) >= 2 - 1e-9
    assert (n - 1) * share < min_heldout - 1e-9 or (n - 1) * (1 - share) < 2 - 1e-9
    assert labels_needed(Config(alignment=a)) == n  # the whole config works too


def test_the_default_need_is_met_by_hashed_splits_about_as_expected():
    a = AlignmentConfig()
    n = labels_needed(a)
    assert n == 50
    # the real split is by hash of the id: "about" -- over many id ranges it averages min_heldout
    counts = [sum(split_of(i, a.heldout_share) == HELDOUT for i in range(start, start + n))
              for start in range(1, 5001, n)]
    assert abs(sum(counts) / len(counts) - a.min_heldout) < 1.0


def test_enough_prompts_ship_for_a_job_and_the_old_ones_keep_their_place():
    from assistant.synth.text import SHIPPED_PROMPTS, base_sentences, shipped_prompts

    texts = shipped_prompts()
    assert len(texts) == SHIPPED_PROMPTS >= 2 * labels_needed(AlignmentConfig())
    assert len(set(texts)) == len(texts) and all(t.strip() == t and t for t in texts)
    assert texts[:40] == [u.text for u in base_sentences(0)["dev"][:40]]  # what stores were seeded with
    with pytest.raises(ValueError, match="at most"):
        shipped_prompts(10**6)


def test_a_restart_tops_up_the_shipped_prompts_and_the_listing_says_how_many_labels_are_needed(tmp_path):
    from assistant.store import open_store, repo
    from assistant.synth.text import SHIPPED_PROMPTS, shipped_prompts
    from assistant_services.api.routes_admin import list_prompts

    store = open_store(tmp_path / "data")
    try:
        with store.session() as s:  # a store seeded by an older daemon: 40 prompts, one user prompt, 3 labels
            repo.ensure_shipped_prompts(s, texts=shipped_prompts(40))
            p = repo.add_prompt(s, text="call leocadia")
            for i in range(3):
                u = repo.record_utterance(s, data_dir=store.data_dir, samples=torch.zeros(8000).numpy(),
                                          source="enrollment")
                repo.set_label(s, utterance_id=u.id, text=f"label {i}", source="correction")
            first_ids = {x.text: x.id for x in repo.list_prompts(s)}
        with store.session() as s:  # what the daemon does at start (services/startup.py prepare_store)
            repo.ensure_shipped_prompts(s, texts=shipped_prompts())
        daemon = SimpleNamespace(store=store, config=Config(alignment=AlignmentConfig(heldout_share=0.25)))
        request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(daemon=daemon)))
        out = asyncio.run(list_prompts(request))
        assert out["labelled"] == 3 and out["labels_needed"] == 40
        texts = [x["text"] for x in out["prompts"]]
        assert len(texts) == SHIPPED_PROMPTS + 1 and set(shipped_prompts()) <= set(texts)
        assert all(first_ids[x["text"]] == x["id"] for x in out["prompts"] if x["text"] in first_ids)
        assert next(x for x in out["prompts"] if x["id"] == p.id)["source"] == "user"
        assert asyncio.run(list_prompts(request))["prompts"] == out["prompts"]  # nothing more the second time
    finally:
        store.close()


# --- enroll -------------------------------------------------------------------------------------------------
def test_enroll_says_how_many_more_labels_a_job_needs(daemon, tmp_path, capsys):
    wav = tmp_path / "me.wav"
    wav.write_bytes(b"RIFF....")  # the fake daemon does not read it
    prompts = [{"id": 1, "text": "turn on the light", "recorded_utterance_id": 5},
               {"id": 2, "text": "what time is it", "recorded_utterance_id": None}]
    daemon.answers = {
        ("GET", "/v1/enrollment/prompts"): [{"prompts": prompts, "labelled": 22, "labels_needed": 50},
                                            {"prompts": prompts, "labelled": 22, "labels_needed": 50},
                                            {"prompts": prompts, "labelled": 23, "labels_needed": 50}],
        ("POST", "/v1/enrollment/prompts/2/recording"): {"utterance_id": 9, "duration_s": 1.5},
    }
    assert run(["enroll", "--file", str(wav), "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert 'prompt 2: "what time is it"' in out and "stored as utterance 9" in out
    assert "23 labelled utterances; a personalization job needs about 50 (27 more)" in out

    daemon.answers[("GET", "/v1/enrollment/prompts")] = [{"prompts": prompts, "labelled": 50, "labels_needed": 50}]
    assert run(["enroll", "--file", str(wav), "--data-dir", str(tmp_path)]) == 0
    assert "50 labelled utterances: enough for a personalization job" in capsys.readouterr().out
    daemon.answers[("GET", "/v1/enrollment/prompts")] = [{"prompts": prompts}]  # an older daemon: no counts
    assert run(["enroll", "--file", str(wav), "--data-dir", str(tmp_path)]) == 0
    assert "labelled utterances" not in capsys.readouterr().out


# --- align --------------------------------------------------------------------------------------------------
def _job(state, **kw):
    return {"id": 7, "method": "ctc", "state": state, "progress": 0.0, "step": 0, "total_steps": None,
            "metrics": {}, "error": None, "candidate_version": None, **kw}


def test_align_shows_the_gate_s_own_bar_and_a_rejection_with_its_reason_and_both_wers_exits_1(daemon, tmp_path,
                                                                                              capsys):
    reason = "user WER 40.0 % -> 39.0 %: 2.5 % better, 5.0 % needed"
    metrics = {"accepted": False, "reason": reason, "user_wer_before": 0.4, "user_wer_after": 0.39,
               "generic_wer_before": 0.1, "generic_wer_after": 0.1012345678, "heldout_n": 11, "generic_n": 300}
    daemon.answers = {
        ("POST", "/v1/alignment/jobs"): _job("queued"),
        ("GET", "/v1/alignment/jobs/7"): [
            _job("running", phase="training", progress=0.5, step=300, total_steps=600),
            _job("running", phase="training", progress=1.0, step=600, total_steps=600),
            _job("running", phase="gating", progress=0.25, step=600, total_steps=600),
            _job("rejected", phase="gating", progress=1.0, metrics=metrics, error=reason, candidate_version="v0003"),
        ],
    }
    assert run(["align", "--data-dir", str(tmp_path)]) == 1
    cap = capsys.readouterr()
    frames = [f.strip() for f in cap.err.split("\r") if f.strip()]
    assert frames[0].startswith("training [###############               ]  50.0 %") and "step 300/600" in frames[0]
    assert frames[1].startswith("training [" + "#" * 30 + "] 100.0 %")
    assert frames[2].startswith("gating   [#######                       ]  25.0 %")  # not frozen at 100 %
    assert "after 600/600 steps" in frames[2]
    out = cap.out
    assert f"job 7: rejected by the quality gate: {reason}" in out
    assert "your WER     40.0 % -> 39.0 % on 11 held-out recordings" in out
    assert "generic WER  10.0 % -> 10.1 % on 300 generic utterances" in out
    assert "v0003 is kept for inspection but cannot be activated" in out
    assert "0.1012345678" not in out


def test_align_exit_status_and_lines_for_the_other_outcomes(daemon, tmp_path, capsys):
    from assistant_services.cli_align import progress_line

    old = _job("running", progress=0.4, step=4)  # a daemon without "phase": training, as before
    assert progress_line(old).startswith("training [############") and "step 4" in progress_line(old)
    assert len(progress_line(old)) == len(progress_line(_job("running", phase="gating", progress=1.0, step=1000,
                                                             total_steps=1000))) == 90
    ok = {"accepted": True, "user_wer_before": 0.4, "user_wer_after": 0.3, "generic_wer_before": 0.1,
          "generic_wer_after": 0.1}
    for final, code, expect in ((_job("succeeded", metrics=ok, candidate_version="v0004"), 0,
                                 ["your WER     40.0 % -> 30.0 %", "job 7: succeeded, version v0004"]),
                                (_job("rejected", error="only 3 labelled utterances; 10 held out are needed"), 1,
                                 ["job 7: rejected: only 3 labelled"]),
                                (_job("failed", error="out of memory"), 1, ["job 7: failed (out of memory)"]),
                                (_job("cancelled"), 1, ["job 7: cancelled"])):
        daemon.answers = {("POST", "/v1/alignment/jobs"): _job("queued"), ("GET", "/v1/alignment/jobs/7"): [final]}
        assert run(["align", "--data-dir", str(tmp_path)]) == code, final
        out = capsys.readouterr().out
        assert all(e in out for e in expect), out


# --- bridges list / diff ------------------------------------------------------------------------------------
def test_bridges_list_shows_wers_as_percentages(daemon, tmp_path, capsys):
    daemon.answers = {("GET", "/v1/bridges"): {"active": "v0001", "versions": [
        {"version": "base-ctc", "status": "base", "parent_version": None, "created_at": "2026-01-01T00:00:00",
         "metrics": {"dev_wer": 0.1033}},
        {"version": "v0001", "status": "accepted", "parent_version": "base-ctc", "created_at": "2026-01-02T00:00:00",
         "metrics": {"user_wer_before": 0.4, "user_wer_after": 0.123456789, "generic_wer_before": 0.1,
                     "generic_wer_after": 0.1012}},
        {"version": "v0002", "status": "rejected", "parent_version": "v0001", "created_at": None,
         "metrics": {"user_wer_before": 0.12, "user_wer_after": None}}]}}
    assert run(["bridges", "list", "--data-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("  base-ctc") and lines[0].endswith("dev WER 10.3 %")
    assert lines[1].startswith("* v0001") and lines[1].endswith("user WER 40.0 % -> 12.3 %, generic WER 10.1 %")
    assert lines[2].startswith("  v0002") and "WER" not in lines[2]
    assert not re.search(r"\d\.\d{3,}", "\n".join(lines))  # no raw floats


def test_bridges_diff_takes_the_base_version_and_prints_a_summary(daemon, tiny_bundle, tiny_engine, tmp_path,
                                                                   capsys):
    from assistant.alignment import registry
    from assistant.engine.checkpoint import LoadedBridge, read_bridge_config

    data = tmp_path / "data"
    base_dir = tiny_bundle / "bridge" / "conv"
    base = read_bridge_config(base_dir)
    parent = tiny_engine.load_bridge_for(base_dir, tiny_engine.encoder, tiny_engine.llm)
    moved = LoadedBridge(module=copy.deepcopy(parent.module), config=dataclasses.replace(parent.config, training={}))
    with torch.no_grad():
        next(moved.module.parameters()).mul_(1.5)  # one tensor moves by half of itself
    metrics = {"accepted": True, "reason": "user WER 40.0 % -> 30.0 %", "user_wer_before": 0.4,
               "user_wer_after": 0.3, "generic_wer_before": 0.1, "generic_wer_after": 0.1}
    registry.write_version(moved, data, "v0001", parent_version=base.version, metrics=metrics, training={},
                           data_summary={})
    daemon.answers = {("GET", "/v1/bridges"): {"active": "v0001", "versions": [
        {"version": base.version, "status": "base", "kind": "conv", "path": None, "metrics": base.metrics},
        {"version": "v0001", "status": "accepted", "kind": "conv", "path": "bridges/v0001", "metrics": metrics}]}}
    for a in (base.version, "base"):
        assert run(["bridges", "diff", a, "v0001", "--bundle", str(tiny_bundle), "--data-dir", str(data)]) == 0
        out = capsys.readouterr().out
        assert "{" not in out  # no JSON dump
        assert out.splitlines()[0].split() == [base.version, "v0001"]
        assert re.search(r"status\s+base\s+accepted, active", out)
        assert re.search(rf"parent\s+-\s+{base.version}", out)
        assert re.search(r"user wer after\s+-\s+30.0 %", out)
        assert "gate on v0001: user WER 40.0 % -> 30.0 %" in out
        changed = out.split("most changed tensors")[1].splitlines()[1]
        assert changed.endswith("50.0 %")
    # a base version that the configured bundle does not hold: one clear error naming the fix
    daemon.answers[("GET", "/v1/bridges")]["versions"][0]["version"] = "other-base"
    assert run(["bridges", "diff", "other-base", "v0001", "--bundle", str(tiny_bundle), "--data-dir", str(data)]) != 0
    assert "--bundle" in capsys.readouterr().err
