"""Config input that must not hang or crash devloop (issue 21 items 9 and 10).

Every hostile or broken input is the one-line exit-2 error `FILE:LINE: ... -- fix: ...`, never a
traceback and never gigabytes of memory: alias bombs, recursive aliases, deep nesting, long
`needs` cycles, bad tags, unusable workdirs, env values no process can take, bad gitignore
patterns, and numbers that would overflow. Checked on load_config / Config.profile, through the
real `devloop config` / `devloop run`, and with hypothesis on random input.
"""

from __future__ import annotations

import ast
import os
import re
import resource
import string
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devloop.core import config_yaml
from devloop.core.config import ConfigError, load_config, load_profile
from tests.clitools import devloop

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
LAUGHS_MAP = "a: &a {x: lol, y: lol, z: lol, w: lol}\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} {{x: *{chr(97 + i)}, y: *{chr(97 + i)}, z: *{chr(97 + i)}, "
    f"w: *{chr(97 + i)}}}\n" for i in range(10))
LAUGHS_ENV = ("kind: local\nx0: &x0 [v, v, v, v, v, v, v, v, v, v]\n"
              + "".join(f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 10)}]\n" for i in range(1, 8))
              + "env:\n  A: *x7\n")
DOUBLING = "a0: &a0 [x, x]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]\n" for i in range(1, 31))


def _needs_cycle(n: int) -> str:
    return "".join(f'[[stage]]\nname = "s{i}"\nrun = "x"\nneeds = ["s{(i + 1) % n}"]\n'
                   for i in range(n))


# (file, text, line, fragment): file "toml" is devloop.toml, "yaml" is profiles/p.yaml
HOSTILE = [
    # item 9: alias bombs
    ("yaml", LAUGHS, None, "aliases expand this value to more than"),
    ("yaml", LAUGHS_MAP, None, "aliases expand this value to more than"),
    ("yaml", LAUGHS_ENV, None, "aliases expand this value to more than"),
    ("yaml", DOUBLING, None, "aliases expand this value to more than"),
    # item 10
    ("yaml", 'kind: local\ngpus: "²"\n', 2, "'gpus' must be 'all'"),
    ("yaml", "kind: local\ngpus: ²\n", 2, "'gpus' must be 'all'"),
    ("yaml", "kind: docker\nimage: i\ngpus: [²]\n", 3, "'gpus[0]' must be a device index"),
    ("yaml", "kind: local\ngpus: 99999999999999999999\n", 2, "'gpus' must be 'all'"),
    ("toml", '[[stage]]\nname = "a"\nrun = "x"\ngpus = "²"\n', 4, "must be a GPU count"),
    ("yaml", "kind: local\nx: &a [*a]\n", 2, "(a cycle)"),
    ("yaml", "kind: local\nx: &a {y: *a}\n", 2, "(a cycle)"),
    ("yaml", "kind: local\nx: &a [1, [2, *a]]\n", 2, "(a cycle)"),
    ("yaml", "kind: local\nx: " + "[" * 2000 + "]" * 2000 + "\n", 2, "nested more than"),
    ("yaml", "kind: local\nx: " + "{a: " * 2000 + "1" + "}" * 2000 + "\n", 2, "nested more than"),
    ("yaml", "kind: local\nx: " + "[a, " * 1000 + "]" * 1000 + "\n", 2, "nested more than"),
    ("yaml", "kind: local\nx:\n" + "".join("  " * i + "- \n" for i in range(1, 300)), None,
     "nested more than"),
    ("toml", "a = " + "[" * 2000 + "]" * 2000 + "\n", 1, "nested more than"),
    ("toml", "[sync]\nexclude = " + "[1, " * 1000 + "]" * 1000 + "\n", 2, "nested"),
    ("toml", "a = " + "{b = " * 2000 + "1" + "}" * 2000 + "\n", 1, "nested"),
    ("toml", "a" + ".b" * 5000 + " = 1\n", 1, "dotted key with more than"),
    ("toml", _needs_cycle(1500), 4, "stages depend on each other in a cycle: s0 -> s1"),
    ("yaml", "kind: local\nsetup: !!float abc\n", 2, "cannot read 'abc' as float"),
    ("yaml", "kind: local\nsetup: !!int abc\n", 2, "cannot read 'abc' as int"),
    ("yaml", "kind: local\nsetup: !!timestamp abc\n", 2, "cannot read 'abc' as timestamp"),
    ("yaml", "kind: local\nsetup: !!bool maybe\n", 2, "cannot read 'maybe' as bool"),
    ("yaml", "kind: local\nport: !!int " + "9" * 5000 + "\n", 2, "as int"),
    ("yaml", "kind: local\nsetup: !!python/object:os.system x\n", 2, "invalid YAML"),
    ("yaml", "kind: local\nsetup: \x07\n", 2, "invalid YAML: unacceptable character"),
    ("yaml", "kind: local\nworkdir: ..\n", 2, "contains the project"),
    ("yaml", "kind: local\nworkdir: .\n", 2, "inside the project itself"),
    ("yaml", "kind: local\nworkdir: sub/dir\n", 2, "inside the project itself"),
    ("yaml", "kind: local\nworkdir: /\n", 2, "contains the project"),
    ("yaml", "kind: local\nworkdir: '~'\n", 2, "is your home folder"),
    ("yaml", "kind: local\nworkdir: /proc/self/cwd/x\n", 2, None),
    ("yaml", "kind: local\nworkdir: /proc/devloop\n", 2, "lies under /proc"),
    ("yaml", "kind: local\nworkdir: /sys/devloop\n", 2, "lies under /sys"),
    ("yaml", "kind: local\nworkdir: /etc/hostname\n", 2, "exists and is not a folder"),
    ("yaml", 'kind: local\nworkdir: "/tmp/a\\0b"\n', 2, "contains a NUL character"),
    ("yaml", "kind: local\nworkdir: /tmp/" + "x" * 300 + "\n", 2, "is too long"),
    ("yaml", "kind: local\nworkdir: " + "/tmp/xx" * 700 + "\n", 2, "is too long"),
    ("yaml", 'kind: local\nenv:\n  A: "x\\0y"\n', 3, "contains a NUL character"),
    ("yaml", "kind: local\nenv:\n  A: " + "x" * (4 << 20) + "\n", 3, "larger than 1 MiB"),
    ("yaml", "kind: local\nenv:\n  A: " + "x" * (200 << 10) + "\n", 3, "one environment variable"),
    ("yaml", "kind: local\nenv:\n" + "".join(f"  A{i}: {'x' * 100_000}\n" for i in range(6)),
     8, "holds more than"),
    ("toml", '[run.env]\nA = "x\\u0000y"\n', 2, "contains a NUL character"),
    ("toml", '[run.env]\nA = "' + "x" * (4 << 20) + '"\n', 2, "larger than 1 MiB"),
    ("toml", '[run.env]\nA = "' + "x" * (130 << 10) + '"\n', 2, "one environment variable"),
    ("toml", '[sync]\nexclude = ["!"]\n', 2, "not a valid gitignore pattern"),
    ("toml", '[sync]\nexclude = ["[z-a]"]\n', 2, "not a valid gitignore pattern"),
    ("toml", '[sync]\nexclude = ["a\\\\"]\n', 2, "not a valid gitignore pattern"),
    ("toml", '[sync]\nexclude = ["a\\nb"]\n', 2, "holds a line break"),
    ("toml", '[sync]\nexclude = ["x\\u0000"]\n', 2, "contains a NUL character"),
    ("toml", "[gpu]\ninterval_ms = 9223372036854775807\n", 2, "must be at most 60000 ms"),
    ("toml", "[gpu]\ninterval_ms = 99999999999999999999999\n", None, None),  # not TOML: too big
    ("toml", "[sync]\ndebounce_ms = 100000000000000000000\n", None, None),
    ("toml", "[sync]\ndebounce_ms = 1e20\n", 2, "must be a whole number"),
    ("toml", "[sync]\ndebounce_ms = 86400000\n", 2, "must be at most 10000 ms"),
    ("toml", "[ui]\nscrollback = 9223372036854775807\n", 2, "must be at most"),
    ("toml", '[project]\nname = "a\\u0000b"\n', 2, "contains a NUL character"),
    ("yaml", "kind: ssh\nhost: h\nport: 99999999999999999999\n", 3, "port"),
    ("yaml", "kind: kubernetes\nimage: i\ntolerations:\n  - {toleration_seconds: 99999999999999}\n",
     4, "must be at most"),
    ("yaml", "kind: local\nidle_stop: 99999999999d\n", 2, "at most 366 days"),
    ("yaml", "kind: local\n? [a, b]\n: 1\n", 2, "invalid YAML"),
    ("yaml", "kind: local\nenv: *nope\n", 2, "invalid YAML"),
]


def _write(root: Path, kind: str, text: str) -> Path:
    if kind == "toml":
        path = root / "devloop.toml"
    else:
        (root / "profiles").mkdir(exist_ok=True)
        path = root / "profiles" / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _error(root: Path, kind: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config = load_config(root)
        config.profile("p" if kind == "yaml" else None)
    return info.value


SHAPE = re.compile(r"^(?P<file>/[^:]+):(?P<line>\d+): (?P<message>.+?) -- fix: (?P<fix>.+)$")


@pytest.mark.parametrize("kind, text, line, fragment", HOSTILE,
                         ids=[f"{i}-{k}-{t[:30]!r}" for i, (k, t, *_rest) in enumerate(HOSTILE)])
def test_hostile_input_is_one_line_with_a_line_and_a_fix(tmp_path, kind, text, line, fragment):
    root = tmp_path / "proj"
    root.mkdir()
    path = _write(root, kind, text)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    err = _error(root, kind)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    m = SHAPE.match(str(err))
    assert m, str(err)[:300]
    assert m["file"] == str(path.resolve() if kind == "toml" else path)
    if line is not None:
        assert int(m["line"]) == line, str(err)[:300]
    if fragment is not None:
        assert fragment in str(err), str(err)[:300]
    assert "\n" not in str(err) and len(str(err)) < 1000
    assert grown_mib < 200, f"reading it took {grown_mib:.0f} MiB more"


def test_a_workdir_that_is_an_ancestor_of_home_is_refused(tmp_path):
    home = Path(os.path.expanduser("~")).resolve()
    if home == Path("/"):
        pytest.skip("HOME is /")
    root = tmp_path / "proj"
    root.mkdir()
    _write(root, "yaml", f"kind: local\nworkdir: {home.parent}\n")
    err = _error(root, "yaml")
    assert "home" in str(err) or "contains the project" in str(err)


def test_anchors_within_bounds_still_work(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    _write(root, "yaml", textwrap.dedent("""\
        kind: docker
        image: i
        x-common: &common {A: "1", B: "2"}
        env:
          <<: *common
          C: "3"
        """))
    with pytest.raises(ConfigError, match="unknown key 'x-common'"):
        load_config(root).profile("p")  # anchors parse; the extra key is the only problem
    _write(root, "yaml", 'kind: docker\nimage: &img "repo/i:1"\nenv: {IMAGE: *img}\n')
    assert dict(load_config(root).profile("p").env) == {"IMAGE": "repo/i:1"}


def test_every_config_error_call_has_a_fix():
    """The 44 errors without a `-- fix:` part (issue 21 item 10): every ConfigError /
    src.error / YamlInputError built in the config modules passes a hint."""
    core = Path(__file__).resolve().parents[2] / "devloop" / "core"
    missing = []
    for path in sorted(core.glob("config*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "error" and isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "src" \
                    or name == "ConfigError":
                if not any(k.arg == "hint" for k in node.keywords) and not (
                        name == "ConfigError" and any(k.arg is None for k in node.keywords)):
                    missing.append(f"{path.name}:{node.lineno}")
            elif name == "YamlInputError" and len(node.args) < 3:
                missing.append(f"{path.name}:{node.lineno}")
    assert missing == []


# ---------------------------------------------------------------------------- the real CLI


# one or two cases of each class the issue lists, through a real `devloop config` process
_CLI_CLASSES = ["aliases expand this value", "'gpus' must be 'all'", "(a cycle)", "nested",
                "stages depend on each other", "as float", "contains the project",
                "lies under /proc", "exists and is not a folder", "contains a NUL character",
                "is too long", "larger than 1 MiB", "one environment variable",
                "not a valid gitignore pattern", "must be at most 60000 ms",
                "must be at most 10000 ms"]
CLI_CASES = sorted({i for cls in _CLI_CLASSES
                    for i in [j for j, case in enumerate(HOSTILE) if case[3] and cls in case[3]][:2]}
                   | {HOSTILE.index(case) for case in HOSTILE if case[1] == DOUBLING})


@pytest.mark.parametrize("index", CLI_CASES, ids=[f"{i}-{HOSTILE[i][0]}-{HOSTILE[i][1][:24]!r}"
                                                  for i in CLI_CASES])
def test_devloop_config_exits_2_with_one_line(tmp_path, index):
    kind, text, line, fragment = HOSTILE[index]
    root = tmp_path / "proj"
    root.mkdir()
    path = _write(root, kind, text)
    args = ["config", "--json"] + (["-p", "p"] if kind == "yaml" else [])
    out = devloop(*args, cwd=root, timeout=60)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert out.stderr.count("\n") == 1, out.stderr[-2000:]
    m = SHAPE.match(out.stderr.strip().removeprefix("devloop: "))
    assert m and m["file"] == str(path.resolve()), out.stderr[:300]
    if line is not None:
        assert int(m["line"]) == line


def _project(tmp_path: Path, profile: str, toml: str = "") -> Path:
    root = tmp_path / "proj"
    (root / "profiles").mkdir(parents=True)
    (root / "profiles" / "p.yaml").write_text(profile)
    (root / "devloop.toml").write_text(toml)
    (root / "t.py").write_text("print('ran', 6 * 7)\n")
    return root


def test_a_non_executable_python_is_a_one_line_error(tmp_path):
    not_exec = tmp_path / "python-not-exec"
    not_exec.write_text("#!/bin/sh\n")
    root = _project(tmp_path, f"kind: local\npython: {not_exec}\n")
    out = devloop("run", "t.py", "-p", "p", cwd=root, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "is not an executable file" in out.stderr and "fix:" in out.stderr


def test_a_folder_as_python_is_a_one_line_error(tmp_path):
    root = _project(tmp_path, f"kind: local\npython: {tmp_path}\n")
    out = devloop("run", "t.py", "-p", "p", cwd=root, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "is not an executable file" in out.stderr


def test_run_python_is_honoured_by_the_local_target(tmp_path):
    """`[run].python = "/bin/false"` used to "work": the local target ignored it."""
    root = _project(tmp_path, "kind: local\n", '[run]\npython = "/bin/false"\n')
    out = devloop("run", "t.py", "-p", "p", cwd=root, timeout=60)
    assert out.returncode != 0 and "ran 42" not in out.stdout and "Traceback" not in out.stderr
    root2 = tmp_path / "two"
    root2.mkdir()
    (root2 / "devloop.toml").write_text(f'[run]\npython = "{sys.executable}"\n')
    (root2 / "t.py").write_text("import sys; print('exe', sys.executable)\n")
    out = devloop("run", "t.py", cwd=root2, timeout=60)
    assert out.returncode == 0 and f"exe {sys.executable}" in out.stdout, out.stderr


def test_a_profiles_python_wins_over_run_python(tmp_path):
    root = _project(tmp_path, f"kind: local\npython: {sys.executable}\n",
                    '[run]\npython = "/bin/false"\n')
    out = devloop("run", "t.py", "-p", "p", cwd=root, timeout=60)
    assert out.returncode == 0 and "ran 42" in out.stdout, out.stderr


def test_workdir_dotdot_does_not_overwrite_the_parent(tmp_path):
    """Issue 21 item 3: `workdir: ..` synced the project over its parent (an existing ../t.py)."""
    root = _project(tmp_path, "kind: local\nworkdir: ..\n")
    (tmp_path / "t.py").write_text("mine\n")
    out = devloop("run", "t.py", "-p", "p", cwd=root, timeout=60)
    assert out.returncode == 2 and "contains the project" in out.stderr
    assert "Traceback" not in out.stderr
    assert (tmp_path / "t.py").read_text() == "mine\n"


# ---------------------------------------------------------------------------- random input


_YAML_ALPHABET = string.ascii_letters[:6] + string.digits[:3] + " :-[]{},&*!#'\"\n\t|>?%@`\\.²\x00"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=_YAML_ALPHABET, max_size=200))
def test_random_profiles_load_or_fail_with_a_config_error(tmp_path, text):
    path = tmp_path / "profiles" / "p.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text("kind: local\n" + text, encoding="utf-8", errors="surrogatepass")
    try:
        load_profile(path, "p", root=tmp_path)
    except ConfigError as exc:
        assert SHAPE.match(str(exc)), str(exc)


_TOML_ALPHABET = "abst[]{}=,.\"' \n0129-_#\\u²"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=_TOML_ALPHABET, max_size=120))
def test_random_toml_loads_or_fails_with_a_config_error(tmp_path, text):
    (tmp_path / "devloop.toml").write_text(text, encoding="utf-8")
    try:
        load_config(tmp_path)
    except ConfigError as exc:
        assert SHAPE.match(str(exc)), str(exc)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.sampled_from(["x", "*a", "*b", "*c"]),
                    lambda inner: st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
                    max_leaves=12))
def test_random_alias_graphs_are_bounded(value):
    text = f"a: &a [1, 2]\nb: &b [*a, *a, *a]\nc: &c [{value}]\n"
    try:
        config_yaml.load(text)
    except config_yaml.YamlInputError as exc:
        assert exc.line >= 1 and exc.hint
        assert "*c" in value or "aliases expand" in exc.message


_PATTERN_ALPHABET = "ab*?/!#[]-\\ .z"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=_PATTERN_ALPHABET, min_size=1, max_size=8))
def test_an_exclude_pattern_is_accepted_exactly_when_the_scanner_can_use_it(tmp_path, pattern):
    """The config's cheap check and the scanner's own compile (ignore._spec) agree."""
    from devloop.core.sync.ignore import _spec

    (tmp_path / "devloop.toml").write_text(
        '[sync]\nexclude = ["' + pattern.replace("\\", "\\\\") + '"]\n')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _spec([pattern])
        compiles = True
    except (ValueError, re.error):
        compiles = False
    try:
        load_config(tmp_path)
        accepted = True
    except ConfigError:
        accepted = False
    assert accepted == compiles, pattern


def test_a_bad_pattern_never_reaches_the_scanner(tmp_path):
    """Before: `exclude = ["!"]` crashed `devloop sync` with GitIgnorePatternError."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "devloop.toml").write_text('[sync]\nexclude = ["!"]\n')
    (root / "profiles").mkdir()
    (root / "profiles" / "wd.yaml").write_text(f"kind: local\nworkdir: {tmp_path / 'wd'}\n")
    (root / "a.py").write_text("x = 1\n")
    out = devloop("sync", "-p", "wd", cwd=root, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "not a valid gitignore pattern" in out.stderr


def test_cli_config_subprocess_is_bounded_in_memory(tmp_path):
    """The 2^30 doubling chain hung `devloop config` at ~3 GB: now refused in a small process."""
    root = tmp_path / "proj"
    root.mkdir()
    _write(root, "yaml", DOUBLING)
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
            "from devloop.cli import main; sys.exit(main(['config', '-p', 'p']))")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert out.returncode == 2 and "aliases expand" in out.stderr, out.stderr[-1000:]


# ---------------------------------------------------------------------------- the local target


@pytest.mark.parametrize("workdir, fragment", [
    ("..", "contains the project"), ("/", "contains the project"), ("~", "home folder"),
    ("/proc/devloop-x", "lies under /proc"), ("/etc/hostname", "is not a folder"),
    ("sub", "inside the project itself"), ("/tmp/" + "y" * 300, "is too long"),
])
def test_local_target_refuses_a_workdir_the_config_did_not_check(tmp_path, workdir, fragment):
    """A Profile built in code skips the YAML checks: LocalTarget.start refuses on its own."""
    import asyncio

    from devloop.core.config import Profile
    from devloop.core.targets.base import TargetError
    from devloop.core.targets.local import LocalTarget

    root = tmp_path / "proj"
    root.mkdir()
    (tmp_path / "t.py").write_text("mine\n")
    target = LocalTarget(Profile(name="wd", workdir=workdir), load_config(root))
    with pytest.raises(TargetError, match=re.escape(fragment)) as info:
        asyncio.run(target.start())
    assert info.value.hint
    assert (tmp_path / "t.py").read_text() == "mine\n"


def test_devloop_run_refuses_a_linked_agent_cache(tmp_path):
    """Issue 21 item 7: a cache folder that is a link (or someone else's) is refused, one line."""
    real = tmp_path / "elsewhere"
    real.mkdir()
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    (xdg / "devloop").symlink_to(real)
    root = _project(tmp_path, "kind: local\n")
    out = devloop("run", "t.py", cwd=root, env={"XDG_CACHE_HOME": str(xdg)}, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "is a link or not a folder" in out.stderr and list(real.iterdir()) == []


def test_devloop_run_rebuilds_a_tampered_agent_cache(tmp_path):
    """Issue 21 item 7: code appended to the cached kernel.py ran on the next `devloop run`."""
    from devloop.core.agent_bundle import sources_hash

    xdg = tmp_path / "xdg"
    root = _project(tmp_path, "kind: local\n")
    (root / "t.py").write_text("# %%\nprint('cell', 6 * 7)\n")
    env = {"XDG_CACHE_HOME": str(xdg)}
    first = devloop("run", "t.py", cwd=root, env=env, timeout=60)
    assert first.returncode == 0 and "cell 42" in first.stdout, first.stderr
    kernel = xdg / "devloop" / f"agent-{sources_hash()[:16]}" / "devloop_agent" / "kernel.py"
    with open(kernel, "a") as fh:
        fh.write("\nimport os\nos.write(2, b'PWNED\\n')\n")
    again = devloop("run", "t.py", cwd=root, env=env, timeout=60)
    assert again.returncode == 0 and "cell 42" in again.stdout
    assert "PWNED" not in again.stdout + again.stderr
    assert b"PWNED" not in kernel.read_bytes()
