"""The settings ``export-fkd`` recorded for a label directory, adopted by whoever reads the labels back.

A label file stores crops as fractions of the image and the mix it drew, but not which images it holds: that is
the sampler order of ``fkd_seed``, and CutMix boxes are in pixels of ``input_size``. Reading labels at other
settings pairs them with other crops, silently. ``export_fkd`` records both twice: inside the label directory
(:data:`LABEL_RECORD`, which travels with the labels when they are copied to a training machine) and beside it
(``<out>.hello-labels/export.json``, with the full settings it resumes from; the only record of older versions).
Readers take them from there unless the caller gave them, and refuse a caller's value that contradicts the record.
Label directories without a record (SRe2L's own) keep SRe2L's defaults, with a warning naming what was assumed.
The mix needs no record: each file says whether it was mixed (its box or its mix index).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import NamedTuple, Optional

from ..errors import BadInputError, CorruptFileError, first_line
from ..files import atomic_write_json, loads_json
from .fkd import FKD_SEED

RECORD_FILE = "export.json"  # in the run folder beside the label directory
LABEL_RECORD = "hello-labels.json"  # inside the label directory


class Setting(NamedTuple):
    """One setting readers need: its default, flag, valid values and what it decides."""

    default: int  # without a record: SRe2L's
    flag: str  # the CLI flag that gives it
    valid: range  # the integers it may be
    decides: str  # what reading labels with another value changes


SETTINGS = {"fkd_seed": Setting(FKD_SEED, "--fkd-seed", range(-2 ** 63, 2 ** 64),  # what torch.manual_seed takes
                                "the sampler order: which image each label row belongs to"),
            "input_size": Setting(224, "--input-size", range(1, 2 ** 31), "the size of the crops and CutMix boxes")}


class NoRecordWarning(UserWarning):
    """A label directory read with assumed settings: it carries no record of the export that wrote it."""


def run_folder(out) -> Path:
    """``<out>.hello-labels/`` beside the label directory: the export's lock, settings record and temporaries.
    Inside ``out``, where SRe2L counts every entry as an epoch, goes only :data:`LABEL_RECORD`."""
    out = Path(out).absolute()
    return out.parent / f"{out.name}.hello-labels"


def write_label_record(out, settings: dict) -> None:
    """Record the settings readers need (:data:`SETTINGS`) inside the label directory ``out`` (its temporary in
    :func:`run_folder`, never inside ``out``)."""
    atomic_write_json(Path(out) / LABEL_RECORD, {"written_by": "hello-labels export-fkd",
                                                 "settings": {name: settings[name] for name in SETTINGS}},
                      tmp_dir=run_folder(out))


def _records(labels) -> list:
    """The record files of the label directory ``labels`` that exist: inside it first, then beside it."""
    if labels is None or not Path(labels).is_dir():
        return []
    return [p for p in (Path(labels) / LABEL_RECORD, run_folder(labels) / RECORD_FILE) if p.is_file()]


def read_record(path) -> dict:
    """The settings of one record file, each of :data:`SETTINGS` it holds checked to be an integer in range."""
    try:
        settings = loads_json(Path(path).read_bytes()).get("settings")
    except (OSError, ValueError, AttributeError) as err:
        raise CorruptFileError(f"settings record {path} is unreadable ({first_line(err)}): pass the export's "
                               f"settings yourself after removing it") from err
    if not isinstance(settings, dict):
        raise CorruptFileError(f"settings record {path} holds no settings object")
    for name, setting in SETTINGS.items():
        value, valid = settings.get(name), setting.valid
        if value is not None and (type(value) is not int or value not in valid):
            raise CorruptFileError(f"settings record {path}: {name} must be an integer in [{valid.start}, "
                                   f"{valid.stop}), got {json.dumps(value)}")
    return settings


def recorded_settings(labels) -> Optional[dict]:
    """The settings ``export_fkd`` recorded for the label directory ``labels`` (inside it or beside it); None
    without a record (or without ``labels``). Two records that disagree are refused."""
    found = [(path, read_record(path)) for path in _records(labels)]
    if not found:
        return None
    merged, source = {}, {}
    for path, record in found:
        for name, value in record.items():
            if name in SETTINGS and merged.get(name, value) != value:
                raise CorruptFileError(f"label directory {labels}: {source[name]} records {name} {merged[name]} "
                                       f"but {path} records {value}: remove the record that is wrong")
            merged.setdefault(name, value)
            source.setdefault(name, path)
    return merged


def label_settings(labels, **given) -> dict:
    """The settings to read ``labels`` (a label directory, a label file or None) with: each of ``given``
    (``fkd_seed``, ``input_size``; None: not given) as recorded by the export, else as given, else SRe2L's default.
    A given value other than the recorded one raises :class:`BadInputError` naming both; a label directory with
    no record at all read with a default warns once (:class:`NoRecordWarning`), naming what was assumed."""
    unknown = set(given) - set(SETTINGS)
    if unknown:
        raise BadInputError(f"no recorded label setting named {sorted(unknown)}; known: {sorted(SETTINGS)}")
    record = recorded_settings(labels)
    resolved, assumed = {}, []
    for name, value in given.items():
        default, flag = SETTINGS[name].default, SETTINGS[name].flag
        stored = (record or {}).get(name)
        if value is not None and stored is not None and value != stored:
            raise BadInputError(f"label directory {labels} was exported with {name} {stored} ({_records(labels)[0]}) "
                                f"but {name} {value} was given ({flag}): drop it or pass {stored}, or those labels "
                                f"pair with other crops")
        resolved[name] = value if value is not None else stored if stored is not None else default
        if value is None and stored is None:
            assumed.append(f"{flag} {default} ({SETTINGS[name].decides})")
    if record is None and assumed and labels is not None and Path(labels).is_dir():
        warnings.warn(f"label directory {labels} carries no record of its export ({LABEL_RECORD}): reading it with "
                      f"SRe2L's {' and '.join(assumed)}; if it was exported with other values pass them, or its "
                      f"labels pair with other images", NoRecordWarning, stacklevel=2)
    return resolved
