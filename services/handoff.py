"""Hand-off handlers: where requests the assistant cannot do itself go ([actions] handoff).

- ``home_assistant``: Home Assistant's conversation API, ``POST <url>/api/conversation/process`` with
  ``{"text": <request>, "language": "en"}`` and a long-lived access token; Home Assistant recognizes the
  intent against the user's own devices, and its ``response.speech.plain.speech`` is what is said
  (``response_type`` ``error``: not done).
- ``webhook``: ``POST <url>`` with ``{"domain", "request", "reply"}`` (and the token as a Bearer header
  when set); any 2xx is done, and a JSON body's string ``reply`` replaces ours.

Standard library only, bounded by ``handoff_timeout_s``; a failure is an outcome ("Home Assistant did not
answer: ..."), never an exception out of the turn.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

log = logging.getLogger(__name__)


class _Http:
    name = "http"

    def __init__(self, url: str, token: str, timeout_s: float) -> None:
        self.url, self.token, self.timeout_s = url.rstrip("/"), token, timeout_s

    def _post(self, url: str, body: dict) -> tuple[int, object]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read(1 << 20)
                status = resp.status
        except urllib.error.HTTPError as exc:
            return exc.code, None
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None


class HomeAssistantHandoff(_Http):
    name = "Home Assistant"

    def send(self, domain: str, request: str, reply: str) -> tuple[bool, str | None, str]:
        try:
            status, body = self._post(self.url + "/api/conversation/process", {"text": request, "language": "en"})
        except (OSError, urllib.error.URLError) as exc:
            return False, None, f"Home Assistant at {self.url} did not answer: {getattr(exc, 'reason', exc)}"
        if status == 401:
            return False, None, "Home Assistant refused the token (401): set [actions] handoff_token"
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("response"), dict):
            return False, None, f"Home Assistant answered {status} without a conversation response"
        response = body["response"]
        speech = (response.get("speech") or {}).get("plain", {}).get("speech")
        speech = speech if isinstance(speech, str) and speech.strip() else None
        if response.get("response_type") == "error":
            return False, speech, f"Home Assistant could not do it: {speech or 'no reason given'}"
        return True, speech, f"Home Assistant: {response.get('response_type')}"


class WebhookHandoff(_Http):
    name = "the webhook"

    def send(self, domain: str, request: str, reply: str) -> tuple[bool, str | None, str]:
        try:
            status, body = self._post(self.url, {"domain": domain, "request": request, "reply": reply})
        except (OSError, urllib.error.URLError) as exc:
            return False, None, f"the webhook at {self.url} did not answer: {getattr(exc, 'reason', exc)}"
        if not 200 <= status < 300:
            return False, None, f"the webhook answered {status}"
        said = body.get("reply") if isinstance(body, dict) else None
        return True, said if isinstance(said, str) and said.strip() else None, f"webhook: {status}"


def build_handoff(config):
    """The handler [actions] names, or None."""
    cfg = config.actions
    kinds = {"home_assistant": HomeAssistantHandoff, "webhook": WebhookHandoff}
    if not cfg.handoff:
        return None
    return kinds[cfg.handoff](cfg.handoff_url, cfg.handoff_token, cfg.handoff_timeout_s)
