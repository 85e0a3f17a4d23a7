"""Server memory over many conversions: RSS of ``melganvc serve`` after 20, 100, 200 requests.

A tester saw the server grow from 330 MB to 1 GB over ~130 conversions. Two ways to measure:

* ``--via http`` (default): starts ``melganvc serve`` (bundled ``demo-voice``, CPU) on a free
  localhost port and drives it like a browser: upload a ~2 s file, convert, then fetch the
  result audio (two range requests, as an ``<audio>`` element does) and both mel images at
  once. The concurrent fetches grow Gradio's worker-thread pool, so conversions land on
  several threads, as they do for a real page. RSS and thread count are read from ``/proc``.
* ``--via service``: ``ConversionService.convert`` in this process, called from a rotating
  pool of ``--threads`` threads (1 = a plain loop).

Prints one JSON object: RSS (MB) and threads at start and after each checkpoint count.

    python benchmarks/serve_memory.py [--via http|service] [--n 200] [--threads 8]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

MODEL = "bundled: demo-voice"
RATE = 16000
CHECKPOINTS = (20, 100, 200)


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process (Linux ``/proc``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS in /proc status")


def threads(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    """Vibrato harmonics with pauses: a cheap stand-in for a voice recording."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 120 * (1 + 0.08 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 30)) * (np.sin(2 * np.pi * 1.7 * t) > -0.3)
    wave = wave + 0.003 * rng.standard_normal(t.size)
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                sys.exit(f"melganvc serve did not start:\n{log.read_text()}")
            time.sleep(0.5)


def fetch(url: str, byte_range: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Range": byte_range} if byte_range else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        return len(response.read())


def via_http(n: int, folder: Path) -> dict:
    """Drive a ``melganvc serve`` subprocess like a browser; RSS of the server process."""
    from gradio_client import Client, handle_file

    port = free_port()
    log = folder / "serve.log"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "melganvc", "serve", "--port", str(port), "--device", "cpu",
             "--runs", str(folder / "runs")], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(url, proc, log)
        client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
        source = folder / "voice.wav"
        sf.write(source, speech(2.0), RATE)
        result = {"start": {"rss_mb": rss_mb(proc.pid), "threads": threads(proc.pid)}}
        with ThreadPoolExecutor(4) as pool:
            for i in range(1, n + 1):
                audio, src_mel, conv_mel, _, status = client.predict(
                    MODEL, handle_file(str(source)), "gl", "standard", api_name="/convert")
                if "converted" not in status:
                    sys.exit(f"conversion {i} failed: {status}")
                jobs = [(audio["url"], "bytes=0-"), (audio["url"], "bytes=44-"),
                        (src_mel["url"], None), (conv_mel["url"], None)]
                list(pool.map(lambda job: fetch(*job), jobs))
                if i in CHECKPOINTS:
                    result[str(i)] = {"rss_mb": rss_mb(proc.pid), "threads": threads(proc.pid)}
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def via_service(n: int, folder: Path, workers: int) -> dict:
    """``ConversionService.convert`` called in turn from ``workers`` threads of this process."""
    from melganvc.apps.service import Catalog, ConversionService

    source = folder / "voice.wav"
    sf.write(source, speech(2.0), RATE)
    service = ConversionService(Catalog(runs=None), device="cpu", workdir=folder / "work")
    pools = [ThreadPoolExecutor(1) for _ in range(workers)]
    result = {"start": {"rss_mb": rss_mb(), "threads": threads()}}
    try:
        for i in range(1, n + 1):
            pools[i % workers].submit(service.convert, MODEL, source, "gl", "standard").result()
            if i in CHECKPOINTS:
                result[str(i)] = {"rss_mb": rss_mb(), "threads": threads()}
    finally:
        for pool in pools:
            pool.shutdown()
        service.close()
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--via", choices=("http", "service"), default="http")
    ap.add_argument("--n", type=int, default=200, help="sequential conversions")
    ap.add_argument("--threads", type=int, default=8, help="caller threads (--via service)")
    args = ap.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="serve-memory-") as tmp:
        folder = Path(tmp)
        runs = via_http(args.n, folder) if args.via == "http" else \
            via_service(args.n, folder, args.threads)
    result = {"via": args.via, "conversions": args.n, "file_seconds": 2.0,
              "threads_calling": args.threads if args.via == "service" else None,
              "wall_s": round(time.monotonic() - started), "rss": runs}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
