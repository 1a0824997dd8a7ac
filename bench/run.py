"""The benchmark suite: this project against Hugging Face `transformers` + `torch`, in one run.

    python bench/run.py --suite cpu [--quick] [--output_dir DIR] [--hf_python PATH]
    python bench/run.py --report DIR          (the table again, from DIR/results.json)

Writes DIR/results.json (every timing) and DIR/results.md (the table, also
printed). Rows, in order:

  * fp32 GEMM GFLOP/s, the peak that MFU is measured against;
  * pretraining train step for `small` and `base`, fine-tuning train steps
    (classifier, SQuAD) and classifier inference, on fixed padded batches:
    samples/s, tokens/s, MFU;
  * fine-tuning passes over rows with the real token lengths of CoLA, TNEWS and
    CLUENER: ours through the job's loader at its YAML defaults, Hugging Face
    with per-batch dynamic padding;
  * tokenizer MB/s; predict.py against a Hugging Face pipeline (sentences/s,
    start-up included); pretraining-data generator instances/s; loader batches/s.

Layout: bench/common.py (shapes, cases, inputs, timing: shared by both sides),
bench/hf_side.py (the Hugging Face child process), bench/project_side.py (the
MindSpore measurements and the project's commands), bench/report.py (the table).
The Hugging Face rows run first, in the child, before MindSpore does any work,
so neither framework's thread pool competes with the other's.
"""

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# bench.common first: it records the environment before anything imports MindSpore.
from bench.common import (CORPORA, FULL_SHAPES, QUICK_SHAPES, REPO, WARMUP_REPETITIONS, Shapes,  # noqa: E402
                          cpu_model, model_flops_per_sample, package_version, read_corpus_lines)
from bench import hf_side, project_side  # noqa: E402
from bench.report import report  # noqa: E402

SUITES = ("cpu",)
MIN_REPEATS = 3
COMPUTE_TYPES = ("auto", "float32", "float16", "bfloat16")
# Precisions that may lack kernels on CPU: their rows record why instead of stopping the suite.
OPTIONAL_COMPUTE_TYPES = ("float16", "bfloat16")
UNSUPPORTED_REASON_CHARS = 100   # of MindSpore's error, in the report's note
DEFAULT_GENERATOR_WORKERS = min(2, os.cpu_count())   # ours; Google's reference is one process
RESULTS_JSON, RESULTS_MD = "results.json", "results.md"


def run_suite(args: argparse.Namespace) -> None:
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    os.makedirs(args.output_dir, exist_ok=True)
    work_dir = tempfile.mkdtemp(prefix="bench_")
    try:
        results = measure(args, shapes, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    with open(os.path.join(args.output_dir, RESULTS_JSON), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    write_table(results, args.output_dir)


def measure(args: argparse.Namespace, shapes: Shapes, work_dir: str) -> dict:
    """Every measurement, Hugging Face first; returns the results.json contents."""
    started = time.time()
    cases, configs = project_side.model_cases(shapes, args.compute_type)
    lengths, length_configs = project_side.length_cases(shapes, args.compute_type, work_dir)
    corpora_lines = {language: read_corpus_lines(corpus, shapes.corpus_lines)
                     for language, (corpus, _) in CORPORA.items()}
    sentences_file = os.path.join(work_dir, "sentences.txt")
    sentences = len(project_side.write_sentences(sentences_file, shapes.predict_sentences))

    print(f"Hugging Face measurements ({args.hf_python}) ...", flush=True)
    plan = {"gemm_size": shapes.gemm_size, "repeats": args.repeats, "cases": cases,
            "length_cases": [case for case in lengths if not case.flags],
            "vocabs": {name: vocab for name, (_, _, vocab, _) in project_side.LENGTH_DATASETS.items()},
            "predict": {"model": project_side.predict_model(), "num_labels": project_side.PREDICT_CLASSES,
                        "model_dir": os.path.join(work_dir, "hf_classifier"), "vocab": project_side.ENGLISH_VOCAB,
                        "sentences_file": sentences_file, "sentences": sentences}}
    hf = hf_side.run_hf(args.hf_python, plan, corpora_lines, work_dir)

    print("MindSpore measurements ...", flush=True)
    threads = project_side.ms_setup()
    project = {"models": {}, "lengths": {}, "tokenizer": {}}
    print("[ms] GEMM", flush=True)
    project["gemm"] = project_side.ms_gemm_gflops(shapes.gemm_size)
    for case in cases:
        print(f"[ms] {case.title}", flush=True)
        step = guarded(args.compute_type, project_side.ms_model_step, case, configs[case.key], args.repeats)
        project["models"][case.key] = {**step, "flops_per_sample": model_flops_per_sample(case),
                                       "case": dataclasses.asdict(case)}
    for case in lengths:
        print(f"[ms] {case.title}", flush=True)
        passes = guarded(args.compute_type, project_side.ms_length_passes, case, length_configs[case.key],
                         args.repeats)
        project["lengths"][case.key] = {**passes, "case": dataclasses.asdict(case)}
    print("[ms] predict.py", flush=True)
    project["predict"] = project_side.predict_rate(sentences_file, sentences, work_dir, args.repeats)
    for language, (_, vocab) in CORPORA.items():
        print(f"[ms] tokenizer, {language}", flush=True)
        project["tokenizer"][language] = project_side.tokenizer_rate(corpora_lines[language], vocab, args.repeats)
    corpus_file = generator_corpus(shapes, work_dir)
    print("[ms] generator", flush=True)
    shards = os.path.join(work_dir, "pretraining_data")
    project["generator"] = project_side.generator_rate(corpus_file, shards, args.generator_workers, args.repeats)
    print("[google] generator", flush=True)
    google_dir = os.path.join(work_dir, "google_generator")
    os.makedirs(google_dir)
    google = project_side.google_generator_rate(args.hf_python, corpus_file, google_dir, args.repeats)
    print("[ms] loader", flush=True)
    project["loader"] = project_side.loader_rate(shards, args.repeats)
    return {"machine": machine(hf, threads),
            "settings": {"quick": args.quick, "repeats": args.repeats, "warmup": WARMUP_REPETITIONS,
                         "compute_type": args.compute_type, "shapes": dataclasses.asdict(shapes)},
            "hugging_face": hf, "project": project, "google_generator": google,
            "wall_seconds": time.time() - started}


def guarded(compute_type: str, measurement: Callable[..., dict], *args: object) -> dict:
    """`measurement(*args)`; for a precision that may have no kernels here, its failure becomes
    {"unsupported": reason} (reported in a note) instead of stopping the suite."""
    if compute_type not in OPTIONAL_COMPUTE_TYPES:
        return measurement(*args)
    try:
        return measurement(*args)
    except (RuntimeError, TypeError, ValueError) as error:
        reason = next((line.strip("- ") for line in str(error).splitlines() if any(c.isalpha() for c in line)),
                      type(error).__name__)[:UNSUPPORTED_REASON_CHARS]
        print(f"  unsupported: {reason}", flush=True)
        return {"unsupported": reason}


def generator_corpus(shapes: Shapes, work_dir: str) -> str:
    """The Chinese corpus file, or (quick run) an excerpt of its first lines in work_dir."""
    corpus_file = os.path.join(REPO, CORPORA["zh"][0])
    if not shapes.corpus_lines:
        return corpus_file
    excerpt_file = os.path.join(work_dir, "zh_excerpt.txt")
    with open(corpus_file, encoding="utf-8") as f:
        excerpt = [next(f) for _ in range(shapes.corpus_lines)]
    with open(excerpt_file, "w", encoding="utf-8") as f:
        f.writelines(excerpt)
    return excerpt_file


def machine(hf: dict, threads: dict) -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "mindspore": package_version("mindspore"), "numpy": package_version("numpy"),
            "torch": hf.get("torch"), "transformers": hf.get("transformers"), "tokenizers": hf.get("tokenizers"),
            **threads, "torch_threads": hf.get("torch_threads"),
            "torch_default_threads": hf.get("torch_default_threads")}


def write_table(results: dict, output_dir: str) -> None:
    """results.md from the results (and printed)."""
    table = report(results)
    with open(os.path.join(output_dir, RESULTS_MD), "w", encoding="utf-8") as f:
        f.write(table)
    print(table)
    print(f"written: {os.path.join(output_dir, RESULTS_MD)} (timings: {os.path.join(output_dir, RESULTS_JSON)})")


def read_results(parser: argparse.ArgumentParser, output_dir: str) -> dict:
    path = os.path.join(output_dir, RESULTS_JSON)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        parser.error(f"--report {output_dir}: cannot read {RESULTS_JSON} ({error})")


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--suite", choices=SUITES, help="which suite to run (cpu: every row above, on CPU)")
    parser.add_argument("--report", metavar="DIR", help="only rewrite DIR/results.md from DIR/results.json")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny shapes, a corpus excerpt")
    parser.add_argument("--output_dir", default="bench_output", help="where results.json and results.md go")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS,
                        help=f"timed repetitions per measurement (at least {MIN_REPEATS})")
    parser.add_argument("--compute_type", choices=COMPUTE_TYPES, default="auto",
                        help="our models' matmul precision (auto: the project's default, float32 on CPU); "
                             "Hugging Face stays fp32")
    parser.add_argument("--generator_workers", type=int, default=DEFAULT_GENERATOR_WORKERS,
                        help="worker processes of our pretraining-data generator")
    parser.add_argument("--hf_python", default=sys.executable,
                        help="interpreter with torch + transformers for the Hugging Face rows (default: this one)")
    args = parser.parse_args()
    if args.report:
        write_table(read_results(parser, args.report), args.report)
        return
    if args.suite is None:
        parser.error("--suite is required (or --report DIR)")
    if args.repeats < MIN_REPEATS:
        parser.error(f"--repeats must be at least {MIN_REPEATS}, got {args.repeats}")
    if args.generator_workers < 1:
        parser.error(f"--generator_workers must be at least 1, got {args.generator_workers}")
    run_suite(args)


if __name__ == "__main__":
    main()
