"""Contact sheets: rows of images with labels, for the demo gallery and experiment figures."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont


def contact_sheet(rows: Sequence[Sequence[Image.Image]], col_labels: Sequence[str] = (),
                  row_labels: Sequence[str] = (), cell: int = 256, pad: int = 4) -> Image.Image:
    """Each image is fitted into a ``cell``-square (aspect kept); labels go above columns / left of rows."""
    font = ImageFont.load_default()
    label_h = 16 if col_labels else 0
    label_w = 110 if row_labels else 0
    ncols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (label_w + ncols * (cell + pad) + pad, label_h + len(rows) * (cell + pad) + pad),
                      "white")
    draw = ImageDraw.Draw(sheet)
    for j, text in enumerate(col_labels):
        draw.text((label_w + pad + j * (cell + pad), 2), text[:40], fill="black", font=font)
    for i, row in enumerate(rows):
        y = label_h + pad + i * (cell + pad)
        if i < len(row_labels):
            draw.text((4, y + cell // 2 - 6), row_labels[i][:18], fill="black", font=font)
        for j, img in enumerate(row):
            thumb = img.convert("RGB")
            thumb.thumbnail((cell, cell), Image.LANCZOS)
            x = label_w + pad + j * (cell + pad)
            sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
    return sheet
