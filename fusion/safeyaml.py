"""Reading the YAML files users hand us (experiment files, demo settings, registrations, rigs) safely.

``yaml.safe_load`` builds no Python objects, but it still accepts three things that hurt later: duplicate keys
(the last one silently wins), aliases that expand exponentially (a kilobyte of ``&a [*b, *b, ...]`` is gigabytes
once anything walks it), and nesting deep enough to overflow the stack. :func:`load_yaml` refuses each of them in
one line naming the file, before anything is built from the document.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import ValidationError

from fusion.errors import RgbtError, short

MAX_BYTES = 1 << 20  # settings files are a few KB; a larger one is not a settings file
MAX_NODES = 100_000  # scalars, lists and mappings once every alias is expanded
MAX_DEPTH = 32  # nesting of lists and mappings


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                dup = key in seen
            except TypeError:  # an unhashable key (a list as a key): the base class reports it
                break
            if dup:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _expanded_size(root: yaml.Node) -> tuple[int, int]:
    """Nodes and depth of the document with every alias expanded, computed without expanding it (aliases are
    shared nodes: each node's size is counted once and reused); (-1, -1) when an alias contains itself."""
    sizes: dict[int, tuple[int, int]] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if not done:
            if key in sizes:
                continue
            if key in on_path:  # a recursive alias: infinitely large
                return -1, -1
            on_path.add(key)
            if len(on_path) > MAX_DEPTH:
                return 1, MAX_DEPTH + 1
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        on_path.discard(key)
        n = 1 + sum(sizes[id(c)][0] for c in children)
        d = 1 + max((sizes[id(c)][1] for c in children), default=0)
        sizes[key] = (min(n, MAX_NODES + 1), d)
    return sizes[id(root)]


def load_yaml(path: str | Path, what: str = "file") -> object:
    """Parse a YAML file a user handed us.

    Args:
        path: the file.
        what: what it is, for messages (``experiment file``, ``registration``).

    Returns:
        The document (``None`` for an empty file).

    Raises:
        RgbtError: missing or unreadable file, invalid YAML, a duplicate key, more than :data:`MAX_NODES` nodes once
            aliases are expanded, nesting deeper than :data:`MAX_DEPTH`, or a file over :data:`MAX_BYTES`.
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise RgbtError(f"{short(path)}: {path.stat().st_size:,} bytes is too large for a {what}; check the path")
        text = path.read_text()
    except FileNotFoundError:
        raise RgbtError(f"{short(path)}: no such {what}") from None
    except IsADirectoryError:
        raise RgbtError(f"{short(path)} is a folder; give the {what} itself") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RgbtError(f"{short(path)}: cannot read this {what} ({type(e).__name__}); check the file") from None
    try:
        node = yaml.compose(text, Loader=_Loader)
        if node is None:
            return None
        size, depth = _expanded_size(node)
        if size < 0:
            raise RgbtError(f"{short(path)}: an alias (*name) contains itself; write the values out")
        if depth > MAX_DEPTH:
            raise RgbtError(f"{short(path)}: nested deeper than {MAX_DEPTH} levels; a {what} is flat, fix the file")
        if size > MAX_NODES:
            raise RgbtError(
                f"{short(path)}: its aliases (*name) expand to more than {MAX_NODES:,} values; write the values out"
            )
        loader = _Loader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        first = " ".join(str(e).split())[:160]
        raise RgbtError(f"{short(path)}: not valid YAML ({first}); fix the file") from None
    except RecursionError:
        raise RgbtError(f"{short(path)}: nested too deeply; a {what} is flat, fix the file") from None


def validation_line(path: str | Path, e: ValidationError, hint: str) -> str:
    """The first problem pydantic found in the file ``path``, in one line naming the key and the fix (``hint``:
    where examples are)."""
    err = e.errors(include_url=False)[0]
    tag = re.compile(r"^[A-Z]|\[|^constrained-|^function-")  # union members' names, not keys of the file
    loc = [str(x) for x in err["loc"] if not (isinstance(x, str) and tag.search(x))]
    where = ".".join(loc) or "the file"
    if err["type"] == "extra_forbidden":
        return f"{short(path)}: unknown key '{loc[-1]}' in {'.'.join(loc[:-1]) or 'the file'}; remove or fix it"
    if err["type"] == "missing":
        return f"{short(path)}: '{where}' is missing; add it ({hint})"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "string_pattern_mismatch":
        folder = "/" in err.get("ctx", {}).get("pattern", "")  # a name that becomes a folder
        msg = "must be a plain name without / or \\ (it names a folder)" if folder else "must be one line of text"
    got = f" (got {err['input']!r})" if err["type"] not in ("value_error",) and len(repr(err["input"])) < 60 else ""
    return f"{short(path)}: {where + ': ' if loc else ''}{msg}{got}; fix the file"
