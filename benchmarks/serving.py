"""Serving with many adapters: throughput and latency of the ledgerlm engine against PEFT's mixed-adapter
batching on the same model, adapter load times, and receipts per second with attribution on and off.

Each engine runs in its own server process on loopback; this process is the load generator: Poisson
arrivals, adapters drawn with power-law popularity (Zipf, alpha = 1), fixed prompt and output
lengths (end-of-sequence is ignored so every request makes exactly --max-tokens tokens). Time to
first token and per-output-token latency are measured in the server from each request's arrival;
throughput is generated tokens over the wall time of the run, seen from the client.

    .venv/bin/python benchmarks/serving.py [--model tiny|small] [--requests 96] [--rate 32]
                                           [--adapters 1,16,128] [--no-receipts] [--engines ledgerlm,peft,vllm]

On a GPU host with vllm installed, `--engines ledgerlm,vllm` compares the built-in engine with the vLLM
variant (`serving_engine = "vllm"`) on the same adapters and load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from report import ResultTable, write_result  # noqa: E402  (benchmarks/ is the script's directory)

MODELS = {  # random Llama weights; "small" is wide enough that the LoRA matmuls are not free
    "tiny": {"hidden_size": 64, "layers": 2, "heads": 4},
    "small": {"hidden_size": 256, "layers": 4, "heads": 8},
}
CLIENT_THREADS = 4  # concurrent callers in the receipts part, under the key's concurrency cap
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# ------------------------------------------------------------------------------ model and adapters


def make_base(directory: Path, model: str) -> Path:
    from ledgerlm.factory import tiny_random_model

    return tiny_random_model(directory / "base", **MODELS[model])


def make_adapters(base: Path, directory: Path, count: int, rank: int) -> list[Path]:
    """`count` PEFT adapters of rank `rank` on every projection: one saved by PEFT, the rest its
    files with fresh random weights (so each adapter changes the answers differently)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    first = directory / "adapter-000"
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                                LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=TARGETS))
    peft_model.save_pretrained(first)
    template = load_file(str(first / "adapter_model.safetensors"))
    generator = torch.Generator().manual_seed(0)
    paths = []
    for i in range(count):
        out = directory / f"adapter-{i:03d}"
        out.mkdir(parents=True, exist_ok=True)
        (out / "adapter_config.json").write_text((first / "adapter_config.json").read_text())
        save_file({k: torch.randn(v.shape, generator=generator) * 0.05 for k, v in template.items()},
                  str(out / "adapter_model.safetensors"))
        paths.append(out)
    return paths


# ------------------------------------------------------------------------------ the servers


def serve(engine_name: str, base: Path, adapters: list[Path], port: int, max_batch: int, max_tokens: int) -> None:
    """One engine behind `POST /generate` (answers with the request's timings) and `GET /stats`."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from fastapi.concurrency import run_in_threadpool

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    run = {"ledgerlm": LedgerlmRunner, "peft": PeftRunner, "vllm": VllmRunner}[engine_name]
    runner = run(base, adapters, max_batch, max_tokens)
    app = FastAPI()

    @app.post("/generate")
    async def generate(body: dict) -> dict:
        return await run_in_threadpool(runner.generate, body["prompt"], body["adapter"])

    @app.get("/stats")
    def stats() -> dict:
        return runner.stats()

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


class LedgerlmRunner:
    def __init__(self, base: Path, adapters: list[Path], max_batch: int, max_tokens: int):
        from transformers import AutoModelForCausalLM

        from ledgerlm.factory import load_tokenizer
        from ledgerlm.factory.basemodels import BaseModel
        from ledgerlm.serving import AdapterRef, SamplingParams
        from ledgerlm.serving.engine import Engine, EngineSettings

        tokenizer = load_tokenizer(BaseModel(name="base", path=base, sha256="", n_params=0, source="bench"))
        self.engine = Engine(AutoModelForCausalLM.from_pretrained(base), tokenizer,
                             EngineSettings(max_batch=max_batch, device_adapters=32, host_adapters=len(adapters)))
        self.engine.eos = set()  # every request makes exactly max_tokens tokens
        self.refs = [AdapterRef(p.name, p) for p in adapters]
        self.params = SamplingParams(max_tokens=max_tokens, temperature=0.0)

    def generate(self, prompt: list[int], adapter: int | None) -> dict:
        generation = self.engine.submit(prompt, None if adapter is None else self.refs[adapter], self.params)
        result = generation.result()
        first = generation.first_token_at - generation.submitted_at
        per_token = (generation.finished_at - generation.first_token_at) / max(1, result.completion_tokens - 1)
        return {"ttft": first, "tpot": per_token, "tokens": result.completion_tokens}

    def stats(self) -> dict:
        s = self.engine.adapters.stats
        return {"disk_seconds": s.disk_seconds, "switch_seconds": s.switch_seconds, "disk_loads": s.disk_loads,
                "host_hits": s.host_hits, "device_hits": s.device_hits}


class VllmRunner(LedgerlmRunner):
    """The same requests through ledgerlm's vLLM engine variant (GPU hosts with vllm installed)."""

    def __init__(self, base: Path, adapters: list[Path], max_batch: int, max_tokens: int):
        from ledgerlm.factory.basemodels import BaseModel
        from ledgerlm.serving import AdapterRef, SamplingParams
        from ledgerlm.serving.vllm_engine import VllmEngine, VllmSettings

        model = BaseModel(name="base", path=base, sha256="", n_params=0, source="bench")
        self.engine = VllmEngine(model, VllmSettings(max_batch=max_batch, device_adapters=32,
                                                     host_adapters=max(1, len(adapters))))
        self.engine.ignore_eos = True  # every request makes exactly max_tokens tokens
        self.refs = [AdapterRef(p.name, p) for p in adapters]
        self.params = SamplingParams(max_tokens=max_tokens, temperature=0.0)

    def stats(self) -> dict:
        return {"disk_seconds": [], "switch_seconds": [], "disk_loads": 0, "host_hits": 0, "device_hits": 0}


class PeftRunner:
    """PEFT's own way to mix adapters in one batch: `generate(adapter_names=[...])` over whatever
    requests are waiting, one static batch at a time."""

    def __init__(self, base: Path, adapters: list[Path], max_batch: int, max_tokens: int):
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        self.max_batch, self.max_tokens = max_batch, max_tokens
        self.load_seconds = []
        model = None
        for i, path in enumerate(adapters):
            started = time.perf_counter()
            if model is None:
                model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(path),
                                                  adapter_name=path.name)
            else:
                model.load_adapter(str(path), adapter_name=path.name)
            if i:  # the first includes building the wrapper
                self.load_seconds.append(time.perf_counter() - started)
        self.model = model.eval()
        self.names = [p.name for p in adapters]
        self.waiting: list[tuple] = []
        self.lock = threading.Condition()
        threading.Thread(target=self._run, daemon=True).start()

    def generate(self, prompt: list[int], adapter: int | None) -> dict:
        done = threading.Event()
        request = {"prompt": prompt, "adapter": adapter, "arrived": time.perf_counter(), "done": done}
        with self.lock:
            self.waiting.append(request)
            self.lock.notify()
        done.wait()
        return {k: request[k] for k in ("ttft", "tpot", "tokens")}

    def _run(self) -> None:
        import torch
        from transformers import StoppingCriteria

        class Clock(StoppingCriteria):
            def __init__(self):
                self.times = []

            def __call__(self, input_ids, scores, **kwargs):
                self.times.append(time.perf_counter())
                return torch.zeros(input_ids.shape[0], dtype=torch.bool)

        while True:
            with self.lock:
                while not self.waiting:
                    self.lock.wait()
                batch, self.waiting = self.waiting[:self.max_batch], self.waiting[self.max_batch:]
            width = max(len(r["prompt"]) for r in batch)
            ids = torch.tensor([[0] * (width - len(r["prompt"])) + r["prompt"] for r in batch])
            mask = torch.tensor([[0] * (width - len(r["prompt"])) + [1] * len(r["prompt"]) for r in batch])
            clock = Clock()
            with torch.inference_mode():
                self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=self.max_tokens,
                                    min_new_tokens=self.max_tokens, do_sample=False, pad_token_id=0,
                                    adapter_names=[self.names[r["adapter"]] if r["adapter"] is not None
                                                   else "__base__" for r in batch],
                                    stopping_criteria=[clock])
            first, last = clock.times[0], clock.times[-1]
            for r in batch:
                r.update(ttft=first - r["arrived"], tpot=(last - first) / max(1, self.max_tokens - 1),
                         tokens=self.max_tokens)
                r["done"].set()

    def stats(self) -> dict:
        return {"load_seconds": self.load_seconds}


# ------------------------------------------------------------------------------ the load generator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zipf_choice(rng: random.Random, n: int) -> int:
    """An adapter index with probability proportional to 1 / rank (alpha = 1)."""
    weights = [1.0 / (i + 1) for i in range(n)]
    return rng.choices(range(n), weights=weights)[0]


async def load(url: str, args, n_adapters: int) -> dict:
    import httpx

    rng = random.Random(0)
    requests = []
    clock = 0.0
    for _ in range(args.requests):
        clock += rng.expovariate(args.rate)
        prompt = [rng.randrange(10, 400) for _ in range(args.prompt_tokens)]
        requests.append((clock, prompt, zipf_choice(rng, n_adapters) if n_adapters else None))
    async with httpx.AsyncClient(timeout=args.timeout) as client:
        # one request first, so the measured run starts warm (threads, allocator, first kernels)
        await client.post(f"{url}/generate", json={"prompt": requests[0][1], "adapter": requests[0][2]})
        started = time.perf_counter()

        async def one(at, prompt, adapter):
            await asyncio.sleep(max(0.0, at - (time.perf_counter() - started)))
            response = await client.post(f"{url}/generate", json={"prompt": prompt, "adapter": adapter})
            return response.json()

        results = await asyncio.gather(*(one(*r) for r in requests))
        wall = time.perf_counter() - started
        stats = (await client.get(f"{url}/stats")).json()
    return {"wall": wall, "results": results, "stats": stats}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_engine(engine: str, base: Path, adapters: list[Path], n_adapters: int, args) -> dict:
    """Start one server process, drive it, stop it; returns throughput, latency and load stats."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "BENCH_THREADS": str(args.threads),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    spec = json.dumps({"engine": engine, "base": str(base), "adapters": [str(p) for p in adapters[:n_adapters]],
                       "port": port, "max_batch": args.max_batch, "max_tokens": args.max_tokens})
    server = subprocess.Popen([sys.executable, __file__, "--serve", spec], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + args.timeout
        while True:
            try:
                httpx.get(f"{url}/stats", timeout=2)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{engine} server did not start: "
                                       f"{server.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.2)
        out = asyncio.run(load(url, args, n_adapters))
    finally:
        server.terminate()
        server.wait(timeout=30)
    results = out["results"]
    tokens = sum(r["tokens"] for r in results)
    return {
        "engine": engine, "adapters": n_adapters, "requests": len(results), "tokens": tokens,
        "tokens_per_s": tokens / out["wall"], "wall_s": out["wall"],
        "ttft_p50_ms": 1000 * percentile([r["ttft"] for r in results], 0.5),
        "ttft_p99_ms": 1000 * percentile([r["ttft"] for r in results], 0.99),
        "tpot_p50_ms": 1000 * percentile([r["tpot"] for r in results], 0.5),
        "tpot_p99_ms": 1000 * percentile([r["tpot"] for r in results], 0.99),
        "stats": out["stats"],
    }


# ------------------------------------------------------------------------------ receipts per second


def receipts_rate(workdir: Path, calls: int) -> list[dict]:
    """Completions with receipts through a real node (tiny model, one adapter trained and published
    through the factory, a paying consumer), with attribution off and on: receipts final per second."""
    from concurrent.futures import ThreadPoolExecutor

    from eth_account import Account
    from fastapi.testclient import TestClient

    from ledgerlm.api import create_app
    from ledgerlm.client import NodeClient
    from ledgerlm.config import Home
    from ledgerlm.datanets import DatanetSpec
    from ledgerlm.factory import tiny_random_model
    from ledgerlm.node import Node

    facts = [{"question": f"What colour is crate {i}?", "answer": f"Crate {i} is {c}."}
             for i, c in enumerate(["red", "blue", "green", "amber", "violet", "silver", "black", "white"])]
    schema = {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
              "required": ["question", "answer"]}
    # a throwaway home: its encrypted node and admin keys get throwaway passphrases
    os.environ.setdefault("LEDGERLM_NODE_PASSPHRASE", "benchmark-node")
    os.environ.setdefault("LEDGERLM_ADMIN_PASSPHRASE", "benchmark-admin")
    os.environ.setdefault("LEDGERLM_KDF_ITERATIONS", "1024")
    home = Home(workdir / "home")
    Node.init(home).close()
    consumer, developer, owner = (Account.from_key(bytes([i]) * 32) for i in (5, 6, 7))
    with TestClient(create_app(lambda: Node.open(home)), client=("127.0.0.1", 50000)) as http:
        client = NodeClient(http, operator_token=home.operator_token_path.read_text().strip())
        tiny = tiny_random_model(workdir / "tiny", [f["question"] + " " + f["answer"] for f in facts])
        client.factory.register_base("tiny", str(tiny))
        client.create_datanet(DatanetSpec(name="crates", schema=schema), owner)
        data = workdir / "facts.jsonl"
        data.write_text("".join(json.dumps(f) + "\n" for f in facts))
        client.contribute("crates", [data], owner)
        for c in client.contributions("crates"):
            client.review(c.id, owner, accept=True)
        client.publish("crates", owner)
        job = client.factory.train(developer, {"model_id": "crates-tiny", "datanet": "crates", "version": 1,
                                               "base": "tiny", "config": {"epochs": 2, "max_len": 64,
                                                                          "eval_split": 0.0, "rank": 4}})
        node = http.app.state.node
        node.factory.wait(job["id"], timeout=600)
        client.factory.publish(developer, "crates-tiny", price_per_1k=10**15)
        client.chain.faucet(consumer.address, eth_wei=10**18, tokens=100 * 10**18)
        node.contracts.escrow.deposit(consumer, 50 * 10**18)
        key, _ = client.serving.create_key(consumer, 50 * 10**18)
    rows = []
    for attribution in (False, True):
        config = home.load_config()
        config.serving_attribution = attribution
        home.save_config(config)
        node = Node.open(home)
        try:
            def ask(i: int, node=node):
                return node.serving.complete(
                    model="crates-tiny", authorization=f"Bearer {key}", max_tokens=8, temperature=0.0,
                    messages=[{"role": "user", "content": f"What colour is crate {i % 8}?"}])

            ask(0)  # loads the base model and the adapter
            node.serving.attribution.drain()
            before = len(node.serving.receipts.list(limit=10**6))
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
                ids = [receipt.id for _, receipt, _ in pool.map(ask, range(calls))]
            node.serving.attribution.drain(timeout=1800)
            seconds = time.perf_counter() - started
            stored = {r.id: r for r in node.serving.receipts.list(limit=10**6)}
            final = sum(1 for i in ids if i in stored and stored[i].state == "final")
            rows.append({"attribution": attribution, "calls": calls, "seconds": seconds,
                         "receipts_per_s": final / seconds, "lost": calls - sum(1 for i in ids if i in stored),
                         "final": final, "stored_before": before})
        finally:
            node.close()
    return rows


# ------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny")
    parser.add_argument("--adapters", default="1,16,128", help="adapter counts to run")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--rate", type=float, default=32.0, help="Poisson arrivals per second")
    parser.add_argument("--prompt-tokens", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each server")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one run may take")
    parser.add_argument("--receipt-calls", type=int, default=24)
    parser.add_argument("--no-receipts", action="store_true", help="skip the receipts-per-second part")
    parser.add_argument("--engines", default="ledgerlm,peft",
                        help="engines to compare: ledgerlm, peft, vllm (vllm needs a CUDA GPU and the vllm package)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        spec = json.loads(args.serve)
        serve(spec["engine"], Path(spec["base"]), [Path(p) for p in spec["adapters"]], spec["port"],
              spec["max_batch"], spec["max_tokens"])
        return

    counts = [int(c) for c in args.adapters.split(",")]
    engines = [e for e in args.engines.split(",") if e]
    unknown = sorted(set(engines) - {"ledgerlm", "peft", "vllm"})
    if unknown or "ledgerlm" not in engines:
        raise SystemExit(f"--engines takes ledgerlm (always, the reference) plus peft and/or vllm; not {unknown}")
    if "vllm" in engines:
        from ledgerlm.errors import LedgerError
        from ledgerlm.serving.vllm_engine import cuda_available, select_engine, vllm_available

        try:
            select_engine("vllm", vllm=vllm_available(), cuda=cuda_available())
        except LedgerError as exc:
            raise SystemExit(f"--engines vllm: {exc.message}") from None
    with tempfile.TemporaryDirectory(prefix="ledgerlm-bench-serving-") as tmp:
        tmp = Path(tmp)
        base = make_base(tmp, args.model)
        adapters = make_adapters(base, tmp / "adapters", max(counts), args.rank)
        receipts = [] if args.no_receipts else receipts_rate(tmp / "receipts", args.receipt_calls)
        runs = [run_engine("ledgerlm", base, adapters, 0, args)]
        for n in counts:
            for engine in engines:
                runs.append(run_engine(engine, base, adapters, n, args))
                print(f"{engine} with {n} adapter(s): {runs[-1]['tokens_per_s']:.0f} tokens/s", flush=True)

    base_rate = runs[0]["tokens_per_s"]
    one = {r["engine"]: r["tokens_per_s"] for r in runs if r["adapters"] == counts[0]}
    table = ResultTable(
        f"Generated tokens/s and latency ({args.model} random Llama, rank-{args.rank} adapters on all projections, "
        f"{args.requests} requests at {args.rate:g}/s Poisson, Zipf(1) popularity, {args.prompt_tokens} prompt + "
        f"{args.max_tokens} output tokens)",
        ["engine", "adapters", "tokens/s", f"vs {counts[0]} adapter(s)", "vs base model", "TTFT p50 ms",
         "TTFT p99 ms", "per-token p50 ms", "per-token p99 ms"])
    for r in runs:
        table.add_row(r["engine"] if r["adapters"] else "ledgerlm (base model only)", r["adapters"],
                      f"{r['tokens_per_s']:.0f}", f"{r['tokens_per_s'] / one[r['engine']]:.2f}" if r["adapters"] else "",
                      f"{r['tokens_per_s'] / base_rate:.2f}", f"{r['ttft_p50_ms']:.0f}", f"{r['ttft_p99_ms']:.0f}",
                      f"{r['tpot_p50_ms']:.1f}", f"{r['tpot_p99_ms']:.1f}")
    ours = next(r for r in runs if r["engine"] == "ledgerlm" and r["adapters"] == max(counts))["stats"]
    peft = next((r for r in runs if r["engine"] == "peft" and r["adapters"] == max(counts)),
                {"stats": {"load_seconds": []}})["stats"]
    loads = ResultTable(f"Adapter loading (rank {args.rank}, {args.model}), from the {max(counts)}-adapter runs",
                        ["what", "p50 ms", "count"])
    if ours["disk_seconds"]:
        loads.add_row("ledgerlm cold load: safetensors read → host", f"{1000 * statistics.median(ours['disk_seconds']):.2f}",
                      len(ours["disk_seconds"]))
    if ours["switch_seconds"]:
        loads.add_row("ledgerlm switch: host → device slot", f"{1000 * statistics.median(ours['switch_seconds']):.2f}",
                      len(ours["switch_seconds"]))
    if peft["load_seconds"]:
        loads.add_row("PEFT load_adapter (baseline)", f"{1000 * statistics.median(peft['load_seconds']):.2f}",
                      len(peft["load_seconds"]))
    tables = [table, loads]
    if receipts:
        rtable = ResultTable(f"Receipts through a real node (tiny model, one published adapter, {CLIENT_THREADS} client threads, "
                             "8 output tokens)", ["attribution", "calls", "receipts final/s", "lost receipts"])
        for r in receipts:
            rtable.add_row("on" if r["attribution"] else "off", r["calls"], f"{r['receipts_per_s']:.2f}", r["lost"])
        tables.append(rtable)
    for t in tables:
        t.print()
    write_result("serving", {"args": vars(args), "runs": runs, "receipts": receipts}, tables,
                 notes=[f"model: {args.model} random Llama {MODELS[args.model]}; each engine in its own server "
                        "process on loopback, load from this process; TTFT and per-token latency measured in the "
                        "server from each request's arrival; PEFT baseline: generate(adapter_names=...) over "
                        "static batches of the waiting requests."])


if __name__ == "__main__":
    main()
