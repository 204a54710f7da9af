"""Hand-off: the LLM's controlled replies read into hand-off actions, sent over real HTTP on loopback to a
server speaking Home Assistant's conversation API or a webhook, and the truthful answer without one."""

from __future__ import annotations

import pytest

from assistant.skills.executor import Executor
from assistant.skills.handoff import NOT_SET_UP, handoff_action, read_reply
from loopback_http import JsonServer, home_assistant_answer
from assistant_services.handoff import HomeAssistantHandoff, WebhookHandoff


@pytest.mark.parametrize("reply, domain", [
    ("Turning off the bedroom lamp.", "smart_home"), ("Setting the temperature to twenty degrees.", "smart_home"),
    ("Calling Nina.", "calls"), ("Sending to Nina: Running late.", "messages"),
    ("Playing jazz in the kitchen.", "music"), ("Here is the forecast for Paris today.", "weather"),
    ("Okay, I'll remind you to water the plants tonight.", "reminders"),
    ("Sure, here is a joke.", None), ("Timer set for five minutes.", None),
])
def test_the_reply_form_names_the_domain(reply, domain):
    assert read_reply(reply) == domain


def test_every_domain_has_a_form_and_a_truthful_refusal():
    from assistant.skills.actions import HANDOFF_DOMAINS
    from assistant.skills.handoff import _FORMS

    assert set(HANDOFF_DOMAINS) == set(NOT_SET_UP) == {d for d, _ in _FORMS}


def test_every_in_domain_template_reply_is_read_into_its_domain():
    """The reply adapter learned the templates' replies: each request domain's replies are read as that
    domain's hand-off; timers, alarms, dates and numbers (done locally) are never handed off."""
    from assistant.synth import text as tx

    domain_of = {"smart_home": "smart_home", "calls": "calls|messages", "music": "music", "weather": "weather",
                 "reminders": "reminders"}
    for u in tx.base_sentences(0)["test"]:
        got = read_reply(u.reply)
        if u.domain in domain_of:
            assert got is not None and got in domain_of[u.domain].split("|"), (u.domain, u.reply)
        else:
            assert got is None, (u.domain, u.reply)


@pytest.fixture()
def server():
    srv = JsonServer()
    yield srv.url, srv
    srv.close()


def test_home_assistant_does_it_and_its_words_are_said(server, tmp_path):
    url, rec = server
    from assistant.store import open_store

    rec.answers = [(200, home_assistant_answer("action_done", "Turned off the bedroom lamp")),
                   (200, home_assistant_answer("error", "Sorry, I am not aware of any device called garage")),
                   (401, {"message": "Invalid token"})]
    ha = HomeAssistantHandoff(url, "secret", 5.0)
    with open_store(tmp_path / "d") as store:
        ex = Executor(store, handoff=ha)
        a = handoff_action("Turning off the bedroom lamp.", "turn off the bedroom lamp please")
        out = ex.run(a, "Turning off the bedroom lamp.")
        assert (out.status, out.reply) == ("done", "Turned off the bedroom lamp")
        assert rec.seen[0] == ("/api/conversation/process", "Bearer secret",
                               {"text": "turn off the bedroom lamp please", "language": "en"})
        out = ex.run(handoff_action("Opening the garage door.", "open the garage door"), "Opening the garage door.")
        assert (out.status, out.reply) == ("failed", "Sorry, I am not aware of any device called garage")
        out = ex.run(handoff_action("Calling Nina.", "call nina"), "Calling Nina.")
        assert out.status == "failed" and "token" in out.detail and out.reply.startswith("Sorry")


def test_a_webhook_gets_the_request_and_may_word_the_reply(server, tmp_path):
    url, rec = server
    from assistant.store import open_store

    rec.answers = [(200, {"reply": "Calling Nina on her mobile."}), (204, None), (500, {"error": "boom"})]
    with open_store(tmp_path / "d") as store:
        ex = Executor(store, handoff=WebhookHandoff(url + "/hook", "", 5.0))
        assert ex.run(handoff_action("Calling Nina.", "call nina"), "Calling Nina.").reply == \
            "Calling Nina on her mobile."
        assert rec.seen[0] == ("/hook", None, {"domain": "calls", "request": "call nina", "reply": "Calling Nina."})
        assert ex.run(handoff_action("Playing jazz.", "play jazz"), "Playing jazz.").reply == "Playing jazz."
        out = ex.run(handoff_action("Playing jazz.", "play jazz"), "Playing jazz.")
        assert out.status == "failed" and "500" in out.detail


def test_nothing_listening_or_nothing_configured_is_said_truthfully(tmp_path):
    import socket

    from assistant.store import open_store

    with socket.socket() as s:  # a port with nothing on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open_store(tmp_path / "d") as store:
        ex = Executor(store, handoff=HomeAssistantHandoff(f"http://127.0.0.1:{port}", "t", 2.0))
        out = ex.run(handoff_action("Turning on the lights.", "turn on the lights"), "Turning on the lights.")
        assert out.status == "failed" and "did not answer" in out.detail
        bare = Executor(store)
        out = bare.run(handoff_action("Turning on the lights.", "turn on the lights"), "Turning on the lights.")
        assert (out.status, out.reply) == ("refused", NOT_SET_UP["smart_home"])
