"""``moderation-worker demo --review``: after the demo's run, the review console over its needs-review items.

The console runs in-process against the demo's broker, with a one-time lead token written to the work folder,
and fetches images from the demo's https file server through the console's guarded fetcher (the reserved
``.test`` name resolved to the loopback server, that one address let through, only the demo's certificate
trusted). It serves until the demo is interrupted (Ctrl-C), which stops everything the demo started. See
docs/review.md.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from worker.dev.tlsfiles import Certificate, HttpsFileServer, local_guarded_fetcher
from worker.review.console import ReviewConsole
from worker.review.images import GuardedImageFetcher
from worker.review.settings import ReviewSettings
from worker.review.topics import create_review_topics
from worker.settings import Settings


async def serve_review_console(
    settings: Settings,
    files: HttpsFileServer,
    certificate: Certificate,
    work: Path,
    *,
    port: int,
    say: Callable[[str], None],
) -> None:
    """Run the console over ``settings``' review topics until cancelled; ``say`` prints its address."""
    token = secrets.token_urlsafe(18)
    tokens = work / "review-tokens"
    tokens.write_text(f"demo lead {token}\n", encoding="utf-8")
    tokens.chmod(0o600)
    review = ReviewSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "group_id": "moderation-demo-review",
            "tokens_file": str(tokens),
            "secure_cookies": False,  # plain http on loopback
        }
    )
    await create_review_topics(settings, review)
    fetcher = GuardedImageFetcher(
        local_guarded_fetcher(
            certificate, files.bind_host, max_bytes=review.image_max_bytes, timeout_s=review.image_timeout_s
        )
    )
    try:
        async with ReviewConsole(settings, review, fetcher=fetcher) as console:
            say(f"review console at {console.url} - sign in with token {token} (also in {tokens})")
            say(
                "reviewing: n starts, a approve, r reject, e escalate, space reveals; Ctrl-C stops everything"
            )
            await console.wait()
    finally:
        await fetcher.aclose()
