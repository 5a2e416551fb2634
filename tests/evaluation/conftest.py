"""Backends for the evaluation tests: a counting wrapper around the session's real engine, and a scripted one
that returns exact texts (the one thing a real model cannot be made to do on demand)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from selfinstruct.llm.base import Completion


class Counting:
    """The real backend, counting the requests it serves; `close` leaves the shared session engine running."""

    def __init__(self, backend):
        self.backend, self.name, self.model, self.requests = backend, backend.name, backend.model, 0

    def generate(self, requests):
        self.requests += len(requests)
        return self.backend.generate(requests)

    def close(self):
        pass


class Scripted:
    """Replies `reply(request)`: a text, or None for a request the backend fails on."""

    name, model = "scripted", "scripted"

    def __init__(self, reply: Callable):
        self.reply, self.requests = reply, 0

    def generate(self, requests):
        self.requests += len(requests)
        out = []
        for r in requests:
            text = self.reply(r)
            if text is None:
                out.append(Completion(request_id=r.id, error="prompt too long"))
            else:
                out.append(
                    Completion(request_id=r.id, texts=[text], finish_reasons=["stop"], completion_tokens=4)
                )
        return out

    def close(self):
        pass


@pytest.fixture
def scripted() -> type[Scripted]:
    return Scripted


@pytest.fixture
def counting() -> type[Counting]:
    return Counting
