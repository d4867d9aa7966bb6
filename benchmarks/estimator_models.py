"""Detection architectures with published Jetson latencies, built here for the estimator check only.

Latency does not depend on the weights, so these are the architectures alone (random weights,
no loss, no post-processing beyond what the published engine runs on the GPU):

* :class:`RetinaNet`: MLPerf Inference's object detector (torchvision
  ``retinanet_resnext50_32x4d_fpn``: ResNeXt-50 32×4d, FPN P3–P7, 4-conv heads shared across
  levels, 9 anchors, 264 OpenImages classes), 800×800 input. The MLPerf engine's NMS is a plugin
  and is not modelled.
* :class:`SSDResNet34`, :class:`SSDMobileNetV1`: MLPerf Inference v2.0's detectors (1200×1200 and 300×300).
* :class:`YoloV8`: Ultralytics YOLOv8 (``yolov8n.yaml``: depth 0.33, width 0.25): Conv-BN-SiLU,
  C2f, SPPF, PAN neck, decoupled head with DFL, 640×640 input; 8.7 GFLOPs as Ultralytics counts.
* :class:`Yolo11`: Ultralytics YOLO11 n/s/m/l/x (``ultralytics/cfg/models/11/yolo11.yaml``): C3k2, SPPF,
  C2PSA, PAN neck, Detect head (DFL, depthwise class branch) with its box decoding, 640×640 input;
  parameter counts equal the yaml's summary lines.

* :class:`YoloV7`: YOLOv7 as deployed (``cfg/deploy/yolov7.yaml``: ELAN, MP, SPPCSPC, re-parameterized RepConv,
  Detect with box decoding), 640×640 input.

* :class:`EfficientViTCls`, :class:`EfficientViTSeg`: MIT Han Lab's EfficientViT B-series (ReLU linear attention,
  MBConv), the ImageNet classifiers B1-B3 and the Cityscapes/ADE20K segmenters B0-B3; parameter counts equal the
  repository's own models at commit de7d7733.

Not zoo models (they do not classify): :mod:`benchmarks.estimator_devices` exports them.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class ResNeXtBlock(nn.Module):
    """Bottleneck with a 32-group 3×3 conv (width = 2 × planes for 32×4d), stride on the 3×3."""

    def __init__(self, in_channels: int, planes: int, stride: int):
        super().__init__()
        width, out = planes * 2, planes * 4
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, groups=32, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out))
        self.shortcut = nn.Identity() if stride == 1 and in_channels == out else nn.Sequential(
            nn.Conv2d(in_channels, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


class RetinaNet(nn.Module):
    """RetinaNet ResNeXt-50 32×4d FPN as MLPerf Inference runs it (outputs: class and box maps, flattened)."""

    def __init__(self, num_classes: int = 264, anchors: int = 9):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        stages, channels = [], 64
        for i, (count, planes) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
            blocks = []
            for j in range(count):
                blocks.append(ResNeXtBlock(channels, planes, 2 if i > 0 and j == 0 else 1))
                channels = planes * 4
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList(nn.Conv2d(c, 256, 1) for c in (512, 1024, 2048))
        self.smooth = nn.ModuleList(nn.Conv2d(256, 256, 3, 1, 1) for _ in range(3))
        self.p6, self.p7 = nn.Conv2d(256, 256, 3, 2, 1), nn.Conv2d(256, 256, 3, 2, 1)
        self.cls_head = head(num_classes * anchors)
        self.box_head = head(4 * anchors)

    def forward(self, x):
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        laterals = [conv(f) for conv, f in zip(self.lateral, features[1:])]
        for i in (1, 0):  # top-down: nearest upsampling and add
            laterals[i] = laterals[i] + F.interpolate(laterals[i + 1], size=laterals[i].shape[-2:], mode="nearest")
        levels = [conv(f) for conv, f in zip(self.smooth, laterals)]
        levels.append(self.p6(levels[-1]))
        levels.append(self.p7(F.relu(levels[-1])))
        cls = torch.cat([torch.flatten(self.cls_head(p), 1) for p in levels], 1)
        box = torch.cat([torch.flatten(self.box_head(p), 1) for p in levels], 1)
        return cls, box


def head(outputs: int) -> nn.Sequential:
    layers = []
    for _ in range(4):
        layers += [nn.Conv2d(256, 256, 3, 1, 1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Conv2d(256, outputs, 3, 1, 1))


class Conv(nn.Sequential):
    """Ultralytics' Conv: conv (no bias, ``g`` groups) → BatchNorm → SiLU (none when ``act`` is False)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: bool = True):
        super().__init__(nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(c2),
                         nn.SiLU() if act else nn.Identity())


class Bottleneck(nn.Module):
    """Two 3×3 Convs (hidden width ``e`` × c), the input added back when ``shortcut``."""

    def __init__(self, c: int, shortcut: bool, e: float = 1.0):
        super().__init__()
        self.cv1, self.cv2, self.add = Conv(c, int(c * e), 3), Conv(int(c * e), c, 3), shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP bottleneck with two convs: split in two, n bottlenecks on one half, concat all, 1×1 conv."""

    def __init__(self, c1: int, c2: int, n: int, shortcut: bool, e: float = 0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c)
        self.cv2 = Conv((2 + n) * self.c, c2)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.cv1, self.cv2, self.pool = Conv(c1, c1 // 2), Conv(c1 // 2 * 4, c2), nn.MaxPool2d(5, 1, 2)

    def forward(self, x):
        y = [self.cv1(x)]
        y.extend(self.pool(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


class YoloV8(nn.Module):
    """YOLOv8 detector, ``size`` n/s/m/l/x as ``ultralytics/cfg/models/v8/yolov8.yaml`` scales it (depth, width,
    max_channels). Parameters: n 3,157,200; s 11,166,560; m 25,902,640; l 43,691,520; x 68,229,648 (the yaml's
    summary lines)."""

    SCALES = {"n": (0.33, 0.25, 1024), "s": (0.33, 0.50, 1024), "m": (0.67, 0.75, 768), "l": (1.00, 1.00, 512),
              "x": (1.00, 1.25, 512)}

    def __init__(self, size: str = "n", num_classes: int = 80, reg_max: int = 16):
        super().__init__()
        depth, width, max_channels = self.SCALES[size]
        c = [math.ceil(min(v, max_channels) * width / 8) * 8 for v in (64, 128, 256, 512, 1024)]
        n = [max(round(v * depth), 1) for v in (3, 6, 6, 3)]
        self.b1 = nn.Sequential(Conv(3, c[0], 3, 2), Conv(c[0], c[1], 3, 2), C2f(c[1], c[1], n[0], True),
                                Conv(c[1], c[2], 3, 2), C2f(c[2], c[2], n[1], True))
        self.b2 = nn.Sequential(Conv(c[2], c[3], 3, 2), C2f(c[3], c[3], n[2], True))
        self.b3 = nn.Sequential(Conv(c[3], c[4], 3, 2), C2f(c[4], c[4], n[3], True), SPPF(c[4], c[4]))
        self.up1, self.up2 = C2f(c[4] + c[3], c[3], n[3], False), C2f(c[3] + c[2], c[2], n[3], False)
        self.down1, self.down2 = Conv(c[2], c[2], 3, 2), Conv(c[3], c[3], 3, 2)
        self.pan1, self.pan2 = C2f(c[2] + c[3], c[3], n[3], False), C2f(c[3] + c[4], c[4], n[3], False)
        chans = (c[2], c[3], c[4])
        c2, c3 = max(16, chans[0] // 4, reg_max * 4), max(chans[0], min(num_classes, 100))
        self.box = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1))
                                 for x in chans)
        self.cls = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, num_classes, 1))
                                 for x in chans)
        self.dfl = nn.Conv2d(reg_max, 1, 1, bias=False)
        self.reg_max = reg_max

    def forward(self, x):
        o3, o4, o5 = pan_neck(self, x)
        boxes, scores = [], []
        for level, box, cls in zip((o3, o4, o5), self.box, self.cls):
            boxes.append(torch.flatten(box(level), 2))
            scores.append(torch.flatten(cls(level), 2))
        box = torch.cat(boxes, 2)  # (N, 4·reg_max, anchors): DFL = softmax over the bins, expectation by 1×1 conv
        b, _, a = box.shape
        dist = self.dfl(box.view(b, 4, self.reg_max, a).transpose(2, 1).softmax(1)).view(b, 4, a)
        return torch.cat([dist, torch.cat(scores, 2).sigmoid()], 1)


class C3k(nn.Module):
    """CSP bottleneck with three convs: n 3×3 bottlenecks on one half-width branch, concat with the other, 1×1."""

    def __init__(self, c1: int, c2: int, n: int = 2, shortcut: bool = True):
        super().__init__()
        c_ = c2 // 2
        self.cv1, self.cv2, self.cv3 = Conv(c1, c_), Conv(c1, c_), Conv(2 * c_, c2)
        self.m = nn.Sequential(*(Bottleneck(c_, shortcut) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3k2(C2f):
    """C2f whose blocks are C3k (``c3k``) or bottlenecks of half width; YOLO11 passes shortcut=True everywhere."""

    def __init__(self, c1: int, c2: int, n: int, c3k: bool, e: float = 0.5, shortcut: bool = True):
        super().__init__(c1, c2, n, shortcut, e)
        self.m = nn.ModuleList(C3k(self.c, self.c, 2, shortcut) if c3k else Bottleneck(self.c, shortcut, e=0.5)
                               for _ in range(n))


class Attention(nn.Module):
    """Multi-head self-attention over the H×W positions: 1×1 qkv (key dim = head dim / 2), softmax(qᵀk·scale),
    plus a depthwise 3×3 positional conv on v, then a 1×1 projection (convs without activation)."""

    def __init__(self, dim: int, num_heads: int, attn_ratio: float = 0.5):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim ** -0.5
        self.qkv = Conv(dim, dim + 2 * self.key_dim * num_heads, act=False)
        self.proj = Conv(dim, dim, act=False)
        self.pe = Conv(dim, dim, 3, g=dim, act=False)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).view(b, self.num_heads, self.key_dim * 2 + self.head_dim, h * w).split(
            [self.key_dim, self.key_dim, self.head_dim], dim=2)
        attn = ((q.transpose(-2, -1) @ k) * self.scale).softmax(dim=-1)
        x = (v @ attn.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w))
        return self.proj(x)


class PSABlock(nn.Module):
    """Attention then a 1×1 feed-forward (2× expansion, the second conv without activation), both residual."""

    def __init__(self, c: int, num_heads: int):
        super().__init__()
        self.attn = Attention(c, num_heads, attn_ratio=0.5)
        self.ffn = nn.Sequential(Conv(c, c * 2), Conv(c * 2, c, act=False))

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.ffn(x)


class C2PSA(nn.Module):
    """Split in two halves, n PSABlocks (c // 64 heads) on one, concat, 1×1 conv."""

    def __init__(self, c1: int, n: int):
        super().__init__()
        self.c = c1 // 2
        self.cv1, self.cv2 = Conv(c1, 2 * self.c), Conv(2 * self.c, c1)
        self.m = nn.Sequential(*(PSABlock(self.c, num_heads=self.c // 64) for _ in range(n)))

    def forward(self, x):
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        return self.cv2(torch.cat((a, self.m(b)), 1))


class DWConv(Conv):
    """Depthwise Conv (groups = gcd(c1, c2)) → BatchNorm → SiLU."""

    def __init__(self, c1: int, c2: int, k: int = 1):
        super().__init__(c1, c2, k, g=math.gcd(c1, c2))


class Yolo11(nn.Module):
    """Ultralytics YOLO11 detector, ``size`` n/s/m/l/x, as exported (Detect in export mode, legacy=False).

    From ultralytics/ultralytics ``ultralytics/cfg/models/11/yolo11.yaml`` (read at commit 0a2ae50b) and
    ``ultralytics/nn/{modules/block.py,modules/head.py,tasks.py}`` (8.3-era C3k2/C3k/C2PSA/Attention, Detect's
    legacy=False class branch; the Jetson guide at 75231dff benchmarks these models with 8.3.51/8.3.133): widths
    ``ceil(min(c, max_channels) · width / 8) · 8``, repeats ``max(round(2 · depth), 1)``, C3k2 uses C3k where
    the yaml says True, and everywhere for m/l/x (``parse_model``). Output (N, 4 + classes, 8400): xywh boxes
    in pixels (DFL expectation, anchor decoding, × stride) and sigmoid scores, as the TensorRT engine computes.
    Parameters: n 2,624,080; s 9,458,752; m 20,114,688; l 25,372,160; x 56,966,176 (the yaml's summary lines,
    the DFL conv's 16 fixed weights included).
    """

    SCALES = {"n": (0.50, 0.25, 1024), "s": (0.50, 0.50, 1024), "m": (0.50, 1.00, 512), "l": (1.00, 1.00, 512),
              "x": (1.00, 1.50, 512)}  # depth, width, max_channels

    def __init__(self, size: str = "n", num_classes: int = 80, reg_max: int = 16, imgsz: int = 640):
        super().__init__()
        depth, width, max_channels = self.SCALES[size]
        c = {v: math.ceil(min(v, max_channels) * width / 8) * 8 for v in (64, 128, 256, 512, 1024)}
        n = max(round(2 * depth), 1)
        k = size in "mlx"  # parse_model sets every C3k2's c3k for m/l/x
        self.b1 = nn.Sequential(Conv(3, c[64], 3, 2), Conv(c[64], c[128], 3, 2), C3k2(c[128], c[256], n, k, 0.25),
                                Conv(c[256], c[256], 3, 2), C3k2(c[256], c[512], n, k, 0.25))  # P3/8
        self.b2 = nn.Sequential(Conv(c[512], c[512], 3, 2), C3k2(c[512], c[512], n, True))  # P4/16
        self.b3 = nn.Sequential(Conv(c[512], c[1024], 3, 2), C3k2(c[1024], c[1024], n, True), SPPF(c[1024], c[1024]),
                                C2PSA(c[1024], n))  # P5/32
        self.up1 = C3k2(c[1024] + c[512], c[512], n, k)
        self.up2 = C3k2(c[512] + c[512], c[256], n, k)
        self.down1, self.down2 = Conv(c[256], c[256], 3, 2), Conv(c[512], c[512], 3, 2)
        self.pan1 = C3k2(c[256] + c[512], c[512], n, k)
        self.pan2 = C3k2(c[512] + c[1024], c[1024], n, True)
        chans = (c[256], c[512], c[1024])
        c2, c3 = max(16, chans[0] // 4, reg_max * 4), max(chans[0], min(num_classes, 100))
        self.box = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1))
                                 for x in chans)
        self.cls = nn.ModuleList(nn.Sequential(nn.Sequential(DWConv(x, x, 3), Conv(x, c3)),
                                               nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3)),
                                               nn.Conv2d(c3, num_classes, 1)) for x in chans)
        self.dfl = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)  # fixed: the bins' expectation
        self.dfl.weight.data[:] = torch.arange(reg_max, dtype=torch.float).view(1, reg_max, 1, 1)
        self.reg_max, self.num_classes, self.strides = reg_max, num_classes, (8, 16, 32)
        anchors, strides = make_anchors([(imgsz // s, imgsz // s) for s in self.strides], self.strides)
        self.register_buffer("anchors", anchors, persistent=False)
        self.register_buffer("stride_of", strides, persistent=False)

    def forward(self, x):
        o3, o4, o5 = pan_neck(self, x)
        levels = [torch.cat((box(o), cls(o)), 1) for o, box, cls in zip((o3, o4, o5), self.box, self.cls)]
        b = o3.shape[0]
        anchors, strides = self.anchors, self.stride_of
        if anchors.shape[1] != sum(o.shape[2] * o.shape[3] for o in levels):  # another input size
            anchors, strides = make_anchors([tuple(o.shape[2:]) for o in levels], self.strides)
        box, cls = torch.cat([o.view(b, 4 * self.reg_max + self.num_classes, -1) for o in levels], 2).split(
            (4 * self.reg_max, self.num_classes), 1)
        a = box.shape[2]  # DFL: softmax over the bins, expectation by the fixed 1×1 conv
        dist = self.dfl(box.view(b, 4, self.reg_max, a).transpose(2, 1).softmax(1)).view(b, 4, a)
        lt, rb = dist.chunk(2, 1)  # dist2bbox, xywh
        x1y1, x2y2 = anchors.unsqueeze(0) - lt, anchors.unsqueeze(0) + rb
        boxes = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * strides
        return torch.cat((boxes, cls.sigmoid()), 1)


class SPPCSPC(nn.Module):
    """YOLOv7's CSP spatial pyramid pooling: 1×1-3×3-1×1, max pools 5/9/13, 1×1-3×3, joined with a 1×1 shortcut."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.cv1, self.cv2, self.cv3, self.cv4 = Conv(c1, c2), Conv(c1, c2), Conv(c2, c2, 3), Conv(c2, c2)
        self.m = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in (5, 9, 13))
        self.cv5, self.cv6, self.cv7 = Conv(4 * c2, c2), Conv(c2, c2, 3), Conv(2 * c2, c2)

    def forward(self, x):
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1] + [m(x1) for m in self.m], 1)))
        return self.cv7(torch.cat((y1, self.cv2(x)), 1))


class ELAN(nn.Module):
    """YOLOv7's ELAN block: two 1×1 branches of ``c1``'s input, a chain of four 3×3 convs on the second, the chain's
    outputs concatenated (every other one in the backbone's ELAN, all four in the head's ELAN-H), then a 1×1."""

    def __init__(self, c_in: int, branch: int, chain: int, c_out: int, every: int):
        super().__init__()
        self.a, self.b = Conv(c_in, branch), Conv(c_in, branch)
        self.chain = nn.ModuleList(Conv(branch if i == 0 else chain, chain, 3) for i in range(4))
        self.every = every
        self.out = Conv(2 * branch + chain * (4 // every), c_out)

    def forward(self, x):
        ys = [self.a(x), self.b(x)]
        y = ys[-1]
        for i, conv in enumerate(self.chain):
            y = conv(y)
            if (i + 1) % self.every == 0:
                ys.append(y)
        return self.out(torch.cat(ys[::-1], 1))


class Downsample(nn.Module):
    """YOLOv7's MP block: max pool then 1×1, beside 1×1 then stride-2 3×3, concatenated (with ``skip`` in the head)."""

    def __init__(self, c_in: int, c: int):
        super().__init__()
        self.pool, self.cv1 = nn.MaxPool2d(2, 2), Conv(c_in, c)
        self.cv2, self.cv3 = Conv(c_in, c), Conv(c, c, 3, 2)

    def forward(self, x, *skip):
        return torch.cat([self.cv3(self.cv2(x)), self.cv1(self.pool(x)), *skip], 1)


class YoloV7(nn.Module):
    """YOLOv7 (WongKinYiu/yolov7 ``cfg/deploy/yolov7.yaml`` at 7204abca: the re-parameterized model TensorRT runs,
    RepConv as one 3×3 conv with bias) for COCO's 80 classes (the yaml's ``nc: 1`` is a placeholder) at 640×640,
    with the Detect head's box decoding (sigmoid, grid and anchor scaling) as the exported engine computes it; no
    NMS. Parameters: 36,905,341 with every BatchNorm folded into its conv (the repository's fused model summary;
    ``36.9M`` in its README), 36,926,621 as built here with the BatchNorms apart."""

    ANCHORS = ((12, 16, 19, 36, 40, 28), (36, 75, 76, 55, 72, 146), (142, 110, 192, 243, 459, 401))

    def __init__(self, num_classes: int = 80):
        super().__init__()
        self.stem = nn.Sequential(Conv(3, 32, 3), Conv(32, 64, 3, 2), Conv(64, 64, 3), Conv(64, 128, 3, 2),
                                  ELAN(128, 64, 64, 256, 2))
        self.down3, self.elan3 = Downsample(256, 128), ELAN(256, 128, 128, 512, 2)  # P3/8
        self.down4, self.elan4 = Downsample(512, 256), ELAN(512, 256, 256, 1024, 2)  # P4/16
        self.down5, self.elan5 = Downsample(1024, 512), ELAN(1024, 256, 256, 1024, 2)  # P5/32
        self.spp = SPPCSPC(1024, 512)
        self.lat5, self.lat4 = Conv(512, 256), Conv(1024, 256)
        self.up4 = ELAN(512, 256, 128, 256, 1)
        self.lat4b, self.lat3 = Conv(256, 128), Conv(512, 128)
        self.up3 = ELAN(256, 128, 64, 128, 1)
        self.pan4_down, self.pan4 = Downsample(128, 128), ELAN(512, 256, 128, 256, 1)
        self.pan5_down, self.pan5 = Downsample(256, 256), ELAN(1024, 512, 256, 512, 1)
        self.rep = nn.ModuleList(nn.Sequential(nn.Conv2d(c, 2 * c, 3, 1, 1), nn.SiLU()) for c in (128, 256, 512))
        self.outputs = num_classes + 5
        self.detect = nn.ModuleList(nn.Conv2d(2 * c, 3 * self.outputs, 1) for c in (128, 256, 512))
        self.register_buffer("anchors", torch.tensor(self.ANCHORS, dtype=torch.float).view(3, 1, 3, 1, 1, 2),
                             persistent=False)

    def forward(self, x):
        p3 = self.elan3(self.down3(self.stem(x)))
        p4 = self.elan4(self.down4(p3))
        p5 = self.spp(self.elan5(self.down5(p4)))
        u4 = self.up4(torch.cat([self.lat4(p4), F.interpolate(self.lat5(p5), scale_factor=2.0, mode="nearest")], 1))
        o3 = self.up3(torch.cat([self.lat3(p3), F.interpolate(self.lat4b(u4), scale_factor=2.0, mode="nearest")], 1))
        o4 = self.pan4(self.pan4_down(o3, u4))
        o5 = self.pan5(self.pan5_down(o4, p5))
        out = []
        for i, (o, rep, det) in enumerate(zip((o3, o4, o5), self.rep, self.detect)):
            y = det(rep(o))
            b, _, h, w = y.shape
            y = y.view(b, 3, self.outputs, h, w).permute(0, 1, 3, 4, 2).sigmoid()
            gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            grid = torch.stack((gx, gy), -1).view(1, 1, h, w, 2).float()
            stride = x.shape[2] / h
            xy = (y[..., :2] * 2 - 0.5 + grid) * stride
            wh = (y[..., 2:4] * 2) ** 2 * self.anchors[i]
            out.append(torch.cat((xy, wh, y[..., 4:]), -1).view(b, -1, self.outputs))
        return torch.cat(out, 1)


def make_anchors(sizes: list[tuple[int, int]], strides: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres (2, anchors) in grid units and each anchor's stride (1, anchors), level by level."""
    points, stride = [], []
    for (h, w), s in zip(sizes, strides):
        sy, sx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        points.append(torch.stack((sx, sy), -1).view(-1, 2))
        stride.append(torch.full((h * w, 1), float(s)))
    return torch.cat(points).T.contiguous(), torch.cat(stride).T.contiguous()


def pan_neck(m: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A YOLO backbone's P3/P4/P5 (``b1``-``b3``) through the PAN neck: top-down (``up1``, ``up2``), then
    bottom-up (``down1``/``pan1``, ``down2``/``pan2``); the three levels the head reads."""
    p3 = m.b1(x)
    p4 = m.b2(p3)
    p5 = m.b3(p4)
    u4 = m.up1(torch.cat([F.interpolate(p5, scale_factor=2.0, mode="nearest"), p4], 1))
    o3 = m.up2(torch.cat([F.interpolate(u4, scale_factor=2.0, mode="nearest"), p3], 1))
    o4 = m.pan1(torch.cat([m.down1(o3), u4], 1))
    return o3, o4, m.pan2(torch.cat([m.down2(o4), p5], 1))


class SSDResNet34(nn.Module):
    """MLPerf Inference's SSD-ResNet34 at 1200×1200, as NVIDIA's TensorRT code builds it.

    From ``closed/NVIDIA/code/ssd-resnet34/tensorrt/SSDResNet34.py`` (inference_results_v2.0):
    ResNet-34 stem and stages 1–3 (stage 3 at stride 1: 150×150×256), five extra blocks
    (1×1 then 3×3, strides 2, 2, 2, 2 (pad 0), 1 (pad 0)), and per level one merged 3×3 stride-3
    location + confidence conv (4 or 6 anchors, 81 classes). NMS is a plugin, not modelled.
    """

    def __init__(self, num_classes: int = 81):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, channels = [], 64
        for count, width, stride in ((3, 64, 1), (4, 128, 2), (6, 256, 1)):
            for j in range(count):
                blocks.append(BasicBlock(channels, width, stride if j == 0 else 1))
                channels = width
        self.backbone = nn.Sequential(*blocks)
        extra = ((256, 256, 512, 2, 1), (512, 256, 512, 2, 1), (512, 128, 256, 2, 1), (256, 128, 256, 2, 0),
                 (256, 128, 256, 1, 0))
        self.extras = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, mid, 1), nn.ReLU(inplace=True), nn.Conv2d(mid, c_out, 3, s, p),
                          nn.ReLU(inplace=True)) for c_in, mid, c_out, s, p in extra)
        anchors, outs = (4, 6, 6, 6, 4, 4), (256, 512, 512, 256, 256, 256)
        self.heads = nn.ModuleList(nn.Conv2d(c, a * (4 + num_classes), 3, 3, 1) for c, a in zip(outs, anchors))

    def forward(self, x):
        x = self.backbone(self.stem(x))
        levels = [x]
        for block in self.extras:
            levels.append(block(levels[-1]))
        return torch.cat([torch.flatten(h(p), 1) for h, p in zip(self.heads, levels)], 1)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 conv-BN, ReLU, the shortcut added (1×1 conv-BN where the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True), nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels))
        self.shortcut = nn.Identity() if stride == 1 and in_channels == out_channels else nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


class SSDMobileNetV1(nn.Module):
    """MLPerf Inference's SSD-MobileNet v1 (TensorFlow ``ssd_mobilenet_v1_coco_2018_01_28``), 300×300.

    MobileNet v1 (3×3 stem, 13 depthwise-separable blocks, ReLU6), features from block 11
    (19×19×512) and 13 (10×10×1024), four extra 1×1 + 3×3 stride-2 layers (512, 256, 256, 128),
    1×1 box predictors (3 anchors on the first level, 6 on the others; 91 classes). NMS is a plugin.
    """

    def __init__(self, num_classes: int = 91):
        super().__init__()
        plan = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
                (512, 1), (1024, 2), (1024, 1))
        layers, channels = [conv_bn_relu6(3, 32, 3, 2)], 32
        for out, stride in plan:
            layers += [conv_bn_relu6(channels, channels, 3, stride, groups=channels), conv_bn_relu6(channels, out, 1)]
            channels = out
        self.to_19 = nn.Sequential(*layers[:1 + 2 * 11])
        self.to_10 = nn.Sequential(*layers[1 + 2 * 11:])
        extra = ((1024, 256, 512), (512, 128, 256), (256, 128, 256), (256, 64, 128))
        self.extras = nn.ModuleList(nn.Sequential(conv_bn_relu6(c, mid, 1), conv_bn_relu6(mid, out, 3, 2))
                                    for c, mid, out in extra)
        outs, anchors = (512, 1024, 512, 256, 256, 128), (3, 6, 6, 6, 6, 6)
        self.boxes = nn.ModuleList(nn.Conv2d(c, 4 * a, 1) for c, a in zip(outs, anchors))
        self.scores = nn.ModuleList(nn.Conv2d(c, num_classes * a, 1) for c, a in zip(outs, anchors))

    def forward(self, x):
        levels = [self.to_19(x)]
        levels.append(self.to_10(levels[-1]))
        for block in self.extras:
            levels.append(block(levels[-1]))
        boxes = torch.cat([torch.flatten(b(p), 1) for b, p in zip(self.boxes, levels)], 1)
        scores = torch.cat([torch.flatten(s(p), 1) for s, p in zip(self.scores, levels)], 1)
        return boxes, scores


def conv_bn_relu6(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU6(inplace=True))


# EfficientViT B-series (MIT Han Lab), from mit-han-lab/efficientvit at commit de7d7733
# (efficientvit/models/efficientvit/{backbone,cls,seg}.py, efficientvit/models/nn/{ops,act,norm}.py).
# Module names follow the repo's (conv/norm/act, inverted_conv/depth_conv/point_conv, qkv/aggreg/proj); the state
# dicts hold the same tensors, same shapes, same order as the repo's models (some key prefixes differ), and with
# the repo's weights copied in, the outputs equal its models' (checked against that commit's code).
# README MACs = convs + linears + LiteMLA's two activation matmuls (torchprofile, BatchNorm not counted); edgekd's
# KernelCost.macs counts weight-bearing Conv/Gemm only (the matmuls are in .flops), about 1.5-2% less.

EVIT_WIDTHS = {"b0": (8, 16, 32, 64, 128), "b1": (16, 32, 64, 128, 256), "b2": (24, 48, 96, 192, 384),
               "b3": (32, 64, 128, 256, 512)}  # efficientvit_backbone_b0..b3: width_list
EVIT_DEPTHS = {"b0": (1, 2, 2, 2, 2), "b1": (1, 2, 3, 3, 4), "b2": (1, 3, 4, 4, 6), "b3": (1, 4, 6, 6, 9)}
EVIT_DIMS = {"b0": 16, "b1": 16, "b2": 32, "b3": 32}  # head dimension of LiteMLA


class EViTConv(nn.Module):
    """``ConvLayer`` (nn/ops.py): same-padded Conv2d → optional BatchNorm2d → optional Hardswish (``hswish``)."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, groups: int = 1, bias: bool = False,
                 norm: bool = True, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(c_out) if norm else None
        self.act = nn.Hardswish() if act else None

    def forward(self, x):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return x if self.act is None else self.act(x)


class EViTDSConv(nn.Module):
    """``DSConv`` as the backbone's stem blocks use it: depthwise 3×3 BN hswish, pointwise 1×1 BN (no bias)."""

    def __init__(self, c: int):
        super().__init__()
        self.depth_conv = EViTConv(c, c, 3, groups=c)
        self.point_conv = EViTConv(c, c, 1, act=False)

    def forward(self, x):
        return self.point_conv(self.depth_conv(x))


class EViTMBConv(nn.Module):
    """``MBConv``: 1×1 expand hswish, depthwise 3×3 (stride here) hswish, 1×1 project with BN and no activation.

    ``fewer_norm`` (the stride-2 block opening stages 3-4, and the EfficientViTBlock's local module): the first
    two convs have a bias and no BN. Otherwise every conv is bias-free with BN."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, expand_ratio: float = 4, fewer_norm: bool = False):
        super().__init__()
        mid = round(c_in * expand_ratio)
        self.inverted_conv = EViTConv(c_in, mid, 1, bias=fewer_norm, norm=not fewer_norm)
        self.depth_conv = EViTConv(mid, mid, 3, stride, groups=mid, bias=fewer_norm, norm=not fewer_norm)
        self.point_conv = EViTConv(mid, c_out, 1, act=False)

    def forward(self, x):
        return self.point_conv(self.depth_conv(self.inverted_conv(x)))


class LiteMLA(nn.Module):
    """``LiteMLA``: lightweight multi-scale ReLU linear attention (heads = channels // dim, scales (5,)).

    1×1 qkv conv (no bias, no norm); aggregation = depthwise 5×5 then 1×1 grouped by 3·heads (no bias), concatenated
    with qkv (so 2·heads heads); per head ReLU(q), ReLU(k), v padded with a row of ones, out = (v kᵀ) q, divided by
    its last row (+1e-15); 1×1 projection with BN. The repo's ``relu_linear_att`` runs in float32 (fp16 input cast
    up); the casts are left out here. Its quadratic branch (H·W ≤ dim) is never taken at these input sizes."""

    def __init__(self, c: int, dim: int, scales: tuple[int, ...] = (5,), eps: float = 1.0e-15):
        super().__init__()
        heads = c // dim
        total = heads * dim
        self.dim, self.eps = dim, eps
        self.qkv = EViTConv(c, 3 * total, 1, norm=False, act=False)
        self.aggreg = nn.ModuleList(nn.Sequential(
            nn.Conv2d(3 * total, 3 * total, s, padding=s // 2, groups=3 * total, bias=False),
            nn.Conv2d(3 * total, 3 * total, 1, groups=3 * heads, bias=False)) for s in scales)
        self.kernel_func = nn.ReLU()
        self.proj = EViTConv(total * (1 + len(scales)), c, 1, act=False)

    def forward(self, x):
        qkv = self.qkv(x)
        qkv = torch.cat([qkv] + [op(qkv) for op in self.aggreg], dim=1)
        b, _, h, w = qkv.shape
        qkv = qkv.reshape(b, -1, 3 * self.dim, h * w)
        q, k, v = qkv[:, :, :self.dim], qkv[:, :, self.dim:2 * self.dim], qkv[:, :, 2 * self.dim:]
        q, k = self.kernel_func(q), self.kernel_func(k)
        v = F.pad(v, (0, 0, 0, 1), mode="constant", value=1.0)
        out = torch.matmul(torch.matmul(v, k.transpose(-1, -2)), q)
        out = out[:, :, :-1] / (out[:, :, -1:] + self.eps)
        return self.proj(out.reshape(b, -1, h, w))


class EfficientViTBlock(nn.Module):
    """``EfficientViTBlock``: residual LiteMLA (context), then residual fewer-norm MBConv ×4 (local)."""

    def __init__(self, c: int, dim: int, expand_ratio: float = 4):
        super().__init__()
        self.context_module = LiteMLA(c, dim)
        self.local_module = EViTMBConv(c, c, 1, expand_ratio, fewer_norm=True)

    def forward(self, x):
        x = x + self.context_module(x)
        return x + self.local_module(x)


class EViTResidual(nn.Module):
    """``ResidualBlock`` with an identity shortcut (``main(x) + x``)."""

    def __init__(self, main: nn.Module):
        super().__init__()
        self.main = main

    def forward(self, x):
        return self.main(x) + x


class EfficientViTBackbone(nn.Module):
    """``EfficientViTBackbone`` (backbone.py) for ``variant`` b0-b3; forward returns stages 2, 3, 4 (strides 8/16/32).

    Stem: 3×3 stride-2 conv then depth[0] residual DSConvs. Stages 1-2: MBConv ×4 (first stride 2, no shortcut;
    the rest residual). Stages 3-4: a stride-2 fewer-norm MBConv (no shortcut), then depth[i] EfficientViTBlocks.
    Norm BatchNorm2d, activation Hardswish throughout."""

    def __init__(self, variant: str):
        super().__init__()
        widths, depths, dim = EVIT_WIDTHS[variant], EVIT_DEPTHS[variant], EVIT_DIMS[variant]
        self.input_stem = nn.Sequential(EViTConv(3, widths[0], 3, 2),
                                        *(EViTResidual(EViTDSConv(widths[0])) for _ in range(depths[0])))
        stages, c = [], widths[0]
        for i in (1, 2):
            blocks = [EViTMBConv(c, widths[i], 2)]
            blocks += [EViTResidual(EViTMBConv(widths[i], widths[i])) for _ in range(depths[i] - 1)]
            stages.append(nn.Sequential(*blocks))
            c = widths[i]
        for i in (3, 4):
            blocks = [EViTMBConv(c, widths[i], 2, fewer_norm=True)]
            blocks += [EfficientViTBlock(widths[i], dim) for _ in range(depths[i])]
            stages.append(nn.Sequential(*blocks))
            c = widths[i]
        self.stages = nn.ModuleList(stages)

    def forward(self, x):
        x = self.input_stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs[1], outs[2], outs[3]


class EfficientViTCls(nn.Module):
    """EfficientViT-B1/B2/B3 ImageNet classifier (cls.py ``efficientvit_cls_b1..b3``; b0 also accepted), 1000 classes.

    ``ClsHead``: 1×1 conv to width[0] (BN, hswish), global average pool, Linear(width[0], width[1], no bias) →
    LayerNorm → hswish, Linear(width[1], classes). ``resolution`` (224/256/288 in the README) is informational:
    the network is fully convolutional up to the pool. Parameters: b1 9,102,024; b2 24,330,712; b3 48,646,056
    (the repo's models; README: 9.1M, 24M, 49M)."""

    HEAD = {"b0": (1024, 1280), "b1": (1536, 1600), "b2": (2304, 2560), "b3": (2304, 2560)}

    def __init__(self, variant: str = "b1", resolution: int = 224, num_classes: int = 1000):
        super().__init__()
        self.resolution = resolution
        self.backbone = EfficientViTBackbone(variant)
        c, (w0, w1) = EVIT_WIDTHS[variant][-1], self.HEAD[variant]
        self.head = nn.Sequential(EViTConv(c, w0, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                                  nn.Linear(w0, w1, bias=False), nn.LayerNorm(w1), nn.Hardswish(),
                                  nn.Linear(w1, num_classes))

    def forward(self, x):
        return self.head(self.backbone(x)[-1])


class EfficientViTSeg(nn.Module):
    """EfficientViT-B0..B3 semantic segmentation (seg.py ``efficientvit_seg_b0..b3``), ``dataset`` cityscapes
    (19 classes, 1024×2048; b0-b3) or ade20k (150 classes, 512×512; b1-b3).

    ``SegHead`` (a DAGBlock): stage 4/3/2 each through a 1×1 conv to the head width (= stage-2 width) with BN, the
    first two bicubic-upsampled ×4/×2 (align_corners False), summed (``list_sum``: s4 + (s3 + s2)); head_depth
    residual MBConvs ×4 (1 for b0, else 3); then for cityscapes a 1×1 conv to 4× width (BN, hswish); 1×1 conv to
    the classes with bias. The output is the logits at stride 8 (``segout``), as the repo's forward returns them:
    no upsampling to the input size inside the model. The repo's UpSampleLayer casts fp16 to float32; left out.
    Parameters (the repo's models): cityscapes b0 706,691; b1 4,803,443; b2 15,323,779; b3 39,603,155;
    ade20k b1 4,791,414; b2 15,293,382; b3 39,546,198 (README: 0.7M, 4.8M, 15M, 40M; 4.8M, 15M, 39M)."""

    def __init__(self, variant: str = "b0", dataset: str = "cityscapes"):
        super().__init__()
        if dataset not in ("cityscapes", "ade20k") or (variant == "b0" and dataset != "cityscapes"):
            raise ValueError(f"efficientvit_seg_{variant} has no {dataset} head")
        widths = EVIT_WIDTHS[variant]
        width, depth = widths[2], 1 if variant == "b0" else 3
        final_expand, num_classes = (4, 19) if dataset == "cityscapes" else (None, 150)
        self.backbone = EfficientViTBackbone(variant)
        self.inputs = nn.ModuleList(EViTConv(c, width, 1, act=False) for c in (widths[4], widths[3], widths[2]))
        self.factors = (4, 2, 1)
        self.middle = nn.Sequential(*(EViTResidual(EViTMBConv(width, width)) for _ in range(depth)))
        out = [] if final_expand is None else [EViTConv(width, width * final_expand, 1)]
        out.append(nn.Conv2d(width * (final_expand or 1), num_classes, 1))
        self.segout = nn.Sequential(*out)

    def forward(self, x):
        s2, s3, s4 = self.backbone(x)
        feats = []
        for f, op, factor in zip((s4, s3, s2), self.inputs, self.factors):
            f = op(f)
            feats.append(f if factor == 1 else F.interpolate(f, scale_factor=factor, mode="bicubic",
                                                             align_corners=False))
        return self.segout(self.middle(feats[0] + (feats[1] + feats[2])))
