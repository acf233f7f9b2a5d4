"""VllmEngine: `infer_backend: vllm`, the ChatEngine interface on vLLM's AsyncLLMEngine (CUDA machines).

Jobs layer. Same prompt (our template and tokenizer, token ids handed to vLLM), same text pieces, same Reply
counts and finish reasons as ChatEngine, so chat, webchat and the API do not know which engine they drive.
Unlike ChatEngine there is no lock: vLLM batches concurrent requests itself (continuous batching); each
stream is one vLLM request, aborted when its consumer goes away or `cancel` is set; evaluation's prompts
(`complete`) are sent as concurrent requests.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import queue
import threading
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from ..config import Config
from ..errors import TuneboardError
from .engine import Engine, Reply, context_window
from .generation import GenerationSettings
from .stops import releasable

_POLL_S = 0.05  # how often a waiting consumer checks its cancel event


def import_vllm() -> ModuleType:
    if importlib.util.find_spec("vllm") is None:
        raise TuneboardError(
            "infer_backend: vllm needs the vllm package, which runs on CUDA GPUs (pip install vllm); "
            "use infer_backend: huggingface on this machine"
        )
    return importlib.import_module("vllm")


def engine_args(cfg: Config, model_dir: str, has_adapter: bool) -> dict[str, Any]:
    """AsyncEngineArgs keywords from LLaMA-Factory's vllm_* keys."""
    import torch

    args: dict[str, Any] = {
        "model": model_dir,
        "tokenizer": model_dir,
        "trust_remote_code": cfg.trust_remote_code,
        "dtype": cfg.infer_dtype,  # "auto" | "float16" | "bfloat16" | "float32": vLLM's own names
        "max_model_len": cfg.vllm_maxlen,
        "gpu_memory_utilization": cfg.vllm_gpu_util,
        "enforce_eager": cfg.vllm_enforce_eager,
        "tensor_parallel_size": max(1, torch.cuda.device_count()),
        "disable_log_stats": True,
        "seed": cfg.seed,
    }
    if has_adapter:
        args |= {"enable_lora": True, "max_lora_rank": cfg.vllm_max_lora_rank, "max_loras": 1}
    return args


class VllmEngine(Engine):
    def __init__(self, cfg: Config, vllm: ModuleType | None = None) -> None:
        from ..data.templates.resolve import load_template
        from ..model.load import load_tokenizer, resolve_source, stop_token_ids

        if cfg.quantization_bit:
            raise TuneboardError(
                "infer_backend: vllm loads pre-quantized models (AWQ, GPTQ) as they are; "
                "quantization_bit applies to infer_backend: huggingface only"
            )
        vllm = vllm or import_vllm()
        source = resolve_source(cfg)
        if len(source.adapters) > 1:
            raise TuneboardError(
                "infer_backend: vllm serves one LoRA adapter at a time; merge the adapters first "
                "(tuneboard export) and serve the merged model"
            )
        self.cfg = cfg
        self.name = cfg.model_name_or_path
        self.tokenizer = load_tokenizer(source.base_dir, cfg)
        self.template = load_template(cfg.template, self.tokenizer, source.base_dir, source.adapters)
        self.stop_ids = stop_token_ids(self.tokenizer, self.template)
        self.context_length = context_window(cfg.vllm_maxlen, self.tokenizer.model_max_length)
        self._vllm = vllm
        self.lora = None
        if source.adapters:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("adapter", 1, str(source.adapters[0]))
        # vLLM's engine lives on an event loop; ours runs in a daemon thread so the sync front ends can call it
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="vllm-loop", daemon=True).start()
        args = vllm.AsyncEngineArgs(**engine_args(cfg, str(source.base_dir), bool(source.adapters)))
        self.engine = vllm.AsyncLLMEngine.from_engine_args(args)

    def sampling_params(
        self, stop: list[str] | None = None, settings: GenerationSettings | None = None, **gen: Any
    ) -> Any:
        """vLLM's SamplingParams for `settings` (or the config's with the overrides in `gen`)."""
        settings = settings or GenerationSettings.from_config(self.cfg, **gen)
        return self._vllm.SamplingParams(
            n=1,
            **settings.vllm_kwargs(),
            stop=[s for s in stop or () if s] or None,
            stop_token_ids=self.stop_ids or None,
            skip_special_tokens=True,
        )

    def complete(self, prompts: list[list[int]], settings: GenerationSettings) -> list[Reply]:
        """Replies to `prompts` (ids), in their order: one vLLM request each, all sent at once (vLLM batches
        them continuously)."""
        params = self.sampling_params(None, settings)
        gen_kw = {"lora_request": self.lora} if self.lora is not None else {}

        async def one(ids: list[int]) -> Reply:
            last = None
            async for out in self.engine.generate(
                {"prompt_token_ids": ids}, params, uuid.uuid4().hex, **gen_kw
            ):
                last = out.outputs[0]
            if last is None:
                return Reply(prompt_tokens=len(ids))
            finish = "length" if last.finish_reason == "length" else "stop"
            return Reply(last.text, len(ids), len(last.token_ids), finish)

        async def every() -> list[Reply]:
            return list(await asyncio.gather(*(one(ids) for ids in prompts)))

        try:
            return asyncio.run_coroutine_threadsafe(every(), self._loop).result()
        except Exception as exc:
            raise TuneboardError(f"vLLM generation failed: {exc}") from exc

    def stream(
        self,
        messages: list[dict[str, str]],
        system: str | None = None,
        stop: list[str] | None = None,
        reply: Reply | None = None,
        cancel: threading.Event | None = None,
        tools: list | None = None,
        settings: GenerationSettings | None = None,
        **gen: Any,
    ) -> Iterator[str]:
        """Yield text pieces as vLLM produces them; closing the generator or setting `cancel` aborts the request."""
        reply = reply if reply is not None else Reply()
        ids, settings = self.prepare(messages, system, tools, settings, **gen)
        reply.prompt_tokens = len(ids)
        params = self.sampling_params(stop, settings)
        request_id = uuid.uuid4().hex
        outputs: queue.Queue = queue.Queue()
        done = object()

        async def produce() -> None:
            try:
                gen_kw = {"lora_request": self.lora} if self.lora is not None else {}
                prompt = {"prompt_token_ids": ids}
                async for out in self.engine.generate(prompt, params, request_id, **gen_kw):
                    outputs.put(out)
            except BaseException as exc:  # handed to the consumer
                outputs.put(exc)
            finally:
                outputs.put(done)

        future = asyncio.run_coroutine_threadsafe(produce(), self._loop)
        text, emitted, last, finished = "", 0, None, False
        try:
            while True:
                try:
                    item = outputs.get(timeout=_POLL_S)
                except queue.Empty:
                    if cancel is not None and cancel.is_set():
                        break
                    continue
                if item is done:
                    finished = True
                    break
                if isinstance(item, BaseException):
                    finished = True
                    raise TuneboardError(f"vLLM generation failed: {item}") from item
                last = item.outputs[0]
                # cumulative text (vLLM's default output kind); vLLM cuts stop strings too, this keeps our guarantee
                text, safe, _ = releasable(last.text, stop, final=item.finished)
                if safe > emitted:
                    yield text[emitted:safe]
                    emitted = safe
                if cancel is not None and cancel.is_set():
                    break
            if emitted < len(text):
                yield text[emitted:]
        finally:
            if not finished:  # consumer gone or cancelled: free vLLM's slot for this request
                asyncio.run_coroutine_threadsafe(self.engine.abort(request_id), self._loop).result()
                future.cancel()
        reply.text = text
        reply.completion_tokens = len(last.token_ids) if last is not None else 0
        if cancel is not None and cancel.is_set():
            reply.finish_reason = "cancelled"
        elif last is not None and last.finish_reason == "length":
            reply.finish_reason = "length"
