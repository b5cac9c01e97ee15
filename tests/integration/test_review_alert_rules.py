"""The review console's alert rules are valid for Prometheus and their promtool unit tests pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.fixtures.prometheus import require_binary

pytestmark = pytest.mark.integration

ALERTS = Path(__file__).resolve().parents[2] / "dashboards" / "alerts"


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the return code is asserted with the output as the message
        [require_binary("promtool"), *arguments], cwd=ALERTS, capture_output=True, text=True, timeout=120
    )


def test_promtool_accepts_the_review_rule_file() -> None:
    """Syntax, PromQL and templates of the review SLA and console-down alerts are valid."""
    result = promtool("check", "rules", "review-rules.yml")

    assert 0 == result.returncode, result.stdout + result.stderr
    assert "SUCCESS: 2 rules found" in result.stdout


def test_promtool_unit_tests_of_the_review_alerts_pass() -> None:
    """The SLA alert fires past 4 h on needs-review items only; console-down after 10 minutes."""
    result = promtool("test", "rules", "review-rules.test.yml")

    assert 0 == result.returncode, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
