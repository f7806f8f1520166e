"""JSON for stored values at any nesting depth: the log, read-model rows, snapshots, history.

Why not pydantic's JSON or the eventsourcing transcoder alone (measured, pydantic-core
2.50, Python 3.11):
- `model_dump(mode="json")` / `model_dump_json()` stop at ~255 levels ("Maximum
  serialization depth exceeded"); `model_validate_json()` stops at 200 ("recursion
  limit exceeded"). A payload the log had accepted at depth 200 made every start fail.
- `json.dumps` / `json.loads` recurse in C against `sys.getrecursionlimit()` (1000),
  so whether a value at depth ~950 passes depends on the caller's stack.
- eventsourcing's `JSONTranscoder` decodes every object of exactly the keys
  `_type_` and `_data_` as a registered custom type: a payload holding
  `{"_type_": "x", "_data_": 1}` was stored fine and then made the log unreadable.

So every function here takes the fast path first and falls back only when it hits a
depth limit: `to_plain` / `model_json` / `validate_json` are pydantic's own calls,
retried with the free-JSON fields (annotated `dict[str, Any]`) kept out of pydantic's
hands; `dumps` / `loads` are the C `json` module, retried with the iterative coder
below (which also writes a non-finite float as `null`, as pydantic does). The log uses
`PlainJSONTranscoder`: plain JSON both ways, no custom types. Typical rows and
histories cost what pydantic costs; only deep values pay for the fallback.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any, TypeVar

from eventsourcing.persistence import Transcoder
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
_DEEP = (ValueError, RecursionError)  # pydantic-core: "Maximum serialization depth exceeded"
_Scan = Callable[[str, int], tuple[str, int]]
_scanstring: _Scan = json.decoder.scanstring  # type: ignore[attr-defined]  # C, untyped
FREE_JSON = dict[str, Any]  # the annotation of fields that hold client-supplied JSON
_SPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"(-?(?:0|[1-9]\d*))(\.\d+)?([eE][-+]?\d+)?")
_LITERALS = {"null": None, "true": True, "false": False, "NaN": math.nan,
             "Infinity": math.inf, "-Infinity": -math.inf}  # fmt: skip


def to_plain(model: BaseModel) -> dict[str, Any]:
    """`model.model_dump(mode="json", by_alias=True)`, at any depth."""
    try:
        return model.model_dump(mode="json", by_alias=True)
    except _DEEP:
        return _split_plain(model)


def model_json(model: BaseModel, indent: int | None = None) -> str:
    """`model.model_dump_json(by_alias=True, indent=indent)`, at any depth."""
    try:
        return model.model_dump_json(by_alias=True, indent=indent)
    except _DEEP:
        return dumps(_split_plain(model), indent)


def validate_json(model: type[M], text: str | bytes) -> M:
    """`model.model_validate_json(text)`, at any depth (raises on anything unusable)."""
    try:
        return model.model_validate_json(text)
    except ValidationError:  # too deep for pydantic's parser, or invalid: try it again
        return model.model_validate(loads(text))


def _split_plain(model: BaseModel) -> dict[str, Any]:
    """to_plain with the free-JSON fields copied as they are, never given to pydantic.

    Nested models and lists of models are converted with to_plain; key order is kept.
    """
    fields = type(model).model_fields
    special: dict[str, Any] = {}
    for name, field in fields.items():
        value = getattr(model, name)
        if field.annotation == FREE_JSON:
            special[name] = value
        elif isinstance(value, BaseModel):
            special[name] = to_plain(value)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            special[name] = [to_plain(item) for item in value]
    dumped = model.model_dump(mode="json", by_alias=True, exclude=set(special))
    out: dict[str, Any] = {}
    for name, field in fields.items():
        key = field.serialization_alias or field.alias or name
        if name in special:
            out[key] = special[name]
        elif key in dumped:
            out[key] = dumped[key]
    return out


def dumps(value: Any, indent: int | None = None) -> str:
    """JSON of a plain value (dict, list, str, int, float, bool, None), any depth.

    Compact, or with `indent` spaces per level (as `json.dumps(indent=...)` writes it).
    """
    try:
        if indent is None:
            return _compact(value)
        return _encoder(indent).encode(value)
    except (RecursionError, ValueError):
        return _dumps_iterative(value, indent)


def _encoder(indent: int | None) -> json.JSONEncoder:
    separators = (",", ":") if indent is None else (",", ": ")
    return json.JSONEncoder(
        ensure_ascii=False, separators=separators, allow_nan=False, indent=indent
    )


_COMPACT = _encoder(None)
_c_make_encoder: Callable[..., Callable[[Any, int], list[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)


def _compact_encoder() -> Callable[[Any], str]:
    """`_COMPACT.encode` without its set-up on every call: the C encoder `json` builds
    for each call, built once. It keeps no marks of the containers it is in (they
    would be shared by every thread), so a cycle ends at the recursion limit instead of
    "Circular reference detected", and `dumps` hands it to the iterative coder, which
    names the cycle as before. The same text otherwise: the same C encoder and options.
    """
    if _c_make_encoder is None:  # a Python without the C accelerator
        return _COMPACT.encode
    c_encode = _c_make_encoder(
        None, _COMPACT.default, encode_basestring, None, ":", ",", False, False, False
    )
    return lambda value: "".join(c_encode(value, 0))


_compact = _compact_encoder()


def loads(text: str | bytes) -> Any:
    """The value of a JSON document, any depth."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        return json.loads(text)
    except RecursionError:
        return _loads_iterative(text)


class PlainJSONTranscoder(Transcoder):
    """The log's transcoder: plain JSON both ways (no `_type_` objects), any depth."""

    def encode(self, obj: Any) -> bytes:
        return dumps(obj).encode("utf-8")

    def decode(self, data: bytes) -> Any:
        return loads(data)


class _Text(str):
    """Text to write as it is; a closing bracket also ends its container's cycle guard."""

    owner = -1


def _dumps_iterative(value: Any, indent: int | None) -> str:
    parts: list[str] = []
    todo: list[Any] = [(value, 0)]  # (value, depth) pairs and _Text to write as it is
    active: set[int] = set()  # containers being written: a cycle is an error, not a hang
    colon = ":" if indent is None else ": "

    def newline(depth: int) -> str:
        return "" if indent is None else "\n" + " " * (indent * depth)

    while todo:
        item = todo.pop()
        if isinstance(item, _Text):
            parts.append(item)
            active.discard(item.owner)
            continue
        item, depth = item
        if not isinstance(item, dict | list | tuple):
            parts.append(_scalar(item))
            continue
        if id(item) in active:
            raise ValueError("circular reference detected")
        is_dict = isinstance(item, dict)
        pairs = list(item.items() if isinstance(item, dict) else enumerate(item))
        if not pairs:
            parts.append("{}" if is_dict else "[]")
            continue
        active.add(id(item))
        close = _Text(newline(depth) + ("}" if is_dict else "]"))
        close.owner = id(item)
        todo.append(close)
        for n in range(len(pairs) - 1, -1, -1):
            key, child = pairs[n]
            todo.append((child, depth + 1))
            lead = ("," if n else "") + newline(depth + 1)
            if is_dict:
                if not isinstance(key, str):
                    raise TypeError(f"keys must be str, not {type(key).__name__}")
                lead += encode_basestring(key) + colon
            todo.append(_Text(lead))
        parts.append("{" if is_dict else "[")
    return "".join(parts)


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return encode_basestring(value)
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return float.__repr__(value) if math.isfinite(value) else "null"
    raise TypeError(f"{type(value).__name__} is not a plain JSON value")


def _loads_iterative(s: str) -> Any:
    """A JSON parser with an explicit stack (what `json.loads` accepts, at any depth)."""
    open_: list[dict[str, Any] | list[Any]] = []
    keys: list[str] = []  # the pending key of each open dict
    i = _skip(s, 0)
    while True:
        c = s[i : i + 1]
        value: Any
        if c in ("{", "["):
            i = _skip(s, i + 1)
            if s.startswith("}" if c == "{" else "]", i):
                value, i = ({} if c == "{" else []), i + 1
            else:
                open_.append({} if c == "{" else [])
                if c == "{":
                    key, i = _key(s, i)
                    keys.append(key)
                continue
        else:
            value, i = _scalar_at(s, i)
        while True:  # attach the value; close every container that ends here
            if not open_:
                end = _skip(s, i)
                if end != len(s):
                    raise ValueError(f"extra data at character {end}")
                return value
            top = open_[-1]
            if isinstance(top, list):
                top.append(value)
            else:
                top[keys[-1]] = value
            i = _skip(s, i)
            if s.startswith(",", i):
                i = _skip(s, i + 1)
                if isinstance(top, dict):
                    keys[-1], i = _key(s, i)
                break
            closer = "]" if isinstance(top, list) else "}"
            if not s.startswith(closer, i):
                raise ValueError(f"expected ',' or {closer!r} at character {i}")
            i += 1
            value = open_.pop()
            if isinstance(value, dict):
                keys.pop()


def _skip(s: str, i: int) -> int:
    """The index of the first non-whitespace character at or after `i` (a regex scan:
    deep values stored indented carry long runs of spaces)."""
    match = _SPACE.match(s, i)
    return match.end() if match else i


def _key(s: str, i: int) -> tuple[str, int]:
    if not s.startswith('"', i):
        raise ValueError(f"expected a property name at character {i}")
    key, i = _scanstring(s, i + 1)
    i = _skip(s, i)
    if not s.startswith(":", i):
        raise ValueError(f"expected ':' at character {i}")
    return key, _skip(s, i + 1)


def _scalar_at(s: str, i: int) -> tuple[Any, int]:
    if s.startswith('"', i):
        return _scanstring(s, i + 1)
    for word, value in _LITERALS.items():
        if s.startswith(word, i):
            return value, i + len(word)
    number = _NUMBER.match(s, i)
    if number is None:
        raise ValueError(f"expected a value at character {i}")
    whole, frac, exp = number.groups()
    if frac or exp:
        return float(whole + (frac or "") + (exp or "")), number.end()
    return int(whole), number.end()
