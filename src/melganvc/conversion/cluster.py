"""Batch conversion on a Ray cluster (``melganvc convert --ray [ADDRESS]``): the same jobs,
accounting and atomic outputs as ``batch.run_batch``, with the conversions spread over actors.

Design -- the driver owns the file system, the workers only convert:

* the driver plans the jobs (``batch.plan_jobs``), skips existing outputs unless ``overwrite``
  (so a rerun resumes), reads each input's bytes and sends them with the job;
* each ``_Worker`` actor holds one ``Converter`` built once from the checkpoint payload, which
  the driver put in Ray's object store (nodes need no copy of the run folder, nor a shared file
  system); it writes the bytes to a private temp file, converts it with ``convert_file`` and
  returns the output's bytes, or a one-line error for a bad file;
* the driver writes each output atomically (``io.files.atomic_path``), so an output is either
  complete or absent, whatever dies when.

A worker that dies mid-job (killed, out of memory, node lost) surfaces as ``RayActorError``:
the job goes back to the queue (at most ``MAX_ATTEMPTS`` tries) and a fresh actor replaces the
dead one. Without ``address`` a local Ray instance is started (``ray.init``) and stopped.
``workers`` actors run at once, each with ``cpus_per_worker`` CPUs (its torch threads) and
``gpus_per_worker`` GPUs.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from melganvc.conversion.batch import BatchReport, _duration, _one_line
from melganvc.errors import UserError
from melganvc.io.files import atomic_path

MAX_ATTEMPTS = 3  # tries per file when workers die under it
FAULT_ENV = "MELGANVC_FAULT_KILL_WORKER"  # tests: "NAME:MARKER_DIR" kills a worker once on NAME


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how wide: Ray ``address`` (None: a local instance), actors, resources each."""

    address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs the cluster extra: pip install 'melganvc[cluster]'") from None
    return ray


class _Worker:
    """One converter per actor; ``convert(name, data, suffix)`` -> ``("ok", seconds, bytes)``
    or ``("error", message)``."""

    def __init__(self, payload: dict[str, Any], options: dict[str, Any], threads: int) -> None:
        import torch

        from melganvc.conversion.converter import Converter

        torch.set_num_threads(max(1, threads))
        self.converter = Converter.from_payload(payload, **options)
        self.folder = Path(tempfile.mkdtemp(prefix="melganvc-ray-"))

    def convert(self, name: str, data: bytes, in_suffix: str, out_suffix: str) -> tuple:
        _maybe_die(name)
        src = self.folder / f"in{in_suffix}"
        dst = self.folder / f"out{out_suffix}"
        try:
            src.write_bytes(data)
            seconds = self.converter.convert_file(src, dst)
            return "ok", seconds, dst.read_bytes()
        except UserError as exc:  # the message names our temp file: name the user's
            return "error", _one_line(str(exc).replace(str(src), name))
        except (RuntimeError, ValueError, OSError) as exc:
            return "error", _one_line(f"{name}: {type(exc).__name__}: {exc}")
        finally:
            src.unlink(missing_ok=True)
            dst.unlink(missing_ok=True)


def _maybe_die(name: str) -> None:
    """Fault injection for the tests: end this worker process the first time it starts the
    file named in ``MELGANVC_FAULT_KILL_WORKER`` (``NAME:MARKER_DIR``; the marker makes it once
    across processes)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    target, _, marker_dir = spec.partition(":")
    marker = Path(marker_dir) / f"killed-{target}"
    if Path(name).name == target and not marker.exists():
        marker.touch()
        os._exit(1)


@dataclass
class _Job:
    src: Path
    dst: Path
    seconds: float  # the input's duration (the progress bar's unit), read once
    attempts: int = 0


def run_ray_batch(payload: dict[str, Any], converter_options: dict[str, Any],
                  jobs: list[tuple[Path, Path]], report: BatchReport, cluster: ClusterOptions, *,
                  overwrite: bool = False, progress: bool = True,
                  log: Callable[[str], None] = print) -> BatchReport:
    """Convert ``jobs`` on Ray actors; fills and returns ``report`` like ``run_batch``."""
    ray = _ray()
    if cluster.workers < 1 or cluster.cpus_per_worker <= 0 or cluster.gpus_per_worker < 0:
        raise UserError("--workers must be >= 1, CPUs per worker > 0, GPUs per worker >= 0")
    start = time.perf_counter()
    todo: deque[_Job] = deque()
    total = 0.0
    for src, dst in jobs:
        if dst.exists() and not overwrite:
            report.skipped_existing += 1
            log(f"melganvc: skipped {src}: {dst} exists (use --overwrite)")
        else:
            todo.append(_Job(src, dst, _duration(src)))
            total += todo[-1].seconds
    if not todo:
        report.elapsed = time.perf_counter() - start
        return report
    started_here = not ray.is_initialized()
    if started_here:
        _init(ray, cluster)
    try:
        _drive(ray, payload, converter_options, todo, report, cluster, total, overwrite,
               progress, log)
    finally:
        if started_here:
            ray.shutdown()
    report.elapsed = time.perf_counter() - start
    return report


def _init(ray: Any, cluster: ClusterOptions) -> None:
    env = {FAULT_ENV: os.environ[FAULT_ENV]} if os.environ.get(FAULT_ENV) else {}
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.ERROR,
                              "runtime_env": {"env_vars": env} if env else None}
    if cluster.address is None:
        kwargs["num_cpus"] = max(1, round(cluster.workers * cluster.cpus_per_worker))
    try:
        ray.init(address=cluster.address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"cannot reach the Ray cluster at {cluster.address or 'a new local one'}"
                        f" ({_one_line(str(exc))[:200]})") from None


def _drive(ray: Any, payload: dict[str, Any], options: dict[str, Any], todo: deque[_Job],
           report: BatchReport, cluster: ClusterOptions, total: float, overwrite: bool,
           progress: bool, log: Callable[[str], None]) -> None:
    """Keep every actor busy with one job; collect, write, retry what a dead worker held."""
    from tqdm import tqdm

    remote = ray.remote(num_cpus=cluster.cpus_per_worker,
                        num_gpus=cluster.gpus_per_worker)(_Worker)
    model = ray.put(payload)
    threads = max(1, int(cluster.cpus_per_worker))

    def spawn() -> Any:
        return remote.remote(model, options, threads)

    idle = [spawn() for _ in range(cluster.workers)]
    running: dict[Any, tuple[Any, _Job]] = {}
    with tqdm(total=round(total, 1), unit="s", desc="convert (ray)",
              disable=None if progress else True,
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]") as bar:
        while todo or running:
            while todo and idle:
                job, actor = todo.popleft(), idle.pop()
                job.attempts += 1
                ref = actor.convert.remote(str(job.src), job.src.read_bytes(), job.src.suffix,
                                           job.dst.suffix)
                running[ref] = (actor, job)
            done, _ = ray.wait(list(running), num_returns=1)
            actor, job = running.pop(done[0])
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayActorError:
                idle.append(spawn())  # the dead actor is replaced; the job goes back
                if job.attempts < MAX_ATTEMPTS:
                    log(f"melganvc: warning: a worker died while converting {job.src}; retrying")
                    todo.append(job)
                else:
                    report.failed.append(f"{job.src}: its worker died {job.attempts} times")
                    log(f"melganvc: error: {report.failed[-1]}")
                    bar.update(job.seconds)
                continue
            idle.append(actor)
            _finish(job, result, report, overwrite, log)
            bar.update(job.seconds)


def _finish(job: _Job, result: tuple, report: BatchReport, overwrite: bool,
            log: Callable[[str], None]) -> None:
    """Write a converted file atomically, or record its error."""
    if result[0] == "error":
        report.failed.append(result[1])
        log(f"melganvc: error: {result[1]}")
        return
    _, seconds, data = result
    try:
        with atomic_path(job.dst, replace=overwrite) as tmp:
            tmp.write_bytes(data)
    except FileExistsError:  # another process wrote it meanwhile: keep theirs
        report.skipped_existing += 1
        log(f"melganvc: skipped {job.src}: {job.dst} exists (use --overwrite)")
        return
    except OSError as exc:
        report.failed.append(_one_line(f"{job.dst}: cannot write ({exc.strerror or exc})"))
        log(f"melganvc: error: {report.failed[-1]}")
        return
    report.converted += 1
    report.seconds += seconds
