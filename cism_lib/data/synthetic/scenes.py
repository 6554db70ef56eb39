"""The 15 class ids, the scene families and the draw of one image's family and classes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Figure 5 of the paper: share of iSAID images with 1, 2, ... categories.
CATEGORY_COUNT_P = {1: 0.27, 2: 0.38, 3: 0.26, 4: 0.06, 5: 0.03}

(SH, ST, BD, TC, BC, GTF, BR, LV, SV, HC, SP, RA, SBF, PL, HA) = range(1, 16)


@dataclass(frozen=True)
class SceneType:
    """A scene family: its background layout and the classes that plausibly co-occur in it."""

    name: str
    weight: float
    primary: tuple[int, ...]
    pool: tuple[tuple[int, float], ...]


SCENES = (
    SceneType("airport", 1.0, (PL, HC), ((PL, 4), (HC, 3), (SV, 2), (LV, 2), (ST, 1.5))),
    SceneType("harbour", 1.3, (SH, HA), ((SH, 4), (HA, 3.5), (ST, 2), (LV, 1.5), (SV, 1.5),
                                         (BR, 1))),
    SceneType("river", 0.8, (BR,), ((BR, 4), (SH, 2), (SV, 2), (LV, 1.5), (RA, 1), (HA, 1))),
    SceneType("urban", 1.3, (SV, LV, RA), ((SV, 4), (LV, 3), (RA, 2), (TC, 1), (BC, 1), (SP, 1),
                                           (ST, 1))),
    SceneType("sports", 1.5, (GTF, SBF, BD, TC, BC), ((GTF, 2), (SBF, 2), (BD, 2), (TC, 2.5),
                                                      (BC, 2), (SV, 2), (SP, 1))),
    SceneType("residential", 1.0, (SP,), ((SP, 4), (SV, 2.5), (TC, 1.5), (BC, 1), (BD, 1),
                                          (RA, 1))),
    SceneType("industrial", 0.9, (ST,), ((ST, 4), (LV, 3), (SV, 2), (RA, 1))),
)


def sample_classes(rng: np.random.Generator) -> tuple[SceneType, list[int]]:
    """A scene type and the classes to draw: count from Figure 5, classes by co-occurrence."""
    counts = list(CATEGORY_COUNT_P)
    k = counts[rng.choice(len(counts), p=np.array(list(CATEGORY_COUNT_P.values())))]
    w = np.array([s.weight for s in SCENES])
    scene = SCENES[rng.choice(len(SCENES), p=w / w.sum())]
    pool = dict(scene.pool)
    pw = np.array([pool[c] for c in scene.primary])
    first = scene.primary[rng.choice(len(pw), p=pw / pw.sum())]
    rest = [c for c in pool if c != first]
    rw = np.array([pool[c] for c in rest])
    m = min(k - 1, len(rest))
    others = rng.choice(rest, size=m, replace=False, p=rw / rw.sum()) if m else []
    return scene, [first, *(int(c) for c in others)]
