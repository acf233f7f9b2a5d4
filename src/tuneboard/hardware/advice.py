"""What `tuneboard env --model` prints: the estimate as a table, and plain advice on what fits the visible GPUs
(batch size, checkpointing, ZeRO, QLoRA, cutoff_len), found by re-running estimate.estimate with changes."""

from __future__ import annotations

from ..errors import TuneboardError
from .estimate import CUDA_CONTEXT, GIB, METHODS, Estimate, estimate, resolve_model


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def _again(est: Estimate, **changes) -> Estimate:
    return estimate(**{**est.inputs, **changes})


def format_estimate(est: Estimate) -> str:
    """A short table of the estimate, for the terminal."""
    i = est.inputs
    gc = "on" if i["gradient_checkpointing"] else "off"
    zero = f", ZeRO-{i['zero_stage']} over {i['num_gpus']} GPUs" if i["zero_stage"] else ""
    head = (
        f"Memory estimate: {i['method']}, {i['precision']}, {est.params / 1e9:.2f}B params "
        f"({est.trainable_params / 1e6:.1f}M trainable), cutoff_len {i['cutoff_len']}, "
        f"batch_size {i['batch_size']}, gradient checkpointing {gc}{zero}"
    )
    other = est.activations_without_gc if i["gradient_checkpointing"] else est.activations_with_gc
    rows = [
        ("weights", est.weights, ""),
        ("gradients", est.gradients, ""),
        ("optimizer states", est.optimizer_states, " (offloaded to CPU)" if est.cpu_offloaded else ""),
        ("activations", est.activations, f" (checkpointing {'off' if gc == 'on' else 'on'}: {_gib(other)})"),
        ("overhead", est.overhead, " (CUDA context" + (", DeepSpeed buffers)" if zero else ")")),
        ("total", est.total, " per GPU"),
    ]
    return "\n".join([head] + [f"  {name:<17}{_gib(v):>10}{note}" for name, v, note in rows])


def advise(est: Estimate, gpus: list[dict], ram: int | None = None) -> list[str]:
    """Plain advice for the visible GPUs: fits or not, batch size, checkpointing, ZeRO, QLoRA.
    `gpus`: dicts with `name` and `memory_total` (bytes), as env.report()["gpus"] gives them."""
    i, need, out = est.inputs, est.total, []
    if not gpus:
        line = (
            f"No CUDA GPU: this run needs about {_gib(need)} of GPU memory. On the CPU it trains in fp32, "
            "very slowly: practical for builtin:tiny and models up to about 0.5B."
        )
        if ram:
            cpu = _again(est, precision="fp32", zero_stage=0, num_gpus=1).total - CUDA_CONTEXT
            fits = "fits in" if cpu <= ram else "is more than"
            line += f" It would take about {_gib(cpu)} of memory, which {fits} the {_gib(ram)} of RAM."
        return [line]
    usable = [max(0, g.get("memory_total", 0) - g.get("memory_used", 0)) for g in gpus]
    for k, (g, free) in enumerate(zip(gpus, usable, strict=True)):
        verdict = "does not fit" if need > free else f"fits ({_gib(free - need)} to spare)"
        if free >= need > 0.9 * free:
            verdict = f"fits barely ({_gib(free - need)} to spare): fragmentation may still run out of memory"
        out.append(f"GPU {k} ({g.get('name', '?')}): {_gib(free)} free, needs {_gib(need)}: {verdict}.")
    best = max(usable)
    if need <= best:
        if len(gpus) > 1:
            out.append(
                f"Fits on one GPU: with {len(gpus)} GPUs, plain data parallel (torchrun / accelerate) "
                "runs about that many times faster; ZeRO is not needed."
            )
        b = i["batch_size"]
        while b < 64 and _again(est, batch_size=b * 2).total <= 0.9 * best:
            b *= 2
        if b > i["batch_size"]:
            out.append(
                f"per_device_train_batch_size up to {b} fits; raise it and lower "
                "gradient_accumulation_steps to train faster."
            )
        if i["gradient_checkpointing"] and _again(est, gradient_checkpointing=False).total <= 0.9 * best:
            out.append("gradient_checkpointing can be turned off (it still fits): about 20-30% faster.")
        return out
    # not on any single GPU: apply changes one after another until it fits
    steps: list[tuple[str, str, dict]] = []  # (group, advice, change); a later step replaces its group
    if not i["gradient_checkpointing"]:
        steps.append(("gc", "turn on gradient_checkpointing", dict(gradient_checkpointing=True)))
    if i["batch_size"] > 1:
        text = "use per_device_train_batch_size 1 with more gradient_accumulation_steps"
        steps.append(("batch", text, dict(batch_size=1)))
    if len(gpus) > 1 and i["method"] != "qlora":
        n = len(gpus)
        for z, off in ((2, False), (3, False), (3, True)):
            text = f"use DeepSpeed ZeRO-{z}{' with optimizer offload' if off else ''} over the {n} GPUs"
            steps.append(("zero", text, dict(zero_stage=z, num_gpus=n, offload=off)))
    no_zero = dict(zero_stage=0, num_gpus=1, offload=False)
    if i["method"] in ("full", "freeze"):
        steps.append(("method", "use finetuning_type lora", dict(method="lora", **no_zero)))
    if i["method"] != "qlora":
        steps.append(("method", "use QLoRA (quantization_bit: 4)", dict(method="qlora", **no_zero)))
    cutoff = i["cutoff_len"]
    while cutoff > 256 and len(steps) < 12:
        cutoff //= 2
        steps.append(("cutoff", f"lower cutoff_len to {cutoff}", dict(cutoff_len=cutoff)))
    taken: dict[str, str] = {}
    change: dict = {}
    for group, text, delta in steps:
        if group == "method":
            taken.pop("zero", None)
        taken[group], change = text, {**change, **delta}
        alt = _again(est, **change)
        if alt.total <= 0.95 * best:
            out.append(f"To fit: {'; '.join(taken.values())} (about {_gib(alt.total)} per GPU).")
            return out
    out.append(
        f"Even after all of these ({'; '.join(taken.values())}) it needs about {_gib(alt.total)} "
        "per GPU: pick a smaller model or a larger GPU."
    )
    return out


def model_advice(model: str, report: dict, method: str | None, cutoff_len: int, batch_size: int) -> str:
    """`tuneboard env --model`: the memory estimate of each method (one if asked) and what fits this machine.
    QLoRA is left out without a GPU (bitsandbytes' 4-bit kernels need CUDA)."""
    if model.startswith("builtin:"):  # sized from its cached directory (built once, in seconds)
        from ..model import tiny

        model = str(tiny.ensure())
    try:
        params, shape = resolve_model(model)
    except (ValueError, OSError) as exc:
        raise TuneboardError(f"--model {model}: {exc}") from None
    precision = "bf16"  # what a GPU run would use: the question is which GPU to choose
    parts = []
    for m in [method] if method else list(METHODS):
        if m == "qlora" and not report["gpus"]:
            continue
        est = estimate(params, m, precision, cutoff_len, batch_size, model_shape=shape)
        parts.append(f"\n{m} ({precision}, cutoff_len {cutoff_len}, batch {batch_size}):")
        parts.append(format_estimate(est))
        parts.append("\n".join(advise(est, report["gpus"], report["memory"].get("available"))))
    return "\n".join(parts)
