"""The data flow in one call: registry -> read -> Conversation -> split -> tokens (cached on disk).

Data layer entry point used by train, evaluate and the `data` commands.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from . import fastbpe, tokenized_dir
from .cache import _fingerprint, cache_dir
from .documents import encode_documents
from .formats import Conversation, to_conversation
from .kto import tokenize_kto
from .pairs import check_stage, tokenize_pairs
from .readers import read_records
from .registry import DatasetSpec, resolve
from .sniff import sniff_formatting
from .tokenize import EncodeStats, build_labels, encode, render_and_tokenize


def load_spec(spec: DatasetSpec, max_samples: int | None = None) -> list[Conversation]:
    records = read_records(spec)
    spec = sniff_formatting(spec, records)
    if spec.num_samples:
        records = records[: spec.num_samples]
    if max_samples:
        records = records[:max_samples]
    where = spec.path if spec.load_from == "file" else f"dataset '{spec.name}'"
    convs = [
        to_conversation(rec, spec.formatting, spec.columns, spec.tags, f"{where}: record {i}", spec.ranking)
        for i, rec in enumerate(records)
    ]
    if not convs:
        raise DataError(f"{where}: no records")
    return convs


def load_conversations(
    names: list[str], dataset_dir: str | Path, max_samples: int | None = None
) -> tuple[list[Conversation], list[DatasetSpec]]:
    specs = resolve(names, dataset_dir)
    convs: list[Conversation] = []
    for spec in specs:
        convs += load_spec(spec, max_samples)
    return convs, specs


def split(
    convs: list[Conversation], val_size: float, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    """Deterministic shuffle under `seed`; `val_size` is a fraction (<1) or a record count."""
    if not val_size:
        return convs, []
    n_val = int(val_size) if val_size >= 1 else max(1, round(len(convs) * val_size))
    if n_val >= len(convs):
        raise DataError(f"val_size {val_size} leaves no training records (there are {len(convs)})")
    order = list(range(len(convs)))
    random.Random(seed).shuffle(order)
    val_idx = set(order[:n_val])
    return [c for i, c in enumerate(convs) if i not in val_idx], [convs[i] for i in sorted(val_idx)]


@dataclass
class TokenizedSet:
    """Variable-length samples stored flat (no padding), as numpy arrays for cheap caching."""

    ids: np.ndarray
    labels: np.ndarray
    offsets: np.ndarray  # len = n + 1
    stats: EncodeStats = field(default_factory=EncodeStats)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return {"input_ids": self.ids[a:b].tolist(), "labels": self.labels[a:b].tolist()}

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_lists(cls, enc: dict[str, list[list[int]]], stats: EncodeStats) -> TokenizedSet:
        lengths = [len(x) for x in enc["input_ids"]]
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])

        def flat(rows: list[list[int]]) -> np.ndarray:
            return np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int32, count=total)

        return cls(flat(enc["input_ids"]), flat(enc["labels"]), offsets, stats)

    @classmethod
    def concat(cls, parts: list[TokenizedSet]) -> TokenizedSet:
        stats = EncodeStats()
        offsets, base = [np.zeros(1, np.int64)], 0
        for part in parts:
            stats.add(part.stats)
            offsets.append(part.offsets[1:] + base)
            base += int(part.offsets[-1])
        none = np.zeros(0, np.int32)  # no parts: an empty set
        return cls(
            np.concatenate([none, *(p.ids for p in parts)]),
            np.concatenate([none, *(p.labels for p in parts)]),
            np.concatenate(offsets),
            stats,
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
        stats = json.dumps(self.stats.__dict__)
        np.savez(tmp, ids=self.ids, labels=self.labels, offsets=self.offsets, stats=np.array(stats))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> TokenizedSet:
        with np.load(path, allow_pickle=False) as z:
            stats = EncodeStats(**json.loads(str(z["stats"])))
            return cls(z["ids"], z["labels"], z["offsets"], stats)


_inherited: tuple | None = None  # (convs, template, tokenizer, settings) for forked workers


def _encode_inherited(bounds: tuple[int, int]) -> TokenizedSet:
    """One chunk in a forked worker: the inputs come with the fork (a tokenizer is not pickled for every
    chunk) and the result goes back as arrays (pickled far faster than lists of lists)."""
    assert _inherited is not None
    convs, template, tokenizer, settings = _inherited
    a, b = bounds
    return TokenizedSet.from_lists(*encode(convs[a:b], template, tokenizer, **settings))


@contextlib.contextmanager
def _rust_threads() -> Iterator[None]:
    """Let the Rust tokenizer use every core for the duration (the CLI turns it off globally so forked
    DataLoader workers do not inherit a thread pool); restored afterwards, before anything forks."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def _encode_pipelined(jobs: list[tuple]) -> list[tuple[dict[str, list[list[int]]], EncodeStats]]:
    """Chunks in order, the next chunk's render + Rust tokenization running in a thread while this process
    builds the labels of the current one (one chunk ahead, so memory stays bounded)."""
    from concurrent.futures import ThreadPoolExecutor

    results = []
    with _rust_threads(), ThreadPoolExecutor(1) as pool:
        ahead = pool.submit(render_and_tokenize, *jobs[0][:3], **jobs[0][3]) if jobs else None
        for i, (convs, _, _, settings) in enumerate(jobs):
            stage1 = ahead.result()
            nxt = jobs[i + 1] if i + 1 < len(jobs) else None
            ahead = pool.submit(render_and_tokenize, *nxt[:3], **nxt[3]) if nxt else None
            results.append(build_labels(convs, stage1, **settings))
    return results


def tokenize(
    convs: list[Conversation],
    template: Any,
    tokenizer: Any,
    cutoff_len: int,
    train_on_prompt: bool = False,
    mask_history: bool = False,
    num_workers: int | None = None,
    overwrite_cache: bool = False,
    use_cache: bool = True,
    fast_bpe: bool = True,
) -> TokenizedSet:
    settings = dict(cutoff_len=cutoff_len, train_on_prompt=train_on_prompt, mask_history=mask_history)
    # the fingerprint hashes every record and the whole tokenizer: only worth it when the cache is used
    path = cache_dir() / f"{_fingerprint(convs, template, tokenizer, settings)}.npz" if use_cache else None
    if path is not None and path.exists() and not overwrite_cache:
        try:
            return TokenizedSet.load(path)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt
    fastbpe.build_if_worth(tokenizer, convs, enabled=fast_bpe)
    chunk = 2000
    if num_workers and num_workers > 1 and len(convs) > chunk:
        parts = _encode_forked(convs, template, tokenizer, settings, chunk, num_workers)
    else:
        jobs = [(convs[i : i + chunk], template, tokenizer, settings) for i in range(0, len(convs), chunk)]
        parts = [TokenizedSet.from_lists(enc, st) for enc, st in _encode_pipelined(jobs)]
    out = TokenizedSet.concat(parts)
    if path is not None:
        try:
            out.save(path)
        except OSError:
            pass  # caching is an optimisation; a read-only cache dir must not stop training
    return out


def _encode_forked(
    convs: list[Conversation], template: Any, tokenizer: Any, settings: dict, chunk: int, num_workers: int
) -> list[TokenizedSet]:
    import multiprocessing as mp

    global _inherited
    bounds = [(i, min(i + chunk, len(convs))) for i in range(0, len(convs), chunk)]
    _inherited = (convs, template, tokenizer, settings)
    try:
        # more processes than cores only adds contention (LLaMA-Factory's examples ask for 16)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        with mp.get_context("fork").Pool(max(1, min(num_workers, len(bounds), cores))) as pool:
            return pool.map(_encode_inherited, bounds)
    finally:
        _inherited = None


class PackedSet:
    """`packing: true`: each item is a group of samples filling up to cutoff_len (collated padding-free)."""

    def __init__(self, base: TokenizedSet, groups: list[list[int]]) -> None:
        self.base, self.groups, self.stats = base, groups, base.stats

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"samples": [self.base[j] for j in self.groups[i]]}


@dataclass
class DataBundle:
    train: Any
    eval: Any | None
    template_name: str
    padding_free: bool
    tokenized_saved: bool = False  # tokenized_path was written this run (LLaMA-Factory then stops)


def load_split(cfg: Any) -> tuple[list[Conversation], list[Conversation]]:
    """The (train, eval) conversations the config names: read, checked, split. No tokenizer needed, so bad
    data is reported before a model is loaded or downloaded."""
    if cfg.eval_datasets and cfg.val_size:  # the val_size records would be neither trained nor evaluated
        raise DataError("set either val_size (a part of `dataset` held out) or eval_dataset, not both")
    dataset_dir = Path(cfg.dataset_dir)
    if not dataset_dir.is_dir() and any(not Path(n).exists() for n in cfg.datasets + cfg.eval_datasets):
        raise DataError(f"dataset_dir {dataset_dir}: directory not found")
    convs, _ = load_conversations(cfg.datasets, cfg.dataset_dir, cfg.max_samples)
    train_convs, val_convs = split(convs, cfg.val_size, cfg.seed)
    if cfg.eval_datasets:
        val_convs, _ = load_conversations(cfg.eval_datasets, cfg.dataset_dir, cfg.max_samples)
    check_stage(cfg.stage, [*train_convs, *val_convs], cfg.datasets + cfg.eval_datasets)
    return train_convs, val_convs


def prepare_datasets(
    cfg: Any, tokenizer: Any, template: Any, conversations: tuple[list, list] | None = None
) -> DataBundle:
    """Training and evaluation sets from the config: load, split (or take `load_split`'s result), tokenize
    (cached), optionally pack."""
    from .collate import pack_groups

    train_convs, val_convs = conversations if conversations is not None else load_split(cfg)
    if cfg.stage != "sft" and cfg.tokenized_path:
        raise DataError(
            f"tokenized_path is supported for stage sft; stage {cfg.stage} tokenizes its data each run"
        )
    if cfg.stage in ("dpo", "rm", "kto"):
        return _pair_datasets(cfg, tokenizer, template, train_convs, val_convs)
    if cfg.stage == "pt":
        return _document_datasets(cfg, tokenizer, template, train_convs, val_convs)
    kw = dict(
        cutoff_len=cfg.cutoff_len,
        train_on_prompt=cfg.train_on_prompt,
        mask_history=cfg.mask_history,
        num_workers=cfg.preprocessing_num_workers,
        overwrite_cache=cfg.overwrite_cache,
        fast_bpe=cfg.fast_bpe,
    )
    saved, info = None, None
    if cfg.tokenized_path:
        settings = dict(
            cutoff_len=cfg.cutoff_len, train_on_prompt=cfg.train_on_prompt, mask_history=cfg.mask_history
        )
        prints = {
            "settings": _fingerprint([], template, tokenizer, settings),
            "train": _fingerprint(train_convs, template, tokenizer, settings),
            "eval": _fingerprint(val_convs, template, tokenizer, settings) if val_convs else None,
        }
        info = tokenized_dir.manifest(cfg, getattr(template, "name", "auto"), prints)
        saved = tokenized_dir.read(cfg, info, TokenizedSet.load)
    if saved is not None:
        train, eval_set = saved["train"], saved["eval"]
    else:
        train = tokenize(train_convs, template, tokenizer, **kw)
        eval_set = tokenize(val_convs, template, tokenizer, **kw) if val_convs else None
    if len(train) == 0:
        raise DataError(
            f"no training samples left: all {train.stats.records} records lost every trained token to "
            f"cutoff_len={cfg.cutoff_len} (e.g. {', '.join(train.stats.dropped_examples[:2])})"
        )
    fastbpe.clear()  # its tables (~160 MB for Qwen2's vocabulary) are not needed while training
    if eval_set is not None and len(eval_set) == 0:
        raise DataError(
            f"no evaluation samples left: all {eval_set.stats.records} records lost every trained token to "
            f"cutoff_len={cfg.cutoff_len} (e.g. {', '.join(eval_set.stats.dropped_examples[:2])})"
        )
    if saved is None and info is not None:
        tokenized_dir.write(cfg, info, {"train": train, "eval": eval_set})
    if cfg.packing:
        train = PackedSet(train, pack_groups(train.lengths().tolist(), cfg.cutoff_len, cfg.seed))
    name = getattr(template, "name", "auto")
    return DataBundle(
        train, eval_set, name, cfg.packing or cfg.padding_free, saved is None and info is not None
    )


def _pair_datasets(cfg: Any, tokenizer: Any, template: Any, train_convs: list, val_convs: list) -> DataBundle:
    """Preference pairs (stages dpo, rm; data/pairs.py) or KTO's tagged replies with their KL rows (data/kto.py):
    padded rows, never packed (a sample's rows go side by side)."""
    make = tokenize_kto if cfg.stage == "kto" else tokenize_pairs
    train = make(train_convs, template, tokenizer, cfg.cutoff_len)
    eval_set = make(val_convs, template, tokenizer, cfg.cutoff_len) if val_convs else None
    for name, part in (("training", train), ("evaluation", eval_set)):
        if part is not None and len(part) == 0:
            raise DataError(
                f"no {name} samples left: all {part.stats.records} lost a reply to cutoff_len={cfg.cutoff_len}"
            )
    return DataBundle(train, eval_set, getattr(template, "name", "auto"), False)


def _document_datasets(
    cfg: Any, tokenizer: Any, template: Any, train_convs: list, val_convs: list
) -> DataBundle:
    """Pre-training text (stage pt): blocks of cutoff_len tokens (documents.py), padded or padding-free."""
    train, eval_set = (
        TokenizedSet.from_lists(*encode_documents(convs, tokenizer, cfg.cutoff_len)) if convs else None
        for convs in (train_convs, val_convs)
    )
    return DataBundle(train, eval_set, getattr(template, "name", "auto"), cfg.padding_free)
