"""Build-time check: TensorFlow is a CUDA build (no GPU needed)."""
import tensorflow as tf

info = tf.sysconfig.get_build_info()
assert info.get("is_cuda_build"), f"TensorFlow {tf.__version__} is not a CUDA build"
print("tensorflow", tf.__version__, "CUDA", info.get("cuda_version"), "cuDNN", info.get("cudnn_version"))
