"""Serving many users: the real `tuneboard api` (a subprocess) driven by the `openai` client. See bench/README.md.

    PYTHONPATH=src .venv/bin/python bench/serving.py [--llamafactory /tmp/lf-venv] [--rounds 5]

(a) aggregate tokens/s of 16 concurrent requests against one request alone (the issue's target: 4x or more);
(b) 64 concurrent streaming clients, `--rounds` times: all complete, each equal to the greedy reply asked alone,
    wall time, and the server's RSS after each round and its peak (VmHWM); `--wide` adds a run with
    max_concurrent = --clients (every client in one batch); with `--llamafactory VENV` the same
    against LLaMA-Factory's `llamafactory-cli api` on the same model directory, template and prompt;
(c) more clients than max_concurrent + max_waiting (a second server with small bounds): how fast the 429s come,
    every request either whole and unmixed or 429 (none lost), and /health's latency while it happens.
Figures are printed, not asserted. Greedy (temperature 0); builtin:tiny never ends its turn, so every reply is
exactly max_tokens long.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import openai

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "你是谁？请介绍一下你自己。"
PROMPTS = [PROMPT, "What is 2+2?", "Name a colour.", "患者：我头疼。", "你好", "Say hello."]


class Server:
    """A server process on 127.0.0.1:`port`, ready once /v1/models answers; its memory read from /proc."""

    def __init__(self, name: str, cmd: list[str], env: dict, port: int, log: Path) -> None:
        self.name, self.port, self.log = name, port, log
        self.url = f"http://127.0.0.1:{port}"
        with open(log, "w") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
        start = time.time()
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited; see {log}")
            try:
                models = httpx.get(f"{self.url}/v1/models", timeout=2)
                if models.status_code == 200:
                    self.model = models.json()["data"][0]["id"]
                    break
            except httpx.HTTPError:
                pass
            if time.time() - start > 600:
                raise SystemExit(f"{name} not ready after 600 s; see {log}")
            time.sleep(0.5)
        self.ready_s = time.time() - start

    def pids(self) -> list[int]:
        """The process and its descendants."""
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                todo += [int(c) for c in task.read_text().split()]
        return found

    def memory_mb(self) -> tuple[float, float]:
        """(RSS now, peak RSS), summed over the process tree, in MiB."""
        rss = peak = 0
        for pid in self.pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak += int(line.split()[1])
        return rss / 1024, peak / 1024

    def client(self, timeout: float = 900) -> openai.OpenAI:
        client = openai.OpenAI(base_url=f"{self.url}/v1", api_key="none", max_retries=0, timeout=timeout)
        client.served = self.model  # the model name its /v1/models gives
        return client

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def threads(a: argparse.Namespace) -> dict[str, str]:
    """OMP_NUM_THREADS for both servers when --threads is given (torch's intra-op threads)."""
    return {"OMP_NUM_THREADS": str(a.threads)} if a.threads else {}


def tuneboard(a: argparse.Namespace, port: int, work: Path, concurrent: int, waiting: int) -> Server:
    keys = [f"model_name_or_path={a.model_dir}", "template=chatml", "do_sample=false"]
    keys += [f"max_concurrent={concurrent}", f"max_waiting={waiting}", f"max_new_tokens={a.new_tokens}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", **threads(a)}
    env.pop("API_KEY", None)
    cmd = [sys.executable, "-m", "tuneboard", "api", *keys, "--port", str(port)]
    return Server(f"tuneboard (max_concurrent {concurrent})", cmd, env, port, work / f"tb-{port}.log")


def llamafactory(a: argparse.Namespace, port: int, work: Path) -> Server:
    yaml = work / "lf_api.yaml"
    yaml.write_text(
        f"model_name_or_path: {a.model_dir}\ntemplate: chatml\ninfer_backend: huggingface\n"
        f"do_sample: false\nmax_new_tokens: {a.new_tokens}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "API_HOST": "127.0.0.1", "API_PORT": str(port), "HF_HUB_OFFLINE": "1", **threads(a)}
    env.pop("PYTHONPATH", None)
    cmd = [str(Path(a.llamafactory) / "bin" / "llamafactory-cli"), "api", str(yaml)]
    return Server("LLaMA-Factory 0.9.5", cmd, env, port, work / "lf.log")


def ask(client: openai.OpenAI, prompt: str, n: int, stream: bool) -> tuple[str, int]:
    """One greedy request -> (text, completion tokens; for a stream, the number of content chunks)."""
    kw = dict(
        model=client.served, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=n
    )
    if not stream:
        r = client.chat.completions.create(**kw)
        return r.choices[0].message.content or "", r.usage.completion_tokens
    text, pieces = "", 0
    for chunk in client.chat.completions.create(**kw, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
            pieces += 1
    return text, pieces


def together(k: int, fn) -> tuple[float, list]:
    """fn(i) from k threads released at once -> (wall seconds, results; an exception where one failed)."""
    results: list = [None] * k
    gate = threading.Barrier(k + 1)

    def one(i: int) -> None:
        gate.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - counted by the caller
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    gate.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - start, results


def throughput(server: Server, a: argparse.Namespace) -> dict:
    """(a): tokens/s of one request alone and of 16 at once (median of `--repeat`)."""
    client = server.client()
    ask(client, PROMPT, 8, False)  # warm-up
    rates: dict[int, list[float]] = {1: [], a.concurrent: []}
    for _ in range(a.repeat):
        for k in rates:
            wall, results = together(k, lambda i: ask(client, PROMPTS[i % len(PROMPTS)], a.new_tokens, False))
            assert all(isinstance(r, tuple) for r in results), results
            rates[k].append(sum(r[1] for r in results) / wall)
    single, many = statistics.median(rates[1]), statistics.median(rates[a.concurrent])
    out = {"tokens_per_s_1": round(single, 1), f"tokens_per_s_{a.concurrent}": round(many, 1)}
    out["ratio"] = round(many / single, 2)
    print(f"(a) {server.name}: {json.dumps(out)} (runs: {json.dumps(rates)})", flush=True)
    return out


def streaming_rounds(server: Server, a: argparse.Namespace) -> dict:
    """(b): `--clients` streaming clients at once, `--rounds` times, each reply checked against the greedy one."""
    client = server.client()
    reference, _ = ask(client, PROMPT, a.new_tokens, False)
    walls, rss = [], []
    complete = equal = 0
    for r in range(a.rounds):
        wall, results = together(a.clients, lambda i: ask(client, PROMPT, a.new_tokens, True))
        done = [x for x in results if isinstance(x, tuple)]
        complete += len(done)
        equal += sum(1 for text, _ in done if text == reference)
        walls.append(round(wall, 2))
        rss.append(round(server.memory_mb()[0], 1))
        errors = [repr(x)[:120] for x in results if not isinstance(x, tuple)]
        print(f"(b) {server.name} round {r + 1}: {wall:.2f} s, {len(done)} complete {errors[:2]}", flush=True)
    out = {
        "complete": f"{complete}/{a.clients * a.rounds}",
        "equal_to_greedy": f"{equal}/{a.clients * a.rounds}",
        "wall_s": walls,
        "median_wall_s": statistics.median(walls),
        "rss_mb_after_each_round": rss,
        "peak_rss_mb": round(server.memory_mb()[1], 1),
        "ready_s": round(server.ready_s, 1),
    }
    print(f"(b) {server.name}: {json.dumps(out)}", flush=True)
    return out


def overload(server: Server, a: argparse.Namespace, capacity: int) -> dict:
    """(c): `--flood` clients, one request each (half streaming), against `capacity` slots."""
    client = server.client()
    reference = {p: ask(client, p, a.new_tokens, False)[0] for p in PROMPTS}
    health: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=30) as h:
            while not stop.is_set():
                start = time.perf_counter()
                h.get(f"{server.url}/health").raise_for_status()
                health.append(time.perf_counter() - start)
                time.sleep(0.05)

    def one(i: int) -> tuple[str, float, bool]:
        prompt, start = PROMPTS[i % len(PROMPTS)], time.perf_counter()
        try:
            text, _ = ask(client, prompt, a.new_tokens, bool(i % 2))
        except openai.RateLimitError as exc:
            assert float(exc.response.headers["retry-after"]) > 0
            return "429", time.perf_counter() - start, True
        return "ok", time.perf_counter() - start, text == reference[prompt]

    poller = threading.Thread(target=poll)
    poller.start()
    wall, results = together(a.flood, one)
    stop.set()
    poller.join()
    final = httpx.get(f"{server.url}/health").json()
    failed = [repr(r)[:120] for r in results if not isinstance(r, tuple)]
    busy = sorted(r[1] for r in results if isinstance(r, tuple) and r[0] == "429")
    ok = [r for r in results if isinstance(r, tuple) and r[0] == "ok"]
    out = {
        "clients": a.flood,
        "slots": capacity,
        "ok": len(ok),
        "ok_equal_to_greedy": sum(1 for r in ok if r[2]),
        "429": len(busy),
        "failed_or_lost": len(failed),
        "429_median_ms": round(1000 * statistics.median(busy), 1) if busy else None,
        "429_max_ms": round(1000 * busy[-1], 1) if busy else None,
        "wall_s": round(wall, 2),
        "health_median_ms": round(1000 * statistics.median(health), 1),
        "health_max_ms": round(1000 * max(health), 1),
        "health_polls": len(health),
        "health_after": {k: final[k] for k in ("slots_free", "slots", "batch", "waiting")},
    }
    print(f"(c) {server.name}: {json.dumps(out)} {failed[:2]}", flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:tiny", help="a model directory, or builtin:tiny")
    p.add_argument("--llamafactory", default=None, help="LLaMA-Factory 0.9.5's venv: run it in (b) too")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument(
        "--concurrent", type=int, default=16, help="(a) requests at once; the server's max_concurrent"
    )
    p.add_argument("--repeat", type=int, default=3, help="(a) runs of each, median")
    p.add_argument("--clients", type=int, default=64, help="(b) streaming clients per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--flood", type=int, default=48, help="(c) clients against max_concurrent 4 + max_waiting 4"
    )
    p.add_argument("--wide", action="store_true", help="(b) also with max_concurrent = --clients")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: a,b,c")
    p.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS of both servers (0: unset)")
    p.add_argument("--port", type=int, default=8391)
    a = p.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from tuneboard.model import tiny

    a.model_dir = tiny.ensure() if a.model == "builtin:tiny" else Path(a.model)
    work = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    skip = set(a.skip.split(","))
    results: dict = {"model": str(a.model), "new_tokens": a.new_tokens, "threads": a.threads or "unset"}
    if not {"a", "b"} <= skip:
        server = tuneboard(a, a.port, work, a.concurrent, 64)
        try:
            if "a" not in skip:
                results["a"] = throughput(server, a)
            if "b" not in skip:
                results["b_tuneboard"] = streaming_rounds(server, a)
        finally:
            server.stop()
    if a.wide and "b" not in skip:  # (b) again, every client in the batch at once
        server = tuneboard(a, a.port + 3, work, a.clients, 64)
        try:
            results["b_tuneboard_wide"] = streaming_rounds(server, a)
        finally:
            server.stop()
    if a.llamafactory and "b" not in skip:
        server = llamafactory(a, a.port + 1, work)
        try:
            results["b_llamafactory"] = streaming_rounds(server, a)
        finally:
            server.stop()
        tb, lf = results["b_tuneboard"]["median_wall_s"], results["b_llamafactory"]["median_wall_s"]
        results["b_wall_ratio_tb_over_lf"] = round(tb / lf, 3)
        if a.wide:
            results["b_wall_ratio_wide_over_lf"] = round(results["b_tuneboard_wide"]["median_wall_s"] / lf, 3)
    if "c" not in skip:
        server = tuneboard(a, a.port + 2, work, 4, 4)
        try:
            results["c"] = overload(server, a, 8)
        finally:
            server.stop()
    print(json.dumps(results, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
