"""``moderation-worker demo --review`` as a newcomer runs it: the demo, then a console over its items."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.integration.test_demo import _finish, _start_demo

pytestmark = pytest.mark.integration

CONSOLE_LINE = re.compile(r"review console at (http://\S+) - sign in with token (\S+)")


async def queue_page(client: aiohttp.ClientSession, url: str) -> str:
    """The signed-in console's queue page."""
    async with client.get(url + "/") as response:
        return await response.text()


async def test_demo_review_leaves_a_console_with_the_needs_review_items_until_interrupted(
    tmp_path: Path,
) -> None:
    """The printed token signs in; the queue lists the demo's needs-review items; SIGINT stops all (130)."""
    work_dir, output = tmp_path / "demo", tmp_path / "demo.out"
    process = await _start_demo(work_dir, output, "--review")
    try:
        async with asyncio.timeout(120):
            while (found := CONSOLE_LINE.search(output.read_text(encoding="utf-8"))) is None:
                assert process.returncode is None, output.read_text(encoding="utf-8")
                await asyncio.sleep(0.1)  # polling a file: the child's output offers no notification
        url, token = found.groups()
        needs_review = output.read_text(encoding="utf-8").count(" needs_review  ")
        async with aiohttp.ClientSession() as client:
            signed_in = await client.post(url + "/signin", data={"token": token}, headers={"Origin": url})
            async with asyncio.timeout(60):
                page = await queue_page(client, url)
                while page.count('class="item"') < needs_review:
                    await asyncio.sleep(
                        0.2
                    )  # the console's queue fills from Kafka and offers no notification
                    page = await queue_page(client, url)
        process.send_signal(signal.SIGINT)
        exit_code = await _finish(process, timeout_s=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert (200, "/") == (signed_in.status, signed_in.url.path)
    assert needs_review >= 1
    assert needs_review == page.count('class="item"')
    assert 130 == exit_code
