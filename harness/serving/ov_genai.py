"""The ONNX export of a causal LM made into the folder OpenVINO GenAI's ``LLMPipeline`` loads.

LLMPipeline wants what optimum-intel's OpenVINO export writes: ``openvino_model.xml`` with inputs
``input_ids, attention_mask, position_ids, beam_idx``, the KV cache kept in the model's state
(stateful), and ``logits`` shaped [batch, positions, vocab]. Made here from the ONNX export the
other engines serve (:mod:`harness.serving.export`), with OpenVINO's own transformations, in the
OpenVINO GenAI image: MakeStateful (as the openvino engine does at load), the cache reordered by
``beam_idx`` (a Gather on each state, as optimum-intel's export adds), and the export's last-position
logits given their positions axis. Why not optimum-intel itself: it needs transformers < 5.6, which
cannot share an environment with the transformers 5 every other export and reference here uses.
The tokenizer stays the model's own (tokenizer.json, in the server): the pipeline gets token ids.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from harness.serving.lm import CACHE_FILE, ONNX_FILE

OV_GENAI_FILE = "openvino_model.xml"


def write_ov_genai(onnx_folder: str, out_dir: str) -> dict[str, Any]:
    import openvino as ov
    from openvino import opset13 as ops

    from harness.serving.lm import make_stateful

    with open(os.path.join(onnx_folder, CACHE_FILE)) as fh:
        layout = json.load(fh)
    core = ov.Core()
    model = core.read_model(os.path.join(onnx_folder, ONNX_FILE))
    make_stateful(model, layout["past_names"], layout["present_names"])
    beam = ops.parameter([-1], ov.Type.i32, name="beam_idx")
    beam.output(0).get_tensor().set_names({"beam_idx"})
    states = 0
    for op in model.get_ops():
        if op.get_type_name() != "ReadValue":
            continue
        readers = list(op.output(0).get_target_inputs())
        reordered = ops.gather(op.output(0), beam, ops.constant(0))
        for reader in readers:
            reader.replace_source_output(reordered.output(0))
        states += 1
    model.add_parameters([beam])
    result = next(r for r in model.get_results() if "logits" in r.output(0).get_names())
    logits = result.input_value(0)
    logits.get_tensor().set_names(set())
    positioned = ops.unsqueeze(logits, ops.constant([1]))
    positioned.output(0).get_tensor().set_names({"logits"})
    result.input(0).replace_source_output(positioned.output(0))
    model.validate_nodes_and_infer_types()
    os.makedirs(out_dir, exist_ok=True)
    ov.save_model(model, os.path.join(out_dir, OV_GENAI_FILE), compress_to_fp16=False)
    for name in os.listdir(onnx_folder):
        path = os.path.join(onnx_folder, name)
        if os.path.isfile(path) and not name.startswith("model.onnx"):
            shutil.copy(path, os.path.join(out_dir, name))
    return {"states": states, "inputs": [i.get_any_name() for i in model.inputs]}
