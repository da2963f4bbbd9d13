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

from ..errors import Coded, TouchgateError, field_detail
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
    """The package was refused; ``details`` lists every problem as a field detail
    (``{field, code, message, params}``, and ``path`` for a problem with one member
    of the zip, also in ``params``)."""

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


def _problem(field: str, message: str, code: str, **params: Any) -> dict[str, Any]:
    return field_detail(field, message, code, params)


def _member_problem(path: str, reason: Coded) -> dict[str, Any]:
    """A problem with one member of the zip (``path`` also in params, for the console)."""
    detail = field_detail("file", reason.message, reason.code, {**reason.params, "path": path})
    return {**detail, "path": path}


def _member_kind_problem(info: zipfile.ZipInfo) -> Coded | None:
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        return Coded(code="member_link", message="links are not allowed")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return Coded(
            code="member_special", message="only regular files and directories are allowed"
        )
    if info.flag_bits & 0x1:
        return Coded(code="member_encrypted", message="encrypted members are not supported")
    return None


def _path_problem(name: str) -> Coded | None:
    if not name:
        return Coded(code="member_name_empty", message="an empty member name")
    if any(ord(ch) < 32 for ch in name):
        return Coded(code="member_name_control", message="control characters in the name")
    if name.startswith(("/", "\\")) or _DRIVE_RE.match(name):
        return Coded(code="member_absolute", message="absolute paths are not allowed")
    if len(name) > MAX_PATH_CHARS:
        return Coded(
            code="member_path_too_long",
            message=f"the path is longer than {MAX_PATH_CHARS} characters",
            params={"max": MAX_PATH_CHARS},
        )
    parts = re.split(r"[\\/]", name)
    if ".." in parts:
        return Coded(code="member_dotdot", message="'..' is not allowed in paths")
    if len([p for p in parts if p]) > MAX_DEPTH:
        return Coded(
            code="member_too_deep",
            message=f"the path is more than {MAX_DEPTH} directories deep",
            params={"max": MAX_DEPTH},
        )
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for p in parts):
        return Coded(
            code="member_name_too_long",
            message=f"a name in the path is longer than {MAX_NAME_BYTES} bytes",
            params={"max": MAX_NAME_BYTES},
        )
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
        problems.append(too_large_problem(size))
    if size == 0:
        raise InvalidPlugin(
            "The package is empty.",
            details=[_problem("file", "the file is empty", "file_empty")],
        )
    digest = hashlib.sha256()
    while chunk := fileobj.read(1 << 20):
        digest.update(chunk)
    fileobj.seek(0)
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError):
        problems.append(_problem("file", "the file is not a zip archive", "not_zip"))
        _raise(problems)
    with archive:
        infos = archive.infolist()
        files = [i for i in infos if not i.is_dir()]
        if len(infos) > MAX_FILES:
            problems.append(
                _problem(
                    "file",
                    f"the package holds {len(infos)} entries (files and "
                    f"directories); at most {MAX_FILES}",
                    "too_many_files",
                    count=len(infos),
                    max=MAX_FILES,
                )
            )
            # Past the limit the members are not even looked at one by one.
            _raise(problems)
        unpacked = sum(i.file_size for i in files)
        if unpacked > MAX_UNPACKED_BYTES:
            problems.append(
                _problem(
                    "file",
                    f"the package unpacks to {unpacked} bytes; at most "
                    f"{MAX_UNPACKED_BYTES} (64 MiB)",
                    "unpacked_too_large",
                    size=unpacked,
                    max=MAX_UNPACKED_BYTES,
                )
            )
        safe: list[zipfile.ZipInfo] = []
        seen: set[str] = set()
        for info in infos:
            reason = _path_problem(info.filename) or _member_kind_problem(info)
            normalized = info.filename.replace("\\", "/").rstrip("/")
            if reason is None and normalized in seen:
                reason = Coded(code="member_twice", message="the name appears twice in the archive")
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
                problems.append(_problem("manifest", message, "manifest_nested", found=nested[0]))
            else:
                problems.append(_problem("manifest", message, "manifest_missing"))
        else:
            info = next(i for i in safe if i.filename.replace("\\", "/") == MANIFEST_NAME)
            if info.file_size > 256 * 1024:
                problems.append(
                    _problem(
                        "manifest", "the manifest exceeds 256 KiB", "manifest_too_large", max=256
                    )
                )
            else:
                try:
                    manifest, manifest_problems = parse_manifest(archive.read(info))
                    problems += manifest_problems
                except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                    problems.append(
                        _problem(
                            "manifest",
                            f"the manifest cannot be read: {exc}",
                            "manifest_unreadable",
                            error=str(exc),
                        )
                    )
        if manifest is not None and not _entry_module_exists(names, manifest.entry_module):
            expected = f"{manifest.entry_module.replace('.', '/')}.py"
            problems.append(
                _problem(
                    "manifest.entry",
                    f"module {manifest.entry_module!r} is not in the package (expected {expected})",
                    "entry_module_missing",
                    module=manifest.entry_module,
                    expected=expected,
                )
            )
            manifest = None

        # Nothing is written unless every check above passed.
        if problems or manifest is None:
            _raise(problems or [_problem("manifest", "the manifest is invalid", "invalid")])
        staging_root.mkdir(parents=True, exist_ok=True)
        holder = Path(tempfile.mkdtemp(prefix=".staging-", dir=staging_root))
        files_dir = holder / "files"
        files_dir.mkdir()
        try:
            problems += _extract(archive, safe, files_dir)
            if not problems:
                problem = check_entry(files_dir, manifest.entry, sandbox=sandbox)
                if problem:
                    problems.append(
                        field_detail(
                            "manifest.entry", problem.message, problem.code, problem.params
                        )
                    )
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
            problems.append(
                _member_problem(
                    info.filename,
                    Coded(code="member_escapes", message="escapes the package directory"),
                )
            )
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
            problems.append(
                _member_problem(
                    info.filename,
                    Coded(
                        code="member_unreadable",
                        message=f"cannot be unpacked: {exc}",
                        params={"error": str(exc)},
                    ),
                )
            )
            continue
        dest.chmod(0o644)
    for directory in [target, *(p for p in target.rglob("*") if p.is_dir())]:
        with contextlib.suppress(OSError):
            directory.chmod(0o755)
    return problems


def check_entry(files_dir: Path, entry: str, *, sandbox: Sandbox | None = None) -> Coded | None:
    """Import the entry class in a sandboxed worker and check it has ``send``.
    Returns why it failed, or ``None``."""
    sandbox = sandbox or detect_sandbox()
    try:
        process = sandbox.launch(files_dir, entry)
    except SandboxError as exc:
        return Coded(
            code="sandbox_unavailable",
            message=f"the sandbox could not start: {exc}",
            params={"error": str(exc)},
        )
    try:
        reply = process.request({"op": "check"}, CHECK_TIMEOUT)
    except SandboxError as exc:
        return Coded(
            code="entry_import_failed",
            message=f"importing {entry} in the sandbox failed: {exc}",
            params={"entry": entry, "error": str(exc)},
        )
    finally:
        process.kill()
    if reply.get("ok"):
        return None
    error = reply.get("error") or {}
    said = f"{error.get('type', 'Error')}: {error.get('message', '')}"
    return Coded(
        code="entry_import_failed",
        message=f"importing {entry} failed: {said}",
        params={"entry": entry, "error": said},
    )


def too_large_problem(size: int | str) -> dict[str, Any]:
    return _problem(
        "file",
        f"the package is {size} bytes; at most {MAX_PACKAGE_BYTES} (10 MiB)",
        "package_too_large",
        size=int(size),
        max=MAX_PACKAGE_BYTES,
    )


def _raise(problems: list[dict[str, Any]]) -> NoReturn:
    first = problems[0]
    summary = first["message"]
    if first.get("path"):
        summary = f"{first['path']}: {summary}"
    if len(problems) > 1:
        summary += f" (and {len(problems) - 1} more)"
    raise InvalidPlugin(f"The plugin package was refused: {summary}", details=problems)
