"""The settings ``export-fkd`` recorded beside a label directory, adopted by whoever reads the labels back.

A label file stores crops as fractions of the image and the mix it drew, but not which images it holds: that is
the sampler order of ``fkd_seed``, and CutMix boxes are in pixels of ``input_size``. Reading labels at other
settings pairs them with other crops, silently. ``export_fkd`` writes both into ``<out>.hello-labels/export.json``
; readers take them from there unless the caller gave them, and
refuse a caller's value that contradicts the record. Label files without a record (SRe2L's own) keep SRe2L's
defaults. The mix needs no record: each file says whether it was mixed (its box or its mix index).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import BadInputError, CorruptFileError, first_line
from ..files import loads_json
from .export import RECORD_FILE, run_folder
from .fkd import FKD_SEED

# setting -> (default without a record, the CLI flag that gives it)
SETTINGS = {"fkd_seed": (FKD_SEED, "--fkd-seed"), "input_size": (224, "--input-size")}


def record_path(labels) -> Path:
    """``<labels>.hello-labels/export.json``, where :func:`hello_labels.labels.export.export_fkd` records."""
    return run_folder(labels) / RECORD_FILE


def recorded_settings(labels) -> Optional[dict]:
    """The settings ``export_fkd`` recorded for the label directory ``labels``; None without a record (or
    without ``labels``)."""
    if labels is None or not Path(labels).is_dir():
        return None
    path = record_path(labels)
    if not path.is_file():
        return None
    try:
        settings = loads_json(path.read_bytes()).get("settings")
    except (OSError, ValueError, AttributeError) as err:
        raise CorruptFileError(f"settings record {path} is unreadable ({first_line(err)}): pass the export's "
                               f"settings yourself after removing it") from err
    if not isinstance(settings, dict):
        raise CorruptFileError(f"settings record {path} holds no settings object")
    return settings


def label_settings(labels, **given) -> dict:
    """The settings to read ``labels`` (a label directory, a label file or None) with: each of ``given``
    (``fkd_seed``, ``input_size``; None: not given) as recorded by the export, else as given, else SRe2L's default.
    A given value other than the recorded one raises :class:`BadInputError` naming both."""
    unknown = set(given) - set(SETTINGS)
    if unknown:
        raise BadInputError(f"no recorded label setting named {sorted(unknown)}; known: {sorted(SETTINGS)}")
    record = recorded_settings(labels) or {}
    resolved = {}
    for name, value in given.items():
        default, flag = SETTINGS[name]
        stored = record.get(name)
        if value is not None and stored is not None and value != stored:
            raise BadInputError(f"label directory {labels} was exported with {name} {stored} ({record_path(labels)}) "
                                f"but {name} {value} was given ({flag}): drop it or pass {stored}, or those labels "
                                f"pair with other crops")
        resolved[name] = value if value is not None else stored if stored is not None else default
    return resolved
