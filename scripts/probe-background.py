"""Where the default model loses a frame's background colour: linear probes on the way to the LM.

For 640 frames of `detail` videos (8 background colours), fits a multinomial logistic regression on
the mean of each representation (pixels, every vision-tower layer, the LM's input tokens after the
projector and 2x2 pooling) and prints its held-out accuracy (chance 0.125). Then, for plain frames of
each palette colour, how alike the colours look at the vision tower's output and the LM's input (mean
cosine between colours; the spread of the colours around their mean over the mean norm), background
palette against object palette. Run on CPU in a minute:
    python scripts/probe-background.py [MODEL_DIR]
"""

import sys

import torch

from prune_bench.adapters.base import frames_to_pixels
from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter
from prune_bench.benchmarks.synthetic.tasks import balanced_positions, detail
from prune_bench.benchmarks.synthetic.vocab import BACKGROUND_COLOURS, BACKGROUND_NAMES, OBJECT_COLOURS
from prune_bench.training import pool_video

torch.manual_seed(0)
ad = LlavaOnevisionAdapter.from_pretrained(
    sys.argv[1] if len(sys.argv) > 1 else "prune_bench/assets/default_model", device="cpu"
)
inner = ad.model.float().eval().model
g = torch.Generator().manual_seed(5)
n = 160
b = detail(g, n, 32, 64, balanced_positions(g, n))
cols = {v: BACKGROUND_NAMES.index(k) for k, v in BACKGROUND_COLOURS.items()}
feats, Y = {}, []
with torch.no_grad():
    for i in range(n):
        f = b.frames[i, ::8]
        px = frames_to_pixels(f, 64, (0.5,) * 3, (0.5,) * 3, torch.float32, torch.device("cpu"))
        hs = inner.vision_tower(px, output_hidden_states=True).hidden_states
        for L, h in enumerate(hs):
            feats.setdefault(f"vision {L}", []).append(h.mean(1))
        feats.setdefault("pixels", []).append(px.mean((2, 3)))
        p = pool_video(inner, inner.multi_modal_projector(hs[-1]))
        feats.setdefault("LM input", []).append(p.mean(1))
        Y += [cols[tuple(fr[0, 0].tolist())] for fr in f]
Y = torch.tensor(Y)
for name, xs in feats.items():
    X = torch.cat(xs)
    k = len(X) * 3 // 4
    Xn = (X - X[:k].mean(0)) / (X[:k].std(0) + 1e-6)
    W = torch.zeros(X.shape[1], 8, requires_grad=True)
    bb = torch.zeros(8, requires_grad=True)
    opt = torch.optim.Adam([W, bb], lr=1e-2)
    for _ in range(800):
        loss = torch.nn.functional.cross_entropy(Xn[:k] @ W + bb, Y[:k])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        print(f"{name:10s} probe accuracy {float(((Xn[k:] @ W + bb).argmax(1) == Y[k:]).float().mean()):.2f}")


def plain(colours):
    f = torch.tensor(list(colours), dtype=torch.uint8)[:, None, None, :].expand(-1, 64, 64, 3).contiguous()
    px = frames_to_pixels(f, 64, (0.5,) * 3, (0.5,) * 3, torch.float32, torch.device("cpu"))
    with torch.no_grad():
        out = inner.vision_tower(px, output_hidden_states=True).hidden_states[-1]
        return {
            "vision out": out.mean(1),
            "LM input": pool_video(inner, inner.multi_modal_projector(out)).mean(1),
        }


for palette, colours in (("background", BACKGROUND_COLOURS.values()), ("object", OBJECT_COLOURS.values())):
    for where, x in plain(colours).items():
        c = torch.nn.functional.normalize(x, dim=-1)
        cos = float((c @ c.T).fill_diagonal_(0).sum() / (len(x) * (len(x) - 1)))
        spread = float((x - x.mean(0)).norm(dim=-1).mean() / x.norm(dim=-1).mean())
        print(f"{palette:10s} colours at {where:10s}: mean cosine {cos:.3f}, spread / norm {spread:.3f}")
