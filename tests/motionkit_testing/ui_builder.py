"""Build UI-format workflows (what the frontend saves) from a compact spec and the server's /object_info,
so example workflows are written with exactly the widget layout ``ui_format`` and the frontend expect."""
from __future__ import annotations

import uuid
from typing import Any

from .ui_format import FRONTEND_ONLY, widget_slots

Ref = tuple  # ("ref", node_id, output_slot)


def ref(node_id: int, slot: int = 0) -> Ref:
    return ("ref", node_id, slot)


def build_workflow(spec: list[dict], object_info: dict) -> dict:
    """``spec``: dicts with ``id``, ``type``, ``pos`` and ``inputs`` (widget values, or :func:`ref` links);
    optional ``size``, ``properties``, ``widgets_values`` (for frontend-only notes), ``control`` (the
    control-after-generate value, default "fixed").

    The result is the same on every supported host: a core output node's trailing outputs are written only
    when linked (v0.33.0's save and preview nodes gained a pass-through output that v0.3.64's lack; the
    frontends that know it add it from the node definition when loading)."""
    nodes, links = [], []
    outputs_links: dict[tuple[int, int], list[int]] = {}
    by_id = {n["id"]: n for n in spec}
    for order, item in enumerate(spec):
        node: dict[str, Any] = {"id": item["id"], "type": item["type"], "pos": list(item["pos"]),
                                "size": list(item.get("size", (320, 160))), "flags": {}, "order": order,
                                "mode": 0, "inputs": [], "outputs": [],
                                "properties": {"Node name for S&R": item["type"], **item.get("properties", {})}}
        if item["type"] in FRONTEND_ONLY:
            node["properties"] = item.get("properties", {})
            node["widgets_values"] = item.get("widgets_values", [])
            nodes.append(node)
            continue
        info = object_info[item["type"]]
        spec_inputs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        optional = set(info["input"].get("optional", {}))
        widgets = [name for name, role in widget_slots(info) if role == "value"]
        values = []
        for name, role in widget_slots(info):
            if role == "value":
                v = item["inputs"].get(name)
                # a linked widget input keeps its widget's value (the default) in widgets_values, as the frontend
                opts = spec_inputs[name][1] if len(spec_inputs[name]) > 1 and isinstance(spec_inputs[name][1], dict) else {}
                values.append(opts.get("default") if isinstance(v, tuple) else v)
            elif role == "control":
                values.append(item.get("control", "fixed"))
            else:
                values.append("image")
        order_names = info["input_order"].get("required", []) + info["input_order"].get("optional", [])
        # the frontend lists socket inputs first, then one input per widget (linkable "widget inputs")
        for name in [n for n in order_names if n not in widgets] + [n for n in order_names if n in widgets]:
            kind = spec_inputs[name][0]
            entry = {"localized_name": name, "name": name, "type": "COMBO" if isinstance(kind, list) else kind,
                     "link": None}
            if name in optional:
                entry["shape"] = 7
            if name in widgets:
                entry["widget"] = {"name": name}
            value = item["inputs"].get(name)
            if isinstance(value, tuple):
                link_id = len(links) + 1
                src, slot = value[1], value[2]
                src_type = object_info[by_id[src]["type"]]["output"][slot]
                links.append([link_id, src, slot, item["id"], len(node["inputs"]), src_type])
                outputs_links.setdefault((src, slot), []).append(link_id)
                entry["link"] = link_id
            node["inputs"].append(entry)
        node["widgets_values"] = values
        node["_outputs"] = info
        nodes.append(node)
    for node in nodes:
        info = node.pop("_outputs", None)
        if info is None:
            continue
        names = info.get("output_name") or info["output"]
        node["outputs"] = [{"localized_name": n, "name": n, "type": t, "links": outputs_links.get((node["id"], i))}
                           for i, (n, t) in enumerate(zip(names, info["output"]))]
        if info.get("output_node") and not str(info.get("python_module", "")).startswith("custom_nodes"):
            while node["outputs"] and not node["outputs"][-1]["links"]:
                node["outputs"].pop()
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "motionkit/" + "/".join(n["type"] for n in spec))),
            "revision": 0, "last_node_id": max(n["id"] for n in spec), "last_link_id": len(links),
            "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {"ds": {"scale": 0.7, "offset": [0, 0]}, "frontendVersion": "1.27.10"}, "version": 0.4}
