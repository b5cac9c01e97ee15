"""The wrong-token limit on a running console, over real HTTP: ten wrong tokens from one address, then 429
with ``Retry-After`` for any token from it (bearer or sign-in form) until the window passes; counted in the
console's metrics."""

from __future__ import annotations

import aiohttp
import pytest

from tests.fixtures.browser import ConsoleFactory, token_of
from tests.integration.test_review_console import SteppedClock

pytestmark = pytest.mark.integration


async def test_ten_wrong_tokens_close_the_address_for_a_minute(review_console: ConsoleFactory) -> None:
    clock = SteppedClock()
    async with review_console(clock=clock) as console, aiohttp.ClientSession() as client:

        async def bearer(token: str) -> tuple[int, str | None]:
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            async with client.get(console.url + "/", headers=headers, allow_redirects=False) as response:
                return response.status, response.headers.get("Retry-After")

        wrong = [await bearer(f"guess-{n:02d}-0123456789abcdef") for n in range(10)]
        clock.now += 1.0
        valid_while_closed = await bearer(token_of("alice"))
        async with client.post(
            console.url + "/signin", data={"token": token_of("alice")}, headers={"Origin": console.url}
        ) as form:
            form_while_closed = (
                form.status,
                form.headers.get("Retry-After"),
                "Too many" in await form.text(),
            )
        clock.now += 60.0
        valid_after = await bearer(token_of("alice"))
        async with client.get(console.url + "/metrics") as metrics:
            exposition = await metrics.text()

    assert [(401, None)] * 10 == wrong
    assert (429, "59") == valid_while_closed
    assert (429, "59", True) == form_while_closed
    assert (200, None) == valid_after
    assert 'moderation_review_auth_failures_total{why="wrong_token"} 10.0' in exposition
    assert 'moderation_review_auth_failures_total{why="throttled"} 2.0' in exposition
