"""Checking an uploaded plugin package and unpacking it into a staging directory.

:func:`stage_package` runs every check of plugins.md and raises
:class:`InvalidPlugin` (400 ``invalid_plugin``) listing every problem found:
size, file count, absolute paths, ``..``, links and other special files,
encrypted or corrupt members, the manifest, and — inside the sandbox, never in
this process — that the entry class imports and has ``send``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

from ..errors import TouchgateError
from .manifest import MANIFEST_NAME, Manifest, parse_manifest
from .sandbox import Sandbox, SandboxError, detect_sandbox

MAX_PACKAGE_BYTES = 10 * 1024 * 1024
# Entries of the archive, directories included (each one is written to disk).
MAX_FILES = 1000
# Directory levels of a member's path; far beyond any real package, far below
# what path handling (and recursion over the tree) copes with.
MAX_DEPTH = 32
MAX_NAME_BYTES = 255
MAX_PATH_CHARS = 1024
# A 10 MiB zip can inflate to gigabytes; nothing beyond this is unpacked.
MAX_UNPACKED_BYTES = 64 * 1024 * 1024
CHECK_TIMEOUT = 20.0
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


class InvalidPlugin(TouchgateError):
    """The package was refused; ``details`` lists every ``{field, message}`` (and
    ``path`` for a problem with one member of the zip)."""

    status_code = 400
    code = "invalid_plugin"


@dataclass
class StagedPackage:
    """A checked package unpacked under ``files_dir`` (removed by :meth:`discard`
    unless the service moved it into place)."""

    manifest: Manifest
    files_dir: Path
    sha256: str
    size: int
    file_count: int

    def discard(self) -> None:
        shutil.rmtree(self.files_dir.parent, ignore_errors=True)


def _member_problem(path: str, message: str) -> dict[str, Any]:
    return {"field": "file", "path": path, "message": message}


def _member_kind_problem(info: zipfile.ZipInfo) -> str | None:
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        return "links are not allowed"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "only regular files and directories are allowed"
    if info.flag_bits & 0x1:
        return "encrypted members are not supported"
    return None


def _path_problem(name: str) -> str | None:
    if not name:
        return "an empty member name"
    if any(ord(ch) < 32 for ch in name):
        return "control characters in the name"
    if name.startswith(("/", "\\")) or _DRIVE_RE.match(name):
        return "absolute paths are not allowed"
    if len(name) > MAX_PATH_CHARS:
        return f"the path is longer than {MAX_PATH_CHARS} characters"
    parts = re.split(r"[\\/]", name)
    if ".." in parts:
        return "'..' is not allowed in paths"
    if len([p for p in parts if p]) > MAX_DEPTH:
        return f"the path is more than {MAX_DEPTH} directories deep"
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for p in parts):
        return f"a name in the path is longer than {MAX_NAME_BYTES} bytes"
    return None


def _entry_module_exists(names: set[str], module: str) -> bool:
    base = module.replace(".", "/")
    return f"{base}.py" in names or f"{base}/__init__.py" in names


def stage_package(
    fileobj: IO[bytes],
    staging_root: Path,
    *,
    sandbox: Sandbox | None = None,
) -> StagedPackage:
    """Check the package in ``fileobj`` (seekable) and unpack it under ``staging_root``."""
    problems: list[dict[str, Any]] = []
    fileobj.seek(0, 2)
    size = fileobj.tell()
    fileobj.seek(0)
    if size > MAX_PACKAGE_BYTES:
        problems.append(
            {
                "field": "file",
                "message": f"the package is {size} bytes; at most {MAX_PACKAGE_BYTES} (10 MiB)",
            }
        )
    if size == 0:
        raise InvalidPlugin(
            "The package is empty.", details=[{"field": "file", "message": "the file is empty"}]
        )
    digest = hashlib.sha256()
    while chunk := fileobj.read(1 << 20):
        digest.update(chunk)
    fileobj.seek(0)
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError):
        problems.append({"field": "file", "message": "the file is not a zip archive"})
        _raise(problems)
    with archive:
        infos = archive.infolist()
        files = [i for i in infos if not i.is_dir()]
        if len(infos) > MAX_FILES:
            problems.append(
                {
                    "field": "file",
                    "message": f"the package holds {len(infos)} entries (files and "
                    f"directories); at most {MAX_FILES}",
                }
            )
            # Past the limit the members are not even looked at one by one.
            _raise(problems)
        unpacked = sum(i.file_size for i in files)
        if unpacked > MAX_UNPACKED_BYTES:
            problems.append(
                {
                    "field": "file",
                    "message": f"the package unpacks to {unpacked} bytes; at most "
                    f"{MAX_UNPACKED_BYTES} (64 MiB)",
                }
            )
        safe: list[zipfile.ZipInfo] = []
        seen: set[str] = set()
        for info in infos:
            reason = _path_problem(info.filename) or _member_kind_problem(info)
            normalized = info.filename.replace("\\", "/").rstrip("/")
            if reason is None and normalized in seen:
                reason = "the name appears twice in the archive"
            if reason is not None:
                problems.append(_member_problem(info.filename, reason))
                continue
            seen.add(normalized)
            safe.append(info)

        manifest: Manifest | None = None
        names = {i.filename.replace("\\", "/") for i in safe if not i.is_dir()}
        if MANIFEST_NAME not in names:
            message = f"{MANIFEST_NAME} is missing at the zip's root"
            nested = sorted(n for n in names if n.endswith("/" + MANIFEST_NAME))
            if nested:
                message += (
                    f" (found {nested[0]}: zip the plugin directory's contents, "
                    "not the directory itself)"
                )
            problems.append({"field": "manifest", "message": message})
        else:
            info = next(i for i in safe if i.filename.replace("\\", "/") == MANIFEST_NAME)
            if info.file_size > 256 * 1024:
                problems.append({"field": "manifest", "message": "the manifest exceeds 256 KiB"})
            else:
                try:
                    manifest, manifest_problems = parse_manifest(archive.read(info))
                    problems += manifest_problems
                except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                    problems.append(
                        {"field": "manifest", "message": f"the manifest cannot be read: {exc}"}
                    )
        if manifest is not None and not _entry_module_exists(names, manifest.entry_module):
            problems.append(
                {
                    "field": "manifest.entry",
                    "message": f"module {manifest.entry_module!r} is not in the package "
                    f"(expected {manifest.entry_module.replace('.', '/')}.py)",
                }
            )
            manifest = None

        # Nothing is written unless every check above passed.
        if problems or manifest is None:
            _raise(problems or [{"field": "manifest", "message": "the manifest is invalid"}])
        staging_root.mkdir(parents=True, exist_ok=True)
        holder = Path(tempfile.mkdtemp(prefix=".staging-", dir=staging_root))
        files_dir = holder / "files"
        files_dir.mkdir()
        try:
            problems += _extract(archive, safe, files_dir)
            if not problems:
                problem = check_entry(files_dir, manifest.entry, sandbox=sandbox)
                if problem:
                    problems.append({"field": "manifest.entry", "message": problem})
            if problems:
                _raise(problems)
        except BaseException:
            shutil.rmtree(holder, ignore_errors=True)
            raise
    assert manifest is not None
    return StagedPackage(
        manifest=manifest,
        files_dir=files_dir,
        sha256=digest.hexdigest(),
        size=size,
        file_count=len(files),
    )


def _extract(
    archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], target: Path
) -> list[dict[str, Any]]:
    """Unpack the members that passed the path checks; sizes are enforced while
    reading (the sizes a zip declares can lie)."""
    problems: list[dict[str, Any]] = []
    budget = MAX_UNPACKED_BYTES
    root = target.resolve()
    for info in infos:
        name = info.filename.replace("\\", "/")
        dest = (target / name).resolve()
        if dest != root and root not in dest.parents:
            problems.append(_member_problem(info.filename, "escapes the package directory"))
            continue
        try:
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                dest.chmod(0o755)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(dest, "wb") as out:
                written = 0
                while chunk := src.read(1 << 16):
                    written += len(chunk)
                    if written > info.file_size or written > budget:
                        raise ValueError("the member is larger than the archive says")
                    out.write(chunk)
                budget -= written
        # zipfile raises NotImplementedError for a compression method it lacks:
        # that is a problem with the uploaded package, reported like the others.
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            problems.append(_member_problem(info.filename, f"cannot be unpacked: {exc}"))
            continue
        dest.chmod(0o644)
    for directory in [target, *(p for p in target.rglob("*") if p.is_dir())]:
        with contextlib.suppress(OSError):
            directory.chmod(0o755)
    return problems


def check_entry(files_dir: Path, entry: str, *, sandbox: Sandbox | None = None) -> str | None:
    """Import the entry class in a sandboxed worker and check it has ``send``.
    Returns why it failed, or ``None``."""
    sandbox = sandbox or detect_sandbox()
    try:
        process = sandbox.launch(files_dir, entry)
    except SandboxError as exc:
        return f"the sandbox could not start: {exc}"
    try:
        reply = process.request({"op": "check"}, CHECK_TIMEOUT)
    except SandboxError as exc:
        return f"importing {entry} in the sandbox failed: {exc}"
    finally:
        process.kill()
    if reply.get("ok"):
        return None
    error = reply.get("error") or {}
    return f"importing {entry} failed: {error.get('type', 'Error')}: {error.get('message', '')}"


def _raise(problems: list[dict[str, Any]]) -> NoReturn:
    first = problems[0]
    summary = first["message"]
    if first.get("path"):
        summary = f"{first['path']}: {summary}"
    if len(problems) > 1:
        summary += f" (and {len(problems) - 1} more)"
    raise InvalidPlugin(f"The plugin package was refused: {summary}", details=problems)
