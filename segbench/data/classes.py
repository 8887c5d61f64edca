"""Class names and colour palettes of the datasets (plain Python, no numpy).

Kept apart from the catalog so the catalog reads as a table of datasets and this
module as the tables of classes. Palettes are the ones the datasets publish
(VOC's bit-interleaved colour map, Cityscapes' and CamVid's own colours); where a
dataset has no compact official palette (ADE20K's lives in a ``.mat`` file, a
user's folder dataset has none), the VOC colour map is used, so every class
still gets a distinct, stable colour.
"""

from __future__ import annotations

RGB = tuple[int, int, int]


def voc_colormap(count: int) -> tuple[RGB, ...]:
    """PASCAL VOC's colour map: the bits of the class index spread over R, G and B.

    Index 0 is black, 1 dark red, 2 dark green, ... It is how VOC colours its
    palette PNG masks, and a good default for any dataset without colours.
    """
    colours = []
    for index in range(count):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


DIAGNOSTIC_CLASSES = ("road", "water", "car", "boat", "tree", "pole", "lamp")
DIAGNOSTIC_PALETTE: tuple[RGB, ...] = (
    (128, 64, 128),  # road: Cityscapes' road purple
    (30, 110, 220),  # water
    (220, 20, 60),  # car
    (0, 200, 200),  # boat
    (60, 160, 40),  # tree
    (140, 140, 140),  # pole
    (250, 170, 30),  # lamp
)

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
VOC_PALETTE = voc_colormap(len(VOC_CLASSES))

# Cityscapes' 19 evaluation classes: (name, labelId, colour); trainId is the position.
CITYSCAPES_TRAIN_CLASSES: tuple[tuple[str, int, RGB], ...] = (
    ("road", 7, (128, 64, 128)),
    ("sidewalk", 8, (244, 35, 232)),
    ("building", 11, (70, 70, 70)),
    ("wall", 12, (102, 102, 156)),
    ("fence", 13, (190, 153, 153)),
    ("pole", 17, (153, 153, 153)),
    ("traffic light", 19, (250, 170, 30)),
    ("traffic sign", 20, (220, 220, 0)),
    ("vegetation", 21, (107, 142, 35)),
    ("terrain", 22, (152, 251, 152)),
    ("sky", 23, (70, 130, 180)),
    ("person", 24, (220, 20, 60)),
    ("rider", 25, (255, 0, 0)),
    ("car", 26, (0, 0, 142)),
    ("truck", 27, (0, 0, 70)),
    ("bus", 28, (0, 60, 100)),
    ("train", 31, (0, 80, 100)),
    ("motorcycle", 32, (0, 0, 230)),
    ("bicycle", 33, (119, 11, 32)),
)
CITYSCAPES_CLASSES = tuple(name for name, _, _ in CITYSCAPES_TRAIN_CLASSES)
CITYSCAPES_PALETTE = tuple(colour for _, _, colour in CITYSCAPES_TRAIN_CLASSES)
CITYSCAPES_MAX_LABEL_ID = 33  # labelIds run 0..33 (license plate, -1, is never written to the PNGs)

ADE20K_CLASSES = (
    "wall",
    "building",
    "sky",
    "floor",
    "tree",
    "ceiling",
    "road",
    "bed",
    "windowpane",
    "grass",
    "cabinet",
    "sidewalk",
    "person",
    "earth",
    "door",
    "table",
    "mountain",
    "plant",
    "curtain",
    "chair",
    "car",
    "water",
    "painting",
    "sofa",
    "shelf",
    "house",
    "sea",
    "mirror",
    "rug",
    "field",
    "armchair",
    "seat",
    "fence",
    "desk",
    "rock",
    "wardrobe",
    "lamp",
    "bathtub",
    "railing",
    "cushion",
    "base",
    "box",
    "column",
    "signboard",
    "chest of drawers",
    "counter",
    "sand",
    "sink",
    "skyscraper",
    "fireplace",
    "refrigerator",
    "grandstand",
    "path",
    "stairs",
    "runway",
    "case",
    "pool table",
    "pillow",
    "screen door",
    "stairway",
    "river",
    "bridge",
    "bookcase",
    "blind",
    "coffee table",
    "toilet",
    "flower",
    "book",
    "hill",
    "bench",
    "countertop",
    "stove",
    "palm",
    "kitchen island",
    "computer",
    "swivel chair",
    "boat",
    "bar",
    "arcade machine",
    "hovel",
    "bus",
    "towel",
    "light",
    "truck",
    "tower",
    "chandelier",
    "awning",
    "streetlight",
    "booth",
    "television receiver",
    "airplane",
    "dirt track",
    "apparel",
    "pole",
    "land",
    "bannister",
    "escalator",
    "ottoman",
    "bottle",
    "buffet",
    "poster",
    "stage",
    "van",
    "ship",
    "fountain",
    "conveyer belt",
    "canopy",
    "washer",
    "plaything",
    "swimming pool",
    "stool",
    "barrel",
    "basket",
    "waterfall",
    "tent",
    "bag",
    "minibike",
    "cradle",
    "oven",
    "ball",
    "food",
    "step",
    "tank",
    "trade name",
    "microwave",
    "pot",
    "animal",
    "bicycle",
    "lake",
    "dishwasher",
    "screen",
    "blanket",
    "sculpture",
    "hood",
    "sconce",
    "vase",
    "traffic light",
    "tray",
    "ashcan",
    "fan",
    "pier",
    "crt screen",
    "plate",
    "monitor",
    "bulletin board",
    "shower",
    "radiator",
    "glass",
    "clock",
    "flag",
)
# Colours of classes 0..149 are VOC colour-map entries 1..150 (entry 0 is black, kept for "ignored").
ADE20K_PALETTE = voc_colormap(len(ADE20K_CLASSES) + 1)[1:]

# SegNet's CamVid (11 classes + "Unlabelled" = 11, mapped to ignore); the CamVid colours.
CAMVID_CLASSES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "signsymbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
CAMVID_PALETTE: tuple[RGB, ...] = (
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (0, 0, 192),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
)
CAMVID_VOID = 11

FIGARO_CLASSES = ("background", "hair")
FIGARO_PALETTE: tuple[RGB, ...] = ((0, 0, 0), (200, 120, 40))
