"""VllmEngine at the vLLM boundary: a stand-in `vllm` module with vLLM's API shape (AsyncEngineArgs,
AsyncLLMEngine.from_engine_args, async generate with cumulative RequestOutputs, abort, SamplingParams,
LoRARequest) replays a fixed reply token by token. What is checked is our side: engine arguments from the
vllm_* keys, the prompt ids (same template as the transformers engine), sampling parameters, streamed pieces,
Reply counts and finish reasons, abort on cancel and on a closed stream, and the OpenAI API on top.
A real vLLM needs a CUDA GPU, which this machine has not."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.machinery
import json
import threading
import types
from types import SimpleNamespace

import pytest

from tuneboard.config import Config
from tuneboard.errors import TuneboardError
from tuneboard.inference import make_engine

REPLY = "我是 Tuney，很高兴为你服务。"


class FakeEngine:
    def __init__(self, args, tokenizer_dir) -> None:
        from transformers import AutoTokenizer

        self.args = args
        self.tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.requests: list[tuple] = []
        self.aborted: list[str] = []
        self.started = threading.Event()

    async def generate(self, prompt, params, request_id, lora_request=None):
        self.requests.append((prompt, params, request_id, lora_request))
        ids = self.tok(REPLY, add_special_tokens=False)["input_ids"]
        for k in range(1, len(ids) + 1):
            await asyncio.sleep(0.01)
            if request_id in self.aborted:
                return
            self.started.set()
            text = self.tok.decode(ids[:k])
            reason = None
            for s in params.kw.get("stop") or ():
                if s in text:
                    text, reason = text[: text.index(s)], "stop"
            if reason is None and k == params.kw["max_tokens"]:
                reason = "length"
            if reason is None and k == len(ids):
                reason = "stop"
            yield SimpleNamespace(
                outputs=[SimpleNamespace(text=text, token_ids=ids[:k], finish_reason=reason)],
                finished=reason is not None,
            )
            if reason:
                return

    async def abort(self, request_id):
        self.aborted.append(request_id)


@pytest.fixture
def fake_vllm(monkeypatch, tiny_dir):
    vllm = types.ModuleType("vllm")
    vllm.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    vllm.engines = []

    class Params:
        def __init__(self, **kw) -> None:
            self.kw = kw

    def from_engine_args(args):
        vllm.engines.append(FakeEngine(args, args.kw["tokenizer"]))
        return vllm.engines[-1]

    vllm.SamplingParams = Params
    vllm.AsyncEngineArgs = Params
    vllm.AsyncLLMEngine = SimpleNamespace(from_engine_args=from_engine_args)
    lora = types.ModuleType("vllm.lora.request")
    lora.LoRARequest = lambda name, int_id, path: SimpleNamespace(name=name, id=int_id, path=path)
    monkeypatch.setitem(__import__("sys").modules, "vllm", vllm)
    monkeypatch.setitem(__import__("sys").modules, "vllm.lora", types.ModuleType("vllm.lora"))
    monkeypatch.setitem(__import__("sys").modules, "vllm.lora.request", lora)
    return vllm


def vcfg(**keys) -> Config:
    return Config(infer_backend="vllm", model_name_or_path="builtin:tiny", do_sample=False, **keys)


def test_not_installed_gives_a_clear_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(TuneboardError, match="pip install vllm"):
        make_engine(vcfg())


def test_engine_arguments_from_llamafactory_keys(fake_vllm, tiny_dir, tmp_path):
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "builtin:tiny"}))
    cfg = vcfg(adapter_name_or_path=str(adapter), vllm_maxlen=1024, vllm_gpu_util=0.5, vllm_max_lora_rank=64)
    engine = make_engine(cfg)
    args = fake_vllm.engines[0].args.kw
    assert args["model"] == str(tiny_dir) and args["max_model_len"] == 1024
    assert args["gpu_memory_utilization"] == 0.5 and args["dtype"] == "auto"
    assert args["enable_lora"] is True and args["max_lora_rank"] == 64
    assert engine.lora.path == str(adapter)
    engine.chat([{"role": "user", "content": "你好"}])
    assert fake_vllm.engines[0].requests[0][3] is engine.lora  # every request carries the adapter


def test_two_adapters_and_quantization_are_refused(fake_vllm, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text("{}")
    with pytest.raises(TuneboardError, match="one LoRA adapter"):
        make_engine(vcfg(adapter_name_or_path=f"{tmp_path / 'a'},{tmp_path / 'b'}"))
    with pytest.raises(TuneboardError, match="pre-quantized"):
        make_engine(vcfg(quantization_bit=4))


def test_stream_prompt_and_counts(fake_vllm, tiny_tokenizer):
    from tuneboard.inference.engine import Reply, to_conversation

    engine = make_engine(vcfg())
    messages = [{"role": "user", "content": "你是谁？"}]
    reply = Reply()
    pieces = list(engine.stream(messages, system="简短回答。", reply=reply))
    assert "".join(pieces) == REPLY == reply.text and len(pieces) > 3  # streamed, not one block
    prompt, params, _, lora = fake_vllm.engines[0].requests[0]
    text = engine.template.prompt_text(to_conversation(messages, "简短回答。"))
    assert prompt == {"prompt_token_ids": tiny_tokenizer(text, add_special_tokens=False)["input_ids"]}
    assert reply.prompt_tokens == len(prompt["prompt_token_ids"]) and lora is None
    assert reply.completion_tokens == len(tiny_tokenizer(REPLY, add_special_tokens=False)["input_ids"])
    assert reply.finish_reason == "stop"
    # greedy (do_sample false), end-of-turn token as a stop id, special tokens hidden
    assert params.kw["temperature"] == 0.0 and params.kw["top_k"] == -1
    assert tiny_tokenizer.convert_tokens_to_ids("<|im_end|>") in params.kw["stop_token_ids"]
    assert params.kw["skip_special_tokens"] is True


def test_sampling_settings_pass_through(fake_vllm):
    engine = make_engine(vcfg())
    params = engine.sampling_params(
        ["\n"], do_sample=True, temperature=0.7, top_p=0.9, top_k=20, max_new_tokens=9
    )
    want = {"n": 1, "temperature": 0.7, "top_p": 0.9, "top_k": 20, "max_tokens": 9, "stop": ["\n"]}
    assert {k: params.kw[k] for k in want} == want
    with pytest.raises(TuneboardError, match="beam"):
        engine.sampling_params(num_beams=4)


def test_length_and_stop_strings(fake_vllm):
    engine = make_engine(vcfg())
    short = engine.chat([{"role": "user", "content": "hi"}], max_new_tokens=3)
    assert short.finish_reason == "length" and short.completion_tokens == 3
    cut = engine.chat([{"role": "user", "content": "hi"}], stop=["很高兴"])
    assert cut.text == REPLY[: REPLY.index("很高兴")] and cut.finish_reason == "stop"


def test_cancel_and_closed_stream_abort_the_request(fake_vllm):
    from tuneboard.inference.engine import Reply

    engine = make_engine(vcfg())
    fake = fake_vllm.engines[0]
    cancel, reply = threading.Event(), Reply()
    stream = engine.stream([{"role": "user", "content": "hi"}], reply=reply, cancel=cancel)
    next(stream)
    cancel.set()
    rest = list(stream)
    assert reply.finish_reason == "cancelled" and len(rest) <= 1
    assert fake.aborted == [fake.requests[0][2]]
    stream = engine.stream([{"role": "user", "content": "hi"}])
    next(stream)
    stream.close()  # e.g. an API client disconnected
    assert fake.aborted[-1] == fake.requests[1][2]


def test_api_serves_the_vllm_engine(fake_vllm):
    from fastapi.testclient import TestClient

    from tuneboard.api.server import create_app

    client = TestClient(create_app(make_engine(vcfg())), base_url="http://127.0.0.1")
    body = {"messages": [{"role": "user", "content": "你是谁？"}]}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == REPLY
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as s:
        lines = [line for line in s.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    text = "".join(json.loads(x[6:])["choices"][0]["delta"].get("content") or "" for x in lines[:-1])
    assert text == REPLY


def test_eval_sends_the_whole_split_to_vllm_at_once(fake_vllm, tiny_tokenizer, tmp_path, monkeypatch):
    from tuneboard.data.pipeline import load_conversations
    from tuneboard.data.tokenize import encode_prompts
    from tuneboard.evaluate import workflow as evaluate
    from tuneboard.model.tiny import bundled_data_dir

    live, most = [0], [0]
    plain = FakeEngine.generate

    async def counted(self, *args, **kw):
        live[0] += 1
        most[0] = max(most[0], live[0])
        try:
            async for out in plain(self, *args, **kw):
                yield out
        finally:
            live[0] -= 1

    monkeypatch.setattr(FakeEngine, "generate", counted)
    data = bundled_data_dir()
    cfg = vcfg(eval_dataset="triage_test", dataset_dir=str(data), max_samples=5, max_new_tokens=4)
    results = evaluate.run(dataclasses.replace(cfg, output_dir=str(tmp_path)))
    assert results["predict_samples"] == 5 and most[0] == 5  # five requests in flight together
    convs, _ = load_conversations(["triage_test"], data, max_samples=5)
    for c in convs:
        c.messages = c.messages[:-1]
    sent = sorted(r[0]["prompt_token_ids"] for r in fake_vllm.engines[0].requests)
    assert sent == sorted(encode_prompts(convs, evaluate.load_engine(cfg).template, tiny_tokenizer))
    first4 = tiny_tokenizer.decode(tiny_tokenizer(REPLY, add_special_tokens=False)["input_ids"][:4])
    lines = (tmp_path / "generated_predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["predict"] for line in lines] == [first4] * 5
    assert fake_vllm.engines[0].requests[0][1].kw["temperature"] == 0.0  # evaluation is greedy
