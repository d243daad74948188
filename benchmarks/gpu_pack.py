"""Pack what a lent GPU machine needs and cannot fetch (it has no network) into one small folder.

The device tool copies the working tree plus at most 64 MiB of carried paths, so this writes a
trimmed instyle cache: VGG16 only up to conv4_3 (the johnson preset's deepest tap) in fp16, the
training photos downsized to the largest side training ever uses, and the style images. The zoo's
held-out photos are left out, so a model trained there can be scored here on photos it never saw.

    python benchmarks/gpu_pack.py -o .gpu/cache        # then carry .gpu, INSTYLE_CACHE=.gpu/cache
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image
from safetensors.torch import load_file, save_file

from instyle.core.files import cache_dir
from instyle.data.images import load_image
from instyle.losses.vgg import LAYER_INDEX, WEIGHTS_NAME, vgg16_weights_path
from instyle.training.config import TrainConfig
from instyle.training.inputs import content_split


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", required=True, help="the packed cache folder (use as INSTYLE_CACHE there)")
    p.add_argument("--side", type=int, default=512, help="short side of the packed photos (size 256 x scale 2)")
    p.add_argument("--quality", type=int, default=85)
    p.add_argument("--photos", type=int, default=250, help="at most this many training photos")
    p.add_argument("--styles", nargs="*", default=["style/starry-night.png"])
    a = p.parse_args()
    out, data = Path(a.out), cache_dir() / "data"

    deepest = LAYER_INDEX["relu4_3"]
    state = load_file(str(vgg16_weights_path()))
    keep = {k: v.half() for k, v in state.items() if int(k.split(".")[1]) < deepest}
    (out / "weights").mkdir(parents=True, exist_ok=True)
    save_file(keep, str(out / "weights" / WEIGHTS_NAME))

    # The split every zoo run used (demo photos never train), so the packed photos leave out the zoo's
    # held-out ones and a model trained there can be scored here with `instyle evaluate` on them.
    train, held = content_split(TrainConfig(style="unused", content=str(data / "content"), output="unused"))
    dest = out / "data" / "content"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for f in train[: a.photos]:
        img = load_image(f).rgb
        s = a.side / min(img.size)
        if s < 1:
            img = img.resize((round(img.width * s), round(img.height * s)), Image.Resampling.LANCZOS)
        img.save(dest / f"{f.stem}.jpg", quality=a.quality)
    for name in a.styles:
        (out / "data" / Path(name).parent).mkdir(parents=True, exist_ok=True)
        shutil.copy(data / name, out / "data" / name)
    (out / "HELD_OUT.txt").write_text("".join(f"{f.name}\n" for f in held))
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"packed {len(list(dest.iterdir()))} photos, {len(keep)} VGG tensors: {total / 2**20:.1f} MiB in {out}")


if __name__ == "__main__":
    main()
