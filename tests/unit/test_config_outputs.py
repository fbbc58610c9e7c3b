"""Config keys of issue 15: [ui] metrics / images, [sync] pull / pull_max_mb."""

from __future__ import annotations

from pathlib import Path

import pytest

from devloop.core.config import ConfigError, load_config


def load(tmp_path: Path, toml: str):
    (tmp_path / "devloop.toml").write_text(toml)
    return load_config(tmp_path)


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "[project]\nname = 'x'\n")
    assert config.ui.metrics == () and config.ui.images == "auto"
    assert config.sync.pull == () and config.sync.pull_max_mb == 100
    assert config.sync.excluded == ()


def test_values_and_pulled_rules_are_excluded_from_the_sync(tmp_path: Path) -> None:
    config = load(tmp_path, '[ui]\nmetrics = ["loss", "val_acc"]\nimages = "halfblock"\n'
                            '[sync]\nexclude = ["data/"]\npull = ["results/", "figures/*.png"]\npull_max_mb = 5\n')
    assert config.ui.metrics == ("loss", "val_acc") and config.ui.images == "halfblock"
    assert config.sync.pull == ("results/", "figures/*.png") and config.sync.pull_max_mb == 5
    assert config.sync.excluded == ("data/", "results/", "figures/*.png")


@pytest.mark.parametrize("toml,words", [
    ('[ui]\nimages = "kity"\n', ["images", "kitty"]),
    ('[ui]\nmetrics = "loss"\n', ["metrics", "must be a list"]),
    ('[sync]\npull = ["[z-a]"]\n', ["pull", "gitignore"]),
    ('[sync]\npull_max_mb = 0\n', ["pull_max_mb"]),
    ('[sync]\npull = ["../shared/"]\n', ["sync.pull[0]", "outside the workdir", '"results/"']),
    ('[sync]\npull = ["out/../../x"]\n', ["sync.pull[0]", "outside the workdir"]),
    ('[ui]\nmetrics = [1]\n', ["ui.metrics[0]", 'fix: quote it: "1"']),
])
def test_bad_values_name_the_key_and_line(tmp_path: Path, toml: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, toml)
    text = str(info.value)
    assert "devloop.toml:2" in text and "fix:" in text
    for word in words:
        assert word in text
