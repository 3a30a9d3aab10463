"""An exception as a sentence a person can act on, for a failed check's detail.

The Kubernetes client's ApiException prints its HTTP headers and body; urllib3 wraps a
refused connection in three layers of retries. A check's detail says what happened.
"""

from __future__ import annotations

import json
from typing import Any


def explain(exc: BaseException) -> str:
    """'node k3s-w1 not found (404)', 'the API refused (409 Conflict): ...',
    'the API at 127.77.0.100:6443 did not answer: connection refused', ..."""
    api = _api_exception(exc)
    if api is not None:
        return api
    connection = _connection_error(exc)
    if connection is not None:
        return connection
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _api_exception(exc: BaseException) -> str | None:
    try:
        from kubernetes.client.exceptions import ApiException
    except ImportError:  # the kit without the client installed: nothing to translate
        return None
    if not isinstance(exc, ApiException):
        return None
    status = exc.status or 0
    body = _status_body(exc.body)
    message = str(body.get("message") or exc.reason or "").strip()
    details: dict[str, Any] = body.get("details") or {}
    if status == 404 and details.get("name"):
        kind = str(details.get("kind") or "object").removesuffix("s")
        return f"{kind} {details['name']} not found (404)"
    if status == 404:
        return f"{message or 'not found'} (404)"
    if status == 0:  # the client raises ApiException with no status for a broken stream
        return f"the API connection failed: {message or exc}"
    return f"the API refused ({status} {exc.reason or ''}): {message}".replace(" ):", "):")


def _status_body(body: Any) -> dict[str, Any]:
    """The Kubernetes Status object in an error's body, or {} when it holds none."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body.strip().startswith("{"):
        return {}
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _connection_error(exc: BaseException) -> str | None:
    try:
        from urllib3.exceptions import MaxRetryError, NewConnectionError
    except ImportError:
        return None
    if not isinstance(exc, MaxRetryError | NewConnectionError):
        return None
    pool = getattr(exc, "pool", None) or getattr(exc, "conn", None)
    where = f"{pool.host}:{pool.port}" if pool is not None and getattr(pool, "host", None) else ""
    reason: BaseException | None = getattr(exc, "reason", None) or exc
    text = str(reason)
    # urllib3 phrases the cause last: "...: Failed to establish a new connection: [Errno 111]
    # Connection refused"; the errno's words are what matter.
    if "] " in text:
        text = text.rsplit("] ", 1)[1]
    return f"the API at {where or 'the target'} did not answer: {text.strip().lower()}"
