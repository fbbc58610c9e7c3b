"""External-style regression suite: percent files written to mirror real gallery patterns
(scikit-learn examples, notebooks exported as scripts), each run by `devloop run` and compared
with `python file.py` -- stdout and exit code -- on the local and the Docker target.

The patterns: joblib `n_jobs=2`, a model fitted in place and read by a later cell, argparse
arguments with an early `sys.exit`, `input()` fed by a pipe, and (in watch) variables renamed
in an earlier cell while a later cell still uses the old name. joblib is vendored into the
project folder (pure Python), so the bare Docker test image imports it like the host does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.clitools import DEVLOOP, events, outputs

TEST_IMAGE = "devloop-test:hostpy"

JOBLIB = textwrap.dedent("""\
    # %% [markdown]
    # Parallel feature computation, as in the gallery's joblib examples

    # %% data
    import math
    data = [float(i) for i in range(40)]
    print("samples", len(data))

    # %% features
    from joblib import Parallel, delayed

    def feature(x):
        return round(math.sqrt(x) * math.log1p(x), 6)

    features = Parallel(n_jobs=2)(delayed(feature)(x) for x in data)
    print("features", len(features))

    # %% summary
    print("total", round(sum(features), 3))
    print("max", max(features))
    """)

INPLACE_FIT = textwrap.dedent("""\
    # %% model
    class MeanModel:
        def fit(self, X, y):
            self.n_features_in_ = len(X[0])
            self.means_ = [sum(col) / len(col) for col in zip(*X)]
            return self

        def predict(self, X):
            return [round(sum(r) - sum(self.means_), 3) for r in X]

    model = MeanModel()

    # %% fit
    X = [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [4.0, 5.0, 7.0]]
    y = [0, 1, 1]
    model.fit(X, y)

    # %% use
    print("n_features_in_", model.n_features_in_)
    print("predictions", model.predict(X))
    """)

ARGV_EXIT = textwrap.dedent("""\
    # %% args
    import argparse, sys
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    print("argv", sys.argv[1:])

    # %% check
    if args.epochs > 5:
        print("too many epochs", args.epochs)
        sys.exit(2)

    # %% train
    for epoch in range(args.epochs):
        print("epoch", epoch)
    """)

STDIN = textwrap.dedent("""\
    # %% ask
    name = input("model name? ")
    print("training", name)

    # %% rest
    import sys
    rows = [line.split(",") for line in sys.stdin.read().splitlines() if line]
    print("rows", len(rows), "cols", len(rows[0]))
    """)

# (name, source, args, stdin)
PATTERNS = [
    ("joblib_n_jobs", JOBLIB, [], None),
    ("inplace_fit", INPLACE_FIT, [], None),
    ("argv", ARGV_EXIT, ["--epochs", "3"], None),
    ("argv_sys_exit", ARGV_EXIT, ["--epochs", "9"], None),
    ("stdin_pipe", STDIN, [], "resnet\n1,2,3\n4,5,6\n"),
]


def vendor_joblib(root: Path) -> None:
    """joblib and what it imports that the stdlib lacks (some builds unvendor cloudpickle)."""
    for name in ("joblib", "cloudpickle"):
        module = pytest.importorskip(name)
        shutil.copytree(Path(module.__file__).parent, root / name,
                        ignore=shutil.ignore_patterns("__pycache__", "test", "tests"))


def python_run(root: Path, file: str, args: list[str], stdin: str | None) -> tuple[str, int]:
    res = subprocess.run([sys.executable, file, *args], cwd=root, input=stdin or "", capture_output=True,
                         text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    return res.stdout, res.returncode


def devloop_run(root: Path, file: str, args: list[str], stdin: str | None, *extra: str,
                env: dict | None = None) -> tuple[str, int, list[dict]]:
    cmd = DEVLOOP + ["run", file, "--json", *extra] + (["--", *args] if args else [])
    res = subprocess.run(cmd, cwd=root, input=stdin or "", capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"} | dict(env or {}))
    evs = events(res.stdout)
    stdout = "".join(e["text"] for e in evs if e["event"] == "output" and e["stream"] == "stdout")
    return stdout, res.returncode, evs


def make_project(tmp_path: Path, name: str, source: str) -> Path:
    root = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}"
    root.mkdir()
    (root / "devloop.toml").write_text(f'[project]\nname = "{root.name}"\n')
    (root / f"{name}.py").write_text(source)
    if "joblib" in source:
        vendor_joblib(root)
    return root


def assert_same_as_python(root: Path, name: str, args: list[str], stdin: str | None, *extra: str,
                          env: dict | None = None) -> list[dict]:
    expected, expected_code = python_run(root, f"{name}.py", args, stdin)
    got, code, evs = devloop_run(root, f"{name}.py", args, stdin, *extra, env=env)
    assert (got, code) == (expected, expected_code), json.dumps(evs[-8:], indent=1)
    assert not [e for e in evs if e["event"] == "output" and e["cell"] == -1]  # nothing spurious
    return evs


@pytest.mark.parametrize("name,source,args,stdin", PATTERNS, ids=[p[0] for p in PATTERNS])
def test_local_matches_python(tmp_path: Path, name: str, source: str, args: list[str], stdin: str | None) -> None:
    root = make_project(tmp_path, name, source)
    assert_same_as_python(root, name, args, stdin)


@pytest.fixture
def docker_env(docker_host) -> dict:
    return {"DOCKER_HOST": docker_host}


@pytest.mark.docker
@pytest.mark.parametrize("name,source,args,stdin", PATTERNS, ids=[p[0] for p in PATTERNS])
def test_docker_matches_python(tmp_path: Path, docker_env: dict, docker_client, name: str, source: str,
                               args: list[str], stdin: str | None) -> None:
    root = make_project(tmp_path, name, source)
    (root / "profiles").mkdir()
    (root / "profiles" / "docker-test.yaml").write_text(f"kind: docker\nimage: {TEST_IMAGE}\nnetwork: none\n")
    try:
        evs = assert_same_as_python(root, name, args, stdin, "--profile", "docker-test", env=docker_env)
        assert [e for e in evs if e["event"] == "ready"][-1]["cwd"] == "/workspace"
    finally:
        from devloop.core.targets.docker import LABEL_PROJECT

        for c in docker_client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_PROJECT}={root.name}"}):
            c.remove(force=True)


# -- in watch: what a rerun after an edit shows is what a fresh `python file.py` shows -----------

RENAMED_BEFORE = textwrap.dedent("""\
    # %% split
    data = list(range(10))
    X_train, X_test = data[:8], data[8:]
    print("train", len(X_train))

    # %% fit
    print("fit on", len(X_train))
    """)
RENAMED_AFTER = RENAMED_BEFORE.replace('X_train, X_test = data[:8], data[8:]\nprint("train", len(X_train))',
                                       'X_tr, X_te = data[:8], data[8:]\nprint("train", len(X_tr))')

INPLACE_AFTER = INPLACE_FIT.replace('X = [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [4.0, 5.0, 7.0]]',
                                    'X = [[1.0, 2.0], [2.0, 3.0], [4.0, 5.0]]')


def watch_pass_after_edit(root: Path, name: str, after: str, rerun: str = "linear") -> tuple[str, list[dict]]:
    """Run `watch`, wait for the first pass, write `after`, and return the second pass's stdout."""
    (root / "devloop.toml").write_text(f'[project]\nname = "{root.name}"\n[run]\nrerun = "{rerun}"\n')
    proc = subprocess.Popen(DEVLOOP + ["watch", f"{name}.py", "--json"], cwd=root, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
    try:
        assert proc.stdout is not None
        passes: list[list[dict]] = [[]]
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            passes[-1].append(event)
            if event["event"] == "run_done":
                if len(passes) == 2:
                    break
                passes.append([])
                (root / f"{name}.py").write_text(after)
        second = passes[-1]
        return "".join(e["text"] for e in second if e["event"] == "output" and e["stream"] == "stdout"), second
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()


def test_renamed_variable_fails_in_watch_as_a_fresh_run_would(tmp_path: Path) -> None:
    root = make_project(tmp_path, "renamed", RENAMED_BEFORE)
    (root / "after.py").write_text(RENAMED_AFTER)
    expected, code = python_run(root, "after.py", [], None)
    assert code == 1 and expected == "train 8\n"
    got, second = watch_pass_after_edit(root, "renamed", RENAMED_AFTER)
    errors = [e for e in second if e["event"] == "error"]
    assert [e["type"] for e in errors] == ["NameError"], second
    assert got == expected
    assert [e for e in second if e["event"] == "run_done"][-1]["ok"] is False


def test_inplace_fit_reruns_its_reader_in_reactive_watch(tmp_path: Path) -> None:
    root = make_project(tmp_path, "inplace", INPLACE_FIT)
    (root / "after.py").write_text(INPLACE_AFTER)
    expected, code = python_run(root, "after.py", [], None)
    assert code == 0
    got, second = watch_pass_after_edit(root, "inplace", INPLACE_AFTER, rerun="reactive")
    assert expected.startswith("n_features_in_ 2\n")
    assert got == expected, second  # model.fit(X, y) redefines `model`: the reader reruns
