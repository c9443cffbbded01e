"""CVAT's own pinned server requirements, as this machine's Python can install them.

    python e2e/cvat_requirements.py <CVAT checkout>   prints a requirements file

From CVAT's cvat/requirements/production.txt (and what it includes), without the hashes, with only
these changes, each needed on Python 3.11 or without GitHub:

- numpy 1.23.5 instead of 1.22.4 and attrs 22.2.0 instead of 21.4.0 (the pinned ones have no wheels for
  Python 3.11 or break on it);
- no datumaro: CVAT pins a fork as a GitHub archive, which cannot be downloaded here; e2e/setup.sh
  installs upstream datumaro 1.10.0 without its dependencies instead, and e2e/datumaro_compat.py adds the
  few names CVAT imports that upstream lacks.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPLACED = {"numpy": "numpy==1.23.5", "attrs": "attrs==22.2.0"}
DROPPED = {"datumaro"}


def pinned_lines(path: Path, seen: set[Path]) -> list[str]:
    """The requirement lines of a pip-compile output file and of the files it includes with -r."""
    path = path.resolve()
    if path in seen:
        return []
    seen.add(path)
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip().rstrip("\\").strip()
        if not line or line.startswith(("#", "--hash")):
            continue
        if line.startswith("-r "):
            lines += pinned_lines(path.parent / line[3:].strip(), seen)
        else:
            lines.append(line)
    return lines


def project_name(requirement: str) -> str:
    return re.split(r"[\s=<>~!@;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def cvat_requirements(checkout: Path) -> list[str]:
    chosen: dict[str, str] = {}
    for line in pinned_lines(checkout / "cvat" / "requirements" / "production.txt", set()):
        name = project_name(line)
        if name not in DROPPED:
            chosen[name] = REPLACED.get(name, line)
    return [chosen[name] for name in sorted(chosen)]


if __name__ == "__main__":
    print("\n".join(cvat_requirements(Path(sys.argv[1]))))
