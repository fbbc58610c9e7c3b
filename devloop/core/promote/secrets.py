"""Secrets in a pipeline are referenced, never inlined.

Env values go into a committed file, so a variable whose name looks secret (`*_TOKEN`, `*_KEY`,
`*PASSWORD*`, `*SECRET*`) or whose value looks like a known credential is refused with a message
that says to reference a secret instead. References come from the profile's `env_from_secrets`:

    env_from_secrets:
      - {name: HF_TOKEN, secret: hf-credentials, key: token}   # one variable from a secret key
      - wandb                                                  # every key of secret `wandb`

Argo gets `valueFrom.secretKeyRef` (and `envFrom.secretRef` for a whole secret); GitHub Actions
gets `${{ secrets.ENV_NAME }}` (a whole secret cannot be expressed there: an error says so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

_SECRET_NAME = re.compile(r"(_TOKEN$|_KEY$|PASSWORD|SECRET|^TOKEN$|^API_KEY$|PASSWD)", re.IGNORECASE)
_SECRET_VALUE = re.compile(
    r"^(ghp_|gho_|ghs_|github_pat_|glpat-|hf_[A-Za-z0-9]{20}|sk-[A-Za-z0-9_-]{16}|xox[abpr]-|AKIA[0-9A-Z]{16})")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclass(frozen=True)
class SecretRef:
    env: str  # the variable the process sees
    secret: str  # Kubernetes secret name
    key: str  # key inside the secret


def looks_secret(name: str, value: str = "") -> bool:
    """True for a variable that must not be written into a committed file."""
    return bool(_SECRET_NAME.search(name)) or bool(_SECRET_VALUE.match(str(value)))


def check_inline_env(env: Mapping[str, Any], *, file: str, field_prefix: str, line: int | None = None) -> None:
    """Raise PromoteError for the first secret-looking variable in an env meant to be inlined."""
    from devloop.core.promote.model import PromoteError

    for name, value in env.items():
        if looks_secret(str(name), str(value)):
            raise PromoteError(
                f"{name} looks like a secret and would be written into the pipeline in clear",
                file=file, line=line, field=f"{field_prefix}.{name}",
                hint=(f"remove it from {field_prefix} and reference a secret in the profile: "
                      f"env_from_secrets: {{{name}: SECRET_NAME/KEY}}"))


def parse_secret_refs(raw: Any, *, file: str) -> tuple[tuple[SecretRef, ...], tuple[str, ...]]:
    """The profile's `env_from_secrets` as (variables from secret keys, whole secrets as env).

    Accepted: a list of `{name: ENV, secret: S, key: K}` and of strings (a whole secret whose
    keys all become variables), as config.py reads them; or a mapping `{ENV: "S/K"}`.
    """
    from devloop.core.promote.model import PromoteError

    if not raw:
        return (), ()
    hint = "write env_from_secrets: [{name: ENV_NAME, secret: secret-name, key: key}]"
    items: list[tuple[str, Any]] = []
    whole: list[str] = []
    if isinstance(raw, Mapping):
        items = [(str(k), v) for k, v in raw.items()]
    elif isinstance(raw, (list, tuple)):
        for entry in raw:
            if isinstance(entry, Mapping) and ("name" in entry or "env" in entry):
                env = str(entry.get("env") or entry.get("name"))
                items.append((env, {"secret": entry.get("secret"), "key": entry.get("key") or env}))
            elif isinstance(entry, str):
                whole.append(entry)
            else:
                raise PromoteError(f"cannot read {entry!r}", file=file, field="env_from_secrets", hint=hint)
    else:
        raise PromoteError(f"expected a list, got {raw!r}", file=file, field="env_from_secrets", hint=hint)
    refs = []
    for env, spec in items:
        if isinstance(spec, Mapping):
            secret, key = str(spec.get("secret") or ""), str(spec.get("key") or env)
        else:
            secret, _, key = str(spec).replace(":", "/", 1).partition("/")
            key = key or env
        _check_secret_name(secret, file=file, field=f"env_from_secrets.{env}")
        if not _KEY.match(key):
            raise PromoteError(f"{key!r} is not a valid secret key", file=file,
                               field=f"env_from_secrets.{env}.key",
                               hint="use letters, digits, '-', '_' and '.'")
        refs.append(SecretRef(env=env, secret=secret, key=key))
    for secret in whole:
        _check_secret_name(secret, file=file, field="env_from_secrets")
    return tuple(sorted(refs, key=lambda r: r.env)), tuple(sorted(set(whole)))


def _check_secret_name(secret: str, *, file: str, field: str) -> None:
    from devloop.core.promote.model import PromoteError

    if not _K8S_NAME.match(secret) or len(secret) > 253:
        raise PromoteError(f"{secret!r} is not a valid Kubernetes secret name", file=file,
                           field=field, hint="use lowercase letters, digits, '-' and '.', e.g. hf-credentials")
