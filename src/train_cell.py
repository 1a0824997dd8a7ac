"""The one train cell: an optimizer step of any loss network, pretraining's and every task's.

    BertTrainOneStepCell  one optimizer step of a Cell returning a scalar loss, with
                          loss scaling, overflow skipping, gradient clipping and
                          gradient accumulation (one cell for every combination)
    overflow_check_for    how that cell detects overflow on a device target
    sum_of_squares        a gradient's squared norm (also the Lamb trust ratio's)
"""

import mindspore as ms
from mindspore import amp, nn, ops
from mindspore.communication import get_group_size
from mindspore.context import ParallelMode
from mindspore.parallel._utils import _get_parallel_mode

from src.device import set_allreduce_split

# How the train cell decides that a step's gradients overflowed (see overflow_check_for).
ALL_FINITE = "amp.all_finite"  # MindSpore's check: NPU float-status registers on Ascend, FloatStatus on GPU
INF_NAN = "inf-nan"            # the gradients' sum of squares is inf or NaN
OVERFLOW_CHECKS = (ALL_FINITE, INF_NAN)
# Targets whose fp16 overflows only MindSpore's all_finite reliably reports.
ALL_FINITE_TARGETS = ("Ascend", "GPU")
# The dynamic loss scale never goes below this (MindSpore's update cell floor); overflowing steps at
# this scale are counted (`overflow_steps_at_floor`), since a smaller scale cannot help them.
MIN_LOSS_SCALE = 1.0


def overflow_check_for(device_target: str) -> str:
    """The overflow check for `device_target`: ALL_FINITE on Ascend and GPU, INF_NAN on CPU.

    Ascend 910 computes in saturation mode: an fp16 overflow becomes +-65504,
    not inf, so an inf/NaN test on the gradients never fires there; only the
    NPU float-status registers, which `mindspore.amp.all_finite` reads, tell.
    On CPU the inf/NaN test is free: the gradients' sums of squares are
    computed anyway for clipping, while all_finite's CPU path is one more pass
    over every gradient.
    """
    return ALL_FINITE if device_target in ALL_FINITE_TARGETS else INF_NAN


def sum_of_squares(grad: ms.Tensor) -> ms.Tensor:
    """Sum of the squared entries. A matrix is summed by rows first: MindSpore's CPU kernel for a full
    reduction is several times slower than per-row sums (README.md, "Performance")."""
    squares = ops.square(grad.astype(ms.float32))
    if grad.ndim > 1:
        squares = squares.reshape(grad.shape[0], -1).sum(-1)
    return squares.sum()


def _clip_factor(clip_norm, divisor, squared_norm):
    """The multiplier that unscales (1 / divisor) and clips a gradient whose scaled sum of squares is
    `squared_norm`: clip_norm / max(norm, clip_norm), as ops.clip_by_norm and ops.clip_by_global_norm use."""
    norm = ops.sqrt(squared_norm) / divisor
    return clip_norm / ops.maximum(norm, clip_norm) / divisor


def _multiply(factor, grad):
    return grad * factor.astype(grad.dtype)


class BertTrainOneStepCell(nn.Cell):
    """One training step of `network` (any Cell returning a scalar loss): the only train cell.

    Per call, on one micro-batch:
      1. loss and gradients of (loss * loss_scale), so fp16 gradients do not underflow;
      2. with `accumulation_steps` k > 1, add the gradients to buffers and return
         unless this is the k-th micro-batch; the update then uses their mean,
         which equals the gradient of the mean loss over the k micro-batches;
      3. average across devices in data-parallel runs;
      4. overflow: the sums of squares of step 5 are inf/NaN (some gradient,
         or the norm, is not finite) or, with `overflow_check` ALL_FINITE
         (`overflow_check_for` Ascend/GPU, where saturating fp16 hides
         overflows from an inf/NaN test), MindSpore's all_finite says the
         gradients are not finite; the loss-scale update cell then halves the
         scale on overflow and doubles it after `scale_window` clean steps;
         `overflow_steps_at_floor` counts consecutive overflowing steps at
         MIN_LOSS_SCALE on the device, so the host need not read every step;
      5. unscale and clip in one multiply per tensor: global norm (Google BERT)
         or each tensor's norm (the zoo's `enable_global_norm: false`);
      6. apply the optimizer unless overflow: a bad step is skipped, not taken.

    Steps 4-5 read every gradient once (sum of squares) and write it once,
    instead of a pass each for unscaling, finiteness and clipping, which cost
    a measurable share of a CPU fine-tuning step (README.md, "Performance").

    Args:
        network (nn.Cell): returns a scalar loss from the batch columns.
        optimizer (nn.Optimizer): updates the network's trainable parameters.
        scale_update_cell (nn.Cell): nn.DynamicLossScaleUpdateCell,
            nn.FixedLossScaleUpdateCell, or None for no loss scaling.
        accumulation_steps (int): micro-batches per optimizer step.
        clip_norm (float): gradient clipping threshold.
        enable_global_norm (bool): clip by global norm (True) or per tensor.
        overflow_check (str): ALL_FINITE or INF_NAN; None: `overflow_check_for`
            the context's device target.

    Inputs:
        *inputs: the batch columns `network` takes.
    Outputs:
        loss: float32 scalar: on the k-th micro-batch the mean over the step's
            k micro-batches; on the others that micro-batch's own loss.
        overflow: bool scalar, True when the update was skipped (always False
            on micro-batches that only accumulate).
        scale: float32 scalar, the loss scale used for this step.
    """

    def __init__(self, network: nn.Cell, optimizer: nn.Optimizer, scale_update_cell: nn.Cell | None = None,
                 accumulation_steps: int = 1, clip_norm: float = 1.0,
                 enable_global_norm: bool = True, overflow_check: str | None = None) -> None:

        super().__init__(auto_prefix=False)
        if accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be at least 1, got {accumulation_steps}")
        if overflow_check is None:
            overflow_check = overflow_check_for(ms.get_context("device_target"))
        if overflow_check not in OVERFLOW_CHECKS:
            raise ValueError(f"overflow_check: expected one of {', '.join(OVERFLOW_CHECKS)}, got {overflow_check!r}")
        self.overflow_check = overflow_check
        self.network = network
        self.network.set_grad()
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.hyper_map = ops.HyperMap()
        self.scale_update_cell = scale_update_cell
        initial_scale = scale_update_cell.get_loss_scale() if scale_update_cell is not None else 1.0
        self.loss_scale = ms.Parameter(ms.Tensor(initial_scale, ms.float32), name="loss_scale")
        self.overflow_steps_at_floor = ms.Parameter(ms.Tensor(0, ms.int32), name="overflow_steps_at_floor")
        self.clip_norm = clip_norm
        self.enable_global_norm = enable_global_norm
        self.grad_reducer = ops.identity
        if _get_parallel_mode() in (ParallelMode.DATA_PARALLEL, ParallelMode.HYBRID_PARALLEL):
            set_allreduce_split(self.weights)  # read by the reducer: fused all-reduces end at layer boundaries
            self.grad_reducer = nn.DistributedGradReducer(self.weights, mean=True, degree=get_group_size())
        self.accumulation_steps = accumulation_steps
        if accumulation_steps > 1:
            self.accumulated_grads = self.weights.clone(prefix="accumulated_grads", init="zeros")
            self.accumulated_loss = ms.Parameter(ms.Tensor(0.0, ms.float32), name="accumulated_loss")
            self.micro_step = ms.Parameter(ms.Tensor(0, ms.int32), name="micro_step")

    def construct(self, *inputs: ms.Tensor) -> tuple[ms.Tensor, ms.Tensor, ms.Tensor]:
        loss = self.network(*inputs)
        scale = self.loss_scale.value()
        grads = self.grad(self.network, self.weights)(*inputs, ops.ones_like(loss) * scale.astype(loss.dtype))
        if self.accumulation_steps == 1:
            return self.update(grads, loss, scale)
        # Gradient accumulation: buffers keep the running sums between calls.
        self.hyper_map(ops.assign_add, self.accumulated_grads, grads)
        ops.assign_add(self.accumulated_loss, loss.astype(ms.float32))
        ops.assign_add(self.micro_step, ms.Tensor(1, ms.int32))
        if self.micro_step < self.accumulation_steps:
            return loss, ms.Tensor(False), scale
        mean_loss = self.accumulated_loss / self.accumulation_steps
        result = self.update(self.hyper_map(ops.identity, self.accumulated_grads), mean_loss, scale)
        # Reset only after the update has read the buffers (auto-monad keeps this order).
        self.hyper_map(ops.assign, self.accumulated_grads, self.hyper_map(ops.zeros_like, self.accumulated_grads))
        ops.assign(self.accumulated_loss, ms.Tensor(0.0, ms.float32))
        ops.assign(self.micro_step, ms.Tensor(0, ms.int32))
        return result

    def update(self, grads: tuple[ms.Tensor, ...], loss: ms.Tensor,
               scale: ms.Tensor) -> tuple[ms.Tensor, ms.Tensor, ms.Tensor]:
        """Steps 3-6 on summed, scaled gradients; returns (loss, overflow, scale)."""
        grads = self.grad_reducer(grads)
        divisor = scale * self.accumulation_steps
        sums_of_squares = self.hyper_map(sum_of_squares, grads)       # one scalar per tensor
        total = ops.addn(sums_of_squares) if self.enable_global_norm else ops.stack(sums_of_squares)
        # A norm that overflows float32 would make the clipping factor 0 or NaN: always a skipped step.
        finite = ops.isfinite(total).all()
        if self.overflow_check == ALL_FINITE:  # chosen at compile time
            finite = ops.logical_and(finite, amp.all_finite(grads))
        if self.enable_global_norm:
            factor = _clip_factor(self.clip_norm, divisor, total)
            grads = self.hyper_map(ops.partial(_multiply, factor), grads)
        else:
            factors = self.hyper_map(ops.partial(_clip_factor, self.clip_norm, divisor), sums_of_squares)
            grads = self.hyper_map(_multiply, factors, grads)
        overflow = ops.logical_not(finite)
        if self.scale_update_cell is not None:
            overflow = self.scale_update_cell(self.loss_scale, overflow)
        at_floor = ops.logical_and(overflow, scale <= MIN_LOSS_SCALE).astype(ms.int32)
        ops.assign(self.overflow_steps_at_floor, (self.overflow_steps_at_floor + 1) * at_floor)
        if not overflow:
            # depend: the returned loss waits for the update, so the step is done when it is read.
            loss = ops.depend(loss, self.optimizer(grads))
        return loss, overflow, scale
