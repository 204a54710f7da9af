"""The OpenAI-compatible speech endpoints, through the official ``openai`` client against a real daemon
(uvicorn on 127.0.0.1, the shipped bundle): every transcription response_format, speech synthesis, and
errors in OpenAI's shape (a wrong key, a bad format, not audio)."""

from __future__ import annotations

import io
import os

import httpx
import pytest
import soundfile as sf

from assistant.config import demo_bundle_dir
from assistant.synth.voices import synthesize
from daemon_proc import DaemonProcess

DEMO = demo_bundle_dir()
pytestmark = pytest.mark.skipif(not (DEMO / "manifest.json").is_file() and not os.environ.get("CI"),
                                reason="no shipped bundle built yet (python -m bench.real.build)")
SAID = "set a timer for ten minutes"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = DaemonProcess(tmp_path_factory.mktemp("openai") / "data", DEMO,
                      extra_config="[alignment]\nenabled = false\n[actions]\nring = false\n").start(timeout_s=300)
    yield d
    assert d.stop() == 0, d.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def client(daemon):
    import openai

    return openai.OpenAI(api_key=daemon.token, base_url=daemon.url + "/v1", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("speech") / "said.wav"
    sf.write(path, synthesize("espeak-ng:en-us", SAID), 16000)
    return path


def test_every_response_format(client, daemon, wav):
    with wav.open("rb") as f:
        assert client.audio.transcriptions.create(model="whisper-1", file=f).text == SAID
    with wav.open("rb") as f:
        assert client.audio.transcriptions.create(model="whisper-1", file=f, response_format="text").strip() == SAID
    with wav.open("rb") as f:
        verbose = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json",
                                                     language="en", prompt="timers", temperature=0.0)
    assert verbose.text == SAID and verbose.language == "english" and 1.0 < verbose.duration < 3.0
    assert verbose.segments[0].text == SAID
    with wav.open("rb") as f:
        srt = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:0") and srt.strip().endswith(SAID)
    with wav.open("rb") as f:
        vtt = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ") and vtt.strip().endswith(SAID)
    # stored like any utterance, never answered (no action taken: a transcription is not a request)
    rows = httpx.get(daemon.url + "/v1/utterances", headers=daemon.headers, params={"limit": 5}).json()["utterances"]
    assert {(r["transcript"], r["activation"], r["action"]) for r in rows} == {(SAID, "logged_only", None)}


def test_speech_comes_back_as_audio_the_recognizer_reads(client, daemon):
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=SAID, response_format="wav")
    wave, rate = sf.read(io.BytesIO(audio.content), dtype="float32")
    assert rate == 16000 and len(wave) > 8000
    pcm = client.audio.speech.create(model="tts-1", voice="flite:slt", input="hello", response_format="pcm")
    assert len(pcm.content) % 2 == 0 and len(pcm.content) > 24000 * 2 * 0.3  # 24 kHz 16-bit, a third of a second
    buf = io.BytesIO(audio.content)
    buf.name = "speech.wav"
    assert client.audio.transcriptions.create(model="whisper-1", file=buf).text == SAID


def test_errors_come_in_openai_shape(client, daemon, wav):
    import openai

    bad = openai.OpenAI(api_key="wrong", base_url=daemon.url + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err, wav.open("rb") as f:
        bad.audio.transcriptions.create(model="whisper-1", file=f)
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key" and "token" in err.value.message
    with pytest.raises(openai.BadRequestError) as err, wav.open("rb") as f:
        client.audio.transcriptions.create(model="whisper-1", file=f, response_format="mp4")
    assert "response_format" in err.value.message and err.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as err, wav.open("rb") as f:
        client.audio.transcriptions.create(model="whisper-1", file=f, language="fr")
    assert "English" in err.value.message
    with pytest.raises(openai.APIStatusError) as err:
        client.audio.transcriptions.create(model="whisper-1", file=("notes.txt", b"not audio at all", "text/plain"))
    assert err.value.status_code == 415 and err.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(model="tts-1", voice="espeak-ng:en-us|sox:pitch -400", input="hi")
    assert "only an engine and a voice" in err.value.message
    r = httpx.post(daemon.url + "/v1/audio/transcriptions", headers=daemon.headers, json={"file": "x"})
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
