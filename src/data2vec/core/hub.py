"""Find files of a model: a local folder, or a Hub repo id resolved through the Hub cache.

With ``HF_HUB_OFFLINE=1`` a Hub id resolves from the local cache only (``huggingface_hub``
honours the variable itself); a file missing from the cache is then reported as missing.
"""

from __future__ import annotations

import os
from pathlib import Path


def is_local(path_or_repo: str | os.PathLike) -> bool:
    return Path(path_or_repo).is_dir()


def resolve_file(
    path_or_repo: str | os.PathLike,
    filename: str,
    *,
    required: bool = True,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path | None:
    """Return the local path of ``filename`` inside a folder or Hub repo.

    Returns ``None`` when the file does not exist and ``required`` is false; raises
    ``FileNotFoundError`` naming the file and the place otherwise.
    """
    if is_local(path_or_repo):
        candidate = Path(path_or_repo) / filename
        if candidate.is_file():
            return candidate
        if required:
            raise FileNotFoundError(f"{filename} not found in folder {str(path_or_repo)!r}")
        return None
    if Path(path_or_repo).exists():
        raise NotADirectoryError(f"{str(path_or_repo)!r} is a file; pass the folder that holds the model files")

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(hf_hub_download(str(path_or_repo), filename, revision=revision, cache_dir=cache_dir))
    except LocalEntryNotFoundError as error:
        # Offline (HF_HUB_OFFLINE=1 or no network) and not in the cache.
        if required:
            raise FileNotFoundError(
                f"{filename} of {str(path_or_repo)!r} is neither a local folder nor in the Hub cache, "
                "and the Hub cannot be reached (offline?). Download it once online, or pass a folder."
            ) from error
        return None
    except EntryNotFoundError:
        if required:
            raise FileNotFoundError(f"{filename} not found in Hub repo {str(path_or_repo)!r}") from None
        return None
    except HFValidationError:
        raise FileNotFoundError(
            f"{str(path_or_repo)!r} is neither an existing folder nor a valid Hub repo id (owner/name)"
        ) from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(
            f"{str(path_or_repo)!r} is neither a local folder nor a Hub repo id that exists"
        ) from None
