"""Reading an attack configuration's JSON object into a dataclass's fields, with errors that
name what is wrong (the image and text attack spaces share it)."""

from __future__ import annotations

from dataclasses import MISSING, fields

SCALARS = {"str": str, "int": int, "float": float}


def checked(cls, entry, what: str) -> dict:
    """`entry` when it holds every field of dataclass `cls` without a default, no other, and
    each str, int or float field of the right type (a float field takes an integer, no field a
    bool); ValueError naming `what` and the field otherwise."""
    if not isinstance(entry, dict):
        raise ValueError("an attack configuration is a JSON object")
    names = {f.name for f in fields(cls)}
    optional = {f.name for f in fields(cls) if f.default is not MISSING}
    missing, unknown = names - optional - set(entry), set(entry) - names
    if missing or unknown:
        raise ValueError(f"{what}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    for field in fields(cls):
        wanted, value = SCALARS.get(field.type), entry.get(field.name)
        if wanted is None or field.name not in entry:
            continue
        if isinstance(value, bool) or not isinstance(
                value, (int, float) if wanted is float else wanted):
            raise ValueError(f"{what}: {field.name} must be {wanted.__name__}, not {value!r}")
    return entry


def check_seed_and_target(config) -> None:
    """A configuration's seed (0 or more, as numpy takes it) and target (a class index, 0 or
    more); ValueError naming the field otherwise."""
    if config.seed < 0:
        raise ValueError(f"seed must be 0 or more, not {config.seed}")
    if config.target < 0:
        raise ValueError(f"target must be a class index (0 or more), not {config.target}")
