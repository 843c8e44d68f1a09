"""Fetching weight files: from the Hugging Face Hub (through huggingface_hub, so its cache,
``HF_HUB_OFFLINE``, ``HF_TOKEN`` and revisions all apply) and from plain URLs (through
``torch.hub.download_url_to_file``). Every fetched file is checked against its sha256 and
every failure to reach the network becomes an `OfflineError` that says how to supply the
file by hand.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import urllib.error
import urllib.parse
from pathlib import Path

from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download
from huggingface_hub.utils import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from dtfcli.hub.checkpoint import verify_sha256
from dtfcli.hub.errors import ChecksumError, OfflineError, WeightsError, WeightsNotFoundError

HF_PREFIX = "hf://"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TRUE = {"1", "true", "yes", "on"}


def offline_requested() -> bool:
    """True when the user asked for no network access (``HF_HUB_OFFLINE`` or ``DTF_OFFLINE``)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "DTF_OFFLINE"))


_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@functools.lru_cache(maxsize=8)
def endpoint_unreachable(endpoint: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to the Hub endpoint fails (no such host, refused, no route,
    or no answer within `timeout` seconds). Checked once per process and endpoint.

    Why: huggingface_hub retries a failed request five times with back-off (about 25 s, with
    a warning per try) before it falls back to its cache; with this check an offline
    machine gets its cached files, or the OfflineError, at once. Behind a proxy
    (``HTTPS_PROXY`` and the like) only the proxy can be reached directly, so the check is
    skipped and huggingface_hub decides.
    """
    if any(os.environ.get(v) for v in _PROXY_VARIABLES):
        return False
    url = urllib.parse.urlsplit(endpoint)
    if not url.hostname:
        return False
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return False
    except OSError:
        return True


def cache_root() -> Path:
    """Where URL downloads are kept: ``$DTF_CACHE``, else ``$XDG_CACHE_HOME/dtfcli`` or ~/.cache/dtfcli."""
    if os.environ.get("DTF_CACHE"):
        return Path(os.environ["DTF_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dtfcli"


def parse_hf_uri(uri: str) -> tuple[str, str | None]:
    """``hf://org/repo[@revision]`` -> (repo_id, revision or None for the default branch)."""
    if not uri.startswith(HF_PREFIX):
        raise WeightsNotFoundError(f"{uri}: not an hf://org/repo[@revision] reference")
    repo_id, _, revision = uri[len(HF_PREFIX):].partition("@")
    repo_id = repo_id.strip("/")
    if not _REPO_ID.match(repo_id) or (revision == "" and uri.endswith("@")):
        raise WeightsNotFoundError(f"{uri}: expected hf://org/repo or hf://org/repo@revision")
    return repo_id, revision or None


def hub_download(
    repo_id: str,
    filename: str,
    revision: str | None = None,
    *,
    token: str | bool | None = None,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
    optional: bool = False,
) -> str | None:
    """Path of `filename` from a Hub model repository, in huggingface_hub's cache.

    With ``optional=True`` a file the repository lacks gives None instead of an error.
    A cached file stored under its LFS sha256 (the blob name) is re-hashed, so a file
    altered in the cache is caught.

    Raises:
        OfflineError: the Hub cannot be reached or offline mode is on, and the file is not cached.
        WeightsNotFoundError: no such repository, revision or file (or a token is needed).
        ChecksumError: the cached file does not match its sha256.
    """
    where = f"hf://{repo_id}" + (f"@{revision}" if revision else "")
    cached_only = not offline_requested() and endpoint_unreachable(endpoint or hf_constants.ENDPOINT)
    try:
        path = hf_hub_download(
            repo_id, filename, revision=revision, token=token, endpoint=endpoint,
            cache_dir=str(cache_dir) if cache_dir is not None else None, local_files_only=cached_only,
        )
    except LocalEntryNotFoundError:
        # Raised when the Hub is unreachable (or HF_HUB_OFFLINE=1) and the file is not cached.
        if optional:  # the required files are fetched first, so their absence is reported
            return None
        why = "offline mode is on (HF_HUB_OFFLINE)" if offline_requested() else "the Hub is unreachable"
        command = f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")
        raise OfflineError(
            f"could not fetch {filename} of {where}: {why} and it is not in the local cache; "
            f"on a connected machine run `{command}` and "
            "copy the Hugging Face cache here (HF_HUB_CACHE), or pass the downloaded folder's path instead"
        ) from None
    except RevisionNotFoundError:
        raise WeightsNotFoundError(f"{where}: revision {revision!r} does not exist") from None
    except RepositoryNotFoundError:  # also gated repositories
        raise WeightsNotFoundError(
            f"{where}: repository not found, or it is private/gated and needs a token "
            "(HF_TOKEN or `hf auth login`)"
        ) from None
    except EntryNotFoundError:
        if optional:
            return None
        raise WeightsNotFoundError(f"{where}: the repository has no {filename}") from None
    except HfHubHTTPError as exc:
        raise WeightsError(f"{where}: the Hub refused {filename} ({str(exc).splitlines()[0]})") from None
    except (ConnectionError, OSError) as exc:  # network failures huggingface_hub did not wrap
        raise OfflineError(f"could not fetch {filename} of {where}: {type(exc).__name__}: {exc}") from None
    blob = Path(os.path.realpath(path)).name
    if _SHA256.match(blob):
        verify_sha256(path, blob, what=f"{where}/{filename} (cached at {path})")
    return path


def download_url(url: str, sha256: str, dest_dir: str | Path | None = None, what: str | None = None) -> Path:
    """A local copy of `url`, verified against `sha256` (a full hex digest or, for
    torchvision's files, the prefix their names carry). Downloads only when no verified
    copy is cached under `dest_dir` (default ``cache_root()/"downloads"/<sha256[:16]>``).

    Raises:
        OfflineError: not cached and the site cannot be reached (or offline mode is on);
            the message names the path to put the file at.
        ChecksumError: the cached or downloaded file does not match `sha256`.
    """
    if not sha256:
        raise WeightsError(f"{url}: refusing to download without a sha256 to check it against")
    # Keyed by the digest, so two URLs ending in the same file name do not collide.
    dest_dir = Path(dest_dir) if dest_dir is not None else cache_root() / "downloads" / sha256[:16]
    name = url.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "download"
    dest = dest_dir / name
    what = what or url
    if dest.is_file():
        verify_sha256(dest, sha256, what=f"{what} (cached at {dest})")
        return dest
    hint = f"download {url} yourself and put it at {dest}, or pass the local file's path"
    if offline_requested():
        raise OfflineError(f"could not fetch {what}: offline mode is on (HF_HUB_OFFLINE/DTF_OFFLINE); {hint}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    try:
        # torch's own downloader: streams to a temporary file and moves it into place.
        import torch.hub

        torch.hub.download_url_to_file(url, str(partial), progress=False)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise OfflineError(f"could not fetch {what} ({reason}); {hint}") from None
    try:
        verify_sha256(partial, sha256, what=f"{what} (downloaded)")
    except ChecksumError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, dest)
    return dest
