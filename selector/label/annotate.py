"""Label documents with an LLM behind any OpenAI-compatible chat-completions server (vLLM, SGLang, llama.cpp,
Ollama, TGI, hosted APIs): `annotate_documents(docs, cfg, opts, strategy)` -> LABELS.csv + LABELS.json.

One request per document asks for every configured theme at once, with each theme's rubric from the config
(`[themes.<name>] rubric`), and must answer exactly `{"<theme>": {"label": "on"|"off"|"unsure", "reason":
"<one sentence>"}, ...}`. The JSON schema goes out as `response_format` (`json_schema`, the OpenAI and vLLM
form; where a server rejects it, llama.cpp's `json_object` + `schema`; where that is rejected too, none) and
every answer is validated either way: an answer that is not that JSON is asked again, then counted as
`unparseable`, never guessed. Answers are cached in SQLite keyed by (hash of the text sent, rubric hash,
model), committed one by one, so a killed run resumes and a rerun sends no request. The API key is read from
an environment variable, sent as `Authorization: Bearer` and never written anywhere.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import email.utils
import hashlib
import http.client
import io
import json
import logging
import os
import random
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from selector import __version__
from selector.core.config import AnnotateConfig, Config
from selector.core.errors import AnnotateError, ConfigError, InputError
from selector.core.labels import LLM_REVIEWER_PREFIX
from selector.core.paths import atomic_write

log = logging.getLogger(__name__)

LABEL_VALUES = ("on", "off", "unsure")
FORMS = ("json_schema", "json_object", "none")
RETRIED_STATUS = (408, 409, 425, 429)  # and every 5xx  # response_format forms, in the order they are tried
CSV_HEADER = ("doc_id", "theme", "label", "reviewer", "time", "reason")
SCHEMA_NAME = "theme_labels"

PROMPT_TEMPLATE = """You label web documents for a data-selection tool. For each theme below, decide whether \
the document, judged as a whole, is on that theme. A passing mention does not make a document on-theme. The \
themes are independent: a document can be on several of them or on none, and most web text is on none.

{themes}

Answer with only a JSON object, no other text, with exactly these keys: {keys}. Each value is an object \
{{"label": "on" | "off" | "unsure", "reason": "<one sentence>"}}: "on" when the document is on the theme, \
"off" when it is not, "unsure" only when the document cannot be decided; the reason is one short sentence \
about this document."""

DOCUMENT_TEMPLATE = "Document{note}:\n<<<\n{text}\n>>>"
REPAIR_TEMPLATE = (
    "That answer is not the JSON object asked for ({problem}). Answer again with only the JSON object, "
    "keys {keys}."
)


def answer_schema(themes: Sequence[str]) -> dict[str, Any]:
    """The JSON schema of an answer: one required object per theme with a label and a reason, nothing else."""
    one = {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": list(LABEL_VALUES)},
            "reason": {"type": "string"},
        },
        "required": ["label", "reason"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {t: one for t in themes},
        "required": list(themes),
        "additionalProperties": False,
    }


def system_prompt(cfg: Config) -> str:
    """The instructions sent with every document: the template filled with each theme's rubric."""
    blocks = "\n\n".join(f"## {t.name}\n{t.rubric}" for t in cfg.themes)
    return PROMPT_TEMPLATE.format(themes=blocks, keys=", ".join(f'"{t}"' for t in cfg.theme_names))


def rubric_hash(cfg: Config) -> str:
    """Hash of everything that defines the question: prompt templates, themes, rubrics and answer schema."""
    blob = json.dumps(
        {
            "templates": [PROMPT_TEMPLATE, DOCUMENT_TEMPLATE, REPAIR_TEMPLATE],
            "themes": [[t.name, t.rubric] for t in cfg.themes],
            "schema": answer_schema(cfg.theme_names),
        },
        sort_keys=True,
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def check_rubrics(cfg: Config) -> None:
    """Every theme needs a rubric to be annotated; the error names the themes without one."""
    missing = [t.name for t in cfg.themes if not t.rubric]
    if missing:
        keys = ", ".join(f"themes.{m}.rubric" for m in missing)
        raise ConfigError(
            f"{keys} {'is' if len(missing) == 1 else 'are'} empty in {cfg.source}: selector annotate sends each "
            "theme's rubric to the LLM. Write one (see the rubrics in configs/default.toml)."
        )


def cut_text(text: str, a: AnnotateConfig) -> tuple[str, bool]:
    """The text as sent and whether it was cut: at most `max_document_tokens` (estimated as characters /
    `chars_per_token`), the head and, for a long document, its last `tail_tokens`, with a marker between."""
    limit = int(a.max_document_tokens * a.chars_per_token)
    if len(text) <= limit:
        return text, False
    tail = int(a.tail_tokens * a.chars_per_token)
    head = limit - tail
    cut = len(text) - limit
    if tail:
        return f"{text[:head]}\n\n[... {cut:,} characters cut ...]\n\n{text[-tail:]}", True
    return f"{text[:head]}\n\n[... the last {cut:,} characters cut ...]", True


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def parse_answer(content: str, themes: Sequence[str]) -> tuple[dict[str, tuple[str, str]] | None, str]:
    """An answer's text -> ({theme: (label, reason)}, "") or (None, what is wrong with it). A JSON object in a
    ```json fence is accepted; prose, a missing or extra key, or a label outside on/off/unsure is not."""
    s = content.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", s, flags=re.DOTALL)
    if fence:
        s = fence.group(1)
    try:
        obj = json.loads(s)
    except ValueError:
        return None, "not JSON"
    if not isinstance(obj, dict):
        return None, f"a JSON {type(obj).__name__}, not an object"
    missing = [t for t in themes if t not in obj]
    extra = [k for k in obj if k not in themes]
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(map(str, extra[:5]))}"] if extra else []
        )
        return None, "; ".join(parts)
    out: dict[str, tuple[str, str]] = {}
    for t in themes:
        v = obj[t]
        if not isinstance(v, dict) or set(v) != {"label", "reason"}:
            return None, f'{t} is not an object with exactly "label" and "reason"'
        label, reason = v["label"], v["reason"]
        if label not in LABEL_VALUES:
            return None, f"{t}.label is {label!r}, not one of on, off, unsure"
        if not isinstance(reason, str):
            return None, f"{t}.reason is not a string"
        out[t] = (label, " ".join(reason.split()))
    return out, ""


def display_url(url: str) -> str:
    """The URL without credentials: no user:password, and no query parameter that looks like a secret."""
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{p.port}" if p.port else "")
    secret = re.compile(r"key|token|secret|password|passwd|auth|sig|credential", re.IGNORECASE)
    query = urllib.parse.urlencode(
        [(k, v) for k, v in urllib.parse.parse_qsl(p.query, keep_blank_values=True) if not secret.search(k)]
    )
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, query, ""))


def endpoint_base(url: str) -> str:
    """Validate an endpoint's base URL and drop a trailing slash and any user:password (sent as basic auth
    instead): `http://host:8000/v1/` -> `http://host:8000/v1`."""
    p = urllib.parse.urlsplit(url.strip())
    if p.scheme not in ("http", "https") or not p.hostname:
        raise ConfigError(
            f"--endpoint {display_url(url)!r} is not an http(s) URL; give the server's OpenAI-compatible base "
            "URL, e.g. http://127.0.0.1:8000/v1"
        )
    netloc = p.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path.rstrip("/"), p.query, ""))


def _password(basic_auth: str | None) -> str | None:
    if not basic_auth:
        return None
    return base64.b64decode(basic_auth.removeprefix("Basic ")).decode().partition(":")[2] or None


def _basic_auth(url: str) -> str | None:
    p = urllib.parse.urlsplit(url.strip())
    if p.username is None:
        return None
    user = urllib.parse.unquote(p.username)
    pw = urllib.parse.unquote(p.password or "")
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def _join(base: str, path: str) -> str:
    p = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit((p.scheme, p.netloc, f"{p.path}/{path}", p.query, ""))


@dataclass(frozen=True)
class AnnotateOptions:
    """What one annotation run talks to and writes: `out` is LABELS.csv (the card is its .json beside it, the
    cache `<out>.cache.sqlite` unless `cache` is given). `concurrency` None takes `annotate.concurrency`."""

    endpoint: str
    model: str
    out: Path
    budget: int
    cache: Path | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int | None = None
    retry_unparseable: bool = False

    @property
    def card_path(self) -> Path:
        return self.out.with_suffix(".json")

    @property
    def cache_path(self) -> Path:
        return self.cache if self.cache is not None else self.out.with_name(self.out.name + ".cache.sqlite")


# ---------------------------------------------------------------------------------------------- the client


class _DocFailed(Exception):
    """One document could not be answered (retries spent on HTTP errors, or a 4xx that no retry fixes)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class _ServerGone(Exception):
    """Retries spent on connection errors or timeouts: the server is down or no longer answering."""


class _Fatal(Exception):
    """An answer that no other document will get past either (an unknown model, a rejected API key)."""


@dataclass
class _Answer:
    status: str  # "answered" | "unparseable"
    labels: dict[str, tuple[str, str]] | None
    raw: str
    problem: str
    tokens_in: int
    tokens_out: int
    served_model: str | None
    form: str


class _Client:
    """A chat-completions client for one run: retries with backoff, the response_format fallback (shared by
    every thread, remembered for the run), usage counts. Nothing it raises or logs holds the API key."""

    def __init__(
        self,
        base: str,
        model: str,
        api_key: str | None,
        a: AnnotateConfig,
        key_env: str,
        basic_auth: str | None = None,
    ):
        self.base, self.model, self.a, self.key_env = base, model, a, key_env
        self._basic = basic_auth
        self._password = _password(basic_auth)
        self.shown = display_url(base)
        self._key = api_key
        self.has_key = api_key is not None
        self._lock = threading.Lock()
        self.form = FORMS[0]
        self.rejected_forms: list[str] = []
        self.requests = 0
        self.retries = 0
        self._rng = random.Random()

    def redact(self, text: str) -> str:
        """`text` (a server's answer or error) with the API key and any URL password replaced by ***."""
        for secret in (self._key, self._password):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            h["Authorization"] = f"Bearer {self._key}"
        elif self._basic:
            h["Authorization"] = self._basic
        return h

    def _http(self, method: str, url: str, body: bytes | None, timeout: float) -> tuple[int, Any, bytes]:
        """(status, headers, body) for any HTTP status; connection errors and timeouts raise OSError."""
        req = urllib.request.Request(url, data=body, method=method, headers=self._headers())
        with self._lock:
            self.requests += 1
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            try:
                data = e.read()
            except (OSError, http.client.HTTPException):
                data = b""
            return e.code, e.headers, data
        except urllib.error.URLError as e:
            reason = e.reason
            raise OSError(
                str(reason) if not isinstance(reason, BaseException) else _oserror_text(reason)
            ) from e
        except http.client.HTTPException as e:
            raise OSError(f"{type(e).__name__}: {e}") from e

    def check_reachable(self) -> None:
        """Fail fast when nothing answers at the endpoint (any HTTP status, even 401 or 404, will do)."""
        url = _join(self.base, "models")
        try:
            self._http("GET", url, None, min(10.0, self.a.timeout_s))
        except OSError as e:
            raise AnnotateError(
                f"selector annotate: cannot reach {self.shown}: {self.redact(_oserror_text(e))}. Is the server "
                "running?"
            ) from None

    def available_models(self) -> list[str] | None:
        try:
            status, _, data = self._http("GET", _join(self.base, "models"), None, min(10.0, self.a.timeout_s))
            if status != 200:
                return None
            return [str(m.get("id")) for m in json.loads(data).get("data", []) if isinstance(m, dict)]
        except (OSError, ValueError, AttributeError):
            return None

    def _downgrade(self, form: str) -> None:
        with self._lock:
            if self.form == form and form != FORMS[-1]:
                self.rejected_forms.append(form)
                self.form = FORMS[FORMS.index(form) + 1]
                log.info(
                    f"{self.shown} rejected response_format {form}; sending "
                    + (
                        f"{self.form} instead"
                        if self.form != "none"
                        else "none (answers are still validated)"
                    )
                )

    def _body(self, messages: list[dict[str, str]], schema: dict[str, Any], form: str) -> bytes:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.a.max_answer_tokens,
            "temperature": self.a.temperature,
        }
        if form == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": schema},
            }
        elif form == "json_object":
            body["response_format"] = {"type": "json_object", "schema": schema}
        return json.dumps(body).encode()

    def _delay(self, attempt: int, headers: Any) -> float:
        after = _retry_after(headers)
        if after is not None:
            return min(after, 600.0)
        d = min(self.a.max_backoff_s, self.a.backoff_s * 2**attempt)
        return d * (0.5 + 0.5 * self._rng.random())

    def chat(self, messages: list[dict[str, str]], schema: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """POST one chat completion -> (the response JSON, the response_format form it was sent with)."""
        url = _join(self.base, "chat/completions")
        attempt = 0
        while True:
            form = self.form
            headers: Any = None
            try:
                status, headers, data = self._http(
                    "POST", url, self._body(messages, schema, form), self.a.timeout_s
                )
            except OSError as e:
                problem = self.redact(_oserror_text(e))
                if attempt >= self.a.retries:
                    if _is_timeout(e):  # a slow answer: this document fails, the server may be fine
                        raise _DocFailed("timeout", f"no answer within {self.a.timeout_s:g} s") from None
                    raise _ServerGone(problem) from None
            else:
                text = self.redact(data.decode("utf-8", errors="replace"))
                if status == 200:
                    try:
                        resp = json.loads(text)
                    except ValueError:
                        resp = None
                    if isinstance(resp, dict):
                        return resp, form
                    problem = f"HTTP 200 with a body that is not JSON: {_short(text)}"
                    if attempt >= self.a.retries:
                        raise _DocFailed("bad_response", problem)
                elif status >= 400 and form != "none" and _names_response_format(text):
                    self._downgrade(form)
                    continue  # the same request in the next form; not a retry
                elif status == 404 or _model_unknown(text):
                    raise _Fatal(self._model_message(status, text))
                elif status in (401, 403):
                    raise _Fatal(
                        f"{self.shown} refused the request with HTTP {status}: {_short(text)}. "
                        + (
                            f"Check the API key in ${self.key_env}."
                            if self._key
                            else f"No API key was sent: ${self.key_env} is not set (or use --api-key-env NAME)."
                        )
                    )
                elif status in RETRIED_STATUS or status >= 500:
                    problem = f"HTTP {status}: {_short(text)}"
                    if attempt >= self.a.retries:
                        raise _DocFailed(f"http_{status}", problem)
                else:
                    raise _DocFailed(f"http_{status}", f"HTTP {status}: {_short(text)}")
            with self._lock:
                self.retries += 1
            time.sleep(self._delay(attempt, headers))
            attempt += 1

    def _model_message(self, status: int, text: str) -> str:
        models = self.available_models()
        if models:
            listed = ", ".join(models[:20]) + (f" and {len(models) - 20} more" if len(models) > 20 else "")
            hint = f"it serves: {listed}. Pass one of them as --model."
        elif models is None:
            hint = (
                f"{_join(self.shown, 'models')} lists no models either: is {self.shown} the server's "
                "OpenAI-compatible base URL (usually ending in /v1)?"
            )
        else:
            hint = "it lists no models."
        return f"model {self.model!r} not found at {self.shown} (HTTP {status}: {_short(text)}); {hint}"

    def annotate(self, system: str, document: str, themes: Sequence[str]) -> _Answer:
        """Ask for one document's labels; an invalid answer is asked again (`answer_retries`) with what was
        wrong with it, then returned as unparseable."""
        schema = answer_schema(themes)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": document}]
        tokens_in = tokens_out = 0
        keys = ", ".join(f'"{t}"' for t in themes)
        for attempt in range(self.a.answer_retries + 1):
            resp, form = self.chat(messages, schema)
            got = resp.get("usage")
            usage: dict[str, Any] = got if isinstance(got, dict) else {}
            tokens_in += _int(usage.get("prompt_tokens"))
            tokens_out += _int(usage.get("completion_tokens"))
            content = _content(resp)
            served = resp.get("model") if isinstance(resp.get("model"), str) else None
            if content is None:
                labels, problem, raw = None, "no message content in the response", _short(json.dumps(resp))
            else:
                raw = self.redact(content)
                labels, problem = parse_answer(raw, themes)
                if labels is None and _finish_reason(resp) == "length":
                    problem += f" (cut at max_answer_tokens = {self.a.max_answer_tokens})"
            if labels is not None:
                return _Answer("answered", labels, raw, "", tokens_in, tokens_out, served, form)
            if attempt < self.a.answer_retries:
                messages = [
                    *messages[:2],
                    {"role": "assistant", "content": raw[:2000]},
                    {"role": "user", "content": REPAIR_TEMPLATE.format(problem=problem, keys=keys)},
                ]
        return _Answer("unparseable", None, raw, problem, tokens_in, tokens_out, served, form)


def _content(resp: dict[str, Any]) -> str | None:
    try:
        c = resp["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return c if isinstance(c, str) else None


def _finish_reason(resp: dict[str, Any]) -> str | None:
    try:
        return str(resp["choices"][0]["finish_reason"])
    except (KeyError, IndexError, TypeError):
        return None


def _int(v: Any) -> int:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0


def _short(text: str, n: int = 300) -> str:
    t = " ".join(text.split())
    return t if len(t) <= n else t[:n] + "..."


def _oserror_text(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _is_timeout(e: BaseException) -> bool:
    return isinstance(e, TimeoutError) or isinstance(e.__cause__, TimeoutError) or "timed out" in str(e)


def _names_response_format(text: str) -> bool:
    t = text.lower()
    return "response_format" in t or "json_schema" in t or "response format" in t


def _model_unknown(text: str) -> bool:
    return bool(
        re.search(
            r"model_not_found|model\W.{0,120}(not found|does not exist|doesn't exist|no such)",
            text,
            re.I,
        )
    )


def _retry_after(headers: Any) -> float | None:
    v = headers.get("Retry-After") if headers is not None else None
    if not v:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# ----------------------------------------------------------------------------------------------- the cache


class AnswerCache:
    """SQLite (WAL, one commit per answer) of answers keyed by (text hash, rubric hash, model)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS answers (text_sha TEXT NOT NULL, rubric_hash TEXT NOT NULL, "
                "model TEXT NOT NULL, status TEXT NOT NULL, labels TEXT, raw TEXT, problem TEXT, "
                "tokens_in INTEGER, tokens_out INTEGER, served_model TEXT, form TEXT, answered_at TEXT NOT NULL, "
                "PRIMARY KEY (text_sha, rubric_hash, model))"
            )
        except sqlite3.DatabaseError as e:
            raise InputError(
                f"{path} is not a usable annotation cache ({e}); delete it or pass --cache PATH."
            ) from e
        self.path = path

    def get(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        cur = self.db.execute(
            "SELECT status, labels, answered_at, form FROM answers WHERE text_sha=? AND rubric_hash=? AND model=?",
            key,
        )
        row = cur.fetchone()
        if row is None:
            return None
        return {
            "status": row[0],
            "labels": json.loads(row[1]) if row[1] else None,
            "time": row[2],
            "form": row[3],
        }

    def put(self, key: tuple[str, str, str], a: _Answer, when: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *key,
                a.status,
                json.dumps(a.labels) if a.labels is not None else None,
                a.raw,
                a.problem,
                a.tokens_in,
                a.tokens_out,
                a.served_model,
                a.form,
                when,
            ),
        )

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        self.db.close()


# ------------------------------------------------------------------------------------------------- the run


@dataclass
class _Doc:
    doc_id: str
    key: tuple[str, str, str]
    via: str = ""  # "cache" | "asked" | "same_text" (another document with the same text was asked)
    result: dict[str, Any] | None = None  # {"status", "labels", "time"} once answered or read from the cache
    failed: str = ""  # why it has no answer: a failure reason, or "not_sent" after the run stopped


@dataclass
class _Tally:
    requested: int = 0
    empty: int = 0
    duplicate_ids: int = 0
    truncated: int = 0
    asked: int = 0  # documents sent to the server and finished (answered, unparseable or failed)
    tokens_in: int = 0
    tokens_out: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    served_models: Counter[str] = field(default_factory=Counter)


class _Progress:
    """A progress line on stderr at most every `every` seconds: documents asked, rate, tokens, ETA."""

    def __init__(self, progress: Callable[[str], None], every: float = 2.0):
        self.progress, self.every = progress, every
        self.t0 = time.monotonic()
        self.last = 0.0
        self.shown = ""

    def tick(self, t: _Tally, to_ask: int, cached: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        rate = t.asked / max(now - self.t0, 1e-9)
        left = to_ask - t.asked
        eta = f", ETA {_duration(left / rate)}" if rate > 0 and left > 0 else ""
        line = (
            f"annotate: {t.asked:,}/{to_ask:,} documents asked, {cached:,} from the cache, {rate:.2f} docs/s, "
            f"tokens {t.tokens_in:,} in / {t.tokens_out:,} out{eta}"
        )
        if force and line.split(", ETA")[0] == self.shown.split(", ETA")[0]:
            return  # the last line said it already
        self.shown = line
        self.progress(line)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _effective(cfg: Config, opts: AnnotateOptions) -> AnnotateConfig:
    if opts.concurrency is None:
        return cfg.annotate
    return cfg.replace("annotate", concurrency=opts.concurrency).annotate


def annotate_documents(
    docs: Iterable[tuple[str, str]],
    cfg: Config,
    opts: AnnotateOptions,
    strategy: str,
    progress: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """Label the first `opts.budget` of `docs` ((doc_id, text) pairs) for every configured theme with the LLM
    at `opts.endpoint`; write `opts.out` (doc_id, theme, label, reviewer, time, reason) and its card
    (`opts.card_path`, which records `strategy`: how the documents were chosen), and return the card.
    Raises AnnotateError when the endpoint cannot be reached, does not serve the model, stops answering, or
    some documents failed (what was answered is written and cached first: rerunning resumes)."""
    check_rubrics(cfg)
    if opts.budget < 1:
        raise ConfigError(f"--budget must be at least 1 document, got {opts.budget}")
    a = _effective(cfg, opts)
    base = endpoint_base(opts.endpoint)
    themes = cfg.theme_names
    rhash = rubric_hash(cfg)
    system = system_prompt(cfg)
    key = os.environ.get(opts.api_key_env) or None
    client = _Client(base, opts.model, key, a, opts.api_key_env, _basic_auth(opts.endpoint))
    t0 = time.monotonic()
    tally = _Tally()
    order: list[_Doc] = []
    waiting: dict[tuple[str, str, str], list[_Doc]] = {}
    pending: dict[Future[_Answer], tuple[str, str, str]] = {}
    seen_ids: set[str] = set()
    stop: dict[str, str] = {}  # "fatal" or "gone" -> the message, once the run must end
    meter = _Progress(progress)
    cache = AnswerCache(opts.cache_path)

    def finish(fut: Future[_Answer]) -> None:
        group = waiting.pop(pending.pop(fut))
        tally.asked += 1
        reason = ""
        try:
            ans = fut.result()
        except _Fatal as e:
            stop.setdefault("fatal", str(e))
            reason = "fatal"
        except _ServerGone as e:
            stop.setdefault("gone", str(e))
            reason = "connection"
        except _DocFailed as e:
            log.warning(f"{group[0].doc_id}: failed: {e}")
            reason = e.reason
        if reason:
            for d in group:
                d.failed = reason
            return
        when = _now()
        cache.put(group[0].key, ans, when)
        tally.tokens_in += ans.tokens_in
        tally.tokens_out += ans.tokens_out
        if ans.served_model:
            tally.served_models[ans.served_model] += 1
        if ans.status != "answered":
            tally.problems[ans.problem] += 1
            log.warning(f"{group[0].doc_id}: unparseable answer ({ans.problem}): {_short(ans.raw, 160)}")
        for d in group:
            d.result = {"status": ans.status, "labels": ans.labels, "time": when, "form": ans.form}

    def drain(limit: int) -> None:
        while len(pending) > limit:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for f in done:
                finish(f)
            # to ask: those asked or in flight, and (at most) every document of the budget not read yet
            meter.tick(tally, tally.asked + len(pending) + opts.budget - tally.requested, _n(order, "cache"))

    pool = ThreadPoolExecutor(max_workers=a.concurrency, thread_name_prefix="annotate")
    try:
        for doc_id, text in islice(docs, opts.budget):
            tally.requested += 1
            doc_id = str(doc_id)
            if doc_id in seen_ids:
                tally.duplicate_ids += 1
                continue
            seen_ids.add(doc_id)
            if not isinstance(text, str) or not text.strip():
                tally.empty += 1
                continue
            sent, was_cut = cut_text(text, a)
            tally.truncated += was_cut
            d = _Doc(doc_id, (text_hash(sent), rhash, opts.model))
            order.append(d)
            if d.key in waiting:
                d.via = "same_text"
                waiting[d.key].append(d)
                continue
            hit = cache.get(d.key)
            if hit is not None and not (opts.retry_unparseable and hit["status"] != "answered"):
                d.via, d.result = "cache", hit
                continue
            if stop:
                d.failed = "not_sent"
                continue
            if tally.asked == 0 and not pending:
                client.check_reachable()
            note = " (long: cut to its beginning and end)" if was_cut else ""
            d.via = "asked"
            fut = pool.submit(client.annotate, system, DOCUMENT_TEMPLATE.format(note=note, text=sent), themes)
            pending[fut] = d.key
            waiting[d.key] = [d]
            drain(2 * a.concurrency - 1)
        drain(0)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        cache.close()
        raise
    pool.shutdown(wait=True)
    n_cached = cache.count()
    cache.close()
    meter.tick(tally, tally.asked, _n(order, "cache"), force=True)
    if not order:
        raise InputError(
            f"no documents to annotate: the input gave {tally.requested} document(s)"
            + (f" ({tally.empty} empty, {tally.duplicate_ids} with a repeated id)" if tally.requested else "")
            + ". Check the input and --text-column."
        )
    card = _card(cfg, opts, client, strategy, rhash, tally, order, time.monotonic() - t0, n_cached)
    docs_card = card["documents"]
    if docs_card["answered"] or not stop:
        _write_labels(opts.out, order, themes, opts.model)
        atomic_write(opts.card_path, json.dumps(card, indent=2) + "\n")
    done_msg = (
        f"{docs_card['answered'] + docs_card['unparseable']:,} of {len(order):,} documents are answered and "
        f"cached in {opts.cache_path}"
    )
    if "fatal" in stop:
        raise AnnotateError(f"selector annotate: {stop['fatal']}")
    left = docs_card["failed"] + docs_card["not_sent"]
    if "gone" in stop:
        raise AnnotateError(
            f"selector annotate: {client.shown} stopped answering ({stop['gone']}; {a.retries + 1} attempt(s)); "
            f"{done_msg}: rerun the same command to resume ({left:,} left)."
        )
    if docs_card["failed"]:
        reasons = ", ".join(f"{k} x{v}" for k, v in sorted(card["failures"].items()))
        raise AnnotateError(
            f"selector annotate: {docs_card['failed']:,} document(s) failed at {client.shown} ({reasons}); "
            f"{done_msg} and written to {opts.out}: rerun the same command to retry the failed ones."
        )
    return card


def _n(order: list[_Doc], via: str) -> int:
    return sum(1 for d in order if d.via == via)


def _write_labels(out: Path, order: list[_Doc], themes: Sequence[str], model: str) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    reviewer = f"{LLM_REVIEWER_PREFIX}{model}"
    for d in order:
        r = d.result
        if r is None or r["status"] != "answered":
            continue
        for t in themes:
            label, reason = r["labels"][t]
            w.writerow([d.doc_id, t, label, reviewer, r["time"], reason])
    atomic_write(out, buf.getvalue())


def _card(
    cfg: Config,
    opts: AnnotateOptions,
    client: _Client,
    strategy: str,
    rhash: str,
    t: _Tally,
    order: list[_Doc],
    seconds: float,
    n_cached: int,
) -> dict[str, Any]:
    counts: dict[str, dict[str, int]] = {th: dict.fromkeys(LABEL_VALUES, 0) for th in cfg.theme_names}
    status = Counter(d.result["status"] if d.result is not None else "failed" for d in order)
    for d in order:
        if d.result is not None and d.result["status"] == "answered":
            for th in cfg.theme_names:
                counts[th][d.result["labels"][th][0]] += 1
    failures = Counter(d.failed for d in order if d.failed and d.failed != "not_sent")
    forms = Counter(d.result["form"] for d in order if d.result is not None and d.result.get("form"))
    return {
        "selector_version": __version__,
        "created": _now(),
        "labels_file": str(opts.out),
        "reviewer": f"{LLM_REVIEWER_PREFIX}{opts.model}",
        "endpoint": {
            "url": client.shown,
            "model": opts.model,
            "served_model": sorted(t.served_models),
            # the form the answers were asked with (this run's, or the cached answers' where none was asked)
            "response_format": forms.most_common(1)[0][0] if forms else client.form,
            "response_formats": dict(forms.most_common()),
            "response_format_rejected": list(client.rejected_forms),
            "api_key_env": opts.api_key_env,
            "api_key_sent": client.has_key,
        },
        "rubric_hash": rhash,
        "themes": cfg.theme_names,
        "strategy": strategy,
        "documents": {
            "requested": t.requested,
            "answered": status["answered"],
            "unparseable": status["unparseable"],
            "failed": sum(failures.values()),
            "not_sent": sum(1 for d in order if d.failed == "not_sent"),
            "asked": t.asked,
            "cache_hits": _n(order, "cache"),
            "same_text": _n(order, "same_text"),
            "empty": t.empty,
            "duplicate_ids": t.duplicate_ids,
            "truncated": t.truncated,
        },
        "failures": dict(sorted(failures.items())),
        "unparseable_reasons": dict(t.problems.most_common()),
        "labels": counts,
        "tokens": {"in": t.tokens_in, "out": t.tokens_out},
        "requests": {"http": client.requests, "retries": client.retries},
        "seconds": round(seconds, 2),
        "cache": {"path": str(opts.cache_path), "answers": n_cached},
        "config": {"source": cfg.source, "annotate": dataclasses.asdict(_effective(cfg, opts))},
    }


def annotate_inputs(
    inputs: Sequence[str | Path],
    cfg: Config,
    opts: AnnotateOptions,
    progress: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """`annotate_documents` on the first `opts.budget` documents of INPUTS (files, directories, globs) in
    reading order."""
    from selector.read.formats import read_documents

    def docs() -> Iterable[tuple[str, str]]:
        for batch in read_documents(inputs, cfg.read):
            yield from zip(batch["doc_id"].to_list(), batch["text"].to_list(), strict=True)

    return annotate_documents(
        docs(), cfg, opts, f"the first {opts.budget:,} documents of the input in reading order", progress
    )
