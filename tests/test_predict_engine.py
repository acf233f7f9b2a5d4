"""Prediction on the inference engine (evaluate/workflow.py over `Engine.complete`): the whole split is queued in
the transformers engine's batcher at once and a finished row's place goes to the next prompt within the same
batch, yet the greedy predictions and their metrics are exactly what padded-batch `generate` gave before.

builtin:tiny on CPU (random weights: nonsense replies, but deterministic and different per prompt)."""

from __future__ import annotations

import json

import pytest

from tuneboard.config import Config
from tuneboard.evaluate import metrics
from tuneboard.evaluate import workflow as evaluate
from tuneboard.inference.generation import GenerationSettings
from tuneboard.model.tiny import bundled_data_dir

N = 10


@pytest.fixture(scope="module")
def loaded():
    from tuneboard.model.load import load_for_inference

    return load_for_inference(Config(model_name_or_path="builtin:tiny"))


@pytest.fixture(scope="module")
def split(loaded):
    """The first N triage_test prompts (ids) and reference replies."""
    from tuneboard.data.pipeline import load_conversations
    from tuneboard.data.tokenize import encode_prompts

    convs, _ = load_conversations(["triage_test"], bundled_data_dir(), max_samples=N)
    labels = [c.messages[-1].content for c in convs]
    for c in convs:
        c.messages = c.messages[:-1]
    return encode_prompts(convs, loaded.template, loaded.tokenizer), labels


def padded_generate(loaded, prompts: list[list[int]], width: int, **gen) -> list[str]:
    """What `tuneboard eval` did before it used the engine: left-padded batches through `generate`."""
    import torch

    from tuneboard.model.load import stop_token_ids

    tok, pad = loaded.tokenizer, loaded.tokenizer.pad_token_id
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out = [""] * len(prompts)
    for start in range(0, len(order), width):
        rows = order[start : start + width]
        longest = max(len(prompts[i]) for i in rows)
        ids = torch.full((len(rows), longest), pad)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for r, i in enumerate(rows):
            ids[r, longest - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[r, longest - len(prompts[i]) :] = 1
        with torch.inference_mode():
            gen_ids = loaded.model.generate(
                input_ids=ids,
                attention_mask=mask,
                eos_token_id=stop_token_ids(tok, loaded.template),
                pad_token_id=pad,
                **gen,
            )
        for r, i in enumerate(rows):
            out[i] = tok.decode(gen_ids[r, longest:], skip_special_tokens=True)
    return out


def test_eval_predictions_and_metrics_equal_padded_generate(loaded, split, tmp_path):
    prompts, labels = split
    before = padded_generate(loaded, prompts, 4, max_new_tokens=12, do_sample=False)
    assert len(set(before)) >= 3, "the prompts must have different replies to detect mixing"
    cfg = Config(
        model_name_or_path="builtin:tiny",
        eval_dataset="triage_test",
        dataset_dir=str(bundled_data_dir()),
        max_samples=N,
        max_new_tokens=12,
        per_device_eval_batch_size=4,
        output_dir=str(tmp_path),
    )
    results = evaluate.run(cfg, loaded)
    lines = (tmp_path / "generated_predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["predict"] for line in lines] == before
    expected = metrics.compute_metrics(before, labels)
    assert {k: results[k] for k in expected} == expected


def test_the_split_is_admitted_continuously_and_each_reply_is_its_solo_reply(loaded, split, monkeypatch):
    from tuneboard.inference import batching

    prompts, _ = split
    cfg = Config(model_name_or_path="builtin:tiny", per_device_eval_batch_size=3)
    engine = evaluate.load_engine(cfg, loaded)
    assert engine.max_batch == 3
    # the random model never ends a turn (each row repeats one token); ending at "我由" too makes those rows
    # leave at their first token and the others run to their longest
    early = loaded.tokenizer.convert_tokens_to_ids(loaded.tokenizer.tokenize("我由"))[0]
    engine.stop_ids = engine.batcher.stop_ids = [*engine.stop_ids, early]
    greedy = GenerationSettings.from_config(cfg, do_sample=False, max_new_tokens=14)
    beside: list[int] = []  # how many rows were mid-reply when each prompt joined
    widths: list[int] = []
    join, step = batching.Batcher._join, batching.Batcher._step

    def spy_join(self, job):
        beside.append(len(self.active))
        return join(self, job)

    def spy_step(self):
        widths.append(len(self.active))
        return step(self)

    try:
        solo = [engine.complete([p], greedy)[0] for p in prompts]
        monkeypatch.setattr(batching.Batcher, "_join", spy_join)
        monkeypatch.setattr(batching.Batcher, "_step", spy_step)
        together = engine.complete(prompts, greedy)
    finally:
        engine.close()
    counts = [r.completion_tokens for r in solo]
    assert min(counts) == 1 and max(counts) == 14, "rows must end at different steps"
    assert len(beside) == N and max(widths) == 3
    assert any(n > 0 for n in beside[3:]), "a prompt must join a batch that is already generating"
    assert [r.text for r in together] == [r.text for r in solo]
    assert [r.completion_tokens for r in together] == counts
    assert [r.finish_reason for r in together] == ["stop" if n == 1 else "length" for n in counts]
    assert [r.prompt_tokens for r in together] == [len(p) for p in prompts]


def test_beam_search_predictions_go_through_padded_generate(loaded, split):
    prompts, _ = split
    cfg = Config(model_name_or_path="builtin:tiny", per_device_eval_batch_size=4)
    engine = evaluate.load_engine(cfg, loaded)
    beams = GenerationSettings.from_config(cfg, do_sample=False, num_beams=2, max_new_tokens=6)
    try:
        got = [r.text for r in engine.complete(prompts[:5], beams)]
    finally:
        engine.close()
    assert got == padded_generate(loaded, prompts[:5], 4, **beams.generate_kwargs())


def test_an_error_in_the_batch_reaches_the_caller_and_frees_the_rest(loaded, split, monkeypatch):
    from tuneboard.inference import batching

    prompts, _ = split
    cfg = Config(model_name_or_path="builtin:tiny", per_device_eval_batch_size=2)
    engine = evaluate.load_engine(cfg, loaded)
    calls = {"n": 0}
    step = batching.Batcher._step

    def failing(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("out of memory (simulated)")
        return step(self)

    monkeypatch.setattr(batching.Batcher, "_step", failing)
    greedy = GenerationSettings.from_config(cfg, do_sample=False, max_new_tokens=8)
    try:
        with pytest.raises(RuntimeError, match="simulated"):
            engine.complete(prompts, greedy)
        assert engine.load()["batch"] == 0 and engine.load()["waiting"] == 0
        assert engine.complete(prompts[:2], greedy)[0].completion_tokens > 0  # the engine still works
    finally:
        engine.close()
