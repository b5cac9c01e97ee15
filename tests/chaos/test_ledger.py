"""The chaos ledger's judgement: lost, duplicated, contradictory and misrouted ids, exit codes, targets."""

from __future__ import annotations

from tests.chaos.ledger import Exit, ExitCause, ExitRow, Tally, exit_meaning, exit_rows, tally, targets

EXPECTED = {"a": "approved", "b": "rejected", "c": "needs-review", "d": "dead-letter"}


def _exit(code: int, cause: ExitCause) -> Exit:
    return Exit(replica=0, incarnation=1, code=code, cause=cause, at_s=1.0, log="replica-0-01.log")


def test_an_id_in_no_output_topic_is_lost() -> None:
    """An input id that no output topic holds is lost; the others are not."""
    seen = {"a": ["approved"], "b": ["rejected"], "d": ["dead-letter"]}

    ledger = tally(EXPECTED, list(EXPECTED), seen)

    assert ("c",) == ledger.lost
    assert ((), (), ()) == (ledger.duplicated, ledger.contradictory, ledger.misrouted)


def test_an_id_twice_in_one_route_is_duplicated_not_contradictory() -> None:
    """Three records of one id in its route: one duplicated id, two extra records, no contradiction."""
    seen = {"a": ["approved"] * 3, "b": ["rejected"], "c": ["needs-review"], "d": ["dead-letter"]}

    ledger = tally(EXPECTED, list(EXPECTED), seen)

    assert (("a",), 2, ()) == (ledger.duplicated, ledger.duplicate_records, ledger.contradictory)
    assert 0.25 == ledger.duplicate_rate


def test_an_id_in_two_routes_is_contradictory() -> None:
    """An id approved once and rejected once is contradictory, and not also counted as misrouted."""
    seen = {"a": ["approved", "rejected"], "b": ["rejected"], "c": ["needs-review"], "d": ["dead-letter"]}

    ledger = tally(EXPECTED, list(EXPECTED), seen)

    assert (("a",), ()) == (ledger.contradictory, ledger.misrouted)


def test_an_id_routed_once_but_to_the_wrong_route_is_misrouted() -> None:
    """A malformed submission that came out approved is misrouted."""
    seen = {"a": ["approved"], "b": ["rejected"], "c": ["needs-review"], "d": ["approved"]}

    ledger = tally(EXPECTED, list(EXPECTED), seen)

    assert ("d",) == ledger.misrouted
    assert {"approved": 2, "needs-review": 1, "rejected": 1} == ledger.routed


def test_ids_nobody_submitted_and_ids_submitted_twice_are_reported() -> None:
    """Output keys absent from the input are unknown; input keys present twice are input duplicates."""
    seen = {
        "a": ["approved"],
        "b": ["rejected"],
        "c": ["needs-review"],
        "d": ["dead-letter"],
        "z": ["approved"],
    }

    ledger = tally(EXPECTED, [*EXPECTED, "b"], seen)

    assert (("z",), ("b",), 4) == (ledger.unknown, ledger.input_duplicates, ledger.input_ids)


def test_only_documented_codes_and_our_own_sigkills_are_not_findings() -> None:
    """0, 2 and 3 are documented, -9 after our SIGKILL is ours; exit 1, a foreign signal and a SIGTERM that
    had to be followed by SIGKILL are findings."""
    cases = [
        (0, ExitCause.SIGTERM),
        (2, ExitCause.UNPROVOKED),
        (3, ExitCause.UNPROVOKED),
        (-9, ExitCause.SIGKILL),
        (1, ExitCause.UNPROVOKED),
        (-11, ExitCause.UNPROVOKED),
        (-9, ExitCause.SIGTERM_TIMEOUT),
    ]

    findings = [exit_meaning(code, cause)[1] for code, cause in cases]

    assert [False, False, False, False, True, True, True] == findings


def test_exit_rows_count_each_code_and_cause_most_frequent_first() -> None:
    """Exits are grouped by (code, cause), the most frequent group first."""
    exits = [_exit(0, ExitCause.SIGTERM)] * 3 + [_exit(1, ExitCause.UNPROVOKED)]

    rows = exit_rows(exits)

    assert [
        ExitRow(0, ExitCause.SIGTERM, 3, "clean stop", finding=False),
        ExitRow(1, ExitCause.UNPROVOKED, 1, "undocumented exit code", finding=True),
    ] == rows


def _clean_ledger() -> Tally:
    seen = {image_id: [route] for image_id, route in EXPECTED.items()}
    return tally(EXPECTED, list(EXPECTED), seen)


def test_duplicates_are_a_target_only_where_the_scenario_says_so() -> None:
    """The SIGTERM-only scenario has a duplicates target; the chaos scenario reports them without one."""
    rows: list[ExitRow] = []

    sigterm_only = targets(_clean_ledger(), rows, expected_ids=4, duplicates_must_be_zero=True, drained=True)
    chaos = targets(_clean_ledger(), rows, expected_ids=4, duplicates_must_be_zero=False, drained=True)

    assert "duplicated" in [target.name for target in sigterm_only]
    assert "duplicated" not in [target.name for target in chaos]
    assert all(target.met for target in sigterm_only + chaos)


def test_an_undocumented_exit_or_an_undrained_group_misses_its_target() -> None:
    """One exit 1 and a group that never drained: exactly those two targets are missed."""
    rows = exit_rows([_exit(1, ExitCause.UNPROVOKED), _exit(0, ExitCause.SIGTERM)])

    found = targets(_clean_ledger(), rows, expected_ids=4, duplicates_must_be_zero=True, drained=False)

    assert ["undocumented exits", "group lag 0 (committed)"] == [t.name for t in found if not t.met]
