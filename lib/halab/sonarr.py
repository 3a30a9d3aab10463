"""The Sonarr connector, on pyarr (the library Sonarr's users script with): the API's
status, root folders, series added and read back, and the folder browser the UI's path
pickers use.

At home Sonarr answers on its Service (port 8989) with the API key from its
Settings > General page, which is also the `ApiKey` of config.xml on its /config volume.
The key is a secret: it goes into the headers and nowhere else, never into a message.
"""

from __future__ import annotations

import ast
import json
import time
from dataclasses import dataclass
from typing import Any

import requests
from pyarr import SonarrAPI
from pyarr.exceptions import (
    PyarrBadGateway,
    PyarrBadRequest,
    PyarrConnectionError,
    PyarrError,
    PyarrResourceNotFound,
    PyarrServerError,
    PyarrUnauthorizedError,
)

from halab.errors import StepError


class SonarrError(StepError):
    """Sonarr could not be reached, refused the key, or refused what was asked; names the
    URL and, where Sonarr said why, its own words."""

    def __init__(self, url: str, what: str, passing: bool = False) -> None:
        self.url = url
        self.passing = passing  # may pass by itself: unreachable, or not yet behind its Service
        super().__init__(f"Sonarr at {url}: {what}")


@dataclass(frozen=True)
class RootFolder:
    id: int
    path: str
    accessible: bool
    free_bytes: int
    unmapped: list[str]  # folders in it that no series uses yet


def _sonarr_said(error: PyarrError) -> str:
    """Sonarr's own validation messages, from pyarr's Bad Request text (which ends with
    the response body as a bytes literal)."""
    text = str(error)
    start = min((i for i in (text.find("b'"), text.find('b"')) if i >= 0), default=-1)
    try:
        body = json.loads(ast.literal_eval(text[start:])) if start >= 0 else None
    except (ValueError, SyntaxError):
        body = None
    if isinstance(body, list):
        found = [str(f.get("errorMessage")) for f in body if isinstance(f, dict)]
        if found:
            return "; ".join(found)
    return text


class Sonarr:
    def __init__(
        self,
        url: str,
        api_key: str,
        timeout: float = 10.0,
        session_options: dict[str, Any] | None = None,
    ) -> None:
        """`session_options`: what requests presents on the way (halab.kube.service_proxy
        gives them for a Service reached through the API server)."""
        self.url = url.rstrip("/")
        self._api = SonarrAPI(self.url, api_key)
        self._api.session = _TimedSession(timeout, session_options or {})

    def _call(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except PyarrUnauthorizedError:
            raise SonarrError(
                self.url,
                "the API key was refused (401): use the key from Sonarr's Settings > General "
                "(ApiKey in config.xml on its /config volume)",
            ) from None
        except (PyarrConnectionError, requests.RequestException) as exc:
            # pyarr turns a timeout into its own error and lets a refused connection through.
            raise SonarrError(
                self.url, f"not reachable ({exc}); is its pod Running?", passing=True
            ) from None
        except PyarrBadRequest as exc:
            raise SonarrError(self.url, f"{what} refused: {_sonarr_said(exc)}") from None
        except PyarrResourceNotFound:
            raise SonarrError(self.url, f"{what}: not found") from None
        except PyarrServerError as exc:
            raise SonarrError(self.url, f"{what}: server error ({exc})") from None
        except PyarrBadGateway as exc:
            raise SonarrError(self.url, f"{what}: {exc}", passing=True) from None
        except PyarrError as exc:
            raise SonarrError(self.url, f"{what}: {exc}") from None

    def _not_sonarr(self, what: str, doc: Any) -> SonarrError:
        return SonarrError(self.url, f"{what}: {_not_sonarr(doc)}", passing=_is_status(doc))

    def answering(self, within: float, every: float = 0.5) -> dict[str, Any]:
        """Its status, once it answers: waits out what may pass by itself (the pod not yet
        behind its Service), not a refused key."""
        deadline = time.monotonic() + within
        while True:
            try:
                return self.status()
            except SonarrError as exc:
                if not exc.passing:
                    raise
                if time.monotonic() >= deadline:
                    raise SonarrError(
                        self.url, f"not answering within {within:.0f} s ({exc})", passing=True
                    ) from None
            time.sleep(every)

    def _listed(self, what: str, call: Any, *args: Any) -> list[Any]:
        found = self._call(what, call, *args)
        if not isinstance(found, list):
            raise self._not_sonarr(what, found)
        return found

    def _made(self, what: str, call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        found = self._call(what, call, *args, **kwargs)
        if not isinstance(found, dict) or "id" not in found:
            raise self._not_sonarr(what, found)
        return dict(found)

    def status(self) -> dict[str, Any]:
        found = self._call("system status", self._api.get_system_status)
        if not isinstance(found, dict) or "version" not in found:
            raise self._not_sonarr("system status", found)
        return dict(found)

    def health(self) -> list[dict[str, Any]]:
        return self._listed("health", self._api.get_health)

    def root_folders(self) -> list[RootFolder]:
        return [_root(doc) for doc in self._listed("root folders", self._api.get_root_folder)]

    def add_root_folder(self, path: str) -> RootFolder:
        return _root(self._made(f"root folder {path}", self._api.add_root_folder, path))

    def quality_profiles(self) -> dict[str, int]:
        docs = self._listed("quality profiles", self._api.get_quality_profile)
        return {doc["name"]: doc["id"] for doc in docs}

    def series(self) -> list[dict[str, Any]]:
        return self._listed("series", self._api.get_series)

    def add_series(
        self, tvdb_id: int, title: str, root: str, quality_profile: str = "Any"
    ) -> dict[str, Any]:
        """Add a series by hand (no lookup: that needs Sonarr's metadata service, which an
        offline cluster does not reach), unmonitored and without a search."""
        profiles = self.quality_profiles()
        if quality_profile not in profiles:
            raise SonarrError(
                self.url, f"no quality profile {quality_profile!r}; it has {sorted(profiles)}"
            )
        return self._made(
            f"series {title!r}",
            self._api.add_series,
            {"tvdbId": tvdb_id, "title": title, "seasons": []},
            profiles[quality_profile],
            1,  # the language profile Sonarr v3 asks for; v4 ignores it
            root,
            monitored=False,
        )

    def delete_series(self, series_id: int) -> None:
        self._call(f"series {series_id}", self._api.del_series, series_id)

    def lookup(self, term: str) -> list[dict[str, Any]]:
        """Series matching `term` from Sonarr's metadata service (needs the internet)."""
        found = self._call(f"lookup {term!r}", self._api.lookup_series, term)
        if isinstance(found, dict):  # pyarr hands a 503's body back as if it were an answer
            said = _not_sonarr(found) if _is_status(found) else found.get("message", found)
            raise SonarrError(self.url, f"lookup {term!r}: {said}")
        return list(found)

    def browse(self, path: str, files: bool = False) -> dict[str, Any]:
        """A folder as the UI's path picker shows it: its folders (and files)."""
        found = self._call(
            f"folder {path}",
            self._api._get,
            "filesystem",
            self._api.ver_uri,
            {"path": path, "includeFiles": str(files).lower()},
        )
        if not isinstance(found, dict) or _is_status(found):
            raise self._not_sonarr(f"folder {path}", found)
        return dict(found)


def _is_status(doc: Any) -> bool:
    """A Kubernetes Status document: what the API server's service proxy answers when the
    Service has no ready endpoint (a pod moving, or Ready before its endpoint is listed)."""
    return isinstance(doc, dict) and doc.get("kind") == "Status" and "apiVersion" in doc


def _not_sonarr(doc: Any) -> str:
    """Why an answer is not Sonarr's: pyarr hands back whatever JSON came, so an error
    document from a proxy on the way would otherwise pass for an answer."""
    if _is_status(doc):
        said = doc.get("message") or doc.get("reason") or "no message"
        return f"answered by the Kubernetes API server, not Sonarr ({said}); is its pod Ready?"
    return f"not Sonarr's answer: {str(doc)[:200]}"


def _root(doc: dict[str, Any]) -> RootFolder:
    return RootFolder(
        id=int(doc["id"]),
        path=str(doc["path"]),
        accessible=bool(doc.get("accessible")),
        free_bytes=int(doc.get("freeSpace") or 0),
        unmapped=[str(u.get("name")) for u in doc.get("unmappedFolders") or []],
    )


class _TimedSession(requests.Session):
    # pyarr passes no timeout: a Sonarr that accepts and never answers would hang a check.
    def __init__(self, timeout: float, options: dict[str, Any]) -> None:
        super().__init__()
        self.timeout = timeout
        self.headers.update(options.get("headers") or {})
        self.verify = options.get("verify", True)
        if "cert" in options:
            self.cert = options["cert"]

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(*args, **kwargs)
