"""Reject and ban in a real browser on a real broker: a lead rejects an image with ``b``, the decision names
the bank and the hashes of the bytes the lead saw, and a replica following the bank topic then rejects the
image (and a near copy by PDQ) without anyone reviewing it again. Reviewers are not offered the ban when
only leads may ban.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass

import orjson
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.fixtures.browser import ConsoleFactory, ImageHost, ReviewTopics
from tests.integration.test_review_console import (
    DEADLINE_S,
    press_verdict,
    queued,
    signed_in,
    submit_for_review,
)
from tests.kafka_helpers import read_all
from worker.content.bank_source import BankUpdates, follow_compacted_topic
from worker.content.banks import Bank, BankAction, HashBanks, HashKind
from worker.content.hashes import content_hashes
from worker.dev.demo.samples import skimage_data_dir
from worker.kafka.security import ConnectionOptions
from worker.kafka_settings import SecurityProtocol
from worker.records import ContentHashes
from worker.review.console import ReviewConsole
from worker.review.images import GuardedImageFetcher

pytestmark = pytest.mark.integration

BAN = {"ban_bank": "reviewer-bans", "ban_pdq_threshold": 40}


@dataclass(frozen=True, slots=True)
class Stage:
    """One test's broker, topics, image host and console factory."""

    bootstrap: str
    topics: ReviewTopics
    host: ImageHost
    console: ConsoleFactory

    async def submit(self, image_id: str) -> None:
        await submit_for_review(self.bootstrap, self.topics, self.host, image_id)


@pytest.fixture
def stage(
    kafka_bootstrap: str,
    review_topics: ReviewTopics,
    image_host: tuple[ImageHost, GuardedImageFetcher],
    review_console: ConsoleFactory,
) -> Stage:
    return Stage(kafka_bootstrap, review_topics, image_host[0], review_console)


async def first_item(browser: Browser, console: ReviewConsole, reviewer: str) -> tuple[BrowserContext, Page]:
    """``reviewer`` signed in and looking at the one queued item."""
    await queued(console, 1)
    context, page = await signed_in(browser, console, reviewer)
    await page.keyboard.press("n")
    await page.wait_for_url("**/items/*")
    return context, page


async def test_a_lead_bans_an_image_and_a_replica_following_the_bank_rejects_its_reposts(
    chromium: Browser, stage: Stage
) -> None:
    kafka_bootstrap, review_topics, host = stage.bootstrap, stage.topics, stage.host
    await stage.submit("img-banned")
    shown = (skimage_data_dir() / "coffee.png").read_bytes()  # a photo, so its PDQ hash is banked too
    (host.directory / "img-banned.png").write_bytes(shown)
    async with stage.console(review=BAN) as console:
        context, page = await first_item(chromium, console, "lena")
        await expect(page.locator("#image")).to_have_js_property("naturalWidth", 600)
        assert "reviewer-bans" in (await page.locator("button.ban").get_attribute("title") or "")
        await press_verdict(page, "b")
        await page.wait_for_selector("text=Nothing to review")
        await context.close()

    decisions = await read_all(kafka_bootstrap, review_topics.decisions, expected=1, idle_s=DEADLINE_S)
    rejected = await read_all(kafka_bootstrap, review_topics.rejected, expected=1, idle_s=DEADLINE_S)
    decision = orjson.loads(decisions[0].value)
    hashes = content_hashes(shown)
    assert ("reject", "lena", review_topics.rejected) == (
        decision["verdict"],
        decision["reviewer"],
        decision["published_to"],
    )
    assert {
        "bank": "reviewer-bans",
        "sha256": hashlib.sha256(shown).hexdigest(),
        "pdq": hashes.pdq,
        "pdq_quality": hashes.pdq_quality,
    } == decision["ban"]
    assert "rejected" == orjson.loads(rejected[0].value)["decision"]

    banks = HashBanks()
    caught_up = asyncio.Event()
    follower = asyncio.create_task(
        follow_compacted_topic(
            kafka_bootstrap,
            review_topics.hash_banks,
            BankUpdates(banks),
            options=ConnectionOptions(SecurityProtocol.PLAINTEXT),
            on_caught_up=caught_up.set,
        )
    )
    try:
        async with asyncio.timeout(DEADLINE_S):
            await caught_up.wait()
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    assert (Bank("reviewer-bans", BankAction.REJECT, 40),) == banks.banks
    exact, near_copy = banks.match(hashes), banks.match(ContentHashes("0" * 64, hashes.pdq, 100))
    assert exact is not None
    assert near_copy is not None
    assert ("reviewer-bans", HashKind.SHA256, "rejected") == (
        exact.bank.name,
        exact.kind,
        exact.verdict().decision,
    )
    assert (HashKind.PDQ, 0) == (near_copy.kind, near_copy.distance)
    assert hashes.pdq_quality is not None
    assert hashes.pdq_quality >= 50


async def test_a_reviewer_is_not_offered_the_ban_when_only_leads_may_ban(
    chromium: Browser, stage: Stage
) -> None:
    """No button, ``b`` does nothing, and a hand-made ban request is refused without publishing."""
    await stage.submit("img-kept")
    async with stage.console(review=BAN) as console:
        context, page = await first_item(chromium, console, "alice")
        item_url = page.url
        assert 0 == await page.locator("button.ban").count()
        await page.keyboard.press("b")
        answer = await page.evaluate(
            """async () => {
                const review = document.getElementById("review");
                const csrf = document.querySelector("input[name=csrf]").value;
                const lease = review.dataset.lease;
                const body = new URLSearchParams({ verdict: "reject", ban: "1", lease });
                const response = await fetch("/items/" + review.dataset.ref + "/verdict", { method: "POST",
                    body, headers: { "X-CSRF-Token": csrf, "Accept": "application/json" } });
                return [response.status, (await response.json()).message];
            }"""
        )
        assert item_url == page.url
        assert [422, "only leads can ban images on this console"] == answer
        assert 1 == sum(n for n, _ in console.queue.counts().values())
        await context.close()
    assert [] == await read_all(stage.bootstrap, stage.topics.hash_banks, expected=None, idle_s=1.0)
    assert [] == await read_all(stage.bootstrap, stage.topics.decisions, expected=None, idle_s=1.0)
