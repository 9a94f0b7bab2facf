"""Errors of the python-executor API.

Every error answer raises `requests.HTTPError` (as the original client did), with the server's message and the
`response` (a `requests.Response`; an `httpx.Response` from the asyncio client). Some statuses raise a subclass of
it, so `except requests.HTTPError` keeps catching everything:

- 404: `NotFoundError` (an unknown or expired execution, session or file);
- 409: `SessionBusyError` (another call is running in the session: retry, or serialise the calls);
- 429: `TooManyRequestsError` (the server's queue or its session limit is full; `retry_after` in seconds when the
  server sent `Retry-After`).
"""

from __future__ import annotations

from typing import Any, Optional

import requests


class APIError(requests.HTTPError):
    """A non-2xx answer: `status_code` and the server's `message` (also in `str(error)`)."""

    def __init__(self, message: str, *, status_code: int, response: Any = None, server_message: str = "",
                 request: Any = None) -> None:
        super().__init__(message, request=request)
        # Set here rather than by requests, which would read `response.request` (an error on some httpx responses).
        self.response = response
        if request is None and isinstance(response, requests.Response):
            self.request = response.request
        self.status_code = status_code
        self.message = server_message


class NotFoundError(APIError):
    """404: the execution, session or file does not exist (or no longer does)."""


class SessionBusyError(APIError):
    """409: a call is already running in that session."""


class TooManyRequestsError(APIError):
    """429: the server is full (queue or sessions); `retry_after` is the server's hint in seconds, if any."""

    @property
    def retry_after(self) -> Optional[float]:
        value = self.response.headers.get("Retry-After") if self.response is not None else None
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


_BY_STATUS = {404: NotFoundError, 409: SessionBusyError, 429: TooManyRequestsError}


def error_for(response: Any) -> APIError:
    """The exception for an error answer: a `requests.Response`, or an `httpx.Response` whose body was read."""
    try:
        body = response.json()
        message = body.get("error", response.text) if isinstance(body, dict) else response.text
    except ValueError:
        message = response.text
    reason = getattr(response, "reason", None) or getattr(response, "reason_phrase", "") or ""
    try:
        request = response.request
    except (AttributeError, RuntimeError):  # an httpx.Response built without a request
        request = None
    cls = _BY_STATUS.get(response.status_code, APIError)
    return cls(f"{response.status_code} {reason}: {message}", status_code=response.status_code,
               response=response, server_message=str(message), request=request)
