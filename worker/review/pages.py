"""The console's server-rendered HTML: sign-in, the queue, one item, and the short messages between.

Pure functions from values to ``str``; every value is escaped (``html.escape``). Pages load ``/static/``
CSS and JS only (the Content-Security-Policy forbids inline script). The image is requested from the console
(``/items/<ref>/image``), never from its original URL, and shown blurred and in grayscale until revealed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape
from typing import Final

from worker.review.auth import CSRF_FIELD, Identity
from worker.review.items import ItemKind, ReviewItem
from worker.review.queue import ItemFilter, Lease
from worker.review.verdicts import ReasonLabels

TITLE: Final = "Moderation review"


def _layout(title: str, body: str, who: Identity | None = None, csrf: str = "") -> str:
    header = ""
    if who is not None:
        header = (
            f'<header><a href="/">Queue</a><span class="who">{escape(who.reviewer)}'
            f" ({escape(who.role)})</span>"
            f'<form method="post" action="/signout"><input type="hidden" name="{CSRF_FIELD}"'
            f' value="{escape(csrf)}">'
            '<button type="submit">Sign out</button></form></header>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)} -'
        f" {TITLE}</title>"
        f'<meta name="csrf-token" content="{escape(csrf)}">'
        '<link rel="stylesheet" href="/static/review.css"><script src="/static/review.js" defer></script>'
        f"</head><body>{header}<main>{body}</main></body></html>"
    )


def sign_in_page(message: str = "") -> str:
    """The sign-in form: one secret token field."""
    note = f'<p class="error" role="alert">{escape(message)}</p>' if message else ""
    body = (
        f"<h1>{TITLE}</h1>{note}"
        '<form method="post" action="/signin" class="signin"><label for="token">Access token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>'
        '<button type="submit">Sign in</button></form>'
    )
    return _layout("Sign in", body)


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def _reasons(item: ReviewItem) -> str:
    parts = []
    for reason in item.result.reasons:
        text = reason.rule
        if reason.tag is not None:
            text += f" {reason.tag}"
        if reason.confidence is not None:
            text += f" {reason.confidence:.2f}"
        if reason.detail is not None:
            text += f" ({reason.detail})"
        parts.append(f'<li class="reason">{escape(text)}</li>')
    return '<ul class="reasons">' + "".join(parts) + "</ul>"


def _tags(item: ReviewItem) -> str:
    return (
        '<ul class="tags">'
        + "".join(f"<li>{escape(tag.name)} {tag.confidence:.2f}</li>" for tag in item.result.tags)
        + "</ul>"
    )


def queue_page(
    who: Identity,
    *,
    csrf: str,
    items: Sequence[ReviewItem],
    refs: Sequence[str],
    where: ItemFilter,
    rules: Sequence[str],
    now_s: float | None = None,
) -> str:
    """The pending items, oldest first, with filters and a button that starts the keyboard flow."""
    now_s = time.time() if now_s is None else now_s
    rule_options = "".join(
        f'<option value="{escape(rule)}"{" selected" if rule == where.rule else ""}>{escape(rule)}</option>'
        for rule in rules
    )
    kinds = [kind for kind in ItemKind if who.role == "lead" or kind is not ItemKind.ESCALATED]
    kind_options = "".join(
        f'<option value="{kind}"{" selected" if kind is where.kind else ""}>{kind}</option>' for kind in kinds
    )
    query = "&".join(
        f"{name}={escape(value)}" for name, value in (("rule", where.rule), ("queue", where.kind)) if value
    )
    rows = "".join(
        f'<tr class="item"><td>{_age(now_s - item.enqueued_at_s)}</td><td>{escape(item.kind)}</td>'
        f'<td><a href="/items/{escape(ref)}">{escape(item.result.image_id)}</a></td><td>{_reasons(item)}</td>'
        f"<td>{_tags(item)}</td><td><code>{escape(item.result.policy_version)}</code></td></tr>"
        for item, ref in zip(items, refs, strict=True)
    )
    table = (
        "<table><thead><tr><th>Age</th><th>Queue</th><th>Image</th><th>Reasons</th><th>Tags</th><th>"
        "Policy</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
        if items
        else '<p class="empty">Nothing is waiting for review.</p>'
    )
    body = (
        f'<h1>Queue <span class="count">{len(items)} pending</span></h1>'
        '<form method="get" action="/" class="filters"><label>Rule <select name="rule"><option value="">'
        "any</option>"
        f'{rule_options}</select></label><label>Queue <select name="queue"><option value="">any</option>'
        f"{kind_options}"
        '</select></label><button type="submit">Filter</button></form>'
        f'<p><a class="start" id="start" href="/next{"?" + query if query else ""}">Start reviewing</a>'
        " <kbd>n</kbd></p>"
        f"{table}"
    )
    return _layout("Queue", body, who, csrf)


def item_page(
    who: Identity,
    *,
    csrf: str,
    item: ReviewItem,
    ref: str,
    lease: Lease,
    lease_s: float,
    labels: ReasonLabels,
    next_url: str,
    ban_bank: str | None = None,
) -> str:
    """One claimed item: the blurred image, the machine's reasons, and the verdict controls (with reject
    and ban when ``ban_bank`` names the bank this reviewer may add to)."""
    result = item.result
    facts = [
        ("Image id", result.image_id),
        ("Queue", item.kind),
        ("Machine decision", result.decision),
        ("Policy", result.policy_version),
        ("Model", result.model_version or "-"),
        ("Image", result.image_url),
    ]
    if result.audit is not None:
        facts.append(("Published decision (audit)", result.audit.published_decision))
        facts.append(("Sampling probability", f"{result.audit.probability:g}"))
    if item.escalation is not None:
        facts.append(("Escalated by", item.escalation.reviewer))
        facts.append(("Their note", item.escalation.note or "-"))
    rows = "".join(f"<dt>{escape(name)}</dt><dd>{escape(str(value))}</dd>" for name, value in facts)
    reject_options = "".join(
        f'<option value="{escape(label)}">{escape(label)}</option>' for label in labels.reject
    )
    approve_options = "".join(
        f'<option value="{escape(label)}">{escape(label)}</option>' for label in labels.approve
    )
    escalate = (
        '<button type="submit" name="verdict" value="escalate" class="escalate">Escalate <kbd>e</kbd>'
        "</button>"
        if item.kind is ItemKind.NEEDS_REVIEW
        else ""
    )
    ban = (
        f'<button type="submit" name="verdict" value="ban" class="ban" title="reject, and add the image to'
        f' the hash bank {escape(ban_bank)}: its reposts are rejected without review">Reject and ban <kbd>b'
        "</kbd></button>"
        if ban_bank is not None and item.kind is not ItemKind.AUDIT
        else ""
    )
    body = (
        f'<section class="review" id="review" data-ref="{escape(ref)}" data-lease="{escape(lease.lease_id)}"'
        f' data-lease-s="{lease_s:g}" data-next="{escape(next_url)}" data-reviewer="{escape(who.reviewer)}">'
        '<figure class="image"><img id="image" class="veiled" alt="the submitted image (blurred until'
        ' revealed)"'
        f' src="/items/{escape(ref)}/image"><figcaption><button type="button" id="reveal">Reveal <kbd>'
        "space</kbd></button>"
        ' <label><input type="checkbox" id="always-reveal"> always reveal</label></figcaption></figure>'
        f'<div class="facts"><dl>{rows}</dl><h2>Reasons</h2>{_reasons(item)}<h2>Tags</h2>{_tags(item)}</div>'
        f'<form method="post" action="/items/{escape(ref)}/verdict" id="verdict" class="verdict">'
        f'<input type="hidden" name="{CSRF_FIELD}" value="{escape(csrf)}">'
        f'<input type="hidden" name="lease" value="{escape(lease.lease_id)}">'
        f'<label>Approve reason <select name="approve_reason" id="approve-reason">{approve_options}</select>'
        "</label>"
        f'<label>Reject reason <select name="reject_reason" id="reject-reason">{reject_options}</select>'
        "</label>"
        '<label>Note <textarea name="note" id="note" maxlength="1000" rows="2"></textarea></label>'
        '<div class="buttons"><button type="submit" name="verdict" value="approve" class="approve">Approve'
        " <kbd>a</kbd></button>"
        '<button type="submit" name="verdict" value="reject" class="reject">Reject <kbd>r</kbd></button>'
        f"{ban}{escalate}</div></form>"
        '<p class="status" id="status" role="status" aria-live="polite"></p></section>'
    )
    return _layout(f"Review {result.image_id}", body, who, csrf)


def message_page(
    title: str, message: str, who: Identity | None = None, csrf: str = "", *, refresh_to: str = ""
) -> str:
    """A short page: nothing to review, a refused claim, an error the reviewer can act on."""
    again = f'<p><a href="{escape(refresh_to)}" id="again">Check again</a></p>' if refresh_to else ""
    body = (
        f'<h1>{escape(title)}</h1><p class="message" role="alert">{escape(message)}</p>{again}'
        '<p><a href="/">Back to the queue</a></p>'
    )
    return _layout(title, body, who, csrf)
