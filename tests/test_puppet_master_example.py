"""The Puppet-Master example workflow is what its spec builds (so regenerating changes nothing) and has the
official pipeline's settings; tests/test_example_workflows.py runs it on the tiny models through HTTP and loads
it into the frontend (its tiny stand-in for Load Puppet-Master is in TINY_WEIGHTS there)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from motionkit_testing import puppet_master_example as example
from motionkit_testing.ui_builder import build_workflow
from motionkit_testing.workflows import load_workflow

REPO = Path(__file__).resolve().parents[1]
PATH = REPO / "example_workflows" / f"{example.NAME}.json"


@pytest.mark.server
def test_saved_example_is_the_spec(server):
    assert load_workflow(PATH) == json.loads(json.dumps(build_workflow(example.spec(), server.get("/object_info"))))
    assert PATH.with_suffix(".jpg").is_file()


def test_example_has_the_official_pipeline():
    wf = load_workflow(PATH)
    nodes = {n["type"]: n for n in wf["nodes"]}
    links = {link[0]: link for link in wf["links"]}

    def source(node_type: str, input_name: str) -> str:
        node = nodes[node_type]
        link = next(i["link"] for i in node["inputs"] if i["name"] == input_name)
        return next(n["type"] for n in wf["nodes"] if n["id"] == links[link][1])

    chain = [("MotionKitClickToMask", "image", "LoadImage"), ("MotionKitArrowsToTracks", "masks", "MotionKitClickToMask"),
             ("MotionKitPuppetMasterDrags", "model", "MotionKitPuppetMasterLoader"),
             ("MotionKitPuppetMasterDrags", "tracks", "MotionKitArrowsToTracks"),
             ("VideoLinearCFGGuidance", "model", "MotionKitPuppetMasterDrags"),
             ("KSampler", "model", "VideoLinearCFGGuidance"), ("SVD_img2vid_Conditioning", "clip_vision", "ImageOnlyCheckpointLoader"),
             ("SVD_img2vid_Conditioning", "init_image", "LoadImage"), ("KSampler", "positive", "SVD_img2vid_Conditioning"),
             ("VAEDecode", "samples", "KSampler"), ("SaveWEBM", "images", "VAEDecode")]
    for node_type, input_name, expected in chain:
        assert source(node_type, input_name) == expected, (node_type, input_name)
    assert nodes["SVD_img2vid_Conditioning"]["widgets_values"] == [256, 256, 14, 127, 6, 0.0]
    assert nodes["MotionKitArrowsToTracks"]["widgets_values"][1] == 14
    assert nodes["VideoLinearCFGGuidance"]["widgets_values"] == [1.0]
    assert nodes["KSampler"]["widgets_values"][2:6] == [50, 5.0, "euler", "karras"]
    assert nodes["MotionKitPuppetMasterLoader"]["properties"]["models"] == [example.PUPPET_MASTER]
    assert example.PUPPET_MASTER["url"].endswith("/spaces/rayli/Puppet-Master/resolve/main/ckpts/model.safetensors")
    assert nodes["ImageOnlyCheckpointLoader"]["widgets_values"] == ["svd.safetensors"]
    assert nodes["ImageOnlyCheckpointLoader"]["properties"]["models"] == [example.SVD_14]
    # the stock SVD checkpoint serves only CLIP vision and the VAE: its MODEL output is left unconnected
    assert not nodes["ImageOnlyCheckpointLoader"]["outputs"][0]["links"]
