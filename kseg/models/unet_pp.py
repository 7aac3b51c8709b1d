"""UNet++: nested, densely connected skip pathways with optional deep supervision."""

from __future__ import annotations

from kseg._keras import keras
from kseg.models import blocks
from kseg.models._registry import register_model
from kseg.models.options import ENCODER_DECODER


@register_model(
    "unet_pp",
    description="UNet++: nested dense skips, optional deep supervision",
    options={**ENCODER_DECODER, "deep_supervision": False},
)
def unet_pp(
    x,
    style: blocks.Style,
    *,
    depth: int,
    filters: int,
    upsampling: str,
    dropout: float,
    deep_supervision: bool,
):
    """UNet++: node ``X[i][j]`` (level i, column j) convolves the concatenation of every earlier
    node of its level ``X[i][0..j-1]`` with the up-sampled ``X[i+1][j-1]``.

    With ``deep_supervision`` each full-resolution node ``X[0][1..depth]`` gets its own 1x1 head
    and the model outputs the average of their logits (the paper's "accurate mode"); the one loss
    on that average trains every head. Pruning to a shallower head is left to the user.

    Reference:
        Zhou, Rahman Siddiquee, Tajbakhsh and Liang, "UNet++: A Nested U-Net Architecture for
        Medical Image Segmentation", DLMIA 2018. https://arxiv.org/abs/1807.10165
    """
    nodes: dict[tuple[int, int], object] = {}
    for i in range(depth + 1):
        f = filters * 2**i
        inp = x if i == 0 else keras.layers.MaxPooling2D(2, name=f"x{i}0_pool")(nodes[(i - 1, 0)])
        node = blocks.double_conv(inp, f, style, f"x{i}0")
        if i == depth:
            node = blocks.dropout(node, dropout, f"x{i}0")
        nodes[(i, 0)] = node
        # New column entries on the anti-diagonal that the new encoder node completes.
        for j in range(1, i + 1):
            r = i - j
            fr = filters * 2**r
            up = blocks.upsample(nodes[(r + 1, j - 1)], fr, style, f"x{r}{j}_up", mode=upsampling)
            cat = keras.layers.Concatenate(name=f"x{r}{j}_concat")(
                [nodes[(r, k)] for k in range(j)] + [up]
            )
            nodes[(r, j)] = blocks.double_conv(cat, fr, style, f"x{r}{j}")
    if deep_supervision:
        return [nodes[(0, j)] for j in range(1, depth + 1)]
    return nodes[(0, depth)]
