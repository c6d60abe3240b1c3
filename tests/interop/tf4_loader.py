"""Load a model folder with the transformers installed in *this* interpreter and print JSON.

Run by ``tests/interop/external.py`` in a second environment (transformers 4.57, the last 4.x,
which ties and unties differently from 5.x: TYING.md section 7), so the fix tests check their
outputs against two real clients. Standalone: imports nothing from tiecheck or the tests.

    python tf4_loader.py FOLDER --ids '[[3, 9, 4]]' [--config CONFIG_FOLDER]

Prints one JSON object: transformers version, class, missing / unexpected / mismatched keys,
whether the loaded input and output embeddings are one tensor, the config's
``tie_word_embeddings`` and the logits for ``--ids``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--ids", required=True, help="input ids as JSON, [[...]]")
    parser.add_argument("--config", help="folder with config.json, when FOLDER has none")
    args = parser.parse_args()

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    warnings.simplefilter("ignore")

    config = transformers.AutoConfig.from_pretrained(args.config or args.folder)
    cls = getattr(transformers, config.architectures[0])
    model, info = cls.from_pretrained(args.folder, config=config, output_loading_info=True)
    model.eval()
    inp = model.get_input_embeddings()
    out = model.get_output_embeddings()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(json.loads(args.ids))).logits
    tie = getattr(model.config, "tie_word_embeddings", None)
    text_config = getattr(model.config, "text_config", None)
    sys.stdout.write("\n")  # the caller reads the last line: no stray output before
    json.dump(
        {
            "transformers": transformers.__version__,
            "class": type(model).__name__,
            "missing": sorted(info["missing_keys"]),
            "unexpected": sorted(info["unexpected_keys"]),
            "mismatched": sorted(str(k) for k in info.get("mismatched_keys", [])),
            "tied": out is not None and out.weight.data_ptr() == inp.weight.data_ptr(),
            "tie_word_embeddings": tie,
            "text_tie_word_embeddings": getattr(text_config, "tie_word_embeddings", None),
            "logits": logits.float().tolist(),
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
