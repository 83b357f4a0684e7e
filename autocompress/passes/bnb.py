"""bitsandbytes weight quantization of a torch model: LLM.int8, nf4 and fp4 linear layers.

The torch-level counterpart of `precision.py`, for targets that serve the PyTorch
model itself (`targets/torch_cuda.py`): every `nn.Linear` except the protected ones
(the classifier head) becomes a bitsandbytes layer, and bitsandbytes quantizes its
weights when the layer is moved to its device. A model quantized this way cannot be
exported to ONNX (bitsandbytes #768); it is served by PyTorch.

bitsandbytes 0.50 also runs these layers on CPU (correct, but slower than FP32
torch: it saves memory, not time), which is how the tests check them without a GPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType

import torch
from torch import nn

from autocompress.errors import Unsupported
from autocompress.passes.precision import BNB_4BIT_TYPES

INT8_THRESHOLD = 6.0
"""LLM.int8: activation columns with any value above this stay in fp16 (the outliers)."""
BNB_4BIT_BLOCK_SIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
DOUBLE_QUANT = True
"""4-bit: the per-block absmax values are themselves quantized (bitsandbytes' default)."""


def import_bitsandbytes() -> ModuleType:
    """bitsandbytes, or `Unsupported` saying how to install it (it is an optional extra)."""
    try:
        import bitsandbytes
    except ImportError:
        raise Unsupported("bitsandbytes is not installed: pip install bitsandbytes") from None
    return bitsandbytes


def quantize_linear_layers(
    model: nn.Module,
    bits: int,
    quant_type: str = "nf4",
    skip: Iterable[nn.Module] = (),
    *,
    block_size: int = 64,
    device: torch.device | str | None = None,
) -> nn.Module:
    """Replace every `nn.Linear` of `model` except those in `skip` by bitsandbytes layers.

    bits 8: `Linear8bitLt` (LLM.int8: int8 weights with one scale per output row;
    activation outliers above `INT8_THRESHOLD` are multiplied in fp16). bits 4:
    `Linear4bit` with `quant_type` nf4 or fp4, one absmax per `block_size` weights,
    computing in the weights' dtype. Each new layer is moved from the CPU to `device`
    (default: where its weights were), which is when bitsandbytes quantizes them.

    Changes `model` in place and returns it. Only exact `nn.Linear` modules are
    replaced: subclasses such as `nn.MultiheadAttention.out_proj` are used through
    their weight tensors, not their forward, and stay as they are.
    """
    if bits not in (8, 4):
        raise ValueError(f"bitsandbytes quantizes to 8 or 4 bits, not {bits}")
    if bits == 4 and quant_type not in BNB_4BIT_TYPES:
        raise ValueError(f"quant_type must be one of {BNB_4BIT_TYPES}, not {quant_type!r}")
    bnb = import_bitsandbytes()
    skipped = {id(module) for module in skip}
    replaced: dict[int, nn.Module] = {}  # a layer used twice stays one layer
    for path, child in list(model.named_modules(remove_duplicate=False)):
        if not path or type(child) is not nn.Linear or id(child) in skipped:
            continue
        if id(child) not in replaced:
            replaced[id(child)] = _bnb_linear(bnb, child, bits, quant_type, block_size, device)
        parent_path, _, name = path.rpartition(".")
        setattr(model.get_submodule(parent_path), name, replaced[id(child)])
    return model


def _bnb_linear(
    bnb: ModuleType,
    linear: nn.Linear,
    bits: int,
    quant_type: str,
    block_size: int,
    device: torch.device | str | None,
) -> nn.Module:
    weight = linear.weight.data
    device = weight.device if device is None else device
    weight = weight.cpu()  # bitsandbytes quantizes int8 weights only on a move off the CPU
    shape = (linear.in_features, linear.out_features)
    has_bias = linear.bias is not None
    if bits == 8:
        layer = bnb.nn.Linear8bitLt(
            *shape, bias=has_bias, has_fp16_weights=False, threshold=INT8_THRESHOLD, device="meta"
        )
        layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    else:
        layer = bnb.nn.Linear4bit(
            *shape,
            bias=has_bias,
            compute_dtype=weight.dtype,
            compress_statistics=DOUBLE_QUANT,
            quant_type=quant_type,
            device="meta",
        )
        layer.weight = bnb.nn.Params4bit(
            weight,
            requires_grad=False,
            quant_type=quant_type,
            blocksize=block_size,
            compress_statistics=DOUBLE_QUANT,
            module=layer,
        )
    if has_bias:
        layer.bias = nn.Parameter(linear.bias.data.cpu(), requires_grad=False)
    return layer.to(device)


def quantized_bytes(model: nn.Module) -> int:
    """Bytes of the model's state as it is held now: packed weights plus the
    quantization statistics bitsandbytes keeps beside them (scales, absmax)."""
    return sum(
        tensor.numel() * tensor.element_size()
        for tensor in model.state_dict().values()
        if isinstance(tensor, torch.Tensor)
    )
