"""devloop.toml and profiles/*.yaml: defaults, every field's type check, errors naming file:line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from devloop.core.config import (
    Config,
    ConfigError,
    Profile,
    load_config,
    SessionConfig,
    load_profile,
    parse_duration,
    parse_quantity,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def config_error(tmp_path: Path, toml: str) -> ConfigError:
    write(tmp_path / "devloop.toml", toml)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    return info.value


def profile_error(tmp_path: Path, yaml_text: str, name: str = "p") -> ConfigError:
    write(tmp_path / "profiles" / f"{name}.yaml", yaml_text)
    config = load_config(tmp_path)
    with pytest.raises(ConfigError) as info:
        config.profile(name)
    return info.value


# ------------------------------------------------------------------------------ ConfigError


def test_error_is_one_line_with_every_part():
    err = ConfigError("unknown key 'nmae'", file="devloop.toml", line=3, suggestion="name",
                      hint="valid keys: name")
    assert str(err) == ("devloop.toml:3: unknown key 'nmae' (did you mean 'name'?) -- fix: "
                        "valid keys: name")
    assert (err.file, err.line, err.message, err.hint) == ("devloop.toml", 3, "unknown key 'nmae'",
                                                         "valid keys: name")


def test_error_leaves_out_unknown_parts():
    assert str(ConfigError("bad")) == "bad"
    assert str(ConfigError("bad", file="f.toml")) == "f.toml: bad"
    assert "\n" not in str(ConfigError("two\nlines", file="f", line=1, hint="a\nb"))


# ------------------------------------------------------------------------------ defaults / search


def test_no_config_file_gives_defaults_rooted_at_start(tmp_path):
    (tmp_path / ".git").mkdir()
    config = load_config(tmp_path)
    assert config.file is None
    assert config.root == tmp_path.resolve()
    assert config.project.name == tmp_path.name
    assert config.project.profile == "local" and config.project.entry is None
    assert config.sync.exclude == () and config.sync.debounce_ms == 50 and config.sync.dest is None
    assert config.run.rerun == "linear" and dict(config.run.env) == {} and config.run.python is None
    assert config.gpu.interval_ms == 1000 and config.ui.scrollback == 10000
    assert config.stages == ()
    assert config.promote.targets == ("argo",) and config.promote.out == "pipelines"


def test_config_found_upward_from_a_subfolder(tmp_path):
    write(tmp_path / "devloop.toml", '[project]\nname = "demo"\n')
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    config = load_config(sub)
    assert config.file == (tmp_path / "devloop.toml").resolve()
    assert config.root == tmp_path.resolve()
    assert config.project.name == "demo"


def test_search_stops_at_the_git_folder(tmp_path):
    write(tmp_path / "devloop.toml", '[project]\nname = "outer"\n')
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src").mkdir()
    config = load_config(repo / "src")
    assert config.file is None
    assert config.root == (repo / "src").resolve()


def test_explicit_file(tmp_path):
    path = write(tmp_path / "conf" / "other.toml", '[project]\nname = "x"\n')
    config = load_config(Path("/"), file=path)
    assert config.file == path.resolve() and config.root == path.parent.resolve()
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path, file=tmp_path / "missing.toml")


def test_full_config_reads_every_field(tmp_path):
    write(tmp_path / "devloop.toml", """
        [project]
        name = "demo"
        entry = "train.py"
        profile = "gpu"

        [sync]
        dest = "/workspace/demo"
        exclude = ["data/", "*.ckpt"]
        debounce_ms = 120

        [run]
        rerun = "reactive"
        python = "python3.11"
        [run.env]
        SEED = "1"
        WORKERS = 4

        [gpu]
        interval_ms = 500

        [ui]
        scrollback = 2000

        [[stage]]
        name = "prepare"
        run = "python prepare.py"
        outputs = ["data/"]

        [[stage]]
        name = "train"
        run = "python train.py"
        needs = ["prepare"]
        gpus = 2
        cpu = 8
        memory = "32Gi"
        [stage.env]
        MODE = "full"

        [promote]
        targets = ["argo", "github"]
        out = "ci/pipelines"
        name = "demo-pipeline"
    """)
    config = load_config(tmp_path)
    assert config.project.entry == "train.py" and config.project.profile == "gpu"
    assert config.sync.dest == "/workspace/demo" and config.sync.exclude == ("data/", "*.ckpt")
    assert config.sync.debounce_ms == 120
    assert config.run.rerun == "reactive" and config.run.python == "python3.11"
    assert dict(config.run.env) == {"SEED": "1", "WORKERS": "4"}
    assert config.gpu.interval_ms == 500 and config.ui.scrollback == 2000
    prepare, train = config.stages
    assert prepare.outputs == ("data/",) and prepare.line == 24
    assert train.needs == ("prepare",) and train.gpus == 2 and train.cpu == "8"
    assert train.memory == "32Gi" and dict(train.env) == {"MODE": "full"} and train.line == 29
    assert config.promote.targets == ("argo", "github") and config.promote.out == "ci/pipelines"
    assert config.promote.name == "demo-pipeline"
    data = config.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["stages"][1]["env"] == {"MODE": "full"}


def test_config_is_immutable(tmp_path):
    write(tmp_path / "devloop.toml", '[run.env]\nA = "1"\n')
    config = load_config(tmp_path)
    with pytest.raises(AttributeError):
        config.project = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.run.env["B"] = "2"  # type: ignore[index]


# ------------------------------------------------------------------------------ toml errors


def test_malformed_toml_names_file_and_line(tmp_path):
    err = config_error(tmp_path, '[project]\nname = "x"\nentry = \n')
    assert err.line == 3 and err.file == (tmp_path / "devloop.toml").resolve()
    assert str(err).startswith(f"{err.file}:3: invalid TOML")
    assert "at line" not in err.message


def test_malformed_toml_at_end_of_file(tmp_path):
    err = config_error(tmp_path, '[sync]\nexclude = ["a",\n')
    assert err.line == 2 and "invalid TOML" in str(err)


def test_unknown_key_suggests_nearest(tmp_path):
    err = config_error(tmp_path, '[project]\nname = "x"\n\n[sync]\nexlude = ["a"]\n')
    assert err.line == 5 and err.suggestion == "exclude"
    assert "unknown key 'exlude' in [sync]" in str(err)
    assert "(did you mean 'exclude'?)" in str(err)


def test_unknown_section_suggests_nearest(tmp_path):
    err = config_error(tmp_path, '[project]\nname = "x"\n[promot]\nout = "p"\n')
    assert err.line == 3 and err.suggestion == "promote"


def test_unknown_key_in_stage_points_at_its_line(tmp_path):
    err = config_error(tmp_path, """
        [[stage]]
        name = "a"
        run = "x"

        [[stage]]
        name = "b"
        run = "y"
        gpu = 1
    """)
    assert err.line == 8 and err.suggestion == "gpus"


@pytest.mark.parametrize(
    "toml, line, fragment",
    [
        ('[project]\nname = 3\n', 2, "'project.name' must be a string"),
        ('[project]\nentry = ["a"]\n', 2, "'project.entry' must be a string"),
        ('[project]\nprofile = "../x"\n', 2, "invalid profile name"),
        ('[sync]\ndest = 1\n', 2, "'sync.dest' must be a string"),
        ('[sync]\nexclude = "data/"\n', 2, "'sync.exclude' must be a list"),
        ('[sync]\nexclude = ["a", 1]\n', 2, "'sync.exclude[1]' must be a string"),
        ('[sync]\ndebounce_ms = "fast"\n', 2, "'sync.debounce_ms' must be a whole number"),
        ('[sync]\ndebounce_ms = 1.5\n', 2, "'sync.debounce_ms' must be a whole number"),
        ('[sync]\ndebounce_ms = -1\n', 2, "at least 0"),
        ('[run]\nrerun = "reactiv"\n', 2, "'run.rerun' must be one of linear, reactive"),
        ('[run]\nenv = "A=1"\n', 2, "'run.env' must be a table"),
        ('[run.env]\nA = true\n', 2, "'run.env.A' must be a string"),
        ('[run]\npython = false\n', 2, "'run.python' must be a string"),
        ('[run]\nargs = "--epochs 3"\n', 2, "'run.args' must be a list"),
        ('[run]\nargs = ["--epochs", 3]\n', 2, "'run.args[1]' must be a string"),
        ('[gpu]\ninterval_ms = true\n', 2, "'gpu.interval_ms' must be a whole number"),
        ('[ui]\nscrollback = "lots"\n', 2, "'ui.scrollback' must be a whole number"),
        ('[promote]\ntargets = ["argo", "jenkins"]\n', 2, "must be one of argo, github"),
        ('[promote]\nout = 3\n', 2, "'promote.out' must be a string"),
        ('[promote]\nname = []\n', 2, "'promote.name' must be a string"),
        ('[stage]\nname = "a"\nrun = "x"\n', 1, "array of tables"),
        ('[[stage]]\nrun = "x"\n', 1, "missing 'name'"),
        ('[[stage]]\nname = "a"\n', 1, "missing 'run'"),
        ('[[stage]]\nname = "a"\nrun = "x"\ngpus = true\n', 4, "must be a GPU count"),
        ('[[stage]]\nname = "a"\nrun = "x"\ncpu = "lots"\n', 4, "must be a quantity"),
        ('[[stage]]\nname = "a"\nrun = "x"\nmemory = "16 GB"\n', 4, "must be a quantity"),
        ('[[stage]]\nname = "a"\nrun = "x"\nneeds = [1]\n', 4, "'stage[0].needs[0]' must be a string"),
        ('[[stage]]\nname = "a"\nrun = "x"\n[[stage]]\nname = "a"\nrun = "y"\n', 5, "duplicate stage"),
        ('[[stage]]\nname = "a"\nrun = "x"\nneeds = ["a"]\n', 4, "needs itself"),
    ],
)
def test_type_errors_name_the_field_and_line(tmp_path, toml, line, fragment):
    err = config_error(tmp_path, toml)
    assert fragment in str(err)
    assert err.line == line, str(err)
    assert str(err).startswith(f"{tmp_path.resolve() / 'devloop.toml'}:{line}: ")
    assert " -- fix: " in str(err) and err.hint, str(err)


def test_rerun_typo_suggests_value(tmp_path):
    err = config_error(tmp_path, '[run]\nrerun = "reactiv"\n')
    assert err.suggestion == "reactive"


def test_stage_needs_unknown_stage_suggests(tmp_path):
    err = config_error(tmp_path, """
        [[stage]]
        name = "prepare"
        run = "x"
        [[stage]]
        name = "train"
        run = "y"
        needs = ["prepar"]
    """)
    assert err.line == 7 and err.suggestion == "prepare"


def test_stage_cycle_is_an_error(tmp_path):
    err = config_error(tmp_path, """
        [[stage]]
        name = "a"
        run = "x"
        needs = ["b"]
        [[stage]]
        name = "b"
        run = "y"
        needs = ["a"]
    """)
    assert "cycle" in str(err) and "a -> b -> a" in str(err)


def test_non_utf8_config_is_an_error(tmp_path):
    (tmp_path / "devloop.toml").write_bytes(b'[project]\nname = "\xff"\n')
    with pytest.raises(ConfigError, match=r"devloop.toml:2: not valid UTF-8"):
        load_config(tmp_path)


# ------------------------------------------------------------------------------ profiles


def test_built_in_local_profile(tmp_path):
    config = load_config(tmp_path)
    profile = config.profile()
    assert profile == Profile(name="local")
    assert profile.kind == "local" and profile.workdir is None and profile.source == "<built-in>"
    assert config.profile_names() == ["local"]


def test_local_yaml_overrides_the_built_in(tmp_path):
    write(tmp_path / "profiles" / "local.yaml", """
        env:
          DEBUG: "1"
        python: .venv/bin/python
        setup: pip install -r requirements.txt
    """)
    profile = load_config(tmp_path).profile("local")
    assert profile.kind == "local" and dict(profile.env) == {"DEBUG": "1"}
    assert profile.python == ".venv/bin/python" and profile.source.endswith("local.yaml")


def test_project_default_profile(tmp_path):
    write(tmp_path / "devloop.toml", '[project]\nprofile = "gpu"\n')
    write(tmp_path / "profiles" / "gpu.yaml", "kind: docker\nimage: img:1\n")
    assert load_config(tmp_path).profile().name == "gpu"
    assert load_config(tmp_path).profile("local").name == "local"


def test_unknown_profile_names_the_available_ones(tmp_path):
    write(tmp_path / "devloop.toml", '[project]\nname = "x"\nprofile = "dokcer-gpu"\n')
    write(tmp_path / "profiles" / "docker-gpu.yaml", "kind: docker\nimage: img:1\n")
    config = load_config(tmp_path)
    with pytest.raises(ConfigError) as info:
        config.profile()
    err = info.value
    assert "available: docker-gpu, local" in str(err)
    assert err.suggestion == "docker-gpu" and "devloop init" in err.hint
    assert err.line == 3  # the [project].profile line
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        config.profile("nope")


def test_profile_name_cannot_escape_the_profiles_folder(tmp_path):
    with pytest.raises(ConfigError, match="invalid profile name"):
        load_config(tmp_path).profile("../secrets")


def test_docker_profile_every_key(tmp_path):
    write(tmp_path / "profiles" / "d.yaml", """
        kind: docker
        image: pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime
        build:
          context: docker
          dockerfile: Dockerfile.gpu
          args: {PY: 3.11}
        gpus: [0, 1]
        shm_size: 8Gi
        volumes: ["~/data:/data:ro", "/cache:/root/.cache"]
        network: host
        user: "1000:1000"
        docker_host: ssh://me@box
        cpu: 4
        memory: 16Gi
        workdir: /workspace/
        python: python3
        setup: pip install -e .
        env: {A: 1}
        keep: true
        snapshot_on_stop: true
        runs_on: [self-hosted, gpu]
    """)
    p = load_config(tmp_path).profile("d")
    assert p.kind == "docker" and p.gpus == ("0", "1") and p.shm_size == "8Gi"
    assert dict(p.build) == {"context": "docker", "dockerfile": "Dockerfile.gpu",
                             "args": {"PY": "3.11"}}
    assert p.volumes == ("~/data:/data:ro", "/cache:/root/.cache")
    assert p.cpu == "4" and p.memory == "16Gi" and p.workdir == "/workspace"
    assert p.keep is True and p.snapshot_on_stop is True and dict(p.env) == {"A": "1"}
    assert p.runs_on == ("self-hosted", "gpu")
    assert json.loads(json.dumps(p.to_dict()))["build"]["args"] == {"PY": "3.11"}


@pytest.mark.parametrize("raw, normalised", [
    ("all", "all"), ("2", 2), (3, 3), (0, 0), ("device=0,2", ("0", "2")), ("0,1", ("0", "1")),
    (["GPU-1a2b", 1], ("GPU-1a2b", "1")),
])
def test_gpus_forms(tmp_path, raw, normalised):
    write(tmp_path / "profiles" / "d.yaml", f"kind: docker\nimage: i\ngpus: {json.dumps(raw)}\n")
    assert load_config(tmp_path).profile("d").gpus == normalised


def test_gpus_yes_is_a_type_error_with_line(tmp_path):
    err = profile_error(tmp_path, "kind: docker\nimage: img\ngpus: yes\n")
    assert err.line == 3 and "'gpus' must be 'all', a count" in str(err)
    assert "boolean" in str(err) and err.suggestion == "all"
    assert str(err).startswith(f"{tmp_path / 'profiles' / 'p.yaml'}:3: ")


@pytest.mark.parametrize(
    "yaml_text, line, fragment",
    [
        ("kind: docker\nimage: 3\n", 2, "'image' must be a string"),
        ("kind: docker\nimage: i\ngpus: alll\n", 3, "'gpus' must be 'all'"),
        ("kind: docker\nimage: i\ngpus: -1\n", 3, "'gpus' must be 'all'"),
        ("kind: docker\nimage: i\ngpus: [0, yes]\n", 3, "'gpus[1]' must be a device index"),
        ("kind: docker\nimage: i\nkeep: 'no'\n", 3, "'keep' must be true or false"),
        ("kind: docker\nimage: i\nshm_size: huge\n", 3, "'shm_size' must be a quantity"),
        ("kind: docker\nimage: i\nvolumes: /data\n", 3, "'volumes' must be a list"),
        ("kind: docker\nimage: i\nvolumes:\n  - /data\n", 4, "'volumes[0]' must look like"),
        ("kind: docker\nimage: i\nvolumes: ['a:/b:rx']\n", 3, "'volumes[0]' must look like"),
        ("kind: docker\nimage: i\nworkdir: relative/dir\n", 3, "must be an absolute path"),
        ("kind: docker\nimage: i\nenv:\n  A: [1]\n", 4, "'env.A' must be a string"),
        ("kind: docker\nimage: i\nenv:\n  1BAD: x\n", 4, "invalid variable name"),
        ("kind: docker\nimage: i\nbuild: {context: ., dockerfle: D}\n", 3, "unknown key 'dockerfle'"),
        ("kind: docker\n", 1, "needs 'image' or 'build'"),
        ("kind: ssh\nport: 22\n", 1, "missing 'host'"),
        ("kind: ssh\nhost: h\nport: 70000\n", 3, "must be a port number"),
        ("kind: ssh\nhost: h\nport: '22'\n", 3, "'port' must be a whole number"),
        ("kind: ssh\nhost: h\ndocker:\n  gpus: all\n", 3, "docker block needs 'image'"),
        ("kind: ssh\nhost: h\ndocker:\n  image: i\n  imgae: x\n", 5, "unknown key 'imgae'"),
        ("kind: kubernetes\nnamespace: ml\n", 1, "missing 'image'"),
        ("kind: kubernetes\nimage: i\nnode_selector: gpu\n", 3, "'node_selector' must be a mapping"),
        ("kind: kubernetes\nimage: i\ntolerations:\n  - {key: k, operator: Equals}\n", 4,
         "'tolerations[0].operator' must be one of Exists, Equal"),
        ("kind: kubernetes\nimage: i\nvolumes:\n  - claim: data\n", 4, "missing 'mount_path'"),
        ("kind: kubernetes\nimage: i\nvolumes:\n  - {claim: d, mount_path: /d, read_only: 1}\n",
         4, "'volumes[0].read_only' must be true or false"),
        ("kind: kubernetes\nimage: i\nimage_pull_secrets: regcred\n", 3, "must be a list"),
        ("kind: kubernetes\nimage: i\nenv_from_secrets:\n  - {name: A, secret: s}\n", 4,
         "missing 'key'"),
        ("kind: kubernetes\nimage: i\nenv_from_secrets:\n  TOKEN: just-a-name\n", 4,
         "must be \"SECRET/KEY\""),
        ("kind: kubernetes\nimage: i\ncpu: 8 cores\n", 3, "'cpu' must be a quantity"),
        ("kind: dokcer\n", 1, "'kind' must be one of local, docker, ssh, kubernetes"),
        ("image: i\n", 1, "missing 'kind'"),
        ("- kind: docker\n", 1, "must be a mapping of keys"),
        ("kind: docker\nimage: i\nimage: j\n", 3, "duplicate key 'image'"),
    ],
)
def test_profile_errors_name_the_field_and_line(tmp_path, yaml_text, line, fragment):
    err = profile_error(tmp_path, yaml_text)
    assert fragment in str(err)
    assert err.line == line, str(err)
    assert str(err).startswith(f"{tmp_path / 'profiles' / 'p.yaml'}:{line}: ")
    assert " -- fix: " in str(err) and err.hint, str(err)


def test_bad_kind_suggests_the_nearest(tmp_path):
    assert profile_error(tmp_path, "kind: dokcer\n").suggestion == "docker"
    assert profile_error(tmp_path, "kind: kubernets\n").suggestion == "kubernetes"


def test_unknown_profile_key_suggests_nearest(tmp_path):
    err = profile_error(tmp_path, "kind: docker\nimage: i\n\nshm_sise: 8Gi\n")
    assert err.line == 4 and err.suggestion == "shm_size"
    assert "unknown key 'shm_sise' in a docker profile" in str(err)


def test_key_of_another_kind_is_an_error_naming_file_and_line(tmp_path):
    err = profile_error(tmp_path, "kind: ssh\nhost: gpu1\nshm_size: 8Gi\n")
    assert err.line == 3 and "unknown key 'shm_size' in an ssh profile" in str(err)
    assert "is for kind docker / kubernetes" in err.hint and "docker:" in err.hint
    err = profile_error(tmp_path, "kind: docker\nimage: i\nnamespace: ml\n")
    assert err.line == 3 and "kind kubernetes" in err.hint
    err = profile_error(tmp_path, "kind: local\nimage: i\n")
    assert err.line == 2


def test_malformed_yaml_names_file_and_line(tmp_path):
    err = profile_error(tmp_path, "kind: docker\nimage: i\n  gpus: [\n")
    assert err.line == 3 and "invalid YAML" in str(err)
    err = profile_error(tmp_path, "kind: docker\nenv: {A: 1\n")
    assert err.file == tmp_path / "profiles" / "p.yaml" and err.line is not None
    assert "invalid YAML" in str(err)


def test_empty_profile_file(tmp_path):
    err = profile_error(tmp_path, "")
    assert "missing 'kind'" in str(err)
    write(tmp_path / "profiles" / "local.yaml", "# only comments\n")
    assert load_config(tmp_path).profile("local").kind == "local"


def test_ssh_profile_with_docker_block(tmp_path):
    write(tmp_path / "profiles" / "s.yaml", """
        kind: ssh
        host: gpu-box
        port: 2222
        user: ml
        identity_file: ~/.ssh/id_ed25519
        known_hosts: ~/.ssh/known_hosts
        workdir: ~/work
        docker:
          image: pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime
          gpus: all
          shm_size: 8Gi
          volumes: ["/data:/data:ro"]
          workdir: /workspace
    """)
    p = load_config(tmp_path).profile("s")
    assert p.host == "gpu-box" and p.port == 2222 and p.user == "ml" and p.workdir == "~/work"
    assert p.docker["image"].startswith("pytorch/") and p.docker["gpus"] == "all"
    assert p.docker["volumes"] == ("/data:/data:ro",) and p.docker["workdir"] == "/workspace"


def test_kubernetes_profile_every_key(tmp_path):
    write(tmp_path / "profiles" / "k.yml", """
        kind: kubernetes
        image: img:1
        context: prod
        namespace: ml
        gpus: 2
        cpu: "500m"
        memory: 64Gi
        shm_size: 16Gi
        node_selector: {pool: a100}
        tolerations:
          - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
        image_pull_secrets: [regcred]
        env_from_secrets:
          - wandb-env
          - {name: HF_TOKEN, secret: hf, key: token}
        service_account: trainer
        volumes:
          - {claim: datasets, mount_path: /data, read_only: true}
          - {claim: scratch, mount_path: /scratch}
    """)
    config = load_config(tmp_path)
    assert "k" in config.profile_names()
    p = config.profile("k")
    assert p.context == "prod" and p.namespace == "ml" and p.gpus == 2 and p.cpu == "500m"
    assert dict(p.node_selector) == {"pool": "a100"}
    assert dict(p.tolerations[0]) == {"key": "nvidia.com/gpu", "operator": "Exists",
                                      "effect": "NoSchedule"}
    assert p.image_pull_secrets == ("regcred",)
    assert p.env_from_secrets[0] == "wandb-env"
    assert dict(p.env_from_secrets[1]) == {"name": "HF_TOKEN", "secret": "hf", "key": "token"}
    assert [dict(v) for v in p.volumes] == [
        {"claim": "datasets", "mount_path": "/data", "read_only": True},
        {"claim": "scratch", "mount_path": "/scratch", "read_only": False},
    ]


def test_env_from_secrets_mapping_form(tmp_path):
    write(tmp_path / "profiles" / "k.yaml",
          "kind: kubernetes\nimage: i\nenv_from_secrets: {WANDB_API_KEY: wandb/api-key}\n")
    p = load_config(tmp_path).profile("k")
    assert [dict(e) for e in p.env_from_secrets] == [
        {"name": "WANDB_API_KEY", "secret": "wandb", "key": "api-key"}]


def test_profile_is_read_fresh_and_immutable(tmp_path):
    path = write(tmp_path / "profiles" / "d.yaml", "kind: docker\nimage: a\n")
    config = load_config(tmp_path)
    assert config.profile("d").image == "a"
    path.write_text("kind: docker\nimage: b\n")
    p = config.profile("d")
    assert p.image == "b"
    with pytest.raises(AttributeError):
        p.image = "c"  # type: ignore[misc]


def test_load_profile_directly(tmp_path):
    path = write(tmp_path / "x.yaml", "kind: docker\nimage: a\n")
    assert load_profile(path).name == "x"


def test_repository_profiles_load():
    """The ready profiles shipped in the repository's profiles/ folder are valid."""
    repo = Path(__file__).resolve().parents[2]
    config = load_config(repo)
    assert isinstance(config, Config)
    for name in ("local", "docker-gpu", "ssh-gpu", "k8s-gpu"):
        assert config.profile(name).name == name


@pytest.mark.parametrize("text, value", [
    ("500m", 0.5), ("2", 2.0), ("16Gi", 16 * 2**30), ("8G", 8e9), ("1.5", 1.5), ("1e3", 1000.0),
])
def test_parse_quantity(text, value):
    assert parse_quantity(text) == pytest.approx(value)


def test_parse_quantity_rejects_garbage():
    with pytest.raises(ValueError):
        parse_quantity("16 GB")


@pytest.mark.parametrize("raw, normalised", [
    ("16g", "16Gi"), ("512m", "512Mi"), ("8GB", "8Gi"), ("1.5g", "1.5Gi"), ("2tb", "2Ti"),
    ("100b", "100"), ("16Gi", "16Gi"), ("8G", "8G"), (1073741824, "1073741824"),
])
def test_memory_accepts_docker_units_and_rewrites_them(tmp_path, raw, normalised):
    write(tmp_path / "profiles" / "d.yaml",
          f"kind: docker\nimage: i\nmemory: {json.dumps(raw)}\nshm_size: {json.dumps(raw)}\n")
    p = load_config(tmp_path).profile("d")
    assert p.memory == normalised and p.shm_size == normalised
    parse_quantity(p.memory)  # what the targets do with it


# ------------------------------------------------------------------------------ [session]


def test_session_idle_stop_defaults_to_two_hours(tmp_path):
    (tmp_path / ".git").mkdir()
    assert load_config(tmp_path).session == SessionConfig(idle_stop_s=7200.0)
    write(tmp_path / "devloop.toml", '[project]\nname = "x"\n')
    assert load_config(tmp_path).session.idle_stop_s == 7200.0


@pytest.mark.parametrize("text, seconds", [
    ("2h", 7200.0), ("30m", 1800.0), ("90s", 90.0), ("0", 0.0), ("1d", 86400.0),
    ("1h30m", 5400.0), ("1.5h", 5400.0), (" 45m ", 2700.0),
])
def test_session_idle_stop_durations(tmp_path, text, seconds):
    write(tmp_path / "devloop.toml", f'[session]\nidle_stop = "{text}"\n')
    config = load_config(tmp_path)
    assert config.session.idle_stop_s == seconds
    assert config.to_dict()["session"] == {"idle_stop_s": seconds}
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("toml, line, fragment", [
    ('[session]\nidle_stop = 7200\n', 2, "must be a duration string"),
    ('[session]\nidle_stop = "2 hours"\n', 2, "must be a duration like"),
    ('[session]\nidle_stop = "h"\n', 2, "must be a duration like"),
    ('[session]\nidle_stop = "-1h"\n', 2, "must be a duration like"),
    ('[session]\nidle_stop = "400d"\n', 2, "at most 366 days"),
    ('[session]\nidle_stop = "²h"\n', 2, "must be a duration like"),
    ('[session]\nidle_stopp = "2h"\n', 2, "unknown key 'idle_stopp'"),
    ('session = 3\n', 1, "must be a table"),
])
def test_session_errors_name_the_line_and_a_fix(tmp_path, toml, line, fragment):
    err = config_error(tmp_path, toml)
    assert fragment in str(err) and err.line == line, str(err)
    assert " -- fix: " in str(err)


def test_unknown_section_suggests_session(tmp_path):
    assert config_error(tmp_path, '[sesion]\nidle_stop = "1h"\n').suggestion == "session"


def test_profile_may_override_idle_stop(tmp_path):
    write(tmp_path / "devloop.toml", '[session]\nidle_stop = "2h"\n')
    write(tmp_path / "profiles" / "gpu.yaml", "kind: docker\nimage: i\nidle_stop: 15m\n")
    config = load_config(tmp_path)
    assert config.profile("gpu").idle_stop_s == 900.0
    assert config.profile("local").idle_stop_s is None
    assert config.profile("gpu").to_dict(only_set=True)["idle_stop_s"] == 900.0
    err = profile_error(tmp_path, "kind: docker\nimage: i\nidle_stop: true\n")
    assert err.line == 3 and "'idle_stop' must be a duration string" in str(err)


def test_run_args_are_the_files_argv(tmp_path):
    write(tmp_path / "devloop.toml", '[run]\nargs = ["--epochs", "3"]\n')
    assert load_config(tmp_path).run.args == ("--epochs", "3")
    write(tmp_path / "devloop.toml", "[run]\n")
    assert load_config(tmp_path).run.args == ()
