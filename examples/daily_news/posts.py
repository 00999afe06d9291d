"""Posts on disk (``data/posts/<post_id>/post.json`` + ``assets/``) and the draft box.

Every file is written aside and renamed into place, so a process killed at any moment
leaves either the old file or the new one, never half of one.

Post statuses: ``generating`` (its image is being made), ``ready`` (illustrated),
``failed`` (the image was given up on: ``platform.image_generate.give_up = true``; it never
reaches the draft box) and ``draft_saved``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

GENERATING, READY, FAILED, DRAFT_SAVED = "generating", "ready", "failed", "draft_saved"


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as pretty JSON, atomically (written aside, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class PostStore:
    """Posts under ``<data_dir>/posts``: one directory per post, ``post.json`` + ``assets/``."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "posts"

    def post_dir(self, post_id: str) -> Path:
        """The post's directory."""
        return self.root / post_id

    def assets_dir(self, post_id: str) -> Path:
        """Where the post's images go (the seed's ``data/posts/<post_id>/assets/``)."""
        return self.post_dir(post_id) / "assets"

    def path(self, post_id: str) -> Path:
        """The post's ``post.json``."""
        return self.post_dir(post_id) / "post.json"

    def load(self, post_id: str) -> dict[str, Any] | None:
        """The post's JSON, or ``None`` when it has not been written."""
        try:
            data = json.loads(self.path(post_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) else None

    def save(self, post: dict[str, Any]) -> dict[str, Any]:
        """Write ``post`` (stamped with ``updated_at``) as its ``post.json``."""
        post["updated_at"] = round(time.time(), 3)
        write_json(self.path(post["post_id"]), post)
        return post

    def save_asset(self, post_id: str, name: str, data: bytes) -> Path:
        """Write an asset file; returns its path."""
        target = self.assets_dir(post_id) / name
        write_bytes(target, data)
        return target

    def copy_asset(self, post_id: str, source: str | os.PathLike[str], name: str) -> Path:
        """Copy a local file (``--assets-glob``) into the post's assets."""
        target = self.assets_dir(post_id) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.", suffix=".part")
        os.close(fd)
        try:
            shutil.copyfile(source, temp)
            Path(temp).replace(target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return target

    def all(self) -> list[dict[str, Any]]:
        """Every post on disk, by post id."""
        if not self.root.is_dir():
            return []
        found = []
        for child in sorted(self.root.iterdir()):
            post = self.load(child.name)
            if post is not None:
                found.append(post)
        return found

    def log_attempt(self, post_id: str, record: dict[str, Any]) -> None:
        """Append one attempt's result or error to the post's ``attempts.jsonl`` (the seed's
        "将每次尝试的结果/错误写入本地数据"). A log: a resumed run appends, never rewrites."""
        path = self.post_dir(post_id) / "attempts.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


class DraftBox:
    """A stand-in for the 小红书 draft box, under ``<data_dir>/drafts``.

    Like an API that deduplicates by an idempotency key, saving the same key twice keeps
    the first draft: a resumed run that saves a draft again gets the same draft back.
    """

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.root = Path(data_dir) / "drafts"

    def save(self, post: dict[str, Any], *, idempotency_key: str) -> tuple[dict[str, Any], bool]:
        """Save ``post`` as a draft once per key: ``(draft, created)``."""
        draft_id = "draft-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
        target = self.root / f"{draft_id}.json"
        existing = self._read(target)
        if existing is not None:
            return existing, False
        draft = {
            "draft_id": draft_id,
            "idempotency_key": idempotency_key,
            "post_id": post["post_id"],
            "title": post.get("title"),
            "body": post.get("body"),
            "images": [image.get("path") for image in post.get("platform", {}).get("images", [])],
            "saved_at": round(time.time(), 3),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.root, prefix=f".{draft_id}.", suffix=".part")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(draft, handle, ensure_ascii=False, indent=2)
            try:
                os.link(temp, target)  # create-if-absent, atomically
            except FileExistsError:
                return self._read(target) or draft, False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        return draft, True

    def all(self) -> list[dict[str, Any]]:
        """Every saved draft."""
        if not self.root.is_dir():
            return []
        drafts = (self._read(p) for p in sorted(self.root.glob("draft-*.json")))
        return [d for d in drafts if d is not None]

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) else None
