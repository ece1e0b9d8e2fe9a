"""A hub id (``--model org/name``) as a local checkpoint folder, or one line saying why it cannot be.

A hub id already in the local Hugging Face cache runs from the cache, without touching the network (so
an offline machine, or a cluster node without internet, loads it at once, and its results directory
keeps one model identity: the cached folder's). One that is not cached is looked up once, with a short
timeout and no retries: a machine that cannot reach the Hub gets one error line at once, instead of
``from_pretrained``'s six retry lines and about half a minute, and a repository that does not exist
(or is gated) is named as such. A reachable one is downloaded into the cache with the Hub's own
progress bars (configs, tokenizer files and safetensors weights only) and runs from there.

To update a cached model to the Hub's newest revision, delete its cache folder (``hf cache delete``)
or download it yourself and pass the folder.
"""

from __future__ import annotations

import functools
import os

from prune_bench.errors import UserError

#: what a checkpoint needs: configs, tokenizer and chat template files, safetensors weights
CHECKPOINT_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken")

LOOKUP_TIMEOUT_S = 10.0


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cached(repo_id: str) -> str | None:
    from huggingface_hub import snapshot_download

    try:
        return str(snapshot_download(repo_id, local_files_only=True, allow_patterns=list(CHECKPOINT_FILES)))
    except Exception as exc:  # LocalEntryNotFoundError (not cached) or HFValidationError (a bad id)
        if type(exc).__name__ == "HFValidationError":
            raise UserError(
                f"--model '{repo_id}' is neither an existing directory nor a valid hub id (org/name)"
            ) from None
        return None


def _lookup(repo_id: str) -> None:
    """Raise one line unless the Hub is reachable and has ``repo_id``."""
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(repo_id, timeout=LOOKUP_TIMEOUT_S)
    except Exception as exc:
        kind = {cls.__name__ for cls in type(exc).__mro__}
        if "GatedRepoError" in kind:
            raise UserError(
                f"'{repo_id}' is gated on the Hub: accept its licence on huggingface.co and log in "
                "(hf auth login), or pass a local copy with --model DIR"
            ) from None
        if "RepositoryNotFoundError" in kind:
            raise UserError(
                f"no model '{repo_id}' on the Hugging Face Hub (or it is private: log in with hf auth "
                "login); check the id, or pass a local directory"
            ) from None
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UserError(
            f"cannot reach the Hugging Face Hub to fetch '{repo_id}' ({reason}), and it is not in the local "
            f"cache: download it where there is access (hf download {repo_id} --local-dir DIR) and pass "
            "--model DIR"
        ) from None


@functools.cache
def hub_checkpoint(repo_id: str) -> str:
    """The local folder of hub id ``repo_id``: the cached snapshot, or a fresh download into the cache."""
    cached = _cached(repo_id)
    if cached is not None:
        return cached
    if _offline():
        raise UserError(
            f"'{repo_id}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: download it "
            f"first (hf download {repo_id}) or pass a local directory with --model"
        )
    _lookup(repo_id)
    from huggingface_hub import snapshot_download

    try:
        return str(snapshot_download(repo_id, allow_patterns=list(CHECKPOINT_FILES)))
    except Exception as exc:  # a download cut short: the cache keeps what finished, a re-run resumes
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UserError(
            f"downloading '{repo_id}' failed ({reason}); run the command again to resume the download"
        ) from None
