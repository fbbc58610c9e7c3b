"""`devloop promote`: write the pipeline (Argo Workflow / GitHub Actions), commit it, or check it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "promote"
ORDER = 40
HELP = ("turn the working setup into a pipeline file (Argo Workflow, GitHub Actions, Kubeflow "
        "PyTorchJob / TrainJob); --check for drift")
DESCRIPTION = (
    "Write the pipeline that runs this project's [[stage]]s (or the entry file) at scale: the image "
    "pinned by digest (latest `devloop snapshot`, or the profile's pinned image), the code pinned at "
    "the git commit, resources, node selector, tolerations and env from the profile, secrets as "
    "references. A [[stage]] with nodes > 1 runs torchrun on every node: a Kubeflow PyTorchJob "
    "(--target pytorchjob, or inside the Argo DAG), or a TrainJob (--target trainjob). --commit "
    "commits the file; --check re-renders it with the profile the file records and exits 1 with "
    "a diff when it drifted, or when the stage code changed after the pinned commit."
)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--profile", metavar="P",
                        help="the profile whose image and resources the pipeline uses "
                             "(default: [project].profile; --check uses the profile the file "
                             "records, and a different -p fails)")
    parser.add_argument("--target", choices=("argo", "github", "pytorchjob", "trainjob"),
                        action="append",
                        help="what to write; repeat for several (default: [promote].targets, "
                             "else argo); pytorchjob / trainjob write the multi-node stages")
    parser.add_argument("--name", metavar="N",
                        help="pipeline name (default: [promote].name, else the project name)")
    parser.add_argument("--out", metavar="DIR",
                        help="folder for the file (default: [promote].out for argo, "
                             ".github/workflows for github)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--commit", action="store_true",
                      help="git-commit the written file(s), the run id in the message; refuses when "
                           "tracked files have uncommitted changes")
    mode.add_argument("--check", action="store_true",
                      help="regenerate and compare with the file on disk; exit 1 with a diff on drift")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="with --commit: go ahead with uncommitted changes (records dirty=true "
                             "and a hash of the diff)")
    parser.add_argument("--allow-unpinned", action="store_true",
                        help="accept an image named by tag instead of by digest")
    parser.add_argument("--require-green", action="store_true",
                        help="refuse unless a green run of this code (commit and uncommitted diff) on "
                             "this profile and image is recorded in .devloop/runs.jsonl; without it "
                             "promote warns and the pipeline's run id is empty")


def run(args: argparse.Namespace) -> int:
    from devloop.core.config import load_config
    from devloop.core.promote import PromoteError, check, promote_many

    config = load_config(Path.cwd())
    try:
        if args.check:
            results = check(config, args.profile, args.target, name=args.name, out=args.out,
                            allow_unpinned=args.allow_unpinned)
            failed = False
            for r in results:
                for note in r.notes:
                    print(f"devloop: note: {note}", file=sys.stderr)
                if r.ok:
                    print(f"{_rel(r.path)}: up to date")
                    continue
                failed = True
                if r.diff:
                    sys.stdout.write(r.diff if r.diff.endswith("\n") else r.diff + "\n")
                for problem in r.problems:
                    print(f"devloop: {problem}", file=sys.stderr)
                what = "drifted from devloop.toml / the profile" if r.diff else "failed the check"
                fix = f"run `{r.fix}`" if r.fix.startswith("devloop ") else r.fix
                print(f"devloop: {_rel(r.path)} {what} -- fix: {fix}", file=sys.stderr)
            return 1 if failed else 0
        results = promote_many(config, args.profile, args.target, name=args.name, out=args.out,
                               commit=args.commit, allow_dirty=args.allow_dirty,
                               allow_unpinned=args.allow_unpinned,
                               require_green=getattr(args, "require_green", False))
    except PromoteError as exc:
        print(f"devloop: {exc}", file=sys.stderr)
        return 2
    for w in results[0].warnings:
        print(f"devloop: warning: {w}", file=sys.stderr)
    for line in results[0].resources:
        print(line)
    for r in results:
        print(f"wrote {_rel(r.path)} ({r.target})")
    first = results[0]
    cited = f"run id {first.run_id} (the green run it cites)" if first.run_id else "no green run cited"
    print(cited + (f", committed {first.commit[:12]}" if first.committed else ""))
    return 0


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
