"""The review console end to end: a real broker, a real https image host and headless Chromium.

Each test publishes submissions and their needs-review results as the worker would, starts consoles over
them, and drives them as reviewers do. Screenshots go to ``$MODERATION_REVIEW_SCREENSHOTS`` when set (the
ones in docs/img were taken so), else to the test's temporary folder.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.fixtures.browser import ConsoleFactory, ImageHost, ReviewTopics, token_of
from tests.kafka_helpers import produce_all, read_all
from tests.pipeline_harness import wait_until
from tests.review_samples import SECRET_QUERY
from worker.contracts import Submission
from worker.domain import Decision, Reason, Tag, Verdict
from worker.records import SourceCoordinates, encode_result
from worker.review.console import ReviewConsole
from worker.review.images import GuardedImageFetcher
from worker.review.queue import Role
from worker.review.web import ref_of

pytestmark = pytest.mark.integration

SCREENSHOTS_ENV = "MODERATION_REVIEW_SCREENSHOTS"
DEADLINE_S = 30.0


def screenshot_path(tmp_path: Path, name: str) -> Path:
    folder = os.environ.get(SCREENSHOTS_ENV)
    return Path(folder) / name if folder else tmp_path / name


async def submit_for_review(
    bootstrap: str, topics: ReviewTopics, host: ImageHost, image_id: str, *, partition: int = 0
) -> None:
    """Publish ``image_id``'s submission (a SAS-style query on its URL) and the worker's needs-review
    result for it."""
    url = host.add_png(f"{image_id}.png", 320, 200) + "?" + SECRET_QUERY
    submission = orjson.dumps({"id": image_id, "image": {"url": url}})
    (ack,) = await produce_all(
        bootstrap, topics.submitted, [(image_id.encode(), submission)], partition=partition
    )
    result = encode_result(
        submission=Submission(id=image_id, image_url=url),
        verdict=Verdict(Decision.NEEDS_REVIEW, (Reason("blocklist_review", tag="weapon", confidence=0.64),)),
        policy_version="sha256:0123456789abcdef",
        model_version="2023-10-01",
        analyzed_at=datetime.now(UTC),
        source=SourceCoordinates(topics.submitted, ack.partition, ack.offset),
        worker_version="test",
        tags=(Tag("weapon", 0.64), Tag("outdoor", 0.91)),
    )
    await produce_all(bootstrap, topics.needs_review, [(image_id.encode(), result)], partition=partition)


async def queued(console: ReviewConsole, count: int) -> None:
    """Wait until the console's queue holds ``count`` items (the queue offers no notification)."""
    await wait_until(
        lambda: count == sum(n for n, _ in console.queue.counts().values()), timeout_s=DEADLINE_S
    )


async def signed_in(browser: Browser, console: ReviewConsole, reviewer: str) -> tuple[BrowserContext, Page]:
    """A fresh browser context signed in as ``reviewer`` through the sign-in page."""
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
    page = await context.new_page()
    await page.goto(console.url + "/")
    assert page.url.endswith("/signin")
    await page.fill("#token", token_of(reviewer))
    await page.click("button[type=submit]")
    await page.wait_for_url(console.url + "/")
    return context, page


async def press_verdict(page: Page, key: str) -> None:
    """Press a verdict key and wait until the next page (the next item, or the empty queue) has loaded."""
    previous = page.url
    await page.keyboard.press(key)
    await page.wait_for_url(lambda url: url != previous)


async def shown_image_id(page: Page) -> str:
    """The image id on an item page."""
    return await page.locator("dl dd").first.inner_text()


async def test_a_reviewer_sees_the_blurred_image_reveals_it_and_rejects_it_by_keyboard(
    chromium: Browser,
    kafka_bootstrap: str,
    review_topics: ReviewTopics,
    image_host: tuple[ImageHost, GuardedImageFetcher],
    review_console: ConsoleFactory,
    tmp_path: Path,
) -> None:
    """The SAS token never reaches the page; the decision and the final rejected result appear on Kafka."""
    await submit_for_review(kafka_bootstrap, review_topics, image_host[0], "img-knife")
    async with review_console() as console:
        await queued(console, 1)
        context, page = await signed_in(chromium, console, "alice")
        await page.screenshot(path=screenshot_path(tmp_path, "review-queue.png"))
        await page.keyboard.press("n")
        await page.wait_for_url("**/items/*")
        image = page.locator("#image")
        await expect(image).to_have_js_property("naturalWidth", 320)  # the PNG, served through the console
        html = await page.content()

        assert "img-knife" == await shown_image_id(page)
        assert SECRET_QUERY not in html
        assert "sig=" not in html
        assert "veiled" in (await image.get_attribute("class") or "")
        assert "blur" in await image.evaluate("element => getComputedStyle(element).filter")
        assert (await image.get_attribute("src") or "").startswith("/items/")
        await page.screenshot(path=screenshot_path(tmp_path, "review-item-blurred.png"))

        await page.keyboard.press(" ")
        assert "veiled" not in (await image.get_attribute("class") or "")
        await expect(image).to_have_css("filter", "none")  # retries through the short CSS transition
        await page.screenshot(path=screenshot_path(tmp_path, "review-item-revealed.png"))
        await page.keyboard.press("r")
        await page.wait_for_selector("text=Nothing to review")
        await page.screenshot(path=screenshot_path(tmp_path, "review-empty.png"))
        await context.close()

    decisions = await read_all(kafka_bootstrap, review_topics.decisions, expected=1, idle_s=DEADLINE_S)
    rejected = await read_all(kafka_bootstrap, review_topics.rejected, expected=1, idle_s=DEADLINE_S)
    decision, final = orjson.loads(decisions[0].value), orjson.loads(rejected[0].value)
    assert ("img-knife", "reject", "alice", "sexual") == (
        decision["id"],
        decision["verdict"],
        decision["reviewer"],
        decision["reason"],
    )
    assert (review_topics.rejected, "rejected") == (decision["published_to"], final["decision"])
    assert {"rule": "human_review", "detail": "sexual"} == final["reasons"][0]
    assert ("alice", decision["lease_id"]) == (final["review"]["reviewer"], final["review"]["lease_id"])
    assert SECRET_QUERY not in rejected[0].value.decode() + decisions[0].value.decode()


async def test_two_browser_contexts_never_receive_the_same_item(
    chromium: Browser,
    kafka_bootstrap: str,
    review_topics: ReviewTopics,
    image_host: tuple[ImageHost, GuardedImageFetcher],
    review_console: ConsoleFactory,
) -> None:
    """Two reviewers, two items: one each; a third reviewer finds nothing free."""
    for image_id in ("img-a", "img-b"):
        await submit_for_review(kafka_bootstrap, review_topics, image_host[0], image_id)
    async with review_console() as console:
        await queued(console, 2)
        pages = [await signed_in(chromium, console, name) for name in ("alice", "bob", "carol")]
        for _, page in pages:
            await page.goto(console.url + "/next")

        shown = {await shown_image_id(page) for _, page in pages[:2]}
        assert {"img-a", "img-b"} == shown
        assert "Nothing to review" in await pages[2][1].content()
        for context, _ in pages:
            await context.close()


class SteppedClock:
    """A monotonic clock the test moves forward: leases expire without waiting."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_an_expired_lease_returns_the_item_and_the_late_verdict_is_refused(
    chromium: Browser,
    kafka_bootstrap: str,
    review_topics: ReviewTopics,
    image_host: tuple[ImageHost, GuardedImageFetcher],
    review_console: ConsoleFactory,
) -> None:
    """Alice's claim lapses; Bob gets the item; Alice's reject is refused with a clear message."""
    await submit_for_review(kafka_bootstrap, review_topics, image_host[0], "img-late")
    clock = SteppedClock()
    async with review_console(lease_s=30.0, clock=clock) as console:
        await queued(console, 1)
        (alice_context, alice), (bob_context, bob) = [
            await signed_in(chromium, console, name) for name in ("alice", "bob")
        ]
        await alice.goto(console.url + "/next")
        assert "img-late" == await shown_image_id(alice)

        clock.now += 31.0
        await bob.goto(console.url + "/next")
        assert "img-late" == await shown_image_id(bob)
        await alice.keyboard.press("r")
        await alice.wait_for_selector("text=another reviewer holds this item")
        await bob.keyboard.press("a")
        await bob.wait_for_selector("text=Nothing to review")
        for context in (alice_context, bob_context):
            await context.close()

    decisions = await read_all(kafka_bootstrap, review_topics.decisions, expected=None, idle_s=2.0)
    assert [("bob", "approve")] == [
        (document["reviewer"], document["verdict"])
        for document in map(orjson.loads, (r.value for r in decisions))
    ]


async def test_a_console_restart_mid_queue_loses_no_item_and_offers_no_decided_one(
    chromium: Browser,
    kafka_bootstrap: str,
    review_topics: ReviewTopics,
    image_host: tuple[ImageHost, GuardedImageFetcher],
    review_console: ConsoleFactory,
) -> None:
    """Deciding the second of three items, restarting, and deciding the rest gives one verdict per item."""
    for image_id in ("img-1", "img-2", "img-3"):
        await submit_for_review(kafka_bootstrap, review_topics, image_host[0], image_id)
    async with review_console() as console:
        await queued(console, 3)
        context, page = await signed_in(chromium, console, "alice")
        await page.click("text=img-2")
        await page.wait_for_url("**/items/*")
        await press_verdict(page, "a")  # the next item loads itself: img-1 is now claimed
        assert "img-1" == await shown_image_id(page)
        await context.close()

    async with review_console() as restarted:
        await queued(restarted, 2)
        context, page = await signed_in(chromium, restarted, "bob")
        listed = await page.locator("tr.item td a").all_inner_texts()
        assert ["img-1", "img-3"] == listed
        await page.keyboard.press("n")
        await page.wait_for_url("**/items/*")
        await press_verdict(page, "r")
        assert "img-3" == await shown_image_id(page)
        await press_verdict(page, "r")
        assert "Nothing to review" in await page.content()
        await context.close()

    decisions = await read_all(kafka_bootstrap, review_topics.decisions, expected=3, idle_s=DEADLINE_S)
    finals = [
        *await read_all(kafka_bootstrap, review_topics.approved, expected=1, idle_s=DEADLINE_S),
        *await read_all(kafka_bootstrap, review_topics.rejected, expected=2, idle_s=DEADLINE_S),
    ]
    assert ["img-1", "img-2", "img-3"] == sorted(orjson.loads(record.value)["id"] for record in decisions)
    assert ["img-1", "img-2", "img-3"] == sorted(orjson.loads(record.value)["id"] for record in finals)


async def test_nothing_is_served_without_an_identity(
    kafka_bootstrap: str,
    review_topics: ReviewTopics,
    image_host: tuple[ImageHost, GuardedImageFetcher],
    review_console: ConsoleFactory,
) -> None:
    """Pages redirect to sign-in; the image, the API and every POST answer 401; a wrong token is refused."""
    await submit_for_review(kafka_bootstrap, review_topics, image_host[0], "img-x")
    async with review_console() as console:
        await queued(console, 1)
        (item,) = console.queue.pending(Role.LEAD)
        ref = ref_of(item.key)
        async with aiohttp.ClientSession() as client:
            page = await client.get(console.url + "/", allow_redirects=False)
            image = await client.get(
                f"{console.url}/items/{ref}/image", headers={"Accept": "application/json"}
            )
            verdict = await client.post(f"{console.url}/items/{ref}/verdict", data={"verdict": "approve"})
            wrong = await client.get(
                console.url + "/next",
                headers={"Authorization": "Bearer not-a-valid-token-000", "Accept": "application/json"},
            )
            proxied = await client.get(
                console.url + "/next", headers={"X-Forwarded-User": "lena", "Accept": "application/json"}
            )
            signin = await client.post(
                console.url + "/signin",
                data={"token": "wrong-token-0123456789"},
                headers={"Origin": console.url},
            )

        assert (303, "/signin") == (page.status, page.headers["Location"])
        assert [401, 401, 401, 401, 401] == [r.status for r in (image, verdict, wrong, proxied, signin)]
        assert [item] == console.queue.pending(Role.LEAD)


async def test_a_forged_cross_site_post_is_refused(
    chromium: Browser,
    kafka_bootstrap: str,
    review_topics: ReviewTopics,
    image_host: tuple[ImageHost, GuardedImageFetcher],
    review_console: ConsoleFactory,
) -> None:
    """A page of another origin on the same site auto-submits a verdict form: the browser sends the session
    cookie (SameSite allows it, same site), the console refuses it (Origin and CSRF), nothing is recorded."""
    await submit_for_review(kafka_bootstrap, review_topics, image_host[0], "img-csrf")
    async with review_console() as console:
        await queued(console, 1)
        context, page = await signed_in(chromium, console, "alice")
        await page.goto(console.url + "/next")
        ref = page.url.rsplit("/", 1)[1]
        lease = await page.locator("#review").get_attribute("data-lease")
        forged = (
            f'<form id="f" method="post" action="{console.url}/items/{ref}/verdict">'
            f'<input name="verdict" value="approve"><input name="lease" value="{lease}"></form>'
            "<script>document.getElementById('f').submit()</script>"
        )

        async def attack(_request: web.Request) -> web.Response:
            return web.Response(text=forged, content_type="text/html")

        attacker = web.Application()
        attacker.router.add_get("/", attack)
        runner = web.AppRunner(attacker)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            evil = await context.new_page()
            async with evil.expect_response(lambda response: response.url.endswith("/verdict")) as answer:
                await evil.goto(f"http://localhost:{port}/")
            response = await answer.value
        finally:
            await runner.cleanup()

        assert 403 == response.status
        assert "Origin" in await response.text()
        assert console.queue.held_by("alice") is not None  # the item is still Alice's, undecided
        await context.close()


async def test_the_page_renews_the_claim_while_the_reviewer_is_active(
    chromium: Browser,
    kafka_bootstrap: str,
    review_topics: ReviewTopics,
    image_host: tuple[ImageHost, GuardedImageFetcher],
    review_console: ConsoleFactory,
) -> None:
    """A third of the lease after some activity the page renews the claim; the console extends it from then.

    The browser's timers run on Playwright's clock and the console's leases on a stepped clock, so nothing
    waits for real time.
    """
    await submit_for_review(kafka_bootstrap, review_topics, image_host[0], "img-slow")
    clock = SteppedClock()
    async with review_console(lease_s=30.0, clock=clock) as console:
        await queued(console, 1)
        context, page = await signed_in(chromium, console, "alice")
        await page.clock.install()
        await page.goto(console.url + "/next")
        claimed = console.queue.held_by("alice")
        assert claimed is not None

        clock.now += 20.0
        await page.mouse.move(10, 10)  # activity
        async with page.expect_response(lambda response: response.url.endswith("/renew")) as renewal:
            await page.clock.run_for(10_000)
        response = await renewal.value
        renewed = console.queue.held_by("alice")

        assert 200 == response.status
        assert renewed is not None
        assert (claimed.lease_id, 1_020.0 + 30.0) == (renewed.lease_id, renewed.expires_at)
        await context.close()
