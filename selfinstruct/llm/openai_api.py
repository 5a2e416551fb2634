"""The HTTP backend: requests to one or more OpenAI-compatible servers (`vllm serve`, SGLang, llama.cpp's
server, a hosted API) over `/v1/chat/completions` (chat) and `/v1/completions` (raw prompts).

What it guarantees, because a long generation run meets every kind of network trouble:
- at most `concurrency` requests in flight per replica, each sent to the least busy replica in rotation;
- an attempt gets `timeout_s` in all, body included; an answer over 1 MiB (`_MAX_BODY`) fails its request;
- a failed attempt (connection error, timeout, 429, 5xx) is retried with exponential backoff and jitter, or
  after the server's Retry-After; 4xx other than 429 is the request's own fault and is not retried, but for
  401 and 403 (the server refuses the credentials: no request can succeed), which stop the run at once;
- a replica failing `replica_max_failures` times in a row leaves the rotation for `replica_cooldown_s`;
- a request still failing after its retries comes back as a Completion with `error` set; the batch goes on;
- every replica failing, with no success anywhere, for longer than `all_down_timeout_s` raises
  `BackendDownError`, so the run stops with a clear message (what was already written stays written);
- the API key is read from the environment variable named by `api_key_env` at request time and never appears
  in a repr, log line or error message.

`generate` is synchronous (it runs its own event loop) so callers stay simple. `stream` keeps at most
`max_in_flight` requests outstanding (default: `concurrency` per replica), pulls the next request from the
caller's iterator only when one finishes, and yields completions as they arrive; its event loop runs on a
helper thread, while the caller's iterator is only ever advanced on the caller's thread. Knows nothing of
tasks, files.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any

import httpx

from selfinstruct.errors import SelfInstructError
from selfinstruct.llm.base import Completion, Request
from selfinstruct.llm.config import OpenAIConfig

log = logging.getLogger(__name__)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads joins valid pairs; what is left is broken

# The most of one answer we read. An answer becomes part of one line of rejects.jsonl or journal.jsonl, and a
# run with a line over 16 MiB (selfinstruct.jsonl.MAX_LINE_BYTES) can no longer be read; an endless body would
# fill memory. A rejected instruction's line holds its answer three times (the answer, the candidate, its meta),
# and our files escape U+0085, U+2028 and U+2029 (two or three bytes in a body) as six bytes: 1 MiB of answer
# made a 7.3 MB line (tests/llm/test_answer_size.py), 4 MiB a 29 MB one. 1 MiB is about 250K tokens.
_MAX_BODY = 1 << 20


class BackendDownError(SelfInstructError):
    """No replica can be reached or every replica keeps failing: the run cannot go on."""


@dataclass
class _Replica:
    url: str
    in_flight: int = 0
    picks: int = 0
    failures: int = 0  # consecutive failed attempts (connection, timeout, 5xx); reset by a success
    resting_until: float = 0.0  # monotonic time; out of rotation before it
    last_error: str = ""


@dataclass
class _Outcome:
    completion: Completion | None = None
    error: str = ""
    retry: bool = False
    down: bool = False  # the failure says the replica is unhealthy (not merely busy, not the request's fault)
    retry_after: float | None = None
    refused: bool = False  # 401 / 403: the credentials are refused, so every request would be


class OpenAIBackend:
    """`generate(requests) -> list[Completion]` against OpenAI-compatible servers.

    `model` is the name the servers serve the model under; `base_urls` one URL or several (each up to and
    including `/v1`); `settings` are the other `OpenAIConfig` fields (concurrency, timeout_s, ...).
    """

    name = "openai"

    def __init__(self, model: str, *, base_urls: str | Sequence[str], **settings: Any):
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        cfg = OpenAIConfig(model=model, base_urls=urls, **settings)
        self.config = cfg
        self.model = cfg.model
        self._replicas = [_Replica(url) for url in cfg.base_urls]
        self._down_since: float | None = None
        self._checked = False
        self._api_key()  # fail now, not mid-run, when the named variable is missing

    @classmethod
    def from_config(cls, cfg: OpenAIConfig) -> OpenAIBackend:
        return cls(
            cfg.model, base_urls=cfg.base_urls, **cfg.model_dump(exclude={"kind", "model", "base_urls"})
        )

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.model!r}, base_urls={self.config.base_urls!r})"

    # --- secrets ------------------------------------------------------------------------------------------
    def _api_key(self) -> str | None:
        name = self.config.api_key_env
        if name is None:
            return None
        key = os.environ.get(name)
        if not key:
            raise SelfInstructError(
                f"environment variable {name} (named by `api_key_env`) is not set or empty"
            )
        return key

    def _scrub(self, text: str) -> str:
        """Error text may echo request headers or bodies; make sure the key never leaves in it."""
        name = self.config.api_key_env
        key = os.environ.get(name) if name else None
        return text.replace(key, "***") if key else text

    def _excerpt(self, text: str) -> str:
        """Server text for an error message: scrubbed before it is cut, as a key cut in two would not match."""
        return _short(self._scrub(text))

    # --- public -------------------------------------------------------------------------------------------
    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        """One completion per request, in input order; failed requests carry `error`. Raises
        `BackendDownError` when no replica is reachable or all have failed for `all_down_timeout_s`.
        One `generate` at a time per backend: calls from several threads must not overlap."""
        requests = list(requests)
        if not requests:
            return []
        return run_in_thread(self._generate(requests))

    def stream(
        self, requests: Iterable[Request], *, max_in_flight: int | None = None
    ) -> Iterator[Completion]:
        """Completions as they arrive (any order; each carries its `request_id`), with at most
        `max_in_flight` requests outstanding (default: `concurrency` x replicas); the same retries and
        replica rules as `generate`. `requests` is pulled only when there is room. Closing the iterator
        early (`.close()`, or leaving a `with contextlib.closing(...)` block) cancels what is in flight.
        Raises `BackendDownError` like `generate`. One `generate` or `stream` at a time per backend."""
        if max_in_flight is not None and max_in_flight < 1:
            raise SelfInstructError(f"`max_in_flight` must be >= 1, got {max_in_flight}")
        return self._stream(iter(requests), max_in_flight or self.config.concurrency * len(self._replicas))

    def _stream(self, source: Iterator[Request], limit: int) -> Iterator[Completion]:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="openai-stream", daemon=True)
        thread.start()

        def call(coro):  # run a coroutine on the helper loop and wait for it
            return asyncio.run_coroutine_threadsafe(coro, loop).result()

        client = None
        pending: set[Future] = set()
        try:
            client = call(self._open())
            more = True
            while True:
                while more and len(pending) < limit:
                    req = next(source, _END)
                    if req is _END:
                        more = False
                        break
                    if req is None:  # nothing to ask right now: ask the source again after the next answer
                        break
                    pending.add(asyncio.run_coroutine_threadsafe(self._one(client, req), loop))
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()  # BackendDownError surfaces here, and the finally cancels the rest
        finally:
            for f in pending:
                f.cancel()
            if client is not None:
                call(self._shut(client, len(pending)))
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    async def _open(self) -> httpx.AsyncClient:
        """A client sized for every replica's concurrency; the first call checks the replicas."""
        cfg = self.config
        for rep in self._replicas:
            rep.in_flight = 0
        self._cond = asyncio.Condition()
        n = cfg.concurrency * len(self._replicas)
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s),
            limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
        )
        if not self._checked:
            try:
                await self._preflight(client)
            except BaseException:
                await client.aclose()
                raise
        return client

    @staticmethod
    async def _shut(client: httpx.AsyncClient, cancelled: int) -> None:
        """Let cancelled requests unwind (their `finally` releases the replica slots), then close."""
        if cancelled:
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            await asyncio.gather(*others, return_exceptions=True)
        await client.aclose()

    def close(self) -> None:
        """Nothing to release: each `generate` and `stream` opens and closes its own connection pool."""

    # --- the batch ----------------------------------------------------------------------------------------
    async def _generate(self, requests: list[Request]) -> list[Completion]:
        client = await self._open()  # not `async with`: a client that has sent a request cannot re-enter
        try:
            tasks = [asyncio.create_task(self._one(client, req)) for req in requests]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        finally:
            await client.aclose()

    async def _preflight(self, client: httpx.AsyncClient) -> None:
        """Before the first batch: is any replica reachable, and does it serve `model`? A typo in a URL or a
        model name then fails at once with one clear line instead of after every request's retries."""
        # A short read timeout: /models is answered by the API process at once even when the engine is busy.
        timeout = httpx.Timeout(
            max(10.0, self.config.connect_timeout_s), connect=self.config.connect_timeout_s
        )

        async def models(url: str) -> httpx.Response:
            try:  # in all, as for a request (_attempt): a server trickling its answer must not hold the start
                async with asyncio.timeout(timeout.read):
                    return await client.get(f"{url}/models", timeout=timeout)
            except TimeoutError:
                raise httpx.ReadTimeout("no whole answer in time") from None

        results = await asyncio.gather(*(models(r.url) for r in self._replicas), return_exceptions=True)
        reachable, problems = 0, []
        for rep, res in zip(self._replicas, results, strict=True):
            if isinstance(res, httpx.TransportError):
                rep.failures = self.config.replica_max_failures
                rep.resting_until = time.monotonic() + self.config.replica_cooldown_s
                rep.last_error = self._excerpt(_describe(res, self.config))
                problems.append(f"{rep.url}: {rep.last_error}")
                continue
            if isinstance(res, BaseException):
                raise res
            reachable += 1
            served = _served_models(res)
            if served is not None and self.model not in served:
                raise SelfInstructError(
                    f"{rep.url} serves {', '.join(sorted(served)) or 'no model'}, not `{self.model}`: "
                    f"set the backend's `model` to one of those"
                )
        if not reachable:
            raise BackendDownError(self._scrub("no replica reachable: " + "; ".join(problems)))
        for p in problems:
            log.warning(
                "replica unreachable, out of rotation for %.0f s: %s", self.config.replica_cooldown_s, p
            )
        self._checked = True

    async def _one(self, client: httpx.AsyncClient, req: Request) -> Completion:
        cfg = self.config
        path, body = _request_body(req, self.model, cfg.extra_body)
        outcome = _Outcome()
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                await asyncio.sleep(_delay(attempt, outcome.retry_after, cfg))
            rep = await self._acquire()
            try:
                outcome = await self._attempt(client, rep, path, body, req.id)
            finally:
                await self._release(rep)
            self._record(rep, outcome)
            if outcome.completion is not None:
                return outcome.completion
            if outcome.refused:
                raise SelfInstructError(
                    f"{outcome.error} (the server refuses the credentials: check the key in the variable "
                    f"named by `api_key_env`{f', {self.config.api_key_env}' if self.config.api_key_env else ''})"
                )
            if not outcome.retry:
                break
        tries = attempt + 1
        error = f"failed after {tries} attempt{'s' * (tries > 1)}: {outcome.error}"
        return Completion(request_id=req.id, error=self._scrub(error))

    async def _attempt(
        self, client: httpx.AsyncClient, rep: _Replica, path: str, body: dict, rid: str
    ) -> _Outcome:
        cfg = self.config
        headers = {}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            # httpx's timeouts bound each read, not the whole answer: a server sending a byte a second would
            # never time out. asyncio.timeout, not wait_for, for the reason given in _acquire.
            async with asyncio.timeout(cfg.timeout_s):
                async with client.stream("POST", rep.url + path, json=body, headers=headers) as resp:
                    content = await _read(resp)
        except TimeoutError:
            return _Outcome(error=f"{rep.url}: timed out after {cfg.timeout_s:g} s", retry=True, down=True)
        except httpx.TransportError as e:
            return _Outcome(error=f"{rep.url}: {self._excerpt(_describe(e, cfg))}", retry=True, down=True)
        status, too_big = resp.status_code, len(content) > _MAX_BODY
        if status == 200:
            # Neither is retried nor held against the replica: the server did answer, and asking again costs
            # a whole generation for an answer most likely of the same shape or size. (A body cut short is a
            # transport error above, and is retried.)
            if too_big:
                return _Outcome(error=f"{rep.url}: answer larger than {_MAX_BODY >> 20} MiB")
            try:
                return _Outcome(completion=_parse(json.loads(content), path, rid))
            except (ValueError, RecursionError) as e:  # RecursionError: JSON nested too deep to decode
                return _Outcome(error=f"{rep.url}: malformed answer: {e}")
        text = f"(a body over {_MAX_BODY >> 20} MiB)" if too_big else content.decode("utf-8", "replace")
        detail = f"{rep.url}: HTTP {status}: {self._excerpt(text)}"
        if status == 429 or status >= 500:
            # 429 means busy, not broken: it is retried but does not count toward taking the replica out.
            return _Outcome(error=detail, retry=True, down=status >= 500, retry_after=_retry_after(resp))
        # 4xx: the request itself is wrong, retrying would not help; 401 / 403: so would every request be
        return _Outcome(error=detail, refused=status in (401, 403))

    # --- replicas -----------------------------------------------------------------------------------------
    async def _acquire(self) -> _Replica:
        """Wait for a slot on the least busy replica in rotation. With every replica out of rotation, the one
        due back first still takes requests, so retries keep probing it instead of stalling."""
        limit = self.config.concurrency
        async with self._cond:
            while True:
                now = time.monotonic()
                pool = [r for r in self._replicas if r.resting_until <= now]
                if not pool:
                    pool = [min(self._replicas, key=lambda r: r.resting_until)]
                free = [r for r in pool if r.in_flight < limit]
                if free:
                    rep = min(free, key=lambda r: (r.in_flight, r.picks))
                    rep.in_flight += 1
                    rep.picks += 1
                    return rep
                soonest = min(
                    (r.resting_until for r in self._replicas if r.resting_until > now), default=now + 1
                )
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the task's own cancellation
                # (a stopped run then never finished cancelling its batch).
                try:
                    async with asyncio.timeout(max(0.05, soonest - now)):
                        await self._cond.wait()
                except TimeoutError:
                    pass

    async def _release(self, rep: _Replica) -> None:
        async with self._cond:
            rep.in_flight -= 1
            self._cond.notify_all()

    def _record(self, rep: _Replica, outcome: _Outcome) -> None:
        cfg, now = self.config, time.monotonic()
        if outcome.completion is not None:
            rep.failures, rep.resting_until = 0, 0.0
            self._down_since = None
            return
        if outcome.retry_after:  # the server asked for a pause: send other requests elsewhere meanwhile
            rep.resting_until = max(rep.resting_until, now + min(outcome.retry_after, cfg.max_retry_after_s))
        if not outcome.down:
            return
        rep.failures += 1
        rep.last_error = outcome.error
        if rep.failures == cfg.replica_max_failures:
            log.warning(
                "replica %s out of rotation for %.0f s after %d failures: %s",
                rep.url,
                cfg.replica_cooldown_s,
                rep.failures,
                self._scrub(outcome.error),
            )
        if rep.failures >= cfg.replica_max_failures:
            rep.resting_until = max(rep.resting_until, now + cfg.replica_cooldown_s)
        if self._down_since is None:
            self._down_since = now
        if all(r.failures for r in self._replicas) and now - self._down_since > cfg.all_down_timeout_s:
            lines = "; ".join(r.last_error or r.url for r in self._replicas)
            raise BackendDownError(
                self._scrub(
                    f"all {len(self._replicas)} replica(s) failing for {now - self._down_since:.1f} s "
                    f"with no success (all_down_timeout_s={cfg.all_down_timeout_s:g}): {lines}"
                )
            )


def run_in_thread(coro) -> Any:
    """Run `coro` on an event loop of its own in a helper thread while this thread waits.

    Waiting outside the loop keeps stops clean: SIGINT/SIGTERM (selfinstruct.signals) raise in the waiting
    thread, which then cancels the batch's main task, so every request task is cancelled and its connection
    closed before the stop goes on. Raised inside a loop, the stop could be swallowed by a callback or hang the
    runner's own cancellation. It also serves callers that already run an event loop (a notebook)."""
    loop = asyncio.new_event_loop()
    task = loop.create_task(coro)

    def work() -> Any:
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(task)
        finally:
            left = asyncio.all_tasks(loop)
            for t in left:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    future: Future = Future()

    def thread() -> None:
        try:
            future.set_result(work())
        except BaseException as e:  # handed to the waiting thread
            future.set_exception(e)

    # A daemon thread: should the batch not finish cancelling in time, it cannot hold the process open.
    threading.Thread(target=thread, name="openai-batch", daemon=True).start()
    try:
        return future.result()
    except BaseException:
        if not future.done():
            loop.call_soon_threadsafe(task.cancel)
            try:
                future.result(timeout=10)
            except BaseException:  # noqa: S110 - the cancellation we asked for, or what it left behind
                pass
        raise


_END = object()  # the request source is exhausted (None from it means "nothing right now")


# --- pure helpers -----------------------------------------------------------------------------------------
def _request_body(req: Request, model: str, extra: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    s = req.sampling
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": s.max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "n": s.n,
        "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty,
    }
    if s.stop:
        body["stop"] = list(s.stop)
    if s.seed is not None:
        body["seed"] = s.seed
    if s.choice:  # vLLM's server; other servers may refuse the field
        body["structured_outputs"] = {"choice": list(s.choice)}
    body.update(extra)
    if req.messages is not None:
        body["messages"] = [dict(m) for m in req.messages]
        return "/chat/completions", body
    body["prompt"] = req.prompt
    return "/completions", body


async def _read(resp: httpx.Response) -> bytes:
    """The body, stopping once past `_MAX_BODY` bytes: a longer answer is refused, so the rest is not read."""
    body = bytearray()
    async for chunk in resp.aiter_bytes():
        body += chunk
        if len(body) > _MAX_BODY:
            break
    return bytes(body)


def _parse(data: Any, path: str, rid: str) -> Completion:
    """The Completion in a decoded 200 answer. Any server or proxy may send another shape; each field is
    checked, so that such an answer fails its request with a ValueError saying what is wrong, not the run."""
    choices = data.get("choices") if isinstance(data, dict) else None
    _check(isinstance(choices, list) and all(isinstance(c, dict) for c in choices), "`choices` is not a list")
    _check(all(isinstance(c.get("index", 0), int) for c in choices), "a choice's `index` is not an integer")
    choices = sorted(choices, key=lambda c: c.get("index", 0))
    if path == "/chat/completions":
        _check(all(isinstance(c.get("message"), dict) for c in choices), "a `message` is not an object")
        texts = [(c["message"].get("content") or "") for c in choices]
    else:
        texts = [c.get("text") for c in choices]
    _check(all(isinstance(t, str) for t in texts), "a choice's text is not a string")
    reasons = [c.get("finish_reason") for c in choices]
    _check(all(r is None or isinstance(r, str) for r in reasons), "a `finish_reason` is not a string")
    usage = data.get("usage") or {}
    _check(isinstance(usage, dict), "`usage` is not an object")
    tokens = [usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0]
    _check(all(isinstance(n, int) and n >= 0 for n in tokens), "a `usage` count is not a whole number")
    # JSON may carry half a surrogate pair ("\ud83d"), which no UTF-8 file, hash or shingle can hold.
    texts = [_LONE_SURROGATE.sub("\ufffd", t) for t in texts]
    return Completion(
        request_id=rid,
        texts=texts,
        finish_reasons=reasons,
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
    )


def _check(ok: bool, problem: str) -> None:
    if not ok:
        raise ValueError(problem)


def _delay(attempt: int, retry_after: float | None, cfg: OpenAIConfig) -> float:
    """Seconds before retry number `attempt` (1-based). Retry-After wins; otherwise exponential backoff with
    "equal jitter" (half fixed, half random), so clients that failed together do not return together."""
    if retry_after is not None:
        wait = min(retry_after, cfg.max_retry_after_s)
        return wait + random.uniform(0, 0.1 * wait)
    cap = min(cfg.backoff_max_s, cfg.backoff_base_s * 2 ** (attempt - 1))
    return cap / 2 + random.uniform(0, cap / 2)


def _retry_after(resp: httpx.Response) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    value = resp.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _served_models(resp: httpx.Response) -> set[str] | None:
    """Model ids from a `/models` answer, or None when the answer is not a usable list (auth required, an
    endpoint without the route): then we cannot tell and let the requests speak for themselves."""
    if resp.status_code != 200:
        return None
    try:
        return {m["id"] for m in resp.json()["data"]}
    except (ValueError, KeyError, TypeError):
        return None


def _describe(e: httpx.TransportError, cfg: OpenAIConfig) -> str:
    if isinstance(e, httpx.ConnectTimeout):
        return f"connect timed out after {cfg.connect_timeout_s:g} s"
    if isinstance(e, httpx.TimeoutException):
        return f"timed out after {cfg.timeout_s:g} s ({type(e).__name__})"
    if isinstance(e, httpx.ConnectError):
        return f"cannot connect ({e or type(e).__name__})"
    return f"{type(e).__name__}: {e}".rstrip(": ")


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
