"""Give upstream datumaro 1.10.0 the few names CVAT 2.64 imports from its own datumaro fork.

CVAT pins a fork of datumaro that cannot be downloaded here. Upstream 1.10.0 (installed without its
dependencies) serves every datumaro module CVAT imports but lacks three names: the annotation type
``skeleton``, the ``Skeleton`` annotation and ``datumaro.PointCloud`` at the top level, and it requires
every importer to name its file extensions, which the importers CVAT registers do not. This script adds
the names and lets an importer name no extensions, in the installed package, once (it is idempotent).
The end-to-end tests never import or export a dataset, so what CVAT's dataset formats would do with
skeletons is not exercised.

    <cvat venv>/bin/python e2e/datumaro_compat.py
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

MARK = "# added by sam2-cvat e2e/datumaro_compat.py"

SKELETON = f'''

{MARK}
@attrs(slots=True, order=False)
class Skeleton(Annotation):
    """A set of point annotations (its elements) under one label."""

    _type = AnnotationType.skeleton
    elements: List[Points] = field(factory=list)
    label: Optional[int] = field(converter=attr.converters.optional(int), default=None, kw_only=True)

    def get_points(self):
        return [point for element in self.elements for point in element.get_points()]
'''

TOP_LEVEL = f"""
{MARK}
from .components.annotation import Skeleton  # noqa: E402
from .components.media import PointCloud  # noqa: E402
"""


def package_dir() -> Path:
    spec = importlib.util.find_spec("datumaro")
    if spec is None or spec.origin is None:
        raise SystemExit("datumaro is not installed in this Python")
    return Path(spec.origin).parent


def add_skeleton(annotation_py: Path) -> None:
    source = annotation_py.read_text()
    if MARK in source:
        return
    enum = re.search(r"class AnnotationType\(IntEnum\):\n((?:    \w+ = \d+\n)+)", source)
    if enum is None:
        raise SystemExit(f"no AnnotationType enum found in {annotation_py}")
    last = max(int(value) for value in re.findall(r"= (\d+)", enum.group(1)))
    members = enum.group(1) + f"    skeleton = {last + 1}  {MARK}\n"
    source = source[: enum.start(1)] + members + source[enum.end(1) :]
    annotation_py.write_text(source + SKELETON)


def add_top_level_names(init_py: Path) -> None:
    source = init_py.read_text()
    if MARK not in source:
        init_py.write_text(source + TOP_LEVEL)


def let_importers_name_no_extensions(importer_py: Path) -> None:
    source = importer_py.read_text()
    if MARK in source:
        return
    required = "    def get_file_extensions(cls) -> List[str]:\n        raise NotImplementedError()\n"
    if required not in source:
        raise SystemExit(f"Importer.get_file_extensions not found in {importer_py}")
    importer_py.write_text(
        source.replace(required, required.replace("raise NotImplementedError()", f"return []  {MARK}"))
    )


def main() -> None:
    package = package_dir()
    add_skeleton(package / "components" / "annotation.py")
    let_importers_name_no_extensions(package / "components" / "importer.py")
    add_top_level_names(package / "__init__.py")


if __name__ == "__main__":
    main()
