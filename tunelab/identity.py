"""A study is one question: what identifies it, and what may change when it is resumed.

A study's trials are comparable only while they answer the same question: the same data
(content and splits), model or family set, search space, objective, image size, colour
mode, cross-validation and engine. ``tune`` records that identity in the study's
``tunelab.identity`` user attribute when it creates the study and compares it, before
anything is written to either store, whenever it resumes one:

- keys the user did not set take the stored values (``merge_stored``), so a later change
  of tunelab's defaults never alters an existing study;
- an identity difference is refused, naming each one (stored vs new), unless the user
  accepts it (``--accept-change KEY``); an accepted change is recorded in the study's
  ``tunelab.accepted_changes`` attribute and on its parent run;
- budgets and where things run or are stored (``ALLOWED_ON_RESUME``) may change, with a
  one-line notice; any other key is refused like an identity difference.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from tunelab.config import ConfigError, StudyConfig

IDENTITY_ATTR = "tunelab.identity"
ACCEPTED_ATTR = "tunelab.accepted_changes"
IDENTITY_VERSION = 1
#: config keys (and their sub-keys) a resumed study may change; each gets a notice
ALLOWED_ON_RESUME = ("n_trials", "timeout", "max_epochs", "workers", "trials_per_process",
                     "overlap_recycle", "tracking", "tracking_uri", "storage", "checkpoints",
                     "tensorboard")
#: budgets of one invocation, never taken from the stored config: a resume without
#: ``--timeout`` runs without one, whatever the run that created the study was given
PER_INVOCATION = ("timeout",)
#: dataset keys that decide which images, splits and class names a study sees: the data
#: fingerprint judges them (a moved file with the same content is the same data)
DATA_KEYS = ("dataset.source", "dataset.validation_fraction", "dataset.test_fraction",
             "dataset.label_pattern", "dataset.labels_csv", "dataset.group_pattern",
             "dataset.skip_bad_images", "dataset.max_image_pixels", "dataset.class_names")
#: config keys the identity compares (so the key-by-key comparison skips them)
IDENTITY_KEYS = ("model", "space", "objective.metric", "objective.direction",
                 "objective.kind", "dataset.image_size", "dataset.color_mode",
                 "dataset.cv_folds", "engine")
#: the top-level keys that are sections of keys (merged key by key on resume)
_HINTS = typing.get_type_hints(StudyConfig)
SECTIONS = tuple(name for name, hint in _HINTS.items() if dataclasses.is_dataclass(hint))
_ABSENT = object()


# -- what identifies a study ---------------------------------------------------------------
def config_identity(config: StudyConfig) -> dict[str, Any]:
    """Everything of the identity that the config alone decides."""
    space = config.search_space
    families = space.families() if hasattr(space, "families") else [config.model]
    dims = {k: v for k, v in space.to_yaml().items() if k != "model"}
    return {"version": IDENTITY_VERSION, "model": list(families),
            "space": yaml.safe_dump(dims, sort_keys=True),
            "objective": {"metric": config.objective.metric, "direction": config.direction,
                          "kind": config.objective.kind},
            "image_size": config.dataset.image_size, "color_mode": config.dataset.color_mode,
            "cv_folds": config.dataset.folds, "engine": config.engine}


def data_identity(config: StudyConfig, data) -> dict[str, Any]:
    """The data a study sees: content hash of every split (images, labels, class names) and
    the split sizes."""
    return {"fingerprint": data.fingerprint(), "name": data.name,
            "source": config.dataset.source, "classes": list(data.class_names),
            "splits": {"train": len(data.train), "val": len(data.val),
                       "test": len(data.test) if data.test is not None else 0}}


def study_identity(config: StudyConfig, data) -> dict[str, Any]:
    return {**config_identity(config), "data": data_identity(config, data)}


# -- resuming: stored values for the keys the user did not set ----------------------------
def merge_stored(stored: Mapping[str, Any], user: Mapping[str, Any], *, study_name: str,
                 storage: str | None) -> dict[str, Any]:
    """The stored config with only the keys the user set (``user``) on top. ``space``,
    ``warm_start`` and ``model`` are values, replaced whole; sections merge key by key."""
    merged = copy.deepcopy(dict(stored))
    for key in PER_INVOCATION:  # `tune --timeout 60` once must not cap every later resume
        merged.pop(key, None)
    for key, value in user.items():
        if (key in SECTIONS and isinstance(value, Mapping)
                and isinstance(merged.get(key), Mapping)):
            merged[key] = {**merged[key], **value}
        elif key == "model":
            merged["model"] = value
            space = merged.get("space")
            if "space" not in user and isinstance(space, Mapping) and "model" in space:
                # the stored family search gives way to the model(s) named now; per-family
                # sub-spaces of families no longer searched go with it
                old = space["model"] if isinstance(space["model"], list) else [space["model"]]
                keep = set(value) if isinstance(value, list) else set()
                merged["space"] = {k: v for k, v in space.items()
                                   if k != "model" and (k not in old or k in keep)}
        else:
            merged[key] = value
    merged["study_name"] = study_name
    merged["storage"] = storage  # where the study was found
    return merged


# -- comparing ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    key: str
    stored: Any
    new: Any

    def line(self) -> str:
        return f"{self.key}: stored {_show(self.stored)} vs new {_show(self.new)}"

    def short(self) -> str:
        return f"{self.key} {_show(self.stored)} -> {_show(self.new)}"

    def record(self) -> dict[str, Any]:
        return {"key": self.key, "stored": _jsonable(self.stored), "new": _jsonable(self.new)}


@dataclass
class ResumeCheck:
    """The outcome of comparing a resumed study with the new config."""

    refused: list[Change] = field(default_factory=list)
    accepted: list[Change] = field(default_factory=list)
    allowed: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unused_accepts: list[str] = field(default_factory=list)


def check_accept_keys(keys: Iterable[str]) -> list[str]:
    """``--accept-change`` names: ``data``, a config key or section, or ``space.<name>``."""
    keys = [keys] if isinstance(keys, str) else [str(k) for k in keys]
    for key in keys:
        head, _, rest = key.partition(".")
        if key == "data" or head == "space":
            continue
        if head in SECTIONS and (not rest or rest in _section_fields(head)):
            continue
        if head in _HINTS and not rest:
            continue
        raise ConfigError(f"--accept-change: {key!r} is not a study key; name one the refusal "
                          "listed: data, model, space (or space.<name>), objective.metric, "
                          "dataset.image_size, engine, seed, ...")
    return keys


def compare(stored_raw: Mapping[str, Any], stored_identity: Mapping[str, Any] | None,
            config: StudyConfig, identity: Mapping[str, Any],
            accept: Sequence[str] = ()) -> ResumeCheck:
    """Every difference between a stored study and the new config, sorted into refused,
    accepted (refused but named by ``accept``) and allowed on resume."""
    check = ResumeCheck()
    if stored_identity is None:  # a study made before identities were recorded
        from tunelab.config import config_from_dict

        try:
            stored_identity = config_identity(config_from_dict(stored_raw))
        except ConfigError:
            stored_identity = {}
        check.notes.append("it was made before tunelab recorded a study's identity, so its "
                           "data cannot be compared with the earlier trials' (the identity "
                           "is recorded now)")
    changes: list[Change] = []
    stored_flat = _flatten(stored_raw)
    new_flat = _flatten(json.loads(json.dumps(config.to_dict(), default=str)))
    data_keys_changed = [Change(k, stored_flat[k], new_flat.get(k)) for k in DATA_KEYS
                         if k in stored_flat and stored_flat[k] != new_flat.get(k)]
    changes += _identity_changes(stored_identity, identity, data_keys_changed)
    if "data" not in stored_identity:  # no fingerprint to judge by: the keys decide
        changes += data_keys_changed
    elif not any(c.key == "data" for c in changes):
        check.allowed += data_keys_changed  # same images and splits: the data did not change
    by_identity = IDENTITY_KEYS if stored_identity else ()  # else compared key by key
    for key, before in stored_flat.items():
        if key == "study_name" or key in DATA_KEYS or _under(key, by_identity):
            continue
        after = new_flat.get(key, _ABSENT)
        if after is _ABSENT or after == before:
            continue
        change = Change(key, before, after)
        (check.allowed if _under(key, ALLOWED_ON_RESUME) else changes).append(change)
    used = set()
    for change in changes:
        by = [k for k in accept if _under(change.key, (k,))]
        used.update(by)
        (check.accepted if by else check.refused).append(change)
    check.unused_accepts = [k for k in accept if k not in used]
    return check


def _identity_changes(stored: Mapping[str, Any], new: Mapping[str, Any],
                      data_keys_changed: list[Change]) -> list[Change]:
    out = []
    before, after = stored.get("data"), new.get("data")
    if before and after and (before.get("fingerprint") != after.get("fingerprint")
                             or before.get("splits") != after.get("splits")):
        why = ", ".join(c.short() for c in data_keys_changed)
        out.append(Change("data", _DataShown(before), _DataShown(after, why)))
    if "model" in stored and stored["model"] != new["model"]:
        out.append(Change("model", _one_or_list(stored["model"]), _one_or_list(new["model"])))
    if "space" in stored:
        old_dims = _flatten_space(yaml.safe_load(stored["space"]) or {})
        new_dims = _flatten_space(yaml.safe_load(new["space"]) or {})
        for name in sorted(set(old_dims) | set(new_dims), key=lambda n: (n not in old_dims, n)):
            a, b = old_dims.get(name, _ABSENT), new_dims.get(name, _ABSENT)
            if a != b:
                out.append(Change(f"space.{name}", a, b))
    for part in ("metric", "direction", "kind"):
        a = (stored.get("objective") or {}).get(part, _ABSENT)
        if a is not _ABSENT and a != new["objective"][part]:
            out.append(Change(f"objective.{part}", a, new["objective"][part]))
    for key in ("image_size", "color_mode", "cv_folds"):
        if key in stored and stored[key] != new[key]:
            out.append(Change(f"dataset.{key}", stored[key], new[key]))
    if "engine" in stored and stored["engine"] != new["engine"]:
        out.append(Change("engine", stored["engine"], new["engine"]))
    return out


def refusal(study_name: str, storage: str, n_trials: int, check: ResumeCheck) -> ConfigError:
    lines = "\n".join(f"  {c.line()}" for c in check.refused)
    flags = " ".join(f"--accept-change {k}" for k in dict.fromkeys(
        c.key.split(".")[0] if c.key.startswith("space.") else c.key for c in check.refused))
    return ConfigError(
        f"study {study_name!r} in {storage} already holds {n_trials} trial(s) that answer "
        f"another question; resuming it with this config would mix their results:\n{lines}\n"
        "Start a new study instead: another study_name (without one, the name follows the "
        "dataset and the model). If the change is intended, resume with "
        f"{flags} (in Python: tune(..., accept_changes=[...])); it is recorded in the study "
        "and on its parent run.")


def resume_line(study_name: str, n_trials: int, check: ResumeCheck) -> str | None:
    """The one line (for stdout) of a resume that changes only what may change: budgets,
    where things run or are stored."""
    if not check.allowed:
        return None
    return (f"tunelab: resuming study {study_name!r} ({n_trials} trial(s)) with changes "
            "allowed on resume: " + "; ".join(c.short() for c in check.allowed))


def notice(study_name: str, n_trials: int, check: ResumeCheck) -> list[str]:
    """The lines (for stderr) that ``tune`` warns with when a resume goes ahead: notes,
    accepted identity changes, unused ``--accept-change`` flags."""
    lines = []
    for note in check.notes:
        lines.append(f"tunelab: study {study_name!r}: {note}")
    if check.accepted:
        lines.append(f"tunelab: study {study_name!r}: accepted change(s) "
                     + "; ".join(c.short() for c in check.accepted)
                     + f" (recorded in its {ACCEPTED_ATTR} and on its parent run)")
    for key in check.unused_accepts:
        lines.append(f"tunelab: --accept-change {key}: nothing of that changed")
    return lines


def accepted_records(check: ResumeCheck, n_trials: int) -> list[dict[str, Any]]:
    when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return [{**c.record(), "at": when, "trials_before": n_trials} for c in check.accepted]


def accepted_tags(check: ResumeCheck) -> dict[str, str]:
    """Parent-run tags: ``tunelab.accepted.<key>`` = ``stored -> new``."""
    return {f"tunelab.accepted.{c.key}": f"{_show(c.stored)} -> {_show(c.new)}"[:4000]
            for c in check.accepted}


# -- helpers ------------------------------------------------------------------------------
class _DataShown:
    """How a data identity reads in a message: name, source, fingerprint, split sizes."""

    def __init__(self, data: Mapping[str, Any], why: str = ""):
        self.data, self.why = dict(data), why

    def __str__(self) -> str:
        s = self.data.get("splits") or {}
        text = (f"{self.data.get('name')} ({self.data.get('source')}; fingerprint "
                f"{self.data.get('fingerprint')}; {s.get('train')} train / {s.get('val')} "
                f"validation / {s.get('test')} test images)")
        return text + (f" [changed: {self.why}]" if self.why else "")


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    if isinstance(value, _DataShown):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return repr(value)
    text = yaml.safe_dump(_jsonable(value), default_flow_style=True, width=10**6).strip()
    return text if len(text) <= 300 else text[:297] + "..."


def _jsonable(value: Any) -> Any:
    if value is _ABSENT:
        return None
    if isinstance(value, _DataShown):
        return value.data
    return json.loads(json.dumps(value, default=str))


def _one_or_list(models: Sequence[str]) -> Any:
    return models[0] if len(models) == 1 else list(models)


def _under(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _flatten(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``{dataset: {source: x}}`` -> ``{"dataset.source": x}``; only sections are opened
    (``space`` and ``warm_start`` are values)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECTIONS and isinstance(value, Mapping):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _flatten_space(space: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    from tunelab.search.space import RANGE_KEYS

    out: dict[str, Any] = {}
    for name, value in space.items():
        if isinstance(value, Mapping) and not set(value) <= RANGE_KEYS:
            out.update(_flatten_space(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def _section_fields(section: str) -> set[str]:
    return {f.name for f in dataclasses.fields(_HINTS[section])}
