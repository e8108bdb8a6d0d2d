"""``adapterhub convert DIR --to-safetensors``: replace pickled weight files with safetensors.

Pickles are loaded with ``torch.load(weights_only=True)``, which refuses arbitrary objects, so the
conversion itself cannot run code hidden in the file. Training-state files of a checkpoint folder
(``optimizer.pt``, ``training_args.bin``, ...: :data:`adapterhub.layout.TRAINING_STATE_PATTERNS`)
are not weights and are left alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import AdapterFormatError
from ..layout import PICKLE_SUFFIXES, adapter_files, is_pickle, is_training_state

#: The safetensors name each library looks for in place of its pickle file.
SAFETENSORS_NAME = {
    "adapter_model.bin": "adapter_model.safetensors",  # PEFT
    "pytorch_adapter.bin": "adapter.safetensors",  # adapters
    "pytorch_model_head.bin": "model_head.safetensors",
    "pytorch_model_adapter_fusion.bin": "model_adapter_fusion.safetensors",
}


def _target_name(name: str) -> str:
    return SAFETENSORS_NAME.get(name, name.rsplit(".", 1)[0] + ".safetensors")


def convert_to_safetensors(path: str | Path, output: str | Path | None = None) -> list[tuple[Path, Path]]:
    """Convert every pickled weight file in ``path``; return ``(pickle, safetensors)`` pairs.

    With ``output`` the whole folder is copied there and converted, leaving ``path`` untouched;
    without it the pickles in ``path`` are replaced (each safetensors file is written atomically
    before its pickle is removed).
    """
    import torch

    from ..toolkit.weights import save_tensors, unpickling_refusal

    source = Path(path)
    if not source.is_dir():
        raise AdapterFormatError(f"{source}: not a directory")
    if output is not None:
        target_dir = Path(output)
        if target_dir.exists() and any(target_dir.iterdir()):
            raise AdapterFormatError(f"{target_dir}: exists and is not empty", hint="choose a new --output folder")
        shutil.copytree(source, target_dir, dirs_exist_ok=True)
    else:
        target_dir = source
    files = adapter_files(target_dir)
    training = [rel for rel in files if is_training_state(rel)]
    pickles = [target_dir / rel for rel in files if is_pickle(rel) and not is_training_state(rel)]
    if not pickles:
        wanted = ", ".join(f"*{suffix}" for suffix in PICKLE_SUFFIXES)
        if training:
            raise AdapterFormatError(
                f"{source}: no pickled weights to convert; {', '.join(training)} "
                f"{'is' if len(training) == 1 else 'are'} training state (optimizer, scheduler, random "
                "state, training arguments), not adapter weights, and stay as they are",
                hint="to publish the adapter without them: adapterhub push DIR "
                + " ".join(f"--exclude {name.rsplit('/', 1)[-1]}" for name in training) + " ...",
            )
        raise AdapterFormatError(f"{source}: no pickled weights ({wanted}) to convert")
    converted = []
    for pickle_path in pickles:
        destination = pickle_path.with_name(_target_name(pickle_path.name))
        if destination.exists():
            raise AdapterFormatError(
                f"{destination}: already exists next to {pickle_path.name}",
                hint="remove one of the two so it is clear which weights are the adapter's",
            )
        try:
            state = torch.load(pickle_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - weights_only refusals and corrupt files alike
            raise AdapterFormatError(
                f"{pickle_path}: cannot be converted: {unpickling_refusal(exc)}",
                hint="only a dict of tensors converts; adapterhub never unpickles arbitrary objects") from None
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise AdapterFormatError(f"{pickle_path}: does not hold a flat dict of tensors")
        # save_tensors copies tensors apart: some libraries save one tensor under several names.
        save_tensors(state, destination)
        pickle_path.unlink()
        converted.append((pickle_path, destination))
    return converted
