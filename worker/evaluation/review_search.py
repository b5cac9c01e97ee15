"""The joint search for ``review_at`` thresholds: the policy's approve-miss target at the least review load.

Pure. A tag tuned on its own would have to catch every image that should not be approved, including those
only another tag (or no tag) can see; so ``review_at`` is searched for the whole blocklist together. It
starts at each tag's ``reject_at`` (the least review load) and, while the policy's approve miss rate is
above the target, lowers one tag's ``review_at`` to the score of a missed image: the move that catches the
most missed images per harmless image it adds to review (ties: the higher threshold). A move never goes to
0 (a tag that did not see an image cannot catch it). Images that are not approved whatever the blocklist
(no signal, refused by the analyzer, allowlist miss) are never missed. Each step catches at least one
image, so the search ends after at most as many steps as there were missed images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from worker.domain import Analysis, Decision, strongest_of
from worker.evaluation.labeled_set import Observation
from worker.policy import Policy, decide


@dataclass(frozen=True, slots=True)
class _Image:
    scores: Mapping[str, float]
    should_flag: bool
    always_flagged: bool


def _images(policy: Policy, observations: Sequence[Observation]) -> list[_Image]:
    names = policy.blocklist.keys()
    images = []
    for observation in observations:
        should_flag = observation.image.expected is not Decision.APPROVED
        analysis = observation.analysis
        if analysis is None:  # refused: the policy's on_image_error, which never approves
            images.append(_Image({}, should_flag, always_flagged=True))
            continue
        scores = strongest_of(analysis.tags, names, casefold=True)
        # Without its blocklisted tags the analysis decides what the policy does whatever the thresholds.
        rest = Analysis(
            analysis.model_version, tuple(t for t in analysis.tags if t.name.casefold() not in names)
        )
        always = decide(policy, rest).decision is not Decision.APPROVED
        images.append(_Image(scores, should_flag, always_flagged=always))
    return images


def _flagged(image: _Image, review_at: Mapping[str, float]) -> bool:
    return image.always_flagged or any(image.scores.get(tag, -1.0) >= at for tag, at in review_at.items())


def review_thresholds(
    policy: Policy,
    observations: Sequence[Observation],
    reject_at: Mapping[str, float | None],
    target_miss_rate: float,
) -> dict[str, float]:
    """Per blocklisted tag, the ``review_at`` found by the search in the module docstring.

    ``reject_at`` gives each tag's (suggested) reject threshold; ``None`` starts the tag at 1.0.
    """
    images = _images(policy, observations)
    review_at = {
        tag: 1.0 if reject_at.get(tag) is None else float(reject_at[tag] or 0.0) for tag in policy.blocklist
    }
    should = sum(image.should_flag for image in images)
    while should:
        missed = [image for image in images if image.should_flag and not _flagged(image, review_at)]
        if len(missed) / should <= target_miss_rate:
            break
        move = _best_move(images, review_at)
        if move is None:
            break
        tag, threshold = move
        review_at[tag] = threshold
    return review_at


def _best_move(images: Sequence[_Image], review_at: Mapping[str, float]) -> tuple[str, float] | None:
    """The (tag, threshold) catching the most missed images per harmless image added; None if no move."""
    best: tuple[float, float, str] | None = None  # (harmless added per image caught, -threshold, tag)
    for tag in review_at:
        # Unflagged images this tag saw, strongest first: each is below the tag's current review_at.
        unflagged = sorted(
            (
                image
                for image in images
                if not _flagged(image, review_at) and image.scores.get(tag, 0.0) > 0.0
            ),
            key=lambda image: -image.scores[tag],
        )
        caught = added = index = 0
        while index < len(unflagged):
            score = unflagged[index].scores[tag]
            while (
                index < len(unflagged) and unflagged[index].scores[tag] == score
            ):  # equal scores go together
                caught += unflagged[index].should_flag
                added += not unflagged[index].should_flag
                index += 1
            if caught:
                key = (added / caught, -score, tag)
                if best is None or key < best:
                    best = key
    return None if best is None else (best[2], -best[1])
