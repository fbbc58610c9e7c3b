"""Promote: the working setup (stages, pinned image, code at a commit, resources, env) becomes a
committed pipeline -- an Argo Workflow or a GitHub Actions workflow. See service.py for the entry
points (`promote`, `check`) and model.py for how a stage's `run` becomes a pipeline command."""

from devloop.core.promote.model import PromoteError
from devloop.core.promote.service import CheckResult, PromoteResult, check, promote, promote_many

__all__ = ["PromoteError", "PromoteResult", "CheckResult", "promote", "promote_many", "check"]
