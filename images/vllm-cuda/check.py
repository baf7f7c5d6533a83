"""Build-time check: vLLM and a CUDA torch with Hopper kernels are in the base (no GPU needed)."""
import torch
import vllm

assert torch.version.cuda, "torch is not a CUDA build"
assert "sm_90" in torch.cuda.get_arch_list(), f"no Hopper kernels: {torch.cuda.get_arch_list()}"
print("vllm", vllm.__version__, "torch", torch.__version__, "CUDA", torch.version.cuda)
