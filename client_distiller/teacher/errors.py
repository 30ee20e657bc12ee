"""One exception hierarchy for everything that can go wrong while asking the teacher."""

from __future__ import annotations


class TeacherError(Exception):
    """Base class of every teacher failure.

    Attributes:
        status_code: HTTP status of the vendor's answer, when there was one.
        request_id: the vendor's request id, when it sent one.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.request_id = request_id


class AuthenticationError(TeacherError):
    """401/403: the API key is missing, wrong or revoked. Never retried."""


class BudgetExhausted(TeacherError):
    """402: the key's budget cannot pay for the request (nothing was charged for it).

    Attributes:
        remaining: the budget the vendor says is left (``X-Budget-Remaining``), if it said.
        needed: items the refused call still needed (at least that many more queries), when
            the caching teacher knows.
    """

    def __init__(
        self,
        message: str,
        *,
        remaining: int | None = None,
        needed: int | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, request_id=request_id)
        self.remaining = remaining
        self.needed = needed


class RateLimited(TeacherError):
    """429 that persisted through every retry."""


class VendorError(TeacherError):
    """5xx or timeouts after every retry, or any other unexpected answer."""


class QueryCapReached(TeacherError):
    """The client's own ``--max-queries`` cap would be exceeded by the next chunk.

    Raised before anything is sent, so the cap is never exceeded.
    """
