"""Optimizers for BERT pre-training and fine-tuning, chosen by the job config.

`build_optimizer` reads `cfg.optimizer` (Lamb, AdamWeightDecay or Momentum)
and the config section of the same name. Lamb and AdamWeightDecay follow
Google BERT: the learning rate warms up linearly and then decays polynomially
(`BertLearningRate`), and LayerNorm parameters and biases get no weight decay
(`apply_decay`).

MindSpore 2.10 marks `nn.Lamb`, `nn.AdamWeightDecay` and `nn.Momentum`
deprecated ("will be removed after version 2.9.0"). What is used instead, per
optimizer (README.md, "Performance", has the step times behind these choices):

  AdamWeightDecay  `AdamWeightDecay` below, on every target: our class over
                   the public fused `ops.AdamWeightDecay` kernel, which
                   `nn.AdamWeightDecay` also runs: about as fast, and
                   faster than the same update written with elementwise
                   operators.
  Lamb             `ComposedLamb` on CPU, where `nn.Lamb` has no kernel
                   (its norms by row sums first, `sum_of_squares`); it is
                   several times slower than the fused AdamWeightDecay.
                   `nn.Lamb`'s fused kernel on Ascend and GPU, where the
                   composed form would add a dozen elementwise passes per
                   parameter. This is why requirements.txt pins
                   mindspore==2.10.0.
  Momentum         `nn.SGD` with momentum (not deprecated): the same update.
"""

import mindspore as ms
from mindspore import nn, ops

from src.config import Config, ConfigError
# Row-first sums of squares (see its docstring), as the train cell's clipping norms use.
from src.train_cell import sum_of_squares

OPTIMIZERS = ("Lamb", "AdamWeightDecay", "Momentum")
DEVICE_TARGETS = ("Ascend", "GPU", "CPU")
# Devices with a kernel for MindSpore's fused Lamb operator.
LAMB_KERNEL_DEVICES = ("Ascend", "GPU")
# Lowercased name fragments of the parameters that get no weight decay.
NO_DECAY_NAME_PARTS = ("layernorm", "bias")
# A section's `decay_steps` with this value decays over the run's total steps.
RUN_STEPS = -1
# Settings that MindSpore's optimizer classes refuse below 0 with a ValueError of their own: checked first,
# so that a bad value is a ConfigError naming its key.
NON_NEGATIVE_SETTINGS = {"Lamb": ("weight_decay",), "AdamWeightDecay": ("weight_decay",),
                         "Momentum": ("learning_rate", "momentum")}


class BertLearningRate(nn.learning_rate_schedule.LearningRateSchedule):
    """Google BERT's learning rate: linear warmup, then polynomial decay.

    The decay is computed from step 0, not from the end of warmup, so at
    `warmup_steps` the rate is already below `learning_rate` (Google's
    `create_optimizer` does the same):

        decayed(step) = (learning_rate - end_learning_rate)
                        * (1 - min(step, decay_steps) / decay_steps) ** power
                        + end_learning_rate
        lr(step) = learning_rate * step / warmup_steps   if step < warmup_steps
                   decayed(step)                         otherwise

    Args:
        learning_rate (float): peak learning rate, > 0.
        end_learning_rate (float): rate from `decay_steps` on, in [0, learning_rate].
        warmup_steps (int): steps of linear warmup from 0; 0 means no warmup.
        decay_steps (int): steps over which the rate decays, >= 1 (usually the
            total number of training steps).
        power (float): exponent of the polynomial decay, > 0.

    Inputs:
        global_step (Tensor): int32, shape [1] or []; the optimizer's step count.

    Outputs:
        Tensor: float32, shape []; the learning rate of that step.
    """

    def __init__(self, learning_rate: float, end_learning_rate: float, warmup_steps: int, decay_steps: int,
                 power: float):
        super().__init__()
        if learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {learning_rate}")
        if not 0 <= end_learning_rate <= learning_rate:
            raise ConfigError(f"end_learning_rate must be in [0, learning_rate={learning_rate}], "
                              f"got {end_learning_rate}")
        if warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if decay_steps < 1:
            raise ConfigError(f"decay_steps must be >= 1, got {decay_steps}")
        if power <= 0:
            raise ConfigError(f"power must be positive, got {power}")
        self.learning_rate = float(learning_rate)
        self.end_learning_rate = float(end_learning_rate)
        self.warmup_steps = float(warmup_steps)
        self.decay_steps = float(decay_steps)
        self.power = float(power)

    def construct(self, global_step: ms.Tensor) -> ms.Tensor:
        step = ops.cast(global_step, ms.float32).reshape(())
        remaining = 1.0 - ops.minimum(step, self.decay_steps) / self.decay_steps
        decayed = ((self.learning_rate - self.end_learning_rate) * ops.pow(remaining, self.power)
                   + self.end_learning_rate)
        if self.warmup_steps == 0:
            return decayed
        warmup = self.learning_rate * step / self.warmup_steps
        return ops.select(step < self.warmup_steps, warmup, decayed)


def apply_decay(param_name: str) -> bool:
    """Whether weight decay applies to a parameter: not to LayerNorm parameters or biases.

    Google BERT excludes "LayerNorm" and "bias"; here the test is on the
    lowercased name, so `layernorm.gamma`, `output_bias` and `dense.bias`
    are all excluded.
    """
    name = param_name.lower()
    return not any(part in name for part in NO_DECAY_NAME_PARTS)


# What a learning rate may be, as for `nn.Optimizer`.
LearningRate = float | ms.Tensor | nn.learning_rate_schedule.LearningRateSchedule

_adam_weight_decay_update = ops.MultitypeFuncGraph("adam_weight_decay_update")
_lamb_update = ops.MultitypeFuncGraph("lamb_update")


@_adam_weight_decay_update.register("Function", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
                                    "Tensor", "Tensor", "Bool")
def _adam_weight_decay_update_param(kernel, beta1, beta2, eps, lr, weight_decay, param, m, v, gradient,
                                    decay_flag):
    """One AdamWeightDecay step of one parameter (its moments `m`, `v` too) by the fused kernel."""
    return kernel(param, m, v, lr, beta1, beta2, eps, weight_decay if decay_flag else 0.0, gradient)


@_lamb_update.register("Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
                       "Tensor", "Tensor", "Tensor", "Tensor", "Bool")
def _lamb_update_param(beta1, beta2, eps, bias_correction1, bias_correction2, lr, weight_decay,
                       param, m, v, gradient, decay_flag):
    """One LAMB step of one parameter: update its moments `m`, `v` and the parameter itself."""
    next_m = beta1 * m + (1.0 - beta1) * gradient
    next_v = beta2 * v + (1.0 - beta2) * ops.square(gradient)
    update = (next_m / bias_correction1) / (ops.sqrt(next_v / bias_correction2) + eps)
    if decay_flag:
        update = update + weight_decay * param
    # Layer-wise trust ratio ||w|| / ||update||; 1 where either norm is 0
    # (e.g. a bias initialised to zeros), as in nn.Lamb's kernels.
    param_norm = ops.sqrt(sum_of_squares(param))
    update_norm = ops.sqrt(sum_of_squares(update))
    both_positive = ops.logical_and(param_norm > 0, update_norm > 0)
    trust_ratio = ops.select(both_positive, param_norm / update_norm, ops.ones_like(param_norm))
    next_param = param - lr * trust_ratio * update
    next_param = ops.depend(next_param, ops.assign(m, next_m))
    next_param = ops.depend(next_param, ops.assign(v, next_v))
    return ops.assign(param, next_param)


class _AdamMoments(nn.Optimizer):
    """What AdamWeightDecay and ComposedLamb share: Adam's two moments, their settings, one step's values.

    Args:
        params, learning_rate, weight_decay: as for `nn.Optimizer`.
        beta1 (float): decay rate of the first moment, in (0, 1).
        beta2 (float): decay rate of the second moment, in (0, 1).
        eps (float): added to the denominator, > 0.
        state_prefix (str): the moments are named `<state_prefix>_m.<param>` and
            `<state_prefix>_v.<param>`, as in MindSpore's class of the same update,
            so optimizer checkpoints of either load into the other.
    """

    def __init__(self, params: list, learning_rate: LearningRate, beta1: float, beta2: float, eps: float,
                 weight_decay: float, state_prefix: str):
        super().__init__(learning_rate, params, weight_decay)
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 < beta < 1.0:
                raise ConfigError(f"{name} must be in (0, 1), got {beta}")
        if eps <= 0:
            raise ConfigError(f"eps must be positive, got {eps}")
        self.beta1 = ms.Tensor(beta1, ms.float32)
        self.beta2 = ms.Tensor(beta2, ms.float32)
        self.eps = ms.Tensor(eps, ms.float32)
        self.moments1 = self._parameters.clone(prefix=f"{state_prefix}_m", init="zeros")
        self.moments2 = self._parameters.clone(prefix=f"{state_prefix}_v", init="zeros")

    def next_step(self) -> tuple[tuple[ms.Tensor, ...], tuple[ms.Tensor, ...]]:
        """Advance the step count; returns (learning rates, weight decays), one of each per parameter.

        The learning rate is read at the step count before this step, as in
        every MindSpore optimizer. `hyper_map` wants one value per parameter
        where groups may differ, so values all parameters share are repeated.
        """
        lr = self.get_lr()
        weight_decay = self.get_weight_decay()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        if not self.is_group_lr:
            lr = (lr,) * self.param_length
        if not self.is_group:
            weight_decay = (weight_decay,) * self.param_length
        return lr, weight_decay


class AdamWeightDecay(_AdamMoments):
    """Google BERT's AdamWeightDecay, by MindSpore's fused `ops.AdamWeightDecay` kernel on every target.

    The update of the deprecated `nn.AdamWeightDecay` (which runs the same
    kernel) and of Google BERT's `AdamWeightDecayOptimizer`: Adam *without*
    bias correction of the moments, weight decay added to the update rather
    than to the loss:

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        w = w - lr * (m / (sqrt(v) + eps) + weight_decay * w)

    torch's `AdamW` corrects the moments' bias, so its early steps are several
    times smaller at the same learning rate: learning rates do not port
    between the two unchanged. Takes the arguments of `nn.AdamWeightDecay`
    (parameter groups with their own `weight_decay` or `lr` included) and
    names its state like it (`adam_m.<param>`, `adam_v.<param>`, `global_step`).

    Args:
        params (list[Parameter] | list[dict]): parameters or parameter groups,
            as for `nn.Optimizer`.
        learning_rate (float | Tensor | LearningRateSchedule): learning rate.
        beta1, beta2 (float): decay rates of the moments, in (0, 1).
        eps (float): added to the denominator, > 0.
        weight_decay (float): decay of groups that set none; without groups it
            applies to parameters whose names have neither 'beta' nor 'gamma'.

    Inputs:
        gradients (tuple[Tensor]): gradients of `params`, each of its parameter's shape.

    Outputs:
        tuple[Tensor]: per parameter, the kernel's updated (parameter, m, v).
    """

    def __init__(self, params: list, learning_rate: LearningRate, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-6, weight_decay: float = 0.0):
        super().__init__(params, learning_rate, beta1, beta2, eps, weight_decay, state_prefix="adam")
        self.kernel = ops.AdamWeightDecay()

    def construct(self, gradients: tuple[ms.Tensor, ...]) -> tuple[ms.Tensor, ...]:
        lr, weight_decay = self.next_step()
        gradients = self.gradients_centralization(gradients)
        return self.hyper_map(ops.partial(_adam_weight_decay_update, self.kernel, self.beta1, self.beta2, self.eps),
                              lr, weight_decay, self._parameters, self.moments1, self.moments2,
                              gradients, self.decay_flags)


class ComposedLamb(_AdamMoments):
    """LAMB (You et al. 2019) written with elementwise operators, for devices without a Lamb kernel.

    MindSpore's `nn.Lamb` runs a fused Lamb kernel that exists only on Ascend
    and GPU; on CPU it fails with "Unsupported op [Lamb] on CPU".
    `build_optimizer` uses this class on CPU and `nn.Lamb` elsewhere (the
    module docstring says why). It takes the arguments of `nn.Lamb`
    (parameter groups with their own `weight_decay` or `lr` included),
    computes the same update, and names its state like `nn.Lamb`
    (`lamb_m.<param>`, `lamb_v.<param>`, `global_step`), so optimizer
    checkpoints look alike. With t the step count after this step (1 on the
    first step):

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        r = (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps) + weight_decay * w
        w = w - lr * trust_ratio * r,  trust_ratio = ||w|| / ||r|| (1 if either is 0)

    Args:
        params (list[Parameter] | list[dict]): parameters or parameter groups,
            as for `nn.Optimizer`.
        learning_rate (float | Tensor | LearningRateSchedule): learning rate.
        beta1, beta2 (float): decay rates of the moments, in (0, 1).
        eps (float): added to the denominator, > 0.
        weight_decay (float): decay of groups that set none; without groups it
            applies to parameters whose names have neither 'beta' nor 'gamma'.

    Inputs:
        gradients (tuple[Tensor]): gradients of `params`, each of its parameter's shape.

    Outputs:
        tuple[Tensor]: the updated parameters.
    """

    def __init__(self, params: list, learning_rate: LearningRate, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-6, weight_decay: float = 0.0):
        super().__init__(params, learning_rate, beta1, beta2, eps, weight_decay, state_prefix="lamb")

    def construct(self, gradients: tuple[ms.Tensor, ...]) -> tuple[ms.Tensor, ...]:
        lr, weight_decay = self.next_step()
        gradients = self.gradients_centralization(gradients)
        # Bias corrections 1 - beta^t, computed once for all parameters.
        step = ops.cast(self.global_step, ms.float32).reshape(())
        bias_correction1 = 1.0 - ops.pow(self.beta1, step)
        bias_correction2 = 1.0 - ops.pow(self.beta2, step)
        return self.hyper_map(ops.partial(_lamb_update, self.beta1, self.beta2, self.eps,
                                          bias_correction1, bias_correction2),
                              lr, weight_decay, self._parameters, self.moments1, self.moments2,
                              gradients, self.decay_flags)


def parameter_groups(params: list[ms.Parameter], weight_decay: float) -> list[dict]:
    """Optimizer groups: `weight_decay` for the parameters `apply_decay` accepts, none for the rest.

    Empty groups are left out (MindSpore rejects them); `order_params` keeps
    the network's parameter order.
    """
    decay = [param for param in params if apply_decay(param.name)]
    no_decay = [param for param in params if not apply_decay(param.name)]
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay})
    return groups + [{"order_params": params}]


def schedule_decay_steps(name: str, decay_steps: int, total_steps: int) -> int:
    """The steps `name`'s learning rate decays over: its section's `decay_steps`, or the run's
    `total_steps` when that is RUN_STEPS (-1). More than the run ends above `end_learning_rate`;
    fewer holds `end_learning_rate` for the rest of the run."""
    if decay_steps == RUN_STEPS:
        return total_steps
    if decay_steps < 1:
        raise ConfigError(f"{name}.decay_steps: expected a number of steps >= 1, or {RUN_STEPS} for the run's "
                          f"{total_steps} steps, got {decay_steps}")
    return decay_steps


def build_optimizer(cfg: Config, params: list[ms.Parameter], total_steps: int, device_target: str,
                    warmup_steps: int | None = None) -> nn.Optimizer:
    """The optimizer named by `cfg.optimizer`, with the settings of its config section.

    Args:
        cfg (Config): job config; `cfg.optimizer` is one of `OPTIMIZERS` and
            `getattr(cfg, cfg.optimizer)` holds that optimizer's settings.
        params (list[Parameter]): the trainable parameters, in network order.
        total_steps (int): the run's optimizer steps; the learning rate decays
            over them unless the section sets `decay_steps`.
        device_target (str): "Ascend", "GPU" or "CPU"; picks `nn.Lamb` or `ComposedLamb`.
        warmup_steps (int): overrides the section's `warmup_steps` (fine-tuning
            derives it from `warmup_proportion` of the run's steps).

    Returns:
        nn.Optimizer.
    Raises:
        ConfigError naming the setting, for an unknown optimizer or a value out of range
        (so that a job reports it in one line, and a real bug's ValueError still shows its traceback).
    """
    name = cfg.optimizer
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer: expected one of {', '.join(OPTIMIZERS)}, got {name!r}")
    if device_target not in DEVICE_TARGETS:
        raise ConfigError(f"device_target: expected one of {', '.join(DEVICE_TARGETS)}, "
                          f"got {device_target!r}")
    settings = getattr(cfg, name)
    for key in NON_NEGATIVE_SETTINGS[name]:
        if getattr(settings, key) < 0:
            raise ConfigError(f"{name}.{key} must be >= 0, got {getattr(settings, key)}")
    if name == "Momentum":
        return nn.SGD(params, learning_rate=settings.learning_rate, momentum=settings.momentum)
    if warmup_steps is None:
        warmup_steps = settings.warmup_steps
    if warmup_steps > total_steps:
        raise ConfigError(f"{name}.warmup_steps ({warmup_steps}) exceeds the {total_steps} training steps: "
                          f"the learning rate would never leave warmup; set --{name}.warmup_steps")
    learning_rate = BertLearningRate(settings.learning_rate, settings.end_learning_rate, warmup_steps,
                                     schedule_decay_steps(name, settings.decay_steps, total_steps), settings.power)
    groups = parameter_groups(params, settings.weight_decay)
    optimizer = AdamWeightDecay
    if name == "Lamb":
        optimizer = nn.Lamb if device_target in LAMB_KERNEL_DEVICES else ComposedLamb
    return optimizer(groups, learning_rate=learning_rate, beta1=settings.beta1, beta2=settings.beta2,
                     eps=settings.eps)
