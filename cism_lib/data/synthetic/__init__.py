"""SynthAerial: seeded procedural aerial-like scenes with all 15 iSAID classes, written in the
iSAID devkit patch layout so one reader serves synthetic and real data.

Layout written by `generate`:
    <out>/<split>/images/<id>.png                     RGB image
    <out>/<split>/images/<id>_instance_color_RGB.png  colour mask in the iSAID palette
    <out>/<split>/manifest.csv                        id, class_ids (space-separated)
    <out>/synth.json                                  generator version, parameters, counts

Each image is seeded from (seed, split, index), so images can be made in any order or in
parallel and the same parameters always give identical bytes.

Modules, each importing only those listed before it:
    geometry    polygons in local coordinates, their rotation into the image, smooth value noise
    canvas      one scene's image, mask, ground materials, placement and scene context
    scenes      the class ids, the scene families and the draw of an image's family and classes
    layouts     each family's background: ground, roads, lots, buildings, trees, distractors
    transport   vehicles, planes, helicopters, ships, harbours, bridges
    facilities  storage tanks, pools, roundabouts, courts, fields, tracks
    render      one scene composed (layout, objects in draw order, camera finish); one item seeded
    writer      the dataset folder: default root, generation, manifests, resume
"""
from __future__ import annotations

from cism_lib.data.synthetic.render import present_classes, render_item, render_scene
from cism_lib.data.synthetic.scenes import SV, sample_classes
from cism_lib.data.synthetic.writer import default_root, generate

__all__ = ["SV", "default_root", "generate", "present_classes", "render_item", "render_scene", "sample_classes"]
