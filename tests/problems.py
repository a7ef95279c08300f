"""What every refusal is: an RFC 9457 problem (application/problem+json) naming its fields."""

from __future__ import annotations

import httpx

PROBLEM = "application/problem+json"


def refused_fields(response: httpx.Response, status: int = 400) -> list[str]:
    """Check ``response`` is a ``status`` problem+json; the fields its ``errors`` name."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    return [error["field"] for error in response.json()["errors"]]
