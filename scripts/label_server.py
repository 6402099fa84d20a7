"""An OpenAI-compatible chat-completions server that answers `selector annotate` from labels a person already
gave: for simulating the labelling loop on a labelled corpus (scripts/label_curve.py, tests), and for
checking the loop end to end against a real HTTP server.

It recognises the document in each request by its text (the longest run of the prompt that starts a known
document's text, as `selector annotate` sends each document's head) and answers every theme the request's
schema asks for: `on` for the document's labelled themes, `off` for the others, `unsure` where the document
is unlabelled (`meta.themes` null) or unknown. It serves POST /v1/chat/completions and GET /v1/models.

    python scripts/label_server.py --docs ../shared/corpus/themes ../shared/corpus/haystack --port 8765
    selector annotate --scores runs/dev --endpoint http://127.0.0.1:8765/v1 --model labels --budget 1000 \\
        --out labels/r1.csv

Documents: JSONL(.gz) files or directories of them, each line {"id", "text", "meta": {"themes": [...]}};
`--off-unlabelled` answers `off` (not `unsure`) for documents without `meta.themes` (a haystack assumed
off-theme).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

KEY_CHARS = (
    160  # a document is recognised by the first KEY_CHARS characters of its whitespace-normalised text
)


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def documents(paths: list[str]) -> Iterator[dict[str, Any]]:
    for p in map(Path, paths):
        files = sorted(p.rglob("*.jsonl*")) if p.is_dir() else [p]
        for f in files:
            opener: Any = gzip.open if f.suffix == ".gz" else open
            with opener(f, "rt", encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        yield json.loads(line)


class Labels:
    def __init__(self, paths: list[str], off_unlabelled: bool):
        self.by_key: dict[str, list[str] | None] = {}
        for d in documents(paths):
            labs = (d.get("meta") or {}).get("themes")
            if labs is None and off_unlabelled and "themes" not in (d.get("meta") or {}):
                labs = []
            self.by_key[norm(d["text"])[:KEY_CHARS]] = labs
        self.short = sorted({len(k) for k in self.by_key if len(k) < KEY_CHARS}, reverse=True)
        self.asked = 0
        self.unknown = 0

    def find(self, prompt: str) -> list[str] | None | bool:
        """The labelled themes of the document in `prompt`; None if unlabelled; False if unknown."""
        text = norm(prompt)
        # a document starts the prompt or follows a space (selector annotate sends "Document:\n<<<\n<text>")
        starts = [0] + [m.end() for m in re.finditer(" ", text)]
        for start in starts:
            for n in (KEY_CHARS, *self.short):
                key = text[start : start + n]
                if key in self.by_key:
                    return self.by_key[key]
        return False

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        self.asked += 1
        user = "\n".join(m.get("content", "") for m in request.get("messages", []) if m.get("role") == "user")
        rf = request.get("response_format") or {}
        schema = (rf.get("json_schema") or {}).get("schema") or rf.get("schema") or {}
        themes = list(schema.get("required") or schema.get("properties") or [])
        found = self.find(user)
        if found is False:
            self.unknown += 1
        out = {}
        for t in themes:
            if found is False or found is None:
                out[t] = {"label": "unsure", "reason": "the labeller has no label for this document"}
            elif t in found:
                out[t] = {"label": "on", "reason": "a person labelled it on-theme"}
            else:
                out[t] = {"label": "off", "reason": "a person labelled it off-theme"}
        return out


def serve(labels: Labels, host: str, port: int, model: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def _send(self, status: int, obj: Any) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, {"object": "list", "data": [{"id": model, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:  # noqa: N802
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            if req.get("model") != model:
                self._send(404, {"error": {"message": f"The model `{req.get('model')}` does not exist."}})
                return
            content = json.dumps(labels.answer(req))
            self._send(
                200,
                {
                    "id": f"labels-{labels.asked}",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": content},
                        }
                    ],
                    "usage": {"prompt_tokens": len(str(req)) // 4, "completion_tokens": len(content) // 4},
                },
            )

    return ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", nargs="+", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--model", default="labels")
    ap.add_argument("--off-unlabelled", action="store_true")
    args = ap.parse_args()
    labels = Labels(args.docs, args.off_unlabelled)
    server = serve(labels, args.host, args.port, args.model)
    print(
        f"serving {len(labels.by_key):,} labelled documents on http://{args.host}:{args.port}/v1",
        file=sys.stderr,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print(f"answered {labels.asked:,} requests ({labels.unknown:,} documents unknown)", file=sys.stderr)


if __name__ == "__main__":
    main()
