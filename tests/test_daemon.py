"""`assistant serve` end to end: a real (virtual PulseAudio) microphone, crash safety under kill -9,
graceful SIGTERM, and the everyday CLI verbs talking to the running daemon."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import soundfile as sf

from conftest import REPO
from daemon_proc import DaemonProcess
from assistant_services.terminal import shown
from pulse import pulse_server  # noqa: F401  (fixture)
from speech import espeak_wav


def wait_for(predicate, timeout_s: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")


def next_event(ws, kind: str, timeout_s: float) -> dict:
    """The next event of ``kind`` on an open /v1/events WebSocket (others are skipped), bounded by timeout_s."""
    deadline, seen = time.monotonic() + timeout_s, []
    while True:
        try:
            event = json.loads(ws.recv(timeout=max(0.0, deadline - time.monotonic())))
        except TimeoutError:
            raise TimeoutError(f"no {kind!r} event within {timeout_s} s; saw {seen}") from None
        if event["type"] == kind:
            return event
        seen.append(event["type"])


def db_rows(data_dir, sql: str):
    con = sqlite3.connect(f"file:{data_dir / 'assistant.db'}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_serve_records_from_the_virtual_microphone(pulse_server, tiny_bundle, tmp_path):  # noqa: F811
    from websockets.sync.client import connect

    wav = espeak_wav("please turn on the kitchen lights", tmp_path / "say.wav")
    d = DaemonProcess(tmp_path / "data", tiny_bundle, source="mic",
                      extra_config='[source]\ndevice = "pulse"\n[engine]\nstream_chunk_s = 0.5\nstream_context_s = 0.5\n',
                      env={"PULSE_SERVER": pulse_server.server})
    d.start()
    try:
        # The daemon warms its output up when the microphone's first audio arrives (PortAudio's first
        # callback comes ~1.3-1.8 s after opening), so a ready speaker means the microphone is delivering.
        d.wait_speaker_ready(30)
        with httpx.Client(base_url=d.url, headers=d.headers, timeout=30) as c, \
                connect(f"ws://127.0.0.1:{d.port}/v1/events?token={d.token}", open_timeout=10) as ws:
            assert c.get("/v1/status").json()["source"]["state"] == "running"
            pulse_server.play_into_mic(wav)
            answered = next_event(ws, "response", 30)  # published once the turn's row is committed
            u = c.get(f"/v1/utterances/{answered['utterance_id']}").json()
            assert u["status"] == "done", u
            assert u["source"] == "mic" and 1.0 < u["duration_s"] < 6.0
            assert isinstance(u["transcript"], str) and u["activation"] == "responded"
            # spoken in real time: its first chunks were encoded before it ended (services/live.py)
            assert u["timings"].get("streamed_audio_s", 0) >= 0.5, u["timings"]
            # and transcribed at the VAD's pause, before its end was certain (SpeechPaused)
            assert u["timings"].get("early_by_s", -1) >= 0, u["timings"]
            audio = c.get(f"/v1/utterances/{u['id']}/audio")
            x, rate = sf.read(__import__("io").BytesIO(audio.content))
            assert rate == 16000 and np.sqrt(np.mean(x ** 2)) > 0.01  # real speech, not silence
    finally:
        assert d.stop() == 0, d.log.read_text()[-3000:]


def _utterance_folder(folder, n: int, seconds: float = 2.0):
    """n WAVs of loud noise bursts separated by silence: each one an utterance for the VAD."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        t = np.arange(int(seconds * 16000)) / 16000
        voiced = 0.3 * np.sin(2 * np.pi * (150 + 10 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
        voiced += 0.05 * rng.standard_normal(len(t))
        sf.write(folder / f"{i:03d}.wav", voiced.astype(np.float32), 16000)
    return folder


def test_kill_9_loses_no_captured_utterance(tiny_bundle, tmp_path):
    folder = _utterance_folder(tmp_path / "in", 24)
    speech_cfg = "[daemon]\nqueue_max = 100\n[vad]\naggressiveness = 0\n"
    d = DaemonProcess(tmp_path / "data", tiny_bundle, source=f"file:{folder}", extra_config=speech_cfg)
    d.start()
    wait_for(lambda: db_rows(d.data_dir, "select count(*) from utterances")[0][0] >= 3, 60,
             "some utterances to be captured")
    d.proc.kill()  # kill -9: no flush, no goodbye
    d.proc.wait(10)
    d.kill()
    rows = db_rows(d.data_dir, "select id, audio_path from utterances")
    statuses = dict(db_rows(d.data_dir, "select status, count(*) from utterances group by status"))
    assert rows, "nothing was captured before the kill"
    # every committed row has its audio on disk (fsynced before the commit)
    for uid, rel in rows:
        assert (d.data_dir / rel).is_file(), (uid, rel)
    # audio fsynced in the instant before its row's commit is adopted at the restart: all of it counts
    captured = [(int(p.stem), f"audio/{p.name}") for p in (d.data_dir / "audio").glob("*.wav")]
    assert {uid for uid, _ in rows} <= {uid for uid, _ in captured}
    # restart without a source: the rows left unprocessed are processed now
    d2 = DaemonProcess(d.data_dir, tiny_bundle, source="none")
    d2.start()
    try:
        ids = {uid for uid, _ in captured}
        wait_for(lambda: set(r[0] for r in db_rows(d.data_dir, "select id from utterances where status = 'done'"))
                 >= ids, 60, "every captured utterance to be processed after the restart")
        done = db_rows(d.data_dir, "select transcript, bridge_version, encoded_path from utterances where id in (%s)"
                       % ",".join(map(str, ids)))
        assert all(t is not None and v and e for t, v, e in done)
    finally:
        assert d2.stop() == 0
    print(f"captured before kill: {len(captured)}, statuses at kill: {statuses}")


def test_sigterm_exits_zero_and_cli_verbs_talk_to_the_daemon(tiny_bundle, tmp_path):
    d = DaemonProcess(tmp_path / "data", tiny_bundle, source="none").start()
    env = {**os.environ, "ASSISTANT_DATA_DIR": str(d.data_dir)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "assistant_services.cli", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=60, env=env)

    try:
        x = (np.random.default_rng(1).standard_normal(16000) * 0.1).astype(np.float32)
        sf.write(tmp_path / "a.wav", x, 16000)
        with open(tmp_path / "a.wav", "rb") as f:
            uid = httpx.post(d.url + "/v1/turns", headers=d.headers, files={"audio": ("a.wav", f, "audio/wav")},
                             timeout=30).json()["utterance_id"]
        r = cli("status")
        assert r.returncode == 0 and "bridge random-0" in r.stdout, r.stderr
        r = cli("history")
        assert r.returncode == 0 and str(uid) in r.stdout
        reply = httpx.get(f"{d.url}/v1/utterances/{uid}", headers=d.headers).json()["response"]
        assert reply and f"-> {shown(reply)}" in r.stdout  # each turn's reply under its transcript
        ready = next(line for line in d.log.read_text().splitlines() if line.startswith("ready: "))
        assert f"http://127.0.0.1:{d.port}" in ready and str(d.data_dir / "api-token") in ready
        r = cli("correct", str(uid), "set a timer for five minutes")
        assert r.returncode == 0 and "set a timer for five minutes" in r.stdout, r.stderr
        r = cli("history", "--labelled")
        assert "label: set a timer for five minutes" in r.stdout
        # a label with an ESC sequence, a right-to-left override and a newline prints as escapes
        r = cli("correct", str(uid), "call \x1b[2Jbarnaby\u202eevil\nfake row")
        assert r.returncode == 0 and "\x1b" not in r.stdout and "\u202e" not in r.stdout, r.stdout
        assert "call \\x1b[2Jbarnaby\\u202eevil\\x0afake row" in r.stdout
        r = cli("history", "--labelled")
        assert "\x1b" not in r.stdout and "label: call \\x1b[2Jbarnaby\\u202eevil\\x0afake row]" in r.stdout
        r = cli("correct", "999999", "x")
        assert r.returncode == 2 and "404" in r.stderr
    finally:
        t0 = time.monotonic()
        assert d.stop() == 0
        assert time.monotonic() - t0 < 20
    assert not (d.data_dir / "daemon.json").exists()
    r = cli("status")
    assert r.returncode == 2 and "no running daemon" in r.stderr


def test_sigterm_with_an_events_websocket_open_closes_it_and_exits_at_once(tiny_bundle, tmp_path):
    """The events WebSocket is closed by the daemon (1001) before the server stops: no wait for the
    graceful-shutdown deadline, no CancelledError traceback."""
    from websockets.sync.client import connect

    d = DaemonProcess(tmp_path / "data", tiny_bundle, source="none",
                      extra_config="[alignment]\nenabled = false\n").start()
    with connect(f"ws://127.0.0.1:{d.port}/v1/events?token={d.token}", open_timeout=10) as ws:
        t0 = time.monotonic()
        assert d.stop() == 0
        took = time.monotonic() - t0
        with pytest.raises(Exception) as closed:
            ws.recv(timeout=10)
        assert getattr(closed.value, "rcvd", None) is not None and closed.value.rcvd.code == 1001, closed.value
    log_text = d.log.read_text()
    assert took < 3.0, (took, log_text[-2000:])
    assert "Traceback" not in log_text and "CancelledError" not in log_text, log_text[-2000:]


def test_personalization_cli_verbs_talk_to_the_daemon(tiny_bundle, tmp_path):
    d = DaemonProcess(tmp_path / "data", tiny_bundle, source="none",
                      extra_config="[alignment]\nenabled = false\n").start()
    env = {**os.environ, "ASSISTANT_DATA_DIR": str(d.data_dir)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "assistant_services.cli", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=60, env=env)

    try:
        x = (np.random.default_rng(2).standard_normal(16000) * 0.1).astype(np.float32)
        sf.write(tmp_path / "p.wav", x, 16000)
        r = cli("enroll", "--file", str(tmp_path / "p.wav"), "--text", "call leocadia")
        assert r.returncode == 0 and 'call leocadia' in r.stdout and "stored as utterance" in r.stdout, r.stderr
        r = cli("history", "--labelled")
        assert "label: call leocadia" in r.stdout
        r = cli("enroll", "--device", "no-such-microphone-xyz")  # a typo in --device: one clear line
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "error: cannot record from the input device 'no-such-microphone-xyz'" in r.stderr, r.stderr
        assert "--device" in r.stderr.split("error:", 1)[1]
        r = cli("bridges", "list")
        assert r.returncode == 0 and "* random-0" in r.stdout
        r = cli("bridges", "activate", "random-0")
        assert r.returncode == 0 and "active bridge: random-0" in r.stdout
        r = cli("align", "--no-wait")
        assert r.returncode == 2 and "alignment.enabled" in r.stderr
    finally:
        assert d.stop() == 0
