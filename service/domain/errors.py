"""What can go wrong, named after what happened. No HTTP here: api/problems.py maps these."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason one input field was refused; ``field`` is a dotted path (``location.coordinates.0``)."""

    field: str
    reason: str


class ServiceError(Exception):
    """Base of every error the service raises on purpose."""

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors: list[FieldError] = errors or []


class InvalidInput(ServiceError):
    """The request is well-formed but a value breaks a rule."""


class MalformedBody(ServiceError):
    """The body could not be parsed (bad JSON, wrong top-level shape)."""


class BodyTooLarge(ServiceError):
    """The body or batch exceeds a configured limit."""


class UnsupportedMediaType(ServiceError):
    """The Content-Type is not one the endpoint reads."""


class NotFound(ServiceError):
    """A named resource does not exist."""


class ReportNotFound(NotFound):
    pass


class SegmentNotFound(NotFound):
    pass


class TileNotFound(NotFound):
    """No such tile: z beyond 0-22, or x or y beyond 2^z - 1."""


class CollectionNotFound(NotFound):
    """No OGC collection of that name (there are reports and segments)."""


class FeatureNotFound(NotFound):
    """No item of that id in an OGC collection."""


class KeyNotFound(NotFound):
    """No usable API key of that id."""


class ReportConflict(ServiceError):
    """A report id was reused for different content."""


class StoreUnavailable(ServiceError):
    """The store cannot be reached right now; the client should retry later.

    ``operation`` names the store call that failed (for the log: never the statement's text)."""

    def __init__(
        self, detail: str, *, operation: str | None = None, errors: list[FieldError] | None = None
    ) -> None:
        super().__init__(detail, errors=errors)
        self.operation = operation


class PoolExhausted(StoreUnavailable):
    """Every database connection of this process is busy (the pool's wait ran out)."""


class SchemaNotCurrent(StoreUnavailable):
    """The database is reached but its schema is behind this code: `crossings db upgrade`."""


class ShuttingDown(ServiceError):
    """This server is draining after SIGTERM: it answers what it is sent, but is not ready."""


class StatementTimeout(ServiceError):
    """A statement ran past the database's statement timeout: the database is up, the work was
    too long. Sending the same request again will most likely time out again."""

    def __init__(
        self, detail: str, *, operation: str | None = None, errors: list[FieldError] | None = None
    ) -> None:
        super().__init__(detail, errors=errors)
        self.operation = operation


class BatchTooCostly(BodyTooLarge):
    """A batch whose predicted database time passes the statement timeout: refused before work."""


class InvalidSegmentFile(ServiceError):
    """A segment file was refused; nothing was loaded."""


@dataclass(frozen=True, slots=True)
class Problem:
    """A per-item error in a batch: the same content a problem response carries."""

    kind: type[ServiceError]
    detail: str
    errors: list[FieldError] = field(default_factory=list)


class InvalidParameter(InvalidInput):
    """A query or path parameter is not valid (400, where a bad body is 422)."""


class Unauthenticated(ServiceError):
    """The request needs an API key, or the key sent is not valid (unknown, revoked, expired)."""


class Forbidden(ServiceError):
    """The caller's role may not do this."""


class TooManyRequests(ServiceError):
    """Over the rate limit; ``retry_after_s`` says when to try again."""

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class ClientGone(ServiceError):
    """The client went away before its answer was ready; its work was stopped (nobody reads the
    answer, but the access log shows 499)."""


class TooCostly(InvalidParameter):
    """A request whose work is over a configured cap; refused before any work is done."""


class BorderChanged(Exception):
    """The stored border is no longer the one the reports were snapped to: nothing was written;
    load the border again, snap again, and retry. Not a ServiceError: the use case that writes
    retries it, so it never reaches a caller."""
