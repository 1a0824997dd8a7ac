"""The benchmark's Markdown report (table, machine line, notes) from its results.json contents.

Pure formatting: it measures nothing and imports neither framework, so a
results.json can be re-reported (`python bench/run.py --report DIR`).
"""

import dataclasses
import os

from bench.common import (CORPORA, GEMM_REPEATS, MASKED_POSITIONS, PASS_WARMUP, WARMUP_REPETITIONS, LengthCase,
                          ModelCase, model_flops_per_sample)
from bench.hf_side import GRADIENT_CLIP_NORM, LEARNING_RATE, PIPELINE_TASK, WEIGHT_DECAY
from bench.project_side import (GENERATOR_DUPE_FACTOR, LOADER_BATCH_SIZE, LOADER_SEQ_LENGTH, PREDICT_PRESET,
                                PREDICT_SENTENCES, PREDICT_TRAIN_FILE)


@dataclasses.dataclass
class Row:
    measurement: str
    setting: str
    unit: str
    project: float = None
    hf: float = None
    digits: int = 1

    @property
    def ratio(self) -> float | None:
        return self.project / self.hf if self.project and self.hf else None

    def cells(self) -> list[str]:
        number = lambda value: "—" if value is None else f"{value:,.{self.digits}f}"  # noqa: E731
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}"
        return [self.measurement, self.setting, self.unit, number(self.project), number(self.hf), ratio]


def precision_setting(case: ModelCase | LengthCase) -> str:
    """', ours <dtype>' where our models did not run in float32 (Hugging Face always does)."""
    return "" if case.model["compute_type"] == "float32" else f", ours {case.model['compute_type']}"


def samples_per_s(case: ModelCase, result: dict | None) -> float | None:
    """A fixed-batch result's samples/s; None where not measured (no result, or unsupported)."""
    return case.batch_size / result["seconds"] if result and "seconds" in result else None


def model_rows(case: ModelCase, ms_result: dict, hf_result: dict | None, peak_gflops: float) -> list[Row]:
    """samples/s (+ tokens/s for pretraining) and MFU of one fixed-batch case, both frameworks."""
    setting = f"batch {case.batch_size}, seq {case.seq_length}, vocab {case.model['vocab_size']}"
    if case.task == "pretrain":
        setting += f", {MASKED_POSITIONS} masked"
    elif case.num_labels:
        setting += f", {case.num_labels} classes"
    setting += precision_setting(case)
    samples = [samples_per_s(case, ms_result), samples_per_s(case, hf_result)]
    rows = [Row(case.title, setting, "samples/s", *samples)]
    if case.task == "pretrain":
        rows.append(Row(case.title, setting, "tokens/s", *[s and s * case.seq_length for s in samples], digits=0))
    flops = model_flops_per_sample(case)
    mfu = [s and 100 * s * flops / (peak_gflops * 1e9) for s in samples]
    rows.append(Row(case.title, setting, "MFU %", *mfu, digits=2))
    return rows


def length_row(case: LengthCase, ms_result: dict, hf_result: dict | None) -> Row:
    """Samples/s of the real-length passes: no MFU, the two sides pad differently (different work)."""
    mean = f", mean {ms_result['mean_length']:.1f} tokens" if "mean_length" in ms_result else ""
    setting = (f"batch {case.batch_size}, seq ≤ {case.seq_length}, {case.rows} rows{mean}, "
               f"{case.num_labels} {'tags' if case.task == 'ner' else 'classes'}{precision_setting(case)}")
    return Row(case.title, setting, "samples/s", ms_result.get("samples_per_s"),
               (hf_result or {}).get("samples_per_s"))


def data_rows(results: dict, shapes: dict) -> list[Row]:
    """Tokenizer, predict.py, generator and loader rows."""
    project, hf = results["project"], results["hugging_face"]
    rows = []
    for language, (corpus, _) in CORPORA.items():
        ours, theirs = project["tokenizer"][language], hf.get("tokenizer", {}).get(language, {})
        setting = f"{os.path.basename(corpus)} ({ours['megabytes']:.2f} MB)"
        rows.append(Row(f"tokenizer, {language}", setting, "MB/s", ours["mb_per_s"], theirs.get("mb_per_s"),
                        digits=2))
        if theirs:
            rows.append(Row(f"tokenizer, {language}: tokens identical to ours", setting, "% of lines", None,
                            100 * theirs["identical_lines"]))
    rows.append(Row(f"classify sentences: `predict.py` (reference: `pipeline(\"{PIPELINE_TASK}\")`)",
                    f"`{PREDICT_PRESET}` classifier, {shapes['predict_sentences']} CoLA sentences, start-up "
                    "included", "sentences/s", project["predict"]["sentences_per_s"],
                    hf.get("pipeline", {}).get("sentences_per_s")))
    generator, google = project["generator"], results["google_generator"]
    rows.append(Row("pretraining-data generator (reference: Google's create_pretraining_data.py)",
                    f"zh corpus, dupe_factor {GENERATOR_DUPE_FACTOR}, {generator['workers']} workers "
                    f"({generator['instances']} instances; Google {google.get('instances', '—')})", "instances/s",
                    generator["instances_per_s"], google.get("instances_per_s"), digits=0))
    rows.append(Row("pretraining loader", f"batch {LOADER_BATCH_SIZE}, seq {LOADER_SEQ_LENGTH} "
                    f"({project['loader']['batches']} batches)", "batches/s", project["loader"]["batches_per_s"],
                    digits=0))
    return rows


def report(results: dict) -> str:
    """The Markdown table (with its machine line and notes) from the results."""
    project, hf = results["project"], results["hugging_face"]
    hf_models = hf.get("models", {})
    hf_gemm = hf.get("gemm", {}).get("gflops")
    peak = max(project["gemm"]["gflops"], hf_gemm or 0)
    shapes = results["settings"]["shapes"]
    rows = [Row("fp32 GEMM", f"{shapes['gemm_size']}×{shapes['gemm_size']}×{shapes['gemm_size']}", "GFLOP/s",
                project["gemm"]["gflops"], hf_gemm)]
    for key, result in project["models"].items():
        rows += model_rows(ModelCase(**result["case"]), result, hf_models.get(key), peak)
    for result in project["lengths"].values():
        case = LengthCase(**result["case"])
        rows.append(length_row(case, result, hf.get("lengths", {}).get(case.dataset)))
    rows += data_rows(results, shapes)
    source = "MindSpore" if peak == project["gemm"]["gflops"] else "torch"
    return markdown(rows, build_notes(results, peak, source), machine_line(results["machine"]))


def machine_line(machine: dict) -> str:
    return (f"Machine: {machine['cpu']}, {machine['cores']} cores; Python {machine['python']}, "
            f"MindSpore {machine['mindspore']}, numpy {machine['numpy']}, "
            f"torch {machine['torch'] or 'not installed'}, "
            f"transformers {machine['transformers'] or 'not installed'}, "
            f"tokenizers {machine['tokenizers'] or 'not installed'}; "
            f"threads: MindSpore {machine['mindspore_kernel_threads']}, torch {machine['torch_threads'] or '—'}.")


def markdown(rows: list[Row], notes: list[str], machine: str) -> str:
    header = ["measurement", "setting", "unit", "this project (MindSpore)", "reference: Hugging Face (torch)",
              "project / reference"]
    lines = [machine, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    lines += [""] + [f"{index}. {note}" for index, note in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


def build_notes(results: dict, peak: float, gemm_source: str) -> list[str]:
    """The numbered notes under the table: how each row was measured."""
    settings, hf, machine = results["settings"], results["hugging_face"], results["machine"]
    shapes, repeats = settings["shapes"], settings["repeats"]
    attention = ", ".join(sorted({f"`{model['attn_implementation']}`" for model in hf.get("models", {}).values()}))
    notes = [
        f"Each rate: median of {repeats} timed repetitions after {WARMUP_REPETITIONS} untimed warm-up ones "
        "(the first compiles MindSpore's graph / allocates torch's optimizer state; MindSpore's steps settle "
        f"after about 5); whole passes over a data set and whole commands: after {PASS_WARMUP}; the loader: "
        "a full pass over the generated shards.",
        f"GEMM: fp32 [{shapes['gemm_size']}×{shapes['gemm_size']}] @ [{shapes['gemm_size']}×{shapes['gemm_size']}], "
        f"2·n³ FLOPs; MindSpore `ops.matmul` compiled with `ms.jit` (graph mode), torch `torch.matmul` (eager); "
        f"median of {GEMM_REPEATS}.",
        f"MFU = model FLOPs/s ÷ {peak:.1f} GFLOP/s, the higher of the two GEMM rates ({gemm_source}): "
        "both frameworks are measured against the same machine peak. Model FLOPs per sequence of a train step "
        "= 3 × forward (backward = 2 × forward), forward = 2·N_enc·S + 4·L·S²·D [+ 2·P·D² + 2·P·D·V for "
        "pretraining], i.e. train = 6·N_enc·S + 12·L·S²·D + 6·P·D² + 6·P·D·V, where N_enc = L·(4·D² + 2·D·I) "
        "encoder matmul weights (Q, K, V, attention output, two FFN layers; embeddings excluded), "
        "L layers, S sequence length, D hidden, I intermediate, V vocabulary, "
        f"4·L·S²·D the attention scores QKᵀ and context PV, P = {MASKED_POSITIONS} masked positions, 6·P·D² the MLM "
        "transform and 6·P·D·V the tied decoder at the masked positions only. Pooler, NSP, classifier and "
        "span heads are left out (under 0.1% of the total). Inference = the forward alone. Hugging Face's "
        "`BertForPreTraining` runs its decoder on all S positions (more work than counted), which lowers "
        "its MFU by design of that implementation.",
        "Pretraining: `BertNetworkWithLoss` + `BertTrainOneStepCell` as `run_pretrain.py` builds them "
        "(`src.training.build_train_cell`: dynamic loss scale, finiteness check, global-norm "
        "clipping at 1.0, `nn.AdamWeightDecay` via `src.optimizers.build_optimizer`), dropout 0.1 on, "
        f"compute_type {settings['compute_type']} ({resolved_compute_type(results)} here), random token ids; skipped (overflowing) steps are counted in "
        f"results.json. Hugging Face: `BertForPreTraining` with MLM labels at the same {MASKED_POSITIONS} positions "
        f"(-100 elsewhere) and NSP labels, `loss.backward()`, `clip_grad_norm_({GRADIENT_CLIP_NORM})`, "
        f"`torch.optim.AdamW` (lr {LEARNING_RATE}, weight decay {WEIGHT_DECAY}); fp32, no loss scaling; attention "
        f"implementation {attention or '—'} (transformers' default).",
        "Fine-tuning steps: `BertCLS` / `BertSquad` (src/task_models.py) through the same train cell on "
        "one fixed, fully padded batch, against `BertForSequenceClassification` / `BertForQuestionAnswering` "
        "with the same torch step; SQuAD with the English vocabulary (30522). Inference: `BertCLSModel` with "
        "is_training=False against the Hugging Face model in `eval()` under `torch.inference_mode()`.",
        f"Real lengths (CoLA, TNEWS, CLUENER): {shapes['length_rows']} rows per pass whose token counts are "
        "drawn from the training sets' histograms in bench/lengths.json (made by bench/make_lengths.py; "
        "longer rows cut to seq_length as the converter does), random token ids, the same rows on both sides. "
        "Ours: the rows as `src.create_finetune_data` writes them (padded to seq_length on disk), read by "
        "`create_dataset` with the job's YAML keys (task_classifier_config.yaml, task_ner_config.yaml: "
        "shuffle, batch size, `bucket_list`, ...) as `run_classifier.py` / `run_ner.py` train, through the "
        "same train cell (`BertCLS`, `BertNER` with the YAML's softmax head); loader included; before the "
        "passes, one untimed step at each bucket length compiles its graph (a run compiles each length once; "
        "results.json keeps `compile_seconds`). Hugging Face: "
        "what its users write, a `torch.utils.data.DataLoader(shuffle=True)` over the unpadded rows with "
        "`DataCollatorWithPadding` (per-batch dynamic padding; CLUENER: `DataCollatorForTokenClassification`, "
        "labels padded with -100), `BertForSequenceClassification` / `BertForTokenClassification` and the torch "
        "step above. samples/s of whole passes; no MFU, the two sides pad differently.",
        f"predict.py: `python predict.py --task=classifier` on the first {shapes['predict_sentences']} sentences of "
        f"`{PREDICT_SENTENCES}` (CoLA's) with a `{PREDICT_PRESET}` classifier fine-tuned for one epoch on "
        f"`{PREDICT_TRAIN_FILE}` by `run_classifier.py` in the bench's temporary directory; the whole command, "
        f"start-up and model loading included, default batch size. Hugging Face: a command running "
        f"`pipeline(\"{PIPELINE_TASK}\", model=DIR)` on the same sentences, DIR holding a "
        "`BertForSequenceClassification` of the same architecture and `BertTokenizerFast` on the same "
        "vocabulary (`save_pretrained`), the pipeline's defaults (its batch size is 1). Both commands use "
        "their framework's default threads.",
        "Tokenizer: text → ids of every non-empty line; ours `FullTokenizer` (a fresh one each repetition: "
        "empty word cache), single-threaded Python; Hugging Face `BertTokenizerFast(vocab=our vocab file, "
        "do_lower_case=True)`, its Rust `tokenizers` backend's `encode_batch` (may use every core)"
        + ("; through the transformers call `tokenizer(lines)` it is slower: " + ", ".join(
            f"{language} {result['transformers_call_mb_per_s']:.2f} MB/s"
            for language, result in hf["tokenizer"].items()) if hf.get("tokenizer") else "")
        + ". 'tokens identical' is the share of lines whose ids equal ours.",
        generator_note(results),
        threads_note(hf, machine),
    ]
    project = results["project"]
    unsupported = {}  # reason -> rows
    for group in (project["models"], project["lengths"]):
        for key, result in group.items():
            if "unsupported" in result:
                unsupported.setdefault(result["unsupported"], []).append(key)
    if unsupported:
        notes.append(f"Not measured with compute_type {settings['compute_type']} (no kernels on this device): "
                     + "; ".join(f"{', '.join(keys)}: {reason}" for reason, keys in unsupported.items()))
    if settings["quick"]:
        notes.insert(0, "QUICK SMOKE TEST: tiny shapes and a corpus excerpt; these numbers mean nothing.")
    return notes


def resolved_compute_type(results: dict) -> str:
    """The precision our models were built with (`--compute_type auto` resolved for the device)."""
    return next(iter(results["project"]["models"].values()))["case"]["model"]["compute_type"]


def generator_note(results: dict) -> str:
    google, workers = results["google_generator"], results["project"]["generator"]["workers"]
    return (f"Generator: `python -m src.create_pretraining_data` on the Chinese corpus, dupe_factor "
            f"{GENERATOR_DUPE_FACTOR}, {workers} workers, no whole-word mask, TFRecord; instances/s of "
            f"the whole command. Its reference is Google BERT's own `create_pretraining_data.py` (PyPI "
            f"`bert-tensorflow`, the single-process original, run by --hf_python) with the same settings "
            f"(max_seq_length {LOADER_SEQ_LENGTH}, {MASKED_POSITIONS} predictions, masked_lm_prob 0.15, "
            "short_seq_prob 0.1, seed 12345), start-up included"
            + ("" if google.get("available") else f"; not measured: {google.get('reason')}") + ". "
            f"Loader: `create_bert_dataset`, batch {LOADER_BATCH_SIZE}, seq {LOADER_SEQ_LENGTH}, shuffled, over "
            "those shards; no counterpart.")


def threads_note(hf: dict, machine: dict) -> str:

    ms_threads = machine["mindspore_kernel_threads"]
    if not hf.get("available"):
        return (f"Threads: MindSpore CPU kernels `ms.device_context.cpu.op_tuning.threads_num({ms_threads})`. "
                f"Hugging Face not measured: {hf.get('reason')}.")
    return (f"Threads: MindSpore CPU kernels `ms.device_context.cpu.op_tuning.threads_num({ms_threads})`; "
            f"torch `set_num_threads({hf['torch_threads']})` (its default here: {hf['torch_default_threads']}), "
            f"interop threads {hf['torch_interop_threads']} (default). Hugging Face ran in a child process "
            f"({hf['python']}) before the MindSpore rows, so the two never shared the cores.")
