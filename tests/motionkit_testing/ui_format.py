"""UI-format workflows (what the ComfyUI frontend saves) for the tests and the demo.

:func:`ui_to_api` converts a saved workflow to the API prompt the frontend would POST to ``/prompt``,
using the server's ``/object_info``. It mirrors the frontend's ``graphToPrompt`` (ComfyUI frontend
1.27, shipped with ComfyUI v0.3.64) for plain graphs, and ``tests/test_example_workflows.py`` checks
it against the real frontend in a headless browser. Rules, as the frontend applies them:

* **Widget values** (``widgets_values``) follow the node's widget order: the widget inputs in
  ``input_order`` (required, then optional), each followed by its extra slots:

  - an INT with ``control_after_generate`` (or an INT named ``seed`` / ``noise_seed``) or a COMBO with
    ``control_after_generate`` is followed by its "control after generate" value (``fixed``,
    ``randomize``...), which is never sent to the server;
  - a node with a media-upload COMBO (``image_upload`` / ``video_upload`` / ``animated_image_upload``)
    has one "upload" button value after *all* its required widgets (the frontend appends an ``upload``
    input to ``required``).

  ``widgets_values`` saved as a dict (some custom nodes do) are read by widget name.
* **Linked inputs** become ``[source_node_id, output_slot]``; a widget that was turned into a linked
  input keeps its slot in ``widgets_values``, so the value there is skipped.
* **Frontend-only nodes** are never sent: ``Note``/``MarkdownNote`` are dropped, links through a legacy
  ``Reroute`` node are followed to their source, and an input fed by a ``PrimitiveNode`` takes the
  widget value saved on the target node (the primitive writes its value there).
* **Muted** nodes (mode 2) are dropped and inputs linked to them are left out. **Bypassed** nodes
  (mode 4) are dropped and a link from one of their outputs is followed to the bypassed node's input
  of the same type (the same slot index first, else the first input of that type).

Not supported (raises ``ValueError``): subgraphs and group nodes, and node types the server does not know.
"""
from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Iterator

MUTED, BYPASSED = 2, 4
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
MEDIA_UPLOAD = ("image_upload", "video_upload", "animated_image_upload")
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize", "increment-wrap"}
_PRIMITIVE = object()  # marker: an input fed by a frontend PrimitiveNode


def _spec(info: dict, name: str) -> tuple[Any, dict]:
    spec = {**info["input"].get("required", {}), **info["input"].get("optional", {})}[name]
    return spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})


def is_widget(kind: Any, opts: dict) -> bool:
    """Whether the frontend gives this input a widget (and so a slot in ``widgets_values``)."""
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not opts.get("forceInput", False)


def widget_slots(info: dict) -> list[tuple[str, str]]:
    """The node's ``widgets_values`` layout as ``(input_name, role)`` pairs, role being ``"value"``,
    ``"control"`` (control-after-generate) or ``"upload"`` (the upload button)."""
    slots: list[tuple[str, str]] = []
    upload = False
    order = info.get("input_order") or {k: list(v) for k, v in info["input"].items()}
    for section in ("required", "optional"):
        for name in order.get(section, []):
            kind, opts = _spec(info, name)
            if not is_widget(kind, opts):
                continue
            slots.append((name, "value"))
            is_combo = isinstance(kind, list) or kind == "COMBO"
            if (kind == "INT" and opts.get("control_after_generate", name in ("seed", "noise_seed"))) or \
                    (is_combo and opts.get("control_after_generate")):
                slots.append((name, "control"))
            if section == "required" and is_combo and any(opts.get(k) for k in MEDIA_UPLOAD):
                upload = True
        if section == "required" and upload:
            slots.append(("upload", "upload"))  # the frontend's 'upload' button widget
    return slots


def _links(workflow: dict) -> dict[int, tuple[int, int, int, int, str]]:
    """``link_id -> (origin_id, origin_slot, target_id, target_slot, type)``; list or object links."""
    out = {}
    for link in workflow.get("links") or []:
        if isinstance(link, dict):
            out[link["id"]] = (link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                               link.get("type"))
        else:
            out[link[0]] = tuple(link[1:6])
    return out


def _resolve(link_id: int | None, nodes: dict, links: dict, seen: frozenset = frozenset()):
    """The API source ``[node_id, slot]`` of a link, following reroutes and bypasses; ``None`` when
    nothing is connected (muted source, dangling link), :data:`_PRIMITIVE` for a primitive node."""
    if link_id is None or link_id not in links or link_id in seen:
        return None
    origin_id, origin_slot, _, _, link_type = links[link_id]
    origin = nodes.get(origin_id)
    if origin is None:
        return None
    seen = seen | {link_id}
    if origin["type"] == "PrimitiveNode":
        return _PRIMITIVE
    if origin["type"] == "Reroute":
        return _resolve(_input_link(origin, 0), nodes, links, seen)
    mode = origin.get("mode", 0)
    if mode == MUTED:
        return None
    if mode == BYPASSED:
        slot = _bypass_input(origin, origin_slot, link_type)
        return None if slot is None else _resolve(_input_link(origin, slot), nodes, links, seen)
    return [str(origin_id), origin_slot]


def _input_link(node: dict, slot: int) -> int | None:
    inputs = node.get("inputs") or []
    return inputs[slot].get("link") if slot < len(inputs) else None


def _bypass_input(node: dict, out_slot: int, link_type: str | None) -> int | None:
    outputs = node.get("outputs") or []
    out_type = outputs[out_slot].get("type") if out_slot < len(outputs) else link_type
    inputs = node.get("inputs") or []
    if out_slot < len(inputs) and inputs[out_slot].get("type") == out_type:
        return out_slot
    return next((i for i, slot in enumerate(inputs) if slot.get("type") == out_type), None)


def _check_supported(workflow: dict, object_info: dict) -> None:
    if (workflow.get("definitions") or {}).get("subgraphs"):
        raise ValueError("subgraphs are not supported by ui_to_api; unpack them in the frontend first")
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY or node.get("mode", 0) in (MUTED, BYPASSED):
            continue
        if node["type"] not in object_info:
            raise ValueError(f"node {node['id']} is of type {node['type']!r}, which this ComfyUI does not know "
                             "(a missing custom node, a group node or a subgraph)")


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow to an API prompt (see the module docstring for the rules)."""
    _check_supported(workflow, object_info)
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = _links(workflow)
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY or node.get("mode", 0) in (MUTED, BYPASSED):
            continue
        info = object_info[node["type"]]
        linked = {slot["name"]: _resolve(slot.get("link"), nodes, links) for slot in node.get("inputs") or []}
        values = dict(widget_values(node, info))
        inputs = {}
        order = info.get("input_order") or {k: list(v) for k, v in info["input"].items()}
        for name in order.get("required", []) + order.get("optional", []):
            source = linked.get(name)
            if source is not None and source is not _PRIMITIVE:
                inputs[name] = source
            elif name in values:
                inputs[name] = values[name]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def widget_values(node: dict, info: dict) -> Iterator[tuple[str, Any]]:
    """``(input_name, value)`` for each widget *value* slot saved on the node (control and upload
    slots are skipped)."""
    saved = node.get("widgets_values")
    if isinstance(saved, dict):
        for name, role in widget_slots(info):
            if role == "value" and name in saved:
                yield name, saved[name]
        return
    for (name, role), value in zip(widget_slots(info), saved or []):
        if role == "value":
            yield name, value


# Entries core loaders add to their file lists (VAELoader: the pixel-space and approximate TAESD decoders).
NON_FILE_ENTRIES = {"pixel_space", "taesd", "taesdxl", "taesd3", "taef1"}


def _is_file_list(options: list) -> bool:
    # Model and input-file combos list what is on *this* machine, so a saved name need not be in it.
    return not options or all(isinstance(o, str) and (PurePosixPath(o).suffix or o in NON_FILE_ENTRIES)
                              for o in options)


def widget_problems(node: dict, info: dict) -> list[str]:
    """Why a saved node's ``widgets_values`` would not load onto the node as declared now: wrong count,
    a value of the wrong type or out of range, a combo value that is not an option, or widget inputs
    saved in a different order. Empty when the node loads as saved."""
    saved = node.get("widgets_values") or []
    slots = widget_slots(info)
    where = f"node {node['id']} ({node['type']})"
    if isinstance(saved, dict):
        missing = [n for n, role in slots if role == "value" and n not in saved]
        return [f"{where}: widgets_values has no value for {missing}"] if missing else []
    problems = []
    if len(saved) != len(slots):
        problems.append(f"{where}: {len(saved)} widget values saved, the node declares {len(slots)} slots "
                        f"{[f'{n}:{r}' if r != 'value' else n for n, r in slots]}")
    for (name, role), value in zip(slots, saved):
        problem = None if role == "upload" else _value_problem(role, *_spec(info, name), value)
        if problem:
            problems.append(f"{where}, widget '{name}' ({role}) = {value!r}: {problem}")
    declared = [n for n, role in slots if role != "control"]
    saved_widget_inputs = [s["name"] for s in node.get("inputs") or [] if s.get("widget")]
    if saved_widget_inputs != [n for n in declared if n in saved_widget_inputs]:
        problems.append(f"{where}: widget inputs saved in the order {saved_widget_inputs}, declared {declared}")
    unknown = [n for n in saved_widget_inputs if n not in declared]
    if unknown:
        problems.append(f"{where}: saved widget inputs {unknown} are not declared by the node")
    return problems


def _value_problem(role: str, kind: Any, opts: dict, value: Any) -> str | None:
    if role == "control":
        return None if value in CONTROL_VALUES else f"not one of {sorted(CONTROL_VALUES)}"
    if isinstance(kind, list) or kind == "COMBO":
        options = kind if isinstance(kind, list) else opts.get("options", [])
        if not isinstance(value, str):
            return "a combo value must be a string"
        if not _is_file_list(options) and value not in options:
            return f"not one of the options {options}"
        return None
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else "expected a boolean"
    if kind == "STRING":
        return None if isinstance(value, str) else "expected a string"
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number ({kind})"
        if kind == "INT" and value != int(value):
            return "expected an integer"
        lo, hi = opts.get("min", float("-inf")), opts.get("max", float("inf"))
        return None if lo <= value <= hi else f"outside [{lo}, {hi}]"
    return None
