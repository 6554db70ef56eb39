"""PASCAL VOC 2012 (+ SBD SegmentationClassAug) with the same interface as SegFolder."""
from __future__ import annotations

from pathlib import Path

from cism_lib.classes import VOC, ClassSet
from cism_lib.data.isaid import SegDataset, Transform
from cism_lib.errors import DataError

MASK_DIRS = ("SegmentationClassAug", "SegmentationClass")


def find_voc_root(root: Path) -> Path:
    """The folder holding JPEGImages: root, root/VOC2012 or root/VOCdevkit/VOC2012."""
    if not root.is_dir():
        raise DataError(f"{root}: VOC root not found")
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir():
            return cand
    raise DataError(f"{root}: no JPEGImages folder (looked in ., VOC2012, VOCdevkit/VOC2012)")


def split_file(root: Path, split: str) -> Path:
    """ImageSets/Segmentation/<split>.txt, ImageSets/SegmentationAug/<split>.txt or <root>/<split>.txt."""
    cands = [root / "ImageSets" / "Segmentation" / f"{split}.txt",
             root / "ImageSets" / "SegmentationAug" / f"{split}.txt", root / f"{split}.txt"]
    for cand in cands:
        if cand.is_file():
            return cand
    raise DataError(f"{cands[0]}: split list not found (also looked for "
                    f"{', '.join(str(c) for c in cands[1:])})")


def read_split(path: Path) -> list[str]:
    """Sorted unique ids of a split list; accepts 'id' lines and '/JPEGImages/id.jpg ...' lines."""
    ids = {Path(line.split()[0]).stem for line in path.read_text().splitlines() if line.strip()}
    if not ids:
        raise DataError(f"{path}: split list is empty")
    return sorted(ids)


class VOCFolder(SegDataset):
    """PASCAL VOC 2012: `JPEGImages/<id>.jpg`, masks in `SegmentationClassAug/<id>.png` (index) or
    `SegmentationClass/<id>.png` (palette; 255 = ignore boundary), ids from a split list."""

    def __init__(self, root: str | Path, split: str = "train", classes: ClassSet = VOC,
                 transform: Transform | None = None, min_pixels: int = 1, skip_bad: bool = False,
                 max_items: int | None = None, mask_dir: str = "auto") -> None:
        if mask_dir not in ("auto",) + MASK_DIRS:
            raise DataError(f"{root}: unknown mask_dir {mask_dir!r}; use auto or one of {MASK_DIRS}")
        self.root, self.split, self.classes = find_voc_root(Path(root)), split, classes
        self.split_path = split_file(self.root, split)
        ids = read_split(self.split_path)[:max_items]
        dirs = [self.root / d for d in (MASK_DIRS if mask_dir == "auto" else (mask_dir,))]
        kept, images, masks, problems = [], [], [], []
        for sid in ids:
            image = self.root / "JPEGImages" / f"{sid}.jpg"
            mask = next((d / f"{sid}.png" for d in dirs if (d / f"{sid}.png").is_file()), None)
            if not image.is_file():
                problems.append((sid, f"{image}: image listed in {self.split_path.name} not found"))
            elif mask is None:
                problems.append((sid, f"{image}: no mask {sid}.png in {' or '.join(map(str, dirs))}"))
            else:
                kept.append(sid)
                images.append(image)
                masks.append(mask)
        if problems and not skip_bad:
            more = f" ({len(problems)} samples affected)" if len(problems) > 1 else ""
            raise DataError(problems[0][1] + more)
        super().__init__(kept, images, masks, self.root, transform, min_pixels, skip_bad, problems)
