"""Wrong tokens, counted per client address: past ``limit`` of them within ``window_s`` an address gets 429
until its oldest counted failure leaves the window.

Tokens are long random strings (16 characters at least), so guessing one is hopeless anyway; the limit keeps
a guessing script from costing the console anything and makes it visible (``moderation_review_auth_failures
_total``). Only wrong tokens count, from the sign-in form and from ``Authorization: Bearer`` headers; while an
address is throttled, every token from it is refused unchecked, or guessing would go on (sessions already
signed in are not affected). Behind a proxy every client shares the proxy's address, so a
script there closes sign-in by token for everyone behind it until the window passes: with a trusted
authenticating proxy, sign in through the proxy's identity header instead. At most ``addresses`` addresses
are remembered (the oldest forgotten first), so a flood from many addresses cannot grow the console's memory.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from worker.clock import Clock


class TokenGuesses:
    """Failed token checks per address on the monotonic ``clock``."""

    def __init__(
        self, clock: Clock, *, limit: int = 10, window_s: float = 60.0, addresses: int = 10_000
    ) -> None:
        self._clock = clock
        self._limit = limit
        self._window_s = window_s
        self._addresses = addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may present a token again (0: now)."""
        failures = self._recent(address)
        if failures is None or len(failures) < self._limit:
            return 0.0
        return max(0.0, failures[0] + self._window_s - self._clock())

    def failed(self, address: str) -> None:
        """Count a wrong token from ``address``."""
        failures = self._recent(address)
        if failures is None:
            failures = self._failures[address] = deque(maxlen=self._limit)
            while len(self._failures) > self._addresses:
                self._failures.popitem(last=False)
        self._failures.move_to_end(address)
        failures.append(self._clock())

    def _recent(self, address: str) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        horizon = self._clock() - self._window_s
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures
