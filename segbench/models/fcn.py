"""FCN: fully convolutional networks with skip fusion (Long, Shelhamer & Darrell, CVPR 2015).

The skip architecture is the paper's: ``score_fr`` scores the classes at stride
32; ``variant="16s"`` adds ``score_pool4`` on the stride-16 features, fused with
the 2x-upsampled coarse scores; ``"8s"`` adds ``score_pool3`` on the stride-8
features the same way. The 2x upsamplings are deconvolutions initialised to
bilinear interpolation and learned (``upsampling="learned"``, the paper's
section 4.3); the final upsampling stays bilinear. The official Caffe nets froze
every deconvolution (``lr_mult: 0``): ``upsampling="fixed"``. The score layers
start at zero, as in the paper.

Two backbones:

* **VGG16**, as in the paper and the official nets (fcn.berkeleyvision.org):
  fc6/fc7 are a 7x7 and a 1x1 convolution, 4096 wide, with drop-out 0.5;
  pooling rounds up as Caffe's does. FCN-8s with 21 classes has the official
  net's 134,489,759 parameters.
* **ResNet-50/101** from torchvision, with torchvision's ``FCNHead`` scoring
  layer4; ``output_stride`` 8/16 replaces strides by dilation exactly as
  torchvision does. ``variant="32s"`` at output stride 8 *is* torchvision's
  FCN-ResNet (same modules and state-dict keys: its weights files load); the
  16s/8s skips need the undilated backbone (output stride 32), where layer3 and
  layer2 are the stride-16 and stride-8 features.

The 100-pixel padding (VGG16, ``pad100``). The official nets pad conv1_1 by 100
pixels so that every input size survives five poolings and the unpadded 7x7
fc6, and then crop each upsampled map onto the grid of the map it is added to
at offsets fixed by the layers' geometry. ``pad100=True`` (the default for
VGG16) keeps that exactly, so receptive fields, alignment and FLOPs are the
paper's. ``pad100=False`` is the cheaper "same" form: conv1_1 padded by 1, fc6
by 3, deconvolutions padded to exact 2x/8x/16x/32x and cropped at the origin.
Both forms have the same parameters, so their state dicts interchange.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50, resnet101
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.fcn import FCNHead

from segbench.errors import UserError
from segbench.models.backbones.heads import check_num_classes
from segbench.models.catalog.fcn import ENTRIES
from segbench.models.weights import load_weights

__all__ = [
    "FCNResNet",
    "FCNVGG16",
    "bilinear_kernel",
    "build_fcn",
    "set_resnet_output_stride",
]

_ENTRY = ENTRIES[0]

# (width, convolutions) of VGG16's five stages; each ends in a 2x2 max-pool.
_VGG16_STAGES: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
_VGG16_FC_WIDTH = 4096
_SKIPS = {"32s": 0, "16s": 1, "8s": 2}
_FINAL_STRIDE = {"32s": 32, "16s": 16, "8s": 8}

# Crop offsets of the official pad-100 nets, from composing the layers' coordinate
# maps (a conv/pool of kernel k, stride s, padding p maps output y to input
# s*y - p + (k-1)/2; a deconvolution the inverse). In input pixels, pool4 cell y
# sits at 16y - 91.5 and 2x(score_fr) cell y at 16y - 11.5: five pool4 cells
# apart. Likewise pool3 sits 9 cells from 2x(fuse_pool4), and the final maps
# are 19 (32s), 27 (16s) and 31 (8s) pixels from the input's origin.
_CROP_POOL4 = 5
_CROP_POOL3 = 9
_CROP_FINAL = {"32s": 19, "16s": 27, "8s": 31}

# replace_stride_with_dilation of torchvision's ResNet (layer2, layer3, layer4).
_RESNET_DILATION = {8: (False, True, True), 16: (False, False, True), 32: (False, False, False)}


def bilinear_kernel(
    channels: int, kernel_size: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Deconvolution weights that upsample each channel bilinearly.

    Why diagonal: like the official nets' ``surgery.interp``, class ``c`` only
    feeds class ``c``, so a freshly built deconvolution is exactly bilinear
    interpolation and learning starts from there.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(kernel_size, dtype=torch.float32, device=device) - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size, device=device)
    index = torch.arange(channels, device=device)
    weight[index, index] = taps[:, None] * taps[None, :]
    return weight


def _deconv(num_classes: int, factor: int, padded: bool, learned: bool) -> nn.ConvTranspose2d:
    """A ``factor``x upsampling deconvolution (kernel 2*factor), bilinear at start."""
    deconv = nn.ConvTranspose2d(
        num_classes, num_classes, 2 * factor, stride=factor, padding=factor // 2 if padded else 0, bias=False
    )
    with torch.no_grad():
        deconv.weight.copy_(bilinear_kernel(num_classes, 2 * factor, deconv.weight.device))
    deconv.weight.requires_grad_(learned)
    return deconv


def _score(in_channels: int, num_classes: int) -> nn.Conv2d:
    """A 1x1 class-scoring layer, zero-initialised as in the paper."""
    conv = nn.Conv2d(in_channels, num_classes, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def _crop(x: torch.Tensor, offset: int, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Caffe's ``crop``: the ``size`` window of ``x`` starting at ``offset`` in H and W."""
    return x[..., offset : offset + size[0], offset : offset + size[1]]


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


class FCNVGG16(nn.Module):
    """FCN-32s/16s/8s on VGG16, layer for layer the official Caffe net.

    Module names follow the official prototxt (``fc6``, ``score_fr``,
    ``score_pool4``, ``upscore2``, ...) so converted Caffe weights map one to
    one; ``features[i]`` is VGG16's stage ``i + 1`` ending in ``pool{i + 1}``, and
    ``upscore`` is the final (fixed bilinear) upsampling of every variant.
    """

    aux_classifier: None

    def __init__(
        self,
        num_classes: int,
        variant: str = "8s",
        pad100: bool = True,
        upsampling: str = "learned",
        width: float = 1.0,
    ) -> None:
        super().__init__()
        self.variant = variant
        self.pad100 = pad100
        stages: list[nn.Module] = []
        in_channels = 3
        stage_widths = []
        for index, (channels, convs) in enumerate(_VGG16_STAGES):
            out_channels = _scaled(channels, width)
            layers: list[nn.Module] = []
            for conv_index in range(convs):
                padding = 100 if pad100 and index == 0 and conv_index == 0 else 1
                layers += [nn.Conv2d(in_channels, out_channels, 3, padding=padding), nn.ReLU(inplace=True)]
                in_channels = out_channels
            layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
            stage_widths.append(out_channels)
        self.features = nn.ModuleList(stages)
        fc_width = _scaled(_VGG16_FC_WIDTH, width)
        self.fc6 = nn.Conv2d(in_channels, fc_width, 7, padding=0 if pad100 else 3)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(0.5)
        self.fc7 = nn.Conv2d(fc_width, fc_width, 1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(0.5)
        self.score_fr = _score(fc_width, num_classes)
        learned = upsampling == "learned"
        skips = _SKIPS[variant]
        self.score_pool4 = _score(stage_widths[3], num_classes) if skips >= 1 else None
        self.upscore2 = _deconv(num_classes, 2, not pad100, learned) if skips >= 1 else None
        self.score_pool3 = _score(stage_widths[2], num_classes) if skips >= 2 else None
        self.upscore_pool4 = _deconv(num_classes, 2, not pad100, learned) if skips >= 2 else None
        # The paper fixes the final upsampling to bilinear in every variant.
        self.upscore = _deconv(num_classes, _FINAL_STRIDE[variant], not pad100, learned=False)
        # From scratch, PyTorch's default init shrinks activations about 2x per layer through
        # fifteen ReLU convolutions (the net then never leaves the class-prior plateau);
        # torchvision's VGG init (He, fan_out) keeps them alive. Loaded weights replace it.
        for module in (*self.features.modules(), self.fc6, self.fc7):
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        self.aux_classifier = None

    @property
    def output_stride(self) -> int:
        return 32

    def set_output_stride(self, output_stride: int) -> None:
        """VGG16's FCN has no dilated form: only 32 is accepted (a no-op)."""
        if output_stride != 32:
            raise UserError(
                f"FCN on VGG16 has output stride 32 only (got {output_stride}); its variant (32s/16s/8s) "
                "sets the prediction stride. Dilated FCNs: backbone resnet50/resnet101"
            )

    def _fuse(self, coarse: torch.Tensor, skip: torch.Tensor, offset: int) -> torch.Tensor:
        # Official net: crop the skip scores onto the upsampled grid; "same" form:
        # the upsampled map can be one cell larger, crop it at the origin.
        if self.pad100:
            return coarse + _crop(skip, offset, coarse.shape[-2:])
        return _crop(coarse, 0, skip.shape[-2:]) + skip

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        pools = []
        y = x
        for stage in self.features:
            y = stage(y)
            pools.append(y)
        y = self.drop6(self.relu6(self.fc6(pools[4])))
        score = self.score_fr(self.drop7(self.relu7(self.fc7(y))))
        if self.score_pool4 is not None and self.upscore2 is not None:
            score = self._fuse(self.upscore2(score), self.score_pool4(pools[3]), _CROP_POOL4)
        if self.score_pool3 is not None and self.upscore_pool4 is not None:
            score = self._fuse(self.upscore_pool4(score), self.score_pool3(pools[2]), _CROP_POOL3)
        out = _crop(self.upscore(score), _CROP_FINAL[self.variant] if self.pad100 else 0, size)
        return {"out": out}


def set_resnet_output_stride(resnet: nn.Module, output_stride: int) -> None:
    """Re-stride a torchvision ResNet in place as ``replace_stride_with_dilation`` builds it.

    Why in place: evaluation at another output stride must reuse the trained
    weights; only strides, dilations and paddings change, never a parameter.
    Works on a torchvision ``ResNet`` or anything with its ``layer3``/``layer4``.
    """
    if output_stride not in _RESNET_DILATION:
        raise UserError(f"ResNet output_stride must be 8, 16 or 32, not {output_stride}")
    dilation = 1
    for layer, dilate in zip(
        (resnet.layer3, resnet.layer4), _RESNET_DILATION[output_stride][1:], strict=True
    ):
        previous = dilation
        stride = 1 if dilate else 2
        if dilate:
            dilation *= 2
        for index, block in enumerate(layer):
            conv = block.conv2
            block_dilation = previous if index == 0 else dilation
            conv.stride = (stride, stride) if index == 0 else (1, 1)
            conv.dilation = (block_dilation, block_dilation)
            conv.padding = (block_dilation, block_dilation)
        layer[0].downsample[0].stride = (stride, stride)


class FCNResNet(nn.Module):
    """FCN on a torchvision ResNet-50/101: torchvision's FCN plus the paper's skips.

    ``backbone``, ``classifier`` and ``aux_classifier`` are torchvision's FCN
    modules under torchvision's names. The skip layers reuse the VGG names:
    ``score_pool4`` scores layer3 (stride 16), ``score_pool3`` layer2 (stride 8).
    """

    def __init__(
        self,
        num_classes: int,
        depth: int = 50,
        variant: str = "32s",
        output_stride: int = 8,
        upsampling: str = "learned",
        aux: bool = False,
    ) -> None:
        super().__init__()
        _check_skips_fit(variant, output_stride)
        self.variant = variant
        factory = {50: resnet50, 101: resnet101}[depth]
        resnet = factory(weights=None, replace_stride_with_dilation=list(_RESNET_DILATION[output_stride]))
        self.backbone = IntermediateLayerGetter(
            resnet, return_layers={"layer2": "layer2", "layer3": "layer3", "layer4": "layer4"}
        )
        self.classifier = FCNHead(2048, num_classes)
        self.aux_classifier = FCNHead(1024, num_classes) if aux else None
        learned = upsampling == "learned"
        skips = _SKIPS[variant]
        self.score_pool4 = _score(1024, num_classes) if skips >= 1 else None
        self.upscore2 = _deconv(num_classes, 2, padded=True, learned=learned) if skips >= 1 else None
        self.score_pool3 = _score(512, num_classes) if skips >= 2 else None
        self.upscore_pool4 = _deconv(num_classes, 2, padded=True, learned=learned) if skips >= 2 else None
        self._output_stride = output_stride

    @property
    def output_stride(self) -> int:
        return self._output_stride

    def set_output_stride(self, output_stride: int) -> None:
        """Dilate or un-dilate layer3/layer4 in place; the weights stay as they are."""
        _check_skips_fit(self.variant, output_stride)
        set_resnet_output_stride(self.backbone, output_stride)
        self._output_stride = output_stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        score = self.classifier(features["layer4"])
        if self.score_pool4 is not None and self.upscore2 is not None:
            skip = self.score_pool4(features["layer3"])
            score = _crop(self.upscore2(score), 0, skip.shape[-2:]) + skip
        if self.score_pool3 is not None and self.upscore_pool4 is not None:
            skip = self.score_pool3(features["layer2"])
            score = _crop(self.upscore_pool4(score), 0, skip.shape[-2:]) + skip
        result = {"out": F.interpolate(score, size=size, mode="bilinear", align_corners=False)}
        if self.training and self.aux_classifier is not None:
            aux = self.aux_classifier(features["layer3"])
            result["aux"] = F.interpolate(aux, size=size, mode="bilinear", align_corners=False)
        return result


def _check_skips_fit(variant: str, output_stride: int) -> None:
    if variant != "32s" and output_stride != 32:
        raise UserError(
            f"FCN variant '{variant}' fuses layer3/layer2 scores after 2x upsampling, which needs the "
            f"undilated ResNet (output_stride 32), not output_stride {output_stride}; the dilated FCN "
            "(torchvision's, PSPNet's baseline) is variant '32s' with output_stride 8 or 16"
        )


def build_fcn(
    num_classes: int,
    *,
    backbone: str = "vgg16",
    variant: str = "8s",
    output_stride: int = 32,
    pad100: bool | None = None,
    upsampling: str = "learned",
    aux: bool = False,
    width: float = 1.0,
    weights: str | None = None,
) -> nn.Module:
    """The catalog's ``fcn``: FCN-``variant`` on ``backbone`` (see the module docstring)."""
    options = {
        "backbone": backbone,
        "variant": variant,
        "output_stride": output_stride,
        "pad100": pad100,
        "upsampling": upsampling,
        "aux": aux,
        "width": width,
    }
    # Names, types, choices and the combinations FCN cannot be built with, with the catalog's messages.
    _ENTRY.resolve(options)
    check_num_classes(num_classes)
    model: nn.Module
    if backbone == "vgg16":
        model = FCNVGG16(num_classes, variant, pad100=pad100 is not False, upsampling=upsampling, width=width)
    else:
        depth = int(backbone.removeprefix("resnet"))
        model = FCNResNet(num_classes, depth, variant, output_stride, upsampling, aux)
    if weights is not None:
        load_weights(model, weights)
    return model
