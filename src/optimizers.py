"""Optimizers for BERT pre-training and fine-tuning, chosen by the job config.

`build_optimizer` reads `cfg.optimizer` (Lamb, AdamWeightDecay or Momentum)
and the config section of the same name. Lamb and AdamWeightDecay follow
Google BERT: the learning rate warms up linearly and then decays polynomially
(`BertLearningRate`), and LayerNorm parameters and biases get no weight decay
(`apply_decay`).

MindSpore's `nn.Lamb` has no CPU kernel, so on CPU Lamb is `ComposedLamb`,
the same update written with elementwise operators.
"""

import mindspore as ms
from mindspore import nn, ops

OPTIMIZERS = ("Lamb", "AdamWeightDecay", "Momentum")
DEVICE_TARGETS = ("Ascend", "GPU", "CPU")
# Devices with a kernel for MindSpore's fused Lamb operator.
LAMB_KERNEL_DEVICES = ("Ascend", "GPU")
# Lowercased name fragments of the parameters that get no weight decay.
NO_DECAY_NAME_PARTS = ("layernorm", "bias")


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

    def __init__(self, learning_rate, end_learning_rate, warmup_steps, decay_steps, power):
        super().__init__()
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate}")
        if not 0 <= end_learning_rate <= learning_rate:
            raise ValueError(f"end_learning_rate must be in [0, learning_rate={learning_rate}], "
                             f"got {end_learning_rate}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if decay_steps < 1:
            raise ValueError(f"decay_steps must be >= 1, got {decay_steps}")
        if power <= 0:
            raise ValueError(f"power must be positive, got {power}")
        self.learning_rate = float(learning_rate)
        self.end_learning_rate = float(end_learning_rate)
        self.warmup_steps = float(warmup_steps)
        self.decay_steps = float(decay_steps)
        self.power = float(power)

    def construct(self, global_step):
        step = ops.cast(global_step, ms.float32).reshape(())
        remaining = 1.0 - ops.minimum(step, self.decay_steps) / self.decay_steps
        decayed = ((self.learning_rate - self.end_learning_rate) * ops.pow(remaining, self.power)
                   + self.end_learning_rate)
        if self.warmup_steps == 0:
            return decayed
        warmup = self.learning_rate * step / self.warmup_steps
        return ops.select(step < self.warmup_steps, warmup, decayed)


def apply_decay(param_name):
    """Whether weight decay applies to a parameter: not to LayerNorm parameters or biases.

    Google BERT excludes "LayerNorm" and "bias"; here the test is on the
    lowercased name, so `layernorm.gamma`, `output_bias` and `dense.bias`
    are all excluded.
    """
    name = param_name.lower()
    return not any(part in name for part in NO_DECAY_NAME_PARTS)


_lamb_update = ops.MultitypeFuncGraph("lamb_update")


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
    param_norm = ops.norm(param)
    update_norm = ops.norm(update)
    both_positive = ops.logical_and(param_norm > 0, update_norm > 0)
    trust_ratio = ops.select(both_positive, param_norm / update_norm, ops.ones_like(param_norm))
    next_param = param - lr * trust_ratio * update
    next_param = ops.depend(next_param, ops.assign(m, next_m))
    next_param = ops.depend(next_param, ops.assign(v, next_v))
    return ops.assign(param, next_param)


class ComposedLamb(nn.Optimizer):
    """LAMB (You et al. 2019) written with elementwise operators, for devices without a Lamb kernel.

    MindSpore's `nn.Lamb` runs a fused Lamb kernel that exists only on Ascend
    and GPU; on CPU it fails with "Unsupported op [Lamb] on CPU".
    `build_optimizer` uses this class on CPU and `nn.Lamb` elsewhere. It takes
    the same arguments as `nn.Lamb` (including parameter groups with their own
    `weight_decay` or `lr`), computes the same update, and names its state
    like `nn.Lamb` (`lamb_m.<param>`, `lamb_v.<param>`, `global_step`), so
    optimizer checkpoints look alike. With t the step count after this step
    (1 on the first step) and lr read at the step count before it, as in
    every MindSpore optimizer:

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        r = (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps) + weight_decay * w
        w = w - lr * trust_ratio * r,  trust_ratio = ||w|| / ||r|| (1 if either is 0)

    Args:
        params (list[Parameter] | list[dict]): parameters or parameter groups,
            as for `nn.Optimizer`.
        learning_rate (float | Tensor | LearningRateSchedule): learning rate.
        beta1 (float): decay rate of the first moment, in (0, 1).
        beta2 (float): decay rate of the second moment, in (0, 1).
        eps (float): added to the denominator, > 0.
        weight_decay (float): decay of groups that set none; without groups it
            applies to parameters whose names have neither 'beta' nor 'gamma'.

    Inputs:
        gradients (tuple[Tensor]): gradients of `params`, each of its parameter's shape.

    Outputs:
        tuple[Tensor]: the updated parameters.
    """

    def __init__(self, params, learning_rate, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0):
        super().__init__(learning_rate, params, weight_decay)
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 < beta < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {beta}")
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.beta1 = ms.Tensor(beta1, ms.float32)
        self.beta2 = ms.Tensor(beta2, ms.float32)
        self.eps = ms.Tensor(eps, ms.float32)
        self.moments1 = self._parameters.clone(prefix="lamb_m", init="zeros")
        self.moments2 = self._parameters.clone(prefix="lamb_v", init="zeros")

    def construct(self, gradients):
        lr = self.get_lr()
        weight_decay = self.get_weight_decay()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        gradients = self.gradients_centralization(gradients)
        # Bias corrections 1 - beta^t, computed once for all parameters.
        step = ops.cast(self.global_step, ms.float32).reshape(())
        bias_correction1 = 1.0 - ops.pow(self.beta1, step)
        bias_correction2 = 1.0 - ops.pow(self.beta2, step)
        # hyper_map wants one value per parameter where groups may differ.
        if not self.is_group_lr:
            lr = (lr,) * self.param_length
        if not self.is_group:
            weight_decay = (weight_decay,) * self.param_length
        return self.hyper_map(ops.partial(_lamb_update, self.beta1, self.beta2, self.eps,
                                          bias_correction1, bias_correction2),
                              lr, weight_decay, self._parameters, self.moments1, self.moments2,
                              gradients, self.decay_flags)


def parameter_groups(params, weight_decay):
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


def build_optimizer(cfg, params, decay_steps, device_target, warmup_steps=None):
    """The optimizer named by `cfg.optimizer`, with the settings of its config section.

    Args:
        cfg (Config): job config; `cfg.optimizer` is one of `OPTIMIZERS` and
            `getattr(cfg, cfg.optimizer)` holds that optimizer's settings.
        params (list[Parameter]): the trainable parameters, in network order.
        decay_steps (int): steps over which the learning rate decays (Lamb and
            AdamWeightDecay), usually the total number of training steps.
        device_target (str): "Ascend", "GPU" or "CPU"; picks `nn.Lamb` or `ComposedLamb`.
        warmup_steps (int): overrides the section's `warmup_steps` (fine-tuning
            derives it from `warmup_proportion` of the run's steps).

    Returns:
        nn.Optimizer.
    """
    name = cfg.optimizer
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {', '.join(OPTIMIZERS)}, got {name!r}")
    if device_target not in DEVICE_TARGETS:
        raise ValueError(f"device_target: expected one of {', '.join(DEVICE_TARGETS)}, "
                         f"got {device_target!r}")
    settings = getattr(cfg, name)
    if name == "Momentum":
        return nn.Momentum(params, learning_rate=settings.learning_rate, momentum=settings.momentum)
    if warmup_steps is None:
        warmup_steps = settings.warmup_steps
    if warmup_steps > decay_steps:
        raise ValueError(f"{name}.warmup_steps ({warmup_steps}) exceeds the {decay_steps} training steps: "
                         f"the learning rate would never leave warmup; set --{name}.warmup_steps")
    learning_rate = BertLearningRate(settings.learning_rate, settings.end_learning_rate,
                                     warmup_steps, decay_steps, settings.power)
    groups = parameter_groups(params, settings.weight_decay)
    if name == "AdamWeightDecay":
        return nn.AdamWeightDecay(groups, learning_rate=learning_rate, eps=settings.eps)
    lamb = nn.Lamb if device_target in LAMB_KERNEL_DEVICES else ComposedLamb
    return lamb(groups, learning_rate=learning_rate, eps=settings.eps)
