"""Run the scoring of shards: `local` (this process, or a pool of processes) or `ray` (actors on a Ray cluster).

`score()` plans the tasks (one per shard still to do) and hands them to `run_local` or `run_ray`. Both load
the classifier once per worker, retry a failed shard `retries` times, replace a worker that dies (a killed
process, an out-of-memory kill) and resubmit what it held, and report progress through a `Tracker`: one line
per finished part, and every few seconds documents scored so far (parts in progress included), documents
per second and an ETA. A part is written by `score_shard` (temporary file, rename, stats, then the `.done`
marker), so a worker or driver killed at any moment leaves no part that a rerun would take as finished.

Test hooks (environment variables read by the workers; tests/test_executors.py uses them to make runs slow
or to make one shard fail, never set them otherwise): `SELECTOR_TEST_BATCH_SLEEP=SECONDS` sleeps after each
scored batch; `SELECTOR_TEST_FAIL=TEXT` raises after the first batch of every shard whose path contains TEXT;
`SELECTOR_TEST_KILL=TEXT` kills its own process (SIGKILL, like the out-of-memory killer) there instead.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selector.core.config import Config, EmbeddingConfig
from selector.core.errors import ClassifierError, ConfigError, SelectorError
from selector.score.cascade import ShardScorer, Task, part_name, score_shard
from selector.score.embed import make_embedder

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
RAY_INSTALL = (
    "pip install -e '.[ray]' in a checkout (scripts/install.sh does), pip install 'selector[ray]' otherwise"
)
TEST_HOOKS = ("SELECTOR_TEST_BATCH_SLEEP", "SELECTOR_TEST_FAIL", "SELECTOR_TEST_KILL")
WORKER_DIED = "the worker process died (killed, or out of memory) while this shard was in flight"
# errors of the setup (a model that cannot be loaded), not of a shard: they stop the run at once
FATAL = (ConfigError, ClassifierError)


@dataclass(frozen=True)
class RayOptions:
    """Where and how the Ray executor runs. `address`: None starts a local Ray instance for the run, "auto" or
    HOST:PORT joins a running cluster. Resources are what each actor reserves; `gpus_per_worker` None means one
    GPU where `embedding.device` is cuda, else none. `embed_workers` > 0 runs the embedding model in that many
    actors of their own (which get the GPUs), fed by the scoring workers."""

    address: str | None = None
    cpus_per_worker: float = 1.0
    memory_per_worker: int | None = None
    gpus_per_worker: float | None = None
    embed_workers: int = 0

    def __post_init__(self) -> None:
        if not self.cpus_per_worker > 0:
            raise ConfigError(f"--cpus-per-worker must be > 0, got {self.cpus_per_worker}")
        if self.memory_per_worker is not None and self.memory_per_worker < 1:
            raise ConfigError(f"--memory-per-worker must be at least 1 byte, got {self.memory_per_worker}")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise ConfigError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker}")
        if self.embed_workers < 0:
            raise ConfigError(f"--embed-workers must be >= 0, got {self.embed_workers}")


def import_ray() -> Any:
    """The `ray` module, or a SelectorError that says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise SelectorError(
            f"--executor ray needs Ray, which is not installed ({e}). Install it with {RAY_INSTALL} "
            "(or pip install 'ray>=2.9'), or use --executor local."
        ) from e
    return ray


def describe(e: BaseException) -> str:
    """One line naming an error: `Type: message` (the first line of a long message)."""
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}".rstrip(": ")


def _fmt_seconds(s: float) -> str:
    if s < 90:
        return f"{s:,.0f}s"
    if s < 5400:
        return f"{s / 60:,.0f}m"
    return f"{s / 3600:,.1f}h"


class Tracker:
    """What the executors report to: finished parts, failed attempts (`retry` says whether to try again),
    documents scored so far by parts in progress; prints progress lines through `progress`."""

    def __init__(
        self,
        tasks: list[Task],
        progress: Callable[[str], None],
        retries: int,
        every: float = 10.0,
        batch_size: int | None = None,
    ) -> None:
        self.progress = progress
        self.batch_size = batch_size  # documents a part scores between two reports
        self.retries = retries
        self.every = every
        self.n_tasks = len(tasks)
        self.sizes = {t.index: _size(t) for t in tasks}
        self.total_bytes = sum(self.sizes.values())
        self.results: list[dict[str, Any]] = []
        self.failed: list[dict[str, Any]] = []
        self.attempts: dict[int, int] = {}
        self.running: dict[int, int] = {}  # part index -> documents scored so far
        self.t0 = time.time()
        self.last_line = self.t0
        self.done_docs = 0
        self.done_bytes = 0
        self.failed_bytes = 0

    def started(self, task: Task) -> None:
        self.running[task.index] = 0

    def docs(self, index: int, n: int) -> None:
        """`n` documents of part `index` are scored so far (ignored once the part is no longer running)."""
        if index in self.running:
            self.running[index] = n

    def finished(self, stats: dict[str, Any]) -> None:
        index = int(stats["part"][len("part-") :])
        self.running.pop(index, None)
        self.results.append(stats)
        self.done_docs += int(stats["scored"])
        self.done_bytes += self.sizes.get(index, 0)
        rate = self.done_docs / max(time.time() - self.t0, 1e-9)
        self._say(
            f"[{len(self.results)}/{self.n_tasks}] {stats['part']}: {stats['scored']:,} scored, "
            f"{stats['skipped']:,} skipped, {stats['embedded']:,} embedded; {rate:,.0f} docs/s; "
            f"ETA {self._eta()}"
        )

    def retry(self, task: Task, error: str) -> bool:
        """Record a failed attempt at `task`; True if it should be tried again, False once it has failed."""
        self.running.pop(task.index, None)
        n = self.attempts[task.index] = self.attempts.get(task.index, 0) + 1
        name = part_name(task.index)
        if n <= self.retries:
            self._say(
                f"{name} ({task.shard.source}) failed (attempt {n} of {self.retries + 1}): {error}; retrying"
            )
            return True
        self.failed.append({"part": name, "shard": task.shard.source, "error": error, "attempts": n})
        self.failed_bytes += self.sizes.get(task.index, 0)
        self._say(f"{name} ({task.shard.source}) failed after {n} attempt(s): {error}")
        return False

    def tick(self, poll: Callable[[], None] | None = None, note: str = "") -> None:
        """Every `every` seconds: ask the workers how far they are (`poll`), then print a line (and `note`)."""
        if time.time() - self.last_line < self.every:
            return
        if poll is not None:
            poll()
        partial = sum(self.running.values())
        rate = (self.done_docs + partial) / max(time.time() - self.t0, 1e-9)
        if self.done_docs + partial == 0 and self.running:
            # parts report after each whole batch: say so rather than "0 documents scored, 0 docs/s"
            size = f" of {self.batch_size:,} documents" if self.batch_size else ""
            self._say(
                f"scoring: 0/{self.n_tasks} parts done, {len(self.running)} running; first batches{size} in "
                "progress (a part reports after each batch; --batch-size sets its size)"
                + (f"; {note}" if note else "")
            )
            return
        self._say(
            f"scoring: {len(self.results)}/{self.n_tasks} parts done, {len(self.running)} running; "
            f"{self.done_docs + partial:,} documents scored, {rate:,.0f} docs/s; ETA {self._eta()}"
            + (f"; {note}" if note else "")
        )

    def _eta(self) -> str:
        """Input bytes left at the rate input bytes are going (parts in progress counted at the bytes per
        document of the finished parts); by the number of parts where shard sizes are unknown."""
        left_parts = self.n_tasks - len(self.results) - len(self.failed)
        if left_parts <= 0:
            return "0s"
        if not self.results:
            return "-"
        elapsed = max(time.time() - self.t0, 1e-9)
        if not all(self.sizes.values()):
            return _fmt_seconds(elapsed / len(self.results) * left_parts)
        per_doc = self.done_bytes / self.done_docs if self.done_docs else 0.0
        partial = sum(min(n * per_doc, self.sizes[i]) for i, n in self.running.items())
        done = self.done_bytes + partial
        left = max(self.total_bytes - self.failed_bytes - done, 0.0)
        return _fmt_seconds(left / (done / elapsed)) if done > 0 else "-"

    def _say(self, line: str) -> None:
        self.last_line = time.time()
        self.progress(line)


def _size(task: Task) -> int:
    """The shard's size in bytes as fingerprinted when the run was planned (0 if unknown)."""
    try:
        return int(task.signature.get("shard", {}).get("size") or 0)
    except (TypeError, ValueError):
        return 0


def batch_callback(task: Task, report: Callable[[int, int], None]) -> Callable[[int], None]:
    """What `score_shard` calls after each batch: `report(part index, documents so far)`, then the test hooks
    (see the module docstring)."""
    sleep = float(os.environ.get("SELECTOR_TEST_BATCH_SLEEP") or 0)
    fail = os.environ.get("SELECTOR_TEST_FAIL") or None
    kill = os.environ.get("SELECTOR_TEST_KILL") or None
    done = 0

    def on_batch(n: int) -> None:
        nonlocal done
        done += n
        report(task.index, done)
        if fail is not None and fail in task.shard.source:
            raise RuntimeError(f"test hook SELECTOR_TEST_FAIL={fail!r} failed {task.shard.source}")
        if kill is not None and kill in task.shard.source:
            os.kill(os.getpid(), signal.SIGKILL)
        if sleep:
            time.sleep(sleep)

    return on_batch


def _test_env() -> dict[str, str]:
    return {k: os.environ[k] for k in TEST_HOOKS if k in os.environ}


def thread_env(threads: int) -> dict[str, str]:
    """Thread limits for a worker process, set before it imports polars or faiss (polars reads its limit
    once, at import): without them each of many workers on a large node would use every core."""
    return {"POLARS_MAX_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}


def _quiet_worker_logging() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


# --- local: this process, or a pool of spawned processes -----------------------------------------------


def run_local(
    tasks: list[Task],
    tracker: Tracker,
    cfg: Config,
    classifier_dir: str,
    scorer: ShardScorer,
    workers: int,
) -> None:
    """Score `tasks` here (one worker: in this process, with `scorer`) or in `workers` spawned processes."""
    if workers <= 0:
        workers = os.cpu_count() or 1
    workers = max(1, min(workers, len(tasks)))
    if workers == 1:

        def report(index: int, n: int) -> None:
            tracker.docs(index, n)
            tracker.tick()

        pending = deque(tasks)
        while pending:
            task = pending.popleft()
            tracker.started(task)
            try:
                stats = score_shard(scorer, task, on_batch=batch_callback(task, report))
            except FATAL:
                raise
            except Exception as e:  # any other error fails this shard only; it is retried or reported
                if tracker.retry(task, describe(e)):
                    pending.appendleft(task)
                continue
            tracker.finished(stats)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawned workers inherit the environment at start: their thread limits go in before they import anything
    # (this process has imported polars already, so its own limits do not change; they are removed after)
    added = {k: v for k, v in thread_env(threads).items() if k not in os.environ}
    os.environ.update(added)
    try:
        _run_pool(tasks, cfg, classifier_dir, workers, threads, tracker)
    finally:
        for k in added:
            os.environ.pop(k, None)


def _run_pool(
    tasks: Iterable[Task], cfg: Config, classifier_dir: str, workers: int, threads: int, tracker: Tracker
) -> None:
    ctx = mp.get_context("spawn")
    pending = deque(tasks)
    while pending:
        # a fresh pool (and progress queue) for each round: a pool whose worker died is broken for good
        progress_q = ctx.Queue()
        pool = ProcessPoolExecutor(
            workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(cfg, classifier_dir, threads, progress_q, os.getpid()),
        )
        inflight: dict[Future[dict[str, Any]], Task] = {}
        running_on: dict[int, int] = {}  # worker pid -> the shard it is scoring
        clean = False
        try:
            broken = _pool_round(pool, pending, inflight, tracker, progress_q, workers, running_on)
            if broken:
                # every shard in flight went down with the pool; those that finished first are kept. Only the
                # shard of the worker that died is charged an attempt (the pool stops the others with SIGTERM);
                # where that cannot be told, all of them are
                wait(inflight)
                # the pool reaps its workers while it breaks: read before it is done, a worker killed a moment
                # ago can still look alive (exit code None), so the exit codes are read once it has shut down
                procs = dict(getattr(pool, "_processes", None) or {})
                pool.shutdown(wait=True)
                culprits = _dead_workers_shards(procs, running_on)
                for fut, task in inflight.items():
                    if fut.exception() is None:
                        tracker.finished(fut.result())
                    elif culprits is not None and task.index not in culprits:
                        pending.appendleft(task)
                    elif tracker.retry(task, WORKER_DIED):
                        pending.appendleft(task)
            clean = True
        finally:
            if not clean:  # interrupted (SIGINT, SIGTERM) or stopped by an error: the workers stop now
                _stop_workers(pool)
            # (once they are stopped, waiting for the pool is quick and lets it release its queues)
            pool.shutdown(wait=True, cancel_futures=True)
            progress_q.close()
            progress_q.cancel_join_thread()


def _stop_workers(pool: ProcessPoolExecutor, grace: float = 3.0) -> None:
    """Terminate the pool's worker processes (SIGTERM, then SIGKILL after `grace` seconds) instead of letting
    them finish their shards: otherwise an interrupted driver waits for them at exit (the pool's atexit join)
    while they keep scoring. A shard stopped mid-way leaves only a temporary file, which a rerun removes.
    A second Ctrl-C meanwhile is ignored, so it cannot break the stop with a traceback."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
    try:
        procs = list((getattr(pool, "_processes", None) or {}).values())
        for p in procs:
            with contextlib.suppress(Exception):
                p.terminate()
        deadline = time.time() + grace
        for p in procs:
            with contextlib.suppress(Exception):
                p.join(max(0.0, deadline - time.time()))
                if p.is_alive():
                    p.kill()
                    p.join(1.0)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _pool_round(
    pool: ProcessPoolExecutor,
    pending: deque[Task],
    inflight: dict[Future[dict[str, Any]], Task],
    tracker: Tracker,
    progress_q: Any,
    workers: int,
    running_on: dict[int, int],
) -> bool:
    """Keep `workers` shards in flight until none is left (False) or the pool breaks (True; `inflight` then
    holds the shards that were in it)."""

    def drain() -> None:
        while True:
            try:
                msg = progress_q.get_nowait()
            except (queue_mod.Empty, OSError, EOFError, ValueError):
                return
            if len(msg) == 3:  # (index, -1, pid): a worker started a shard
                running_on[msg[2]] = msg[0]
            else:
                tracker.docs(msg[0], msg[1])

    while pending or inflight:
        while pending and len(inflight) < workers:
            task = pending.popleft()
            try:
                fut = pool.submit(_run_task, task)
            except BrokenProcessPool:
                pending.appendleft(task)
                return True
            inflight[fut] = task
            tracker.started(task)
        done, _ = wait(inflight, timeout=0.5, return_when=FIRST_COMPLETED)
        drain()
        for fut in done:
            exc = fut.exception()
            if isinstance(exc, BrokenProcessPool):
                drain()
                return True
            task = inflight.pop(fut)
            if exc is None:
                tracker.finished(fut.result())
            elif isinstance(exc, FATAL):
                raise exc
            elif tracker.retry(task, describe(exc)):
                pending.append(task)
        tracker.tick(drain)
    return False


def _largest_node_memory(ray: Any) -> float | None:
    """The most memory (bytes) Ray can hand out on one alive node, or None if it cannot be told."""
    try:
        mems = [float(n.get("Resources", {}).get("memory", 0)) for n in ray.nodes() if n.get("Alive")]
    except Exception:  # noqa: BLE001 - an older or remote Ray without node details: skip the check
        return None
    return max(mems) if mems else None


def _dead_workers_shards(procs: dict[int, Any], running_on: dict[int, int]) -> set[int] | None:
    """The shards of a shut-down pool's worker processes (`procs`, pid -> process) that died on their own
    (killed, crashed), not stopped by the pool after the first death (SIGTERM); None when they cannot be told."""
    import signal

    if not procs:
        return None
    dead = {
        pid for pid, p in procs.items() if p.exitcode is not None and p.exitcode not in (0, -signal.SIGTERM)
    }
    if not dead:
        return None
    return {running_on[pid] for pid in dead if pid in running_on} or None


_WORKER: ShardScorer | None = None
_PROGRESS: Any = None


def _init_worker(cfg: Config, classifier_dir: str, threads: int, progress_q: Any, parent: int) -> None:
    global _WORKER, _PROGRESS
    import torch

    torch.set_num_threads(threads)
    _quiet_worker_logging()
    # Ctrl-C reaches the whole process group: the driver stops the workers (SIGTERM) and says what was kept,
    # so a worker ignores it instead of printing its own KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # tqdm (inside sentence-transformers) would make a cross-process lock, a named semaphore that a worker
    # stopped with SIGTERM leaves behind ("resource_tracker: ... leaked semaphore objects"); one process
    # needs only a thread lock
    with contextlib.suppress(ImportError):
        from tqdm import tqdm

        tqdm.set_lock(threading.RLock())
    # a pool worker would outlive a driver killed with -9: on Linux it is killed with it, elsewhere it exits
    # within a second
    _die_with_parent()
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    _PROGRESS = progress_q
    _WORKER = ShardScorer(cfg, classifier_dir)


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _run_task(task: Task) -> dict[str, Any]:
    assert _WORKER is not None
    last = 0.0
    try:  # which process runs which shard: if this one dies, only its shard is charged
        _PROGRESS.put((task.index, -1, os.getpid()))
    except (OSError, ValueError):
        pass

    def report(index: int, n: int) -> None:
        nonlocal last
        if time.time() - last >= 1.0:  # at most one message a second per worker
            last = time.time()
            try:
                _PROGRESS.put_nowait((index, n))
            except (queue_mod.Full, OSError, ValueError):
                pass

    return score_shard(_WORKER, task, on_batch=batch_callback(task, report))


# --- ray: scoring actors, and optionally a separate pool of embedding actors -----------------------------


class RemoteEmbedder:
    """Stands in for the embedding model inside a scoring worker: sends the gated texts to the embedding
    actors (round robin) and waits for their vectors."""

    def __init__(self, actors: list[Any], start: int = 0) -> None:
        self.actors = actors
        self.next = start

    def encode(self, texts: list[str]) -> np.ndarray:
        import ray

        actor = self.actors[self.next % len(self.actors)]
        self.next += 1
        return np.asarray(ray.get(actor.encode.remote(texts)))


class StagedScorer(ShardScorer):
    """A ShardScorer whose embedding model lives in the embedding actors (`--embed-workers`)."""

    def __init__(self, cfg: Config, classifier_dir: str | Path, remote: RemoteEmbedder) -> None:
        super().__init__(cfg, classifier_dir)
        self.remote = remote

    @property
    def embedder(self) -> Any:
        return self.remote


class RayScoreWorker:
    """A Ray actor that holds one ShardScorer and scores whole shards; `progress()` answers while it works."""

    def __init__(
        self,
        cfg: Config,
        classifier_dir: str,
        threads: int,
        embedders: list[Any],
        slot: int,
        env: dict[str, str],
    ) -> None:
        import torch

        os.environ.update(env)
        torch.set_num_threads(threads)
        _quiet_worker_logging()
        self.scorer: ShardScorer = (
            StagedScorer(cfg, classifier_dir, RemoteEmbedder(embedders, slot))
            if embedders
            else ShardScorer(cfg, classifier_dir)
        )
        # with an embedding stage, the next batch runs fastText while the previous one is being embedded
        self.pipeline = 2 if embedders else 1
        self.state: tuple[int, int] | None = None

    def score(self, task: Task) -> dict[str, Any]:
        def report(index: int, n: int) -> None:
            self.state = (index, n)

        self.state = (task.index, 0)
        try:
            return score_shard(
                self.scorer, task, on_batch=batch_callback(task, report), pipeline=self.pipeline
            )
        finally:
            self.state = None

    def progress(self) -> tuple[int, int] | None:
        return self.state

    def pid(self) -> int:
        return os.getpid()


class RayEmbedWorker:
    """A Ray actor that holds the embedding model: `encode(texts)` -> unit vectors."""

    def __init__(self, emb_cfg: EmbeddingConfig, threads: int, env: dict[str, str]) -> None:
        import torch

        os.environ.update(env)
        torch.set_num_threads(threads)
        _quiet_worker_logging()
        self.embedder = make_embedder(emb_cfg)

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.embedder.encode(texts)

    def pid(self) -> int:
        return os.getpid()


def run_ray(
    tasks: list[Task],
    tracker: Tracker,
    cfg: Config,
    classifier_dir: str,
    scorer: ShardScorer,
    workers: int,
    opts: RayOptions,
) -> None:
    """Score `tasks` with `workers` scoring actors (0: as many as the cluster's CPUs allow) on the Ray cluster
    at `opts.address`, or on a local Ray instance started (and stopped) for this run. Joins a Ray session
    already initialised in this process, and leaves it running."""
    # Ray prints cluster events ("A worker died ...") on stdout, which carries the command's JSON: while
    # this runs they go to stderr with the progress
    with contextlib.redirect_stdout(sys.stderr):
        _run_ray(tasks, tracker, cfg, classifier_dir, scorer, workers, opts)


def _run_ray(
    tasks: list[Task],
    tracker: Tracker,
    cfg: Config,
    classifier_dir: str,
    scorer: ShardScorer,
    workers: int,
    opts: RayOptions,
) -> None:
    ray = import_ray()
    gpus = opts.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if cfg.embedding.device.startswith("cuda") else 0.0
    cpw = opts.cpus_per_worker
    started = False
    if not ray.is_initialized():
        # workers' own output stays in Ray's session logs: the driver's stdout is for the JSON summary
        kw: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.WARNING,
            "log_to_driver": False,
        }
        try:
            if opts.address:
                ray.init(address=opts.address, **kw)
            else:
                # a run's own instance: Ray's notice about the token it made for it is noise here
                logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
                    logging.ERROR
                )
                have = os.cpu_count() or 1
                want = (max(workers, 1) + opts.embed_workers) * cpw
                ray.init(address="local", num_cpus=max(have, math.ceil(want)), **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {opts.address}" if opts.address else "a local Ray instance"
            raise SelectorError(
                f"could not start or join {where} ({describe(e)}). Check that `ray status` works there, "
                "or omit --ray-address to start a local instance."
            ) from e
        started = True
    scorers: list[Any] = []
    embedders: list[Any] = []
    try:
        resources = ray.cluster_resources()
        embed_gpus = gpus if opts.embed_workers else 0.0
        score_gpus = 0.0 if opts.embed_workers else gpus
        if workers <= 0:
            workers = int((resources.get("CPU", 1) - opts.embed_workers * cpw) // cpw)
            if score_gpus:
                workers = min(workers, int(resources.get("GPU", 0) // score_gpus))
        workers = max(1, min(workers, len(tasks)))
        need_cpu = (workers + opts.embed_workers) * cpw
        need_gpu = workers * score_gpus + opts.embed_workers * embed_gpus
        if started and not opts.address and need_gpu > resources.get("GPU", 0):
            raise SelectorError(
                f"this machine has {resources.get('GPU', 0):g} GPU for Ray, and the workers that embed need "
                f"{need_gpu:g} (--gpus-per-worker, or 1 each where embedding.device is cuda). Use "
                '--gpus-per-worker 0 with embedding.device = "cpu", or join a cluster with GPUs (--ray-address).'
            )
        if need_cpu > resources.get("CPU", 0) or need_gpu > resources.get("GPU", 0):
            tracker.progress(
                f"warning: the Ray cluster has {resources.get('CPU', 0):g} CPU and {resources.get('GPU', 0):g} "
                f"GPU; {workers} scoring and {opts.embed_workers} embedding worker(s) need {need_cpu:g} CPU and "
                f"{need_gpu:g} GPU, so some wait until the cluster grows (lower --workers or the resources "
                "per worker)"
            )
        common: dict[str, Any] = {"num_cpus": cpw}
        if opts.memory_per_worker:
            common["memory"] = opts.memory_per_worker
            largest = _largest_node_memory(ray)
            if largest is not None and opts.memory_per_worker > largest:
                msg = (
                    f"--memory-per-worker {opts.memory_per_worker / 2**30:.1f} GiB is more than any node of the Ray "
                    f"cluster offers ({largest / 2**30:.1f} GiB): no worker could ever start"
                )
                if started and not opts.address:
                    raise SelectorError(msg + ". Lower --memory-per-worker.")
                tracker.progress(f"warning: {msg} until a larger node joins.")
        threads = max(1, int(cpw))
        env = _test_env()
        common["runtime_env"] = {"env_vars": thread_env(threads)}
        if opts.embed_workers:
            emb_cls = ray.remote(RayEmbedWorker).options(
                **common, num_gpus=embed_gpus, max_restarts=-1, max_task_retries=2
            )
            embedders = [emb_cls.remote(scorer.emb_cfg, threads, env) for _ in range(opts.embed_workers)]
        score_cls = ray.remote(RayScoreWorker).options(**common, num_gpus=score_gpus, max_concurrency=2)

        def new_scorer(slot: int) -> Any:
            return score_cls.remote(cfg, classifier_dir, threads, embedders, slot, env)

        scorers = [new_scorer(i) for i in range(workers)]
        tracker.progress(
            f"ray: {workers} scoring worker(s) ({cpw:g} CPU{f', {score_gpus:g} GPU' if score_gpus else ''} each)"
            + (
                f", {opts.embed_workers} embedding worker(s){f' ({embed_gpus:g} GPU each)' if embed_gpus else ''}"
                if opts.embed_workers
                else ""
            )
            + f"; cluster: {resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"
        )
        _ray_loop(ray, tasks, tracker, scorers, new_scorer)
    finally:
        for actor in scorers + embedders:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # an actor that is already gone
                pass
        if started:
            ray.shutdown()


def _ray_loop(
    ray: Any, tasks: list[Task], tracker: Tracker, scorers: list[Any], new_scorer: Callable[[int], Any]
) -> None:
    """One shard in flight per scoring actor that has started (one still waiting for resources gets none); a
    dead actor is replaced and its shard counted as a failed attempt; a shard that raised is retried."""
    from ray.exceptions import RayError, RayTaskError

    pending = deque(tasks)
    idle: deque[int] = deque()
    starting: dict[Any, int] = {}  # a started actor answers pid()
    inflight: dict[Any, tuple[int, Task]] = {}
    deaths = 0

    def start(slot: int, replace: bool) -> None:
        if replace:
            try:
                ray.kill(scorers[slot], no_restart=True)
            except Exception:  # already gone
                pass
            scorers[slot] = new_scorer(slot)
        starting[scorers[slot].pid.remote()] = slot

    def died(e: BaseException) -> None:
        nonlocal deaths
        if _init_failed(e):
            raise _start_error(e) from None
        deaths += 1
        if deaths > (tracker.retries + 1) * (len(scorers) + len(tasks)):
            raise SelectorError(f"Ray workers keep dying ({describe(e)}); stopping. Rerun to go on.")

    def poll() -> None:
        refs = {scorers[slot].progress.remote(): slot for slot, _ in inflight.values()}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=2.0)
        for ref in ready:
            try:
                state = ray.get(ref)
            except RayError:
                continue
            if state is not None:
                tracker.docs(*state)

    for slot in range(len(scorers)):
        start(slot, replace=False)
    while pending or inflight:
        while pending and idle:
            slot, task = idle.popleft(), pending.popleft()
            inflight[scorers[slot].score.remote(task)] = (slot, task)
            tracker.started(task)
        ready, _ = ray.wait([*inflight, *starting], num_returns=1, timeout=1.0)
        for ref in ready:
            if ref in starting:
                slot = starting.pop(ref)
                try:
                    ray.get(ref)
                except RayError as e:  # died while starting
                    died(e)
                    start(slot, replace=True)
                    continue
                idle.append(slot)
                continue
            slot, task = inflight.pop(ref)
            try:
                stats = ray.get(ref)
            except RayTaskError as e:  # the shard raised; the actor is fine
                if isinstance(e.cause, FATAL):
                    raise e.cause from None
                if _init_failed(e.cause):  # an embedding actor that cannot start
                    raise _start_error(e.cause) from None
                idle.append(slot)
                if tracker.retry(task, describe(e.cause if e.cause is not None else e)):
                    pending.append(task)
                continue
            except RayError as e:  # the actor died (killed, out of memory, node lost): replace it
                died(e)
                start(slot, replace=True)
                if tracker.retry(task, f"the Ray worker died ({describe(e)})"):
                    pending.appendleft(task)
                continue
            idle.append(slot)
            tracker.finished(stats)
        waiting = f"{len(starting)} worker(s) waiting for resources or starting" if starting else ""
        tracker.tick(poll, waiting)


def _init_failed(e: BaseException | None) -> bool:
    return bool(getattr(e, "actor_init_failed", False))


def _start_error(e: BaseException) -> SelectorError:
    """A Ray worker whose __init__ raised: the same error would stop every replacement, so the run stops."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    return SelectorError(
        f"a Ray worker could not start: {lines[-1].rstrip('.') if lines else type(e).__name__}. On a cluster of several "
        "machines, selector must be installed on each, and the classifier, the inputs and --out must be at the "
        "same paths on all of them (shared storage)."
    )


def run(
    executor: str,
    tasks: Iterable[Task],
    tracker: Tracker,
    cfg: Config,
    classifier_dir: str,
    scorer: ShardScorer,
    workers: int,
    ray_options: RayOptions | None,
) -> None:
    """Dispatch to `run_local` or `run_ray`."""
    todo = list(tasks)
    if not todo:
        return
    if executor == "ray":
        run_ray(todo, tracker, cfg, classifier_dir, scorer, workers, ray_options or RayOptions())
    else:
        run_local(todo, tracker, cfg, classifier_dir, scorer, workers)
