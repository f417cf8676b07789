"""Writing files so that a failure never leaves a half-written one: write beside the target, then rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process umask (reading it requires setting it; it is restored at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def give_normal_permissions(path: str | os.PathLike) -> None:
    """`0o666`/`0o777` (files/folders) minus the umask: what `open`/`mkdir` would have made, unlike mkstemp's 0600."""
    path = Path(path)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~current_umask())


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """
    Yield a temporary file path beside `path` (same folder, same suffix) to write to. When the block succeeds the
    file gets normal permissions and replaces `path` in one rename; when it raises, the temporary file is removed
    and `path` is untouched. The parent folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        give_normal_permissions(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """
    Yield a temporary folder beside `path` to fill. When the block succeeds it gets normal permissions and takes
    the place of `path` (an existing folder there is moved aside first and deleted only once the new one is in
    place); when it raises, the temporary folder is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        give_normal_permissions(staging)  # mkdtemp makes 0700
        yield staging
        if path.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            backup.rmdir()
            path.rename(backup)
            staging.rename(path)
            shutil.rmtree(backup)
        else:
            staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically and return the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)
