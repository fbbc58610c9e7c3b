"""Issue 15 on the `local` profile: figures, images, last-expression values and display(), with
the real CLI and the real agent (the local target runs the agent with this Python, so the
matplotlib, Pillow and IPython of the test extra are real)."""

from __future__ import annotations

import struct
import textwrap
from pathlib import Path

import pytest

from tests.clitools import devloop, events, last, outputs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def displays(evs: list[dict], cell: int | None = None) -> list[dict]:
    return [e for e in evs if e["event"] == "display" and (cell is None or e["cell"] == cell)]


def check_png(project: Path, event: dict, size: tuple[int, int] | None = None) -> bytes:
    """The display event names a saved, valid PNG whose size it gives."""
    assert event["mime"] == "image/png"
    path = project / event["path"]
    assert event["path"].startswith(".devloop/outputs/") and path.name == f"cell{event['cell']}-{event['k']}.png"
    data = path.read_bytes()
    assert png_size(data) == (event["width"], event["height"])
    assert event["bytes"] == len(data)
    if size is not None:
        assert (event["width"], event["height"]) == size
    return data


def run_json(project: Path, source: str) -> list[dict]:
    (project / "nb.py").write_text(textwrap.dedent(source))
    res = devloop("run", "nb.py", "--json", cwd=project, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return events(res.stdout)


def test_figures_from_show_and_left_open_arrive_as_pngs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    evs = run_json(tmp_path, """\
        # %% shown
        import matplotlib.pyplot as plt
        print("before")
        plt.figure(figsize=(4, 3), dpi=100)
        plt.plot([1, 2, 3], [3, 1, 2])
        plt.show()
        print("after show, open:", plt.get_fignums())
        # %% left open
        fig, ax = plt.subplots(figsize=(2, 1.5), dpi=100)
        ax.bar([1, 2], [3, 4])
        fig2 = plt.figure(figsize=(3, 2), dpi=50)
        fig2.add_subplot().plot([0, 1])
        x = 1;
        # %% nothing drawn
        print("open:", plt.get_fignums())
    """)
    shown = displays(evs, 0)
    assert len(shown) == 1
    check_png(tmp_path, shown[0], (400, 300))
    assert outputs(evs, 0) == "before\nafter show, open: []\n"  # show() closed it, as inline does
    kinds = [e["event"] for e in evs if e.get("cell") == 0 and e["event"] in ("output", "display")]
    assert kinds.index("display") > 0  # "before" reached the log before the figure
    left_open = displays(evs, 1)
    assert [e["k"] for e in left_open] == [1, 2]
    check_png(tmp_path, left_open[0], (200, 150))
    check_png(tmp_path, left_open[1], (150, 100))
    assert displays(evs, 2) == [] and outputs(evs, 2) == "open: []\n"
    assert len({Path(e["path"]).parent for e in shown + left_open}) == 1  # one run folder


def test_readable_mode_names_the_saved_figure(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "nb.py").write_text("# %%\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\n")
    res = devloop("run", "nb.py", cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    line = [x for x in res.stdout.splitlines() if "figure:" in x][0]
    assert line.startswith("[0] figure: .devloop/outputs/") and line.endswith("/cell0-1.png")
    assert (tmp_path / line.split("figure: ", 1)[1]).read_bytes()[:8] == PNG_MAGIC


def test_last_expression_values_are_shown_and_a_semicolon_hides_them(tmp_path: Path) -> None:
    evs = run_json(tmp_path, """\
        # %%
        import sys
        x = 41
        x + 1
        # %%
        x + 2;
        # %%
        x + 3  ;  # a comment after the semicolon
        # %%
        print("printed")
        # %%
        "a" * 20000
        # %%
        {"best": {"C": 10,
                  "kernel": "rbf"}}
        # %%
        print("_ is", _["best"]["C"], "mpl imported:", "matplotlib" in sys.modules)
        # %%
        "#;"  # the value is a string with a semicolon
    """)
    texts = {e["cell"]: e["text"] for e in displays(evs)}
    assert texts[0] == "42"
    assert 1 not in texts and 2 not in texts
    assert 3 not in texts and outputs(evs, 3) == "printed\n"  # print() returns None: nothing
    assert texts[4].startswith("'aaaa") and texts[4].endswith("... (10002 more characters)")
    assert len(texts[4]) < 10100
    assert texts[5] == "{'best': {'C': 10, 'kernel': 'rbf'}}"
    assert outputs(evs, 6) == "_ is 10 mpl imported: False\n"  # the agent never imports it
    assert texts[7] == "'#;'"
    assert all(e["mime"] == "text/plain" and e["path"] == "" for e in displays(evs))


def test_readable_mode_shows_values_under_their_cell(tmp_path: Path) -> None:
    (tmp_path / "nb.py").write_text("# %%\nx = [1, 2]\nx\n# %%\nlen(x);\n")
    res = devloop("run", "nb.py", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "[0] [1, 2]\n" in res.stdout and "[1] 2" not in res.stdout


def test_display_of_a_dict_a_figure_a_pil_image_and_repr_png_without_ipython(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    evs = run_json(tmp_path, """\
        # %%
        import sys, zlib, struct
        import matplotlib.pyplot as plt
        from PIL import Image

        class Dot:
            def _repr_png_(self):  # a 3x2 grey PNG made with the stdlib
                def chunk(kind, body):
                    return (struct.pack(">I", len(body)) + kind + body
                            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
                raw = b"".join(b"\\x00" + b"\\x80" * 3 for _ in range(2))
                return (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 8, 0, 0, 0, 0))
                        + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

        fig = plt.figure(figsize=(1, 1), dpi=64)
        fig.add_subplot().plot([1, 2])
        display({"a": 1})
        display(fig)
        display(Image.new("RGB", (20, 10), "red"), Dot())
        print("IPython imported:", "IPython" in sys.modules)
        Image.new("L", (5, 4))
    """)
    shown = displays(evs, 0)
    assert [e["mime"] for e in shown] == ["text/plain"] + ["image/png"] * 4
    assert shown[0]["text"] == "{'a': 1}"
    check_png(tmp_path, shown[1], (64, 64))          # display(fig)
    check_png(tmp_path, shown[2], (20, 10))          # PIL
    check_png(tmp_path, shown[3], (3, 2))            # _repr_png_
    check_png(tmp_path, shown[4], (5, 4))            # a PIL image as the last value
    # the figure display() showed is not shown again at the end (Jupyter would show it twice)
    assert [e["k"] for e in shown[1:]] == [1, 2, 3, 4]
    assert "IPython imported: False" in outputs(evs, 0)


def test_display_with_ipython_uses_its_display_and_pretty_printer(tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    pytest.importorskip("matplotlib")
    evs = run_json(tmp_path, """\
        # %%
        from IPython.display import display
        import matplotlib.pyplot as plt
        fig = plt.figure(figsize=(1, 1), dpi=32)
        display({"b": list(range(3))}, fig)
        plt.close(fig)

        class Pretty:
            def _repr_pretty_(self, p, cycle):
                p.text("Pretty!")
        Pretty()
    """)
    shown = displays(evs, 0)
    assert shown[0]["text"] == "{'b': [0, 1, 2]}"
    check_png(tmp_path, shown[1], (32, 32))
    assert shown[2]["text"] == "Pretty!"  # IPython's rich repr, not object.__repr__
    assert len(shown) == 3


def test_a_failing_cell_still_shows_its_figures_and_the_error(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "nb.py").write_text("# %%\nimport matplotlib.pyplot as plt\nplt.plot([1])\n1 / 0\n")
    res = devloop("run", "nb.py", "--json", cwd=tmp_path, timeout=120)
    assert res.returncode == 1
    evs = events(res.stdout)
    check_png(tmp_path, displays(evs, 0)[0])
    err = last(evs, "error")
    assert (err["type"], err["line"]) == ("ZeroDivisionError", 4)
    assert "display.py" not in err["traceback"]  # agent frames stay out of the user's traceback


def test_an_svg_repr_is_saved_as_svg_where_it_cannot_be_rasterised(tmp_path: Path) -> None:
    evs = run_json(tmp_path, """\
        # %%
        import sys
        class Shape:
            def _repr_svg_(self):
                return '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20"/></svg>'
        print("cairosvg:", "cairosvg" in sys.modules)
        Shape()
    """)
    (shown,) = displays(evs, 0)
    if shown["mime"] == "image/png":  # cairosvg on this machine: rasterised
        check_png(tmp_path, shown, (40, 20))
        return
    assert shown["mime"] == "image/svg+xml" and shown["path"].endswith("/cell0-1.svg")
    assert (shown["width"], shown["height"]) == (40, 20)
    assert (tmp_path / shown["path"]).read_text().startswith("<svg")


def test_metrics_from_plain_output_are_events_and_summarised(tmp_path: Path) -> None:
    (tmp_path / "devloop.toml").write_text('[ui]\nmetrics = ["loss", "val_acc"]\n')
    source = textwrap.dedent("""\
        # %%
        import sys
        for step in range(1, 4):
            sys.stdout.write(f"\\r{step}/3 [====] - loss: {1 / step:.3f}")
        print(" - val_acc: 0.75")
        print("epoch 2 loss=0.2 val_loss=9 val_acc=0.8")
    """)
    (tmp_path / "nb.py").write_text(source)
    res = devloop("run", "nb.py", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    points = [(e["metric"], e["value"], e["step"]) for e in events(res.stdout) if e["event"] == "metric"]
    assert points == [("loss", 1.0, 1), ("loss", 0.5, 2), ("loss", 0.333, 3), ("val_acc", 0.75, 1),
                      ("loss", 0.2, 4), ("val_acc", 0.8, 2)]
    text = devloop("run", "nb.py", cwd=tmp_path).stdout
    assert "metric loss: last 0.2, best 0.2 (min), 4 values" in text
    assert "metric val_acc: last 0.8, best 0.8 (max), 2 values" in text


def test_figures_reach_a_watch_through_the_session_kernel(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from tests.clitools import Watch

    (tmp_path / "nb.py").write_text("# %% a\nx = 1\n# %% plot\nimport matplotlib.pyplot as plt\n"
                                    "plt.plot([x, 2])\nx + 1\n")
    watch = Watch(tmp_path, "nb.py", timeout=120)
    try:
        got = watch.until(lambda e: e["event"] == "run_done")
        shown = [e for e in got if e["event"] == "display"]
        assert [(e["cell"], e["mime"]) for e in shown] == [(1, "text/plain"), (1, "image/png")]
        check_png(tmp_path, shown[1])
    finally:
        watch.stop()
        devloop("stop", cwd=tmp_path)


def test_figures_of_a_script_and_of_the_processes_it_starts_reach_the_log(tmp_path: Path) -> None:
    """The script's own plt.show() comes over the pipe it inherits; a grandchild (a subprocess,
    torchrun's workers: no inherited fds) connects to the kernel's socket."""
    pytest.importorskip("matplotlib")
    (tmp_path / "script.py").write_text(textwrap.dedent("""\
        import os, sys, subprocess
        import matplotlib
        import matplotlib.pyplot as plt
        print("backend", matplotlib.get_backend().rsplit(".", 1)[-1])
        plt.figure(figsize=(3, 2), dpi=100)
        plt.plot([1, 3, 2])
        plt.show()
        print("after")
        subprocess.run([sys.executable, "-c", "import matplotlib.pyplot as plt; plt.figure(figsize=(2, 2), dpi=100); "
                        "plt.plot([1]); plt.show(); print('grandchild ok')"], check=True)
    """))
    for run in (1, 2):
        res = devloop("run", "script.py", "--json", cwd=tmp_path, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        evs = events(res.stdout)
        own, grandchild = displays(evs)
        check_png(tmp_path, own, (300, 200))
        check_png(tmp_path, grandchild, (200, 200))
        assert outputs(evs) == "backend mplbackend\nafter\ngrandchild ok\n"
    assert len(list((tmp_path / ".devloop" / "outputs").iterdir())) == 2  # a folder per run


def test_a_script_that_chose_its_backend_keeps_it(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "script.py").write_text("import matplotlib\nprint(matplotlib.get_backend())\n")
    res = devloop("run", "script.py", "--json", cwd=tmp_path, env={"MPLBACKEND": "agg"})
    assert res.returncode == 0, res.stderr
    assert outputs(events(res.stdout)).strip().lower() == "agg" and displays(events(res.stdout)) == []
