"""The paper feed: a built-in list (offline, deterministic) or a small local JSON file.

A feed file is a JSON list of papers, or ``{"papers": [...]}``; each paper has ``id``,
``title`` and ``abstract`` (``authors`` and ``url`` are optional)::

    {"papers": [{"id": "2401.00001", "title": "…", "abstract": "…"}]}
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from regen import ConfigError

BUILT_IN: tuple[dict[str, Any], ...] = (
    {
        "id": "1706.03762",
        "title": "Attention Is All You Need",
        "authors": ["Vaswani", "Shazeer", "Parmar"],
        "abstract": "The Transformer: a sequence model built on attention alone, without "
        "recurrence or convolution, faster to train and better at translation.",
        "url": "https://arxiv.org/abs/1706.03762",
    },
    {
        "id": "2005.11401",
        "title": "Retrieval-Augmented Generation for Knowledge-Intensive NLP",
        "authors": ["Lewis", "Perez", "Piktus"],
        "abstract": "A generator conditioned on passages retrieved from a dense index answers "
        "open-domain questions more factually than a parametric model alone.",
        "url": "https://arxiv.org/abs/2005.11401",
    },
    {
        "id": "2112.10752",
        "title": "High-Resolution Image Synthesis with Latent Diffusion Models",
        "authors": ["Rombach", "Blattmann", "Lorenz"],
        "abstract": "Diffusion in the latent space of a pretrained autoencoder makes "
        "high-resolution image synthesis affordable while keeping quality.",
        "url": "https://arxiv.org/abs/2112.10752",
    },
    {
        "id": "2201.11903",
        "title": "Chain-of-Thought Prompting Elicits Reasoning",
        "authors": ["Wei", "Wang", "Schuurmans"],
        "abstract": "Showing a few worked examples with intermediate reasoning steps makes "
        "large language models much better at arithmetic and symbolic tasks.",
        "url": "https://arxiv.org/abs/2201.11903",
    },
    {
        "id": "2106.09685",
        "title": "LoRA: Low-Rank Adaptation of Large Language Models",
        "authors": ["Hu", "Shen", "Wallis"],
        "abstract": "Freezing the pretrained weights and training small low-rank update "
        "matrices adapts large models with far fewer trainable parameters.",
        "url": "https://arxiv.org/abs/2106.09685",
    },
    {
        "id": "2303.08774",
        "title": "GPT-4 Technical Report",
        "authors": ["OpenAI"],
        "abstract": "A large multimodal model accepting image and text inputs reaches "
        "human-level performance on many professional and academic benchmarks.",
        "url": "https://arxiv.org/abs/2303.08774",
    },
)


def _check(papers: Any, source: str) -> list[dict[str, Any]]:
    if isinstance(papers, dict):
        papers = papers.get("papers")
    if not isinstance(papers, list) or not papers:
        raise ConfigError(
            f'{source}: expected a non-empty JSON list of papers, or {{"papers": [...]}}'
        )
    checked = []
    for index, paper in enumerate(papers):
        missing = [
            k
            for k in ("id", "title", "abstract")
            if not isinstance(paper, dict)
            or not isinstance(paper.get(k), str)
            or not paper[k].strip()
        ]
        if missing:
            raise ConfigError(
                f"{source}: paper {index} needs the text field(s) {', '.join(missing)}"
            )
        checked.append(
            {
                "id": paper["id"],
                "title": paper["title"],
                "authors": list(paper.get("authors") or []),
                "abstract": paper["abstract"],
                "url": paper.get("url"),
            }
        )
    ids = [p["id"] for p in checked]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{source}: paper ids must be unique")
    return checked


def load_feed(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The papers of the feed file at ``path``, or the built-in list."""
    if path is None or str(path) == "":
        return [dict(p) for p in BUILT_IN]
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"paper feed {file} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"paper feed {file} is not readable JSON: {exc}") from None
    return _check(data, f"paper feed {file}")


def papers_for(day: dt.date, count: int, path: str | Path | None = None) -> list[dict[str, Any]]:
    """``count`` papers for ``day``: the feed read in order from a day-dependent start, so
    each day gets its own selection and the same day always the same one."""
    papers = load_feed(path)
    count = min(count, len(papers))
    start = day.toordinal() % len(papers)
    return [papers[(start + i) % len(papers)] for i in range(count)]
