"""Specification of reject and ban: who may ban, which verdicts can carry it, the records it adds, and that
the worker's bank follower reads them as a reject of the image."""

from __future__ import annotations

import hashlib
import io

import orjson
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from tests.review_samples import review_item
from tests.unit.test_review_desk import Clock, FakeSettler
from worker.content.bank_source import BankUpdates
from worker.content.banks import Bank, BankAction, HashBanks, HashKind
from worker.content.hashes import content_hashes
from worker.dev.demo.samples import skimage_data_dir
from worker.domain import Decision
from worker.errors import ConfigurationError
from worker.records import SourceCoordinates
from worker.review.auth import Identity
from worker.review.ban import ImageBanner, ban_bank
from worker.review.desk import ReviewDesk
from worker.review.images import FetchedImage, FetchRefused, ItemImages, RefusalReason
from worker.review.items import ItemKind, ReviewItem
from worker.review.metrics import ReviewMetrics
from worker.review.pages import item_page
from worker.review.queue import Lease, ReviewQueue, Role
from worker.review.verdicts import ReasonLabels, ReviewTopics, VerdictKind, VerdictRefused, VerdictRequest

LENA = Identity("lena", Role.LEAD, "session", "n")
ALICE = Identity("alice", Role.REVIEWER, "session", "m")
TOPICS = ReviewTopics(
    "images.approved", "images.rejected", "images.review-decisions", "images.review-escalated"
)
BANK_TOPIC = "moderation.hash-banks"
PHOTO = (skimage_data_dir() / "coffee.png").read_bytes()
BAN = VerdictRequest(VerdictKind.REJECT, ban=True)


def flat_png() -> bytes:
    """A flat grey picture: decodable, but with a low PDQ quality."""
    buffer = io.BytesIO()
    Image.new("L", (256, 256), 128).save(buffer, format="PNG")
    return buffer.getvalue()


class RecordingProducer:
    """Acknowledges every record, remembering topic, key and value."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def send_and_wait(self, topic: str, value: bytes | None = None, **fields: object) -> object:
        key = fields.get("key")
        self.sent.append((topic, key if isinstance(key, bytes) else None, value))
        return None


class ServedImage:
    """What ``ItemImages`` serves: always ``data`` (or a refusal when ``refuse``)."""

    def __init__(self, data: bytes, *, refuse: bool = False) -> None:
        self.data, self.refuse = data, refuse

    async def image_url(self, source: SourceCoordinates) -> str:
        return f"https://images.example.com/{source.offset}.png?sig=SECRET"

    async def fetch(self, url: str) -> FetchedImage:  # noqa: ARG002 - every URL serves the same bytes
        if self.refuse:
            raise FetchRefused(RefusalReason.TIMEOUT, "the image host did not answer in time")
        return FetchedImage(self.data, "image/png")


def banner_of(data: bytes, *, refuse: bool = False) -> ImageBanner:
    served = ServedImage(data, refuse=refuse)
    return ImageBanner(ItemImages(served, served), ban_bank("reviewer-bans", 40), topic=BANK_TOPIC)


def desk_with(
    item: ReviewItem, banner: ImageBanner | None, ban_role: Role = Role.LEAD
) -> tuple[ReviewDesk, RecordingProducer, CollectorRegistry]:
    clock = Clock(100.0)
    queue = ReviewQueue(clock, lease_s=60.0)
    queue.add(item)
    registry, producer = CollectorRegistry(), RecordingProducer()
    desk = ReviewDesk(
        queue,
        producer,
        FakeSettler(),
        ReviewMetrics(registry, queue, Clock(2_000.0)),
        labels=ReasonLabels(("acceptable",), ("violence",)),
        topics=TOPICS,
        clock=clock,
        wall_clock=Clock(2_000.0),
        banner=banner,
        ban_role=ban_role,
    )
    return desk, producer, registry


async def decide(desk: ReviewDesk, who: Identity, key: str, request: VerdictRequest) -> None:
    lease = desk.queue.claim(key, who.reviewer, who.role)
    await desk.decide(who, key, lease.lease_id, request)


async def test_a_ban_publishes_the_reject_and_the_image_into_the_bank_the_worker_then_rejects() -> None:
    """Decision (naming bank and hashes), final rejected result, bank definition and image: the records
    the worker's bank follower applies make the exact bytes and a near copy match the bank."""
    item = review_item("img-1")
    desk, producer, registry = desk_with(item, banner_of(PHOTO))

    await decide(desk, LENA, item.key, BAN)

    by_topic = {topic: (key, value) for topic, key, value in producer.sent}
    assert {"images.review-decisions", "images.rejected", BANK_TOPIC} == set(by_topic)
    bank_records = [(key, value) for topic, key, value in producer.sent if topic == BANK_TOPIC]
    sha256, hashes = hashlib.sha256(PHOTO).hexdigest(), content_hashes(PHOTO)
    assert [b"reviewer-bans", f"reviewer-bans/{sha256}".encode()] == [key for key, _ in bank_records]
    decision = orjson.loads(by_topic["images.review-decisions"][1] or b"")
    assert {
        "bank": "reviewer-bans",
        "sha256": sha256,
        "pdq": hashes.pdq,
        "pdq_quality": hashes.pdq_quality,
    } == (decision["ban"])
    banks = HashBanks()
    updates = BankUpdates(banks)
    assert [True, True] == [updates.apply(key, value) for key, value in bank_records]
    match = banks.match(hashes)
    assert match is not None
    assert (Bank("reviewer-bans", BankAction.REJECT, 40), HashKind.SHA256) == (match.bank, match.kind)
    assert Decision.REJECTED == match.verdict().decision
    assert 1.0 == registry.get_sample_value("moderation_review_bans_total")
    assert desk.queue.get(item.key) is None


async def test_a_flat_picture_is_banned_by_its_bytes_only() -> None:
    """Its PDQ hash (quality below 50) would match look-alikes of nothing, so it stays out of the bank."""
    flat = flat_png()
    hashes = content_hashes(flat)
    assert hashes.pdq_quality is not None
    assert hashes.pdq_quality < 50
    item = review_item("img-flat")
    desk, producer, _ = desk_with(item, banner_of(flat))

    await decide(desk, LENA, item.key, BAN)

    (image_value,) = [
        value for topic, key, value in producer.sent if topic == BANK_TOPIC and b"/" in (key or b"")
    ]
    assert {"bank": "reviewer-bans", "sha256": hashes.sha256, "pdq": None} == orjson.loads(image_value or b"")


@pytest.mark.parametrize(
    ("who", "ban_role", "item_kind", "request_", "message"),
    [
        (ALICE, Role.LEAD, ItemKind.NEEDS_REVIEW, BAN, "only leads can ban images on this console"),
        (
            LENA,
            Role.LEAD,
            ItemKind.NEEDS_REVIEW,
            VerdictRequest(VerdictKind.APPROVE, ban=True),
            "only a reject",
        ),
        (LENA, Role.LEAD, ItemKind.AUDIT, BAN, "audit items are not banned"),
    ],
    ids=["reviewer-when-leads-only", "approve", "audit-item"],
)
async def test_refused_bans_publish_nothing_and_keep_the_claim(
    who: Identity, ban_role: Role, item_kind: ItemKind, request_: VerdictRequest, message: str
) -> None:
    audit = {"probability": 0.05, "published_decision": "rejected"} if item_kind is ItemKind.AUDIT else None
    item = review_item("img-1", kind=item_kind, topic=f"images.{item_kind}", audit=audit)
    desk, producer, registry = desk_with(item, banner_of(PHOTO), ban_role)
    lease = desk.queue.claim(item.key, who.reviewer, who.role)

    with pytest.raises(VerdictRefused, match=message):
        await desk.decide(who, item.key, lease.lease_id, request_)

    assert [] == producer.sent
    assert lease == desk.queue.held_by(who.reviewer)
    assert 1.0 == registry.get_sample_value("moderation_review_refused_total", {"why": "invalid"})


async def test_every_reviewer_may_ban_when_the_console_says_so_and_nobody_when_it_is_off() -> None:
    item = review_item("img-1")
    open_desk, producer, _ = desk_with(item, banner_of(PHOTO), Role.REVIEWER)
    off_desk, _, _ = desk_with(review_item("img-2"), None)

    await decide(open_desk, ALICE, item.key, BAN)
    with pytest.raises(VerdictRefused, match="banning is not enabled"):
        await decide(off_desk, LENA, review_item("img-2").key, BAN)

    assert BANK_TOPIC in {topic for topic, _, _ in producer.sent}
    assert (True, False, None) == (open_desk.may_ban(ALICE), off_desk.may_ban(LENA), off_desk.ban_bank)


async def test_an_image_that_cannot_be_read_is_not_banned_and_the_reviewer_is_told() -> None:
    item = review_item("img-1")
    desk, producer, _ = desk_with(item, banner_of(PHOTO, refuse=True))
    lease = desk.queue.claim(item.key, LENA.reviewer, LENA.role)

    with pytest.raises(VerdictRefused, match="cannot be banned: the image host did not answer") as caught:
        await desk.decide(LENA, item.key, lease.lease_id, BAN)

    assert [] == producer.sent
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize(("name", "threshold"), [("a/b", 31), ("x" * 65, 31), ("", 31)])
def test_a_ban_bank_no_bank_can_be_is_a_configuration_error(name: str, threshold: int) -> None:
    with pytest.raises(ConfigurationError, match="MODERATION_REVIEW_BAN_BANK"):
        ban_bank(name, threshold)


@pytest.mark.parametrize(
    ("kind", "bank", "offered"),
    [
        (ItemKind.NEEDS_REVIEW, "reviewer-bans", True),
        (ItemKind.AUDIT, "reviewer-bans", False),
        (ItemKind.NEEDS_REVIEW, None, False),
    ],
)
def test_the_page_offers_reject_and_ban_only_where_it_can_be_given(
    kind: ItemKind, bank: str | None, offered: bool
) -> None:
    audit = {"probability": 0.05, "published_decision": "rejected"} if kind is ItemKind.AUDIT else None
    item = review_item("img-1", kind=kind, audit=audit)
    page = item_page(
        LENA,
        csrf="token",
        item=item,
        ref="ref",
        lease=Lease("lease-1", item.key, "lena", claimed_at=1.0, expires_at=61.0),
        lease_s=60.0,
        labels=ReasonLabels(("acceptable",), ("violence",)),
        next_url="/next",
        ban_bank=bank,
    )

    assert offered == ('value="ban"' in page)
    assert offered == ("hash bank reviewer-bans" in page)
