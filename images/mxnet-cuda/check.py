"""Build-time check: MXNet is a CUDA build (no GPU needed)."""
import mxnet as mx
from mxnet.runtime import Features

assert Features().is_enabled("CUDA"), f"MXNet {mx.__version__} is not a CUDA build"
print("mxnet", mx.__version__)
