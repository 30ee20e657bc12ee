"""Teacher access: the protocols, the remote (metered: native or OpenAI-compatible) and local
(white-box) teachers, the query cache, the budget ledger and the caching wrapper that ties them
together."""

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
from client_distiller.teacher.factory import (
    NATIVE,
    OPENAI,
    Api,
    TeacherConfigError,
    check_endpoint,
    make_http_client,
    open_teacher,
)
from client_distiller.teacher.local import LocalTeacher
from client_distiller.teacher.openai import (
    CardError,
    CardFacts,
    OpenAITeacher,
    endpoint_fingerprint,
)
from client_distiller.teacher.remote import RemoteTeacher
from client_distiller.teacher.wire import encode_image, item_digest
from model_io import state_dict_fingerprint

__all__ = [
    "NATIVE",
    "OPENAI",
    "Api",
    "AuthenticationError",
    "BudgetExhausted",
    "BudgetLedger",
    "CachedTeacher",
    "CardError",
    "CardFacts",
    "ChunkResult",
    "LocalTeacher",
    "MeteredTeacher",
    "OpenAITeacher",
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
    "check_endpoint",
    "encode_image",
    "endpoint_fingerprint",
    "item_digest",
    "make_http_client",
    "open_teacher",
    "state_dict_fingerprint",
]
