"""The source layout must never shadow the standard library (DESIGN.md sec. 1, 6)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def test_source_folders_have_no_init_file() -> None:
    assert not (REPO_ROOT / "platform" / "__init__.py").exists()
    assert not (REPO_ROOT / "envs" / "__init__.py").exists()


def test_platform_is_the_standard_library_module_from_repo_root() -> None:
    code = "import platform, pathlib; print(pathlib.Path(platform.__file__).resolve())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).parent == STDLIB


def test_platform_is_the_standard_library_module_under_python_m_pytest(tmp_path: Path) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import platform, pathlib, sysconfig\n"
        "def test_probe():\n"
        "    assert pathlib.Path(platform.__file__).resolve().parent == "
        "pathlib.Path(sysconfig.get_paths()['stdlib']).resolve()\n"
        "    import gapray, gapray_envs, uuid\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(probe)],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_packages_import_from_installed_distribution() -> None:
    import gapray
    import gapray_envs

    assert Path(gapray.__file__).resolve().is_relative_to(REPO_ROOT / "platform") or "site-packages" in gapray.__file__
    assert Path(gapray_envs.__file__).resolve().is_relative_to(REPO_ROOT / "envs") or \
        "site-packages" in gapray_envs.__file__
    assert Path(gapray_envs.__file__).resolve().parent.name == "gapray_envs"  # the package, not a stray module
