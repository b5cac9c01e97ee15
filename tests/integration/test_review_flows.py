"""The console's other paths against the real broker and a real https server: escalation to the leads, audit
items, the image fetcher's refusals, and bearer-token API clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.fixtures.browser import IMAGE_HOST, ConsoleFactory, ImageHost, ReviewTopics, token_of
from tests.fixtures.emulator import png_image
from tests.integration.test_review_console import DEADLINE_S, queued, submit_for_review
from tests.kafka_helpers import produce_all, read_all
from tests.review_samples import result_value
from worker.dev.tlsfiles import local_guarded_fetcher, make_self_signed
from worker.domain import Decision, Reason
from worker.records import SourceCoordinates
from worker.review.images import FetchRefused, GuardedImageFetcher, RefusalReason
from worker.review.queue import Role
from worker.review.web import ref_of

pytestmark = pytest.mark.integration


async def api(
    client: aiohttp.ClientSession, method: str, url: str, reviewer: str, **form: str
) -> tuple[int, dict[str, object], str]:
    """One bearer-token request (no cookie, no CSRF token needed): status, JSON body (if any), final URL
    without its query."""
    headers = {"Authorization": f"Bearer {token_of(reviewer)}", "Accept": "application/json"}
    async with client.request(method, url, headers=headers, data=form or None) as response:
        body = await response.json() if response.content_type == "application/json" else {}
        return response.status, body, str(response.url.with_query(None))


async def test_an_escalated_item_reaches_the_leads_only_and_their_verdict_is_final(
    kafka_bootstrap: str,
    review_topics: ReviewTopics,
    image_host: tuple[ImageHost, GuardedImageFetcher],
    review_console: ConsoleFactory,
) -> None:
    """A reviewer escalates; reviewers never see the escalation; a lead rejects it: one final result."""
    await submit_for_review(kafka_bootstrap, review_topics, image_host[0], "img-hard")
    async with review_console() as console, aiohttp.ClientSession() as client:
        await queued(console, 1)
        _, _, item_url = await api(client, "GET", console.url + "/next", "alice")
        lease = console.queue.held_by("alice")
        assert lease is not None
        status, body, _ = await api(
            client,
            "POST",
            item_url + "/verdict",
            "alice",
            verdict="escalate",
            lease=lease.lease_id,
            note="unsure",
        )
        assert (200, review_topics.escalated) == (status, body["published_to"])

        await queued(console, 1)  # the escalation comes back through the escalation topic
        assert [] == console.queue.pending(Role.REVIEWER)
        (escalated,) = console.queue.pending(Role.LEAD)
        assert escalated.escalation is not None
        assert ("alice", "unsure") == (escalated.escalation.reviewer, escalated.escalation.note)
        status, _, _ = await api(client, "GET", f"{console.url}/items/{ref_of(escalated.key)}", "bob")
        assert 409 == status
        await api(client, "GET", f"{console.url}/items/{ref_of(escalated.key)}", "lena")
        lead_lease = console.queue.held_by("lena")
        assert lead_lease is not None
        status, body, _ = await api(
            client,
            "POST",
            f"{console.url}/items/{ref_of(escalated.key)}/verdict",
            "lena",
            verdict="reject",
            reason="violence",
            lease=lead_lease.lease_id,
        )
        assert (200, review_topics.rejected) == (status, body["published_to"])

    decisions = await read_all(kafka_bootstrap, review_topics.decisions, expected=2, idle_s=DEADLINE_S)
    rejected = await read_all(kafka_bootstrap, review_topics.rejected, expected=None, idle_s=2.0)
    assert [("escalated", "reject", "lena"), ("needs_review", "escalate", "alice")] == sorted(
        (d["queue"], d["verdict"], d["reviewer"]) for d in (orjson.loads(r.value) for r in decisions)
    )
    assert [("img-hard", "escalated", "lena")] == [
        (f["id"], f["review"]["queue"], f["review"]["reviewer"])
        for f in (orjson.loads(r.value) for r in rejected)
    ]


async def test_an_audit_verdict_records_a_decision_and_publishes_no_result(
    kafka_bootstrap: str,
    review_topics: ReviewTopics,
    image_host: tuple[ImageHost, GuardedImageFetcher],
    review_console: ConsoleFactory,
) -> None:
    """An automatic approval sampled for audit: the reviewer disagrees; only the decision record appears."""
    url = image_host[0].add_png("img-audit.png")
    (ack,) = await produce_all(
        kafka_bootstrap,
        review_topics.submitted,
        [(b"img-audit", orjson.dumps({"id": "img-audit", "image": {"url": url}}))],
    )
    audit = result_value(
        "img-audit",
        decision=Decision.APPROVED,
        reasons=(Reason("allowlist_match", tag="dog", confidence=0.97),),
        source=SourceCoordinates(review_topics.submitted, ack.partition, ack.offset),
        audit={"probability": 0.25, "published_decision": "approved"},
    )
    await produce_all(kafka_bootstrap, review_topics.audit, [(b"img-audit", audit)])
    async with review_console() as console, aiohttp.ClientSession() as client:
        await queued(console, 1)
        _, _, item_url = await api(client, "GET", console.url + "/next?queue=audit", "alice")
        lease = console.queue.held_by("alice")
        assert lease is not None
        async with client.get(
            item_url + "/image", headers={"Authorization": f"Bearer {token_of('alice')}"}
        ) as image:
            assert (200, "image/png") == (image.status, image.content_type)
        status, body, _ = await api(
            client, "POST", item_url + "/verdict", "alice", verdict="reject", lease=lease.lease_id
        )
        assert (200, None) == (status, body["published_to"])

    (decision,) = await read_all(kafka_bootstrap, review_topics.decisions, expected=1, idle_s=DEADLINE_S)
    machine = orjson.loads(decision.value)["machine"]
    assert (0.25, "approved") == (machine["audit_probability"], machine["published_decision"])
    finals = [
        *await read_all(kafka_bootstrap, review_topics.approved, expected=None, idle_s=2.0),
        *await read_all(kafka_bootstrap, review_topics.rejected, expected=None, idle_s=0.5),
    ]
    assert [] == finals


@pytest.fixture
async def tricky_host(tmp_path: Path) -> AsyncIterator[tuple[str, GuardedImageFetcher]]:
    """An https server under ``IMAGE_HOST``: a redirect, a 404, HTML labelled image/png, a big PNG; and the
    console's fetcher reaching it (2048 bytes at most)."""
    certificate = await make_self_signed(IMAGE_HOST, tmp_path / "tls")

    async def redirect(_request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "https://169.254.169.254/"})

    async def html(_request: web.Request) -> web.Response:
        return web.Response(body=b"<html><script>alert(1)</script></html>", content_type="image/png")

    async def large(_request: web.Request) -> web.Response:
        return web.Response(body=png_image(64, 64) + b"\x00" * 4096, content_type="image/png")

    app = web.Application()
    app.router.add_get("/redirect.png", redirect)
    app.router.add_get("/html.png", html)
    app.router.add_get("/large.png", large)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=certificate.server_context())
    await site.start()
    port = runner.addresses[0][1]
    web_fetcher = local_guarded_fetcher(certificate, "127.0.0.1", max_bytes=2048, timeout_s=5.0)
    fetcher = GuardedImageFetcher(web_fetcher)
    try:
        yield f"https://{IMAGE_HOST}:{port}", fetcher
    finally:
        await fetcher.aclose()
        await runner.cleanup()


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/redirect.png", RefusalReason.HTTP_STATUS),
        ("/missing.png", RefusalReason.HTTP_STATUS),
        ("/html.png", RefusalReason.NOT_AN_IMAGE),
        ("/large.png", RefusalReason.TOO_LARGE),
    ],
)
async def test_the_fetcher_follows_no_redirect_and_refuses_errors_lies_and_oversized_images(
    tricky_host: tuple[str, GuardedImageFetcher], path: str, reason: RefusalReason
) -> None:
    """What a hostile or broken image host answers never reaches the reviewer's browser."""
    base, fetcher = tricky_host

    with pytest.raises(FetchRefused) as caught:
        await fetcher.fetch(f"{base}{path}?sig=SECRET")

    assert reason == caught.value.reason
    assert "SECRET" not in str(caught.value)
