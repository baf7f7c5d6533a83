"""Build-time check: the NGC torch is the CUDA build the manifest says (no GPU needed)."""
import torch
import triton  # noqa: F401  (torch.compile's GPU backend)

assert torch.version.cuda and torch.version.cuda.startswith("13."), f"expected CUDA 13, got {torch.version.cuda}"
assert "sm_90" in torch.cuda.get_arch_list(), f"no Hopper kernels: {torch.cuda.get_arch_list()}"
print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_arch_list())
