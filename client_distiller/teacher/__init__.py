"""Teacher access: the protocols, the remote (metered) and local (white-box) teachers, the query
cache, the budget ledger and the caching wrapper that ties them together."""

from client_distiller.teacher.base import ChunkResult, MeteredTeacher, PayloadTeacher, Teacher
from client_distiller.teacher.budget import BudgetLedger, SpendRow
from client_distiller.teacher.cache import QueryCache
from client_distiller.teacher.cached import CachedTeacher, TeacherStats
from client_distiller.teacher.errors import (
    AuthenticationError,
    BudgetExhausted,
    QueryCapReached,
    RateLimited,
    TeacherError,
    VendorError,
)
from client_distiller.teacher.factory import TeacherConfigError, make_http_client, open_teacher
from client_distiller.teacher.local import LocalTeacher
from client_distiller.teacher.remote import RemoteTeacher
from client_distiller.teacher.wire import encode_image, item_digest
from model_io import state_dict_fingerprint

__all__ = [
    "AuthenticationError",
    "BudgetExhausted",
    "BudgetLedger",
    "CachedTeacher",
    "ChunkResult",
    "LocalTeacher",
    "MeteredTeacher",
    "PayloadTeacher",
    "QueryCache",
    "QueryCapReached",
    "RateLimited",
    "RemoteTeacher",
    "SpendRow",
    "Teacher",
    "TeacherConfigError",
    "TeacherError",
    "TeacherStats",
    "VendorError",
    "encode_image",
    "item_digest",
    "make_http_client",
    "open_teacher",
    "state_dict_fingerprint",
]
