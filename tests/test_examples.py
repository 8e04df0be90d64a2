"""Every example script runs to completion (small scale) in CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


def test_there_are_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"SHOPCRM_EXAMPLE_SCALE": "2000", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip(), "an example should show what it did"


PLUGIN = Path(__file__).resolve().parent.parent / "examples" / "shopcrm-pushgate"


def test_the_example_plugin_passes_its_own_tests_with_the_conformance_kit(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(PLUGIN / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8 passed" in done.stdout


def test_the_example_plugin_is_a_channel_the_registry_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(PLUGIN / "src"))
    from shopcrm_pushgate import PushGateChannel

    from shopcrm.plugins import Registry, channels_from_config

    registry = Registry()
    registry.register("shopcrm.channels", "pushgate", PushGateChannel)
    built = channels_from_config({"push": {"plugin": "pushgate", "url": "https://push.example", "token": "t"}}, registry)
    assert isinstance(built["push"], PushGateChannel)
