"""The runtime's own source imports nothing but the standard library, numpy, Pillow and
onnxruntime (the subprocess tests in ``tests/client_distiller/test_export*.py`` run it with
torch, timm and the client unimportable)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import student_runtime

ALLOWED = {"numpy", "PIL", "onnxruntime", "student_runtime"}


def test_only_allowed_imports() -> None:
    package = Path(student_runtime.__file__).parent
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    assert found, "no imports found: the scan is broken"
    outside = {
        name: files
        for name, files in found.items()
        if name not in ALLOWED and name not in sys.stdlib_module_names
    }
    assert outside == {}
    assert {"numpy", "PIL", "onnxruntime"} <= set(found)
