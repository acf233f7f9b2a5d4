"""`tuneboard webchat CONFIG`: the chat page streams a reply from ChatEngine (browser), in the browser's
language; helpers and the bind-address warning without a browser."""

from __future__ import annotations

import re

import pytest

from tuneboard.webui import tab_chat
from tuneboard.webui.server import bind_host
from tuneboard.webui.webchat import note, replier, text_of, to_messages


def test_gradio_message_contents_become_plain_text():
    assert text_of("hi") == "hi"
    assert text_of([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]) == "ab"
    history = [
        {"role": "user", "content": [{"type": "text", "text": "q"}]},
        {"role": "assistant", "content": "a"},
        {"role": "assistant", "content": ""},
    ]
    assert to_messages(history) == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    unanswered = [*history, {"role": "user", "content": "q2"}, {"role": "user", "content": "q3"}]
    assert to_messages(unanswered)[2:] == [{"role": "user", "content": "q3"}]  # turns still alternate


class _Engine:
    """Stands in for ChatEngine: streams the given pieces, then raises `fail` if set."""

    def __init__(self, pieces, fail=None):
        self.pieces, self.fail, self.seen = pieces, fail, []

    def stream(self, messages, system=None, **settings):
        self.seen.append(messages)
        yield from self.pieces
        if self.fail:
            raise self.fail


def _chat(engine, message, history=(), lang="en"):
    tab_chat.LOADED.engine = engine
    try:
        *_, (last, box) = tab_chat.respond(lang, message, list(history), "", 16, 0.0, 1.0, 1.0)
    finally:
        tab_chat.LOADED.engine = None
    assert box == ""
    return last


def test_notes_are_shown_but_never_sent_to_the_model():
    shown = [
        {"role": "user", "content": "q"},
        note("zh", "chat.empty"),
        {"role": "assistant", "content": "a"},
    ]
    assert shown[1]["metadata"]["title"] == "空回复" and shown[1]["content"]
    assert to_messages(shown) == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def test_an_empty_reply_becomes_a_note_not_an_invisible_bubble():
    last = _chat(_Engine(["", " \n"]), "hi")
    assert [m["role"] for m in last] == ["user", "assistant"]
    assert last[1]["metadata"]["title"] == "Empty reply" and "ended its reply" in last[1]["content"]
    engine = _Engine(["ok"])
    last = _chat(engine, "again", last)
    assert engine.seen[-1] == [{"role": "user", "content": "again"}]  # the unanswered "hi" left out
    assert last[1]["metadata"]["title"] == "Empty reply"  # the earlier note stays in view
    assert last[-1] == {"role": "assistant", "content": "ok"}


def test_a_failure_keeps_the_partial_reply_and_adds_a_note():
    last = _chat(_Engine(["part"], RuntimeError("boom")), "hi")
    assert last[1] == {"role": "assistant", "content": "part"}
    assert last[2]["metadata"]["title"] == "Generation failed" and "boom" in last[2]["content"]
    last = _chat(_Engine([], RuntimeError("boom")), "hi")
    assert [m.get("metadata", {}).get("title") for m in last] == [None, "Generation failed"]


def test_the_webchat_page_notes_an_empty_reply_in_the_browsers_language():
    class Request:
        headers = {"accept-language": "zh-CN,zh;q=0.9"}

    engine = _Engine([])
    respond = replier(engine)
    *_, last = respond("hi", [{"role": "user", "content": "q"}], "", 8, 0.0, 1.0, 1.0, Request())
    assert last["metadata"]["title"] == "空回复"
    assert engine.seen == [[{"role": "user", "content": "hi"}]]
    assert list(replier(_Engine(["a", "b"]))("hi", [], "", 8, 0.0, 1.0, 1.0, Request())) == ["a", "ab"]


def test_binding_beyond_localhost_warns(capsys):
    assert bind_host(None, "x") == "127.0.0.1"
    assert capsys.readouterr().err == ""
    assert bind_host("0.0.0.0", "tuneboard webui") == "0.0.0.0"
    assert "anyone who can reach" in capsys.readouterr().err


@pytest.mark.browser
def test_webchat_streams_a_reply(browser, launch, tmp_path, shots):
    from playwright.sync_api import expect

    (tmp_path / "chat.yaml").write_text("model_name_or_path: builtin:tiny\nmax_new_tokens: 12\n")
    url = launch(["webchat", "chat.yaml"], tmp_path)
    ctx = browser.new_context(viewport={"width": 1200, "height": 900}, locale="zh-CN")
    page = ctx.new_page()
    page.goto(url)
    expect(page.get_by_text("系统提示词")).to_be_visible(timeout=30_000)  # the browser's language
    box = page.locator("#webchat-input textarea")
    box.fill("你是谁？")
    box.press("Enter")
    bot = page.locator('#webchat-bot [data-testid="bot"]').last
    expect(bot).to_have_text(re.compile(r"\S"), timeout=60_000)
    page.screenshot(path=str(shots / "webchat.png"), full_page=True)
    ctx.close()
