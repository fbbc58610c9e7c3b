"""Pipeline model: stage commands, names, quantities, secrets -- and every error names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from devloop.core.promote.model import (CodeRef, PromoteError, Provenance, StageSpec, TargetSpec,
                                        build_pipeline, dns_name, gpu_count, quantity,
                                        split_code_cells)
from devloop.core.promote.secrets import looks_secret, parse_secret_refs

IMAGE = "registry.example.com/ml/train@sha256:" + "ab" * 32
PROV = Provenance(run_id="00000000-0000-4000-8000-000000000000", git_commit="c" * 40, dirty=False,
                  diff_sha256="", image_digest="sha256:" + "ab" * 32, profile="k8s-gpu",
                  devloop_version="0.1.0", time="2025-01-01T00:00:00Z")
CODE = CodeRef(commit="c" * 40, repo_url="https://github.com/acme/mnist.git")

CELLS = """import os  # preamble code counts as cell 1

# %% load
x = 1

# %% [markdown]
# some notes

# %% train
print(x + 1)
"""


def target(**kw) -> TargetSpec:
    base = dict(name="k8s-gpu", file="profiles/k8s-gpu.yaml", image=IMAGE, gpus=1, cpu="8",
                memory="32Gi")
    base.update(kw)
    return TargetSpec(**base)


def build(stages, root: Path | None = None, **kw):
    args = dict(name="mnist", stages=stages, entry="train.py", target=target(), run_env={},
                image=IMAGE, code=CODE, provenance=PROV, root=root, config_file="devloop.toml")
    args.update(kw)
    return build_pipeline(**args)


def error_of(fn) -> PromoteError:
    with pytest.raises(PromoteError) as info:
        fn()
    text = str(info.value)
    assert "\n" not in text and "fix:" in text
    return info.value


# ------------------------------------------------------------------ cells and commands


def test_split_code_cells_skips_markdown_and_counts_preamble_code():
    cells = split_code_cells(CELLS)
    assert [line for line, _ in cells] == [1, 3, 9]
    assert "print(x + 1)" in cells[2][1]


def test_comment_only_preamble_is_not_a_cell():
    assert [line for line, _ in split_code_cells("# just a header\n\n# %%\nx = 1\n")] == [3]


def test_script_stage_runs_python_file(tmp_path: Path):
    (tmp_path / "prep.py").write_text("print(1)\n")
    step = build([StageSpec(name="prep", run="prep.py")], root=tmp_path).steps[0]
    assert step.command == ("python", "prep.py") and step.script == ""


def test_cell_range_is_extracted_into_a_script(tmp_path: Path):
    (tmp_path / "train.py").write_text(CELLS)
    step = build([StageSpec(name="train", run="train.py:2-3")], root=tmp_path).steps[0]
    assert step.command == ("python",)
    assert "x = 1" in step.script and "print(x + 1)" in step.script
    assert "import os" not in step.script and "some notes" not in step.script
    assert step.cells == (2, 3) and step.file == "train.py"


def test_shell_command_stage(tmp_path: Path):
    step = build([StageSpec(name="eval", run="python -m pkg.eval --n 3")], root=tmp_path).steps[0]
    assert step.command == ("sh", "-c", "python -m pkg.eval --n 3")


def test_no_stages_runs_the_entry_file(tmp_path: Path):
    (tmp_path / "train.py").write_text(CELLS)
    p = build([], root=tmp_path)
    assert [(s.name, s.command) for s in p.steps] == [("train", ("python", "train.py"))]


def test_cell_range_out_of_bounds_names_run(tmp_path: Path):
    (tmp_path / "train.py").write_text(CELLS)
    err = error_of(lambda: build([StageSpec(name="t", run="train.py:2-9", line=7)], root=tmp_path))
    assert err.field == "run" and "devloop.toml:7" in str(err) and "3 code cells" in str(err)


def test_missing_file_names_run(tmp_path: Path):
    err = error_of(lambda: build([StageSpec(name="t", run="nope.py")], root=tmp_path))
    assert err.field == "run"


# ------------------------------------------------------------------ graph


def test_unknown_need_names_needs():
    err = error_of(lambda: build([StageSpec(name="a", run="true", needs=("b",))]))
    assert err.field == "needs" and "'b'" in str(err)


def test_cycle_names_needs():
    err = error_of(lambda: build([StageSpec(name="a", run="true", needs=("b",)),
                                  StageSpec(name="b", run="true", needs=("a",))]))
    assert err.field == "needs" and "cycle" in str(err)


def test_stage_names_become_dns_labels_and_bad_ones_are_errors():
    assert dns_name("Prepare_Data", what="stage name", file="f") == "prepare-data"
    err = error_of(lambda: build([StageSpec(name="-bad!", run="true", line=3)]))
    assert err.field == "name" and "devloop.toml:3" in str(err)


def test_colliding_names_are_an_error():
    err = error_of(lambda: build([StageSpec(name="a_b", run="true"), StageSpec(name="a-b", run="true")]))
    assert err.field == "name"


def test_output_outside_project_names_outputs():
    err = error_of(lambda: build([StageSpec(name="a", run="true", outputs=("../x",))]))
    assert err.field == "outputs"


# ------------------------------------------------------------------ resources


@pytest.mark.parametrize("raw, want", [(4, "4"), ("500m", "500m"), (0.5, "0.5"), ("2", "2")])
def test_cpu_quantities_are_strings(raw, want):
    assert quantity(raw, fld="cpu", file="p") == want


def test_docker_style_memory_becomes_binary_suffix():
    assert quantity("16g", fld="memory", file="p", memory=True) == "16Gi"


def test_bad_quantity_names_the_field_and_file():
    err = error_of(lambda: quantity("lots", fld="memory", file="profiles/x.yaml", memory=True))
    assert err.field == "memory" and "profiles/x.yaml" in str(err)


@pytest.mark.parametrize("raw, want", [(1, "1"), ("2", "2"), (("0", "1"), "2"), (None, ""), (0, "")])
def test_gpu_counts(raw, want):
    assert gpu_count(raw, fld="gpus", file="p") == want


def test_gpus_all_is_an_error_naming_gpus():
    err = error_of(lambda: build([StageSpec(name="a", run="true")], target=target(gpus="all")))
    assert err.field == "gpus" and "profiles/k8s-gpu.yaml" in str(err)


def test_stage_resources_override_profile():
    p = build([StageSpec(name="a", run="true", gpus=2, memory="8g"), StageSpec(name="b", run="true", gpus=0)])
    assert (p.steps[0].resources.gpus, p.steps[0].resources.memory, p.steps[0].resources.cpu) == ("2", "8Gi", "8")
    assert p.steps[1].resources.gpus == ""


def test_tolerations_keys_are_camel_cased():
    p = build([StageSpec(name="a", run="true")],
              target=target(tolerations=({"key": "gpu", "operator": "Exists", "toleration_seconds": 30},)))
    assert p.tolerations[0]["tolerationSeconds"] == 30


def test_no_image_names_image():
    err = error_of(lambda: build([StageSpec(name="a", run="true")], image=""))
    assert err.field == "image"


# ------------------------------------------------------------------ secrets


@pytest.mark.parametrize("name", ["HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "API_KEY",
                                  "my_secret", "OPENAI_API_KEY"])
def test_secret_looking_names(name):
    assert looks_secret(name, "x")


@pytest.mark.parametrize("name", ["WANDB_PROJECT", "PYTHONUNBUFFERED", "KEYBOARD", "TOKENIZERS_PARALLELISM"])
def test_ordinary_names(name):
    assert not looks_secret(name, "1")


def test_secret_looking_value_is_caught_under_any_name():
    assert looks_secret("WHATEVER", "ghp_" + "a" * 36)


def test_secret_in_profile_env_is_refused_and_told_to_reference():
    err = error_of(lambda: build([StageSpec(name="a", run="true")],
                                 target=target(env={"HF_TOKEN": "hf_abc"})))
    assert err.field == "env.HF_TOKEN" and "env_from_secrets" in str(err)
    assert "hf_abc" not in str(err)


def test_secret_in_stage_env_is_refused_with_the_stage_line():
    err = error_of(lambda: build([StageSpec(name="a", run="true", env={"DB_PASSWORD": "x"}, line=12)]))
    assert err.field == "env.DB_PASSWORD" and "devloop.toml:12" in str(err)


def test_secret_in_run_env_is_refused():
    err = error_of(lambda: build([StageSpec(name="a", run="true")], run_env={"MY_SECRET": "x"}))
    assert err.field == "run.env.MY_SECRET"


def test_env_from_secrets_as_config_reads_it():
    refs, whole = parse_secret_refs(({"name": "HF_TOKEN", "secret": "hf", "key": "token"}, "wandb"),
                                    file="p.yaml")
    assert [(r.env, r.secret, r.key) for r in refs] == [("HF_TOKEN", "hf", "token")]
    assert whole == ("wandb",)


def test_bad_secret_name_names_the_entry():
    err = error_of(lambda: parse_secret_refs(({"name": "HF_TOKEN", "secret": "Bad_Name", "key": "t"},),
                                             file="p.yaml"))
    assert err.field == "env_from_secrets.HF_TOKEN"


def test_secret_refs_reach_every_step_and_override_inline():
    p = build([StageSpec(name="a", run="true")],
              target=target(env={"X": "1"}, env_from_secrets=({"name": "HF_TOKEN", "secret": "hf", "key": "t"},)))
    assert p.steps[0].env == (("X", "1"),)
    assert p.steps[0].secret_env[0].env == "HF_TOKEN"
