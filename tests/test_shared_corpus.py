"""Integration checks on the real files of ../shared/corpus (skipped where it is absent)."""

from __future__ import annotations

from selector.core.config import ReadConfig
from selector.read.formats import ShardCounts, discover_shards, read_shard

from .conftest import SHARED, needs_shared


@needs_shared
def test_reads_a_real_dolma_common_crawl_shard():
    (shard,) = discover_shards([next((SHARED / "raw_formats").glob("dolma-*.jsonl.gz"))])
    counts = ShardCounts()
    n = sum(b.height for b in read_shard(shard, ReadConfig(), counts))
    assert n > 600
    assert counts.documents_in == n + counts.n_skipped


@needs_shared
def test_reads_every_haystack_shard_without_loss():
    for shard in discover_shards([SHARED / "haystack"]):
        counts = ShardCounts()
        n = sum(b.height for b in read_shard(shard, ReadConfig(batch_size=20000), counts))
        assert counts.documents_in == n + counts.n_skipped, shard.source
        assert n > 0
