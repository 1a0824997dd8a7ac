"""Data sinking: the choice per target, sink-aligned plans, and on CPU the sink path against the host loop."""

import mindspore as ms
import numpy as np
import pytest

import run_pretrain
from src.training import TrainingError, TrainingPlan, align_to_sinks, data_sink_steps, train
from tests.test_run_pretrain import data_dir, metrics, tiny_args  # noqa: F401 (data_dir is a fixture)

NO_DROPOUT = ["--model.hidden_dropout_prob=0.0", "--model.attention_probs_dropout_prob=0.0", "--train_steps=6",
              "--save_checkpoint_steps=3", "--save_checkpoint_num=5", "--Lamb.warmup_steps=2"]


def test_sinking_is_chosen_per_target():
    assert [data_sink_steps("auto", 5, target) for target in ("Ascend", "GPU", "CPU")] == [5, 5, 0]
    assert [data_sink_steps(setting, 5, "CPU") for setting in (True, "true", "false", False)] == [5, 5, 0, 0]
    assert data_sink_steps("false", 5, "Ascend") == 0
    with pytest.raises(TrainingError, match="enable_data_sink: expected auto, true or false, got 'yes'"):
        data_sink_steps("yes", 5, "CPU")


def plan(**changes):
    fields = dict(total_steps=100, micro_batches_per_step=1, samples_per_micro_batch=8, steps_per_epoch=50,
                  log_every_steps=1, save_checkpoint_steps=25, save_checkpoint_num=1, checkpoint_dir="",
                  output_dir="", max_overflow_steps_at_floor=10)
    return TrainingPlan(**{**fields, **changes})


def test_plans_align_to_whole_sinks(capsys):
    aligned = align_to_sinks(plan(steps_per_sink=10))
    # 100 steps are 10 sinks; logs every sink; checkpoints every 30 steps (25 rounded up to 3 sinks).
    assert (aligned.total_steps, aligned.log_every_steps, aligned.save_checkpoint_steps) == (100, 10, 30)
    assert capsys.readouterr().out.splitlines() == [
        "note: log_every_steps 1 -> 10: a whole number of sinks of data_sink_steps=10 steps",
        "note: save_checkpoint_steps 25 -> 30: a whole number of sinks of data_sink_steps=10 steps"]
    assert align_to_sinks(plan(total_steps=105, steps_per_sink=10)).total_steps == 100  # the zoo's floor
    assert align_to_sinks(plan(save_checkpoint_steps=0, steps_per_sink=10)).save_checkpoint_steps == 0  # at the end
    assert align_to_sinks(plan()) == plan()  # no sinking: unchanged
    with pytest.raises(TrainingError, match=r"data_sink_steps \(10\) exceeds the run's 6 steps"):
        align_to_sinks(plan(total_steps=6, steps_per_sink=10))


def test_a_resume_must_start_at_a_sink_boundary():
    with pytest.raises(TrainingError, match="its step 4 is not a sink boundary of data_sink_steps=3"):
        train(None, None, plan(steps_per_sink=3), start={"trained_steps": 4, "micro_batches_done": 4})


def test_sinks_give_the_host_loops_losses_and_weights_and_resume_exactly(data_dir, tmp_path):
    """6 steps in sinks of 3 (fed from the host on CPU) against 6 single steps: equal losses at the sink
    boundaries and bitwise-equal final weights; a run resumed from the step-3 checkpoint repeats step 6."""
    host, sunk, resumed = tmp_path / "host", tmp_path / "sunk", tmp_path / "resumed"
    run_pretrain.main(tiny_args(data_dir, host, *NO_DROPOUT, "--enable_data_sink=false"))
    sink = [*NO_DROPOUT, "--enable_data_sink=true", "--data_sink_steps=3"]
    run_pretrain.main(tiny_args(data_dir, sunk, *sink))
    run_pretrain.main(tiny_args(data_dir, resumed, *sink,
                                f"--load_checkpoint_path={sunk / 'checkpoints' / 'checkpoint_bert_step_3.ckpt'}"))
    by_step = {r["step"]: (r["loss"], r["lr"]) for r in metrics(host)}
    assert [(r["step"], r["loss"], r["lr"]) for r in metrics(sunk)] == [(s, *by_step[s]) for s in (3, 6)]
    assert [(r["step"], r["loss"], r["lr"]) for r in metrics(resumed)] == [(6, *by_step[6])]
    final = {name: ms.load_checkpoint(str(run / "checkpoints" / "checkpoint_bert_step_6.ckpt"))
             for name, run in (("host", host), ("sunk", sunk), ("resumed", resumed))}
    for name in final["host"]:
        np.testing.assert_array_equal(final["sunk"][name].asnumpy(), final["host"][name].asnumpy(), err_msg=name)
        np.testing.assert_array_equal(final["resumed"][name].asnumpy(), final["host"][name].asnumpy(), err_msg=name)
