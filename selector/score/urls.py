"""URL helpers."""

from __future__ import annotations

from urllib.parse import urlsplit

import polars as pl


def domain_of(url: str | None) -> str | None:
    """The host of a URL without a leading `www.` (`https://www.example.org/a` -> `example.org`), else None."""
    if not url:
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host:
        return None
    return host[4:] if host.startswith("www.") else host


def domain_expr(col: str = "url") -> pl.Expr:
    """`domain_of` for a column, vectorized: the host of `scheme://[user@]host[:port]/...`, lowercased, without
    a leading `www.`; null where there is no such host."""
    host = (
        pl.col(col)
        .str.extract(r"^[A-Za-z][A-Za-z0-9+.\-]*://(?:[^@/?#]*@)?([^/:?#\[\]]+)", 1)
        .str.to_lowercase()
    )
    return pl.when(host.str.starts_with("www.")).then(host.str.slice(4)).otherwise(host)
