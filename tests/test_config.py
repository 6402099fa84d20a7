from __future__ import annotations

from pathlib import Path

import pytest

from selector.core.config import config_from_dict, load_config
from selector.core.errors import ConfigError

from .conftest import REPO


def test_default_config_loads_with_four_themes():
    cfg = load_config()
    assert cfg.theme_names == ["honesty", "cooperation", "cooperative_ai", "ai_risk"]
    assert cfg.theme("ai_risk").upsample is False
    assert all(t.seeds.exists() for t in cfg.themes)


def test_hash_is_stable_and_tracks_changes():
    a, b = load_config(), load_config()
    assert a.hash() == b.hash()
    assert a.replace("cascade", embedding_weight=0.5).hash() != a.hash()


def _raw(**section):
    raw = {"themes": {"honesty": {"seeds": str(REPO / "configs/seeds/honesty.jsonl")}}}
    raw.update(section)
    return raw


@pytest.mark.parametrize(
    "section,message",
    [
        ({"train": {"sample_size": 0}}, "train.sample_size must be >= 10, got 0"),
        (
            {"cascade": {"gate": "sometimes"}},
            "cascade.gate must be \"auto\" or a number in [0, 1], got 'sometimes'",
        ),
        ({"fasttext": {"mode": "softmax"}}, 'fasttext.mode must be one of "ova", "binary", got \'softmax\''),
        ({"read": {"batch_size": 2.5}}, "read.batch_size must be an integer, got 2.5"),
        ({"embedding": {"modle": "x"}}, "unknown key embedding.modle; known keys: model, max_tokens"),
        ({"selekt": {}}, "unknown section [selekt]"),
        (
            {"select": {"domain_cap_min_documents": -1}},
            "select.domain_cap_min_documents must be >= 0 (an integer), got -1",
        ),
    ],
)
def test_invalid_values_name_the_key(section, message):
    with pytest.raises(ConfigError) as e:
        config_from_dict(_raw(**section), Path("."))
    assert message in str(e.value)


def test_missing_config_file_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="not found. Pass --config PATH"):
        load_config(tmp_path / "nope.toml")


def test_theme_threshold_validated():
    raw = _raw()
    raw["themes"]["honesty"]["threshold"] = 2
    with pytest.raises(
        ConfigError, match=r"themes.honesty.threshold must be \"auto\" or a number in \[0, 1\], got 2"
    ):
        config_from_dict(raw, Path("."))


def test_extends_overrides_only_the_keys_it_sets(tmp_path):
    child = tmp_path / "mine.toml"
    child.write_text(f'extends = "{REPO}/configs/default.toml"\n[train]\nsample_size = 500\n')
    cfg, base = load_config(child), load_config()
    assert cfg.train.sample_size == 500
    assert cfg.train.seed == base.train.seed and cfg.themes == base.themes


def test_demo_config_extends_the_default():
    from selector.core.paths import demo_config_path

    demo, base = load_config(demo_config_path()), load_config()
    assert demo.train.pseudo_positive_fraction > base.train.pseudo_positive_fraction
    assert demo.embedding == base.embedding


def test_extends_loop_is_an_error(tmp_path):
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ConfigError, match="extends loops back"):
        load_config(tmp_path / "a.toml")


def test_select_section_and_theme_targets_validated():
    raw = _raw()
    raw["select"] = {"rule": "loudest"}
    with pytest.raises(ConfigError, match=r'select.rule must be one of "score", "uniform", got \'loudest\''):
        config_from_dict(raw, REPO / "configs")
    raw = _raw()
    raw["select"] = {"exclude_above": {"ai_harm": 0.5}}
    with pytest.raises(ConfigError, match=r"select.exclude_above.ai_harm: unknown theme"):
        config_from_dict(raw, REPO / "configs")
    raw = _raw()
    raw["themes"]["honesty"]["target_share"] = 0.01
    raw["themes"]["honesty"]["target_tokens"] = 1000
    with pytest.raises(ConfigError, match=r"themes.honesty: set target_share or target_tokens, not both"):
        config_from_dict(raw, REPO / "configs")
    raw = _raw()
    raw["themes"]["ai_risk"] = {"seeds": str(REPO / "configs/seeds/ai_risk.jsonl"), "upsample": False}
    raw["themes"]["ai_risk"]["target_share"] = 0.01
    with pytest.raises(ConfigError, match=r"themes.ai_risk: upsample = false, so it takes no target_share"):
        config_from_dict(raw, REPO / "configs")
    raw = _raw()
    for t in ("honesty", "cooperation", "cooperative_ai"):
        raw["themes"][t] = {"seeds": str(REPO / f"configs/seeds/{t}.jsonl"), "target_share": 0.4}
    with pytest.raises(ConfigError, match=r"target_share values add up to 1.2; they must stay below 1"):
        config_from_dict(raw, REPO / "configs")
    raw = _raw()
    raw["select"] = {"total_tokens": "lots"}
    with pytest.raises(ConfigError, match=r'select.total_tokens must be "auto" or an integer >= 1'):
        config_from_dict(raw, REPO / "configs")
