"""The REST API on a real daemon (uvicorn on 127.0.0.1, temp data dir, tiny bundle): every endpoint,
auth, and each bad input answered with a 4xx JSON error while the server keeps serving."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
import soundfile as sf

from conftest import noise_wave
from daemon_proc import DaemonProcess


@pytest.fixture(scope="module")
def daemon(tiny_bundle, tmp_path_factory):
    d = DaemonProcess(tmp_path_factory.mktemp("api") / "data", tiny_bundle,
                      extra_config="[api]\nmax_upload_mb = 1.0\n[audio]\nmax_duration_s = 10.0\n"
                                   "[alignment]\nenabled = false\n").start()  # the job loop is tested in test_alignment_loop
    yield d
    rc = d.stop()
    assert rc == 0, d.log.read_text()[-2000:]


@pytest.fixture(scope="module")
def client(daemon):
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        yield c


def wav_bytes(seconds=1.0, rate=16000, channels=1, subtype="PCM_16", seed=0, fmt="WAV") -> bytes:
    x = noise_wave(seconds, seed)
    if rate != 16000:
        x = np.resize(x, int(seconds * rate))
    if channels == 2:
        x = np.stack([x, x * 0.5], 1)
    buf = io.BytesIO()
    sf.write(buf, x, rate, subtype=subtype, format=fmt)
    return buf.getvalue()


def post_turn(client, data: bytes, name="a.wav"):
    return client.post("/v1/turns", files={"audio": (name, data, "audio/wav")})


def test_health_needs_no_token_but_everything_else_does(daemon):
    assert httpx.get(daemon.url + "/v1/health").json()["status"] == "ok"
    for path in ("/v1/status", "/v1/utterances", "/v1/bridges", "/v1/alignment/jobs", "/metrics",
                 "/v1/enrollment/prompts"):
        r = httpx.get(daemon.url + path)
        assert r.status_code == 401 and "token" in r.json()["error"], path
        r = httpx.get(daemon.url + path, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401, path
    docs = httpx.get(daemon.url + "/docs")
    assert docs.status_code == 200 and "/static/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower() and "https://" not in docs.text  # works with no internet
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r = httpx.get(f"{daemon.url}/static/swagger-ui/{asset}")
        assert r.status_code == 200 and len(r.content) > 100_000, asset
    spec = httpx.get(daemon.url + "/openapi.json").json()  # the uploads' multipart bodies are documented
    body = spec["paths"]["/v1/turns"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["audio"]["format"] == "binary" and body["required"] == ["audio"]
    for loose in (f"Bearer    {daemon.token}", f"bearer {daemon.token}", f"Bearer\t{daemon.token}"):
        assert httpx.get(daemon.url + "/v1/status", headers={"Authorization": loose}).status_code == 401, loose


def test_a_foreign_host_or_page_is_refused_before_any_route(daemon):
    """DNS rebinding sends the attacker's name as Host; a web page adds its Origin (a WebSocket included)."""
    import asyncio

    import websockets.exceptions

    h = {**daemon.headers}
    r = httpx.get(daemon.url + "/v1/status", headers={**h, "Host": f"rebind.example:{daemon.port}"})
    assert r.status_code == 400 and "api.allowed_hosts" in r.json()["error"], r.text
    r = httpx.get(daemon.url + "/v1/status", headers={**h, "Origin": "http://evil.example"})
    assert r.status_code == 400 and "evil.example" in r.json()["error"], r.text
    for ok in ({"Host": f"localhost:{daemon.port}"}, {"Origin": f"http://127.0.0.1:{daemon.port}"}, {}):
        assert httpx.get(daemon.url + "/v1/status", headers={**h, **ok}).status_code == 200, ok

    async def open_events(origin):
        url = f"ws://127.0.0.1:{daemon.port}/v1/events?token={daemon.token}"
        async with websockets.connect(url, open_timeout=10, origin=origin) as ws:
            await ws.ping()

    with pytest.raises(websockets.exceptions.InvalidStatus, match="403"):  # closed before the handshake
        asyncio.run(open_events("http://evil.example"))
    asyncio.run(open_events(f"http://localhost:{daemon.port}"))  # the assistant's own page


def test_token_file_is_for_the_owner_and_the_daemon_s_group_only(daemon):
    """0640: members of the service's group (the CLI's users) may read it; nobody else."""
    for name in ("api-token", "daemon.json"):
        assert (daemon.data_dir / name).stat().st_mode & 0o777 == 0o640, name


def test_turn_is_answered_logged_and_readable(client, daemon):
    r = post_turn(client, wav_bytes(1.5))
    assert r.status_code == 200, r.text
    turn = r.json()
    assert set(turn) >= {"utterance_id", "transcript", "response", "bridge_version", "timings"}
    assert set(turn["timings"]) >= {"encoder_s", "bridge_s", "transcript_s", "response_s"}
    uid = turn["utterance_id"]
    row = client.get(f"/v1/utterances/{uid}").json()
    assert row["status"] == "done" and row["source"] == "api" and row["transcript"] == turn["transcript"]
    assert row["bridge_version"] == turn["bridge_version"]
    audio = client.get(f"/v1/utterances/{uid}/audio")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    x, rate = sf.read(io.BytesIO(audio.content))
    assert rate == 16000 and abs(len(x) - 24000) < 10
    assert (daemon.data_dir / "encoded" / f"{uid}.safetensors").is_file()  # cached for personalization
    listing = client.get("/v1/utterances", params={"limit": 5}).json()
    assert listing["total"] >= 1 and listing["utterances"][0]["id"] == uid


def test_other_rates_channels_and_widths_are_converted(client):
    for data in (wav_bytes(1.0, rate=44100, channels=2, subtype="FLOAT"), wav_bytes(1.0, rate=8000),
                 wav_bytes(1.0, rate=48000, subtype="PCM_24", fmt="FLAC")):
        r = post_turn(client, data, "x.flac")
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("case", ["not_audio", "truncated", "empty", "too_long", "absurd_rate", "nan"])
def test_bad_audio_gets_a_4xx_json_error(client, case):
    if case == "not_audio":
        data = b"hello, I am not a WAV file" * 10
    elif case == "truncated":
        data = wav_bytes(2.0)[:20000]
    elif case == "empty":
        data = wav_bytes(0.0)
    elif case == "too_long":
        data = wav_bytes(12.0, rate=8000, subtype="PCM_U8")  # under the byte limit, over max_duration_s
    elif case == "absurd_rate":
        data = wav_bytes(1.0, rate=1000)
    else:
        x = noise_wave(1.0, 1)
        x[5] = np.nan
        buf = io.BytesIO()
        sf.write(buf, x, 16000, subtype="FLOAT", format="WAV")
        data = buf.getvalue()
    r = post_turn(client, data)
    assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
    assert r.json()["error"]


def test_oversized_upload_and_wrong_requests(client):
    r = post_turn(client, b"\0" * (2 * 1024 * 1024))
    assert r.status_code == 413 and "max_upload_mb" in r.json()["error"]
    r = client.post("/v1/turns", content=b'{"audio": 1}', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "multipart" in r.json()["error"]
    r = client.post("/v1/turns", files={"other": ("a.wav", wav_bytes(), "audio/wav")})
    assert r.status_code == 400 and "audio" in r.json()["error"]


def test_labels_corrections_confirmations_and_bad_json(client):
    uid = post_turn(client, wav_bytes(1.0, seed=3)).json()["utterance_id"]
    r = client.patch(f"/v1/utterances/{uid}", json={"label": "turn on the lights"})
    assert r.status_code == 200 and r.json()["label"]["text"] == "turn on the lights"
    assert r.json()["label"]["source"] == "correction"
    found = client.get("/v1/utterances", params={"q": "LIGHTS"}).json()  # case-insensitive, labels too
    assert uid in [u["id"] for u in found["utterances"]]
    r = client.patch(f"/v1/utterances/{uid}", json={"confirm": True})
    assert r.status_code == 200 and r.json()["label"]["source"] == "confirmed"
    r = client.patch(f"/v1/utterances/{uid}", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]
    r = client.patch(f"/v1/utterances/{uid}", json={"label": "x", "confirm": True})
    assert r.status_code == 400 and "either" in r.json()["error"]
    assert client.get("/v1/utterances", params={"has_label": "true"}).json()["total"] >= 1


def test_json_bodies_are_taken_as_typed(client):
    """No "yes" or 1 for true, no "5" for 5, no NaN: each refused with the field named, the row unchanged."""
    uid = post_turn(client, wav_bytes(1.0, seed=5)).json()["utterance_id"]
    for body, field in (({"confirm": "yes"}, "confirm"), ({"confirm": 1}, "confirm"), ({"label": 7}, "label")):
        r = client.patch(f"/v1/utterances/{uid}", json=body)
        assert r.status_code == 400 and field in r.json()["error"], (body, r.text)
    assert client.get(f"/v1/utterances/{uid}").json()["label"] is None
    for raw, word in ((b'{"seconds": NaN}', "finite"), (b'{"seconds": "5"}', "number")):
        r = client.post("/v1/listen", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 400 and word in r.json()["error"] and "seconds" in r.json()["error"], r.text
    assert client.post("/v1/listen", json={"seconds": 5}).status_code == 200  # an integer is a number
    r = client.post("/v1/alignment/jobs", json={"method": 3})
    assert r.status_code == 400 and "method" in r.json()["error"]


def test_nul_is_refused_in_every_text_field(client):
    uid = post_turn(client, wav_bytes(1.0, seed=6)).json()["utterance_id"]
    r = client.patch(f"/v1/utterances/{uid}", json={"label": "call\u0000barnaby"})
    assert r.status_code == 400 and "label" in r.json()["error"] and "NUL" in r.json()["error"], r.text
    assert client.get(f"/v1/utterances/{uid}").json()["label"] is None
    r = client.post("/v1/enrollment/prompts", json={"text": "call\u0000barnaby"})
    assert r.status_code == 400 and "text" in r.json()["error"] and "NUL" in r.json()["error"], r.text
    r = client.get("/v1/utterances?q=%00")  # matched every row before
    assert r.status_code == 400 and "q" in r.json()["error"] and "NUL" in r.json()["error"], r.text
    assert client.get("/v1/utterances", params={"q": "barnaby"}).status_code == 200


def test_unknown_ids_are_404(client):
    for method, path in (("GET", "/v1/utterances/999999"), ("GET", "/v1/utterances/999999/audio"),
                         ("DELETE", "/v1/utterances/999999"), ("GET", "/v1/alignment/jobs/999999"),
                         ("POST", "/v1/alignment/jobs/999999/cancel"), ("POST", "/v1/bridges/v9999/activate"),
                         ("POST", "/v1/enrollment/prompts/999999/recording")):
        r = client.request(method, path, files={"audio": ("a.wav", wav_bytes(), "audio/wav")}
                           if path.endswith("recording") else None)
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert r.json()["error"]
    r = client.get("/v1/utterances/not-a-number")
    assert r.status_code == 400


def test_ids_and_offsets_past_what_sqlite_holds_are_invalid_requests_not_500(client):
    """SQLite's INTEGER is 64-bit signed: 2^63 used to reach the driver and come back as a 500."""
    for method, path, name in (("GET", "/v1/utterances/9223372036854775808", "uid"),
                               ("GET", "/v1/utterances/18446744073709551616/audio", "uid"),
                               ("PATCH", "/v1/utterances/9223372036854775808", "uid"),
                               ("DELETE", "/v1/utterances/9223372036854775808", "uid"),
                               ("GET", "/v1/alignment/jobs/9223372036854775808", "job_id"),
                               ("POST", "/v1/alignment/jobs/9223372036854775808/cancel", "job_id"),
                               ("POST", "/v1/enrollment/prompts/9223372036854775808/recording", "prompt_id"),
                               ("GET", "/v1/utterances?offset=18446744073709551616", "offset"),
                               ("GET", "/v1/utterances/0", "uid")):
        r = client.request(method, path, json={"label": "x"} if method == "PATCH" else None)
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert name in r.json()["error"], (path, r.text)
    assert client.get("/v1/utterances/9223372036854775807").status_code == 404  # the largest id: just absent
    assert client.get("/v1/utterances?offset=9223372036854775807").status_code == 200


def test_delete_removes_row_and_files(client, daemon):
    uid = post_turn(client, wav_bytes(1.0, seed=4)).json()["utterance_id"]
    assert (daemon.data_dir / "audio" / f"{uid}.wav").is_file()
    assert client.delete(f"/v1/utterances/{uid}").status_code == 200
    assert client.get(f"/v1/utterances/{uid}").status_code == 404
    assert not (daemon.data_dir / "audio" / f"{uid}.wav").exists()
    assert not (daemon.data_dir / "encoded" / f"{uid}.safetensors").exists()


def test_enrollment_prompts_and_recordings(client):
    prompts = client.get("/v1/enrollment/prompts").json()["prompts"]
    assert len(prompts) >= 20  # the shipped ones
    r = client.post("/v1/enrollment/prompts", json={"text": "call leocadia on her mobile"})
    assert r.status_code == 201
    pid = r.json()["id"]
    r = client.post(f"/v1/enrollment/prompts/{pid}/recording", files={"audio": ("r.wav", wav_bytes(1.2), "audio/wav")})
    assert r.status_code == 201, r.text
    uid = r.json()["utterance_id"]
    row = client.get(f"/v1/utterances/{uid}").json()
    assert row["label"] == {"text": "call leocadia on her mobile", "source": "enrollment",
                            "labelled_at": row["label"]["labelled_at"]}
    assert row["source"] == "enrollment"
    r = client.post("/v1/enrollment/prompts", json={"text": ""})
    assert r.status_code == 400


def test_bridges_and_rollback_endpoint(client):
    b = client.get("/v1/bridges").json()
    assert b["active"] == "random-0" and [v["version"] for v in b["versions"]] == ["random-0"]
    r = client.post("/v1/bridges/random-0/activate")
    assert r.status_code == 200 and r.json()["active"] == "random-0"


def test_alignment_jobs_are_refused_while_disabled(client):
    r = client.post("/v1/alignment/jobs", json={"method": "backprop"})
    assert r.status_code == 409 and "alignment.enabled" in r.json()["error"]
    assert client.get("/v1/alignment/jobs").json()["jobs"] == []


def test_status_listen_and_metrics(client):
    st = client.get("/v1/status").json()
    assert set(st) >= {"uptime_s", "source", "queue_depth", "active_bridge", "idle_s", "running_job"}
    r = client.post("/v1/listen", json={"seconds": 5})
    assert r.status_code == 200 and r.json()["listening_until"] > 0
    until = client.post("/v1/quiet", json={"seconds": 30}).json()["quiet_until"]
    assert until > 0 and client.get("/v1/status").json()["quiet_until"] == until
    assert client.post("/v1/quiet", json={"seconds": 0}).json()["quiet_until"] is None
    assert client.get("/v1/status").json()["quiet_until"] is None
    r = client.post("/v1/quiet", json={"seconds": -1})
    assert r.status_code == 400 and "seconds" in r.json()["error"]
    m = client.get("/metrics")
    assert m.status_code == 200 and "assistant_stage_seconds" in m.text and "assistant_queue_depth" in m.text


def test_events_websocket_reports_turns(client, daemon):
    import asyncio

    import websockets

    async def run():
        url = f"ws://127.0.0.1:{daemon.port}/v1/events?token={daemon.token}"
        async with websockets.connect(url, open_timeout=10) as ws:
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(None, post_turn, client, wav_bytes(1.0, seed=9))
            seen = set()
            while not {"transcript", "response"} <= seen:
                seen.add(json.loads(await asyncio.wait_for(ws.recv(), 30))["type"])
            await fut
            return seen

    assert {"utterance_queued", "transcript", "response"} <= asyncio.run(run())

    async def refused():
        async with websockets.connect(f"ws://127.0.0.1:{daemon.port}/v1/events", open_timeout=10) as ws:
            await asyncio.wait_for(ws.recv(), 10)

    with pytest.raises(websockets.exceptions.InvalidStatus, match="403"):  # refused before the handshake
        asyncio.run(refused())


def test_server_still_serving_after_all_that(client):
    assert client.get("/v1/health").json()["status"] == "ok"
    assert post_turn(client, wav_bytes(0.8, seed=11)).status_code == 200


def test_satellite_stream_over_websocket_becomes_logged_utterances(client, daemon, tmp_path):
    """A remote microphone: format announced first, then 48 kHz stereo PCM; the VAD cuts it here."""
    import asyncio

    import websockets

    from speech import espeak_wav

    x, rate = sf.read(espeak_wav("turn off the bedroom lights", tmp_path / "sat.wav"), dtype="float32")
    x48 = np.interp(np.arange(int(len(x) * 3)) / 3, np.arange(len(x)), x).astype(np.float32)  # 16k -> 48k
    silence = np.zeros(48000 * 2, dtype=np.float32)
    mono = np.concatenate([silence[:48000], x48, silence])
    pcm = (np.stack([mono, mono], 1) * 32767).astype("<i2").tobytes()
    before = client.get("/v1/utterances").json()["total"]

    async def run():
        url = f"ws://127.0.0.1:{daemon.port}/v1/stream"
        async with websockets.connect(url, additional_headers=daemon.headers, open_timeout=10) as ws:
            await ws.send(json.dumps({"format": "pcm_s16le", "sample_rate_hz": 48000, "channels": 2}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["ok"] is True
            for i in range(0, len(pcm), 48000 * 4 // 10 * 2):  # ~0.1 s messages
                await ws.send(pcm[i: i + 48000 * 4 // 10 * 2])
            for _ in range(150):  # bounded: the utterance is cut after the trailing silence
                await asyncio.sleep(0.1)
                page = client.get("/v1/utterances", params={"limit": 5}).json()
                if page["total"] > before and page["utterances"][0]["status"] == "done":
                    return page["utterances"][0]
        raise AssertionError("no utterance from the satellite")

    u = asyncio.run(run())
    assert u["source"].startswith("ws:") and 1.0 < u["duration_s"] < 5.0

    async def bad_header():
        url = f"ws://127.0.0.1:{daemon.port}/v1/stream"
        async with websockets.connect(url, additional_headers=daemon.headers, open_timeout=10) as ws:
            await ws.send(json.dumps({"format": "mp3", "sample_rate_hz": 48000, "channels": 2}))
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            return msg, closed.value.rcvd.code

    msg, code = asyncio.run(bad_header())
    assert code == 1003 and msg["field"] == "format"


def test_error_types_map_to_statuses_in_one_table():
    """The status follows the error's type, never words in its message ("full", "readable")."""
    from assistant.errors import (AssistantError, AudioError, BusyError, DiskFullError, ModelFilesError, NotFoundError,
                                  RefusedError, StoreError, UnreadableAudioError)
    from assistant_services.api.app import _status_for

    cases = ((UnreadableAudioError("x"), 415), (AudioError("not a readable audio file, says the message"), 422),
             (NotFoundError("x"), 404), (BusyError("the queue is full"), 503), (RefusedError("x"), 409),
             (ModelFilesError("x"), 409), (DiskFullError("x"), 507), (StoreError("the disk is full"), 503),
             (AssistantError("x"), 400))
    for exc, status in cases:
        assert _status_for(exc) == status, (type(exc).__name__, exc)


def test_data_that_is_not_audio_is_415(client):
    r = client.post("/v1/turns", files={"audio": ("a.wav", b"this is not audio at all" * 10, "audio/wav")})
    assert r.status_code == 415 and "not a readable audio file" in r.json()["error"], r.text


def test_json_bodies_past_the_cap_are_413_before_they_are_read(client):
    uid = post_turn(client, wav_bytes(1.0, seed=7)).json()["utterance_id"]
    big = json.dumps({"label": "x" * (100 * 1024)}).encode()  # over api.max_json_kb = 64
    r = client.patch(f"/v1/utterances/{uid}", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "max_json_kb" in r.json()["error"], r.text

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(100):
            yield b" " * 1024
        yield b'{"label": "x"}'

    r = client.patch(f"/v1/utterances/{uid}", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "max_json_kb" in r.json()["error"], r.text
    assert client.get(f"/v1/utterances/{uid}").json()["label"] is None  # nothing stored
    r = client.patch(f"/v1/utterances/{uid}", json={"label": "set a timer"})  # a normal body still goes
    assert r.status_code == 200


def test_bodies_the_parser_cannot_read_and_unknown_paths_say_what_is_wrong(client):
    uid = post_turn(client, wav_bytes(1.0, seed=8)).json()["utterance_id"]
    js = {"content-type": "application/json"}
    r = client.patch(f"/v1/utterances/{uid}", content=b'{"label": "caf\xe9"}', headers=js)  # Latin-1, not UTF-8
    assert r.status_code == 400 and "not UTF-8" in r.json()["error"], r.text
    r = client.patch(f"/v1/utterances/{uid}", content=b"[" * 60000, headers=js)
    assert r.status_code == 400 and "nested deeper" in r.json()["error"], r.text
    r = client.patch(f"/v1/utterances/{uid}", content='{"label": "[[[[ \\" {{{{"}'.encode(), headers=js)
    assert r.status_code == 200, r.text  # brackets inside a string are text
    r = client.get("/v1/utterances/..%2f..%2fetc%2fpasswd")
    assert r.status_code == 404 and "no route GET" in r.json()["error"] and "/docs" in r.json()["error"], r.text
    r = client.put("/v1/utterances")
    assert r.status_code == 405 and "PUT is not allowed" in r.json()["error"], r.text
