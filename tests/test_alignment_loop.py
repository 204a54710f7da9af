"""The personalization loop through a real daemon (tiny bundle): enrollment recordings through the API,
the idle scheduler runs a job, the gate decides with both WERs stored, versions are recorded, the
serving bridge is hot-swapped on acceptance, rollback through the API, preemption by inference."""

from __future__ import annotations

import io
import time

import httpx
import pytest
import soundfile as sf

from conftest import noise_wave
from daemon_proc import DaemonProcess

SENTENCES = ["set a timer for five minutes", "turn on the kitchen lights", "call leocadia", "play some jazz",
             "what is the weather in paris", "wake me up at seven", "turn off the fan", "message barnaby",
             "add milk to the list", "what time is it", "open the blinds", "play the news"]

CONFIG = """
[alignment]
idle_s = 1.0
min_new_labels = {labels}
heldout_share = 0.3
min_heldout = 2
max_steps = {steps}
batch_size = 4
method = "backprop"
lexicon_spotting = false
{outcome}
"""
# Each test forces the gate's decision. ACCEPT: steps so small they leave the bridge as it was, so the
# candidate transcribes exactly like the active bridge, which a 0 % required cut accepts. REJECT: a
# 100 % cut (a perfect transcript of noise from a random bundle) is never reached.
ACCEPT = "min_improvement = 0.0\nlearning_rate = 1e-12"
REJECT = "min_improvement = 1.0\nlearning_rate = 0.01"


def wav(seed: int, seconds: float = 1.2) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, noise_wave(seconds, seed), 16000, format="WAV")
    return buf.getvalue()


def enroll(c: httpx.Client, n: int) -> None:
    for i, text in enumerate(SENTENCES[:n]):
        pid = c.post("/v1/enrollment/prompts", json={"text": text}).json()["id"]
        r = c.post(f"/v1/enrollment/prompts/{pid}/recording", files={"audio": ("r.wav", wav(100 + i), "audio/wav")})
        assert r.status_code == 201, r.text


def wait_job(c: httpx.Client, predicate, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = c.get("/v1/alignment/jobs").json()["jobs"]
        hit = next((j for j in jobs if predicate(j)), None)
        if hit:
            return hit
        time.sleep(0.3)
    raise TimeoutError(f"no job matched in {timeout_s} s: {c.get('/v1/alignment/jobs').json()}")


@pytest.fixture()
def daemon(tiny_bundle, tmp_path):
    def start(steps: int, labels: int, outcome: str) -> DaemonProcess:
        d = DaemonProcess(tmp_path / "data", tiny_bundle, source="none",
                          extra_config=CONFIG.format(steps=steps, labels=labels, outcome=outcome))
        return d.start()

    started: list[DaemonProcess] = []
    yield lambda steps, labels, outcome=REJECT: started.append(start(steps, labels, outcome)) or started[-1]
    for d in started:
        if d.proc and d.proc.poll() is None:
            assert d.stop() == 0, d.log.read_text()[-3000:]


def finished_job(c: httpx.Client) -> tuple[dict, dict, dict]:
    """The idle job's end: the job, the bridges listing and the version row it recorded."""
    job = wait_job(c, lambda j: j["state"] in ("succeeded", "rejected", "failed"), 120)
    assert job["trigger"] == "idle", job
    m = job["metrics"]
    assert m["user_wer_before"] is not None and m["user_wer_after"] is not None
    assert job["data_counts"]["train"] + job["data_counts"]["heldout"] == 12
    assert job["data_counts"]["cached"] == 12 and job["data_counts"]["reencoded"] == 0
    assert job["phase"] == "gating" and job["durations"]["gate_s"] > 0
    bridges = c.get("/v1/bridges").json()
    row = next(v for v in bridges["versions"] if v["version"] == job["candidate_version"])
    assert row["parent_version"] == "random-0" and row["metrics"]["user_wer_after"] == m["user_wer_after"]
    return job, bridges, row


def test_an_accepted_job_is_swapped_in_and_rolled_back(daemon):
    d = daemon(2, 12, ACCEPT)
    with httpx.Client(base_url=d.url, headers=d.headers, timeout=60) as c:
        enroll(c, 12)
        job, bridges, row = finished_job(c)
        version = job["candidate_version"]
        assert job["state"] == "succeeded" and row["status"] == "accepted", job
        assert job["metrics"]["user_wer_after"] == job["metrics"]["user_wer_before"]
        assert bridges["active"] == version
        turn = c.post("/v1/turns", files={"audio": ("a.wav", wav(1), "audio/wav")}).json()
        assert turn["bridge_version"] == version
        r = c.post("/v1/bridges/random-0/activate")  # rollback
        assert r.status_code == 200 and r.json() == {"active": "random-0", "previous": version}
        assert c.post("/v1/turns", files={"audio": ("a.wav", wav(2), "audio/wav")}).json()[
            "bridge_version"] == "random-0"
        r = c.post("/v1/bridges/v9999/activate")
        assert r.status_code == 404 and "v9999" in r.json()["error"]


def test_a_rejected_job_is_kept_but_never_served(daemon):
    d = daemon(20, 12, REJECT)
    with httpx.Client(base_url=d.url, headers=d.headers, timeout=60) as c:
        enroll(c, 12)
        job, bridges, row = finished_job(c)
        version = job["candidate_version"]
        assert job["state"] == "rejected" and row["status"] == "rejected", job
        assert "100 % relative cut" in job["error"] and bridges["active"] == "random-0"
        turn = c.post("/v1/turns", files={"audio": ("a.wav", wav(1), "audio/wav")}).json()
        assert turn["bridge_version"] == "random-0"
        r = c.post(f"/v1/bridges/{version}/activate")
        assert r.status_code == 409 and "rejected" in r.json()["error"]
        assert c.get("/v1/bridges").json()["active"] == "random-0"


def test_too_few_labels_are_rejected_before_any_training(daemon):
    d = daemon(400, 1000)  # no automatic job
    with httpx.Client(base_url=d.url, headers=d.headers, timeout=60) as c:
        enroll(c, 3)
        job = c.post("/v1/alignment/jobs", json={}).json()
        done = wait_job(c, lambda j: j["id"] == job["id"] and j["state"] == "rejected", 60)
        assert done["step"] == 0 and done["candidate_version"] is None and done["total_steps"] is None
        assert "more utterances" in done["error"]


def test_inference_preempts_a_job_which_resumes_when_idle(daemon):
    d = daemon(400, 8)
    with httpx.Client(base_url=d.url, headers=d.headers, timeout=60) as c:
        enroll(c, 8)
        wait_job(c, lambda j: j["state"] == "running" and (j["step"] or 0) >= 2, 120)
        t0 = time.monotonic()
        turn = c.post("/v1/turns", files={"audio": ("a.wav", wav(3), "audio/wav")})
        assert turn.status_code == 200
        paused = wait_job(c, lambda j: j["state"] == "paused", 30)
        assert time.monotonic() - t0 < 30 and paused["checkpoint_path"]
        step_at_pause = paused["step"]
        # idle again: the job resumes from its checkpoint and finishes
        done = wait_job(c, lambda j: j["state"] in ("succeeded", "rejected", "failed"), 300)
        assert done["id"] == paused["id"] and done["step"] >= step_at_pause
        assert done["state"] == "rejected" and c.get("/v1/bridges").json()["active"] == "random-0", done


def test_api_job_starts_at_once_and_can_be_cancelled(daemon):
    d = daemon(400, 1000)  # no automatic job: too few new labels
    with httpx.Client(base_url=d.url, headers=d.headers, timeout=60) as c:
        enroll(c, 8)
        r = c.post("/v1/alignment/jobs", json={"method": "nope"})
        assert r.status_code == 400 and "allowed" in r.json()["error"]
        job = c.post("/v1/alignment/jobs", json={"method": "backprop"}).json()
        assert job["trigger"] == "api"
        wait_job(c, lambda j: j["id"] == job["id"] and j["state"] == "running" and (j["step"] or 0) >= 1, 60)
        r = c.post(f"/v1/alignment/jobs/{job['id']}/cancel")
        assert r.status_code == 200
        done = wait_job(c, lambda j: j["id"] == job["id"] and j["state"] == "cancelled", 30)
        assert done["finished_at"] and not (d.data_dir / "jobs" / str(job["id"])).exists()


def test_job_survives_a_restart(daemon, tiny_bundle):
    d = daemon(400, 8)
    with httpx.Client(base_url=d.url, headers=d.headers, timeout=60) as c:
        enroll(c, 8)
        job = wait_job(c, lambda j: j["state"] == "running" and (j["step"] or 0) >= 2, 120)
    assert d.stop() == 0  # SIGTERM pauses the job with a checkpoint
    d2 = DaemonProcess(d.data_dir, tiny_bundle, source="none",
                       extra_config=CONFIG.format(steps=400, labels=8, outcome=REJECT)).start()
    try:
        with httpx.Client(base_url=d2.url, headers=d2.headers, timeout=60) as c:
            j = c.get(f"/v1/alignment/jobs/{job['id']}").json()
            assert j["state"] in ("paused", "running", "succeeded", "rejected")
            done = wait_job(c, lambda x: x["id"] == job["id"] and x["state"] in ("succeeded", "rejected", "failed"),
                            300)
            assert done["state"] == "rejected" and done["metrics"]["user_wer_after"] is not None, done
            assert c.get("/v1/bridges").json()["active"] == "random-0"
    finally:
        assert d2.stop() == 0
