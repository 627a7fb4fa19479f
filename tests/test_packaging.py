"""The wheel carries what the package reads at run time, and a non-editable install renders the same card."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel` of a copy of the source (no build folders land in the checkout), without network."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "nlp_reuse", src / "nlp_reuse", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("nlp_reuse-*.whl")
    return built


def test_wheel_holds_the_card_template_and_the_console_command(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
        packaged = zf.read("nlp_reuse/model_cards/student_card.md.j2")
    assert packaged == (ROOT / "nlp_reuse/model_cards/student_card.md.j2").read_bytes()
    assert {"nlp_reuse/commands/__init__.py", "nlp_reuse/commands/distill.py", "nlp_reuse/py.typed"} <= names
    assert "nlp-reuse = nlp_reuse.commands:main" in entry_points
    assert not any(n.startswith(("tests/", "scripts/", "configs/")) for n in names)


def test_installed_wheel_finds_its_template_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    code = ("import nlp_reuse.hub.card as h, pathlib; print(h.__file__); "
            "print(h.read_card_template() == pathlib.Path(h.__file__).parents[1].joinpath('model_cards', "
            "'student_card.md.j2').read_text())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target),
                         "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         timeout=300, check=True).stdout.split()
    assert out == [str(target / "nlp_reuse" / "hub" / "card.py"), "True"]
