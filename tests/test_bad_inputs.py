"""The bad-input corpus (tests/data/bad_inputs.json) against a real daemon: each case states the status
it must get and a word its error message must contain, and no case may get a 5xx. Add a case with every
bad input a bug report finds; the corpus only grows.

A case: ``why``, ``method``, ``path`` and one body at most: ``json`` (any JSON), ``raw`` (text sent as
application/json), ``raw_hex`` (bytes, as application/json), ``raw_nested`` (that many nested arrays),
``label_kb`` (a {"label": ...} body of that many KiB), ``file`` (text sent as the multipart ``audio``
file); ``auth`` (the Authorization header, ``{token}`` replaced; default the right one), ``headers``;
``status``, ``contains``; ``openai`` (the error must be in OpenAI's shape).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from daemon_proc import DaemonProcess

CASES = json.loads((Path(__file__).parent / "data" / "bad_inputs.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def daemon(tiny_bundle, tmp_path_factory):
    d = DaemonProcess(tmp_path_factory.mktemp("bad") / "data", tiny_bundle,
                      extra_config="[alignment]\nidle_s = 86400\n").start()  # jobs may be asked for, never start
    # one utterance to aim the bodies at (ids in the corpus are 1)
    import io

    import soundfile as sf

    from conftest import noise_wave

    buf = io.BytesIO()
    sf.write(buf, noise_wave(1.0, 3), 16000, format="WAV")
    assert httpx.post(d.url + "/v1/turns", headers=d.headers, files={"audio": ("a.wav", buf.getvalue(), "audio/wav")},
                      timeout=60).status_code == 200
    yield d
    assert d.stop() == 0, d.log.read_text()[-3000:]


def _request(d: DaemonProcess, case: dict) -> httpx.Response:
    headers = {"Authorization": case.get("auth", "Bearer {token}").replace("{token}", d.token),
               **case.get("headers", {})}
    kwargs: dict = {}
    if "json" in case:
        kwargs["json"] = case["json"]
    elif "raw" in case or "raw_hex" in case or "raw_nested" in case or "label_kb" in case:
        if "raw" in case:
            body = case["raw"].encode()
        elif "raw_hex" in case:
            body = bytes.fromhex(case["raw_hex"])
        elif "raw_nested" in case:
            body = b"[" * case["raw_nested"] + b"]" * case["raw_nested"]
        else:
            body = json.dumps({"label": "a" * (case["label_kb"] * 1024)}).encode()
        kwargs["content"] = body
        headers["Content-Type"] = "application/json"
    elif "file" in case:
        kwargs["files"] = {"audio": ("x.wav", case["file"].encode(), "audio/wav")}
    return httpx.request(case["method"], d.url + case["path"], headers=headers, timeout=60, **kwargs)


@pytest.mark.parametrize("case", CASES, ids=[c["why"] for c in CASES])
def test_each_bad_input_gets_its_status_and_says_why(daemon, case):
    r = _request(daemon, case)
    assert r.status_code < 500, (r.status_code, r.text)
    assert r.status_code == case["status"], (r.status_code, r.text)
    error = r.json()["error"]
    if case.get("openai"):
        assert set(error) == {"message", "type", "param", "code"}, error
        error = error["message"]
    assert case["contains"] in error, error
    assert httpx.get(daemon.url + "/v1/health").status_code == 200  # and the daemon goes on serving
