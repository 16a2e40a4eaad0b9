"""The stack the suite runs on is the one it claims: under `make test-colab`
(COLABKIT_EXPECT_STACK=constraints/colab.txt) the Python version and every pinned package
are exactly those of the constraints file, so a green run there means Colab's stack."""
import os
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXPECT = os.environ.get("COLABKIT_EXPECT_STACK")


def read_constraints(path: Path) -> tuple[str | None, dict[str, str]]:
    """(Python major.minor from a '# python: X.Y' line, {package: pinned version})."""
    text = path.read_text(encoding="utf-8")
    python = re.search(r"^# python: (\d+\.\d+)\s*$", text, re.M)
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", text, re.M))
    return (python.group(1) if python else None), pins


def test_the_colab_constraints_pin_python_and_colabs_packages():
    python, pins = read_constraints(REPO / "constraints" / "colab.txt")
    assert python == "3.13"
    assert pins["torch"] == "2.11.0" and pins["torchvision"] == "0.26.0"
    # every runtime dependency of colabkit is pinned to Colab's version
    deps = re.findall(r'^\s+"([a-z]+)[<>=]', (REPO / "pyproject.toml").read_text(), re.M)
    assert deps and set(deps) <= set(pins), set(deps) - set(pins)


@pytest.mark.skipif(not EXPECT, reason="only under make test-colab (COLABKIT_EXPECT_STACK)")
def test_this_environment_is_the_stack_it_claims():
    python, pins = read_constraints(REPO / EXPECT)
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == python
    installed = {name: metadata.version(name) for name in pins}
    # a local version label (+cu130) is the same release
    assert {n: v.split("+")[0] for n, v in installed.items()} == pins
