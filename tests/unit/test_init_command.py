"""`devloop init` and `devloop config`, run through the real CLI entry point."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from devloop.cli import main
from devloop.core.config import load_config
from devloop.core.project_template import PROFILES, devloop_toml, toml_string

REPO = Path(__file__).resolve().parents[2]
WRITTEN = ["devloop.toml", "profiles/local.yaml", "profiles/docker-gpu.yaml",
           "profiles/ssh-gpu.yaml", "profiles/k8s-gpu.yaml"]


def test_init_writes_every_file_and_they_load(tmp_path, capsys, monkeypatch):
    project = tmp_path / "my-model"
    project.mkdir()
    monkeypatch.chdir(project)
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    for rel in WRITTEN:
        assert (project / rel).is_file()
        assert f"created     {rel}" in out
    config = load_config(project)
    assert config.project.name == "my-model" and config.project.profile == "local"
    assert config.profile_names() == ["docker-gpu", "k8s-gpu", "local", "ssh-gpu"]
    kinds = {name: config.profile(name).kind for name in config.profile_names()}
    assert kinds == {"docker-gpu": "docker", "k8s-gpu": "kubernetes", "local": "local",
                     "ssh-gpu": "ssh"}


def test_init_never_overwrites(tmp_path, capsys):
    (tmp_path / "profiles").mkdir()
    mine = tmp_path / "devloop.toml"
    mine.write_text('[project]\nname = "mine"\n')
    (tmp_path / "profiles" / "local.yaml").write_text("kind: local\nsetup: make\n")
    assert main(["init", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert mine.read_text() == '[project]\nname = "mine"\n'
    assert (tmp_path / "profiles" / "local.yaml").read_text() == "kind: local\nsetup: make\n"
    assert "left alone  devloop.toml (already exists)" in out
    assert "left alone  profiles/local.yaml (already exists)" in out
    assert "created     profiles/docker-gpu.yaml" in out
    # a second run changes nothing and still succeeds
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(["init", "--dir", str(tmp_path)]) == 0
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert "created" not in capsys.readouterr().out


def test_init_into_a_new_folder_with_a_name(tmp_path, capsys):
    target = tmp_path / "a" / "b"
    assert main(["init", "--dir", str(target), "--name", 'odd "name"\\x']) == 0
    assert load_config(target).project.name == 'odd "name"\\x'


def test_template_example_stage_loads_when_uncommented(tmp_path):
    """The commented [[stage]] example and commented defaults are valid once uncommented."""
    text = devloop_toml("demo")
    uncommented = re.sub(r"^# (\[\[stage\]\]|\[stage\.env\]|[a-z_]+ = .*|[A-Z_]+ = .*)$", r"\1",
                         text, flags=re.M)
    assert uncommented.count("[[stage]]") == 2 and "\n# name = " not in uncommented
    (tmp_path / "devloop.toml").write_text(uncommented)
    config = load_config(tmp_path)
    assert [s.name for s in config.stages] == ["prepare", "train"]
    assert config.stages[1].needs == ("prepare",) and config.stages[1].gpus == 1
    assert dict(config.stages[1].env) == {"WANDB_MODE": "offline"}
    assert config.run.rerun == "linear" and config.sync.debounce_ms == 50


def test_template_profiles_load_when_examples_uncommented(tmp_path):
    """The commented keys in the example profiles are valid keys for their kind."""
    for name, text in PROFILES.items():
        lines = []
        for line in text.splitlines():
            m = re.match(r"^# ([a-z_]+:.*?)(\s+#.*)?$", line)
            lines.append(m.group(1) if m else line)
        # nested blocks that follow an uncommented key: un-comment their indented lines too
        joined = "\n".join(lines)
        joined = re.sub(r"^#( {2,}.*)$", r"\1", joined, flags=re.M)
        path = tmp_path / "profiles" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(joined + "\n")
    config = load_config(tmp_path)
    ssh = config.profile("ssh-gpu")
    assert ssh.docker is not None and ssh.port == 22
    k8s = config.profile("k8s-gpu")
    assert k8s.service_account == "devloop" and k8s.volumes[0]["claim"] == "datasets"
    docker = config.profile("docker-gpu")
    assert docker.build is not None and docker.network == "host"
    assert config.profile("local").workdir == "/tmp/devloop-work"


def test_repository_profiles_are_the_templates():
    """profiles/ in this repository ships exactly what `devloop init` writes."""
    for name, text in PROFILES.items():
        assert (REPO / "profiles" / name).read_text(encoding="utf-8") == text


def test_toml_string_escapes():
    assert toml_string('a"b\\c') == '"a\\"b\\\\c"'


def test_config_command_text(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    capsys.readouterr()
    assert main(["config", "--profile", "docker-gpu"]) == 0
    out = capsys.readouterr().out
    for section in ("[project]", "[sync]", "[run]", "[gpu]", "[ui]", "[promote]"):
        assert section in out
    assert f'name    = "{tmp_path.name}"' in out
    assert "profile 'docker-gpu' (docker, from " in out
    assert 'image            = "pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime"' in out


def test_config_command_json(tmp_path, capsys, monkeypatch):
    (tmp_path / "devloop.toml").write_text(
        '[project]\nname = "x"\n[[stage]]\nname = "train"\nrun = "python t.py"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["config", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["project"]["name"] == "x"
    assert data["stages"][0]["name"] == "train" and data["stages"][0]["line"] == 3
    assert data["profile"]["kind"] == "local" and data["profile"]["source"] == "<built-in>"
    assert data["profiles"] == ["local"]
    assert set(data) >= {"project", "sync", "run", "gpu", "ui", "stages", "promote", "profile"}


def test_config_command_error_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "devloop.toml").write_text('[sync]\nexlude = ["x"]\n')
    monkeypatch.chdir(tmp_path)
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"devloop: {tmp_path.resolve() / 'devloop.toml'}:2: unknown key 'exlude'")
    assert "(did you mean 'exclude'?)" in err


def test_config_command_unknown_profile(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["config", "--profile", "gpu"]) == 2
    assert "unknown profile 'gpu' (from -p/--profile); available: local" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["init", "config"])
def test_every_flag_has_help(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "--json" in out or "--dir" in out
    for flag in re.findall(r"^\s+(-{1,2}[\w-]+)", out, flags=re.M):
        assert re.search(rf"{re.escape(flag)}.*\S", out)
