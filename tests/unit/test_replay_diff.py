"""Specification of replay's pure parts: re-deciding a kept analysis, the (old, new) diff with examples, the
time window, and the command line's arguments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from worker.cli import main
from worker.domain import Analysis, Decision, Reason, Tag
from worker.errors import ConfigurationError
from worker.evaluation.analysis_record import KeptAnalysis
from worker.evaluation.decision_diff import DecisionDiff, Redecided
from worker.evaluation.replay import ReplayWindow, parse_moment, redecide
from worker.policy import BlockRule, Policy, PolicyMode, Rule
from worker.records import SourceCoordinates

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "worker" / "policies" / "default.json"
A, R, X = Decision.APPROVED, Decision.NEEDS_REVIEW, Decision.REJECTED
STRICT = Policy(mode=PolicyMode.BLOCKLIST, blocklist={"knife": BlockRule(review_at=0.5, reject_at=0.75)})


def kept(image_id: str, decision: Decision, *tags: tuple[str, float], hold: bool = False) -> KeptAnalysis:
    analysis = Analysis("2023-10-01", tuple(Tag(name, confidence) for name, confidence in tags))
    return KeptAnalysis(
        image_id, analysis, decision, "sha256:00000000000000aa", hold, NOW, SourceCoordinates("in", 0, 1)
    )


def test_a_kept_analysis_is_decided_again_under_the_new_policy_and_its_own_hold() -> None:
    """The new decision is ``decide(new policy, the kept analysis, hold=the kept hold)``."""
    held = redecide(kept("a", R, ("outdoor", 0.9), hold=True), STRICT)
    knife = redecide(kept("b", R, ("knife", 0.8), ("kitchen", 0.9)), STRICT)

    assert (R, R) == held.pair
    assert ((R, X), (Reason("blocklist_reject", "knife", 0.8),)) == (knife.pair, knife.reasons)


def test_the_diff_counts_every_pair_and_keeps_examples_of_changes_only() -> None:
    """All nine cells are present; examples exist only off the diagonal, at most N, first seen first."""
    diff = DecisionDiff()
    for index, (old, new) in enumerate([(A, A), (A, R), (A, R), (A, R), (R, X), (X, X)]):
        diff.add(Redecided(f"img-{index}", old, new))

    report = diff.report("sha256:new", examples=2)

    expected_counts = dict.fromkeys(((old, new) for old in Decision for new in Decision), 0) | {
        (A, A): 1,
        (A, R): 3,
        (R, X): 1,
        (X, X): 1,
    }
    assert expected_counts == dict(report.counts)
    assert {(A, R): ["img-1", "img-2"], (R, X): ["img-4"]} == {
        pair: [item.id for item in items] for pair, items in report.examples.items()
    }
    assert (6, 4) == (report.images, report.changed)


def test_examples_are_the_earliest_by_order_whatever_order_they_were_told_in() -> None:
    """Two reads of one topic interleave its partitions differently; the examples must not change with it."""
    told = [Redecided(f"img-{key}", A, R, order=(key, 0, key)) for key in (5, 1, 4, 2, 3)]
    shown = []
    for sequence in (told, list(reversed(told))):
        diff = DecisionDiff()
        for item in sequence:
            diff.add(item)
        shown.append([item.id for item in diff.report("sha256:new", examples=2).examples[(A, R)]])

    assert [["img-1", "img-2"], ["img-1", "img-2"]] == shown


def test_example_reasons_are_plain_strings_in_the_json_document() -> None:
    diff = DecisionDiff()
    diff.add(Redecided("img-1", A, X, reasons=(Reason(Rule.BLOCKLIST_REJECT, "knife", 0.8),)))

    # Through orjson, as the command line prints it, and back: the document itself must hold plain strings.
    document = diff.report("sha256:new", examples=1).to_json()
    rules = [
        type(reason["rule"]).__name__ + ":" + str(reason["rule"])
        for pair in document["pairs"]  # type: ignore[attr-defined]
        for example in pair["examples"]
        for reason in example["reasons"]
    ]

    assert ["str:blocklist_reject"] == rules


def test_a_redelivered_image_counts_once_with_its_latest_analysis() -> None:
    """At-least-once delivery can analyze one submission twice: the last re-decision for an id wins."""
    diff = DecisionDiff()
    diff.add(Redecided("img-1", A, R))
    diff.add(Redecided("img-1", A, A))

    report = diff.report("sha256:new", examples=5)

    assert (1, 0, {}) == (report.images, report.changed, dict(report.examples))


def test_example_urls_are_redacted_on_the_way_out() -> None:
    """Whatever the topic held, a query string never reaches the report."""
    diff = DecisionDiff()
    diff.add(Redecided("img-1", A, X, url="https://images.example.com/a.jpg?sig=SECRET"))

    text = diff.report("sha256:new", examples=1).to_text()
    document = diff.report("sha256:new", examples=1).to_json()

    assert "SECRET" not in text + orjson.dumps(document).decode()
    assert "https://images.example.com/a.jpg?<redacted>" in text


def test_the_json_report_lists_the_nine_pairs_with_counts_and_examples() -> None:
    """``--json``: one entry per (old, new) pair, old-major in decision order."""
    diff = DecisionDiff()
    diff.add(Redecided("img-1", A, X, reasons=(Reason("blocklist_reject", "knife", 0.8),)))

    document = diff.report("sha256:new", examples=3, skipped=2).to_json()

    pairs = document["pairs"]
    assert isinstance(pairs, list)
    assert [(str(old), str(new)) for old in Decision for new in Decision] == [
        (pair["old"], pair["new"]) for pair in pairs
    ]
    [changed] = [pair for pair in pairs if pair["count"]]
    assert {
        "old": "approved",
        "new": "rejected",
        "count": 1,
        "examples": [
            {
                "id": "img-1",
                "url": None,
                "old_policy_version": "",
                "reasons": [{"rule": "blocklist_reject", "tag": "knife", "confidence": 0.8}],
            }
        ],
    } == changed
    assert (1, 1, 2) == (document["images"], document["changed"], document["skipped"])


def test_the_text_report_shows_the_matrix_rows_old_columns_new() -> None:
    """The operator reads the matrix first: one row per old decision, counts under the new ones."""
    diff = DecisionDiff()
    diff.add(Redecided("img-1", A, R))
    diff.add(Redecided("img-2", A, A))

    lines = diff.report("sha256:new", examples=0).to_text().splitlines()

    assert "replay under policy sha256:new: 2 images, 1 would change" == lines[0]
    assert ["approved", "1", "1", "0"] == lines[3].split()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T08:30:00Z", datetime(2026, 11, 25, 8, 30, tzinfo=UTC)),
        ("2026-11-25T09:30:00+01:00", datetime(2026, 11, 25, 8, 30, tzinfo=UTC)),
        ("2026-11-25T08:30", datetime(2026, 11, 25, 8, 30, tzinfo=UTC)),
        ("90m", NOW - timedelta(minutes=90)),
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
    ],
)
def test_a_moment_is_an_iso_time_utc_when_unzoned_or_an_age(text: str, expected: datetime) -> None:
    """``--since``/``--until`` accept RFC 3339, ISO 8601 without offset (UTC) and ages."""
    assert expected == parse_moment(text, NOW)


def test_the_window_includes_both_ends_and_refuses_to_be_inverted() -> None:
    """[since, until] inclusive on Kafka timestamps; since after until is a configuration error."""
    window = ReplayWindow(NOW, NOW + timedelta(seconds=1))
    at = int(NOW.timestamp() * 1000)

    assert [False, True, True, False] == [window.contains(ms) for ms in (at - 1, at, at + 1000, at + 1001)]
    with pytest.raises(ConfigurationError, match="is after --until"):
        ReplayWindow(NOW, NOW - timedelta(seconds=1))


def test_replay_without_an_analyses_topic_exits_2_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No topic to read is a configuration error, reported before Kafka is contacted."""
    monkeypatch.delenv("MODERATION_ANALYSES_TOPIC", raising=False)
    monkeypatch.setenv("MODERATION_BOOTSTRAP_SERVERS", "127.0.0.1:1")

    code = main(["replay", "--policy", str(DEFAULT_POLICY)])

    expected = "moderation-worker: configuration error: MODERATION_ANALYSES_TOPIC is not set"
    assert (2, True) == (code, capsys.readouterr().err.startswith(expected))


def test_replay_with_a_time_that_is_neither_form_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad ``--since`` exits 2 and says which forms are accepted."""
    code = main(["replay", "--policy", str(DEFAULT_POLICY), "--since", "yesterday"])

    assert 2 == code
    assert "nor an age (90m, 24h, 7d)" in capsys.readouterr().err
