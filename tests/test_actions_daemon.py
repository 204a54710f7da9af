"""Spoken requests act, end to end: a real daemon on the shipped bundle (real Whisper + SmolLM2 weights),
espeak-ng speech uploaded as a turn, the timer it sets rings (an event on WS /v1/events), survives a
restart that it fell due during (fired at start, marked late), and is listed and cancelled through the API."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import time
from datetime import timedelta

import httpx
import pytest
import soundfile as sf

from assistant.config import demo_bundle_dir
from assistant.skills.handoff import NOT_SET_UP
from daemon_proc import DaemonProcess
from loopback_http import JsonServer, home_assistant_answer

DEMO = demo_bundle_dir()
pytestmark = pytest.mark.skipif(not (DEMO / "manifest.json").is_file() and not os.environ.get("CI"),
                                reason="no shipped bundle built yet (python -m bench.real.build)")
CONFIG = "[alignment]\nenabled = false\n[actions]\nring = false\n"  # the ring itself: test_actions.py


def spoken(text: str) -> bytes:
    from assistant.synth.voices import synthesize

    buf = io.BytesIO()
    sf.write(buf, synthesize("espeak-ng:en-us", text, seed=0), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def turn(client: httpx.Client, text: str) -> dict:
    r = client.post("/v1/turns", files={"audio": ("a.wav", spoken(text), "audio/wav")})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_spoken_timer_is_set_rings_survives_a_restart_and_is_listed(tmp_path):
    import websockets

    d = DaemonProcess(tmp_path / "data", DEMO, extra_config=CONFIG).start(timeout_s=300)
    try:
        client = httpx.Client(base_url=d.url, headers=d.headers, timeout=120)

        async def set_and_hear_it_ring():
            async with websockets.connect(f"ws://127.0.0.1:{d.port}/v1/events?token={d.token}", open_timeout=10) as ws:
                t = await asyncio.to_thread(turn, client, "set a timer for three seconds")
                timer_id = t["action_outcome"]["timer_id"]
                while True:  # bounded: each receive waits at most 30 s
                    event = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if event["type"] == "timer_fired" and event["id"] == timer_id:
                        return t, event

        t, event = asyncio.run(set_and_hear_it_ring())
        assert t["transcript"] == "set a timer for three seconds"
        assert t["response"] == "Timer set for three seconds."
        assert t["action"] == {"name": "timer.start", "slots": {"duration_s": 3, "label": None}}
        assert t["action_outcome"]["status"] == "done" and event["late"] is False
        stored = client.get(f"/v1/utterances/{t['utterance_id']}").json()
        assert (stored["action"], stored["action_outcome"]) == (t["action"], t["action_outcome"])

        later = turn(client, "set a pasta timer for ten minutes")
        assert later["response"] == "Pasta timer set for ten minutes."
        listed = client.get("/v1/timers").json()["timers"]
        assert [(x["id"], x["label"], x["state"]) for x in listed] == [(later["action_outcome"]["timer_id"], "pasta",
                                                                         "pending")]
        lights = turn(client, "turn off the kitchen lights")  # no hand-off configured: nothing done, and said
        assert (lights["response"], lights["action"]["name"], lights["action_outcome"]["status"]) == (
            NOT_SET_UP["smart_home"], "handoff", "refused")
        assert re.fullmatch(r"The pasta timer has (ten minutes|nine minutes and [a-z ]+ seconds?) left\.",
                            turn(client, "how much time is left on the pasta timer")["response"])
    finally:
        assert d.stop() == 0, d.log.read_text()[-3000:]

    from assistant.store import open_store
    from assistant.store import timers as tt

    pasta = later["action_outcome"]["timer_id"]
    with open_store(d.data_dir) as store, store.session() as s:  # ten minutes pass while the daemon is down
        row = tt.get_timer(s, timer_id=pasta)
        row.due_at = row.due_at - timedelta(minutes=10, seconds=5)

    ha = JsonServer(default=(200, home_assistant_answer("action_done", "Turned off the lights")))  # restarted with Home Assistant's conversation API (a loopback stand-in) to hand off to
    d.config.write_text(CONFIG + f'handoff = "home_assistant"\nhandoff_url = "{ha.url}"\nhandoff_token = "t0k"\n')
    d.start(timeout_s=300)
    try:
        client = httpx.Client(base_url=d.url, headers=d.headers, timeout=60)
        deadline = time.monotonic() + 30
        while (row := next(x for x in client.get("/v1/timers", params={"history": "true"}).json()["timers"]
                           if x["id"] == pasta))["state"] != "fired":
            assert time.monotonic() < deadline, row
            time.sleep(0.2)
        assert row["late_s"] >= 5
        r = client.delete(f"/v1/timers/{pasta}")
        assert r.status_code == 409 and "already fired" in r.json()["error"]
        assert client.delete("/v1/timers/999").status_code == 404
        assert client.delete("/v1/timers/0").status_code == 400
        pending = turn(client, "set an alarm for seven thirty")["action_outcome"]["timer_id"]
        assert client.delete(f"/v1/timers/{pending}").json()["state"] == "cancelled"
        assert client.get("/v1/timers").json()["timers"] == []
        lights = turn(client, "turn off the kitchen lights")
        assert (lights["response"], lights["action_outcome"]["status"]) == ("Turned off the lights", "done")
        assert ha.seen == [("/api/conversation/process", "Bearer t0k",
                            {"text": "turn off the kitchen lights", "language": "en"})]
    finally:
        ha.close()
        assert d.stop() == 0, d.log.read_text()[-3000:]
