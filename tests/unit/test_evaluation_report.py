"""The evaluate report: URLs leave redacted, text is escaped, the JSON holds the same figures as the page."""

from __future__ import annotations

from pathlib import Path

import orjson

from worker.analysis.limiter import QuotaLimiter
from worker.domain import Analysis, Tag
from worker.evaluation.analysis_cache import AnalysisCache
from worker.evaluation.evaluate import EvaluationRun, run_evaluation
from worker.evaluation.labeled_set import read_labeled_set
from worker.evaluation.report import write_report
from worker.evaluation.scoring import Targets
from worker.policy_file import load_default_policy

URL = "https://img.example/<b>cat</b>.jpg?sv=2024&sig=TOPSECRETSIGNATURE"


class TaggingAnalyzer:
    """Answers every URL with a knife 0.75 (reviewed by the default policy) and an outdoor 0.9."""

    identity = "fake:report"

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def analyze_url(self, url: str) -> Analysis:
        self.urls.append(url)
        return Analysis("fake-model", (Tag("knife", 0.75), Tag("outdoor", 0.9)))

    async def analyze_bytes(self, data: bytes) -> Analysis:
        raise AssertionError(f"this set has URLs only, got {len(data)} bytes")

    async def aclose(self) -> None:
        return None


class Silent:
    def __init__(self) -> None:
        self.done = 0

    def advance(self, images: int) -> None:
        self.done += images


async def _run(tmp_path: Path) -> EvaluationRun:
    labels = tmp_path / "set.jsonl"
    labels.write_bytes(orjson.dumps({"image": URL, "expected": "harmful"}) + b"\n")
    with AnalysisCache(tmp_path / "cache") as cache:
        return await run_evaluation(
            labels,
            read_labeled_set(labels),
            load_default_policy(),
            Targets(0.9, 0.0),
            analyzer=TaggingAnalyzer(),
            cache=cache,
            limiter=QuotaLimiter(100.0),
            progress=Silent(),
        )


async def test_the_report_shows_urls_redacted_and_markup_escaped(tmp_path: Path) -> None:
    """Neither file holds the SAS signature; the page shows the path escaped, never as markup."""
    write_report(await _run(tmp_path), tmp_path / "report")
    page = (tmp_path / "report" / "report.html").read_text()
    figures = (tmp_path / "report" / "report.json").read_text()
    assert (False, False, False, True) == (
        "TOPSECRETSIGNATURE" in page,
        "TOPSECRETSIGNATURE" in figures,
        "<b>cat</b>" in page,
        "&lt;b&gt;cat&lt;/b&gt;" in page,
    )


async def test_the_figures_name_the_missed_target_and_the_review(tmp_path: Path) -> None:
    """A harmful image sent to review is no miss (miss rate 0) and no rejection (precision unmeasured):
    no target missed; the JSON lists the decision per image."""
    figures = (await _run(tmp_path)).figures()
    detail = figures["images_detail"]
    assert isinstance(detail, list)
    assert ([], "needs_review", 1) == (
        figures["missed_targets"],
        detail[0]["decided"],
        figures["analyzer_calls"],
    )
