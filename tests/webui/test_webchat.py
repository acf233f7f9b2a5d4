"""`tuneboard webchat CONFIG`: the chat page streams a reply from ChatEngine (browser), in the browser's
language; helpers and the bind-address warning without a browser."""

from __future__ import annotations

import re

import pytest

from tuneboard.webui.server import bind_host
from tuneboard.webui.webchat import text_of, to_messages


def test_gradio_message_contents_become_plain_text():
    assert text_of("hi") == "hi"
    assert text_of([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]) == "ab"
    history = [
        {"role": "user", "content": [{"type": "text", "text": "q"}]},
        {"role": "assistant", "content": "a"},
        {"role": "assistant", "content": ""},
    ]
    assert to_messages(history) == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


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
