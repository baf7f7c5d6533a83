"""Build-time check: TensorRT 10 and cuda-python's runtime bindings import (no GPU needed)."""
import tensorrt

try:
    from cuda.bindings import runtime  # noqa: F401
except ImportError:
    from cuda import cudart  # noqa: F401

assert tensorrt.__version__.startswith("10."), f"expected TensorRT 10, got {tensorrt.__version__}"
print("tensorrt", tensorrt.__version__)
