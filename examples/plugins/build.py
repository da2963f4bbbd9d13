"""Build a plugin package (.zip) from a plugin's source directory.

    python examples/plugins/build.py examples/plugins/sms_gateway [-o sms-gateway-1.0.0.zip]

The zip holds the directory's files at its root (touchgate-plugin.toml next to
the code), skipping caches and hidden files. Upload it with
``touchgate plugin upload FILE --project N`` or ``POST /api/v1/projects/N/plugins``.
"""

from __future__ import annotations

import argparse
import tomllib
import zipfile
from pathlib import Path

SKIP_DIRS = {"__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache"}


def build(source: Path, output: Path | None = None) -> Path:
    manifest = tomllib.loads((source / "touchgate-plugin.toml").read_text(encoding="utf-8"))
    if output is None:
        output = Path(f"{manifest['name']}-{manifest['version']}.zip")
    files = sorted(
        p
        for p in source.rglob("*")
        if p.is_file()
        and not p.is_symlink()
        and not any(
            part in SKIP_DIRS or part.startswith(".") for part in p.relative_to(source).parts
        )
        and p.suffix not in (".pyc", ".pyo")
    )
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(source).as_posix())
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the plugin's directory")
    parser.add_argument("-o", "--output", type=Path, default=None, help="the zip to write")
    args = parser.parse_args()
    print(build(args.source, args.output))


if __name__ == "__main__":
    main()
