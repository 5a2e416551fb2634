"""Generation backends behind one interface: `generate(requests) -> list[Completion]` in input order."""

from selfinstruct.llm.base import Backend, Completion, Request, Sampling

__all__ = ["Backend", "Completion", "Request", "Sampling"]
