"""The dispatcher's HTTP client is built at the first attempt, once, however many lanes attempt at once."""

from __future__ import annotations

import threading

from auth_service.adapters.webhook_poster import PosterOnFirstUse
from auth_service.domain.webhooks import AttemptOutcome, AttemptResult


class RecordingPoster:
    def __init__(self):
        self.posts: list[str] = []

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout_seconds: float) -> AttemptResult:
        self.posts.append(url)
        return AttemptResult(AttemptOutcome.SUCCESS, 0.001, status_code=204)


def test_the_client_is_built_at_the_first_attempt_and_only_once():
    built: list[RecordingPoster] = []
    gate = threading.Barrier(8)

    def build() -> RecordingPoster:
        built.append(RecordingPoster())
        return built[-1]

    poster = PosterOnFirstUse(build)
    assert built == []

    def attempt(index: int) -> None:
        gate.wait()
        poster.post(f"https://example.com/{index}", b"{}", {}, 5.0)

    lanes = [threading.Thread(target=attempt, args=(index,)) for index in range(8)]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()
    assert len(built) == 1
    assert sorted(built[0].posts) == sorted(f"https://example.com/{index}" for index in range(8))
