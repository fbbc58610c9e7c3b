"""The `ready` event's package list: read from dist-info / egg-info names, it must say what
importlib.metadata says (that is what `devloop doctor` compares with the local machine)."""

from __future__ import annotations

import sys
from importlib import metadata

from devloop.agent.kernel import installed_packages


def canonical(name: str) -> str:
    return "-".join(name.replace("_", "-").replace(".", "-").lower().split("-"))


def test_matches_importlib_metadata_for_this_environment() -> None:
    expected: dict[str, str] = {}
    for dist in metadata.distributions():
        expected.setdefault(canonical(dist.metadata["Name"]), dist.version)
    assert installed_packages() == expected


def test_egg_info_without_a_version_in_its_name_is_read_from_pkg_info(tmp_path, monkeypatch) -> None:
    (tmp_path / "My_Pkg.egg-info").mkdir()
    (tmp_path / "My_Pkg.egg-info" / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: My-Pkg\nVersion: 0.3.1\n\nbody\n")
    (tmp_path / "other-2.0-py3.8.egg-info").write_text("Name: other\nVersion: 2.0\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    assert installed_packages() == {"my-pkg": "0.3.1", "other": "2.0"}
