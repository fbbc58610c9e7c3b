"""A run record as a GitHub Actions step summary (Markdown appended to `$GITHUB_STEP_SUMMARY`).

Shown on the workflow run's page: the result, a per-cell table (title, line, state, time), GPU
peaks, the provenance (commit, image digest, run id) and each error with its `file:line`. No
environment value reaches it: the only free text is what the user's code produced (cell
titles, error messages), and every value of this process's environment (and of the profile's
`env`) found in that text is replaced by `***` before it is written -- the summary is public
to everyone who can read the run, unlike the masked log.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

MIN_SECRET = 6  # shorter values ("1", "true", "Linux") are too common to hide without garbling text
_HARMLESS = {"true", "false", "none", "null", "0", "1", "yes", "no", "on", "off"}


def secret_values(env: Mapping[str, str] | None = None, extra: Iterable[str] = ()) -> list[str]:
    """Values to hide, longest first (a value that contains another is replaced whole)."""
    values = set(extra)
    values.update((env if env is not None else os.environ).values())
    return sorted((v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET
                   and v.strip().lower() not in _HARMLESS), key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, "***")
    return text


def _cell_text(text: Any, secrets: list[str], limit: int = 300) -> str:
    """One table cell: single line, pipes escaped, bounded, secrets hidden."""
    value = redact(str(text if text is not None else ""), secrets)
    value = " ".join(value.split()).replace("|", "\\|").replace("`", "'")
    return value if len(value) <= limit else value[:limit - 1] + "…"


def _ms(ms: Any) -> str:
    try:
        value = float(ms or 0.0)
    except (TypeError, ValueError):
        return "?"
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def _bytes(value: Any) -> str:
    from devloop.core.gpu import format_bytes

    return format_bytes(value)


_STATE = {"ok": "✅ ok", "failed": "❌ failed", "skipped": "⏭️ skipped", "unchanged": "✅ unchanged",
          "not_run": "– not run", "interrupted": "⛔ interrupted", "detached": "– detached"}


def markdown(record: Mapping[str, Any], *, secrets: Iterable[str] = ()) -> str:
    """The Markdown report of one run record; `secrets`: values to hide (see `secret_values`)."""
    hidden = list(secrets)
    ok = record.get("ok") is True and record.get("exit_code") == 0
    file = _cell_text(record.get("file") or "run", hidden)
    lines = [f"### devloop run {'passed ✅' if ok else 'failed ❌'}: `{file}` on "
             f"`{_cell_text(record.get('profile'), hidden)}`", ""]
    lines.append(f"Exit code {record.get('exit_code')}, {_ms(record.get('ms'))}.")
    lines.append("")
    lines += ["| cell | title | line | state | time |", "|---:|---|---:|---|---:|"]
    for cell in record.get("cells") or ():
        lines.append(f"| {cell.get('index')} | {_cell_text(cell.get('title'), hidden) or '–'} | "
                     f"{cell.get('line')} | {_STATE.get(str(cell.get('state')), _cell_text(cell.get('state'), hidden))} | "
                     f"{_ms(cell.get('ms'))} |")
    errors = list(record.get("errors") or ())
    if errors:
        lines += ["", "**Errors**", ""]
        for err in errors:
            where = f"{_cell_text(err.get('file'), hidden)}:{err.get('line')}"
            lines.append(f"- `{where}` (cell {err.get('cell')}): **{_cell_text(err.get('type'), hidden)}**: "
                         f"{_cell_text(err.get('message'), hidden, 500)}")
    gpus = list(record.get("gpu") or ())
    lines += ["", "**GPU**", ""]
    if gpus:
        lines += ["| GPU | name | peak memory | utilisation mean / peak |", "|---:|---|---:|---:|"]
        for g in gpus:
            lines.append(f"| {g.get('index')} | {_cell_text(g.get('name'), hidden)} | "
                         f"{_bytes(g.get('mem_peak'))} of {_bytes(g.get('mem_total'))} | "
                         f"{g.get('util_mean')}% / {g.get('util_peak')}% |")
    else:
        lines.append(f"No GPU samples ({_cell_text(record.get('gpu_note') or 'none', hidden)}).")
    git = record.get("git") or {}
    image = record.get("image") or {}
    commit = str(git.get("commit") or "") or "(not a git repository)"
    if git.get("dirty"):
        commit += f" + uncommitted changes (diff sha256 {str(git.get('diff_sha256', ''))[:12]})"
    target = record.get("target") or {}
    lines += ["", "**Provenance**", "",
              f"- run id `{record.get('run_id')}`",
              f"- commit `{commit}`",
              f"- image `{_cell_text(image.get('digest') or image.get('ref') or 'none (no container)', hidden)}`",
              f"- target {_cell_text(target.get('kind'), hidden)}, devloop {record.get('devloop_version')}",
              ""]
    return "\n".join(lines) + "\n"


def append_step_summary(record: Mapping[str, Any], *, env: Mapping[str, str] | None = None,
                        extra_secrets: Iterable[str] = ()) -> Path | None:
    """Under GitHub Actions (`GITHUB_ACTIONS=true` and `GITHUB_STEP_SUMMARY` set), append the
    report to that file; the path written, or None when not in GitHub Actions."""
    env = os.environ if env is None else env
    target = env.get("GITHUB_STEP_SUMMARY")
    if env.get("GITHUB_ACTIONS") != "true" or not target:
        return None
    text = markdown(record, secrets=secret_values(env, extra_secrets))
    path = Path(target)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)
    return path
