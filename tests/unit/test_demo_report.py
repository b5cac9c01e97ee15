"""What the demo shows: outcomes read from output records, progress line, summary table, console."""

from __future__ import annotations

import io

import orjson

from worker.dev.demo.report import (
    Console,
    Outcome,
    RecordingTagSource,
    outcome_from_record,
    progress_line,
    route_counts,
    summary_table,
    top_tags,
)

RESULT = {
    "schema": "moderation-result.v1",
    "id": "demo-a",
    "decision": "rejected",
    "reasons": [
        {"rule": "blocklist_reject", "tag": "adult", "confidence": 0.9612},
        {"rule": "image_error", "detail": "InvalidImageFormat"},
    ],
}


class FakeClock:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


class FixedTags:
    """A tag source that answers the same tags for any image."""

    async def tags_for(self, image: bytes) -> list[tuple[str, float]]:  # noqa: ARG002 - protocol signature
        return [("adult", 0.9), ("sfw", 0.1)]


def test_a_result_record_becomes_its_route_and_rendered_reasons() -> None:
    """Reasons read as ``rule tag confidence`` (2 decimals) or ``rule (detail)``, in the record's order."""
    expected = Outcome(
        "demo-a", "rejected", ("blocklist_reject adult 0.96", "image_error (InvalidImageFormat)")
    )
    assert expected == outcome_from_record("rejected", b"demo-a", orjson.dumps(RESULT))


def test_a_dead_letter_record_gives_its_error_class_and_message() -> None:
    """Dead letters are keyed by the original key and explain themselves with the typed error."""
    value = orjson.dumps({"error": {"class": "unsafe_url", "message": "targets localhost"}})
    expected = Outcome("demo-x", "dead_letter", ("unsafe_url: targets localhost",))
    assert expected == outcome_from_record("dead_letter", b"demo-x", value)


def test_an_unreadable_record_still_counts_for_its_route() -> None:
    """A value that is not a JSON object is not lost from the tally."""
    assert [Outcome("k", "approved", ("unreadable record",))] * 2 == [
        outcome_from_record("approved", b"k", b"{not json"),
        outcome_from_record("approved", b"k", b"[1]"),
    ]


def test_route_counts_name_every_route_even_when_empty() -> None:
    """The progress line always shows all four routes."""
    outcomes = [Outcome("a", "approved", ()), Outcome("b", "approved", ()), Outcome("c", "rejected", ())]
    expected = {"approved": 2, "needs_review": 0, "rejected": 1, "dead_letter": 0}
    assert expected == dict(route_counts(outcomes))


def test_progress_line_shows_routed_of_total_per_route_and_rate() -> None:
    """Six routed in two seconds is 3.0 per second."""
    counts = {"approved": 3, "needs_review": 2, "rejected": 1, "dead_letter": 0}
    expected = "routed 6/12  approved 3  needs_review 2  rejected 1  dead_letter 0  3.0/s  2.0 s"
    assert expected == progress_line(counts, 12, 2.0)


def test_progress_line_at_time_zero_has_rate_zero() -> None:
    """No division by zero before the clock moved."""
    assert progress_line({}, 3, 0.0).endswith("0.0/s  0.0 s")


def test_top_tags_are_the_most_confident_first_ties_by_name() -> None:
    """Three tags at most; equal confidences list alphabetically; no tags shows a dash."""
    tags = [("b", 0.5), ("a", 0.5), ("c", 0.9), ("d", 0.1)]
    assert ["c 0.90, a 0.50, b 0.50", "-"] == [top_tags(tags), top_tags([])]


def test_summary_table_has_one_aligned_row_per_expected_id_in_order() -> None:
    """Ids without an outcome say so; columns line up; reasons are joined with semicolons."""
    outcomes = {
        "demo-long-name": Outcome("demo-long-name", "needs_review", ("blocklist_review dark 0.96", "x")),
        "demo-b": Outcome("demo-b", "approved", ()),
    }
    table = summary_table(["demo-b", "demo-long-name", "demo-c"], outcomes, {"demo-b": [("sfw", 0.99)]})
    expected = [
        "id              decision      top tags (analyzer)  reasons",
        "--------------  ------------  -------------------  -------",
        "demo-b          approved      sfw 0.99             -",
        "demo-long-name  needs_review  -                    blocklist_review dark 0.96; x",
        "demo-c          (not routed)  -                    -",
    ]
    assert expected == table.splitlines()


def test_console_rewrites_one_progress_line_on_a_terminal() -> None:
    """On a TTY, progress goes after a carriage return and erase-line; a later line starts on a new line."""
    stream, clock = io.StringIO(), FakeClock()
    console = Console(stream, is_tty=True, clock=clock)
    console.progress("one")
    clock.now_s += 0.5
    console.progress("two")
    console.line("done")
    assert "\r\x1b[2Kone\r\x1b[2Ktwo\ndone\n" == stream.getvalue()


def test_console_cuts_the_progress_line_to_the_terminal_width() -> None:
    """A line as wide as the terminal would wrap, and a wrapped line cannot be rewritten in place."""
    stream = io.StringIO()
    Console(stream, is_tty=True, columns=24, clock=FakeClock()).progress(
        "routed 6/12  approved 3  needs_review 2"
    )
    assert "\r\x1b[2Krouted 6/12  approved 3" == stream.getvalue()


def test_console_prints_plain_periodic_lines_when_not_a_terminal() -> None:
    """Without a TTY: no control characters, at most one progress line per interval unless forced."""
    stream, clock = io.StringIO(), FakeClock()
    console = Console(stream, is_tty=False, clock=clock)
    console.progress("one")
    clock.now_s += 0.5
    console.progress("skipped")
    clock.now_s += 2.0
    console.progress("three")
    console.progress("forced", force=True)
    console.end_progress()
    assert "one\nthree\nforced\n" == stream.getvalue()


async def test_recording_tag_source_remembers_tags_by_image_sha256() -> None:
    """The summary finds the model's tags for an image through the sha256 of its bytes."""
    source = RecordingTagSource(FixedTags())
    tags = await source.tags_for(b"image")
    digest = "6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d"
    assert {digest: tags} == source.tags_by_sha256
