"""The states a job and a model's training go through, as stored in the database."""

from __future__ import annotations

from enum import StrEnum


class JobKind(StrEnum):
    TRAIN = "train"
    EMBED = "embed"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


ACTIVE_JOB_STATES = (JobState.QUEUED, JobState.RUNNING)


class TrainStatus(StrEnum):
    """``Model.train_status``; ``Task.last_train_status`` too ("" before the first one)."""

    QUEUED = "queued"
    TRAINING = "training"
    TRAINED = "trained"
    FAILED = "failed"


class PredictionStatus(StrEnum):
    """``Prediction.status``: waiting in the review queue, or reviewed."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    DISMISSED = "dismissed"


class DeployPolicy(StrEnum):
    """``Task.deploy_policy``: what a finished training does to the deployed version."""

    ALWAYS = "always"  # the newest trained version is deployed
    IF_BETTER = "if_better"  # only if its cross-validated accuracy beats the deployed one
    NEVER = "never"  # the owner deploys by hand


class Role(StrEnum):
    """A member's (or a service token's) role in a workspace, strongest first."""

    OWNER = "owner"  # members, tokens, rename, delete; everything an editor may
    EDITOR = "editor"  # tasks, labels, images, training, deploying
    VIEWER = "viewer"  # read and classify only

    def allows(self, needed: Role) -> bool:
        return ROLE_RANK[self] >= ROLE_RANK[needed]


ROLE_RANK = {Role.VIEWER: 0, Role.EDITOR: 1, Role.OWNER: 2}
