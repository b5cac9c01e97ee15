"""Retake the demo screenshots of docs/review.md from a running ``moderation-worker demo --review``.

usage: .venv/bin/python docs/img/review-screenshots.py URL TOKEN   (both as the demo prints them)

Signs in with Debian's chromium, shows the queue, claims the oldest item, and saves it blurred and revealed
into docs/img/review-demo-*.png. Nothing is decided: the item's claim simply lapses.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from playwright.async_api import async_playwright, expect

HERE = Path(__file__).resolve().parent


async def main(url: str, token: str) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = await browser.new_page(viewport={"width": 1200, "height": 760})
        await page.goto(f"{url}/")
        await page.fill("#token", token)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{url}/")
        await page.screenshot(path=HERE / "review-demo-queue.png")
        await page.keyboard.press("n")
        await page.wait_for_url("**/items/*")
        await expect(page.locator("#image")).not_to_have_js_property("naturalWidth", 0)
        await page.screenshot(path=HERE / "review-demo-item-blurred.png")
        await page.keyboard.press(" ")
        await expect(page.locator("#image")).to_have_css("filter", "none")
        await page.screenshot(path=HERE / "review-demo-item-revealed.png")
        await browser.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
