"""The local and Ray executors: the same parts and manifest from both; a driver or a worker killed with -9 at
any moment, then a rerun, gives exactly the outputs of an uninterrupted run; a failing shard is retried,
reported, and the others finish. Slow runs come from the test hook SELECTOR_TEST_BATCH_SLEEP (selector/
executors.py); kills wait for the first `.done` marker, never for a time."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from selector.cli import cli
from selector.core.config import load_config
from selector.core.paths import demo_corpus_dir
from selector.score.run import read_scores, score
from selector.select.build import select
from selector.train.run import train

from .conftest import REPO, quick_config

# a gate low enough that about half the demo documents are embedded, and batches small enough that every
# shard takes several (so the embedding stage is pipelined, and a slowed run can be interrupted mid-shard)
SCORE_ARGS = ["--gate", "0.15", "--batch-size", "10"]
N_SHARDS = 6
TIMINGS = ("seconds", "docs_per_second")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """The demo corpus dealt round-robin into six shards."""
    d = tmp_path_factory.mktemp("shards")
    rows = [
        line
        for f in sorted(demo_corpus_dir().glob("*.jsonl"))
        for line in f.read_text().splitlines()
        if line.strip()
    ]
    for i in range(N_SHARDS):
        (d / f"s{i}.jsonl").write_text("\n".join(rows[i::N_SHARDS]) + "\n")
    return d


@pytest.fixture(scope="module")
def clf(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clf") / "c"
    train([demo_corpus_dir()], quick_config(), out, progress=lambda m: None)
    return out


@pytest.fixture(scope="module")
def reference(shards, clf, tmp_path_factory) -> Path:
    """An uninterrupted local run of the command the kill tests run."""
    out = tmp_path_factory.mktemp("reference")
    res = CliRunner().invoke(cli, _score_args(shards, out, clf) + ["--silent"])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def ray_address():
    """A Ray instance for this module (2 CPUs): in-process runs join it, subprocess drivers get its address."""
    ray = pytest.importorskip("ray", reason="needs ray (pip install 'selector[ray]')")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _cfg():
    c = load_config()
    return c.replace("cascade", gate=0.15).replace("read", batch_size=10)


def _score_args(shards: Path, out: Path, clf: Path) -> list[str]:
    return ["score", str(shards), "--out", str(out), "--classifier", str(clf), *SCORE_ARGS]


def _two_worker_args(executor: str, shards: Path, out: Path, clf: Path, request) -> list[str]:
    """`selector score` with two workers of `executor` (on the test session's Ray cluster for ray)."""
    args = _score_args(shards, out, clf) + ["--workers", "2", "--executor", executor]
    if executor == "ray":
        args += ["--ray-address", request.getfixturevalue("ray_address")]
    return args


def _stats(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in TIMINGS}


def assert_same_outputs(a: Path, b: Path) -> None:
    """The same files in a/scores and b/scores, parts byte for byte, markers and stats (timings aside) equal."""
    sa, sb = a / "scores", b / "scores"
    names = sorted(p.name for p in sa.iterdir())
    assert names == sorted(p.name for p in sb.iterdir())
    assert len([n for n in names if n.endswith(".done")]) == N_SHARDS
    for name in names:
        if name.endswith((".parquet", ".done")):
            assert (sa / name).read_bytes() == (sb / name).read_bytes(), name
        elif name.endswith(".stats.json"):
            assert _stats(sa / name) == _stats(sb / name), name
    ra, rb = read_scores(a), read_scores(b)
    assert ra["doc_id"].n_unique() == ra.height == rb.height
    assert_frame_equal(ra, rb)


def _manifest(scores_dir: Path, out: Path) -> tuple[dict, pl.DataFrame]:
    select(scores_dir, out, _cfg(), progress=lambda m: None)
    m = json.loads((out / "manifest" / "manifest.json").read_text())
    for k in ("created_at", "scores_dir"):
        m.pop(k)
    return m, pl.read_parquet(out / "manifest" / "documents.parquet")


def test_ray_gives_the_same_scores_and_manifest_as_local(shards, clf, ray_address, tmp_path):
    from selector.score.executors import RayOptions

    cfg, quiet = _cfg(), (lambda m: None)
    local = score([shards], tmp_path / "local", clf, cfg, progress=quiet)
    lines: list[str] = []
    two = score([shards], tmp_path / "ray", clf, cfg, workers=2, progress=lines.append, executor="ray")
    staged = score(
        [shards], tmp_path / "staged", clf, cfg, workers=1, progress=quiet, executor="ray",
        ray=RayOptions(embed_workers=1),
    )  # fmt: skip
    tot = local.totals()
    assert 0.2 < tot["embedded_fraction"] < 0.8, tot
    for run in (two, staged):
        assert run.executor == "ray" and not run.failed
        assert {k: v for k, v in run.totals().items() if k not in ("seconds", "executor")} == {
            k: v for k, v in tot.items() if k not in ("seconds", "executor")
        }
    assert_same_outputs(tmp_path / "local", tmp_path / "ray")
    assert_same_outputs(tmp_path / "local", tmp_path / "staged")
    m_local, docs_local = _manifest(tmp_path / "local", tmp_path / "m_local")
    m_ray, docs_ray = _manifest(tmp_path / "ray", tmp_path / "m_ray")
    assert m_local == m_ray
    assert docs_local.height > 0 and docs_local.equals(docs_ray)
    assert lines[0].startswith("ray: 2 scoring worker(s) (1 CPU each)")
    assert sum(line.startswith("[") and f"/{N_SHARDS}] part-" in line for line in lines) == N_SHARDS


def test_progress_reports_parts_documents_rate_and_eta(shards, clf, tmp_path):
    lines: list[str] = []
    score([shards], tmp_path, clf, _cfg(), progress=lines.append, progress_every=0)
    heartbeat = [line for line in lines if line.startswith("scoring: ")]
    first = (
        "running; first batches of 10 documents in progress (a part reports after each batch; --batch-size"
    )
    assert heartbeat and all(
        ("documents scored" in h and "docs/s; ETA " in h) or first in h for h in heartbeat
    )
    assert any("running; " in h and " 0 running" not in h for h in heartbeat)  # parts in progress count
    parts = [line for line in lines if line.startswith("[")]
    assert len(parts) == N_SHARDS and parts[-1].startswith(f"[{N_SHARDS}/{N_SHARDS}] part-")
    assert parts[-1].endswith("ETA 0s")


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "selector.cli", *args],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_first_part(proc: subprocess.Popen, out: Path) -> None:
    deadline = time.time() + 120  # a guard against a hang, not a timing assertion
    while not list((out / "scores").glob("*.done")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no part finished"
        time.sleep(0.05)


def _pids(match) -> list[int]:
    """Processes whose /proc/PID/stat and cmdline satisfy `match(ppid, cmdline)`."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if match(ppid, cmd):
            out.append(int(d.name))
    return out


linux_only = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="finds worker processes in /proc"
)
SLOW = {"SELECTOR_TEST_BATCH_SLEEP": "0.2"}


@linux_only
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_driver_killed_then_rerun_gives_the_uninterrupted_outputs(
    executor, shards, clf, reference, request, tmp_path
):
    args = _two_worker_args(executor, shards, tmp_path, clf, request)
    proc = _spawn(args, SLOW)
    _wait_for_first_part(proc, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rerun = _spawn(args, {})
    stdout, stderr = rerun.communicate()
    assert rerun.returncode == 0, stderr
    reused = json.loads(stdout)["parts_reused"]
    assert 1 <= reused < N_SHARDS
    assert f"{reused} of {N_SHARDS} part(s) already finished; reusing them" in stderr
    assert_same_outputs(reference, tmp_path)


@linux_only
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_worker_killed_the_run_still_completes_identically(
    executor, shards, clf, reference, request, tmp_path
):
    args = _two_worker_args(executor, shards, tmp_path, clf, request)
    proc = _spawn(args, SLOW)
    _wait_for_first_part(proc, tmp_path)
    if executor == "local":
        workers = _pids(lambda ppid, cmd: ppid == proc.pid and "spawn_main" in cmd)
    else:
        workers = _pids(lambda ppid, cmd: cmd.startswith("ray::RayScoreWorker"))
    assert workers
    os.kill(workers[0], signal.SIGKILL)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    assert "failed (attempt 1 of 3)" in stderr and "died" in stderr and "; retrying" in stderr
    out = json.loads(stdout)
    assert out["complete"] and out["parts"] == N_SHARDS and out["failed"] == []
    assert_same_outputs(reference, tmp_path)


def test_failing_shard_is_retried_reported_and_the_rest_finish(shards, clf, reference, monkeypatch, tmp_path):
    monkeypatch.setenv("SELECTOR_TEST_FAIL", "s3.jsonl")
    res = CliRunner().invoke(cli, _score_args(shards, tmp_path, clf) + ["--retries", "1"])
    assert res.exit_code == 1
    bad = str(shards / "s3.jsonl")
    error = f"RuntimeError: test hook SELECTOR_TEST_FAIL='s3.jsonl' failed {bad}"
    assert res.stderr.splitlines()[-1] == (
        f"Error: 1 of {N_SHARDS} shard(s) failed after 2 attempt(s): part-00003 ({bad}): {error}. The other "
        "parts are finished; rerun the same command to retry the failed shards."
    )
    assert f"part-00003 ({bad}) failed (attempt 1 of 2): {error}; retrying" in res.stderr
    out = json.loads(res.stdout)
    failed = [{"part": "part-00003", "shard": bad, "error": error, "attempts": 2}]
    assert out["failed"] == failed and out["parts"] == N_SHARDS - 1 and not out["complete"]
    summary = json.loads((tmp_path / "scores" / "_summary.json").read_text())
    assert summary["failed"] == failed
    assert not (tmp_path / "scores" / "part-00003.done").exists()
    assert not list((tmp_path / "scores").glob(".*"))  # the failed attempts' temporary parts are gone
    # the fix the message names: the same command again, once the cause is gone
    monkeypatch.delenv("SELECTOR_TEST_FAIL")
    res = CliRunner().invoke(cli, _score_args(shards, tmp_path, clf) + ["--silent"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["parts_reused"] == N_SHARDS - 1
    assert_same_outputs(reference, tmp_path)


def test_failing_shard_on_ray_is_retried_and_reported(shards, clf, ray_address, monkeypatch, tmp_path):
    monkeypatch.setenv("SELECTOR_TEST_FAIL", "s1.jsonl")
    lines: list[str] = []
    s = score([shards], tmp_path, clf, _cfg(), workers=2, progress=lines.append, executor="ray", retries=1)
    assert [(f["part"], f["attempts"]) for f in s.failed] == [("part-00001", 2)]
    assert s.failed[0]["error"].startswith("RuntimeError: test hook SELECTOR_TEST_FAIL='s1.jsonl' failed")
    assert len(s.parts) == N_SHARDS - 1 and any("failed (attempt 1 of 2)" in line for line in lines)


def test_ray_worker_that_cannot_start_stops_the_run_with_the_cause(shards, clf, ray_address, tmp_path):
    """A worker whose classifier is not where the driver's is (no shared storage) would fail every
    replacement the same way: the run stops with the worker's error instead of retrying each shard."""
    from selector.core.errors import SelectorError
    from selector.read.formats import discover_shards
    from selector.score import executors
    from selector.score.cascade import ShardScorer, Task

    cfg = _cfg()
    tasks = [Task(i, sh, str(tmp_path), {}) for i, sh in enumerate(discover_shards([shards]))]
    tracker = executors.Tracker(tasks, lambda m: None, retries=2)
    missing = tmp_path / "not-on-this-node"
    with pytest.raises(SelectorError) as e:
        executors.run_ray(tasks, tracker, cfg, str(missing), ShardScorer(cfg, clf), 2, executors.RayOptions())
    assert str(e.value).startswith(
        f"a Ray worker could not start: selector.core.errors.ClassifierError: no classifier at {missing} "
    )
    assert "at the same paths on all of them (shared storage)" in str(e.value)
    assert tracker.attempts == {} and not list(tmp_path.glob("part-*"))


def test_missing_ray_says_what_to_install(shards, clf, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    res = CliRunner().invoke(cli, _score_args(shards, tmp_path / "o", clf) + ["--executor", "ray"])
    assert res.exit_code == 1
    assert res.output.startswith("Error: --executor ray needs Ray, which is not installed (")
    assert res.output.endswith(
        "Install it with pip install -e '.[ray]' in a checkout (scripts/install.sh does), pip install "
        "'selector[ray]' otherwise (or pip install 'ray>=2.9'), or use --executor local.\n"
    )
    assert not (tmp_path / "o").exists()


def test_ray_options_without_executor_ray_are_refused(shards, clf, tmp_path):
    res = CliRunner().invoke(cli, _score_args(shards, tmp_path, clf) + ["--embed-workers", "1"])
    assert res.exit_code == 2
    assert "Error: --embed-workers only apply with --executor ray." in res.output


def test_a_shard_that_kills_its_worker_is_the_only_one_charged(shards, clf, reference, monkeypatch, tmp_path):
    """Two workers; one shard's worker dies (SIGKILL) each time it runs: the pool breaks, but the healthy
    shard that was in flight beside it is resubmitted without losing an attempt, and finishes."""
    monkeypatch.setenv("SELECTOR_TEST_KILL", "s3.jsonl")
    monkeypatch.setenv("SELECTOR_TEST_BATCH_SLEEP", "0.2")
    res = CliRunner().invoke(cli, _score_args(shards, tmp_path, clf) + ["--workers", "2", "--retries", "1"])
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert [f["part"] for f in out["failed"]] == ["part-00003"]
    assert out["failed"][0]["error"].startswith("the worker process died")
    assert out["parts"] == N_SHARDS - 1


def _state(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "status").read_text().split("State:")[1].split()[0]
    except (OSError, IndexError):
        return "gone"


@linux_only
@pytest.mark.parametrize(
    "signame,target,code", [("SIGINT", "driver", 130), ("SIGINT", "group", 130), ("SIGTERM", "driver", 143)]
)
def test_an_interrupted_run_stops_its_workers_says_what_was_kept_and_reruns(
    signame, target, code, shards, clf, reference, request, tmp_path
):
    """Bug: SIGINT to the driver of a `--workers 2` run printed `Aborted!`, then hung in atexit joining the
    pool while both workers kept scoring (a second SIGINT printed a threading traceback); every abort exited 1
    and said nothing of what was kept. Ctrl-C (the whole process group) and SIGTERM end the same way."""
    args = _two_worker_args("local", shards, tmp_path, clf, request)
    proc = subprocess.Popen(
        [sys.executable, "-m", "selector.cli", *args],
        cwd=REPO,
        env={**os.environ, **SLOW},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives a command
    )
    _wait_for_first_part(proc, tmp_path)
    workers = _pids(lambda ppid, cmd: ppid == proc.pid and "spawn_main" in cmd)
    assert len(workers) == 2
    sig = getattr(signal, signame)
    t0 = time.time()
    if target == "group":
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    time.sleep(0.3)
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)  # a second one while it stops: no traceback either
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert time.time() - t0 < 10, "the driver waited for its workers"
    assert "Traceback" not in stderr and "Aborted!" not in stderr and "leaked" not in stderr, stderr
    done = len(list((tmp_path / "scores").glob("*.done")))
    assert 1 <= done < N_SHARDS
    assert stderr.strip().splitlines()[-1] == (
        f"Interrupted ({signame}): {done} of {N_SHARDS} part(s) are finished and kept in {tmp_path / 'scores'}; "
        f"run the same command again to finish the other {N_SHARDS - done} (finished parts are reused)."
    )
    assert all(_state(w) in ("gone", "Z") for w in workers)  # stopped, not scoring on
    time.sleep(1)
    assert len(list((tmp_path / "scores").glob("*.done"))) == done
    if target == "driver" and signame == "SIGINT":
        rerun = _spawn(args, {})
        stdout, err = rerun.communicate()
        assert rerun.returncode == 0, err
        assert json.loads(stdout)["parts_reused"] == done
        assert_same_outputs(reference, tmp_path)


def test_progress_before_the_first_batch_says_why_nothing_is_counted():
    """Bug: with 2 workers the heartbeat read `0 documents scored, 0 docs/s` for minutes, since parts report
    per batch (read.batch_size, 5,000 documents), not every 10 s as the README said."""
    from selector.read.formats import Shard
    from selector.score.cascade import Task
    from selector.score.executors import Tracker

    tasks = [Task(i, Shard(f"/d/{i}.jsonl", f"{i}.jsonl", "jsonl"), "/o", {}) for i in range(2)]
    lines: list[str] = []
    tr = Tracker(tasks, lines.append, retries=0, every=0, batch_size=5000)
    for t in tasks:
        tr.started(t)
    tr.tick()
    assert lines == [
        "scoring: 0/2 parts done, 2 running; first batches of 5,000 documents in progress (a part reports after "
        "each batch; --batch-size sets its size)"
    ]
    tr.docs(0, 5000)
    tr.tick()
    assert lines[-1].startswith("scoring: 0/2 parts done, 2 running; 5,000 documents scored, ")
