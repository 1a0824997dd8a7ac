"""The Hugging Face side of the benchmark: `transformers` + `torch`, in a child process.

    python bench/hf_side.py PLAN RESULT             every measurement of PLAN (JSON) -> RESULT (JSON)
    python bench/hf_side.py --pipeline MODEL_DIR SENTENCES     (internal: the timed pipeline command)

`bench/run.py` starts it (`run_hf`) with the interpreter of `--hf_python`
before MindSpore does any work, so neither framework's thread pool competes
with the other's. It imports neither MindSpore nor any `src` module that does
(only `bench.common`); the model shapes come from the parent, which builds
them with the project's own config loader.
"""

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported inside the functions: the child reports a missing torch instead of failing
    import torch
    import transformers

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import (CLEAN_ENV, CORPORA, GEMM_REPEATS, PASS_WARMUP, REPO, LengthCase, ModelCase,  # noqa: E402
                          length_rows, median_seconds, megabytes, model_inputs, our_tokenizer, package_version,
                          pass_rate, token_ids, vocab_size_of)

HF_CLASSES = {"pretrain": "BertForPreTraining", "classifier": "BertForSequenceClassification",
              "classifier_forward": "BertForSequenceClassification", "squad": "BertForQuestionAnswering",
              "ner": "BertForTokenClassification"}
# Our AdamWeightDecay settings: the Hugging Face side uses the same.
LEARNING_RATE = 3e-5
WEIGHT_DECAY = 0.01
GRADIENT_CLIP_NORM = 1.0
PIPELINE_TASK = "text-classification"


def hf_worker(plan_path: str, result_path: str) -> None:
    """Runs every Hugging Face measurement of the plan the parent wrote; writes the results as JSON."""
    with open(plan_path, encoding="utf-8") as f:
        plan = json.load(f)
    try:
        import torch
        import transformers
    except ImportError as error:
        result = {"available": False, "reason": f"{error.name} is not installed in {sys.executable}"}
    else:
        default_threads = torch.get_num_threads()
        torch.set_num_threads(os.cpu_count())
        torch.manual_seed(0)
        result = {"available": True, "python": sys.executable, "torch": torch.__version__,
                  "transformers": transformers.__version__, "tokenizers": package_version("tokenizers"),
                  "torch_default_threads": default_threads, "torch_threads": torch.get_num_threads(),
                  "torch_interop_threads": torch.get_num_interop_threads(),
                  "gemm": gemm_gflops(plan["gemm_size"]), "models": {}, "lengths": {}, "tokenizer": {}}
        for fields in plan["cases"]:
            case = ModelCase(**fields)
            print(f"[hf] {case.title}", flush=True)
            result["models"][case.key] = model_step(case, plan["repeats"])
        for fields in plan["length_cases"]:
            case = LengthCase(**fields)
            print(f"[hf] {case.dataset} lengths", flush=True)
            result["lengths"][case.dataset] = dynamic_padding_passes(case, plan["vocabs"][case.dataset],
                                                                     plan["repeats"])
        print("[hf] pipeline", flush=True)
        result["pipeline"] = pipeline_rate(plan["predict"], plan["repeats"])
        for language, lines_file in plan["corpora"].items():
            print(f"[hf] tokenizer, {language}", flush=True)
            result["tokenizer"][language] = tokenizer_rate(lines_file, CORPORA[language][1], plan["repeats"])
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)


def gemm_gflops(size: int) -> dict:
    import torch
    a, b = torch.randn(size, size), torch.randn(size, size)
    seconds, times = median_seconds(lambda _: torch.matmul(a, b), GEMM_REPEATS)
    return {"gflops": 2 * size ** 3 / seconds / 1e9, "seconds": seconds, "times": times}


def hf_config(model: dict, num_labels: int) -> "transformers.BertConfig":
    """transformers.BertConfig of the same architecture as the project's BertConfig fields `model`."""
    import transformers
    return transformers.BertConfig(
        vocab_size=model["vocab_size"], hidden_size=model["hidden_size"],
        num_hidden_layers=model["num_hidden_layers"], num_attention_heads=model["num_attention_heads"],
        intermediate_size=model["intermediate_size"], hidden_act="gelu",  # exact (erf) GELU, as ours
        hidden_dropout_prob=model["hidden_dropout_prob"],
        attention_probs_dropout_prob=model["attention_probs_dropout_prob"],
        max_position_embeddings=model["max_position_embeddings"], type_vocab_size=model["type_vocab_size"],
        initializer_range=model["initializer_range"], layer_norm_eps=model["layer_norm_eps"],
        num_labels=num_labels or 2)


def hf_model(task: str, model: dict, num_labels: int) -> "transformers.PreTrainedModel":
    import transformers
    return getattr(transformers, HF_CLASSES[task])(hf_config(model, num_labels))


def hf_batch(case: ModelCase) -> dict[str, "torch.Tensor"]:
    """The same random batch as the project's, in the arguments of the Hugging Face model."""
    import torch
    arrays = model_inputs(case)
    batch = {"input_ids": arrays["input_ids"], "attention_mask": arrays["input_mask"],
             "token_type_ids": arrays["segment_ids"]}
    if case.task == "pretrain":
        # Hugging Face takes MLM labels per position: the original token at the masked ones, -100 elsewhere.
        labels = torch.full((case.batch_size, case.seq_length), -100, dtype=torch.long)
        positions = torch.from_numpy(arrays["masked_lm_positions"]).long()
        labels.scatter_(1, positions, torch.from_numpy(arrays["masked_lm_ids"]).long())
        batch.update(labels=labels, next_sentence_label=arrays["next_sentence_labels"].reshape(-1))
    elif case.task == "classifier":
        batch.update(labels=arrays["label_ids"].reshape(-1))
    elif case.task == "squad":
        batch.update(start_positions=arrays["start_positions"].reshape(-1),
                     end_positions=arrays["end_positions"].reshape(-1))
    return {name: value if isinstance(value, torch.Tensor) else torch.from_numpy(value).long()
            for name, value in batch.items()}


def train_step(model: "transformers.PreTrainedModel") -> Callable[[dict[str, "torch.Tensor"]], None]:
    """A function running one torch train step on a batch: forward, backward, global-norm clipping
    (as Google BERT and our train cell do) and AdamW at our learning rate and weight decay."""
    import torch
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)

    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRADIENT_CLIP_NORM)
        optimizer.step()
    return step


def model_step(case: ModelCase, repeats: int) -> dict:
    """Median time of a torch train step or eval-mode forward on the case's fixed batch."""
    import torch
    model = hf_model(case.task, case.model, case.num_labels)
    batch = hf_batch(case)
    if case.task == "classifier_forward":
        model.eval()

        def run(_):
            with torch.inference_mode():
                model(**batch)
    else:
        step = train_step(model)
        run = lambda _: step(batch)  # noqa: E731
    seconds, times = median_seconds(run, repeats)
    return {"seconds": seconds, "times": times, "class": HF_CLASSES[case.task],
            "attn_implementation": model.config._attn_implementation}


def dynamic_padding_passes(case: LengthCase, vocab: str, repeats: int) -> dict:
    """Samples/s of fine-tuning passes as Hugging Face users write them: a DataLoader over the
    unpadded rows (random order each pass) whose collator pads each batch to its longest row
    (`DataCollatorWithPadding`; for tagging `DataCollatorForTokenClassification`, which also
    pads the labels with -100), and the torch train step."""
    import torch
    import transformers
    tokenizer = fast_tokenizer(vocab)
    features = [{"input_ids": ids, "token_type_ids": [0] * len(ids), "attention_mask": [1] * len(ids),
                 "labels": labels} for ids, labels in length_rows(case)]
    collator = (transformers.DataCollatorForTokenClassification(tokenizer) if case.task == "ner"
                else transformers.DataCollatorWithPadding(tokenizer))
    loader = torch.utils.data.DataLoader(features, batch_size=case.batch_size, shuffle=True, collate_fn=collator)
    step = train_step(hf_model(case.task, case.model, case.num_labels))

    def one_pass():
        count = 0
        for batch in loader:
            step(dict(batch))
            count += len(batch["input_ids"])
        return count
    return {**pass_rate(one_pass, repeats), "collator": type(collator).__name__}


def fast_tokenizer(vocab: str) -> "transformers.BertTokenizerFast":
    """BertTokenizerFast on our vocabulary file (lower-cased, as our data)."""
    import transformers
    # transformers 5 takes the vocabulary file as `vocab` (and silently ignores 4.x's `vocab_file`).
    tokenizer = transformers.BertTokenizerFast(vocab=os.path.join(REPO, vocab), do_lower_case=True)
    if len(tokenizer) != vocab_size_of(vocab):
        raise RuntimeError(f"BertTokenizerFast loaded {len(tokenizer)} tokens from {vocab}")
    return tokenizer


def pipeline_rate(plan: dict, repeats: int) -> dict:
    """Sentences/s of a command that builds `pipeline("text-classification")` from a saved model of
    the plan's architecture and classifies the sentences file: start-up included, as predict.py."""
    model_dir = plan["model_dir"]
    hf_model("classifier", plan["model"], plan["num_labels"]).save_pretrained(model_dir)
    fast_tokenizer(plan["vocab"]).save_pretrained(model_dir)
    command = [sys.executable, os.path.abspath(__file__), "--pipeline", model_dir, plan["sentences_file"]]
    run = lambda _: subprocess.run(command, cwd=REPO, env=CLEAN_ENV, check=True,  # noqa: E731
                                   capture_output=True)
    seconds, times = median_seconds(run, repeats, warmup=PASS_WARMUP)
    return {"sentences_per_s": plan["sentences"] / seconds, "seconds": seconds, "times": times}


def classify_with_pipeline(model_dir: str, sentences_file: str) -> None:
    """The timed command of `pipeline_rate`: what a Hugging Face user runs, default settings."""
    from transformers import pipeline
    classifier = pipeline(PIPELINE_TASK, model=model_dir)
    with open(sentences_file, encoding="utf-8") as f:
        sentences = [line.rstrip("\n") for line in f]
    print(len(classifier(sentences)))


def tokenizer_rate(lines_file: str, vocab: str, repeats: int) -> dict:
    """MB/s of BertTokenizerFast built from our vocabulary: its Rust `tokenizers` backend alone
    (`encode_batch`) and the transformers call users write (`tokenizer(lines)`, which adds Python
    conversions); and the share of lines whose ids equal our FullTokenizer's."""
    with open(lines_file, encoding="utf-8") as f:
        lines = json.load(f)
    tokenizer = fast_tokenizer(vocab)
    backend = tokenizer.backend_tokenizer
    encode = lambda _: [e.ids for e in backend.encode_batch(lines, add_special_tokens=False)]  # noqa: E731
    seconds, times = median_seconds(encode, repeats)
    call = lambda _: tokenizer(lines, add_special_tokens=False)["input_ids"]  # noqa: E731
    call_seconds, call_times = median_seconds(call, repeats)
    theirs = call(None)
    if theirs != encode(None):
        raise RuntimeError("BertTokenizerFast: its backend and its call disagree")
    ours = token_ids(our_tokenizer(vocab), lines)
    identical = sum(a == b for a, b in zip(ours, theirs)) / len(lines)
    return {"mb_per_s": megabytes(lines) / seconds, "seconds": seconds, "times": times,
            "transformers_call_mb_per_s": megabytes(lines) / call_seconds, "transformers_call_times": call_times,
            "identical_lines": identical}


def run_hf(hf_python: str, plan: dict, corpora_lines: dict[str, list[str]], work_dir: str) -> dict:
    """Start the Hugging Face child with `hf_python` on `plan` (cases as dicts, repeats, ...), the
    corpora's lines written beside it; returns its results (or why there are none)."""
    plan = {**plan, "corpora": {}}
    for language, lines in corpora_lines.items():
        path = os.path.join(work_dir, f"{language}_lines.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(lines, f, ensure_ascii=False)
        plan["corpora"][language] = path
    plan_path, result_path = os.path.join(work_dir, "hf_plan.json"), os.path.join(work_dir, "hf_results.json")
    with open(plan_path, "w", encoding="utf-8") as f:
        json.dump(plan, f, default=dataclasses.asdict)
    completed = subprocess.run([hf_python, os.path.abspath(__file__), plan_path, result_path],
                               cwd=REPO, env=CLEAN_ENV, check=False)
    if completed.returncode != 0 or not os.path.exists(result_path):
        return {"available": False, "reason": f"{hf_python} {os.path.basename(__file__)} exited with "
                                              f"{completed.returncode}"}
    with open(result_path, encoding="utf-8") as f:
        return json.load(f)


def main() -> None:

    if sys.argv[1:2] == ["--pipeline"]:
        classify_with_pipeline(*sys.argv[2:4])
    else:
        hf_worker(*sys.argv[1:3])


if __name__ == "__main__":
    main()
