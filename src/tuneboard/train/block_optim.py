"""LLaMA-Factory's use_badam (BAdam: block coordinate descent, one block of layers trained at a time, PyPI
package badam) and use_adam_mini (Adam-mini: one second-moment value per block of parameters, PyPI package
adam-mini), each built from its own package when installed (`pip install 'tuneboard[badam]'` / `[adam-mini]`).

Training layer; optimizer.build asks `build` for them.
"""

from __future__ import annotations

from typing import Any


def _groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters in two groups: weight decay on the matrices, none on biases and norms."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 and "norm" not in name else no_decay).append(param)
    return [dict(params=no_decay, weight_decay=0.0), dict(params=decay, weight_decay=weight_decay)]


def badam(model: Any, cfg: Any, optimizer_cls: Any, kwargs: dict[str, Any], weight_decay: float) -> Any:
    """badam_mode layer: the Trainer's optimizer wrapped by BlockOptimizer, which trains one block (a decoder
    layer) for badam_switch_interval steps, then the next; ratio: BlockOptimizerRatio, a share of each matrix."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    named = list(model.named_parameters())
    if cfg.badam_mode == "ratio":
        from badam import BlockOptimizerRatio

        return BlockOptimizerRatio(
            param_groups=_groups(model, weight_decay),
            named_parameters_list=named,
            update_ratio=cfg.badam_update_ratio,
            mask_mode=cfg.badam_mask_mode,
            verbose=cfg.badam_verbose,
            include_embedding=False,
            **kwargs,
        )
    from badam import BlockOptimizer

    return BlockOptimizer(
        base_optimizer=optimizer_cls(_groups(model, weight_decay), **kwargs),
        named_parameters_list=named,
        block_prefix_list=None,
        switch_block_every=cfg.badam_switch_interval,
        start_block=cfg.badam_start_block,
        switch_mode=cfg.badam_switch_mode,
        verbose=cfg.badam_verbose,
        ds_zero3_enabled=is_deepspeed_zero3_enabled(),
    )


def adam_mini(model: Any, args: Any) -> Any:
    """Adam_mini over the model's named parameters, told the attention shape (it partitions q/k/v by head)."""
    from adam_mini import Adam_mini
    from transformers.integrations import is_deepspeed_zero3_enabled

    conf = model.config
    return Adam_mini(
        named_parameters=[(n, p) for n, p in model.named_parameters() if p.requires_grad],
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        weight_decay=args.weight_decay,
        model_sharding=is_deepspeed_zero3_enabled(),
        dim=conf.hidden_size,
        n_heads=conf.num_attention_heads,
        n_kv_heads=getattr(conf, "num_key_value_heads", None),
        verbose=False,
    )
