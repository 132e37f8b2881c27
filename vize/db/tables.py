"""The relational schema. Alembic migrations in ``vize/db/migrations`` create exactly this."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from vize.db.states import DeployPolicy, JobState, PredictionStatus, Role, TrainStatus


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database: SQLite keeps no offset, so it is
    stored as naive UTC and given back as aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str] = mapped_column(String(254), default="")
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    api_token: Mapped[str] = mapped_column(String(64), unique=True)
    # Off until the user asks (issue 15): mail nobody asked for is noise.
    notify_email: Mapped[bool] = mapped_column(Boolean, default=False)
    # Mail goes only to a confirmed address: else anyone could have the service mail a
    # stranger by typing their address. Cleared whenever the address changes.
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created: Mapped[datetime] = mapped_column(default=utcnow)


class Workspace(Base):
    """A team's space: tasks, labels, images and models belong to one. Every user has a
    default workspace, whose id derives from the user's (``workspaces.default_workspace``):
    the id Ximilar's client already knows."""

    __tablename__ = "workspaces"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    # Set on a user's default workspace: it cannot be deleted, nor that user removed.
    default_for: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), unique=True, nullable=True
    )
    created: Mapped[datetime] = mapped_column(default=utcnow)


class WorkspaceMember(Base):
    __tablename__ = "workspace_members"
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(10), default=Role.VIEWER)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class WorkspaceToken(Base):
    """A service token: a script's or a CI job's credential for one workspace, with a role.
    Only its SHA-256 is stored (the token is shown once); deleting the row revokes it."""

    __tablename__ = "workspace_tokens"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[str] = mapped_column(String(10), default=Role.VIEWER)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12), default="")  # shown in lists
    # Who made it: the usage of its classifications counts for them too.
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created: Mapped[datetime] = mapped_column(default=utcnow)


class WebSession(Base):
    """A browser login. The signed cookie names its row: logging out deletes the row, so a
    copied cookie stops working at once (a signature alone stays valid for 14 days)."""

    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class TaskLabel(Base):
    __tablename__ = "task_labels"
    task_id: Mapped[str] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    label_id: Mapped[str] = mapped_column(
        ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ImageLabel(Base):
    __tablename__ = "image_labels"
    image_id: Mapped[str] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    label_id: Mapped[str] = mapped_column(
        ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # The label's value on this image (Ximilar's add-label/update-label ``value``).
    value: Mapped[float | None] = mapped_column(Float, nullable=True)


class Task(Base):
    __tablename__ = "tasks"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The workspace the object belongs to: every query scopes by it (``owner_id`` is who
    # created it, kept for the record).
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[str] = mapped_column(String(20), default="multi_class")
    production_version: Mapped[int] = mapped_column(Integer, default=-1)
    # True once the owner picked a version by hand (kept for the record: since 0007 the
    # deploy policy alone decides what a training does to production).
    production_pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    # What a finished training does to production: DeployPolicy (vize/db/states.py).
    deploy_policy: Mapped[str] = mapped_column(
        String(20), default=DeployPolicy.IF_BETTER, server_default=DeployPolicy.IF_BETTER.value
    )
    last_train_status: Mapped[str] = mapped_column(String(20), default="")
    negative_label_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # When to answer "unknown": "off", "auto" (the model's calibrated thresholds) or a
    # probability ("0.6"); a classify request's ``threshold`` overrides it.
    unknown: Mapped[str] = mapped_column(String(20), default="off", server_default="off")
    webhook_url: Mapped[str] = mapped_column(String(2000), default="")
    # Signs webhook bodies (HMAC-SHA256); shown to the owner only, with the task.
    webhook_secret: Mapped[str] = mapped_column(String(64), default=lambda: secrets.token_hex(16))
    created: Mapped[datetime] = mapped_column(default=utcnow)
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    labels: Mapped[list[Label]] = relationship(
        secondary="task_labels", back_populates="tasks", order_by="Label.name"
    )


class Label(Base):
    __tablename__ = "labels"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The workspace the object belongs to: every query scopes by it (``owner_id`` is who
    # created it, kept for the record).
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    output_name: Mapped[str] = mapped_column(String(255), default="")
    type: Mapped[str] = mapped_column(String(20), default="category")
    created: Mapped[datetime] = mapped_column(default=utcnow)
    tasks: Mapped[list[Task]] = relationship(secondary="task_labels", back_populates="labels")


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("workspace_id", "sha256", name="uq_images_workspace_sha256"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The workspace the object belongs to: every query scopes by it (``owner_id`` is who
    # created it, kept for the record).
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    sha256: Mapped[str] = mapped_column(String(64))
    # Indexed: removing a file asks whether any row still references its key.
    blob_key: Mapped[str] = mapped_column(String(255), index=True)
    thumb_key: Mapped[str] = mapped_column(String(255), index=True)
    content_type: Mapped[str] = mapped_column(String(50))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    file_name: Mapped[str] = mapped_column(String(255), default="")
    meta_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    test_image: Mapped[bool] = mapped_column(Boolean, default=False)
    # Ximilar's "real" flag: the image comes from the production source.
    real_image: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created: Mapped[datetime] = mapped_column(default=utcnow)
    labels: Mapped[list[Label]] = relationship(secondary="image_labels", order_by="Label.name")
    # The same links as rows, for their ``value`` (read only: ``labels`` writes them).
    label_links: Mapped[list[ImageLabel]] = relationship(viewonly=True)


class Embedding(Base):
    """One vector per (image, backbone, view): computed once, reused by every training."""

    __tablename__ = "embeddings"
    image_id: Mapped[str] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    backbone: Mapped[str] = mapped_column(String(64), primary_key=True)
    view: Mapped[str] = mapped_column(String(16), primary_key=True, default="orig")
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("task_id", "version", name="uq_models_task_version"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    train_status: Mapped[str] = mapped_column(String(20), default=TrainStatus.QUEUED)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    artifact_key: Mapped[str] = mapped_column(String(255), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    images_count: Mapped[int] = mapped_column(Integer, default=0)
    # Whether the training deployed this version, and why (services/deploy.py).
    deploy_decision: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    finished: Mapped[datetime | None] = mapped_column(nullable=True)
    task: Mapped[Task] = relationship(viewonly=True)


class Job(Base):
    """Source of truth for background work, whichever runner executes it."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_kind", "state", "kind"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(20), default=JobState.QUEUED)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The workspace the object belongs to: every query scopes by it (``owner_id`` is who
    # created it, kept for the record).
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    task_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    model_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    error: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str] = mapped_column(String(255), default="")
    created: Mapped[datetime] = mapped_column(default=utcnow)
    started: Mapped[datetime | None] = mapped_column(nullable=True)
    heartbeat: Mapped[datetime | None] = mapped_column(nullable=True)
    finished: Mapped[datetime | None] = mapped_column(nullable=True)


class Usage(Base):
    """Images classified per user per day (billing counts each image of a batch)."""

    __tablename__ = "usage"
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    classifications: Mapped[int] = mapped_column(Integer, default=0)


class WorkspaceUsage(Base):
    """Images classified per workspace per day (``Usage`` counts the same per user)."""

    __tablename__ = "workspace_usage"
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    classifications: Mapped[int] = mapped_column(Integer, default=0)


class TaskInsight(Base):
    """Data-health state of a task: what the last training's cross-validation predicted for
    each image (mislabel suspects come from it), the last computed report, and the images
    the owner chose to keep as labelled."""

    __tablename__ = "task_insights"
    task_id: Mapped[str] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    model_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # image id -> [given label ids, p(given), predicted label id, p(predicted)]
    predictions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    computed: Mapped[datetime | None] = mapped_column(nullable=True)
    kept: Mapped[dict[str, Any]] = mapped_column(default=dict)  # image id -> kept at (ISO)


class Prediction(Base):
    """A classified image kept for review (``store_images: true``): its file (content
    addressed like training images, so accepting it copies nothing) and what the model said.
    One row per task and image content: classifying the same bytes again updates it."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("task_id", "sha256", name="uq_predictions_task_sha256"),
        Index("ix_predictions_task_status_score", "task_id", "status", "uncertainty"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    model_version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(String(255), index=True)
    thumb_key: Mapped[str] = mapped_column(String(255), index=True)
    # The answer: best label id (None = "unknown"), its probability, every label's.
    label_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    prob: Mapped[float] = mapped_column(Float)
    # 1 - the model's confidence in its answer: the review queue's order (active learning).
    uncertainty: Mapped[float] = mapped_column(Float)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)  # label id -> probability
    status: Mapped[str] = mapped_column(String(20), default=PredictionStatus.PENDING)
    image_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # once accepted
    created: Mapped[datetime] = mapped_column(default=utcnow)
