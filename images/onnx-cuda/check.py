"""Build-time check: onnxruntime-gpu has the CUDA and TensorRT providers (no GPU needed)."""
import onnxruntime as ort
import tensorrt

found = ort.get_available_providers()
for wanted in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
    assert wanted in found, f"{wanted} missing from onnxruntime-gpu {ort.__version__}: {found}"
assert tensorrt.__version__.startswith("10."), f"expected TensorRT 10, got {tensorrt.__version__}"
print("onnxruntime", ort.__version__, found, "tensorrt", tensorrt.__version__)
