"""Dynamic batching in the transformers engine (inference/batching.py): concurrent replies share forward
passes and each is what it would be alone: greedy replies equal their solo reply (and `generate`'s), each
request keeps its own length, stop strings, seed and cancellation, and rows leave the batch as they end.

builtin:tiny on CPU; the replies of its random weights are nonsense but deterministic."""

from __future__ import annotations

import threading

import pytest

from tuneboard.config import Config
from tuneboard.inference.generation import GenerationSettings

PROMPTS = [
    "你是谁？",
    "What is 2+2?",
    "Name a colour.",
    "患者：我头疼。",
    "你好",
    "Say hello.",
    "介绍一下你自己。",
    "Who?",
]


@pytest.fixture(scope="module")
def engine():
    from tuneboard.inference.hf import ChatEngine

    return ChatEngine(Config(model_name_or_path="builtin:tiny", do_sample=False, max_new_tokens=24))


def ask(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def together(engine, requests: list[dict]) -> list:
    """Each request ({"prompt", **chat keywords}) asked from its own thread at once -> their Replies."""
    replies: list = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def one(k: int) -> None:
        kw = dict(requests[k])
        prompt = kw.pop("prompt")
        start.wait()
        replies[k] = engine.chat(ask(prompt), **kw)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert all(r is not None for r in replies)
    return replies


def test_the_engine_batches(engine):
    assert engine.max_batch == 16 and engine.load() == {"batch": 0, "waiting": 0, "max_batch": 16}


def test_eight_concurrent_greedy_replies_each_equal_its_solo_reply(engine):
    import torch

    lengths = [24, 5, 17, 1, 24, 9, 12, 3]  # rows leave the batch at different steps
    solo = [engine.chat(ask(p), max_new_tokens=n) for p, n in zip(PROMPTS, lengths, strict=True)]
    for prompt, n, reply in zip(PROMPTS, lengths, solo, strict=True):  # alone, the batcher is `generate`
        ids, settings = engine.prepare(ask(prompt), max_new_tokens=n)
        with torch.inference_mode():
            out = engine.model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                eos_token_id=engine.stop_ids,
                pad_token_id=engine.tokenizer.pad_token_id,
                **settings.generate_kwargs(),
            )
        assert reply.text == engine.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)
        assert reply.completion_tokens == out.shape[1] - len(ids)
    for _ in range(2):
        batched = together(
            engine, [{"prompt": p, "max_new_tokens": n} for p, n in zip(PROMPTS, lengths, strict=True)]
        )
        assert [r.text for r in batched] == [r.text for r in solo]
        assert [r.completion_tokens for r in batched] == [r.completion_tokens for r in solo]
        assert [r.finish_reason for r in batched] == [r.finish_reason for r in solo]
    assert len({r.text for r in solo}) >= 4, "the prompts must have different replies to detect mixing"


def test_stop_strings_seed_and_cancel_are_each_requests_own(engine):
    plain = engine.chat(ask(PROMPTS[0]))
    cut_at = plain.text[3:5]
    sampled = dict(temperature=1.0, top_p=0.9, top_k=20, seed=1234)
    seeded = engine.chat(ask(PROMPTS[1]), **sampled)
    assert engine.chat(ask(PROMPTS[1]), **sampled).text == seeded.text  # the seed decides the reply
    cancelled = threading.Event()
    cancelled.set()
    replies = together(
        engine,
        [
            {"prompt": PROMPTS[0], "stop": [cut_at]},
            {"prompt": PROMPTS[1], **sampled},
            {"prompt": PROMPTS[2], "cancel": cancelled},
            {"prompt": PROMPTS[0]},
            {"prompt": PROMPTS[3], "repetition_penalty": 1.3},
        ],
    )
    assert replies[0].text == plain.text[: plain.text.index(cut_at)] and replies[0].finish_reason == "stop"
    assert replies[1].text == seeded.text
    assert replies[2].finish_reason == "cancelled" and replies[2].text == ""
    assert replies[3].text == plain.text
    assert replies[4].text == engine.chat(ask(PROMPTS[3]), repetition_penalty=1.3).text


def test_a_reply_whose_consumer_leaves_frees_its_row(engine):
    stream = engine.stream(ask(PROMPTS[0]), max_new_tokens=500)
    next(stream)
    stream.close()
    assert engine.load()["batch"] == 0
    assert engine.chat(ask(PROMPTS[4])).text == engine.chat(ask(PROMPTS[4])).text


def test_more_requests_than_the_batch_wait_their_turn():
    from tuneboard.inference.hf import ChatEngine

    small = ChatEngine(
        Config(model_name_or_path="builtin:tiny", do_sample=False, max_new_tokens=12, max_concurrent=2)
    )
    solo = [small.chat(ask(p)).text for p in PROMPTS[:5]]
    assert [r.text for r in together(small, [{"prompt": p} for p in PROMPTS[:5]])] == solo


def test_beam_search_still_generates(engine):
    settings = GenerationSettings.from_config(engine.cfg, num_beams=2, max_new_tokens=6)
    reply = engine.chat(ask(PROMPTS[0]), settings=settings)
    assert reply.completion_tokens > 0 and reply.finish_reason in ("stop", "length")
