"""The alert rule file is valid for Prometheus and its promtool unit tests pass (never skipped)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.fixtures.prometheus import require_binary

pytestmark = pytest.mark.integration

ALERTS = Path(__file__).resolve().parents[2] / "dashboards" / "alerts"


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the return code is asserted with the output as the message
        [require_binary("promtool"), *arguments], cwd=ALERTS, capture_output=True, text=True, timeout=120
    )


def test_promtool_accepts_the_rule_file() -> None:
    """Syntax, PromQL and templates of every rule are valid for the Prometheus version we ship with."""
    result = promtool("check", "rules", "moderation-rules.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    groups = yaml.safe_load((ALERTS / "moderation-rules.yml").read_text())["groups"]
    assert f"SUCCESS: {sum(len(group['rules']) for group in groups)} rules found" in result.stdout


def test_promtool_unit_tests_of_every_alert_pass() -> None:
    """Each alert fires in its firing scenario and stays silent in its silent one (see the .test.yml)."""
    result = promtool("test", "rules", "moderation-rules.test.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
