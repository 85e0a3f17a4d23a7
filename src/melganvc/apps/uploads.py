"""Uploads to the web page: only files uploaded to this server are accepted (Gradio would
otherwise download a URL or copy a server path a client names, before our code runs), and each
is deleted once used."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

from melganvc.apps.service import log
from melganvc.errors import UserError

UPLOADS = "uploads"  # Gradio's cache (GRADIO_TEMP_DIR) inside the service's work folder
NOT_UPLOADED = "only audio uploaded to this page is accepted (not links or server paths)"
UPLOAD_GONE = ("the upload is no longer on the server (uploads are deleted once converted); "
               "upload or record it again")
_URL = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]+:|//|\\\\)")  # a scheme, or a network path


def upload_folder() -> Path:
    """Where Gradio keeps uploads (its ``GRADIO_TEMP_DIR``; ``serve`` sets a private one)."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def uploaded_file(value: Any, folder: Path) -> Path:
    """``value`` as a path inside ``folder`` (links resolved), the only place uploads are;
    ``UserError(NOT_UPLOADED)`` for anything else: URLs, other server paths, non-strings.
    Pure string work: nothing is fetched or opened."""
    text = str(value) if isinstance(value, (str, Path)) else ""
    if not text or _URL.match(text) or "\x00" in text:
        raise UserError(NOT_UPLOADED)
    path = Path(text).resolve()
    if folder.resolve() not in path.parents:
        raise UserError(NOT_UPLOADED)
    return path


def discard_upload(value: Any, folder: Path) -> None:
    """Delete an upload (and its per-upload folder) once it has been used; anything outside
    ``folder`` is left alone."""
    try:
        path = uploaded_file(value, folder)
    except UserError:
        return
    path.unlink(missing_ok=True)
    parent = path.parent
    if parent != folder.resolve():
        with contextlib.suppress(OSError):  # not empty (another upload): keep it
            parent.rmdir()


def accept_only_uploads(component: Any, gr: Any) -> None:
    """Make an input ``component`` refuse a value not uploaded to this server *before* Gradio
    acts on it. Gradio hands each input file to the component's
    ``*move_resource_to_block_cache``, which downloads a URL (SSRF: a client names an address
    only the server can reach) or copies a path; ``preprocess`` comes after that, too late.
    Patched on the instance: a ``gr.Audio`` subclass would make Gradio write a ``.pyi`` stub
    next to this module (in the source tree or the installed package)."""
    move_async = component.async_move_resource_to_block_cache
    move = component.move_resource_to_block_cache

    def only_uploaded(value: Any) -> Any:
        if value is None:
            return None
        try:
            return str(uploaded_file(value, upload_folder()))
        except UserError as exc:
            log(f"refused an input that was not uploaded: {str(value)[:200]!r}")
            raise gr.Error(str(exc), print_exception=False) from None

    async def guarded_async(url_or_file_path: Any) -> Any:
        return await move_async(only_uploaded(url_or_file_path))

    def guarded(url_or_file_path: Any) -> Any:
        return move(only_uploaded(url_or_file_path))

    component.async_move_resource_to_block_cache = guarded_async
    component.move_resource_to_block_cache = guarded
