"""Settings dataclasses as command-line flags: a field's ``metadata`` describes its flag, so a new setting is one
field (the pattern of transformers' ``HfArgumentParser``). Torch-free: ``--help`` runs without torch.

A field with ``help`` in its metadata gets a flag ``--field-name`` (``flag`` names another, ``aliases`` adds short
ones such as ``-T``), typed as its default (or by ``type``), with its ``choices``, ``required`` if so marked (a
field whose default, None, the library refuses); a bool field that defaults to True is switched off by its flag
(``flag="--no-calibrate"``). Where the choices include ``"none"``, that spelling is the
setting's None. Fields without ``help`` have no flag."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Dict, Optional

NONE = "none"  # how a flag spells a setting's None


def option(default: Any, help: str, **flag) -> Any:
    """A dataclass field and its flag: ``flag``, ``aliases``, ``choices``, ``type``, ``required`` (see the module
    docstring)."""
    return dataclasses.field(default=default, metadata={"help": help, **flag})


def fraction(text: str) -> float:
    """A flag type: ``0.03`` or ``8/255``."""
    top, _, bottom = text.partition("/")
    try:
        return float(top) / float(bottom) if bottom else float(top)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number or a fraction like 8/255, got {text!r}") from None


def flag_name(f: dataclasses.Field) -> str:
    """The flag :func:`add_options` gives the field ``f``: its ``flag``, else ``--field-name``."""
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def add_options(group, cls, helps: Optional[Dict[str, str]] = None, defaults: Optional[Dict[str, Any]] = None) -> None:
    """Add the flags of the dataclass ``cls``'s fields to ``group`` (a parser or argument group), in field order;
    ``helps`` / ``defaults`` replace a field's help text / default for this verb."""
    helps, defaults = helps or {}, defaults or {}
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        meta, own = f.metadata, f.default  # option() gives every flagged field a plain default
        default = defaults.get(f.name, own)
        name = flag_name(f)
        kwargs = {"dest": f.name, "help": helps.get(f.name, meta["help"])}
        if meta.get("required"):
            kwargs["required"] = True
        choices = meta.get("choices")
        if isinstance(own, bool):  # a switch; one that turns a True default off shows no default (its help says)
            kwargs["action"] = "store_false" if own else "store_true"
            if own:
                kwargs["default"] = argparse.SUPPRESS
        elif choices:
            kwargs.update(default=NONE if default is None and NONE in choices else default, choices=choices)
        else:
            kwargs.update(default=default, type=meta.get("type", str if own is None else type(own)),
                          metavar=name.lstrip("-").replace("-", "_").upper())
        group.add_argument(*meta.get("aliases", ()), name, **kwargs)


def flag_values(cls, args: argparse.Namespace) -> Dict[str, Any]:
    """The values of ``cls``'s flags :func:`add_options` made, parsed, by field name (``"none"`` read as None; a
    switch left alone is absent)."""
    values = {}
    for f in dataclasses.fields(cls):
        if "help" in f.metadata and hasattr(args, f.name):
            value = getattr(args, f.name)
            values[f.name] = None if value == NONE and NONE in f.metadata.get("choices", ()) else value
    return values


def changed_flags(cls, args: argparse.Namespace, defaults: Optional[Dict[str, Any]] = None) -> list:
    """The flags of ``cls``'s fields (:func:`add_options`, ``defaults`` as given there) whose parsed value is not
    their default: the ones a user set."""
    defaults, values = defaults or {}, flag_values(cls, args)
    return [flag_name(f) for f in dataclasses.fields(cls)
            if f.name in values and values[f.name] != defaults.get(f.name, f.default)]


def options_from(cls, args: argparse.Namespace, **changes):
    """An instance of ``cls`` from the flags :func:`add_options` made, parsed (fields without a flag, or a switch
    left alone, keep their defaults), with ``changes``."""
    return cls(**{**flag_values(cls, args), **changes})
