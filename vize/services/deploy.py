"""Which version a finished training leaves deployed, by the task's deploy policy, and the
reason, kept on the version so the page (and the API) can say what happened and why."""

from __future__ import annotations

from typing import Any

from vize.db.states import DeployPolicy
from vize.errors import InvalidInput

POLICY_WORDS = {
    DeployPolicy.ALWAYS: "always deploy the newest version",
    DeployPolicy.IF_BETTER: "deploy only if better (cross-validated accuracy)",
    DeployPolicy.NEVER: "never deploy automatically",
}
FIGURE_WORDS = {"cv_accuracy": "cross-validated accuracy", "accuracy": "held-out accuracy"}


def check_policy(value: object) -> str:
    if value not in set(DeployPolicy):
        choices = ", ".join(p.value for p in DeployPolicy)
        raise InvalidInput(f"deploy_policy must be one of {choices}.", code="invalid_deploy_policy")
    return str(value)


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _figure(new: dict[str, Any], current: dict[str, Any]) -> str:
    """Cross-validated accuracy (steadier than one split) when both versions have it."""
    if isinstance(new.get("cv_accuracy"), float) and isinstance(current.get("cv_accuracy"), float):
        return "cv_accuracy"
    return "accuracy"


def decide(
    policy: str,
    version: int,
    metrics: dict[str, Any],
    deployed: tuple[int, dict[str, Any]] | None,
) -> dict[str, Any]:
    """Whether version ``version`` (``metrics``) goes to production; ``deployed`` is the
    version in production and its metrics (None: nothing is deployed yet)."""
    out: dict[str, Any] = {"policy": policy, "compared_with": None, "figure": None}
    words = POLICY_WORDS.get(DeployPolicy(policy), policy)
    if policy == DeployPolicy.NEVER:
        return {
            **out,
            "deployed": False,
            "reason": f"Not deployed: the task's policy is to {words}.",
        }
    if deployed is None:
        return {**out, "deployed": True, "reason": "Deployed: no version was deployed yet."}
    old_version, old_metrics = deployed
    if policy == DeployPolicy.ALWAYS:
        reason = f"Deployed in place of v{old_version}: the task's policy is to {words}."
        return {**out, "deployed": True, "compared_with": old_version, "reason": reason}
    figure = _figure(metrics, old_metrics)
    new, old = metrics.get(figure), old_metrics.get(figure)
    better = isinstance(new, float) and (not isinstance(old, float) or new > old)
    name = FIGURE_WORDS[figure]
    if better:
        reason = f"Deployed: its {name} {pct(new)} beats {pct(old)} of v{old_version}."
    else:
        reason = (
            f"Not deployed: its {name} {pct(new)} is not better than {pct(old)} of the deployed "
            f"v{old_version} (policy: deploy only if better). Deploy it by hand if you prefer it."
        )
    return {
        **out,
        "deployed": better,
        "compared_with": old_version,
        "figure": figure,
        "reason": reason,
    }
