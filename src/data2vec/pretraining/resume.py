"""Which recipe changes a resumed pretraining run accepts.

A resumed run continues the checkpoint's run exactly only with the same recipe. Each recipe key
(dotted: ``optim.total_steps``) is one of three kinds:

- free: changes no update, so it may differ without a word: ``log_every``, ``save_every``,
  ``data.num_workers``, ``device``, ``name``, ``model_init`` (read only on a fresh start, the
  weights come from the checkpoint) and the ``collapse`` watch thresholds (they only decide
  when a run stops).
- schedule: the learning-rate schedule and the teacher's EMA decay schedule (``SCHEDULE_KEYS``).
  Changing one reshapes the rest of the run; it needs ``--extend-schedule``
  (``Pretrainer(extend_schedule=True)``).
- everything else (seed, model, masking, targets, loss, head, data, the optimizer's other
  settings, precision, and any key added later): the resumed run would silently become another
  run; it needs ``--allow-recipe-change`` (``allow_recipe_change=True``).

A resume that changes a schedule or other key without its flag stops with a ``RecipeChangedError``
that names the keys (old -> new). An accepted change is written to the run's ``log.jsonl`` as
``{"step": k, "event": "schedule_changed" | "recipe_changed", "changes": {key: [old, new]}}``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .recipe import Recipe, RecipeError

FREE_KEYS = frozenset({"log_every", "save_every", "data.num_workers", "device", "name", "model_init"})
FREE_SECTIONS = ("collapse.",)
SCHEDULE_KEYS = frozenset(
    {
        "optim.total_steps",
        "optim.warmup_steps",
        "optim.schedule",
        "optim.phase_ratio",
        "optim.lr",
        "optim.min_lr",
        "optim.init_lr_scale",
        "optim.final_lr_scale",
        "ema.start",
        "ema.end",
        "ema.anneal_steps",
    }
)
SCHEDULE_EVENT = "schedule_changed"
RECIPE_EVENT = "recipe_changed"


class RecipeChangedError(RecipeError):
    """A resume whose recipe changes keys that need an explicit flag."""


Change = tuple[Any, Any]  # (checkpoint's value, this recipe's value); None where a side lacks the key


@dataclasses.dataclass
class RecipeChanges:
    schedule: dict[str, Change]
    other: dict[str, Change]

    def events(self) -> list[dict[str, Any]]:
        """The log records (without ``step``) of the schedule and other changes."""
        return [
            {"event": event, "changes": {key: list(change) for key, change in changes.items()}}
            for event, changes in ((SCHEDULE_EVENT, self.schedule), (RECIPE_EVENT, self.other))
            if changes
        ]


def is_free(key: str) -> bool:
    return key in FREE_KEYS or key.startswith(FREE_SECTIONS)


def recipe_changes(old: dict[str, Any], new: dict[str, Any]) -> RecipeChanges:
    """The differences between a checkpoint's recipe dict and a new one that need a flag, by kind
    (free keys are left out). The old dict is
    first read as a recipe, so that keys added since it was written compare as their defaults."""
    old_values, new_values = _flatten(_normalised(old)), _flatten(new)
    changes = RecipeChanges({}, {})
    for key in sorted(set(old_values) | set(new_values)):
        before, after = old_values.get(key), new_values.get(key)
        if before == after or is_free(key):
            continue
        kind = changes.schedule if key in SCHEDULE_KEYS else changes.other
        kind[key] = (before, after)
    return changes


def check_resume(
    old: dict[str, Any],
    recipe: Recipe,
    *,
    extend_schedule: bool = False,
    allow_recipe_change: bool = False,
    checkpoint: str = "the checkpoint",
    recipe_file: str | None = None,
) -> RecipeChanges:
    """The changes from the checkpoint's recipe ``old`` to ``recipe``; raises ``RecipeChangedError``
    (one line: the keys, old -> new, and the way out) when a change lacks its flag."""
    changes = recipe_changes(old, recipe.to_dict())
    problems, flags = [], []
    if changes.schedule and not extend_schedule:
        problems.append(f"change the learning-rate / EMA schedule mid-run ({describe(changes.schedule)})")
        flags.append("--extend-schedule (extend_schedule=True)")
    if changes.other and not allow_recipe_change:
        problems.append(f"change recipe keys that make it another run ({describe(changes.other)})")
        flags.append("--allow-recipe-change (allow_recipe_change=True)")
    if problems:
        original = f" (saved as {recipe_file})" if recipe_file else ""
        raise RecipeChangedError(
            f"resuming {checkpoint} with this recipe would {' and '.join(problems)}: pass {' and '.join(flags)} "
            f"to continue with the new values, or resume with the recipe the run was started with{original}"
        )
    return changes


def describe(changes: dict[str, Change]) -> str:
    """``key: old -> new, ...`` (values as JSON)."""
    return ", ".join(f"{key}: {_show(before)} -> {_show(after)}" for key, (before, after) in changes.items())


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


def _normalised(old: dict[str, Any]) -> dict[str, Any]:
    try:
        return Recipe.from_dict(old, source="the checkpoint's recipe").to_dict()
    except (RecipeError, TypeError, ValueError):  # a recipe today's code cannot read: compare as written
        return old


def _flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(values, dict):
        return {prefix.rstrip("."): values}
    flat: dict[str, Any] = {}
    for key, value in values.items():
        flat.update(_flatten(value, f"{prefix}{key}."))
    return flat
