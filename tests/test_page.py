"""The corrections page in a real browser: Debian's headless Chromium, driven over the DevTools protocol,
loads http://127.0.0.1:PORT/ from a real daemon, lists the turns, submits a correction (the label reaches
the store) and confirms another; a screenshot is kept ($ASSISTANT_TEST_ARTIFACTS, else the test's tmp dir)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import noise_wave
from daemon_proc import DaemonProcess


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: scripts/test.sh installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return exe


class Browser:
    """Just enough of the DevTools protocol: evaluate JavaScript, screenshot."""

    def __init__(self, ws) -> None:
        self.ws, self._ids = ws, itertools.count(1)

    async def call(self, method: str, **params):
        i = next(self._ids)
        await self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:  # bounded: each message waits at most 30 s
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg["result"]

    async def js(self, expression: str):
        r = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")

    async def until(self, expression: str, timeout_s: float = 30.0):
        deadline = time.monotonic() + timeout_s
        while not (value := await self.js(expression)):
            assert time.monotonic() < deadline, f"never true: {expression}"
            await asyncio.sleep(0.1)
        return value


def test_the_page_lists_turns_and_takes_a_correction_in_a_real_browser(tiny_bundle, tmp_path):
    import io

    import soundfile as sf
    import websockets

    exe = chromium()
    d = DaemonProcess(tmp_path / "data", tiny_bundle, extra_config="[alignment]\nenabled = false\n").start()
    ids = []
    for seed in (1, 2):
        buf = io.BytesIO()
        sf.write(buf, noise_wave(1.0, seed), 16000, format="WAV")
        r = httpx.post(d.url + "/v1/turns", headers=d.headers, files={"audio": ("a.wav", buf.getvalue(), "audio/wav")},
                       timeout=60)
        ids.append(r.json()["utterance_id"])
    profile = tmp_path / "chromium"
    proc = subprocess.Popen([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1200,900",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    artifacts = Path(os.environ.get("ASSISTANT_TEST_ARTIFACTS") or tmp_path)
    try:
        deadline = time.monotonic() + 60
        port = None
        while port is None:  # DevTools prints its address on stderr when it listens
            assert time.monotonic() < deadline and proc.poll() is None, "chromium did not start"
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", proc.stderr.readline())
            port = int(m.group(1)) if m else None
        page = next(t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page")

        async def run():
            async with websockets.connect(page["webSocketDebuggerUrl"], max_size=2**26, open_timeout=10) as ws:
                b = Browser(ws)
                await b.call("Page.enable")
                await b.call("Page.navigate", url=f"{d.url}/#token={d.token}")
                await b.until("document.body && document.body.dataset.loaded === 'yes'")
                listed = await b.js("[...document.querySelectorAll('#turns tbody tr')].map(r => +r.dataset.id)")
                token_left = await b.js("location.hash")
                await b.js(f"""(() => {{ const row = document.querySelector('#turns tr[data-id="{ids[0]}"]');
                    row.querySelector('input').value = 'set a timer for five minutes';
                    row.querySelector('button.correct').click(); }})()""")
                await b.until("document.getElementById('status').textContent.includes('corrected')")
                await b.until("document.body.dataset.loaded === 'yes'")
                await b.js(f"document.querySelector('#turns tr[data-id=\"{ids[1]}\"] button.confirm').click()")
                await b.until("document.getElementById('status').textContent.includes('confirmed')")
                shot = await b.call("Page.captureScreenshot", format="png")
                sections = await b.js("[...document.querySelectorAll('h2')].map(h => h.textContent)")
                drawn = await b.js("document.querySelector('#plot text').getBBox().width")  # SVG really drawn
                enrollment = await b.js("document.getElementById('enrollment').textContent")
                return listed, token_left, shot, sections, drawn, enrollment

        listed, token_left, shot, sections, drawn, enrollment = asyncio.run(run())
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / "page.png").write_bytes(base64.b64decode(shot["data"]))
    finally:
        proc.kill()
        proc.wait(10)
        rows = {u["id"]: u for u in httpx.get(d.url + "/v1/utterances", headers=d.headers).json()["utterances"]}
        assert d.stop() == 0, d.log.read_text()[-3000:]
    assert set(ids) <= set(listed) and token_left == ""  # the token is not left in the address bar
    assert rows[ids[0]]["label"]["text"] == "set a timer for five minutes"
    assert rows[ids[0]]["label"]["source"] == "correction"
    assert rows[ids[1]]["label"]["source"] == "confirmed"
    assert sections == ["Recent turns", "Enrollment", "Voice versions", "Timers and alarms"] and drawn > 100
    # the two labels just given: a job needs about 50 (the [alignment] defaults)
    assert "2 labelled utterances, about 48 more before your voice can be learned" in enrollment, enrollment
    assert (artifacts / "page.png").stat().st_size > 10_000
    print(f"screenshot: {artifacts / 'page.png'}")
