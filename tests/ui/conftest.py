"""UI test fixtures: snapshots stored in the top-level `snapshots/` folder, fake event feeds.

pytest-textual-snapshot's `snap_compare` asks syrupy's `snapshot` fixture for its SVG extension
(`snapshot.use_extension(SVGImageExtension)`), which stores files under the test's own
`__snapshots__/`. Overriding `snapshot` here with an assertion whose `use_extension` swaps in a
subclass that points `dirname` at `<repo>/snapshots/` keeps the plugin's comparison and report
untouched.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_textual_snapshot import SVGImageExtension
from syrupy.assertion import SnapshotAssertion

SNAPSHOT_DIR = Path(__file__).resolve().parents[2] / "snapshots"


class TopLevelSVGExtension(SVGImageExtension):
    """SVG snapshots as `snapshots/<test module>/<test name>.svg`."""

    @classmethod
    def dirname(cls, *, test_location) -> str:  # noqa: ANN001 - syrupy's PyTestLocation
        return str(SNAPSHOT_DIR / test_location.basename)


class TopLevelSnapshotAssertion(SnapshotAssertion):
    def use_extension(self, extension_class=None):  # noqa: ANN001 - syrupy signature
        if extension_class is SVGImageExtension:
            extension_class = TopLevelSVGExtension
        return super().use_extension(extension_class)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return TopLevelSnapshotAssertion(
        session=snapshot.session,
        extension_class=snapshot.extension_class,
        test_location=snapshot.test_location,
        update_snapshots=snapshot.update_snapshots,
    )
