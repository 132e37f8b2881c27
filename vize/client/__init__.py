"""Python SDK for the Vize API.

>>> from vize.client import VizeClient
>>> vize = VizeClient("http://127.0.0.1:8000", "<API token>")
>>> task = vize.tasks.create("Cats and dogs")
"""

from vize.client.client import CLASSIFY_BATCH, VizeClient
from vize.client.errors import (
    AmbiguousName,
    AuthError,
    Conflict,
    NotEnoughData,
    NotFound,
    NotTrained,
    PayloadTooLarge,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServerError,
    TrainingFailed,
    TrainingInProgress,
    TrainingTimeout,
    UnsupportedMedia,
    ValidationError,
    VizeAPIError,
    VizeConnectionError,
    VizeError,
)
from vize.client.imageio import ImageInput
from vize.client.objects import (
    Account,
    Classification,
    Image,
    Job,
    Label,
    LabelScore,
    Model,
    Page,
    Task,
    Usage,
    UsageDay,
    Workspace,
)
from vize.client.resources import UploadItem, UploadResult
from vize.client.similarity import Insights, SimilarImage, SimilarResult

__all__ = [
    "CLASSIFY_BATCH",
    "Account",
    "AmbiguousName",
    "AuthError",
    "Classification",
    "Conflict",
    "Image",
    "ImageInput",
    "Insights",
    "Job",
    "Label",
    "LabelScore",
    "Model",
    "NotEnoughData",
    "NotFound",
    "NotTrained",
    "Page",
    "PayloadTooLarge",
    "PermissionDenied",
    "QuotaExceeded",
    "RateLimited",
    "ServerError",
    "SimilarImage",
    "SimilarResult",
    "Task",
    "TrainingFailed",
    "TrainingInProgress",
    "TrainingTimeout",
    "UnsupportedMedia",
    "UploadItem",
    "UploadResult",
    "Usage",
    "UsageDay",
    "ValidationError",
    "VizeAPIError",
    "VizeClient",
    "VizeConnectionError",
    "VizeError",
    "Workspace",
]
