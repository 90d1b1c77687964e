"""How much memory one training step needs: predicted from the layer shapes, and measured.

A training step keeps, at its peak (Chen et al. 2016, "Training Deep Nets with Sublinear
Memory Cost", Section 2, describe the same accounting):

* the **parameters**, their **gradients**, and the **optimizer state** (Adam: two running
  averages per parameter; SGD with momentum: one; plain SGD: none);
* the **activations saved for the backward pass**. Autograd keeps what each layer needs to
  compute its gradients: a convolution or a dense layer keeps its input (for the weight gradient), a
  normalisation layer its input, a ReLU its output, a max-pooling its input and the int64
  indices of its maxima, the loss its softmax. Concatenation and interpolation keep nothing
  large. Tensors shared between layers (an in-place ReLU writes into the normalisation's
  output, which is also the next convolution's input) are counted once;
* a **transient workspace**: while the backward pass goes through a layer, the gradient of
  its output and the gradient of its input are alive together. The largest such pair is the
  workspace.

:func:`estimate_memory` adds these up from shapes alone: it runs the model on PyTorch's
``meta`` device, which computes shapes without allocating memory, with a hook on every
layer. :func:`measure_peak_memory` measures the same step for real: on the CPU in a fresh
process (peak resident memory minus the memory before the model was built), on a GPU with
``torch.cuda.max_memory_allocated``. Built in ``notebooks/03_unet3d.ipynb``.

Models may return a tensor, a list of deep-supervision heads or a dict; both functions read
the output through :func:`~unet_lessons.models.base.unpack_output`, the one place that
knows these kinds.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass, fields
from typing import Optional, Sequence

import torch
import torch.nn as nn

from .blocks import ResidualAdd, SkipJoin
from .models.base import unpack_output

__all__ = ["MemoryEstimate", "estimate_memory", "measure_peak_memory"]

_OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "sgd_momentum": 1, "sgd": 0}
_MIB = 2**20

# Layers and what autograd saves for their backward pass.
_SAVES_INPUT = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
                nn.GroupNorm, nn.LayerNorm, nn.PReLU, nn.LeakyReLU, nn.ELU, nn.Linear, nn.Softplus)
_SAVES_OUTPUT = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Softmax)
_SAVES_NOTHING = (nn.Upsample, nn.Identity, nn.modules.dropout._DropoutNd, nn.modules.pooling._AvgPoolNd, ResidualAdd,
                  nn.modules.padding._ConstantPadNd)


@dataclass(frozen=True)
class MemoryEstimate:
    """The parts of the peak memory of one training step, in bytes."""

    parameters: int
    gradients: int
    optimizer_state: int
    activations: int
    workspace: int

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer_state + self.activations + self.workspace

    def table(self) -> str:
        """The parts and the total in MiB, one per line."""
        rows = [(f.name.replace("_", " "), getattr(self, f.name)) for f in fields(self)] + [("total", self.total)]
        return "\n".join(f"{name:16s} {value / _MIB:10.1f} MiB" for name, value in rows)

    def __str__(self) -> str:
        return self.table()


def _tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def estimate_memory(model: nn.Module, input_shape: Sequence[int], batch_size: int = 1, *,
                    optimizer: str = "adam", loss_tensors: int = 1) -> MemoryEstimate:
    """Predict the peak memory of one training step of ``model`` from its layer shapes.

    Args:
        model: the network (it is copied to the ``meta`` device; the original is untouched).
        input_shape: one input without the batch axis, ``(C, *S)``.
        batch_size: samples per step.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd_momentum"`` or ``"sgd"``.
        loss_tensors: logit-sized tensors the loss keeps: 1 for cross-entropy (its
            log-softmax), 3 for Dice + cross-entropy (log-softmax, softmax, one-hot target);
            per output, when the model returns one per head (deep supervision).

    Raises:
        ValueError: for an unknown optimizer, a wrong input shape (the model's own
            ``check_input`` runs when it has one), or a layer type without a rule.
    """
    if optimizer not in _OPTIMIZER_STATES:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZER_STATES)}; got {optimizer!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    parameter_bytes = sum(_tensor_bytes(p) for p in model.parameters() if p.requires_grad)
    meta_model = copy.deepcopy(model).to("meta").train()
    saved: dict[int, int] = {}  # tensor identity -> bytes; shared tensors count once
    keep_alive: list[torch.Tensor] = []  # so that ids are not reused while we count
    workspace = 0

    def remember(tensor: torch.Tensor) -> None:
        keep_alive.append(tensor)
        saved[id(tensor)] = _tensor_bytes(tensor)

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal workspace
        if isinstance(module, SkipJoin):
            return  # a concatenation or a sum keeps nothing for the backward pass, and is not a layer's workspace
        x = inputs[0]
        workspace = max(workspace, _tensor_bytes(x) + _tensor_bytes(output))
        if isinstance(module, _SAVES_INPUT):
            remember(x)
        elif isinstance(module, _SAVES_OUTPUT):
            remember(output)
        elif isinstance(module, nn.modules.pooling._MaxPoolNd):
            remember(x)
            saved[id(output) + 1] = output.numel() * 8  # the int64 argmax indices
        elif not isinstance(module, _SAVES_NOTHING):
            raise ValueError(f"estimate_memory has no rule for {type(module).__name__} layers; "
                             "add one to unet_lessons.memory.")

    leaves = [m for m in meta_model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        x = torch.empty(batch_size, *input_shape, device="meta")
        if hasattr(meta_model, "check_input"):
            meta_model.check_input(x)
        output = meta_model(x)
    finally:
        for handle in handles:
            handle.remove()
    # Deep supervision (UNet++) gives one output per head, and the loss keeps tensors for each.
    unpacked = unpack_output(output)
    # Every other tensor the model returns (e.g. a VAE's reconstruction) is kept by the loss it enters.
    extras = sum(_tensor_bytes(t) for t in unpacked.extras.values() if isinstance(t, torch.Tensor) and t.dim())
    activations = (sum(saved.values()) + extras
                   + loss_tensors * sum(_tensor_bytes(output) for output in unpacked.all_heads))
    return MemoryEstimate(parameters=parameter_bytes, gradients=parameter_bytes,
                          optimizer_state=_OPTIMIZER_STATES[optimizer] * parameter_bytes,
                          activations=activations, workspace=workspace)


_CHILD = r"""
import importlib, json, sys
spec = json.loads(sys.argv[1])
import torch
from unet_lessons.models.base import output_loss, unpack_output
from unet_lessons.models.unetpp import deep_supervision_loss
torch.set_num_threads(spec["threads"])
torch.manual_seed(0)

def proc_kib(field):  # Linux only: a line of /proc/self/status, in bytes
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")

def rusage_peak():  # the peak resident memory of the process so far, in bytes
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux

def report(peak, method, **extra):
    print(json.dumps({"peak": peak, "method": method, **extra}))
    sys.exit(0)

device = torch.device(spec["device"])
method = "cuda" if device.type == "cuda" else spec["method"]
if method == "getrusage":
    try:
        import resource
    except ImportError:  # Windows
        report(None, None, reason="no resource module on this system, so no peak resident memory")
shape = [spec["batch_size"], *spec["input_shape"]]
x = torch.randn(shape, device=device)
module_name, class_name = spec["model"].split(":")
model_class = getattr(importlib.import_module(module_name), class_name)
loss_fn = lambda heads, target: deep_supervision_loss(heads, target, torch.nn.functional.cross_entropy)
# Warm up on a small input first: PyTorch's first convolution, backward pass and optimizer step
# load code and set up caches and thread pools (about 100 MiB on a CPU) whatever the input size.
warm = model_class(**spec["kwargs"]).to(device).train()
warm_x = torch.randn([1, shape[1]] + [spec["warmup_side"]] * (len(shape) - 2), device=device)
sum(head.float().mean() for head in unpack_output(warm(warm_x)).all_heads).backward()
torch.optim.Adam(warm.parameters()).step()  # the first optimizer step imports more of torch
del warm, warm_x
extra = {}
if method == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
elif method == "proc":
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak resident memory (VmHWM) to the current one
    base = proc_kib("VmRSS")
else:  # the peak cannot be reset: measure how far the steps raise it above the warm-up's peak
    base = rusage_peak()
    if sys.platform.startswith("linux"):
        extra["warmup_peak_above_resident"] = base - proc_kib("VmRSS")
model = model_class(**spec["kwargs"]).to(device).train()
with torch.no_grad():
    first = unpack_output(model(x[:1])).logits
    y = first.argmax(1).expand(shape[0], *first.shape[2:]).contiguous()
if spec["optimizer"] == "adam":
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
else:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9 if spec["optimizer"] == "sgd_momentum" else 0)
for _ in range(spec["steps"]):
    loss, _ = output_loss(model(x), y, loss_fn)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
if method == "cuda":
    torch.cuda.synchronize(); peak = torch.cuda.max_memory_allocated() - base
elif method == "proc":
    peak = proc_kib("VmHWM") - base
else:
    peak = rusage_peak() - base
    if peak <= 0:
        report(None, method, reason="the steps never rose above the warm-up's peak", **extra)
report(peak, method, **extra)
"""

_METHODS = ("auto", "proc", "getrusage")

# Linux carries a process's peak RSS over an exec from the memory it forked from, so a child
# started straight from a large process (a notebook kernel, pytest) would begin with that
# process's peak, above anything the warm-up reaches. A small launcher process in between
# starts the measuring process with the launcher's own small peak instead.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run([sys.executable, *sys.argv[1:]]).returncode)"


def _proc_peak_resettable() -> bool:
    """Whether this system lets a process reset its peak resident memory (Linux ``/proc/self/clear_refs``)."""
    return sys.platform.startswith("linux") and os.access("/proc/self/clear_refs", os.W_OK)


def measure_peak_memory(model_spec: tuple[str, dict], input_shape: Sequence[int], batch_size: int = 1, *,
                        optimizer: str = "adam", device: str = "cpu", steps: int = 2, threads: int = 2,
                        warmup_side: int = 16, method: str = "auto", timeout: float = 300.0) -> Optional[int]:
    """Measure the peak memory of training steps, in bytes, in a fresh Python process.

    The step uses cross-entropy (``loss_tensors=1`` in :func:`estimate_memory`), averaged over
    the heads under deep supervision. Before the baseline, a copy of the model runs forward,
    backward and an optimizer step on a small input (``warmup_side`` voxels per axis):
    PyTorch's first use of its kernels costs a fixed amount of memory, about 100 MiB on a
    CPU here, that has nothing to do with the model's size, and the warm-up keeps it out of
    the figure. The process runs with a fixed glibc mmap threshold, so that large tensors
    are returned to the system when freed and the peak reflects what was alive at once. Two
    steps are run by default: the optimizer state exists from the first step on, so the
    second step shows the steady state.

    On the CPU there are two ways to read the peak resident memory (RSS):

    * ``"proc"`` (Linux): reset the peak after the warm-up (``/proc/self/clear_refs``) and
      report the new peak minus the RSS just before the model is built. It includes the
      parameters and the allocator's overhead.
    * ``"getrusage"`` (Linux, macOS, the BSDs): the standard library's
      ``resource.getrusage(...).ru_maxrss``, which cannot be reset. The result is how far the
      steps raise the peak above the warm-up's peak (the process is started through a small
      launcher, so that it does not begin with the peak of the process that asked). The warm-up's peak lies a little above
      the RSS at the baseline (by its small input's activations: a few MiB at the default
      side), so this reads low by that much; when the steps never rise above it, nothing
      comparable was measured and the result is ``None``.

    ``"auto"`` uses ``"proc"`` where the peak can be reset, else ``"getrusage"``. On a GPU the
    figure is ``torch.cuda.max_memory_allocated`` above the memory allocated at the baseline.

    Args:
        model_spec: ``("module:Class", kwargs)``, e.g. ``("unet_lessons.models:UNet", {...})``.
        input_shape: one input without the batch axis, ``(C, *S)``.
        batch_size: samples per step.
        optimizer: ``"adam"``, ``"sgd_momentum"`` or ``"sgd"``.
        device: ``"cpu"`` or ``"cuda"``.
        steps: training steps to run.
        threads: torch threads in the child process.
        warmup_side: spatial side of the warm-up input (a size the model can take).
        method: ``"auto"``, ``"proc"`` or ``"getrusage"`` (see above; CPU only).
        timeout: seconds before the child is stopped.

    Returns:
        The peak in bytes, or ``None`` where nothing comparable can be measured: on a system
        without the ``resource`` module (Windows), or when ``"getrusage"`` sees no rise.

    Raises:
        RuntimeError: if the child process fails, with its error output.
    """
    if optimizer not in ("adam", "sgd_momentum", "sgd"):
        raise ValueError(f"optimizer must be 'adam', 'sgd_momentum' or 'sgd'; got {optimizer!r}.")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}; got {method!r}.")
    if method == "proc" and not _proc_peak_resettable():
        raise ValueError("method='proc' needs Linux's /proc/self/clear_refs; use method='getrusage' or 'auto'.")
    model, kwargs = model_spec
    if ":" not in model:
        raise ValueError(f"model_spec must name the class as 'module:Class'; got {model!r}.")
    if method == "auto":
        method = "proc" if _proc_peak_resettable() else "getrusage"
    spec = dict(model=model, kwargs=kwargs, input_shape=list(input_shape), batch_size=batch_size,
                optimizer=optimizer, device=device, steps=steps, threads=threads, warmup_side=warmup_side,
                method=method)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "CUDA_VISIBLE_DEVICES": os.environ.get(
        "CUDA_VISIBLE_DEVICES", "") if device == "cuda" else ""}
    command = [sys.executable, "-c", _CHILD, json.dumps(spec)]
    if method == "getrusage":
        command = [sys.executable, "-c", _LAUNCHER] + command[1:]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"the measuring process failed (exit code {result.returncode}):\n{result.stderr[-2000:]}")
    peak = json.loads(result.stdout.strip().splitlines()[-1])["peak"]
    return None if peak is None else int(peak)
