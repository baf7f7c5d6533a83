"""Reading model files with the standard library: what a model takes and how big it is.

Nothing here imports an ML framework or runs code from the file: pickles (TorchScript archives,
``pytorch_model.bin``) are read with an unpickler that builds inert stand-ins for every class
they name, and XML and JSON are parsed as data. Each reader raises FormatError with what it found.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from suite.protowire import OnnxValue


class FormatError(ValueError):
    """A file that is not what its name or layout says."""


# --- sha256 ---------------------------------------------------------------------------------------


def file_sha256(path: Path, remember: bool = True) -> str:
    """sha256 of a file, or of a folder: every file's path (relative to it) and content.

    A folder's digest changes when any file in it is added, removed, renamed or edited, so an
    artifact converted from a model folder is made again after any such change. ``remember``:
    weights of gigabytes are hashed once per version of the file (path, size, mtime, inode), not on
    every run; a check that must see every byte (the artifact cache's) passes False.
    """
    if path.is_dir():
        return combined_sha256(
            [(f.relative_to(path).as_posix(), file_sha256(f, remember)) for f in folder_files(path)]
        )
    stat = path.stat()
    remembered = _known_digests() if remember and stat.st_size >= LARGE_FILE else {}
    tag = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}"
    if tag in remembered:
        return remembered[tag]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if remember and stat.st_size >= LARGE_FILE:
        _remember(tag, digest.hexdigest())
    return digest.hexdigest()


LARGE_FILE = 64 << 20


def cache_root() -> Path:
    """joulebench's cache (conversions, exports, file hashes): $JOULEBENCH_CACHE, else
    $XDG_CACHE_HOME/joulebench, else ~/.cache/joulebench."""
    import os

    if os.environ.get("JOULEBENCH_CACHE"):
        return Path(os.environ["JOULEBENCH_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "joulebench"


def _digest_cache() -> Path:
    return cache_root() / "sha256.json"


def _known_digests() -> dict[str, str]:
    try:
        found = json.loads(_digest_cache().read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _remember(tag: str, sha: str) -> None:
    import os

    path = _digest_cache()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        known = {**_known_digests(), tag: sha}
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: hashed again next time


def folder_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def combined_sha256(named: list[tuple[str, str]]) -> str:
    """One digest over (relative name, sha256) pairs, in the order given (folder_files' order)."""
    digest = hashlib.sha256()
    for name, sha in named:
        raw = name.encode()
        # Length-prefixed name, then the file's own digest: no two layouts hash alike.
        digest.update(len(raw).to_bytes(8, "big") + raw + bytes.fromhex(sha))
    return digest.hexdigest()


# --- pickles, read inertly ----------------------------------------------------------------------

# torch storage class -> numpy dtype name
STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


class _Inert:
    """Stands in for any class a pickle names; keeps nothing, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


@dataclass
class TensorRef:
    dtype: str
    shape: tuple[int, ...]


class _InertUnpickler(pickle.Unpickler):
    """Unpickles torch's zip pickles without torch: tensors become TensorRefs, storages are counted."""

    def __init__(self, fh: Any) -> None:
        super().__init__(fh)
        self.storages: dict[str, tuple[str, int]] = {}  # key -> (dtype, elements)

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return lambda storage, offset, size, *rest: TensorRef(storage[0], tuple(size))
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda tensor, *rest: tensor
        if module == "torch.jit._pickle" and name == "restore_type_tag":
            return lambda value, tag: value
        if module == "collections" and name == "OrderedDict":
            return dict
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        return type(name, (_Inert,), {})

    def persistent_load(self, pid: Any) -> Any:
        # ('storage', storage class, key, location, elements)
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            dtype = STORAGE_DTYPES.get(pid[1], "float32") if isinstance(pid[1], str) else "float32"
            self.storages[str(pid[2])] = (dtype, int(pid[4]))
            return (dtype, int(pid[4]))
        return None


def _unpickle(z: zipfile.ZipFile, member: str) -> tuple[Any, dict[str, tuple[str, int]]]:
    with z.open(member) as fh:
        reader = _InertUnpickler(fh)
        try:
            value = reader.load()
        except Exception as exc:  # noqa: BLE001 - any malformed pickle is a file we cannot read
            raise FormatError(f"its {member.rsplit('/', 1)[-1]} does not unpickle: {exc}") from None
    return value, reader.storages


def torch_zip_parameters(path: Path) -> int:
    """Elements of every tensor storage in a torch zip file (torch.save, pytorch_model.bin)."""
    with zipfile.ZipFile(path) as z:
        member = next((n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1), None)
        if member is None:
            raise FormatError("no data.pkl in it")
        _, storages = _unpickle(z, member)
    return sum(n for _, n in storages.values())


# --- TorchScript --------------------------------------------------------------------------------


@dataclass
class TorchScriptInfo:
    root_class: str
    inputs: list[OnnxValue]  # dtypes and dims from the traced example where the file keeps one
    parameters: int
    traced: bool


def _split_args(text: str) -> list[str]:
    args, depth, current = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        args.append(current.strip())
    return args


def _forward_args(z: zipfile.ZipFile, prefix: str, module: str, name: str) -> list[tuple[str, str]]:
    """(name, type) of the root module's forward arguments, from the archive's code."""
    code_path = f"{prefix}/code/" + module.replace(".", "/") + ".py"
    if code_path not in z.namelist():
        raise FormatError(f"its code for {module}.{name} is missing")
    code = z.read(code_path).decode("utf-8", errors="replace")
    match = re.search(rf"^class {re.escape(name)}\(.*?^  def forward\((.*?)\)\s*->", code, re.S | re.M)
    if match is None:
        raise FormatError(f"no forward method found for {name}")
    args = [a.split(":", 1) for a in _split_args(match.group(1))[1:]]  # the first is self
    return [(a[0].strip(), a[1].strip() if len(a) > 1 else "Tensor") for a in args]


def read_torchscript(path: Path) -> TorchScriptInfo:
    """A TorchScript archive's root class, forward inputs and parameter count; FormatError otherwise."""
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FormatError(f"not a zip archive ({exc})") from None
    with z:
        names = z.namelist()
        data = next((n for n in names if n.endswith("/data.pkl") and n.count("/") == 1), None)
        if data is None:
            raise FormatError("no data.pkl in it: not a torch archive")
        prefix = data.split("/", 1)[0]
        if not any(n.startswith(f"{prefix}/code/") for n in names):
            raise FormatError(
                "a torch.save checkpoint (no code/ in the archive), not a TorchScript module: save the module with "
                "torch.jit.save, export it to ONNX, or give a registered model's state_dict to --weights"
            )
        root, storages = _unpickle(z, data)
        qualified = type(root).__name__
        module = _root_module(z, data)
        args = _forward_args(z, prefix, module, qualified)
        examples: list[Any] = []
        if f"{prefix}/traced_inputs.pkl" in names:
            traced, _ = _unpickle(z, f"{prefix}/traced_inputs.pkl")
            if isinstance(traced, dict) and isinstance(traced.get("forward"), list):
                examples = traced["forward"]
    inputs = []
    for i, (name, typ) in enumerate(args):
        if typ != "Tensor":
            raise FormatError(f"forward takes {name}: {typ}; joulebench feeds tensors only")
        example = examples[i] if i < len(examples) and isinstance(examples[i], TensorRef) else None
        if example is not None:
            inputs.append(OnnxValue(name, example.dtype, ["batch", *example.shape[1:]]))
        else:
            inputs.append(OnnxValue(name, "", ["?unranked"]))
    return TorchScriptInfo(
        f"{module.removeprefix('__torch__.')}.{qualified}", inputs, sum(n for _, n in storages.values()), bool(examples)
    )


def _root_module(z: zipfile.ZipFile, member: str) -> str:
    import pickletools

    for opcode, arg, _ in pickletools.genops(z.read(member)):
        if opcode.name == "GLOBAL":
            return str(arg).split(" ", 1)[0]
    raise FormatError("data.pkl names no class")


# --- safetensors and transformers weights ---------------------------------------------------------


def safetensors_parameters(path: Path) -> int:
    """Elements of every tensor in a .safetensors file, from its JSON header."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise FormatError("shorter than a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > 100 << 20:
            raise FormatError("its header length is implausible: not a safetensors file")
        try:
            header = json.loads(fh.read(length))
        except ValueError as exc:
            raise FormatError(f"its header is not JSON: {exc}") from None
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")


def hf_parameters(folder: Path) -> int | None:
    """Parameters of a save_pretrained folder's torch weights; None when it has none we can read."""
    shards = sorted(folder.glob("*.safetensors"))
    if shards:
        return sum(safetensors_parameters(p) for p in shards)
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if bins:
        return sum(torch_zip_parameters(p) for p in bins)
    return None


# --- Keras --------------------------------------------------------------------------------------


@dataclass
class KerasInfo:
    class_name: str
    inputs: list[OnnxValue]
    outputs: list[str]
    keras_version: str | None
    details: dict[str, Any] = field(default_factory=dict)


def _keras_dtype(value: Any) -> str:
    if isinstance(value, dict):  # Keras 3: a DTypePolicy
        value = value.get("config", {}).get("name", "float32")
    text = str(value or "float32")
    return "float32" if text.startswith("mixed_") else text


def _input_layer(layer: dict[str, Any]) -> OnnxValue:
    cfg = layer.get("config", {})
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    if shape is None:
        raise FormatError(f"input layer {cfg.get('name')} has no batch_shape")
    dims: list[int | str] = ["batch"]
    dims += [d if isinstance(d, int) else f"?{i + 1}" for i, d in enumerate(shape[1:])]
    return OnnxValue(str(cfg.get("name", "input")), _keras_dtype(cfg.get("dtype")), dims)


def read_keras(path: Path) -> KerasInfo:
    """A ``.keras`` archive's model class, inputs (from its InputLayers) and outputs; FormatError otherwise."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                raise FormatError("no config.json in the archive: not a Keras v3 .keras file")
            config = json.loads(z.read("config.json"))
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
    except (zipfile.BadZipFile, OSError) as exc:
        raise FormatError(f"not a zip archive ({exc})") from None
    except ValueError as exc:
        raise FormatError(f"its config.json is not JSON: {exc}") from None
    class_name = str(config.get("class_name", ""))
    inner = config.get("config", {})
    if class_name not in ("Functional", "Sequential", "Model"):
        raise FormatError(
            f"a subclassed Keras model ({config.get('module', '?')}.{class_name}) needs its Python code to load; "
            "save a Functional or Sequential model"
        )
    layers = inner.get("layers", [])
    by_name = {layer.get("config", {}).get("name"): layer for layer in layers}
    declared = inner.get("input_layers") or []
    if declared and not isinstance(declared[0], list):
        declared = [declared]  # one input: [name, 0, 0]
    inputs = [_input_layer(by_name[d[0]]) for d in declared if d and d[0] in by_name]
    if not inputs:
        inputs = [_input_layer(layer) for layer in layers if layer.get("class_name") == "InputLayer"]
    if not inputs and (config.get("build_config") or {}).get("input_shape"):
        inputs = [_input_layer({"config": {"name": "input", "batch_shape": config["build_config"]["input_shape"]}})]
    if not inputs:
        raise FormatError("its config declares no input shape (build the model on an Input before saving)")
    outs = inner.get("output_layers") or []
    if outs and not isinstance(outs[0], list):
        outs = [outs]
    return KerasInfo(class_name, inputs, [str(o[0]) for o in outs if o], meta.get("keras_version"))


# --- OpenVINO IR ----------------------------------------------------------------------------------

IR_DTYPES = {
    "f32": "float32",
    "f16": "float16",
    "bf16": "bfloat16",
    "f64": "float64",
    "i64": "int64",
    "i32": "int32",
    "i16": "int16",
    "i8": "int8",
    "u8": "uint8",
    "u16": "uint16",
    "u32": "uint32",
    "u64": "uint64",
    "boolean": "bool",
}


@dataclass
class IrInfo:
    name: str
    version: str
    inputs: list[OnnxValue]
    outputs: list[OnnxValue]
    parameters: int
    vocab: dict[str, int] = field(default_factory=dict)  # input -> rows of the table it indexes


Edges = dict[tuple[str | None, str | None], tuple[str | None, str | None]]


def _ir_vocab(layers: dict[str | None, ElementTree.Element], edges: Edges) -> dict[str, int]:
    """Integer Parameters that index an embedding table (Gather, maybe through Converts): the table's rows."""
    found: dict[str, int] = {}
    for layer_id, layer in layers.items():
        table = layer.find("input/port[@id='0']")
        if layer.get("type") != "Gather" or table is None or len(_ir_dims(table)) != 2:
            continue
        rows = _ir_dims(table)[0]
        source = edges.get((layer_id, "1"))
        while source is not None and layers.get(source[0]) is not None:
            producer = layers[source[0]]
            if producer.get("type") == "Parameter" and isinstance(rows, int):
                port = producer.find("output/port")
                name = _port_name(producer, port) if port is not None else str(producer.get("name"))
                found[name] = min(found.get(name, rows), rows)
                break
            source = edges.get((source[0], "0")) if producer.get("type") == "Convert" else None
    return found


def _ir_dims(port: ElementTree.Element) -> list[int | str]:
    dims: list[int | str] = []
    for i, d in enumerate(port.findall("dim")):
        text = (d.text or "").strip()
        dims.append(int(text) if text.lstrip("-").isdigit() and int(text) >= 0 else f"?{i}")
    return dims


def _port_name(layer: ElementTree.Element, port: ElementTree.Element) -> str:
    names = port.get("names") or layer.get("name") or "?"
    return names.split(",")[0].strip()


def read_ir(xml: Path) -> IrInfo:
    """An OpenVINO IR's Parameters, Results and constant elements; FormatError otherwise."""
    try:
        root = ElementTree.parse(xml).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise FormatError(f"not XML ({exc})") from None
    if root.tag != "net":
        raise FormatError(f"its root element is <{root.tag}>, not OpenVINO IR's <net>")
    layers = {layer.get("id"): layer for layer in root.iter("layer")}
    inputs, parameters, outputs = [], 0, []
    for layer in layers.values():
        kind, data = layer.get("type"), layer.find("data")
        if kind == "Parameter":
            port = layer.find("output/port")
            if port is None or data is None:
                raise FormatError(f"Parameter {layer.get('name')} has no output port")
            dtype = IR_DTYPES.get(str(data.get("element_type")), str(data.get("element_type")))
            inputs.append(OnnxValue(_port_name(layer, port), dtype, _ir_dims(port)))
        elif kind == "Const" and data is not None and data.get("shape") is not None:
            shape = [int(s) for s in str(data.get("shape")).split(",") if s.strip()]
            parameters += math.prod(shape)
    edges = {
        (e.get("to-layer"), e.get("to-port")): (e.get("from-layer"), e.get("from-port")) for e in root.iter("edge")
    }
    for layer_id, layer in layers.items():
        if layer.get("type") != "Result":
            continue
        port = layer.find("input/port")
        source = edges.get((layer_id, port.get("id") if port is not None else None))
        producer = layers.get(source[0]) if source else None
        out_port = producer.find(f"output/port[@id='{source[1]}']") if producer is not None and source else None
        name = (
            _port_name(producer, out_port) if producer is not None and out_port is not None else str(layer.get("name"))
        )
        dims = _ir_dims(port) if port is not None else []
        precision = str(out_port.get("precision", "")) if out_port is not None else ""
        outputs.append(OnnxValue(name, IR_DTYPES.get(precision.lower().replace("fp", "f"), precision.lower()), dims))
    if not inputs:
        raise FormatError("it has no Parameter layer")
    vocab = _ir_vocab(layers, edges)
    return IrInfo(str(root.get("name", "")), str(root.get("version", "")), inputs, outputs, parameters, vocab)
